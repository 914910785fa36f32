//! API keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use visage_store::{ApiKeyRecord, CollectionId, CollectionScope, Role};

use crate::http::error::ApiError;
use crate::service::keys::NewKeyRequest;

/// The roles of [`visage_store::Role`], each including the ones before it.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[schema(as = Role)]
#[serde(rename_all = "lowercase")]
enum RoleName {
    /// Read subjects and faces.
    Read,
    /// Detect, verify, identify and check liveness.
    Verify,
    /// Create subjects, enrol and delete faces, erase subjects, give feedback.
    Enrol,
    /// Everything, plus collections, keys and the audit log.
    Admin,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// What the key is for (a door, a service), shown in listings.
    #[schema(min_length = 1, max_length = 64, pattern = "[^\\s\\u0085]")]
    pub name: String,
    #[schema(value_type = RoleName)]
    pub role: Role,
    /// The collections the key may use; all when left out (or null). An admin limited to some
    /// collections can only give keys within them.
    #[schema(min_items = 1, value_type = Option<Vec<CollectionName>>)]
    pub collections: Option<Vec<String>>,
}

/// A collection id: 1-64 characters of a-z, 0-9, '-' and '_'.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(pattern = "^[a-z0-9_-]{1,64}$")]
struct CollectionName(String);

impl TryFrom<CreateKeyRequest> for NewKeyRequest {
    type Error = ApiError;

    fn try_from(request: CreateKeyRequest) -> Result<Self, ApiError> {
        let collections = request
            .collections
            .map(|ids| ids.into_iter().map(CollectionId::parse).collect::<Result<Vec<_>, _>>())
            .transpose()
            .map_err(ApiError::invalid)?;
        Ok(Self { name: request.name, role: request.role, collections })
    }
}

/// A key as listings show it: never its secret.
#[derive(Serialize, ToSchema)]
pub struct KeyDto {
    /// The key's public id, the part of the token after `vsg_`.
    pub id: String,
    pub name: String,
    #[schema(value_type = RoleName)]
    pub role: Role,
    /// The collections it may use; null: all.
    pub collections: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyRecord> for KeyDto {
    fn from(k: &ApiKeyRecord) -> Self {
        let collections = match &k.scope {
            CollectionScope::All => None,
            CollectionScope::Only(ids) => Some(ids.iter().map(ToString::to_string).collect()),
        };
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            role: k.role,
            collections,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKeyDto {
    pub key: KeyDto,
    /// The token to send (`Authorization: Bearer …`): shown this once, never again.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyDto>,
}
