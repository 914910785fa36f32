//! API keys: roles and collection scopes, checked before the body is read.

use super::*;

#[tokio::test]
async fn keys_are_checked_for_role_and_collection() {
    let app = spawn_app().await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    let verifier = app.key(Role::Verify, CollectionScope::All).await;
    let reader = app.key(Role::Read, CollectionScope::All).await;
    expect(app.post_json("/v1/collections", &app.admin, json!({ "id": "staff" })).await, StatusCode::CREATED)
        .await;
    let staff_only =
        app.key(Role::Admin, CollectionScope::Only(vec![CollectionId::parse("staff").unwrap()])).await;

    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    expect_error(
        app.post_form(&format!("/v1/subjects/{bob}/faces"), &verifier, form).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let subject = json!({ "external_id": "x", "consent": { "given_by": "x", "purpose": "p" } });
    expect_error(
        app.post_json("/v1/subjects", &verifier, subject.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
    expect(app.post_form("/v1/verify", &verifier, form).await, StatusCode::OK).await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
    expect_error(app.post_form("/v1/verify", &reader, form).await, StatusCode::FORBIDDEN, "forbidden").await;
    expect(app.get(&format!("/v1/subjects/{bob}"), &reader).await, StatusCode::OK).await;
    expect_error(app.get("/v1/audit", &verifier).await, StatusCode::FORBIDDEN, "forbidden").await;
    // A key of another collection does not even learn that the subject exists.
    expect_error(
        app.get(&format!("/v1/subjects/{bob}"), &staff_only).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    expect_error(app.post_form("/v1/identify", &staff_only, form).await, StatusCode::FORBIDDEN, "forbidden")
        .await;

    let no_key = app.client.get(app.url("/v1/subjects")).send().await.unwrap();
    expect_error(no_key, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_error(
        app.get("/v1/subjects", "vsg_0123456789ab_wrong").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let (id, _) = api_key::parse(&reader).unwrap();
    assert!(app.state.store.revoke_api_key(id).await.unwrap());
    expect_error(app.get("/v1/subjects", &reader).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Health needs no key.
    expect(app.client.get(app.url("/health/live")).send().await.unwrap(), StatusCode::OK).await;
    let ready = expect(app.client.get(app.url("/health/ready")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(ready["checks"]["models"], "ok");
}

/// A key without the role is refused before its body is read: it learns nothing of what the
/// route expects from a 400 or 415.
#[tokio::test]
async fn a_key_without_the_role_gets_403_before_its_body_is_parsed() {
    let app = spawn_app().await;
    let verifier = app.key(Role::Verify, CollectionScope::All).await;
    let reader = app.key(Role::Read, CollectionScope::All).await;
    let malformed = |path: &str, key: &str| {
        app.client
            .post(app.url(path))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body("{ not json")
    };
    for path in ["/v1/collections", "/v1/subjects"] {
        let refused = malformed(path, &verifier).send().await.unwrap();
        expect_error(refused, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let feedback = format!("/v1/verifications/{}/feedback", Uuid::now_v7());
    expect_error(malformed(&feedback, &reader).send().await.unwrap(), StatusCode::FORBIDDEN, "forbidden")
        .await;
    let wrong_type = app.post_json("/v1/collections", &verifier, json!({ "id": 42 })).await;
    expect_error(wrong_type, StatusCode::FORBIDDEN, "forbidden").await;
    let wrong_media = app.post_image("/v1/verify", &reader, b"plain text".to_vec(), "text/plain").await;
    expect_error(wrong_media, StatusCode::FORBIDDEN, "forbidden").await;
    // With the role, the same malformed body is a 400 that says what is wrong.
    let parsed = malformed("/v1/collections", &app.admin).send().await.unwrap();
    expect_error(parsed, StatusCode::BAD_REQUEST, "invalid_request").await;
    // And without a key at all, 401 whatever the body.
    let anonymous = app.client.post(app.url("/v1/subjects")).body("{ not json").send().await.unwrap();
    expect_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
