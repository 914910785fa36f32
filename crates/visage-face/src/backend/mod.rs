//! Inference backends behind one small trait, so that another runtime (ONNX Runtime) can be
//! added without touching the pipeline.

use std::path::Path;
use std::sync::Arc;

use crate::FaceError;

#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
#[cfg(feature = "openvino")]
pub mod openvino;
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
    /// OpenVINO loaded from the models directory (cargo feature `openvino`); falls back to
    /// ONNX Runtime where it cannot run (see [`BackendKind::create_or_fall_back`]).
    #[cfg_attr(feature = "clap", value(name = "openvino"))]
    #[serde(rename = "openvino")]
    OpenVino,
}

/// Arithmetic precision inside the runtime. Applies to OpenVINO only: ONNX Runtime and tract
/// always run f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 where the CPU supports it, f32 elsewhere.
    #[default]
    Auto,
    F32,
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }

    /// The precision that runs, given whether the CPU has bf16: `Auto` picks, an explicit
    /// choice stays (the runtime emulates bf16 where the CPU lacks it).
    pub fn resolve(self, cpu_has_bf16: bool) -> Self {
        match self {
            Self::Auto if cpu_has_bf16 => Self::Bf16,
            Self::Auto => Self::F32,
            explicit => explicit,
        }
    }
}

/// Why the requested backend did not start and which one runs instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub requested: BackendKind,
    pub reason: String,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tract => "tract",
            Self::OnnxRuntime => "onnxruntime",
            Self::OpenVino => "openvino",
        }
    }

    /// `parallelism`: how many inferences of one model may run at once. Precision `Auto`.
    pub fn create(
        self,
        paths: &crate::ModelPaths,
        parallelism: usize,
    ) -> Result<Box<dyn InferenceBackend>, FaceError> {
        self.create_with(paths, parallelism, Precision::Auto)
    }

    /// Like [`BackendKind::create`], but where OpenVINO cannot run here (library missing,
    /// altered or failing to load, a CPU without AVX2) starts ONNX Runtime instead and says why;
    /// the caller logs the reason once.
    pub fn create_or_fall_back(
        self,
        paths: &crate::ModelPaths,
        parallelism: usize,
        precision: Precision,
    ) -> Result<(Box<dyn InferenceBackend>, Option<Fallback>), FaceError> {
        match self.create_with(paths, parallelism, precision) {
            Ok(backend) => Ok((backend, None)),
            Err(error) if self == Self::OpenVino => {
                let backend = Self::OnnxRuntime.create_with(paths, parallelism, Precision::F32)?;
                Ok((backend, Some(Fallback { requested: self, reason: error.to_string() })))
            }
            Err(error) => Err(error),
        }
    }

    /// `precision` applies to OpenVINO; the other runtimes run f32 whatever it says.
    pub fn create_with(
        self,
        paths: &crate::ModelPaths,
        parallelism: usize,
        precision: Precision,
    ) -> Result<Box<dyn InferenceBackend>, FaceError> {
        #[cfg(not(feature = "openvino"))]
        let _ = precision;
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
            #[cfg(feature = "openvino")]
            Self::OpenVino => Ok(Box::new(openvino::OpenVinoBackend::new(paths, precision, parallelism)?)),
            #[cfg(not(feature = "openvino"))]
            Self::OpenVino => Err(FaceError::ModelLoad {
                model: "openvino".into(),
                reason: "this build has no OpenVINO backend (cargo feature `openvino`)".into(),
            }),
        }
    }
}

/// What computes the scores: the runtime and the precision it runs (never `Auto`). Scores move
/// a little between precisions (bf16 keeps 8 mantissa bits), so thresholds are calibrated per
/// `Numerics`; the f32 runtimes agree with each other to the tolerances the tests check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Numerics {
    pub backend: BackendKind,
    pub precision: Precision,
}

impl Numerics {
    /// ONNX Runtime in f32: what every calibration before per-backend ones was measured on.
    pub const REFERENCE: Self = Self { backend: BackendKind::OnnxRuntime, precision: Precision::F32 };

    /// "openvino bf16".
    pub fn label(self) -> String {
        format!("{} {}", self.backend.as_str(), self.precision.as_str())
    }
}

/// A runtime able to load ONNX models.
pub trait InferenceBackend: Send + Sync {
    fn kind(&self) -> BackendKind;
    fn name(&self) -> &'static str {
        self.kind().as_str()
    }
    /// The precision the runtime computes in (never `Auto`).
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn numerics(&self) -> Numerics {
        Numerics { backend: self.kind(), precision: self.precision() }
    }
    fn load(&self, path: &Path, model: &str) -> Result<Arc<dyn Session>, FaceError>;
    /// Like [`InferenceBackend::load`], for a model whose file fixes its batch at one: opened
    /// for batches of up to [`RECOGNIZER_BATCH`] where the runtime can change that (OpenVINO),
    /// as it is elsewhere. [`Session::max_batch`] says which.
    fn load_batched(&self, path: &Path, model: &str) -> Result<Arc<dyn Session>, FaceError> {
        self.load(path, model)
    }
}

/// Faces a recognizer embeds in one inference where the runtime takes batches. Measured by
/// `bench/batch.sh` (docs/performance.md#batches): SFace on OpenVINO bf16 takes about 26% less
/// time per face at 4 than one at a time, less at 8 and 16.
pub const RECOGNIZER_BATCH: usize = 4;

/// One loaded model. `run` takes one input and returns every output in the model's order;
/// it may be called from several threads at once.
pub trait Session: Send + Sync {
    fn run(&self, input: Tensor) -> Result<Vec<Tensor>, FaceError>;
    /// The largest first (batch) dimension `run` takes; 1 for a model opened as its file says.
    fn max_batch(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_precision_is_bf16_only_where_the_cpu_has_it() {
        assert_eq!(Precision::Auto.resolve(true), Precision::Bf16);
        assert_eq!(Precision::Auto.resolve(false), Precision::F32);
        assert_eq!(Precision::F32.resolve(true), Precision::F32);
        assert_eq!(Precision::Bf16.resolve(false), Precision::Bf16);
    }

    #[test]
    fn backend_and_precision_names_are_the_configured_ones() {
        for kind in [BackendKind::Tract, BackendKind::OnnxRuntime, BackendKind::OpenVino] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for precision in [Precision::Auto, Precision::F32, Precision::Bf16] {
            assert_eq!(serde_json::to_value(precision).unwrap(), precision.as_str());
        }
    }
}
