//! Rows into records, written once for both backends. The backends decode most columns alike
//! and differ in JSON (PostgreSQL `JSONB`, SQLite text), which each supplies as a function
//! `json_column(row, column)` next to where it invokes [`record_mappers!`].

use crate::{CollectionId, StoreError, StoreResult, UnknownName};

pub(crate) fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

pub(crate) fn collection_id(value: String) -> StoreResult<CollectionId> {
    CollectionId::parse(value).map_err(|e| corrupt("collection", e))
}

/// A column holding the name of a [`named_enum!`](crate::names::named_enum) variant.
pub(crate) fn named<T: TryFrom<String, Error = UnknownName>>(value: String) -> StoreResult<T> {
    T::try_from(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A JSON column that must not be NULL.
pub(crate) fn required_json(
    value: Option<serde_json::Value>,
    column: &str,
) -> StoreResult<serde_json::Value> {
    value.ok_or_else(|| corrupt(column, "NULL"))
}

/// Defines `subject_from_row`, `template_from_row`, `gallery_template_from_row`,
/// `gallery_change_from_row`, `verification_from_row`, `reviewed_decision_from_row`, `audit_event_from_row`,
/// `model_status_from_row` and `api_key_from_row` for the backend's row type. A macro rather
/// than generic functions: sqlx's decoding bounds differ per database and would have to be
/// spelled out for every column type.
macro_rules! record_mappers {
    ($row:ty) => {
        fn subject_from_row(row: &$row) -> StoreResult<Subject> {
            let consent = json_column(row, "consent")?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| $crate::rows::corrupt("consent", e))?;
            Ok(Subject {
                id: row.try_get("id")?,
                collection: $crate::rows::collection_id(row.try_get("collection_id")?)?,
                external_id: row.try_get("external_id")?,
                metadata: json_column(row, "metadata")?,
                consent,
                created_at: row.try_get("created_at")?,
                face_count: row.try_get::<i64, _>("face_count")? as u32,
                consent_withdrawn_at: row.try_get("consent_withdrawn_at")?,
            })
        }

        fn template_from_row(row: &$row) -> StoreResult<Template> {
            Ok(Template {
                id: row.try_get("id")?,
                subject_id: row.try_get("subject_id")?,
                model: row.try_get("model")?,
                sealed: SealedTemplate {
                    key_id: row.try_get("key_id")?,
                    nonce: row.try_get("nonce")?,
                    ciphertext: row.try_get("ciphertext")?,
                },
                quality: $crate::rows::required_json(json_column(row, "quality")?, "quality")?,
                image_ref: row.try_get("image_ref")?,
                created_at: row.try_get("created_at")?,
                source_template_id: row.try_get("source_template_id")?,
            })
        }

        fn gallery_template_from_row(row: &$row) -> StoreResult<GalleryTemplate> {
            Ok(GalleryTemplate {
                collection: $crate::rows::collection_id(row.try_get("collection_id")?)?,
                external_id: row.try_get("external_id")?,
                template: template_from_row(row)?,
                consent_expires_at: row.try_get("consent_expires_at")?,
            })
        }

        /// A change log row joined with its template's current state (NULLs when it is gone).
        /// A template whose subject withdrew consent counts as gone: it is out of matching.
        fn gallery_change_from_row(row: &$row) -> StoreResult<GalleryChange> {
            let exists = row.try_get::<Option<Uuid>, _>("id")?.is_some()
                && row.try_get::<Option<DateTime<Utc>>, _>("consent_withdrawn_at")?.is_none();
            Ok(GalleryChange {
                seq: row.try_get("seq")?,
                template_id: row.try_get("changed_id")?,
                current: if exists { Some(gallery_template_from_row(row)?) } else { None },
            })
        }

        fn verification_from_row(row: &$row) -> StoreResult<VerificationRecord> {
            let mode: String = row.try_get("mode")?;
            let collection: Option<String> = row.try_get("collection_id")?;
            Ok(VerificationRecord {
                id: row.try_get("id")?,
                created_at: row.try_get("created_at")?,
                api_key_id: row.try_get("api_key_id")?,
                mode: if mode == "identify" { VerificationMode::Identify } else { VerificationMode::Verify },
                collection: collection.map($crate::rows::collection_id).transpose()?,
                subject_id: row.try_get("subject_id")?,
                similarity: row.try_get("similarity")?,
                threshold: row.try_get("threshold")?,
                far_target: row.try_get("far_target")?,
                decision: $crate::rows::named(row.try_get("decision")?)?,
                liveness_score: row.try_get("liveness_score")?,
                probe_quality: json_column(row, "probe_quality")?,
                probe: match (row.try_get("probe_ref")?, row.try_get("probe_expires_at")?) {
                    (Some(reference), Some(expires_at)) => Some(KeptProbe { reference, expires_at }),
                    _ => None,
                },
                calibration: row.try_get("calibration")?,
                model: row.try_get("model")?,
            })
        }

        fn labelled_score_from_row(row: &$row) -> StoreResult<LabelledScore> {
            let collection: Option<String> = row.try_get("collection_id")?;
            let truth: String = row.try_get("truth")?;
            Ok(LabelledScore {
                collection: collection.map($crate::rows::collection_id).transpose()?,
                genuine: truth == "genuine",
                similarity: row.try_get("similarity")?,
            })
        }

        fn destruction_record_from_row(row: &$row) -> StoreResult<DestructionRecord> {
            let categories = $crate::rows::required_json(json_column(row, "categories")?, "categories")?;
            Ok(DestructionRecord {
                id: row.try_get("id")?,
                destroyed_at: row.try_get("destroyed_at")?,
                subject_id: row.try_get("subject_id")?,
                collection: $crate::rows::collection_id(row.try_get("collection_id")?)?,
                external_id: row.try_get("external_id")?,
                ground: $crate::rows::named(row.try_get("ground")?)?,
                categories: serde_json::from_value(categories)
                    .map_err(|e| $crate::rows::corrupt("categories", e))?,
                method: row.try_get("method")?,
                performed_by: row.try_get("performed_by")?,
            })
        }

        fn stored_calibration_from_row(row: &$row) -> StoreResult<StoredCalibration> {
            Ok(StoredCalibration {
                collection: $crate::rows::collection_id(row.try_get("collection_id")?)?,
                name: row.try_get("name")?,
                model: row.try_get("model")?,
                document: row.try_get("document")?,
                created_at: row.try_get("created_at")?,
            })
        }

        fn reviewed_decision_from_row(row: &$row) -> StoreResult<ReviewedDecision> {
            let truth: Option<String> = row.try_get("truth")?;
            Ok(ReviewedDecision {
                record: verification_from_row(row)?,
                truth: match truth.as_deref() {
                    None => None,
                    Some("genuine") => Some(Truth::Genuine),
                    Some("impostor") => Some(Truth::Impostor),
                    Some(other) => return Err($crate::rows::corrupt("truth", other)),
                },
                truth_source: row.try_get("truth_source")?,
                labelled_at: row.try_get("labelled_at")?,
            })
        }

        fn audit_event_from_row(row: &$row) -> StoreResult<AuditEvent> {
            Ok(AuditEvent {
                seq: row.try_get("seq")?,
                at: row.try_get("at")?,
                api_key_id: row.try_get("api_key_id")?,
                action: $crate::rows::named(row.try_get("action")?)?,
                outcome: $crate::rows::named(row.try_get("outcome")?)?,
                collection: row.try_get("collection_id")?,
                subject_id: row.try_get("subject_id")?,
                detail: $crate::rows::required_json(json_column(row, "detail")?, "audit detail")?,
            })
        }

        /// The counts of `model_status`'s query.
        fn model_status_from_row(row: &$row) -> StoreResult<ModelStatus> {
            let count = |column: &str| -> StoreResult<u64> { Ok(row.try_get::<i64, _>(column)? as u64) };
            Ok(ModelStatus {
                current: count("current")?,
                twinned: count("twinned")?,
                untwinned: count("untwinned")?,
                reembeddable: count("reembeddable")?,
                without_image: count("without_image")?,
            })
        }

        fn api_key_from_row(row: &$row) -> StoreResult<ApiKeyRecord> {
            let role: String = row.try_get("role")?;
            let scope = $crate::rows::required_json(json_column(row, "collections")?, "collections")?;
            Ok(ApiKeyRecord {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                secret_hash: row.try_get("secret_hash")?,
                role: Role::from_str(&role).map_err(|e| $crate::rows::corrupt("role", e))?,
                scope: CollectionScope::from_json(&scope.to_string())
                    .map_err(|e| $crate::rows::corrupt("collections", e))?,
                created_at: row.try_get("created_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        }
    };
}
pub(crate) use record_mappers;
