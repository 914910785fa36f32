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
