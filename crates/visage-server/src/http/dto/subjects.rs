//! Subjects, their consent records and their faces.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use visage_store::{Consent, Subject, Template};

use super::{ImageField, LivenessDto, check_range, lenient_number};
use crate::config::LivenessMode;
use crate::http::error::ApiError;
use crate::service::subjects::ConsentGiven;

/// The consent record required to enrol a subject.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    /// Who gave consent (the person, or a guardian).
    #[schema(pattern = "[^\\s\\u0085]")]
    pub given_by: String,
    /// When; defaults to the time of the request.
    pub given_at: Option<DateTime<Utc>>,
    /// What the data may be used for.
    #[schema(pattern = "[^\\s\\u0085]")]
    pub purpose: String,
    /// Where the signed consent is kept.
    pub reference: Option<String>,
    /// When the consent ends (in the future): the subject is then out of verification at once
    /// (`consent_expired`) and erased by the retention job within `retention.sweep_interval_seconds`.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<ConsentInput> for ConsentGiven {
    fn from(c: ConsentInput) -> Self {
        Self {
            given_by: c.given_by,
            given_at: c.given_at,
            purpose: c.purpose,
            reference: c.reference,
            expires_at: c.expires_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubjectRequest {
    /// The caller's own id for the person, unique in the collection.
    #[schema(min_length = 1, max_length = 256, pattern = "[^\\s\\u0085]")]
    pub external_id: String,
    /// Collection (gallery); default `default`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub collection: Option<String>,
    /// Free JSON kept with the subject (erased with it).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Required unless the service runs with `enrolment.require_consent = false`.
    #[schema(required = true, nullable = false)]
    pub consent: Option<ConsentInput>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentDto {
    pub given_by: String,
    pub given_at: DateTime<Utc>,
    pub purpose: String,
    pub reference: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When consent was withdrawn, while the erasure waits (`retention.after_withdrawal_days`):
    /// the subject is out of verification (`consent_withdrawn`) and identification meanwhile.
    pub withdrawn_at: Option<DateTime<Utc>>,
}

impl ConsentDto {
    fn new(c: &Consent, withdrawn_at: Option<DateTime<Utc>>) -> Self {
        Self {
            given_by: c.given_by.clone(),
            given_at: c.given_at,
            purpose: c.purpose.clone(),
            reference: c.reference.clone(),
            expires_at: c.expires_at,
            withdrawn_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SubjectDto {
    pub id: Uuid,
    pub collection: String,
    pub external_id: String,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub consent: Option<ConsentDto>,
    pub created_at: DateTime<Utc>,
    pub face_count: u32,
}

impl From<&Subject> for SubjectDto {
    fn from(s: &Subject) -> Self {
        Self {
            id: s.id,
            collection: s.collection.to_string(),
            external_id: s.external_id.clone(),
            metadata: s.metadata.clone(),
            consent: s.consent.as_ref().map(|c| ConsentDto::new(c, s.consent_withdrawn_at)),
            created_at: s.created_at,
            face_count: s.face_count,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SubjectPage {
    pub items: Vec<SubjectDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListSubjectsQuery {
    /// Default: `default`.
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    pub collection: Option<String>,
    /// Find the subject with this external id.
    pub external_id: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Page size, default 100.
    #[serde(default, deserialize_with = "lenient_number")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

impl ListSubjectsQuery {
    pub fn check(&self) -> Result<(), ApiError> {
        check_range("limit", self.limit, 1, 500)
    }
}

/// An enrolled face (its template is never returned).
#[derive(Serialize, ToSchema)]
pub struct FaceRecordDto {
    pub id: Uuid,
    pub subject_id: Uuid,
    /// The recognizer that made the template.
    pub model: String,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub quality: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessDto>,
}

impl FaceRecordDto {
    pub fn new(t: &Template, liveness: Option<LivenessDto>) -> Self {
        Self {
            id: t.id,
            subject_id: t.subject_id,
            model: t.model.clone(),
            created_at: t.created_at,
            quality: t.quality.clone(),
            liveness,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FaceList {
    pub faces: Vec<FaceRecordDto>,
}

/// Something that would make the subject recognised better.
#[derive(Serialize, ToSchema)]
pub struct AdviceDto {
    /// add_another_photo: fewer than two frontal faces are enrolled.
    pub code: String,
    pub message: String,
}

/// The faces just enrolled, and advice on the subject's enrolment as it stands now.
#[derive(Serialize, ToSchema)]
pub struct EnrolledFaces {
    pub faces: Vec<FaceRecordDto>,
    pub advice: Vec<AdviceDto>,
}

/// Enrolment: one image or several (repeated `image` parts in multipart, `images` in JSON);
/// all are stored or none.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    #[schema(value_type = String, format = Binary)]
    pub image: Option<ImageField>,
    #[schema(value_type = Vec<String>)]
    pub images: Option<ImageField>,
    #[schema(nullable = false)]
    pub liveness: Option<LivenessMode>,
}

/// A withdrawal of consent, recorded.
#[derive(Serialize, ToSchema)]
pub struct ConsentWithdrawn {
    pub subject_id: Uuid,
    /// True when the subject was erased at once (`retention.after_withdrawal_days` = 0, the
    /// default); false when the erasure waits, the subject out of matching meanwhile.
    pub erased: bool,
    /// The erasure's record in `GET /v1/destruction-records`, when it was erased.
    pub destruction_record_id: Option<Uuid>,
    /// When the retention job erases the subject, when the erasure waits.
    pub erase_after: Option<DateTime<Utc>>,
}
