//! Inference backends behind one small trait, so that another runtime (ONNX Runtime) can be
//! added without touching the pipeline.

use std::path::Path;
use std::sync::Arc;

use crate::FaceError;

#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
#[cfg(feature = "tract")]
mod tract;
#[cfg(feature = "tract")]
pub use tract::TractBackend;

/// A dense f32 tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }
}

/// The inference runtimes visage can be built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Pure Rust, no shared library (cargo feature `tract`, on by default).
    Tract,
    /// ONNX Runtime loaded from the models directory (cargo feature `onnxruntime`).
    #[cfg_attr(feature = "clap", value(name = "onnxruntime"))]
    OnnxRuntime,
}

impl BackendKind {
    /// `parallelism`: how many inferences of one model may run at once.
    pub fn create(
        self,
        paths: &crate::ModelPaths,
        parallelism: usize,
    ) -> Result<Box<dyn InferenceBackend>, FaceError> {
        match self {
            #[cfg(feature = "tract")]
            Self::Tract => Ok(Box::new(TractBackend)),
            #[cfg(not(feature = "tract"))]
            Self::Tract => Err(FaceError::ModelLoad {
                model: "tract".into(),
                reason: "this build has no tract backend (cargo feature `tract`)".into(),
            }),
            #[cfg(feature = "onnxruntime")]
            Self::OnnxRuntime => {
                let library = paths.verified(onnxruntime::LIBRARY)?;
                Ok(Box::new(onnxruntime::OnnxRuntimeBackend::new(&library, parallelism)?))
            }
            #[cfg(not(feature = "onnxruntime"))]
            Self::OnnxRuntime => {
                let _ = (paths, parallelism);
                Err(FaceError::ModelLoad {
                    model: "onnxruntime".into(),
                    reason: "this build has no ONNX Runtime backend (cargo feature `onnxruntime`)".into(),
                })
            }
        }
    }
}

/// A runtime able to load ONNX models.
pub trait InferenceBackend: Send + Sync {
    fn name(&self) -> &'static str;
    fn load(&self, path: &Path, model: &str) -> Result<Arc<dyn Session>, FaceError>;
}

/// One loaded model. `run` takes one input and returns every output in the model's order;
/// it may be called from several threads at once.
pub trait Session: Send + Sync {
    fn run(&self, input: Tensor) -> Result<Vec<Tensor>, FaceError>;
}
