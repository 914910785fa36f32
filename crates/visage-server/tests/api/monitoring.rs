//! Metrics and the feedback that makes FAR and FRR real.

use super::*;

#[tokio::test]
async fn the_metrics_endpoint_exports_every_seed_metric_with_fixed_labels() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    for (name, labels) in [
        ("verification_requests_total", vec![("mode", "verify"), ("result", "match")]),
        ("liveness_checks_total", vec![("result", "inconclusive")]),
        ("spoofing_attacks_detected", vec![("type", "print")]),
        ("false_accept_total", vec![("severity", "high")]),
        ("false_reject_total", vec![("severity", "low")]),
    ] {
        assert_eq!(value(&before, name, &labels), Some(0.0), "{name} starts at zero");
    }
    // Measured rates wait for ground truth; the calibration's expected rates are there at once
    // (models/calibration.json's evaluation when a calibration run wrote one, else the
    // built-in run's), and the calibration is named.
    let calibration = &app.state.calibration;
    let expected = calibration.evaluation.expect("every calibration carries its run's rates");
    for (gauge, rate) in [
        ("false_accept_rate", expected.far_percent),
        ("false_reject_rate", expected.frr_percent),
        ("equal_error_rate", expected.eer_percent),
    ] {
        assert!(
            sample(&before, gauge, &[("source", "feedback")]).is_none(),
            "{gauge} without ground truth must be absent"
        );
        assert_eq!(
            value(&before, gauge, &[("source", "calibration")]),
            Some(rate),
            "{gauge} from the first scrape"
        );
    }
    let point = calibration.point(1e-3).unwrap();
    let threshold = format!("{:.4}", point.threshold);
    let info = [("far_target", "0.001"), ("threshold", threshold.as_str())];
    assert_eq!(value(&before, "visage_calibration_info", &info), Some(1.0));
    // The exposition parser splits label values at commas, which a calibration's name may hold.
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains(&format!("calibration=\"{}\"", calibration.source)),
        "the calibration is not named"
    );

    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    app.verify(bob, "Bob_Graham_0005").await;
    app.verify(bob, "Elton_John_0001").await;
    app.identify(lfw("Bob_Graham_0005")).await;
    let print = fixture("nuaa/print/0005_00_00_01_10.jpg");
    expect(app.post_image("/v1/liveness", &app.admin, print, "image/jpeg").await, StatusCode::OK).await;
    let form = Form::new().part("image", jpeg(b"broken".to_vec())).text("subject_id", bob.to_string());
    app.post_form("/v1/verify", &app.admin, form).await;

    let after = scrape(&app).await;
    let count = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing"))
    };
    assert_eq!(count("verification_requests_total", &[("mode", "verify"), ("result", "match")]), 1.0);
    assert_eq!(count("verification_requests_total", &[("mode", "verify"), ("result", "no_match")]), 1.0);
    assert_eq!(count("verification_requests_total", &[("mode", "verify"), ("result", "error")]), 1.0);
    assert_eq!(count("verification_requests_total", &[("mode", "identify"), ("result", "match")]), 1.0);
    // Two verifications reported liveness (development default), plus one liveness check.
    assert_eq!(count("liveness_checks_total", &[("result", "pass")]), 2.0);
    assert_eq!(count("liveness_checks_total", &[("result", "fail")]), 1.0);
    assert_eq!(count("spoofing_attacks_detected", &[("type", "print")]), 1.0);
    assert_eq!(count("enrolled_subjects", &[("collection", "default")]), 1.0);
    assert_eq!(count("enrolled_templates", &[("collection", "default")]), 1.0);
    assert_eq!(count("index_templates", &[("collection", "default")]), 1.0);
    let pool_max = if on_postgres() { app.config.database.max_connections } else { 8 };
    assert_eq!(count("db_pool_connections_max", &[]), f64::from(pool_max));
    assert_eq!(count("inference_workers", &[]), 2.0);
    assert_eq!(count("visage_build_info", &[("recognizer", "sface")]), 1.0);
    // The default backend, in the precision `auto` chose for this CPU (never "auto").
    let precision = app.state.numerics.precision.as_str();
    assert!(["f32", "bf16"].contains(&precision), "{precision}");
    assert_eq!(count("visage_build_info", &[("backend", "openvino"), ("precision", precision)]), 1.0);

    let histogram = |name: &str, labels: &[(&str, &str)]| match &sample(&after, name, labels)
        .unwrap_or_else(|| panic!("{name} {labels:?}"))
        .value
    {
        prometheus_parse::Value::Histogram(buckets) => buckets.last().unwrap().count,
        other => panic!("{name} is not a histogram: {other:?}"),
    };
    for stage in ["total", "decode", "detect", "embed", "liveness", "search"] {
        assert!(
            histogram("verification_duration_seconds", &[("mode", "verify"), ("stage", stage)]) >= 2.0,
            "{stage}"
        );
    }
    assert_eq!(histogram("verification_confidence_score", &[("mode", "verify")]), 2.0);
    // (The parser does not take braces inside label values, so this one is read from the text.)
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let enrolled = r#"http_requests_total{method="POST",route="/v1/subjects/{id}/faces",status="2xx"} 1"#;
    assert!(text.contains(enrolled), "{text}");
    // Labels carry templates and fixed values, never ids.
    for s in &after.samples {
        for (key, label) in s.labels.iter() {
            assert!(
                label.parse::<Uuid>().is_err() && !label.contains(&bob.to_string()),
                "{} {key}={label}",
                s.metric
            );
        }
    }
}

#[tokio::test]
async fn feedback_turns_decisions_into_false_accepts_and_rejects_and_rates() {
    let app = TestApp::spawn_with(|c| c.monitoring.min_labelled = 2).await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let mut decisions = Vec::new();
    // (probe, ground truth as the operator reports it)
    for (probe, truth) in [
        ("Bob_Graham_0005", "genuine"),
        ("Elton_John_0001", "impostor"),
        ("Bob_Graham_0005", "impostor"),
        ("Elton_John_0001", "genuine"),
    ] {
        let body = app.verify(bob, probe).await;
        decisions.push((body, truth));
    }
    let mut outcomes = Vec::new();
    for (body, truth) in &decisions {
        let id = body["verification_id"].as_str().unwrap();
        let path = format!("/v1/verifications/{id}/feedback");
        let answer = expect(
            app.post_json(&path, &app.admin, json!({ "truth": truth, "source": "manual_review" })).await,
            StatusCode::OK,
        )
        .await;
        outcomes.push((answer["outcome"].as_str().unwrap().to_owned(), answer["severity"].clone()));
    }
    assert_eq!(outcomes[0].0, "true_accept");
    assert_eq!(outcomes[1].0, "true_reject");
    assert_eq!(outcomes[2], ("false_accept".to_owned(), json!("high")), "0.68 is far above the threshold");
    assert_eq!(
        outcomes[3],
        ("false_reject".to_owned(), json!("high")),
        "a stranger's score is far below the threshold"
    );

    let first = decisions[0].0["verification_id"].as_str().unwrap();
    let again = app
        .post_json(
            &format!("/v1/verifications/{first}/feedback"),
            &app.admin,
            json!({ "truth": "genuine", "source": "x" }),
        )
        .await;
    expect_error(again, StatusCode::CONFLICT, "already_labelled").await;
    let ghost = format!("/v1/verifications/{}/feedback", Uuid::now_v7());
    expect_error(
        app.post_json(&ghost, &app.admin, json!({ "truth": "genuine", "source": "x" })).await,
        StatusCode::NOT_FOUND,
        "verification_not_found",
    )
    .await;
    let verifier = app.key(Role::Verify, CollectionScope::All).await;
    expect_error(
        app.post_json(
            &format!("/v1/verifications/{first}/feedback"),
            &verifier,
            json!({ "truth": "genuine", "source": "x" }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    let scraped = scrape(&app).await;
    assert_eq!(value(&scraped, "false_accept_total", &[("severity", "high")]), Some(1.0));
    assert_eq!(value(&scraped, "false_reject_total", &[("severity", "high")]), Some(1.0));
    assert_eq!(value(&scraped, "false_accept_total", &[("severity", "low")]), Some(0.0));
    // By hand: impostors {rejected, accepted} -> FAR 50%; genuine {accepted, rejected} -> FRR 50%.
    assert_eq!(value(&scraped, "false_accept_rate", &[("source", "feedback")]), Some(50.0));
    assert_eq!(value(&scraped, "false_reject_rate", &[("source", "feedback")]), Some(50.0));
    let score = |i: usize| decisions[i].0["similarity"].as_f64().unwrap() as f32 as f64;
    let expected_eer =
        visage_stats::ScoreSet::new(vec![score(0), score(3)], vec![score(1), score(2)]).unwrap().eer().rate
            * 100.0;
    let eer = value(&scraped, "equal_error_rate", &[("source", "feedback")]).unwrap();
    assert!((eer - expected_eer).abs() < 1e-9, "{eer} vs {expected_eer}");
}

#[tokio::test]
async fn the_openvino_backend_serves_and_reports_its_precision() {
    let app = TestApp::spawn_with(|c| {
        c.models.backend = visage_face::BackendKind::OpenVino;
        c.inference.precision = visage_face::Precision::F32;
    })
    .await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    app.verify(bob, "Bob_Graham_0005").await;
    let metrics = scrape(&app).await;
    let labels = [("backend", "openvino"), ("precision", "f32")];
    assert_eq!(value(&metrics, "visage_build_info", &labels), Some(1.0));
    assert_eq!(
        value(&metrics, "verification_requests_total", &[("mode", "verify"), ("result", "match")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_onnxruntime_backend_serves_in_f32_whatever_precision_says() {
    let app = TestApp::spawn_with(|c| {
        c.models.backend = visage_face::BackendKind::OnnxRuntime;
        c.inference.precision = visage_face::Precision::Bf16;
    })
    .await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let answer = app.verify(bob, "Bob_Graham_0005").await;
    assert_eq!(answer["match"], true, "{answer}");
    let metrics = scrape(&app).await;
    let labels = [("backend", "onnxruntime"), ("precision", "f32")];
    assert_eq!(value(&metrics, "visage_build_info", &labels), Some(1.0));
    // Its thresholds are the f32 ones.
    assert_eq!(app.state.calibration.measured_on.precision, visage_face::Precision::F32);
}

#[tokio::test]
async fn openvino_without_its_libraries_starts_on_onnxruntime() {
    // Every model file, but no models/openvino/: the service must start, on ONNX Runtime.
    let models = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("models")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::os::unix::fs::symlink(entry.path(), models.path().join(entry.file_name())).unwrap();
        }
    }
    let dir = models.path().to_path_buf();
    let app = TestApp::spawn_with(move |c| {
        c.models.backend = visage_face::BackendKind::OpenVino;
        c.models.dir = dir;
    })
    .await;
    let metrics = scrape(&app).await;
    let labels = [("backend", "onnxruntime"), ("precision", "f32")];
    assert_eq!(value(&metrics, "visage_build_info", &labels), Some(1.0));
    assert!(sample(&metrics, "visage_build_info", &[("backend", "openvino")]).is_none());
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    app.verify(bob, "Bob_Graham_0005").await;
}
