//! The calibration file (`models/calibration.json`): any text is refused or gives thresholds
//! that are similarities and FAR targets that are rates, each findable by its target.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use visage_calibration::Calibration;
use visage_face::{BackendKind, LivenessKind, Numerics, Precision, RecognizerKind};

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let bf16 = Numerics { backend: BackendKind::OpenVino, precision: Precision::Bf16 };
    for (recognizer, numerics, liveness) in [
        (RecognizerKind::Sface, Numerics::REFERENCE, LivenessKind::Minifasnet),
        (RecognizerKind::Mobilefacenet, bf16, LivenessKind::Faceplugin),
    ] {
        let path = Path::new("calibration.json");
        let Ok(calibration) = Calibration::parse(text, path, recognizer, numerics, liveness) else {
            continue;
        };
        assert_ne!(calibration.measured_on.precision, Precision::Auto);
        assert!((0.0..=1.0).contains(&calibration.liveness_threshold));
        for point in &calibration.points {
            assert!(point.far > 0.0 && point.far < 1.0, "FAR target {}", point.far);
            assert!((-1.0..=1.0).contains(&point.threshold), "threshold {}", point.threshold);
            assert!(calibration.point(point.far).is_some(), "target {} not found", point.far);
        }
    }
});
