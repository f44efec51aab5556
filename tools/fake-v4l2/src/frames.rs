//! Frame content: the pixel formats the fake offers, loading source frames (an image folder or
//! an MJPEG stream) and rendering them, once per negotiated format, into the bytes a driver
//! would hand out. Everything here allocates and runs at STREAMON, never per frame.
//!
//! Colour: YUYV, NV12, YU12 and GREY are BT.601 limited range (Y 16..235, Cb/Cr 16..240),
//! reported as colorspace SRGB with quantization LIM_RANGE; RGB3 is full-range RGB; MJPG is
//! baseline JFIF (full-range BT.601 inside the JPEG), reported as colorspace JPEG.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{ImageFormat, RgbImage};
use v4l::v4l_sys;

// The splitter edgewatch's MJPEG-file replay uses: one copy of the code, compiled into both.
#[path = "../../../src/capture/jpeg_split.rs"]
mod jpeg_split;
use jpeg_split::next_jpeg;

/// `v4l2_fourcc(a, b, c, d)`.
const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

/// Frames in the generated test pattern (a bar that crosses the picture once per cycle).
const PATTERN_FRAMES: u32 = 16;
/// Smallest MJPG sizeimage.
const MJPG_MIN_SIZE: u32 = 32 * 1024;
/// JPEG quality of MJPG frames.
const JPEG_QUALITY: u8 = 80;

/// A pixel format the fake can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PixelFormat {
    /// `YUYV`: packed 4:2:2.
    Yuyv,
    /// `MJPG`: one JPEG per frame.
    Mjpg,
    /// `NV12`: Y plane, then interleaved CbCr at quarter resolution.
    Nv12,
    /// `YU12` (V4L2_PIX_FMT_YUV420): Y, Cb and Cr planes, chroma at quarter resolution.
    Yu12,
    /// `RGB3` (V4L2_PIX_FMT_RGB24): packed R, G, B.
    Rgb3,
    /// `GREY`: Y only.
    Grey,
}

impl PixelFormat {
    /// Every format, in the default enumeration order.
    pub(crate) const ALL: [PixelFormat; 6] = [
        PixelFormat::Yuyv,
        PixelFormat::Mjpg,
        PixelFormat::Nv12,
        PixelFormat::Yu12,
        PixelFormat::Rgb3,
        PixelFormat::Grey,
    ];

    /// The V4L2 fourcc.
    pub(crate) const fn fourcc(self) -> u32 {
        match self {
            PixelFormat::Yuyv => fourcc(b"YUYV"),
            PixelFormat::Mjpg => fourcc(b"MJPG"),
            PixelFormat::Nv12 => fourcc(b"NV12"),
            PixelFormat::Yu12 => fourcc(b"YU12"),
            PixelFormat::Rgb3 => fourcc(b"RGB3"),
            PixelFormat::Grey => fourcc(b"GREY"),
        }
    }

    /// The format with this fourcc, if the fake offers it.
    pub(crate) fn from_fourcc(code: u32) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.fourcc() == code)
    }

    /// The description VIDIOC_ENUM_FMT reports (the kernel's wording).
    pub(crate) const fn description(self) -> &'static [u8] {
        match self {
            PixelFormat::Yuyv => b"YUYV 4:2:2",
            PixelFormat::Mjpg => b"Motion-JPEG",
            PixelFormat::Nv12 => b"Y/CbCr 4:2:0",
            PixelFormat::Yu12 => b"Planar YUV 4:2:0",
            PixelFormat::Rgb3 => b"24-bit RGB 8-8-8",
            PixelFormat::Grey => b"8-bit Greyscale",
        }
    }

    /// Whether VIDIOC_ENUM_FMT flags it V4L2_FMT_FLAG_COMPRESSED.
    pub(crate) const fn compressed(self) -> bool {
        matches!(self, PixelFormat::Mjpg)
    }

    /// `(bytesperline, sizeimage)` at `width` x `height` (even sizes). For MJPG, sizeimage is
    /// the largest frame the fake will ever hand out (w*h*2, at least [`MJPG_MIN_SIZE`] so tiny
    /// frames still fit their JPEG headers) and bytesperline is 0, as drivers report.
    pub(crate) const fn layout(self, width: u32, height: u32) -> (u32, u32) {
        let pixels = width * height;
        match self {
            PixelFormat::Yuyv => (width * 2, pixels * 2),
            PixelFormat::Mjpg if pixels * 2 < MJPG_MIN_SIZE => (0, MJPG_MIN_SIZE),
            PixelFormat::Mjpg => (0, pixels * 2),
            PixelFormat::Nv12 | PixelFormat::Yu12 => (width, pixels * 3 / 2),
            PixelFormat::Rgb3 => (width * 3, pixels * 3),
            PixelFormat::Grey => (width, pixels),
        }
    }

    /// `(colorspace, quantization)` as reported in v4l2_pix_format (see the module docs).
    pub(crate) const fn colour(self) -> (u32, u32) {
        match self {
            PixelFormat::Mjpg => (
                v4l_sys::v4l2_colorspace_V4L2_COLORSPACE_JPEG,
                v4l_sys::v4l2_quantization_V4L2_QUANTIZATION_FULL_RANGE,
            ),
            PixelFormat::Rgb3 => (
                v4l_sys::v4l2_colorspace_V4L2_COLORSPACE_SRGB,
                v4l_sys::v4l2_quantization_V4L2_QUANTIZATION_FULL_RANGE,
            ),
            _ => (
                v4l_sys::v4l2_colorspace_V4L2_COLORSPACE_SRGB,
                v4l_sys::v4l2_quantization_V4L2_QUANTIZATION_LIM_RANGE,
            ),
        }
    }
}

/// Frames rendered for one format and size, ready to be copied into buffers.
#[derive(Debug, Default)]
pub(crate) struct Rendered {
    /// `(format, width, height)` the frames were rendered for.
    pub(crate) key: Option<(PixelFormat, u32, u32)>,
    /// The frames, each at most sizeimage bytes (MJPG frames vary in length).
    pub(crate) frames: Vec<Vec<u8>>,
}

/// Renders the source (`FAKE_V4L2_FRAMES`, or the test pattern when `None`) for one format.
pub(crate) fn render(
    source: Option<&Path>,
    max_frames: usize,
    format: PixelFormat,
    width: u32,
    height: u32,
) -> Result<Rendered, String> {
    let (_, sizeimage) = format.layout(width, height);
    let mut frames = Vec::new();
    match source {
        Some(path) => {
            for image in load_sources(path, max_frames)?.iter() {
                let resized;
                let image = if image.dimensions() == (width, height) {
                    image
                } else {
                    resized = image::imageops::resize(image, width, height, FilterType::Triangle);
                    &resized
                };
                frames.push(encode(image, format, sizeimage as usize)?);
            }
        }
        None => {
            for index in 0..PATTERN_FRAMES {
                frames.push(encode(
                    &pattern(index, width, height),
                    format,
                    sizeimage as usize,
                )?);
            }
        }
    }
    Ok(Rendered {
        key: Some((format, width, height)),
        frames,
    })
}

/// Frame `index` of the test pattern: a colour gradient with a white bar moving to the right.
fn pattern(index: u32, width: u32, height: u32) -> RgbImage {
    let bar = (width / PATTERN_FRAMES).max(1);
    let bar_x = index * width / PATTERN_FRAMES;
    RgbImage::from_fn(width, height, |x, y| {
        if (bar_x..bar_x + bar).contains(&x) {
            image::Rgb([255, 255, 255])
        } else {
            image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 96])
        }
    })
}

/// The bytes of one frame of `image` (already at the negotiated size) in `format`.
fn encode(image: &RgbImage, format: PixelFormat, sizeimage: usize) -> Result<Vec<u8>, String> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let rgb = image.as_raw();
    let yuv = |i: usize| {
        let p = &rgb[i * 3..i * 3 + 3];
        bt601(p[0], p[1], p[2])
    };
    let mut out = Vec::with_capacity(sizeimage);
    match format {
        PixelFormat::Rgb3 => out.extend_from_slice(rgb),
        PixelFormat::Grey => out.extend((0..w * h).map(|i| yuv(i)[0])),
        PixelFormat::Yuyv => {
            for pair in (0..w * h).step_by(2) {
                let (a, b) = (yuv(pair), yuv(pair + 1));
                out.extend_from_slice(&[a[0], avg2(a[1], b[1]), b[0], avg2(a[2], b[2])]);
            }
        }
        PixelFormat::Nv12 | PixelFormat::Yu12 => {
            out.extend((0..w * h).map(|i| yuv(i)[0]));
            // Chroma of each 2x2 block, averaged.
            let block = |bx: usize, by: usize, c: usize| {
                let i = by * 2 * w + bx * 2;
                let sum: u32 = [i, i + 1, i + w, i + w + 1]
                    .iter()
                    .map(|&j| u32::from(yuv(j)[c]))
                    .sum();
                ((sum + 2) / 4) as u8
            };
            let blocks = || (0..h / 2).flat_map(|by| (0..w / 2).map(move |bx| (bx, by)));
            if format == PixelFormat::Nv12 {
                for (bx, by) in blocks() {
                    out.extend_from_slice(&[block(bx, by, 1), block(bx, by, 2)]);
                }
            } else {
                out.extend(blocks().map(|(bx, by)| block(bx, by, 1)));
                out.extend(blocks().map(|(bx, by)| block(bx, by, 2)));
            }
        }
        PixelFormat::Mjpg => return jpeg(image, sizeimage),
    }
    Ok(out)
}

/// A JPEG of `image` no larger than `limit` (the quality drops until it fits).
fn jpeg(image: &RgbImage, limit: usize) -> Result<Vec<u8>, String> {
    for quality in [JPEG_QUALITY, 50, 25, 10] {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(image)
            .map_err(|e| format!("JPEG encoding failed: {e}"))?;
        if out.len() <= limit {
            return Ok(out);
        }
    }
    Err(format!(
        "a {}x{} JPEG does not fit in sizeimage {limit}",
        image.width(),
        image.height()
    ))
}

/// Mean of two samples, rounded.
fn avg2(a: u8, b: u8) -> u8 {
    ((u16::from(a) + u16::from(b)).div_ceil(2)) as u8
}

/// RGB to limited-range BT.601 `[Y, Cb, Cr]` (the usual 8-bit integer approximation).
fn bt601(r: u8, g: u8, b: u8) -> [u8; 3] {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    let y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16;
    let cb = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128;
    let cr = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128;
    [
        y.clamp(16, 235) as u8,
        cb.clamp(16, 240) as u8,
        cr.clamp(16, 240) as u8,
    ]
}

/// The last source loaded, kept so that reopening the same device does not decode it again.
struct SourceCache {
    path: PathBuf,
    max_frames: usize,
    images: Arc<Vec<RgbImage>>,
}

static SOURCE_CACHE: Mutex<Option<SourceCache>> = Mutex::new(None);

/// The source frames at `path` as RGB images (at most `max_frames`), from the cache if the last
/// load was the same.
fn load_sources(path: &Path, max_frames: usize) -> Result<Arc<Vec<RgbImage>>, String> {
    let mut cache = SOURCE_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(hit) = cache
        .as_ref()
        .filter(|c| c.path == path && c.max_frames == max_frames)
    {
        return Ok(hit.images.clone());
    }
    let images = if path.is_dir() {
        load_folder(path, max_frames)?
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mjpeg") || e.eq_ignore_ascii_case("mjpg"))
    {
        load_mjpeg(path, max_frames)?
    } else {
        vec![image::open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .to_rgb8()]
    };
    if images.is_empty() {
        return Err(format!("{}: no frames found", path.display()));
    }
    let images = Arc::new(images);
    *cache = Some(SourceCache {
        path: path.to_path_buf(),
        max_frames,
        images: images.clone(),
    });
    Ok(images)
}

/// Images in a folder (bmp, png, jpg/jpeg, pnm/ppm/pgm), sorted by file name.
fn load_folder(dir: &Path, max_frames: usize) -> Result<Vec<RgbImage>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase())
                .is_some_and(|e| {
                    ["bmp", "png", "jpg", "jpeg", "pnm", "ppm", "pgm"].contains(&e.as_str())
                })
        })
        .collect();
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    paths
        .iter()
        .take(max_frames)
        .map(|p| {
            image::open(p)
                .map(|i| i.to_rgb8())
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// The first `max_frames` JPEGs of a concatenated MJPEG stream, reading only as far as needed.
fn load_mjpeg(path: &Path, max_frames: usize) -> Result<Vec<RgbImage>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut file = fs::File::open(path).map_err(|e| fail(&e))?;
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut images = Vec::new();
    let mut eof = false;
    while images.len() < max_frames && !eof {
        let n = file.read(&mut chunk).map_err(|e| fail(&e))?;
        eof = n == 0;
        data.extend_from_slice(&chunk[..n]);
        let mut consumed = 0;
        while images.len() < max_frames {
            let Some((start, end)) = next_jpeg(&data, consumed) else {
                break;
            };
            let image = image::load_from_memory_with_format(&data[start..end], ImageFormat::Jpeg)
                .map_err(|e| fail(&format_args!("frame {}: {e}", images.len())))?;
            images.push(image.to_rgb8());
            consumed = end;
        }
        data.drain(..consumed);
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    #[test]
    fn layouts_match_the_v4l2_definitions() {
        assert_eq!(super::PixelFormat::Yuyv.layout(640, 480), (1280, 614_400));
        assert_eq!(super::PixelFormat::Nv12.layout(640, 480), (640, 460_800));
        assert_eq!(super::PixelFormat::Rgb3.layout(4, 2), (12, 24));
        assert_eq!(super::fourcc(b"MJPG"), 0x4750_4A4D);
    }

    #[test]
    fn encodings_have_sizeimage_bytes() {
        let image = super::pattern(3, 8, 6);
        for format in super::PixelFormat::ALL {
            let (_, size) = format.layout(8, 6);
            let bytes = super::encode(&image, format, size as usize).unwrap();
            if format == super::PixelFormat::Mjpg {
                assert_eq!(bytes[..2], [0xFF, 0xD8]);
            } else {
                assert_eq!(bytes.len(), size as usize, "{format:?}");
            }
        }
        assert_eq!(super::bt601(255, 255, 255), [235, 128, 128]);
        assert_eq!(super::bt601(0, 0, 0), [16, 128, 128]);
    }
}
