//! Where model files live and how they are checked before loading.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

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
    ///
    /// A file this process already checked, unchanged since (same path, size and modification
    /// time) and pinned to the same sum, is not hashed again: OpenVINO's libraries are ~95 MB,
    /// and a process may start several engines.
    pub fn verified(&self, file: &str) -> Result<PathBuf, FaceError> {
        let path = self.dir.join(file);
        let missing = || FaceError::ModelMissing { path: path.clone() };
        let Some(expected) = self.pinned_sum(file) else {
            return if path.is_file() { Ok(path) } else { Err(missing()) };
        };
        let metadata = std::fs::metadata(&path).map_err(|_| missing())?;
        let seen = (path.clone(), metadata.len(), metadata.modified().ok(), expected.clone());
        if checked().lock().is_ok_and(|checked| checked.contains(&seen)) {
            return Ok(path);
        }
        let bytes = std::fs::read(&path).map_err(|_| missing())?;
        let actual = hex(&Sha256::digest(&bytes));
        if actual != expected {
            return Err(FaceError::ModelCorrupt { path, actual, expected });
        }
        if let Ok(mut checked) = checked().lock() {
            checked.insert(seen);
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

/// Files whose sum this process checked: (path, size, modification time, pinned sum).
type Checked = HashSet<(PathBuf, u64, Option<SystemTime>, String)>;

fn checked() -> &'static Mutex<Checked> {
    static CHECKED: OnceLock<Mutex<Checked>> = OnceLock::new();
    CHECKED.get_or_init(Mutex::default)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
