//! The audit trail: who did what, when, to which collection and subject. Never names,
//! external ids, images or embeddings.

use chrono::Utc;
use uuid::Uuid;
use visage_store::{
    AuditAction, AuditEvent, AuditFilter, AuditOutcome, CollectionId, CollectionScope, NewAuditEvent, Role,
    Store,
};

use super::{Caller, ServiceResult, degraded};
use crate::state::App;

/// One event of the trail, built where the action happens.
pub struct Entry {
    action: AuditAction,
    outcome: AuditOutcome,
    collection: Option<CollectionId>,
    subject_id: Option<Uuid>,
    detail: serde_json::Value,
}

impl Entry {
    pub fn new(action: AuditAction, outcome: AuditOutcome) -> Self {
        Self { action, outcome, collection: None, subject_id: None, detail: serde_json::json!({}) }
    }

    /// The collection acted on.
    pub fn on(self, collection: &CollectionId) -> Self {
        self.on_maybe(Some(collection))
    }

    pub fn on_maybe(mut self, collection: Option<&CollectionId>) -> Self {
        self.collection = collection.cloned();
        self
    }

    /// The subject acted on (its id only: never a name or external id).
    pub fn subject(self, id: Uuid) -> Self {
        self.subject_maybe(Some(id))
    }

    pub fn subject_maybe(mut self, id: Option<Uuid>) -> Self {
        self.subject_id = id;
        self
    }

    /// Counts and ids that say what happened (no personal data).
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Writes the caller's audit event; while the database cannot be reached, to the spool. A
/// failure is logged, not returned, because the action it describes has already happened.
pub async fn record(app: &App, caller: &Caller, entry: Entry) {
    let event = NewAuditEvent {
        api_key_id: Some(caller.key_id.clone()),
        action: entry.action,
        outcome: entry.outcome,
        collection: entry.collection,
        subject_id: entry.subject_id,
        detail: entry.detail,
    };
    // Its own id: a write that failed without saying whether it committed is spooled, and
    // the replay must not add it twice.
    let event_id = Uuid::now_v7();
    if !app.outage.is_down() {
        match app.store.append_audit_once(&event, event_id, Utc::now()).await {
            Ok(_) => return,
            Err(err) if app.outage.noticed(&err) => {}
            Err(err) => {
                tracing::error!(action = event.action.as_str(), error = %err, "audit event lost");
                return;
            }
        }
    }
    let action = event.action.as_str();
    if let Err(err) = degraded::spool(app, degraded::audit_entry(event, event_id)).await {
        tracing::error!(action, error = %err, "audit event lost: neither the database nor the spool took it");
    }
}

/// Writes an event of the service itself (no caller: a job, a background task).
pub async fn append(store: &dyn Store, event: &NewAuditEvent) {
    if let Err(err) = store.append_audit(event).await {
        tracing::error!(action = event.action.as_str(), error = %err, "audit event lost");
    }
}

/// Events per page when the request does not say.
pub const DEFAULT_PAGE: u32 = 100;

/// A page of the trail, and the cursor of the next page while pages may follow.
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    pub next_cursor: Option<i64>,
}

/// A page of the trail, oldest first, after `cursor`. Admin only.
pub async fn list(
    app: &App,
    caller: &Caller,
    mut filter: AuditFilter,
    cursor: Option<i64>,
    limit: Option<u32>,
) -> ServiceResult<AuditPage> {
    caller.require(Role::Admin)?;
    if let CollectionScope::Only(ids) = &caller.scope {
        filter.collections = Some(ids.clone());
    }
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    let items = app.store.list_audit(&filter, cursor, limit).await?;
    let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|e| e.seq)).flatten();
    Ok(AuditPage { items, next_cursor })
}
