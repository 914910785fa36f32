//! Retention: subjects neither enrolled nor matched for `retention.inactive_subject_days` are
//! erased, and decision records, audit events and destruction records are deleted past their
//! periods; each counted in a metric and audited. The job runs "in the future" here
//! (`retention::sweep_at`) instead of waiting for days.

use super::*;
use visage_server::service::retention::{PERFORMER, sweep_at};

async fn decisions(app: &TestApp) -> usize {
    let page = expect(app.get("/v1/decisions?limit=500", &app.admin).await, StatusCode::OK).await;
    page["items"].as_array().unwrap().len()
}

async fn records(app: &TestApp) -> Vec<Value> {
    let page = expect(app.get("/v1/destruction-records", &app.admin).await, StatusCode::OK).await;
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn inactive_subjects_are_erased_and_old_records_are_pruned_on_schedule() {
    let app = TestApp::spawn_with(|c| {
        c.retention.sweep_interval_seconds = 3600;
        c.retention.inactive_subject_days = 30;
        c.retention.decision_days = 60;
        c.retention.audit_days = 90;
        c.retention.destruction_record_days = 120;
    })
    .await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let bill = app.enrol("bill", "Bill_Nelson_0001").await;
    assert_eq!(app.verify(bob, "Bob_Graham_0005").await["match"], true);
    assert_eq!(app.verify(bill, "Bob_Graham_0005").await["match"], false);
    assert_eq!(decisions(&app).await, 2);
    let days = |n: i64| Utc::now() + chrono::Duration::days(n);
    let job = |at| sweep_at(&app.state, "test", at);

    let round = job(days(29)).await.unwrap();
    assert_eq!((round.erased, round.pruned.len()), (0, 0), "nothing is due yet");
    let round = job(days(31)).await.unwrap();
    assert_eq!(round.erased, 2, "both were last active today");
    let found = records(&app).await;
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|r| r["ground"] == "inactive_subject" && r["performed_by"] == PERFORMER));
    assert_eq!(decisions(&app).await, 2, "decisions are kept longer");

    let round = job(days(61)).await.unwrap();
    assert_eq!(round.pruned, [(visage_store::RetainedRecord::Decisions, 2)]);
    assert_eq!(decisions(&app).await, 0);
    let audit = app.audit_actions().await;
    let pruning = audit.iter().find(|e| e["action"] == "retention.prune").expect("the pruning is audited");
    assert_eq!(pruning["detail"], json!({ "decisions": 2 }));
    assert_eq!(pruning["api_key_id"], PERFORMER);

    let round = job(days(91)).await.unwrap();
    assert_eq!(round.pruned.len(), 1);
    assert_eq!(round.pruned[0].0, visage_store::RetainedRecord::AuditEvents);
    let audit = app.audit_actions().await;
    assert_eq!(audit.len(), 1, "only the record of this pruning is left: {audit:?}");
    assert_eq!(audit[0]["action"], "retention.prune");
    assert_eq!(audit[0]["detail"]["audit_events"], round.pruned[0].1);

    assert_eq!(records(&app).await.len(), 2);
    let round = job(days(121)).await.unwrap();
    assert!(round.pruned.contains(&(visage_store::RetainedRecord::DestructionRecords, 2)), "{round:?}");
    assert!(records(&app).await.is_empty());

    let scraped = scrape(&app).await;
    let pruned = |record| value(&scraped, "visage_retention_pruned_total", &[("record", record)]);
    assert_eq!(pruned("decisions"), Some(2.0));
    assert_eq!(pruned("destruction_records"), Some(2.0));
    assert!(pruned("audit_events").unwrap() >= 1.0);
    assert_eq!(
        value(&scraped, "visage_retention_erasures_total", &[("ground", "inactive_subject")]),
        Some(2.0)
    );
}

#[tokio::test]
async fn activity_keeps_a_subject_and_nothing_is_pruned_by_default() {
    let app = TestApp::spawn_with(|c| {
        c.retention.sweep_interval_seconds = 3600;
        c.retention.inactive_subject_days = 30;
    })
    .await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let job = |at| sweep_at(&app.state, "test", at);
    // Nothing is due after 20 days; then a match that day (seen from the job: today) keeps bob
    // while a subject enrolled today but never matched is erased 31 days on.
    assert_eq!(job(Utc::now() + chrono::Duration::days(20)).await.unwrap().erased, 0);
    assert_eq!(app.verify(bob, "Bob_Graham_0005").await["match"], true);
    let round = job(Utc::now() + chrono::Duration::days(29)).await.unwrap();
    assert_eq!(round.erased, 0);
    assert!(round.pruned.is_empty(), "decisions and audit events are kept unless configured");
    // The default keeps destruction records three years.
    let three_years = Utc::now() + chrono::Duration::days(3 * 365 - 1);
    let bill = app.enrol("bill", "Bill_Nelson_0001").await;
    expect(app.delete(&format!("/v1/subjects/{bill}"), &app.admin).await, StatusCode::NO_CONTENT).await;
    let round = job(three_years).await.unwrap();
    assert_eq!(round.erased, 1, "bob, inactive by then");
    assert!(round.pruned.is_empty(), "{round:?}");
    assert_eq!(records(&app).await.len(), 2);
}
