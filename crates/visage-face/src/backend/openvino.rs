//! OpenVINO backend (cargo feature `openvino`): loads `libopenvino_c` at run time from
//! `models/openvino/`, where `scripts/models/fetch.sh` installs the libraries of the PyPI
//! `openvino` wheel. They carry `RPATH $ORIGIN`, so the C library finds the core, TBB, the ONNX
//! frontend and the CPU plugin beside it without `LD_LIBRARY_PATH`; the core looks for its
//! plugins in its own directory when there is no `plugins.xml`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use openvino::{
    CompiledModel, Core, DeviceType, Dimension, ElementType, InferRequest, PartialShape, PropertyKey,
    RwPropertyKey, Shape,
};

use super::{BackendKind, InferenceBackend, Precision, Session, Tensor};
use crate::{FaceError, ModelPaths};

/// The C library, relative to the models directory.
pub const LIBRARY: &str = "openvino/libopenvino_c.so.2641";

/// Every file the C library loads, each checked against `SHA256SUMS` before the first is
/// opened: a library is code, and a changed one must not run.
pub const LIBRARIES: [&str; 7] = [
    "openvino/libopenvino_c.so.2641",
    "openvino/libopenvino.so.2641",
    "openvino/libopenvino_intel_cpu_plugin.so",
    "openvino/libopenvino_onnx_frontend.so.2641",
    "openvino/libtbb.so.12",
    "openvino/libtbbbind_2_5.so.3",
    "openvino/libhwloc.so.15",
];

pub struct OpenVinoBackend {
    core: Mutex<Core>,
    precision: Precision,
    requests_per_model: usize,
}

impl OpenVinoBackend {
    /// Loads the libraries from `paths` and configures the CPU device. `precision` `Auto`
    /// becomes bf16 where the CPU reports BF16 among its optimisation capabilities, else f32.
    /// `requests_per_model`: how many inferences of one model may run at once (use the worker
    /// count). Fails, without side effects on the process beyond loading the library, when the
    /// CPU lacks AVX2 or the libraries are missing, altered or unloadable.
    pub fn new(
        paths: &ModelPaths,
        precision: Precision,
        requests_per_model: usize,
    ) -> Result<Self, FaceError> {
        let fail = |reason: String| FaceError::ModelLoad { model: "openvino".into(), reason };
        if !cpu_has_avx2() {
            return Err(fail("this CPU has no AVX2, which the OpenVINO CPU plugin needs".into()));
        }
        let mut library = None;
        for file in LIBRARIES {
            let path = paths.verified(file)?;
            library.get_or_insert(path);
        }
        let library = library.ok_or_else(|| fail("no library listed".into()))?;
        openvino_sys::library::load_from(library).map_err(fail)?;
        let mut core = Core::new().map_err(|e| fail(e.to_string()))?;
        let capabilities = core
            .get_property(&DeviceType::CPU, &PropertyKey::DeviceCapabilities)
            .map_err(|e| fail(e.to_string()))?;
        let precision = precision.resolve(capabilities.split([' ', ',']).any(|c| c.trim() == "BF16"));
        let hint = match precision {
            Precision::Bf16 => "bf16",
            Precision::F32 | Precision::Auto => "f32",
        };
        core.set_properties(
            &DeviceType::CPU,
            [
                // One thread per inference, one stream: requests run in parallel instead, as
                // with ONNX Runtime's sessions.
                (RwPropertyKey::InferenceNumThreads, "1"),
                (RwPropertyKey::NumStreams, "1"),
                (RwPropertyKey::HintPerformanceMode, "LATENCY"),
                (RwPropertyKey::HintInferencePrecision, hint),
                (RwPropertyKey::HintEnableCpuPinning, "NO"),
            ],
        )
        .map_err(|e| fail(e.to_string()))?;
        Ok(Self { core: Mutex::new(core), precision, requests_per_model: requests_per_model.max(1) })
    }
}

/// AVX2 is the least the OpenVINO CPU plugin runs well on; without it visage stays on ONNX
/// Runtime.
fn cpu_has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl InferenceBackend for OpenVinoBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::OpenVino
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn load(&self, path: &Path, model: &str) -> Result<Arc<dyn Session>, FaceError> {
        self.load_with_batch(path, model, 1)
    }

    fn load_batched(&self, path: &Path, model: &str) -> Result<Arc<dyn Session>, FaceError> {
        self.load_with_batch(path, model, super::RECOGNIZER_BATCH)
    }
}

impl OpenVinoBackend {
    /// `max_batch` > 1 turns the first input's batch dimension into the range 1..=max_batch.
    fn load_with_batch(
        &self,
        path: &Path,
        model: &str,
        max_batch: usize,
    ) -> Result<Arc<dyn Session>, FaceError> {
        let fail = |reason: String| FaceError::ModelLoad { model: model.to_owned(), reason };
        let path = path.to_str().ok_or_else(|| fail("the model path is not UTF-8".into()))?;
        // Inputs with dynamic dimensions (YuNet's height and width) stay dynamic: the CPU
        // plugin compiles once and adapts to each input's shape.
        let mut core = self.core.lock().map_err(|_| fail("core lock poisoned".into()))?;
        let mut onnx = core.read_model_from_file(path, "").map_err(|e| fail(e.to_string()))?;
        if max_batch > 1 {
            let input = onnx.get_input_by_index(0).map_err(|e| fail(e.to_string()))?;
            let shape = input.get_partial_shape().map_err(|e| fail(e.to_string()))?;
            let mut dimensions = shape.get_dimensions().to_vec();
            let first = dimensions.first_mut().ok_or_else(|| fail("the input has no dimensions".into()))?;
            *first = Dimension::new(1, max_batch as i64);
            let batched =
                PartialShape::new(dimensions.len() as i64, &dimensions).map_err(|e| fail(e.to_string()))?;
            onnx.reshape_single_input(&batched).map_err(|e| fail(e.to_string()))?;
        }
        let mut compiled = core.compile_model(&onnx, DeviceType::CPU).map_err(|e| fail(e.to_string()))?;
        drop(core);
        let outputs = compiled.get_output_size().map_err(|e| fail(e.to_string()))?;
        let requests = (0..self.requests_per_model)
            .map(|_| compiled.create_infer_request().map(Mutex::new).map_err(|e| fail(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(OpenVinoSession {
            model: model.to_owned(),
            _compiled: Mutex::new(compiled),
            outputs,
            requests,
            next: AtomicUsize::new(0),
            max_batch,
        }))
    }
}

struct OpenVinoSession {
    model: String,
    /// Kept for as long as its requests live.
    _compiled: Mutex<CompiledModel>,
    outputs: usize,
    requests: Vec<Mutex<InferRequest>>,
    next: AtomicUsize,
    max_batch: usize,
}

impl Session for OpenVinoSession {
    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn run(&self, input: Tensor) -> Result<Vec<Tensor>, FaceError> {
        let fail = |reason: String| FaceError::Inference { model: self.model.clone(), reason };
        let ov = |e: openvino::InferenceError| fail(e.to_string());
        // Take an idle request if there is one, else queue on the next in turn.
        let mut request = match self.requests.iter().find_map(|r| r.try_lock().ok()) {
            Some(idle) => idle,
            None => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.requests.len();
                self.requests[i].lock().map_err(|_| fail("request lock poisoned".into()))?
            }
        };
        let dims = input.shape.iter().map(|&d| d as i64).collect::<Vec<_>>();
        let shape = Shape::new(&dims).map_err(ov)?;
        let mut tensor = openvino::Tensor::new(ElementType::F32, &shape).map_err(ov)?;
        tensor.get_data_mut::<f32>().map_err(ov)?.copy_from_slice(&input.data);
        request.set_input_tensor(&tensor).map_err(ov)?;
        request.infer().map_err(ov)?;
        (0..self.outputs)
            .map(|i| {
                let output = request.get_output_tensor_by_index(i).map_err(ov)?;
                let element = output.get_element_type().map_err(ov)?;
                if element != ElementType::F32 {
                    return Err(fail(format!("output {i} is {element}, expected f32")));
                }
                let shape = output.get_shape().map_err(ov)?;
                let shape = shape.get_dimensions().iter().map(|&d| d as usize).collect();
                Ok(Tensor::new(shape, output.get_data::<f32>().map_err(ov)?.to_vec()))
            })
            .collect()
    }
}
