//! Face alignment: a least-squares similarity transform (rotation, uniform scale,
//! translation) of the five landmarks onto the standard 112x112 ArcFace template.

use image::{Rgb, RgbImage};

use crate::Point;

/// Side of the aligned face crop.
pub const ALIGNED_SIZE: u32 = 112;

/// Landmark positions of the ArcFace template in a 112x112 crop, in detector order.
pub const TEMPLATE: [Point; 5] = [
    Point { x: 38.2946, y: 51.6963 },
    Point { x: 73.5318, y: 51.5014 },
    Point { x: 56.0252, y: 71.7366 },
    Point { x: 41.5493, y: 92.3655 },
    Point { x: 70.7299, y: 92.2041 },
];

/// 2x3 affine matrix `[a, -b, tx; b, a, ty]` mapping source to destination points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    /// Least-squares fit (Umeyama without reflection). Deterministic, and on SFace as
    /// accurate as OpenCV's robust LMEDS fit.
    pub fn fit(src: &[Point; 5], dst: &[Point; 5]) -> Self {
        let n = src.len() as f32;
        let mean = |pts: &[Point; 5]| {
            let (sx, sy) = pts.iter().fold((0.0, 0.0), |(x, y), p| (x + p.x, y + p.y));
            Point::new(sx / n, sy / n)
        };
        let (ms, md) = (mean(src), mean(dst));
        let (mut dot, mut cross, mut norm) = (0.0f32, 0.0f32, 0.0f32);
        for (s, d) in src.iter().zip(dst) {
            let (sx, sy, dx, dy) = (s.x - ms.x, s.y - ms.y, d.x - md.x, d.y - md.y);
            dot += sx * dx + sy * dy;
            cross += sx * dy - sy * dx;
            norm += sx * sx + sy * sy;
        }
        let norm = norm.max(f32::EPSILON);
        let (a, b) = (dot / norm, cross / norm);
        Self { a, b, tx: md.x - (a * ms.x - b * ms.y), ty: md.y - (b * ms.x + a * ms.y) }
    }

    pub fn apply(&self, p: Point) -> Point {
        Point::new(self.a * p.x - self.b * p.y + self.tx, self.b * p.x + self.a * p.y + self.ty)
    }

    pub fn inverse(&self) -> Self {
        let det = (self.a * self.a + self.b * self.b).max(f32::EPSILON);
        let (a, b) = (self.a / det, -self.b / det);
        Self { a, b, tx: -(a * self.tx - b * self.ty), ty: -(b * self.tx + a * self.ty) }
    }
}

/// Warps the face onto the 112x112 template with bilinear sampling; outside the image is black.
pub fn align_face(image: &RgbImage, landmarks: &[Point; 5]) -> RgbImage {
    let to_source = Similarity::fit(landmarks, &TEMPLATE).inverse();
    warp(image, &to_source, ALIGNED_SIZE, ALIGNED_SIZE)
}

/// Samples `image` at `to_source(x, y)` for every destination pixel.
pub fn warp(image: &RgbImage, to_source: &Similarity, width: u32, height: u32) -> RgbImage {
    let mut out = RgbImage::new(width, height);
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let p = to_source.apply(Point::new(x as f32, y as f32));
        *pixel = sample_bilinear(image, p.x, p.y);
    }
    out
}

fn sample_bilinear(image: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = (image.width() as i64, image.height() as i64);
    // Fractions on a 1/32 pixel grid, as OpenCV's warpAffine does, so that aligned crops
    // match the reference pipelines the recognizers were validated with.
    let (x, y) = ((x * 32.0).round() / 32.0, (y * 32.0).round() / 32.0);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let at = |xi: i64, yi: i64| -> [f32; 3] {
        if xi < 0 || yi < 0 || xi >= w || yi >= h {
            [0.0; 3]
        } else {
            let p = image.get_pixel(xi as u32, yi as u32);
            [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]
        }
    };
    let (p00, p10, p01, p11) = (at(x0, y0), at(x0 + 1, y0), at(x0, y0 + 1), at(x0 + 1, y0 + 1));
    Rgb(std::array::from_fn(|c| {
        let top = p00[c] + (p10[c] - p00[c]) * fx;
        let bottom = p01[c] + (p11[c] - p01[c]) * fx;
        (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_known_similarity() {
        let truth = Similarity { a: 0.8, b: 0.3, tx: 5.0, ty: -7.0 };
        let src = [(10.0, 20.0), (60.0, 22.0), (35.0, 45.0), (15.0, 70.0), (55.0, 71.0)]
            .map(|(x, y)| Point::new(x, y));
        let dst = src.map(|p| truth.apply(p));
        let fit = Similarity::fit(&src, &dst);
        for (got, want) in [(fit.a, 0.8), (fit.b, 0.3), (fit.tx, 5.0), (fit.ty, -7.0)] {
            assert!((got - want).abs() < 1e-3, "{fit:?}");
        }
    }

    #[test]
    fn inverse_undoes_the_transform() {
        let t = Similarity { a: 1.2, b: -0.4, tx: 3.0, ty: 9.0 };
        let p = Point::new(17.0, -4.0);
        let back = t.inverse().apply(t.apply(p));
        assert!(back.distance(p) < 1e-3);
    }

    #[test]
    fn landmarks_already_on_the_template_give_an_identity_crop() {
        let image = RgbImage::from_fn(112, 112, |x, y| Rgb([x as u8, y as u8, 7]));
        let aligned = align_face(&image, &TEMPLATE);
        assert_eq!(aligned.get_pixel(40, 60), &Rgb([40, 60, 7]));
    }
}
