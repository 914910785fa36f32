//! Redis shared by replicas: one rate-limit bucket per key across replicas, idempotent
//! enrolment, and a Redis that dies mid-run (a `redis-server` of the test's own) and comes
//! back. The shared server is `VISAGE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`);
//! every test writes under a key prefix of its own and deletes it at the end.

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::*;

fn redis_url() -> String {
    std::env::var("VISAGE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} does not answer ({e}); scripts/services/up.sh starts one"))
}

/// Keys of one test in a Redis shared with other tests.
struct Keyspace {
    url: String,
    prefix: String,
}

impl Keyspace {
    fn new(url: &str) -> Self {
        Self { url: url.to_owned(), prefix: format!("visage-test:{}:", Uuid::new_v4().simple()) }
    }

    fn configure(&self, config: &mut Config) {
        config.redis.url = Some(DatabaseUrl::new(self.url.as_str()));
        config.redis.key_prefix = self.prefix.clone();
        // Short-lived, should a failing test leave them behind.
        config.redis.idempotency_ttl_seconds = 600;
    }

    async fn keys(&self) -> Vec<String> {
        let mut connection = redis_connection(&self.url).await;
        let mut keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query_async(&mut connection).await.unwrap();
        keys.sort();
        keys
    }
}

/// Deletes the test's keys also when it fails (their TTLs bound what a killed run leaves).
impl Drop for Keyspace {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(1)) else { return };
        let _ = connection.set_read_timeout(Some(Duration::from_secs(1)));
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query(&mut connection).unwrap_or_default();
        if !keys.is_empty() {
            let _ = redis::cmd("DEL").arg(&keys).query::<i64>(&mut connection);
        }
    }
}

impl TestApp {
    /// A second replica: the same configuration, database and Redis, its own port and memory.
    async fn replica(&self) -> TestApp {
        TestApp::start(self.config.clone()).await
    }

    async fn ready_checks(&self) -> (StatusCode, Value) {
        let response = self.client.get(self.url("/health/ready")).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }
}

fn png_part(bytes: Vec<u8>) -> Part {
    Part::bytes(bytes).file_name("face.png").mime_str("image/png").unwrap()
}

/// Enrols one image (a new multipart form each time, so a new boundary) under an
/// Idempotency-Key.
async fn enrol_with_key(
    app: &TestApp,
    api_key: &str,
    subject: Uuid,
    idempotency_key: &str,
    image: Part,
) -> Response {
    app.client
        .post(app.url(&format!("/v1/subjects/{subject}/faces")))
        .bearer_auth(api_key)
        .header("idempotency-key", idempotency_key)
        .multipart(Form::new().part("image", image))
        .send()
        .await
        .unwrap()
}

fn replayed(response: &Response) -> bool {
    response.headers().get("idempotent-replayed").is_some_and(|v| v == "true")
}

fn face_ids(body: &Value) -> Vec<String> {
    body["faces"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn two_replicas_share_one_rate_limit_bucket_per_key_through_redis() {
    let keyspace = Keyspace::new(&redis_url());
    // One token per 100 s: nothing refills while the test runs.
    let first = TestApp::spawn_with(|c| {
        keyspace.configure(c);
        c.rate_limit.requests_per_second = 0.01;
        c.rate_limit.burst = 4;
    })
    .await;
    let second = first.replica().await;
    let key = first.key(Role::Read, CollectionScope::All).await;
    for replica in [&first, &second, &second, &first] {
        expect(replica.get("/v1/collections", &key).await, StatusCode::OK).await;
    }
    let key_id = api_key::parse(&key).unwrap().0.to_owned();
    let bucket = format!("{}rate:{key_id}", keyspace.prefix);
    let mut redis = redis_connection(&keyspace.url).await;
    for replica in [&first, &second] {
        let refused = replica.get("/v1/collections", &key).await;
        let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        expect_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
        // Retry-After is the time until the bucket, as the refusal left it, has a token again.
        let tokens: f64 =
            redis::cmd("HGET").arg(&bucket).arg("tokens").query_async(&mut redis).await.unwrap();
        assert!((0.0..1.0).contains(&tokens), "{tokens}");
        assert_eq!(retry_after, ((1.0 - tokens) / 0.01).ceil().max(1.0) as u64);
    }
    // Another key has a bucket of its own.
    let other = first.key(Role::Read, CollectionScope::All).await;
    expect(second.get("/v1/collections", &other).await, StatusCode::OK).await;

    assert!(keyspace.keys().await.contains(&bucket));
    let (status, ready) = first.ready_checks().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["checks"]["redis"], "ok");
    let scraped = scrape(&second).await;
    assert_eq!(value(&scraped, "redis_up", &[]), Some(1.0));
    assert_eq!(value(&scraped, "redis_fallback_total", &[("feature", "rate_limit")]), Some(0.0));
}

#[tokio::test]
async fn an_enrolment_retried_with_the_same_idempotency_key_is_replayed_not_repeated() {
    let keyspace = Keyspace::new(&redis_url());
    let first = TestApp::spawn_with(|c| keyspace.configure(c)).await;
    let second = first.replica().await;
    let admin = first.admin.clone();

    // Creating a subject: the retry (on the other replica) gets the same subject.
    let create = |app: &TestApp, external_id: &str| {
        app.client
            .post(app.url("/v1/subjects"))
            .bearer_auth(&admin)
            .header("idempotency-key", "create-bob")
            .json(
                &json!({ "external_id": external_id, "consent": { "given_by": "bob", "purpose": "tests" } }),
            )
            .send()
    };
    let created = create(&first, "bob").await.unwrap();
    assert!(!replayed(&created));
    let created = expect(created, StatusCode::CREATED).await;
    let again = create(&second, "bob").await.unwrap();
    assert!(replayed(&again), "the retry is a replay");
    assert_eq!(expect(again, StatusCode::CREATED).await, created, "the same subject, not subject_exists");
    let bob: Uuid = created["id"].as_str().unwrap().parse().unwrap();

    // Enrolment, retried on both replicas with freshly built forms.
    let enrolled = enrol_with_key(&first, &admin, bob, "enrol-1", jpeg(lfw("Bob_Graham_0001"))).await;
    assert!(!replayed(&enrolled));
    let enrolled = expect(enrolled, StatusCode::CREATED).await;
    for app in [&first, &second, &first] {
        let retry = enrol_with_key(app, &admin, bob, "enrol-1", jpeg(lfw("Bob_Graham_0001"))).await;
        assert!(replayed(&retry));
        let body = expect(retry, StatusCode::CREATED).await;
        assert_eq!(face_ids(&body), face_ids(&enrolled), "the same face ids");
    }
    assert_eq!(first.state.store.list_templates(bob).await.unwrap().len(), 1, "enrolled once");

    // The same key for another request is refused, and enrols nothing.
    expect_error(
        enrol_with_key(&second, &admin, bob, "enrol-1", jpeg(lfw("Bob_Graham_0005"))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    // A failed enrolment frees its key: the corrected retry enrols.
    let blank = png(&image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128])));
    let failed = enrol_with_key(&first, &admin, bob, "enrol-2", png_part(blank)).await;
    assert!(!replayed(&failed));
    expect_error(failed, StatusCode::UNPROCESSABLE_ENTITY, "no_face_detected").await;
    let retried = enrol_with_key(&second, &admin, bob, "enrol-2", jpeg(lfw("Bob_Graham_0005"))).await;
    assert!(!replayed(&retried));
    expect(retried, StatusCode::CREATED).await;
    assert_eq!(first.state.store.list_templates(bob).await.unwrap().len(), 2);

    // Keys belong to their API key: another key's "enrol-1" is a request of its own.
    let enroller = first.key(Role::Enrol, CollectionScope::All).await;
    let own = enrol_with_key(&first, &enroller, bob, "enrol-1", jpeg(lfw("Bob_Graham_0005"))).await;
    assert!(!replayed(&own));
    expect(own, StatusCode::CREATED).await;
    assert_eq!(first.state.store.list_templates(bob).await.unwrap().len(), 3);

    // Bad keys are refused before anything runs.
    for bad in ["two words".to_owned(), "k".repeat(256)] {
        expect_error(
            enrol_with_key(&first, &admin, bob, &bad, jpeg(lfw("Bob_Graham_0005"))).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }
    assert_eq!(first.state.store.list_templates(bob).await.unwrap().len(), 3);

    // Hits are replays, misses new keys (each replica counts its own).
    let hits_and_misses = |scraped: &prometheus_parse::Scrape| {
        let count =
            |result| value(scraped, "cache_requests_total", &[("cache", "idempotency"), ("result", result)]);
        (count("hit").unwrap(), count("miss").unwrap())
    };
    let (first_counts, second_counts) =
        (hits_and_misses(&scrape(&first).await), hits_and_misses(&scrape(&second).await));
    assert_eq!((first_counts.0 + second_counts.0, first_counts.1 + second_counts.1), (4.0, 5.0));
}

/// An enrolment under an Idempotency-Key held in the queue behind the app's only inference
/// worker (`inference.workers = 1`) until [`HeldEnrolment::finish`].
struct HeldEnrolment {
    release: std::sync::mpsc::Sender<()>,
    holder: tokio::task::JoinHandle<Result<Option<()>, visage_server::inference::InferenceError>>,
    request: tokio::task::JoinHandle<reqwest::Result<Response>>,
}

impl HeldEnrolment {
    async fn start(app: &TestApp, subject: Uuid, idempotency_key: &str) -> Self {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let state = app.state.clone();
        let holder = tokio::spawn(async move { state.pool.run(move |_| held.recv().ok()).await });
        wait_until("the worker is held", || app.state.pool.busy() == 1).await;
        let request = {
            let (client, url, admin) =
                (app.client.clone(), app.url(&format!("/v1/subjects/{subject}/faces")), app.admin.clone());
            let key = idempotency_key.to_owned();
            tokio::spawn(async move {
                let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0001")));
                client
                    .post(url)
                    .bearer_auth(admin)
                    .header("idempotency-key", key)
                    .multipart(form)
                    .send()
                    .await
            })
        };
        wait_until("the enrolment is queued", || app.state.pool.queue_depth() == 1).await;
        Self { release, holder, request }
    }

    /// Frees the worker; the enrolment's answer.
    async fn finish(self) -> Response {
        self.release.send(()).unwrap();
        self.holder.await.unwrap().unwrap();
        self.request.await.unwrap().unwrap()
    }
}

#[tokio::test]
async fn a_retry_while_the_first_request_runs_is_told_to_wait() {
    let keyspace = Keyspace::new(&redis_url());
    let app = TestApp::spawn_with(|c| {
        keyspace.configure(c);
        c.inference.workers = 1;
    })
    .await;
    let bob = app.create_subject("bob").await;
    let first = HeldEnrolment::start(&app, bob, "slow").await;
    let busy = enrol_with_key(&app, &app.admin, bob, "slow", jpeg(lfw("Bob_Graham_0001"))).await;
    assert_eq!(busy.headers()["retry-after"], "1");
    expect_error(busy, StatusCode::CONFLICT, "idempotency_in_progress").await;
    let first = expect(first.finish().await, StatusCode::CREATED).await;
    let retry = enrol_with_key(&app, &app.admin, bob, "slow", jpeg(lfw("Bob_Graham_0001"))).await;
    assert!(replayed(&retry));
    assert_eq!(face_ids(&expect(retry, StatusCode::CREATED).await), face_ids(&first));
}

/// A reservation in Redis is a short lease the running request keeps renewing: a replica
/// that dies mid-request frees the key within the lease, while a slow request on a live one
/// keeps it for as long as it runs (a retry meanwhile is told to wait, not enrolled twice).
#[tokio::test]
async fn a_reservation_is_a_short_lease_renewed_while_the_request_runs() {
    let keyspace = Keyspace::new(&redis_url());
    let app = TestApp::spawn_with(|c| {
        keyspace.configure(c);
        c.inference.workers = 1;
    })
    .await;
    let carol = app.create_subject("carol").await;
    let first = HeldEnrolment::start(&app, carol, "lease").await;
    let keys = keyspace.keys().await;
    let reservation: Vec<&String> = keys.iter().filter(|k| k.contains("idempotency")).collect();
    assert_eq!(reservation.len(), 1, "{keys:?}");
    let mut connection = redis_connection(&redis_url()).await;
    let lease = visage_server::shared::idempotency::LEASE.as_millis() as i64;
    let pttl: i64 = redis::cmd("PTTL").arg(reservation[0]).query_async(&mut connection).await.unwrap();
    assert!(0 < pttl && pttl <= lease, "reserved for the lease, not longer: {pttl} ms");

    // Longer than a lease later the request still runs, and still holds the key.
    tokio::time::sleep(visage_server::shared::idempotency::LEASE + Duration::from_millis(1500)).await;
    let pttl: i64 = redis::cmd("PTTL").arg(reservation[0]).query_async(&mut connection).await.unwrap();
    assert!(0 < pttl && pttl <= lease, "renewed while the request runs: {pttl} ms");
    let busy = enrol_with_key(&app, &app.admin, carol, "lease", jpeg(lfw("Bob_Graham_0001"))).await;
    expect_error(busy, StatusCode::CONFLICT, "idempotency_in_progress").await;

    let first = expect(first.finish().await, StatusCode::CREATED).await;
    // The answer is kept for replays, far longer than a lease.
    let pttl: i64 = redis::cmd("PTTL").arg(reservation[0]).query_async(&mut connection).await.unwrap();
    assert!(pttl > lease, "the finished answer outlives the lease: {pttl} ms");
    let retry = enrol_with_key(&app, &app.admin, carol, "lease", jpeg(lfw("Bob_Graham_0001"))).await;
    assert!(replayed(&retry));
    assert_eq!(face_ids(&expect(retry, StatusCode::CREATED).await), face_ids(&first));
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `redis-server` of one test, on a port of its own, without persistence.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    /// Picks a free port; nothing runs there yet.
    fn not_started() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { port, child: None }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers.
    async fn restart(&mut self) {
        let binary = std::env::var("VISAGE_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(&binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {binary} ({e}): scripts/services/up.sh installs redis-server")
            });
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls readiness (always 200) until `checks.redis` is `expected`.
async fn wait_for_redis_check(app: &TestApp, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, ready) = app.ready_checks().await;
        assert_eq!(status, StatusCode::OK, "Redis is not needed to serve: {ready}");
        if ready["checks"]["redis"] == expected {
            return;
        }
        assert!(Instant::now() < deadline, "readiness never said {expected}: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn without_redis_at_start_or_mid_run_the_service_serves_on_per_replica_state_and_recovers() {
    let mut redis = OwnRedis::not_started();
    let keyspace = Keyspace::new(&redis.url());
    // Redis is down at start: the service starts all the same, and uses Redis once it is up.
    let app = TestApp::spawn_with(|c| {
        keyspace.configure(c);
        c.rate_limit.requests_per_second = 0.01;
        c.rate_limit.burst = 5;
    })
    .await;
    let (status, ready) = app.ready_checks().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["checks"]["redis"], "unavailable: rate limits and idempotency keys are per replica");
    assert_eq!(value(&scrape(&app).await, "redis_up", &[]), Some(0.0));
    redis.restart().await;
    wait_for_redis_check(&app, "ok").await;

    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let key = app.key(Role::Read, CollectionScope::All).await;
    for _ in 0..2 {
        expect(app.get("/v1/collections", &key).await, StatusCode::OK).await;
    }
    assert_eq!(app.ready_checks().await.1["checks"]["redis"], "ok");
    assert_eq!(value(&scrape(&app).await, "redis_up", &[]), Some(1.0));

    redis.kill();

    // Verification goes on, on the first request after the outage.
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
    let verified = expect(app.post_form("/v1/verify", &app.admin, form).await, StatusCode::OK).await;
    assert_eq!(verified["match"], true);
    let (status, ready) = app.ready_checks().await;
    assert_eq!(status, StatusCode::OK, "Redis is not needed to serve: {ready}");
    assert_eq!(ready["checks"]["redis"], "unavailable: rate limits and idempotency keys are per replica");
    // The key's shared bucket had 3 tokens left; this replica's own bucket starts full.
    for _ in 0..5 {
        expect(app.get("/v1/collections", &key).await, StatusCode::OK).await;
    }
    expect_error(app.get("/v1/collections", &key).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Idempotency keys hold within this replica meanwhile.
    let enrolled = expect(
        enrol_with_key(&app, &app.admin, bob, "outage", jpeg(lfw("Bob_Graham_0005"))).await,
        StatusCode::CREATED,
    )
    .await;
    let retry = enrol_with_key(&app, &app.admin, bob, "outage", jpeg(lfw("Bob_Graham_0005"))).await;
    assert!(replayed(&retry));
    assert_eq!(face_ids(&expect(retry, StatusCode::CREATED).await), face_ids(&enrolled));
    assert_eq!(app.state.store.list_templates(bob).await.unwrap().len(), 2);

    let scraped = scrape(&app).await;
    assert_eq!(value(&scraped, "redis_up", &[]), Some(0.0));
    let errors: f64 = ["connect", "ping", "rate_limit", "idempotency"]
        .into_iter()
        .map(|operation| value(&scraped, "redis_errors_total", &[("operation", operation)]).unwrap())
        .sum();
    assert!(errors >= 1.0, "the failures are counted");
    assert!(value(&scraped, "redis_fallback_total", &[("feature", "rate_limit")]).unwrap() >= 1.0);
    assert!(value(&scraped, "redis_fallback_total", &[("feature", "idempotency")]).unwrap() >= 1.0);

    redis.restart().await;
    wait_for_redis_check(&app, "ok").await;
    assert_eq!(value(&scrape(&app).await, "redis_up", &[]), Some(1.0));
    // The restarted (empty) Redis holds the key's bucket again.
    let other = app.key(Role::Read, CollectionScope::All).await;
    expect(app.get("/v1/collections", &other).await, StatusCode::OK).await;
    let other_id = api_key::parse(&other).unwrap().0;
    assert!(keyspace.keys().await.contains(&format!("{}rate:{other_id}", keyspace.prefix)));
}

#[tokio::test]
async fn without_redis_readiness_says_so_and_redis_up_is_absent() {
    let app = TestApp::spawn().await;
    let (status, ready) = app.ready_checks().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["checks"]["redis"], "not configured");
    let scraped = scrape(&app).await;
    assert!(sample(&scraped, "redis_up", &[]).is_none(), "redis_up is absent without Redis");
    // Idempotency keys still hold, in this process.
    let bob = app.create_subject("bob").await;
    let enrolled = expect(
        enrol_with_key(&app, &app.admin, bob, "local", jpeg(lfw("Bob_Graham_0001"))).await,
        StatusCode::CREATED,
    )
    .await;
    let retry = enrol_with_key(&app, &app.admin, bob, "local", jpeg(lfw("Bob_Graham_0001"))).await;
    assert!(replayed(&retry));
    assert_eq!(face_ids(&expect(retry, StatusCode::CREATED).await), face_ids(&enrolled));
    assert_eq!(app.state.store.list_templates(bob).await.unwrap().len(), 1);
    assert_eq!(value(&scrape(&app).await, "redis_fallback_total", &[("feature", "idempotency")]), Some(0.0));
}

#[tokio::test]
async fn a_redis_that_accepts_connections_but_never_answers_does_not_stall_requests() {
    // A socket that takes connections and reads commands without ever answering one.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = silent.accept().await {
            tokio::spawn(async move {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut socket, &mut sink).await;
            });
        }
    });
    let app = TestApp::spawn_with(|c| {
        c.redis.url = Some(DatabaseUrl::new(url.as_str()));
        c.rate_limit.requests_per_second = 100.0;
        c.redis.command_timeout_ms = 100;
    })
    .await;
    let bob = app.create_subject("bob").await;
    // Bounded only so that a stall fails the test instead of hanging it.
    let bounded = |request| async move {
        tokio::time::timeout(Duration::from_secs(30), request).await.expect("the request stalled on Redis")
    };
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0001")));
    let enrol = app
        .client
        .post(app.url(&format!("/v1/subjects/{bob}/faces")))
        .bearer_auth(&app.admin)
        .header("idempotency-key", "silent")
        .multipart(form)
        .send();
    expect(bounded(enrol).await.unwrap(), StatusCode::CREATED).await;
    // Past the back-off, so that requests try Redis (and time out) again.
    let retry_at = Instant::now() + 2 * visage_server::shared::redis::BACKOFF;
    while Instant::now() < retry_at {
        let listed = bounded(app.client.get(app.url("/v1/collections")).bearer_auth(&app.admin).send());
        expect(listed.await.unwrap(), StatusCode::OK).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, ready) =
        bounded(app.client.get(app.url("/health/ready")).send()).await.map(|r| (r.status(), r)).unwrap();
    assert_eq!(status, StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["redis"], "unavailable: rate limits and idempotency keys are per replica");
    let scraped = scrape(&app).await;
    assert_eq!(value(&scraped, "redis_up", &[]), Some(0.0));
    let errors: f64 = ["connect", "ping", "rate_limit", "idempotency"]
        .into_iter()
        .map(|operation| value(&scraped, "redis_errors_total", &[("operation", operation)]).unwrap())
        .sum();
    assert!(errors >= 2.0, "the start-up ping and a later attempt timed out: {errors}");
}
