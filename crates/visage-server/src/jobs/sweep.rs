//! `visage images sweep`: deletes the enrolment images that no template refers to any more.

use serde_json::json;
use visage_objects::ImageStore;
use visage_store::{AuditAction, AuditOutcome, NewAuditEvent};

use crate::config::Config;
use crate::resources::open_store;
use crate::service::audit;
use crate::service::images::{Deletion, delete_images};

/// What [`sweep`] found and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SweepSummary {
    /// Images in the store.
    pub images: u64,
    /// Images no template refers to, older than the grace period: deleted.
    pub deleted: u64,
    /// Unreferenced images younger than the grace period, left alone: an enrolment or a
    /// re-embedding may be about to store the template that refers to them.
    pub recent: u64,
    /// Unreferenced images that could not be deleted (named in an `image.delete` audit event).
    pub failed: u64,
}

/// Deletes the images no template refers to any more and that are older than `grace`: what a
/// failed deletion (erasure, face deletion, rollback) left behind, or a crash between an
/// upload and its template. Reads the configuration `visage serve` reads.
pub async fn sweep(config: &Config, grace: std::time::Duration) -> anyhow::Result<SweepSummary> {
    let store = open_store(config).await?;
    let images = ImageStore::open(&crate::resources::image_backend(config))?;
    let referenced: std::collections::HashSet<String> = store.image_refs().await?.into_iter().collect();
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace)?;
    let mut summary = SweepSummary::default();
    let mut orphans = Vec::new();
    for image in images.list().await? {
        summary.images += 1;
        if referenced.contains(&image.reference) {
            continue;
        }
        if image.last_modified > cutoff {
            summary.recent += 1;
        } else {
            orphans.push(image.reference);
        }
    }
    let failed = delete_images(&images, store.as_ref(), &orphans, Deletion::Sweep).await;
    summary.failed = failed.len() as u64;
    summary.deleted = (orphans.len() - failed.len()) as u64;
    let event = NewAuditEvent {
        api_key_id: None,
        action: AuditAction::ImageSweep,
        outcome: AuditOutcome::Ok,
        collection: None,
        subject_id: None,
        detail: json!({ "deleted": summary.deleted, "recent": summary.recent, "failed": summary.failed }),
    };
    audit::append(store.as_ref(), &event).await;
    store.close().await;
    Ok(summary)
}
