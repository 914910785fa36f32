//! The real service on port 0, each test with its own data directory and database, real
//! models and real face images (LFW, NUAA).
//!
//! The database is the embedded SQLite file, or with `VISAGE_TEST_BACKEND=postgres` a fresh
//! PostgreSQL database per test on `VISAGE_TEST_POSTGRES_URL`'s server (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped when the test ends.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::oneshot;
use uuid::Uuid;
use visage_server::config::{DatabaseUrl, Secret};
use visage_server::pipeline::Pick;
use visage_server::{AppState, Application, Config, Profile};
use visage_store::crypto::{SealedTemplate, TemplateKey};
use visage_store::testing::TestDatabase;
use visage_store::{ApiKeyRecord, CollectionId, CollectionScope, Role, Template, apikey};

#[path = "api/objects.rs"]
mod objects;
#[path = "api/reembed.rs"]
mod reembed;
#[path = "api/replicas.rs"]
mod replicas;
#[path = "api/traces.rs"]
mod traces;

#[path = "api/redis.rs"]
mod shared_redis;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(relative: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures").join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn lfw(name: &str) -> Vec<u8> {
    let person = name.rsplit_once('_').unwrap().0;
    fixture(&format!("lfw/{person}/{name}.jpg"))
}

fn png(image: &image::RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

fn on_postgres() -> bool {
    match std::env::var("VISAGE_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("VISAGE_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}

struct TestApp {
    base: String,
    client: reqwest::Client,
    admin: String,
    state: AppState,
    config: Config,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
    /// Last: dropped after the server has let go of it.
    db: Option<TestDatabase>,
}

/// `tracing` caches per callsite whether any subscriber listens, asking the first thread to get
/// there; a test thread without a subscriber would then switch a span off for the test that
/// scopes a subscriber to itself (traces.rs). A process-wide subscriber that listens to nothing
/// but asks to be asked each time keeps every callsite asking the current subscriber.
fn keep_tracing_callsites_dynamic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let nothing = tracing_subscriber::layer::Identity::new()
            .with_filter(tracing_subscriber::filter::dynamic_filter_fn(|_, _| false));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(nothing)).unwrap();
    });
}

fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::defaults(Profile::Development);
    config.server.listen = "127.0.0.1:0".into();
    config.storage.data_dir = data_dir.to_path_buf();
    config.models.dir = repo().join("models");
    config.encryption.key = Some(Secret::new(TemplateKey::generate_base64().as_str()));
    config.inference.workers = 2;
    config
}

impl TestApp {
    async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    async fn spawn_with(customise: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        let db = if on_postgres() { Some(TestDatabase::create().await) } else { None };
        if let Some(db) = &db {
            config.database.url = Some(DatabaseUrl::new(db.url()));
        }
        customise(&mut config);
        let mut app = Self::start(config).await;
        app._dir = Some(dir);
        app.db = db;
        app
    }

    /// Everything the database keeps, as bytes: the database files (SQLite), or every row as
    /// text plus the raw bytes of the sealed templates (PostgreSQL).
    async fn stored_bytes(&self) -> Vec<u8> {
        let mut stored = Vec::new();
        let Some(db) = &self.db else {
            for entry in std::fs::read_dir(&self.config.storage.data_dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    stored.extend(std::fs::read(path).unwrap());
                }
            }
            return stored;
        };
        let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
        for table in ["collections", "subjects", "templates", "api_keys", "verifications", "audit_events"] {
            let sql = format!("SELECT r::text AS row FROM {table} r");
            for row in sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut conn).await.unwrap() {
                stored.extend(row.get::<String, _>("row").into_bytes());
            }
        }
        for row in sqlx::query("SELECT nonce || ciphertext AS sealed FROM templates")
            .fetch_all(&mut conn)
            .await
            .unwrap()
        {
            stored.extend(row.get::<Vec<u8>, _>("sealed"));
        }
        stored
    }

    async fn start(config: Config) -> Self {
        keep_tracing_callsites_dynamic();
        let application = Application::build(config.clone()).await.expect("the service starts");
        let base = format!("http://{}", application.local_addr());
        let state = application.state();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            application
                .run_until_stopped(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        let mut app = Self {
            base,
            client: reqwest::Client::new(),
            admin: String::new(),
            state,
            config,
            stop: Some(stop),
            server: Some(server),
            _dir: None,
            db: None,
        };
        app.admin = app.key(Role::Admin, CollectionScope::All).await;
        app
    }

    /// Stops the server and waits until it has let go of the database.
    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }

    async fn key(&self, role: Role, scope: CollectionScope) -> String {
        let key = apikey::generate();
        self.state
            .store
            .create_api_key(&ApiKeyRecord {
                id: key.id.clone(),
                name: "test".into(),
                secret_hash: key.secret_hash.clone(),
                role,
                scope,
                created_at: Utc::now(),
                revoked_at: None,
            })
            .await
            .unwrap();
        key.token.to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post_json(&self, path: &str, key: &str, body: Value) -> Response {
        self.client.post(self.url(path)).bearer_auth(key).json(&body).send().await.unwrap()
    }

    async fn post_form(&self, path: &str, key: &str, form: Form) -> Response {
        self.client.post(self.url(path)).header("x-api-key", key).multipart(form).send().await.unwrap()
    }

    async fn post_image(&self, path: &str, key: &str, bytes: Vec<u8>, content_type: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str, key: &str) -> Response {
        self.client.get(self.url(path)).bearer_auth(key).send().await.unwrap()
    }

    async fn delete(&self, path: &str, key: &str) -> Response {
        self.client.delete(self.url(path)).bearer_auth(key).send().await.unwrap()
    }

    async fn create_subject(&self, external_id: &str) -> Uuid {
        let response = self
            .post_json(
                "/v1/subjects",
                &self.admin,
                json!({ "external_id": external_id, "consent": { "given_by": "the subject", "purpose": "tests" } }),
            )
            .await;
        let body = expect(response, StatusCode::CREATED).await;
        body["id"].as_str().unwrap().parse().unwrap()
    }

    async fn enrol(&self, external_id: &str, image: &str) -> Uuid {
        let id = self.create_subject(external_id).await;
        let form = Form::new().part("image", jpeg(lfw(image)));
        expect(
            self.post_form(&format!("/v1/subjects/{id}/faces"), &self.admin, form).await,
            StatusCode::CREATED,
        )
        .await;
        id
    }

    async fn verify(&self, subject: Uuid, image: &str) -> Value {
        let form = Form::new().part("image", jpeg(lfw(image))).text("subject_id", subject.to_string());
        expect(self.post_form("/v1/verify", &self.admin, form).await, StatusCode::OK).await
    }

    async fn identify(&self, image: Vec<u8>) -> Vec<(String, f64)> {
        let form = Form::new().part("image", jpeg(image)).text("top_k", "3");
        let body = expect(self.post_form("/v1/identify", &self.admin, form).await, StatusCode::OK).await;
        body["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["external_id"].as_str().unwrap().to_owned(), c["similarity"].as_f64().unwrap()))
            .collect()
    }

    async fn audit_actions(&self) -> Vec<Value> {
        let body = expect(self.get("/v1/audit?limit=1000", &self.admin).await, StatusCode::OK).await;
        body["items"].as_array().unwrap().clone()
    }
}

fn jpeg(bytes: Vec<u8>) -> Part {
    Part::bytes(bytes).file_name("face.jpg").mime_str("image/jpeg").unwrap()
}

async fn expect(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "body: {text}");
    if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
}

/// Asserts the error shape and code, and returns the body.
async fn expect_error(response: Response, status: StatusCode, code: &str) -> Value {
    let request_id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let body = expect(response, status).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    assert_eq!(body["error"]["request_id"].as_str(), request_id.as_deref(), "request id in body and header");
    body
}

#[tokio::test]
async fn verify_matches_the_same_person_and_rejects_a_different_one() {
    let app = TestApp::spawn().await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let same = app.verify(bob, "Bob_Graham_0005").await;
    assert_eq!(same["match"], true, "{same}");
    // The threshold the service calibrated for FAR 0.1%: models/calibration.json when a
    // calibration run wrote one, else the built-in operating point.
    let calibrated = visage_server::calibration::Calibration::load(
        &repo().join("models"),
        visage_face::RecognizerKind::Sface,
        visage_face::LivenessKind::default(),
    )
    .unwrap()
    .point(1e-3)
    .unwrap()
    .threshold;
    assert!((same["threshold"].as_f64().unwrap() - f64::from(calibrated)).abs() < 1e-6, "{same}");
    assert_eq!(same["far_target"], 0.001);
    assert_eq!(same["model"], "sface");
    assert!(same["verification_id"].as_str().unwrap().parse::<Uuid>().is_ok());
    // Development profile: liveness is reported on verify.
    assert_eq!(same["liveness"]["result"], "pass");
    let other = app.verify(bob, "Elton_John_0001").await;
    assert_eq!(other["match"], false, "{other}");
    assert!(other["similarity"].as_f64().unwrap() < f64::from(calibrated));

    // Two images, as base64 JSON.
    use base64::Engine as _;
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(b);
    let pair = json!({ "image": b64(lfw("Bill_Nelson_0001")), "reference_image": b64(lfw("Bill_Nelson_0002")), "liveness": "off" });
    let body = expect(app.post_json("/v1/verify", &app.admin, pair).await, StatusCode::OK).await;
    assert_eq!(body["match"], true, "{body}");
    assert!(body.get("liveness").is_none());
    let pair =
        json!({ "image": b64(lfw("Bill_Nelson_0001")), "reference_image": b64(lfw("Donald_Keck_0001")) });
    let body = expect(app.post_json("/v1/verify", &app.admin, pair).await, StatusCode::OK).await;
    assert_eq!(body["match"], false, "{body}");
}

#[tokio::test]
async fn identify_finds_the_right_subject_among_several_and_nobody_for_a_stranger() {
    let app = TestApp::spawn().await;
    for (name, image) in [
        ("bob", "Bob_Graham_0001"),
        ("bill", "Bill_Nelson_0001"),
        ("elton", "Elton_John_0001"),
        ("arminio", "Arminio_Fraga_0002"),
    ] {
        app.enrol(name, image).await;
    }
    for (probe, expected) in [
        ("Bob_Graham_0005", "bob"),
        ("Bill_Nelson_0002", "bill"),
        ("Elton_John_0007", "elton"),
        ("Arminio_Fraga_0006", "arminio"),
    ] {
        let candidates = app.identify(lfw(probe)).await;
        assert_eq!(candidates.first().map(|c| c.0.as_str()), Some(expected), "{probe}: {candidates:?}");
    }
    for stranger in ["Patty_Schnyder_0003", "John_Lynch_0001", "Martha_Bowen_0001"] {
        assert_eq!(app.identify(lfw(stranger)).await, vec![], "{stranger}");
    }
    // Collections are separate galleries.
    expect(
        app.post_json("/v1/collections", &app.admin, json!({ "id": "visitors" })).await,
        StatusCode::CREATED,
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("collection", "visitors");
    let body = expect(app.post_form("/v1/identify", &app.admin, form).await, StatusCode::OK).await;
    assert_eq!(body["candidates"], json!([]));
    let listed = expect(app.get("/v1/collections", &app.admin).await, StatusCode::OK).await;
    assert_eq!(listed["collections"][0]["id"], "default");
    assert_eq!(listed["collections"][0]["templates"], 4);
}

#[tokio::test]
async fn erasure_removes_everything_and_a_later_verify_says_subject_not_found() {
    let mut app = TestApp::spawn_with(|c| c.storage.store_images = true).await;
    let bob = app.enrol("bob-erase-me", "Bob_Graham_0001").await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    expect(app.post_form(&format!("/v1/subjects/{bob}/faces"), &app.admin, form).await, StatusCode::CREATED)
        .await;
    app.verify(bob, "Bob_Graham_0005").await;
    let images = app.config.storage.data_dir.join("images");
    assert_eq!(std::fs::read_dir(&images).unwrap().count(), 2, "images are kept when configured");
    // Kept images are sealed like templates: unreadable on disk, exact after opening.
    let originals = [lfw("Bob_Graham_0001"), lfw("Bob_Graham_0005")];
    for template in app.state.store.list_templates(bob).await.unwrap() {
        let reference = template.image_ref.as_deref().expect("an image reference");
        let on_disk = std::fs::read(images.join(reference)).unwrap();
        assert!(
            originals.iter().all(|o| !on_disk.windows(64).any(|w| w == &o[..64])),
            "image stored in the clear"
        );
        let opened = app.state.load_image(template.id, bob, reference).await.unwrap();
        assert!(originals.contains(&*opened), "the sealed image opens to the uploaded bytes");
    }

    expect(app.delete(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::NO_CONTENT).await;

    expect_error(
        app.get(&format!("/v1/subjects/{bob}"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
    expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    assert_eq!(app.identify(lfw("Bob_Graham_0005")).await, vec![]);
    assert_eq!(std::fs::read_dir(&images).unwrap().count(), 0, "stored images are deleted");
    expect_error(
        app.delete(&format!("/v1/subjects/{bob}"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    assert!(app.state.store.list_templates(bob).await.unwrap().is_empty());

    let audit = app.audit_actions().await;
    let erase = audit.iter().find(|e| e["action"] == "subject.erase").expect("the erasure is audited");
    assert_eq!(erase["detail"]["templates"], 2);
    assert_eq!(erase["subject_id"], bob.to_string());
    // Earlier events no longer point at the erased subject.
    assert!(
        audit.iter().filter(|e| e["action"] != "subject.erase").all(|e| e["subject_id"] != bob.to_string())
    );

    // Nothing of the subject survives in the database.
    app.shut_down().await;
    let stored = app.stored_bytes().await;
    assert!(!stored.is_empty());
    assert!(!stored.windows(12).any(|w| w == b"bob-erase-me"), "the database still holds the external id");
}

#[tokio::test]
async fn a_print_attack_is_refused_when_liveness_is_required() {
    let app = TestApp::spawn().await;
    let subject = app.create_subject("nuaa-0005").await;
    let form =
        Form::new().part("image", jpeg(fixture("nuaa/real/0005_00_00_01_0.jpg"))).text("liveness", "require");
    let enrolled = expect(
        app.post_form(&format!("/v1/subjects/{subject}/faces"), &app.admin, form).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(enrolled["faces"][0]["liveness"]["result"], "pass");

    let print = fixture("nuaa/print/0005_00_00_01_10.jpg");
    let body =
        expect(app.post_image("/v1/liveness", &app.admin, print.clone(), "image/jpeg").await, StatusCode::OK)
            .await;
    assert_eq!(body["liveness"]["live"], false, "{body}");
    assert_eq!(body["liveness"]["attack_type"], "print");

    let form = Form::new()
        .part("image", jpeg(print))
        .text("subject_id", subject.to_string())
        .text("liveness", "require");
    let refused = expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "spoof_detected",
    )
    .await;
    assert_eq!(refused["error"]["details"]["attack_type"], "print");
    assert!(
        app.audit_actions()
            .await
            .iter()
            .any(|e| e["action"] == "liveness.spoof" && e["outcome"] == "refused")
    );

    let live = fixture("nuaa/real/0005_00_00_01_0.jpg");
    let body =
        expect(app.post_image("/v1/liveness", &app.admin, live, "image/jpeg").await, StatusCode::OK).await;
    assert_eq!(body["liveness"]["live"], true, "{body}");
}

#[tokio::test]
async fn bad_images_get_named_errors_and_nothing_stored_is_lost() {
    let app = TestApp::spawn_with(|c| c.limits.max_pixels = 1_000_000).await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let path = format!("/v1/subjects/{bob}/faces");
    let post =
        |bytes: Vec<u8>, content_type: &'static str| app.post_image(&path, &app.admin, bytes, content_type);

    let mut truncated = lfw("Bob_Graham_0005");
    truncated.truncate(truncated.len() / 2);
    expect_error(post(truncated, "image/jpeg").await, StatusCode::BAD_REQUEST, "image_decode_failed").await;
    expect_error(
        post(b"not an image at all".to_vec(), "image/jpeg").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    expect_error(
        post(b"hello".to_vec(), "text/plain").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let huge = png(&image::RgbImage::new(2000, 1000));
    expect_error(post(huge, "image/png").await, StatusCode::PAYLOAD_TOO_LARGE, "image_too_large").await;
    let blank = png(&image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128])));
    expect_error(post(blank, "image/png").await, StatusCode::UNPROCESSABLE_ENTITY, "no_face_detected").await;
    let crowd = expect_error(
        post(lfw("John_Taylor_0001"), "image/jpeg").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "multiple_faces",
    )
    .await;
    assert_eq!(crowd["error"]["details"]["faces"], 2);
    // A face too small to enrol: shrink a portrait.
    let small = image::load_from_memory(&lfw("Bob_Graham_0005")).unwrap().resize(
        90,
        90,
        image::imageops::FilterType::Triangle,
    );
    let low = expect_error(
        post(png(&small.to_rgb8()), "image/png").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "low_quality",
    )
    .await;
    assert!(
        low["error"]["details"]["reasons"].as_array().unwrap().contains(&json!("face_too_small")),
        "{low}"
    );
    // A batch is all or nothing: the second image has no face.
    use base64::Engine as _;
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(b);
    let batch = json!({ "images": [b64(lfw("Bob_Graham_0005")), b64(png(&image::RgbImage::new(200, 200)))] });
    let failed = expect_error(
        app.post_json(&path, &app.admin, batch).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no_face_detected",
    )
    .await;
    assert_eq!(failed["error"]["details"]["image_index"], 1);
    expect_error(
        app.post_json(&path, &app.admin, json!({ "image": "%%%" })).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect_error(app.post_json(&path, &app.admin, json!({})).await, StatusCode::BAD_REQUEST, "image_missing")
        .await;

    let faces = expect(app.get(&path, &app.admin).await, StatusCode::OK).await;
    assert_eq!(faces["faces"].as_array().unwrap().len(), 1, "the enrolled face survived every refusal");
    let still = app.verify(bob, "Bob_Graham_0005").await;
    assert_eq!(still["match"], true);
}

#[tokio::test]
async fn requests_get_named_errors_for_every_refusal() {
    let app = TestApp::spawn_with(|c| {
        c.limits.max_body_bytes = 2_000_000;
        c.limits.max_image_bytes = 1_000_000;
    })
    .await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let ghost = Uuid::now_v7();

    expect_error(
        app.get(&format!("/v1/subjects/{ghost}"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    expect_error(
        app.delete(&format!("/v1/subjects/{bob}/faces/{ghost}"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "face_not_found",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("collection", "nowhere");
    expect_error(
        app.post_form("/v1/identify", &app.admin, form).await,
        StatusCode::NOT_FOUND,
        "collection_not_found",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("collection", "Not Valid");
    expect_error(
        app.post_form("/v1/identify", &app.admin, form).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect_error(
        app.post_json(
            "/v1/subjects",
            &app.admin,
            json!({ "external_id": "bob", "consent": { "given_by": "b", "purpose": "p" } }),
        )
        .await,
        StatusCode::CONFLICT,
        "subject_exists",
    )
    .await;
    expect_error(
        app.post_json("/v1/collections", &app.admin, json!({ "id": "default" })).await,
        StatusCode::CONFLICT,
        "collection_exists",
    )
    .await;
    expect_error(
        app.post_json("/v1/subjects", &app.admin, json!({ "external_id": "carol" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "consent_required",
    )
    .await;
    let empty = app.create_subject("no-faces").await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", empty.to_string());
    expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::CONFLICT,
        "subject_has_no_faces",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let form = Form::new()
        .part("image", jpeg(lfw("Bob_Graham_0005")))
        .text("subject_id", bob.to_string())
        .text("far_target", "0.5");
    expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect_error(
        app.post_json("/v1/verify", &app.admin, json!({ "subject_id": bob })).await,
        StatusCode::BAD_REQUEST,
        "image_missing",
    )
    .await;
    let big = vec![0u8; 3_000_000];
    expect_error(
        app.post_image("/v1/detect", &app.admin, big, "image/jpeg").await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    expect_error(app.get("/v1/nothing-here", &app.admin).await, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(
        app.get("/v1/verify", &app.admin).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let response = app
        .client
        .post(app.url("/v1/subjects"))
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;

    // Templates made by another recognizer are not compared: verification uses the templates of
    // the running one, and a subject with none of those gets model_mismatch.
    let other_model = |subject_id: Uuid| {
        let id = Uuid::now_v7();
        let sealed: SealedTemplate = app.state.keys.seal(id, subject_id, &[0.1; 192]);
        Template {
            id,
            subject_id,
            model: "mobilefacenet".into(),
            sealed,
            quality: json!({}),
            image_ref: None,
            created_at: Utc::now(),
            source_template_id: None,
        }
    };
    app.state.store.add_templates(&[other_model(bob)]).await.unwrap();
    assert_eq!(app.verify(bob, "Bob_Graham_0005").await["match"], true);
    let listed =
        expect(app.get(&format!("/v1/subjects/{bob}/faces"), &app.admin).await, StatusCode::OK).await;
    assert_eq!(listed["faces"].as_array().unwrap().len(), 1, "faces of the running recognizer: {listed}");
    assert_eq!(listed["faces"][0]["model"], "sface");
    let carl = app.create_subject("carl").await;
    app.state.store.add_templates(&[other_model(carl)]).await.unwrap();
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", carl.to_string());
    expect_error(app.post_form("/v1/verify", &app.admin, form).await, StatusCode::CONFLICT, "model_mismatch")
        .await;
}

#[tokio::test]
async fn keys_are_checked_for_role_and_collection() {
    let app = TestApp::spawn().await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let verifier = app.key(Role::Verify, CollectionScope::All).await;
    let reader = app.key(Role::Read, CollectionScope::All).await;
    expect(app.post_json("/v1/collections", &app.admin, json!({ "id": "staff" })).await, StatusCode::CREATED)
        .await;
    let staff_only =
        app.key(Role::Admin, CollectionScope::Only(vec![CollectionId::parse("staff").unwrap()])).await;

    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    expect_error(
        app.post_form(&format!("/v1/subjects/{bob}/faces"), &verifier, form).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let subject = json!({ "external_id": "x", "consent": { "given_by": "x", "purpose": "p" } });
    expect_error(
        app.post_json("/v1/subjects", &verifier, subject.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
    expect(app.post_form("/v1/verify", &verifier, form).await, StatusCode::OK).await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
    expect_error(app.post_form("/v1/verify", &reader, form).await, StatusCode::FORBIDDEN, "forbidden").await;
    expect(app.get(&format!("/v1/subjects/{bob}"), &reader).await, StatusCode::OK).await;
    expect_error(app.get("/v1/audit", &verifier).await, StatusCode::FORBIDDEN, "forbidden").await;
    // A key of another collection does not even learn that the subject exists.
    expect_error(
        app.get(&format!("/v1/subjects/{bob}"), &staff_only).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    expect_error(app.post_form("/v1/identify", &staff_only, form).await, StatusCode::FORBIDDEN, "forbidden")
        .await;

    let no_key = app.client.get(app.url("/v1/subjects")).send().await.unwrap();
    expect_error(no_key, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_error(
        app.get("/v1/subjects", "vsg_0123456789ab_wrong").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let (id, _) = apikey::parse(&reader).unwrap();
    assert!(app.state.store.revoke_api_key(id).await.unwrap());
    expect_error(app.get("/v1/subjects", &reader).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Health needs no key.
    expect(app.client.get(app.url("/health/live")).send().await.unwrap(), StatusCode::OK).await;
    let ready = expect(app.client.get(app.url("/health/ready")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(ready["checks"]["models"], "ok");
}

#[tokio::test]
async fn a_full_queue_returns_503_and_a_busy_key_429() {
    let app = TestApp::spawn_with(|c| {
        c.inference.workers = 1;
        c.inference.queue_capacity = 0;
    })
    .await;
    let image = fixture("nuaa/real/0006_00_00_01_0.jpg");
    let requests = (0..12).map(|_| {
        app.client
            .post(app.url("/v1/detect?liveness=true"))
            .bearer_auth(&app.admin)
            .header("content-type", "image/jpeg")
            .body(image.clone())
            .send()
    });
    let responses = futures_join_all(requests).await;
    let mut statuses = Vec::new();
    for response in responses {
        let response = response.unwrap();
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(response.headers()["retry-after"], "1");
            expect_error(response, status, "overloaded").await;
        } else {
            expect(response, StatusCode::OK).await;
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&StatusCode::SERVICE_UNAVAILABLE), "{statuses:?}");
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");

    let limited = TestApp::spawn_with(|c| {
        c.rate_limit.requests_per_second = 0.2;
        c.rate_limit.burst = 2;
    })
    .await;
    for _ in 0..2 {
        expect(limited.get("/v1/collections", &limited.admin).await, StatusCode::OK).await;
    }
    let response = limited.get("/v1/collections", &limited.admin).await;
    assert_eq!(response.headers()["retry-after"], "5");
    expect_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

#[tokio::test]
async fn storage_failure_answers_503_and_timeouts_are_named() {
    let app = TestApp::spawn().await;
    let admin = app.admin.clone();
    app.state.store.close().await;
    expect_error(
        app.get("/v1/subjects", &admin).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;
    let ready = app.client.get(app.url("/health/ready")).send().await.unwrap();
    let body = expect(ready, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["checks"]["storage"], "unavailable");

    let slow = TestApp::spawn_with(|c| c.server.request_timeout_seconds = 0).await;
    let response = slow.post_image("/v1/detect", &slow.admin, lfw("Bob_Graham_0005"), "image/jpeg").await;
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "timeout").await;
}

/// PostgreSQL only (the embedded database cannot go away): the database refuses connections
/// and drops the service's, then comes back.
#[tokio::test]
async fn a_database_outage_answers_503_quickly_and_the_service_recovers_by_itself() {
    if !on_postgres() {
        eprintln!("skipped: needs VISAGE_TEST_BACKEND=postgres");
        return;
    }
    let app = TestApp::spawn_with(|c| c.database.acquire_timeout_seconds = 1).await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let db = app.db.as_ref().unwrap();
    let name = &db.name;
    db.admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    db.admin(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .await;

    let started = std::time::Instant::now();
    expect_error(
        app.get(&format!("/v1/subjects/{bob}"), &app.admin).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
    expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5), "503s took {:?}", started.elapsed());
    let ready = app.client.get(app.url("/health/ready")).send().await.unwrap();
    let body = expect(ready, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["checks"]["storage"], "unavailable");

    db.admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ready = app.client.get(app.url("/health/ready")).send().await.unwrap();
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not ready again after the database came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let subject = expect(app.get(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::OK).await;
    assert_eq!(subject["face_count"], 1, "nothing acknowledged was lost");
    assert_eq!(app.verify(bob, "Bob_Graham_0005").await["match"], true);
}

#[tokio::test]
async fn restart_keeps_all_subjects_and_templates_on_disk_are_not_floats() {
    let mut app = TestApp::spawn().await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let probe = lfw("Bob_Graham_0001");
    let embedding = app
        .state
        .pool
        .run(move |p| p.probe(&probe, Pick::OnlyGoodFace, false).map(|p| p.face.embedding))
        .await
        .unwrap()
        .unwrap();
    app.shut_down().await;

    let disk = app.stored_bytes().await;
    assert!(!disk.is_empty());
    for pair in embedding.as_slice().chunks_exact(2) {
        let bytes: Vec<u8> = pair.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(!disk.windows(8).any(|w| w == bytes.as_slice()), "a template value is readable on disk");
    }

    let restarted = TestApp::start(app.config.clone()).await;
    let subject =
        expect(restarted.get(&format!("/v1/subjects/{bob}"), &restarted.admin).await, StatusCode::OK).await;
    assert_eq!(subject["face_count"], 1);
    assert_eq!(restarted.verify(bob, "Bob_Graham_0005").await["match"], true);
    assert_eq!(restarted.identify(lfw("Bob_Graham_0005")).await[0].0, "bob");

    // Without the key the templates cannot be opened, and the service says so.
    let mut wrong_key = app.config.clone();
    wrong_key.encryption.key = Some(Secret::new(TemplateKey::generate_base64().as_str()));
    wrong_key.server.listen = "127.0.0.1:0".into();
    let mut restarted = restarted;
    restarted.shut_down().await;
    let err = Application::build(wrong_key).await.err().expect("an unknown key is refused");
    assert!(format!("{err:#}").contains("not configured"), "{err:#}");
}

#[tokio::test]
async fn the_audit_log_records_actions_without_personal_data() {
    let app = TestApp::spawn().await;
    let bob = app.enrol("Robert Graham, passport 1234", "Bob_Graham_0001").await;
    app.verify(bob, "Bob_Graham_0005").await;
    app.identify(lfw("Bill_Nelson_0001")).await;
    let events = app.audit_actions().await;
    let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for expected in ["subject.create", "face.enrol", "verify", "identify"] {
        assert!(actions.contains(&expected), "{actions:?}");
    }
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("Robert") && !text.contains("1234"), "personal data in the audit log");
    assert!(events.iter().all(|e| e["api_key_id"].as_str().is_some_and(|k| k.len() == 12)));
}

#[tokio::test]
async fn the_openapi_document_is_checked_in_and_the_docs_page_is_served() {
    let app = TestApp::spawn().await;
    let served: Value =
        expect(app.client.get(app.url("/openapi.json")).send().await.unwrap(), StatusCode::OK).await;
    let path = repo().join("docs/openapi.json");
    let generated = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("VISAGE_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "docs/openapi.json is stale: rerun with VISAGE_UPDATE_OPENAPI=1");
    for endpoint in [
        "/v1/detect",
        "/v1/liveness",
        "/v1/verify",
        "/v1/identify",
        "/v1/collections",
        "/v1/subjects",
        "/v1/subjects/{id}",
        "/v1/subjects/{id}/faces",
        "/v1/subjects/{id}/faces/{face_id}",
        "/v1/audit",
        "/health/live",
        "/health/ready",
    ] {
        assert!(served["paths"].get(endpoint).is_some(), "{endpoint} is not documented");
    }
    for code in visage_server::error::ERROR_CODES {
        assert!(served["info"]["description"].as_str().unwrap().contains(code), "{code} is not documented");
    }
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger") && !html.contains("cdn"), "the docs page is served locally");
    tokio::time::sleep(Duration::from_millis(1)).await;
}

async fn scrape(app: &TestApp) -> prometheus_parse::Scrape {
    let response = app.client.get(app.url("/metrics/prometheus")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "metrics need no key");
    let text = response.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text")
}

fn sample<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(scrape, name, labels).map(|s| match &s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{name} is not a counter or gauge: {other:?}"),
    })
}

#[tokio::test]
async fn the_metrics_endpoint_exports_every_seed_metric_with_fixed_labels() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;
    for (name, labels) in [
        ("verification_requests_total", vec![("mode", "verify"), ("result", "match")]),
        ("liveness_checks_total", vec![("result", "inconclusive")]),
        ("spoofing_attacks_detected", vec![("type", "print")]),
        ("false_accept_total", vec![("severity", "high")]),
        ("false_reject_total", vec![("severity", "low")]),
    ] {
        assert_eq!(value(&before, name, &labels), Some(0.0), "{name} starts at zero");
    }
    // (The `source="calibration"` gauges exist when models/calibration.json holds an evaluation.)
    for absent in ["false_accept_rate", "false_reject_rate", "equal_error_rate"] {
        assert!(
            sample(&before, absent, &[("source", "feedback")]).is_none(),
            "{absent} without ground truth must be absent"
        );
    }

    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    app.verify(bob, "Bob_Graham_0005").await;
    app.verify(bob, "Elton_John_0001").await;
    app.identify(lfw("Bob_Graham_0005")).await;
    let print = fixture("nuaa/print/0005_00_00_01_10.jpg");
    expect(app.post_image("/v1/liveness", &app.admin, print, "image/jpeg").await, StatusCode::OK).await;
    let form = Form::new().part("image", jpeg(b"broken".to_vec())).text("subject_id", bob.to_string());
    app.post_form("/v1/verify", &app.admin, form).await;

    let after = scrape(&app).await;
    let count = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing"))
    };
    assert_eq!(count("verification_requests_total", &[("mode", "verify"), ("result", "match")]), 1.0);
    assert_eq!(count("verification_requests_total", &[("mode", "verify"), ("result", "no_match")]), 1.0);
    assert_eq!(count("verification_requests_total", &[("mode", "verify"), ("result", "error")]), 1.0);
    assert_eq!(count("verification_requests_total", &[("mode", "identify"), ("result", "match")]), 1.0);
    // Two verifications reported liveness (development default), plus one liveness check.
    assert_eq!(count("liveness_checks_total", &[("result", "pass")]), 2.0);
    assert_eq!(count("liveness_checks_total", &[("result", "fail")]), 1.0);
    assert_eq!(count("spoofing_attacks_detected", &[("type", "print")]), 1.0);
    assert_eq!(count("enrolled_subjects", &[("collection", "default")]), 1.0);
    assert_eq!(count("enrolled_templates", &[("collection", "default")]), 1.0);
    assert_eq!(count("index_templates", &[("collection", "default")]), 1.0);
    let pool_max = if on_postgres() { app.config.database.max_connections } else { 8 };
    assert_eq!(count("db_pool_connections_max", &[]), f64::from(pool_max));
    assert_eq!(count("inference_workers", &[]), 2.0);
    assert_eq!(count("visage_build_info", &[("recognizer", "sface")]), 1.0);

    let histogram = |name: &str, labels: &[(&str, &str)]| match &sample(&after, name, labels)
        .unwrap_or_else(|| panic!("{name} {labels:?}"))
        .value
    {
        prometheus_parse::Value::Histogram(buckets) => buckets.last().unwrap().count,
        other => panic!("{name} is not a histogram: {other:?}"),
    };
    for stage in ["total", "decode", "detect", "embed", "liveness", "search"] {
        assert!(
            histogram("verification_duration_seconds", &[("mode", "verify"), ("stage", stage)]) >= 2.0,
            "{stage}"
        );
    }
    assert_eq!(histogram("verification_confidence_score", &[("mode", "verify")]), 2.0);
    // (The parser does not take braces inside label values, so this one is read from the text.)
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let enrolled = r#"http_requests_total{method="POST",route="/v1/subjects/{id}/faces",status="2xx"} 1"#;
    assert!(text.contains(enrolled), "{text}");
    // Labels carry templates and fixed values, never ids.
    for s in &after.samples {
        for (key, label) in s.labels.iter() {
            assert!(
                label.parse::<Uuid>().is_err() && !label.contains(&bob.to_string()),
                "{} {key}={label}",
                s.metric
            );
        }
    }
}

#[tokio::test]
async fn feedback_turns_decisions_into_false_accepts_and_rejects_and_rates() {
    let app = TestApp::spawn_with(|c| c.monitoring.min_labelled = 2).await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let mut decisions = Vec::new();
    // (probe, ground truth as the operator reports it)
    for (probe, truth) in [
        ("Bob_Graham_0005", "genuine"),
        ("Elton_John_0001", "impostor"),
        ("Bob_Graham_0005", "impostor"),
        ("Elton_John_0001", "genuine"),
    ] {
        let body = app.verify(bob, probe).await;
        decisions.push((body, truth));
    }
    let mut outcomes = Vec::new();
    for (body, truth) in &decisions {
        let id = body["verification_id"].as_str().unwrap();
        let path = format!("/v1/verifications/{id}/feedback");
        let answer = expect(
            app.post_json(&path, &app.admin, json!({ "truth": truth, "source": "manual_review" })).await,
            StatusCode::OK,
        )
        .await;
        outcomes.push((answer["outcome"].as_str().unwrap().to_owned(), answer["severity"].clone()));
    }
    assert_eq!(outcomes[0].0, "true_accept");
    assert_eq!(outcomes[1].0, "true_reject");
    assert_eq!(outcomes[2], ("false_accept".to_owned(), json!("high")), "0.68 is far above the threshold");
    assert_eq!(
        outcomes[3],
        ("false_reject".to_owned(), json!("high")),
        "a stranger's score is far below the threshold"
    );

    let first = decisions[0].0["verification_id"].as_str().unwrap();
    let again = app
        .post_json(
            &format!("/v1/verifications/{first}/feedback"),
            &app.admin,
            json!({ "truth": "genuine", "source": "x" }),
        )
        .await;
    expect_error(again, StatusCode::CONFLICT, "already_labelled").await;
    let ghost = format!("/v1/verifications/{}/feedback", Uuid::now_v7());
    expect_error(
        app.post_json(&ghost, &app.admin, json!({ "truth": "genuine", "source": "x" })).await,
        StatusCode::NOT_FOUND,
        "verification_not_found",
    )
    .await;
    let verifier = app.key(Role::Verify, CollectionScope::All).await;
    expect_error(
        app.post_json(
            &format!("/v1/verifications/{first}/feedback"),
            &verifier,
            json!({ "truth": "genuine", "source": "x" }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    let scraped = scrape(&app).await;
    assert_eq!(value(&scraped, "false_accept_total", &[("severity", "high")]), Some(1.0));
    assert_eq!(value(&scraped, "false_reject_total", &[("severity", "high")]), Some(1.0));
    assert_eq!(value(&scraped, "false_accept_total", &[("severity", "low")]), Some(0.0));
    // By hand: impostors {rejected, accepted} -> FAR 50%; genuine {accepted, rejected} -> FRR 50%.
    assert_eq!(value(&scraped, "false_accept_rate", &[("source", "feedback")]), Some(50.0));
    assert_eq!(value(&scraped, "false_reject_rate", &[("source", "feedback")]), Some(50.0));
    let score = |i: usize| decisions[i].0["similarity"].as_f64().unwrap() as f32 as f64;
    let expected_eer =
        visage_stats::ScoreSet::new(vec![score(0), score(3)], vec![score(1), score(2)]).unwrap().eer().rate
            * 100.0;
    let eer = value(&scraped, "equal_error_rate", &[("source", "feedback")]).unwrap();
    assert!((eer - expected_eer).abs() < 1e-9, "{eer} vs {expected_eer}");
}
