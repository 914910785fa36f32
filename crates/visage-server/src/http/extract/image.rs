//! The image a request is about, in any of the forms `visage_wire::image_form` reads
//! (multipart, a raw `image/*` body, JSON with base64), with the other fields as JSON.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde_json::Value;
use visage_wire::image_form::{self, FormError};

use crate::http::error::ApiError;
use crate::service::ServiceError;
use crate::state::AppState;

pub use visage_wire::image_form::{IMAGE_FIELD, REFERENCE_FIELD};

/// The request's images and other fields ([`image_form::ImageForm`]), as a handler takes them.
pub struct ImageForm(image_form::ImageForm);

impl ImageForm {
    /// The request's non-image fields as `T`.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_value(Value::Object(self.0.fields.clone()))
            .map_err(|e| ApiError::invalid(format!("invalid parameters: {e}")))
    }

    pub fn take(&mut self, field: &str) -> Option<Bytes> {
        self.0.take(field)
    }

    pub fn take_all(&mut self, field: &str) -> Vec<Bytes> {
        self.0.take_all(field)
    }
}

impl From<FormError> for ApiError {
    fn from(err: FormError) -> Self {
        match err {
            FormError::TooLarge { limit } => ApiError::PayloadTooLarge { limit },
            FormError::Invalid(message) => ApiError::invalid(message),
            FormError::NoBody => ServiceError::ImageMissing.into(),
            FormError::UnsupportedMediaType(media_type) => ApiError::UnsupportedMediaType(media_type),
        }
    }
}

impl FromRequest<AppState> for ImageForm {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let content_type =
            request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let query = request.uri().query().map(str::to_owned);
        let body = request.into_body().into_data_stream();
        let limit = state.config.limits.max_body_bytes;
        Ok(Self(image_form::read(content_type.as_deref(), query.as_deref(), body, limit).await?))
    }
}
