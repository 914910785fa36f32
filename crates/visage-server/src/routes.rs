//! The HTTP handlers. Each checks the caller, runs inference on the pool, then storage, then
//! writes the audit trail.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use bytes::Bytes;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;
use visage_calibration::OperatingPoint;
use visage_store::{
    AuditAction, AuditOutcome, CollectionId, Consent, Labelling, NewSubject, Role, Template, Truth,
    VerificationMode, VerificationRecord,
};

use crate::app::{App, AppState};
use crate::auth::Caller;
use crate::config::LivenessMode;
use crate::dto::*;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::images::Deletion;
use crate::input::{IMAGE_FIELD, ImageForm, REFERENCE_FIELD};
use crate::pipeline::{LivenessVerdict, Pick, Probe, StageTimes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .merge(crate::openapi::docs())
        .route("/v1/detect", post(detect))
        .route("/v1/liveness", post(liveness))
        .route("/v1/verify", post(verify))
        .route("/v1/identify", post(identify))
        .route("/v1/collections", post(create_collection).get(list_collections))
        .route("/v1/subjects", post(create_subject).get(list_subjects))
        .route("/v1/subjects/{id}", get(get_subject).delete(erase_subject))
        .route("/v1/subjects/{id}/faces", post(enrol_faces).get(list_faces))
        .route("/v1/subjects/{id}/faces/{face_id}", delete(delete_face))
        .route("/v1/verifications/{id}/feedback", post(feedback))
        .route("/v1/audit", get(list_audit))
        .route("/metrics/prometheus", get(prometheus_metrics))
        .route("/metrics", get(prometheus_metrics))
}

fn parse_collection(name: Option<&str>) -> ApiResult<CollectionId> {
    name.map_or_else(
        || Ok(CollectionId::default_collection()),
        |n| CollectionId::parse(n).map_err(ApiError::InvalidRequest),
    )
}

impl App {
    fn operating_point(&self, far_target: Option<f64>) -> ApiResult<OperatingPoint> {
        let far = far_target.unwrap_or(self.config.verification.far_target);
        self.calibration.point(far).ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "far_target {far} is not calibrated; calibrated targets: {:?}",
                self.calibration.targets()
            ))
        })
    }

    /// Analyses a probe on the inference pool and applies the liveness mode.
    async fn probe(
        &self,
        caller: &Caller,
        bytes: Bytes,
        pick: Pick,
        mode: LivenessMode,
    ) -> ApiResult<(Probe, Option<LivenessDto>)> {
        let with_liveness = mode != LivenessMode::Off;
        let probe = self.pool.run(move |p| p.probe(&bytes, pick, with_liveness)).await??;
        if let Some(verdict) = &probe.liveness {
            self.count_liveness(verdict);
        }
        let liveness = probe.liveness.as_ref().map(|v| LivenessDto::new(v, self.liveness_threshold));
        if mode == LivenessMode::Require {
            match probe.liveness.as_ref() {
                Some(LivenessVerdict::Spoof { score, attack_type }) => {
                    let attack = enum_name(attack_type);
                    self.audit(
                        Some(caller),
                        AuditAction::LivenessSpoof,
                        AuditOutcome::Refused,
                        None,
                        None,
                        json!({ "attack_type": attack }),
                    )
                    .await;
                    return Err(ApiError::SpoofDetected {
                        score: *score,
                        attack_type: Some(if attack == "print" { "print" } else { "unknown" }),
                    });
                }
                Some(LivenessVerdict::Inconclusive { reasons }) => {
                    return Err(ApiError::LivenessInconclusive { reasons: reasons.clone() });
                }
                _ => {}
            }
        }
        Ok((probe, liveness))
    }

    fn count_liveness(&self, verdict: &LivenessVerdict) {
        self.metrics.liveness_checks.with_label_values(&[verdict.result()]).inc();
        if let LivenessVerdict::Spoof { attack_type, .. } = verdict {
            self.metrics.spoofing_attacks.with_label_values(&[&enum_name(attack_type)]).inc();
        }
    }

    /// Counts a finished verification or identification, its stages and its score.
    fn observe(&self, mode: VerificationMode, started: Instant, outcome: Result<&Observed, &ApiError>) {
        let mode_label = mode.as_str();
        let result = match outcome {
            Ok(observed) => {
                let times = &observed.times;
                let stages = [
                    ("decode", Some(times.decode)),
                    ("detect", Some(times.detect)),
                    ("embed", Some(times.embed)),
                    ("liveness", times.liveness),
                    ("search", observed.search),
                ];
                for (stage, seconds) in stages {
                    if let Some(seconds) = seconds {
                        self.metrics
                            .verification_duration
                            .with_label_values(&[mode_label, stage])
                            .observe(seconds);
                    }
                }
                if let Some(similarity) = observed.similarity {
                    self.metrics.confidence.with_label_values(&[mode_label]).observe(f64::from(similarity));
                }
                if observed.matched { "match" } else { "no_match" }
            }
            Err(ApiError::SpoofDetected { .. } | ApiError::LivenessInconclusive { .. }) => "spoof",
            Err(_) => "error",
        };
        self.metrics.verification_requests.with_label_values(&[mode_label, result]).inc();
        self.metrics
            .verification_duration
            .with_label_values(&[mode_label, "total"])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Keeps a decision for later ground truth and writes its audit event; returns its id.
    async fn record_decision(&self, caller: &Caller, d: Decision<'_>) -> ApiResult<Uuid> {
        let id = Uuid::now_v7();
        let decision = visage_store::Decision::of(d.matched);
        self.store
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
                liveness_score: d.liveness.and_then(|l| l.score),
            })
            .await?;
        let mut detail = d.detail;
        detail["verification_id"] = json!(id);
        // An identification names no subject in the audit trail: it claimed nobody.
        let audited_subject = if d.mode == VerificationMode::Verify { d.subject_id } else { None };
        self.audit(Some(caller), d.mode.into(), decision.into(), d.collection, audited_subject, detail).await;
        Ok(id)
    }

    async fn subject_for(&self, caller: &Caller, id: Uuid, role: Role) -> ApiResult<visage_store::Subject> {
        caller.require(role)?;
        let subject = self.store.get_subject(id).await?.ok_or(ApiError::SubjectNotFound)?;
        // A key scoped to other collections learns nothing about this subject.
        if !caller.scope.allows(&subject.collection) {
            return Err(ApiError::SubjectNotFound);
        }
        Ok(subject)
    }
}

#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = HealthDto)))]
/// The process is up.
pub async fn live() -> Json<HealthDto> {
    Json(HealthDto { status: "ok".into(), checks: serde_json::Map::new() })
}

#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = HealthDto), (status = 503, description = "not ready", body = HealthDto)))]
/// Ready to serve: models loaded and warmed up, storage answering.
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<HealthDto>) {
    let mut checks = serde_json::Map::new();
    let models_ok = app.ready.load(Ordering::SeqCst);
    checks.insert("models".into(), json!(if models_ok { "ok" } else { "not ready" }));
    let storage_ok = app.store.ping().await.is_ok();
    checks.insert("storage".into(), json!(if storage_ok { "ok" } else { "unavailable" }));
    checks.insert("inference_queue".into(), json!(app.pool.queue_depth()));
    checks.insert("index_version".into(), json!(app.gallery.version()));
    // Without Redis the service keeps serving on per-replica state: not a reason to be unready.
    checks.insert("redis".into(), json!(app.shared.readiness().await));
    let ok = models_ok && storage_ok;
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(HealthDto { status: if ok { "ok" } else { "unavailable" }.into(), checks }))
}

#[utoipa::path(post, path = "/v1/detect", tag = "analysis",
    params(("liveness" = Option<bool>, Query, description = "also judge liveness of every face")),
    request_body(content((ImageUpload = "multipart/form-data"), (ImageUpload = "application/json"), ("image/jpeg"), ("image/png"), ("image/webp"))),
    responses((status = 200, body = DetectResponse), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
/// Every face of an image: box, landmarks, detection score, quality; liveness on request.
pub async fn detect(
    State(app): State<AppState>,
    caller: Caller,
    mut form: ImageForm,
) -> ApiResult<Json<DetectResponse>> {
    caller.require(Role::Verify)?;
    let params: DetectParams = form.params()?;
    let bytes = form.take(IMAGE_FIELD).ok_or(ApiError::ImageMissing)?;
    let with_liveness = params.liveness.unwrap_or(false);
    let detection = app.pool.run(move |p| p.detect_all(&bytes, with_liveness)).await??;
    for verdict in detection.faces.iter().filter_map(|(_, verdict)| verdict.as_ref()) {
        app.count_liveness(verdict);
    }
    let faces = detection
        .faces
        .iter()
        .map(|(face, verdict)| {
            FaceDto::new(face, verdict.as_ref().map(|v| LivenessDto::new(v, app.liveness_threshold)))
        })
        .collect();
    Ok(Json(DetectResponse { width: detection.width, height: detection.height, faces }))
}

#[utoipa::path(post, path = "/v1/liveness", tag = "analysis",
    request_body(content((ImageUpload = "multipart/form-data"), (ImageUpload = "application/json"), ("image/jpeg"), ("image/png"), ("image/webp"))),
    responses((status = 200, body = LivenessResponse), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
/// Passive liveness of the face in the image: live or spoof, score, attack type.
pub async fn liveness(
    State(app): State<AppState>,
    caller: Caller,
    mut form: ImageForm,
) -> ApiResult<Json<LivenessResponse>> {
    caller.require(Role::Verify)?;
    let bytes = form.take(IMAGE_FIELD).ok_or(ApiError::ImageMissing)?;
    let (probe, liveness) = app.probe(&caller, bytes, Pick::Configured, LivenessMode::Report).await?;
    let liveness = liveness.expect("report mode judges liveness");
    app.audit(
        Some(&caller),
        AuditAction::LivenessCheck,
        AuditOutcome::Ok,
        None,
        None,
        json!({ "result": liveness.result }),
    )
    .await;
    Ok(Json(LivenessResponse { liveness, face: (&probe.face).into() }))
}

#[utoipa::path(post, path = "/v1/verify", tag = "matching",
    request_body(content((VerifyRequest = "multipart/form-data"), (VerifyRequest = "application/json"))),
    responses((status = 200, body = VerifyResponse), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
/// 1:1: is the face in `image` the enrolled subject (best of its templates), or the person in
/// `reference_image`?
pub async fn verify(
    State(app): State<AppState>,
    caller: Caller,
    form: ImageForm,
) -> ApiResult<Json<VerifyResponse>> {
    let started = Instant::now();
    let outcome = verify_inner(app.clone(), caller, form).await;
    app.observe(VerificationMode::Verify, started, outcome.as_ref().map(|(_, observed)| observed));
    outcome.map(|(response, _)| Json(response))
}

/// A decision as it is kept and audited.
struct Decision<'a> {
    mode: VerificationMode,
    collection: Option<&'a CollectionId>,
    subject_id: Option<Uuid>,
    similarity: Option<f32>,
    point: OperatingPoint,
    matched: bool,
    liveness: Option<&'a LivenessDto>,
    detail: serde_json::Value,
}

/// What the metrics need to know of a finished decision.
struct Observed {
    times: StageTimes,
    search: Option<f64>,
    similarity: Option<f32>,
    matched: bool,
}

async fn verify_inner(
    app: AppState,
    caller: Caller,
    mut form: ImageForm,
) -> ApiResult<(VerifyResponse, Observed)> {
    caller.require(Role::Verify)?;
    let params: VerifyParams = form.params()?;
    let point = app.operating_point(params.far_target)?;
    let mode = LivenessMode::for_request(params.liveness, app.config.liveness.verify, app.config.profile);
    let image = form.take(IMAGE_FIELD).ok_or(ApiError::ImageMissing)?;
    let reference = form.take(REFERENCE_FIELD);
    let subject = match (params.subject_id, &reference) {
        (Some(id), None) => Some(app.subject_for(&caller, id, Role::Verify).await?),
        (None, Some(_)) => None,
        _ => {
            return Err(ApiError::InvalidRequest(
                "give exactly one of subject_id and reference_image".into(),
            ));
        }
    };
    let templates = match &subject {
        Some(s) => {
            let stored = app.store.list_templates(s.id).await?;
            let Some(first) = stored.first() else { return Err(ApiError::SubjectHasNoFaces) };
            let stored_model = first.model.clone();
            // Templates of another recognizer are not comparable (a model change under way).
            let templates: Vec<Template> = stored.into_iter().filter(|t| t.model == app.model).collect();
            if templates.is_empty() {
                return Err(ApiError::ModelMismatch { stored: stored_model, running: app.model.clone() });
            }
            templates
        }
        None => Vec::new(),
    };
    let (probe, liveness) = app.probe(&caller, image, Pick::Configured, mode).await?;
    let probe_embedding = probe.face.embedding.clone();
    let search_started = Instant::now();
    let similarity = match reference {
        Some(reference) => {
            let (reference_probe, _) =
                app.probe(&caller, reference, Pick::Configured, LivenessMode::Off).await?;
            tracing::info_span!("search").in_scope(|| probe_embedding.cosine(&reference_probe.face.embedding))
        }
        None => tracing::info_span!("search")
            .in_scope(|| best_similarity(&app, &templates, probe_embedding.as_slice()))?,
    };
    let search = search_started.elapsed().as_secs_f64();
    let is_match = similarity >= point.threshold;
    let decision = Decision {
        mode: VerificationMode::Verify,
        collection: subject.as_ref().map(|s| &s.collection),
        subject_id: subject.as_ref().map(|s| s.id),
        similarity: Some(similarity),
        point,
        matched: is_match,
        liveness: liveness.as_ref(),
        detail: json!({}),
    };
    let verification_id = app.record_decision(&caller, decision).await?;
    let response = VerifyResponse {
        verification_id,
        is_match,
        similarity,
        threshold: point.threshold,
        far_target: point.far,
        model: app.model.clone(),
        subject_id: subject.map(|s| s.id),
        face: (&probe.face).into(),
        liveness,
    };
    let observed = Observed {
        times: probe.times,
        search: Some(search),
        similarity: Some(similarity),
        matched: is_match,
    };
    Ok((response, observed))
}

fn best_similarity(app: &App, templates: &[Template], probe: &[f32]) -> ApiResult<f32> {
    let mut best = f32::NEG_INFINITY;
    for t in templates {
        let values =
            app.keys.open(t.id, t.subject_id, &t.sealed).map_err(|e| ApiError::Internal(e.to_string()))?;
        best = best.max(visage_index::dot(&values, probe));
    }
    Ok(best)
}

#[utoipa::path(post, path = "/v1/identify", tag = "matching",
    request_body(content((IdentifyRequest = "multipart/form-data"), (IdentifyRequest = "application/json"))),
    responses((status = 200, body = IdentifyResponse), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
/// 1:N: who in the collection is this? Candidates at or above the threshold, best first; an
/// unknown person gets an empty list, never the nearest stranger.
pub async fn identify(
    State(app): State<AppState>,
    caller: Caller,
    form: ImageForm,
) -> ApiResult<Json<IdentifyResponse>> {
    let started = Instant::now();
    let outcome = identify_inner(app.clone(), caller, form).await;
    app.observe(VerificationMode::Identify, started, outcome.as_ref().map(|(_, observed)| observed));
    outcome.map(|(response, _)| Json(response))
}

async fn identify_inner(
    app: AppState,
    caller: Caller,
    mut form: ImageForm,
) -> ApiResult<(IdentifyResponse, Observed)> {
    let params: IdentifyParams = form.params()?;
    let collection = parse_collection(params.collection.as_deref())?;
    caller.require_in(Role::Verify, &collection)?;
    if !app.store.collection_exists(&collection).await? {
        return Err(ApiError::CollectionNotFound);
    }
    let point = app.operating_point(params.far_target)?;
    let top_k = params.top_k.unwrap_or(5).clamp(1, app.config.verification.max_top_k);
    let mode = LivenessMode::for_request(params.liveness, app.config.liveness.identify, app.config.profile);
    let image = form.take(IMAGE_FIELD).ok_or(ApiError::ImageMissing)?;
    let (probe, liveness) = app.probe(&caller, image, Pick::Configured, mode).await?;
    let search_started = Instant::now();
    let hits = tracing::info_span!("search").in_scope(|| {
        app.gallery.search(&collection, probe.face.embedding.as_slice(), point.threshold, top_k)
    });
    let search = search_started.elapsed().as_secs_f64();
    let mut candidates = Vec::with_capacity(hits.len());
    for hit in hits {
        // A subject erased since the search started is simply left out.
        if let Some(subject) = app.store.get_subject(hit.subject_id).await? {
            candidates.push(CandidateDto {
                subject_id: hit.subject_id,
                external_id: subject.external_id,
                similarity: hit.similarity,
            });
        }
    }
    let top = candidates.first();
    let decision = Decision {
        mode: VerificationMode::Identify,
        collection: Some(&collection),
        subject_id: top.map(|c| c.subject_id),
        similarity: top.map(|c| c.similarity),
        point,
        matched: top.is_some(),
        liveness: liveness.as_ref(),
        detail: json!({ "candidates": candidates.len() }),
    };
    let verification_id = app.record_decision(&caller, decision).await?;
    let observed = Observed {
        times: probe.times,
        search: Some(search),
        similarity: candidates.first().map(|c| c.similarity),
        matched: !candidates.is_empty(),
    };
    let response = IdentifyResponse {
        verification_id,
        candidates,
        threshold: point.threshold,
        far_target: point.far,
        model: app.model.clone(),
        collection: collection.to_string(),
        face: (&probe.face).into(),
        liveness,
    };
    Ok((response, observed))
}

#[utoipa::path(post, path = "/v1/collections", tag = "collections", request_body = CreateCollectionRequest,
    responses((status = 201, body = CollectionDto), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Creates a collection (gallery). Admin only.
pub async fn create_collection(
    State(app): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateCollectionRequest>,
) -> ApiResult<(StatusCode, Json<CollectionDto>)> {
    caller.require(Role::Admin)?;
    let id = CollectionId::parse(request.id).map_err(ApiError::InvalidRequest)?;
    let created = app.store.create_collection(&id).await?;
    app.audit(Some(&caller), AuditAction::CollectionCreate, AuditOutcome::Ok, Some(&id), None, json!({}))
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CollectionDto { id: id.to_string(), created_at: created.created_at, templates: 0 }),
    ))
}

#[utoipa::path(get, path = "/v1/collections", tag = "collections",
    responses((status = 200, body = CollectionList), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// The collections this key may use.
pub async fn list_collections(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<CollectionList>> {
    caller.require(Role::Read)?;
    let collections = app
        .store
        .list_collections()
        .await?
        .into_iter()
        .filter(|c| caller.scope.allows(&c.id))
        .map(|c| CollectionDto {
            templates: app.gallery.len(&c.id),
            id: c.id.to_string(),
            created_at: c.created_at,
        })
        .collect();
    Ok(Json(CollectionList { collections }))
}

#[utoipa::path(post, path = "/v1/subjects", tag = "subjects", request_body = CreateSubjectRequest,
    responses((status = 201, body = SubjectDto), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Creates a subject (a person) with its consent record.
pub async fn create_subject(
    State(app): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateSubjectRequest>,
) -> ApiResult<(StatusCode, Json<SubjectDto>)> {
    let collection = parse_collection(request.collection.as_deref())?;
    caller.require_in(Role::Enrol, &collection)?;
    let external_id = request.external_id.trim().to_owned();
    if external_id.is_empty() || external_id.len() > 256 {
        return Err(ApiError::InvalidRequest("external_id must be 1-256 characters".into()));
    }
    let consent = match request.consent {
        Some(c) if !c.given_by.trim().is_empty() && !c.purpose.trim().is_empty() => Some(Consent {
            given_by: c.given_by,
            given_at: c.given_at.unwrap_or_else(Utc::now),
            purpose: c.purpose,
            reference: c.reference,
        }),
        Some(_) => return Err(ApiError::ConsentRequired),
        None if app.config.enrolment.require_consent => {
            app.audit(
                Some(&caller),
                AuditAction::SubjectCreate,
                AuditOutcome::Refused,
                Some(&collection),
                None,
                json!({ "reason": "consent_required" }),
            )
            .await;
            return Err(ApiError::ConsentRequired);
        }
        None => None,
    };
    if !app.store.collection_exists(&collection).await? {
        return Err(ApiError::CollectionNotFound);
    }
    let subject = app
        .store
        .create_subject(&NewSubject {
            id: Uuid::now_v7(),
            collection: collection.clone(),
            external_id,
            metadata: request.metadata,
            consent,
            created_at: Utc::now(),
        })
        .await?;
    app.audit(
        Some(&caller),
        AuditAction::SubjectCreate,
        AuditOutcome::Ok,
        Some(&collection),
        Some(subject.id),
        json!({ "consent": subject.consent.is_some() }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(SubjectDto::from(&subject))))
}

#[utoipa::path(get, path = "/v1/subjects", tag = "subjects",
    params(("collection" = Option<String>, Query, description = "default: `default`"),
           ("external_id" = Option<String>, Query, description = "find the subject with this external id"),
           ("cursor" = Option<Uuid>, Query, description = "next_cursor of the previous page"),
           ("limit" = Option<u32>, Query, description = "page size, 1-500, default 100")),
    responses((status = 200, body = SubjectPage), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Subjects of a collection, in creation order, a page at a time.
pub async fn list_subjects(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<ListSubjectsQuery>,
) -> ApiResult<Json<SubjectPage>> {
    let collection = parse_collection(query.collection.as_deref())?;
    caller.require_in(Role::Read, &collection)?;
    if let Some(external_id) = &query.external_id {
        let found = app.store.find_subject(&collection, external_id).await?;
        return Ok(Json(SubjectPage {
            items: found.iter().map(SubjectDto::from).collect(),
            next_cursor: None,
        }));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let subjects = app.store.list_subjects(&collection, query.cursor, limit + 1).await?;
    let has_more = subjects.len() > limit as usize;
    let items: Vec<SubjectDto> = subjects.iter().take(limit as usize).map(SubjectDto::from).collect();
    let next_cursor = if has_more { items.last().map(|s| s.id) } else { None };
    Ok(Json(SubjectPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/v1/subjects/{id}", tag = "subjects", params(("id" = Uuid, Path)),
    responses((status = 200, body = SubjectDto), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
pub async fn get_subject(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<SubjectDto>> {
    let subject = app.subject_for(&caller, id, Role::Read).await?;
    Ok(Json(SubjectDto::from(&subject)))
}

#[utoipa::path(delete, path = "/v1/subjects/{id}", tag = "subjects", params(("id" = Uuid, Path)),
    responses((status = 204, description = "erased"), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Erasure: the subject, its templates, stored images, index entries and its link from past
/// verifications are deleted. The audit log keeps that an erasure happened.
pub async fn erase_subject(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let subject = app.subject_for(&caller, id, Role::Enrol).await?;
    let erasure = app.store.erase_subject(id).await?.ok_or(ApiError::SubjectNotFound)?;
    app.gallery.remove_subject(id);
    app.refresh_gallery().await;
    app.delete_images(erasure.image_refs.clone(), Deletion::Erasure).await;
    app.audit(
        Some(&caller),
        AuditAction::SubjectErase,
        AuditOutcome::Ok,
        Some(&subject.collection),
        Some(id),
        json!({ "templates": erasure.templates.len(), "images": erasure.image_refs.len() }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/subjects/{id}/faces", tag = "subjects", params(("id" = Uuid, Path)),
    request_body(content((EnrolRequest = "multipart/form-data"), (EnrolRequest = "application/json"), ("image/jpeg"), ("image/png"), ("image/webp"))),
    responses((status = 201, body = FaceList), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Enrols faces: each image must hold exactly one face that passes the quality gate (faces
/// that fail it, such as small ones in the background, are ignored) and pass liveness when
/// required. All images are stored, or none.
pub async fn enrol_faces(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    mut form: ImageForm,
) -> ApiResult<(StatusCode, Json<FaceList>)> {
    let subject = app.subject_for(&caller, id, Role::Enrol).await?;
    let params: EnrolParams = form.params()?;
    let mode = LivenessMode::for_request(params.liveness, app.config.liveness.enrol, app.config.profile);
    let images = form.take_all(IMAGE_FIELD);
    if images.is_empty() {
        return Err(ApiError::ImageMissing);
    }
    if images.len() > app.config.limits.max_batch_images {
        return Err(ApiError::InvalidRequest(format!(
            "{} images sent, at most {} per request",
            images.len(),
            app.config.limits.max_batch_images
        )));
    }
    let batch = images.len() > 1;
    let in_batch = |index: usize, err: ApiError| {
        if batch { ApiError::InBatch { index, source: Box::new(err) } } else { err }
    };
    let mut templates = Vec::with_capacity(images.len());
    let mut verdicts = Vec::with_capacity(images.len());
    let mut kept_images = Vec::with_capacity(images.len());
    for (index, bytes) in images.into_iter().enumerate() {
        let kept = app.config.storage.store_images.then(|| bytes.clone());
        let (probe, liveness) =
            app.probe(&caller, bytes, Pick::OnlyGoodFace, mode).await.map_err(|e| in_batch(index, e))?;
        if !probe.face.quality.passed() {
            return Err(in_batch(index, ApiError::LowQuality { reasons: probe.face.quality.issues.clone() }));
        }
        let template_id = Uuid::now_v7();
        templates.push(Template {
            id: template_id,
            subject_id: id,
            model: app.model.clone(),
            sealed: app.keys.seal(template_id, id, probe.face.embedding.as_slice()),
            quality: serde_json::to_value(probe.face.quality.measures).expect("measures serialize"),
            image_ref: None,
            created_at: Utc::now(),
            source_template_id: None,
        });
        verdicts.push((liveness, probe.face.embedding));
        kept_images.push(kept);
    }
    // Every image passed: upload them, then store the templates; a failure of either undoes
    // the uploads, so nothing is kept of a refused enrolment.
    let mut uploaded = Vec::new();
    for (template, kept) in templates.iter_mut().zip(kept_images) {
        let Some(bytes) = kept else { continue };
        match app.store_image(template.id, id, &bytes).await {
            Ok(reference) => {
                uploaded.push(reference.clone());
                template.image_ref = Some(reference);
            }
            Err(err) => {
                app.delete_images(uploaded, Deletion::EnrolmentRollback).await;
                return Err(err);
            }
        }
    }
    if let Err(err) = app.store.add_templates(&templates).await {
        app.delete_images(uploaded, Deletion::EnrolmentRollback).await;
        return Err(err.into());
    }
    let mut faces = Vec::with_capacity(templates.len());
    for (template, (liveness, embedding)) in templates.iter().zip(verdicts) {
        app.gallery.insert(&subject.collection, template.id, id, embedding.as_slice());
        faces.push(FaceRecordDto::new(template, liveness));
    }
    app.refresh_gallery().await;
    app.audit(
        Some(&caller),
        AuditAction::FaceEnrol,
        AuditOutcome::Ok,
        Some(&subject.collection),
        Some(id),
        json!({ "faces": faces.len() }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(FaceList { faces })))
}

#[utoipa::path(get, path = "/v1/subjects/{id}/faces", tag = "subjects", params(("id" = Uuid, Path)),
    responses((status = 200, body = FaceList), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
pub async fn list_faces(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<FaceList>> {
    app.subject_for(&caller, id, Role::Read).await?;
    let templates = app.store.list_templates(id).await?;
    // The faces as this service matches them: during a model change a face also has a
    // template of the other recognizer, which is not listed twice.
    let faces =
        templates.iter().filter(|t| t.model == app.model).map(|t| FaceRecordDto::new(t, None)).collect();
    Ok(Json(FaceList { faces }))
}

#[utoipa::path(delete, path = "/v1/subjects/{id}/faces/{face_id}", tag = "subjects",
    params(("id" = Uuid, Path), ("face_id" = Uuid, Path)),
    responses((status = 204, description = "deleted"), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
pub async fn delete_face(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, face_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let subject = app.subject_for(&caller, id, Role::Enrol).await?;
    // The face goes with all its templates: the one named and its twins of other recognizers.
    let deleted = app.store.delete_template(id, face_id).await?;
    if deleted.is_empty() {
        return Err(ApiError::FaceNotFound);
    }
    for template in &deleted {
        app.gallery.remove_template(template.id);
    }
    app.refresh_gallery().await;
    app.delete_images(deleted.iter().filter_map(|t| t.image_ref.clone()).collect(), Deletion::FaceDelete)
        .await;
    app.audit(
        Some(&caller),
        AuditAction::FaceDelete,
        AuditOutcome::Ok,
        Some(&subject.collection),
        Some(id),
        json!({ "face_id": face_id, "templates": deleted.len() }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(("cursor" = Option<i64>, Query, description = "next_cursor of the previous page"),
           ("limit" = Option<u32>, Query, description = "page size, 1-1000, default 100")),
    responses((status = 200, body = AuditPage), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// The audit trail, oldest first. Admin only.
pub async fn list_audit(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    caller.require(Role::Admin)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let events = app.store.list_audit(query.cursor, limit).await?;
    let next_cursor = (events.len() == limit as usize).then(|| events.last().map(|e| e.seq)).flatten();
    Ok(Json(AuditPage { items: events.into_iter().map(AuditEventDto::from).collect(), next_cursor }))
}

#[utoipa::path(post, path = "/v1/verifications/{id}/feedback", tag = "matching", params(("id" = Uuid, Path)),
    request_body = FeedbackRequest,
    responses((status = 200, body = FeedbackResponse), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Ground truth for a past decision (manual review, a chargeback, an operator): turns it into a
/// true or false accept or reject, feeds `false_accept_total` / `false_reject_total` and the
/// error-rate gauges. Once per verification.
pub async fn feedback(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(request): Json<FeedbackRequest>,
) -> ApiResult<Json<FeedbackResponse>> {
    caller.require(Role::Enrol)?;
    let source = request.source.trim();
    if source.is_empty() || source.len() > 64 {
        return Err(ApiError::InvalidRequest("source must be 1-64 characters".into()));
    }
    let existing = app.store.get_verification(id).await?.ok_or(ApiError::VerificationNotFound)?;
    // A key scoped to other collections does not learn that the decision exists.
    if existing.collection.as_ref().is_some_and(|c| !caller.scope.allows(c)) {
        return Err(ApiError::VerificationNotFound);
    }
    let record = match app.store.label_verification(id, request.truth, source).await? {
        Labelling::Missing => return Err(ApiError::VerificationNotFound),
        Labelling::AlreadyLabelled => return Err(ApiError::AlreadyLabelled),
        Labelling::Labelled(record) => record,
    };
    let accepted = record.decision.is_match();
    let (outcome, severity) = match (request.truth, accepted) {
        (Truth::Genuine, true) => ("true_accept", None),
        (Truth::Impostor, false) => ("true_reject", None),
        (Truth::Impostor, true) => {
            let severity = crate::metrics::severity(record.similarity, record.threshold);
            app.metrics.false_accepts.with_label_values(&[severity]).inc();
            ("false_accept", Some(severity))
        }
        (Truth::Genuine, false) => {
            let severity = crate::metrics::severity(record.similarity, record.threshold);
            app.metrics.false_rejects.with_label_values(&[severity]).inc();
            ("false_reject", Some(severity))
        }
    };
    app.audit(
        Some(&caller),
        AuditAction::VerificationFeedback,
        AuditOutcome::Ok,
        record.collection.as_ref(),
        None,
        json!({ "verification_id": id, "truth": request.truth.as_str(), "outcome": outcome }),
    )
    .await;
    Ok(Json(FeedbackResponse {
        verification_id: id,
        truth: request.truth.as_str().into(),
        outcome: outcome.into(),
        severity: severity.map(Into::into),
    }))
}

#[utoipa::path(get, path = "/metrics/prometheus", tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
/// Prometheus metrics (no key needed; also at `/metrics`).
pub async fn prometheus_metrics(State(app): State<AppState>) -> impl axum::response::IntoResponse {
    refresh_gauges(&app).await;
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render())
}

/// Gauges read at scrape time: pool and queue state, stored counts, error rates from feedback.
async fn refresh_gauges(app: &App) {
    let m = &app.metrics;
    m.inference_queue_depth.set(app.pool.queue_depth() as i64);
    m.inference_workers_busy.set(app.pool.busy() as i64);
    let pool = app.store.pool_stats();
    m.db_connections_in_use.set(i64::from(pool.in_use));
    m.db_connections_max.set(i64::from(pool.max));
    m.observe_gallery(app.gallery.version(), app.gallery.memory_bytes());
    app.shared.refresh_metrics().await;
    if let Ok(counts) = app.store.counts().await {
        for c in counts {
            m.enrolled_subjects.with_label_values(&[&c.collection]).set(c.subjects as i64);
            m.enrolled_templates.with_label_values(&[&c.collection]).set(c.templates as i64);
            let indexed = CollectionId::parse(c.collection.clone()).map_or(0, |id| app.gallery.len(&id));
            m.index_templates.with_label_values(&[&c.collection]).set(indexed as i64);
        }
    }
    let window = &app.config.monitoring;
    let since = Utc::now() - chrono::Duration::hours(window.feedback_window_hours as i64);
    if let Ok(labelled) = app.store.labelled_verifications(since, window.feedback_window_size).await {
        let rates = crate::metrics::observed_rates(&labelled, window.min_labelled);
        m.set_error_rates("feedback", &rates);
        m.set_labelled(rates.genuine, rates.impostor);
    }
}
