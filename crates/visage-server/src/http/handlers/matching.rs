//! `/v1/verify`, `/v1/identify` and `/v1/verifications/{id}/feedback`.

use axum::Json;
use axum::extract::{Path, State};
use uuid::Uuid;

use super::collection_or_default;
use crate::http::dto::{
    FacesToIdentify, FeedbackRequest, FeedbackResponse, IdentifyAllResponse, IdentifyAnswer, IdentifyRequest,
    IdentifyResponse, VerifyRequest, VerifyResponse,
};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{IMAGE_FIELD, ImageForm, REFERENCE_FIELD};
use crate::service::matching::{self, Claim, Identification, Verification};
use crate::service::{Caller, ServiceError, feedback};
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/verify", tag = "matching",
    request_body(content((VerifyRequest = "multipart/form-data"), (VerifyRequest = "application/json"))),
    responses((status = 200, body = VerifyResponse), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
/// 1:1: is the face in `image` the enrolled subject (best of its templates), or the person in
/// `reference_image`?
pub async fn verify(
    State(app): State<AppState>,
    caller: Caller,
    mut form: ImageForm,
) -> ApiResult<Json<VerifyResponse>> {
    let request: VerifyRequest = form.params()?;
    let image = form.take(IMAGE_FIELD).ok_or(ServiceError::ImageMissing)?;
    let claim = match (request.subject_id, form.take(REFERENCE_FIELD)) {
        (Some(id), None) => Claim::Subject(id),
        (None, Some(reference)) => Claim::Image(reference),
        _ => return Err(ApiError::invalid("give exactly one of subject_id and reference_image")),
    };
    let verification =
        Verification { image, claim, far_target: request.far_target, liveness: request.liveness };
    let verified = matching::verify(&app, &caller, verification).await?;
    Ok(Json(VerifyResponse::new(verified, &app.model, app.liveness_threshold)))
}

#[utoipa::path(post, path = "/v1/identify", tag = "matching",
    request_body(content((IdentifyRequest = "multipart/form-data"), (IdentifyRequest = "application/json"))),
    responses((status = 200, body = IdentifyAnswer), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
/// 1:N: who in the collection is this? Candidates at or above the threshold, best first; an
/// unknown person gets an empty list, never the nearest stranger. With `faces=all`, every face
/// of the photo is searched on its own and answered with its box.
pub async fn identify(
    State(app): State<AppState>,
    caller: Caller,
    mut form: ImageForm,
) -> ApiResult<Json<IdentifyAnswer>> {
    let request: IdentifyRequest = form.params()?;
    request.check()?;
    let collection = collection_or_default(request.collection.as_deref())?;
    let image = form.take(IMAGE_FIELD).ok_or(ServiceError::ImageMissing)?;
    let top_k = request.top_k.map(|k| k as usize);
    let identification = Identification {
        image,
        collection,
        far_target: request.far_target,
        top_k,
        liveness: request.liveness,
    };
    let (model, threshold) = (&app.model, app.liveness_threshold);
    Ok(Json(match request.faces.unwrap_or_default() {
        FacesToIdentify::One => {
            let identified = matching::identify(&app, &caller, identification).await?;
            IdentifyAnswer::One(IdentifyResponse::new(identified, model, threshold))
        }
        FacesToIdentify::All => {
            let identified = matching::identify_all(&app, &caller, identification).await?;
            IdentifyAnswer::All(IdentifyAllResponse::new(identified, model, threshold))
        }
    }))
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
    let labelled = feedback::label(&app, &caller, id, request.truth, &request.source).await?;
    Ok(Json(FeedbackResponse {
        verification_id: id,
        truth: request.truth.as_str().into(),
        outcome: labelled.outcome.into(),
        severity: labelled.severity.map(Into::into),
    }))
}
