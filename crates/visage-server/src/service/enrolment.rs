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
use crate::gallery::Owner;
use crate::inference::{LivenessVerdict, Pick, Probe};
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
///
/// `request_key` names the request (its Idempotency-Key): an enrolment it already stored (its
/// answer lost to a crash) is answered again instead of enrolled twice, without a liveness
/// verdict, which was not kept.
pub async fn enrol(
    app: &App,
    caller: &Caller,
    subject_id: Uuid,
    images: Vec<Bytes>,
    liveness: Option<LivenessMode>,
    mut request_key: Option<String>,
) -> ServiceResult<Vec<EnrolledFace>> {
    let subject = subjects::visible(app, caller, subject_id, Role::Enrol).await?;
    subjects::consent_holds(&subject)?;
    let done = match &request_key {
        Some(key) => app.store.templates_of_request(key).await?,
        None => None,
    };
    match done {
        Some(stored) if stored.first().is_some_and(|t| t.subject_id == subject_id) => {
            return Ok(stored
                .into_iter()
                .map(|template| EnrolledFace { template, liveness: None })
                .collect());
        }
        // Its faces deleted since: enrolled anew, the request already recorded.
        Some(_) => request_key = None,
        None => {}
    }
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
    let kept_images: Vec<Option<Bytes>> =
        images.iter().map(|bytes| app.config.storage.store_images.then(|| bytes.clone())).collect();
    let good_enough = |probe: &Probe| match probe.face.quality.passed() {
        true => Ok(()),
        false => Err(ServiceError::LowQuality { reasons: probe.face.quality.issues.clone() }),
    };
    let probes = analysis::probe_many(app, caller, images, Pick::OnlyGoodFace, mode, good_enough).await?;
    let mut faces = Vec::with_capacity(probes.len());
    let mut embeddings = Vec::with_capacity(probes.len());
    for probe in probes {
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
    let stored = match &request_key {
        Some(key) => app.store.add_templates_for_request(&templates, key).await,
        None => app.store.add_templates(&templates).await,
    };
    if let Err(err) = stored {
        images::delete(app, uploaded, Deletion::EnrolmentRollback).await;
        return Err(err.into());
    }
    for (template, embedding) in templates.iter().zip(&embeddings) {
        let owner = Owner {
            collection: &subject.collection,
            subject_id,
            external_id: &subject.external_id,
            consent_expires_at: subject.consent.as_ref().and_then(|c| c.expires_at),
        };
        app.gallery.insert(owner, template.id, embedding.as_slice());
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

/// Faces turned less than this (yaw, degrees) count as frontal.
pub const FRONTAL_YAW_DEGREES: f32 = 15.0;

/// What would make a subject's enrolment recognise them better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// Fewer than two frontal faces are enrolled: on LFW a second photo took the false
    /// rejects at FAR 1e-4 from about 2.5% to about 0.7% (docs/accuracy.md).
    AddAnotherPhoto,
}

impl Advice {
    pub fn code(self) -> &'static str {
        match self {
            Self::AddAnotherPhoto => "add_another_photo",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::AddAnotherPhoto => {
                "fewer than two frontal faces are enrolled: another frontal photo of the subject lowers false rejects"
            }
        }
    }
}

/// The advice for a subject enrolled with these templates (of the running recognizer).
pub fn advise(templates: &[Template]) -> Vec<Advice> {
    let frontal = templates
        .iter()
        .filter(|t| {
            t.quality["yaw_degrees"].as_f64().is_some_and(|yaw| yaw.abs() < f64::from(FRONTAL_YAW_DEGREES))
        })
        .count();
    if frontal < 2 { vec![Advice::AddAnotherPhoto] } else { Vec::new() }
}

/// [`advise`] for a subject as stored now.
pub async fn advice(app: &App, subject_id: Uuid) -> ServiceResult<Vec<Advice>> {
    let mut templates = app.store.list_templates(subject_id).await?;
    templates.retain(|t| t.model == app.model);
    Ok(advise(&templates))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(yaw: f64) -> Template {
        Template {
            id: Uuid::now_v7(),
            subject_id: Uuid::nil(),
            model: "sface".into(),
            sealed: visage_store::crypto::SealedTemplate {
                key_id: "k".into(),
                nonce: vec![],
                ciphertext: vec![],
            },
            quality: json!({ "yaw_degrees": yaw }),
            image_ref: None,
            created_at: Utc::now(),
            source_template_id: None,
        }
    }

    #[test]
    fn a_second_frontal_face_is_advised_until_there_is_one() {
        assert_eq!(advise(&[]), [Advice::AddAnotherPhoto]);
        assert_eq!(advise(&[face(3.0)]), [Advice::AddAnotherPhoto]);
        assert_eq!(advise(&[face(3.0), face(-40.0)]), [Advice::AddAnotherPhoto], "a profile is not frontal");
        assert!(advise(&[face(3.0), face(-12.0)]).is_empty());
        let mut unmeasured = face(0.0);
        unmeasured.quality = json!({});
        assert_eq!(advise(&[face(1.0), unmeasured]), [Advice::AddAnotherPhoto]);
    }
}
