//! Images arrive three ways: multipart/form-data (file fields `image`, `reference_image`),
//! a raw `image/*` body, or JSON with base64 strings (`image`, `images`, `reference_image`).
//! Whatever the form, handlers see a list of named images plus the other fields (query
//! parameters included) as JSON.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::http::error::ApiError;
use crate::service::ServiceError;
use crate::state::AppState;

pub const IMAGE_FIELD: &str = "image";
pub const REFERENCE_FIELD: &str = "reference_image";

pub struct NamedImage {
    pub field: String,
    pub bytes: Bytes,
}

pub struct ImageForm {
    pub images: Vec<NamedImage>,
    pub fields: Map<String, Value>,
}

impl ImageForm {
    /// The request's non-image fields as `T`.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_value(Value::Object(self.fields.clone()))
            .map_err(|e| ApiError::invalid(format!("invalid parameters: {e}")))
    }

    pub fn take(&mut self, field: &str) -> Option<Bytes> {
        let position = self.images.iter().position(|image| image.field == field)?;
        Some(self.images.remove(position).bytes)
    }

    pub fn take_all(&mut self, field: &str) -> Vec<Bytes> {
        let (taken, kept) =
            std::mem::take(&mut self.images).into_iter().partition(|image| image.field == field);
        self.images = kept;
        taken.into_iter().map(|image| image.bytes).collect()
    }
}

fn too_large(state: &AppState) -> ApiError {
    ApiError::PayloadTooLarge { limit: state.config.limits.max_body_bytes }
}

/// An image sent as base64, or as a data URL as browsers produce them.
fn decode_base64(field: &str, text: &str) -> Result<Bytes, ApiError> {
    let data = text.split_once(";base64,").map_or(text, |(_, data)| data);
    STANDARD
        .decode(data.trim())
        .map(Bytes::from)
        .map_err(|_| ApiError::invalid(format!("field `{field}` is not valid base64")))
}

impl FromRequest<AppState> for ImageForm {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let mut fields = Map::new();
        if let Some(query) = request.uri().query() {
            for (key, value) in form_urlencoded::parse(query.as_bytes()) {
                fields.insert(key.into_owned(), Value::String(value.into_owned()));
            }
        }
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let limit = state.config.limits.max_body_bytes;
        let mut images = Vec::new();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(request, state)
                .await
                .map_err(|e| ApiError::invalid(e.body_text()))?;
            loop {
                let field = match multipart.next_field().await {
                    Ok(Some(field)) => field,
                    Ok(None) => break,
                    Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                        return Err(too_large(state));
                    }
                    Err(e) => return Err(ApiError::invalid(e.body_text())),
                };
                let name = field.name().unwrap_or_default().to_owned();
                let is_file = field.file_name().is_some() || name == IMAGE_FIELD || name == REFERENCE_FIELD;
                let bytes = field.bytes().await.map_err(|e| {
                    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                        too_large(state)
                    } else {
                        ApiError::invalid(e.body_text())
                    }
                })?;
                if is_file {
                    images.push(NamedImage { field: name, bytes });
                } else {
                    let text = String::from_utf8(bytes.to_vec())
                        .map_err(|_| ApiError::invalid(format!("field `{name}` is not UTF-8 text")))?;
                    fields.insert(name, Value::String(text));
                }
            }
        } else if content_type.starts_with("image/") || content_type.starts_with("application/octet-stream") {
            let bytes =
                axum::body::to_bytes(request.into_body(), limit).await.map_err(|_| too_large(state))?;
            images.push(NamedImage { field: IMAGE_FIELD.into(), bytes });
        } else if content_type.starts_with("application/json") {
            let bytes =
                axum::body::to_bytes(request.into_body(), limit).await.map_err(|_| too_large(state))?;
            let Value::Object(object) = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?
            else {
                return Err(ApiError::invalid("the JSON body must be an object"));
            };
            for (key, value) in object {
                match (key.as_str(), value) {
                    (IMAGE_FIELD | REFERENCE_FIELD, Value::String(text)) => {
                        images.push(NamedImage { bytes: decode_base64(&key, &text)?, field: key });
                    }
                    ("images", Value::Array(items)) => {
                        for item in items {
                            let Value::String(text) = item else {
                                return Err(ApiError::invalid("`images` must hold base64 strings"));
                            };
                            images.push(NamedImage {
                                field: IMAGE_FIELD.into(),
                                bytes: decode_base64("images", &text)?,
                            });
                        }
                    }
                    (IMAGE_FIELD | REFERENCE_FIELD | "images", _) => {
                        return Err(ApiError::invalid(format!("`{key}` must be base64 text")));
                    }
                    // A multipart form cannot send a null, so JSON may not either: leave it out.
                    (_, Value::Null) => {
                        return Err(ApiError::invalid(format!("`{key}` is null; leave it out instead")));
                    }
                    (_, value) => {
                        fields.insert(key, value);
                    }
                }
            }
        } else if content_type.is_empty() {
            return Err(ServiceError::ImageMissing.into());
        } else {
            return Err(ApiError::UnsupportedMediaType(content_type));
        }
        Ok(Self { images, fields })
    }
}
