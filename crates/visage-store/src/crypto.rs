//! Templates at rest: AES-256-GCM with a random nonce per template, bound to the template and
//! subject ids (associated data) so a sealed template cannot be moved to another subject.
//! Several keys may be loaded so old templates stay readable while keys rotate.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the template key must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)")]
    BadKey,
    #[error("template sealed with key {0}, which is not configured")]
    UnknownKey(String),
    #[error("a template failed authentication (wrong key or tampered data)")]
    Authentication,
    #[error("a template has a malformed length")]
    Malformed,
}

/// A template as stored: opaque bytes, the nonce and the id of the key that sealed it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedTemplate {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedTemplate").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// One 256-bit key; its id is derived from the key so nobody has to name it.
pub struct TemplateKey {
    id: String,
    cipher: Aes256Gcm,
}

impl TemplateKey {
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| CryptoError::BadKey)?);
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey);
        }
        let digest = Sha256::new().chain_update(b"visage template key id\0").chain_update(bytes).finalize();
        let id = hex::encode(&digest[..8]);
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|_| CryptoError::BadKey)?;
        Ok(Self { id, cipher })
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_base64() -> Zeroizing<String> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).expect("the operating system provides randomness");
        Zeroizing::new(STANDARD.encode(bytes.as_ref()))
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The active key (seals new templates) and every key that may open stored ones.
pub struct KeyRing {
    active: String,
    keys: HashMap<String, TemplateKey>,
}

impl KeyRing {
    pub fn new(active: TemplateKey, previous: impl IntoIterator<Item = TemplateKey>) -> Self {
        let active_id = active.id.clone();
        let mut keys: HashMap<String, TemplateKey> =
            previous.into_iter().map(|k| (k.id.clone(), k)).collect();
        keys.insert(active_id.clone(), active);
        Self { active: active_id, keys }
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// Ids of the loaded keys that are not the active one.
    pub fn previous_key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str).filter(|id| *id != self.active)
    }

    /// Whether the key with this id is loaded (active or previous).
    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.contains_key(key_id)
    }

    /// Seals a template's values, bound to its template and subject ids.
    pub fn seal(&self, template_id: Uuid, subject_id: Uuid, values: &[f32]) -> SealedTemplate {
        let plain = Zeroizing::new(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        self.seal_bytes(template_id, subject_id, &plain)
    }

    pub fn open(
        &self,
        template_id: Uuid,
        subject_id: Uuid,
        sealed: &SealedTemplate,
    ) -> Result<Vec<f32>, CryptoError> {
        let plain = self.open_bytes(template_id, subject_id, sealed)?;
        if plain.len() % 4 != 0 {
            return Err(CryptoError::Malformed);
        }
        Ok(plain.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// Seals any bytes (an enrolment image) bound to the two ids.
    pub fn seal_bytes(&self, template_id: Uuid, subject_id: Uuid, plain: &[u8]) -> SealedTemplate {
        let key = &self.keys[&self.active];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system provides randomness");
        let aad = associated_data(template_id, subject_id);
        let ciphertext = key
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad: &aad })
            .expect("AES-GCM encryption cannot fail below 64 GiB");
        SealedTemplate { key_id: key.id.clone(), nonce: nonce.to_vec(), ciphertext }
    }

    pub fn open_bytes(
        &self,
        template_id: Uuid,
        subject_id: Uuid,
        sealed: &SealedTemplate,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key =
            self.keys.get(&sealed.key_id).ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        let nonce: [u8; NONCE_LEN] =
            sealed.nonce.as_slice().try_into().map_err(|_| CryptoError::Malformed)?;
        let aad = associated_data(template_id, subject_id);
        let plain = key
            .cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: &sealed.ciphertext, aad: &aad })
            .map_err(|_| CryptoError::Authentication)?;
        Ok(Zeroizing::new(plain))
    }
}

fn associated_data(template_id: Uuid, subject_id: Uuid) -> [u8; 32] {
    let mut aad = [0u8; 32];
    aad[..16].copy_from_slice(template_id.as_bytes());
    aad[16..].copy_from_slice(subject_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TemplateKey {
        TemplateKey::from_base64(&TemplateKey::generate_base64()).unwrap()
    }

    #[test]
    fn sealed_templates_open_only_with_their_key_and_ids() {
        let ring = KeyRing::new(key(), []);
        let (t, s) = (Uuid::new_v4(), Uuid::new_v4());
        let values = vec![0.25f32, -0.5, 0.125];
        let sealed = ring.seal(t, s, &values);
        assert_eq!(ring.open(t, s, &sealed).unwrap(), values);
        assert!(matches!(ring.open(t, Uuid::new_v4(), &sealed), Err(CryptoError::Authentication)));
        let other = KeyRing::new(key(), []);
        assert!(matches!(other.open(t, s, &sealed), Err(CryptoError::UnknownKey(_))));
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(!sealed.ciphertext.windows(4).any(|w| w == &raw[..4]));
    }

    #[test]
    fn rotated_keys_still_open_old_templates() {
        let old = key();
        let old_bytes_ring = KeyRing::new(TemplateKey { id: old.id.clone(), cipher: old.cipher.clone() }, []);
        let (t, s) = (Uuid::new_v4(), Uuid::new_v4());
        let sealed = old_bytes_ring.seal(t, s, &[1.0]);
        let rotated = KeyRing::new(key(), [old]);
        assert_ne!(rotated.active_key_id(), sealed.key_id);
        assert_eq!(rotated.open(t, s, &sealed).unwrap(), vec![1.0]);
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert!(TemplateKey::from_base64("c2hvcnQ=").is_err());
        assert!(TemplateKey::from_base64("not base64!").is_err());
    }
}
