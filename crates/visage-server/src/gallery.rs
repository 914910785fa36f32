//! The 1:N index: every template of the running recognizer, per collection, opened once and
//! kept in memory ([`FlatIndex`]: exact search, int8 scan with float32 rescoring).
//!
//! The database is the truth. Every replica keeps its index equal to it by replaying the
//! database's gallery change log ([`Store::gallery_changes`]): after each of its own writes,
//! when PostgreSQL notifies that another replica wrote, and at least every poll interval in
//! case a notification was lost. Replaying is idempotent, so writes are also applied to the
//! index directly, which keeps a replica's own enrolments searchable even when the catch-up
//! right after them fails.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use uuid::Uuid;
use visage_index::FlatIndex;
use visage_store::crypto::KeyRing;
use visage_store::{CollectionId, GalleryChange, Store, StoreError, StoreResult};

pub use visage_index::Candidate;

/// What a replica knows of an indexed subject without asking the database: enough to answer
/// verify and identify while it cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectCard {
    pub collection: CollectionId,
    pub external_id: String,
    /// When the subject's consent ends: identification leaves it out from then on, before the
    /// retention job erases it.
    pub consent_expires_at: Option<DateTime<Utc>>,
    /// Templates of the subject in the index; the card goes with the last one.
    templates: usize,
}

/// The templates per collection and a card per subject that has any, changed together.
#[derive(Default)]
struct Indexed {
    collections: HashMap<CollectionId, FlatIndex>,
    subjects: HashMap<Uuid, SubjectCard>,
}

impl Indexed {
    fn insert(&mut self, dim: usize, owner: Owner<'_>, template_id: Uuid, embedding: &[f32]) -> bool {
        let index = self.collections.entry(owner.collection.clone()).or_insert_with(|| FlatIndex::new(dim));
        if !index.insert(template_id, owner.subject_id, embedding) {
            return false;
        }
        let card = self.subjects.entry(owner.subject_id).or_insert_with(|| SubjectCard {
            collection: owner.collection.clone(),
            external_id: owner.external_id.to_owned(),
            consent_expires_at: owner.consent_expires_at,
            templates: 0,
        });
        card.templates += 1;
        true
    }

    fn remove_template(&mut self, template_id: Uuid) -> bool {
        for index in self.collections.values_mut() {
            if let Some(subject) = index.subject_of(template_id) {
                index.remove(template_id);
                if let Some(card) = self.subjects.get_mut(&subject) {
                    card.templates -= 1;
                    if card.templates == 0 {
                        self.subjects.remove(&subject);
                    }
                }
                return true;
            }
        }
        false
    }
}

fn owner_of(entry: &visage_store::GalleryTemplate) -> Owner<'_> {
    Owner {
        collection: &entry.collection,
        subject_id: entry.template.subject_id,
        external_id: &entry.external_id,
        consent_expires_at: entry.consent_expires_at,
    }
}

/// Whose a template is: the subject, its collection and its external id.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub collection: &'a CollectionId,
    pub subject_id: Uuid,
    pub external_id: &'a str,
    pub consent_expires_at: Option<DateTime<Utc>>,
}

/// Candidates searched beyond `top_k` so that subjects whose consent just ended can be left out.
const EXPIRED_HEADROOM: usize = 8;

/// Changes read per query while catching up.
const CHANGE_BATCH: u32 = 1000;

pub struct GalleryIndex {
    dim: usize,
    /// Recognizer whose templates are indexed; templates of others (during a re-embedding
    /// roll-out) stay out.
    model: String,
    indexed: RwLock<Indexed>,
    /// Newest change applied. The async lock serialises catch-ups: a change list read before
    /// a write is never applied after that write's own catch-up.
    applied: tokio::sync::Mutex<i64>,
    /// Mirror of `applied` for readers that must not wait (metrics, readiness).
    version: AtomicI64,
    /// Templates written by another replica that could not be opened (a key this replica
    /// lacks): left out and counted.
    unreadable: AtomicUsize,
}

/// What a catch-up did.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchUp {
    /// Changes read from the log and applied.
    pub applied: usize,
    /// The log had been pruned past this index's last change, so it was loaded anew.
    pub reloaded: bool,
}

/// What a full load found.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub indexed: usize,
    /// Templates of other recognizers by recognizer, waiting for a re-embedding roll-out.
    pub other_models: std::collections::BTreeMap<String, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] visage_store::StoreError),
    #[error("a stored template cannot be opened: {0}")]
    Unreadable(#[source] visage_store::crypto::CryptoError),
}

impl GalleryIndex {
    pub fn new(dim: usize, model: impl Into<String>) -> Self {
        Self {
            dim,
            model: model.into(),
            indexed: RwLock::new(Indexed::default()),
            applied: tokio::sync::Mutex::new(0),
            version: AtomicI64::new(0),
            unreadable: AtomicUsize::new(0),
        }
    }

    /// Opens every stored template of the running recognizer, then replays the changes made
    /// while it was reading. At start an unreadable template means a missing key: the load
    /// fails rather than serve a gallery with holes that answers "nobody" for the people in them.
    pub async fn load(&self, store: &dyn Store, keys: &KeyRing) -> Result<LoadReport, LoadError> {
        let mut applied = self.applied.lock().await;
        let report = self.reload(&mut applied, store, keys, true).await?;
        drop(applied);
        self.catch_up(store, keys).await?;
        Ok(report)
    }

    /// Replaces the whole index with the stored templates, read into a new index first so
    /// that searches meanwhile see the old one. `strict`: fail on an unreadable template,
    /// else leave it out and count it.
    async fn reload(
        &self,
        applied: &mut i64,
        store: &dyn Store,
        keys: &KeyRing,
        strict: bool,
    ) -> Result<LoadReport, LoadError> {
        // The version first: changes committed during the full read are replayed after it.
        let version = store.gallery_version().await?;
        let mut report = LoadReport::default();
        let mut fresh = Indexed::default();
        for entry in store.all_templates().await? {
            let t = &entry.template;
            if t.model != self.model {
                *report.other_models.entry(t.model.clone()).or_default() += 1;
                continue;
            }
            let values = match keys.open(t.id, t.subject_id, &t.sealed) {
                Ok(values) => values,
                Err(err) if strict => return Err(LoadError::Unreadable(err)),
                Err(err) => {
                    self.unreadable.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %err, "a stored template cannot be opened: left out of the index");
                    continue;
                }
            };
            fresh.insert(self.dim, owner_of(&entry), t.id, &values);
            report.indexed += 1;
        }
        *self.indexed.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        *applied = version;
        self.version.store(version, Ordering::SeqCst);
        Ok(report)
    }

    /// Applies every change after the last one applied. When the change log has been pruned
    /// past that point, changes may have been missed: the index is reloaded instead.
    pub async fn catch_up(&self, store: &dyn Store, keys: &KeyRing) -> StoreResult<CatchUp> {
        let mut applied = self.applied.lock().await;
        let mut outcome = CatchUp::default();
        loop {
            let started_at = *applied;
            loop {
                let changes = store.gallery_changes(*applied, CHANGE_BATCH).await?;
                let batch = changes.len();
                for change in changes {
                    *applied = change.seq;
                    self.apply(change, keys);
                }
                outcome.applied += batch;
                self.version.store(*applied, Ordering::SeqCst);
                if batch < CHANGE_BATCH as usize {
                    break;
                }
            }
            // Read after the changes: a pruning that removed some of them before they were
            // read has moved the mark by now.
            if started_at >= store.gallery_pruned_through().await? {
                return Ok(outcome);
            }
            let report = self.reload(&mut applied, store, keys, false).await.map_err(|err| match err {
                LoadError::Store(err) => err,
                // A lenient reload skips unreadable templates instead.
                LoadError::Unreadable(err) => StoreError::Corrupt(err.to_string()),
            })?;
            tracing::warn!(
                templates = report.indexed,
                "the gallery change log was pruned past this index's last change: reloaded it"
            );
            outcome.reloaded = true;
        }
    }

    /// Makes the index agree with the template's current state.
    fn apply(&self, change: GalleryChange, keys: &KeyRing) {
        match change.current {
            Some(entry) if entry.template.model == self.model => {
                let t = &entry.template;
                if self.contains(t.id) {
                    return;
                }
                match keys.open(t.id, t.subject_id, &t.sealed) {
                    Ok(values) => {
                        self.insert(owner_of(&entry), t.id, &values);
                    }
                    Err(err) => {
                        self.unreadable.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %err, "a stored template cannot be opened: left out of the index");
                    }
                }
            }
            _ => {
                self.remove_template(change.template_id);
            }
        }
    }

    /// Newest change of the database's log reflected here.
    pub fn version(&self) -> i64 {
        self.version.load(Ordering::SeqCst)
    }

    pub fn unreadable(&self) -> usize {
        self.unreadable.load(Ordering::Relaxed)
    }

    /// Adds a template unless it is indexed already; false when it was.
    pub fn insert(&self, owner: Owner<'_>, template_id: Uuid, embedding: &[f32]) -> bool {
        self.write().insert(self.dim, owner, template_id, embedding)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Indexed> {
        self.indexed.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Indexed> {
        self.indexed.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, template_id: Uuid) -> bool {
        self.read().collections.values().any(|index| index.contains(template_id))
    }

    pub fn remove_template(&self, template_id: Uuid) -> bool {
        self.write().remove_template(template_id)
    }

    pub fn remove_subject(&self, subject_id: Uuid) -> usize {
        let mut indexed = self.write();
        indexed.subjects.remove(&subject_id);
        indexed.collections.values_mut().map(|index| index.remove_subject(subject_id)).sum()
    }

    pub fn len(&self, collection: &CollectionId) -> usize {
        self.read().collections.get(collection).map_or(0, FlatIndex::len)
    }

    /// Whether any template of the collection is indexed.
    pub fn has_collection(&self, collection: &CollectionId) -> bool {
        self.len(collection) > 0
    }

    /// The subject as the index knows it: only subjects with templates of the running
    /// recognizer have a card.
    pub fn subject(&self, subject_id: Uuid) -> Option<SubjectCard> {
        self.read().subjects.get(&subject_id).cloned()
    }

    /// The similarity of the subject's best indexed template to the probe.
    pub fn best_of_subject(&self, subject_id: Uuid, probe: &[f32]) -> Option<f32> {
        let indexed = self.read();
        let card = indexed.subjects.get(&subject_id)?;
        indexed.collections.get(&card.collection)?.best_of_subject(subject_id, probe)
    }

    pub fn memory_bytes(&self) -> usize {
        self.read().collections.values().map(FlatIndex::memory_bytes).sum()
    }

    /// The best template of each subject scoring at least `threshold`, best first, at most
    /// `top_k`. Subjects whose consent has ended are left out.
    pub fn search(
        &self,
        collection: &CollectionId,
        probe: &[f32],
        threshold: f32,
        top_k: usize,
    ) -> Vec<Candidate> {
        let indexed = self.read();
        let Some(index) = indexed.collections.get(collection) else { return Vec::new() };
        // Subjects whose consent ended stay indexed until the retention job erases them (at
        // most a sweep interval): a few extra candidates make room for leaving them out.
        let mut found = index.search(probe, threshold, top_k.saturating_add(EXPIRED_HEADROOM));
        let now = Utc::now();
        let ended = |id: &Uuid| {
            indexed.subjects.get(id).and_then(|card| card.consent_expires_at).is_some_and(|end| end <= now)
        };
        found.retain(|c| !ended(&c.subject_id));
        found.truncate(top_k);
        found
    }
}

#[cfg(test)]
mod tests {
    use visage_index::synthetic::{Rng, unit_vector};

    use super::*;

    /// A replica whose sync fell behind a pruning of the change log cannot replay what it
    /// missed: it reloads, and its index ends up equal to the store.
    #[tokio::test]
    async fn an_index_behind_a_pruned_change_log_reloads_and_one_in_step_does_not() {
        use visage_store::crypto::TemplateKey;
        use visage_store::{NewSubject, SqliteStore, Template};

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("visage.db")).await.unwrap();
        let key = TemplateKey::from_base64(&TemplateKey::generate_base64()).unwrap();
        let keys = KeyRing::new(key, []);
        let (dim, default) = (8, CollectionId::default_collection());
        let behind = GalleryIndex::new(dim, "sface");
        let in_step = GalleryIndex::new(dim, "sface");
        behind.load(&store, &keys).await.unwrap();
        in_step.load(&store, &keys).await.unwrap();

        let subject = NewSubject {
            id: Uuid::now_v7(),
            collection: default.clone(),
            external_id: "someone".into(),
            metadata: None,
            consent: None,
            created_at: chrono::Utc::now(),
        };
        store.create_subject(&subject).await.unwrap();
        let mut rng = Rng::new(9);
        let templates: Vec<Template> = (0..3)
            .map(|_| {
                let id = Uuid::now_v7();
                Template {
                    id,
                    subject_id: subject.id,
                    model: "sface".into(),
                    sealed: keys.seal(id, subject.id, &unit_vector(&mut rng, dim)),
                    quality: serde_json::json!({}),
                    image_ref: None,
                    created_at: chrono::Utc::now(),
                    source_template_id: None,
                }
            })
            .collect();
        store.add_templates(&templates).await.unwrap();
        let outcome = in_step.catch_up(&store, &keys).await.unwrap();
        assert_eq!((outcome.applied, outcome.reloaded), (3, false));
        let by = visage_store::Destruction {
            ground: visage_store::DestructionGround::FaceDeletion,
            performed_by: "test".into(),
            keep_external_id: false,
        };
        store.delete_template(subject.id, templates[0].id, &by).await.unwrap();

        // Every change but the newest (the deletion) goes before `behind` has read them.
        let later = chrono::Utc::now() + chrono::Duration::minutes(1);
        assert_eq!(store.prune_gallery_changes(later).await.unwrap(), 3);
        let outcome = behind.catch_up(&store, &keys).await.unwrap();
        assert!(outcome.reloaded, "replaying alone would miss the two templates still stored");
        assert_eq!(behind.len(&default), 2);
        assert!(templates[1..].iter().all(|t| behind.contains(t.id)));
        assert_eq!(behind.version(), store.gallery_version().await.unwrap());

        let outcome = in_step.catch_up(&store, &keys).await.unwrap();
        assert_eq!((outcome.applied, outcome.reloaded), (1, false), "it had seen all that was pruned");
        assert_eq!(in_step.len(&default), 2);
        assert!(!in_step.contains(templates[0].id));
    }

    #[test]
    fn subjects_whose_consent_ended_are_not_candidates() {
        let dim = 16;
        let mut rng = Rng::new(9);
        let index = GalleryIndex::new(dim, "sface");
        let c = CollectionId::default_collection();
        let probe = unit_vector(&mut rng, dim);
        let now = chrono::Utc::now();
        let ends = [None, Some(now - chrono::Duration::seconds(1)), Some(now + chrono::Duration::hours(1))];
        let subjects: Vec<Uuid> = ends.iter().map(|_| Uuid::new_v4()).collect();
        for (subject_id, consent_expires_at) in subjects.iter().zip(ends) {
            let owner =
                Owner { collection: &c, subject_id: *subject_id, external_id: "x", consent_expires_at };
            // The same face for all three: each would be a candidate.
            assert!(index.insert(owner, Uuid::new_v4(), &probe));
        }
        let mut found: Vec<Uuid> = index.search(&c, &probe, 0.9, 5).iter().map(|c| c.subject_id).collect();
        found.sort();
        let mut expected = vec![subjects[0], subjects[2]];
        expected.sort();
        assert_eq!(found, expected);
        assert_eq!(index.search(&c, &probe, 0.9, 1).len(), 1, "top_k still holds");
    }

    #[test]
    fn collections_are_searched_apart_and_removals_find_their_collection() {
        let dim = 20;
        let mut rng = Rng::new(5);
        let index = GalleryIndex::new(dim, "sface");
        let (c, other) = (CollectionId::default_collection(), CollectionId::parse("other").unwrap());
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let (a1, b1) = (Uuid::new_v4(), Uuid::new_v4());
        let (va, vb) = (unit_vector(&mut rng, dim), unit_vector(&mut rng, dim));
        let owner = |collection, subject_id, external_id| Owner {
            collection,
            subject_id,
            external_id,
            consent_expires_at: None,
        };
        assert!(index.insert(owner(&c, alice, "alice"), a1, &va));
        assert!(!index.insert(owner(&c, alice, "alice"), a1, &va));
        assert!(index.insert(owner(&other, bob, "bob"), b1, &vb));
        assert_eq!(index.subject(bob).map(|card| card.external_id), Some("bob".to_owned()));
        assert_eq!(index.best_of_subject(alice, &va), Some(visage_index::dot(&va, &va)));
        assert_eq!(index.search(&c, &va, 0.99, 5)[0].subject_id, alice);
        assert!(index.search(&c, &vb, 0.99, 5).is_empty());
        assert!(index.search(&CollectionId::parse("none").unwrap(), &va, -1.0, 5).is_empty());
        assert!(index.remove_template(b1));
        assert!(!index.contains(b1));
        assert_eq!(index.subject(bob), None, "the card goes with the last template");
        assert_eq!(index.len(&other), 0);
        assert_eq!(index.remove_subject(alice), 1);
        assert_eq!(index.len(&c), 0);
        assert_eq!((index.subject(alice), index.best_of_subject(alice, &va)), (None, None));
    }
}
