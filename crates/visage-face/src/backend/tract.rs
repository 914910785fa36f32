//! The tract backend: pure-Rust ONNX inference, built offline, no shared library.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;

use super::{BackendKind, InferenceBackend, Session, Tensor};
use crate::FaceError;

/// Pure-Rust ONNX inference with tract. Builds offline and needs no shared library.
#[derive(Debug, Default, Clone, Copy)]
pub struct TractBackend;

impl InferenceBackend for TractBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tract
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
        let outputs = plan.run(tvec!(tensor.into()));
        clear_upper_vector_state();
        let outputs = outputs.map_err(fail)?;
        outputs
            .iter()
            .map(|value| {
                let view = value.to_plain_array_view::<f32>().map_err(fail)?;
                Ok(Tensor::new(view.shape().to_vec(), view.iter().copied().collect()))
            })
            .collect()
    }
}

/// tract's x86-64 matrix kernels (hand-written assembly in tract-linalg 0.23) return without
/// `vzeroupper`, so the upper halves of the vector registers stay dirty and every SSE
/// instruction the thread (or a thread it starts) runs afterwards pays for it: on an AVX-512
/// AMD EPYC, face alignment took 1.05 ms instead of 0.39. Compiled Rust clears them itself
/// around its own AVX code; this does it after tract's.
fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX (checked just above). `vzeroupper` zeroes bits 128 and up of
        // the vector registers, which the compiler treats as clobbered by this intrinsic.
        #[allow(unsafe_code)]
        unsafe {
            std::arch::x86_64::_mm256_zeroupper()
        };
    }
}
