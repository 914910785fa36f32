//! The 1:N index: every template of every collection, opened once at start and kept in memory
//! as one contiguous matrix per collection, so a search is a linear scan the compiler
//! vectorises.

use std::collections::HashMap;
use std::sync::RwLock;

use uuid::Uuid;
use visage_store::CollectionId;

#[derive(Default)]
struct CollectionIndex {
    /// Row-major: template i occupies `vectors[i * dim..(i + 1) * dim]`.
    vectors: Vec<f32>,
    /// (template id, subject id) of each row.
    owners: Vec<(Uuid, Uuid)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub subject_id: Uuid,
    pub template_id: Uuid,
    pub similarity: f32,
}

pub struct GalleryIndex {
    dim: usize,
    collections: RwLock<HashMap<CollectionId, CollectionIndex>>,
}

impl GalleryIndex {
    pub fn new(dim: usize) -> Self {
        Self { dim, collections: RwLock::new(HashMap::new()) }
    }

    pub fn insert(&self, collection: &CollectionId, template_id: Uuid, subject_id: Uuid, embedding: &[f32]) {
        assert_eq!(embedding.len(), self.dim, "template dimension");
        let mut collections = self.collections.write().unwrap_or_else(|p| p.into_inner());
        let index = collections.entry(collection.clone()).or_default();
        index.vectors.extend_from_slice(embedding);
        index.owners.push((template_id, subject_id));
    }

    /// Removes the rows matching `predicate` (by template id, subject id).
    fn remove_where(&self, predicate: impl Fn(Uuid, Uuid) -> bool) -> usize {
        let mut removed = 0;
        let mut collections = self.collections.write().unwrap_or_else(|p| p.into_inner());
        for index in collections.values_mut() {
            let mut row = 0;
            while row < index.owners.len() {
                let (template, subject) = index.owners[row];
                if predicate(template, subject) {
                    let last = index.owners.len() - 1;
                    index.owners.swap_remove(row);
                    if row != last {
                        let (dst, src) = (row * self.dim, last * self.dim);
                        index.vectors.copy_within(src..src + self.dim, dst);
                    }
                    index.vectors.truncate(last * self.dim);
                    removed += 1;
                } else {
                    row += 1;
                }
            }
        }
        removed
    }

    pub fn remove_template(&self, template_id: Uuid) -> usize {
        self.remove_where(|template, _| template == template_id)
    }

    pub fn remove_subject(&self, subject_id: Uuid) -> usize {
        self.remove_where(|_, subject| subject == subject_id)
    }

    pub fn len(&self, collection: &CollectionId) -> usize {
        let collections = self.collections.read().unwrap_or_else(|p| p.into_inner());
        collections.get(collection).map_or(0, |index| index.owners.len())
    }

    /// The best template of each subject scoring at least `threshold`, best first, at most `top_k`.
    pub fn search(
        &self,
        collection: &CollectionId,
        probe: &[f32],
        threshold: f32,
        top_k: usize,
    ) -> Vec<Candidate> {
        let collections = self.collections.read().unwrap_or_else(|p| p.into_inner());
        let Some(index) = collections.get(collection) else { return Vec::new() };
        let mut best: HashMap<Uuid, Candidate> = HashMap::new();
        for (row, vector) in index.vectors.chunks_exact(self.dim).enumerate() {
            let similarity = dot(vector, probe);
            if similarity < threshold {
                continue;
            }
            let (template_id, subject_id) = index.owners[row];
            let candidate = Candidate { subject_id, template_id, similarity };
            best.entry(subject_id)
                .and_modify(|c| {
                    if similarity > c.similarity {
                        *c = candidate;
                    }
                })
                .or_insert(candidate);
        }
        let mut candidates: Vec<Candidate> = best.into_values().collect();
        candidates.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        candidates.truncate(top_k);
        candidates
    }
}

/// Dot product of unit vectors (= cosine), in eight lanes so it vectorises.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u32, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim as u32)
            .map(|i| (i.wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 1000)
            .map(|x| x as f32 - 500.0)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    #[test]
    fn search_returns_the_best_template_per_subject_above_the_threshold() {
        let dim = 20;
        let index = GalleryIndex::new(dim);
        let c = CollectionId::default_collection();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let (a1, a2, b1) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        index.insert(&c, a1, alice, &unit(1, dim));
        index.insert(&c, a2, alice, &unit(2, dim));
        index.insert(&c, b1, bob, &unit(3, dim));
        let hits = index.search(&c, &unit(2, dim), 0.99, 5);
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].subject_id, hits[0].template_id), (alice, a2));
        assert!((hits[0].similarity - 1.0).abs() < 1e-5);
        assert!(index.search(&CollectionId::parse("other").unwrap(), &unit(2, dim), -1.0, 5).is_empty());
        assert_eq!(index.search(&c, &unit(2, dim), -1.0, 5).len(), 2);
    }

    #[test]
    fn removal_keeps_the_other_rows_intact() {
        let dim = 9;
        let index = GalleryIndex::new(dim);
        let c = CollectionId::default_collection();
        let subjects: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for (i, s) in subjects.iter().enumerate() {
            index.insert(&c, Uuid::new_v4(), *s, &unit(i as u32, dim));
        }
        assert_eq!(index.remove_subject(subjects[1]), 1);
        assert_eq!(index.len(&c), 4);
        for (i, s) in subjects.iter().enumerate().filter(|(i, _)| *i != 1) {
            let hits = index.search(&c, &unit(i as u32, dim), 0.999, 1);
            assert_eq!(hits[0].subject_id, *s);
        }
        assert!(index.search(&c, &unit(1, dim), 0.999, 1).is_empty());
    }
}
