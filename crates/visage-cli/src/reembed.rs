//! `visage reembed`: a recognizer change without downtime (see visage_server::reembed),
//! `visage images sweep` and `visage keys rotate-template-key`.

use std::time::Duration;

use visage_face::RecognizerKind;
use visage_server::Config;
use visage_server::jobs::reembed::{self, ReembedSummary};

use crate::progress::Deferred;

pub fn run(config: &Config, to: RecognizerKind, batch: u32, prune: bool, force: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let progress = Deferred::default();
    if prune {
        let summary = runtime.block_on(reembed::prune(config, to, force, batch, &progress))?;
        eprintln!(
            "pruned {} templates of other recognizers; {} kept because their image could not be deleted (rerun --prune)",
            summary.deleted, summary.kept_image_not_deleted
        );
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    let summary = runtime.block_on(reembed::reembed(config, to, batch, &progress))?;
    eprintln!("{}", describe(&summary));
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

fn describe(summary: &ReembedSummary) -> String {
    let mut text = format!(
        "re-embedded {} templates with {}; skipped {}, failed {}",
        summary.done,
        summary.to,
        summary.skipped_total(),
        summary.failed_total()
    );
    if summary.status.untwinned == 0 {
        text.push_str(&format!(
            ". Every face has a {0} template: restart the replicas with models.recognizer = {0}, rerun \
             `visage reembed --to {0}` for enrolments made meanwhile, then `--prune`",
            summary.to
        ));
    } else {
        text.push_str(&format!(
            ". {} templates still have no {} twin: faces without a stored image or whose image fails \
             must be enrolled again (or pruned with --force)",
            summary.status.untwinned, summary.to
        ));
    }
    text
}

/// `visage keys rotate-template-key`.
pub fn rotate_template_key(config: &Config, batch: u32) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let progress = Deferred::default();
    let summary = runtime.block_on(visage_server::jobs::rotation::rotate(config, batch, &progress))?;
    let failed = summary.failed_total();
    eprintln!(
        "re-sealed {} templates, {} images and {} probe images under key {}; {} failed",
        summary.templates.resealed,
        summary.images.resealed,
        summary.probe_images.resealed,
        summary.active_key_id,
        failed
    );
    if summary.removable_key_ids.is_empty() {
        eprintln!("keys still in use: {}", summary.keys_in_use.join(", "));
    } else {
        eprintln!(
            "nothing needs key(s) {} any more: remove them from encryption.previous_keys",
            summary.removable_key_ids.join(", ")
        );
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    anyhow::ensure!(failed == 0, "{failed} items could not be re-sealed (see the summary's `failed`)");
    Ok(())
}

pub fn sweep(config: &Config, older_than_hours: u64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let grace = Duration::from_secs(older_than_hours * 3600);
    let summary = runtime.block_on(visage_server::jobs::sweep::sweep(config, grace))?;
    eprintln!(
        "{} images stored; deleted {} that no template refers to, left {} younger than {older_than_hours} h, {} failed",
        summary.images, summary.deleted, summary.recent, summary.failed
    );
    println!("{}", serde_json::to_string_pretty(&summary)?);
    anyhow::ensure!(summary.failed == 0, "{} images could not be deleted", summary.failed);
    Ok(())
}
