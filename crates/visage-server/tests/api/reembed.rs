//! A recognizer change without downtime: faces enrolled with SFace (keeping their images) get
//! MobileFaceNet twins from the stored images (`visage reembed`, called as the command calls
//! it) while the SFace service keeps serving; a rerun catches enrolments made meanwhile and
//! otherwise finds nothing to do; a MobileFaceNet service on the same database identifies the
//! subjects; pruning deletes the SFace templates and their images; re-embedding back to SFace
//! (in batches) restores an SFace gallery.

use visage_face::RecognizerKind;
use visage_server::jobs::reembed::{self, Quiet};

use super::*;

/// MobileFaceNet is optional (`scripts/models/fetch.sh --mobilefacenet`); CI sets
/// VISAGE_REQUIRE_MOBILEFACENET=1 so that a missing model fails instead of skipping.
fn mobilefacenet_present() -> bool {
    if repo().join("models").join(visage_face::models::MOBILEFACENET).exists() {
        return true;
    }
    assert!(
        std::env::var_os("VISAGE_REQUIRE_MOBILEFACENET").is_none(),
        "VISAGE_REQUIRE_MOBILEFACENET is set but the model is missing"
    );
    eprintln!("skipped: no MobileFaceNet model (scripts/models/fetch.sh --mobilefacenet)");
    false
}

/// A face stored beside the service: SFace-sized sealed values and, optionally, an image.
async fn add_face(app: &TestApp, subject: Uuid, image: Option<Vec<u8>>) -> Uuid {
    let id = Uuid::now_v7();
    let image_ref = match image {
        Some(bytes) => Some(app.state.images.put(&app.state.keys, id, subject, &bytes).await.unwrap()),
        None => None,
    };
    let template = Template {
        id,
        subject_id: subject,
        model: "sface".into(),
        sealed: app.state.keys.seal(id, subject, &[0.088; 128]),
        quality: json!({}),
        image_ref,
        created_at: Utc::now(),
        source_template_id: None,
    };
    app.state.store.add_templates(&[template]).await.unwrap();
    id
}

fn stored_images(app: &TestApp) -> Vec<String> {
    let dir = app.config.storage.data_dir.join("images");
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn reembedding_moves_the_gallery_to_another_recognizer_without_downtime() {
    if !mobilefacenet_present() {
        return;
    }
    let old = TestApp::spawn_with(|c| c.storage.store_images = true).await;
    let bob = old.enrol("bob", "Bob_Graham_0001").await;
    let bill = old.enrol("bill", "Bill_Nelson_0001").await;
    // Enrolled before images were kept, and an image that no longer yields a face.
    let carl = old.create_subject("carl").await;
    let carl_face = add_face(&old, carl, None).await;
    let dana = old.create_subject("dana").await;
    let blank = png(&image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128])));
    let dana_face = add_face(&old, dana, Some(blank)).await;

    let summary = reembed::reembed(&old.config, RecognizerKind::Mobilefacenet, 2, &Quiet).await.unwrap();
    assert_eq!(summary.done, 2, "{summary:?}");
    assert_eq!(summary.skipped.get("no_image"), Some(&1), "{summary:?}");
    assert_eq!(summary.failed.get("no_face_detected"), Some(&1), "{summary:?}");
    assert_eq!(summary.status.untwinned, 2);

    // The SFace service did not notice: it matches and lists with its own templates.
    assert_eq!(old.identify(lfw("Bob_Graham_0005")).await[0].0, "bob");
    assert_eq!(old.verify(bill, "Bill_Nelson_0002").await["match"], true);
    let faces = expect(old.get(&format!("/v1/subjects/{bob}/faces"), &old.admin).await, StatusCode::OK).await;
    assert_eq!(faces["faces"].as_array().unwrap().len(), 1);
    let subject = expect(old.get(&format!("/v1/subjects/{bob}"), &old.admin).await, StatusCode::OK).await;
    assert_eq!(subject["face_count"], 1, "a twin is not another face");

    // Bob's twin: MobileFaceNet, linked to his SFace template, with an image of its own.
    let templates = old.state.store.list_templates(bob).await.unwrap();
    assert_eq!(templates.len(), 2);
    let original = templates.iter().find(|t| t.model == "sface").unwrap();
    let twin = templates.iter().find(|t| t.model == "mobilefacenet").expect("a twin");
    assert_eq!(twin.source_template_id, Some(original.id));
    let reference = twin.image_ref.as_deref().unwrap();
    assert_eq!(reference, format!("{}.img", twin.id));
    assert_eq!(
        *visage_server::service::images::load(&old.state, twin.id, bob, reference).await.unwrap(),
        lfw("Bob_Graham_0001")
    );

    // Enrolled meanwhile on a replica still running SFace: the next run catches it, and a run
    // after that has nothing left to do.
    let arminio = old.enrol("arminio", "Arminio_Fraga_0002").await;
    let summary = reembed::reembed(&old.config, RecognizerKind::Mobilefacenet, 2, &Quiet).await.unwrap();
    assert_eq!(summary.done, 1, "{summary:?}");
    let count = |subject| {
        let store = old.state.store.clone();
        async move { store.list_templates(subject).await.unwrap().len() }
    };
    assert_eq!(count(arminio).await, 2);
    let summary = reembed::reembed(&old.config, RecognizerKind::Mobilefacenet, 2, &Quiet).await.unwrap();
    assert_eq!((summary.done, summary.skipped_total(), summary.failed_total()), (0, 1, 1), "{summary:?}");
    assert_eq!(count(bob).await, 2, "no second twin");

    // A replica restarted on MobileFaceNet, beside the SFace one, on the same database.
    let mut config = old.config.clone();
    config.models.recognizer = RecognizerKind::Mobilefacenet;
    let new = TestApp::start(config.clone()).await;
    assert_eq!(new.identify(lfw("Bob_Graham_0005")).await[0].0, "bob");
    assert_eq!(new.identify(lfw("Arminio_Fraga_0006")).await[0].0, "arminio");
    let verified = new.verify(bill, "Bill_Nelson_0002").await;
    assert_eq!((verified["match"].clone(), verified["model"].clone()), (json!(true), json!("mobilefacenet")));
    assert_eq!(
        old.identify(lfw("Arminio_Fraga_0006")).await[0].0,
        "arminio",
        "the SFace replica still serves"
    );

    // Pruning waits for every face to have its twin; the two without are deleted by hand (any
    // replica may delete a face, whatever recognizer made it).
    let refused = reembed::prune(&old.config, RecognizerKind::Mobilefacenet, false, 2, &Quiet).await;
    let message = format!("{:#}", refused.expect_err("two faces have no twin"));
    assert!(message.contains("2 templates") && message.contains("--force"), "{message}");
    for (subject, face) in [(carl, carl_face), (dana, dana_face)] {
        let path = format!("/v1/subjects/{subject}/faces/{face}");
        expect(new.delete(&path, &new.admin).await, StatusCode::NO_CONTENT).await;
    }
    assert_eq!(stored_images(&old).len(), 6, "3 SFace faces and their 3 twins");
    let pruned = reembed::prune(&old.config, RecognizerKind::Mobilefacenet, false, 2, &Quiet).await.unwrap();
    assert_eq!((pruned.deleted, pruned.kept_image_not_deleted), (3, 0), "{pruned:?}");
    assert_eq!((pruned.status.current, pruned.status.twinned, pruned.status.untwinned), (3, 0, 0));
    let mut twins = Vec::new();
    for subject in [bob, bill, arminio] {
        let templates = old.state.store.list_templates(subject).await.unwrap();
        assert_eq!(templates.len(), 1);
        assert_eq!((templates[0].model.as_str(), templates[0].source_template_id), ("mobilefacenet", None));
        twins.push(format!("{}.img", templates[0].id));
    }
    twins.sort();
    assert_eq!(stored_images(&old), twins, "only the twins' images are left");

    // After a restart the MobileFaceNet service loads the same gallery; SFace no longer starts.
    let restarted = TestApp::start(config).await;
    assert_eq!(restarted.identify(lfw("Bob_Graham_0005")).await[0].0, "bob");
    let mut sface = old.config.clone();
    sface.server.listen = "127.0.0.1:0".into();
    let err = Application::build(sface).await.err().expect("no template of SFace is left");
    assert!(format!("{err:#}").contains("visage reembed --to sface"), "{err:#}");
    let audit = restarted.audit_actions().await;
    let actions: Vec<&str> = audit.iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"model.reembed") && actions.contains(&"model.prune"), "{actions:?}");

    // And back: SFace twins of the MobileFaceNet faces, their images embedded together (SFace
    // takes batches on OpenVINO); an SFace replica identifies the subjects again.
    let summary = reembed::reembed(&old.config, RecognizerKind::Sface, 8, &Quiet).await.unwrap();
    assert_eq!((summary.done, summary.skipped_total(), summary.failed_total()), (3, 0, 0), "{summary:?}");
    let back = TestApp::start(old.config.clone()).await;
    assert_eq!(back.identify(lfw("Bob_Graham_0005")).await[0].0, "bob");
    assert_eq!(back.identify(lfw("Arminio_Fraga_0006")).await[0].0, "arminio");
    assert_eq!(back.verify(bill, "Bill_Nelson_0002").await["match"], true);
}
