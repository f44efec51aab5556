//! Pixel-format conversions (BT.601) used by replay sources to produce camera formats, and by
//! V4L2 cameras to turn the formats the preprocessor does not read into NV12.
//!
//! Everything here uses BT.601 limited range (Y in 16..235, chroma in 16..240), which is what
//! webcams deliver and what Y4M `C420mpeg2` streams carry. Arithmetic is integer fixed point,
//! so results are the same on every target; the preprocessor converts with the same
//! [`yuv_q8_to_rgb`] that [`yuv_to_rgb`] uses, so both land on the same values.
//!
//! Every function writes into a caller-supplied slice and never allocates; wrong slice
//! lengths or odd sizes for chroma-subsampled formats are errors, never panics.

use super::PixelFormat;

/// Fractional bits of the RGB -> YCbCr coefficients.
const SHIFT: u32 = 14;
/// One half in fixed point, for rounding.
const HALF: i32 = 1 << (SHIFT - 1);

// RGB -> YCbCr, scaled by 2^14. Each chroma row sums to zero so grey stays exactly at 128.
const Y_R: i32 = 4207;
const Y_G: i32 = 8260;
const Y_B: i32 = 1604;
const U_R: i32 = -2428;
const U_G: i32 = -4768;
const U_B: i32 = 7196;
const V_R: i32 = 7196;
const V_G: i32 = -6026;
const V_B: i32 = -1170;

// YCbCr -> RGB, scaled by 2^13 so that each fits an i16 lane.
const Q13_Y: i16 = 9539;
const Q13_RV: i16 = 13075;
const Q13_GU: i16 = 3209;
const Q13_GV: i16 = 6660;
const Q13_BU: i16 = 16525;

/// Why a conversion could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A chroma-subsampled format needs an even width and height.
    #[error("{format} needs an even width and height, got {width}x{height}")]
    OddSize {
        /// The subsampled format: `"yuyv"`, `"nv12"` or `"i420"`.
        format: &'static str,
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// A buffer does not have the length the size and format call for.
    #[error("{what} buffer for {width}x{height} must be {expected} bytes, got {got}")]
    Len {
        /// Which buffer: `"rgb24"`, `"i420"`, `"yuyv"`, `"nv12"`, `"grey"`.
        what: &'static str,
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The frame is too large to address on this target.
    #[error("a {width}x{height} frame is too large")]
    TooLarge {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
}

/// Converts one limited-range BT.601 YCbCr sample to RGB.
#[inline(always)]
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    yuv_q8_to_rgb((y as u16) << 8, (u as u16) << 8, (v as u16) << 8)
}

/// [`yuv_to_rgb`] for samples with 8 fractional bits, as bilinear interpolation yields them.
///
/// Written in 16-bit lanes (inputs reduced to 6 fractional bits, coefficients with 13, the
/// high half of each product kept), so a loop over many pixels vectorizes to 8 lanes on SSE2
/// and NEON; the result is within half a level of exact.
#[inline(always)]
pub fn yuv_q8_to_rgb(y: u16, u: u16, v: u16) -> [u8; 3] {
    // Ranges: y6 in -1024..15296, u6 and v6 in -8192..8128; every sum below stays in i16.
    let y6 = (y >> 2) as i16 - (16 << 6);
    let u6 = (u >> 2) as i16 - (128 << 6);
    let v6 = (v >> 2) as i16 - (128 << 6);
    // Products of 6- and 13-bit fractions, high half: results carry 3 fractional bits.
    let c = mulhi(y6, Q13_Y) + 4;
    let r = c + mulhi(v6, Q13_RV);
    let g = c - mulhi(u6, Q13_GU) - mulhi(v6, Q13_GV);
    let b = c + mulhi(u6, Q13_BU);
    [
        clamp_u8_i16(r >> 3),
        clamp_u8_i16(g >> 3),
        clamp_u8_i16(b >> 3),
    ]
}

/// The high 16 bits of a 16 x 16 bit product (`pmulhw` on x86, `sqdmulh`-class on NEON).
#[inline(always)]
fn mulhi(a: i16, b: i16) -> i16 {
    ((a as i32 * b as i32) >> 16) as i16
}

#[inline(always)]
fn clamp_u8_i16(x: i16) -> u8 {
    x.clamp(0, 255) as u8
}

/// Converts one RGB pixel to limited-range BT.601 YCbCr, returned as `[y, u, v]`.
#[inline(always)]
pub fn rgb_to_yuv(r: u8, g: u8, b: u8) -> [u8; 3] {
    let (r, g, b) = (r as i32, g as i32, b as i32);
    [
        luma(r, g, b),
        chroma(r, g, b, 0, U_R, U_G, U_B),
        chroma(r, g, b, 0, V_R, V_G, V_B),
    ]
}

/// Bytes of an I420 frame (Y plane, then U and V planes at half width and half height).
pub fn i420_len(width: u32, height: u32) -> Option<usize> {
    let (w, h) = (width as usize, height as usize);
    let luma = w.checked_mul(h)?;
    luma.checked_add(2 * ((w / 2) * (h / 2)))
}

/// Converts a packed RGB24 frame into `format`, writing `format.frame_len(width, height)` bytes.
///
/// Subsampled formats take the mean colour of the pixels that share a chroma sample.
pub fn rgb_to(
    format: PixelFormat,
    width: u32,
    height: u32,
    rgb: &[u8],
    out: &mut [u8],
) -> Result<(), ConvertError> {
    check_size(format, width, height)?;
    check_len(
        "rgb24",
        width,
        height,
        frame_len(PixelFormat::Rgb24, width, height)?,
        rgb.len(),
    )?;
    check_len(
        name(format),
        width,
        height,
        frame_len(format, width, height)?,
        out.len(),
    )?;
    let w = width as usize;
    if w == 0 {
        return Ok(());
    }
    match format {
        PixelFormat::Rgb24 => out.copy_from_slice(rgb),
        PixelFormat::Yuyv => {
            for (src, dst) in rgb.chunks_exact(6).zip(out.chunks_exact_mut(4)) {
                let p0 = [src[0] as i32, src[1] as i32, src[2] as i32];
                let p1 = [src[3] as i32, src[4] as i32, src[5] as i32];
                let (r, g, b) = (p0[0] + p1[0], p0[1] + p1[1], p0[2] + p1[2]);
                dst[0] = luma(p0[0], p0[1], p0[2]);
                dst[1] = chroma(r, g, b, 1, U_R, U_G, U_B);
                dst[2] = luma(p1[0], p1[1], p1[2]);
                dst[3] = chroma(r, g, b, 1, V_R, V_G, V_B);
            }
        }
        PixelFormat::Nv12 => {
            let (y_plane, uv_plane) = out.split_at_mut(w * height as usize);
            for (src, dst) in rgb.chunks_exact(3).zip(y_plane.iter_mut()) {
                *dst = luma(src[0] as i32, src[1] as i32, src[2] as i32);
            }
            // Each chroma sample averages a 2x2 block: two pixels from each of two rows.
            let rows = rgb.chunks_exact(6 * w);
            for (pair, uv_row) in rows.zip(uv_plane.chunks_exact_mut(w)) {
                let (top, bottom) = pair.split_at(3 * w);
                let blocks = top.chunks_exact(6).zip(bottom.chunks_exact(6));
                for ((t, b), uv) in blocks.zip(uv_row.chunks_exact_mut(2)) {
                    let sum =
                        |c: usize| t[c] as i32 + t[c + 3] as i32 + b[c] as i32 + b[c + 3] as i32;
                    let (r, g, bl) = (sum(0), sum(1), sum(2));
                    uv[0] = chroma(r, g, bl, 2, U_R, U_G, U_B);
                    uv[1] = chroma(r, g, bl, 2, V_R, V_G, V_B);
                }
            }
        }
    }
    Ok(())
}

/// Converts a planar I420 frame (as Y4M `C420*` streams carry) into `format`.
///
/// Chroma is replicated to the pixels that share it; RGB output converts every pixel with
/// [`yuv_to_rgb`].
pub fn i420_to(
    format: PixelFormat,
    width: u32,
    height: u32,
    i420: &[u8],
    out: &mut [u8],
) -> Result<(), ConvertError> {
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(ConvertError::OddSize {
            format: "i420",
            width,
            height,
        });
    }
    let i420_len = i420_len(width, height).ok_or(ConvertError::TooLarge { width, height })?;
    check_len("i420", width, height, i420_len, i420.len())?;
    check_len(
        name(format),
        width,
        height,
        frame_len(format, width, height)?,
        out.len(),
    )?;
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 {
        return Ok(());
    }
    let cw = w / 2;
    let (y_plane, chroma) = i420.split_at(w * h);
    let (u_plane, v_plane) = chroma.split_at(cw * (h / 2));
    match format {
        PixelFormat::Nv12 => {
            let (y_out, uv_out) = out.split_at_mut(w * h);
            y_out.copy_from_slice(y_plane);
            let chroma = u_plane.iter().zip(v_plane);
            for ((&u, &v), uv) in chroma.zip(uv_out.chunks_exact_mut(2)) {
                uv[0] = u;
                uv[1] = v;
            }
        }
        PixelFormat::Yuyv => {
            let rows = y_plane.chunks_exact(w).zip(out.chunks_exact_mut(2 * w));
            for (row, (y_row, dst)) in rows.enumerate() {
                let c = (row / 2) * cw;
                let (u_row, v_row) = (&u_plane[c..c + cw], &v_plane[c..c + cw]);
                let pairs = y_row.chunks_exact(2).zip(dst.chunks_exact_mut(4));
                for ((ys, px), (&u, &v)) in pairs.zip(u_row.iter().zip(v_row)) {
                    px.copy_from_slice(&[ys[0], u, ys[1], v]);
                }
            }
        }
        PixelFormat::Rgb24 => {
            let rows = y_plane.chunks_exact(w).zip(out.chunks_exact_mut(3 * w));
            for (row, (y_row, dst)) in rows.enumerate() {
                let c = (row / 2) * cw;
                let (u_row, v_row) = (&u_plane[c..c + cw], &v_plane[c..c + cw]);
                let pairs = y_row.chunks_exact(2).zip(dst.chunks_exact_mut(6));
                for ((ys, px), (&u, &v)) in pairs.zip(u_row.iter().zip(v_row)) {
                    px[..3].copy_from_slice(&yuv_to_rgb(ys[0], u, v));
                    px[3..].copy_from_slice(&yuv_to_rgb(ys[1], u, v));
                }
            }
        }
    }
    Ok(())
}

/// Converts an 8-bit greyscale frame (V4L2 `GREY`, luma only) into NV12: the luma plane is
/// copied and every chroma sample is neutral (128), so the picture stays grey.
pub fn grey_to_nv12(
    width: u32,
    height: u32,
    grey: &[u8],
    nv12: &mut [u8],
) -> Result<(), ConvertError> {
    check_size(PixelFormat::Nv12, width, height)?;
    let luma = (width as usize)
        .checked_mul(height as usize)
        .ok_or(ConvertError::TooLarge { width, height })?;
    check_len("grey", width, height, luma, grey.len())?;
    check_len(
        "nv12",
        width,
        height,
        frame_len(PixelFormat::Nv12, width, height)?,
        nv12.len(),
    )?;
    let (y_plane, uv_plane) = nv12.split_at_mut(luma);
    y_plane.copy_from_slice(grey);
    uv_plane.fill(128);
    Ok(())
}

/// Converts a frame in `format` to packed RGB24, replicating chroma to the pixels sharing it.
pub fn to_rgb(
    format: PixelFormat,
    width: u32,
    height: u32,
    src: &[u8],
    rgb: &mut [u8],
) -> Result<(), ConvertError> {
    check_size(format, width, height)?;
    check_len(
        name(format),
        width,
        height,
        frame_len(format, width, height)?,
        src.len(),
    )?;
    check_len(
        "rgb24",
        width,
        height,
        frame_len(PixelFormat::Rgb24, width, height)?,
        rgb.len(),
    )?;
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 {
        return Ok(());
    }
    match format {
        PixelFormat::Rgb24 => rgb.copy_from_slice(src),
        PixelFormat::Yuyv => {
            for (px, dst) in src.chunks_exact(4).zip(rgb.chunks_exact_mut(6)) {
                dst[..3].copy_from_slice(&yuv_to_rgb(px[0], px[1], px[3]));
                dst[3..].copy_from_slice(&yuv_to_rgb(px[2], px[1], px[3]));
            }
        }
        PixelFormat::Nv12 => {
            let (y_plane, uv_plane) = src.split_at(w * h);
            let rows = y_plane.chunks_exact(w).zip(rgb.chunks_exact_mut(3 * w));
            for (row, (y_row, dst)) in rows.enumerate() {
                let uv_row = &uv_plane[(row / 2) * w..(row / 2 + 1) * w];
                let pairs = y_row.chunks_exact(2).zip(dst.chunks_exact_mut(6));
                for ((ys, px), uv) in pairs.zip(uv_row.chunks_exact(2)) {
                    px[..3].copy_from_slice(&yuv_to_rgb(ys[0], uv[0], uv[1]));
                    px[3..].copy_from_slice(&yuv_to_rgb(ys[1], uv[0], uv[1]));
                }
            }
        }
    }
    Ok(())
}

#[inline(always)]
fn clamp_u8(x: i32) -> u8 {
    x.clamp(0, 255) as u8
}

#[inline(always)]
fn luma(r: i32, g: i32, b: i32) -> u8 {
    clamp_u8((Y_R * r + Y_G * g + Y_B * b + (16 << SHIFT) + HALF) >> SHIFT)
}

/// Chroma of the sum of `1 << log2_n` pixels, i.e. of their mean colour.
#[inline(always)]
fn chroma(r: i32, g: i32, b: i32, log2_n: u32, kr: i32, kg: i32, kb: i32) -> u8 {
    let shift = SHIFT + log2_n;
    clamp_u8((kr * r + kg * g + kb * b + (128 << shift) + (1 << (shift - 1))) >> shift)
}

fn check_size(format: PixelFormat, width: u32, height: u32) -> Result<(), ConvertError> {
    if format.needs_even_size() && (!width.is_multiple_of(2) || !height.is_multiple_of(2)) {
        return Err(ConvertError::OddSize {
            format: name(format),
            width,
            height,
        });
    }
    Ok(())
}

/// `format.frame_len` with overflow checked, since 32-bit targets can overflow it.
fn frame_len(format: PixelFormat, width: u32, height: u32) -> Result<usize, ConvertError> {
    let (w, h) = (width as usize, height as usize);
    let px = w.checked_mul(h);
    let len = match format {
        PixelFormat::Rgb24 => px.and_then(|n| n.checked_mul(3)),
        PixelFormat::Yuyv => px.and_then(|n| n.checked_mul(2)),
        PixelFormat::Nv12 => px.and_then(|n| n.checked_add(n / 2)),
    };
    len.ok_or(ConvertError::TooLarge { width, height })
}

fn check_len(
    what: &'static str,
    width: u32,
    height: u32,
    expected: usize,
    got: usize,
) -> Result<(), ConvertError> {
    if expected != got {
        return Err(ConvertError::Len {
            what,
            width,
            height,
            expected,
            got,
        });
    }
    Ok(())
}

fn name(format: PixelFormat) -> &'static str {
    match format {
        PixelFormat::Rgb24 => "rgb24",
        PixelFormat::Yuyv => "yuyv",
        PixelFormat::Nv12 => "nv12",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth colour gradient, so subsampled chroma loses little.
    fn gradient(w: u32, h: u32) -> Vec<u8> {
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                rgb.push((x * 255 / (w - 1)) as u8);
                rgb.push((y * 255 / (h - 1)) as u8);
                rgb.push(((x + y) * 255 / (w + h - 2)) as u8);
            }
        }
        rgb
    }

    fn max_diff(a: &[u8], b: &[u8]) -> u8 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| x.abs_diff(y))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn single_pixels_hit_the_bt601_reference_points() {
        assert_eq!(rgb_to_yuv(0, 0, 0), [16, 128, 128]);
        assert_eq!(rgb_to_yuv(255, 255, 255), [235, 128, 128]);
        assert_eq!(rgb_to_yuv(255, 0, 0), [81, 90, 240]);
        assert_eq!(rgb_to_yuv(0, 255, 0), [145, 54, 34]);
        assert_eq!(rgb_to_yuv(0, 0, 255), [41, 240, 110]);
        assert_eq!(yuv_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(235, 128, 128), [255, 255, 255]);
        // Out-of-gamut YCbCr clamps instead of wrapping.
        assert_eq!(yuv_to_rgb(255, 255, 255)[0], 255);
        assert_eq!(yuv_to_rgb(0, 0, 0)[0], 0);
    }

    #[test]
    fn fixed_point_yuv_to_rgb_is_within_one_level_of_exact() {
        let exact = |y: f64, u: f64, v: f64| {
            let (c, d, e) = (1.164383 * (y - 16.0), u - 128.0, v - 128.0);
            let rgb = [
                c + 1.596027 * e,
                c - 0.391762 * d - 0.812968 * e,
                c + 2.017232 * d,
            ];
            rgb.map(|x| x.round().clamp(0.0, 255.0))
        };
        for y in (0..=255).step_by(3) {
            for u in (0..=255).step_by(3) {
                for v in (0..=255).step_by(3) {
                    let got = yuv_to_rgb(y, u, v);
                    let want = exact(y as f64, u as f64, v as f64);
                    for (g, w) in got.iter().zip(want) {
                        assert!(
                            (*g as f64 - w).abs() <= 1.0,
                            "{y},{u},{v}: {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
        // Interpolated samples: half-way between two levels converts half-way too.
        let [r0, ..] = yuv_q8_to_rgb(100 << 8, 128 << 8, 200 << 8);
        let [r1, ..] = yuv_q8_to_rgb(101 << 8, 128 << 8, 200 << 8);
        let [mid, ..] = yuv_q8_to_rgb((100 << 8) + 128, 128 << 8, 200 << 8);
        assert!(r0 <= mid && mid <= r1);
    }

    #[test]
    fn every_colour_survives_a_pixel_round_trip() {
        for r in (0..=255).step_by(5) {
            for g in (0..=255).step_by(5) {
                for b in (0..=255).step_by(5) {
                    let [y, u, v] = rgb_to_yuv(r, g, b);
                    let back = yuv_to_rgb(y, u, v);
                    assert!(max_diff(&back, &[r, g, b]) <= 2, "{r},{g},{b} -> {back:?}");
                }
            }
        }
    }

    #[test]
    fn gradient_round_trips_through_yuyv_and_nv12() {
        let (w, h) = (64, 48);
        let rgb = gradient(w, h);
        let mut back = vec![0; rgb.len()];
        for format in [PixelFormat::Rgb24, PixelFormat::Yuyv, PixelFormat::Nv12] {
            let mut frame = vec![0; format.frame_len(w, h)];
            rgb_to(format, w, h, &rgb, &mut frame).unwrap();
            to_rgb(format, w, h, &frame, &mut back).unwrap();
            let tolerance = if format == PixelFormat::Rgb24 { 0 } else { 8 };
            let diff = max_diff(&rgb, &back);
            assert!(diff <= tolerance, "{format}: off by {diff}");
        }
    }

    #[test]
    fn i420_lands_on_the_same_pixels_in_every_format() {
        let (w, h) = (8u32, 4u32);
        let n = (w * h) as usize;
        let mut i420 = vec![0u8; i420_len(w, h).unwrap()];
        for (i, p) in i420.iter_mut().enumerate() {
            *p = if i < n {
                16 + (i * 7 % 220) as u8
            } else {
                60 + (i * 13 % 140) as u8
            };
        }
        let mut direct = vec![0; PixelFormat::Rgb24.frame_len(w, h)];
        i420_to(PixelFormat::Rgb24, w, h, &i420, &mut direct).unwrap();
        let mut via = vec![0; direct.len()];
        for format in [PixelFormat::Yuyv, PixelFormat::Nv12] {
            let mut frame = vec![0; format.frame_len(w, h)];
            i420_to(format, w, h, &i420, &mut frame).unwrap();
            assert_eq!(frame[0], i420[0]);
            to_rgb(format, w, h, &frame, &mut via).unwrap();
            assert_eq!(via, direct, "{format}");
        }
        // Pixel (3, 2) reads luma 2*8+3 and the chroma sample at (1, 1).
        let c = n + 4 + 1;
        let want = yuv_to_rgb(i420[19], i420[c], i420[c + n / 4]);
        assert_eq!(&direct[19 * 3..20 * 3], &want);
    }

    #[test]
    fn grey_becomes_nv12_with_neutral_chroma() {
        let (w, h) = (4u32, 2u32);
        let grey: Vec<u8> = (0..8).map(|i| 16 + i * 20).collect();
        let mut nv12 = vec![0; PixelFormat::Nv12.frame_len(w, h)];
        grey_to_nv12(w, h, &grey, &mut nv12).unwrap();
        assert_eq!(&nv12[..8], &grey[..]);
        assert_eq!(&nv12[8..], &[128; 4]);
        // Neutral chroma converts back to equal R, G and B.
        let mut rgb = vec![0; PixelFormat::Rgb24.frame_len(w, h)];
        to_rgb(PixelFormat::Nv12, w, h, &nv12, &mut rgb).unwrap();
        for px in rgb.chunks_exact(3) {
            assert!(px[0] == px[1] && px[1] == px[2], "{px:?}");
        }
        assert_eq!(&rgb[..3], &[0, 0, 0]);
    }

    #[test]
    fn grey_with_bad_sizes_is_an_error() {
        let mut nv12 = vec![0; 12];
        let err = grey_to_nv12(4, 2, &[0; 7], &mut nv12).unwrap_err();
        assert!(matches!(
            err,
            ConvertError::Len {
                what: "grey",
                expected: 8,
                got: 7,
                ..
            }
        ));
        let err = grey_to_nv12(4, 2, &[0; 8], &mut nv12[..11]).unwrap_err();
        assert!(matches!(err, ConvertError::Len { what: "nv12", .. }));
        let err = grey_to_nv12(3, 2, &[0; 6], &mut nv12).unwrap_err();
        assert!(matches!(err, ConvertError::OddSize { .. }));
        assert!(grey_to_nv12(0, 0, &[], &mut []).is_ok());
    }

    #[test]
    fn bad_sizes_and_lengths_are_errors() {
        let rgb = vec![0; 5 * 4 * 3];
        let mut out = vec![0; 64];
        let err = rgb_to(PixelFormat::Yuyv, 5, 4, &rgb, &mut out).unwrap_err();
        assert_eq!(
            err,
            ConvertError::OddSize {
                format: "yuyv",
                width: 5,
                height: 4
            }
        );
        let err = rgb_to(PixelFormat::Rgb24, 4, 4, &rgb, &mut out).unwrap_err();
        assert!(matches!(
            err,
            ConvertError::Len {
                what: "rgb24",
                expected: 48,
                got: 60,
                ..
            }
        ));
        let err = rgb_to(PixelFormat::Nv12, 4, 5, &rgb, &mut out).unwrap_err();
        assert!(matches!(err, ConvertError::OddSize { .. }));
        let err = i420_to(PixelFormat::Rgb24, 3, 2, &rgb, &mut out).unwrap_err();
        assert!(matches!(err, ConvertError::OddSize { format: "i420", .. }));
        let err = i420_to(PixelFormat::Nv12, 4, 4, &rgb[..24], &mut out).unwrap_err();
        assert!(matches!(
            err,
            ConvertError::Len {
                what: "nv12",
                expected: 24,
                got: 64,
                ..
            }
        ));
        let err = to_rgb(PixelFormat::Nv12, 4, 4, &rgb[..23], &mut out).unwrap_err();
        assert!(matches!(err, ConvertError::Len { what: "nv12", .. }));
        let err = rgb_to(PixelFormat::Rgb24, u32::MAX, u32::MAX, &rgb, &mut out).unwrap_err();
        assert!(matches!(
            err,
            ConvertError::TooLarge { .. } | ConvertError::Len { .. }
        ));
        assert!(rgb_to(PixelFormat::Yuyv, 0, 0, &[], &mut []).is_ok());
    }
}
