//! Backup and restore: a backup taken while the service serves, restored into an empty data
//! directory, answers as the service did when it was taken (`visage backup` / `visage restore`
//! on SQLite; on PostgreSQL the documented `pg_dump` / `pg_restore` and a copy of the images).
//! A restore refuses a directory that is not empty, a key that does not open the templates and
//! a corrupted archive, each before it writes anything; erasures made after the backup are
//! re-applied from the destruction records.

use std::io::{Read, Write};

use visage_server::jobs::backup::{self, Manifest, RestoreOptions};
use visage_server::jobs::destruction;

use super::access::unzip;

use super::*;

/// A backup as docs/backup.md says to take one.
enum Taken {
    /// `visage backup --out FILE` (SQLite).
    Archive(PathBuf),
    /// `pg_dump --format=custom` and a copy of the image directory (PostgreSQL).
    Dump { dump: PathBuf, images: PathBuf },
}

fn run(program: &str, args: &[&str]) {
    let output =
        std::process::Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(output.status.success(), "{program} failed: {}", String::from_utf8_lossy(&output.stderr));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

async fn take_backup(app: &TestApp, dir: &Path) -> Taken {
    match &app.db {
        None => {
            let out = dir.join("visage-backup.zip");
            let summary = backup::backup(&app.config, &out).await.expect("the backup is written");
            assert_eq!((summary.counts.subjects, summary.counts.templates, summary.counts.images), (2, 2, 2));
            Taken::Archive(out)
        }
        Some(db) => {
            let dump = dir.join("visage.dump");
            run(
                "pg_dump",
                &["--format=custom", "--no-owner", "--file", dump.to_str().unwrap(), "--dbname", &db.url()],
            );
            let images = dir.join("images-copy");
            copy_dir(&app.config.storage.data_dir.join("images"), &images);
            Taken::Dump { dump, images }
        }
    }
}

/// Restores into `data_dir` (and on PostgreSQL a new database) and starts a service on it.
async fn restore_and_start(app: &TestApp, taken: &Taken, data_dir: PathBuf) -> TestApp {
    let mut config = app.config.clone();
    config.storage.data_dir = data_dir.clone();
    match taken {
        Taken::Archive(file) => {
            let options = RestoreOptions { from: file.clone(), reapply_erasures: None };
            let summary = backup::restore(&config, &options).await.expect("the backup is restored");
            assert_eq!(
                (summary.templates_opened, summary.images_opened),
                (2, 1),
                "every template, an image per key"
            );
            TestApp::start(config).await
        }
        Taken::Dump { dump, images } => {
            let db = TestDatabase::create().await;
            run(
                "pg_restore",
                &["--no-owner", "--exit-on-error", "--dbname", &db.url(), dump.to_str().unwrap()],
            );
            copy_dir(images, &data_dir.join("images"));
            config.database.url = Some(DatabaseUrl::new(db.url()));
            let mut restored = TestApp::start(config).await;
            restored.db = Some(db);
            restored
        }
    }
}

fn named(candidates: &[(String, f64)], external_id: &str) -> bool {
    candidates.iter().any(|(id, _)| id == external_id)
}

#[tokio::test]
async fn a_restored_backup_answers_as_the_service_did_when_it_was_taken() {
    let app = TestApp::spawn_with(|c| c.storage.store_images = true).await;
    let bob = app.enrol("bob-graham", "Bob_Graham_0001").await;
    let bill = app.enrol("bill-nelson", "Bill_Nelson_0001").await;
    let dir = tempfile::tempdir().unwrap();
    let taken = take_backup(&app, dir.path()).await;

    // After the backup: bob is erased, elton enrolled.
    expect(app.delete(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::NO_CONTENT).await;
    let elton = app.enrol("elton-john", "Elton_John_0001").await;
    assert!(!named(&app.identify(lfw("Bob_Graham_0005")).await, "bob-graham"));

    let restored = restore_and_start(&app, &taken, dir.path().join("restored")).await;
    // Bob is back and verifies; bill too; elton was never there.
    let decision = restored.verify(bob, "Bob_Graham_0005").await;
    assert_eq!(decision["match"], true, "{decision}");
    assert_eq!(restored.verify(bill, "Bill_Nelson_0002").await["match"], true);
    assert!(named(&restored.identify(lfw("Bob_Graham_0005")).await, "bob-graham"));
    expect_error(
        restored.get(&format!("/v1/subjects/{elton}"), &restored.admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    assert!(!named(&restored.identify(lfw("Elton_John_0007")).await, "elton-john"));
    // The stored photo opens with the same key.
    let response = restored.get(&format!("/v1/subjects/{bob}/export"), &restored.admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    let files = unzip(&response.bytes().await.unwrap());
    let photos: Vec<&Vec<u8>> =
        files.iter().filter(|(name, _)| name.starts_with("images/")).map(|(_, b)| b).collect();
    assert_eq!(photos, vec![&lfw("Bob_Graham_0001")], "the restored image opens to the uploaded photo");

    if matches!(taken, Taken::Archive(_)) {
        let actions = |events: Vec<Value>| -> Vec<String> {
            events.iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
        };
        assert!(actions(app.audit_actions().await).contains(&"backup.create".to_owned()));
        assert!(actions(restored.audit_actions().await).contains(&"backup.restore".to_owned()));
    }
}

/// An app on the embedded storage whatever `VISAGE_TEST_BACKEND` says: the commands are for it.
async fn embedded_app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.database.url = None;
        c.storage.store_images = true;
    })
    .await
}

fn restore_options(from: &Path) -> RestoreOptions {
    RestoreOptions { from: from.to_path_buf(), reapply_erasures: None }
}

#[tokio::test]
async fn a_restore_refuses_a_data_directory_that_is_not_empty_and_changes_nothing() {
    let app = embedded_app().await;
    app.enrol("bob-graham", "Bob_Graham_0001").await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("backup.zip");
    backup::backup(&app.config, &archive).await.unwrap();
    let again = backup::backup(&app.config, &archive).await.unwrap_err().to_string();
    assert!(again.contains("never overwrites"), "{again}");

    // Into the live data directory itself, and into one holding anything but the key.
    let err = backup::restore(&app.config, &restore_options(&archive)).await.unwrap_err().to_string();
    assert!(
        err.contains("is not empty") && err.contains("visage.db") && err.contains("nothing was changed"),
        "{err}"
    );
    let mut config = app.config.clone();
    config.storage.data_dir = dir.path().join("other");
    std::fs::create_dir(&config.storage.data_dir).unwrap();
    std::fs::write(config.storage.data_dir.join("notes.txt"), "mine").unwrap();
    let err = backup::restore(&config, &restore_options(&archive)).await.unwrap_err().to_string();
    assert!(err.contains("notes.txt"), "{err}");
    let held: Vec<_> =
        std::fs::read_dir(&config.storage.data_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(held, ["notes.txt"], "nothing was added");
    let beside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside.len(), 2, "no working directory left behind: {beside:?}");
}

#[tokio::test]
async fn a_restore_with_the_wrong_key_refuses_before_writing_anything() {
    let app = embedded_app().await;
    app.enrol("bob-graham", "Bob_Graham_0001").await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("backup.zip");
    let summary = backup::backup(&app.config, &archive).await.unwrap();
    let needed = summary.template_keys[0].key_id.clone();

    let mut config = app.config.clone();
    config.storage.data_dir = dir.path().join("restored");
    config.encryption.key = Some(Secret::new(TemplateKey::generate_base64().as_str()));
    let err = backup::restore(&config, &restore_options(&archive)).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot open 1 of the backup's 1 templates")
            && err.contains(&needed)
            && err.contains("nothing was restored"),
        "{err}"
    );
    assert!(!config.storage.data_dir.exists(), "nothing was written");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no working directory left behind");

    // No key configured in development: the restore does not make one (it would open nothing).
    config.encryption.key = None;
    let err = backup::restore(&config, &restore_options(&archive)).await.unwrap_err().to_string();
    assert!(err.contains("never makes a new key"), "{err}");
    assert!(!config.storage.data_dir.exists());
    // With the old key as a previous one, it opens.
    config.encryption.key = Some(Secret::new(TemplateKey::generate_base64().as_str()));
    config.encryption.previous_keys = vec![app.config.encryption.key.clone().unwrap()];
    backup::restore(&config, &restore_options(&archive)).await.unwrap();
    assert!(config.storage.data_dir.join("visage.db").is_file());
}

/// The archive with `change` applied to one file's bytes: a well-formed ZIP whose content no
/// longer matches the manifest.
fn tamper(archive: &Path, out: &Path, name: &str, change: impl Fn(&mut Vec<u8>)) {
    let mut source = zip::ZipArchive::new(std::fs::File::open(archive).unwrap()).unwrap();
    let mut target = zip::ZipWriter::new(std::fs::File::create(out).unwrap());
    for i in 0..source.len() {
        let mut file = source.by_index(i).unwrap();
        let entry = file.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        if entry == name {
            change(&mut bytes);
        }
        target.start_file(entry, zip::write::SimpleFileOptions::default()).unwrap();
        target.write_all(&bytes).unwrap();
    }
    target.finish().unwrap();
}

#[tokio::test]
async fn a_corrupted_archive_is_refused_and_nothing_is_restored() {
    let app = embedded_app().await;
    app.enrol("bob-graham", "Bob_Graham_0001").await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("backup.zip");
    backup::backup(&app.config, &archive).await.unwrap();
    let manifest: Manifest = {
        let files = unzip(&std::fs::read(&archive).unwrap());
        assert!(
            String::from_utf8_lossy(&files["README.txt"]).contains("THE TEMPLATE KEY IS NOT IN THIS BACKUP")
        );
        assert!(!files.keys().any(|name| name.contains("key")), "never the key: {:?}", files.keys());
        serde_json::from_slice(&files["manifest.json"]).unwrap()
    };
    assert_eq!(manifest.schema_version, visage_store::SqliteStore::latest_schema_version());
    let image = manifest.files.iter().find(|f| f.path.starts_with("images/")).unwrap().path.clone();
    let mut config = app.config.clone();
    config.storage.data_dir = dir.path().join("restored");

    // One byte of the image changed: the ZIP is well formed, the checksum tells.
    let tampered = dir.path().join("tampered.zip");
    tamper(&archive, &tampered, &image, |bytes| {
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
    });
    let err = backup::restore(&config, &restore_options(&tampered)).await.unwrap_err().to_string();
    assert!(err.contains(&format!("{image} does not match its checksum")), "{err}");
    assert!(!config.storage.data_dir.exists());

    // Damaged on disk: refused as well (the ZIP's own CRC or the manifest).
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let damaged = dir.path().join("damaged.zip");
    std::fs::write(&damaged, bytes).unwrap();
    assert!(backup::restore(&config, &restore_options(&damaged)).await.is_err());
    assert!(!config.storage.data_dir.exists());
}

#[tokio::test]
async fn erasures_made_after_a_backup_are_applied_again_from_the_destruction_records() {
    let app = embedded_app().await;
    let bob = app.enrol("bob-graham", "Bob_Graham_0001").await;
    let bill = app.enrol("bill-nelson", "Bill_Nelson_0001").await;
    let form = Form::new().part("image", jpeg(lfw("Bill_Nelson_0002")));
    let second_face = expect(
        app.post_form(&format!("/v1/subjects/{bill}/faces"), &app.admin, form).await,
        StatusCode::CREATED,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("backup.zip");
    let taken = backup::backup(&app.config, &archive).await.unwrap();

    expect(app.delete(&format!("/v1/subjects/{bob}"), &app.admin).await, StatusCode::NO_CONTENT).await;
    let face = second_face["faces"][0]["id"].as_str().unwrap();
    expect(
        app.delete(&format!("/v1/subjects/{bill}/faces/{face}"), &app.admin).await,
        StatusCode::NO_CONTENT,
    )
    .await;
    // As the docs say: the records from the backup's day on.
    let mut records = Vec::new();
    let day = taken.created_at.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
    let exported = destruction::export(&app.config, Some(day), None, destruction::Format::Json, &mut records)
        .await
        .unwrap();
    assert_eq!(exported, 2);
    let records_file = dir.path().join("records.json");
    std::fs::write(&records_file, records).unwrap();

    let mut config = app.config.clone();
    config.storage.data_dir = dir.path().join("restored");
    let options = RestoreOptions { from: archive, reapply_erasures: Some(records_file) };
    let summary = backup::restore(&config, &options).await.unwrap();
    let reapplied = summary.reapplied.unwrap();
    assert_eq!((reapplied.erased, reapplied.absent), (1, 0));
    assert_eq!(reapplied.face_deletions, vec![bill], "a face deletion is named, not guessed");
    assert_eq!(
        std::fs::read_dir(config.storage.data_dir.join("images")).unwrap().count(),
        2,
        "bob's image went again; bill's two stay"
    );

    let restored = TestApp::start(config).await;
    expect_error(
        restored.get(&format!("/v1/subjects/{bob}"), &restored.admin).await,
        StatusCode::NOT_FOUND,
        "subject_not_found",
    )
    .await;
    assert!(!named(&restored.identify(lfw("Bob_Graham_0005")).await, "bob-graham"));
    assert_eq!(restored.verify(bill, "Bill_Nelson_0002").await["match"], true);
    let body = expect(restored.get("/v1/destruction-records", &restored.admin).await, StatusCode::OK).await;
    let again = body["items"].as_array().unwrap();
    assert_eq!(again.len(), 1, "{body}");
    assert_eq!(
        (again[0]["subject_id"].as_str(), again[0]["ground"].as_str(), again[0]["performed_by"].as_str()),
        (Some(bob.to_string().as_str()), Some("erasure_request"), Some("visage:restore"))
    );
}

#[tokio::test]
async fn backup_and_restore_point_postgresql_and_s3_to_their_own_tools() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.database.url = Some(DatabaseUrl::new("postgres://postgres@127.0.0.1:5432/test"));
    let out = dir.path().join("backup.zip");
    let err = backup::backup(&config, &out).await.unwrap_err().to_string();
    assert!(err.contains("pg_dump") && err.contains("docs/backup.md"), "{err}");
    let err = backup::restore(&config, &restore_options(&out)).await.unwrap_err().to_string();
    assert!(err.contains("pg_restore") && err.contains("docs/backup.md"), "{err}");
    config.database.url = None;
    config.images.backend = visage_server::config::ImageBackend::S3;
    let err = backup::backup(&config, &out).await.unwrap_err().to_string();
    assert!(err.contains("mc mirror") && err.contains("docs/backup.md"), "{err}");
    assert!(!out.exists());
}
