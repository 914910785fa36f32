//! Review: the queue of past decisions a reviewer labels, and the probe images kept for it
//! when `review.keep_probe_images_hours` allows (sealed like templates, deleted at expiry and
//! with any subject they show, every view audited).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;
use visage_objects::ImageStore;
use visage_store::{
    AuditAction, AuditOutcome, CollectionId, CollectionScope, DecisionFilter, KeptProbe, NewAuditEvent,
    ReviewedDecision, Role, Subject,
};
use zeroize::Zeroizing;

use super::audit::Entry;
use super::images::{self, Deletion};
use super::{Caller, ServiceError, ServiceResult, audit};
use crate::state::{App, AppState};

/// Decisions per page of the review queue when the request does not say.
pub const DEFAULT_QUEUE_PAGE: u32 = 50;

/// How often each replica looks for expired probe images (deletion is idempotent, so replicas
/// need not agree on who does it).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Expired probes handled per sweep round.
const SWEEP_BATCH: u32 = 500;

/// A decision in the review queue, with the enrolled side a reviewer compares against.
pub struct QueuedDecision {
    pub decision: ReviewedDecision,
    /// The subject the decision claimed or returned; `None` once erased (or for no candidate).
    pub subject: Option<Subject>,
}

/// The review queue: decisions of the caller's collections, filtered, closest calls first
/// unless asked otherwise. Reviewers label with the enrol role, so it takes the same.
pub async fn queue(
    app: &App,
    caller: &Caller,
    collection: Option<CollectionId>,
    mut filter: DecisionFilter,
) -> ServiceResult<Vec<QueuedDecision>> {
    caller.require(Role::Enrol)?;
    filter.collections = match (&caller.scope, collection) {
        (_, Some(id)) if !caller.scope.allows(&id) => return Err(ServiceError::Forbidden),
        (_, Some(id)) => Some(vec![id]),
        (CollectionScope::All, None) => None,
        (CollectionScope::Only(ids), None) => Some(ids.clone()),
    };
    let decisions = app.store.list_decisions(&filter).await?;
    let mut queued = Vec::with_capacity(decisions.len());
    for decision in decisions {
        let subject = match decision.record.subject_id {
            Some(id) => app.store.get_subject(id).await?,
            None => None,
        };
        queued.push(QueuedDecision { decision, subject });
    }
    Ok(queued)
}

/// Keeps a probe image for review when retention is on; `None` when it is off or the upload
/// failed (the decision matters more than its photo: it goes on, the failure is logged).
pub async fn keep_probe(app: &App, image: &Bytes) -> Option<KeptProbe> {
    let hours = app.config.review.keep_probe_images_hours;
    if hours == 0 {
        return None;
    }
    // Sealed like an enrolment image, bound to a fresh id and no subject.
    let id = Uuid::now_v7();
    match app.images.put(&app.keys, id, Uuid::nil(), image).await {
        Ok(reference) => {
            Some(KeptProbe { reference, expires_at: Utc::now() + chrono::Duration::hours(hours as i64) })
        }
        Err(err) => {
            tracing::error!(backend = app.images.kind(), error = %err, "keeping a probe image for review failed");
            None
        }
    }
}

/// A kept probe image, opened, for a reviewer; audited.
pub async fn probe_image(app: &App, caller: &Caller, decision_id: Uuid) -> ServiceResult<Zeroizing<Vec<u8>>> {
    caller.require(Role::Enrol)?;
    let record = app.store.get_verification(decision_id).await?.ok_or(ServiceError::VerificationNotFound)?;
    if record.collection.as_ref().is_some_and(|c| !caller.scope.allows(c)) {
        return Err(ServiceError::VerificationNotFound);
    }
    let probe = record.probe.filter(|p| p.expires_at > Utc::now()).ok_or(ServiceError::ProbeNotFound)?;
    let id = ImageStore::id_of(&probe.reference).map_err(|_| ServiceError::ProbeNotFound)?;
    let image = app.images.get(&app.keys, id, Uuid::nil(), &probe.reference).await.map_err(|err| match err {
        visage_objects::ImageError::NotFound => ServiceError::ProbeNotFound,
        err => {
            tracing::error!(backend = app.images.kind(), error = %err, "reading a kept probe image failed");
            ServiceError::ImageStorageUnavailable
        }
    })?;
    audit::record(
        app,
        caller,
        Entry::new(AuditAction::ProbeView, AuditOutcome::Ok)
            .on_maybe(record.collection.as_ref())
            .subject_maybe(record.subject_id)
            .detail(json!({ "verification_id": decision_id })),
    )
    .await;
    Ok(image)
}

/// Deletes probe images whose retention has ended; returns how many went. Audited (one event
/// per round that deleted any), counted in `probe_images_expired_total`.
pub async fn sweep_expired_probes(app: &App) -> ServiceResult<usize> {
    let mut total = 0;
    loop {
        let expired = app.store.expired_probes(Utc::now(), SWEEP_BATCH).await?;
        if expired.is_empty() {
            break;
        }
        let failed =
            images::delete_images(&app.images, app.store.as_ref(), &expired, Deletion::ProbeExpiry).await;
        app.metrics.image_deletions_failed.inc_by(failed.len() as u64);
        let deleted: Vec<String> = expired.into_iter().filter(|r| !failed.contains(r)).collect();
        // An image that could not be deleted stays linked, to be tried again next round.
        app.store.forget_probes(&deleted).await?;
        app.metrics.probe_images_expired.inc_by(deleted.len() as u64);
        total += deleted.len();
        let event = NewAuditEvent {
            api_key_id: None,
            action: AuditAction::ProbeExpire,
            outcome: if failed.is_empty() { AuditOutcome::Ok } else { AuditOutcome::Failed },
            collection: None,
            subject_id: None,
            detail: json!({ "deleted": deleted.len(), "failed": failed.len() }),
        };
        audit::append(app.store.as_ref(), &event).await;
        if deleted.is_empty() {
            break;
        }
    }
    Ok(total)
}

/// Runs [`sweep_expired_probes`] every minute while the app lives, when retention is on.
pub fn spawn_probe_sweeper(app: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    if app.config.review.keep_probe_images_hours == 0 {
        return None;
    }
    let app = Arc::downgrade(app);
    Some(tokio::spawn(async move {
        loop {
            let Some(state) = app.upgrade() else { return };
            if let Err(err) = sweep_expired_probes(&state).await {
                tracing::warn!(error = %err, "deleting expired probe images failed; retrying later");
            }
            drop(state);
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    }))
}
