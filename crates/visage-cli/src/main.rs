//! `visage`: the face service's command-line tool.

mod backup;
mod cache;
mod commands;
mod dataset;
mod evaluation;
mod lfw;
mod multiface;
mod progress;
mod reembed;
mod report;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use visage_face::{BackendKind, DecodeLimits, FaceSelection, LivenessKind, Precision, RecognizerKind};

#[derive(Parser)]
#[command(name = "visage", version, about = "Self-hosted face verification and identification")]
struct Cli {
    /// Directory holding the model files (see scripts/models/fetch.sh).
    #[arg(long, global = true, env = "VISAGE_MODELS_DIR", default_value = "models")]
    models_dir: PathBuf,
    /// Inference runtime: openvino (libraries from scripts/models/fetch.sh; bf16 where the CPU
    /// has it; by default, onnxruntime where it cannot run, with a warning), onnxruntime (same)
    /// or tract (pure Rust). A backend named here never falls back.
    #[arg(long, global = true, value_enum, env = "VISAGE_BACKEND", default_value = "openvino")]
    backend: BackendKind,
    /// Precision of the openvino backend: auto (bf16 where the CPU has it), f32 or bf16; the
    /// other backends run f32.
    #[arg(long, global = true, value_enum, env = "VISAGE_PRECISION", default_value = "auto")]
    precision: Precision,
    /// Face recognizer: sface (default) or mobilefacenet (scripts/models/fetch.sh --mobilefacenet).
    #[arg(long, global = true, value_enum, env = "VISAGE_RECOGNIZER", default_value = "sface")]
    recognizer: RecognizerKind,
    /// Which face a single-face command uses when a photo holds several.
    #[arg(long, global = true, value_enum, env = "VISAGE_FACE_SELECTION", default_value = "central")]
    select: FaceSelection,
    /// Largest accepted image file, in bytes (checked before decoding).
    #[arg(long, global = true, env = "VISAGE_MAX_IMAGE_BYTES", default_value_t = DecodeLimits::default().max_bytes)]
    max_image_bytes: usize,
    /// Largest accepted width x height, in pixels (checked from the header, before decoding).
    #[arg(long, global = true, env = "VISAGE_MAX_PIXELS", default_value_t = DecodeLimits::default().max_pixels)]
    max_pixels: u64,
    /// Liveness model: ensemble (MiniFASNet and faceplugin), minifasnet (V2 + V1SE) or
    /// faceplugin.
    #[arg(long, global = true, value_enum, env = "VISAGE_LIVENESS_MODEL", default_value = "ensemble")]
    liveness_model: LivenessKind,
    /// Horizontal-flip test-time augmentation (embed the face and its mirror image), for
    /// measuring it; the service does not use it (docs/accuracy.md).
    #[arg(long, global = true)]
    flip_tta: bool,
    /// Score fusion, for measuring it: `evaluate` and `calibrate` score a pair as the mean of
    /// this recognizer's cosine and the chosen one's; the service does not fuse (docs/accuracy.md).
    #[arg(long, global = true, value_enum)]
    fuse_with: Option<RecognizerKind>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Detect every face: box, 5 landmarks, score and quality (one JSON line per image).
    Detect {
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Compare the faces of two images: similarity, threshold and the match decision.
    Compare {
        a: PathBuf,
        b: PathBuf,
        /// Decision threshold on cosine similarity [default: the recognizer's calibrated one].
        #[arg(long, env = "VISAGE_THRESHOLD")]
        threshold: Option<f32>,
    },
    /// Passive liveness of every face (one JSON line per image): live, score, attack_type.
    Liveness {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// A face is live when its score is at least this [default: the calibrated threshold of
        /// the liveness model, as the service uses].
        #[arg(long, env = "VISAGE_LIVENESS_THRESHOLD")]
        threshold: Option<f32>,
    },
    /// Print the face embedding of an image as JSON.
    Embed { image: PathBuf },
    /// Verification error rates on labelled data: accuracy (cross-validated), EER, FAR/FRR at the
    /// threshold, TAR at FAR 1e-2/1e-3/1e-4. Writes report.json, det.svg, scores.svg and
    /// summary.md to --out.
    #[command(group(clap::ArgGroup::new("dataset").required(true).args(["pairs", "identities"])))]
    Evaluate {
        /// LFW-style pairs file (`pairs.txt`, `pairsDevTest.txt`, ...).
        #[arg(long)]
        pairs: Option<PathBuf>,
        /// LFW image root (`<Name>/<Name>_NNNN.jpg`); defaults to the pairs file's folder.
        #[arg(long, requires = "pairs")]
        images: Option<PathBuf>,
        /// A folder per identity (`DIR/<identity>/<image>`): every same-identity pair is genuine,
        /// impostor pairs are sampled.
        #[arg(long)]
        identities: Option<PathBuf>,
        /// With --identities: most impostor pairs formed (all when there are fewer) [default:
        /// 100000]. With --pairs: impostor pairs sampled among the file's images on top of its
        /// own, to resolve small FARs (they stay out of the accuracy protocol) [default: 0].
        #[arg(long)]
        impostor_pairs: Option<usize>,
        /// Seed of the impostor sample: the same seed gives the same pairs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Decision threshold [default: the calibrated one for --far-target, as the service uses].
        #[arg(long)]
        threshold: Option<f32>,
        /// The FAR whose calibrated threshold is evaluated.
        #[arg(long, default_value_t = 1e-3)]
        far_target: f64,
        /// Output folder [default: reports/evaluate-<dataset>].
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        cache: evaluation::CacheArgs,
        /// Worker threads (default: the available cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// How to score a subject with several faces: identities with more than --enrol images
    /// enrol the first --enrol and probe with the rest; best-of, mean score, mean template and
    /// quality-weighted variants, each at its own threshold, on two halves of the identities
    /// (choose on one, report on the other). Prints JSON.
    EvaluateMultiface {
        /// A folder per identity, e.g. ../shared/data/lfw-dev.
        #[arg(long)]
        identities: PathBuf,
        /// Faces enrolled per subject.
        #[arg(long, default_value_t = 2)]
        enrol: usize,
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Liveness error rates (APCER per attack type, BPCER, ACER) over `DIR/real/<subject>/` and
    /// `DIR/attack/<type>/<subject>/`, for each liveness model and the ensemble. Writes
    /// report.json, det.svg, scores.svg and summary.md to --out.
    EvaluateLiveness {
        /// Dataset root, e.g. ../shared/data/nuaa-dev.
        #[arg(long)]
        dir: PathBuf,
        /// Only these subjects (comma-separated folder names); default: all.
        #[arg(long, value_delimiter = ',')]
        subjects: Vec<String>,
        /// Liveness threshold: live when the score is at least this [default: the calibrated one].
        #[arg(long)]
        threshold: Option<f32>,
        /// APCER target whose threshold (and BPCER) is reported.
        #[arg(long, default_value_t = 0.01)]
        apcer_target: f64,
        /// Output folder [default: reports/evaluate-liveness-<dir>].
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Measure decision thresholds for FAR 1e-2/1e-3/1e-4 (those the data resolves) and the
    /// liveness threshold on a development split; write them to MODELS/calibration.json, which
    /// `visage serve` reads. With --from-feedback: measure each collection's thresholds on its
    /// own labelled decisions instead (same configuration as `visage serve`), and keep them in
    /// the database, where every replica reads them.
    Calibrate {
        /// Development pairs file, e.g. ../shared/data/lfw-dev/pairsDevTrain.txt (never the split you report on).
        #[arg(long, required_unless_present = "from_feedback")]
        pairs: Option<PathBuf>,
        /// Calibrate collections from their labelled decisions (conservative rule; the FAR
        /// targets the service offers). A collection without enough labels keeps the global
        /// calibration; the command says how many it needs and has.
        #[arg(long, conflicts_with_all = ["pairs", "images", "liveness_dir", "impostor_pairs", "fuse_with"])]
        from_feedback: bool,
        #[command(flatten)]
        feedback: FeedbackArgs,
        /// LFW image root; defaults to the pairs file's folder.
        #[arg(long)]
        images: Option<PathBuf>,
        /// Liveness development data (`real/`, `attack/<type>/`), e.g. ../shared/data/nuaa-dev.
        #[arg(long)]
        liveness_dir: Option<PathBuf>,
        /// Liveness calibration subjects (comma-separated), e.g. 0001,0002,0003,0004.
        #[arg(long, value_delimiter = ',')]
        liveness_subjects: Vec<String>,
        /// Highest accepted APCER of the worst attack type.
        #[arg(long, default_value_t = 0.01)]
        apcer_target: f64,
        /// The FAR target the evaluation summary is taken at (the service default).
        #[arg(long, default_value_t = 1e-3)]
        default_far: f64,
        /// conservative: the lowest threshold whose FAR's 95% Wilson interval lies under the
        /// target; point: the lowest whose measured FAR reaches it (the behaviour before
        /// conservative calibration, for comparison).
        #[arg(long = "calibration", value_enum, default_value = "conservative")]
        rule: ThresholdRuleArg,
        /// Impostor pairs sampled among the pairs file's images on top of its own: 1,100
        /// impostor pairs cannot resolve FAR 1e-4, a few hundred thousand can.
        #[arg(long, default_value_t = 0)]
        impostor_pairs: usize,
        /// Seed of the impostor sample.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file [default: MODELS/calibration.json]; with --from-feedback, a folder to
        /// also write each collection's file to (calibration-<collection>.json).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        cache: evaluation::CacheArgs,
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Check that every model file is present and matches its pinned sha256.
    Models,
    /// Run the HTTP service (port 8000 by default; every option is listed below).
    #[command(after_long_help = visage_server::config::options_help())]
    Serve {
        #[command(flatten)]
        service: ServiceArgs,
        /// Address:port to listen on (server.listen).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Change the recognizer without downtime: give every enrolled face a template of the
    /// recognizer `--to`, made from its stored image, while the service keeps matching with
    /// the old ones; rerun to catch up (resumable); then `--prune` deletes the old templates.
    /// Reads the configuration `visage serve` reads (database, keys, images, models).
    Reembed {
        #[command(flatten)]
        service: ServiceArgs,
        /// The new recognizer.
        #[arg(long, value_enum)]
        to: RecognizerKind,
        /// Templates read together; their images are embedded in batches (4 faces per inference
        /// for SFace on OpenVINO), side by side on inference.workers threads.
        #[arg(long, default_value_t = 32)]
        batch: u32,
        /// Delete the templates of other recognizers and their images, once every face has a
        /// template of `--to` (restart the replicas on it first).
        #[arg(long)]
        prune: bool,
        /// With --prune: also delete faces without a template of `--to` (they are lost).
        #[arg(long, requires = "prune")]
        force: bool,
    },
    /// Stored enrolment images.
    Images {
        #[command(flatten)]
        service: ServiceArgs,
        #[command(subcommand)]
        action: ImagesAction,
    },
    /// Records of destroyed personal data (erasures, face deletions): what, how much, why,
    /// how, when, by whom (Roskomnadzor order No. 179).
    DestructionRecords {
        #[command(flatten)]
        service: ServiceArgs,
        #[command(subcommand)]
        action: DestructionAction,
    },
    /// Create, list and revoke the service's API keys; re-seal stored data under a new template key.
    Keys {
        #[command(flatten)]
        service: ServiceArgs,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Back up the embedded storage while the service serves: a consistent snapshot of the
    /// SQLite database, the stored images and the calibration file, in one ZIP archive with a
    /// manifest (versions, counts, the template key ids it needs, checksums). Never the
    /// template key: back it up apart. PostgreSQL and S3 have their own tools (docs/backup.md).
    Backup {
        #[command(flatten)]
        service: ServiceArgs,
        /// The archive to write; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a `visage backup` archive into an empty data directory (--data-dir), once its
    /// checksums are right and the configured template keys open its templates; a failed check
    /// changes nothing.
    Restore {
        #[command(flatten)]
        service: ServiceArgs,
        /// The archive `visage backup` wrote.
        #[arg(long)]
        from: PathBuf,
        /// Destruction records made since the backup (`visage destruction-records export --from
        /// DAY --format json`): the subjects they name as erased are erased again before the
        /// restored data is put in place.
        #[arg(long)]
        reapply_erasures: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServiceArgs {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "VISAGE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: the embedded database and the development key (storage.data_dir).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

/// `visage calibrate --from-feedback` options.
#[derive(clap::Args)]
struct FeedbackArgs {
    #[command(flatten)]
    service: ServiceArgs,
    /// Only this collection (it fails when it has too few labels) [default: every collection
    /// with labelled decisions].
    #[arg(long, requires = "from_feedback")]
    collection: Option<String>,
    /// A FAR target to calibrate, one the service offers (repeat for several) [default: all of them].
    #[arg(long = "far-target", requires = "from_feedback")]
    far_targets: Vec<f64>,
    /// Genuine labels a collection needs, so that its false-reject rate at the new thresholds
    /// is measured.
    #[arg(long, default_value_t = visage_server::jobs::calibration::MIN_GENUINE, requires = "from_feedback")]
    min_genuine: usize,
    /// Measure and report; keep nothing.
    #[arg(long, requires = "from_feedback")]
    dry_run: bool,
    /// Drop the --collection's own calibration: its decisions go back to the global one.
    #[arg(long, requires_all = ["from_feedback", "collection"], conflicts_with = "dry_run")]
    reset: bool,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key; the key is printed once on stdout and only its hash is stored.
    Create {
        /// A label for people (who or what uses the key).
        #[arg(long)]
        name: String,
        /// read, verify, enrol or admin; each includes the ones before it.
        #[arg(long, value_parser = clap::builder::ValueParser::new(parse_role))]
        role: visage_store::Role,
        /// Collections the key may use (comma-separated), or * for all.
        #[arg(long, value_delimiter = ',', default_value = "*")]
        collections: Vec<String>,
    },
    /// List keys (never the keys themselves): id, name, role, collections, revocation.
    List,
    /// Revoke a key by id; it stops working at once.
    Revoke { id: String },
    /// Re-seal every template and stored image under the active template key (encryption.key),
    /// while the service keeps serving; then report which keys of encryption.previous_keys
    /// nothing needs any more. Resumable: rerun after an interruption.
    RotateTemplateKey {
        /// Templates read and re-sealed together.
        #[arg(long, default_value_t = 256)]
        batch: u32,
    },
}

#[derive(Subcommand)]
enum ImagesAction {
    /// Delete the images no template refers to (left behind by a deletion that failed, see the
    /// image.delete audit events, or by a crash between an upload and its template), once they
    /// are older than --older-than-hours.
    Sweep {
        #[arg(long, default_value_t = 24)]
        older_than_hours: u64,
    },
}

#[derive(Subcommand)]
enum DestructionAction {
    /// Print the records of a period on stdout, oldest first.
    Export {
        /// From this day (YYYY-MM-DD, UTC) or instant (RFC 3339) [default: the first record].
        #[arg(long, value_parser = clap::builder::ValueParser::new(service::parse_from))]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Through this day (YYYY-MM-DD: the whole day, UTC), or until this instant (RFC 3339,
        /// excluded) [default: now].
        #[arg(long, value_parser = clap::builder::ValueParser::new(service::parse_to))]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// A JSON array of records.
    Json,
    /// CSV with a header line.
    Csv,
}

fn parse_role(text: &str) -> Result<visage_store::Role, String> {
    text.parse()
}

/// Global flags given explicitly override the service configuration; their defaults do not.
fn service_overrides(
    cli: &Cli,
    matches: &ArgMatches,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
) -> service::Overrides {
    let explicit = |id: &str| {
        matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
    };
    service::Overrides {
        listen,
        data_dir,
        models_dir: explicit("models_dir").then(|| cli.models_dir.clone()),
        backend: explicit("backend").then_some(cli.backend),
        precision: explicit("precision").then_some(cli.precision),
        recognizer: explicit("recognizer").then_some(cli.recognizer),
        face_selection: explicit("select").then_some(cli.select),
        max_image_bytes: explicit("max_image_bytes").then_some(cli.max_image_bytes),
        max_pixels: explicit("max_pixels").then_some(cli.max_pixels),
        liveness_model: explicit("liveness_model").then_some(cli.liveness_model),
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let ctx = commands::Context {
        models_dir: cli.models_dir.clone(),
        backend: cli.backend,
        backend_named: matches!(
            matches.value_source("backend"),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ),
        precision: cli.precision,
        recognizer: cli.recognizer,
        decode: DecodeLimits { max_bytes: cli.max_image_bytes, max_pixels: cli.max_pixels },
        selection: cli.select,
        liveness: cli.liveness_model,
        flip_tta: cli.flip_tta,
        fuse_with: cli.fuse_with,
    };
    let result = match cli.command {
        Command::Detect { images } => commands::detect(&ctx, &images),
        Command::Compare { a, b, threshold } => commands::compare(&ctx, &a, &b, threshold),
        Command::Embed { image } => commands::embed(&ctx, &image),
        Command::Liveness { images, threshold } => commands::liveness(&ctx, &images, threshold),
        Command::Evaluate {
            ref pairs,
            ref images,
            ref identities,
            impostor_pairs,
            seed,
            threshold,
            far_target,
            ref out,
            ref cache,
            threads,
        } => {
            let comparisons = match (pairs, identities) {
                (Some(pairs), _) => {
                    let root = images
                        .clone()
                        .unwrap_or_else(|| pairs.parent().unwrap_or(std::path::Path::new(".")).into());
                    dataset::from_pairs_file(pairs, &root).map(|mut set| {
                        dataset::add_sampled_impostors(&mut set, impostor_pairs.unwrap_or(0), seed);
                        set
                    })
                }
                (None, Some(dir)) => {
                    dataset::from_identity_dirs(dir, impostor_pairs.unwrap_or(100_000), seed)
                }
                (None, None) => unreachable!("clap requires one of --pairs and --identities"),
            };
            comparisons.and_then(|comparisons| {
                report::evaluate(
                    &ctx,
                    report::EvaluateArgs {
                        comparisons,
                        threshold,
                        far_target,
                        out: out.as_deref(),
                        cache,
                        threads,
                    },
                )
            })
        }
        Command::EvaluateMultiface { ref identities, enrol, threads } => {
            multiface::evaluate(&ctx, &multiface::Args { identities, enrol, threads })
        }
        Command::EvaluateLiveness { ref dir, ref subjects, threshold, apcer_target, ref out, threads } => {
            report::evaluate_liveness(
                &ctx,
                report::EvaluateLivenessArgs {
                    dir,
                    subjects,
                    threshold,
                    apcer_target,
                    out: out.as_deref(),
                    threads,
                },
            )
        }
        Command::Models => commands::check_models(&ctx),
        Command::Calibrate { from_feedback: true, ref feedback, ref out, .. } => {
            let overrides = service_overrides(&cli, &matches, feedback.service.data_dir.clone(), None);
            service::load_config(feedback.service.config.as_deref(), &overrides).and_then(|config| {
                if feedback.reset {
                    let collection = feedback.collection.as_deref().expect("clap requires --collection");
                    return service::reset_calibration(&config, collection);
                }
                service::calibrate_from_feedback(
                    &config,
                    feedback.collection.as_deref(),
                    feedback.far_targets.clone(),
                    feedback.min_genuine,
                    out.clone(),
                    feedback.dry_run,
                )
            })
        }
        Command::Calibrate {
            ref pairs,
            ref images,
            ref liveness_dir,
            ref liveness_subjects,
            apcer_target,
            default_far,
            rule,
            impostor_pairs,
            seed,
            ref out,
            ref cache,
            threads,
            ..
        } => commands::calibrate(
            &ctx,
            &commands::CalibrateArgs {
                pairs: pairs.as_deref().expect("clap requires --pairs without --from-feedback"),
                images: images.as_deref(),
                liveness_dir: liveness_dir.as_deref(),
                liveness_subjects,
                apcer_target,
                default_far,
                rule: rule.into(),
                impostor_pairs,
                seed,
                out: out.as_deref(),
                cache,
                threads,
            },
        ),
        Command::Serve { ref service, ref listen } => {
            let overrides = service_overrides(&cli, &matches, service.data_dir.clone(), listen.clone());
            service::load_config(service.config.as_deref(), &overrides).and_then(service::serve)
        }
        Command::Reembed { ref service, to, batch, prune, force } => {
            let overrides = service_overrides(&cli, &matches, service.data_dir.clone(), None);
            service::load_config(service.config.as_deref(), &overrides)
                .and_then(|config| reembed::run(&config, to, batch, prune, force))
        }
        Command::Images { ref service, action: ImagesAction::Sweep { older_than_hours } } => {
            let overrides = service_overrides(&cli, &matches, service.data_dir.clone(), None);
            service::load_config(service.config.as_deref(), &overrides)
                .and_then(|config| reembed::sweep(&config, older_than_hours))
        }
        Command::DestructionRecords {
            ref service,
            action: DestructionAction::Export { from, to, format },
        } => {
            let overrides = service_overrides(&cli, &matches, service.data_dir.clone(), None);
            let format = match format {
                ExportFormat::Json => visage_server::jobs::destruction::Format::Json,
                ExportFormat::Csv => visage_server::jobs::destruction::Format::Csv,
            };
            service::load_config(service.config.as_deref(), &overrides)
                .and_then(|config| service::export_destruction_records(&config, from, to, format))
        }
        Command::Keys { ref service, ref action } => {
            let overrides = service_overrides(&cli, &matches, service.data_dir.clone(), None);
            service::load_config(service.config.as_deref(), &overrides).and_then(|config| match action {
                KeysAction::Create { name, role, collections } => {
                    service::create_key(&config, name, *role, collections)
                }
                KeysAction::List => service::list_keys(&config),
                KeysAction::Revoke { id } => service::revoke_key(&config, id),
                KeysAction::RotateTemplateKey { batch } => reembed::rotate_template_key(&config, *batch),
            })
        }
        Command::Backup { ref service, ref out } => {
            let overrides = service_overrides(&cli, &matches, service.data_dir.clone(), None);
            service::load_config(service.config.as_deref(), &overrides)
                .and_then(|config| backup::backup(&config, out))
        }
        Command::Restore { ref service, ref from, ref reapply_erasures } => {
            let overrides = service_overrides(&cli, &matches, service.data_dir.clone(), None);
            service::load_config(service.config.as_deref(), &overrides)
                .and_then(|config| backup::restore(&config, from, reapply_erasures.clone()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("visage: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// The command line passes its choices to `visage serve`'s configuration by serde name.
    fn names_agree<T: ValueEnum + serde::Serialize>() {
        for value in T::value_variants() {
            let on_the_command_line = value.to_possible_value().expect("no variant is skipped");
            let in_the_configuration = serde_json::to_value(value).unwrap();
            assert_eq!(Some(on_the_command_line.get_name()), in_the_configuration.as_str());
        }
    }

    #[test]
    fn the_command_line_names_the_kinds_as_the_configuration_does() {
        names_agree::<BackendKind>();
        names_agree::<RecognizerKind>();
        names_agree::<FaceSelection>();
        names_agree::<LivenessKind>();
    }

    #[test]
    fn the_defaults_are_those_of_the_service() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["visage", "models"]).unwrap();
        assert_eq!(cli.backend, BackendKind::OpenVino);
        assert_eq!(cli.recognizer, RecognizerKind::Sface);
        assert_eq!(cli.select, FaceSelection::Central);
        assert_eq!(cli.liveness_model, LivenessKind::Ensemble);
        let cli =
            Cli::try_parse_from(["visage", "--backend", "tract", "--select", "largest", "models"]).unwrap();
        assert_eq!((cli.backend, cli.select), (BackendKind::Tract, FaceSelection::Largest));
    }
}

/// `--calibration`: how `visage calibrate` chooses a threshold for a FAR target.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ThresholdRuleArg {
    Conservative,
    Point,
}

impl From<ThresholdRuleArg> for visage_calibration::ThresholdRule {
    fn from(rule: ThresholdRuleArg) -> Self {
        match rule {
            ThresholdRuleArg::Conservative => Self::Conservative,
            ThresholdRuleArg::Point => Self::Point,
        }
    }
}
