//! The OpenAPI document and the docs page.

use super::*;

#[tokio::test]
async fn the_openapi_document_is_checked_in_and_the_docs_page_is_served() {
    let app = spawn_app().await;
    let served: Value =
        expect(app.client.get(app.url("/openapi.json")).send().await.unwrap(), StatusCode::OK).await;
    // The checked-in document is the one a service with the built-in calibration serves; a
    // service lists its own calibrated FAR targets.
    let calibrated = app.state.calibration.targets();
    for request in ["VerifyRequest", "IdentifyRequest"] {
        let far = &served["components"]["schemas"][request]["properties"]["far_target"];
        assert_eq!(far["enum"], json!(calibrated), "{request}.far_target lists the calibrated targets");
    }
    let built_in = visage_server::calibration::Calibration::built_in(
        app.config.models.recognizer,
        app.state.numerics,
        app.config.liveness.model,
    );
    let reference = visage_server::http::openapi::document(&built_in.targets());
    let path = repo().join("docs/openapi.json");
    let generated = serde_json::to_string_pretty(&reference).unwrap() + "\n";
    if std::env::var_os("VISAGE_UPDATE_OPENAPI").is_some() {
        // Rewriting the document would make this check pass by definition.
        assert!(
            std::env::var_os("CI").is_none(),
            "VISAGE_UPDATE_OPENAPI is set under CI: the check would not check"
        );
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "docs/openapi.json is stale: rerun with VISAGE_UPDATE_OPENAPI=1");
    for endpoint in [
        "/v1/detect",
        "/v1/liveness",
        "/v1/verify",
        "/v1/identify",
        "/v1/collections",
        "/v1/subjects",
        "/v1/subjects/{id}",
        "/v1/subjects/{id}/faces",
        "/v1/subjects/{id}/faces/{face_id}",
        "/v1/audit",
        "/health/live",
        "/health/ready",
    ] {
        assert!(served["paths"].get(endpoint).is_some(), "{endpoint} is not documented");
    }
    let listed = served["components"]["schemas"]["ErrorCode"]["enum"].as_array().expect("an ErrorCode enum");
    for code in visage_server::service::ErrorCode::ALL {
        assert!(
            served["info"]["description"].as_str().unwrap().contains(code.as_str()),
            "{code} is not documented"
        );
        assert!(listed.contains(&json!(code.as_str())), "{code} is not in the ErrorCode schema");
    }
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger") && !html.contains("cdn"), "the docs page is served locally");
    tokio::time::sleep(Duration::from_millis(1)).await;
}
