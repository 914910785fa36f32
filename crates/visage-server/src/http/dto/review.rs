//! The review queue: recent decisions for a reviewer to label.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use visage_store::{Decision, DecisionFilter, DecisionOrder, VerificationMode};

use super::{check_range, lenient_bool, lenient_number};
use crate::http::error::ApiError;
use crate::service::review::{DEFAULT_QUEUE_PAGE, QueuedDecision};

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeParam {
    Verify,
    Identify,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionParam {
    Match,
    NoMatch,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueOrder {
    /// Smallest distance between similarity and threshold first.
    Nearest,
    Newest,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DecisionQuery {
    pub mode: Option<ModeParam>,
    /// Only this collection (a scoped key sees only its own anyway).
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    pub collection: Option<String>,
    pub decision: Option<DecisionParam>,
    /// true: labelled only; false: not yet labelled only; absent: both.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub labelled: Option<bool>,
    /// Made at or after this instant (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Default `nearest`: the decisions closest to their threshold first.
    pub order: Option<QueueOrder>,
    /// Page size, default 50.
    #[serde(default, deserialize_with = "lenient_number")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Decisions to skip: `next_offset` of the previous page.
    #[serde(default, deserialize_with = "lenient_number")]
    #[param(minimum = 0, maximum = 100000)]
    pub offset: Option<u32>,
}

impl DecisionQuery {
    pub fn check(&self) -> Result<(), ApiError> {
        check_range("limit", self.limit, 1, 500)?;
        check_range("offset", self.offset, 0, 100_000)
    }

    pub fn filter(&self) -> DecisionFilter {
        DecisionFilter {
            mode: self.mode.map(|m| match m {
                ModeParam::Verify => VerificationMode::Verify,
                ModeParam::Identify => VerificationMode::Identify,
            }),
            collections: None,
            decision: self.decision.map(|d| match d {
                DecisionParam::Match => Decision::Match,
                DecisionParam::NoMatch => Decision::NoMatch,
            }),
            labelled: self.labelled,
            since: self.since,
            subject_id: None,
            order: match self.order {
                Some(QueueOrder::Newest) => DecisionOrder::Newest,
                Some(QueueOrder::Nearest) | None => DecisionOrder::NearestThreshold,
            },
            limit: self.limit.unwrap_or(DEFAULT_QUEUE_PAGE),
            offset: self.offset.unwrap_or(0),
        }
    }
}

/// The enrolled side of a decision: who was claimed or returned.
#[derive(Serialize, ToSchema)]
pub struct DecisionSubjectDto {
    pub id: Uuid,
    pub external_id: String,
    pub face_count: u32,
}

/// A past decision and its label.
#[derive(Serialize, ToSchema)]
pub struct DecisionDto {
    /// The `verification_id` the decision was answered with; label it with
    /// `POST /v1/verifications/{id}/feedback`.
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// verify or identify.
    pub mode: String,
    pub collection: Option<String>,
    /// match or no_match.
    pub decision: String,
    /// Similarity to the claimed subject, or of the best candidate.
    pub similarity: Option<f32>,
    pub threshold: f32,
    pub far_target: Option<f64>,
    /// The calibration the threshold came from (absent on decisions made before decisions
    /// named it).
    pub calibration: Option<String>,
    pub liveness_score: Option<f32>,
    /// The subject claimed (verify) or best candidate (identify); absent once erased.
    pub subject: Option<DecisionSubjectDto>,
    /// genuine or impostor, once labelled.
    pub truth: Option<String>,
    pub truth_source: Option<String>,
    pub labelled_at: Option<DateTime<Utc>>,
    /// The probe face's quality measures.
    #[schema(value_type = Option<Object>)]
    pub probe_quality: Option<serde_json::Value>,
    /// Whether the probe image is kept for review (`GET /v1/decisions/{id}/probe`), and until when.
    pub probe_kept: bool,
    pub probe_expires_at: Option<DateTime<Utc>>,
}

impl From<QueuedDecision> for DecisionDto {
    fn from(q: QueuedDecision) -> Self {
        let r = q.decision.record;
        Self {
            id: r.id,
            created_at: r.created_at,
            mode: r.mode.as_str().into(),
            collection: r.collection.map(|c| c.as_str().to_owned()),
            decision: r.decision.as_str().into(),
            similarity: r.similarity,
            threshold: r.threshold,
            far_target: r.far_target,
            calibration: r.calibration,
            liveness_score: r.liveness_score,
            subject: q.subject.map(|s| DecisionSubjectDto {
                id: s.id,
                external_id: s.external_id,
                face_count: s.face_count,
            }),
            truth: q.decision.truth.map(|t| t.as_str().into()),
            truth_source: q.decision.truth_source,
            labelled_at: q.decision.labelled_at,
            probe_quality: r.probe_quality,
            probe_kept: r.probe.as_ref().is_some_and(|p| p.expires_at > Utc::now()),
            probe_expires_at: r.probe.map(|p| p.expires_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DecisionPage {
    pub items: Vec<DecisionDto>,
    /// How long probe images are kept for review (`review.keep_probe_images_hours`); 0: not kept.
    pub probe_retention_hours: u64,
    /// Pass as `offset` for the next page; absent on the last page.
    pub next_offset: Option<u32>,
}
