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
    let embedding = app.probe_alone(lfw("Bob_Graham_0001")).await.unwrap().face.embedding;
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

/// The images of one request are embedded in batches where the recognizer takes them (on
/// OpenVINO, 8 images make batches of 4): each result is what the image gives alone, and a
/// refusal stays in its place. bf16 batches may take other kernels: cosine >= 0.999, as
/// visage-face's batch test allows.
#[tokio::test]
async fn a_batch_of_probes_gives_what_each_image_gives_alone() {
    let app = spawn_app().await;
    if app.state.numerics.backend == visage_face::BackendKind::OpenVino {
        assert!(app.state.pool.batch_size() > 1, "SFace on OpenVINO takes batches");
    }
    let mut images: Vec<Vec<u8>> =
        ["Bob_Graham_0001", "Bill_Nelson_0001", "Elton_John_0001", "Arminio_Fraga_0002", "Donald_Keck_0001"]
            .into_iter()
            .map(lfw)
            .collect();
    images.insert(1, png(&image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]))));
    images.insert(3, lfw("John_Taylor_0001"));
    images.insert(6, b"not an image".to_vec());
    let batch = images.clone();
    let together = app
        .state
        .pool
        .run(move |p| {
            p.probe_many(&batch.iter().map(Vec::as_slice).collect::<Vec<_>>(), Pick::OnlyGoodFace, false)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(together.len(), images.len());
    let mut refused = Vec::new();
    for (index, (image, together)) in images.into_iter().zip(together).enumerate() {
        let alone = app.probe_alone(image).await;
        match (alone, together) {
            (Ok(alone), Ok(together)) => {
                assert_eq!(alone.face.detection, together.face.detection, "image {index}");
                assert_eq!(alone.face.quality.issues, together.face.quality.issues, "image {index}");
                let cosine = alone.face.embedding.cosine(&together.face.embedding);
                assert!(cosine >= 0.999, "image {index}: cosine {cosine}");
            }
            (Err(alone), Err(together)) => {
                assert_eq!(alone.code(), together.code(), "image {index}");
                refused.push((index, together.code().as_str()));
            }
            (alone, together) => {
                panic!("image {index}: alone {:?}, in a batch {:?}", alone.err(), together.err())
            }
        }
    }
    assert_eq!(refused, [(1, "no_face_detected"), (3, "multiple_faces"), (6, "unsupported_media_type")]);
}

/// Six images in one enrolment: six templates, each the embedding of its image alone, each
/// with its own image.
#[tokio::test]
async fn an_enrolment_of_several_images_stores_each_as_enrolled_alone() {
    use base64::Engine as _;
    let app = TestApp::spawn_with(|c| c.storage.store_images = true).await;
    let bob = app.create_subject("bob").await;
    let names = [
        "Bob_Graham_0001",
        "Bob_Graham_0005",
        "Bill_Nelson_0001",
        "Bill_Nelson_0002",
        "Elton_John_0001",
        "Elton_John_0007",
    ];
    let b64 = |name: &&str| base64::engine::general_purpose::STANDARD.encode(lfw(name));
    let body = json!({ "images": names.iter().map(b64).collect::<Vec<_>>() });
    let enrolled = expect(
        app.post_json(&format!("/v1/subjects/{bob}/faces"), &app.admin, body).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(enrolled["faces"].as_array().unwrap().len(), 6, "{enrolled}");
    let templates = app.state.store.list_templates(bob).await.unwrap();
    assert_eq!(templates.len(), 6);
    for name in names {
        let alone = app.probe_alone(lfw(name)).await.unwrap().face.embedding;
        let template = templates
            .iter()
            .find(|t| {
                let stored = app.state.keys.open(t.id, bob, &t.sealed).unwrap();
                let stored = visage_face::Embedding::parse(stored).unwrap();
                stored.cosine(&alone) >= 0.999
            })
            .unwrap_or_else(|| panic!("no template of {name}"));
        let reference = template.image_ref.as_deref().unwrap();
        let kept =
            visage_server::service::images::load(&app.state, template.id, bob, reference).await.unwrap();
        assert_eq!(*kept, lfw(name), "{name}: its own image");
    }
    assert_eq!(app.verify(bob, "Bob_Graham_0005").await["match"], true);
}
