//! A collection earns thresholds of its own from its labelled decisions (`visage calibrate
//! --from-feedback`, called as the command calls it): refused while it has too few labels, kept
//! in the database once it has enough, picked up by the running replica, used for that
//! collection's decisions at the FAR targets it resolves, and named by every decision.

use visage_calibration::{Calibration, CalibrationFile};
use visage_face::RecognizerKind;
use visage_server::jobs::calibration::{FromFeedback, from_feedback, reset};

use super::*;

/// The repository's models, with a deployment-wide calibration that offers FAR 0.1% (the
/// built-in threshold) and FAR 10%, a target a few dozen labels can resolve, in f32 (the
/// name-only key of older files) and in openvino bf16, whichever the service runs.
fn models_with_two_targets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("models")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != visage_calibration::FILE_NAME {
            std::os::unix::fs::symlink(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let built_in = RecognizerKind::Sface.default_threshold();
    let file = json!({
        "version": 1,
        "recognizers": {
            "sface": { "dataset": "test", "points": [
                { "far": 0.001, "threshold": built_in }, { "far": 0.1, "threshold": 0.15 }
            ] },
            "sface/openvino/bf16": { "dataset": "test", "backend": "openvino", "precision": "bf16", "points": [
                { "far": 0.001, "threshold": built_in }, { "far": 0.1, "threshold": 0.15 }
            ] }
        },
        "liveness": null
    });
    std::fs::write(dir.path().join(visage_calibration::FILE_NAME), file.to_string()).unwrap();
    dir
}

async fn subject_in(app: &TestApp, collection: &str, external_id: &str, image: &str) -> Uuid {
    let body = json!({ "external_id": external_id, "collection": collection,
                       "consent": { "given_by": "the subject", "purpose": "tests" } });
    let created = expect(app.post_json("/v1/subjects", &app.admin, body).await, StatusCode::CREATED).await;
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let form = Form::new().part("image", jpeg(lfw(image)));
    expect(app.post_form(&format!("/v1/subjects/{id}/faces"), &app.admin, form).await, StatusCode::CREATED)
        .await;
    id
}

async fn verify_at(app: &TestApp, subject: Uuid, image: &str, far_target: Option<&str>) -> Value {
    let mut form = Form::new().part("image", jpeg(lfw(image))).text("subject_id", subject.to_string());
    if let Some(far) = far_target {
        form = form.text("far_target", far.to_owned());
    }
    expect(app.post_form("/v1/verify", &app.admin, form).await, StatusCode::OK).await
}

#[tokio::test]
async fn a_collection_calibrated_from_its_labelled_decisions_uses_its_own_thresholds() {
    let models = models_with_two_targets();
    let app = TestApp::spawn_with(|c| {
        c.models.dir = models.path().to_path_buf();
        c.index.poll_interval_ms = 100;
    })
    .await;
    let global = Calibration::load(
        models.path(),
        RecognizerKind::Sface,
        app.state.numerics,
        app.config.liveness.model,
    )
    .unwrap();
    expect(app.post_json("/v1/collections", &app.admin, json!({ "id": "door" })).await, StatusCode::CREATED)
        .await;
    let enrolled = [
        ("Arminio_Fraga_0002", "Arminio_Fraga_0006"),
        ("Bill_Nelson_0001", "Bill_Nelson_0002"),
        ("Bob_Graham_0001", "Bob_Graham_0005"),
        ("Elton_John_0001", "Elton_John_0007"),
    ];
    let mut subjects = Vec::new();
    for (i, (enrolment, _)) in enrolled.iter().enumerate() {
        subjects.push(subject_in(&app, "door", &format!("person-{i}"), enrolment).await);
    }
    let strangers = [
        "Anastasia_Kelesidou_0001",
        "Anjum_Hussain_0001",
        "Arianna_Huffington_0002",
        "Barbara_Walters_0001",
        "Basdeo_Panday_0001",
        "Binyamin_Ben-Eliezer_0005",
        "Christopher_Matero_0001",
        "Donald_Keck_0001",
        "Harriet_Lessy_0001",
        "James_Traficant_0001",
        "Jerry_Sloan_0001",
        "Joey_Mantia_0001",
        "John_Lynch_0001",
        "John_Taylor_0001",
        "Leonid_Kuchma_0002",
        "Marcelo_Rios_0004",
        "Martha_Bowen_0001",
        "Michael_Sullivan_0002",
        "Patty_Schnyder_0003",
        "Thomas_Birmingham_0001",
    ];
    // 12 genuine attempts (each person's other photo twice, its enrolment photo once) and 60
    // impostor attempts (every stranger claiming three of the enrolled), all at the
    // deployment's FAR 10% threshold.
    let mut genuine = Vec::new();
    for (subject, (enrolment, other)) in subjects.iter().zip(enrolled) {
        for probe in [other, other, enrolment] {
            genuine.push(verify_at(&app, *subject, probe, Some("0.1")).await);
        }
    }
    let mut impostor = Vec::new();
    for (i, stranger) in strangers.iter().enumerate() {
        for k in 0..3 {
            impostor.push(verify_at(&app, subjects[(i + k) % 4], stranger, Some("0.1")).await);
        }
    }
    for decision in genuine.iter().chain(&impostor) {
        assert_eq!(decision["calibration"], json!(global.source), "{decision}");
        assert_eq!(decision["threshold"].as_f64().unwrap() as f32, 0.15);
    }

    let out = tempfile::tempdir().unwrap();
    let options = |collection: Option<&str>| FromFeedback {
        collection: collection.map(|c| CollectionId::parse(c).unwrap()),
        far_targets: Vec::new(),
        min_genuine: 10,
        out: Some(out.path().to_path_buf()),
        dry_run: false,
    };
    // Too few labels: 12 genuine, 20 impostor; FAR 10% needs 35 impostor labels.
    for decision in &genuine {
        app.label(decision["verification_id"].as_str().unwrap(), "genuine").await;
    }
    for decision in &impostor[..20] {
        app.label(decision["verification_id"].as_str().unwrap(), "impostor").await;
    }
    let refused = from_feedback(&app.config, &options(Some("door"))).await.unwrap_err().to_string();
    assert!(refused.contains("20 impostor labels, at least 35 needed"), "{refused}");
    assert!(refused.contains("FAR 0.001 needs 3838"), "{refused}");
    let refused_all = from_feedback(&app.config, &options(None)).await.unwrap_err().to_string();
    assert!(refused_all.contains("door: 20 impostor labels"), "{refused_all}");
    assert!(app.state.store.collection_calibrations().await.unwrap().is_empty());

    // Enough: 60 impostor labels. FAR 10% is resolved, FAR 0.1% is not (it keeps the global one).
    for decision in &impostor[20..] {
        app.label(decision["verification_id"].as_str().unwrap(), "impostor").await;
    }
    let report = from_feedback(&app.config, &options(None)).await.unwrap();
    assert_eq!(report.collections.len(), 1, "only door has labelled decisions: {report:?}");
    let door = &report.collections[0];
    assert_eq!((door.genuine_labels, door.impostor_labels, door.labels_without_score), (12, 60, 0));
    let name = door.calibration.clone().unwrap();
    assert_eq!(name, format!("feedback:door:{}", Utc::now().format("%Y-%m-%d")));
    assert_eq!(door.points.len(), 1, "{door:?}");
    let own = door.points[0];
    assert_eq!(own.far, 0.1);
    // With 60 impostors the conservative rule allows one false accept at FAR 10% (the upper
    // end of the 95% Wilson interval: 1 of 60 -> 8.9%, 2 of 60 -> 11.4%), so the threshold is
    // the lowest score that leaves at most one impostor at or above it.
    let evidence = own.evidence.unwrap();
    assert_eq!(evidence.impostor_pairs, 60);
    assert!(evidence.false_accepts <= 1 && evidence.far_high_95 <= 0.1, "{evidence:?}");
    let similarity = |d: &Value| d["similarity"].as_f64().unwrap() as f32;
    let mut impostor_scores: Vec<f32> = impostor.iter().map(similarity).collect();
    impostor_scores.sort_by(|a, b| b.total_cmp(a));
    let accepted = impostor_scores.iter().filter(|&&s| s >= own.threshold).count();
    assert_eq!(accepted as u64, evidence.false_accepts);
    assert!(own.threshold > impostor_scores[1], "{own:?} vs {impostor_scores:?}");
    let file: CalibrationFile =
        serde_json::from_str(&std::fs::read_to_string(door.file.as_ref().unwrap()).unwrap()).unwrap();
    let entry = file.entry(RecognizerKind::Sface, app.state.numerics).unwrap();
    assert_eq!(entry.points, door.points);
    assert_eq!(entry.numerics(), app.state.numerics, "the file names the backend and precision that scored");

    // The running replica picks it up on its next poll.
    let mut answer = verify_at(&app, subjects[1], "Bill_Nelson_0002", Some("0.1")).await;
    for _ in 0..100 {
        if answer["calibration"] == json!(name) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = verify_at(&app, subjects[1], "Bill_Nelson_0002", Some("0.1")).await;
    }
    assert_eq!(answer["calibration"], json!(name), "{answer}");
    assert_eq!(answer["threshold"].as_f64().unwrap() as f32, own.threshold);
    assert_eq!(answer["far_target"], 0.1);
    // FAR 0.1% is not the collection's to set yet: the deployment's threshold.
    let strict = verify_at(&app, subjects[1], "Bill_Nelson_0002", None).await;
    assert_eq!(
        (strict["calibration"].clone(), strict["far_target"].clone()),
        (json!(global.source), json!(0.001))
    );
    // 1:N in door uses it too; another collection keeps the global thresholds.
    let form = Form::new()
        .part("image", jpeg(lfw("Bob_Graham_0005")))
        .text("collection", "door")
        .text("far_target", "0.1");
    let identified = expect(app.post_form("/v1/identify", &app.admin, form).await, StatusCode::OK).await;
    assert_eq!(identified["calibration"], json!(name));
    assert_eq!(identified["threshold"].as_f64().unwrap() as f32, own.threshold);
    let elsewhere = app.enrol("elsewhere", "Bob_Graham_0001").await;
    let other = verify_at(&app, elsewhere, "Bob_Graham_0005", Some("0.1")).await;
    assert_eq!(
        (other["calibration"].clone(), other["threshold"].as_f64().unwrap() as f32),
        (json!(global.source), 0.15)
    );

    // Decisions name it; the overview shows which calibration each collection uses; the metric
    // names it; the audit trail has it.
    let decisions =
        expect(app.get("/v1/decisions?collection=door&limit=500", &app.admin).await, StatusCode::OK).await;
    let named: Vec<&Value> =
        decisions["items"].as_array().unwrap().iter().filter(|d| d["calibration"] == json!(name)).collect();
    assert!(named.len() >= 2, "{decisions}");
    let overview = expect(app.get("/v1/overview", &app.admin).await, StatusCode::OK).await;
    let calibration_of = |collection: &str| {
        overview["collections"].as_array().unwrap().iter().find(|c| c["collection"] == collection).unwrap()
            ["calibration"]
            .clone()
    };
    assert_eq!(calibration_of("door"), json!(name));
    assert_eq!(calibration_of("default"), json!(global.source));
    let scraped = scrape(&app).await;
    assert_eq!(
        value(&scraped, "visage_calibration_info", &[("calibration", &name), ("far_target", "0.1")]),
        Some(1.0)
    );
    let audit = app.audit_actions().await;
    assert!(audit.iter().any(|e| e["action"] == "calibration.set"), "{audit:?}");

    // Reset: the collection goes back to the global calibration, and its series goes.
    let door_id = CollectionId::parse("door").unwrap();
    assert!(reset(&app.config, &door_id).await.unwrap());
    assert!(!reset(&app.config, &door_id).await.unwrap());
    let mut back = verify_at(&app, subjects[1], "Bill_Nelson_0002", Some("0.1")).await;
    for _ in 0..100 {
        if back["calibration"] == json!(global.source) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        back = verify_at(&app, subjects[1], "Bill_Nelson_0002", Some("0.1")).await;
    }
    assert_eq!(
        (back["calibration"].clone(), back["threshold"].as_f64().unwrap() as f32),
        (json!(global.source), 0.15)
    );
    let scraped = scrape(&app).await;
    assert_eq!(
        value(&scraped, "visage_calibration_info", &[("calibration", &name), ("far_target", "0.1")]),
        None
    );
}
