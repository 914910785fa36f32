//! 1:1 verification and 1:N identification on real faces.

use super::*;

#[tokio::test]
async fn verify_matches_the_same_person_and_rejects_a_different_one() {
    let app = spawn_app().await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let same = app.verify(bob, "Bob_Graham_0005").await;
    assert_eq!(same["match"], true, "{same}");
    // The threshold the service calibrated for FAR 0.1%: models/calibration.json when a
    // calibration run wrote one, else the built-in operating point.
    let calibrated = visage_server::calibration::Calibration::load(
        &repo().join("models"),
        visage_face::RecognizerKind::Sface,
        app.state.numerics,
        visage_face::LivenessKind::default(),
    )
    .unwrap()
    .point(1e-3)
    .unwrap()
    .threshold;
    assert!((same["threshold"].as_f64().unwrap() - f64::from(calibrated)).abs() < 1e-6, "{same}");
    assert_eq!(same["far_target"], 0.001);
    assert_eq!(same["model"], "sface");
    assert!(same["verification_id"].as_str().unwrap().parse::<Uuid>().is_ok());
    // Development profile: liveness is reported on verify.
    assert_eq!(same["liveness"]["result"], "pass");
    let other = app.verify(bob, "Elton_John_0001").await;
    assert_eq!(other["match"], false, "{other}");
    assert!(other["similarity"].as_f64().unwrap() < f64::from(calibrated));

    // Two images, as base64 JSON.
    use base64::Engine as _;
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(b);
    let pair = json!({ "image": b64(lfw("Bill_Nelson_0001")), "reference_image": b64(lfw("Bill_Nelson_0002")), "liveness": "off" });
    let body = expect(app.post_json("/v1/verify", &app.admin, pair).await, StatusCode::OK).await;
    assert_eq!(body["match"], true, "{body}");
    assert!(body.get("liveness").is_none());
    let pair =
        json!({ "image": b64(lfw("Bill_Nelson_0001")), "reference_image": b64(lfw("Donald_Keck_0001")) });
    let body = expect(app.post_json("/v1/verify", &app.admin, pair).await, StatusCode::OK).await;
    assert_eq!(body["match"], false, "{body}");
}

#[tokio::test]
async fn identify_finds_the_right_subject_among_several_and_nobody_for_a_stranger() {
    let app = spawn_app().await;
    for (name, image) in [
        ("bob", "Bob_Graham_0001"),
        ("bill", "Bill_Nelson_0001"),
        ("elton", "Elton_John_0001"),
        ("arminio", "Arminio_Fraga_0002"),
    ] {
        app.enrol(name, image).await;
    }
    for (probe, expected) in [
        ("Bob_Graham_0005", "bob"),
        ("Bill_Nelson_0002", "bill"),
        ("Elton_John_0007", "elton"),
        ("Arminio_Fraga_0006", "arminio"),
    ] {
        let candidates = app.identify(lfw(probe)).await;
        assert_eq!(candidates.first().map(|c| c.0.as_str()), Some(expected), "{probe}: {candidates:?}");
    }
    for stranger in ["Patty_Schnyder_0003", "John_Lynch_0001", "Martha_Bowen_0001"] {
        assert_eq!(app.identify(lfw(stranger)).await, vec![], "{stranger}");
    }
    // Collections are separate galleries.
    expect(
        app.post_json("/v1/collections", &app.admin, json!({ "id": "visitors" })).await,
        StatusCode::CREATED,
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("collection", "visitors");
    let body = expect(app.post_form("/v1/identify", &app.admin, form).await, StatusCode::OK).await;
    assert_eq!(body["candidates"], json!([]));
    let listed = expect(app.get("/v1/collections", &app.admin).await, StatusCode::OK).await;
    assert_eq!(listed["collections"][0]["id"], "default");
    assert_eq!(listed["collections"][0]["templates"], 4);
}

/// Three people side by side in one photo.
fn group_photo(people: &[&str]) -> Vec<u8> {
    let portraits: Vec<image::RgbImage> =
        people.iter().map(|p| image::load_from_memory(&lfw(p)).unwrap().to_rgb8()).collect();
    let (width, height) = (portraits.iter().map(|p| p.width()).sum(), portraits[0].height());
    let mut group = image::RgbImage::new(width, height);
    let mut x = 0;
    for portrait in &portraits {
        image::imageops::replace(&mut group, portrait, i64::from(x), 0);
        x += portrait.width();
    }
    png(&group)
}

#[tokio::test]
async fn identify_with_faces_all_names_every_enrolled_face_of_a_group_photo_and_boxes_the_rest() {
    let app = spawn_app().await;
    app.enrol("bob", "Bob_Graham_0001").await;
    app.enrol("elton", "Elton_John_0001").await;
    let photo = group_photo(&["Bob_Graham_0005", "Martha_Bowen_0001", "Elton_John_0007"]);
    let form = Form::new()
        .part("image", Part::bytes(photo).file_name("group.png").mime_str("image/png").unwrap())
        .text("faces", "all");
    let body = expect(app.post_form("/v1/identify", &app.admin, form).await, StatusCode::OK).await;
    assert_eq!(body["width"], 750, "{body}");
    let faces = body["faces"].as_array().unwrap();
    // The three portraits, each in its own third of the photo (LFW crops can hold a bystander).
    let named_in = |third: f64| {
        faces
            .iter()
            .filter(|f| {
                let centre = f["face"]["box"]["x"].as_f64().unwrap()
                    + f["face"]["box"]["width"].as_f64().unwrap() / 2.0;
                (centre / 250.0).floor() == third && f["searched"] == true
            })
            .map(|f| {
                f["candidates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["external_id"].clone())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(named_in(0.0), [vec![json!("bob")]], "{body}");
    assert_eq!(named_in(1.0), [Vec::<Value>::new()], "a stranger is nobody: {body}");
    assert_eq!(named_in(2.0), [vec![json!("elton")]], "{body}");
    // Every searched face is a decision of its own, ready for feedback.
    let decisions: Vec<&str> = faces
        .iter()
        .filter(|f| f["searched"] == true)
        .map(|f| f["verification_id"].as_str().expect("a searched face has a decision"))
        .collect();
    assert!(decisions.len() >= 3, "{body}");
    let feedback = json!({ "truth": "genuine", "source": "test" });
    let labelled =
        app.post_json(&format!("/v1/verifications/{}/feedback", decisions[0]), &app.admin, feedback).await;
    expect(labelled, StatusCode::OK).await;
    // The default is still the one face the selection rule picks.
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    let one = expect(app.post_form("/v1/identify", &app.admin, form).await, StatusCode::OK).await;
    assert!(one.get("faces").is_none() && one["candidates"][0]["external_id"] == "bob", "{one}");
}
