//! Filtered listings of decisions (the review queue) and audit events, written once for both
//! backends: `sqlx::QueryBuilder` numbers the placeholders the way each database wants.

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use crate::{AuditAction, AuditOutcome, CollectionId, Decision, Truth, VerificationMode, VerificationRecord};

/// Which decisions to list, and in what order.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    pub mode: Option<VerificationMode>,
    /// Only these collections (a scoped key's, or the one asked for); `None` = all.
    pub collections: Option<Vec<CollectionId>>,
    pub decision: Option<Decision>,
    /// Only labelled (`Some(true)`) or only unlabelled (`Some(false)`) decisions.
    pub labelled: Option<bool>,
    /// Made at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only decisions about this subject (claimed, or the best candidate).
    pub subject_id: Option<Uuid>,
    pub order: DecisionOrder,
    pub limit: u32,
    pub offset: u32,
}

/// The review queue's order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DecisionOrder {
    /// Smallest |similarity - threshold| first: the decisions a reviewer learns most from.
    #[default]
    NearestThreshold,
    Newest,
}

/// A decision with its label, if it has one.
#[derive(Debug, Clone)]
pub struct ReviewedDecision {
    pub record: VerificationRecord,
    pub truth: Option<Truth>,
    pub truth_source: Option<String>,
    pub labelled_at: Option<DateTime<Utc>>,
}

/// Which audit events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<AuditAction>,
    pub outcome: Option<AuditOutcome>,
    pub subject_id: Option<Uuid>,
    pub api_key_id: Option<String>,
    /// Only these collections; `None` = all, including events of no collection.
    pub collections: Option<Vec<CollectionId>>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// `SELECT * FROM verifications WHERE … ORDER BY … LIMIT … OFFSET …`.
pub(crate) fn decisions_query<DB>(f: &DecisionFilter) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> DateTime<Utc>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new("SELECT * FROM verifications WHERE 1 = 1");
    if let Some(subject) = f.subject_id {
        q.push(" AND subject_id = ").push_bind(subject);
    }
    if let Some(mode) = f.mode {
        q.push(" AND mode = ").push_bind(mode.as_str().to_owned());
    }
    if let Some(ids) = &f.collections {
        push_in(&mut q, "collection_id", ids);
    }
    if let Some(decision) = f.decision {
        q.push(" AND decision = ").push_bind(decision.as_str().to_owned());
    }
    match f.labelled {
        Some(true) => q.push(" AND truth IS NOT NULL"),
        Some(false) => q.push(" AND truth IS NULL"),
        None => &mut q,
    };
    if let Some(since) = f.since {
        q.push(" AND created_at >= ").push_bind(since);
    }
    q.push(match f.order {
        DecisionOrder::NearestThreshold => {
            " ORDER BY similarity IS NULL, ABS(similarity - threshold), created_at DESC, id"
        }
        DecisionOrder::Newest => " ORDER BY created_at DESC, id DESC",
    });
    q.push(" LIMIT ").push_bind(i64::from(f.limit));
    q.push(" OFFSET ").push_bind(i64::from(f.offset));
    q
}

/// `SELECT * FROM audit_events WHERE seq > … AND … ORDER BY seq LIMIT …`.
pub(crate) fn audit_query<DB>(f: &AuditFilter, after_seq: Option<i64>, limit: u32) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> DateTime<Utc>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new("SELECT * FROM audit_events WHERE seq > ");
    q.push_bind(after_seq.unwrap_or(0));
    if let Some(action) = f.action {
        q.push(" AND action = ").push_bind(action.as_str().to_owned());
    }
    if let Some(outcome) = f.outcome {
        q.push(" AND outcome = ").push_bind(outcome.as_str().to_owned());
    }
    if let Some(subject) = f.subject_id {
        q.push(" AND subject_id = ").push_bind(subject);
    }
    if let Some(key) = &f.api_key_id {
        q.push(" AND api_key_id = ").push_bind(key.clone());
    }
    if let Some(ids) = &f.collections {
        push_in(&mut q, "collection_id", ids);
    }
    if let Some(from) = f.from {
        q.push(" AND at >= ").push_bind(from);
    }
    if let Some(to) = f.to {
        q.push(" AND at < ").push_bind(to);
    }
    q.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
    q
}

/// `AND column IN (…)`; an empty list matches nothing.
fn push_in<DB>(q: &mut QueryBuilder<DB>, column: &str, ids: &[CollectionId])
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    if ids.is_empty() {
        q.push(" AND 1 = 0");
        return;
    }
    q.push(format!(" AND {column} IN ("));
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id.as_str().to_owned());
    }
    list.push_unseparated(")");
}

/// `UPDATE verifications SET probe_ref = NULL … WHERE probe_ref IN (…)`.
pub(crate) fn forget_probes_query<DB>(references: &[String]) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(
        "UPDATE verifications SET probe_ref = NULL, probe_expires_at = NULL WHERE probe_ref IN (",
    );
    let mut list = q.separated(", ");
    for reference in references {
        list.push_bind(reference.clone());
    }
    list.push_unseparated(")");
    q
}
