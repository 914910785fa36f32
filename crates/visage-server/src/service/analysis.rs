//! Looking at a face without matching it: detection, quality and liveness, and the liveness
//! rule every probe goes through.

use bytes::Bytes;
use serde_json::json;

use visage_store::{AuditAction, AuditOutcome};

use super::audit::Entry;
use super::{Caller, ServiceError, ServiceResult, SpoofKind, audit, enum_name};
use crate::config::LivenessMode;
use crate::inference::{Detection, LivenessVerdict, Pick, Probe};
use crate::state::App;

/// Analyses a probe on the inference pool and applies the liveness mode: in `require` mode a
/// spoof is refused (and audited) and so is an image too poor to judge.
pub async fn probe(
    app: &App,
    caller: &Caller,
    bytes: Bytes,
    pick: Pick,
    mode: LivenessMode,
) -> ServiceResult<Probe> {
    let mut probes = probe_many(app, caller, vec![bytes], pick, mode, |_| Ok(())).await?;
    Ok(probes.pop().expect("one probe per image"))
}

/// [`probe`] for the images of one request, embedded in batches
/// ([`crate::inference::Pipeline::probe_many`]) that run on the inference threads side by side
/// ([`crate::inference::InferencePool::share`]). Each probe goes through the liveness rule,
/// then `accept`; the first image refused, in order, answers for the request, named by its
/// index when there are several.
pub async fn probe_many(
    app: &App,
    caller: &Caller,
    images: Vec<Bytes>,
    pick: Pick,
    mode: LivenessMode,
    accept: impl Fn(&Probe) -> ServiceResult<()>,
) -> ServiceResult<Vec<Probe>> {
    let with_liveness = mode != LivenessMode::Off;
    let several = images.len() > 1;
    let batches = images.chunks(app.pool.share(images.len())).map(|batch| {
        let batch = batch.to_vec();
        app.pool.run(move |p| {
            let images: Vec<&[u8]> = batch.iter().map(|bytes| bytes.as_ref()).collect();
            p.probe_many(&images, pick, with_liveness)
        })
    });
    let mut results = Vec::with_capacity(images.len());
    for batch in futures::future::join_all(batches).await {
        results.extend(batch??);
    }
    // Every verdict reached is counted, as one request per image would count it.
    for verdict in results.iter().flatten().filter_map(|probe| probe.liveness.as_ref()) {
        count_liveness(app, verdict);
    }
    let mut probes = Vec::with_capacity(results.len());
    for (index, result) in results.into_iter().enumerate() {
        let probe = result.map_err(|refused| ServiceError::from(refused).in_batch(index, several))?;
        let accepted = match apply_liveness_mode(app, caller, &probe, mode).await {
            Ok(()) => accept(&probe),
            Err(refused) => Err(refused),
        };
        accepted.map_err(|refused| refused.in_batch(index, several))?;
        probes.push(probe);
    }
    Ok(probes)
}

/// In `require` mode a spoof is refused (and audited) and so is an image too poor to judge.
async fn apply_liveness_mode(
    app: &App,
    caller: &Caller,
    probe: &Probe,
    mode: LivenessMode,
) -> ServiceResult<()> {
    if mode != LivenessMode::Require {
        return Ok(());
    }
    match &probe.liveness {
        Some(LivenessVerdict::Spoof { score, attack_type }) => {
            let attack = enum_name(attack_type);
            audit::record(
                app,
                caller,
                Entry::new(AuditAction::LivenessSpoof, AuditOutcome::Refused)
                    .detail(json!({ "attack_type": attack })),
            )
            .await;
            let attack_type = if attack == "print" { SpoofKind::Print } else { SpoofKind::Unknown };
            Err(ServiceError::SpoofDetected { score: *score, attack_type })
        }
        Some(LivenessVerdict::Inconclusive { reasons }) => {
            Err(ServiceError::LivenessInconclusive { reasons: reasons.clone() })
        }
        _ => Ok(()),
    }
}

/// Every face of an image, analysed; liveness of each on request.
pub async fn detect(app: &App, bytes: Bytes, with_liveness: bool) -> ServiceResult<Detection> {
    let detection = app.pool.run(move |p| p.detect_all(&bytes, with_liveness)).await??;
    for verdict in detection.faces.iter().filter_map(|(_, verdict)| verdict.as_ref()) {
        count_liveness(app, verdict);
    }
    Ok(detection)
}

/// Passive liveness of the face in the image, judged and audited whatever the configured mode.
pub async fn check_liveness(app: &App, caller: &Caller, bytes: Bytes) -> ServiceResult<Probe> {
    let probe = probe(app, caller, bytes, Pick::Configured, LivenessMode::Report).await?;
    let result = probe.liveness.as_ref().map(LivenessVerdict::result);
    audit::record(
        app,
        caller,
        Entry::new(AuditAction::LivenessCheck, AuditOutcome::Ok).detail(json!({ "result": result })),
    )
    .await;
    Ok(probe)
}

fn count_liveness(app: &App, verdict: &LivenessVerdict) {
    app.metrics.liveness_checks.with_label_values(&[verdict.result()]).inc();
    if let LivenessVerdict::Spoof { attack_type, .. } = verdict {
        app.metrics.spoofing_attacks.with_label_values(&[&enum_name(attack_type)]).inc();
    }
}
