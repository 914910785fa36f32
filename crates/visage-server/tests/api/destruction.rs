//! Every destruction of personal data leaves a record (Roskomnadzor order No. 179): a face
//! deletion and an erasure, listed to an admin of every collection, with the categories and
//! counts, the ground, the method, the date and the key that asked, and no personal data; and
//! exported as the command exports them.

use visage_server::jobs::destruction::{Format, export};

use super::*;

async fn enrol_face(app: &TestApp, subject: Uuid, image: &str) -> Uuid {
    let form = Form::new().part("image", jpeg(lfw(image)));
    let body = expect(
        app.post_form(&format!("/v1/subjects/{subject}/faces"), &app.admin, form).await,
        StatusCode::CREATED,
    )
    .await;
    body["faces"][0]["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn erasures_and_face_deletions_leave_destruction_records_without_personal_data() {
    let app = TestApp::spawn_with(|c| c.storage.store_images = true).await;
    let admin_id = expect(app.get("/v1/keys/me", &app.admin).await, StatusCode::OK).await["id"].clone();
    let bob = app.create_subject("bob-graham-4411").await;
    let first = enrol_face(&app, bob, "Bob_Graham_0001").await;
    enrol_face(&app, bob, "Bob_Graham_0005").await;
    app.verify(bob, "Bob_Graham_0005").await;
    let started = Utc::now();
    expect(
        app.delete(&format!("/v1/subjects/{bob}/faces/{first}"), &app.admin).await,
        StatusCode::NO_CONTENT,
    )
    .await;
    expect(app.delete(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::NO_CONTENT).await;

    let page = expect(app.get("/v1/destruction-records", &app.admin).await, StatusCode::OK).await;
    let records = page["items"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{page}");
    let (face, erasure) = (&records[0], &records[1]);
    assert_eq!(
        (face["ground"].as_str(), erasure["ground"].as_str()),
        (Some("face_deletion"), Some("erasure_request"))
    );
    for record in records {
        assert_eq!(record["subject_id"], json!(bob));
        assert_eq!(record["collection"], "default");
        assert_eq!(record["performed_by"], admin_id);
        assert!(record["external_id"].is_null(), "kept only when configured: {record}");
        assert!(record["method"].as_str().unwrap().contains("deleted"));
        let at: chrono::DateTime<Utc> = record["destroyed_at"].as_str().unwrap().parse().unwrap();
        assert!(at >= started - chrono::Duration::seconds(1), "{record}");
    }
    assert_eq!(
        face["categories"],
        json!([{ "category": "biometric_templates", "items": 1 }, { "category": "enrolment_images", "items": 1 }])
    );
    assert_eq!(
        erasure["categories"],
        json!([
            { "category": "biometric_templates", "items": 1 },
            { "category": "enrolment_images", "items": 1 },
            { "category": "subject_record", "items": 1 }
        ])
    );
    assert!(!page.to_string().contains("bob-graham"), "no external id, no name: {page}");

    // Date range and paging.
    let later =
        (Utc::now() + chrono::Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let none =
        expect(app.get(&format!("/v1/destruction-records?from={later}"), &app.admin).await, StatusCode::OK)
            .await;
    assert_eq!(none["items"], json!([]));
    let one = expect(app.get("/v1/destruction-records?limit=1", &app.admin).await, StatusCode::OK).await;
    assert_eq!((one["items"].as_array().unwrap().len(), one["next_offset"].as_u64()), (1, Some(1)));
    expect_error(
        app.get("/v1/destruction-records?limit=0", &app.admin).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    // Admins of every collection only: the records span collections.
    let scoped =
        app.key(Role::Admin, CollectionScope::Only(vec![CollectionId::parse("default").unwrap()])).await;
    expect_error(app.get("/v1/destruction-records", &scoped).await, StatusCode::FORBIDDEN, "forbidden").await;
    let enroller = app.key(Role::Enrol, CollectionScope::All).await;
    expect_error(app.get("/v1/destruction-records", &enroller).await, StatusCode::FORBIDDEN, "forbidden")
        .await;

    // `visage destruction-records export`, as the command calls it.
    let mut csv = Vec::new();
    assert_eq!(export(&app.config, None, None, Format::Csv, &mut csv).await.unwrap(), 2);
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,destroyed_at,subject_id,collection,external_id,ground,categories,method,performed_by"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[2].contains(",erasure_request,biometric_templates=1;enrolment_images=1;subject_record=1,"),
        "{csv}"
    );
    let mut json_out = Vec::new();
    export(&app.config, Some(started - chrono::Duration::seconds(1)), None, Format::Json, &mut json_out)
        .await
        .unwrap();
    let exported: Vec<Value> = serde_json::from_slice(&json_out).unwrap();
    assert_eq!(exported.len(), 2);
    assert_eq!(exported[1]["id"], records[1]["id"]);
    let mut empty = Vec::new();
    assert_eq!(
        export(&app.config, Some(Utc::now() + chrono::Duration::hours(1)), None, Format::Json, &mut empty)
            .await
            .unwrap(),
        0
    );
    assert_eq!(serde_json::from_slice::<Vec<Value>>(&empty).unwrap(), Vec::<Value>::new());
}

#[tokio::test]
async fn a_deployment_may_keep_the_external_id_in_its_destruction_records() {
    let app = TestApp::spawn_with(|c| c.retention.destruction_records_keep_external_id = true).await;
    let bob = app.enrol("bob-graham-4411", "Bob_Graham_0001").await;
    expect(app.delete(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::NO_CONTENT).await;
    let page = expect(app.get("/v1/destruction-records", &app.admin).await, StatusCode::OK).await;
    assert_eq!(page["items"][0]["external_id"], "bob-graham-4411");
}
