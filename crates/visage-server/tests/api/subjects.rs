//! Subjects, erasure, and what survives a restart.

use super::*;

#[tokio::test]
async fn erasure_removes_everything_and_a_later_verify_says_subject_not_found() {
    let mut app = TestApp::spawn_with(|c| c.storage.store_images = true).await;
    let bob = app.enrol("bob-erase-me", "Bob_Graham_0001").await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    expect(app.post_form(&format!("/v1/subjects/{bob}/faces"), &app.admin, form).await, StatusCode::CREATED)
        .await;
    app.verify(bob, "Bob_Graham_0005").await;
    let images = app.config.storage.data_dir.join("images");
    assert_eq!(std::fs::read_dir(&images).unwrap().count(), 2, "images are kept when configured");
    // Kept images are sealed like templates: unreadable on disk, exact after opening.
    let originals = [lfw("Bob_Graham_0001"), lfw("Bob_Graham_0005")];
    for template in app.state.store.list_templates(bob).await.unwrap() {
        let reference = template.image_ref.as_deref().expect("an image reference");
        let on_disk = std::fs::read(images.join(reference)).unwrap();
        assert!(
            originals.iter().all(|o| !on_disk.windows(64).any(|w| w == &o[..64])),
            "image stored in the clear"
        );
        let opened =
            visage_server::service::images::load(&app.state, template.id, bob, reference).await.unwrap();
        assert!(originals.contains(&*opened), "the sealed image opens to the uploaded bytes");
    }

    expect(app.delete(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::NO_CONTENT).await;

    expect_error(
        app.get(&format!("/v1/subjects/{bob}"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
    expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    assert_eq!(app.identify(lfw("Bob_Graham_0005")).await, vec![]);
    assert_eq!(std::fs::read_dir(&images).unwrap().count(), 0, "stored images are deleted");
    expect_error(
        app.delete(&format!("/v1/subjects/{bob}"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    assert!(app.state.store.list_templates(bob).await.unwrap().is_empty());

    let audit = app.audit_actions().await;
    let erase = audit.iter().find(|e| e["action"] == "subject.erase").expect("the erasure is audited");
    assert_eq!(erase["detail"]["templates"], 2);
    assert_eq!(erase["subject_id"], bob.to_string());
    // Earlier events no longer point at the erased subject.
    assert!(
        audit.iter().filter(|e| e["action"] != "subject.erase").all(|e| e["subject_id"] != bob.to_string())
    );

    // Nothing of the subject survives in the database.
    app.shut_down().await;
    let stored = app.stored_bytes().await;
    assert!(!stored.is_empty());
    assert!(!stored.windows(12).any(|w| w == b"bob-erase-me"), "the database still holds the external id");
}

#[tokio::test]
async fn restart_keeps_all_subjects_and_templates_on_disk_are_not_floats() {
    let mut app = spawn_app().await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let probe = lfw("Bob_Graham_0001");
    let embedding = app
        .state
        .pool
        .run(move |p| p.probe(&probe, Pick::OnlyGoodFace, false).map(|p| p.face.embedding))
        .await
        .unwrap()
        .unwrap();
    app.shut_down().await;

    let disk = app.stored_bytes().await;
    assert!(!disk.is_empty());
    for pair in embedding.as_slice().chunks_exact(2) {
        let bytes: Vec<u8> = pair.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(!disk.windows(8).any(|w| w == bytes.as_slice()), "a template value is readable on disk");
    }

    let restarted = TestApp::start(app.config.clone()).await;
    let subject =
        expect(restarted.get(&format!("/v1/subjects/{bob}"), &restarted.admin).await, StatusCode::OK).await;
    assert_eq!(subject["face_count"], 1);
    assert_eq!(restarted.verify(bob, "Bob_Graham_0005").await["match"], true);
    assert_eq!(restarted.identify(lfw("Bob_Graham_0005")).await[0].0, "bob");

    // Without the key the templates cannot be opened, and the service says so.
    let mut wrong_key = app.config.clone();
    wrong_key.encryption.key = Some(Secret::new(TemplateKey::generate_base64().as_str()));
    wrong_key.server.listen = "127.0.0.1:0".into();
    let mut restarted = restarted;
    restarted.shut_down().await;
    let err = Application::build(wrong_key).await.err().expect("an unknown key is refused");
    assert!(format!("{err:#}").contains("not configured"), "{err:#}");
}

#[tokio::test]
async fn enrolment_advises_another_photo_until_two_frontal_faces_are_enrolled() {
    let app = spawn_app().await;
    let bob = app.create_subject("bob").await;
    let enrol = |image: &'static str| {
        let app = &app;
        async move {
            let form = Form::new().part("image", jpeg(lfw(image)));
            expect(
                app.post_form(&format!("/v1/subjects/{bob}/faces"), &app.admin, form).await,
                StatusCode::CREATED,
            )
            .await
        }
    };
    let first = enrol("Bob_Graham_0001").await;
    assert_eq!(first["faces"].as_array().unwrap().len(), 1);
    assert_eq!(first["advice"][0]["code"], "add_another_photo", "{first}");
    assert!(first["advice"][0]["message"].as_str().unwrap().contains("frontal"));
    let second = enrol("Bob_Graham_0005").await;
    assert_eq!(second["advice"], json!([]), "two frontal faces: {second}");
}

#[tokio::test]
async fn subject_metadata_must_be_a_json_object() {
    let app = spawn_app().await;
    let consent = json!({ "given_by": "the subject", "purpose": "tests" });
    for metadata in [json!(true), json!(3), json!("text"), json!([1, 2])] {
        let body = json!({ "external_id": "bob", "consent": consent, "metadata": metadata });
        expect_error(
            app.post_json("/v1/subjects", &app.admin, body).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }
    let body = json!({ "external_id": "bob", "consent": consent, "metadata": { "badge": 7 } });
    let created = expect(app.post_json("/v1/subjects", &app.admin, body).await, StatusCode::CREATED).await;
    assert_eq!(created["metadata"], json!({ "badge": 7 }));
}
