//! Template key rotation: `visage keys rotate-template-key` re-seals templates, enrolment images
//! and kept probe images under the new key while a replica serves; then the old key can go and
//! everyone still verifies. Until then, a service missing a key still in use refuses to start.

use visage_server::jobs::reembed::Quiet;
use visage_server::jobs::rotation::rotate;

use super::access::unzip;
use super::*;

fn keyed(config: &Config, active: &str, previous: &[&str]) -> Config {
    let mut config = config.clone();
    config.encryption.key = Some(Secret::new(active));
    config.encryption.previous_keys = previous.iter().map(|k| Secret::new(*k)).collect();
    config
}

fn key_id(key: &str) -> String {
    TemplateKey::from_base64(key).unwrap().id().to_owned()
}

#[tokio::test]
async fn a_rotated_key_can_be_dropped_and_everyone_still_verifies() {
    let mut app = TestApp::spawn_with(|c| {
        c.storage.store_images = true;
        c.review.keep_probe_images_hours = 2;
    })
    .await;
    let old = app.config.encryption.key.as_ref().unwrap().expose().to_owned();
    let new = TemplateKey::generate_base64().as_str().to_owned();
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let bill = app.enrol("bill", "Bill_Nelson_0001").await;
    let decision = app.verify(bob, "Bob_Graham_0005").await;
    let decision_id = decision["verification_id"].as_str().unwrap().to_owned();
    app.shut_down().await;

    // Without the old key the service refuses to start, naming what needs it.
    let error = Application::build(keyed(&app.config, &new, &[])).await.err().expect("refused");
    let message = format!("{error:#}");
    assert!(message.contains(&format!("2 templates need key {}", key_id(&old))), "{message}");

    // The new key active, the old one kept: the replica serves while the rotation runs.
    let during_config = keyed(&app.config, &new, &[&old]);
    let mut during = TestApp::start(during_config.clone()).await;
    assert_eq!(during.verify(bob, "Bob_Graham_0005").await["match"], true);
    let summary = rotate(&during_config, 1, &Quiet).await.unwrap();
    assert_eq!(summary.active_key_id, key_id(&new));
    let counts = |c: &visage_server::jobs::rotation::Counts| (c.resealed, c.current, c.failed_total());
    assert_eq!(counts(&summary.templates), (2, 0, 0));
    assert_eq!(counts(&summary.images), (2, 0, 0));
    // The probe of the verification just made was sealed with the new key already.
    assert_eq!(counts(&summary.probe_images), (1, 1, 0));
    assert_eq!(summary.removable_key_ids, [key_id(&old)]);
    assert_eq!(summary.keys_in_use, [key_id(&new)]);
    assert_eq!(during.verify(bill, "Bill_Nelson_0002").await["match"], true, "served throughout");
    // Resumable: a second run finds everything done.
    let again = rotate(&during_config, 10, &Quiet).await.unwrap();
    assert_eq!(counts(&again.templates), (0, 2, 0));
    assert_eq!(counts(&again.images), (0, 2, 0));
    assert_eq!(counts(&again.probe_images), (0, 3, 0));
    let audit = during.audit_actions().await;
    let rotations: Vec<&Value> = audit.iter().filter(|e| e["action"] == "template_key.rotate").collect();
    assert_eq!(rotations.len(), 2);
    assert_eq!(rotations[0]["detail"]["templates_resealed"], 2);
    during.shut_down().await;

    // The old key gone: everyone verifies, stored photos and the kept probe still open.
    let after = TestApp::start(keyed(&app.config, &new, &[])).await;
    assert_eq!(after.verify(bob, "Bob_Graham_0005").await["match"], true);
    assert_eq!(after.verify(bill, "Bill_Nelson_0002").await["match"], true);
    let names: Vec<String> =
        after.identify(lfw("Bob_Graham_0005")).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["bob"]);
    let probe = after.get(&format!("/v1/decisions/{decision_id}/probe"), &after.admin).await;
    assert_eq!(probe.status(), StatusCode::OK);
    assert_eq!(probe.bytes().await.unwrap().to_vec(), lfw("Bob_Graham_0005"));
    let export = after.get(&format!("/v1/subjects/{bob}/export"), &after.admin).await;
    let files = unzip(&expect_bytes(export).await);
    let photos: Vec<&Vec<u8>> =
        files.iter().filter(|(name, _)| name.starts_with("images/")).map(|(_, bytes)| bytes).collect();
    assert_eq!(photos, [&lfw("Bob_Graham_0001")], "the enrolment photo opens with the new key");
}

async fn expect_bytes(response: Response) -> Vec<u8> {
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap().to_vec()
}
