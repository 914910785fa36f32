//! Storage for visage. The service talks to [`Store`]; the embedded backend is SQLite
//! ([`SqliteStore`]), the server backend PostgreSQL ([`PostgresStore`]).
//!
//! Templates reach the store already sealed ([`crypto::KeyRing`]): no backend ever sees a
//! template in the clear.

mod audit;
pub mod crypto;
mod error;
mod filters;
mod model;
mod names;
mod postgres;
mod retention;
mod rows;
mod sqlite;
#[cfg(feature = "test-support")]
pub mod testing;
mod twins;

use async_trait::async_trait;
use uuid::Uuid;

pub use audit::{AuditAction, AuditEvent, AuditOutcome, NewAuditEvent};
pub use error::{Entity, StoreError};
pub use filters::{AuditFilter, DecisionFilter, DecisionOrder, ReviewedDecision};
pub use model::*;
pub use names::UnknownName;
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the service persists. Implementations must make each method atomic.
#[async_trait]
pub trait Store: Send + Sync {
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> StoreResult<()>;
    /// Waits for open connections to finish, at shutdown.
    async fn close(&self) {}

    async fn create_collection(&self, id: &CollectionId) -> StoreResult<Collection>;
    async fn list_collections(&self) -> StoreResult<Vec<Collection>>;
    async fn collection_exists(&self, id: &CollectionId) -> StoreResult<bool>;

    /// Fails with `Conflict` when the external id is taken in the collection.
    async fn create_subject(&self, subject: &NewSubject) -> StoreResult<Subject>;
    async fn get_subject(&self, id: Uuid) -> StoreResult<Option<Subject>>;
    /// Subjects of a collection in creation order, after the cursor subject.
    async fn list_subjects(
        &self,
        collection: &CollectionId,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Subject>>;
    async fn find_subject(
        &self,
        collection: &CollectionId,
        external_id: &str,
    ) -> StoreResult<Option<Subject>>;
    /// Deletes the subject, its templates and its link from past verifications, and writes
    /// its destruction record in the same transaction; `None` when there was no such subject.
    async fn erase_subject(&self, id: Uuid, destruction: &Destruction) -> StoreResult<Option<Erasure>>;

    /// Stores all templates or none.
    async fn add_templates(&self, templates: &[Template]) -> StoreResult<()>;
    async fn list_templates(&self, subject_id: Uuid) -> StoreResult<Vec<Template>>;
    /// [`Store::add_templates`] for a request that names itself (`request_key`), recording in
    /// the same transaction which templates it stored.
    async fn add_templates_for_request(&self, templates: &[Template], request_key: &str) -> StoreResult<()>;
    /// The templates a request stored, when one with this key did (and its subject is not
    /// erased); deleted faces are left out.
    async fn templates_of_request(&self, request_key: &str) -> StoreResult<Option<Vec<Template>>>;
    /// Deletes a face: the template and the other templates of its face (its original and
    /// their re-embedded twins), so that no recognizer keeps matching a deleted face. Returns
    /// them (empty when the subject has no such template), the named one first; writes the
    /// destruction record in the same transaction.
    async fn delete_template(
        &self,
        subject_id: Uuid,
        template_id: Uuid,
        destruction: &Destruction,
    ) -> StoreResult<Vec<Template>>;
    /// Destruction records, oldest first.
    async fn destruction_records(&self, filter: &DestructionFilter) -> StoreResult<Vec<DestructionRecord>>;
    /// Every template of every subject, for building the 1:N index.
    async fn all_templates(&self) -> StoreResult<Vec<GalleryTemplate>>;
    /// Number of the newest gallery change (0 before the first). Changes are numbered in
    /// commit order: whoever has applied change N has seen every change before it.
    async fn gallery_version(&self) -> StoreResult<i64>;
    /// Gallery changes (templates added or removed, by anyone) after `after`, oldest first.
    async fn gallery_changes(&self, after: i64, limit: u32) -> StoreResult<Vec<GalleryChange>>;
    /// Deletes the gallery changes recorded before `before` (never the newest) and returns
    /// how many went. Whoever has applied fewer than [`Store::gallery_pruned_through`] may have
    /// missed a change and must reload instead of replaying.
    async fn prune_gallery_changes(&self, before: chrono::DateTime<chrono::Utc>) -> StoreResult<u64>;
    /// The newest pruned change (0 before the first pruning).
    async fn gallery_pruned_through(&self) -> StoreResult<i64>;
    /// Returns when another process may have changed the gallery, or after `timeout`.
    /// Backends without change notifications just wait.
    async fn wait_for_gallery_change(&self, timeout: std::time::Duration) {
        tokio::time::sleep(timeout).await;
    }

    /// Counts for a change to recognizer `model` (`visage reembed`).
    async fn model_status(&self, model: &str) -> StoreResult<ModelStatus>;
    /// Templates of recognizers other than `model` that match `filter`, in id order after
    /// `after`.
    async fn other_model_templates(
        &self,
        model: &str,
        filter: TwinFilter,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Template>>;
    /// Stores a re-embedded twin (its `source_template_id` set). `false`, storing nothing, when
    /// the source template is gone (its face was deleted or its subject erased meanwhile) or
    /// already has a twin of this model.
    async fn add_twin(&self, template: &Template) -> StoreResult<bool>;
    /// Deletes templates by id (pruning an old model); returns how many there were. Twins of
    /// a deleted template become originals.
    async fn delete_templates(&self, ids: &[Uuid]) -> StoreResult<u64>;
    /// Every stored image reference, for finding images no template refers to.
    async fn image_refs(&self) -> StoreResult<Vec<String>>;

    async fn create_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    async fn get_api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>>;
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// True when an active key was revoked.
    async fn revoke_api_key(&self, id: &str) -> StoreResult<bool>;

    /// Keeps a decision, once: true when it was kept now, false when a decision with its id
    /// was kept already (a spooled decision replayed again).
    async fn record_verification(&self, record: &VerificationRecord) -> StoreResult<bool>;
    async fn get_verification(&self, id: Uuid) -> StoreResult<Option<VerificationRecord>>;
    /// Attaches ground truth to a decision, once.
    async fn label_verification(&self, id: Uuid, truth: Truth, source: &str) -> StoreResult<Labelling>;
    /// The latest `limit` labelled decisions made since `since`.
    async fn labelled_verifications(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> StoreResult<Vec<LabelledVerification>>;
    /// Every labelled decision of `collection` (all when `None`) whose similarity came from the
    /// recognizer `model` (or from an unnamed one: decisions made before they named it).
    async fn labelled_scores(
        &self,
        collection: Option<&CollectionId>,
        model: &str,
    ) -> StoreResult<Vec<LabelledScore>>;
    /// Subjects due for erasure by the retention job, with the ground of each, at most `limit`:
    /// consent expired, consent withdrawn long enough ago, inactive for too long (in that order
    /// of precedence).
    async fn due_erasures(
        &self,
        cutoffs: &ErasureCutoffs,
        limit: u32,
    ) -> StoreResult<Vec<(Uuid, DestructionGround)>>;
    /// Records that the subject withdrew consent at `at`: from now on it is out of the 1:N index
    /// (its templates are logged as gallery changes, so every replica drops them) until it is
    /// erased. `None` when there is no such subject; a second withdrawal keeps the first date.
    async fn withdraw_consent(
        &self,
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Option<Subject>>;
    /// Deletes up to `limit` records of a kind made before `before`; returns how many went.
    /// Decisions whose probe image is still kept are left for the probe sweep to unlink first.
    async fn prune(
        &self,
        record: RetainedRecord,
        before: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> StoreResult<u64>;
    /// How many templates each template key sealed.
    async fn template_key_usage(&self) -> StoreResult<Vec<KeyUsage>>;
    /// Templates of every recognizer in id order after `after`, for re-sealing.
    async fn templates_after(&self, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Template>>;
    /// Replaces a template's sealed value, unless it changed (or went) since it was read as
    /// `previous`; true when replaced. The values stay the same, so no gallery change is logged.
    async fn reseal_template(
        &self,
        id: Uuid,
        previous: &crypto::SealedTemplate,
        sealed: &crypto::SealedTemplate,
    ) -> StoreResult<bool>;
    /// Distinct kept probe images, in reference order after `after`.
    async fn kept_probes(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<String>>;
    /// Whether a template or a decision still refers to the image.
    async fn image_in_use(&self, reference: &str) -> StoreResult<bool>;
    /// Takes or renews the lease `name` for `holder` until `until`; false while another holder's
    /// lease runs (at `now`). One replica at a time runs a job that holds one.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool>;
    /// Keeps a collection's calibration, replacing the one it had.
    async fn put_collection_calibration(&self, calibration: &StoredCalibration) -> StoreResult<()>;
    async fn collection_calibrations(&self) -> StoreResult<Vec<StoredCalibration>>;
    /// True when the collection had a calibration of its own.
    async fn delete_collection_calibration(&self, collection: &CollectionId) -> StoreResult<bool>;
    /// Probe images whose retention ended by `now`, at most `limit`.
    async fn expired_probes(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>>;
    /// Unlinks deleted probe images from every decision that named them.
    async fn forget_probes(&self, references: &[String]) -> StoreResult<u64>;
    /// Decisions with their labels, for the review queue.
    async fn list_decisions(&self, filter: &DecisionFilter) -> StoreResult<Vec<ReviewedDecision>>;
    /// Subjects and templates per collection.
    async fn counts(&self) -> StoreResult<Vec<CollectionCounts>>;
    fn pool_stats(&self) -> PoolStats {
        PoolStats::default()
    }

    async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()>;
    /// Appends an event that happened at `at`, once: an event with this `event_id` already
    /// stored is left alone (a replay of a spooled event, a retry of a write that failed without
    /// saying whether it committed). True when it was appended now.
    async fn append_audit_once(
        &self,
        event: &NewAuditEvent,
        event_id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool>;
    /// Events after `after_seq` that pass `filter`, oldest first.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        after_seq: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>>;
}
