//! Where model files live and how they are checked before loading.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::FaceError;

pub const YUNET: &str = "yunet_2023mar_fp32.onnx";
pub const SFACE: &str = "sface_2021dec_fp32.onnx";
pub const MOBILEFACENET: &str = "mobilefacenet_sirius_fp32.onnx";
pub const MINIFASNET_V2: &str = "minifasnet_v2_2.7_80x80.onnx";
pub const MINIFASNET_V1SE: &str = "minifasnet_v1se_4.0_80x80.onnx";
/// Optional: npm `faceplugin-face-recognition-js@0.0.1`, `model/fr_liveness.onnx` as shipped.
pub const FACEPLUGIN_LIVENESS: &str = "faceplugin_liveness_128x128.onnx";

/// The models directory. `SHA256SUMS` in it (written by the project, checked by the fetch
/// script) pins every file; a file whose sum differs is refused with the fix named.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    pub dir: PathBuf,
}

impl ModelPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Path of `file`, after checking it exists and matches its pinned sha256 (when the
    /// directory has a SHA256SUMS entry for it).
    pub fn verified(&self, file: &str) -> Result<PathBuf, FaceError> {
        let path = self.dir.join(file);
        let bytes = std::fs::read(&path).map_err(|_| FaceError::ModelMissing { path: path.clone() })?;
        if let Some(expected) = self.pinned_sum(file) {
            let actual = hex(&Sha256::digest(&bytes));
            if actual != expected {
                return Err(FaceError::ModelCorrupt { path, actual, expected });
            }
        }
        Ok(path)
    }

    fn pinned_sum(&self, file: &str) -> Option<String> {
        let sums = std::fs::read_to_string(self.dir.join("SHA256SUMS")).ok()?;
        sums.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once(char::is_whitespace))
            .find(|(_, name)| name.trim() == file)
            .map(|(sum, _)| sum.to_ascii_lowercase())
    }

    pub fn exists(&self, file: &str) -> bool {
        self.dir.join(file).is_file()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
