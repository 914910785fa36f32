//! `visage reembed`: a recognizer change without downtime (see visage_server::reembed), and
//! `visage images sweep`.

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
