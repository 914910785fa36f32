//! Overload, storage failures, timeouts and a database outage.

use super::*;

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

#[tokio::test]
async fn storage_failure_answers_503_and_timeouts_are_named() {
    let app = spawn_app().await;
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

/// Cuts the test database off: it refuses new connections and drops the service's.
async fn cut_off(db: &visage_store::testing::TestDatabase) {
    let name = &db.name;
    db.admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    db.admin(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .await;
}

async fn reconnect(db: &visage_store::testing::TestDatabase) {
    db.admin(format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", db.name)).await;
}

async fn wait_until_ready(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ready = app.client.get(app.url("/health/ready")).send().await.unwrap();
        if ready.status() == StatusCode::OK {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "not ready again after the database came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn verify_form(subject: Uuid, image: &str) -> Form {
    Form::new().part("image", jpeg(lfw(image))).text("subject_id", subject.to_string())
}

/// PostgreSQL only (the embedded database cannot go away): while the database refuses
/// connections, verify and identify are answered from memory and their decisions and audit
/// events are spooled; writes answer 503 quickly; once it is back, the spool reaches it once.
#[tokio::test]
async fn through_a_database_outage_decisions_go_on_and_reach_the_database_once_it_is_back() {
    if !on_postgres() {
        eprintln!("skipped: needs VISAGE_TEST_BACKEND=postgres");
        return;
    }
    let app = TestApp::spawn_with(|c| c.database.acquire_timeout_seconds = 1).await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let bill = app.enrol("bill", "Bill_Nelson_0001").await;
    let revoked = app.key(Role::Verify, CollectionScope::All).await;
    let revoked_id = api_key::parse(&revoked).unwrap().0.to_owned();
    expect(app.delete(&format!("/v1/keys/{revoked_id}"), &app.admin).await, StatusCode::NO_CONTENT).await;
    expect(app.delete(&format!("/v1/subjects/{bill}"), &app.admin).await, StatusCode::NO_CONTENT).await;
    let db = app.db.as_ref().unwrap();
    cut_off(db).await;

    let started = std::time::Instant::now();
    let verified = expect(
        app.post_form("/v1/verify", &app.admin, verify_form(bob, "Bob_Graham_0005")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["match"], true, "{verified}");
    let impostor = expect(
        app.post_form("/v1/verify", &app.admin, verify_form(bob, "Bill_Nelson_0002")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(impostor["match"], false, "{impostor}");
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    let identified = expect(app.post_form("/v1/identify", &app.admin, form).await, StatusCode::OK).await;
    assert_eq!(identified["candidates"][0]["external_id"], "bob", "{identified}");
    assert_eq!(identified["candidates"].as_array().unwrap().len(), 1, "{identified}");
    // The erasure made before the outage holds: Bill is nobody, and cannot be claimed.
    let form = Form::new().part("image", jpeg(lfw("Bill_Nelson_0002")));
    let nobody = expect(app.post_form("/v1/identify", &app.admin, form).await, StatusCode::OK).await;
    assert_eq!(nobody["candidates"], serde_json::json!([]), "{nobody}");
    expect_error(
        app.post_form("/v1/verify", &app.admin, verify_form(bill, "Bill_Nelson_0002")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;
    let response = app.post_form("/v1/verify", &revoked, verify_form(bob, "Bob_Graham_0005")).await;
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // What needs the database says so.
    expect_error(
        app.get(&format!("/v1/subjects/{bob}"), &app.admin).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    expect_error(
        app.post_form(&format!("/v1/subjects/{bob}/faces"), &app.admin, form).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(20), "the outage's answers took {:?}", started.elapsed());

    let ready = expect(
        app.client.get(app.url("/health/ready")).send().await.unwrap(),
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(
        (ready["status"].as_str(), ready["checks"]["mode"].as_str()),
        (Some("degraded"), Some("read-only")),
        "{ready}"
    );
    assert_eq!(
        ready["checks"]["spooled_events"], 8,
        "4 decisions and their audit events, nothing else: {ready}"
    );
    let read = expect(app.client.get(app.url("/health/read")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(read["status"], "degraded");
    let spooled = value(&scrape(&app).await, "spooled_events", &[]);
    assert_eq!(spooled, Some(8.0));

    reconnect(db).await;
    wait_until_ready(&app).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.state.outage.spool().waiting() > 0 {
        assert!(std::time::Instant::now() < deadline, "the spool was not replayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scraped = scrape(&app).await;
    assert_eq!(value(&scraped, "spool_replayed_total", &[]), Some(8.0));
    assert_eq!(value(&scraped, "spooled_events", &[]), Some(0.0));
    let ids = [&verified, &impostor, &identified, &nobody]
        .map(|v| v["verification_id"].as_str().unwrap().parse::<Uuid>().unwrap());
    for id in ids {
        let kept = app.state.store.get_verification(id).await.unwrap();
        assert!(kept.is_some(), "decision {id} of the outage is in the database");
    }
    let audited: Vec<_> = app
        .audit_actions()
        .await
        .into_iter()
        .filter_map(|e| e["detail"]["verification_id"].as_str().map(str::to_owned))
        .collect();
    for id in ids {
        assert_eq!(audited.iter().filter(|a| **a == id.to_string()).count(), 1, "one audit event for {id}");
    }
    // A replay run again (as after a crash mid-replay) keeps each once.
    assert_eq!(app.state.outage.spool().replay(app.state.store.as_ref()).await.unwrap().written, 0);
    let subject = expect(app.get(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::OK).await;
    assert_eq!(subject["face_count"], 1, "nothing acknowledged was lost");
    assert_eq!(app.verify(bob, "Bob_Graham_0005").await["match"], true);
}

/// With `database.outage_reads` off, an outage answers every request 503 quickly, and the
/// service recovers by itself.
#[tokio::test]
async fn without_outage_reads_a_database_outage_answers_503_quickly_and_the_service_recovers() {
    if !on_postgres() {
        eprintln!("skipped: needs VISAGE_TEST_BACKEND=postgres");
        return;
    }
    let app = TestApp::spawn_with(|c| {
        c.database.acquire_timeout_seconds = 1;
        c.database.outage_reads = false;
    })
    .await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let db = app.db.as_ref().unwrap();
    cut_off(db).await;
    let started = std::time::Instant::now();
    expect_error(
        app.get(&format!("/v1/subjects/{bob}"), &app.admin).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;
    expect_error(
        app.post_form("/v1/verify", &app.admin, verify_form(bob, "Bob_Graham_0005")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5), "503s took {:?}", started.elapsed());
    for path in ["/health/ready", "/health/read"] {
        let body =
            expect(app.client.get(app.url(path)).send().await.unwrap(), StatusCode::SERVICE_UNAVAILABLE)
                .await;
        assert_eq!(body["checks"]["storage"], "unavailable");
    }
    reconnect(db).await;
    wait_until_ready(&app).await;
    let subject = expect(app.get(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::OK).await;
    assert_eq!(subject["face_count"], 1, "nothing acknowledged was lost");
    assert_eq!(app.verify(bob, "Bob_Graham_0005").await["match"], true);
}

/// An enrolment whose answer was lost after its templates were committed (the process killed
/// before the shared idempotency record learnt the outcome, so the key's lease just expires):
/// the retry with the same Idempotency-Key finds the request recorded with the templates and
/// answers with them, instead of storing the face a second time.
#[tokio::test]
async fn an_enrolment_retried_after_its_answer_was_lost_is_stored_once() {
    use bytes::Bytes;
    use visage_server::service::{Caller, enrolment};

    let app = spawn_app().await;
    let bob = app.create_subject("bob").await;
    let caller = Caller { key_id: "k-retry".into(), role: Role::Enrol, scope: CollectionScope::All };
    let image = || vec![Bytes::from(lfw("Bob_Graham_0001"))];
    let key = Some("request-1".to_owned());
    let first = enrolment::enrol(&app.state, &caller, bob, image(), None, key.clone()).await.unwrap();
    let again = enrolment::enrol(&app.state, &caller, bob, image(), None, key).await.unwrap();
    let ids = |faces: &[enrolment::EnrolledFace]| faces.iter().map(|f| f.template.id).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first), "the retry answers with the stored face");
    let faces = expect(app.get(&format!("/v1/subjects/{bob}/faces"), &app.admin).await, StatusCode::OK).await;
    assert_eq!(faces["faces"].as_array().unwrap().len(), 1, "stored once: {faces}");
    // Another request is another enrolment.
    let other =
        enrolment::enrol(&app.state, &caller, bob, image(), None, Some("request-2".into())).await.unwrap();
    assert_ne!(ids(&other), ids(&first));
    // Over HTTP the middleware hands the handler the request's key: a replay from the shared
    // record and the database agree on the face.
    let form = || Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    let headers = |r: reqwest::RequestBuilder| r.bearer_auth(&app.admin).header("Idempotency-Key", "face-k");
    let sent = headers(app.client.post(app.url(&format!("/v1/subjects/{bob}/faces"))))
        .multipart(form())
        .send()
        .await;
    let answered = expect(sent.unwrap(), StatusCode::CREATED).await;
    let kept = app.state.store.list_templates(bob).await.unwrap();
    assert_eq!(kept.len(), 3);
    assert_eq!(answered["faces"][0]["id"], kept[2].id.to_string());
    use sha2::{Digest, Sha256};
    let key_id = api_key::parse(&app.admin).unwrap().0;
    let header_hash = format!("{:x}", Sha256::digest(b"face-k"));
    let request_key = format!("{:x}", Sha256::digest(format!("{key_id}\nface.enrol\n{header_hash}")));
    let recorded = app.state.store.templates_of_request(&request_key).await.unwrap().expect("recorded");
    assert_eq!(
        recorded.iter().map(|t| t.id).collect::<Vec<_>>(),
        [kept[2].id],
        "the handler got the request's key"
    );
}
