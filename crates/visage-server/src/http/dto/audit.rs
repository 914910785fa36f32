//! The audit trail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use visage_store::AuditEvent;

use super::check_range;
use crate::http::error::ApiError;

#[derive(Serialize, ToSchema)]
pub struct AuditEventDto {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The API key that acted (its public id).
    pub api_key_id: Option<String>,
    pub action: String,
    pub outcome: String,
    pub collection: Option<String>,
    pub subject_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditEvent> for AuditEventDto {
    fn from(e: AuditEvent) -> Self {
        Self {
            seq: e.seq,
            at: e.at,
            api_key_id: e.api_key_id,
            action: e.action.as_str().into(),
            outcome: e.outcome.as_str().into(),
            collection: e.collection,
            subject_id: e.subject_id,
            detail: e.detail,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEventDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
    /// Page size, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl AuditQuery {
    pub fn check(&self) -> Result<(), ApiError> {
        check_range("limit", self.limit, 1, 1000)
    }
}
