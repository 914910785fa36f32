//! `visage backup` and `visage restore`: the embedded storage (the SQLite database, the sealed
//! images under `data_dir/images`, the calibration file) in one ZIP archive, and back into an
//! empty data directory. Never the template key: without it the archive is useless, so the
//! operator keeps it apart (see docs/backup.md).
//!
//! The archive: `README.txt` (what follows, and the key warning), `manifest.json` ([`Manifest`]:
//! versions, counts, the ids of the keys the templates need, a SHA-256 per file), `visage.db`
//! (a consistent snapshot taken with `VACUUM INTO` while the service serves), `images/*.img`
//! (the images the snapshot refers to, still sealed) and `calibration.json` (when the deployment
//! has one). PostgreSQL and S3 have tools of their own for this; both commands refuse them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use visage_objects::{Backend, ImageStore};
use visage_store::crypto::{CryptoError, KeyRing};
use visage_store::{
    AuditAction, AuditOutcome, Destruction, DestructionGround, DestructionRecord, NewAuditEvent, SqliteStore,
    Store,
};
use zip::write::SimpleFileOptions;

use crate::config::{Config, ImageBackend, Profile};
use crate::resources::{image_backend, key_ring};
use crate::service::audit;
use crate::service::images::{Deletion, delete_images};

/// What `manifest.json` says the archive is.
pub const FORMAT: &str = "visage-backup";
pub const FORMAT_VERSION: u32 = 1;
/// Where the commands for PostgreSQL and S3, and the whole procedure, are described.
pub const DOCS: &str = "docs/backup.md";

const README: &str = "README.txt";
const MANIFEST: &str = "manifest.json";
const DATABASE: &str = "visage.db";
const CALIBRATION: &str = "calibration.json";
const IMAGES: &str = "images";
/// The one file a data directory may hold before a restore: the development key, put back
/// from its own backup.
const DEVELOPMENT_KEY: &str = "template.key";
/// Who re-applied an erasure, as its new destruction record says.
const RESTORE_PERFORMER: &str = "visage:restore";

/// The warning `visage backup` prints and the archive's README starts with.
pub const KEY_WARNING: &str = "THE TEMPLATE KEY IS NOT IN THIS BACKUP. Every template and image in it is sealed \
with the template keys named in its manifest (template_keys); without them the backup is useless: nothing in it \
can be opened again. Back the key up apart (encryption.key, encryption.key_file, encryption.previous_keys, or \
data_dir/template.key in development), and never beside the archive: whoever holds both can read every template.";

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    pub format_version: u32,
    /// The visage that made it.
    pub visage_version: String,
    /// The newest database migration applied to the snapshot.
    pub schema_version: i64,
    /// When the snapshot was taken: erasures made after it are not in the backup.
    pub created_at: DateTime<Utc>,
    /// The keys (by id) the templates and images are sealed with: a restore needs every one.
    pub template_keys: Vec<KeyUse>,
    pub counts: Counts,
    /// Every file but this manifest and the README, with its size and SHA-256.
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUse {
    pub key_id: String,
    pub templates: u64,
    pub images: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub collections: u64,
    pub subjects: u64,
    pub templates: u64,
    pub images: u64,
    /// Images the snapshot refers to that were deleted before they were copied (a face deleted
    /// or a subject erased during the backup): their faces come back without a stored image.
    pub images_missing: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    /// For an image: the key that sealed it (read from the object, which names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// What [`backup`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub archive: PathBuf,
    pub bytes: u64,
    pub created_at: DateTime<Utc>,
    pub schema_version: i64,
    pub template_keys: Vec<KeyUse>,
    pub counts: Counts,
    pub calibration: bool,
}

/// Backups cover the embedded storage; PostgreSQL and S3 are backed up with their own tools.
fn embedded_only(config: &Config, command: &str) -> anyhow::Result<()> {
    if config.database.postgres_url().is_some() {
        bail!(
            "the database is PostgreSQL (database.url): `visage {command}` covers the embedded SQLite storage \
             only; use pg_dump and pg_restore, or continuous archiving with point-in-time recovery, as {DOCS} \
             describes"
        );
    }
    if config.images.backend == ImageBackend::S3 {
        bail!(
            "images are kept in S3 (images.backend = s3): `visage {command}` covers the embedded storage only; \
             protect the bucket with versioning or copy it with `mc mirror`, and the SQLite file with \
             `sqlite3 visage.db \".backup FILE\"`, as {DOCS} describes"
        );
    }
    Ok(())
}

/// The directory images are kept in (local backend).
fn images_dir(config: &Config) -> PathBuf {
    match image_backend(config) {
        Backend::Local { dir } => dir,
        Backend::S3(_) => unreachable!("embedded_only refuses the S3 backend"),
    }
}

/// Writes a backup of the embedded storage to `out` (which must not exist) while the service
/// keeps serving: a snapshot of the database, then the images it refers to, then the
/// calibration file. The archive appears at `out` only once complete. Audited in the live
/// database as `backup.create`.
pub async fn backup(config: &Config, out: &Path) -> anyhow::Result<BackupSummary> {
    embedded_only(config, "backup")?;
    ensure!(!out.exists(), "{} exists: a backup never overwrites a file, name a new one", out.display());
    let database = config.database_path();
    ensure!(database.is_file(), "there is no database at {}: nothing to back up", database.display());
    let work = tempfile::Builder::new()
        .prefix(".visage-backup-")
        .tempdir_in(parent_of(out))
        .with_context(|| format!("cannot make a working directory beside {}", out.display()))?;

    let live =
        SqliteStore::open(&database).await.with_context(|| format!("cannot open {}", database.display()))?;
    let created_at = Utc::now();
    let snapshot = work.path().join(DATABASE);
    let taken = live.snapshot_into(&snapshot).await.context("taking a snapshot of the database");
    let outcome = match taken {
        Ok(()) => write_archive(config, &snapshot, work.path(), out, created_at).await,
        Err(err) => Err(err),
    };
    let event = match &outcome {
        Ok(summary) => NewAuditEvent {
            api_key_id: None,
            action: AuditAction::BackupCreate,
            outcome: AuditOutcome::Ok,
            collection: None,
            subject_id: None,
            detail: json!({
                "created_at": summary.created_at,
                "schema_version": summary.schema_version,
                "counts": summary.counts,
                "key_ids": summary.template_keys.iter().map(|k| &k.key_id).collect::<Vec<_>>(),
            }),
        },
        Err(_) => NewAuditEvent {
            api_key_id: None,
            action: AuditAction::BackupCreate,
            outcome: AuditOutcome::Failed,
            collection: None,
            subject_id: None,
            detail: json!({}),
        },
    };
    audit::append(&live, &event).await;
    live.close().await;
    outcome
}

/// Reads what the snapshot holds and writes the archive beside `out`, then moves it there.
async fn write_archive(
    config: &Config,
    snapshot: &Path,
    work: &Path,
    out: &Path,
    created_at: DateTime<Utc>,
) -> anyhow::Result<BackupSummary> {
    let copy = SqliteStore::open(snapshot).await.context("opening the snapshot")?;
    let read = async {
        let schema_version = copy.schema_version().await?;
        let templates = copy.all_templates().await?;
        let image_refs = copy.image_refs().await?;
        let collections = copy.counts().await?;
        anyhow::Ok((schema_version, templates, image_refs, collections))
    }
    .await;
    // Closing the last connection folds the write-ahead log back into the file.
    copy.close().await;
    let (schema_version, templates, image_refs, collections) = read?;
    ensure_folded(snapshot)?;

    let mut keys: BTreeMap<String, KeyUse> = BTreeMap::new();
    for t in &templates {
        key_use(&mut keys, &t.template.sealed.key_id).templates += 1;
    }
    let mut counts = Counts {
        collections: collections.len() as u64,
        subjects: collections.iter().map(|c| c.subjects).sum(),
        templates: templates.len() as u64,
        ..Counts::default()
    };
    let calibration = config.models.dir.join(visage_calibration::FILE_NAME);
    let plan = ArchivePlan {
        snapshot: snapshot.to_path_buf(),
        images_dir: images_dir(config),
        image_refs,
        calibration: calibration.is_file().then_some(calibration),
        partial: work.join("archive.zip"),
        created_at,
        schema_version,
    };
    let written = tokio::task::spawn_blocking(move || plan.write()).await??;
    for (key_id, images) in &written.image_keys {
        key_use(&mut keys, key_id).images += images;
    }
    counts.images = written.image_keys.values().sum();
    counts.images_missing = written.images_missing;
    let template_keys: Vec<KeyUse> = keys.into_values().collect();
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        visage_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version,
        created_at,
        template_keys: template_keys.clone(),
        counts: counts.clone(),
        files: written.files,
    };
    let partial = written.partial;
    let out_path = out.to_path_buf();
    let bytes =
        tokio::task::spawn_blocking(move || finish_archive(written.zip, &manifest, &partial, &out_path))
            .await??;
    Ok(BackupSummary {
        archive: out.to_path_buf(),
        bytes,
        created_at,
        schema_version,
        template_keys,
        counts,
        calibration: written.calibration,
    })
}

/// A closed database file must hold everything: only the file is archived or moved, not a
/// write-ahead log beside it.
fn ensure_folded(database: &Path) -> anyhow::Result<()> {
    let wal = database.with_extension("db-wal");
    ensure!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "{} kept a write-ahead log after it was closed: the file alone would be incomplete",
        database.display()
    );
    Ok(())
}

fn key_use<'a>(keys: &'a mut BTreeMap<String, KeyUse>, key_id: &str) -> &'a mut KeyUse {
    keys.entry(key_id.to_owned()).or_insert_with(|| KeyUse {
        key_id: key_id.to_owned(),
        templates: 0,
        images: 0,
    })
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// What goes into the archive (blocking file work, run off the async runtime).
struct ArchivePlan {
    snapshot: PathBuf,
    images_dir: PathBuf,
    image_refs: Vec<String>,
    calibration: Option<PathBuf>,
    partial: PathBuf,
    created_at: DateTime<Utc>,
    schema_version: i64,
}

/// The archive so far (everything but the manifest).
struct Written {
    zip: zip::ZipWriter<File>,
    partial: PathBuf,
    files: Vec<FileEntry>,
    image_keys: BTreeMap<String, u64>,
    images_missing: u64,
    calibration: bool,
}

impl ArchivePlan {
    fn write(self) -> anyhow::Result<Written> {
        let file = create_private(&self.partial)?;
        let mut zip = zip::ZipWriter::new(file).set_auto_large_file();
        let deflated = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o600);
        // Sealed images do not compress.
        let stored = deflated.compression_method(zip::CompressionMethod::Stored);
        zip.start_file(README, deflated)?;
        zip.write_all(readme(self.created_at, self.schema_version).as_bytes())?;
        let mut files = vec![add_file(&mut zip, DATABASE, &self.snapshot, deflated.large_file(true))?];
        let mut image_keys = BTreeMap::new();
        let mut images_missing = 0;
        for reference in &self.image_refs {
            // A reference read from the database is `{uuid}.img`; anything else is not ours.
            ImageStore::id_of(reference)
                .with_context(|| format!("the snapshot names an image {reference:?}"))?;
            let path = self.images_dir.join(reference);
            let key_id = match sealed_key_id(&path) {
                Ok(key_id) => key_id,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    images_missing += 1;
                    continue;
                }
                Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
            };
            let mut entry = add_file(&mut zip, &format!("{IMAGES}/{reference}"), &path, stored)?;
            *image_keys.entry(key_id.clone()).or_insert(0) += 1;
            entry.key_id = Some(key_id);
            files.push(entry);
        }
        if let Some(calibration) = &self.calibration {
            files.push(add_file(&mut zip, CALIBRATION, calibration, deflated)?);
        }
        Ok(Written {
            zip,
            partial: self.partial,
            files,
            image_keys,
            images_missing,
            calibration: self.calibration.is_some(),
        })
    }
}

/// Adds the manifest, closes the archive, flushes it to disk and moves it to `out`.
fn finish_archive(
    mut zip: zip::ZipWriter<File>,
    manifest: &Manifest,
    partial: &Path,
    out: &Path,
) -> anyhow::Result<u64> {
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o600);
    zip.start_file(MANIFEST, options)?;
    zip.write_all(&serde_json::to_vec_pretty(manifest)?)?;
    let file = zip.finish()?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    drop(file);
    ensure!(
        !out.exists(),
        "{} appeared while the backup ran: the archive was not moved there",
        out.display()
    );
    std::fs::rename(partial, out).with_context(|| format!("cannot move the archive to {}", out.display()))?;
    sync_dir(parent_of(out));
    Ok(bytes)
}

/// A new file only its owner can read: the archive holds personal data.
fn create_private(path: &Path) -> anyhow::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).with_context(|| format!("cannot create {}", path.display()))
}

/// Copies a file into the archive, hashing it on the way.
fn add_file(
    zip: &mut zip::ZipWriter<File>,
    name: &str,
    path: &Path,
    options: SimpleFileOptions,
) -> anyhow::Result<FileEntry> {
    let mut source = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    zip.start_file(name, options)?;
    let (bytes, sha256) = copy_hashed(&mut source, zip)?;
    Ok(FileEntry { path: name.to_owned(), bytes, sha256, key_id: None })
}

/// Copies everything from `from` to `to`; returns the byte count and the SHA-256 (hex).
fn copy_hashed(from: &mut impl Read, to: &mut impl Write) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..n]);
        to.write_all(&buffer[..n])?;
        bytes += n as u64;
    }
    Ok((bytes, hex_string(&hasher.finalize())))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of the key that sealed a stored image: a sealed object starts with it and a newline
/// (visage-objects' object layout), so it is read without opening the image.
fn sealed_key_id(path: &Path) -> io::Result<String> {
    let mut head = [0u8; 128];
    let mut file = File::open(path)?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    head[..filled]
        .iter()
        .position(|&b| b == b'\n')
        .and_then(|end| std::str::from_utf8(&head[..end]).ok())
        .map(str::to_owned)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a sealed image"))
}

fn sync_dir(dir: &Path) {
    // Makes a rename durable; not every platform or filesystem allows it, and nothing is lost
    // without it but durability across a power cut.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

fn readme(created_at: DateTime<Utc>, schema_version: i64) -> String {
    format!(
        "visage backup, taken {created_at} by visage {version} (database schema {schema_version})\n\n\
         {KEY_WARNING}\n\n\
         This archive holds personal data in the clear (the subjects' external ids, metadata and consent \
         records, decisions, audit events) and sealed biometric data: keep it as protected as the database, \
         and no longer than the purpose of the backup needs (an erasure does not reach into a backup).\n\n\
         Subjects erased after {created_at} are in this backup. After a restore, erase them again: \
         `visage restore --from THIS_FILE --reapply-erasures RECORDS.json`, with the destruction records made \
         since (`visage destruction-records export --from {day}`); see docs/backup.md.\n\n\
         Files:\n\
         - manifest.json: visage and schema versions, when the snapshot was taken, counts, the ids of the \
         template keys the data needs, the size and SHA-256 of every file\n\
         - visage.db: a consistent snapshot of the SQLite database\n\
         - images/: the stored images the snapshot refers to, still sealed\n\
         - calibration.json: the deployment's thresholds (when it had a calibration file)\n\n\
         Restore into an empty data directory, with the same configuration as `visage serve` and the key: \
         `visage restore --from THIS_FILE --data-dir EMPTY_DIR`.\n",
        version = env!("CARGO_PKG_VERSION"),
        day = created_at.format("%Y-%m-%d"),
    )
}

/// What `visage restore` is asked to do.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub from: PathBuf,
    /// Destruction records (`visage destruction-records export --format json`): every subject a
    /// record erased is erased again before the restored data is put in place.
    pub reapply_erasures: Option<PathBuf>,
}

/// What [`restore`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    pub data_dir: PathBuf,
    /// When the backup's snapshot was taken.
    pub created_at: DateTime<Utc>,
    pub schema_version: i64,
    pub counts: Counts,
    /// Templates opened with the configured keys (all of them).
    pub templates_opened: u64,
    /// Images opened, one per key id (the others' key ids were checked).
    pub images_opened: u64,
    pub calibration: CalibrationOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reapplied: Option<Reapplied>,
}

/// What became of the backup's calibration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "path")]
pub enum CalibrationOutcome {
    /// The deployment had none: the built-in thresholds apply.
    NotInBackup,
    /// Written to the models directory, which had none.
    Installed(PathBuf),
    /// The models directory holds the same file.
    AlreadyThere(PathBuf),
    /// The models directory holds a different one, which is kept (the backup's stays in the
    /// archive: `unzip -p FILE calibration.json`).
    KeptDifferent(PathBuf),
}

/// Erasures re-applied from destruction records.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reapplied {
    /// Subjects erased again.
    pub erased: u64,
    /// Records of subjects the backup does not hold (erased before it was taken).
    pub absent: u64,
    /// Subjects that had a face deleted after the backup: the records do not name the face, so
    /// it is back; the operator deletes it again.
    pub face_deletions: Vec<Uuid>,
}

/// Restores a backup into the configured data directory, which must be empty (or hold only the
/// development key). Everything is checked in a working directory beside it first (checksums,
/// the schema version, that the configured keys open every template and an image per key),
/// erasures are re-applied there, and only then is it moved into place: a failure leaves the
/// data directory as it was. Audited in the restored database as `backup.restore`.
pub async fn restore(config: &Config, options: &RestoreOptions) -> anyhow::Result<RestoreSummary> {
    embedded_only(config, "restore")?;
    let target = config.storage.data_dir.clone();
    ensure_empty(&target)?;
    let keys = restore_keys(config)?;
    let records = options.reapply_erasures.as_deref().map(read_records).transpose()?;
    let parent = parent_of(&target).to_path_buf();
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".visage-restore-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot make a working directory in {}", parent.display()))?;

    let (from, dir) = (options.from.clone(), work.path().to_path_buf());
    let manifest = tokio::task::spawn_blocking(move || unpack(&from, &dir)).await??;
    let store =
        SqliteStore::open(&work.path().join(DATABASE)).await.context("opening the restored database")?;
    let checked = async {
        let opened = check_keys(&store, &keys, &manifest, &work.path().join(IMAGES)).await?;
        let reapplied = match &records {
            Some(records) => Some(reapply(config, &store, records, &work.path().join(IMAGES)).await?),
            None => None,
        };
        let event = NewAuditEvent {
            api_key_id: None,
            action: AuditAction::BackupRestore,
            outcome: AuditOutcome::Ok,
            collection: None,
            subject_id: None,
            detail: json!({
                "backup_created_at": manifest.created_at,
                "backup_schema_version": manifest.schema_version,
                "counts": manifest.counts,
                "erasures_reapplied": reapplied.as_ref().map_or(0, |r| r.erased),
            }),
        };
        store.append_audit(&event).await?;
        anyhow::Ok((opened, reapplied))
    }
    .await;
    store.close().await;
    let ((templates_opened, images_opened), reapplied) = checked?;
    ensure_folded(&work.path().join(DATABASE))?;
    let calibration = stage_calibration(config, work.path())?;

    ensure_empty(&target)?;
    move_into_place(work.path(), &target)?;
    let calibration = calibration.install()?;
    Ok(RestoreSummary {
        data_dir: target,
        created_at: manifest.created_at,
        schema_version: manifest.schema_version,
        counts: manifest.counts,
        templates_opened,
        images_opened,
        calibration,
        reapplied,
    })
}

/// Refuses a data directory that holds anything but the development key.
fn ensure_empty(dir: &Path) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut held: Vec<String> = entries
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<_>>()?;
    held.retain(|name| name != DEVELOPMENT_KEY);
    held.sort();
    if !held.is_empty() {
        let shown = held.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let more = if held.len() > 5 { format!(" and {} more", held.len() - 5) } else { String::new() };
        bail!(
            "the data directory {} is not empty (it holds {shown}{more}): a restore goes only into an empty \
             one (which may hold the development key {DEVELOPMENT_KEY}); nothing was changed",
            dir.display()
        );
    }
    Ok(())
}

/// The configured keys; a restore never makes a development key, since a new key opens
/// nothing in the backup.
fn restore_keys(config: &Config) -> anyhow::Result<KeyRing> {
    let configured = config.encryption.key.is_some() || config.encryption.key_file.is_some();
    if !configured {
        let development = config.storage.data_dir.join(DEVELOPMENT_KEY);
        ensure!(
            config.profile == Profile::Development && development.is_file(),
            "no template key is configured: configure the key the backup was sealed with (encryption.key or \
             encryption.key_file, and encryption.previous_keys), or in development put its template.key back \
             at {} first; a restore never makes a new key, which would open nothing; nothing was changed",
            development.display()
        );
    }
    key_ring(config)
}

fn read_records(path: &Path) -> anyhow::Result<Vec<DestructionRecord>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a list of destruction records (`visage destruction-records export --format json`)",
            path.display()
        )
    })
}

/// Where an archive's file goes in the working directory; `None` for a name a backup never
/// writes (a path that could escape, or anything unknown).
fn unpacked_path(name: &str) -> Option<PathBuf> {
    if name == DATABASE || name == CALIBRATION {
        return Some(PathBuf::from(name));
    }
    let reference = name.strip_prefix("images/")?;
    ImageStore::id_of(reference).ok()?;
    Some(Path::new(IMAGES).join(reference))
}

/// Unpacks the archive's files into `dir`, each checked against the manifest's size and
/// SHA-256; returns the manifest.
fn unpack(archive: &Path, dir: &Path) -> anyhow::Result<Manifest> {
    let file = File::open(archive).with_context(|| format!("cannot read {}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a visage backup", archive.display()))?;
    let manifest: Manifest = {
        let mut entry = zip
            .by_name(MANIFEST)
            .with_context(|| format!("{} has no {MANIFEST}: it is not a visage backup", archive.display()))?;
        let mut text = Vec::new();
        entry.read_to_end(&mut text).context("the archive is corrupt: its manifest cannot be read")?;
        serde_json::from_slice(&text).context("the archive's manifest is not a visage backup manifest")?
    };
    ensure!(
        manifest.format == FORMAT && manifest.format_version == FORMAT_VERSION,
        "the archive is {} version {}, not {FORMAT} version {FORMAT_VERSION}",
        manifest.format,
        manifest.format_version
    );
    let latest = SqliteStore::latest_schema_version();
    ensure!(
        manifest.schema_version <= latest,
        "the backup was made by visage {} at database schema {}, newer than this visage knows ({latest}): \
         restore it with that version or a newer one",
        manifest.visage_version,
        manifest.schema_version
    );
    let listed: HashMap<&str, &FileEntry> = manifest.files.iter().map(|f| (f.path.as_str(), f)).collect();
    ensure!(listed.contains_key(DATABASE), "the archive's manifest lists no {DATABASE}");
    for index in 0..zip.len() {
        let name = zip.name_for_index(index).context("the archive is corrupt")??.into_owned();
        if name == MANIFEST || name == README {
            continue;
        }
        ensure!(
            listed.contains_key(name.as_str()),
            "the archive holds {name:?}, which its manifest does not list"
        );
    }
    std::fs::create_dir(dir.join(IMAGES))?;
    for expected in &manifest.files {
        let relative = unpacked_path(&expected.path)
            .with_context(|| format!("the manifest names {:?}, which a backup never holds", expected.path))?;
        let mut entry = zip
            .by_name(&expected.path)
            .with_context(|| format!("the archive is incomplete: {} is missing", expected.path))?;
        let mut target = create_private(&dir.join(relative))?;
        let copied = copy_hashed(&mut entry, &mut target);
        let (bytes, sha256) =
            copied.with_context(|| format!("the archive is corrupt: {} cannot be read", expected.path))?;
        ensure!(
            bytes == expected.bytes && sha256 == expected.sha256,
            "the archive is corrupt: {} does not match its checksum in the manifest; nothing was restored",
            expected.path
        );
        target.sync_all()?;
    }
    Ok(manifest)
}

/// Opens every template with the configured keys, and one image per key id the images name:
/// the templates are few bytes each and the service opens them all at start anyway, so all are
/// checked; images are large, so their key ids are checked and one per key is opened (its
/// authentication tag proves the key). Returns (templates, images) opened.
async fn check_keys(
    store: &SqliteStore,
    keys: &KeyRing,
    manifest: &Manifest,
    images_dir: &Path,
) -> anyhow::Result<(u64, u64)> {
    let templates = store.all_templates().await?;
    let mut failed: BTreeMap<String, (u64, &'static str)> = BTreeMap::new();
    for t in &templates {
        let t = &t.template;
        if let Err(err) = keys.open(t.id, t.subject_id, &t.sealed) {
            let why = match err {
                CryptoError::UnknownKey(_) => "not configured",
                CryptoError::Authentication | CryptoError::Malformed | CryptoError::BadKey => {
                    "configured but does not open them"
                }
            };
            failed.entry(t.sealed.key_id.clone()).or_insert((0, why)).0 += 1;
        }
    }
    if !failed.is_empty() {
        let which = failed
            .iter()
            .map(|(key, (n, why))| format!("{n} sealed with key {key} ({why})"))
            .collect::<Vec<_>>()
            .join(", ");
        bail!(
            "the configured template keys cannot open {} of the backup's {} templates: {which}. Configure the \
             keys it needs (encryption.key, encryption.previous_keys, or the development template.key); nothing \
             was restored",
            failed.values().map(|(n, _)| n).sum::<u64>(),
            templates.len()
        );
    }
    let owners: HashMap<&str, (Uuid, Uuid)> = templates
        .iter()
        .filter_map(|t| t.template.image_ref.as_deref().map(|r| (r, (t.template.id, t.template.subject_id))))
        .collect();
    let images = ImageStore::open(&Backend::Local { dir: images_dir.to_path_buf() })?;
    let mut sampled: BTreeMap<&str, &str> = BTreeMap::new();
    for file in manifest.files.iter().filter(|f| f.path.starts_with("images/")) {
        let key_id =
            file.key_id.as_deref().with_context(|| format!("the manifest names no key for {}", file.path))?;
        sampled.entry(key_id).or_insert(&file.path["images/".len()..]);
    }
    for (key_id, reference) in &sampled {
        // A template's image is bound to its template and subject; a kept probe image to its
        // own id and no subject.
        let (id, subject) = match owners.get(reference) {
            Some(&owner) => owner,
            None => (ImageStore::id_of(reference)?, Uuid::nil()),
        };
        images.get(keys, id, subject, reference).await.map_err(|err| {
            anyhow::anyhow!(
                "the configured template keys cannot open the images sealed with key {key_id}: {err}. Configure \
                 the keys the backup needs; nothing was restored"
            )
        })?;
    }
    Ok((templates.len() as u64, sampled.len() as u64))
}

/// Erases again, in the restored database, every subject the records say was erased; before
/// the data is put in place, so no replica ever serves them.
async fn reapply(
    config: &Config,
    store: &SqliteStore,
    records: &[DestructionRecord],
    images_dir: &Path,
) -> anyhow::Result<Reapplied> {
    let images = ImageStore::open(&Backend::Local { dir: images_dir.to_path_buf() })?;
    let mut done = Reapplied::default();
    for record in records {
        match record.ground {
            DestructionGround::ErasureRequest
            | DestructionGround::ConsentWithdrawn
            | DestructionGround::ConsentExpired
            | DestructionGround::InactiveSubject => {}
            DestructionGround::FaceDeletion => {
                if store.get_subject(record.subject_id).await?.is_some()
                    && !done.face_deletions.contains(&record.subject_id)
                {
                    done.face_deletions.push(record.subject_id);
                }
                continue;
            }
        }
        let destruction = Destruction {
            ground: record.ground,
            performed_by: RESTORE_PERFORMER.to_owned(),
            keep_external_id: config.retention.destruction_records_keep_external_id,
        };
        let Some(erasure) = store.erase_subject(record.subject_id, &destruction).await? else {
            done.absent += 1;
            continue;
        };
        let failed = delete_images(&images, store, &erasure.image_refs, Deletion::Erasure).await;
        ensure!(failed.is_empty(), "{} images of an erased subject could not be deleted", failed.len());
        let event = NewAuditEvent {
            api_key_id: None,
            action: AuditAction::SubjectErase,
            outcome: AuditOutcome::Ok,
            collection: Some(record.collection.clone()),
            subject_id: Some(record.subject_id),
            detail: json!({
                "templates": erasure.templates.len(),
                "images": erasure.image_refs.len(),
                "ground": record.ground.as_str(),
                "reapplied_record": record.id,
            }),
        };
        store.append_audit(&event).await?;
        done.erased += 1;
    }
    Ok(done)
}

/// The backup's calibration file, waiting beside its place in the models directory.
struct StagedCalibration {
    outcome: CalibrationOutcome,
    staged: Option<(PathBuf, PathBuf)>,
}

impl StagedCalibration {
    fn install(self) -> anyhow::Result<CalibrationOutcome> {
        if let Some((staged, path)) = &self.staged {
            std::fs::rename(staged, path).with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(self.outcome)
    }
}

fn stage_calibration(config: &Config, work: &Path) -> anyhow::Result<StagedCalibration> {
    let restored = work.join(CALIBRATION);
    let path = config.models.dir.join(visage_calibration::FILE_NAME);
    let unstaged = |outcome| Ok(StagedCalibration { outcome, staged: None });
    if !restored.is_file() {
        return unstaged(CalibrationOutcome::NotInBackup);
    }
    let backed_up = std::fs::read(&restored)?;
    match std::fs::read(&path) {
        Ok(current) if current == backed_up => unstaged(CalibrationOutcome::AlreadyThere(path)),
        Ok(_) => unstaged(CalibrationOutcome::KeptDifferent(path)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let staged = config.models.dir.join(format!(".{CALIBRATION}.restoring"));
            std::fs::write(&staged, &backed_up)
                .with_context(|| format!("cannot write {}", staged.display()))?;
            Ok(StagedCalibration {
                outcome: CalibrationOutcome::Installed(path.clone()),
                staged: Some((staged, path)),
            })
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Moves the images, then the database, from the working directory into the data directory;
/// on a failure, moves back what was moved.
fn move_into_place(work: &Path, target: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(target).with_context(|| format!("cannot create {}", target.display()))?;
    let mut moved: Vec<&str> = Vec::new();
    for name in [IMAGES, DATABASE] {
        if let Err(err) = std::fs::rename(work.join(name), target.join(name)) {
            for name in moved.iter().rev() {
                let _ = std::fs::rename(target.join(name), work.join(name));
            }
            return Err(err)
                .with_context(|| format!("cannot move the restored {name} into {}", target.display()));
        }
        moved.push(name);
    }
    sync_dir(target);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_files_a_backup_writes_are_unpacked() {
        let id = Uuid::now_v7();
        assert_eq!(unpacked_path("visage.db"), Some(PathBuf::from("visage.db")));
        assert_eq!(
            unpacked_path(&format!("images/{id}.img")),
            Some(Path::new("images").join(format!("{id}.img")))
        );
        for bad in
            ["../visage.db", "images/../../x.img", "images/a/b.img", "template.key", "/etc/passwd", "images/"]
        {
            assert_eq!(unpacked_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_key_id_of_a_sealed_image_is_read_from_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.img");
        std::fs::write(&path, b"0123abcd\n\x01\x02\x03 ciphertext").unwrap();
        assert_eq!(sealed_key_id(&path).unwrap(), "0123abcd");
        std::fs::write(&path, b"no newline at all").unwrap();
        assert_eq!(sealed_key_id(&path).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_data_directory_may_hold_only_the_development_key() {
        let dir = tempfile::tempdir().unwrap();
        ensure_empty(&dir.path().join("absent")).unwrap();
        ensure_empty(dir.path()).unwrap();
        std::fs::write(dir.path().join(DEVELOPMENT_KEY), "key").unwrap();
        ensure_empty(dir.path()).unwrap();
        std::fs::write(dir.path().join("visage.db"), "").unwrap();
        let err = ensure_empty(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("not empty (it holds visage.db)") && err.contains("nothing was changed"),
            "{err}"
        );
    }

    #[test]
    fn the_readme_says_the_key_is_not_there() {
        let text = readme(Utc::now(), 10);
        assert!(text.contains("THE TEMPLATE KEY IS NOT IN THIS BACKUP"));
        assert!(text.contains("--reapply-erasures"));
    }
}
