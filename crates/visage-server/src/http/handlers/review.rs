//! `/v1/decisions`: the review queue.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::collection_or_default;
use crate::http::dto::{DecisionDto, DecisionPage, DecisionQuery};
use crate::http::error::{ApiResult, ErrorBody};
use crate::service::{Caller, review};
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/decisions", tag = "review", params(DecisionQuery),
    responses((status = 200, body = DecisionPage), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Past verifications and identifications with their labels, closest to the threshold first:
/// the review queue. Label one with `POST /v1/verifications/{id}/feedback`.
pub async fn list_decisions(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<DecisionQuery>,
) -> ApiResult<Json<DecisionPage>> {
    query.check()?;
    let collection = query.collection.as_deref().map(|c| collection_or_default(Some(c))).transpose()?;
    let filter = query.filter();
    let (offset, limit) = (filter.offset, filter.limit);
    let items: Vec<DecisionDto> =
        review::queue(&app, &caller, collection, filter).await?.into_iter().map(Into::into).collect();
    let next_offset = (items.len() == limit as usize).then_some(offset + limit);
    let probe_retention_hours = app.config.review.keep_probe_images_hours;
    Ok(Json(DecisionPage { items, next_offset, probe_retention_hours }))
}

#[utoipa::path(get, path = "/v1/decisions/{id}/probe", tag = "review", params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The probe image as it was sent", content_type = "image/*", body = Vec<u8>),
        (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
/// The probe image of a decision, while `review.keep_probe_images_hours` keeps it; every view
/// is audited. 404 `probe_not_found` when none is kept.
pub async fn probe_image(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let image = review::probe_image(&app, &caller, id).await?;
    let media_type = match image::guess_format(&image) {
        Ok(format) => format.to_mime_type(),
        Err(_) => "application/octet-stream",
    };
    let mut response = image.to_vec().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    // A photo of a person: never kept by a browser or a proxy.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
