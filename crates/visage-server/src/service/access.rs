//! Subject access (GDPR art. 15, 152-FZ art. 14): everything visage holds about one subject,
//! as one ZIP an admin hands to the person who asked. Audited.

use std::io::Write;

use serde_json::{Value, json};
use uuid::Uuid;
use visage_store::{AuditAction, AuditFilter, AuditOutcome, DecisionFilter, DecisionOrder, Role};
use zip::write::SimpleFileOptions;

use super::audit::Entry;
use super::{Caller, ServiceError, ServiceResult, audit, images, subjects};
use crate::state::App;

/// The ZIP and the name to offer it under.
pub struct SubjectExport {
    pub file_name: String,
    pub zip: Vec<u8>,
}

const README: &str = "\
What this service holds about one person, at the time of the export.

subject.json    the subject record: identifiers, metadata, the consent record
faces.json      each enrolled face: when, with which recognizer, its quality measures, whether
                its photo is stored. The face templates themselves are numbers computed from the
                photos, kept encrypted; they are not included.
images/         the stored enrolment photos (when the service keeps them), one per face
decisions.json  the verifications and identifications that named this person, with their
                scores, thresholds and any review label
audit.json      the audit events about this person (who did what, when; no photos)
";

/// Builds the export. A scoped admin may export the subjects of its collections.
pub async fn export(app: &App, caller: &Caller, id: Uuid) -> ServiceResult<SubjectExport> {
    let subject = subjects::visible(app, caller, id, Role::Admin).await?;
    let templates = app.store.list_templates(id).await?;
    let decisions = decisions_about(app, id).await?;
    let events = audit_about(app, id).await?;

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut add = |name: &str, bytes: &[u8]| -> ServiceResult<()> {
        zip.start_file(name, options).map_err(internal)?;
        zip.write_all(bytes).map_err(internal)
    };
    add("README.txt", README.as_bytes())?;
    add("subject.json", &pretty(&serde_json::to_value(&subject).map_err(internal)?))?;
    let faces: Vec<Value> = templates
        .iter()
        .map(|t| {
            json!({
                "face_id": t.face_id(), "template_id": t.id, "recognizer": t.model, "created_at": t.created_at,
                "quality": t.quality, "image_stored": t.image_ref.is_some(),
            })
        })
        .collect();
    add("faces.json", &pretty(&json!(faces)))?;
    for t in templates.iter().filter(|t| t.source_template_id.is_none()) {
        let Some(reference) = &t.image_ref else { continue };
        let image = images::load(app, t.id, id, reference).await.map_err(|e| {
            ServiceError::Internal(format!("a stored image of the subject cannot be read: {e}"))
        })?;
        let extension = ::image::guess_format(&image)
            .ok()
            .and_then(|f| f.extensions_str().first().copied())
            .unwrap_or("bin");
        add(&format!("images/{}.{extension}", t.id), &image)?;
    }
    add("decisions.json", &pretty(&json!(decisions)))?;
    add("audit.json", &pretty(&json!(events)))?;
    let zip = zip.finish().map_err(internal)?.into_inner();

    let detail = json!({ "faces": faces.len(), "decisions": decisions.len(), "audit_events": events.len() });
    audit::record(
        app,
        caller,
        Entry::new(AuditAction::SubjectExport, AuditOutcome::Ok)
            .on(&subject.collection)
            .subject(id)
            .detail(detail),
    )
    .await;
    Ok(SubjectExport { file_name: format!("subject-{id}.zip"), zip })
}

async fn decisions_about(app: &App, id: Uuid) -> ServiceResult<Vec<Value>> {
    const PAGE: u32 = 500;
    let mut all = Vec::new();
    loop {
        let filter = DecisionFilter {
            subject_id: Some(id),
            order: DecisionOrder::Newest,
            limit: PAGE,
            offset: all.len() as u32,
            ..DecisionFilter::default()
        };
        let page = app.store.list_decisions(&filter).await?;
        let last = page.len() < PAGE as usize;
        all.extend(page.into_iter().map(|d| {
            let r = d.record;
            json!({
                "id": r.id, "at": r.created_at, "mode": r.mode.as_str(), "collection": r.collection,
                "decision": r.decision.as_str(), "similarity": r.similarity, "threshold": r.threshold,
                "far_target": r.far_target, "calibration": r.calibration, "recognizer": r.model,
                "liveness_score": r.liveness_score, "probe_quality": r.probe_quality,
                "probe_image_kept_until": r.probe.map(|p| p.expires_at),
                "label": d.truth.map(|t| t.as_str()), "labelled_at": d.labelled_at,
            })
        }));
        if last {
            return Ok(all);
        }
    }
}

async fn audit_about(app: &App, id: Uuid) -> ServiceResult<Vec<Value>> {
    const PAGE: u32 = 1000;
    let filter = AuditFilter { subject_id: Some(id), ..AuditFilter::default() };
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = app.store.list_audit(&filter, after, PAGE).await?;
        after = page.last().map(|e| e.seq);
        let last = page.len() < PAGE as usize;
        all.extend(page.into_iter().map(|e| {
            json!({
                "at": e.at, "action": e.action.as_str(), "outcome": e.outcome.as_str(), "api_key_id": e.api_key_id,
                "collection": e.collection, "detail": e.detail,
            })
        }));
        if last {
            return Ok(all);
        }
    }
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).expect("JSON values serialize");
    text.push(b'\n');
    text
}

fn internal(err: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("cannot build the export: {err}"))
}
