//! The records visage keeps, as validated types.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::SealedTemplate;
use crate::names::named_enum;

/// A gallery name: 1-64 characters of `a-z`, `0-9`, `-` and `_`, so it is safe in paths,
/// URLs and metric labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CollectionId(String);

impl CollectionId {
    pub const DEFAULT: &'static str = "default";

    pub fn parse(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if value.is_empty() || value.len() > 64 || !value.chars().all(valid_char) {
            return Err(format!("collection id {value:?} is not 1-64 characters of a-z, 0-9, '-' and '_'"));
        }
        Ok(Self(value))
    }

    pub fn default_collection() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CollectionId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(value)
    }
}

impl From<CollectionId> for String {
    fn from(id: CollectionId) -> Self {
        id.0
    }
}

impl fmt::Display for CollectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Collection {
    pub id: CollectionId,
    pub created_at: DateTime<Utc>,
}

/// Who agreed to the processing of their biometric data, when, and for what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    /// Who gave consent (the data subject, or a legal guardian), as the operator records it.
    pub given_by: String,
    pub given_at: DateTime<Utc>,
    /// The purpose consented to, e.g. "access control at site 3".
    pub purpose: String,
    /// Where the signed consent is kept (document number, URL in the operator's system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When the consent ends: the subject is then out of matching and erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewSubject {
    pub id: Uuid,
    pub collection: CollectionId,
    pub external_id: String,
    pub metadata: Option<serde_json::Value>,
    pub consent: Option<Consent>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subject {
    pub id: Uuid,
    pub collection: CollectionId,
    pub external_id: String,
    pub metadata: Option<serde_json::Value>,
    pub consent: Option<Consent>,
    pub created_at: DateTime<Utc>,
    pub face_count: u32,
    /// Set when consent was withdrawn and the erasure waits for `retention.after_withdrawal_days`:
    /// the subject is out of matching meanwhile.
    pub consent_withdrawn_at: Option<DateTime<Utc>>,
}

/// One enrolled face: its sealed template and what is known about its quality.
#[derive(Debug, Clone)]
pub struct Template {
    pub id: Uuid,
    pub subject_id: Uuid,
    /// The recognizer that produced the template; templates of other models are not comparable.
    pub model: String,
    pub sealed: SealedTemplate,
    pub quality: serde_json::Value,
    pub image_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Set on a template re-embedded from another one's stored image (`visage reembed`): the
    /// original of the face. `None` on originals.
    pub source_template_id: Option<Uuid>,
}

impl Template {
    /// The original template of the face this template belongs to (itself for an original).
    pub fn face_id(&self) -> Uuid {
        self.source_template_id.unwrap_or(self.id)
    }
}

/// Which templates of other recognizers than a target one a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinFilter {
    /// Originals whose face has no template of the target yet: what re-embedding works on.
    Missing,
    /// Templates whose face has a template of the target: what pruning deletes.
    Present,
    /// All of them (forced pruning).
    Any,
}

/// Where the stored templates stand against a target recognizer, during a model change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelStatus {
    /// Templates made by the target.
    pub current: u64,
    /// Templates of other recognizers whose face has a template of the target.
    pub twinned: u64,
    /// Templates of other recognizers whose face has none yet.
    pub untwinned: u64,
    /// Of the untwinned, originals with a stored image (re-embeddable)...
    pub reembeddable: u64,
    /// ...and originals without one (only re-enrolment or pruning with force helps).
    pub without_image: u64,
}

/// A template together with the collection of its subject, as the 1:N index loads it.
#[derive(Debug, Clone)]
pub struct GalleryTemplate {
    pub collection: CollectionId,
    /// The subject's external id: with it a replica can name a candidate while the database
    /// cannot be reached.
    pub external_id: String,
    pub template: Template,
    /// When the subject's consent ends: identification leaves the subject out from then on,
    /// before the retention job erases it.
    pub consent_expires_at: Option<DateTime<Utc>>,
}

/// One entry of the gallery's change log, resolved against the current state of the
/// template: replaying entries in order, in any number of replicas, converges on the database.
#[derive(Debug, Clone)]
pub struct GalleryChange {
    pub seq: i64,
    pub template_id: Uuid,
    /// The template as it is now; `None` once it has been deleted.
    pub current: Option<GalleryTemplate>,
}

/// What an erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erasure {
    pub templates: Vec<Uuid>,
    /// Enrolment images, and the probe images of decisions about the subject (the whole photo:
    /// every decision that named it loses it too).
    pub image_refs: Vec<String>,
    /// Written in the same transaction as the erasure.
    pub record: Option<DestructionRecord>,
}

named_enum! {
    /// Why personal data was destroyed, as its destruction record states it.
    pub enum DestructionGround("destruction ground") {
        /// The subject (or the operator on their behalf) asked for erasure: `DELETE /v1/subjects/{id}`.
        ErasureRequest = "erasure_request",
        /// One face of a subject was deleted: `DELETE /v1/subjects/{id}/faces/{face_id}`.
        FaceDeletion = "face_deletion",
        /// The subject withdrew consent: `POST /v1/subjects/{id}/consent/withdraw`.
        ConsentWithdrawn = "consent_withdrawn",
        /// The consent record's `expires_at` passed.
        ConsentExpired = "consent_expired",
        /// Neither enrolled nor matched for `retention.inactive_subject_days`: the purpose of
        /// keeping the data is taken as achieved.
        InactiveSubject = "inactive_subject",
    }
}

named_enum! {
    /// Records kept only for a period (`retention.*_days`) and then pruned by age.
    pub enum RetainedRecord("retained record") {
        /// Decision records (verifications and identifications).
        Decisions = "decisions",
        AuditEvents = "audit_events",
        DestructionRecords = "destruction_records",
    }
}

/// Subjects due for erasure are those whose consent expired by `now`, whose consent was
/// withdrawn before `withdrawn_before`, or (when set) last active before `inactive_before`.
#[derive(Debug, Clone, Copy)]
pub struct ErasureCutoffs {
    pub now: DateTime<Utc>,
    pub withdrawn_before: DateTime<Utc>,
    pub inactive_before: Option<DateTime<Utc>>,
}

/// How many templates one template key sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUsage {
    pub key_id: String,
    pub templates: u64,
}

/// Who destroys what, and on which ground: what a destruction record needs that the store
/// cannot know.
#[derive(Debug, Clone)]
pub struct Destruction {
    pub ground: DestructionGround,
    /// The API key id, or `visage:<job>` for the service's own jobs.
    pub performed_by: String,
    /// Whether the record may keep the operator's id of the subject (`external_id`).
    pub keep_external_id: bool,
}

/// A category of personal data destroyed, and how many items of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedCategory {
    /// `biometric_templates`, `enrolment_images`, `probe_images`, `subject_record`
    /// (identifiers, metadata and the consent record).
    pub category: String,
    pub items: u64,
}

/// The record of one destruction of personal data (Roskomnadzor order No. 179, 2022): what
/// categories, how many items, the ground, the method, the date, who. Never a template, an
/// image or a name; the operator's id of the subject only when configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestructionRecord {
    pub id: Uuid,
    pub destroyed_at: DateTime<Utc>,
    pub subject_id: Uuid,
    pub collection: CollectionId,
    pub external_id: Option<String>,
    pub ground: DestructionGround,
    pub categories: Vec<DestroyedCategory>,
    pub method: String,
    pub performed_by: String,
}

impl DestructionRecord {
    /// Counts of zero are left out: a record lists what was there.
    pub(crate) fn new(
        destruction: &Destruction,
        subject_id: Uuid,
        collection: CollectionId,
        external_id: String,
        counts: &[(&str, u64)],
        method: &str,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            // Microseconds: what every backend keeps, so the record returned is the one stored.
            destroyed_at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 6),
            subject_id,
            collection,
            external_id: destruction.keep_external_id.then_some(external_id),
            ground: destruction.ground,
            categories: counts
                .iter()
                .filter(|(_, items)| *items > 0)
                .map(|(category, items)| DestroyedCategory {
                    category: (*category).to_owned(),
                    items: *items,
                })
                .collect(),
            method: method.to_owned(),
            performed_by: destruction.performed_by.clone(),
        }
    }
}

impl Erasure {
    /// What the destruction record lists: `probes` distinct probe photos went too.
    pub(crate) fn counts(&self, probes: usize) -> [(&'static str, u64); 4] {
        let enrolment_images = (self.image_refs.len() - probes) as u64;
        [
            ("biometric_templates", self.templates.len() as u64),
            ("enrolment_images", enrolment_images),
            ("probe_images", probes as u64),
            ("subject_record", 1),
        ]
    }
}

/// What a face deletion's destruction record lists.
pub(crate) fn face_counts(deleted: &[Template]) -> [(&'static str, u64); 2] {
    [
        ("biometric_templates", deleted.len() as u64),
        ("enrolment_images", deleted.iter().filter(|t| t.image_ref.is_some()).count() as u64),
    ]
}

/// API key roles; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read subjects and faces.
    Read,
    /// Detect, verify, identify and check liveness.
    Verify,
    /// Create subjects, enrol and delete faces, erase subjects.
    Enrol,
    /// Everything, plus collections and the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Verify => "verify",
            Self::Enrol => "enrol",
            Self::Admin => "admin",
        }
    }

    pub fn includes(self, required: Role) -> bool {
        self >= required
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Self::Read),
            "verify" => Ok(Self::Verify),
            "enrol" | "enroll" => Ok(Self::Enrol),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown role {other:?} (read, verify, enrol, admin)")),
        }
    }
}

/// The collections a key may touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CollectionScope {
    All,
    Only(Vec<CollectionId>),
}

impl CollectionScope {
    pub fn allows(&self, collection: &CollectionId) -> bool {
        match self {
            Self::All => true,
            Self::Only(ids) => ids.contains(collection),
        }
    }

    pub(crate) fn to_json(&self) -> String {
        let ids: Vec<&str> = match self {
            Self::All => vec!["*"],
            Self::Only(ids) => ids.iter().map(CollectionId::as_str).collect(),
        };
        serde_json::to_string(&ids).expect("strings serialize")
    }

    pub(crate) fn from_json(text: &str) -> Result<Self, String> {
        let ids: Vec<String> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if ids.iter().any(|id| id == "*") {
            return Ok(Self::All);
        }
        ids.into_iter().map(CollectionId::parse).collect::<Result<_, _>>().map(Self::Only)
    }
}

impl fmt::Display for CollectionScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Only(ids) => {
                let names: Vec<&str> = ids.iter().map(CollectionId::as_str).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub role: Role,
    pub scope: CollectionScope,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerificationMode {
    Verify,
    Identify,
}

impl VerificationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Identify => "identify",
        }
    }
}

/// One decision, kept so that ground truth can be attached to it later. Serde: a replica
/// spools it to disk while the database cannot be reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerificationRecord {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub api_key_id: Option<String>,
    pub mode: VerificationMode,
    pub collection: Option<CollectionId>,
    pub subject_id: Option<Uuid>,
    pub similarity: Option<f32>,
    pub threshold: f32,
    pub far_target: Option<f64>,
    pub decision: Decision,
    pub liveness_score: Option<f32>,
    /// The probe face's quality measures (JSON).
    pub probe_quality: Option<serde_json::Value>,
    /// The sealed probe image kept for review, and when it goes.
    pub probe: Option<KeptProbe>,
    /// Where the threshold came from (a calibration's name); absent on decisions made before
    /// decisions named it.
    #[serde(default)]
    pub calibration: Option<String>,
    /// The recognizer that gave the similarity; absent on decisions made before decisions
    /// named it.
    #[serde(default)]
    pub model: Option<String>,
}

/// A probe image kept for review: its object name and when it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptProbe {
    pub reference: String,
    pub expires_at: DateTime<Utc>,
}

named_enum! {
    /// What the service answered a verification or identification.
    pub enum Decision("decision") {
        Match = "match",
        NoMatch = "no_match",
    }
}

impl Decision {
    pub fn of(matched: bool) -> Self {
        if matched { Self::Match } else { Self::NoMatch }
    }

    pub fn is_match(self) -> bool {
        self == Self::Match
    }
}

/// Ground truth for a past decision, from manual review, a chargeback or an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truth {
    /// The probe was the claimed (or returned) person.
    Genuine,
    /// The probe was someone else.
    Impostor,
}

impl Truth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Genuine => "genuine",
            Self::Impostor => "impostor",
        }
    }
}

/// What labelling a verification found.
#[derive(Debug, Clone)]
pub enum Labelling {
    Missing,
    AlreadyLabelled,
    Labelled(Box<VerificationRecord>),
}

/// A labelled decision, as the error-rate monitoring needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelledVerification {
    pub genuine: bool,
    pub similarity: Option<f32>,
    /// The service answered match.
    pub accepted: bool,
}

/// Which destruction records to list: destroyed in `[from, to)`, oldest first, a page.
#[derive(Debug, Clone, Default)]
pub struct DestructionFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: u32,
    pub offset: u32,
}

/// A labelled decision's score, for thresholds calibrated from a deployment's own decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledScore {
    pub collection: Option<CollectionId>,
    pub genuine: bool,
    /// Absent for an identification that found no candidate: its score was never kept.
    pub similarity: Option<f32>,
}

/// Thresholds a collection earned from its own labelled decisions: a calibration file's JSON,
/// which the store keeps as it is given.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCalibration {
    pub collection: CollectionId,
    /// `feedback:<collection>:<date>`, as decisions name it.
    pub name: String,
    /// The recognizer the thresholds belong to.
    pub model: String,
    pub document: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionCounts {
    pub collection: String,
    pub subjects: u64,
    pub templates: u64,
}

/// Connections of the store's pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u32,
    pub max: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_ids_are_checked() {
        assert!(CollectionId::parse("staff-2026_a").is_ok());
        for bad in ["", "Staff", "a b", "../x", &"x".repeat(65)] {
            assert!(CollectionId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_include_the_lower_ones() {
        assert!(Role::Admin.includes(Role::Enrol));
        assert!(Role::Enrol.includes(Role::Verify));
        assert!(!Role::Verify.includes(Role::Enrol));
        assert!(!Role::Read.includes(Role::Verify));
    }

    #[test]
    fn scopes_round_trip_through_json() {
        let only = CollectionScope::Only(vec![CollectionId::parse("a").unwrap()]);
        assert_eq!(CollectionScope::from_json(&only.to_json()).unwrap(), only);
        assert_eq!(
            CollectionScope::from_json(&CollectionScope::All.to_json()).unwrap(),
            CollectionScope::All
        );
        assert!(!only.allows(&CollectionId::parse("b").unwrap()));
    }
}
