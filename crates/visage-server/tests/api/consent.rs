//! Consent that ends: a withdrawal erases the subject at once; an expiry takes it out of
//! verification at once and the retention job erases it within its interval. Both leave a
//! destruction record naming their ground.

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
    assert!(records(&app).await.is_empty(), "not erased yet");
}
