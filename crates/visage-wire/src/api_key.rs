//! API keys: `vsg_<id>_<secret>`. The id is public (audit events name it); only a SHA-256 of
//! the 256-bit random secret is stored. A plain hash suffices because the secret is random,
//! not a password, so there is nothing to guess from it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const PREFIX: &str = "vsg_";

/// A newly created key: the token is shown once and never stored.
pub struct NewKey {
    pub id: String,
    pub token: Zeroizing<String>,
    pub secret_hash: Vec<u8>,
}

pub fn generate() -> NewKey {
    let mut id = [0u8; 6];
    let mut secret = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut id).expect("the operating system provides randomness");
    getrandom::fill(secret.as_mut()).expect("the operating system provides randomness");
    let id = hex::encode(id);
    let secret_text = Zeroizing::new(URL_SAFE_NO_PAD.encode(secret.as_ref()));
    let token = Zeroizing::new(format!("{PREFIX}{id}_{}", secret_text.as_str()));
    NewKey { secret_hash: hash(&secret_text), id, token }
}

/// The token a request presents: `X-API-Key: vsg_…`, else `Authorization: Bearer vsg_…`
/// (the raw header values; either may be absent or not text).
pub fn presented<'a>(x_api_key: Option<&'a [u8]>, authorization: Option<&'a [u8]>) -> Option<&'a str> {
    if let Some(value) = x_api_key {
        return std::str::from_utf8(value).ok();
    }
    let value = std::str::from_utf8(authorization?).ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)
}

/// Splits a presented token into its key id and secret, or `None` when it is not a key.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some((id, secret))
}

pub fn matches(secret: &str, stored_hash: &[u8]) -> bool {
    bool::from(hash(secret).as_slice().ct_eq(stored_hash))
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_and_matches_only_its_hash() {
        let key = generate();
        let (id, secret) = parse(&key.token).unwrap();
        assert_eq!(id, key.id);
        assert!(matches(secret, &key.secret_hash));
        assert!(!matches("guess", &key.secret_hash));
        assert!(!key.secret_hash.windows(secret.len().min(8)).any(|w| w == &secret.as_bytes()[..8]));
    }

    #[test]
    fn the_x_api_key_header_wins_over_a_bearer_token() {
        assert_eq!(presented(Some(b"vsg_a"), Some(b"Bearer vsg_b")), Some("vsg_a"));
        assert_eq!(presented(None, Some(b"Bearer  vsg_b ")), Some("vsg_b"));
        assert_eq!(presented(None, Some(b"bearer vsg_b")), Some("vsg_b"));
        assert_eq!(presented(None, Some(b"Basic dXNlcg==")), None);
        assert_eq!(presented(Some(&[0xff]), None), None);
        assert_eq!(presented(None, None), None);
    }

    #[test]
    fn malformed_tokens_are_not_keys() {
        for bad in ["", "vsg_", "vsg_abc_def", "Bearer x", "vsg_0123456789ab_", "vsg_0123456789zz_x"] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
