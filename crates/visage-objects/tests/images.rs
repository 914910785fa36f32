//! The image store on both backends: a local directory, and a real S3 server (moto, at
//! `VISAGE_TEST_S3_ENDPOINT`; `scripts/services/s3.sh` starts it) with a bucket per test.

use std::time::Duration;

use uuid::Uuid;
use visage_objects::testing::TestBucket;
use visage_objects::{Backend, ImageError, ImageStore, Resealed};
use visage_store::crypto::{KeyRing, TemplateKey};

fn keys() -> KeyRing {
    KeyRing::new(TemplateKey::from_base64(&TemplateKey::generate_base64()).unwrap(), [])
}

/// Something that looks like a photo's first bytes, long enough to be searched for.
fn picture(seed: u8) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend((0..4096u32).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Put, get, list and delete, the same on every backend.
async fn round_trip(images: &ImageStore) {
    let keys = keys();
    let (template, subject) = (Uuid::now_v7(), Uuid::now_v7());
    let reference = images.put(&keys, template, subject, &picture(1)).await.unwrap();
    assert_eq!(reference, format!("{template}.img"), "the name carries only the template id");
    assert_eq!(&*images.get(&keys, template, subject, &reference).await.unwrap(), picture(1).as_slice());
    // Bound to its ids: another subject's id does not open it.
    assert!(matches!(
        images.get(&keys, template, Uuid::now_v7(), &reference).await,
        Err(ImageError::Crypto(_))
    ));
    let listed = images.list().await.unwrap();
    assert_eq!(listed.iter().map(|i| i.reference.as_str()).collect::<Vec<_>>(), [reference.as_str()]);

    images.delete(&reference).await.unwrap();
    assert!(images.list().await.unwrap().is_empty());
    assert!(matches!(images.get(&keys, template, subject, &reference).await, Err(ImageError::NotFound)));
    images.delete(&reference).await.expect("deleting what is gone succeeds");
    assert!(matches!(images.delete("../../etc/passwd").await, Err(ImageError::Malformed)));
}

#[tokio::test]
async fn local_images_round_trip_and_are_sealed_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let images = ImageStore::open(&Backend::Local { dir: dir.path().join("images") }).unwrap();
    assert_eq!(images.kind(), "local");
    round_trip(&images).await;

    let keys = keys();
    let (template, subject) = (Uuid::now_v7(), Uuid::now_v7());
    let reference = images.put(&keys, template, subject, &picture(2)).await.unwrap();
    let on_disk = std::fs::read(dir.path().join("images").join(&reference)).unwrap();
    assert!(!contains(&on_disk, &picture(2)[..64]), "an image is stored in the clear");
    assert!(!on_disk.starts_with(&[0xFF, 0xD8]));
}

#[tokio::test]
async fn files_written_before_object_storage_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let (template, subject) = (Uuid::now_v7(), Uuid::now_v7());
    // The layout visage wrote itself: key id, newline, nonce, ciphertext.
    let sealed = keys.seal_bytes(template, subject, &picture(3));
    let mut file = sealed.key_id.clone().into_bytes();
    file.push(b'\n');
    file.extend_from_slice(&sealed.nonce);
    file.extend_from_slice(&sealed.ciphertext);
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    std::fs::write(dir.path().join("images").join(format!("{template}.img")), file).unwrap();

    let images = ImageStore::open(&Backend::Local { dir: dir.path().join("images") }).unwrap();
    let opened = images.get(&keys, template, subject, &format!("{template}.img")).await.unwrap();
    assert_eq!(&*opened, picture(3).as_slice());
}

/// An image sealed with an old key is re-sealed under the new one, once; then the old key is
/// not needed to open it.
async fn reseal(images: &ImageStore) {
    let (old, new) = (TemplateKey::generate_base64(), TemplateKey::generate_base64());
    let key = |text: &str| TemplateKey::from_base64(text).unwrap();
    let before = KeyRing::new(key(&old), []);
    let during = KeyRing::new(key(&new), [key(&old)]);
    let after = KeyRing::new(key(&new), []);
    let (template, subject) = (Uuid::now_v7(), Uuid::now_v7());
    let reference = images.put(&before, template, subject, &picture(7)).await.unwrap();
    assert!(matches!(images.get(&after, template, subject, &reference).await, Err(ImageError::Crypto(_))));
    let done = images.reseal(&during, template, subject, &reference).await.unwrap();
    assert_eq!(done, Resealed::From(before.active_key_id().to_owned()));
    assert_eq!(
        images.reseal(&during, template, subject, &reference).await.unwrap(),
        Resealed::AlreadyCurrent
    );
    assert_eq!(&*images.get(&after, template, subject, &reference).await.unwrap(), picture(7).as_slice());
    let gone = ImageStore::reference(Uuid::now_v7());
    assert!(matches!(images.reseal(&during, template, subject, &gone).await, Err(ImageError::NotFound)));
    images.delete(&reference).await.unwrap();
}

#[tokio::test]
async fn local_images_are_resealed_under_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    reseal(&ImageStore::open(&Backend::Local { dir: dir.path().join("images") }).unwrap()).await;
}

#[tokio::test]
async fn s3_images_round_trip_and_the_bucket_holds_only_ciphertext() {
    let bucket = TestBucket::create().await;
    let images = ImageStore::open(&Backend::S3(bucket.options())).unwrap();
    assert_eq!(images.kind(), "s3");
    round_trip(&images).await;
    reseal(&images).await;

    let keys = keys();
    let (template, subject) = (Uuid::now_v7(), Uuid::now_v7());
    images.put(&keys, template, subject, &picture(4)).await.unwrap();
    let objects = bucket.objects().await;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].0, format!("{template}.img"));
    assert!(!contains(&objects[0].1, &picture(4)[..64]), "an image is stored in the clear");
    assert!(!objects[0].1.starts_with(&[0xFF, 0xD8]));

    // Objects visage did not write are not images.
    bucket.put_raw("notes/readme.txt", b"x".to_vec()).await;
    assert_eq!(images.list().await.unwrap().len(), 1);
    // A tampered object does not open.
    bucket.put_raw(&format!("{template}.img"), b"key\n0123456789abcdef".to_vec()).await;
    assert!(images.get(&keys, template, subject, &format!("{template}.img")).await.is_err());
}

#[tokio::test]
async fn a_missing_bucket_or_an_unreachable_server_is_unavailable() {
    let missing = TestBucket::options_for(&format!("visage-missing-{}", Uuid::new_v4().simple()));
    let images = ImageStore::open(&Backend::S3(missing)).unwrap();
    let keys = keys();
    let put = images.put(&keys, Uuid::now_v7(), Uuid::now_v7(), &picture(5)).await;
    assert!(matches!(put, Err(ImageError::Unavailable(_))), "{put:?}");
    assert!(matches!(images.list().await, Err(ImageError::Unavailable(_))));

    // A port nothing listens on: refused at once, retried briefly, then unavailable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut options = TestBucket::options_for("anything");
    options.endpoint = Some(format!("http://127.0.0.1:{port}"));
    options.timeout = Duration::from_secs(2);
    let images = ImageStore::open(&Backend::S3(options)).unwrap();
    let put = images.put(&keys, Uuid::now_v7(), Uuid::now_v7(), &picture(6)).await;
    assert!(matches!(put, Err(ImageError::Unavailable(_))), "{put:?}");
    assert!(matches!(
        images.delete(&format!("{}.img", Uuid::now_v7())).await,
        Err(ImageError::Unavailable(_))
    ));
}

#[test]
fn the_s3_backend_needs_a_bucket() {
    let options = TestBucket::options_for("");
    assert!(matches!(ImageStore::open(&Backend::S3(options)), Err(ImageError::Config(_))));
}
