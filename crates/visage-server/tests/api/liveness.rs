//! Liveness required: print attacks are refused.

use super::*;

#[tokio::test]
async fn a_print_attack_is_refused_when_liveness_is_required() {
    let app = spawn_app().await;
    let subject = app.create_subject("nuaa-0005").await;
    let form =
        Form::new().part("image", jpeg(fixture("nuaa/real/0005_00_00_01_0.jpg"))).text("liveness", "require");
    let enrolled = expect(
        app.post_form(&format!("/v1/subjects/{subject}/faces"), &app.admin, form).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(enrolled["faces"][0]["liveness"]["result"], "pass");

    let print = fixture("nuaa/print/0005_00_00_01_10.jpg");
    let body =
        expect(app.post_image("/v1/liveness", &app.admin, print.clone(), "image/jpeg").await, StatusCode::OK)
            .await;
    assert_eq!(body["liveness"]["live"], false, "{body}");
    assert_eq!(body["liveness"]["attack_type"], "print");

    let form = Form::new()
        .part("image", jpeg(print))
        .text("subject_id", subject.to_string())
        .text("liveness", "require");
    let refused = expect_error(
        app.post_form("/v1/verify", &app.admin, form).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "spoof_detected",
    )
    .await;
    assert_eq!(refused["error"]["details"]["attack_type"], "print");
    assert!(
        app.audit_actions()
            .await
            .iter()
            .any(|e| e["action"] == "liveness.spoof" && e["outcome"] == "refused")
    );

    let live = fixture("nuaa/real/0005_00_00_01_0.jpg");
    let body =
        expect(app.post_image("/v1/liveness", &app.admin, live, "image/jpeg").await, StatusCode::OK).await;
    assert_eq!(body["liveness"]["live"], true, "{body}");
}
