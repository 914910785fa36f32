//! Bad input and every refusal get a named error; nothing stored is lost.

use super::*;

#[tokio::test]
async fn bad_images_get_named_errors_and_nothing_stored_is_lost() {
    let app = TestApp::spawn_with(|c| c.limits.max_pixels = 1_000_000).await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let path = format!("/v1/subjects/{bob}/faces");
    let post =
        |bytes: Vec<u8>, content_type: &'static str| app.post_image(&path, &app.admin, bytes, content_type);

    let mut truncated = lfw("Bob_Graham_0005");
    truncated.truncate(truncated.len() / 2);
    expect_error(post(truncated, "image/jpeg").await, StatusCode::BAD_REQUEST, "image_decode_failed").await;
    expect_error(
        post(b"not an image at all".to_vec(), "image/jpeg").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    expect_error(
        post(b"hello".to_vec(), "text/plain").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let huge = png(&image::RgbImage::new(2000, 1000));
    expect_error(post(huge, "image/png").await, StatusCode::PAYLOAD_TOO_LARGE, "image_too_large").await;
    let blank = png(&image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128])));
    expect_error(post(blank, "image/png").await, StatusCode::UNPROCESSABLE_ENTITY, "no_face_detected").await;
    let crowd = expect_error(
        post(lfw("John_Taylor_0001"), "image/jpeg").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "multiple_faces",
    )
    .await;
    assert_eq!(crowd["error"]["details"]["faces"], 2);
    // A face too small to enrol: shrink a portrait.
    let small = image::load_from_memory(&lfw("Bob_Graham_0005")).unwrap().resize(
        90,
        90,
        image::imageops::FilterType::Triangle,
    );
    let low = expect_error(
        post(png(&small.to_rgb8()), "image/png").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "low_quality",
    )
    .await;
    assert!(
        low["error"]["details"]["reasons"].as_array().unwrap().contains(&json!("face_too_small")),
        "{low}"
    );
    // A batch is all or nothing, and names the image refused.
    let refused_image = async |images: [Vec<u8>; 2], code: &str| {
        use base64::Engine as _;
        let b64 = |b: &Vec<u8>| base64::engine::general_purpose::STANDARD.encode(b);
        let batch = json!({ "images": images.iter().map(b64).collect::<Vec<_>>() });
        let failed = expect_error(
            app.post_json(&path, &app.admin, batch).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
        failed["error"]["details"]["image_index"].clone()
    };
    let no_face = || png(&image::RgbImage::new(200, 200));
    // The second image has no face.
    assert_eq!(refused_image([lfw("Bob_Graham_0005"), no_face()], "no_face_detected").await, 1);
    // The images are analysed together, yet the first refused in order answers.
    assert_eq!(refused_image([png(&small.to_rgb8()), no_face()], "low_quality").await, 0);
    expect_error(
        app.post_json(&path, &app.admin, json!({ "image": "%%%" })).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect_error(app.post_json(&path, &app.admin, json!({})).await, StatusCode::BAD_REQUEST, "image_missing")
        .await;

    let faces = expect(app.get(&path, &app.admin).await, StatusCode::OK).await;
    assert_eq!(faces["faces"].as_array().unwrap().len(), 1, "the enrolled face survived every refusal");
    let still = app.verify(bob, "Bob_Graham_0005").await;
    assert_eq!(still["match"], true);
}

#[tokio::test]
async fn requests_get_named_errors_for_every_refusal() {
    let app = TestApp::spawn_with(|c| {
        c.limits.max_body_bytes = 2_000_000;
        c.limits.max_image_bytes = 1_000_000;
    })
    .await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let ghost = Uuid::now_v7();

    expect_error(
        app.get(&format!("/v1/subjects/{ghost}"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    expect_error(
        app.delete(&format!("/v1/subjects/{bob}/faces/{ghost}"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "face_not_found",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("collection", "nowhere");
    expect_error(
        app.post_form("/v1/identify", &app.admin, form).await,
        StatusCode::NOT_FOUND,
        "collection_not_found",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("collection", "Not Valid");
    expect_error(
        app.post_form("/v1/identify", &app.admin, form).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect_error(
        app.post_json(
            "/v1/subjects",
            &app.admin,
            json!({ "external_id": "bob", "consent": { "given_by": "b", "purpose": "p" } }),
        )
        .await,
        StatusCode::CONFLICT,
        "subject_exists",
    )
    .await;
    expect_error(
        app.post_json("/v1/collections", &app.admin, json!({ "id": "default" })).await,
        StatusCode::CONFLICT,
        "collection_exists",
    )
    .await;
    expect_error(
        app.post_json("/v1/subjects", &app.admin, json!({ "external_id": "carol" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "consent_required",
    )
    .await;
    let empty = app.create_subject("no-faces").await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", empty.to_string());
    expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::CONFLICT,
        "subject_has_no_faces",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let form = Form::new()
        .part("image", jpeg(lfw("Bob_Graham_0005")))
        .text("subject_id", bob.to_string())
        .text("far_target", "0.5");
    expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect_error(
        app.post_json("/v1/verify", &app.admin, json!({ "subject_id": bob })).await,
        StatusCode::BAD_REQUEST,
        "image_missing",
    )
    .await;
    let big = vec![0u8; 3_000_000];
    expect_error(
        app.post_image("/v1/detect", &app.admin, big, "image/jpeg").await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    expect_error(app.get("/v1/nothing-here", &app.admin).await, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(
        app.get("/v1/verify", &app.admin).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let response = app
        .client
        .post(app.url("/v1/subjects"))
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;

    // Templates made by another recognizer are not compared: verification uses the templates of
    // the running one, and a subject with none of those gets model_mismatch.
    let other_model = |subject_id: Uuid| {
        let id = Uuid::now_v7();
        let sealed: SealedTemplate = app.state.keys.seal(id, subject_id, &[0.1; 192]);
        Template {
            id,
            subject_id,
            model: "mobilefacenet".into(),
            sealed,
            quality: json!({}),
            image_ref: None,
            created_at: Utc::now(),
            source_template_id: None,
        }
    };
    app.state.store.add_templates(&[other_model(bob)]).await.unwrap();
    assert_eq!(app.verify(bob, "Bob_Graham_0005").await["match"], true);
    let listed =
        expect(app.get(&format!("/v1/subjects/{bob}/faces"), &app.admin).await, StatusCode::OK).await;
    assert_eq!(listed["faces"].as_array().unwrap().len(), 1, "faces of the running recognizer: {listed}");
    assert_eq!(listed["faces"][0]["model"], "sface");
    let carl = app.create_subject("carl").await;
    app.state.store.add_templates(&[other_model(carl)]).await.unwrap();
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", carl.to_string());
    expect_error(app.post_form("/v1/verify", &app.admin, form).await, StatusCode::CONFLICT, "model_mismatch")
        .await;
}
