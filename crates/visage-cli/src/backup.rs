//! `visage backup` and `visage restore` (see visage_server::jobs::backup).

use std::path::{Path, PathBuf};

use visage_server::Config;
use visage_server::jobs::backup::{self, CalibrationOutcome, KEY_WARNING, RestoreOptions};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// The key warning, framed so that it is not missed.
fn shout(lines: &[String]) {
    let rule = "!".repeat(78);
    eprintln!("{rule}");
    for line in lines {
        eprintln!("!! {line}");
    }
    eprintln!("{rule}");
}

pub fn backup(config: &Config, out: &Path) -> anyhow::Result<()> {
    let summary = runtime()?.block_on(backup::backup(config, out))?;
    let c = &summary.counts;
    eprintln!(
        "wrote {} ({} bytes): snapshot of {}, {} subjects, {} templates, {} images{}",
        summary.archive.display(),
        summary.bytes,
        summary.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        c.subjects,
        c.templates,
        c.images,
        if summary.calibration { ", the calibration file" } else { "" }
    );
    if c.images_missing > 0 {
        eprintln!(
            "warning: {} images were deleted while the backup ran (faces deleted or subjects erased): their faces \
             come back without a stored image",
            c.images_missing
        );
    }
    let ids: Vec<&str> = summary.template_keys.iter().map(|k| k.key_id.as_str()).collect();
    shout(&[
        KEY_WARNING.to_owned(),
        format!(
            "This backup needs the template keys with ids: {}.",
            if ids.is_empty() { "none (no template or image yet)".to_owned() } else { ids.join(", ") }
        ),
    ]);
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

pub fn restore(config: &Config, from: &Path, reapply_erasures: Option<PathBuf>) -> anyhow::Result<()> {
    let options = RestoreOptions { from: from.to_path_buf(), reapply_erasures };
    let summary = runtime()?.block_on(backup::restore(config, &options))?;
    let c = &summary.counts;
    let taken = summary.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    eprintln!(
        "restored the backup taken {taken} into {}: {} subjects, {} templates (every one opened with the \
         configured keys), {} images",
        summary.data_dir.display(),
        c.subjects,
        c.templates,
        c.images
    );
    match &summary.calibration {
        CalibrationOutcome::NotInBackup => {
            eprintln!("the backup holds no calibration file: the service uses the built-in thresholds")
        }
        CalibrationOutcome::Installed(path) => eprintln!("calibration file written to {}", path.display()),
        CalibrationOutcome::AlreadyThere(path) => {
            eprintln!("{} is the backup's calibration file", path.display())
        }
        CalibrationOutcome::KeptDifferent(path) => eprintln!(
            "warning: {} differs from the backup's calibration file and is kept; the backup's: `unzip -p {} \
             calibration.json`",
            path.display(),
            from.display()
        ),
    }
    match &summary.reapplied {
        Some(reapplied) => {
            eprintln!(
                "erased again {} subjects the destruction records name ({} records were about subjects not in the \
                 backup)",
                reapplied.erased, reapplied.absent
            );
            if !reapplied.face_deletions.is_empty() {
                eprintln!(
                    "warning: {} subjects had a face deleted after the backup; the records do not name the face, \
                     so it is back: delete it again (subject ids in the summary below)",
                    reapplied.face_deletions.len()
                );
            }
        }
        None => eprintln!(
            "subjects erased after {taken} are back: erase them again before serving (`--reapply-erasures` with \
             `visage destruction-records export --from {}`; see docs/backup.md)",
            summary.created_at.format("%Y-%m-%d")
        ),
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
