//! A recognizer change without downtime (`visage reembed`): every face gets a twin template
//! of the new recognizer, made from its stored enrolment image, while the running replicas keep
//! matching with the old templates (each replica loads and compares only the templates of the
//! recognizer it runs). Once every face has its twin the replicas are restarted on the new
//! recognizer one by one, and `--prune` deletes the old templates and their images.
//!
//! Resumable: a twin names its source (`source_template_id`), so a run skips the faces done
//! before, and a face deleted or erased meanwhile gets no twin (the store refuses a twin whose
//! source is gone).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;
use visage_face::{FaceError, RecognizerKind};
use visage_objects::{ImageError, ImageStore};
use visage_store::crypto::KeyRing;
use visage_store::{AuditAction, AuditOutcome, ModelStatus, NewAuditEvent, Store, Template, TwinFilter};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::inference::{InferencePool, Pick, Probe};
use crate::resources::{key_ring, load_pipeline, open_store};
use crate::service::images::{Deletion, delete_images};
use crate::service::{self, enum_name};

/// Reports how far a run is; the command line draws a progress bar with it.
pub trait Progress: Sync {
    /// `total` templates are about to be worked on.
    fn start(&self, what: &'static str, total: u64);
    /// One more is done.
    fn tick(&self);
}

/// No progress reports.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: &'static str, _: u64) {}
    fn tick(&self) {}
}

/// What a re-embedding run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReembedSummary {
    pub to: String,
    /// Twins stored by this run.
    pub done: u64,
    /// Templates left alone, by reason: `no_image` (enrolled without a stored image: the face
    /// must be enrolled again), `changed_meanwhile` (deleted, erased or re-embedded by another
    /// run while this one worked on it).
    pub skipped: BTreeMap<&'static str, u64>,
    /// Templates whose image gave no twin, by reason: the stored image no longer yields one
    /// face that passes the enrolment rules with the new recognizer (`no_face_detected`,
    /// `multiple_faces`, `low_quality`, ...), or cannot be read (`image_missing`,
    /// `image_unreadable`). Such faces must be enrolled again (or pruned with `--force`).
    pub failed: BTreeMap<&'static str, u64>,
    /// Images of twins that were not stored, which could not be deleted (see the
    /// `image.delete` audit event).
    pub image_deletions_failed: u64,
    /// Where the store stands after the run.
    pub status: ModelStatusDto,
}

impl ReembedSummary {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// [`ModelStatus`] as printed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelStatusDto {
    /// Templates of the target recognizer.
    pub current: u64,
    /// Templates of other recognizers whose face has a twin of the target (pruning deletes them).
    pub twinned: u64,
    /// Templates of other recognizers whose face has none yet.
    pub untwinned: u64,
}

impl From<ModelStatus> for ModelStatusDto {
    fn from(s: ModelStatus) -> Self {
        Self { current: s.current, twinned: s.twinned, untwinned: s.untwinned }
    }
}

/// What one template came to.
enum Outcome {
    Done,
    Skipped(&'static str),
    Failed(&'static str),
}

struct Run<'a> {
    store: &'a dyn Store,
    images: &'a ImageStore,
    keys: &'a KeyRing,
    pool: &'a InferencePool,
    model: &'a str,
    image_deletions_failed: std::sync::atomic::AtomicU64,
}

/// Re-embeds, with recognizer `to`, every original template of another recognizer that has a
/// stored image and no twin of `to` yet; `batch` templates at a time (read together, embedded
/// in batches side by side on `inference.workers` threads). Reads the configuration `visage
/// serve` reads: database, keys, image storage, models directory and backend.
pub async fn reembed(
    config: &Config,
    to: RecognizerKind,
    batch: u32,
    progress: &dyn Progress,
) -> anyhow::Result<ReembedSummary> {
    let batch = batch.max(1);
    let store = open_store(config).await?;
    let keys = key_ring(config)?;
    let images = ImageStore::open(&crate::resources::image_backend(config))?;
    let model = enum_name(&to);
    let mut summary = ReembedSummary { to: model.clone(), ..ReembedSummary::default() };
    let before = store.model_status(&model).await?;
    let total = before.reembeddable + before.without_image;
    progress.start("re-embedding", total);
    if total > 0 {
        let pool = start_pool(config, to, batch as usize).await?;
        let run = Run {
            store: store.as_ref(),
            images: &images,
            keys: &keys,
            pool: &pool,
            model: &model,
            image_deletions_failed: Default::default(),
        };
        let mut after = None;
        loop {
            let page = store.other_model_templates(&model, TwinFilter::Missing, after, batch).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for outcome in run.page(&page).await? {
                match outcome {
                    Outcome::Done => summary.done += 1,
                    Outcome::Skipped(why) => *summary.skipped.entry(why).or_default() += 1,
                    Outcome::Failed(why) => *summary.failed.entry(why).or_default() += 1,
                }
                progress.tick();
            }
        }
        summary.image_deletions_failed = run.image_deletions_failed.into_inner();
    }
    summary.status = store.model_status(&model).await?.into();
    audit(
        store.as_ref(),
        AuditAction::ModelReembed,
        json!({
            "to": model,
            "done": summary.done,
            "skipped": summary.skipped_total(),
            "failed": summary.failed_total(),
        }),
    )
    .await;
    store.close().await;
    Ok(summary)
}

/// The target recognizer's pipeline on its own inference threads.
async fn start_pool(config: &Config, to: RecognizerKind, batch: usize) -> anyhow::Result<InferencePool> {
    let mut config = config.clone();
    config.models.recognizer = to;
    let workers = match config.inference.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    // The liveness threshold does not matter: re-embedding judges no liveness.
    let pipeline = tokio::task::spawn_blocking(move || load_pipeline(&config, workers))
        .await?
        .with_context(|| format!("loading the models of recognizer {}", enum_name(&to)))?;
    Ok(InferencePool::start(Arc::new(pipeline), workers, batch))
}

/// A stored enrolment image, wiped from memory when the last holder drops it.
type Image = Arc<Zeroizing<Vec<u8>>>;

impl Run<'_> {
    /// Makes the twins of a page of templates: their images read side by side, embedded in
    /// batches side by side on the inference threads ([`InferencePool::share`]), the twins
    /// stored side by side. Errors of the image storage, the database or the inference end the
    /// run (it can be resumed); what is wrong with one image is counted.
    async fn page(&self, page: &[Template]) -> anyhow::Result<Vec<Outcome>> {
        let read = futures::future::join_all(page.iter().map(|source| self.read(source))).await;
        let mut outcomes = Vec::with_capacity(page.len());
        let mut found = Vec::with_capacity(page.len());
        for (source, read) in page.iter().zip(read) {
            match read? {
                Ok(image) => found.push((source, image)),
                Err(outcome) => outcomes.push(outcome),
            }
        }
        let batches = found.chunks(self.pool.share(found.len())).map(|batch| {
            let images: Vec<Image> = batch.iter().map(|(_, image)| image.clone()).collect();
            // The enrolment rules: exactly one face that passes the quality gate.
            self.pool.run(move |p| {
                let images: Vec<&[u8]> = images.iter().map(|image| image.as_slice()).collect();
                p.probe_many(&images, Pick::OnlyGoodFace, false)
            })
        });
        let mut probes = Vec::with_capacity(found.len());
        for batch in futures::future::join_all(batches).await {
            probes.extend(batch?.context("embedding stored images")?);
        }
        let twins = found.iter().zip(probes).map(|((source, image), probe)| self.twin(source, image, probe));
        for twin in futures::future::join_all(twins).await {
            outcomes.push(twin?);
        }
        Ok(outcomes)
    }

    /// The stored image of a template, or why it has none to give.
    async fn read(&self, source: &Template) -> anyhow::Result<Result<Image, Outcome>> {
        let Some(reference) = &source.image_ref else { return Ok(Err(Outcome::Skipped("no_image"))) };
        match self.images.get(self.keys, source.id, source.subject_id, reference).await {
            Ok(image) => Ok(Ok(Arc::new(image))),
            Err(ImageError::NotFound) => Ok(Err(Outcome::Failed("image_missing"))),
            Err(ImageError::Crypto(_) | ImageError::Malformed) => {
                Ok(Err(Outcome::Failed("image_unreadable")))
            }
            Err(err) => Err(err).context("reading a stored image"),
        }
    }

    /// Stores the twin of one template from its image's probe.
    async fn twin(
        &self,
        source: &Template,
        image: &[u8],
        probe: Result<Probe, FaceError>,
    ) -> anyhow::Result<Outcome> {
        let probe = match probe {
            Ok(probe) => probe,
            Err(err) if err.is_client_error() => return Ok(Outcome::Failed(err.code().as_str())),
            Err(err) => return Err(err).context("embedding a stored image"),
        };
        if !probe.face.quality.passed() {
            return Ok(Outcome::Failed("low_quality"));
        }
        // Each template owns its image, sealed to its own ids.
        let id = Uuid::now_v7();
        let image_ref = self
            .images
            .put(self.keys, id, source.subject_id, image)
            .await
            .context("storing the image of a re-embedded template")?;
        let twin = Template {
            id,
            subject_id: source.subject_id,
            model: self.model.to_owned(),
            sealed: self.keys.seal(id, source.subject_id, probe.face.embedding.as_slice()),
            quality: serde_json::to_value(probe.face.quality.measures).expect("measures serialize"),
            image_ref: Some(image_ref.clone()),
            // The face was enrolled then; the twin is only another view of it.
            created_at: source.created_at,
            source_template_id: Some(source.id),
        };
        let stored = self.store.add_twin(&twin).await;
        if !matches!(stored, Ok(true)) {
            let failed =
                delete_images(self.images, self.store, &[image_ref], Deletion::ReembedRollback).await;
            self.image_deletions_failed.fetch_add(failed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        match stored {
            Ok(true) => Ok(Outcome::Done),
            Ok(false) => Ok(Outcome::Skipped("changed_meanwhile")),
            Err(err) => Err(err).context("storing a re-embedded template"),
        }
    }
}

/// What pruning did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneSummary {
    pub to: String,
    /// Templates of other recognizers deleted, with their images.
    pub deleted: u64,
    /// Templates kept because their image could not be deleted (named in an `image.delete`
    /// audit event); the next `--prune` tries them again.
    pub kept_image_not_deleted: u64,
    pub status: ModelStatusDto,
}

/// Deletes the templates of recognizers other than `to`, images first, once every face has a
/// twin of `to`; with `force` also the faces without one (they are lost: enrol them again).
pub async fn prune(
    config: &Config,
    to: RecognizerKind,
    force: bool,
    batch: u32,
    progress: &dyn Progress,
) -> anyhow::Result<PruneSummary> {
    let batch = batch.max(1);
    let store = open_store(config).await?;
    let images = ImageStore::open(&crate::resources::image_backend(config))?;
    let model = enum_name(&to);
    let before = store.model_status(&model).await?;
    if before.untwinned > 0 && !force {
        store.close().await;
        anyhow::bail!(
            "{} templates of other recognizers have no {model} twin yet ({} of them can be re-embedded, \
             {} have no stored image): run `visage reembed --to {model}` first; faces whose image gives \
             no twin must be enrolled again or deleted. --force deletes them anyway",
            before.untwinned,
            before.reembeddable,
            before.without_image
        );
    }
    let filter = if force { TwinFilter::Any } else { TwinFilter::Present };
    progress.start("pruning", if force { before.twinned + before.untwinned } else { before.twinned });
    let mut summary = PruneSummary { to: model.clone(), ..PruneSummary::default() };
    let mut after = None;
    loop {
        let page = store.other_model_templates(&model, filter, after, batch).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let references: Vec<String> = page.iter().filter_map(|t| t.image_ref.clone()).collect();
        // Images first: a template is deleted only once its image is, so nothing is orphaned;
        // one whose image stays is tried again by the next --prune.
        let failed = delete_images(&images, store.as_ref(), &references, Deletion::Prune).await;
        let ids: Vec<Uuid> = page
            .iter()
            .filter(|t| t.image_ref.as_ref().is_none_or(|r| !failed.contains(r)))
            .map(|t| t.id)
            .collect();
        summary.deleted += store.delete_templates(&ids).await?;
        summary.kept_image_not_deleted += (page.len() - ids.len()) as u64;
        for _ in &page {
            progress.tick();
        }
    }
    summary.status = store.model_status(&model).await?.into();
    audit(
        store.as_ref(),
        AuditAction::ModelPrune,
        json!({ "to": model, "deleted": summary.deleted, "kept": summary.kept_image_not_deleted, "force": force }),
    )
    .await;
    store.close().await;
    Ok(summary)
}

async fn audit(store: &dyn Store, action: AuditAction, detail: serde_json::Value) {
    let event = NewAuditEvent {
        api_key_id: None,
        action,
        outcome: AuditOutcome::Ok,
        collection: None,
        subject_id: None,
        detail,
    };
    service::audit::append(store, &event).await;
}
