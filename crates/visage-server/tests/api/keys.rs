//! `/v1/keys`: admins create (the token shown once), list and revoke keys; a scoped admin hands
//! out nothing beyond its collections.

use super::*;

#[tokio::test]
async fn an_admin_creates_lists_and_revokes_keys_and_a_revoked_key_is_refused_at_once() {
    let app = spawn_app().await;
    expect(app.post_json("/v1/collections", &app.admin, json!({ "id": "staff" })).await, StatusCode::CREATED)
        .await;
    let request = json!({ "name": "door 3", "role": "verify", "collections": ["staff"] });
    let created = expect(app.post_json("/v1/keys", &app.admin, request).await, StatusCode::CREATED).await;
    let (id, token) = (created["key"]["id"].as_str().unwrap(), created["token"].as_str().unwrap());
    assert_eq!(created["key"]["role"], "verify");
    assert_eq!(created["key"]["collections"], json!(["staff"]));
    assert!(token.starts_with("vsg_") && token.contains(id), "the token names its key");
    // vsg_<id>_<secret>, the secret URL-safe base64 (which may itself hold '_').
    let (_, secret) = token.strip_prefix("vsg_").unwrap().split_once('_').unwrap();
    // It can ask what it may do.
    let own = expect(app.get("/v1/keys/me", token).await, StatusCode::OK).await;
    assert_eq!((own["id"].as_str(), own["role"].as_str()), (Some(id), Some("verify")), "{own}");
    assert_eq!(own["collections"], json!(["staff"]));
    assert!(!own.to_string().contains(secret), "no secret");
    // The new key works, within its role and collections.
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("collection", "staff");
    expect(app.post_form("/v1/identify", token, form).await, StatusCode::OK).await;
    expect_error(app.get("/v1/keys", token).await, StatusCode::FORBIDDEN, "forbidden").await;
    // Listed without its secret.
    let listed = expect(app.get("/v1/keys", &app.admin).await, StatusCode::OK).await;
    let keys = listed["keys"].as_array().unwrap();
    let door = keys.iter().find(|k| k["id"] == id).expect("listed");
    assert_eq!((door["name"].as_str(), door["revoked_at"].is_null()), (Some("door 3"), true));
    assert!(!listed.to_string().contains(secret), "no secret in a listing");
    // Revoked: the next request is refused, and the audit trail has both.
    expect(app.delete(&format!("/v1/keys/{id}"), &app.admin).await, StatusCode::NO_CONTENT).await;
    expect_error(app.get("/v1/subjects", token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_error(app.get("/v1/keys/me", token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_error(
        app.delete("/v1/keys/0123456789ab", &app.admin).await,
        StatusCode::NOT_FOUND,
        "key_not_found",
    )
    .await;
    let actions: Vec<Value> = app.audit_actions().await.iter().map(|e| e["action"].clone()).collect();
    assert!(actions.contains(&json!("key.create")) && actions.contains(&json!("key.revoke")), "{actions:?}");
}

#[tokio::test]
async fn a_scoped_admin_cannot_give_a_key_more_than_it_holds() {
    let app = spawn_app().await;
    for id in ["staff", "visitors"] {
        expect(app.post_json("/v1/collections", &app.admin, json!({ "id": id })).await, StatusCode::CREATED)
            .await;
    }
    let staff_admin =
        app.key(Role::Admin, CollectionScope::Only(vec![CollectionId::parse("staff").unwrap()])).await;
    for collections in [None, Some(json!(["visitors"])), Some(json!(["staff", "visitors"]))] {
        let mut request = json!({ "name": "wider", "role": "read" });
        if let Some(collections) = collections {
            request["collections"] = collections;
        }
        expect_error(
            app.post_json("/v1/keys", &staff_admin, request).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    let request = json!({ "name": "staff reader", "role": "read", "collections": ["staff"] });
    expect(app.post_json("/v1/keys", &staff_admin, request).await, StatusCode::CREATED).await;
    // It sees only keys within its collections: not the all-collections admin key.
    let listed = expect(app.get("/v1/keys", &staff_admin).await, StatusCode::OK).await;
    let (admin_id, _) = api_key::parse(&app.admin).unwrap();
    assert!(listed["keys"].as_array().unwrap().iter().all(|k| k["id"] != admin_id), "{listed}");
    let revoke_admin = app.delete(&format!("/v1/keys/{admin_id}"), &staff_admin).await;
    expect_error(revoke_admin, StatusCode::NOT_FOUND, "key_not_found").await;
    let bad = json!({ "name": "x", "role": "read", "collections": ["Not A Collection"] });
    expect_error(
        app.post_json("/v1/keys", &app.admin, bad).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
}
