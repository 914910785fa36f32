//! Subject access: `GET /v1/subjects/{id}/export` gives everything held about one subject as a
//! ZIP (the subject and consent records, its faces with quality and recognizer, the stored
//! photos, the decisions that named it, the audit events about it), never another subject's
//! data or a template; admin only, audited.

use std::io::Read;

use super::*;

pub(crate) fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            (file.name().unwrap().into_owned(), content)
        })
        .collect()
}

#[tokio::test]
async fn a_subject_export_holds_everything_about_the_subject_and_nothing_else() {
    let app = TestApp::spawn_with(|c| c.storage.store_images = true).await;
    let bob = app.enrol("bob-graham-4411", "Bob_Graham_0001").await;
    let bill = app.enrol("bill-nelson-8812", "Bill_Nelson_0001").await;
    let decision = app.verify(bob, "Bob_Graham_0005").await;
    app.verify(bill, "Bill_Nelson_0002").await;
    let id = decision["verification_id"].as_str().unwrap();
    app.label(id, "genuine").await;

    let response = app.get(&format!("/v1/subjects/{bob}/export"), &app.admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/zip");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(
        response.headers()["content-disposition"].to_str().unwrap().contains(&format!("subject-{bob}.zip"))
    );
    let files = unzip(&response.bytes().await.unwrap());
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in ["README.txt", "subject.json", "faces.json", "decisions.json", "audit.json"] {
        assert!(files.contains_key(name), "{name} missing: {names:?}");
    }
    let json = |name: &str| serde_json::from_slice::<Value>(&files[name]).unwrap();
    let subject = json("subject.json");
    assert_eq!(
        (subject["id"].clone(), subject["external_id"].clone()),
        (json!(bob), json!("bob-graham-4411"))
    );
    assert_eq!(subject["consent"]["given_by"], "the subject");
    let faces = json("faces.json");
    assert_eq!(faces.as_array().unwrap().len(), 1);
    assert_eq!(
        (faces[0]["recognizer"].as_str(), faces[0]["image_stored"].as_bool()),
        (Some("sface"), Some(true))
    );
    assert!(faces[0]["quality"].is_object());
    let face_id = faces[0]["template_id"].as_str().unwrap();
    assert_eq!(files[&format!("images/{face_id}.jpg")], lfw("Bob_Graham_0001"), "the stored photo, opened");
    let decisions = json("decisions.json");
    assert_eq!(decisions.as_array().unwrap().len(), 1, "only the decision about bob: {decisions}");
    assert_eq!((decisions[0]["id"].as_str(), decisions[0]["label"].as_str()), (Some(id), Some("genuine")));
    let audit = json("audit.json");
    let actions: Vec<&str> =
        audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"subject.create") && actions.contains(&"face.enrol") && actions.contains(&"verify"),
        "{actions:?}"
    );
    let everything: Vec<u8> = files.values().flatten().copied().collect();
    let text = String::from_utf8_lossy(&everything);
    assert!(
        !text.contains("bill-nelson") && !text.contains(&bill.to_string()),
        "nothing about another subject"
    );

    // Audited; admin only; a subject the key cannot see is not found.
    let audited = app.audit_actions().await;
    assert!(
        audited.iter().any(|e| e["action"] == "subject.export" && e["subject_id"] == json!(bob)),
        "{audited:?}"
    );
    let enroller = app.key(Role::Enrol, CollectionScope::All).await;
    expect_error(
        app.get(&format!("/v1/subjects/{bob}/export"), &enroller).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let ghost = Uuid::now_v7();
    expect_error(
        app.get(&format!("/v1/subjects/{ghost}/export"), &app.admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    expect(app.post_json("/v1/collections", &app.admin, json!({ "id": "staff" })).await, StatusCode::CREATED)
        .await;
    let staff_admin =
        app.key(Role::Admin, CollectionScope::Only(vec![CollectionId::parse("staff").unwrap()])).await;
    expect_error(
        app.get(&format!("/v1/subjects/{bob}/export"), &staff_admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
}
