//! `visage keys rotate-template-key`: re-seals every template, enrolment image and kept probe
//! image under the active template key, so that an old key can leave `encryption.previous_keys`.
//!
//! The order of a rotation: give every replica the new key as `encryption.key` with the old one
//! in `encryption.previous_keys` (restarting them one by one), run this command while they
//! serve, then drop the old key once the summary says nothing needs it. The values sealed do not
//! change, so no replica's 1:N index has to change either. Resumable: what the active key sealed
//! already is skipped, and a template changed meanwhile (re-sealed by another run, deleted,
//! erased) is left alone.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;
use visage_objects::{ImageError, ImageStore, Resealed};
use visage_store::crypto::KeyRing;
use visage_store::{AuditAction, AuditOutcome, KeyUsage, NewAuditEvent, Store, Template};

use super::reembed::Progress;
use crate::config::Config;
use crate::resources::{image_backend, key_ring, open_store};
use crate::service;

/// What a rotation run did, and which keys are still needed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RotationSummary {
    /// The key everything is sealed with now.
    pub active_key_id: String,
    pub templates: Counts,
    pub images: Counts,
    pub probe_images: Counts,
    /// Templates per key after the run.
    pub templates_by_key: Vec<KeyUsage>,
    /// Images (enrolment and probe) this run left sealed with another key, per key: ones that
    /// could not be read or written (see `failed`).
    pub images_left_by_key: BTreeMap<String, u64>,
    /// Keys of `encryption.previous_keys` nothing needs any more: they can be removed.
    pub removable_key_ids: Vec<String>,
    /// Keys something still needs.
    pub keys_in_use: Vec<String>,
}

impl RotationSummary {
    /// Items of every kind that could not be re-sealed.
    pub fn failed_total(&self) -> u64 {
        self.templates.failed_total() + self.images.failed_total() + self.probe_images.failed_total()
    }
}

/// Outcomes for one kind of sealed item.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Sealed anew under the active key by this run.
    pub resealed: u64,
    /// Sealed with the active key already.
    pub current: u64,
    /// Changed, deleted or erased while this run worked on it (nothing to do).
    pub changed_meanwhile: u64,
    /// Could not be opened (a key missing from the configuration, or damaged data), by reason.
    pub failed: BTreeMap<&'static str, u64>,
}

impl Counts {
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// Re-seals `batch` templates at a time (with their images), then the kept probe images.
pub async fn rotate(config: &Config, batch: u32, progress: &dyn Progress) -> anyhow::Result<RotationSummary> {
    let batch = batch.max(1);
    let store = open_store(config).await?;
    let keys = key_ring(config)?;
    let images = ImageStore::open(&image_backend(config))?;
    let run = Run { store: store.as_ref(), keys: &keys, images: &images, left: Mutex::default() };
    let mut summary =
        RotationSummary { active_key_id: keys.active_key_id().to_owned(), ..RotationSummary::default() };

    let total: u64 = store.template_key_usage().await?.iter().map(|u| u.templates).sum();
    progress.start("re-sealing templates and images", total);
    let mut after = None;
    loop {
        let page = store.templates_after(after, batch).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let outcomes = futures::future::join_all(page.iter().map(|t| run.template(t))).await;
        for outcome in outcomes {
            let (template, image) = outcome?;
            template.add_to(&mut summary.templates);
            if let Some(image) = image {
                image.add_to(&mut summary.images);
            }
            progress.tick();
        }
    }
    let mut after: Option<String> = None;
    loop {
        let page = store.kept_probes(after.as_deref(), batch).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.clone());
        let outcomes = futures::future::join_all(page.iter().map(|r| run.probe(r))).await;
        for outcome in outcomes {
            outcome?.add_to(&mut summary.probe_images);
        }
    }

    summary.templates_by_key = store.template_key_usage().await?;
    summary.images_left_by_key = run.left.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut in_use: Vec<String> = summary.templates_by_key.iter().map(|u| u.key_id.clone()).collect();
    in_use.extend(summary.images_left_by_key.keys().cloned());
    in_use.push(summary.active_key_id.clone());
    in_use.sort();
    in_use.dedup();
    summary.removable_key_ids = keys
        .previous_key_ids()
        .filter(|id| !in_use.iter().any(|used| used == id))
        .map(str::to_owned)
        .collect();
    summary.removable_key_ids.sort();
    summary.keys_in_use = in_use;
    let event = NewAuditEvent {
        api_key_id: None,
        action: AuditAction::TemplateKeyRotate,
        outcome: if summary.failed_total() == 0 { AuditOutcome::Ok } else { AuditOutcome::Failed },
        collection: None,
        subject_id: None,
        detail: json!({
            "active_key_id": summary.active_key_id,
            "templates_resealed": summary.templates.resealed,
            "images_resealed": summary.images.resealed + summary.probe_images.resealed,
            "failed": summary.failed_total(),
            "keys_in_use": summary.keys_in_use,
        }),
    };
    service::audit::append(store.as_ref(), &event).await;
    store.close().await;
    Ok(summary)
}

/// What became of one sealed item.
enum Outcome {
    Resealed,
    Current,
    ChangedMeanwhile,
    Failed(&'static str),
}

impl Outcome {
    fn add_to(self, counts: &mut Counts) {
        match self {
            Self::Resealed => counts.resealed += 1,
            Self::Current => counts.current += 1,
            Self::ChangedMeanwhile => counts.changed_meanwhile += 1,
            Self::Failed(why) => *counts.failed.entry(why).or_default() += 1,
        }
    }
}

struct Run<'a> {
    store: &'a dyn Store,
    keys: &'a KeyRing,
    images: &'a ImageStore,
    /// Images left sealed with another key, per key.
    left: Mutex<BTreeMap<String, u64>>,
}

impl Run<'_> {
    /// Re-seals a template, then its image. Database and image storage errors end the run (it
    /// can be resumed); what is wrong with one item is counted.
    async fn template(&self, t: &Template) -> anyhow::Result<(Outcome, Option<Outcome>)> {
        let template = if t.sealed.key_id == self.keys.active_key_id() {
            Outcome::Current
        } else {
            match self.keys.open(t.id, t.subject_id, &t.sealed) {
                Ok(values) => {
                    let sealed = self.keys.seal(t.id, t.subject_id, &values);
                    if self.store.reseal_template(t.id, &t.sealed, &sealed).await? {
                        Outcome::Resealed
                    } else {
                        Outcome::ChangedMeanwhile
                    }
                }
                Err(visage_store::crypto::CryptoError::UnknownKey(_)) => {
                    Outcome::Failed("key_not_configured")
                }
                Err(_) => Outcome::Failed("unreadable"),
            }
        };
        let image = match &t.image_ref {
            Some(reference) => Some(self.image(t.id, t.subject_id, reference).await?),
            None => None,
        };
        Ok((template, image))
    }

    async fn probe(&self, reference: &str) -> anyhow::Result<Outcome> {
        // A kept probe is sealed to its own id and no subject.
        let Ok(id) = ImageStore::id_of(reference) else { return Ok(Outcome::Failed("unreadable")) };
        self.image(id, Uuid::nil(), reference).await
    }

    async fn image(&self, id: Uuid, subject_id: Uuid, reference: &str) -> anyhow::Result<Outcome> {
        match self.images.reseal(self.keys, id, subject_id, reference).await {
            Ok(Resealed::AlreadyCurrent) => Ok(Outcome::Current),
            Ok(Resealed::From(_)) => {
                // Erased meanwhile: the erasure deleted the image before this run wrote it back.
                if !self.store.image_in_use(reference).await? {
                    let _ = self.images.delete(reference).await;
                    return Ok(Outcome::ChangedMeanwhile);
                }
                Ok(Outcome::Resealed)
            }
            Err(ImageError::NotFound) if self.store.image_in_use(reference).await? => {
                Ok(Outcome::Failed("missing"))
            }
            Err(ImageError::NotFound) => Ok(Outcome::ChangedMeanwhile),
            Err(ImageError::Crypto(err)) => {
                let why = match err {
                    visage_store::crypto::CryptoError::UnknownKey(key_id) => {
                        *self.left.lock().unwrap_or_else(|p| p.into_inner()).entry(key_id).or_default() += 1;
                        "key_not_configured"
                    }
                    _ => "unreadable",
                };
                Ok(Outcome::Failed(why))
            }
            Err(ImageError::Malformed) => Ok(Outcome::Failed("unreadable")),
            Err(err) => Err(err.into()),
        }
    }
}
