//! `/v1/detect` and `/v1/liveness`.

use axum::Json;
use axum::extract::State;

use crate::http::dto::{DetectQuery, DetectResponse, FaceDto, ImageUpload, LivenessDto, LivenessResponse};
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::{IMAGE_FIELD, ImageForm};
use crate::service::{Caller, ServiceError, analysis};
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/detect", tag = "analysis", params(DetectQuery),
    request_body(content((ImageUpload = "multipart/form-data"), (ImageUpload = "application/json"), ("image/jpeg"), ("image/png"), ("image/webp"))),
    responses((status = 200, body = DetectResponse), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
/// Every face of an image: box, landmarks, detection score, quality; liveness on request.
pub async fn detect(State(app): State<AppState>, mut form: ImageForm) -> ApiResult<Json<DetectResponse>> {
    let query: DetectQuery = form.params()?;
    let image = form.take(IMAGE_FIELD).ok_or(ServiceError::ImageMissing)?;
    let detection = analysis::detect(&app, image, query.liveness.unwrap_or(false)).await?;
    let threshold = app.liveness_threshold;
    let faces = detection
        .faces
        .iter()
        .map(|(face, verdict)| FaceDto::new(face, verdict.as_ref().map(|v| LivenessDto::new(v, threshold))))
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
    let _: ImageUpload = form.params()?;
    let image = form.take(IMAGE_FIELD).ok_or(ServiceError::ImageMissing)?;
    let probe = analysis::check_liveness(&app, &caller, image).await?;
    let verdict = probe.liveness.as_ref().expect("a liveness check judges liveness");
    let liveness = LivenessDto::new(verdict, app.liveness_threshold);
    Ok(Json(LivenessResponse { liveness, face: (&probe.face).into() }))
}
