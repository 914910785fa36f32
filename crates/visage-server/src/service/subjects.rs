//! Subjects (people) with their consent records, their faces, and erasure.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;
use visage_store::{
    AuditAction, AuditOutcome, CollectionId, Consent, DestructionGround, NewSubject, Role, Subject, Template,
};

use super::audit::Entry;
use super::images::{self, Deletion};
use super::{Caller, ServiceError, ServiceResult, audit, destruction, gallery_sync};
use crate::state::App;

/// The longest external id, in characters.
pub const MAX_EXTERNAL_ID: usize = 256;

/// A consent record as a caller gives it.
pub struct ConsentGiven {
    pub given_by: String,
    /// The time of the request when absent.
    pub given_at: Option<DateTime<Utc>>,
    pub purpose: String,
    pub reference: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub struct NewSubjectRequest {
    pub collection: CollectionId,
    pub external_id: String,
    pub metadata: Option<serde_json::Value>,
    pub consent: Option<ConsentGiven>,
}

/// The subject, when the caller may see it with `role`. A key scoped to other collections
/// learns nothing: the subject is "not found" for it.
pub async fn visible(app: &App, caller: &Caller, id: Uuid, role: Role) -> ServiceResult<Subject> {
    caller.require(role)?;
    let subject = app.store.get_subject(id).await?.ok_or(ServiceError::SubjectNotFound)?;
    if !caller.scope.allows(&subject.collection) {
        return Err(ServiceError::SubjectNotFound);
    }
    Ok(subject)
}

/// Creates a subject. Consent is required unless `enrolment.require_consent` is off; a consent
/// record must name who gave it and for what.
pub async fn create(app: &App, caller: &Caller, request: NewSubjectRequest) -> ServiceResult<Subject> {
    let collection = request.collection;
    caller.require_in(Role::Enrol, &collection)?;
    let external_id = request.external_id.trim().to_owned();
    if external_id.is_empty() || request.external_id.chars().count() > MAX_EXTERNAL_ID {
        return Err(ServiceError::InvalidRequest(format!(
            "external_id must be 1-{MAX_EXTERNAL_ID} characters"
        )));
    }
    let consent = match request.consent {
        Some(c) if c.expires_at.is_some_and(|end| end <= Utc::now()) => {
            return Err(ServiceError::InvalidRequest("consent.expires_at must lie in the future".into()));
        }
        Some(c) if !c.given_by.trim().is_empty() && !c.purpose.trim().is_empty() => Some(Consent {
            given_by: c.given_by,
            given_at: c.given_at.unwrap_or_else(Utc::now),
            purpose: c.purpose,
            reference: c.reference,
            expires_at: c.expires_at,
        }),
        Some(_) => return Err(ServiceError::ConsentRequired),
        None if app.config.enrolment.require_consent => {
            let detail = json!({ "reason": "consent_required" });
            audit::record(
                app,
                caller,
                Entry::new(AuditAction::SubjectCreate, AuditOutcome::Refused).on(&collection).detail(detail),
            )
            .await;
            return Err(ServiceError::ConsentRequired);
        }
        None => None,
    };
    if !app.store.collection_exists(&collection).await? {
        return Err(ServiceError::CollectionNotFound);
    }
    let subject = app
        .store
        .create_subject(&NewSubject {
            id: Uuid::now_v7(),
            collection: collection.clone(),
            external_id,
            metadata: request.metadata,
            consent,
            created_at: Utc::now(),
        })
        .await?;
    let detail = json!({ "consent": subject.consent.is_some() });
    audit::record(
        app,
        caller,
        Entry::new(AuditAction::SubjectCreate, AuditOutcome::Ok)
            .on(&collection)
            .subject(subject.id)
            .detail(detail),
    )
    .await;
    Ok(subject)
}

/// A page of subjects in creation order, and the cursor of the next page if there is one.
pub struct SubjectPage {
    pub items: Vec<Subject>,
    pub next_cursor: Option<Uuid>,
}

/// Subjects per page when the request does not say.
pub const DEFAULT_PAGE: u32 = 100;

/// Subjects of a collection a page at a time (`limit`, [`DEFAULT_PAGE`] when absent), or the
/// one with an external id.
pub async fn list(
    app: &App,
    caller: &Caller,
    collection: &CollectionId,
    external_id: Option<&str>,
    cursor: Option<Uuid>,
    limit: Option<u32>,
) -> ServiceResult<SubjectPage> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    caller.require_in(Role::Read, collection)?;
    if let Some(external_id) = external_id {
        let found = app.store.find_subject(collection, external_id).await?;
        return Ok(SubjectPage { items: found.into_iter().collect(), next_cursor: None });
    }
    let mut items = app.store.list_subjects(collection, cursor, limit + 1).await?;
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if has_more { items.last().map(|s| s.id) } else { None };
    Ok(SubjectPage { items, next_cursor })
}

/// Erasure: the subject, its templates, stored images, index entries and its link from past
/// verifications are deleted. The audit log keeps that an erasure happened.
pub async fn erase(app: &App, caller: &Caller, id: Uuid) -> ServiceResult<()> {
    erase_on(app, caller, id, DestructionGround::ErasureRequest).await.map(|_| ())
}

/// Refuses a subject whose consent was withdrawn or has expired: it is out of matching and
/// enrolment until the retention job erases it.
pub fn consent_holds(subject: &Subject) -> ServiceResult<()> {
    if subject.consent_withdrawn_at.is_some() {
        return Err(ServiceError::ConsentWithdrawn);
    }
    if subject.consent.as_ref().and_then(|c| c.expires_at).is_some_and(|end| end <= Utc::now()) {
        return Err(ServiceError::ConsentExpired);
    }
    Ok(())
}

/// What a withdrawal of consent did: erased the subject, or took it out of matching until the
/// retention job erases it.
pub struct Withdrawal {
    pub destruction_record_id: Option<Uuid>,
    pub erase_after: Option<DateTime<Utc>>,
}

/// Withdrawal of consent: the subject is erased at once (ground `consent_withdrawn`), or, with
/// `retention.after_withdrawal_days`, leaves every replica's index now and is erased that many
/// days later by the retention job.
pub async fn withdraw_consent(app: &App, caller: &Caller, id: Uuid) -> ServiceResult<Withdrawal> {
    let days = app.config.retention.after_withdrawal_days;
    if days == 0 {
        let record = erase_on(app, caller, id, DestructionGround::ConsentWithdrawn).await?;
        return Ok(Withdrawal { destruction_record_id: Some(record), erase_after: None });
    }
    let subject = visible(app, caller, id, Role::Enrol).await?;
    let withdrawn = app.store.withdraw_consent(id, Utc::now()).await?.ok_or(ServiceError::SubjectNotFound)?;
    app.gallery.remove_subject(id);
    gallery_sync::refresh(app).await;
    let withdrawn_at = withdrawn.consent_withdrawn_at.expect("the store records the withdrawal");
    let erase_after = withdrawn_at + chrono::Duration::days(i64::from(days));
    audit::record(
        app,
        caller,
        Entry::new(AuditAction::ConsentWithdraw, AuditOutcome::Ok)
            .on(&subject.collection)
            .subject(id)
            .detail(json!({ "erase_after": erase_after })),
    )
    .await;
    Ok(Withdrawal { destruction_record_id: None, erase_after: Some(erase_after) })
}

/// Erases the subject on a ground its destruction record names; returns the record's id.
pub async fn erase_on(
    app: &App,
    caller: &Caller,
    id: Uuid,
    ground: DestructionGround,
) -> ServiceResult<Uuid> {
    let subject = visible(app, caller, id, Role::Enrol).await?;
    let destruction = destruction::by(app, caller, ground);
    let erasure = app.store.erase_subject(id, &destruction).await?.ok_or(ServiceError::SubjectNotFound)?;
    app.gallery.remove_subject(id);
    gallery_sync::refresh(app).await;
    images::delete(app, erasure.image_refs.clone(), Deletion::Erasure).await;
    let detail = json!({
        "templates": erasure.templates.len(),
        "images": erasure.image_refs.len(),
        "ground": ground.as_str(),
    });
    audit::record(
        app,
        caller,
        Entry::new(AuditAction::SubjectErase, AuditOutcome::Ok)
            .on(&subject.collection)
            .subject(id)
            .detail(detail),
    )
    .await;
    let record = erasure.record.expect("the store writes a record with every erasure");
    Ok(record.id)
}

/// The subject's faces as this service matches them: during a model change a face also has a
/// template of the other recognizer, which is not listed twice.
pub async fn faces(app: &App, caller: &Caller, id: Uuid) -> ServiceResult<Vec<Template>> {
    visible(app, caller, id, Role::Read).await?;
    let templates = app.store.list_templates(id).await?;
    Ok(templates.into_iter().filter(|t| t.model == app.model).collect())
}

/// Deletes a face with all its templates: the one named and its twins of other recognizers.
pub async fn delete_face(app: &App, caller: &Caller, id: Uuid, face_id: Uuid) -> ServiceResult<()> {
    let subject = visible(app, caller, id, Role::Enrol).await?;
    let destruction = destruction::by(app, caller, DestructionGround::FaceDeletion);
    let deleted = app.store.delete_template(id, face_id, &destruction).await?;
    if deleted.is_empty() {
        return Err(ServiceError::FaceNotFound);
    }
    for template in &deleted {
        app.gallery.remove_template(template.id);
    }
    gallery_sync::refresh(app).await;
    let references = deleted.iter().filter_map(|t| t.image_ref.clone()).collect();
    images::delete(app, references, Deletion::FaceDelete).await;
    let detail = json!({ "face_id": face_id, "templates": deleted.len() });
    audit::record(
        app,
        caller,
        Entry::new(AuditAction::FaceDelete, AuditOutcome::Ok)
            .on(&subject.collection)
            .subject(id)
            .detail(detail),
    )
    .await;
    Ok(())
}
