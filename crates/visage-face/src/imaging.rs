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

/// Planar BGR floats (0..255) for a `width`x`height` model input; pixels beyond the image
/// (padding) stay zero.
pub fn bgr_planes(image: &RgbImage, width: usize, height: usize) -> Vec<f32> {
    let plane = width * height;
    let mut data = vec![0f32; 3 * plane];
    for (x, y, p) in image.enumerate_pixels() {
        let i = y as usize * width + x as usize;
        data[i] = f32::from(p[2]);
        data[plane + i] = f32::from(p[1]);
        data[2 * plane + i] = f32::from(p[0]);
    }
    data
}

/// Rec. 601 luma of an RGB pixel, 0..255.
pub fn luma(p: &image::Rgb<u8>) -> f32 {
    0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
}

/// Resizes a region of `image` to `width`x`height` the way OpenCV's `INTER_LINEAR` does:
/// each output pixel samples the 2x2 neighbourhood around its centre, with no anti-aliasing
/// when shrinking. Models trained on such crops (MiniFASNet) expect exactly this aliasing.
pub fn resize_region_sampled(
    image: &RgbImage,
    (x0, y0, region_w, region_h): (u32, u32, u32, u32),
    width: u32,
    height: u32,
) -> RgbImage {
    let (scale_x, scale_y) = (region_w as f32 / width as f32, region_h as f32 / height as f32);
    let max_x = (x0 + region_w).min(image.width()) as i64 - 1;
    let max_y = (y0 + region_h).min(image.height()) as i64 - 1;
    let clamp_x = |x: i64| x.clamp(x0 as i64, max_x) as u32;
    let clamp_y = |y: i64| y.clamp(y0 as i64, max_y) as u32;
    RgbImage::from_fn(width, height, |dx, dy| {
        let sx = ((dx as f32 + 0.5) * scale_x - 0.5).max(0.0) + x0 as f32;
        let sy = ((dy as f32 + 0.5) * scale_y - 0.5).max(0.0) + y0 as f32;
        let (fx, fy) = (sx.fract(), sy.fract());
        let (ix, iy) = (sx.floor() as i64, sy.floor() as i64);
        let p00 = image.get_pixel(clamp_x(ix), clamp_y(iy));
        let p10 = image.get_pixel(clamp_x(ix + 1), clamp_y(iy));
        let p01 = image.get_pixel(clamp_x(ix), clamp_y(iy + 1));
        let p11 = image.get_pixel(clamp_x(ix + 1), clamp_y(iy + 1));
        image::Rgb(std::array::from_fn(|c| {
            let top = f32::from(p00[c]) * (1.0 - fx) + f32::from(p10[c]) * fx;
            let bottom = f32::from(p01[c]) * (1.0 - fx) + f32::from(p11[c]) * fx;
            (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_resize_of_a_flat_region_keeps_its_colour() {
        let image = RgbImage::from_pixel(300, 200, image::Rgb([10, 200, 30]));
        let out = resize_region_sampled(&image, (50, 20, 200, 160), 80, 80);
        assert_eq!(out.dimensions(), (80, 80));
        assert!(out.pixels().all(|p| *p == image::Rgb([10, 200, 30])));
    }

    #[test]
    fn sampled_resize_reads_only_inside_the_region() {
        // Left half black, right half white; a region inside the white half stays white.
        let image = RgbImage::from_fn(100, 10, |x, _| image::Rgb([if x < 50 { 0 } else { 255 }; 3]));
        let out = resize_region_sampled(&image, (50, 0, 50, 10), 5, 5);
        assert!(out.pixels().all(|p| p[0] == 255));
    }
}
