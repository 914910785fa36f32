//! Consent that ends: a withdrawal erases the subject at once, or with
//! `retention.after_withdrawal_days` takes it out of matching at once and the retention job
//! erases it on schedule; an expiry takes it out of matching at once and the retention job
//! erases it within its interval. Each leaves a destruction record naming its ground.

use super::*;

async fn subject_with_consent(
    app: &TestApp,
    external_id: &str,
    expires_at: Option<chrono::DateTime<Utc>>,
) -> Response {
    let consent = json!({ "given_by": "the subject", "purpose": "tests", "expires_at": expires_at });
    app.post_json("/v1/subjects", &app.admin, json!({ "external_id": external_id, "consent": consent })).await
}

async fn records(app: &TestApp) -> Vec<Value> {
    let page = expect(app.get("/v1/destruction-records", &app.admin).await, StatusCode::OK).await;
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_withdrawal_of_consent_erases_the_subject_at_once() {
    let app = TestApp::spawn().await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let verifier = app.key(Role::Verify, CollectionScope::All).await;
    let path = format!("/v1/subjects/{bob}/consent/withdraw");
    expect_error(app.post_json(&path, &verifier, json!({})).await, StatusCode::FORBIDDEN, "forbidden").await;
    let withdrawn = expect(app.post_json(&path, &app.admin, json!({})).await, StatusCode::OK).await;
    assert_eq!((withdrawn["subject_id"].clone(), withdrawn["erased"].clone()), (json!(bob), json!(true)));
    expect_error(
        app.get(&format!("/v1/subjects/{bob}"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    assert!(app.identify(lfw("Bob_Graham_0005")).await.is_empty(), "out of identification at once");
    let records = records(&app).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0]["id"].clone(), records[0]["ground"].as_str()),
        (withdrawn["destruction_record_id"].clone(), Some("consent_withdrawn"))
    );
    expect_error(
        app.post_json(&path, &app.admin, json!({})).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
}

#[tokio::test]
async fn expired_consent_is_out_of_verification_at_once_and_erased_by_the_retention_job() {
    let app = TestApp::spawn_with(|c| c.retention.sweep_interval_seconds = 1).await;
    let past = Utc::now() - chrono::Duration::minutes(1);
    expect_error(
        subject_with_consent(&app, "late", Some(past)).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;

    let ends = Utc::now() + chrono::Duration::seconds(3);
    let created = expect(subject_with_consent(&app, "bob", Some(ends)).await, StatusCode::CREATED).await;
    assert_eq!(
        created["consent"]["expires_at"].as_str().map(|t| t.parse::<chrono::DateTime<Utc>>().unwrap()),
        Some(ends)
    );
    let bob: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let kept = app.enrol("bill", "Bill_Nelson_0001").await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0001")));
    expect(app.post_form(&format!("/v1/subjects/{bob}/faces"), &app.admin, form).await, StatusCode::CREATED)
        .await;
    assert_eq!(app.verify(bob, "Bob_Graham_0005").await["match"], true, "consent still runs");

    // After the end: verification refuses at once, and the job erases the subject.
    tokio::time::sleep((ends - Utc::now()).to_std().unwrap_or_default()).await;
    let mut erased = false;
    for _ in 0..100 {
        let form =
            Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
        let answer = app.post_form("/v1/verify", &app.admin, form).await;
        match answer.status() {
            StatusCode::UNPROCESSABLE_ENTITY => {
                expect_error(answer, StatusCode::UNPROCESSABLE_ENTITY, "consent_expired").await;
            }
            StatusCode::NOT_FOUND => {
                erased = true;
                break;
            }
            other => panic!("after the consent ended, verify answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(erased, "the retention job erased the subject");
    let records = records(&app).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["ground"], "consent_expired");
    assert_eq!(records[0]["performed_by"], visage_server::service::retention::PERFORMER);
    assert_eq!(app.verify(kept, "Bill_Nelson_0002").await["match"], true, "others are untouched");
    let scraped = scrape(&app).await;
    assert_eq!(
        value(&scraped, "visage_retention_erasures_total", &[("ground", "consent_expired")]),
        Some(1.0)
    );
    let audit = app.audit_actions().await;
    assert!(
        audit.iter().any(|e| e["action"] == "subject.erase" && e["detail"]["ground"] == "consent_expired"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_subject_whose_consent_ended_is_refused_before_the_job_comes_round() {
    // The job's first round runs at start, the next in an hour: only the refusal can act.
    let app = TestApp::spawn_with(|c| c.retention.sweep_interval_seconds = 3600).await;
    let ends = Utc::now() + chrono::Duration::seconds(2);
    let created = expect(subject_with_consent(&app, "bob", Some(ends)).await, StatusCode::CREATED).await;
    let bob: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0001")));
    expect(app.post_form(&format!("/v1/subjects/{bob}/faces"), &app.admin, form).await, StatusCode::CREATED)
        .await;
    tokio::time::sleep((ends - Utc::now()).to_std().unwrap_or_default()).await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
    expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "consent_expired",
    )
    .await;
    assert!(app.identify(lfw("Bob_Graham_0005")).await.is_empty(), "out of identification at once");
    assert!(records(&app).await.is_empty(), "not erased yet");
}

#[tokio::test]
async fn a_withdrawal_with_a_delay_takes_the_subject_out_of_matching_on_every_replica_and_erases_it_on_schedule()
 {
    let app = TestApp::spawn_with(|c| {
        c.retention.after_withdrawal_days = 3;
        c.retention.sweep_interval_seconds = 3600;
    })
    .await;
    let other = super::replicas::replica_of(&app).await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let kept = app.enrol("bill", "Bill_Nelson_0001").await;
    let named = |found: Vec<(String, f64)>| found.into_iter().map(|(name, _)| name).collect::<Vec<_>>();
    for _ in 0..100 {
        if named(other.identify(lfw("Bob_Graham_0005")).await) == ["bob"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(named(other.identify(lfw("Bob_Graham_0005")).await), ["bob"], "the other replica knows bob");

    let path = format!("/v1/subjects/{bob}/consent/withdraw");
    let before = Utc::now();
    let withdrawn = expect(app.post_json(&path, &app.admin, json!({})).await, StatusCode::OK).await;
    assert_eq!(withdrawn["erased"], false);
    assert_eq!(withdrawn["destruction_record_id"], Value::Null);
    let erase_after: chrono::DateTime<Utc> = withdrawn["erase_after"].as_str().unwrap().parse().unwrap();
    let days = (erase_after - before).num_minutes() as f64 / (24.0 * 60.0);
    assert!((2.99..3.01).contains(&days), "erased 3 days after the withdrawal, not {days}");

    // Out of matching at once: verify refuses, identify names nobody, on both replicas.
    let subject = expect(app.get(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::OK).await;
    assert!(subject["consent"]["withdrawn_at"].is_string(), "{subject}");
    for replica in [&app, &other] {
        let form =
            Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
        let answer = replica.post_form("/v1/verify", &replica.admin, form).await;
        expect_error(answer, StatusCode::UNPROCESSABLE_ENTITY, "consent_withdrawn").await;
    }
    assert!(app.identify(lfw("Bob_Graham_0005")).await.is_empty());
    let mut gone = false;
    for _ in 0..100 {
        if other.identify(lfw("Bob_Graham_0005")).await.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the other replica dropped bob from its index");
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    expect_error(
        app.post_form(&format!("/v1/subjects/{bob}/faces"), &app.admin, form).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "consent_withdrawn",
    )
    .await;
    let audit = app.audit_actions().await;
    assert!(audit.iter().any(|e| e["action"] == "consent.withdraw" && e["subject_id"] == json!(bob)));

    // The job leaves bob until the delay is over, then erases him.
    let job = |at| visage_server::service::retention::sweep_at(&app.state, "test", at);
    let round = job(Utc::now() + chrono::Duration::days(2)).await.unwrap();
    assert_eq!(round.erased, 0);
    assert!(records(&app).await.is_empty());
    let round = job(Utc::now() + chrono::Duration::days(3) + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!(round.erased, 1);
    expect_error(
        app.get(&format!("/v1/subjects/{bob}"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    let records = records(&app).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["ground"], "consent_withdrawn");
    assert_eq!(records[0]["performed_by"], visage_server::service::retention::PERFORMER);
    assert_eq!(app.verify(kept, "Bill_Nelson_0002").await["match"], true, "others are untouched");
    assert_eq!(
        value(&scrape(&app).await, "visage_retention_erasures_total", &[("ground", "consent_withdrawn")]),
        Some(1.0)
    );
}
