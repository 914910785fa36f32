//! Per-stage timings of the face pipeline on real 250x250 LFW images, one thread.
//! `cargo bench -p visage-face --bench pipeline` (models from scripts/models/fetch.sh).

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use visage_face::align::align_face;
use visage_face::{
    BackendKind, EngineConfig, FaceEngine, LivenessKind, LivenessModel, ModelPaths, Precision,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bench_pipeline(c: &mut Criterion) {
    let models = ModelPaths::new(
        std::env::var_os("VISAGE_MODELS_DIR").map_or_else(|| repo_root().join("models"), PathBuf::from),
    );
    // The default backend, ONNX Runtime; VISAGE_BACKEND=tract or openvino measures another,
    // VISAGE_PRECISION=f32|bf16 OpenVINO's precision (default auto).
    let backend = match std::env::var("VISAGE_BACKEND").as_deref() {
        Ok("tract") => BackendKind::Tract,
        Ok("openvino") => BackendKind::OpenVino,
        _ => BackendKind::OnnxRuntime,
    };
    let precision = match std::env::var("VISAGE_PRECISION").as_deref() {
        Ok("f32") => Precision::F32,
        Ok("bf16") => Precision::Bf16,
        _ => Precision::Auto,
    };
    let backend = backend.create_with(&models, 1, precision).expect("backend");
    let engine = FaceEngine::load(&models, backend.as_ref(), EngineConfig::default())
        .expect("models (scripts/models/fetch.sh)");
    let fixtures = repo_root().join("tests/fixtures/lfw");
    let a = std::fs::read(fixtures.join("Elton_John/Elton_John_0001.jpg")).unwrap();
    let b = std::fs::read(fixtures.join("Elton_John/Elton_John_0007.jpg")).unwrap();
    let image = engine.decode(&a).unwrap();
    let faces = engine.detect(&image).unwrap();
    let face = engine.select(&image, &faces).unwrap();

    let mut group = c.benchmark_group("stages_250x250");
    group.bench_function("decode", |bench| bench.iter(|| engine.decode(&a).unwrap()));
    group.bench_function("detect", |bench| bench.iter(|| engine.detect(&image).unwrap()));
    group.bench_function("align", |bench| bench.iter(|| align_face(&image, &face.landmarks)));
    group.bench_function("align_embed_quality", |bench| bench.iter(|| engine.analyze(&image, face).unwrap()));
    group.finish();

    let frame = engine
        .decode(&std::fs::read(repo_root().join("tests/fixtures/nuaa/real/0006_00_00_01_0.jpg")).unwrap())
        .unwrap();
    let frame_faces = engine.detect(&frame).unwrap();
    let frame_face = engine.select(&frame, &frame_faces).unwrap();
    let mut group = c.benchmark_group("liveness_640x480");
    // Crop, resize and classify one face with each liveness choice (faceplugin and the
    // ensemble are skipped when the models were fetched with --no-faceplugin).
    for kind in [LivenessKind::Minifasnet, LivenessKind::Faceplugin, LivenessKind::Ensemble] {
        let Ok(liveness) = LivenessModel::load(&models, backend.as_ref(), kind) else {
            eprintln!("skipping liveness {}: model missing", kind.name());
            continue;
        };
        group.bench_function(kind.name(), |bench| bench.iter(|| liveness.score(&frame, frame_face).unwrap()));
    }
    group.bench_function("detect", |bench| bench.iter(|| engine.detect(&frame).unwrap()));
    group.finish();

    // Every bundled LFW image in turn, as bench/peer_opencv.py does for OpenCV.
    let all = fixture_images(&fixtures);
    let mut next = 0;
    let mut group = c.benchmark_group("end_to_end");
    group.bench_function("embed_one_250x250_image", |bench| {
        bench.iter(|| {
            next = (next + 1) % all.len();
            engine.analyze_bytes(&all[next]).unwrap()
        })
    });
    group.bench_function("compare_two_250x250_images", |bench| {
        bench.iter(|| {
            let fa = engine.analyze_bytes(&a).unwrap();
            let fb = engine.analyze_bytes(&b).unwrap();
            fa.embedding.cosine(&fb.embedding)
        })
    });
    group.finish();
}

fn fixture_images(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|person| std::fs::read_dir(person.unwrap().path()).unwrap())
        .map(|file| file.unwrap().path())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench_pipeline
}
criterion_main!(benches);
