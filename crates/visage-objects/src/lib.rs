//! Enrolment images at rest. An image is sealed with the template keys (AES-256-GCM, bound to
//! its template and subject ids, like the template itself) before it leaves the process, and
//! kept as the object `{template_id}.img` in an object store: a local directory (the default)
//! or an S3 bucket (MinIO). Object names carry nothing but the template's random id.
//!
//! Object layout (unchanged from the files visage wrote before object storage, so existing
//! `data_dir/images/*.img` files stay readable): the key id, `\n`, the 12-byte nonce, the
//! ciphertext.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt as _, RetryConfig};
use uuid::Uuid;
use visage_store::crypto::{CryptoError, KeyRing, SealedTemplate};
use zeroize::Zeroizing;

#[cfg(feature = "test-support")]
pub mod testing;

const NONCE_LEN: usize = 12;
const SUFFIX: &str = ".img";

/// Where images are kept.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Files in a directory (created when missing).
    Local {
        dir: PathBuf,
    },
    S3(S3Options),
}

/// An S3 bucket (AWS, or MinIO and other S3 servers through `endpoint`).
#[derive(Clone)]
pub struct S3Options {
    /// `http://minio:9000`; unset: AWS itself. Requests are path-style
    /// (`endpoint/bucket/key`), as local S3 servers expect; plain HTTP is allowed only when the
    /// endpoint says `http://`.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// Unset: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and the other standard AWS
    /// variables) from the environment.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Bound on one request, retries included.
    pub timeout: Duration,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The store failed or cannot be reached (also a missing bucket or refused credentials).
    #[error("image storage is unavailable: {0}")]
    Unavailable(#[source] object_store::Error),
    #[error("the stored image does not exist")]
    NotFound,
    /// Not an image reference visage writes, or not an object visage wrote.
    #[error("malformed stored image or reference")]
    Malformed,
    #[error("the stored image cannot be opened: {0}")]
    Crypto(#[from] CryptoError),
    #[error("invalid image storage configuration: {0}")]
    Config(String),
}

impl From<object_store::Error> for ImageError {
    /// Everything is the store's failure, a missing bucket included (S3 says "not found" for
    /// that too); only [`ImageStore::get`] tells a missing image apart.
    fn from(err: object_store::Error) -> Self {
        Self::Unavailable(err)
    }
}

pub type ImageResult<T> = Result<T, ImageError>;

/// An object found by [`ImageStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub reference: String,
    pub last_modified: DateTime<Utc>,
}

/// Sealed images in an object store; cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    objects: Arc<dyn ObjectStore>,
    kind: &'static str,
}

impl fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageStore({})", self.objects)
    }
}

impl ImageStore {
    /// Opens the store. Nothing is contacted yet: a wrong S3 endpoint or bucket shows on the
    /// first request.
    pub fn open(backend: &Backend) -> ImageResult<Self> {
        match backend {
            Backend::Local { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    ImageError::Config(format!("cannot create the image directory {}: {e}", dir.display()))
                })?;
                let local = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| ImageError::Config(e.to_string()))?
                    .with_fsync(true);
                Ok(Self { objects: Arc::new(local), kind: "local" })
            }
            Backend::S3(options) => {
                if options.bucket.is_empty() {
                    return Err(ImageError::Config("the S3 backend needs a bucket".into()));
                }
                let client = ClientOptions::new()
                    .with_timeout(options.timeout)
                    .with_connect_timeout(options.timeout.min(Duration::from_secs(3)));
                // A few quick retries of transient failures, all within the request timeout, so
                // a handler waiting on the store is answered in bounded time.
                let retry = RetryConfig {
                    backoff: BackoffConfig {
                        init_backoff: Duration::from_millis(100),
                        max_backoff: Duration::from_secs(1),
                        base: 2.0,
                    },
                    max_retries: 2,
                    retry_timeout: options.timeout,
                };
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&options.bucket)
                    .with_region(&options.region)
                    .with_virtual_hosted_style_request(false)
                    .with_client_options(client)
                    .with_retry(retry);
                if let Some(endpoint) = &options.endpoint {
                    builder =
                        builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(id) = &options.access_key_id {
                    builder = builder.with_access_key_id(id);
                }
                if let Some(secret) = &options.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let s3 = builder.build().map_err(|e| ImageError::Config(e.to_string()))?;
                Ok(Self { objects: Arc::new(s3), kind: "s3" })
            }
        }
    }

    /// `local` or `s3`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The reference (object name) of a template's image.
    pub fn reference(template_id: Uuid) -> String {
        format!("{template_id}{SUFFIX}")
    }

    /// The id a reference was made from ([`Self::reference`]'s inverse).
    pub fn id_of(reference: &str) -> ImageResult<Uuid> {
        let id = reference.strip_suffix(SUFFIX).ok_or(ImageError::Malformed)?;
        Uuid::try_parse(id).map_err(|_| ImageError::Malformed)
    }

    /// Seals the image for its template and subject and uploads it; returns its reference.
    pub async fn put(
        &self,
        keys: &KeyRing,
        template_id: Uuid,
        subject_id: Uuid,
        image: &[u8],
    ) -> ImageResult<String> {
        let sealed = keys.seal_bytes(template_id, subject_id, image);
        let reference = Self::reference(template_id);
        self.objects.put(&location(&reference)?, encode(&sealed).into()).await?;
        Ok(reference)
    }

    /// Downloads and opens a template's image.
    pub async fn get(
        &self,
        keys: &KeyRing,
        template_id: Uuid,
        subject_id: Uuid,
        reference: &str,
    ) -> ImageResult<Zeroizing<Vec<u8>>> {
        let bytes = match self.objects.get(&location(reference)?).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Err(ImageError::NotFound),
            Err(err) => return Err(err.into()),
        };
        let sealed = decode(&bytes)?;
        Ok(keys.open_bytes(template_id, subject_id, &sealed)?)
    }

    /// Seals a stored image anew under the active key, when another key sealed it. The caller
    /// checks afterwards that the image is still in use: an erasure between the read and the
    /// write would otherwise leave the image behind.
    pub async fn reseal(
        &self,
        keys: &KeyRing,
        template_id: Uuid,
        subject_id: Uuid,
        reference: &str,
    ) -> ImageResult<Resealed> {
        let location = location(reference)?;
        let bytes = match self.objects.get(&location).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Err(ImageError::NotFound),
            Err(err) => return Err(err.into()),
        };
        let sealed = decode(&bytes)?;
        if sealed.key_id == keys.active_key_id() {
            return Ok(Resealed::AlreadyCurrent);
        }
        let plain = keys.open_bytes(template_id, subject_id, &sealed)?;
        let resealed = keys.seal_bytes(template_id, subject_id, &plain);
        self.objects.put(&location, encode(&resealed).into()).await?;
        Ok(Resealed::From(sealed.key_id))
    }

    /// Deletes an image; one that is already gone counts as deleted. A failure is retried
    /// twice (after 0.2 s and 1 s) on top of the client's own retries of transient errors.
    pub async fn delete(&self, reference: &str) -> ImageResult<()> {
        let location = location(reference)?;
        let mut pauses = [Duration::from_millis(200), Duration::from_secs(1)].into_iter();
        loop {
            match self.objects.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => return Ok(()),
                Err(err) => match pauses.next() {
                    Some(pause) => {
                        tracing::warn!(backend = self.kind, error = %err, "deleting a stored image failed; retrying");
                        tokio::time::sleep(pause).await;
                    }
                    None => return Err(ImageError::Unavailable(err)),
                },
            }
        }
    }

    /// Deletes every image (each with [`Self::delete`]'s retries); returns those that could not
    /// be deleted.
    pub async fn delete_all(&self, references: &[String]) -> Vec<String> {
        let mut failed = Vec::new();
        for reference in references {
            if let Err(err) = self.delete(reference).await {
                tracing::error!(backend = self.kind, error = %err, "a stored image could not be deleted");
                failed.push(reference.clone());
            }
        }
        failed
    }

    /// Every image in the store (objects that are not visage images are left out).
    pub async fn list(&self) -> ImageResult<Vec<StoredImage>> {
        let objects: Vec<_> = self.objects.list(None).try_collect().await?;
        Ok(objects
            .into_iter()
            .filter(|meta| meta.location.parts().count() == 1)
            .map(|meta| StoredImage {
                reference: meta.location.to_string(),
                last_modified: meta.last_modified,
            })
            .filter(|image| location(&image.reference).is_ok())
            .collect())
    }
}

/// The object of a reference, which must be `{uuid}.img`: a reference read from the database
/// never names anything else (no separators, no `..`).
/// What [`ImageStore::reseal`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resealed {
    /// The active key had sealed it already.
    AlreadyCurrent,
    /// Re-sealed; it had been sealed with this key.
    From(String),
}

fn location(reference: &str) -> ImageResult<Path> {
    let id = ImageStore::id_of(reference)?;
    Ok(Path::from(format!("{}{SUFFIX}", id.hyphenated())))
}

fn encode(sealed: &SealedTemplate) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(sealed.key_id.len() + 1 + NONCE_LEN + sealed.ciphertext.len());
    bytes.extend_from_slice(sealed.key_id.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(&sealed.nonce);
    bytes.extend_from_slice(&sealed.ciphertext);
    bytes
}

fn decode(bytes: &[u8]) -> ImageResult<SealedTemplate> {
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or(ImageError::Malformed)?;
    if bytes.len() < newline + 1 + NONCE_LEN {
        return Err(ImageError::Malformed);
    }
    let key_id = std::str::from_utf8(&bytes[..newline]).map_err(|_| ImageError::Malformed)?;
    Ok(SealedTemplate {
        key_id: key_id.to_owned(),
        nonce: bytes[newline + 1..newline + 1 + NONCE_LEN].to_vec(),
        ciphertext: bytes[newline + 1 + NONCE_LEN..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use visage_store::crypto::TemplateKey;

    use super::*;

    fn keys() -> KeyRing {
        KeyRing::new(TemplateKey::from_base64(&TemplateKey::generate_base64()).unwrap(), [])
    }

    #[test]
    fn references_name_only_a_template_id() {
        let id = Uuid::now_v7();
        let reference = ImageStore::reference(id);
        assert_eq!(location(&reference).unwrap().to_string(), reference);
        for bad in ["../x.img", "a/b.img", "x.img", "", &id.to_string(), &format!("{id}.img/..")] {
            assert!(matches!(location(bad), Err(ImageError::Malformed)), "{bad:?}");
        }
    }

    #[test]
    fn the_object_layout_round_trips_and_rejects_truncation() {
        let keys = keys();
        let (t, s) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = keys.seal_bytes(t, s, b"picture");
        let bytes = encode(&sealed);
        assert_eq!(decode(&bytes).unwrap(), sealed);
        assert_eq!(&*keys.open_bytes(t, s, &decode(&bytes).unwrap()).unwrap(), b"picture");
        assert!(matches!(decode(b"no newline"), Err(ImageError::Malformed)));
        assert!(matches!(decode(b"key\nshort"), Err(ImageError::Malformed)));
    }
}
