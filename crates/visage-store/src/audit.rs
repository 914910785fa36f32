//! The audit log's events: who (key id), what, when, the outcome. Never biometric data or
//! names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::names::named_enum;
use crate::{CollectionId, Decision, VerificationMode};

named_enum! {
    /// What an audit event records.
    pub enum AuditAction("audit action") {
        CollectionCreate = "collection.create",
        SubjectCreate = "subject.create",
        /// Erasure: the subject's templates and images went; the event keeps its subject id.
        SubjectErase = "subject.erase",
        FaceEnrol = "face.enrol",
        FaceDelete = "face.delete",
        Verify = "verify",
        Identify = "identify",
        LivenessCheck = "liveness.check",
        /// A face refused as a spoof where liveness was required.
        LivenessSpoof = "liveness.spoof",
        VerificationFeedback = "verification.feedback",
        /// Stored images that could not be deleted, named so that they can be found.
        ImageDelete = "image.delete",
        ImageSweep = "image.sweep",
        KeyCreate = "key.create",
        KeyRevoke = "key.revoke",
        ModelReembed = "model.reembed",
        ModelPrune = "model.prune",
        /// A reviewer opened a kept probe image.
        ProbeView = "probe.view",
        /// Probe images whose retention ended were deleted.
        ProbeExpire = "probe.expire",
        /// A collection got thresholds of its own, calibrated from its labelled decisions.
        CalibrationSet = "calibration.set",
        /// Everything held about a subject was exported (subject access request).
        SubjectExport = "subject.export",
        /// A subject withdrew consent and its erasure waits `retention.after_withdrawal_days`;
        /// it is out of matching meanwhile.
        ConsentWithdraw = "consent.withdraw",
        /// The retention job deleted decision records, audit events or destruction records past
        /// their retention period.
        RetentionPrune = "retention.prune",
        /// Templates and images were re-sealed under the active template key.
        TemplateKeyRotate = "template_key.rotate",
        /// `visage backup` wrote an archive of the embedded storage.
        BackupCreate = "backup.create",
        /// `visage restore` restored an archive into an empty data directory.
        BackupRestore = "backup.restore",
    }
}

named_enum! {
    /// How the audited action ended.
    pub enum AuditOutcome("audit outcome") {
        Ok = "ok",
        Refused = "refused",
        Failed = "failed",
        /// A verification or identification that matched...
        Match = "match",
        /// ...or did not.
        NoMatch = "no_match",
    }
}

impl From<VerificationMode> for AuditAction {
    fn from(mode: VerificationMode) -> Self {
        match mode {
            VerificationMode::Verify => Self::Verify,
            VerificationMode::Identify => Self::Identify,
        }
    }
}

impl From<Decision> for AuditOutcome {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Match => Self::Match,
            Decision::NoMatch => Self::NoMatch,
        }
    }
}

/// An audit event as it was stored.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub api_key_id: Option<String>,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    pub collection: Option<String>,
    pub subject_id: Option<Uuid>,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewAuditEvent {
    pub api_key_id: Option<String>,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    pub collection: Option<CollectionId>,
    pub subject_id: Option<Uuid>,
    pub detail: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::str::FromStr;

    use serde::de::DeserializeOwned;

    use super::*;

    /// Every name parses back to its variant, in Rust and in JSON, and no two variants share
    /// a name.
    fn names_round_trip<T>(all: &[T], name: fn(T) -> &'static str)
    where
        T: Copy + Debug + PartialEq + FromStr + Serialize + DeserializeOwned,
        T::Err: Debug,
    {
        let mut seen = std::collections::HashSet::new();
        for &value in all {
            let text = name(value);
            assert!(seen.insert(text), "{text:?} is used twice");
            assert_eq!(text.parse::<T>().unwrap(), value);
            assert_eq!(serde_json::to_value(value).unwrap(), serde_json::json!(text));
            assert_eq!(serde_json::from_value::<T>(serde_json::json!(text)).unwrap(), value);
        }
    }

    #[test]
    fn audit_names_round_trip() {
        names_round_trip(AuditAction::ALL, AuditAction::as_str);
        names_round_trip(AuditOutcome::ALL, AuditOutcome::as_str);
        names_round_trip(Decision::ALL, Decision::as_str);
    }

    #[test]
    fn the_names_stored_so_far_are_kept() {
        // Rows written before these enums existed hold these strings.
        let actions = [
            "collection.create",
            "subject.create",
            "subject.erase",
            "face.enrol",
            "face.delete",
            "verify",
            "identify",
            "liveness.check",
            "liveness.spoof",
            "verification.feedback",
            "image.delete",
            "image.sweep",
            "key.create",
            "key.revoke",
            "model.reembed",
            "model.prune",
            "probe.view",
            "probe.expire",
            "calibration.set",
            "subject.export",
            "consent.withdraw",
            "retention.prune",
            "template_key.rotate",
            "backup.create",
            "backup.restore",
        ];
        assert_eq!(AuditAction::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(), actions);
        let outcomes = ["ok", "refused", "failed", "match", "no_match"];
        assert_eq!(AuditOutcome::ALL.iter().map(|o| o.as_str()).collect::<Vec<_>>(), outcomes);
        assert_eq!(Decision::ALL.iter().map(|d| d.as_str()).collect::<Vec<_>>(), ["match", "no_match"]);
        assert_eq!(
            AuditAction::from(VerificationMode::Identify).as_str(),
            VerificationMode::Identify.as_str()
        );
        assert_eq!(AuditOutcome::from(Decision::NoMatch).as_str(), Decision::NoMatch.as_str());
    }

    #[test]
    fn unknown_names_are_refused_by_name() {
        let err = AuditAction::from_str("subject.delete").unwrap_err();
        assert_eq!(err.to_string(), r#"unknown audit action "subject.delete""#);
        assert!(AuditOutcome::try_from("OK").is_err(), "names are case-sensitive");
        assert!(serde_json::from_value::<Decision>(serde_json::json!("spoof")).is_err());
    }
}
