//! Who is acting: the API key behind a request, its role and the collections it may use.

use visage_store::{CollectionId, CollectionScope, Role};

use super::{ServiceError, ServiceResult};

#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's public id (never its secret).
    pub key_id: String,
    pub role: Role,
    pub scope: CollectionScope,
}

impl Caller {
    pub fn require(&self, role: Role) -> ServiceResult<()> {
        if self.role.includes(role) { Ok(()) } else { Err(ServiceError::Forbidden) }
    }

    pub fn require_in(&self, role: Role, collection: &CollectionId) -> ServiceResult<()> {
        self.require(role)?;
        if self.scope.allows(collection) { Ok(()) } else { Err(ServiceError::Forbidden) }
    }
}
