//! Inference backends behind one small trait, so that another runtime (ONNX Runtime) can be
//! added without touching the pipeline.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;

use crate::FaceError;

#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;

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
    /// Pure Rust; always available.
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
            Self::Tract => Ok(Box::new(TractBackend)),
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

/// Pure-Rust ONNX inference with tract. Builds offline and needs no shared library.
#[derive(Debug, Default, Clone, Copy)]
pub struct TractBackend;

impl InferenceBackend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn load(&self, path: &Path, model: &str) -> Result<Arc<dyn Session>, FaceError> {
        let parsed = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| FaceError::ModelLoad { model: model.to_owned(), reason: format!("{e:#}") })?;
        Ok(Arc::new(TractSession { model: model.to_owned(), parsed, plans: Mutex::new(HashMap::new()) }))
    }
}

/// Input shapes with an optimised plan kept; a detector sees few distinct sizes (images are
/// scaled to a bounded side and padded to a multiple of 32), a recognizer only one.
const MAX_CACHED_PLANS: usize = 16;

struct TractSession {
    model: String,
    parsed: InferenceModel,
    plans: Mutex<HashMap<Vec<usize>, Arc<TypedRunnableModel>>>,
}

impl TractSession {
    fn plan_for(&self, shape: &[usize]) -> Result<Arc<TypedRunnableModel>, FaceError> {
        if let Some(plan) = self.plans.lock().expect("plan cache poisoned").get(shape) {
            return Ok(plan.clone());
        }
        // Optimise outside the lock: it takes tens of milliseconds.
        let plan = self
            .parsed
            .clone()
            .with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| FaceError::ModelLoad { model: self.model.clone(), reason: format!("{e:#}") })?;
        let mut plans = self.plans.lock().expect("plan cache poisoned");
        if plans.len() >= MAX_CACHED_PLANS {
            plans.clear();
        }
        plans.insert(shape.to_vec(), plan.clone());
        Ok(plan)
    }
}

impl Session for TractSession {
    fn run(&self, input: Tensor) -> Result<Vec<Tensor>, FaceError> {
        let fail =
            |e: TractError| FaceError::Inference { model: self.model.clone(), reason: format!("{e:#}") };
        let plan = self.plan_for(&input.shape)?;
        let tensor = tract_ndarray::ArrayD::from_shape_vec(input.shape, input.data)
            .map_err(|e| FaceError::Inference { model: self.model.clone(), reason: e.to_string() })?
            .into_tensor();
        let outputs = plan.run(tvec!(tensor.into())).map_err(fail)?;
        outputs
            .iter()
            .map(|value| {
                let view = value.to_plain_array_view::<f32>().map_err(fail)?;
                Ok(Tensor::new(view.shape().to_vec(), view.iter().copied().collect()))
            })
            .collect()
    }
}
