//! Ground truth for past decisions: what turns a decision into a true or false accept or
//! reject, and so feeds FAR and FRR.

use serde_json::json;
use uuid::Uuid;
use visage_store::{AuditAction, AuditOutcome, Labelling, Role, Truth};

use super::audit::Entry;
use super::{Caller, ServiceError, ServiceResult, audit};
use crate::observability::metrics::severity;
use crate::state::App;

/// The longest feedback source name, in characters.
pub const MAX_SOURCE: usize = 64;

/// What a labelled decision turned out to be.
pub struct Labelled {
    /// true_accept, false_accept, true_reject or false_reject.
    pub outcome: &'static str,
    /// For false decisions: low, medium or high, by how far the score was past the threshold.
    pub severity: Option<&'static str>,
}

/// Labels a past decision, once; counts false accepts and rejects by severity.
pub async fn label(
    app: &App,
    caller: &Caller,
    id: Uuid,
    truth: Truth,
    source: &str,
) -> ServiceResult<Labelled> {
    caller.require(Role::Enrol)?;
    let source = source.trim();
    if source.is_empty() || source.chars().count() > MAX_SOURCE {
        return Err(ServiceError::InvalidRequest(format!("source must be 1-{MAX_SOURCE} characters")));
    }
    let existing = app.store.get_verification(id).await?.ok_or(ServiceError::VerificationNotFound)?;
    // A key scoped to other collections does not learn that the decision exists.
    if existing.collection.as_ref().is_some_and(|c| !caller.scope.allows(c)) {
        return Err(ServiceError::VerificationNotFound);
    }
    let record = match app.store.label_verification(id, truth, source).await? {
        Labelling::Missing => return Err(ServiceError::VerificationNotFound),
        Labelling::AlreadyLabelled => return Err(ServiceError::AlreadyLabelled),
        Labelling::Labelled(record) => *record,
    };
    let accepted = record.decision.is_match();
    let labelled = match (truth, accepted) {
        (Truth::Genuine, true) => Labelled { outcome: "true_accept", severity: None },
        (Truth::Impostor, false) => Labelled { outcome: "true_reject", severity: None },
        (Truth::Impostor, true) => {
            let severity = severity(record.similarity, record.threshold);
            app.metrics.false_accepts.with_label_values(&[severity]).inc();
            Labelled { outcome: "false_accept", severity: Some(severity) }
        }
        (Truth::Genuine, false) => {
            let severity = severity(record.similarity, record.threshold);
            app.metrics.false_rejects.with_label_values(&[severity]).inc();
            Labelled { outcome: "false_reject", severity: Some(severity) }
        }
    };
    let detail = json!({ "verification_id": id, "truth": truth.as_str(), "outcome": labelled.outcome });
    audit::record(
        app,
        caller,
        Entry::new(AuditAction::VerificationFeedback, AuditOutcome::Ok)
            .on_maybe(record.collection.as_ref())
            .detail(detail),
    )
    .await;
    Ok(labelled)
}
