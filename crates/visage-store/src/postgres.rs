//! The server backend: PostgreSQL, shared by every replica of the service.

use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row};
use uuid::Uuid;

use crate::crypto::SealedTemplate;
use crate::model::face_counts;
use crate::rows::{collection_id, record_mappers};
use crate::twins;
use crate::{
    ApiKeyRecord, AuditAction, AuditEvent, AuditFilter, Collection, CollectionCounts, CollectionId,
    CollectionScope, Decision, DecisionFilter, Destruction, DestructionFilter, DestructionGround,
    DestructionRecord, Entity, Erasure, ErasureCutoffs, GalleryChange, GalleryTemplate, KeptProbe, KeyUsage,
    LabelledScore, LabelledVerification, Labelling, ModelStatus, NewAuditEvent, NewSubject, PoolStats,
    RetainedRecord, ReviewedDecision, Role, Store, StoreError, StoreResult, StoredCalibration, Subject,
    Template, Truth, TwinFilter, VerificationMode, VerificationRecord,
};

/// How the service reaches PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database`: the primary, for every write.
    pub url: String,
    /// A streaming replica for list endpoints and monitoring queries; the primary answers
    /// them when it is unset or unreachable.
    pub read_url: Option<String>,
    pub max_connections: u32,
    /// How long a request waits for a connection before failing as unavailable: when the
    /// database is down this bounds how long a request takes to be answered 503.
    pub acquire_timeout: Duration,
}

/// Channel of the notification sent when templates are added or removed (migration 0002).
const GALLERY_CHANNEL: &str = "visage_gallery";

pub struct PostgresStore {
    pool: PgPool,
    /// For the listening connection.
    url: String,
    /// Replica reads; `None` without a read URL.
    read_pool: Option<PgPool>,
    /// A dedicated connection listening for gallery changes, opened on first use and
    /// reopened after the database comes back.
    listener: tokio::sync::Mutex<Option<PgListener>>,
    /// After a failed replica read, reads go to the primary until then, instead of each one
    /// waiting for the replica first.
    replica_down_until: std::sync::Mutex<Option<Instant>>,
}

/// How long reads stay on the primary after the replica failed.
const REPLICA_REST: Duration = Duration::from_secs(5);

impl PostgresStore {
    /// Stores templates in one transaction and, for a request that names itself, which ones.
    async fn insert_templates(&self, templates: &[Template], request_key: Option<&str>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for template in templates {
            insert_template(&mut *tx, template)
                .await
                .map_err(|err| StoreError::from_write(err, None, Some(Entity::Subject)))?;
        }
        if let Some(first) = templates.first() {
            sqlx::query("UPDATE subjects SET last_active_at = GREATEST(last_active_at, $1) WHERE id = $2")
                .bind(stored(Utc::now()))
                .bind(first.subject_id)
                .execute(&mut *tx)
                .await?;
        }
        if let (Some(request_key), Some(first)) = (request_key, templates.first()) {
            let ids: Vec<Uuid> = templates.iter().map(|t| t.id).collect();
            sqlx::query(
                "INSERT INTO enrolment_requests (request_key, subject_id, template_ids, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(request_key)
            .bind(first.subject_id)
            .bind(&ids)
            .bind(stored(Utc::now()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Connects and applies pending migrations (under PostgreSQL's advisory lock, so replicas
    /// starting together migrate once).
    pub async fn connect(options: &PostgresOptions) -> StoreResult<Self> {
        let connect = PgConnectOptions::from_str(&options.url)?.application_name("visage");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(StoreError::from_connect)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let read_pool = match options.read_url.as_deref().filter(|url| !url.is_empty()) {
            // Lazy: a replica that is down at start must not keep the service from starting.
            Some(url) => Some(
                PgPoolOptions::new()
                    .max_connections(options.max_connections)
                    // Reads fall back to the primary, so don't wait long for the replica.
                    .acquire_timeout(options.acquire_timeout.min(Duration::from_secs(1)))
                    .connect_lazy_with(PgConnectOptions::from_str(url)?.application_name("visage-read")),
            ),
            None => None,
        };
        Ok(Self {
            pool,
            url: options.url.clone(),
            read_pool,
            listener: tokio::sync::Mutex::new(None),
            replica_down_until: std::sync::Mutex::new(None),
        })
    }

    /// Runs a read-only query on the replica, or on the primary when there is no replica or
    /// it cannot be reached. Replicas lag a little: only listings and monitoring use this,
    /// never a read that must see the caller's own write of a moment ago.
    async fn fetch_all_read<'q>(&self, query: impl Fn() -> PgQuery<'q>) -> StoreResult<Vec<PgRow>> {
        if let Some(replica) = &self.read_pool {
            let resting = self
                .replica_down_until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|until| Instant::now() < until);
            if !resting {
                match query().fetch_all(replica).await {
                    Ok(rows) => return Ok(rows),
                    Err(err) => {
                        tracing::warn!(error = %err, "read replica unavailable: reading from the primary");
                        *self.replica_down_until.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Instant::now() + REPLICA_REST);
                    }
                }
            }
        }
        Ok(query().fetch_all(&self.pool).await?)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// TIMESTAMPTZ keeps microseconds: values are cut to that before they are stored, so what a
/// method returns equals what a later read returns.
/// How this backend destroys, as destruction records state it.
const METHOD: &str = "rows deleted from the PostgreSQL database (their space reclaimed by VACUUM); sealed image objects deleted from the image store";

/// Writes the destruction record of `subject` (id, collection, external id) in the
/// transaction that destroys its data.
async fn record_destruction(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    destruction: &Destruction,
    (subject_id, collection, external_id): (Uuid, CollectionId, String),
    counts: &[(&str, u64)],
) -> StoreResult<DestructionRecord> {
    let r = DestructionRecord::new(destruction, subject_id, collection, external_id, counts, METHOD);
    sqlx::query(
        "INSERT INTO destruction_records (id, destroyed_at, subject_id, collection_id, external_id, ground,
                                          categories, method, performed_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(r.id)
    .bind(stored(r.destroyed_at))
    .bind(r.subject_id)
    .bind(r.collection.as_str())
    .bind(&r.external_id)
    .bind(r.ground.as_str())
    .bind(serde_json::to_value(&r.categories).expect("categories serialize"))
    .bind(&r.method)
    .bind(&r.performed_by)
    .execute(&mut **tx)
    .await?;
    Ok(r)
}

fn stored(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// JSONB columns decode as JSON values.
fn json_column(row: &PgRow, column: &str) -> StoreResult<Option<serde_json::Value>> {
    Ok(row.try_get(column)?)
}

record_mappers!(PgRow);

const SUBJECT_COLUMNS: &str = "s.id, s.collection_id, s.external_id, s.metadata, s.consent, s.created_at, s.consent_withdrawn_at,
     (SELECT COUNT(*) FROM templates t WHERE t.subject_id = s.id AND t.source_template_id IS NULL) AS face_count";

const TEMPLATE_COLUMNS: &str =
    "id, subject_id, model, key_id, nonce, ciphertext, quality, image_ref, created_at, source_template_id";

async fn insert_template<'e>(
    executor: impl sqlx::Executor<'e, Database = Postgres>,
    t: &Template,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO templates (id, subject_id, model, key_id, nonce, ciphertext, quality, image_ref, created_at,
                                source_template_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(t.id)
    .bind(t.subject_id)
    .bind(&t.model)
    .bind(&t.sealed.key_id)
    .bind(&t.sealed.nonce)
    .bind(&t.sealed.ciphertext)
    .bind(&t.quality)
    .bind(&t.image_ref)
    .bind(stored(t.created_at))
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

fn twin_condition(filter: TwinFilter) -> &'static str {
    match filter {
        TwinFilter::Missing => ORIGINAL_WITHOUT_TWIN,
        TwinFilter::Present => FACE_HAS_MODEL,
        TwinFilter::Any => "TRUE",
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        if let Ok(mut listener) = self.listener.try_lock() {
            *listener = None;
        }
        self.pool.close().await;
        if let Some(replica) = &self.read_pool {
            replica.close().await;
        }
    }

    async fn create_collection(&self, id: &CollectionId) -> StoreResult<Collection> {
        let created_at = stored(Utc::now());
        let inserted =
            sqlx::query("INSERT INTO collections (id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
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
            self.fetch_all_read(|| sqlx::query("SELECT id, created_at FROM collections ORDER BY id")).await?;
        rows.iter()
            .map(|row| {
                Ok(Collection {
                    id: collection_id(row.try_get("id")?)?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn collection_exists(&self, id: &CollectionId) -> StoreResult<bool> {
        let found = sqlx::query("SELECT 1 FROM collections WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn create_subject(&self, s: &NewSubject) -> StoreResult<Subject> {
        let consent = s.consent.as_ref().map(|c| serde_json::to_value(c).expect("consent serializes"));
        let created_at = stored(s.created_at);
        sqlx::query(
            "INSERT INTO subjects (id, collection_id, external_id, metadata, consent, created_at, consent_expires_at,
                                   last_active_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $6)",
        )
        .bind(s.id)
        .bind(s.collection.as_str())
        .bind(&s.external_id)
        .bind(&s.metadata)
        .bind(consent)
        .bind(created_at)
        .bind(s.consent.as_ref().and_then(|c| c.expires_at).map(stored))
        .execute(&self.pool)
        .await
        .map_err(|err| StoreError::from_write(err, Some(Entity::Subject), Some(Entity::Collection)))?;
        Ok(Subject {
            id: s.id,
            collection: s.collection.clone(),
            external_id: s.external_id.clone(),
            metadata: s.metadata.clone(),
            consent: s.consent.clone(),
            created_at,
            face_count: 0,
            consent_withdrawn_at: None,
        })
    }

    async fn get_subject(&self, id: Uuid) -> StoreResult<Option<Subject>> {
        let sql = format!("SELECT {SUBJECT_COLUMNS} FROM subjects s WHERE s.id = $1");
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
             WHERE s.collection_id = $1 AND ($2::uuid IS NULL OR s.id > $2) ORDER BY s.id LIMIT $3"
        );
        let rows = self
            .fetch_all_read(|| {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(collection.as_str().to_owned())
                    .bind(after)
                    .bind(i64::from(limit))
            })
            .await?;
        rows.iter().map(subject_from_row).collect()
    }

    async fn find_subject(
        &self,
        collection: &CollectionId,
        external_id: &str,
    ) -> StoreResult<Option<Subject>> {
        let sql = format!(
            "SELECT {SUBJECT_COLUMNS} FROM subjects s WHERE s.collection_id = $1 AND s.external_id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(collection.as_str())
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(subject_from_row).transpose()
    }

    /// Deletes in one transaction. PostgreSQL keeps deleted rows as dead tuples until VACUUM
    /// reclaims them (autovacuum does, soon after). No VACUUM runs per erasure: it cannot run
    /// inside the transaction, plain VACUUM makes the space reusable without promising to
    /// overwrite it, and VACUUM FULL locks the tables for every replica. The templates in
    /// those tuples are sealed anyway; operators who must also scrub the external id from
    /// pages, WAL and backups do it on their retention schedule (deploy/README.md).
    async fn erase_subject(&self, id: Uuid, destruction: &Destruction) -> StoreResult<Option<Erasure>> {
        let mut tx = self.pool.begin().await?;
        // Lock the subject first, so a concurrent enrolment waits and then finds it gone.
        let found: Option<(String, String)> =
            sqlx::query_as("SELECT collection_id, external_id FROM subjects WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((collection, external_id)) = found else { return Ok(None) };
        let rows = sqlx::query("DELETE FROM templates WHERE subject_id = $1 RETURNING id, image_ref")
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
        // Same order as the embedded backend reports them.
        erasure.templates.sort();
        // The photos of decisions about the subject go with it, for every decision that names them.
        let probes: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT probe_ref FROM verifications WHERE subject_id = $1 AND probe_ref IS NOT NULL",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        erasure.image_refs.extend(probes.iter().map(|(r,)| r.clone()));
        sqlx::query(
            "UPDATE verifications SET probe_ref = NULL, probe_expires_at = NULL WHERE probe_ref IN
             (SELECT probe_ref FROM verifications WHERE subject_id = $1 AND probe_ref IS NOT NULL)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE verifications SET subject_id = NULL WHERE subject_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE audit_events SET subject_id = NULL WHERE subject_id = $1 AND action <> $2")
            .bind(id)
            .bind(AuditAction::SubjectErase.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM subjects WHERE id = $1").bind(id).execute(&mut *tx).await?;
        let subject = (id, crate::rows::collection_id(collection)?, external_id);
        erasure.record =
            Some(record_destruction(&mut tx, destruction, subject, &erasure.counts(probes.len())).await?);
        tx.commit().await?;
        Ok(Some(erasure))
    }

    async fn add_templates(&self, templates: &[Template]) -> StoreResult<()> {
        self.insert_templates(templates, None).await
    }

    async fn add_templates_for_request(&self, templates: &[Template], request_key: &str) -> StoreResult<()> {
        self.insert_templates(templates, Some(request_key)).await
    }

    async fn templates_of_request(&self, request_key: &str) -> StoreResult<Option<Vec<Template>>> {
        let found: Option<(Uuid, Vec<Uuid>)> =
            sqlx::query_as("SELECT subject_id, template_ids FROM enrolment_requests WHERE request_key = $1")
                .bind(request_key)
                .fetch_optional(&self.pool)
                .await?;
        let Some((subject_id, ids)) = found else { return Ok(None) };
        let mut templates = self.list_templates(subject_id).await?;
        templates.retain(|t| ids.contains(&t.id));
        Ok(Some(templates))
    }

    async fn list_templates(&self, subject_id: Uuid) -> StoreResult<Vec<Template>> {
        let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE subject_id = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(subject_id).fetch_all(&self.pool).await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn delete_template(
        &self,
        subject_id: Uuid,
        template_id: Uuid,
        destruction: &Destruction,
    ) -> StoreResult<Vec<Template>> {
        let mut tx = self.pool.begin().await?;
        let face: Option<(Uuid,)> = sqlx::query_as(
            "SELECT COALESCE(source_template_id, id) FROM templates WHERE subject_id = $1 AND id = $2",
        )
        .bind(subject_id)
        .bind(template_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((face,)) = face else { return Ok(Vec::new()) };
        // Locking the original makes a twin being stored meanwhile (its foreign key check
        // shares this lock) either finish first, and be deleted below, or wait and then find
        // its source gone.
        sqlx::query("SELECT 1 FROM templates WHERE id = $1 FOR UPDATE").bind(face).execute(&mut *tx).await?;
        let sql = format!(
            "DELETE FROM templates WHERE subject_id = $1 AND (id = $2 OR source_template_id = $2)
             RETURNING {TEMPLATE_COLUMNS}"
        );
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(subject_id).bind(face).fetch_all(&mut *tx).await?;
        let mut deleted = rows.iter().map(template_from_row).collect::<StoreResult<Vec<_>>>()?;
        let (collection, external_id): (String, String) =
            sqlx::query_as("SELECT collection_id, external_id FROM subjects WHERE id = $1")
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
             WHERE ($1::TIMESTAMPTZ IS NULL OR destroyed_at >= $1) AND ($2::TIMESTAMPTZ IS NULL OR destroyed_at < $2)
             ORDER BY destroyed_at, id LIMIT $3 OFFSET $4",
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
            "SELECT GREATEST((SELECT MAX(seq) FROM gallery_changes), pruned_through) FROM gallery_log_state",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(version)
    }

    async fn prune_gallery_changes(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        // Everything up to the newest old change goes, so the mark covers all that went.
        let through: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(seq) FROM gallery_changes
             WHERE changed_at < $1 AND seq < (SELECT MAX(seq) FROM gallery_changes)",
        )
        .bind(before)
        .fetch_one(&mut *tx)
        .await?;
        let Some(through) = through else { return Ok(0) };
        let deleted = sqlx::query("DELETE FROM gallery_changes WHERE seq <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE gallery_log_state SET pruned_through = GREATEST(pruned_through, $1)")
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
             WHERE c.seq > $1 ORDER BY c.seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(gallery_change_from_row).collect()
    }

    async fn wait_for_gallery_change(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut listener = self.listener.lock().await;
        if listener.is_none() {
            // Its own connection, not one of the pool's: the pool's size stays what it says.
            match PgListener::connect(&self.url).await {
                Ok(mut opened) => match opened.listen(GALLERY_CHANNEL).await {
                    Ok(()) => *listener = Some(opened),
                    Err(err) => tracing::debug!(error = %err, "cannot listen for gallery changes"),
                },
                Err(err) => tracing::debug!(error = %err, "cannot listen for gallery changes"),
            }
        }
        let Some(active) = listener.as_mut() else {
            tokio::time::sleep_until(deadline).await;
            return;
        };
        // `try_recv` gives None when the connection drops: then the listener is reopened on
        // the next call and the caller's poll catches up on what was missed meanwhile.
        match tokio::time::timeout_at(deadline, active.try_recv()).await {
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(Ok(None)) | Ok(Err(_)) => {
                *listener = None;
                tokio::time::sleep_until(deadline).await;
            }
        }
    }

    async fn model_status(&self, model: &str) -> StoreResult<ModelStatus> {
        let sql = format!(
            "SELECT COUNT(*) FILTER (WHERE t.model = $1) AS current,
                    COUNT(*) FILTER (WHERE t.model <> $1 AND {FACE_HAS_MODEL}) AS twinned,
                    COUNT(*) FILTER (WHERE t.model <> $1 AND NOT {FACE_HAS_MODEL}) AS untwinned,
                    COUNT(*) FILTER (WHERE t.model <> $1 AND {ORIGINAL_WITHOUT_TWIN}
                                     AND t.image_ref IS NOT NULL) AS reembeddable,
                    COUNT(*) FILTER (WHERE t.model <> $1 AND {ORIGINAL_WITHOUT_TWIN}
                                     AND t.image_ref IS NULL) AS without_image
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
             WHERE t.model <> $1 AND {} AND ($2::uuid IS NULL OR t.id > $2) ORDER BY t.id LIMIT $3",
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
        let deleted =
            sqlx::query("DELETE FROM templates WHERE id = ANY($1)").bind(ids).execute(&self.pool).await?;
        Ok(deleted.rows_affected())
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
             VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.secret_hash)
        .bind(key.role.as_str())
        .bind(key.scope.to_json())
        .bind(stored(key.created_at))
        .bind(key.revoked_at.map(stored))
        .execute(&self.pool)
        .await
        .map_err(|err| StoreError::from_write(err, Some(Entity::ApiKey), None))?;
        Ok(())
    }

    async fn get_api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row =
            sqlx::query("SELECT * FROM api_keys WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows =
            self.fetch_all_read(|| sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")).await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: &str) -> StoreResult<bool> {
        let revoked = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(stored(Utc::now()))
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(v.id)
        .bind(stored(v.created_at))
        .bind(&v.api_key_id)
        .bind(v.mode.as_str())
        .bind(v.collection.as_ref().map(CollectionId::as_str))
        .bind(v.subject_id)
        .bind(v.similarity)
        .bind(v.threshold)
        .bind(v.far_target)
        .bind(v.decision.as_str())
        .bind(v.liveness_score)
        .bind(&v.probe_quality)
        .bind(v.probe.as_ref().map(|p| p.reference.as_str()))
        .bind(v.probe.as_ref().map(|p| stored(p.expires_at)))
        .bind(&v.calibration)
        .bind(&v.model)
        .execute(&self.pool)
        .await?;
        let kept = done.rows_affected() == 1;
        if let (true, true, Some(subject)) = (kept, v.decision.is_match(), v.subject_id) {
            // A match is the subject's activity (a replayed decision may be older than the last).
            sqlx::query("UPDATE subjects SET last_active_at = GREATEST(last_active_at, $1) WHERE id = $2")
                .bind(stored(v.created_at))
                .bind(subject)
                .execute(&self.pool)
                .await?;
        }
        Ok(kept)
    }

    async fn get_verification(&self, id: Uuid) -> StoreResult<Option<VerificationRecord>> {
        let row = sqlx::query("SELECT * FROM verifications WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(verification_from_row).transpose()
    }

    async fn label_verification(&self, id: Uuid, truth: Truth, source: &str) -> StoreResult<Labelling> {
        let mut tx = self.pool.begin().await?;
        // FOR UPDATE: of two concurrent labels, the second sees the first.
        let Some(row) = sqlx::query("SELECT * FROM verifications WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Labelling::Missing);
        };
        if row.try_get::<Option<String>, _>("truth")?.is_some() {
            return Ok(Labelling::AlreadyLabelled);
        }
        let record = verification_from_row(&row)?;
        sqlx::query("UPDATE verifications SET truth = $1, truth_source = $2, labelled_at = $3 WHERE id = $4")
            .bind(truth.as_str())
            .bind(source)
            .bind(stored(Utc::now()))
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
        let rows = self
            .fetch_all_read(|| {
                sqlx::query(
                    "SELECT truth, similarity, decision FROM verifications
                     WHERE truth IS NOT NULL AND created_at >= $1 ORDER BY labelled_at DESC LIMIT $2",
                )
                .bind(since)
                .bind(i64::from(limit))
            })
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
        let collection = collection.map(CollectionId::as_str);
        let rows = self
            .fetch_all_read(|| {
                sqlx::query(
                    "SELECT collection_id, truth, similarity FROM verifications
                     WHERE truth IS NOT NULL AND ($1::TEXT IS NULL OR collection_id = $1)
                       AND (model IS NULL OR model = $2)",
                )
                .bind(collection)
                .bind(model)
            })
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
            "SELECT id FROM subjects WHERE consent_expires_at <= $1 ORDER BY consent_expires_at LIMIT $2",
            cutoffs.now,
        )
        .await?;
        let withdrawn = before(
            "SELECT id FROM subjects WHERE consent_withdrawn_at <= $1 ORDER BY consent_withdrawn_at LIMIT $2",
            cutoffs.withdrawn_before,
        )
        .await?;
        let inactive = match cutoffs.inactive_before {
            Some(cutoff) => {
                before(
                    "SELECT id FROM subjects WHERE last_active_at < $1 ORDER BY last_active_at LIMIT $2",
                    cutoff,
                )
                .await?
            }
            None => Vec::new(),
        };
        Ok(crate::retention::due(expired, withdrawn, inactive, limit as usize))
    }

    async fn withdraw_consent(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<Option<Subject>> {
        let mut tx = self.pool.begin().await?;
        // The gallery log's lock before the subject's row, in the order an erasure takes them.
        sqlx::query("SELECT pg_advisory_xact_lock(7023001)").execute(&mut *tx).await?;
        let done = sqlx::query(
            "UPDATE subjects SET consent_withdrawn_at = COALESCE(consent_withdrawn_at, $1) WHERE id = $2",
        )
        .bind(stored(at))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        // Logged as changes, the subject's templates leave every replica's index.
        sqlx::query(
            "INSERT INTO gallery_changes (template_id) SELECT id FROM templates WHERE subject_id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify('visage_gallery', '')").execute(&mut *tx).await?;
        let sql = format!("SELECT {SUBJECT_COLUMNS} FROM subjects s WHERE s.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *tx).await?;
        let subject = subject_from_row(&row)?;
        tx.commit().await?;
        Ok(Some(subject))
    }

    async fn prune(&self, record: RetainedRecord, before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        let sql = match record {
            RetainedRecord::Decisions => {
                "DELETE FROM verifications WHERE id IN
                 (SELECT id FROM verifications WHERE created_at < $1 AND probe_ref IS NULL LIMIT $2)"
            }
            RetainedRecord::AuditEvents => {
                "DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_events WHERE at < $1 LIMIT $2)"
            }
            RetainedRecord::DestructionRecords => {
                "DELETE FROM destruction_records WHERE id IN
                 (SELECT id FROM destruction_records WHERE destroyed_at < $1 LIMIT $2)"
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
            "SELECT {TEMPLATE_COLUMNS} FROM templates t WHERE ($1::uuid IS NULL OR t.id > $1) ORDER BY t.id LIMIT $2"
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
            "UPDATE templates SET key_id = $1, nonce = $2, ciphertext = $3
             WHERE id = $4 AND key_id = $5 AND nonce = $6",
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
            "SELECT DISTINCT probe_ref FROM verifications WHERE probe_ref IS NOT NULL AND probe_ref > $1
             ORDER BY probe_ref LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(refs.into_iter().map(|(r,)| r).collect())
    }

    async fn image_in_use(&self, reference: &str) -> StoreResult<bool> {
        let used: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM templates WHERE image_ref = $1)
                 OR EXISTS (SELECT 1 FROM verifications WHERE probe_ref = $1)",
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
            "INSERT INTO job_leases (name, holder, until) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE job_leases.until <= $4 OR job_leases.holder = excluded.holder",
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
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (collection_id) DO UPDATE SET name = excluded.name, model = excluded.model,
                 document = excluded.document, created_at = excluded.created_at",
        )
        .bind(c.collection.as_str())
        .bind(&c.name)
        .bind(&c.model)
        .bind(&c.document)
        .bind(stored(c.created_at))
        .execute(&self.pool)
        .await
        .map_err(|err| StoreError::from_write(err, None, Some(Entity::Collection)))?;
        Ok(())
    }

    async fn collection_calibrations(&self) -> StoreResult<Vec<StoredCalibration>> {
        let rows = self
            .fetch_all_read(|| sqlx::query("SELECT * FROM collection_calibrations ORDER BY collection_id"))
            .await?;
        rows.iter().map(stored_calibration_from_row).collect()
    }

    async fn delete_collection_calibration(&self, collection: &CollectionId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM collection_calibrations WHERE collection_id = $1")
            .bind(collection.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn expired_probes(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<String>> {
        let refs: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT probe_ref FROM verifications
             WHERE probe_ref IS NOT NULL AND probe_expires_at <= $1 LIMIT $2",
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
            crate::filters::forget_probes_query::<Postgres>(references).build().execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn list_decisions(&self, filter: &DecisionFilter) -> StoreResult<Vec<ReviewedDecision>> {
        let rows = crate::filters::decisions_query::<Postgres>(filter).build().fetch_all(&self.pool).await?;
        rows.iter().map(reviewed_decision_from_row).collect()
    }

    async fn counts(&self) -> StoreResult<Vec<CollectionCounts>> {
        let rows = self
            .fetch_all_read(|| {
                sqlx::query(
                    "SELECT c.id,
                            (SELECT COUNT(*) FROM subjects s WHERE s.collection_id = c.id) AS subjects,
                            (SELECT COUNT(*) FROM templates t JOIN subjects s ON s.id = t.subject_id
                              WHERE s.collection_id = c.id) AS templates
                     FROM collections c ORDER BY c.id",
                )
            })
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
        PoolStats { in_use: open.saturating_sub(idle), max: self.pool.options().get_max_connections() }
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(stored(at))
        .bind(&e.api_key_id)
        .bind(e.action.as_str())
        .bind(e.outcome.as_str())
        .bind(e.collection.as_ref().map(CollectionId::as_str))
        .bind(e.subject_id)
        .bind(&e.detail)
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
        let rows = crate::filters::audit_query::<Postgres>(filter, after_seq, limit)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_event_from_row).collect()
    }
}
