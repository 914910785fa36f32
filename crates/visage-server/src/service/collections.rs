//! Collections: separate galleries, each searched on its own.

use chrono::{DateTime, Utc};
use visage_store::{AuditAction, AuditOutcome, CollectionId, Role};

use super::audit::Entry;
use super::{Caller, ServiceResult, audit};
use crate::state::App;

pub struct CollectionSummary {
    pub id: CollectionId,
    pub created_at: DateTime<Utc>,
    /// Templates in this replica's 1:N index.
    pub templates: usize,
}

/// Creates a collection. Admin only.
pub async fn create(app: &App, caller: &Caller, id: CollectionId) -> ServiceResult<CollectionSummary> {
    caller.require(Role::Admin)?;
    let created = app.store.create_collection(&id).await?;
    audit::record(app, caller, Entry::new(AuditAction::CollectionCreate, AuditOutcome::Ok).on(&id)).await;
    Ok(CollectionSummary { id, created_at: created.created_at, templates: 0 })
}

/// The collections this key may use.
pub async fn list(app: &App, caller: &Caller) -> ServiceResult<Vec<CollectionSummary>> {
    caller.require(Role::Read)?;
    Ok(app
        .store
        .list_collections()
        .await?
        .into_iter()
        .filter(|c| caller.scope.allows(&c.id))
        .map(|c| CollectionSummary { templates: app.gallery.len(&c.id), id: c.id, created_at: c.created_at })
        .collect())
}
