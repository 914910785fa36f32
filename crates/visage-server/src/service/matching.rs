//! Decisions: 1:1 verification and 1:N identification at a calibrated operating point, each
//! kept for later ground truth, audited and counted.

use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;
use visage_face::AnalyzedFace;
use visage_store::{
    CollectionId, Decision, KeptProbe, Role, StoreResult, Subject, Template, VerificationMode,
    VerificationRecord,
};

use super::audit::Entry;
use super::calibrations::{self, Threshold};
use super::{Caller, ServiceError, ServiceResult, analysis, audit, degraded, review, subjects};
use crate::config::LivenessMode;
use crate::inference::{LivenessVerdict, Pick, Probe, StageTimes};
use crate::outage::spool::Spooled;
use crate::state::App;

/// Candidates an identification returns when the request does not say.
pub const DEFAULT_TOP_K: usize = 5;

/// What a probe is compared with in a 1:1 verification.
pub enum Claim {
    /// The enrolled subject: the best of its templates.
    Subject(Uuid),
    /// The face in a second image.
    Image(Bytes),
}

pub struct Verification {
    pub image: Bytes,
    pub claim: Claim,
    /// A calibrated FAR target; the configured one when absent.
    pub far_target: Option<f64>,
    pub liveness: Option<LivenessMode>,
}

pub struct Verified {
    pub verification_id: Uuid,
    pub is_match: bool,
    pub similarity: f32,
    pub threshold: Threshold,
    pub subject_id: Option<Uuid>,
    pub probe: Probe,
}

pub struct Identification {
    pub image: Bytes,
    pub collection: CollectionId,
    pub far_target: Option<f64>,
    /// Most candidates wanted (5 when absent); at most `verification.max_top_k` are returned.
    pub top_k: Option<usize>,
    pub liveness: Option<LivenessMode>,
}

pub struct Candidate {
    pub subject_id: Uuid,
    pub external_id: String,
    pub similarity: f32,
}

pub struct Identified {
    pub verification_id: Uuid,
    /// At or above the threshold, best first; empty for an unknown person.
    pub candidates: Vec<Candidate>,
    pub threshold: Threshold,
    pub collection: CollectionId,
    pub probe: Probe,
}

/// 1:1: is the probe the claimed subject (or the person in the second image)?
pub async fn verify(app: &App, caller: &Caller, request: Verification) -> ServiceResult<Verified> {
    let started = Instant::now();
    let outcome = verify_inner(app, caller, request).await;
    observe(
        app,
        VerificationMode::Verify,
        started,
        outcome.as_ref().map(|(v, _)| Observed {
            times: v.probe.times,
            similarity: Some(v.similarity),
            matched: v.is_match,
        }),
    );
    outcome.map(|(verified, search)| {
        observe_search(app, VerificationMode::Verify, search);
        verified
    })
}

async fn verify_inner(app: &App, caller: &Caller, request: Verification) -> ServiceResult<(Verified, f64)> {
    caller.require(Role::Verify)?;
    let mode = LivenessMode::for_request(request.liveness, app.config.liveness.verify, app.config.profile);
    let claimed = match &request.claim {
        Claim::Subject(id) => Some(claimed(app, caller, *id).await?),
        Claim::Image(_) => None,
    };
    let threshold =
        calibrations::threshold(app, claimed.as_ref().map(|c| &c.collection), request.far_target)?;
    let image = request.image.clone();
    let probe = analysis::probe(app, caller, request.image, Pick::Configured, mode).await?;
    let search_started = Instant::now();
    let similarity = match request.claim {
        Claim::Image(reference) => {
            let reference =
                analysis::probe(app, caller, reference, Pick::Configured, LivenessMode::Off).await?;
            tracing::info_span!("search").in_scope(|| probe.face.embedding.cosine(&reference.face.embedding))
        }
        Claim::Subject(_) => {
            let claimed = claimed.as_ref().expect("a subject claim was looked up");
            tracing::info_span!("search")
                .in_scope(|| claimed.best_similarity(app, probe.face.embedding.as_slice()))?
        }
    };
    let search = search_started.elapsed().as_secs_f64();
    let is_match = similarity >= threshold.point.threshold;
    let kept = review::keep_probe(app, &image).await;
    let decision = DecisionMade {
        mode: VerificationMode::Verify,
        collection: claimed.as_ref().map(|c| &c.collection),
        subject_id: claimed.as_ref().map(|c| c.id),
        similarity: Some(similarity),
        threshold: &threshold,
        matched: is_match,
        liveness_score: liveness_score(&probe),
        face: &probe.face,
        kept: kept.as_ref(),
        detail: json!({}),
    };
    let verification_id = record_decision(app, caller, decision).await?;
    let subject_id = claimed.map(|c| c.id);
    Ok((Verified { verification_id, is_match, similarity, threshold, subject_id, probe }, search))
}

/// The subject a verification claims, and where its templates come from.
struct Claimed {
    id: Uuid,
    collection: CollectionId,
    /// From the database: the subject's templates of the running recognizer. `None`: the
    /// database cannot be reached and the 1:N index holds them.
    templates: Option<Vec<Template>>,
}

impl Claimed {
    fn best_similarity(&self, app: &App, probe: &[f32]) -> ServiceResult<f32> {
        let Some(templates) = &self.templates else {
            // The card was there a moment ago; an erasure since then leaves nothing to match.
            return app.gallery.best_of_subject(self.id, probe).ok_or(ServiceError::SubjectNotFound);
        };
        let mut best = f32::NEG_INFINITY;
        for t in templates {
            let values = app
                .keys
                .open(t.id, t.subject_id, &t.sealed)
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            best = best.max(visage_index::dot(&values, probe));
        }
        Ok(best)
    }
}

/// The claimed subject, when the caller may see it, with its templates: from the database,
/// or while it cannot be reached from the 1:N index (which holds every template of the
/// running recognizer). A key scoped to other collections learns nothing: "not found".
async fn claimed(app: &App, caller: &Caller, id: Uuid) -> ServiceResult<Claimed> {
    caller.require(Role::Verify)?;
    if !app.outage.serving_from_memory() {
        match stored_subject(app, id).await {
            Ok(Some((subject, stored))) if caller.scope.allows(&subject.collection) => {
                // Consent that ended takes the subject out of verification at once; the
                // retention job erases it later.
                subjects::consent_holds(&subject)?;
                let templates = comparable_templates(app, stored)?;
                return Ok(Claimed { id, collection: subject.collection, templates: Some(templates) });
            }
            Ok(_) => return Err(ServiceError::SubjectNotFound),
            Err(err) if app.outage.read_from_memory_after(&err) => {}
            Err(err) => return Err(err.into()),
        }
    }
    // Only subjects with templates have a card: of any other the index cannot say whether it
    // exists, and "not found" might be false.
    let card = app.gallery.subject(id).ok_or(ServiceError::StorageUnavailable)?;
    if !caller.scope.allows(&card.collection) {
        return Err(ServiceError::SubjectNotFound);
    }
    Ok(Claimed { id, collection: card.collection, templates: None })
}

async fn stored_subject(app: &App, id: Uuid) -> StoreResult<Option<(Subject, Vec<Template>)>> {
    let Some(subject) = app.store.get_subject(id).await? else { return Ok(None) };
    let templates = app.store.list_templates(id).await?;
    Ok(Some((subject, templates)))
}

/// The subject's templates of the running recognizer; during a model change those of another
/// are not comparable.
fn comparable_templates(app: &App, stored: Vec<Template>) -> ServiceResult<Vec<Template>> {
    let Some(first) = stored.first() else { return Err(ServiceError::SubjectHasNoFaces) };
    let stored_model = first.model.clone();
    let templates: Vec<Template> = stored.into_iter().filter(|t| t.model == app.model).collect();
    if templates.is_empty() {
        return Err(ServiceError::ModelMismatch { stored: stored_model, running: app.model.clone() });
    }
    Ok(templates)
}

/// 1:N: who in the collection is this? Never the nearest stranger: only candidates at or above
/// the threshold.
pub async fn identify(app: &App, caller: &Caller, request: Identification) -> ServiceResult<Identified> {
    let started = Instant::now();
    let outcome = identify_inner(app, caller, request).await;
    observe(
        app,
        VerificationMode::Identify,
        started,
        outcome.as_ref().map(|(i, _)| Observed {
            times: i.probe.times,
            similarity: i.candidates.first().map(|c| c.similarity),
            matched: !i.candidates.is_empty(),
        }),
    );
    outcome.map(|(identified, search)| {
        observe_search(app, VerificationMode::Identify, search);
        identified
    })
}

async fn identify_inner(
    app: &App,
    caller: &Caller,
    request: Identification,
) -> ServiceResult<(Identified, f64)> {
    let search = Search::prepare(app, caller, &request).await?;
    let image = request.image.clone();
    let probe = analysis::probe(app, caller, request.image, Pick::Configured, search.mode).await?;
    let kept = review::keep_probe(app, &image).await;
    let found =
        search.face(app, caller, &probe.face, probe.liveness.as_ref(), kept.as_ref(), json!({})).await?;
    let Search { collection, threshold, .. } = search;
    let identified = Identified {
        verification_id: found.verification_id,
        candidates: found.candidates,
        threshold,
        collection,
        probe,
    };
    Ok((identified, found.seconds))
}

/// What an identification searches with, checked once per request.
struct Search {
    collection: CollectionId,
    threshold: Threshold,
    top_k: usize,
    mode: LivenessMode,
}

/// One face searched, and the decision kept for it.
struct Found {
    candidates: Vec<Candidate>,
    verification_id: Uuid,
    /// Seconds in the index search alone.
    seconds: f64,
}

impl Search {
    async fn prepare(app: &App, caller: &Caller, request: &Identification) -> ServiceResult<Self> {
        let collection = request.collection.clone();
        caller.require_in(Role::Verify, &collection)?;
        let exists = if app.outage.serving_from_memory() {
            None
        } else {
            match app.store.collection_exists(&collection).await {
                Ok(exists) => Some(exists),
                Err(err) if app.outage.read_from_memory_after(&err) => None,
                Err(err) => return Err(err.into()),
            }
        };
        match exists {
            Some(false) => return Err(ServiceError::CollectionNotFound),
            // Without the database, a collection is known by its templates or from the last
            // read of the collections; a newer one cannot be told from none at all.
            None if !app.gallery.has_collection(&collection) && !app.outage.known_collection(&collection) => {
                return Err(ServiceError::StorageUnavailable);
            }
            _ => {}
        }
        let threshold = calibrations::threshold(app, Some(&collection), request.far_target)?;
        let top_k = request.top_k.unwrap_or(DEFAULT_TOP_K).clamp(1, app.config.verification.max_top_k);
        let mode =
            LivenessMode::for_request(request.liveness, app.config.liveness.identify, app.config.profile);
        Ok(Self { collection, threshold, top_k, mode })
    }

    /// Searches the collection for one face and keeps the decision (audited, ready for feedback).
    async fn face(
        &self,
        app: &App,
        caller: &Caller,
        face: &AnalyzedFace,
        liveness: Option<&LivenessVerdict>,
        kept: Option<&KeptProbe>,
        detail: serde_json::Value,
    ) -> ServiceResult<Found> {
        let started = Instant::now();
        let hits = tracing::info_span!("search").in_scope(|| {
            let at = self.threshold.point.threshold;
            app.gallery.search(&self.collection, face.embedding.as_slice(), at, self.top_k)
        });
        let seconds = started.elapsed().as_secs_f64();
        let candidates = candidates_of(app, hits);
        let top = candidates.first();
        let mut detail = detail;
        detail["candidates"] = json!(candidates.len());
        let decision = DecisionMade {
            mode: VerificationMode::Identify,
            collection: Some(&self.collection),
            subject_id: top.map(|c| c.subject_id),
            similarity: top.map(|c| c.similarity),
            threshold: &self.threshold,
            matched: top.is_some(),
            liveness_score: liveness.and_then(LivenessVerdict::score),
            face,
            kept,
            detail,
        };
        let verification_id = record_decision(app, caller, decision).await?;
        Ok(Found { candidates, verification_id, seconds })
    }
}

/// One face of a photo identified on its own.
pub struct IdentifiedFace {
    pub face: AnalyzedFace,
    pub liveness: Option<LivenessVerdict>,
    /// Whether the face was searched: it passed the quality gate and, when liveness is
    /// required, was judged live. Faces that were not have no candidates and no decision.
    pub searched: bool,
    pub candidates: Vec<Candidate>,
    /// The decision kept for this face, for feedback; absent when it was not searched.
    pub verification_id: Option<Uuid>,
}

pub struct IdentifiedAll {
    pub width: u32,
    pub height: u32,
    /// Every detected face, best detection first.
    pub faces: Vec<IdentifiedFace>,
    pub threshold: Threshold,
    pub collection: CollectionId,
}

/// 1:N for every face of a photo: each face good enough to match is searched on its own and
/// gets its own decision (one verification record each, so each can be labelled); faces that
/// fail the quality gate, or liveness when it is required, are returned unsearched.
pub async fn identify_all(
    app: &App,
    caller: &Caller,
    request: Identification,
) -> ServiceResult<IdentifiedAll> {
    let started = Instant::now();
    let outcome = identify_all_inner(app, caller, request).await;
    let mode = VerificationMode::Identify;
    match &outcome {
        // Each searched face is a decision of its own; the request is timed once.
        Ok(all) => {
            for face in all.faces.iter().filter(|f| f.searched) {
                count_decision(
                    app,
                    mode,
                    face.candidates.first().map(|c| c.similarity),
                    !face.candidates.is_empty(),
                );
            }
            observe_total(app, mode, started);
        }
        Err(err) => observe(app, mode, started, Err(err)),
    }
    outcome
}

async fn identify_all_inner(
    app: &App,
    caller: &Caller,
    request: Identification,
) -> ServiceResult<IdentifiedAll> {
    let search = Search::prepare(app, caller, &request).await?;
    let image = request.image.clone();
    let detection = analysis::detect(app, request.image, search.mode != LivenessMode::Off).await?;
    let searchable = |face: &AnalyzedFace, liveness: &Option<LivenessVerdict>| {
        face.quality.passed()
            && (search.mode != LivenessMode::Require
                || matches!(liveness, Some(LivenessVerdict::Live { .. })))
    };
    // One kept photo for every decision it leads to.
    let kept = if detection.faces.iter().any(|(face, liveness)| searchable(face, liveness)) {
        review::keep_probe(app, &image).await
    } else {
        None
    };
    let mut faces = Vec::with_capacity(detection.faces.len());
    for (face, liveness) in detection.faces {
        let searched = searchable(&face, &liveness);
        let (candidates, verification_id) = if searched {
            let found = search
                .face(app, caller, &face, liveness.as_ref(), kept.as_ref(), json!({ "faces": "all" }))
                .await?;
            (found.candidates, Some(found.verification_id))
        } else {
            (Vec::new(), None)
        };
        faces.push(IdentifiedFace { face, liveness, searched, candidates, verification_id });
    }
    let Search { collection, threshold, .. } = search;
    Ok(IdentifiedAll { width: detection.width, height: detection.height, faces, threshold, collection })
}

/// The subjects behind search hits, named by the index's cards (no database round trip, and
/// none needed while it is down); a subject erased since the search is left out.
fn candidates_of(app: &App, hits: Vec<visage_index::Candidate>) -> Vec<Candidate> {
    hits.into_iter()
        .filter_map(|hit| {
            let card = app.gallery.subject(hit.subject_id)?;
            Some(Candidate {
                subject_id: hit.subject_id,
                external_id: card.external_id,
                similarity: hit.similarity,
            })
        })
        .collect()
}

fn liveness_score(probe: &Probe) -> Option<f32> {
    probe.liveness.as_ref().and_then(LivenessVerdict::score)
}

/// A decision as it is kept and audited.
struct DecisionMade<'a> {
    mode: VerificationMode,
    collection: Option<&'a CollectionId>,
    subject_id: Option<Uuid>,
    similarity: Option<f32>,
    threshold: &'a Threshold,
    matched: bool,
    liveness_score: Option<f32>,
    /// The probe face, for its quality measures.
    face: &'a AnalyzedFace,
    /// The probe image kept for review, when retention is on.
    kept: Option<&'a KeptProbe>,
    detail: serde_json::Value,
}

/// Keeps a decision for later ground truth and writes its audit event; returns its id.
async fn record_decision(app: &App, caller: &Caller, d: DecisionMade<'_>) -> ServiceResult<Uuid> {
    let id = Uuid::now_v7();
    let decision = Decision::of(d.matched);
    let record = VerificationRecord {
        id,
        created_at: Utc::now(),
        api_key_id: Some(caller.key_id.clone()),
        mode: d.mode,
        collection: d.collection.cloned(),
        subject_id: d.subject_id,
        similarity: d.similarity,
        threshold: d.threshold.point.threshold,
        far_target: Some(d.threshold.point.far),
        decision,
        liveness_score: d.liveness_score,
        probe_quality: serde_json::to_value(d.face.quality.measures).ok(),
        probe: d.kept.cloned(),
        calibration: Some(d.threshold.calibration.clone()),
        model: Some(app.model.clone()),
    };
    keep_decision(app, record).await?;
    let mut detail = d.detail;
    detail["verification_id"] = json!(id);
    // An identification names no subject in the audit trail: it claimed nobody.
    let audited_subject = if d.mode == VerificationMode::Verify { d.subject_id } else { None };
    audit::record(
        app,
        caller,
        Entry::new(d.mode.into(), decision.into())
            .on_maybe(d.collection)
            .subject_maybe(audited_subject)
            .detail(detail),
    )
    .await;
    Ok(id)
}

/// Writes the decision to the database or, while it cannot be reached, to the spool.
async fn keep_decision(app: &App, record: VerificationRecord) -> ServiceResult<()> {
    if !app.outage.serving_from_memory() {
        match app.store.record_verification(&record).await {
            Ok(_) => return Ok(()),
            Err(err) if app.outage.read_from_memory_after(&err) => {}
            Err(err) => return Err(err.into()),
        }
    }
    degraded::spool(app, Spooled::Decision(record)).await.map_err(|err| {
        tracing::error!(error = %err, "a decision could be kept neither in the database nor in the spool");
        ServiceError::StorageUnavailable
    })
}

/// What the metrics need to know of a finished decision.
struct Observed {
    times: StageTimes,
    similarity: Option<f32>,
    matched: bool,
}

/// Counts a finished verification or identification, its stages and its score.
fn observe(app: &App, mode: VerificationMode, started: Instant, outcome: Result<Observed, &ServiceError>) {
    let mode_label = mode.as_str();
    let metrics = &app.metrics;
    match outcome {
        Ok(observed) => {
            let times = &observed.times;
            let stages = [
                ("decode", Some(times.decode)),
                ("detect", Some(times.detect)),
                ("embed", Some(times.embed)),
                ("liveness", times.liveness),
            ];
            for (stage, seconds) in stages {
                if let Some(seconds) = seconds {
                    metrics.verification_duration.with_label_values(&[mode_label, stage]).observe(seconds);
                }
            }
            count_decision(app, mode, observed.similarity, observed.matched);
        }
        Err(err) => {
            let result = match err {
                ServiceError::SpoofDetected { .. } | ServiceError::LivenessInconclusive { .. } => "spoof",
                _ => "error",
            };
            metrics.verification_requests.with_label_values(&[mode_label, result]).inc();
        }
    }
    observe_total(app, mode, started);
}
/// Counts one decision and its score.
fn count_decision(app: &App, mode: VerificationMode, similarity: Option<f32>, matched: bool) {
    if let Some(similarity) = similarity {
        app.metrics.confidence.with_label_values(&[mode.as_str()]).observe(f64::from(similarity));
    }
    let result = if matched { "match" } else { "no_match" };
    app.metrics.verification_requests.with_label_values(&[mode.as_str(), result]).inc();
}

fn observe_total(app: &App, mode: VerificationMode, started: Instant) {
    app.metrics
        .verification_duration
        .with_label_values(&[mode.as_str(), "total"])
        .observe(started.elapsed().as_secs_f64());
}

fn observe_search(app: &App, mode: VerificationMode, seconds: f64) {
    app.metrics.verification_duration.with_label_values(&[mode.as_str(), "search"]).observe(seconds);
}
