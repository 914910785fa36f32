//! The `Idempotency-Key` header and the fingerprint that tells a retry of a request from
//! another request under the same key.

use sha2::{Digest, Sha256};

/// Why an `Idempotency-Key` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("send one Idempotency-Key header, not several")]
    Repeated,
    #[error("Idempotency-Key must be 1-255 visible ASCII characters (no spaces)")]
    Malformed,
}

/// The header's values, checked: 1-255 visible ASCII characters, sent once. `None` without one.
pub fn check_key<'a>(values: &[&'a [u8]]) -> Result<Option<&'a str>, KeyError> {
    let value = match values {
        [] => return Ok(None),
        [value] => *value,
        _ => return Err(KeyError::Repeated),
    };
    if value.is_empty() || value.len() > 255 || !value.iter().all(u8::is_ascii_graphic) {
        return Err(KeyError::Malformed);
    }
    // Visible ASCII is UTF-8.
    std::str::from_utf8(value).map(Some).map_err(|_| KeyError::Malformed)
}

/// SHA-256 (hex) of what makes two requests the same: method, path and query, media type and
/// body. A multipart body is hashed with its boundary replaced, since a client that builds the
/// same form again picks a new random boundary.
pub fn fingerprint(method: &str, path_and_query: &str, content_type: Option<&str>, body: &[u8]) -> String {
    let content_type = content_type.unwrap_or_default();
    let mut params = content_type.split(';');
    let media_type = params.next().unwrap_or_default().trim().to_ascii_lowercase();
    let boundary = params
        .filter_map(|p| p.trim().split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|b| media_type.starts_with("multipart/") && !b.is_empty());
    let mut hash = Sha256::new();
    for part in [method, path_and_query, &media_type] {
        hash.update(part.as_bytes());
        hash.update(b"\n");
    }
    match boundary {
        Some(boundary) => {
            let delimiter = format!("--{boundary}");
            let mut rest = 0;
            for at in memchr::memmem::find_iter(body, delimiter.as_bytes()) {
                hash.update(&body[rest..at]);
                hash.update(b"--boundary");
                rest = at + delimiter.len();
            }
            hash.update(&body[rest..]);
        }
        None => hash.update(body),
    }
    format!("{:x}", hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_one_header_of_1_to_255_visible_ascii_characters() {
        assert_eq!(check_key(&[]), Ok(None));
        assert_eq!(check_key(&[b"order-42/retry_1"]), Ok(Some("order-42/retry_1")));
        let (longest, too_long) = ("k".repeat(255), "k".repeat(256));
        assert_eq!(check_key(&[longest.as_bytes()]), Ok(Some(longest.as_str())));
        let bad: [&[u8]; 5] = [b"", too_long.as_bytes(), b"two words", b"tab\there", "caf\u{e9}".as_bytes()];
        for value in bad {
            assert_eq!(check_key(&[value]), Err(KeyError::Malformed), "{value:?}");
        }
        assert_eq!(check_key(&[b"a", b"b"]), Err(KeyError::Repeated));
    }

    #[test]
    fn fingerprints_tell_requests_apart_but_not_multipart_boundaries() {
        let path = "/v1/subjects/1/faces";
        let form = |boundary: &str, image: &str| {
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n{image}\r\n--{boundary}--\r\n"
            )
        };
        let multipart = |boundary: &str, image: &str| {
            let content_type = format!("multipart/form-data; boundary={boundary}");
            fingerprint("POST", path, Some(&content_type), form(boundary.trim_matches('"'), image).as_bytes())
        };
        let a = multipart("abc", "JPEG1");
        assert_eq!(a, multipart("\"xyz123\"", "JPEG1"), "the same form with another boundary");
        assert_ne!(a, multipart("abc", "JPEG2"));
        let same_path = fingerprint("POST", path, Some("image/jpeg"), b"JPEG1");
        assert_ne!(same_path, fingerprint("POST", "/v1/subjects/2/faces", Some("image/jpeg"), b"JPEG1"));
        let with_query =
            fingerprint("POST", "/v1/subjects/1/faces?liveness=require", Some("image/jpeg"), b"JPEG1");
        assert_ne!(same_path, with_query);
        assert_ne!(same_path, fingerprint("POST", path, Some("image/png"), b"JPEG1"));
        assert_eq!(same_path, fingerprint("POST", path, Some("IMAGE/JPEG"), b"JPEG1"));
        assert_ne!(same_path, fingerprint("PUT", path, Some("image/jpeg"), b"JPEG1"));
        // Fixed bytes, fixed hash: the fingerprint is SHA-256 of its parts.
        let expected = format!("{:x}", Sha256::digest(b"POST\n/v1/subjects/1/faces\nimage/jpeg\nJPEG1"));
        assert_eq!(same_path, expected);
    }
}
