//! Destruction records: every erasure of personal data leaves one (written by the store in the
//! transaction that destroys the data), for the record Roskomnadzor's order No. 179 (2022)
//! asks for. Listed to an admin of every collection: they span collections.

use visage_store::{
    CollectionScope, Destruction, DestructionFilter, DestructionGround, DestructionRecord, Role,
};

use super::{Caller, ServiceError, ServiceResult};
use crate::state::App;

/// Who destroys on which ground, as the record will say.
pub fn by(app: &App, caller: &Caller, ground: DestructionGround) -> Destruction {
    Destruction {
        ground,
        performed_by: caller.key_id.clone(),
        keep_external_id: app.config.retention.destruction_records_keep_external_id,
    }
}

/// A page of records, oldest first.
pub async fn list(
    app: &App,
    caller: &Caller,
    filter: DestructionFilter,
) -> ServiceResult<Vec<DestructionRecord>> {
    caller.require(Role::Admin)?;
    if caller.scope != CollectionScope::All {
        return Err(ServiceError::Forbidden);
    }
    Ok(app.store.destruction_records(&filter).await?)
}
