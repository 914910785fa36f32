//! `/v1/subjects`, a subject, its faces, and erasure.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;
use visage_store::Role;

use super::collection_or_default;
use crate::http::dto::{
    AdviceDto, ConsentWithdrawn, CreateSubjectRequest, EnrolRequest, EnrolledFaces, FaceList, FaceRecordDto,
    ListSubjectsQuery, LivenessDto, SubjectDto, SubjectPage,
};
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::{IMAGE_FIELD, ImageForm};
use crate::http::middleware::idempotency::RequestKey;
use crate::service::subjects::{self, NewSubjectRequest};
use crate::service::{Caller, enrolment};
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/subjects", tag = "subjects", request_body = CreateSubjectRequest,
    responses((status = 201, body = SubjectDto), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Creates a subject (a person) with its consent record.
pub async fn create_subject(
    State(app): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateSubjectRequest>,
) -> ApiResult<(StatusCode, Json<SubjectDto>)> {
    let new = NewSubjectRequest {
        collection: collection_or_default(request.collection.as_deref())?,
        external_id: request.external_id,
        metadata: request.metadata.map(serde_json::Value::Object),
        consent: request.consent.map(Into::into),
    };
    let subject = subjects::create(&app, &caller, new).await?;
    Ok((StatusCode::CREATED, Json(SubjectDto::from(&subject))))
}

#[utoipa::path(get, path = "/v1/subjects", tag = "subjects", params(ListSubjectsQuery),
    responses((status = 200, body = SubjectPage), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Subjects of a collection, in creation order, a page at a time.
pub async fn list_subjects(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<ListSubjectsQuery>,
) -> ApiResult<Json<SubjectPage>> {
    query.check()?;
    let collection = collection_or_default(query.collection.as_deref())?;
    let page =
        subjects::list(&app, &caller, &collection, query.external_id.as_deref(), query.cursor, query.limit)
            .await?;
    Ok(Json(SubjectPage {
        items: page.items.iter().map(SubjectDto::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/subjects/{id}", tag = "subjects", params(("id" = Uuid, Path)),
    responses((status = 200, body = SubjectDto), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
pub async fn get_subject(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<SubjectDto>> {
    let subject = subjects::visible(&app, &caller, id, Role::Read).await?;
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
    subjects::erase(&app, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/subjects/{id}/consent/withdraw", tag = "subjects", params(("id" = Uuid, Path)),
    responses((status = 200, body = ConsentWithdrawn), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// The subject withdrew consent: it is erased at once, like `DELETE /v1/subjects/{id}`, with
/// a destruction record naming the ground `consent_withdrawn`. With
/// `retention.after_withdrawal_days` set, it is out of verification and identification at once
/// and the retention job erases it that many days later.
pub async fn withdraw_consent(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ConsentWithdrawn>> {
    let withdrawal = subjects::withdraw_consent(&app, &caller, id).await?;
    Ok(Json(ConsentWithdrawn {
        subject_id: id,
        erased: withdrawal.destruction_record_id.is_some(),
        destruction_record_id: withdrawal.destruction_record_id,
        erase_after: withdrawal.erase_after,
    }))
}

#[utoipa::path(post, path = "/v1/subjects/{id}/faces", tag = "subjects", params(("id" = Uuid, Path)),
    request_body(content((EnrolRequest = "multipart/form-data"), (EnrolRequest = "application/json"), ("image/jpeg"), ("image/png"), ("image/webp"))),
    responses((status = 201, body = EnrolledFaces), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Enrols faces: each image must hold exactly one face that passes the quality gate (faces
/// that fail it, such as small ones in the background, are ignored) and pass liveness when
/// required. All images are stored, or none.
pub async fn enrol_faces(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    request_key: Option<Extension<RequestKey>>,
    mut form: ImageForm,
) -> ApiResult<(StatusCode, Json<EnrolledFaces>)> {
    let request: EnrolRequest = form.params()?;
    let images = form.take_all(IMAGE_FIELD);
    let request_key = request_key.map(|Extension(RequestKey(key))| key);
    let enrolled = enrolment::enrol(&app, &caller, id, images, request.liveness, request_key).await?;
    let threshold = app.liveness_threshold;
    let faces = enrolled
        .iter()
        .map(|f| FaceRecordDto::new(&f.template, f.liveness.as_ref().map(|l| LivenessDto::new(l, threshold))))
        .collect();
    let advice = enrolment::advice(&app, id).await?;
    let advice =
        advice.iter().map(|a| AdviceDto { code: a.code().into(), message: a.message().into() }).collect();
    Ok((StatusCode::CREATED, Json(EnrolledFaces { faces, advice })))
}

#[utoipa::path(get, path = "/v1/subjects/{id}/faces", tag = "subjects", params(("id" = Uuid, Path)),
    responses((status = 200, body = FaceList), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
pub async fn list_faces(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<FaceList>> {
    let templates = subjects::faces(&app, &caller, id).await?;
    Ok(Json(FaceList { faces: templates.iter().map(|t| FaceRecordDto::new(t, None)).collect() }))
}

#[utoipa::path(delete, path = "/v1/subjects/{id}/faces/{face_id}", tag = "subjects",
    params(("id" = Uuid, Path), ("face_id" = Uuid, Path)),
    responses((status = 204, description = "deleted"), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
pub async fn delete_face(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, face_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    subjects::delete_face(&app, &caller, id, face_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/subjects/{id}/export", tag = "subjects", params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "A ZIP: README.txt, subject.json, faces.json, images/ (when stored), decisions.json, audit.json",
         content_type = "application/zip", body = Vec<u8>),
        (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
/// Everything held about the subject, as a ZIP, for a subject access request (admin; audited
/// as `subject.export`). Face templates are not included: they are encrypted numbers computed
/// from the photos.
pub async fn export_subject(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let export = crate::service::access::export(&app, &caller, id).await?;
    let mut response = export.zip.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    let disposition = format!("attachment; filename=\"{}\"", export.file_name);
    headers
        .insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("a uuid file name"));
    // Personal data: never kept by a browser or a proxy.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
