//! The embedded backend: one SQLite file, no server.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, Sqlite};
use uuid::Uuid;

use crate::crypto::SealedTemplate;
use crate::model::face_counts;
use crate::rows::{corrupt, record_mappers};
use crate::twins;
use crate::{
    ApiKeyRecord, AuditAction, AuditEvent, AuditFilter, Collection, CollectionCounts, CollectionId,
    CollectionScope, Decision, DecisionFilter, Destruction, DestructionFilter, DestructionGround,
    DestructionRecord, Entity, Erasure, ErasureCutoffs, GalleryChange, GalleryTemplate, KeptProbe, KeyUsage,
    LabelledScore, LabelledVerification, Labelling, ModelStatus, NewAuditEvent, NewSubject, PoolStats,
    RetainedRecord, ReviewedDecision, Role, Store, StoreError, StoreResult, StoredCalibration, Subject,
    Template, Truth, TwinFilter, VerificationMode, VerificationRecord,
};

const MAX_CONNECTIONS: u32 = 8;

/// Transactions that read before they write take the write lock up front: a deferred
/// transaction upgrading from read to write fails at once with "database is locked" when
/// another connection wrote meanwhile (the busy timeout does not apply to that upgrade).
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Stores templates in one transaction and, for a request that names itself, which ones.
    async fn insert_templates(&self, templates: &[Template], request_key: Option<&str>) -> StoreResult<()> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        for template in templates {
            insert_template(&mut *tx, template)
                .await
                .map_err(|err| StoreError::from_write(err, None, Some(Entity::Subject)))?;
        }
        if let Some(first) = templates.first() {
            sqlx::query("UPDATE subjects SET last_active_at = ? WHERE id = ?")
                .bind(Utc::now())
                .bind(first.subject_id)
                .execute(&mut *tx)
                .await?;
        }
        if let (Some(request_key), Some(first)) = (request_key, templates.first()) {
            let ids: Vec<Uuid> = templates.iter().map(|t| t.id).collect();
            sqlx::query(
                "INSERT INTO enrolment_requests (request_key, subject_id, template_ids, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(request_key)
            .bind(first.subject_id)
            .bind(serde_json::to_string(&ids).expect("ids serialize"))
            .bind(Utc::now())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            // Erased rows are overwritten with zeros, not left in free pages.
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

const SUBJECT_COLUMNS: &str = "s.id, s.collection_id, s.external_id, s.metadata, s.consent, s.created_at, s.consent_withdrawn_at,
     (SELECT COUNT(*) FROM templates t WHERE t.subject_id = s.id AND t.source_template_id IS NULL) AS face_count";

/// JSON columns are text.
fn json_column(row: &SqliteRow, column: &str) -> StoreResult<Option<serde_json::Value>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(column, e))).transpose()
}

record_mappers!(SqliteRow);

/// How this backend destroys, as destruction records state it.
const METHOD: &str = "rows deleted from the SQLite database with secure_delete (overwritten) and its write-ahead log truncated; sealed image objects deleted from the image store";

/// Writes the destruction record of `subject` (id, collection, external id) in the
/// transaction that destroys its data.
async fn record_destruction(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    destruction: &Destruction,
    (subject_id, collection, external_id): (Uuid, CollectionId, String),
    counts: &[(&str, u64)],
) -> StoreResult<DestructionRecord> {
    let r = DestructionRecord::new(destruction, subject_id, collection, external_id, counts, METHOD);
    sqlx::query(
        "INSERT INTO destruction_records (id, destroyed_at, subject_id, collection_id, external_id, ground,
                                          categories, method, performed_by)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(r.id)
    .bind(r.destroyed_at)
    .bind(r.subject_id)
    .bind(r.collection.as_str())
    .bind(&r.external_id)
    .bind(r.ground.as_str())
    .bind(serde_json::to_string(&r.categories).expect("categories serialize"))
    .bind(&r.method)
    .bind(&r.performed_by)
    .execute(&mut **tx)
    .await?;
    Ok(r)
}

const TEMPLATE_COLUMNS: &str =
    "id, subject_id, model, key_id, nonce, ciphertext, quality, image_ref, created_at, source_template_id";

async fn insert_template<'e>(
    executor: impl sqlx::Executor<'e, Database = Sqlite>,
    t: &Template,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO templates (id, subject_id, model, key_id, nonce, ciphertext, quality, image_ref, created_at,
                                source_template_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(t.id)
    .bind(t.subject_id)
    .bind(&t.model)
    .bind(&t.sealed.key_id)
    .bind(&t.sealed.nonce)
    .bind(&t.sealed.ciphertext)
    .bind(t.quality.to_string())
    .bind(&t.image_ref)
    .bind(t.created_at)
    .bind(t.source_template_id)
    .execute(executor)
    .await?;
    Ok(())
}

/// The face of template `t` (its original and that original's twins) has a template of
/// recognizer `$1`.
const FACE_HAS_MODEL: &str = "EXISTS (SELECT 1 FROM templates o WHERE o.model = $1
     AND (o.id = COALESCE(t.source_template_id, t.id) OR o.source_template_id = COALESCE(t.source_template_id, t.id)))";

/// `t` is an original without a twin of recognizer `$1`.
const ORIGINAL_WITHOUT_TWIN: &str = "t.source_template_id IS NULL
     AND NOT EXISTS (SELECT 1 FROM templates o WHERE o.source_template_id = t.id AND o.model = $1)";

fn twin_condition(filter: TwinFilter) -> String {
    match filter {
        TwinFilter::Missing => ORIGINAL_WITHOUT_TWIN.to_owned(),
        TwinFilter::Present => FACE_HAS_MODEL.to_owned(),
        TwinFilter::Any => "1 = 1".to_owned(),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn create_collection(&self, id: &CollectionId) -> StoreResult<Collection> {
        let created_at = Utc::now();
        let inserted =
            sqlx::query("INSERT INTO collections (id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .bind(id.as_str())
                .bind(created_at)
                .execute(&self.pool)
                .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(Entity::Collection));
        }
        Ok(Collection { id: id.clone(), created_at })
    }

    async fn list_collections(&self) -> StoreResult<Vec<Collection>> {
        let rows =
            sqlx::query("SELECT id, created_at FROM collections ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                Ok(Collection {
                    id: CollectionId::parse(id).map_err(|e| corrupt("collection", e))?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn collection_exists(&self, id: &CollectionId) -> StoreResult<bool> {
        let found = sqlx::query("SELECT 1 FROM collections WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn create_subject(&self, s: &NewSubject) -> StoreResult<Subject> {
        let consent = s.consent.as_ref().map(|c| serde_json::to_string(c).expect("consent serializes"));
        sqlx::query(
            "INSERT INTO subjects (id, collection_id, external_id, metadata, consent, created_at, consent_expires_at,
                                   last_active_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(s.id)
        .bind(s.collection.as_str())
        .bind(&s.external_id)
        .bind(s.metadata.as_ref().map(|m| m.to_string()))
        .bind(consent)
        .bind(s.created_at)
        .bind(s.consent.as_ref().and_then(|c| c.expires_at))
        .bind(s.created_at)
        .execute(&self.pool)
        .await
        .map_err(|err| StoreError::from_write(err, Some(Entity::Subject), Some(Entity::Collection)))?;
        Ok(Subject {
            id: s.id,
            collection: s.collection.clone(),
            external_id: s.external_id.clone(),
            metadata: s.metadata.clone(),
            consent: s.consent.clone(),
            created_at: s.created_at,
            face_count: 0,
            consent_withdrawn_at: None,
        })
    }

    async fn get_subject(&self, id: Uuid) -> StoreResult<Option<Subject>> {
        let sql = format!("SELECT {SUBJECT_COLUMNS} FROM subjects s WHERE s.id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(subject_from_row).transpose()
    }

    async fn list_subjects(
        &self,
        collection: &CollectionId,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Subject>> {
        let sql = format!(
            "SELECT {SUBJECT_COLUMNS} FROM subjects s
             WHERE s.collection_id = ? AND (? IS NULL OR s.id > ?) ORDER BY s.id LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(collection.as_str())
            .bind(after)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(subject_from_row).collect()
    }

    async fn find_subject(
        &self,
        collection: &CollectionId,
        external_id: &str,
    ) -> StoreResult<Option<Subject>> {
        let sql = format!(
            "SELECT {SUBJECT_COLUMNS} FROM subjects s WHERE s.collection_id = ? AND s.external_id = ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(collection.as_str())
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(subject_from_row).transpose()
    }

    async fn erase_subject(&self, id: Uuid, destruction: &Destruction) -> StoreResult<Option<Erasure>> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let found: Option<(String, String)> =
            sqlx::query_as("SELECT collection_id, external_id FROM subjects WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((collection, external_id)) = found else {
            // Release the write lock now rather than when the pool recycles the connection.
            tx.rollback().await?;
            return Ok(None);
        };
        let rows = sqlx::query("SELECT id, image_ref FROM templates WHERE subject_id = ?")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let mut erasure = Erasure::default();
        for row in &rows {
            erasure.templates.push(row.try_get("id")?);
            if let Some(image) = row.try_get::<Option<String>, _>("image_ref")? {
                erasure.image_refs.push(image);
            }
        }
        sqlx::query("DELETE FROM templates WHERE subject_id = ?").bind(id).execute(&mut *tx).await?;
        // The photos of decisions about the subject go with it, for every decision that names them.
        let probes: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT probe_ref FROM verifications WHERE subject_id = ? AND probe_ref IS NOT NULL",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        erasure.image_refs.extend(probes.iter().map(|(r,)| r.clone()));
        sqlx::query(
            "UPDATE verifications SET probe_ref = NULL, probe_expires_at = NULL WHERE probe_ref IN
             (SELECT probe_ref FROM verifications WHERE subject_id = ? AND probe_ref IS NOT NULL)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE verifications SET subject_id = NULL WHERE subject_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE audit_events SET subject_id = NULL WHERE subject_id = ? AND action <> ?")
            .bind(id)
            .bind(AuditAction::SubjectErase.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM subjects WHERE id = ?").bind(id).execute(&mut *tx).await?;
        let subject = (id, crate::rows::collection_id(collection)?, external_id);
        erasure.record =
            Some(record_destruction(&mut tx, destruction, subject, &erasure.counts(probes.len())).await?);
        tx.commit().await?;
        // Move the erased pages out of the write-ahead log so no copy of them survives there.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
        Ok(Some(erasure))
    }

    async fn add_templates(&self, templates: &[Template]) -> StoreResult<()> {
        self.insert_templates(templates, None).await
    }

    async fn add_templates_for_request(&self, templates: &[Template], request_key: &str) -> StoreResult<()> {
        self.insert_templates(templates, Some(request_key)).await
    }

    async fn templates_of_request(&self, request_key: &str) -> StoreResult<Option<Vec<Template>>> {
        let found: Option<(Uuid, String)> =
            sqlx::query_as("SELECT subject_id, template_ids FROM enrolment_requests WHERE request_key = ?")
                .bind(request_key)
                .fetch_optional(&self.pool)
                .await?;
        let Some((subject_id, ids)) = found else { return Ok(None) };
        let ids: Vec<Uuid> = serde_json::from_str(&ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut templates = self.list_templates(subject_id).await?;
        templates.retain(|t| ids.contains(&t.id));
        Ok(Some(templates))
    }

    async fn list_templates(&self, subject_id: Uuid) -> StoreResult<Vec<Template>> {
        let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE subject_id = ? ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(subject_id).fetch_all(&self.pool).await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn delete_template(
        &self,
        subject_id: Uuid,
        template_id: Uuid,
        destruction: &Destruction,
    ) -> StoreResult<Vec<Template>> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let face: Option<(Uuid,)> = sqlx::query_as(
            "SELECT COALESCE(source_template_id, id) FROM templates WHERE subject_id = ? AND id = ?",
        )
        .bind(subject_id)
        .bind(template_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((face,)) = face else {
            tx.rollback().await?;
            return Ok(Vec::new());
        };
        let sql = format!(
            "DELETE FROM templates WHERE subject_id = ? AND (id = ? OR source_template_id = ?)
             RETURNING {TEMPLATE_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(subject_id)
            .bind(face)
            .bind(face)
            .fetch_all(&mut *tx)
            .await?;
        let mut deleted = rows.iter().map(template_from_row).collect::<StoreResult<Vec<_>>>()?;
        let (collection, external_id): (String, String) =
            sqlx::query_as("SELECT collection_id, external_id FROM subjects WHERE id = ?")
                .bind(subject_id)
                .fetch_one(&mut *tx)
                .await?;
        let subject = (subject_id, crate::rows::collection_id(collection)?, external_id);
        record_destruction(&mut tx, destruction, subject, &face_counts(&deleted)).await?;
        tx.commit().await?;
        deleted.sort_by_key(|t| (t.id != template_id, t.id));
        Ok(deleted)
    }

    async fn destruction_records(&self, filter: &DestructionFilter) -> StoreResult<Vec<DestructionRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM destruction_records
             WHERE (?1 IS NULL OR destroyed_at >= ?1) AND (?2 IS NULL OR destroyed_at < ?2)
             ORDER BY destroyed_at, id LIMIT ?3 OFFSET ?4",
        )
        .bind(filter.from)
        .bind(filter.to)
        .bind(i64::from(filter.limit))
        .bind(i64::from(filter.offset))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(destruction_record_from_row).collect()
    }

    async fn all_templates(&self) -> StoreResult<Vec<GalleryTemplate>> {
        let rows = sqlx::query(
            "SELECT t.id, t.subject_id, t.model, t.key_id, t.nonce, t.ciphertext, t.quality, t.image_ref,
                    t.created_at, t.source_template_id, s.collection_id, s.external_id, s.consent_expires_at,
                    s.consent_withdrawn_at
             FROM templates t JOIN subjects s ON s.id = t.subject_id
             WHERE s.consent_withdrawn_at IS NULL ORDER BY t.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(gallery_template_from_row).collect()
    }

    async fn gallery_version(&self) -> StoreResult<i64> {
        // The pruned mark counts too: the log is never pruned empty, but a version must not
        // fall behind what was pruned.
        let version: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT MAX(seq) FROM gallery_changes), 0), pruned_through)
             FROM gallery_log_state",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(version)
    }

    async fn prune_gallery_changes(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        // `changed_at` is text in the trigger's format, which sorts like the time.
        let before = before.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        // Everything up to the newest old change goes, so the mark covers all that went.
        let through: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(seq) FROM gallery_changes
             WHERE changed_at < ? AND seq < (SELECT MAX(seq) FROM gallery_changes)",
        )
        .bind(before)
        .fetch_one(&mut *tx)
        .await?;
        let Some(through) = through else {
            tx.rollback().await?;
            return Ok(0);
        };
        let deleted =
            sqlx::query("DELETE FROM gallery_changes WHERE seq <= ?").bind(through).execute(&mut *tx).await?;
        sqlx::query("UPDATE gallery_log_state SET pruned_through = MAX(pruned_through, ?)")
            .bind(through)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected())
    }

    async fn gallery_pruned_through(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT pruned_through FROM gallery_log_state").fetch_one(&self.pool).await?)
    }

    async fn gallery_changes(&self, after: i64, limit: u32) -> StoreResult<Vec<GalleryChange>> {
        let rows = sqlx::query(
            "SELECT c.seq, c.template_id AS changed_id, t.id, t.subject_id, t.model, t.key_id, t.nonce,
                    t.ciphertext, t.quality, t.image_ref, t.created_at, t.source_template_id,
                    s.collection_id, s.external_id, s.consent_expires_at, s.consent_withdrawn_at
             FROM gallery_changes c
             LEFT JOIN templates t ON t.id = c.template_id
             LEFT JOIN subjects s ON s.id = t.subject_id
             WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(gallery_change_from_row).collect()
    }

    async fn model_status(&self, model: &str) -> StoreResult<ModelStatus> {
        let sql = format!(
            "SELECT COUNT(CASE WHEN t.model = $1 THEN 1 END) AS current,
                    COUNT(CASE WHEN t.model <> $1 AND {FACE_HAS_MODEL} THEN 1 END) AS twinned,
                    COUNT(CASE WHEN t.model <> $1 AND NOT {FACE_HAS_MODEL} THEN 1 END) AS untwinned,
                    COUNT(CASE WHEN t.model <> $1 AND {ORIGINAL_WITHOUT_TWIN} AND t.image_ref IS NOT NULL
                               THEN 1 END) AS reembeddable,
                    COUNT(CASE WHEN t.model <> $1 AND {ORIGINAL_WITHOUT_TWIN} AND t.image_ref IS NULL
                               THEN 1 END) AS without_image
             FROM templates t"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(model).fetch_one(&self.pool).await?;
        model_status_from_row(&row)
    }

    async fn other_model_templates(
        &self,
        model: &str,
        filter: TwinFilter,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Template>> {
        let sql = format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates t
             WHERE t.model <> $1 AND {} AND ($2 IS NULL OR t.id > $2) ORDER BY t.id LIMIT $3",
            twin_condition(filter)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(model)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn add_twin(&self, template: &Template) -> StoreResult<bool> {
        twins::check(template)?;
        twins::stored(insert_template(&self.pool, template).await)
    }

    async fn delete_templates(&self, ids: &[Uuid]) -> StoreResult<u64> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let mut deleted = 0;
        for id in ids {
            deleted += sqlx::query("DELETE FROM templates WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn image_refs(&self) -> StoreResult<Vec<String>> {
        let refs: Vec<(String,)> = sqlx::query_as(
            "SELECT image_ref FROM templates WHERE image_ref IS NOT NULL
                 UNION SELECT probe_ref FROM verifications WHERE probe_ref IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut refs: Vec<String> = refs.into_iter().map(|(r,)| r).collect();
        refs.sort();
        Ok(refs)
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, secret_hash, role, collections, created_at, revoked_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.secret_hash)
        .bind(key.role.as_str())
        .bind(key.scope.to_json())
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(|err| StoreError::from_write(err, Some(Entity::ApiKey), None))?;
        Ok(())
    }

    async fn get_api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row =
            sqlx::query("SELECT * FROM api_keys WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows =
            sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id").fetch_all(&self.pool).await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: &str) -> StoreResult<bool> {
        let revoked = sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(Utc::now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(revoked.rows_affected() == 1)
    }

    async fn record_verification(&self, v: &VerificationRecord) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO verifications (id, created_at, api_key_id, mode, collection_id, subject_id, similarity,
                                        threshold, far_target, decision, liveness_score, probe_quality,
                                        probe_ref, probe_expires_at, calibration, model)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(v.id)
        .bind(v.created_at)
        .bind(&v.api_key_id)
        .bind(v.mode.as_str())
        .bind(v.collection.as_ref().map(CollectionId::as_str))
        .bind(v.subject_id)
        .bind(v.similarity)
        .bind(v.threshold)
        .bind(v.far_target)
        .bind(v.decision.as_str())
        .bind(v.liveness_score)
        .bind(v.probe_quality.as_ref().map(serde_json::Value::to_string))
        .bind(v.probe.as_ref().map(|p| p.reference.as_str()))
        .bind(v.probe.as_ref().map(|p| p.expires_at))
        .bind(&v.calibration)
        .bind(&v.model)
        .execute(&self.pool)
        .await?;
        let kept = done.rows_affected() == 1;
        if let (true, true, Some(subject)) = (kept, v.decision.is_match(), v.subject_id) {
            // A match is the subject's activity (a replayed decision may be older than the last).
            sqlx::query(
                "UPDATE subjects SET last_active_at = MAX(COALESCE(last_active_at, ?1), ?1) WHERE id = ?2",
            )
            .bind(v.created_at)
            .bind(subject)
            .execute(&self.pool)
            .await?;
        }
        Ok(kept)
    }

    async fn get_verification(&self, id: Uuid) -> StoreResult<Option<VerificationRecord>> {
        let row = sqlx::query("SELECT * FROM verifications WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(verification_from_row).transpose()
    }

    async fn label_verification(&self, id: Uuid, truth: Truth, source: &str) -> StoreResult<Labelling> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let Some(row) =
            sqlx::query("SELECT * FROM verifications WHERE id = ?").bind(id).fetch_optional(&mut *tx).await?
        else {
            tx.rollback().await?;
            return Ok(Labelling::Missing);
        };
        if row.try_get::<Option<String>, _>("truth")?.is_some() {
            tx.rollback().await?;
            return Ok(Labelling::AlreadyLabelled);
        }
        let record = verification_from_row(&row)?;
        sqlx::query("UPDATE verifications SET truth = ?, truth_source = ?, labelled_at = ? WHERE id = ?")
            .bind(truth.as_str())
            .bind(source)
            .bind(Utc::now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Labelling::Labelled(Box::new(record)))
    }

    async fn labelled_verifications(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<LabelledVerification>> {
        let rows = sqlx::query(
            "SELECT truth, similarity, decision FROM verifications
             WHERE truth IS NOT NULL AND created_at >= ? ORDER BY labelled_at DESC LIMIT ?",
        )
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let truth: String = row.try_get("truth")?;
                let decision: Decision = crate::rows::named(row.try_get("decision")?)?;
                Ok(LabelledVerification {
                    genuine: truth == "genuine",
                    similarity: row.try_get("similarity")?,
                    accepted: decision.is_match(),
                })
            })
            .collect()
    }

    async fn labelled_scores(
        &self,
        collection: Option<&CollectionId>,
        model: &str,
    ) -> StoreResult<Vec<LabelledScore>> {
        let rows = sqlx::query(
            "SELECT collection_id, truth, similarity FROM verifications
             WHERE truth IS NOT NULL AND (?1 IS NULL OR collection_id = ?1) AND (model IS NULL OR model = ?2)",
        )
        .bind(collection.map(CollectionId::as_str))
        .bind(model)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(labelled_score_from_row).collect()
    }

    async fn due_erasures(
        &self,
        cutoffs: &ErasureCutoffs,
        limit: u32,
    ) -> StoreResult<Vec<(Uuid, DestructionGround)>> {
        // One query per ground: the subjects past its cutoff, oldest first.
        let before = |sql: &'static str, cutoff: DateTime<Utc>| {
            sqlx::query_as::<_, (Uuid,)>(sql).bind(cutoff).bind(i64::from(limit)).fetch_all(&self.pool)
        };
        let expired = before(
            "SELECT id FROM subjects WHERE consent_expires_at <= ? ORDER BY consent_expires_at LIMIT ?",
            cutoffs.now,
        )
        .await?;
        let withdrawn = before(
            "SELECT id FROM subjects WHERE consent_withdrawn_at <= ? ORDER BY consent_withdrawn_at LIMIT ?",
            cutoffs.withdrawn_before,
        )
        .await?;
        let inactive = match cutoffs.inactive_before {
            Some(cutoff) => {
                before(
                    "SELECT id FROM subjects WHERE last_active_at < ? ORDER BY last_active_at LIMIT ?",
                    cutoff,
                )
                .await?
            }
            None => Vec::new(),
        };
        Ok(crate::retention::due(expired, withdrawn, inactive, limit as usize))
    }

    async fn withdraw_consent(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<Option<Subject>> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let done = sqlx::query(
            "UPDATE subjects SET consent_withdrawn_at = COALESCE(consent_withdrawn_at, ?) WHERE id = ?",
        )
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        // Logged as changes, the subject's templates leave every process's index.
        sqlx::query(
            "INSERT INTO gallery_changes (template_id) SELECT id FROM templates WHERE subject_id = ?",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let sql = format!("SELECT {SUBJECT_COLUMNS} FROM subjects s WHERE s.id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *tx).await?;
        let subject = subject_from_row(&row)?;
        tx.commit().await?;
        Ok(Some(subject))
    }

    async fn prune(&self, record: RetainedRecord, before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        let sql = match record {
            RetainedRecord::Decisions => {
                "DELETE FROM verifications WHERE id IN
                 (SELECT id FROM verifications WHERE created_at < ? AND probe_ref IS NULL LIMIT ?)"
            }
            RetainedRecord::AuditEvents => {
                "DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_events WHERE at < ? LIMIT ?)"
            }
            RetainedRecord::DestructionRecords => {
                "DELETE FROM destruction_records WHERE id IN
                 (SELECT id FROM destruction_records WHERE destroyed_at < ? LIMIT ?)"
            }
        };
        let done = sqlx::query(sql).bind(before).bind(i64::from(limit)).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn template_key_usage(&self) -> StoreResult<Vec<KeyUsage>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT key_id, COUNT(*) FROM templates GROUP BY key_id ORDER BY key_id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(key_id, n)| KeyUsage { key_id, templates: n as u64 }).collect())
    }

    async fn templates_after(&self, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Template>> {
        let sql = format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates t WHERE ($1 IS NULL OR t.id > $1) ORDER BY t.id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn reseal_template(
        &self,
        id: Uuid,
        previous: &SealedTemplate,
        sealed: &SealedTemplate,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE templates SET key_id = ?, nonce = ?, ciphertext = ? WHERE id = ? AND key_id = ? AND nonce = ?",
        )
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(id)
        .bind(&previous.key_id)
        .bind(&previous.nonce)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn kept_probes(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<String>> {
        let refs: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT probe_ref FROM verifications WHERE probe_ref IS NOT NULL AND probe_ref > ?
             ORDER BY probe_ref LIMIT ?",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(refs.into_iter().map(|(r,)| r).collect())
    }

    async fn image_in_use(&self, reference: &str) -> StoreResult<bool> {
        let used: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM templates WHERE image_ref = ?1)
                 OR EXISTS (SELECT 1 FROM verifications WHERE probe_ref = ?1)",
        )
        .bind(reference)
        .fetch_one(&self.pool)
        .await?;
        Ok(used)
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO job_leases (name, holder, until) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE job_leases.until <= ? OR job_leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_collection_calibration(&self, c: &StoredCalibration) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO collection_calibrations (collection_id, name, model, document, created_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (collection_id) DO UPDATE SET name = excluded.name, model = excluded.model,
                 document = excluded.document, created_at = excluded.created_at",
        )
        .bind(c.collection.as_str())
        .bind(&c.name)
        .bind(&c.model)
        .bind(&c.document)
        .bind(c.created_at)
        .execute(&self.pool)
        .await
        .map_err(|err| StoreError::from_write(err, None, Some(Entity::Collection)))?;
        Ok(())
    }

    async fn collection_calibrations(&self) -> StoreResult<Vec<StoredCalibration>> {
        let rows = sqlx::query("SELECT * FROM collection_calibrations ORDER BY collection_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_calibration_from_row).collect()
    }

    async fn delete_collection_calibration(&self, collection: &CollectionId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM collection_calibrations WHERE collection_id = ?")
            .bind(collection.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn expired_probes(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<String>> {
        let refs: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT probe_ref FROM verifications
             WHERE probe_ref IS NOT NULL AND probe_expires_at <= ? LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(refs.into_iter().map(|(r,)| r).collect())
    }

    async fn forget_probes(&self, references: &[String]) -> StoreResult<u64> {
        if references.is_empty() {
            return Ok(0);
        }
        let done =
            crate::filters::forget_probes_query::<Sqlite>(references).build().execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn list_decisions(&self, filter: &DecisionFilter) -> StoreResult<Vec<ReviewedDecision>> {
        let rows = crate::filters::decisions_query::<Sqlite>(filter).build().fetch_all(&self.pool).await?;
        rows.iter().map(reviewed_decision_from_row).collect()
    }

    async fn counts(&self) -> StoreResult<Vec<CollectionCounts>> {
        let rows = sqlx::query(
            "SELECT c.id,
                    (SELECT COUNT(*) FROM subjects s WHERE s.collection_id = c.id) AS subjects,
                    (SELECT COUNT(*) FROM templates t JOIN subjects s ON s.id = t.subject_id
                      WHERE s.collection_id = c.id) AS templates
             FROM collections c ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CollectionCounts {
                    collection: row.try_get("id")?,
                    subjects: row.try_get::<i64, _>("subjects")? as u64,
                    templates: row.try_get::<i64, _>("templates")? as u64,
                })
            })
            .collect()
    }

    fn pool_stats(&self) -> PoolStats {
        let open = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        PoolStats { in_use: open.saturating_sub(idle), max: MAX_CONNECTIONS }
    }

    async fn append_audit(&self, e: &NewAuditEvent) -> StoreResult<()> {
        self.append_audit_once(e, Uuid::now_v7(), Utc::now()).await.map(|_| ())
    }

    async fn append_audit_once(
        &self,
        e: &NewAuditEvent,
        event_id: Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO audit_events (at, api_key_id, action, outcome, collection_id, subject_id, detail, event_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(at)
        .bind(&e.api_key_id)
        .bind(e.action.as_str())
        .bind(e.outcome.as_str())
        .bind(e.collection.as_ref().map(CollectionId::as_str))
        .bind(e.subject_id)
        .bind(e.detail.to_string())
        .bind(event_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        after_seq: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>> {
        let rows = crate::filters::audit_query::<Sqlite>(filter, after_seq, limit)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_event_from_row).collect()
    }
}

/// Backups (`visage backup` and `visage restore`): a consistent copy of the file while the
/// service keeps writing, and the schema version a copy was made at.
impl SqliteStore {
    /// Writes a consistent copy of the database to `path` (which must not exist) with
    /// `VACUUM INTO`, over a connection of its own: it reads one snapshot of the write-ahead
    /// log, so writers carry on meanwhile. The copy holds no free pages (nothing erased).
    pub async fn snapshot_into(&self, path: &Path) -> StoreResult<()> {
        let target = path.to_str().ok_or_else(|| {
            StoreError::Database(sqlx::Error::Configuration("the snapshot path is not UTF-8".into()))
        })?;
        sqlx::query("VACUUM INTO ?").bind(target).execute(&self.pool).await?;
        Ok(())
    }

    /// The newest migration applied to this database.
    pub async fn schema_version(&self) -> StoreResult<i64> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(version.unwrap_or(0))
    }

    /// The newest migration this build knows: a database past it was written by a newer visage.
    pub fn latest_schema_version() -> i64 {
        sqlx::migrate!("./migrations/sqlite").iter().map(|m| m.version).max().unwrap_or(0)
    }
}
