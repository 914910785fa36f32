//! The console's files and the endpoints made for it: the review queue and the overview.
//! The console itself is driven in a browser by `scripts/check/console.sh`.

use super::*;

#[tokio::test]
async fn the_console_is_served_from_the_binary_under_a_strict_content_security_policy() {
    let app = spawn_app().await;
    let page = app.client.get(app.url("/console/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in
        ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"]
    {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="js/app.js"></script>"#), "{html}");
    assert!(!html.contains("<script>"), "an inline script");

    let script = app.client.get(app.url("/console/js/app.js")).send().await.unwrap();
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    expect_error(
        app.client.get(app.url("/console/js/nope.js")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        app.client.get(app.url("/console/../Cargo.toml")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // The root and the bare path lead to the console.
    let root = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(root.url().path(), "/console/");
}

#[tokio::test]
async fn the_review_queue_lists_decisions_closest_to_the_threshold_first_with_their_labels() {
    let app = spawn_app().await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let genuine = app.verify(bob, "Bob_Graham_0005").await;
    let impostor = app.verify(bob, "Bill_Nelson_0001").await;
    app.identify(lfw("Elton_John_0001")).await;

    let page = expect(app.get("/v1/decisions", &app.admin).await, StatusCode::OK).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{page}");
    // No similarity (an identification with no candidate) sorts last.
    let distance = |d: &Value| {
        d["similarity"].as_f64().map_or(f64::INFINITY, |s| (s - d["threshold"].as_f64().unwrap()).abs())
    };
    assert!(items.windows(2).all(|w| distance(&w[0]) <= distance(&w[1])), "not closest first: {page}");
    let verify_of = |id: &Value| items.iter().find(|d| d["id"] == *id).unwrap().clone();
    let g = verify_of(&genuine["verification_id"]);
    assert_eq!((g["mode"].as_str(), g["decision"].as_str()), (Some("verify"), Some("match")));
    assert_eq!(g["subject"]["external_id"], "bob");
    assert_eq!(g["subject"]["face_count"], 1);
    assert_eq!(g["truth"], Value::Null);
    assert_eq!(g["probe_kept"], false);

    let id = impostor["verification_id"].as_str().unwrap();
    let label = json!({ "truth": "impostor", "source": "review" });
    expect(
        app.post_json(&format!("/v1/verifications/{id}/feedback"), &app.admin, label).await,
        StatusCode::OK,
    )
    .await;
    let unlabelled = expect(app.get("/v1/decisions?labelled=false", &app.admin).await, StatusCode::OK).await;
    assert_eq!(unlabelled["items"].as_array().unwrap().len(), 2);
    let labelled = expect(app.get("/v1/decisions?labelled=true", &app.admin).await, StatusCode::OK).await;
    assert_eq!(labelled["items"][0]["id"], id);
    assert_eq!(labelled["items"][0]["truth"], "impostor");
    assert_eq!(labelled["items"][0]["truth_source"], "review");

    let identifications =
        expect(app.get("/v1/decisions?mode=identify", &app.admin).await, StatusCode::OK).await;
    assert_eq!(identifications["items"].as_array().unwrap().len(), 1);
    let newest =
        expect(app.get("/v1/decisions?order=newest&limit=1", &app.admin).await, StatusCode::OK).await;
    assert_eq!(newest["items"][0]["mode"], "identify");
    assert_eq!(newest["next_offset"], 1);
    let second =
        expect(app.get("/v1/decisions?order=newest&limit=1&offset=1", &app.admin).await, StatusCode::OK)
            .await;
    assert_eq!(second["items"][0]["id"], id);
    let later = format!("/v1/decisions?since={}", (Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
    let none = expect(app.get(&later.replace('+', "%2B"), &app.admin).await, StatusCode::OK).await;
    assert!(none["items"].as_array().unwrap().is_empty() && none["next_offset"].is_null());

    // Erasure unlinks the subject from its decisions.
    expect(app.delete(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::NO_CONTENT).await;
    let after = expect(app.get("/v1/decisions?mode=verify", &app.admin).await, StatusCode::OK).await;
    assert!(after["items"].as_array().unwrap().iter().all(|d| d["subject"].is_null()), "{after}");
}

#[tokio::test]
async fn the_review_queue_needs_the_enrol_role_and_keeps_to_a_scoped_keys_collections() {
    let app = spawn_app().await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    app.verify(bob, "Bob_Graham_0005").await;
    let verifier = app.key(Role::Verify, CollectionScope::All).await;
    expect_error(app.get("/v1/decisions", &verifier).await, StatusCode::FORBIDDEN, "forbidden").await;
    let door = CollectionScope::Only(vec![CollectionId::parse("door").unwrap()]);
    let door_reviewer = app.key(Role::Enrol, door).await;
    let own = expect(app.get("/v1/decisions", &door_reviewer).await, StatusCode::OK).await;
    assert!(own["items"].as_array().unwrap().is_empty(), "a default-collection decision leaked: {own}");
    expect_error(
        app.get("/v1/decisions?collection=default", &door_reviewer).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let all = expect(app.get("/v1/decisions?collection=default", &app.admin).await, StatusCode::OK).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    for bad in
        ["limit=0", "limit=501", "offset=-1", "mode=both", "order=random", "labelled=maybe", "colour=red"]
    {
        expect_error(
            app.get(&format!("/v1/decisions?{bad}"), &app.admin).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }
}

#[tokio::test]
async fn the_overview_counts_collections_traffic_liveness_and_labelled_decisions() {
    let app = TestApp::spawn_with(|c| c.monitoring.min_labelled = 1).await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let decision = app.verify(bob, "Bob_Graham_0005").await;
    let id = decision["verification_id"].as_str().unwrap();
    let label = json!({ "truth": "genuine", "source": "review" });
    expect(
        app.post_json(&format!("/v1/verifications/{id}/feedback"), &app.admin, label).await,
        StatusCode::OK,
    )
    .await;

    let reader = app.key(Role::Read, CollectionScope::All).await;
    let o = expect(app.get("/v1/overview", &reader).await, StatusCode::OK).await;
    assert_eq!(o["ready"], true);
    assert_eq!(o["checks"]["storage"], "ok");
    let calibration = &app.state.calibration.source;
    assert_eq!(
        o["collections"],
        json!([{ "collection": "default", "subjects": 1, "templates": 1, "calibration": calibration }])
    );
    assert!(o["traffic"]["requests"].as_u64().unwrap() >= 4, "{o}");
    assert_eq!(o["traffic"]["server_errors"], 0);
    assert!(o["traffic"]["p95_seconds"].as_f64().unwrap() >= o["traffic"]["p50_seconds"].as_f64().unwrap());
    assert_eq!(o["liveness"]["pass"], 1, "verification checks liveness by default: {o}");
    assert_eq!(o["liveness"]["pass_rate"], 1.0);
    let rates = &o["error_rates"];
    assert_eq!((rates["genuine_labelled"].as_u64(), rates["impostor_labelled"].as_u64()), (Some(1), Some(0)));
    assert_eq!(rates["frr_percent"], 0.0, "the genuine attempt was accepted");
    assert!(rates["far_percent"].is_null(), "no impostor labelled, no FAR");
    assert_eq!(rates["min_labelled"], 1);
    assert!(o["grafana_url"].is_null());

    // A key scoped to another collection sees none of this one's counts.
    let door = app.key(Role::Read, CollectionScope::Only(vec![CollectionId::parse("door").unwrap()])).await;
    let scoped = expect(app.get("/v1/overview", &door).await, StatusCode::OK).await;
    assert_eq!(scoped["collections"], json!([]));
    expect_error(app.get("/v1/overview", "vsg_nope").await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn the_audit_log_filters_by_action_outcome_subject_key_and_time() {
    let app = spawn_app().await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let bill = app.enrol("bill", "Bill_Nelson_0001").await;
    app.verify(bob, "Bob_Graham_0005").await;
    let get = |query: String| {
        let app = &app;
        async move {
            let body = expect(app.get(&format!("/v1/audit?{query}"), &app.admin).await, StatusCode::OK).await;
            body["items"].as_array().unwrap().clone()
        }
    };
    let enrolments = get("action=face.enrol".into()).await;
    assert_eq!(enrolments.len(), 2);
    let about_bill = get(format!("subject_id={bill}")).await;
    assert!(
        about_bill.iter().all(|e| e["subject_id"] == bill.to_string()) && about_bill.len() == 2,
        "{about_bill:?}"
    );
    assert_eq!(get("outcome=match".into()).await.len(), 1);
    let key_id = enrolments[0]["api_key_id"].as_str().unwrap();
    assert_eq!(get(format!("api_key_id={key_id}&action=subject.create")).await.len(), 2);
    assert!(get("api_key_id=someoneelse".into()).await.is_empty());
    let hour_ago = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339().replace('+', "%2B");
    let in_an_hour = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339().replace('+', "%2B");
    assert_eq!(get(format!("from={hour_ago}&to={in_an_hour}")).await.len(), app.audit_actions().await.len());
    assert!(get(format!("from={in_an_hour}")).await.is_empty());
    let body = expect_error(
        app.get("/v1/audit?action=nonsense", &app.admin).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert!(body["error"]["message"].as_str().unwrap().contains("nonsense"), "{body}");
    expect_error(
        app.get("/v1/audit?outcome=great", &app.admin).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
}

/// Files under the local image directory.
fn image_files(app: &TestApp) -> Vec<Vec<u8>> {
    let dir = app.config.storage.data_dir.join("images");
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect()
}

/// Moves every kept probe's expiry into the past, beneath the service.
async fn expire_probes(app: &TestApp) {
    let sql =
        "UPDATE verifications SET probe_expires_at = '2000-01-01T00:00:00+00:00' WHERE probe_ref IS NOT NULL";
    match &app.db {
        Some(db) => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
        None => {
            let url = format!("sqlite://{}", app.config.database_path().display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
    }
}

#[tokio::test]
async fn without_retention_no_probe_is_kept_and_the_queue_says_so() {
    let app = spawn_app().await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let decision = app.verify(bob, "Bob_Graham_0005").await;
    let page = expect(app.get("/v1/decisions", &app.admin).await, StatusCode::OK).await;
    assert_eq!(page["probe_retention_hours"], 0);
    assert_eq!(page["items"][0]["probe_kept"], false);
    assert!(page["items"][0]["probe_quality"]["sharpness"].as_f64().unwrap() > 0.0, "{page}");
    let id = decision["verification_id"].as_str().unwrap();
    expect_error(
        app.get(&format!("/v1/decisions/{id}/probe"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "probe_not_found",
    )
    .await;
    assert!(image_files(&app).is_empty(), "an image was kept");
}

#[tokio::test]
async fn kept_probes_are_sealed_shown_to_reviewers_audited_and_deleted_at_expiry_and_on_erasure() {
    let app = TestApp::spawn_with(|c| c.review.keep_probe_images_hours = 2).await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let probe = lfw("Bob_Graham_0005");
    let decision = app.verify(bob, "Bob_Graham_0005").await;
    let id = decision["verification_id"].as_str().unwrap().to_owned();

    let page = expect(app.get("/v1/decisions", &app.admin).await, StatusCode::OK).await;
    assert_eq!(page["probe_retention_hours"], 2);
    let item = &page["items"][0];
    assert_eq!(item["probe_kept"], true);
    let expires: chrono::DateTime<Utc> = item["probe_expires_at"].as_str().unwrap().parse().unwrap();
    assert!((expires - Utc::now() - chrono::Duration::hours(2)).num_seconds().abs() < 60, "{expires}");

    let response = app.get(&format!("/v1/decisions/{id}/probe"), &app.admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.bytes().await.unwrap().to_vec(), probe, "not the image that was sent");
    let views: Vec<Value> =
        app.audit_actions().await.into_iter().filter(|e| e["action"] == "probe.view").collect();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0]["detail"]["verification_id"], id.as_str());
    // Sealed at rest: no stretch of the photo is readable in the stored object.
    let files = image_files(&app);
    assert_eq!(files.len(), 1);
    assert!(!files[0].windows(64).any(|w| w == &probe[200..264]), "the probe is stored in the clear");

    // Reviewers only, and only of their collections.
    let verifier = app.key(Role::Verify, CollectionScope::All).await;
    expect_error(
        app.get(&format!("/v1/decisions/{id}/probe"), &verifier).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let door = app.key(Role::Enrol, CollectionScope::Only(vec![CollectionId::parse("door").unwrap()])).await;
    expect_error(
        app.get(&format!("/v1/decisions/{id}/probe"), &door).await,
        StatusCode::NOT_FOUND,
        "verification_not_found",
    )
    .await;

    // A group photo's probe is kept once for all its decisions; erasing anyone it shows deletes it.
    let form = Form::new().part("image", jpeg(lfw("Bill_Nelson_0001"))).text("faces", "all");
    let all = expect(app.post_form("/v1/identify", &app.admin, form).await, StatusCode::OK).await;
    let searched = all["faces"][0]["verification_id"].as_str().unwrap().to_owned();
    assert_eq!(image_files(&app).len(), 2);
    expect(app.delete(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::NO_CONTENT).await;
    expect_error(
        app.get(&format!("/v1/decisions/{id}/probe"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "probe_not_found",
    )
    .await;
    assert_eq!(image_files(&app).len(), 1, "erasure left the subject's probe");

    // Expiry: the sweep deletes what is due, counts and audits it.
    expire_probes(&app).await;
    let deleted = visage_server::service::review::sweep_expired_probes(&app.state).await.unwrap();
    assert_eq!(deleted, 1);
    assert!(image_files(&app).is_empty());
    expect_error(
        app.get(&format!("/v1/decisions/{searched}/probe"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "probe_not_found",
    )
    .await;
    let scrape = scrape(&app).await;
    assert_eq!(value(&scrape, "probe_images_expired_total", &[]), Some(1.0));
    assert!(
        app.audit_actions()
            .await
            .iter()
            .any(|e| e["action"] == "probe.expire" && e["detail"]["deleted"] == 1)
    );
    let page = expect(app.get("/v1/decisions", &app.admin).await, StatusCode::OK).await;
    assert!(page["items"].as_array().unwrap().iter().all(|d| d["probe_kept"] == false), "{page}");
}
