//! The same tests against both backends: the embedded SQLite file and PostgreSQL
//! (`VISAGE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`; each test
//! gets a database of its own, dropped at its end).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, Row};
use uuid::Uuid;
use visage_store::DestructionGround::{ConsentExpired, ConsentWithdrawn, InactiveSubject};
use visage_store::crypto::SealedTemplate;
use visage_store::testing::TestDatabase;
use visage_store::{
    ApiKeyRecord, AuditAction, AuditFilter, AuditOutcome, CollectionId, CollectionScope, Consent, Decision,
    DecisionFilter, DecisionOrder, Destruction, DestructionFilter, DestructionGround, Entity, ErasureCutoffs,
    KeptProbe, KeyUsage, Labelling, ModelStatus, NewAuditEvent, NewSubject, PostgresOptions, PostgresStore,
    RetainedRecord, Role, SqliteStore, Store, StoreError, StoredCalibration, Template, Truth, TwinFilter,
    VerificationMode, VerificationRecord,
};

/// A store and what it keeps on its backend, for looking underneath the trait.
struct Backend {
    store: Box<dyn Store>,
    raw: Raw,
}

enum Raw {
    Sqlite { dir: tempfile::TempDir },
    Postgres { db: TestDatabase },
}

impl Backend {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("visage.db")).await.unwrap();
        Self { store: Box::new(store), raw: Raw::Sqlite { dir } }
    }

    async fn postgres() -> Self {
        let db = TestDatabase::create().await;
        let store = PostgresStore::connect(&postgres_options(&db)).await.unwrap();
        Self { store: Box::new(store), raw: Raw::Postgres { db } }
    }

    /// Runs a statement beneath the store, as a bug or an intruder might.
    async fn execute_raw(&self, sql: &'static str) {
        match &self.raw {
            Raw::Sqlite { dir } => {
                let url = format!("sqlite://{}", dir.path().join("visage.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
            Raw::Postgres { db } => {
                let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
        }
    }

    /// Stored rows (PostgreSQL) or database file bytes (SQLite) that contain `needle`.
    async fn traces_of(&self, needle: &str) -> Vec<String> {
        match &self.raw {
            Raw::Sqlite { dir } => {
                let mut found = Vec::new();
                for entry in std::fs::read_dir(dir.path()).unwrap() {
                    let path: PathBuf = entry.unwrap().path();
                    let bytes = std::fs::read(&path).unwrap();
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        found.push(path.display().to_string());
                    }
                }
                found
            }
            Raw::Postgres { db } => {
                let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
                let mut found = Vec::new();
                for table in
                    ["collections", "subjects", "templates", "api_keys", "verifications", "audit_events"]
                {
                    let sql =
                        format!("SELECT COUNT(*) AS n FROM {table} r WHERE r::text LIKE '%' || $1 || '%'");
                    let row =
                        sqlx::query(AssertSqlSafe(sql)).bind(needle).fetch_one(&mut conn).await.unwrap();
                    if row.get::<i64, _>("n") > 0 {
                        found.push(table.to_owned());
                    }
                }
                found
            }
        }
    }
}

fn postgres_options(db: &TestDatabase) -> PostgresOptions {
    PostgresOptions {
        url: db.url(),
        read_url: None,
        max_connections: 4,
        acquire_timeout: Duration::from_secs(5),
    }
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                super::$test(&super::Backend::sqlite().await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                super::$test(&super::Backend::postgres().await).await;
            })*
        }
    };
}

on_both_backends!(
    collections_are_created_once_and_listed,
    subjects_keep_their_consent_and_page_in_creation_order,
    a_taken_external_id_or_an_unknown_collection_is_refused,
    templates_are_stored_all_or_none_and_counted,
    erasure_leaves_nothing_of_the_subject,
    api_keys_are_found_listed_and_revoked_once,
    verifications_are_labelled_once,
    labelled_scores_and_collection_calibrations_are_kept_per_collection_and_recognizer,
    destruction_records_are_listed_by_date_and_keep_the_external_id_only_when_asked,
    subjects_due_for_erasure_are_found_on_each_ground_and_a_lease_has_one_holder_at_a_time,
    a_withdrawn_subject_leaves_the_gallery_until_it_is_erased,
    decisions_audit_events_and_destruction_records_are_pruned_by_age,
    templates_are_resealed_only_as_they_were_read,
    audit_events_page_by_sequence,
    the_review_queue_filters_and_puts_the_closest_calls_first,
    kept_probes_expire_and_go_with_any_subject_they_show,
    audit_events_filter_by_action_subject_key_collection_and_time,
    a_name_no_variant_has_reads_back_as_corrupt,
    concurrent_enrolments_neither_collide_nor_get_lost,
    the_pool_reports_its_size_and_a_closed_store_is_unavailable,
    the_gallery_change_log_replays_every_write_in_order,
    a_reader_following_concurrent_writers_misses_no_change,
    pruning_the_gallery_change_log_keeps_the_newest_change_and_marks_what_went,
    twins_follow_their_face_through_reembedding_and_pruning,
    a_twin_is_never_left_behind_by_a_face_deleted_meanwhile,
);

fn collection(id: &str) -> CollectionId {
    CollectionId::parse(id).unwrap()
}

fn new_subject(collection_id: &CollectionId, external_id: &str) -> NewSubject {
    NewSubject {
        id: Uuid::now_v7(),
        collection: collection_id.clone(),
        external_id: external_id.to_owned(),
        metadata: Some(json!({ "site": 3, "badge": "x" })),
        consent: Some(Consent {
            given_by: "the subject".into(),
            given_at: Utc::now().trunc_subsecs(0),
            purpose: "tests".into(),
            reference: Some("form 12".into()),
            expires_at: None,
        }),
        created_at: Utc::now(),
    }
}

fn template(subject_id: Uuid, image_ref: Option<&str>) -> Template {
    Template {
        id: Uuid::now_v7(),
        subject_id,
        model: "sface".into(),
        sealed: SealedTemplate { key_id: "k1".into(), nonce: vec![7; 12], ciphertext: vec![1, 2, 3, 250] },
        quality: json!({ "sharpness": 0.5 }),
        image_ref: image_ref.map(str::to_owned),
        created_at: Utc::now(),
        source_template_id: None,
    }
}

/// A template re-embedded from `source` by recognizer `model`.
fn twin(source: &Template, model: &str) -> Template {
    let id = Uuid::now_v7();
    Template {
        id,
        model: model.into(),
        image_ref: Some(format!("{id}.img")),
        source_template_id: Some(source.id),
        ..template(source.subject_id, None)
    }
}

fn verification(subject_id: Option<Uuid>, similarity: f32, decision: Decision) -> VerificationRecord {
    VerificationRecord {
        id: Uuid::now_v7(),
        created_at: Utc::now(),
        api_key_id: Some("key1".into()),
        mode: VerificationMode::Verify,
        collection: Some(collection("default")),
        subject_id,
        similarity: Some(similarity),
        threshold: 0.4,
        far_target: Some(1e-3),
        decision,
        liveness_score: Some(0.9),
        probe_quality: Some(json!({ "sharpness": 120.5 })),
        probe: None,
        calibration: Some("built-in".into()),
        model: Some("sface".into()),
    }
}

fn erasure_request() -> Destruction {
    Destruction {
        ground: DestructionGround::ErasureRequest,
        performed_by: "key1".into(),
        keep_external_id: false,
    }
}

fn face_deletion() -> Destruction {
    Destruction {
        ground: DestructionGround::FaceDeletion,
        performed_by: "key1".into(),
        keep_external_id: false,
    }
}

fn audit(action: AuditAction, subject_id: Option<Uuid>) -> NewAuditEvent {
    NewAuditEvent {
        api_key_id: Some("key1".into()),
        action,
        outcome: AuditOutcome::Ok,
        collection: Some(collection("default")),
        subject_id,
        detail: json!({ "templates": 1 }),
    }
}

async fn collections_are_created_once_and_listed(backend: &Backend) {
    let store = backend.store.as_ref();
    store.ping().await.unwrap();
    assert!(store.collection_exists(&collection("default")).await.unwrap());
    assert!(!store.collection_exists(&collection("staff")).await.unwrap());
    let created = store.create_collection(&collection("staff")).await.unwrap();
    assert!(matches!(
        store.create_collection(&collection("staff")).await,
        Err(StoreError::Conflict(Entity::Collection))
    ));
    let listed = store.list_collections().await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["default", "staff"]);
    assert_eq!(listed[1], created, "what create returns is what is read back");
}

async fn subjects_keep_their_consent_and_page_in_creation_order(backend: &Backend) {
    let store = backend.store.as_ref();
    let default = collection("default");
    let mut created = Vec::new();
    for n in 0..5 {
        created.push(store.create_subject(&new_subject(&default, &format!("person-{n}"))).await.unwrap());
    }
    let first = &created[0];
    assert_eq!(store.get_subject(first.id).await.unwrap().as_ref(), Some(first));
    assert_eq!(store.find_subject(&default, "person-0").await.unwrap().as_ref(), Some(first));
    assert_eq!(first.consent.as_ref().unwrap().reference.as_deref(), Some("form 12"));
    assert_eq!(first.metadata, Some(json!({ "site": 3, "badge": "x" })));

    let page = store.list_subjects(&default, None, 2).await.unwrap();
    assert_eq!(page, created[..2]);
    let next = store.list_subjects(&default, Some(page[1].id), 10).await.unwrap();
    assert_eq!(next, created[2..]);

    assert_eq!(store.get_subject(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(store.find_subject(&default, "nobody").await.unwrap(), None);
    store.create_collection(&collection("other")).await.unwrap();
    assert!(store.list_subjects(&collection("other"), None, 10).await.unwrap().is_empty());
}

async fn a_taken_external_id_or_an_unknown_collection_is_refused(backend: &Backend) {
    let store = backend.store.as_ref();
    let default = collection("default");
    store.create_subject(&new_subject(&default, "same")).await.unwrap();
    assert!(matches!(
        store.create_subject(&new_subject(&default, "same")).await,
        Err(StoreError::Conflict(Entity::Subject))
    ));
    // The same external id in another collection is someone else.
    store.create_collection(&collection("other")).await.unwrap();
    store.create_subject(&new_subject(&collection("other"), "same")).await.unwrap();
    assert!(matches!(
        store.create_subject(&new_subject(&collection("missing"), "x")).await,
        Err(StoreError::Missing(Entity::Collection))
    ));
}

async fn templates_are_stored_all_or_none_and_counted(backend: &Backend) {
    let store = backend.store.as_ref();
    let default = collection("default");
    let subject = store.create_subject(&new_subject(&default, "t")).await.unwrap();
    let templates = [template(subject.id, Some("a.img")), template(subject.id, None)];
    store.add_templates(&templates).await.unwrap();

    let listed = store.list_templates(subject.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, templates[0].id);
    assert_eq!(listed[0].sealed.ciphertext, templates[0].sealed.ciphertext);
    assert_eq!(listed[0].sealed.nonce, templates[0].sealed.nonce);
    assert_eq!(listed[0].sealed.key_id, "k1");
    assert_eq!(listed[0].quality, templates[0].quality);
    assert_eq!(listed[0].image_ref.as_deref(), Some("a.img"));
    assert_eq!(listed[1].image_ref, None);
    assert_eq!(store.get_subject(subject.id).await.unwrap().unwrap().face_count, 2);

    // One template of an unknown subject spoils the whole batch.
    let batch = [template(subject.id, None), template(Uuid::now_v7(), None)];
    assert!(matches!(store.add_templates(&batch).await, Err(StoreError::Missing(Entity::Subject))));
    assert_eq!(store.list_templates(subject.id).await.unwrap().len(), 2);

    let all = store.all_templates().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|g| g.collection == default && g.template.subject_id == subject.id));

    let deleted = store.delete_template(subject.id, templates[1].id, &face_deletion()).await.unwrap();
    assert_eq!(deleted.iter().map(|t| t.id).collect::<Vec<_>>(), [templates[1].id]);
    assert!(store.delete_template(subject.id, templates[1].id, &face_deletion()).await.unwrap().is_empty());
    assert!(
        store.delete_template(Uuid::now_v7(), templates[0].id, &face_deletion()).await.unwrap().is_empty()
    );

    store.create_collection(&collection("empty")).await.unwrap();
    let counts = store.counts().await.unwrap();
    let count = |name: &str| counts.iter().find(|c| c.collection == name).map(|c| (c.subjects, c.templates));
    assert_eq!(count("default"), Some((1, 1)));
    assert_eq!(count("empty"), Some((0, 0)));
}

async fn erasure_leaves_nothing_of_the_subject(backend: &Backend) {
    let store = backend.store.as_ref();
    let default = collection("default");
    let subject = store.create_subject(&new_subject(&default, "erase-me-7f3a")).await.unwrap();
    let kept = store.create_subject(&new_subject(&default, "keep-me")).await.unwrap();
    let templates = [template(subject.id, Some("one.img")), template(subject.id, None)];
    store.add_templates(&templates).await.unwrap();
    store.add_templates(&[template(kept.id, None)]).await.unwrap();
    let decision = verification(Some(subject.id), 0.8, Decision::Match);
    store.record_verification(&decision).await.unwrap();
    store.append_audit(&audit(AuditAction::SubjectCreate, Some(subject.id))).await.unwrap();

    let erasure =
        store.erase_subject(subject.id, &erasure_request()).await.unwrap().expect("the subject existed");
    store.append_audit(&audit(AuditAction::SubjectErase, Some(subject.id))).await.unwrap();
    assert_eq!(erasure.templates, [templates[0].id, templates[1].id]);
    assert_eq!(erasure.image_refs, ["one.img"]);
    // The destruction record, written with the erasure: categories and counts, ground, method,
    // who; the subject by its internal id only (keeping the external id was not asked for).
    let written = erasure.record.clone().expect("an erasure leaves a record");
    let listed = store.destruction_records(&all_records()).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&written));
    assert_eq!((written.subject_id, written.collection.as_str()), (subject.id, "default"));
    assert_eq!((written.ground, written.performed_by.as_str()), (DestructionGround::ErasureRequest, "key1"));
    assert_eq!(written.external_id, None);
    let counts: Vec<(&str, u64)> =
        written.categories.iter().map(|c| (c.category.as_str(), c.items)).collect();
    assert_eq!(counts, [("biometric_templates", 2), ("enrolment_images", 1), ("subject_record", 1)]);
    assert!(written.method.contains("deleted"), "{}", written.method);

    assert_eq!(store.get_subject(subject.id).await.unwrap(), None);
    assert_eq!(store.find_subject(&default, "erase-me-7f3a").await.unwrap(), None);
    assert!(store.list_templates(subject.id).await.unwrap().is_empty());
    assert!(store.all_templates().await.unwrap().iter().all(|g| g.template.subject_id == kept.id));
    let record = store.get_verification(decision.id).await.unwrap().expect("the decision is kept");
    assert_eq!(record.subject_id, None, "the decision no longer points at the subject");
    let events = store.list_audit(&Default::default(), None, 100).await.unwrap();
    assert!(
        events
            .iter()
            .filter(|e| e.subject_id == Some(subject.id))
            .all(|e| e.action == AuditAction::SubjectErase)
    );
    assert_eq!(
        store.erase_subject(subject.id, &erasure_request()).await.unwrap(),
        None,
        "a second erasure finds nothing"
    );
    assert_eq!(store.erase_subject(Uuid::now_v7(), &erasure_request()).await.unwrap(), None);
    assert_eq!(store.get_subject(kept.id).await.unwrap().unwrap().face_count, 1, "others are untouched");

    store.close().await;
    let traces = backend.traces_of("erase-me-7f3a").await;
    assert!(traces.is_empty(), "the external id survives in {traces:?}");
    assert!(!backend.traces_of("keep-me").await.is_empty(), "the probe finds what is stored");
}

async fn api_keys_are_found_listed_and_revoked_once(backend: &Backend) {
    let store = backend.store.as_ref();
    let key = |id: &str, scope: CollectionScope| ApiKeyRecord {
        id: id.into(),
        name: format!("key {id}"),
        secret_hash: vec![9; 32],
        role: Role::Enrol,
        scope,
        created_at: Utc::now(),
        revoked_at: None,
    };
    store.create_api_key(&key("a", CollectionScope::All)).await.unwrap();
    store.create_api_key(&key("b", CollectionScope::Only(vec![collection("staff")]))).await.unwrap();
    assert!(matches!(
        store.create_api_key(&key("a", CollectionScope::All)).await,
        Err(StoreError::Conflict(Entity::ApiKey))
    ));
    let b = store.get_api_key("b").await.unwrap().unwrap();
    assert_eq!((b.name.as_str(), b.role, b.secret_hash.as_slice()), ("key b", Role::Enrol, &[9; 32][..]));
    assert_eq!(b.scope, CollectionScope::Only(vec![collection("staff")]));
    assert!(store.get_api_key("nope").await.unwrap().is_none());
    let ids: Vec<String> = store.list_api_keys().await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(ids, ["a", "b"]);

    assert!(store.revoke_api_key("a").await.unwrap());
    assert!(!store.revoke_api_key("a").await.unwrap(), "revoked once");
    assert!(!store.revoke_api_key("nope").await.unwrap());
    assert!(store.get_api_key("a").await.unwrap().unwrap().revoked_at.is_some());
}

async fn verifications_are_labelled_once(backend: &Backend) {
    let store = backend.store.as_ref();
    let genuine = verification(None, 0.8, Decision::Match);
    let impostor = verification(None, 0.3, Decision::NoMatch);
    store.record_verification(&genuine).await.unwrap();
    store.record_verification(&impostor).await.unwrap();

    let read = store.get_verification(genuine.id).await.unwrap().unwrap();
    assert_eq!((read.similarity, read.threshold, read.far_target), (Some(0.8), 0.4, Some(1e-3)));
    assert_eq!((read.mode, read.decision.as_str()), (VerificationMode::Verify, "match"));
    assert_eq!(read.collection, Some(collection("default")));
    assert!(store.get_verification(Uuid::now_v7()).await.unwrap().is_none());

    assert!(matches!(
        store.label_verification(genuine.id, Truth::Genuine, "review").await.unwrap(),
        Labelling::Labelled(record) if record.id == genuine.id
    ));
    assert!(matches!(
        store.label_verification(genuine.id, Truth::Impostor, "review").await.unwrap(),
        Labelling::AlreadyLabelled
    ));
    assert!(matches!(
        store.label_verification(Uuid::now_v7(), Truth::Genuine, "review").await.unwrap(),
        Labelling::Missing
    ));
    store.label_verification(impostor.id, Truth::Impostor, "chargeback").await.unwrap();

    let since = Utc::now() - chrono::Duration::hours(1);
    let labelled = store.labelled_verifications(since, 10).await.unwrap();
    assert_eq!(labelled.len(), 2);
    assert!(labelled.iter().any(|l| l.genuine && l.accepted && l.similarity == Some(0.8)));
    assert!(labelled.iter().any(|l| !l.genuine && !l.accepted));
    assert_eq!(store.labelled_verifications(since, 1).await.unwrap().len(), 1);
    assert!(
        store.labelled_verifications(Utc::now() + chrono::Duration::hours(1), 10).await.unwrap().is_empty()
    );
}

async fn labelled_scores_and_collection_calibrations_are_kept_per_collection_and_recognizer(
    backend: &Backend,
) {
    let store = backend.store.as_ref();
    store.create_collection(&collection("door")).await.unwrap();
    let at = |collection_id: &str, similarity: f32, model: Option<&str>| VerificationRecord {
        collection: Some(collection(collection_id)),
        model: model.map(Into::into),
        ..verification(None, similarity, Decision::NoMatch)
    };
    let door_sface = at("door", 0.2, Some("sface"));
    let door_unnamed = at("door", 0.25, None);
    let door_other_model = at("door", 0.3, Some("mobilefacenet"));
    let default_genuine = at("default", 0.7, Some("sface"));
    let unlabelled = at("door", 0.9, Some("sface"));
    for record in [&door_sface, &door_unnamed, &door_other_model, &default_genuine, &unlabelled] {
        store.record_verification(record).await.unwrap();
    }
    let read = store.get_verification(door_sface.id).await.unwrap().unwrap();
    assert_eq!((read.calibration.as_deref(), read.model.as_deref()), (Some("built-in"), Some("sface")));
    for record in [&door_sface, &door_unnamed, &door_other_model] {
        store.label_verification(record.id, Truth::Impostor, "review").await.unwrap();
    }
    store.label_verification(default_genuine.id, Truth::Genuine, "review").await.unwrap();

    let mut door: Vec<f32> = store
        .labelled_scores(Some(&collection("door")), "sface")
        .await
        .unwrap()
        .iter()
        .inspect(|s| assert!(!s.genuine && s.collection == Some(collection("door"))))
        .filter_map(|s| s.similarity)
        .collect();
    door.sort_by(f32::total_cmp);
    assert_eq!(door, [0.2, 0.25], "another recognizer's scores and unlabelled decisions are left out");
    let all = store.labelled_scores(None, "sface").await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().any(|s| s.genuine && s.similarity == Some(0.7)));

    assert!(store.collection_calibrations().await.unwrap().is_empty());
    let calibration = |name: &str| StoredCalibration {
        collection: collection("door"),
        name: name.into(),
        model: "sface".into(),
        document: r#"{"version":1}"#.into(),
        created_at: Utc::now(),
    };
    store.put_collection_calibration(&calibration("feedback:door:2026-12-01")).await.unwrap();
    store.put_collection_calibration(&calibration("feedback:door:2026-12-07")).await.unwrap();
    let kept = store.collection_calibrations().await.unwrap();
    assert_eq!(kept.len(), 1, "a collection has one calibration: the newest");
    assert_eq!(
        (kept[0].name.as_str(), kept[0].document.as_str()),
        ("feedback:door:2026-12-07", r#"{"version":1}"#)
    );
    let ghost = StoredCalibration { collection: collection("ghost"), ..calibration("x") };
    assert!(matches!(
        store.put_collection_calibration(&ghost).await,
        Err(StoreError::Missing(Entity::Collection))
    ));
    assert!(store.delete_collection_calibration(&collection("door")).await.unwrap());
    assert!(!store.delete_collection_calibration(&collection("door")).await.unwrap());
    assert!(store.collection_calibrations().await.unwrap().is_empty());
}

fn all_records() -> DestructionFilter {
    DestructionFilter { limit: 100, ..DestructionFilter::default() }
}

async fn destruction_records_are_listed_by_date_and_keep_the_external_id_only_when_asked(backend: &Backend) {
    let store = backend.store.as_ref();
    let default = collection("default");
    let before = Utc::now();
    let first = store.create_subject(&new_subject(&default, "first")).await.unwrap();
    let faces = [template(first.id, Some("a.img")), template(first.id, None)];
    store.add_templates(&faces).await.unwrap();
    store.delete_template(first.id, faces[0].id, &face_deletion()).await.unwrap();
    let keeping = Destruction { keep_external_id: true, ..erasure_request() };
    store.erase_subject(first.id, &keeping).await.unwrap().unwrap();
    let between = Utc::now();
    let second = store.create_subject(&new_subject(&default, "second")).await.unwrap();
    store.erase_subject(second.id, &erasure_request()).await.unwrap().unwrap();

    let all = store.destruction_records(&all_records()).await.unwrap();
    let summary: Vec<(DestructionGround, Option<&str>)> =
        all.iter().map(|r| (r.ground, r.external_id.as_deref())).collect();
    assert_eq!(
        summary,
        [
            (DestructionGround::FaceDeletion, None),
            (DestructionGround::ErasureRequest, Some("first")),
            (DestructionGround::ErasureRequest, None),
        ],
        "oldest first"
    );
    let face = &all[0].categories;
    assert_eq!(
        face.iter().map(|c| (c.category.as_str(), c.items)).collect::<Vec<_>>(),
        [("biometric_templates", 1), ("enrolment_images", 1)]
    );
    let erased_first = &all[1].categories;
    assert_eq!(
        erased_first.iter().map(|c| (c.category.as_str(), c.items)).collect::<Vec<_>>(),
        [("biometric_templates", 1), ("subject_record", 1)]
    );
    let range = |from, to| DestructionFilter { from, to, ..all_records() };
    assert_eq!(store.destruction_records(&range(Some(between), None)).await.unwrap(), all[2..]);
    assert_eq!(store.destruction_records(&range(Some(before), Some(between))).await.unwrap(), all[..2]);
    let page = DestructionFilter { limit: 1, offset: 1, ..all_records() };
    assert_eq!(store.destruction_records(&page).await.unwrap(), all[1..2]);
}

async fn subjects_due_for_erasure_are_found_on_each_ground_and_a_lease_has_one_holder_at_a_time(
    backend: &Backend,
) {
    let store = backend.store.as_ref();
    let default = collection("default");
    let now = Utc::now();
    let day = chrono::Duration::days(1);
    let ending = |external_id: &str, minutes: i64| {
        let mut subject = new_subject(&default, external_id);
        subject.consent.as_mut().unwrap().expires_at = Some(now + chrono::Duration::minutes(minutes));
        subject
    };
    let old = store.create_subject(&ending("old", -10)).await.unwrap();
    let recent = store.create_subject(&ending("recent", -1)).await.unwrap();
    store.create_subject(&ending("later", 10)).await.unwrap();
    store.create_subject(&new_subject(&default, "forever")).await.unwrap();
    let expiry_only = ErasureCutoffs { now, withdrawn_before: now - day * 365, inactive_before: None };
    let expired = ConsentExpired;
    assert_eq!(
        store.due_erasures(&expiry_only, 10).await.unwrap(),
        [(old.id, expired), (recent.id, expired)],
        "oldest expiry first"
    );
    assert_eq!(store.due_erasures(&expiry_only, 1).await.unwrap(), [(old.id, expired)]);
    let read = store.get_subject(old.id).await.unwrap().unwrap();
    assert!(read.consent.unwrap().expires_at.is_some());

    // Withdrawn two days ago: due when the delay is a day, not when it is three.
    let withdrawn = store.create_subject(&new_subject(&default, "withdrawn")).await.unwrap();
    let at = store.withdraw_consent(withdrawn.id, now - day * 2).await.unwrap().unwrap();
    assert!(at.consent_withdrawn_at.is_some());
    let due = |withdrawn_days: i64, inactive_days: Option<i64>| ErasureCutoffs {
        now,
        withdrawn_before: now - day * withdrawn_days as i32,
        inactive_before: inactive_days.map(|d| now - day * d as i32),
    };
    let found = store.due_erasures(&due(1, None), 10).await.unwrap();
    assert_eq!(found[2..], [(withdrawn.id, ConsentWithdrawn)]);
    assert_eq!(store.due_erasures(&due(3, None), 10).await.unwrap().len(), 2);

    // Inactive: created 100 days ago and never since; a match or an enrolment is activity.
    let idle = |name: &str| NewSubject { created_at: now - day * 100, ..new_subject(&default, name) };
    let idle_one = store.create_subject(&idle("idle")).await.unwrap();
    let matched = store.create_subject(&idle("matched")).await.unwrap();
    let enrolled = store.create_subject(&idle("enrolled")).await.unwrap();
    let refused = store.create_subject(&idle("refused")).await.unwrap();
    let inactive = |found: Vec<(Uuid, DestructionGround)>| -> Vec<Uuid> {
        found.into_iter().filter(|(_, g)| *g == InactiveSubject).map(|(id, _)| id).collect()
    };
    let all = [idle_one.id, matched.id, enrolled.id, refused.id];
    assert_eq!(inactive(store.due_erasures(&due(3, Some(30)), 10).await.unwrap()), all);
    assert!(inactive(store.due_erasures(&due(3, Some(101)), 10).await.unwrap()).is_empty());
    store.record_verification(&verification(Some(matched.id), 0.8, Decision::Match)).await.unwrap();
    store.record_verification(&verification(Some(refused.id), 0.1, Decision::NoMatch)).await.unwrap();
    store.add_templates(&[template(enrolled.id, None)]).await.unwrap();
    assert_eq!(
        inactive(store.due_erasures(&due(3, Some(30)), 10).await.unwrap()),
        [idle_one.id, refused.id],
        "a refused claim is nobody's activity"
    );

    let minute = chrono::Duration::minutes(1);
    assert!(store.try_lease("job", "a", now, now + minute).await.unwrap());
    assert!(!store.try_lease("job", "b", now, now + minute).await.unwrap(), "a holds it");
    assert!(store.try_lease("job", "a", now, now + minute).await.unwrap(), "a renews it");
    assert!(store.try_lease("other", "b", now, now + minute).await.unwrap(), "leases are per job");
    let later = now + minute * 2;
    assert!(
        store.try_lease("job", "b", later, later + minute).await.unwrap(),
        "an expired lease is taken over"
    );
    assert!(!store.try_lease("job", "a", later, later + minute).await.unwrap());
}

async fn a_withdrawn_subject_leaves_the_gallery_until_it_is_erased(backend: &Backend) {
    let store = backend.store.as_ref();
    let default = collection("default");
    let subject = store.create_subject(&new_subject(&default, "leaving")).await.unwrap();
    let stays = store.create_subject(&new_subject(&default, "staying")).await.unwrap();
    let faces = [template(subject.id, None), template(subject.id, None)];
    store.add_templates(&faces).await.unwrap();
    store.add_templates(&[template(stays.id, None)]).await.unwrap();
    let version = store.gallery_version().await.unwrap();
    assert_eq!(store.all_templates().await.unwrap().len(), 3);

    let first = Utc::now().trunc_subsecs(0);
    let withdrawn = store.withdraw_consent(subject.id, first).await.unwrap().unwrap();
    assert_eq!(withdrawn.consent_withdrawn_at, Some(first));
    let again =
        store.withdraw_consent(subject.id, first + chrono::Duration::hours(1)).await.unwrap().unwrap();
    assert_eq!(again.consent_withdrawn_at, Some(first), "the first withdrawal's date stays");
    assert!(store.withdraw_consent(Uuid::now_v7(), first).await.unwrap().is_none());

    let gallery = store.all_templates().await.unwrap();
    assert_eq!(gallery.iter().map(|g| g.template.subject_id).collect::<Vec<_>>(), [stays.id]);
    let changes = store.gallery_changes(version, 100).await.unwrap();
    let mut dropped: Vec<Uuid> = changes.iter().map(|c| c.template_id).collect();
    dropped.sort();
    dropped.dedup();
    assert_eq!(dropped, [faces[0].id, faces[1].id], "every replica is told to drop them");
    assert!(changes.iter().all(|c| c.current.is_none()));
    // The templates and the subject are still there, for the erasure to destroy and record.
    assert_eq!(store.list_templates(subject.id).await.unwrap().len(), 2);
}

async fn decisions_audit_events_and_destruction_records_are_pruned_by_age(backend: &Backend) {
    let store = backend.store.as_ref();
    let now = Utc::now();
    let long_ago = now - chrono::Duration::days(400);
    let old = |mut v: VerificationRecord| {
        v.created_at = long_ago;
        v
    };
    let kept_probe =
        KeptProbe { reference: "probe-a.img".into(), expires_at: now + chrono::Duration::hours(1) };
    let decisions = [
        old(verification(None, 0.2, Decision::NoMatch)),
        old(verification(None, 0.3, Decision::NoMatch)),
        old(VerificationRecord { probe: Some(kept_probe), ..verification(None, 0.4, Decision::NoMatch) }),
        verification(None, 0.5, Decision::NoMatch),
    ];
    for d in &decisions {
        store.record_verification(d).await.unwrap();
    }
    let cutoff = now - chrono::Duration::days(365);
    assert_eq!(store.prune(RetainedRecord::Decisions, cutoff, 1).await.unwrap(), 1, "at most the limit");
    assert_eq!(store.prune(RetainedRecord::Decisions, cutoff, 10).await.unwrap(), 1);
    assert_eq!(store.prune(RetainedRecord::Decisions, cutoff, 10).await.unwrap(), 0);
    assert!(store.get_verification(decisions[2].id).await.unwrap().is_some(), "its probe is kept still");
    assert!(store.get_verification(decisions[3].id).await.unwrap().is_some());

    let event = audit(AuditAction::SubjectCreate, None);
    assert!(store.append_audit_once(&event, Uuid::now_v7(), long_ago).await.unwrap());
    store.append_audit(&event).await.unwrap();
    assert_eq!(store.prune(RetainedRecord::AuditEvents, cutoff, 10).await.unwrap(), 1);
    assert_eq!(store.list_audit(&AuditFilter::default(), None, 10).await.unwrap().len(), 1);

    let subject = store.create_subject(&new_subject(&collection("default"), "gone")).await.unwrap();
    store.erase_subject(subject.id, &erasure_request()).await.unwrap().unwrap();
    assert_eq!(store.prune(RetainedRecord::DestructionRecords, cutoff, 10).await.unwrap(), 0);
    let later = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(store.prune(RetainedRecord::DestructionRecords, later, 10).await.unwrap(), 1);
    assert!(store.destruction_records(&all_records()).await.unwrap().is_empty());
}

async fn templates_are_resealed_only_as_they_were_read(backend: &Backend) {
    let store = backend.store.as_ref();
    let subject = store.create_subject(&new_subject(&collection("default"), "sealed")).await.unwrap();
    let faces = [template(subject.id, Some("a.img")), template(subject.id, None), template(subject.id, None)];
    store.add_templates(&faces).await.unwrap();
    assert_eq!(store.template_key_usage().await.unwrap(), [KeyUsage { key_id: "k1".into(), templates: 3 }]);
    let first = store.templates_after(None, 2).await.unwrap();
    assert_eq!(first.iter().map(|t| t.id).collect::<Vec<_>>(), [faces[0].id, faces[1].id]);
    let rest = store.templates_after(Some(faces[1].id), 2).await.unwrap();
    assert_eq!(rest.iter().map(|t| t.id).collect::<Vec<_>>(), [faces[2].id]);

    let resealed = SealedTemplate { key_id: "k2".into(), nonce: vec![9; 12], ciphertext: vec![4, 5, 6, 7] };
    let stale = SealedTemplate { nonce: vec![8; 12], ..faces[0].sealed.clone() };
    assert!(
        !store.reseal_template(faces[0].id, &stale, &resealed).await.unwrap(),
        "changed since it was read"
    );
    assert!(store.reseal_template(faces[0].id, &faces[0].sealed, &resealed).await.unwrap());
    assert!(!store.reseal_template(faces[0].id, &faces[0].sealed, &resealed).await.unwrap(), "done once");
    assert!(!store.reseal_template(Uuid::now_v7(), &faces[0].sealed, &resealed).await.unwrap());
    let read = store.list_templates(subject.id).await.unwrap();
    assert_eq!(read.iter().find(|t| t.id == faces[0].id).unwrap().sealed, resealed);
    assert_eq!(
        store.template_key_usage().await.unwrap(),
        [KeyUsage { key_id: "k1".into(), templates: 2 }, KeyUsage { key_id: "k2".into(), templates: 1 }]
    );

    let expires_at = Utc::now() + chrono::Duration::hours(1);
    for reference in ["p2.img", "p1.img", "p2.img"] {
        let probe = KeptProbe { reference: reference.into(), expires_at };
        store
            .record_verification(&VerificationRecord {
                probe: Some(probe),
                ..verification(None, 0.3, Decision::NoMatch)
            })
            .await
            .unwrap();
    }
    assert_eq!(store.kept_probes(None, 10).await.unwrap(), ["p1.img", "p2.img"]);
    assert_eq!(store.kept_probes(Some("p1.img"), 10).await.unwrap(), ["p2.img"]);
    for (reference, used) in [("a.img", true), ("p2.img", true), ("b.img", false)] {
        assert_eq!(store.image_in_use(reference).await.unwrap(), used, "{reference}");
    }
}

async fn audit_events_page_by_sequence(backend: &Backend) {
    let store = backend.store.as_ref();
    let subject = Uuid::now_v7();
    for action in [AuditAction::SubjectCreate, AuditAction::FaceEnrol, AuditAction::SubjectErase] {
        store.append_audit(&audit(action, Some(subject))).await.unwrap();
    }
    let first = store.list_audit(&Default::default(), None, 2).await.unwrap();
    assert_eq!(first.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["subject.create", "face.enrol"]);
    assert_eq!(first[0].detail, json!({ "templates": 1 }));
    assert_eq!(first[0].subject_id, Some(subject));
    assert_eq!(first[0].collection.as_deref(), Some("default"));
    let rest = store.list_audit(&Default::default(), Some(first[1].seq), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].action, AuditAction::SubjectErase);
    assert!(rest[0].seq > first[1].seq);
}

async fn the_review_queue_filters_and_puts_the_closest_calls_first(backend: &Backend) {
    let store = backend.store.as_ref();
    // Threshold 0.4: distances 0.35, 0.02, 0.15 and an identification 0.01 away in "door".
    let far = verification(None, 0.05, Decision::NoMatch);
    let close = verification(None, 0.42, Decision::Match);
    let mid = verification(None, 0.55, Decision::Match);
    let door = VerificationRecord {
        mode: VerificationMode::Identify,
        collection: Some(collection("door")),
        ..verification(None, 0.39, Decision::NoMatch)
    };
    for v in [&far, &close, &mid, &door] {
        store.record_verification(v).await.unwrap();
    }
    store.label_verification(mid.id, Truth::Genuine, "review").await.unwrap();
    let ids = |filter: DecisionFilter| async move {
        let rows = store.list_decisions(&filter).await.unwrap();
        rows.into_iter().map(|r| r.record.id).collect::<Vec<_>>()
    };
    let all = DecisionFilter { limit: 10, ..Default::default() };
    assert_eq!(ids(all.clone()).await, [door.id, close.id, mid.id, far.id]);
    assert_eq!(ids(DecisionFilter { offset: 1, limit: 2, ..all.clone() }).await, [close.id, mid.id]);
    let newest = ids(DecisionFilter { order: DecisionOrder::Newest, ..all.clone() }).await;
    assert_eq!(newest, [door.id, mid.id, close.id, far.id]);
    assert_eq!(
        ids(DecisionFilter { labelled: Some(false), ..all.clone() }).await,
        [door.id, close.id, far.id]
    );
    assert_eq!(ids(DecisionFilter { labelled: Some(true), ..all.clone() }).await, [mid.id]);
    assert_eq!(
        ids(DecisionFilter { mode: Some(VerificationMode::Identify), ..all.clone() }).await,
        [door.id]
    );
    assert_eq!(
        ids(DecisionFilter { decision: Some(Decision::Match), ..all.clone() }).await,
        [close.id, mid.id]
    );
    let in_default = DecisionFilter { collections: Some(vec![collection("default")]), ..all.clone() };
    assert_eq!(ids(in_default).await, [close.id, mid.id, far.id]);
    assert!(ids(DecisionFilter { collections: Some(vec![]), ..all.clone() }).await.is_empty());
    let later = DecisionFilter { since: Some(Utc::now() + chrono::Duration::hours(1)), ..all.clone() };
    assert!(ids(later).await.is_empty());

    let labelled = store.list_decisions(&DecisionFilter { labelled: Some(true), ..all }).await.unwrap();
    assert_eq!(
        (labelled[0].truth, labelled[0].truth_source.as_deref()),
        (Some(Truth::Genuine), Some("review"))
    );
    assert!(labelled[0].labelled_at.is_some());
}

async fn kept_probes_expire_and_go_with_any_subject_they_show(backend: &Backend) {
    let store = backend.store.as_ref();
    let default = collection("default");
    let (bob, bill) = (new_subject(&default, "bob"), new_subject(&default, "bill"));
    for s in [&bob, &bill] {
        store.create_subject(s).await.unwrap();
    }
    let now = Utc::now().trunc_subsecs(0);
    let kept = |reference: &str, hours: i64| {
        Some(KeptProbe { reference: reference.into(), expires_at: now + chrono::Duration::hours(hours) })
    };
    // One group photo showed bob and bill (two decisions, one probe); another, older, bob alone.
    let group_bob = VerificationRecord {
        probe: kept("group.img", 2),
        ..verification(Some(bob.id), 0.8, Decision::Match)
    };
    let group_bill = VerificationRecord {
        probe: kept("group.img", 2),
        ..verification(Some(bill.id), 0.7, Decision::Match)
    };
    let old = VerificationRecord {
        probe: kept("old.img", -1),
        ..verification(Some(bill.id), 0.2, Decision::NoMatch)
    };
    for v in [&group_bob, &group_bill, &old] {
        store.record_verification(v).await.unwrap();
    }
    let read = store.get_verification(group_bob.id).await.unwrap().unwrap();
    assert_eq!(read.probe, group_bob.probe);
    assert_eq!(read.probe_quality, Some(json!({ "sharpness": 120.5 })));
    assert_eq!(
        store.image_refs().await.unwrap(),
        ["group.img", "old.img"],
        "the image sweep must keep probes"
    );

    assert_eq!(store.expired_probes(now, 10).await.unwrap(), ["old.img"]);
    assert_eq!(store.forget_probes(&["old.img".into()]).await.unwrap(), 1);
    assert!(store.expired_probes(now, 10).await.unwrap().is_empty());
    assert!(store.get_verification(old.id).await.unwrap().unwrap().probe.is_none());

    let erasure = store.erase_subject(bob.id, &erasure_request()).await.unwrap().unwrap();
    assert_eq!(erasure.image_refs, ["group.img"]);
    let bills = store.get_verification(group_bill.id).await.unwrap().unwrap();
    assert!(bills.probe.is_none(), "a photo showing an erased subject stays with another's decision");
    assert!(store.image_refs().await.unwrap().is_empty());
    let later = now + chrono::Duration::hours(3);
    assert!(store.expired_probes(later, 10).await.unwrap().is_empty());
}

async fn audit_events_filter_by_action_subject_key_collection_and_time(backend: &Backend) {
    let store = backend.store.as_ref();
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    store.append_audit(&audit(AuditAction::SubjectCreate, Some(alice))).await.unwrap();
    store.append_audit(&audit(AuditAction::FaceEnrol, Some(alice))).await.unwrap();
    let refused = NewAuditEvent {
        api_key_id: Some("key2".into()),
        outcome: AuditOutcome::Refused,
        collection: Some(collection("door")),
        ..audit(AuditAction::FaceEnrol, Some(bob))
    };
    store.append_audit(&refused).await.unwrap();
    let seqs = |filter: AuditFilter| async move {
        let events = store.list_audit(&filter, None, 100).await.unwrap();
        events.iter().map(|e| (e.action.as_str(), e.subject_id)).collect::<Vec<_>>()
    };
    let by_action = AuditFilter { action: Some(AuditAction::FaceEnrol), ..Default::default() };
    assert_eq!(seqs(by_action).await, [("face.enrol", Some(alice)), ("face.enrol", Some(bob))]);
    let by_subject = AuditFilter { subject_id: Some(alice), ..Default::default() };
    assert_eq!(seqs(by_subject).await, [("subject.create", Some(alice)), ("face.enrol", Some(alice))]);
    let by_key = AuditFilter { api_key_id: Some("key2".into()), ..Default::default() };
    assert_eq!(seqs(by_key).await, [("face.enrol", Some(bob))]);
    let by_outcome = AuditFilter { outcome: Some(AuditOutcome::Refused), ..Default::default() };
    assert_eq!(seqs(by_outcome).await, [("face.enrol", Some(bob))]);
    let in_door = AuditFilter { collections: Some(vec![collection("door")]), ..Default::default() };
    assert_eq!(seqs(in_door).await, [("face.enrol", Some(bob))]);
    let hour = chrono::Duration::hours(1);
    let past =
        AuditFilter { from: Some(Utc::now() - hour), to: Some(Utc::now() + hour), ..Default::default() };
    assert_eq!(seqs(past).await.len(), 3);
    assert!(seqs(AuditFilter { from: Some(Utc::now() + hour), ..Default::default() }).await.is_empty());
    assert!(seqs(AuditFilter { to: Some(Utc::now() - hour), ..Default::default() }).await.is_empty());
}

async fn a_name_no_variant_has_reads_back_as_corrupt(backend: &Backend) {
    let store = backend.store.as_ref();
    store.append_audit(&audit(AuditAction::SubjectCreate, None)).await.unwrap();
    let decided = verification(None, 0.8, Decision::Match);
    store.record_verification(&decided).await.unwrap();
    backend.execute_raw("UPDATE audit_events SET action = 'subject.delete'").await;
    backend.execute_raw("UPDATE verifications SET decision = 'spoof'").await;
    let Err(StoreError::Corrupt(audit)) = store.list_audit(&Default::default(), None, 10).await else {
        panic!("an unknown audit action is not read back as an action");
    };
    assert_eq!(audit, r#"unknown audit action "subject.delete""#);
    assert!(matches!(store.get_verification(decided.id).await, Err(StoreError::Corrupt(_))));
    let since = Utc::now() - chrono::Duration::hours(1);
    backend.execute_raw("UPDATE verifications SET truth = 'genuine', labelled_at = created_at").await;
    let Err(StoreError::Corrupt(decision)) = store.labelled_verifications(since, 10).await else {
        panic!("an unknown decision is not read back as a decision");
    };
    assert_eq!(decision, r#"unknown decision "spoof""#);
}

async fn concurrent_enrolments_neither_collide_nor_get_lost(backend: &Backend) {
    let store = backend.store.as_ref();
    let default = collection("default");
    let (first, second) = (new_subject(&default, "twice"), new_subject(&default, "twice"));
    let (one, two) = tokio::join!(store.create_subject(&first), store.create_subject(&second));
    let outcomes = [one.is_ok(), two.is_ok()];
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "exactly one of two racing creations wins");
    assert!(matches!(one.err().or(two.err()), Some(StoreError::Conflict(Entity::Subject))));

    let subject = store.find_subject(&default, "twice").await.unwrap().unwrap();
    let first = [template(subject.id, None), template(subject.id, None)];
    let second = [template(subject.id, None)];
    let (a, b) = tokio::join!(store.add_templates(&first), store.add_templates(&second));
    a.unwrap();
    b.unwrap();
    assert_eq!(store.list_templates(subject.id).await.unwrap().len(), 3);
}

async fn the_pool_reports_its_size_and_a_closed_store_is_unavailable(backend: &Backend) {
    let store = backend.store.as_ref();
    store.ping().await.unwrap();
    let stats = store.pool_stats();
    assert!(stats.max > 0 && stats.in_use <= stats.max, "{stats:?}");
    store.close().await;
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(store.get_subject(Uuid::now_v7()).await, Err(StoreError::Unavailable(_))));
}

async fn the_gallery_change_log_replays_every_write_in_order(backend: &Backend) {
    let store = backend.store.as_ref();
    let default = collection("default");
    assert_eq!(store.gallery_version().await.unwrap(), 0);
    let alice = store.create_subject(&new_subject(&default, "alice")).await.unwrap();
    let bob = store.create_subject(&new_subject(&default, "bob")).await.unwrap();
    let (a1, a2, b1) = (template(alice.id, None), template(alice.id, None), template(bob.id, None));
    store.add_templates(&[a1.clone(), a2.clone()]).await.unwrap();
    store.add_templates(std::slice::from_ref(&b1)).await.unwrap();
    let version = store.gallery_version().await.unwrap();
    let changes = store.gallery_changes(0, 100).await.unwrap();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes.last().unwrap().seq, version);
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(changes.iter().map(|c| c.template_id).collect::<Vec<_>>(), [a1.id, a2.id, b1.id]);
    let current = changes[0].current.as_ref().expect("a1 exists");
    assert_eq!((current.collection.as_str(), current.template.subject_id), ("default", alice.id));
    assert_eq!(current.template.sealed, a1.sealed);

    // A deleted face and an erased subject: new entries, and the old ones now resolve to nothing.
    assert_eq!(store.delete_template(alice.id, a2.id, &face_deletion()).await.unwrap().len(), 1);
    store.erase_subject(bob.id, &erasure_request()).await.unwrap().unwrap();
    let after = store.gallery_changes(version, 100).await.unwrap();
    assert_eq!(after.iter().map(|c| c.template_id).collect::<Vec<_>>(), [a2.id, b1.id]);
    assert!(after.iter().all(|c| c.current.is_none()));
    let all = store.gallery_changes(0, 100).await.unwrap();
    let live: Vec<Uuid> = all.iter().filter_map(|c| c.current.as_ref().map(|t| t.template.id)).collect();
    assert_eq!(live, [a1.id], "only a1 still exists");
    // Paging by sequence number.
    let first_two = store.gallery_changes(0, 2).await.unwrap();
    let rest = store.gallery_changes(first_two[1].seq, 100).await.unwrap();
    assert_eq!(first_two.len() + rest.len(), all.len());
}

async fn pruning_the_gallery_change_log_keeps_the_newest_change_and_marks_what_went(backend: &Backend) {
    let store = backend.store.as_ref();
    let subject = store.create_subject(&new_subject(&collection("default"), "pruned")).await.unwrap();
    let (a, b, c) = (template(subject.id, None), template(subject.id, None), template(subject.id, None));
    store.add_templates(&[a.clone(), b.clone(), c.clone()]).await.unwrap();
    assert_eq!(store.delete_template(subject.id, a.id, &face_deletion()).await.unwrap().len(), 1);
    let version = store.gallery_version().await.unwrap();
    let all = store.gallery_changes(0, 100).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(store.gallery_pruned_through().await.unwrap(), 0);

    let long_ago = Utc::now() - chrono::Duration::days(1);
    assert_eq!(store.prune_gallery_changes(long_ago).await.unwrap(), 0, "nothing is that old");
    let later = Utc::now() + chrono::Duration::minutes(1);
    assert_eq!(store.prune_gallery_changes(later).await.unwrap(), 3, "all but the newest");
    assert_eq!(store.gallery_pruned_through().await.unwrap(), all[2].seq);
    assert_eq!(store.gallery_version().await.unwrap(), version, "the version stays");
    let left = store.gallery_changes(0, 100).await.unwrap();
    assert_eq!(left.iter().map(|c| c.seq).collect::<Vec<_>>(), [version]);
    assert_eq!(store.prune_gallery_changes(later).await.unwrap(), 0, "the newest change stays");

    // New changes number on; pruning again moves the mark.
    store.add_templates(std::slice::from_ref(&template(subject.id, None))).await.unwrap();
    let newer = store.gallery_version().await.unwrap();
    assert!(newer > version);
    let later = Utc::now() + chrono::Duration::minutes(1);
    assert_eq!(store.prune_gallery_changes(later).await.unwrap(), 1);
    assert_eq!(store.gallery_pruned_through().await.unwrap(), version);
    assert_eq!(store.gallery_version().await.unwrap(), newer);
    // Templates themselves are untouched.
    assert_eq!(store.list_templates(subject.id).await.unwrap().len(), 3);
}

/// Sequence numbers follow commit order, so a reader that always asks for the changes after
/// the last one it saw never skips one committed late by a slower writer.
async fn a_reader_following_concurrent_writers_misses_no_change(backend: &Backend) {
    let store = backend.store.as_ref();
    let default = collection("default");
    let subject = store.create_subject(&new_subject(&default, "many")).await.unwrap();
    let templates: Vec<Template> = (0..40).map(|_| template(subject.id, None)).collect();
    let writers = async {
        let writes = templates.chunks(2).map(|pair| store.add_templates(pair));
        for result in futures_join(writes).await {
            result.unwrap();
        }
    };
    let reader = async {
        let mut seen = std::collections::HashSet::new();
        let mut last = 0;
        while seen.len() < templates.len() {
            for change in store.gallery_changes(last, 7).await.unwrap() {
                assert!(change.seq > last);
                last = change.seq;
                seen.insert(change.template_id);
            }
            tokio::task::yield_now().await;
        }
        seen
    };
    let ((), seen) = tokio::join!(writers, reader);
    let all: std::collections::HashSet<Uuid> = templates.iter().map(|t| t.id).collect();
    assert_eq!(seen, all);
}

/// Runs futures concurrently on this task.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

/// PostgreSQL: a database that does not accept connections yet (or for a while) is unavailable,
/// so that start-up waits for it; a database that does not exist is not.
#[tokio::test]
async fn postgres_refusing_connections_is_unavailable_and_a_missing_database_is_not() {
    let db = TestDatabase::create().await;
    let name = &db.name;
    db.admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    let refused = PostgresStore::connect(&postgres_options(&db)).await.err().expect("no connection");
    assert!(refused.is_retryable(), "{refused}");
    db.admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    PostgresStore::connect(&postgres_options(&db)).await.unwrap();

    let mut missing = postgres_options(&db);
    missing.url = format!("{}_missing", db.url());
    let err = PostgresStore::connect(&missing).await.err().expect("no such database");
    assert!(matches!(err, StoreError::Database(_)), "{err}");
}

/// PostgreSQL: a replica waiting for gallery changes is woken by another replica's write,
/// long before its poll interval.
#[tokio::test]
async fn postgres_notifies_waiting_replicas_of_gallery_changes() {
    let db = TestDatabase::create().await;
    let writer = PostgresStore::connect(&postgres_options(&db)).await.unwrap();
    let watcher = PostgresStore::connect(&postgres_options(&db)).await.unwrap();
    // The first wait opens the listening connection.
    watcher.wait_for_gallery_change(Duration::from_millis(10)).await;
    let subject = writer.create_subject(&new_subject(&collection("default"), "notified")).await.unwrap();
    let poll = Duration::from_secs(60);
    let started = std::time::Instant::now();
    let (woken, ()) = tokio::join!(
        async {
            watcher.wait_for_gallery_change(poll).await;
            started.elapsed()
        },
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            writer.add_templates(&[template(subject.id, None)]).await.unwrap();
        }
    );
    assert!(woken < poll / 2, "woken by the notification, not the poll ({woken:?})");
    assert_eq!(watcher.gallery_changes(0, 10).await.unwrap().len(), 1);
}

async fn twins_follow_their_face_through_reembedding_and_pruning(backend: &Backend) {
    let store = backend.store.as_ref();
    let (old, new) = ("sface", "mobilefacenet");
    let subject = store.create_subject(&new_subject(&collection("default"), "twins")).await.unwrap();
    let with_image = template(subject.id, Some("a.img"));
    let without_image = template(subject.id, None);
    // Enrolled through a replica already running the new recognizer.
    let newer = Template { model: new.into(), ..template(subject.id, Some("n.img")) };
    store.add_templates(&[with_image.clone(), without_image.clone(), newer.clone()]).await.unwrap();
    let ids = |templates: Vec<Template>| templates.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let listed = |filter, after| store.other_model_templates(new, filter, after, 10);

    let status = store.model_status(new).await.unwrap();
    let expected = ModelStatus { current: 1, twinned: 0, untwinned: 2, reembeddable: 1, without_image: 1 };
    assert_eq!(status, expected);
    assert_eq!(ids(listed(TwinFilter::Missing, None).await.unwrap()), [with_image.id, without_image.id]);
    assert!(listed(TwinFilter::Present, None).await.unwrap().is_empty());
    assert_eq!(ids(listed(TwinFilter::Any, Some(with_image.id)).await.unwrap()), [without_image.id]);
    assert_eq!(
        ids(store.other_model_templates(new, TwinFilter::Any, None, 1).await.unwrap()),
        [with_image.id]
    );

    let first = twin(&with_image, new);
    assert!(store.add_twin(&first).await.unwrap());
    let read =
        store.list_templates(subject.id).await.unwrap().into_iter().find(|t| t.id == first.id).unwrap();
    assert_eq!(read.source_template_id, Some(with_image.id));
    assert_eq!(read.face_id(), with_image.id);
    assert!(!store.add_twin(&twin(&with_image, new)).await.unwrap(), "one twin per face and model");
    let orphan = Template { source_template_id: Some(Uuid::now_v7()), ..twin(&with_image, new) };
    assert!(!store.add_twin(&orphan).await.unwrap(), "no twin of a template that does not exist");
    assert!(matches!(store.add_twin(&template(subject.id, None)).await, Err(StoreError::Corrupt(_))));

    let status = store.model_status(new).await.unwrap();
    let expected = ModelStatus { current: 2, twinned: 1, untwinned: 1, reembeddable: 0, without_image: 1 };
    assert_eq!(status, expected);
    assert_eq!(ids(listed(TwinFilter::Missing, None).await.unwrap()), [without_image.id]);
    assert_eq!(ids(listed(TwinFilter::Present, None).await.unwrap()), [with_image.id]);
    assert_eq!(store.get_subject(subject.id).await.unwrap().unwrap().face_count, 3, "a twin is no new face");
    // Seen from the old recognizer (a rollback): the twin's face has an old template already,
    // and the face enrolled on the new recognizer is the one to re-embed.
    let back = store.model_status(old).await.unwrap();
    assert_eq!(back, ModelStatus { current: 2, twinned: 1, untwinned: 1, reembeddable: 1, without_image: 0 });
    assert_eq!(
        ids(store.other_model_templates(old, TwinFilter::Missing, None, 10).await.unwrap()),
        [newer.id]
    );

    // Deleting a face through either of its templates deletes both.
    let deleted = store.delete_template(subject.id, first.id, &face_deletion()).await.unwrap();
    assert_eq!(ids(deleted), [first.id, with_image.id]);
    assert_eq!(store.get_subject(subject.id).await.unwrap().unwrap().face_count, 2);

    // Pruning the old model: the twin of a pruned template becomes an original.
    let second = twin(&without_image, new);
    assert!(store.add_twin(&second).await.unwrap());
    assert_eq!(store.delete_templates(&[without_image.id, Uuid::now_v7()]).await.unwrap(), 1);
    let left = store.list_templates(subject.id).await.unwrap();
    let mut remaining = vec![newer.id, second.id];
    remaining.sort();
    assert_eq!(ids(left.clone()), remaining);
    assert!(left.iter().all(|t| t.model == new && t.source_template_id.is_none()));
    assert_eq!(store.model_status(new).await.unwrap(), ModelStatus { current: 2, ..ModelStatus::default() });
    assert_eq!(store.get_subject(subject.id).await.unwrap().unwrap().face_count, 2);

    let mut refs = vec!["n.img".to_owned(), second.image_ref.clone().unwrap()];
    refs.sort();
    assert_eq!(store.image_refs().await.unwrap(), refs, "every stored image reference");

    // Erasure takes the twins and their images along.
    let third = twin(&newer, old);
    assert!(store.add_twin(&third).await.unwrap());
    let erasure = store.erase_subject(subject.id, &erasure_request()).await.unwrap().unwrap();
    assert_eq!(erasure.templates.len(), 3);
    assert!(erasure.image_refs.contains(third.image_ref.as_ref().unwrap()));
    assert!(store.all_templates().await.unwrap().is_empty());
}

async fn a_twin_is_never_left_behind_by_a_face_deleted_meanwhile(backend: &Backend) {
    let store = backend.store.as_ref();
    let subject = store.create_subject(&new_subject(&collection("default"), "racing")).await.unwrap();
    for _ in 0..20 {
        let original = template(subject.id, Some("o.img"));
        store.add_templates(std::slice::from_ref(&original)).await.unwrap();
        let copy = twin(&original, "mobilefacenet");
        let by = face_deletion();
        let (stored, deleted) =
            tokio::join!(store.add_twin(&copy), store.delete_template(subject.id, original.id, &by));
        let deleted = deleted.unwrap();
        assert_eq!(deleted.first().map(|t| t.id), Some(original.id));
        if stored.unwrap() {
            assert!(deleted.iter().any(|t| t.id == copy.id), "a stored twin goes with its face");
        }
        assert!(store.list_templates(subject.id).await.unwrap().is_empty(), "nothing of the face is left");
    }
}
