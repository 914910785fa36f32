//! The audit trail: who did what, when, to which collection and subject. Never names,
//! external ids, images or embeddings.

use uuid::Uuid;
use visage_store::{AuditAction, AuditEvent, AuditOutcome, CollectionId, NewAuditEvent, Role, Store};

use super::{Caller, ServiceResult};
use crate::state::App;

/// Writes an audit event; a failure is logged, not returned, because the action it describes
/// has already happened.
pub async fn record(
    app: &App,
    caller: Option<&Caller>,
    action: AuditAction,
    outcome: AuditOutcome,
    collection: Option<&CollectionId>,
    subject_id: Option<Uuid>,
    detail: serde_json::Value,
) {
    let event = NewAuditEvent {
        api_key_id: caller.map(|c| c.key_id.clone()),
        action,
        outcome,
        collection: collection.cloned(),
        subject_id,
        detail,
    };
    append(app.store.as_ref(), &event).await;
}

/// Writes an event of the service itself (no caller: a job, a background task).
pub async fn append(store: &dyn Store, event: &NewAuditEvent) {
    if let Err(err) = store.append_audit(event).await {
        tracing::error!(action = event.action.as_str(), error = %err, "audit event lost");
    }
}

/// A page of the trail, oldest first, after `cursor`. Admin only.
pub async fn list(
    app: &App,
    caller: &Caller,
    cursor: Option<i64>,
    limit: u32,
) -> ServiceResult<Vec<AuditEvent>> {
    caller.require(Role::Admin)?;
    Ok(app.store.list_audit(cursor, limit).await?)
}
