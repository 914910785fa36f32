//! The audit trail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use visage_store::{AuditAction, AuditEvent, AuditFilter, AuditOutcome};

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
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this action, e.g. `subject.erase`, `verify`, `key.revoke`.
    pub action: Option<String>,
    /// Only this outcome: ok, refused, failed, match, no_match.
    pub outcome: Option<String>,
    /// Only events about this subject.
    pub subject_id: Option<Uuid>,
    /// Only events of this API key (its public id).
    pub api_key_id: Option<String>,
    /// Events at or after this instant (RFC 3339)...
    pub from: Option<DateTime<Utc>>,
    /// ...and before this one.
    pub to: Option<DateTime<Utc>>,
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

    pub fn filter(&self) -> Result<AuditFilter, ApiError> {
        let action = self.action.as_deref().map(AuditAction::try_from).transpose();
        let outcome = self.outcome.as_deref().map(AuditOutcome::try_from).transpose();
        Ok(AuditFilter {
            action: action.map_err(|e| ApiError::invalid(e.to_string()))?,
            outcome: outcome.map_err(|e| ApiError::invalid(e.to_string()))?,
            subject_id: self.subject_id,
            api_key_id: self.api_key_id.clone(),
            collections: None,
            from: self.from,
            to: self.to,
        })
    }
}
