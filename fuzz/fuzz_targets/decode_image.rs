//! Image decoding with its limits: any bytes are refused with an error or decoded within the
//! limits, never a panic, an overflow or an allocation beyond them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use visage_face::DecodeLimits;

/// Small limits, so that an input claiming a huge image is refused from its header and the
/// fuzzer spends its time in the decoders, not in allocating pixels.
const LIMITS: DecodeLimits = DecodeLimits { max_bytes: 1 << 20, max_pixels: 1 << 20 };

fuzz_target!(|bytes: &[u8]| {
    if let Ok(image) = visage_face::decode_image(bytes, &LIMITS) {
        let pixels = u64::from(image.width()) * u64::from(image.height());
        assert!(pixels <= LIMITS.max_pixels, "decoded {pixels} pixels past the limit");
    }
});
