//! API keys managed over the API: create (the secret is shown once), list, revoke. Admin only,
//! and an admin scoped to some collections manages only keys within its own collections, so
//! no key can hand out more than it holds.

use chrono::Utc;
use serde_json::json;
use visage_store::{ApiKeyRecord, AuditAction, AuditOutcome, CollectionId, CollectionScope, Role};
use visage_wire::api_key;
use zeroize::Zeroizing;

use super::audit::Entry;
use super::{Caller, ServiceError, ServiceResult, audit};
use crate::state::App;

/// The longest key name, in characters.
pub const MAX_NAME: usize = 64;

pub struct NewKeyRequest {
    /// What the key is for (a door, a service); shown in listings.
    pub name: String,
    pub role: Role,
    /// The collections it may use; all when absent.
    pub collections: Option<Vec<CollectionId>>,
}

/// A new key: its record and the token, which is never shown again.
pub struct CreatedKey {
    pub record: ApiKeyRecord,
    pub token: Zeroizing<String>,
}

/// Whether every collection `inner` allows is one `outer` allows.
fn within(outer: &CollectionScope, inner: &CollectionScope) -> bool {
    match (outer, inner) {
        (CollectionScope::All, _) => true,
        (CollectionScope::Only(_), CollectionScope::All) => false,
        (CollectionScope::Only(_), CollectionScope::Only(ids)) => ids.iter().all(|id| outer.allows(id)),
    }
}

pub async fn create(app: &App, caller: &Caller, request: NewKeyRequest) -> ServiceResult<CreatedKey> {
    caller.require(Role::Admin)?;
    let name = request.name.trim().to_owned();
    if name.is_empty() || request.name.chars().count() > MAX_NAME {
        return Err(ServiceError::InvalidRequest(format!("name must be 1-{MAX_NAME} characters")));
    }
    let scope = match request.collections {
        None => CollectionScope::All,
        Some(ids) if ids.is_empty() => {
            return Err(ServiceError::InvalidRequest("collections, when given, names at least one".into()));
        }
        Some(ids) => CollectionScope::Only(ids),
    };
    if !within(&caller.scope, &scope) {
        return Err(ServiceError::Forbidden);
    }
    let key = api_key::generate();
    let record = ApiKeyRecord {
        id: key.id.clone(),
        name,
        secret_hash: key.secret_hash.clone(),
        role: request.role,
        scope,
        created_at: Utc::now(),
        revoked_at: None,
    };
    app.store.create_api_key(&record).await?;
    let detail =
        json!({ "key_id": record.id, "role": record.role.as_str(), "collections": record.scope.to_string() });
    audit::record(app, caller, Entry::new(AuditAction::KeyCreate, AuditOutcome::Ok).detail(detail)).await;
    Ok(CreatedKey { record, token: key.token })
}

/// The caller's own key (never its secret): what it may do, for a client to show.
pub async fn own(app: &App, caller: &Caller) -> ServiceResult<ApiKeyRecord> {
    // Authenticated a moment ago; gone only if deleted since, which reads as revoked.
    app.store.get_api_key(&caller.key_id).await?.ok_or(ServiceError::Forbidden)
}

/// The keys the caller may manage, revoked ones included (never their secrets).
pub async fn list(app: &App, caller: &Caller) -> ServiceResult<Vec<ApiKeyRecord>> {
    caller.require(Role::Admin)?;
    let keys = app.store.list_api_keys().await?;
    Ok(keys.into_iter().filter(|k| within(&caller.scope, &k.scope)).collect())
}

/// Revokes a key at once: its next request is 401. Revoking a revoked key changes nothing.
pub async fn revoke(app: &App, caller: &Caller, id: &str) -> ServiceResult<()> {
    caller.require(Role::Admin)?;
    let key = app.store.get_api_key(id).await?.ok_or(ServiceError::KeyNotFound)?;
    // A scoped admin does not learn of keys beyond its collections.
    if !within(&caller.scope, &key.scope) {
        return Err(ServiceError::KeyNotFound);
    }
    app.store.revoke_api_key(id).await?;
    // Refused during an outage too, not only once the next copy of the keys is read.
    app.outage.remember_key(&ApiKeyRecord { revoked_at: Some(chrono::Utc::now()), ..key });
    let detail = json!({ "key_id": id });
    audit::record(app, caller, Entry::new(AuditAction::KeyRevoke, AuditOutcome::Ok).detail(detail)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_key_manages_only_keys_within_its_collections() {
        let (a, b) = (CollectionId::parse("a").unwrap(), CollectionId::parse("b").unwrap());
        let only_a = CollectionScope::Only(vec![a.clone()]);
        assert!(within(&CollectionScope::All, &CollectionScope::All));
        assert!(within(&CollectionScope::All, &only_a));
        assert!(within(&only_a, &only_a));
        assert!(!within(&only_a, &CollectionScope::All));
        assert!(!within(&only_a, &CollectionScope::Only(vec![a, b])));
    }
}
