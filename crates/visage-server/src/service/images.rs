//! Enrolment images as the handlers use them: sealed uploads, downloads, and deletions that are
//! never silently lost.

use serde_json::json;
use uuid::Uuid;
use visage_objects::{ImageError, ImageStore};
use visage_store::{AuditAction, AuditOutcome, NewAuditEvent, Store};
use zeroize::Zeroizing;

use super::{ServiceError, ServiceResult};
use crate::state::App;

/// Why images are being deleted, as the audit event names it.
#[derive(Debug, Clone, Copy)]
pub enum Deletion {
    Erasure,
    FaceDelete,
    /// An enrolment failed after its images were uploaded.
    EnrolmentRollback,
    /// `visage reembed` stored an image for a twin that was not stored.
    ReembedRollback,
    Prune,
    /// `visage images sweep` found an image no template refers to.
    Sweep,
    /// A probe image kept for review reached the end of its retention.
    ProbeExpiry,
}

impl Deletion {
    fn as_str(self) -> &'static str {
        match self {
            Self::Erasure => "erasure",
            Self::FaceDelete => "face_delete",
            Self::EnrolmentRollback => "enrolment_rollback",
            Self::ReembedRollback => "reembed_rollback",
            Self::Prune => "prune",
            Self::Sweep => "sweep",
            Self::ProbeExpiry => "probe_expiry",
        }
    }
}

/// Seals and uploads an enrolment image; returns its reference.
pub async fn store(app: &App, template_id: Uuid, subject_id: Uuid, bytes: &[u8]) -> ServiceResult<String> {
    app.images.put(&app.keys, template_id, subject_id, bytes).await.map_err(|err| {
        tracing::error!(backend = app.images.kind(), error = %err, "storing an enrolment image failed");
        ServiceError::ImageStorageUnavailable
    })
}

/// Downloads and opens a stored image.
pub async fn load(
    app: &App,
    template_id: Uuid,
    subject_id: Uuid,
    reference: &str,
) -> Result<Zeroizing<Vec<u8>>, ImageError> {
    app.images.get(&app.keys, template_id, subject_id, reference).await
}

/// Deletes stored images, each retried (see [`ImageStore::delete`]). It runs as a task of its
/// own, so it finishes even when the request that asked for it times out or its client goes
/// away. What still fails is counted in `image_deletions_failed_total` and named in an
/// `image.delete` audit event (see [`delete_images`]).
pub async fn delete(app: &App, references: Vec<String>, why: Deletion) {
    if references.is_empty() {
        return;
    }
    let (images, store) = (app.images.clone(), app.store.clone());
    let counter = app.metrics.image_deletions_failed.clone();
    let task = tokio::spawn(async move {
        let failed = delete_images(&images, store.as_ref(), &references, why).await;
        counter.inc_by(failed.len() as u64);
    });
    if task.await.is_err() {
        tracing::error!("an image deletion task panicked");
    }
}

/// Deletes images with retries; those that still cannot be deleted are logged (without names)
/// and recorded in one `image.delete` audit event with outcome `failed`, listing their object
/// names (random template ids, nothing personal), so an operator can delete them later (the
/// objects stay sealed meanwhile). Returns those that failed.
pub async fn delete_images(
    images: &ImageStore,
    store: &dyn Store,
    references: &[String],
    why: Deletion,
) -> Vec<String> {
    let failed = images.delete_all(references).await;
    if failed.is_empty() {
        return failed;
    }
    tracing::error!(
        backend = images.kind(),
        count = failed.len(),
        reason = why.as_str(),
        "stored images could not be deleted; they are listed in an image.delete audit event"
    );
    let event = NewAuditEvent {
        api_key_id: None,
        action: AuditAction::ImageDelete,
        outcome: AuditOutcome::Failed,
        collection: None,
        subject_id: None,
        detail: json!({ "reason": why.as_str(), "backend": images.kind(), "objects": failed }),
    };
    if let Err(err) = store.append_audit(&event).await {
        // The last place left to name them (object names are random template ids).
        tracing::error!(error = %err, objects = ?failed, "images not deleted and their audit event not written");
    }
    failed
}
