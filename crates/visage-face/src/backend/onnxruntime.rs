//! ONNX Runtime backend (cargo feature `onnxruntime`): loads `libonnxruntime.so` at run time
//! (the one `scripts/models/fetch.sh` takes from the PyPI `onnxruntime` wheel), so nothing is
//! downloaded at build time.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session as OrtSession;
use ort::session::builder::GraphOptimizationLevel;

use super::{BackendKind, InferenceBackend, Session, Tensor};
use crate::FaceError;

/// File name of the runtime library inside the models directory.
pub const LIBRARY: &str = "libonnxruntime.so.1.32.0";

pub struct OnnxRuntimeBackend {
    environment: &'static Environment,
    sessions_per_model: usize,
}

/// ONNX Runtime allows one environment per process: the first backend creates it and every
/// later one shares it (with the library loaded first).
static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static ENVIRONMENT_INIT: Mutex<()> = Mutex::new(());

fn environment(library: &Path) -> Result<&'static Environment, String> {
    let _guard = ENVIRONMENT_INIT.lock().map_err(|_| "environment lock poisoned".to_string())?;
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let env = ort::init_from(library)
        .map_err(|e| e.to_string())?
        .with_name("visage")
        .build()
        .map_err(|e| e.to_string())?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}

impl OnnxRuntimeBackend {
    /// Loads the runtime library. `sessions_per_model` is how many inferences of one model
    /// may run at once (an ONNX Runtime session runs one at a time); use the worker count.
    pub fn new(library: &Path, sessions_per_model: usize) -> Result<Self, FaceError> {
        let fail = |reason: String| FaceError::ModelLoad { model: "onnxruntime".into(), reason };
        if !library.is_file() {
            return Err(FaceError::ModelMissing { path: library.to_path_buf() });
        }
        let environment = environment(library).map_err(fail)?;
        Ok(Self { environment, sessions_per_model: sessions_per_model.max(1) })
    }
}

impl InferenceBackend for OnnxRuntimeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::OnnxRuntime
    }

    fn load(&self, path: &Path, model: &str) -> Result<Arc<dyn Session>, FaceError> {
        let fail = |reason: String| FaceError::ModelLoad { model: model.to_owned(), reason };
        let sessions = (0..self.sessions_per_model)
            .map(|_| {
                OrtSession::builder(self.environment)
                    .map_err(|e| fail(e.to_string()))?
                    // One thread per inference: requests run in parallel instead, which
                    // uses the cores better than intra-op threads on small models.
                    .with_intra_threads(1)
                    .map_err(|e| fail(e.to_string()))?
                    .with_inter_threads(1)
                    .map_err(|e| fail(e.to_string()))?
                    .with_optimization_level(GraphOptimizationLevel::Level3)
                    .map_err(|e| fail(e.to_string()))?
                    .commit_from_file(path)
                    .map(Mutex::new)
                    .map_err(|e| fail(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(OnnxRuntimeSession { model: model.to_owned(), sessions, next: AtomicUsize::new(0) }))
    }
}

struct OnnxRuntimeSession {
    model: String,
    sessions: Vec<Mutex<OrtSession>>,
    next: AtomicUsize,
}

impl Session for OnnxRuntimeSession {
    fn run(&self, input: Tensor) -> Result<Vec<Tensor>, FaceError> {
        let fail = |reason: String| FaceError::Inference { model: self.model.clone(), reason };
        // Take an idle session if there is one, else queue on the next in turn.
        let mut session = match self.sessions.iter().find_map(|s| s.try_lock().ok()) {
            Some(idle) => idle,
            None => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
                self.sessions[i].lock().map_err(|_| fail("session lock poisoned".into()))?
            }
        };
        let value =
            ort::value::Tensor::from_array((input.shape, input.data)).map_err(|e| fail(e.to_string()))?;
        let outputs = session.run(ort::inputs![value]).map_err(|e| fail(e.to_string()))?;
        outputs
            .values()
            .map(|v| {
                let (shape, data) = v.try_extract_tensor::<f32>().map_err(|e| fail(e.to_string()))?;
                Ok(Tensor::new(shape.iter().map(|&d| d as usize).collect(), data.to_vec()))
            })
            .collect()
    }
}
