//! The image forms a request may take (multipart, raw image, JSON with base64 or data URLs),
//! read as the server reads them: any body is a form within the body limit or a refusal,
//! never a panic; nothing read is larger than what was sent; "too large" only past the limit.
//!
//! Input: a byte picking the media type, a byte picking the chunk size the body arrives in,
//! a byte giving the query string's length, the query string, then the body.
#![no_main]

use std::convert::Infallible;

use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use visage_wire::image_form::{self, FormError};

const LIMIT: usize = 4096;

/// The multipart boundary is `XyZ` in the seeds; others test the boundary's parsing.
const MEDIA_TYPES: [Option<&str>; 10] = [
    Some("multipart/form-data; boundary=XyZ"),
    Some("multipart/form-data; boundary=\"XyZ\""),
    Some("Multipart/Form-Data; charset=utf-8; boundary=XyZ"),
    Some("multipart/form-data"),
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("image/jpeg"),
    Some("application/octet-stream"),
    Some("text/plain"),
    None,
];

fuzz_target!(|input: &[u8]| {
    let [kind, chunk, query_len, rest @ ..] = input else { return };
    let (query, body) = rest.split_at(usize::from(*query_len).min(rest.len()));
    let query = String::from_utf8_lossy(query);
    let chunk = usize::from(*chunk).max(1);
    let chunks: Vec<Result<_, Infallible>> =
        body.chunks(chunk).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    let media_type = MEDIA_TYPES[usize::from(*kind) % MEDIA_TYPES.len()];
    let read = image_form::read(media_type, Some(&query), futures::stream::iter(chunks), LIMIT);
    match block_on(read) {
        Ok(form) => {
            let images: usize = form.images.iter().map(|image| image.bytes.len()).sum();
            assert!(images <= body.len(), "{images} image bytes from a {}-byte body", body.len());
            assert!(body.len() <= LIMIT, "a {}-byte body was read past the limit", body.len());
        }
        Err(FormError::TooLarge { limit }) => {
            assert!(body.len() > limit, "{} bytes called too large", body.len())
        }
        Err(_) => {}
    }
});
