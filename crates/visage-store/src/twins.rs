//! What both backends share about storing a twin template (`visage reembed`).

use crate::{StoreError, StoreResult, Template};

/// A twin names the template it was made from.
pub(crate) fn check(twin: &Template) -> StoreResult<()> {
    if twin.source_template_id.is_none() {
        return Err(StoreError::Corrupt("a twin needs its source template".into()));
    }
    Ok(())
}

/// Whether the insert of a twin stored it: false when its source (or the subject) is gone, or
/// another run stored the twin first.
pub(crate) fn stored(insert: Result<(), sqlx::Error>) -> StoreResult<bool> {
    match insert {
        Ok(()) => Ok(true),
        Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() || db.is_unique_violation() => {
            Ok(false)
        }
        Err(err) => Err(err.into()),
    }
}
