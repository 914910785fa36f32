//! The harness: the real service on port 0 with its own data directory and database
//! (`spawn_app`), an admin key, request helpers, fixtures and assertions.

use super::*;

/// The service with default test settings.
pub(crate) async fn spawn_app() -> TestApp {
    TestApp::spawn().await
}

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn fixture(relative: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures").join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

pub(crate) fn lfw(name: &str) -> Vec<u8> {
    let person = name.rsplit_once('_').unwrap().0;
    fixture(&format!("lfw/{person}/{name}.jpg"))
}

pub(crate) fn png(image: &image::RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

pub(crate) fn on_postgres() -> bool {
    match std::env::var("VISAGE_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("VISAGE_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}

pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) admin: String,
    pub(crate) state: AppState,
    pub(crate) config: Config,
    pub(crate) stop: Option<oneshot::Sender<()>>,
    pub(crate) server: Option<tokio::task::JoinHandle<()>>,
    pub(crate) _dir: Option<tempfile::TempDir>,
    /// Last: dropped after the server has let go of it.
    pub(crate) db: Option<TestDatabase>,
}

/// `tracing` caches per callsite whether any subscriber listens, asking the first thread to get
/// there; a test thread without a subscriber would then switch a span off for the test that
/// scopes a subscriber to itself (traces.rs). A process-wide subscriber that listens to nothing
/// but asks to be asked each time keeps every callsite asking the current subscriber.
pub(crate) fn keep_tracing_callsites_dynamic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let nothing = tracing_subscriber::layer::Identity::new()
            .with_filter(tracing_subscriber::filter::dynamic_filter_fn(|_, _| false));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(nothing)).unwrap();
    });
}

pub(crate) fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::defaults(Profile::Development);
    config.server.listen = "127.0.0.1:0".into();
    config.storage.data_dir = data_dir.to_path_buf();
    config.models.dir = repo().join("models");
    config.encryption.key = Some(Secret::new(TemplateKey::generate_base64().as_str()));
    config.inference.workers = 2;
    config
}

impl TestApp {
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub(crate) async fn spawn_with(customise: impl FnOnce(&mut Config)) -> Self {
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
    pub(crate) async fn stored_bytes(&self) -> Vec<u8> {
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
        for table in [
            "collections",
            "subjects",
            "templates",
            "enrolment_requests",
            "api_keys",
            "verifications",
            "audit_events",
        ] {
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

    pub(crate) async fn start(config: Config) -> Self {
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
    pub(crate) async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }

    pub(crate) async fn key(&self, role: Role, scope: CollectionScope) -> String {
        let key = api_key::generate();
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

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn post_json(&self, path: &str, key: &str, body: Value) -> Response {
        self.client.post(self.url(path)).bearer_auth(key).json(&body).send().await.unwrap()
    }

    pub(crate) async fn post_form(&self, path: &str, key: &str, form: Form) -> Response {
        self.client.post(self.url(path)).header("x-api-key", key).multipart(form).send().await.unwrap()
    }

    pub(crate) async fn post_image(
        &self,
        path: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn get(&self, path: &str, key: &str) -> Response {
        self.client.get(self.url(path)).bearer_auth(key).send().await.unwrap()
    }

    pub(crate) async fn delete(&self, path: &str, key: &str) -> Response {
        self.client.delete(self.url(path)).bearer_auth(key).send().await.unwrap()
    }

    pub(crate) async fn create_subject(&self, external_id: &str) -> Uuid {
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

    pub(crate) async fn enrol(&self, external_id: &str, image: &str) -> Uuid {
        let id = self.create_subject(external_id).await;
        let form = Form::new().part("image", jpeg(lfw(image)));
        expect(
            self.post_form(&format!("/v1/subjects/{id}/faces"), &self.admin, form).await,
            StatusCode::CREATED,
        )
        .await;
        id
    }

    /// What the service's pipeline makes of one image under the enrolment rules (its only good
    /// face, no liveness), on the app's inference threads: the reference a batch is checked by.
    pub(crate) async fn probe_alone(
        &self,
        image: Vec<u8>,
    ) -> Result<visage_server::inference::Probe, visage_face::FaceError> {
        self.state.pool.run(move |p| p.probe(&image, Pick::OnlyGoodFace, false)).await.unwrap()
    }

    pub(crate) async fn verify(&self, subject: Uuid, image: &str) -> Value {
        let form = Form::new().part("image", jpeg(lfw(image))).text("subject_id", subject.to_string());
        expect(self.post_form("/v1/verify", &self.admin, form).await, StatusCode::OK).await
    }

    pub(crate) async fn identify(&self, image: Vec<u8>) -> Vec<(String, f64)> {
        let form = Form::new().part("image", jpeg(image)).text("top_k", "3");
        let body = expect(self.post_form("/v1/identify", &self.admin, form).await, StatusCode::OK).await;
        body["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["external_id"].as_str().unwrap().to_owned(), c["similarity"].as_f64().unwrap()))
            .collect()
    }

    /// Labels a decision with ground truth, as a reviewer does.
    pub(crate) async fn label(&self, verification_id: &str, truth: &str) {
        let path = format!("/v1/verifications/{verification_id}/feedback");
        let body = json!({ "truth": truth, "source": "review" });
        expect(self.post_json(&path, &self.admin, body).await, StatusCode::OK).await;
    }

    pub(crate) async fn audit_actions(&self) -> Vec<Value> {
        let body = expect(self.get("/v1/audit?limit=1000", &self.admin).await, StatusCode::OK).await;
        body["items"].as_array().unwrap().clone()
    }
}

pub(crate) fn jpeg(bytes: Vec<u8>) -> Part {
    Part::bytes(bytes).file_name("face.jpg").mime_str("image/jpeg").unwrap()
}

pub(crate) async fn expect(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "body: {text}");
    if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
}

/// Asserts the error shape and code, and returns the body.
pub(crate) async fn expect_error(response: Response, status: StatusCode, code: &str) -> Value {
    let request_id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let body = expect(response, status).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    assert_eq!(body["error"]["request_id"].as_str(), request_id.as_deref(), "request id in body and header");
    body
}

pub(crate) async fn futures_join_all<F: std::future::Future + Send + 'static>(
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

pub(crate) async fn scrape(app: &TestApp) -> prometheus_parse::Scrape {
    let response = app.client.get(app.url("/metrics/prometheus")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "metrics need no key");
    let text = response.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text")
}

pub(crate) fn sample<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

pub(crate) fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(scrape, name, labels).map(|s| match &s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{name} is not a counter or gauge: {other:?}"),
    })
}
