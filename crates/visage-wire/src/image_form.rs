//! Images arrive three ways: multipart/form-data (file fields `image`, `reference_image`),
//! a raw `image/*` body, or JSON with base64 strings (`image`, `images`, `reference_image`),
//! plain or as data URLs. Whatever the form, [`read`] gives a list of named images plus the
//! other fields (query parameters included) as JSON.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::{Map, Value};

pub const IMAGE_FIELD: &str = "image";
pub const REFERENCE_FIELD: &str = "reference_image";
/// The JSON field that holds a list of images (enrolment of several photos at once).
pub const IMAGES_FIELD: &str = "images";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedImage {
    pub field: String,
    pub bytes: Bytes,
}

/// A request's images and its other fields.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImageForm {
    pub images: Vec<NamedImage>,
    pub fields: Map<String, Value>,
}

impl ImageForm {
    /// The first image sent in `field`, taken out of the form.
    pub fn take(&mut self, field: &str) -> Option<Bytes> {
        let position = self.images.iter().position(|image| image.field == field)?;
        Some(self.images.remove(position).bytes)
    }

    /// Every image sent in `field`, in the order sent, taken out of the form.
    pub fn take_all(&mut self, field: &str) -> Vec<Bytes> {
        let (taken, kept) =
            std::mem::take(&mut self.images).into_iter().partition(|image| image.field == field);
        self.images = kept;
        taken.into_iter().map(|image| image.bytes).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Invalid(String),
    /// No body and no media type: the image the request is about is missing.
    #[error("no image was sent")]
    NoBody,
    #[error("unsupported media type `{0}`")]
    UnsupportedMediaType(String),
}

fn invalid(message: impl Into<String>) -> FormError {
    FormError::Invalid(message.into())
}

/// Reads a request body of media type `content_type` (the header as sent) and the query string
/// `query`, taking at most `limit` bytes of body.
pub async fn read<S, E>(
    content_type: Option<&str>,
    query: Option<&str>,
    body: S,
    limit: usize,
) -> Result<ImageForm, FormError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let mut form = ImageForm::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        form.fields.insert(key.into_owned(), Value::String(value.into_owned()));
    }
    let content_type = content_type.unwrap_or_default();
    // Media types compare without case; the multipart boundary is read from the header as sent.
    let media_type = content_type.to_ascii_lowercase();
    if media_type.starts_with("multipart/form-data") {
        read_multipart(&mut form, content_type, body, limit).await?;
    } else if media_type.starts_with("image/") || media_type.starts_with("application/octet-stream") {
        let bytes = collect(body, limit).await?;
        form.images.push(NamedImage { field: IMAGE_FIELD.into(), bytes });
    } else if media_type.starts_with("application/json") {
        read_json(&mut form, &collect(body, limit).await?)?;
    } else if media_type.is_empty() {
        return Err(FormError::NoBody);
    } else {
        return Err(FormError::UnsupportedMediaType(media_type));
    }
    Ok(form)
}

async fn collect<S, E>(mut body: S, limit: usize) -> Result<Bytes, FormError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| invalid(format!("the body could not be read: {}", e.into())))?;
        if bytes.len() + chunk.len() > limit {
            return Err(FormError::TooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

async fn read_multipart<S, E>(
    form: &mut ImageForm,
    content_type: &str,
    body: S,
    limit: usize,
) -> Result<(), FormError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let boundary = multer::parse_boundary(content_type).map_err(|e| invalid(e.to_string()))?;
    let limits = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit as u64));
    let mut multipart = multer::Multipart::with_constraints(body, boundary, limits);
    let refuse = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            FormError::TooLarge { limit }
        }
        other => invalid(other.to_string()),
    };
    while let Some(field) = multipart.next_field().await.map_err(refuse)? {
        let name = field.name().unwrap_or_default().to_owned();
        let is_file = field.file_name().is_some() || name == IMAGE_FIELD || name == REFERENCE_FIELD;
        let bytes = field.bytes().await.map_err(refuse)?;
        if is_file {
            form.images.push(NamedImage { field: name, bytes });
        } else {
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| invalid(format!("field `{name}` is not UTF-8 text")))?;
            form.fields.insert(name, Value::String(text));
        }
    }
    Ok(())
}

fn read_json(form: &mut ImageForm, body: &[u8]) -> Result<(), FormError> {
    let Value::Object(object) =
        serde_json::from_slice(body).map_err(|e| invalid(format!("the body is not valid JSON: {e}")))?
    else {
        return Err(invalid("the JSON body must be an object"));
    };
    for (key, value) in object {
        match (key.as_str(), value) {
            (IMAGE_FIELD | REFERENCE_FIELD, Value::String(text)) => {
                form.images.push(NamedImage { bytes: decode_base64(&key, &text)?, field: key });
            }
            (IMAGES_FIELD, Value::Array(items)) => {
                for item in items {
                    let Value::String(text) = item else {
                        return Err(invalid("`images` must hold base64 strings"));
                    };
                    let bytes = decode_base64(IMAGES_FIELD, &text)?;
                    form.images.push(NamedImage { field: IMAGE_FIELD.into(), bytes });
                }
            }
            (IMAGE_FIELD | REFERENCE_FIELD | IMAGES_FIELD, _) => {
                return Err(invalid(format!("`{key}` must be base64 text")));
            }
            // A multipart form cannot send a null, so JSON may not either: leave it out.
            (_, Value::Null) => return Err(invalid(format!("`{key}` is null; leave it out instead"))),
            (_, value) => {
                form.fields.insert(key, value);
            }
        }
    }
    Ok(())
}

/// An image sent as base64, or as a data URL as browsers produce them.
fn decode_base64(field: &str, text: &str) -> Result<Bytes, FormError> {
    let data = text.split_once(";base64,").map_or(text, |(_, data)| data);
    STANDARD
        .decode(data.trim())
        .map(Bytes::from)
        .map_err(|_| invalid(format!("field `{field}` is not valid base64")))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// The body in chunks of `chunk` bytes, as a network delivers it.
    fn body(
        bytes: &[u8],
        chunk: usize,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + Unpin + 'static {
        let chunks: Vec<_> = bytes.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        futures::stream::iter(chunks)
    }

    async fn read_all(
        content_type: &str,
        query: Option<&str>,
        bytes: &[u8],
        limit: usize,
    ) -> Result<ImageForm, FormError> {
        let content_type = (!content_type.is_empty()).then_some(content_type);
        read(content_type, query, body(bytes, 7), limit).await
    }

    fn multipart(boundary: &str) -> String {
        format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\nJPEG1\r\n\
             --{boundary}\r\ncontent-disposition: form-data; name=\"upload\"; filename=\"b.jpg\"\r\n\r\nJPEG2\r\n\
             --{boundary}\r\ncontent-disposition: form-data; name=\"threshold\"\r\n\r\n0.5\r\n--{boundary}--\r\n"
        )
    }

    #[tokio::test]
    async fn a_multipart_form_gives_its_files_as_images_and_the_rest_as_fields() {
        let body = multipart("XyZ");
        let form =
            read_all("multipart/form-data; boundary=XyZ", Some("liveness=require"), body.as_bytes(), 1 << 10)
                .await
                .unwrap();
        let images: Vec<_> = form.images.iter().map(|i| (i.field.as_str(), &i.bytes[..])).collect();
        assert_eq!(images, [("image", &b"JPEG1"[..]), ("upload", &b"JPEG2"[..])]);
        assert_eq!(form.fields["threshold"], "0.5");
        assert_eq!(form.fields["liveness"], "require");
        // The boundary is case-sensitive, the media type is not.
        assert!(read_all("Multipart/Form-Data; boundary=XyZ", None, body.as_bytes(), 1 << 10).await.is_ok());
        let lower = read_all("multipart/form-data; boundary=xyz", None, body.as_bytes(), 1 << 10).await;
        assert!(matches!(lower, Err(FormError::Invalid(_))), "{lower:?}");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_too_large_in_every_form() {
        let body = multipart("b");
        let limit = body.len() - 1;
        for content_type in ["multipart/form-data; boundary=b", "image/jpeg", "application/json"] {
            let err = read_all(content_type, None, body.as_bytes(), limit).await.unwrap_err();
            assert_eq!(err, FormError::TooLarge { limit }, "{content_type}");
        }
    }

    #[tokio::test]
    async fn json_carries_base64_and_data_urls_and_refuses_what_is_not_an_image() {
        let json = br#"{"image": "SlBFRzE=", "images": ["data:image/jpeg;base64,SlBFRzI=", " SlBFRzM= "], "reference_image": "SlBFRzQ=", "threshold": 0.5}"#;
        let form = read_all("application/json", None, json, 1 << 10).await.unwrap();
        let images: Vec<_> = form.images.iter().map(|i| (i.field.as_str(), &i.bytes[..])).collect();
        assert_eq!(
            images,
            [
                ("image", &b"JPEG1"[..]),
                ("image", &b"JPEG2"[..]),
                ("image", &b"JPEG3"[..]),
                ("reference_image", &b"JPEG4"[..])
            ]
        );
        assert_eq!(form.fields["threshold"], 0.5);
        for bad in [
            &br#"{"image": "not base64!"}"#[..],
            br#"{"image": 5}"#,
            br#"{"images": [5]}"#,
            br#"{"threshold": null}"#,
            br#"[1, 2]"#,
            br#"{"image": "#,
        ] {
            let err = read_all("application/json", None, bad, 1 << 10).await.unwrap_err();
            assert!(matches!(err, FormError::Invalid(_)), "{bad:?}: {err:?}");
        }
    }

    #[test]
    fn images_are_taken_by_field_in_the_order_sent() {
        let image = |field: &str, bytes: &'static [u8]| NamedImage {
            field: field.into(),
            bytes: Bytes::from_static(bytes),
        };
        let mut form = ImageForm {
            images: vec![image(IMAGE_FIELD, b"1"), image(REFERENCE_FIELD, b"R"), image(IMAGE_FIELD, b"2")],
            fields: Map::new(),
        };
        assert_eq!(form.take(REFERENCE_FIELD).as_deref(), Some(&b"R"[..]));
        assert_eq!(form.take(REFERENCE_FIELD), None);
        assert_eq!(form.take_all(IMAGE_FIELD), [Bytes::from_static(b"1"), Bytes::from_static(b"2")]);
        assert!(form.images.is_empty());
    }

    #[tokio::test]
    async fn a_raw_body_is_the_image_and_other_media_types_are_refused() {
        let form = read_all("image/png", None, b"PNG", 10).await.unwrap();
        assert_eq!(
            form.images,
            [NamedImage { field: IMAGE_FIELD.into(), bytes: Bytes::from_static(b"PNG") }]
        );
        assert_eq!(read_all("", None, b"", 10).await.unwrap_err(), FormError::NoBody);
        assert_eq!(
            read_all("Text/Plain", None, b"x", 10).await.unwrap_err(),
            FormError::UnsupportedMediaType("text/plain".into())
        );
    }
}
