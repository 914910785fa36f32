//! The audit trail.

use super::*;

#[tokio::test]
async fn the_audit_log_records_actions_without_personal_data() {
    let app = spawn_app().await;
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
