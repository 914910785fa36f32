//! Small pixel helpers shared by the pipeline stages.

use fast_image_resize::images::ImageRef;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

/// Resizes an RGB image with a bilinear filter (SIMD, via fast_image_resize).
pub fn resize_rgb(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    if (w, h) == (width, height) {
        return image.clone();
    }
    let src =
        ImageRef::new(w, h, image.as_raw(), PixelType::U8x3).expect("RgbImage buffer matches its dimensions");
    let mut dst = fast_image_resize::images::Image::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new().resize(&src, &mut dst, &options).expect("same pixel type on both sides");
    RgbImage::from_raw(width, height, dst.into_vec()).expect("buffer of the requested size")
}

/// Rec. 601 luma of an RGB pixel, 0..255.
pub fn luma(p: &image::Rgb<u8>) -> f32 {
    0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
}
