//! Enrolment: faces become sealed templates of a subject, all of a request or none.

use bytes::Bytes;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;
use visage_store::{AuditAction, AuditOutcome, Role, Template};

use super::audit::Entry;
use super::images::{self, Deletion};
use super::{Caller, ServiceError, ServiceResult, analysis, audit, gallery_sync, subjects};
use crate::config::LivenessMode;
use crate::inference::{LivenessVerdict, Pick};
use crate::state::App;

/// A stored face and the liveness verdict it was enrolled with (when judged).
pub struct EnrolledFace {
    pub template: Template,
    pub liveness: Option<LivenessVerdict>,
}

/// Enrols faces: each image must hold exactly one face that passes the quality gate (faces
/// that fail it, such as small ones in the background, are ignored) and pass liveness when
/// required. Every image is checked before anything is stored; then images (when kept) and
/// templates are stored together, and a failure of either undoes the uploads.
pub async fn enrol(
    app: &App,
    caller: &Caller,
    subject_id: Uuid,
    images: Vec<Bytes>,
    liveness: Option<LivenessMode>,
) -> ServiceResult<Vec<EnrolledFace>> {
    let subject = subjects::visible(app, caller, subject_id, Role::Enrol).await?;
    let mode = LivenessMode::for_request(liveness, app.config.liveness.enrol, app.config.profile);
    if images.is_empty() {
        return Err(ServiceError::ImageMissing);
    }
    let most = app.config.limits.max_batch_images;
    if images.len() > most {
        return Err(ServiceError::InvalidRequest(format!(
            "{} images sent, at most {most} per request",
            images.len()
        )));
    }
    let batch = images.len() > 1;
    let mut faces = Vec::with_capacity(images.len());
    let mut embeddings = Vec::with_capacity(images.len());
    let mut kept_images = Vec::with_capacity(images.len());
    for (index, bytes) in images.into_iter().enumerate() {
        let kept = app.config.storage.store_images.then(|| bytes.clone());
        let probe = analysis::probe(app, caller, bytes, Pick::OnlyGoodFace, mode)
            .await
            .map_err(|e| e.in_batch(index, batch))?;
        if !probe.face.quality.passed() {
            let reasons = probe.face.quality.issues.clone();
            return Err(ServiceError::LowQuality { reasons }.in_batch(index, batch));
        }
        let template_id = Uuid::now_v7();
        let template = Template {
            id: template_id,
            subject_id,
            model: app.model.clone(),
            sealed: app.keys.seal(template_id, subject_id, probe.face.embedding.as_slice()),
            quality: serde_json::to_value(probe.face.quality.measures).expect("measures serialize"),
            image_ref: None,
            created_at: Utc::now(),
            source_template_id: None,
        };
        faces.push(EnrolledFace { template, liveness: probe.liveness });
        embeddings.push(probe.face.embedding);
        kept_images.push(kept);
    }
    let mut uploaded = Vec::new();
    for (face, kept) in faces.iter_mut().zip(kept_images) {
        let Some(bytes) = kept else { continue };
        match images::store(app, face.template.id, subject_id, &bytes).await {
            Ok(reference) => {
                uploaded.push(reference.clone());
                face.template.image_ref = Some(reference);
            }
            Err(err) => {
                images::delete(app, uploaded, Deletion::EnrolmentRollback).await;
                return Err(err);
            }
        }
    }
    let templates: Vec<Template> = faces.iter().map(|f| f.template.clone()).collect();
    if let Err(err) = app.store.add_templates(&templates).await {
        images::delete(app, uploaded, Deletion::EnrolmentRollback).await;
        return Err(err.into());
    }
    for (template, embedding) in templates.iter().zip(&embeddings) {
        app.gallery.insert(&subject.collection, template.id, subject_id, embedding.as_slice());
    }
    gallery_sync::refresh(app).await;
    let detail = json!({ "faces": faces.len() });
    audit::record(
        app,
        caller,
        Entry::new(AuditAction::FaceEnrol, AuditOutcome::Ok)
            .on(&subject.collection)
            .subject(subject_id)
            .detail(detail),
    )
    .await;
    Ok(faces)
}
