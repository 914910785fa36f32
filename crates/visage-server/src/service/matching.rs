//! Decisions: 1:1 verification and 1:N identification at a calibrated operating point, each
//! kept for later ground truth, audited and counted.

use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;
use visage_store::{CollectionId, Decision, Role, Subject, Template, VerificationMode, VerificationRecord};

use super::audit::Entry;
use super::{Caller, ServiceError, ServiceResult, analysis, audit, subjects};
use crate::config::LivenessMode;
use crate::inference::{LivenessVerdict, Pick, Probe, StageTimes};
use crate::state::App;
use visage_calibration::OperatingPoint;

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
    pub point: OperatingPoint,
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
    pub point: OperatingPoint,
    pub collection: CollectionId,
    pub probe: Probe,
}

/// The threshold for a FAR target, when one was calibrated.
pub fn operating_point(app: &App, far_target: Option<f64>) -> ServiceResult<OperatingPoint> {
    let far = far_target.unwrap_or(app.config.verification.far_target);
    app.calibration.point(far).ok_or_else(|| {
        ServiceError::InvalidRequest(format!(
            "far_target {far} is not calibrated; calibrated targets: {:?}",
            app.calibration.targets()
        ))
    })
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
    let point = operating_point(app, request.far_target)?;
    let mode = LivenessMode::for_request(request.liveness, app.config.liveness.verify, app.config.profile);
    let (subject, templates) = match &request.claim {
        Claim::Subject(id) => {
            let subject = subjects::visible(app, caller, *id, Role::Verify).await?;
            let templates = comparable_templates(app, &subject).await?;
            (Some(subject), templates)
        }
        Claim::Image(_) => (None, Vec::new()),
    };
    let probe = analysis::probe(app, caller, request.image, Pick::Configured, mode).await?;
    let search_started = Instant::now();
    let similarity = match request.claim {
        Claim::Image(reference) => {
            let reference =
                analysis::probe(app, caller, reference, Pick::Configured, LivenessMode::Off).await?;
            tracing::info_span!("search").in_scope(|| probe.face.embedding.cosine(&reference.face.embedding))
        }
        Claim::Subject(_) => tracing::info_span!("search")
            .in_scope(|| best_similarity(app, &templates, probe.face.embedding.as_slice()))?,
    };
    let search = search_started.elapsed().as_secs_f64();
    let is_match = similarity >= point.threshold;
    let decision = DecisionMade {
        mode: VerificationMode::Verify,
        collection: subject.as_ref().map(|s| &s.collection),
        subject_id: subject.as_ref().map(|s| s.id),
        similarity: Some(similarity),
        point,
        matched: is_match,
        liveness_score: liveness_score(&probe),
        detail: json!({}),
    };
    let verification_id = record_decision(app, caller, decision).await?;
    let subject_id = subject.map(|s| s.id);
    Ok((Verified { verification_id, is_match, similarity, point, subject_id, probe }, search))
}

/// The subject's templates of the running recognizer; during a model change those of another
/// are not comparable.
async fn comparable_templates(app: &App, subject: &Subject) -> ServiceResult<Vec<Template>> {
    let stored = app.store.list_templates(subject.id).await?;
    let Some(first) = stored.first() else { return Err(ServiceError::SubjectHasNoFaces) };
    let stored_model = first.model.clone();
    let templates: Vec<Template> = stored.into_iter().filter(|t| t.model == app.model).collect();
    if templates.is_empty() {
        return Err(ServiceError::ModelMismatch { stored: stored_model, running: app.model.clone() });
    }
    Ok(templates)
}

fn best_similarity(app: &App, templates: &[Template], probe: &[f32]) -> ServiceResult<f32> {
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
    let collection = request.collection;
    caller.require_in(Role::Verify, &collection)?;
    if !app.store.collection_exists(&collection).await? {
        return Err(ServiceError::CollectionNotFound);
    }
    let point = operating_point(app, request.far_target)?;
    let top_k = request.top_k.unwrap_or(DEFAULT_TOP_K).clamp(1, app.config.verification.max_top_k);
    let mode = LivenessMode::for_request(request.liveness, app.config.liveness.identify, app.config.profile);
    let probe = analysis::probe(app, caller, request.image, Pick::Configured, mode).await?;
    let search_started = Instant::now();
    let hits = tracing::info_span!("search").in_scope(|| {
        app.gallery.search(&collection, probe.face.embedding.as_slice(), point.threshold, top_k)
    });
    let search = search_started.elapsed().as_secs_f64();
    let mut candidates = Vec::with_capacity(hits.len());
    for hit in hits {
        // A subject erased since the search started is simply left out.
        if let Some(subject) = app.store.get_subject(hit.subject_id).await? {
            candidates.push(Candidate {
                subject_id: hit.subject_id,
                external_id: subject.external_id,
                similarity: hit.similarity,
            });
        }
    }
    let top = candidates.first();
    let decision = DecisionMade {
        mode: VerificationMode::Identify,
        collection: Some(&collection),
        subject_id: top.map(|c| c.subject_id),
        similarity: top.map(|c| c.similarity),
        point,
        matched: top.is_some(),
        liveness_score: liveness_score(&probe),
        detail: json!({ "candidates": candidates.len() }),
    };
    let verification_id = record_decision(app, caller, decision).await?;
    Ok((Identified { verification_id, candidates, point, collection, probe }, search))
}

fn liveness_score(probe: &Probe) -> Option<f32> {
    match probe.liveness {
        Some(LivenessVerdict::Live { score } | LivenessVerdict::Spoof { score, .. }) => Some(score),
        _ => None,
    }
}

/// A decision as it is kept and audited.
struct DecisionMade<'a> {
    mode: VerificationMode,
    collection: Option<&'a CollectionId>,
    subject_id: Option<Uuid>,
    similarity: Option<f32>,
    point: OperatingPoint,
    matched: bool,
    liveness_score: Option<f32>,
    detail: serde_json::Value,
}

/// Keeps a decision for later ground truth and writes its audit event; returns its id.
async fn record_decision(app: &App, caller: &Caller, d: DecisionMade<'_>) -> ServiceResult<Uuid> {
    let id = Uuid::now_v7();
    let decision = Decision::of(d.matched);
    app.store
        .record_verification(&VerificationRecord {
            id,
            created_at: Utc::now(),
            api_key_id: Some(caller.key_id.clone()),
            mode: d.mode,
            collection: d.collection.cloned(),
            subject_id: d.subject_id,
            similarity: d.similarity,
            threshold: d.point.threshold,
            far_target: Some(d.point.far),
            decision,
            liveness_score: d.liveness_score,
        })
        .await?;
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
    let result = match outcome {
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
            if let Some(similarity) = observed.similarity {
                metrics.confidence.with_label_values(&[mode_label]).observe(f64::from(similarity));
            }
            if observed.matched { "match" } else { "no_match" }
        }
        Err(ServiceError::SpoofDetected { .. } | ServiceError::LivenessInconclusive { .. }) => "spoof",
        Err(_) => "error",
    };
    metrics.verification_requests.with_label_values(&[mode_label, result]).inc();
    metrics
        .verification_duration
        .with_label_values(&[mode_label, "total"])
        .observe(started.elapsed().as_secs_f64());
}

fn observe_search(app: &App, mode: VerificationMode, seconds: f64) {
    app.metrics.verification_duration.with_label_values(&[mode.as_str(), "search"]).observe(seconds);
}
