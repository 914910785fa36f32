//! The headers a caller controls before anything else is read: the API key (`X-API-Key` or a
//! bearer token) and `Idempotency-Key`, with the fingerprint of the request. Whatever the
//! bytes: no panic, a key is accepted only in its documented shape.
//!
//! Input: up to four newline-separated parts: the API key header value, the Authorization
//! header value, the Idempotency-Key values (separated by `\r`), and a body to fingerprint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use visage_wire::{api_key, idempotency};

fuzz_target!(|input: &[u8]| {
    let mut parts = input.splitn(4, |b| *b == b'\n');
    let x_api_key = parts.next().filter(|p| !p.is_empty());
    let authorization = parts.next().filter(|p| !p.is_empty());
    let idempotency_values: Vec<&[u8]> =
        parts.next().map(|p| p.split(|b| *b == b'\r').collect()).unwrap_or_default();
    let body = parts.next().unwrap_or_default();

    if let Some(token) = api_key::presented(x_api_key, authorization)
        && let Some((id, secret)) = api_key::parse(token)
    {
        assert!(id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()), "id {id:?}");
        assert!(!secret.is_empty());
        assert_eq!(format!("vsg_{id}_{secret}"), token);
        assert!(!api_key::matches(secret, &[]), "a secret matched an empty hash");
    }

    match idempotency::check_key(&idempotency_values) {
        Ok(Some(key)) => {
            assert_eq!(idempotency_values.len(), 1);
            assert!((1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()), "{key:?}");
        }
        Ok(None) => assert!(idempotency_values.is_empty()),
        Err(_) => {}
    }

    // The content type comes from the request too: take it from the first part.
    let content_type = x_api_key.map(String::from_utf8_lossy);
    let print = idempotency::fingerprint("POST", "/v1/subjects", content_type.as_deref(), body);
    assert!(print.len() == 64 && print.bytes().all(|b| b.is_ascii_hexdigit()));
});
