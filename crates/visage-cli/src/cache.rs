//! On-disk cache of evaluation embeddings, keyed by the image's content hash under a
//! fingerprint of everything that shapes an embedding (models, backend, detector and
//! quality settings, visage version). A rerun, or a second report on the same images, then
//! costs file reads instead of inference.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 5] = b"VSGE1";
const TAG_EMBEDDING: u8 = 0;
const TAG_FAILED: u8 = 1;

/// What embedding one image gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Embedding(Vec<f32>),
    /// The image itself was at fault (no face, undecodable): the same bytes fail again.
    Failed {
        code: String,
        message: String,
    },
}

pub struct EmbeddingCache {
    dir: PathBuf,
}

pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The default place: `$XDG_CACHE_HOME/visage/embeddings`, else `~/.cache/visage/embeddings`.
pub fn default_root() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("visage").join("embeddings"))
}

impl EmbeddingCache {
    /// `fingerprint` is any text naming the embedding pipeline; entries made under another
    /// fingerprint are never read.
    pub fn open(root: &Path, fingerprint: &str) -> anyhow::Result<Self> {
        let key = &hex::encode(Sha256::digest(fingerprint.as_bytes()))[..16];
        let dir = root.join(key);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating cache {}", dir.display()))?;
        Ok(Self { dir })
    }

    fn entry(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(hash)
    }

    /// `None` when absent or unreadable (a damaged entry is recomputed, never trusted).
    pub fn get(&self, hash: &str) -> Option<Outcome> {
        decode(&std::fs::read(self.entry(hash)).ok()?)
    }

    /// Written to a temporary file and renamed, so a crash never leaves half an entry.
    pub fn put(&self, hash: &str, outcome: &Outcome) -> anyhow::Result<()> {
        let path = self.entry(hash);
        let parent = path.parent().expect("entries live in a shard folder");
        std::fs::create_dir_all(parent)?;
        let tmp = tempfile::NamedTempFile::new_in(parent)?;
        std::fs::write(tmp.path(), encode(outcome))?;
        tmp.persist(&path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

fn encode(outcome: &Outcome) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    match outcome {
        Outcome::Embedding(values) => {
            out.push(TAG_EMBEDDING);
            out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        }
        Outcome::Failed { code, message } => {
            out.push(TAG_FAILED);
            out.extend(format!("{code}\n{message}").into_bytes());
        }
    }
    out
}

fn decode(bytes: &[u8]) -> Option<Outcome> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (&tag, payload) = rest.split_first()?;
    match tag {
        TAG_EMBEDDING if !payload.is_empty() && payload.len().is_multiple_of(4) => Some(Outcome::Embedding(
            payload.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        )),
        TAG_FAILED => {
            let text = std::str::from_utf8(payload).ok()?;
            let (code, message) = text.split_once('\n')?;
            Some(Outcome::Failed { code: code.into(), message: message.into() })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_stay_apart_by_fingerprint() {
        let root = tempfile::tempdir().unwrap();
        let cache = EmbeddingCache::open(root.path(), "sface onnxruntime").unwrap();
        let hash = content_hash(b"image bytes");
        assert_eq!(cache.get(&hash), None);
        let embedding = Outcome::Embedding(vec![0.25, -1.5, 3.0]);
        cache.put(&hash, &embedding).unwrap();
        assert_eq!(cache.get(&hash), Some(embedding));

        let failed = Outcome::Failed { code: "no_face_detected".into(), message: "no face\nat all".into() };
        cache.put(&content_hash(b"empty wall"), &failed).unwrap();
        assert_eq!(cache.get(&content_hash(b"empty wall")), Some(failed));

        let other = EmbeddingCache::open(root.path(), "mobilefacenet onnxruntime").unwrap();
        assert_eq!(other.get(&hash), None);
    }

    #[test]
    fn a_damaged_entry_is_a_miss() {
        let root = tempfile::tempdir().unwrap();
        let cache = EmbeddingCache::open(root.path(), "x").unwrap();
        let hash = content_hash(b"y");
        cache.put(&hash, &Outcome::Embedding(vec![1.0, 2.0])).unwrap();
        let path = cache.entry(&hash);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 1);
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(cache.get(&hash), None);
    }
}
