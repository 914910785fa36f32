//! Collections (separate galleries).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::service::collections::CollectionSummary;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollectionRequest {
    /// 1-64 characters of a-z, 0-9, '-' and '_'.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub id: String,
}

#[derive(Serialize, ToSchema)]
pub struct CollectionDto {
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// Templates in the 1:N index.
    pub templates: usize,
}

impl From<CollectionSummary> for CollectionDto {
    fn from(c: CollectionSummary) -> Self {
        Self { id: c.id.to_string(), created_at: c.created_at, templates: c.templates }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionDto>,
}
