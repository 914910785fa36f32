//! Enrolment images in a real S3 bucket (moto at `VISAGE_TEST_S3_ENDPOINT`, started by
//! scripts/services/s3.sh), a bucket per test: sealed before upload, gone after erasure, and an
//! enrolment that cannot keep its image or its templates keeps nothing.

use visage_objects::S3Options;
use visage_objects::testing::TestBucket;
use visage_server::config::ImageBackend;
use visage_server::jobs::sweep;

use super::*;

fn keep_images_in(config: &mut Config, bucket: &S3Options) {
    config.storage.store_images = true;
    config.images.backend = ImageBackend::S3;
    config.images.s3_endpoint = bucket.endpoint.clone();
    config.images.s3_bucket = Some(bucket.bucket.clone());
    config.images.s3_access_key_id = bucket.access_key_id.clone();
    config.images.s3_secret_access_key = bucket.secret_access_key.clone().map(Secret::new);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn enrol_image(app: &TestApp, subject: Uuid, image: &str) -> Response {
    let form = Form::new().part("image", jpeg(lfw(image)));
    app.post_form(&format!("/v1/subjects/{subject}/faces"), &app.admin, form).await
}

async fn template_ids(app: &TestApp, subject: Uuid) -> Vec<Uuid> {
    app.state.store.list_templates(subject).await.unwrap().into_iter().map(|t| t.id).collect()
}

#[tokio::test]
async fn enrolment_images_reach_the_bucket_sealed_and_leave_it_with_the_face() {
    let bucket = TestBucket::create().await;
    let app = TestApp::spawn_with(|c| keep_images_in(c, &bucket.options())).await;
    let bob = app.enrol("bob-s3", "Bob_Graham_0001").await;

    let objects = bucket.objects().await;
    assert_eq!(objects.len(), 1, "one object per enrolled image");
    let (name, bytes) = &objects[0];
    let template = template_ids(&app, bob).await[0];
    assert_eq!(name, &format!("{template}.img"), "the object name carries only the template id");
    let original = lfw("Bob_Graham_0001");
    assert!(!bytes.starts_with(&[0xFF, 0xD8]), "the object is not the JPEG");
    assert!(
        !original.chunks(64).filter(|c| c.len() == 64).any(|chunk| contains(bytes, chunk)),
        "the object contains part of the image in the clear"
    );
    let opened = visage_server::service::images::load(&app.state, template, bob, name).await.unwrap();
    assert_eq!(*opened, original, "the sealed object opens to the uploaded image");
    let local = app.config.storage.data_dir.join("images");
    assert!(std::fs::read_dir(&local).map_or(true, |mut d| d.next().is_none()), "nothing kept locally");

    // Deleting one face deletes its object only; erasure deletes the rest.
    expect(enrol_image(&app, bob, "Bob_Graham_0005").await, StatusCode::CREATED).await;
    assert_eq!(bucket.objects().await.len(), 2);
    let path = format!("/v1/subjects/{bob}/faces/{template}");
    expect(app.delete(&path, &app.admin).await, StatusCode::NO_CONTENT).await;
    let left = bucket.objects().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, format!("{}.img", template_ids(&app, bob).await[0]));
    expect(app.delete(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::NO_CONTENT).await;
    assert!(bucket.objects().await.is_empty(), "erasure deletes the stored images");
    let scraped = scrape(&app).await;
    assert_eq!(value(&scraped, "image_deletions_failed_total", &[]), Some(0.0));
}

#[tokio::test]
async fn an_enrolment_whose_image_cannot_be_stored_stores_nothing() {
    let missing = TestBucket::options_for(&format!("visage-missing-{}", Uuid::new_v4().simple()));
    let app = TestApp::spawn_with(|c| keep_images_in(c, &missing)).await;
    let bob = app.create_subject("bob").await;
    let body = expect_error(
        enrol_image(&app, bob, "Bob_Graham_0001").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "image_storage_unavailable",
    )
    .await;
    assert!(!body.to_string().contains("visage-missing"), "the bucket is not named to clients: {body}");
    assert!(template_ids(&app, bob).await.is_empty());
    let subject = expect(app.get(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::OK).await;
    assert_eq!(subject["face_count"], 0);
    assert_eq!(app.identify(lfw("Bob_Graham_0005")).await, vec![]);
}

/// Makes every template insert fail, beneath the service.
async fn break_template_inserts(app: &TestApp) {
    match &app.db {
        Some(db) => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
            sqlx::raw_sql(
                "CREATE FUNCTION visage_test_refuse() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
                 CREATE TRIGGER visage_test_refuse BEFORE INSERT ON templates
                   FOR EACH ROW EXECUTE FUNCTION visage_test_refuse();",
            )
            .execute(&mut conn)
            .await
            .unwrap();
        }
        None => {
            let url = format!("sqlite://{}", app.config.database_path().display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(
                "CREATE TRIGGER visage_test_refuse BEFORE INSERT ON templates
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
}

#[tokio::test]
async fn an_enrolment_whose_templates_cannot_be_stored_leaves_no_image_behind() {
    let bucket = TestBucket::create().await;
    let app = TestApp::spawn_with(|c| keep_images_in(c, &bucket.options())).await;
    let bob = app.create_subject("bob").await;
    break_template_inserts(&app).await;
    let form =
        Form::new().part("image", jpeg(lfw("Bob_Graham_0001"))).part("image", jpeg(lfw("Bob_Graham_0005")));
    let response = app.post_form(&format!("/v1/subjects/{bob}/faces"), &app.admin, form).await;
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
    assert!(template_ids(&app, bob).await.is_empty());
    assert!(bucket.objects().await.is_empty(), "the uploaded images are deleted again");
    assert_eq!(app.identify(lfw("Bob_Graham_0005")).await, vec![]);
}

#[tokio::test]
async fn an_image_that_cannot_be_deleted_is_counted_and_named_in_the_audit_log() {
    let bucket = TestBucket::create().await;
    let mut app = TestApp::spawn_with(|c| keep_images_in(c, &bucket.options())).await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let (object, _) = bucket.objects().await.remove(0);
    let bill = app.enrol("bill", "Bill_Nelson_0001").await;
    app.shut_down().await;

    // The same service, restarted while the S3 server cannot be reached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut config = app.config.clone();
    config.images.s3_endpoint = Some(unreachable);
    config.images.timeout_seconds = 1;
    let mut cut_off = TestApp::start(config).await;
    expect(cut_off.delete(&format!("/v1/subjects/{bob}"), &cut_off.admin).await, StatusCode::NO_CONTENT)
        .await;

    let scraped = scrape(&cut_off).await;
    assert_eq!(value(&scraped, "image_deletions_failed_total", &[]), Some(1.0));
    let audit = cut_off.audit_actions().await;
    let failed = audit
        .iter()
        .find(|e| e["action"] == "image.delete")
        .unwrap_or_else(|| panic!("no image.delete event in {audit:?}"));
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["detail"]["reason"], "erasure");
    assert_eq!(failed["detail"]["objects"], json!([object]), "the event names the object to delete");
    assert_eq!(failed["subject_id"], Value::Null, "and not the erased subject");
    let left: Vec<String> = bucket.objects().await.into_iter().map(|(name, _)| name).collect();
    assert!(left.contains(&object), "the object is still there, sealed");
    cut_off.shut_down().await;

    // `visage images sweep`, once the store is back: images younger than the grace period are
    // left alone (their template may be on its way), the orphan goes, Bill's image stays.
    let recent = sweep::sweep(&app.config, Duration::from_secs(3600)).await.unwrap();
    assert_eq!((recent.images, recent.deleted, recent.recent), (2, 0, 1), "{recent:?}");
    let swept = sweep::sweep(&app.config, Duration::ZERO).await.unwrap();
    assert_eq!((swept.deleted, swept.failed), (1, 0), "{swept:?}");
    let left: Vec<String> = bucket.objects().await.into_iter().map(|(name, _)| name).collect();
    let bills = app_templates(&app, bill).await;
    assert_eq!(left, [format!("{}.img", bills[0])], "only the referenced image is left");
}

async fn app_templates(app: &TestApp, subject: Uuid) -> Vec<Uuid> {
    let store = visage_server::resources::open_store(&app.config).await.unwrap();
    let ids = store.list_templates(subject).await.unwrap().into_iter().map(|t| t.id).collect();
    store.close().await;
    ids
}
