//! Image decoding with limits checked before any pixel is decoded.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::FaceError;

/// Limits applied before decoding, so that a small file claiming huge dimensions (a
/// decompression bomb) is refused from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecodeLimits {
    /// Largest accepted encoded size in bytes.
    pub max_bytes: usize,
    /// Largest accepted width × height.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_bytes: 15 * 1024 * 1024, max_pixels: 40_000_000 }
    }
}

/// Decodes a JPEG, PNG or WebP image to RGB, applying its EXIF orientation.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, FaceError> {
    if bytes.is_empty() {
        return Err(FaceError::EmptyImage);
    }
    if bytes.len() > limits.max_bytes {
        return Err(FaceError::ImageTooManyBytes { bytes: bytes.len(), limit: limits.max_bytes });
    }
    let format = image::guess_format(bytes).map_err(|_| FaceError::UnsupportedFormat)?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP) {
        return Err(FaceError::UnsupportedFormat);
    }
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(FaceError::Decode("the JPEG data is truncated (no end-of-image marker)".into()));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = Limits::default();
    // RGBA at the pixel limit plus headroom for the decoder's own buffers.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(FaceError::Decode("the image has no pixels".into()));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(FaceError::ImageTooLarge { width, height, limit: limits.max_pixels });
    }
    // A broken EXIF block should not reject an otherwise good photo: decode it unrotated.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

/// The JPEG decoder fills a truncated scan with grey instead of failing, which would let a
/// half-uploaded photo through. Entropy-coded data escapes 0xFF, so an end-of-image marker
/// (FF D9) after the last start-of-scan (FF DA) means the last scan ended; EXIF thumbnails
/// carry their own EOI, but before the main scan.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_scan {
        Some(start) => bytes[start..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

fn decode_error(err: image::ImageError) -> FaceError {
    match err {
        image::ImageError::Limits(_) => FaceError::DecoderMemoryLimit,
        image::ImageError::Unsupported(_) => FaceError::UnsupportedFormat,
        other => FaceError::Decode(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RgbImage::new(width, height)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .expect("encode png");
        out
    }

    #[test]
    fn empty_input_is_refused() {
        assert!(matches!(decode_image(&[], &DecodeLimits::default()), Err(FaceError::EmptyImage)));
    }

    #[test]
    fn text_is_not_an_image() {
        let err = decode_image(b"hello, this is not an image", &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, FaceError::UnsupportedFormat), "{err:?}");
    }

    #[test]
    fn gif_is_an_unsupported_format() {
        let err = decode_image(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, FaceError::UnsupportedFormat), "{err:?}");
    }

    #[test]
    fn pixel_limit_is_checked_from_the_header() {
        let limits = DecodeLimits { max_pixels: 100 * 100, ..DecodeLimits::default() };
        let err = decode_image(&png(101, 100), &limits).unwrap_err();
        assert!(matches!(err, FaceError::ImageTooLarge { width: 101, height: 100, .. }), "{err:?}");
        assert!(decode_image(&png(100, 100), &limits).is_ok());
    }

    #[test]
    fn byte_limit_is_checked_first() {
        let limits = DecodeLimits { max_bytes: 10, ..DecodeLimits::default() };
        let err = decode_image(&png(4, 4), &limits).unwrap_err();
        assert!(matches!(err, FaceError::ImageTooManyBytes { limit: 10, .. }), "{err:?}");
    }
}
