//! The `visage` binary end to end: JSON on stdout, one-line errors and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn visage(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_visage"))
        .args(args)
        .current_dir(root())
        .env_remove("VISAGE_THRESHOLD")
        .output()
        .expect("run visage")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

const ELTON_1: &str = "tests/fixtures/lfw/Elton_John/Elton_John_0001.jpg";
const ELTON_7: &str = "tests/fixtures/lfw/Elton_John/Elton_John_0007.jpg";
const BOB: &str = "tests/fixtures/lfw/Bob_Graham/Bob_Graham_0001.jpg";

#[test]
fn compare_matches_the_same_person_and_not_a_stranger() {
    let same = json(&visage(&["compare", ELTON_1, ELTON_7]));
    assert_eq!(same["match"], true, "{same}");
    assert!(same["similarity"].as_f64().unwrap() >= same["threshold"].as_f64().unwrap());
    let different = json(&visage(&["compare", ELTON_1, BOB]));
    assert_eq!(different["match"], false, "{different}");
    assert_eq!(different["faces"].as_array().unwrap().len(), 2);
}

#[test]
fn compare_takes_the_threshold_from_the_command_line() {
    let strict = json(&visage(&["compare", "--threshold", "0.99", ELTON_1, ELTON_7]));
    assert_eq!(strict["threshold"], 0.99);
    assert_eq!(strict["match"], false);
}

#[test]
fn both_backends_give_the_same_similarity() {
    let ort = json(&visage(&["--backend", "onnxruntime", "compare", ELTON_1, BOB]));
    let tract = json(&visage(&["--backend", "tract", "compare", ELTON_1, BOB]));
    let (a, b) = (ort["similarity"].as_f64().unwrap(), tract["similarity"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-3, "{a} vs {b}");
}

#[test]
fn detect_prints_one_line_per_image_with_every_face() {
    let out = visage(&["detect", ELTON_1, BOB]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    let face = &lines[0]["faces"][0];
    assert_eq!(face["landmarks"].as_array().unwrap().len(), 5);
    assert!(face["quality"]["issues"].is_array());
}

#[test]
fn embed_prints_a_unit_vector() {
    let out = json(&visage(&["embed", ELTON_1]));
    let values: Vec<f64> = out["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(values.len(), 128);
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
}

#[test]
fn liveness_tells_a_live_face_from_a_printed_photo() {
    let out = visage(&[
        "liveness",
        "tests/fixtures/nuaa/real/0006_00_00_01_0.jpg",
        "tests/fixtures/nuaa/print/0006_00_00_01_100.jpg",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["faces"][0]["live"], true, "{}", lines[0]);
    assert_eq!(lines[1]["faces"][0]["live"], false, "{}", lines[1]);
    assert_eq!(lines[1]["faces"][0]["attack_type"], "print");
}

#[test]
fn errors_exit_non_zero_with_one_line() {
    for args in [
        vec!["compare", ELTON_1, "Cargo.toml"],
        vec!["compare", ELTON_1, "no/such/file.jpg"],
        vec!["--models-dir", "/nonexistent", "embed", ELTON_1],
    ] {
        let out = visage(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("visage: "), "{stderr}");
    }
}

#[test]
fn an_image_without_a_face_fails_liveness_with_no_face_detected() {
    // A real image, decodable, of a plain grey wall.
    let dir = tempfile::tempdir().unwrap();
    let wall = dir.path().join("wall.png");
    image::RgbImage::from_pixel(320, 240, image::Rgb([128, 130, 127])).save(&wall).unwrap();
    let out = visage(&["liveness", wall.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no_face_detected") || stderr.contains("no face"), "{stderr}");
    assert!(!stderr.contains("unsupported image format"), "{stderr}");
}

#[test]
fn a_file_that_is_not_an_image_is_refused_as_such() {
    let out = visage(&["liveness", "models/README.md"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported image format"));
}

#[test]
fn the_pixel_limit_is_configurable() {
    let out = visage(&["--max-pixels", "10000", "embed", ELTON_1]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("250x250 pixels, more than the limit of 10000"), "{stderr}");
}

#[test]
fn models_checks_every_required_file_and_names_the_fix_when_one_is_missing() {
    let out = visage(&["models"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for file in [
        "yunet_2023mar_fp32.onnx",
        "sface_2021dec_fp32.onnx",
        "minifasnet_v2_2.7_80x80.onnx",
        "libonnxruntime.so",
    ] {
        assert!(stdout.lines().any(|l| l.starts_with("ok ") && l.contains(file)), "{file} in {stdout}");
    }
    let empty = std::env::temp_dir().join(format!("visage-empty-models-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = visage(&["--models-dir", empty.to_str().unwrap(), "models"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("scripts/models/fetch.sh"));
}

#[test]
fn serve_help_lists_every_option_with_its_environment_variable() {
    let output = visage(&["serve", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for key in
        ["server.listen", "encryption.key", "liveness.verify", "inference.queue_capacity", "rate_limit.burst"]
    {
        let env = format!("VISAGE_{}", key.replace('.', "__").to_uppercase());
        assert!(help.contains(key) && help.contains(&env), "{key} / {env} missing from:\n{help}");
    }
}

fn service(data_dir: &Path, args: &[&str]) -> Output {
    service_with(data_dir, args, &[])
}

/// [`service`] with environment variables set.
fn service_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_visage"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .current_dir(root())
        .env("VISAGE_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run visage")
}

#[test]
fn keys_are_created_listed_and_revoked_and_only_their_hash_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let created = service(
        dir.path(),
        &["keys", "create", "--name", "kiosk", "--role", "verify", "--collections", "staff,visitors"],
    );
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("vsg_"), "{token}");
    // vsg_<id>_<secret>: the secret is URL-safe base64, which may itself hold '_'.
    let (_, secret) = token.strip_prefix("vsg_").unwrap().split_once('_').unwrap();
    assert!(secret.len() >= 40, "{token}");

    let listed = service(dir.path(), &["keys", "list"]);
    let line: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(line["name"], "kiosk");
    assert_eq!(line["role"], "verify");
    assert_eq!(line["collections"], "staff,visitors");
    assert!(line["revoked_at"].is_null());
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(secret));
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let path = file.unwrap().path();
        let Ok(bytes) = std::fs::read(&path) else { continue }; // a folder
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the key is stored in the clear"
        );
    }

    let id = line["id"].as_str().unwrap();
    assert!(service(dir.path(), &["keys", "revoke", id]).status.success());
    let listed: serde_json::Value =
        serde_json::from_slice(&service(dir.path(), &["keys", "list"]).stdout).unwrap();
    assert!(listed["revoked_at"].is_string());
    let again = service(dir.path(), &["keys", "revoke", id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no active key"));
    let bad_role = service(dir.path(), &["keys", "create", "--name", "x", "--role", "root"]);
    assert!(!bad_role.status.success());
}

#[test]
fn a_template_key_rotation_reports_what_it_resealed_and_which_keys_are_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = service(dir.path(), &["keys", "rotate-template-key", "--batch", "8"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["templates"]["resealed"], 0);
    let active = summary["active_key_id"].as_str().unwrap();
    assert_eq!(active.len(), 16, "{summary}");
    assert_eq!(summary["keys_in_use"], serde_json::json!([active]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("re-sealed 0 templates"));
    // The development key the run generated is the one the data directory keeps.
    assert!(dir.path().join("template.key").exists());
}

#[test]
fn reembed_and_sweep_report_what_they_did_and_force_needs_prune() {
    let dir = tempfile::tempdir().unwrap();
    // An empty gallery: nothing to re-embed, so no model is even loaded.
    let out = service(dir.path(), &["reembed", "--to", "mobilefacenet", "--batch", "4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["to"].as_str(), summary["done"].as_u64()), (Some("mobilefacenet"), Some(0)));
    assert_eq!(summary["status"]["untwinned"], 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("re-embedded 0 templates"));
    let pruned = service(dir.path(), &["reembed", "--to", "mobilefacenet", "--prune"]);
    assert!(pruned.status.success(), "{}", String::from_utf8_lossy(&pruned.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&pruned.stdout).unwrap();
    assert_eq!(summary["deleted"], 0);
    let forced = service(dir.path(), &["reembed", "--to", "mobilefacenet", "--force"]);
    assert!(!forced.status.success(), "--force only goes with --prune");
    let unknown = service(dir.path(), &["reembed", "--to", "facenet"]);
    assert!(!unknown.status.success());
    let swept = service(dir.path(), &["images", "sweep", "--older-than-hours", "1"]);
    assert!(swept.status.success(), "{}", String::from_utf8_lossy(&swept.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&swept.stdout).unwrap();
    assert_eq!((summary["images"].as_u64(), summary["deleted"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn calibrating_from_feedback_says_how_many_labels_are_needed_and_offers_only_the_services_targets() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let none = service(dir.path(), &["calibrate", "--from-feedback"]);
    assert!(!none.status.success());
    assert!(stderr(&none).contains("no labelled decisions"), "{}", stderr(&none));
    let door = service(dir.path(), &["calibrate", "--from-feedback", "--collection", "default"]);
    assert!(!door.status.success());
    assert!(
        stderr(&door).contains("0 impostor labels, at least 3838 needed")
            && stderr(&door).contains("0 genuine labels"),
        "{}",
        stderr(&door)
    );
    let missing = service(dir.path(), &["calibrate", "--from-feedback", "--collection", "ghost"]);
    assert!(stderr(&missing).contains("collection ghost does not exist"), "{}", stderr(&missing));
    let target = service(dir.path(), &["calibrate", "--from-feedback", "--far-target", "0.5"]);
    assert!(stderr(&target).contains("not one the service offers"), "{}", stderr(&target));
    let reset = service(dir.path(), &["calibrate", "--from-feedback", "--reset", "--collection", "default"]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    assert!(stderr(&reset).contains("had no calibration of its own"));
    let both = service(dir.path(), &["calibrate", "--from-feedback", "--pairs", "x.txt"]);
    assert_eq!(both.status.code(), Some(2), "--pairs and --from-feedback exclude each other");
}

#[test]
fn backup_says_loudly_that_the_key_is_apart_and_restore_goes_only_into_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (data, restored) = (dir.path().join("data"), dir.path().join("restored"));
    let key = "q6mW1nqgEGOhvm0Ylrd7jXZtq7d6Mlw2lk0XGJ0xQ0c=";
    let visage_with_key =
        |data_dir: &Path, args: &[&str]| service_with(data_dir, args, &[("VISAGE_ENCRYPTION__KEY", key)]);
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        visage_with_key(&data, &["keys", "create", "--name", "admin", "--role", "admin"]).status.success()
    );
    let archive = dir.path().join("backup.zip");
    let archive_arg = archive.to_str().unwrap();
    let backup = visage_with_key(&data, &["backup", "--out", archive_arg]);
    assert!(backup.status.success(), "{}", stderr(&backup));
    assert!(stderr(&backup).contains("THE TEMPLATE KEY IS NOT IN THIS BACKUP"), "{}", stderr(&backup));
    let summary = json(&backup);
    assert_eq!((summary["counts"]["subjects"].as_u64(), summary["schema_version"].is_i64()), (Some(0), true));
    let again = visage_with_key(&data, &["backup", "--out", archive_arg]);
    assert!(!again.status.success() && stderr(&again).contains("never overwrites"), "{}", stderr(&again));

    let refused = visage_with_key(&data, &["restore", "--from", archive_arg]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("is not empty"), "{}", stderr(&refused));
    let no_key = service(&restored, &["restore", "--from", archive_arg]);
    assert!(
        !no_key.status.success() && stderr(&no_key).contains("never makes a new key"),
        "{}",
        stderr(&no_key)
    );
    assert!(!restored.exists(), "a refused restore writes nothing");
    let restore = visage_with_key(&restored, &["restore", "--from", archive_arg]);
    assert!(restore.status.success(), "{}", stderr(&restore));
    assert!(
        stderr(&restore).contains("erased after"),
        "it says erasures must be applied again: {}",
        stderr(&restore)
    );
    assert_eq!(json(&restore)["counts"]["subjects"], 0);
    let listed: serde_json::Value =
        serde_json::from_slice(&visage_with_key(&restored, &["keys", "list"]).stdout).unwrap();
    assert_eq!(listed["name"], "admin", "the restored database is the backed-up one");
}

/// `psql` against the test server (PostgreSQL at 127.0.0.1:5432, user postgres, trust auth).
fn psql(database: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database, "-Atqc", sql])
        .output()
        .expect("run psql");
    assert!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A database of its own, dropped at the end (also when the test fails).
struct TestDatabase(String);

impl Drop for TestDatabase {
    fn drop(&mut self) {
        psql("test", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

#[test]
fn keys_go_to_postgresql_when_a_database_url_is_set() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let db = TestDatabase(format!("visage_test_cli_{}_{nanos}", std::process::id()));
    psql("test", &format!("CREATE DATABASE {}", db.0));
    let dir = tempfile::tempdir().unwrap();
    let keys = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_visage"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .current_dir(root())
            .env("VISAGE_LOG", "warn")
            .env("VISAGE_DATABASE__URL", format!("postgres://postgres@127.0.0.1:5432/{}", db.0))
            .output()
            .expect("run visage")
    };
    let created = keys(&["keys", "create", "--name", "kiosk", "--role", "verify"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert_eq!(psql(&db.0, "SELECT name || ' ' || role FROM api_keys"), "kiosk verify");
    assert!(!dir.path().join("visage.db").exists(), "no embedded database beside it");
    let listed: serde_json::Value = serde_json::from_slice(&keys(&["keys", "list"]).stdout).unwrap();
    assert!(keys(&["keys", "revoke", listed["id"].as_str().unwrap()]).status.success());
    assert_eq!(psql(&db.0, "SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL"), "1");
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn serve_starts_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_visage"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .current_dir(root())
        .env("VISAGE_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let ready = loop {
        if let Some(response) = http_get(port, "/health/ready") {
            break response;
        }
        assert!(std::time::Instant::now() < deadline, "the service did not come up");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let unauthorised = http_get(port, "/v1/subjects").unwrap();
    assert!(
        unauthorised.starts_with("HTTP/1.1 401") && unauthorised.contains("\"unauthorized\""),
        "{unauthorised}"
    );
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_production_profile_refuses_to_start_without_a_template_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_visage"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .current_dir(root())
        .env("VISAGE_PROFILE", "production")
        .env_remove("VISAGE_ENCRYPTION__KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("VISAGE_ENCRYPTION__KEY"));
}

/// An LFW-style pairs file over the bundled fixtures: the 4 people with two photos give the
/// genuine pairs, every two different people an impostor pair.
fn fixture_pairs(dir: &Path) -> PathBuf {
    let lfw = root().join("tests/fixtures/lfw");
    let mut people: Vec<(String, Vec<u32>)> = std::fs::read_dir(&lfw)
        .unwrap()
        .map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let mut numbers: Vec<u32> = std::fs::read_dir(lfw.join(&name))
                .unwrap()
                .map(|f| {
                    let file = f.unwrap().file_name().into_string().unwrap();
                    file.trim_end_matches(".jpg").rsplit('_').next().unwrap().parse().unwrap()
                })
                .collect();
            numbers.sort();
            (name, numbers)
        })
        .collect();
    people.sort();
    let mut lines = vec!["1\t300".to_owned()];
    for (name, numbers) in &people {
        if let [a, b, ..] = numbers.as_slice() {
            lines.push(format!("{name}\t{a}\t{b}"));
        }
    }
    for (i, (a, an)) in people.iter().enumerate() {
        for (b, bn) in &people[i + 1..] {
            lines.push(format!("{a}\t{}\t{b}\t{}", an[0], bn[0]));
        }
    }
    let path = dir.join("pairs.txt");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[test]
fn calibrate_writes_only_the_thresholds_the_data_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = fixture_pairs(dir.path());
    let out = dir.path().join("calibration.json");
    let images = root().join("tests/fixtures/lfw");
    let nuaa = dir.path().join("nuaa");
    // NUAA layout (real/<subject>/, attack/print/<subject>/) from the bundled frames.
    for (kind, target) in [("real", "real"), ("print", "attack/print")] {
        let subject = nuaa.join(target).join("0005");
        std::fs::create_dir_all(&subject).unwrap();
        for file in std::fs::read_dir(root().join("tests/fixtures/nuaa").join(kind)).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, subject.join(file.file_name().unwrap())).unwrap();
        }
    }
    let run = |default_far: &str, rule: &str| {
        visage(&[
            "calibrate",
            "--pairs",
            pairs.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--liveness-dir",
            nuaa.to_str().unwrap(),
            "--default-far",
            default_far,
            "--calibration",
            rule,
            "--out",
            out.to_str().unwrap(),
        ])
    };
    // A few hundred impostor pairs cannot resolve a FAR of 0.1% by either rule, nor show a FAR
    // under 1% with 95% confidence (that takes 384 pairs without a single false accept).
    for (far, rule) in [("0.001", "point"), ("0.01", "conservative")] {
        let refused = run(far, rule);
        assert!(!refused.status.success(), "{far} {rule}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("not resolvable"));
        assert!(!out.exists(), "nothing is written when the default target cannot be calibrated");
    }

    let report = json(&run("0.01", "point"));
    assert_eq!(report["rule"], "point");
    assert_eq!(report["unresolved_far_targets"], serde_json::json!([0.001, 0.0001]));
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(file["version"], 1);
    // Keyed by recognizer, backend and precision, which the entry repeats.
    let key = report["recognizer"].as_str().unwrap();
    let entry = &file["recognizers"][key];
    assert_eq!(
        key,
        format!("sface/{}/{}", entry["backend"].as_str().unwrap(), entry["precision"].as_str().unwrap())
    );
    let points = entry["points"].as_array().unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0]["far"], 0.01);
    let threshold = points[0]["threshold"].as_f64().unwrap();
    assert!((0.1..0.5).contains(&threshold), "{threshold}");
    // The point records what it rests on.
    let evidence = &points[0]["evidence"];
    assert_eq!(evidence["rule"], "point");
    let (accepts, pairs) =
        (evidence["false_accepts"].as_f64().unwrap(), evidence["impostor_pairs"].as_f64().unwrap());
    assert_eq!(pairs, 276.0);
    assert!((evidence["far_estimate"].as_f64().unwrap() - accepts / pairs).abs() < 1e-12);
    assert!(evidence["far_estimate"].as_f64().unwrap() <= 0.01);
    assert!(evidence["far_high_95"].as_f64().unwrap() > 0.01, "276 pairs cannot show FAR < 1%: {evidence}");
    assert!(entry["evaluation"]["eer_percent"].is_number());
    // Three prints, three live frames: at APCER <= 1% every print must fall below the threshold.
    let liveness = file["liveness"]["threshold"].as_f64().unwrap();
    assert!(report["liveness"]["report"]["apcer"].as_f64().unwrap() <= 0.01, "{report}");
    assert!(liveness > 0.0 && liveness < 1.0);
}

/// Genuine and impostor pair counts of a folder-per-identity tree, computed by hand.
fn identity_pair_counts(root: &Path) -> (u64, u64) {
    let sizes: Vec<u64> = std::fs::read_dir(root)
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count() as u64)
        .collect();
    let n: u64 = sizes.iter().sum();
    let genuine: u64 = sizes.iter().map(|k| k * (k - 1) / 2).sum();
    (genuine, n * (n - 1) / 2 - genuine)
}

#[test]
fn evaluate_writes_its_report_charts_and_summary_and_reuses_cached_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, out) = (dir.path().join("cache"), dir.path().join("out"));
    let run = || {
        visage(&[
            "evaluate",
            "--identities",
            "tests/fixtures/lfw",
            "--threshold",
            "0.35",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let first = json(&run());
    let keys: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "schema",
            "visage_version",
            "dataset",
            "recognizer",
            "backend",
            "precision",
            "pairs",
            "images",
            "threshold",
            "at_threshold",
            "eer",
            "cross_validation",
            "tar_at_far",
            "far_resolution",
            "files",
            "seconds"
        ],
        "the report's schema is stable"
    );
    assert_eq!(first["schema"], "visage.evaluation/1");
    let (genuine, impostor) = identity_pair_counts(&root().join("tests/fixtures/lfw"));
    assert_eq!(first["pairs"]["genuine"].as_u64(), Some(genuine));
    assert_eq!(first["pairs"]["impostor"].as_u64(), Some(impostor), "all of them: fewer than the limit");
    let images = first["images"]["total"].as_u64().unwrap();
    assert_eq!(first["images"]["embedded_now"].as_u64(), Some(images));
    assert_eq!(first["threshold"]["source"], "command line");
    // Four genuine pairs of clear news photos: SFace separates them from every impostor pair.
    assert_eq!(first["eer"]["rate"], 0.0, "{first}");
    assert_eq!(first["tar_at_far"][0]["far_target"], 0.01);

    let det = std::fs::read_to_string(out.join("det.svg")).unwrap();
    assert!(det.starts_with("<svg") && det.contains("<polyline") && det.contains("threshold 0.3500"));
    let histogram = std::fs::read_to_string(out.join("scores.svg")).unwrap();
    assert!(histogram.contains(&format!("genuine ({genuine})")));
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("| EER | 0.00%") && summary.contains("![DET curve](det.svg)"), "{summary}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(saved, first);

    let second = json(&run());
    assert_eq!(second["images"]["from_cache"].as_u64(), Some(images), "every embedding comes from the cache");
    assert_eq!(second["images"]["embedded_now"], 0);
    assert_eq!((&second["eer"], &second["at_threshold"]), (&first["eer"], &first["at_threshold"]));
}

#[test]
fn evaluate_on_a_pairs_file_adds_seeded_impostors_outside_its_folds() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = fixture_pairs(dir.path());
    let images = root().join("tests/fixtures/lfw");
    let run = |seed: &str| {
        json(&visage(&[
            "evaluate",
            "--pairs",
            pairs.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--impostor-pairs",
            "20",
            "--seed",
            seed,
            "--threshold",
            "0.35",
            "--no-cache",
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ]))
    };
    let report = run("7");
    let file_impostors =
        std::fs::read_to_string(&pairs).unwrap().lines().filter(|l| l.split('\t').count() == 4).count();
    assert_eq!(report["pairs"]["impostor"].as_u64(), Some(file_impostors as u64 + 20));
    assert_eq!(report["dataset"]["impostor_sampling"]["used"], 20);
    assert_eq!(report["dataset"]["impostor_sampling"]["seed"], 7);
    assert_eq!(report["dataset"]["folds"], "stratified");
    // Four genuine pairs: four folds, each held out once.
    assert_eq!(report["cross_validation"]["folds"].as_array().unwrap().len(), 4);
    assert_eq!(report["images"]["from_cache"], 0);
}

#[test]
fn evaluate_liveness_reports_each_model_and_the_ensemble_with_charts() {
    let dir = tempfile::tempdir().unwrap();
    let nuaa = dir.path().join("nuaa");
    for (kind, target) in [("real", "real"), ("print", "attack/print")] {
        for file in std::fs::read_dir(root().join("tests/fixtures/nuaa").join(kind)).unwrap() {
            let file = file.unwrap().path();
            let subject = file.file_name().unwrap().to_str().unwrap()[..4].to_owned();
            std::fs::create_dir_all(nuaa.join(target).join(&subject)).unwrap();
            std::fs::copy(&file, nuaa.join(target).join(&subject).join(file.file_name().unwrap())).unwrap();
        }
    }
    let out = dir.path().join("out");
    let report = json(&visage(&[
        "evaluate-liveness",
        "--dir",
        nuaa.to_str().unwrap(),
        "--subjects",
        "0005,0006,0007",
        "--liveness-model",
        "minifasnet",
        "--threshold",
        "0.1",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(report["schema"], "visage.liveness-evaluation/1");
    let models: Vec<&str> = report["models"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(models, ["ensemble", "faceplugin", "minifasnet", "minifasnet_v1se", "minifasnet_v2"]);
    assert_eq!(report["dataset"]["bona_fide"], 3);
    assert_eq!(report["dataset"]["attacks_by_type"]["print"], 3);
    // Held-apart subjects: every live frame passes and every print fails at 0.1.
    let ensemble = &report["models"]["minifasnet"]["at_threshold"];
    assert_eq!((ensemble["apcer"].as_f64(), ensemble["bpcer"].as_f64()), (Some(0.0), Some(0.0)), "{report}");
    let det = std::fs::read_to_string(out.join("det.svg")).unwrap();
    assert!(det.contains("minifasnet_v2 (print)") && det.contains("APCER"));

    // The default model (the ensemble) at its calibrated threshold separates them too.
    let default = json(&visage(&[
        "evaluate-liveness",
        "--dir",
        nuaa.to_str().unwrap(),
        "--out",
        dir.path().join("default").to_str().unwrap(),
    ]));
    assert_eq!(default["primary_model"], "ensemble");
    let ensemble = &default["models"]["ensemble"]["at_threshold"];
    assert_eq!((ensemble["apcer"].as_f64(), ensemble["bpcer"].as_f64()), (Some(0.0), Some(0.0)), "{default}");
    assert!(std::fs::read_to_string(out.join("summary.md")).unwrap().contains("| minifasnet (chosen) |"));
}
