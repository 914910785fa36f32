//! Destruction records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use visage_store::{DestructionFilter, DestructionRecord};

use super::check_range;
use crate::http::error::ApiError;

/// One destruction of personal data (Roskomnadzor order No. 179, 2022): what, how much, why,
/// how, when, by whom. No template, image or name.
#[derive(Serialize, ToSchema)]
pub struct DestructionRecordDto {
    pub id: Uuid,
    pub destroyed_at: DateTime<Utc>,
    /// The subject's internal id; it names nobody once the subject is erased.
    pub subject_id: Uuid,
    pub collection: String,
    /// The operator's id of the subject, only with
    /// `retention.destruction_records_keep_external_id`.
    pub external_id: Option<String>,
    /// The legal ground: `erasure_request` (`DELETE /v1/subjects/{id}`), `face_deletion`,
    /// `consent_withdrawn`, `consent_expired` or `inactive_subject`.
    pub ground: String,
    /// Each category destroyed (`biometric_templates`, `enrolment_images`, `probe_images`,
    /// `subject_record`: identifiers, metadata, consent) and how many items.
    pub categories: Vec<DestroyedCategoryDto>,
    /// How it was destroyed.
    pub method: String,
    /// The API key id that asked for it, or `visage:<job>`.
    pub performed_by: String,
}

#[derive(Serialize, ToSchema)]
pub struct DestroyedCategoryDto {
    pub category: String,
    pub items: u64,
}

impl From<DestructionRecord> for DestructionRecordDto {
    fn from(r: DestructionRecord) -> Self {
        Self {
            id: r.id,
            destroyed_at: r.destroyed_at,
            subject_id: r.subject_id,
            collection: r.collection.to_string(),
            external_id: r.external_id,
            ground: r.ground.as_str().to_owned(),
            categories: r
                .categories
                .into_iter()
                .map(|c| DestroyedCategoryDto { category: c.category, items: c.items })
                .collect(),
            method: r.method,
            performed_by: r.performed_by,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DestructionRecordPage {
    pub items: Vec<DestructionRecordDto>,
    /// Pass as `offset` for the next page; absent on the last page.
    pub next_offset: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DestructionQuery {
    /// Destroyed at or after this instant (RFC 3339)...
    pub from: Option<DateTime<Utc>>,
    /// ...and before this one.
    pub to: Option<DateTime<Utc>>,
    /// Page size, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_offset` of the previous page.
    #[param(minimum = 0, maximum = 10000000)]
    pub offset: Option<u32>,
}

impl DestructionQuery {
    pub fn check(&self) -> Result<(), ApiError> {
        check_range("limit", self.limit, 1, 1000)?;
        check_range("offset", self.offset, 0, 10_000_000)
    }

    pub fn filter(&self) -> DestructionFilter {
        DestructionFilter {
            from: self.from,
            to: self.to,
            limit: self.limit.unwrap_or(100),
            offset: self.offset.unwrap_or(0),
        }
    }
}
