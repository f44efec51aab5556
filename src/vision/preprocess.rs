//! Frame preprocessing: pixel-format conversion and bilinear resize straight into the model input tensor.
//!
//! The resize either stretches the region of interest over the whole tensor or, for models
//! trained that way (YOLOX), letterboxes it: scaled by one factor to fit, into the top-left
//! corner, the rest padded with level 114. Channels go in RGB or BGR order.
//!
//! Sampling uses half-pixel centres, `src = (dst + 0.5) * src_len / dst_len - 0.5`, clamped to
//! the region, like PIL and OpenCV's `INTER_LINEAR`. Every table and buffer is built by
//! [`Preprocessor::new`]; [`Preprocessor::run`] allocates nothing.
//!
//! The resize is separable and runs one tensor row at a time, in stages that are each a
//! plain loop over the row, so the compiler vectorizes the arithmetic ones (no intrinsics:
//! the same code serves x86 and the Pi's NEON):
//!
//! 1. blend the two source rows the tensor row falls between, over the region of interest,
//!    in the frame's own layout (contiguous bytes, 16-bit lanes);
//! 2. gather each tensor column's small window of that row (one load, two stores);
//! 3. split the windows into planes of 16-bit words;
//! 4. blend horizontally and, for YUV frames, convert to RGB, in 16-bit lanes, into RGB planes;
//! 5. interleave into the tensor, through a 256-entry table holding the tensor's
//!    normalization and quantization, so they cost the same whatever they are.
//!
//! YUV frames are interpolated in YUV and converted once per tensor pixel. Chroma is weighted
//! as if it were replicated to the pixels sharing it, which equals "convert to RGB, then
//! resize" up to rounding, except where strongly saturated colours leave the RGB gamut.

use crate::capture::convert::yuv_q8_to_rgb;
use crate::capture::{FrameFormat, PixelFormat};
use crate::geometry::Roi;

/// Fractional bits of the interpolation weights.
const WEIGHT_BITS: u32 = 8;
/// The weight of a sample that takes all of the blend.
const ONE: u16 = 1 << WEIGHT_BITS;
/// Unwritten elements after each span of the row buffer, so a tap's fixed-size window may
/// run past the region's last pixel (its weight there is zero).
const PAD: usize = 8;

/// The element type of the model's input tensor and how its values are encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputKind {
    /// 8-bit tensor, with its quantization `(scale, zero_point)` if the model declares one.
    U8 {
        /// Real value = `scale * (q - zero_point)`.
        quant: Option<(f32, i32)>,
    },
    /// 32-bit float tensor.
    F32,
    /// Signed 8-bit tensor; real value = `scale * (q - zero_point)`. Without mean/std the real
    /// value is the pixel (0..255), so scale 1 and zero point -128 give `pixel - 128`.
    I8 {
        /// `(scale, zero_point)`; required.
        quant: Option<(f32, i32)>,
    },
}

/// Shape and encoding of the model's input tensor (NHWC, batch 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputSpec {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channels; only 3 (RGB) is supported.
    pub channels: u32,
    /// Element type and quantization.
    pub kind: InputKind,
    /// Normalization: real value = (pixel - mean) / std. Required for float tensors; uint8
    /// tensors get the raw pixel value when it is absent.
    pub mean: Option<f32>,
    /// See `mean`; given together with it.
    pub std: Option<f32>,
    /// Keep the frame's aspect ratio: scale it by one factor to fit, into the top-left
    /// corner, and pad the rest with level 114 (YOLOX's training letterbox). Otherwise the
    /// region is stretched over the whole tensor.
    pub letterbox: bool,
    /// Channels in BGR order (models trained on OpenCV images) instead of RGB.
    pub bgr: bool,
}

/// The model's input tensor, borrowed for one [`Preprocessor::run`].
#[derive(Debug)]
pub enum InputTensor<'a> {
    /// A uint8 tensor.
    U8(&'a mut [u8]),
    /// A float32 tensor.
    F32(&'a mut [f32]),
    /// An int8 tensor.
    I8(&'a mut [i8]),
}

impl<'a> InputTensor<'a> {
    /// A runtime's input buffer seen as a tensor of `kind` (empty if its bytes do not fit the
    /// element type's alignment).
    pub fn from_bytes(kind: InputKind, bytes: &'a mut [u8]) -> InputTensor<'a> {
        match kind {
            InputKind::U8 { .. } => InputTensor::U8(bytes),
            InputKind::F32 => {
                InputTensor::F32(bytemuck::try_cast_slice_mut(bytes).unwrap_or_default())
            }
            InputKind::I8 { .. } => InputTensor::I8(bytemuck::cast_slice_mut(bytes)),
        }
    }

    /// Elements of the tensor.
    pub fn len(&self) -> usize {
        match self {
            InputTensor::U8(t) => t.len(),
            InputTensor::F32(t) => t.len(),
            InputTensor::I8(t) => t.len(),
        }
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn type_name(&self) -> &'static str {
        match self {
            InputTensor::U8(_) => "u8",
            InputTensor::F32(_) => "f32",
            InputTensor::I8(_) => "i8",
        }
    }
}

/// Why a preprocessor could not be built or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    /// The camera frame size is unusable for its format.
    #[error("frame size {width}x{height} is not usable for {format} (needs non-zero, even for subsampled formats)")]
    FrameSize {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Pixel format.
        format: PixelFormat,
    },
    /// The model input is not a non-empty RGB image.
    #[error("model input {width}x{height}x{channels} is not supported (needs a non-empty 3-channel RGB image)")]
    InputShape {
        /// Tensor width.
        width: u32,
        /// Tensor height.
        height: u32,
        /// Tensor channels.
        channels: u32,
    },
    /// The region of interest is not inside the frame or covers no pixel.
    #[error("roi {roi:?} must lie inside the frame (0..1) and cover at least one pixel")]
    Roi {
        /// The region.
        roi: Roi,
    },
    /// The normalization cannot be applied to this tensor.
    #[error("input normalization: {0}")]
    Normalization(&'static str),
    /// A frame does not have the length the camera format calls for.
    #[error("frame is {got} bytes, {expected} expected")]
    FrameLen {
        /// Bytes the format needs.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The tensor does not have the number of elements the input spec calls for.
    #[error("input tensor has {got} elements, {expected} expected")]
    TensorLen {
        /// Elements the spec needs.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// A sampling table points outside the frame or a buffer: a bug, reported instead of
    /// panicking.
    #[error("internal error: a sampling table points outside its buffer")]
    Internal,
    /// The tensor's element type is not the one the spec names.
    #[error("input tensor is {got}, the model input is {expected}")]
    TensorKind {
        /// Element type of the spec.
        expected: &'static str,
        /// Element type given.
        got: &'static str,
    },
}

/// Per tensor row: where its two source rows start, and the weight of the second one.
#[derive(Debug, Clone, Copy)]
struct RowTap {
    /// First byte of the region in the upper source row.
    top: usize,
    /// First byte of the region in the lower source row.
    bottom: usize,
    /// NV12 only: first byte of the region in the chroma rows of `top` and `bottom`.
    chroma_top: usize,
    chroma_bottom: usize,
    /// Weight of `bottom`, 0..=256.
    weight: u16,
}

/// How a 0..255 channel value becomes a tensor value.
#[derive(Debug)]
enum ValueMap {
    /// Raw pixel value into a uint8 tensor.
    Identity,
    /// Normalized and quantized into a uint8 tensor.
    U8(Box<[u8; 256]>),
    /// Normalized into a float tensor.
    F32(Box<[f32; 256]>),
    /// Normalized and quantized into an int8 tensor.
    I8(Box<[i8; 256]>),
}

impl ValueMap {
    fn type_name(&self) -> &'static str {
        match self {
            ValueMap::Identity | ValueMap::U8(_) => "u8",
            ValueMap::F32(_) => "f32",
            ValueMap::I8(_) => "i8",
        }
    }
}

/// The level letterbox padding has (YOLOX's grey), before the tensor's value map.
pub const LETTERBOX_PAD: u8 = 114;

/// The fixed sampling plan: which source bytes each tensor row and column blends.
///
/// A tensor pixel always blends source pixels `x0` and `x0 + 1` (at the region's right edge
/// the weight moves onto `x0 + 1` instead of clamping the index), so one small window of the
/// blended row holds everything it needs: 8 bytes at the start of `x0`'s Y U Y V group
/// (YUYV), 8 bytes at `x0` (RGB24), or 2 luma bytes at `x0` and 4 chroma bytes at its U V
/// pair (NV12).
#[derive(Debug)]
struct Plan {
    format: PixelFormat,
    rows: Vec<RowTap>,
    /// Per tensor column: start of its window in the blended row (luma window for NV12).
    window: Vec<u32>,
    /// NV12: start of each column's chroma window.
    chroma_window: Vec<u32>,
    /// Per-column weights (0..=256) of the window's samples, see [`columns`].
    weights: [Vec<u16>; 4],
    /// Tensor columns per row; `window.len()` of them are the resized region, the rest
    /// letterbox padding.
    out_width: usize,
    /// Write channels in BGR order.
    bgr: bool,
    /// Bytes of each source row the region covers (luma for NV12).
    span: usize,
    /// NV12: bytes of each chroma row the region covers.
    chroma_span: usize,
}

/// Per-row working buffers, sized at start-up.
#[derive(Debug)]
struct Scratch {
    /// One vertically blended row: the span, padding, then (NV12) the chroma span, padding.
    row: Vec<u8>,
    /// Each column's window as two little-endian words, gathered from `row`.
    lo: Vec<u32>,
    hi: Vec<u32>,
    /// The same windows as four planes of 16-bit words, which vectorize where `lo`/`hi`
    /// would not.
    words: [Vec<u16>; 4],
    /// The resampled row in RGB planes.
    rgb: [Vec<u8>; 3],
}

/// Converts and resizes camera frames into a model's input tensor, with every table sized
/// and filled at start-up.
#[derive(Debug)]
pub struct Preprocessor {
    plan: Plan,
    scratch: Scratch,
    map: ValueMap,
    frame_len: usize,
    tensor_len: usize,
    roi: Roi,
    /// The frame region the whole tensor stands for (beyond the frame where padded).
    tensor_region: Roi,
}

impl Preprocessor {
    /// Builds the tables for frames of `frame` format, cropped to `roi`, into `input`.
    pub fn new(frame: FrameFormat, roi: Roi, input: &InputSpec) -> Result<Self, PreprocessError> {
        let (fw, fh) = (frame.width as usize, frame.height as usize);
        let format = frame.pixel_format;
        let frame_len = checked_frame_len(frame).ok_or(PreprocessError::FrameSize {
            width: frame.width,
            height: frame.height,
            format,
        })?;
        let (ow, oh) = (input.width as usize, input.height as usize);
        let tensor_len = ow.checked_mul(oh).and_then(|n| n.checked_mul(3));
        let tensor_len = match tensor_len {
            Some(n) if n > 0 && input.channels == 3 => n,
            _ => {
                return Err(PreprocessError::InputShape {
                    width: input.width,
                    height: input.height,
                    channels: input.channels,
                })
            }
        };
        let (x0, x1) = crop(roi.x, roi.width, fw).ok_or(PreprocessError::Roi { roi })?;
        let (y0, y1) = crop(roi.y, roi.height, fh).ok_or(PreprocessError::Roi { roi })?;
        let map = value_map(input)?;
        // The tensor rows and columns the region is resized into; with letterbox, the largest
        // top-left rectangle of the region's aspect ratio, rounded down as YOLOX does.
        let (rw, rh) = (x1 - x0, y1 - y0);
        let (cw, ch) = if !input.letterbox {
            (ow, oh)
        } else if ow * rh <= oh * rw {
            (ow, (rh * ow / rw).max(1))
        } else {
            ((rw * oh / rh).max(1), oh)
        };

        // Byte ranges of a source row the region covers, and the row strides.
        let last_pair = (x1 - 1) / 2;
        let (lo, hi, stride) = match format {
            PixelFormat::Rgb24 => (3 * x0, 3 * x1, 3 * fw),
            PixelFormat::Yuyv => (4 * (x0 / 2), 4 * (last_pair + 1), 2 * fw),
            PixelFormat::Nv12 => (x0, x1, fw),
        };
        let (chroma_lo, chroma_span) = match format {
            PixelFormat::Nv12 => (2 * (x0 / 2), 2 * (last_pair + 1 - x0 / 2)),
            _ => (0, 0),
        };
        let span = hi - lo;
        let chroma_start = span + PAD;
        // Windows are addressed with u32 offsets into the row buffer.
        if span.saturating_add(chroma_span).saturating_add(2 * PAD) > u32::MAX as usize {
            return Err(PreprocessError::FrameSize {
                width: frame.width,
                height: frame.height,
                format,
            });
        }

        let rows = taps(y0, y1 - y0, ch, false)
            .map(|(top, bottom, weight)| RowTap {
                top: top * stride + lo,
                bottom: bottom * stride + lo,
                chroma_top: fw * fh + (top / 2) * fw + chroma_lo,
                chroma_bottom: fw * fh + (bottom / 2) * fw + chroma_lo,
                weight,
            })
            .collect();

        let starts = RegionStarts {
            x0,
            lo,
            chroma_lo,
            chroma_start,
        };
        let (window, chroma_window, weights) = columns(format, starts, x1 - x0, cw);
        let row_len = span
            + PAD
            + if chroma_span > 0 {
                chroma_span + PAD
            } else {
                0
            };
        let scratch = Scratch {
            row: vec![0; row_len],
            lo: vec![0; cw],
            hi: vec![0; cw],
            words: [vec![0; cw], vec![0; cw], vec![0; cw], vec![0; cw]],
            rgb: [vec![0; cw], vec![0; cw], vec![0; cw]],
        };
        let roi = Roi {
            x: x0 as f32 / fw as f32,
            y: y0 as f32 / fh as f32,
            width: (x1 - x0) as f32 / fw as f32,
            height: (y1 - y0) as f32 / fh as f32,
        };
        // Exactly the ROI when nothing is padded, so SSD boxes map back bit for bit as before.
        let extend = |len: f32, out: usize, content: usize| {
            if out == content {
                len
            } else {
                len * out as f32 / content as f32
            }
        };
        let tensor_region = Roi {
            width: extend(roi.width, ow, cw),
            height: extend(roi.height, oh, ch),
            ..roi
        };
        let plan = Plan {
            format,
            rows,
            window,
            chroma_window,
            weights,
            out_width: ow,
            bgr: input.bgr,
            span,
            chroma_span,
        };
        Ok(Self {
            plan,
            scratch,
            map,
            frame_len,
            tensor_len,
            roi,
            tensor_region,
        })
    }

    /// The frame region the whole tensor stands for, in frame-normalized coordinates: the
    /// sampled [`Preprocessor::roi`] without letterbox; with it, that region extended right or
    /// down over the padding (so past 1.0). Boxes normalized to the tensor map back to the
    /// frame with [`Roi::to_frame`] on this one, letterboxed or not.
    pub fn tensor_region(&self) -> Roi {
        self.tensor_region
    }

    /// The region actually sampled: the requested one snapped to whole pixels. Map boxes
    /// found in the tensor back to the frame with [`Roi::to_frame`] on this one.
    pub fn roi(&self) -> Roi {
        self.roi
    }

    /// Bytes a frame must have.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Converts and resizes `frame` into `out`. Allocates nothing.
    pub fn run(&mut self, frame: &[u8], out: InputTensor<'_>) -> Result<(), PreprocessError> {
        if frame.len() != self.frame_len {
            return Err(PreprocessError::FrameLen {
                expected: self.frame_len,
                got: frame.len(),
            });
        }
        let got = out.len();
        if got != self.tensor_len {
            return Err(PreprocessError::TensorLen {
                expected: self.tensor_len,
                got,
            });
        }
        let (plan, scratch) = (&self.plan, &mut self.scratch);
        let pad = LETTERBOX_PAD as usize;
        let (expected, got) = (self.map.type_name(), out.type_name());
        match (&self.map, out) {
            (ValueMap::Identity, InputTensor::U8(t)) => {
                resize(plan, scratch, frame, t, LETTERBOX_PAD, pack_raw)
            }
            (ValueMap::U8(lut), InputTensor::U8(t)) => {
                resize(plan, scratch, frame, t, lut[pad], |rgb, dst| {
                    interleave(rgb, dst, |v| lut[v as usize])
                })
            }
            (ValueMap::F32(lut), InputTensor::F32(t)) => {
                resize(plan, scratch, frame, t, lut[pad], |rgb, dst| {
                    interleave(rgb, dst, |v| lut[v as usize])
                })
            }
            (ValueMap::I8(lut), InputTensor::I8(t)) => {
                resize(plan, scratch, frame, t, lut[pad], |rgb, dst| {
                    interleave(rgb, dst, |v| lut[v as usize])
                })
            }
            _ => Err(PreprocessError::TensorKind { expected, got }),
        }
    }
}

/// Where the region starts, in the frame and in the blended row.
#[derive(Debug, Clone, Copy)]
struct RegionStarts {
    /// First pixel column of the region.
    x0: usize,
    /// Byte of the source row the blended row starts at (luma for NV12).
    lo: usize,
    /// NV12: byte of the chroma row the blended chroma starts at.
    chroma_lo: usize,
    /// NV12: where the blended chroma starts in the row buffer.
    chroma_start: usize,
}

/// Per tensor column: its window(s) in the blended row and the weights of their samples.
///
/// - RGB24: `[k]`, the weight of the right pixel.
/// - YUYV: `[k0, k1, k2, c]`: luma of `x0` and `x0 + 1` is byte 0 and 2 of the window or,
///   when `x0` is the second pixel of its pair, 2 and 4; so three luma taps, one of them
///   zero. `c` weighs the second pair's chroma, zero when both pixels share one pair.
/// - NV12: `[k, c]` likewise.
fn columns(
    format: PixelFormat,
    at: RegionStarts,
    width: usize,
    out_width: usize,
) -> (Vec<u32>, Vec<u32>, [Vec<u16>; 4]) {
    let (mut window, mut chroma_window) = (Vec::with_capacity(out_width), Vec::new());
    let mut weights: [Vec<u16>; 4] = Default::default();
    for (left, _, w1) in taps(at.x0, width, out_width, true) {
        let w0 = ONE - w1;
        let odd = left % 2 == 1;
        let chroma_w1 = if odd { w1 } else { 0 };
        // `new` checked that offsets into the row buffer fit u32.
        match format {
            PixelFormat::Rgb24 => {
                window.push((3 * (left - at.x0)) as u32);
                weights[0].push(w1);
            }
            PixelFormat::Yuyv => {
                window.push((4 * (left / 2) - at.lo) as u32);
                let (k0, k1, k2) = if odd { (0, w0, w1) } else { (w0, w1, 0) };
                weights[0].push(k0);
                weights[1].push(k1);
                weights[2].push(k2);
                weights[3].push(chroma_w1);
            }
            PixelFormat::Nv12 => {
                window.push((left - at.x0) as u32);
                let chroma = at.chroma_start + 2 * (left / 2) - at.chroma_lo;
                chroma_window.push(chroma as u32);
                weights[0].push(w1);
                weights[1].push(chroma_w1);
            }
        }
    }
    (window, chroma_window, weights)
}

/// Runs every tensor row through the stages. Each stage is its own loop over the row, so
/// that the arithmetic ones see contiguous planes and vectorize; only the gather and the
/// final interleave move single values.
///
/// With letterbox, the resized region fills the first rows' first columns and `pad` the
/// rest, written every frame: the tensor may be another interpreter's or a runtime's buffer.
fn resize<T: Copy>(
    plan: &Plan,
    s: &mut Scratch,
    frame: &[u8],
    out: &mut [T],
    pad: T,
    emit: impl Fn([&[u8]; 3], &mut [T]),
) -> Result<(), PreprocessError> {
    let content = 3 * plan.window.len();
    let (resized, below) = out.split_at_mut((3 * plan.out_width * plan.rows.len()).min(out.len()));
    below.fill(pad);
    let out_rows = resized.chunks_exact_mut(3 * plan.out_width);
    for (row, tap) in out_rows.zip(&plan.rows) {
        let (dst, right) = row.split_at_mut(content.min(row.len()));
        right.fill(pad);
        let (luma, chroma) = s.row.split_at_mut(plan.span + PAD);
        blend_rows(
            &mut luma[..plan.span],
            frame,
            tap.top,
            tap.bottom,
            tap.weight,
        )?;
        if plan.chroma_span > 0 {
            let chroma = chroma.get_mut(..plan.chroma_span).ok_or(internal())?;
            blend_rows(chroma, frame, tap.chroma_top, tap.chroma_bottom, tap.weight)?;
        }
        match plan.format {
            PixelFormat::Nv12 => gather_nv12(&s.row, plan, &mut s.lo, &mut s.hi),
            _ => gather(&s.row, &plan.window, &mut s.lo, &mut s.hi),
        }
        split_words(&s.lo, &s.hi, &mut s.words);
        let [r, g, b] = &mut s.rgb;
        let [w0, w1, w2, w3] = &s.words;
        let [k0, k1, k2, k3] = &plan.weights;
        match plan.format {
            PixelFormat::Rgb24 => blend_rgb([w0, w1, w2], k0, [r, g, b]),
            PixelFormat::Yuyv => blend_yuyv([w0, w1, w2, w3], [k0, k1, k2, k3], [r, g, b]),
            PixelFormat::Nv12 => blend_nv12([w0, w1, w2], [k0, k1], [r, g, b]),
        }
        let [r, g, b] = &s.rgb;
        let planes = if plan.bgr {
            [&b[..], &g[..], &r[..]]
        } else {
            [&r[..], &g[..], &b[..]]
        };
        emit(planes, dst);
    }
    Ok(())
}

/// A table that disagrees with the frame; `new` rules this out, but `run` reports rather
/// than panics.
fn internal() -> PreprocessError {
    PreprocessError::Internal
}

/// Blends `dst.len()` bytes of the frame at `top` and `bottom`, rounding to whole levels.
fn blend_rows(
    dst: &mut [u8],
    frame: &[u8],
    top: usize,
    bottom: usize,
    weight: u16,
) -> Result<(), PreprocessError> {
    let n = dst.len();
    let a = frame.get(top..top + n).ok_or(internal())?;
    let b = frame.get(bottom..bottom + n).ok_or(internal())?;
    let wa = ONE - weight;
    for ((d, &a), &b) in dst.iter_mut().zip(a).zip(b) {
        // At most 255 * 256 + 128: fits u16, so the loop runs in 16-bit lanes.
        *d = ((a as u16 * wa + b as u16 * weight + (ONE >> 1)) >> WEIGHT_BITS) as u8;
    }
    Ok(())
}

/// Copies each column's 8-byte window out of the blended row: one load, two stores.
fn gather(row: &[u8], window: &[u32], lo: &mut [u32], hi: &mut [u32]) {
    for ((&at, lo), hi) in window.iter().zip(lo.iter_mut()).zip(hi.iter_mut()) {
        let at = at as usize;
        if let Some(w) = row.get(at..at + 8) {
            *lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            *hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        }
    }
}

/// NV12: `lo` gets the chroma window (U V of both pairs), `hi` the two luma bytes.
fn gather_nv12(row: &[u8], plan: &Plan, lo: &mut [u32], hi: &mut [u32]) {
    let windows = plan.window.iter().zip(&plan.chroma_window);
    for (((&at, &chroma_at), lo), hi) in windows.zip(lo.iter_mut()).zip(hi.iter_mut()) {
        let (at, chroma_at) = (at as usize, chroma_at as usize);
        if let (Some(y), Some(c)) = (row.get(at..at + 2), row.get(chroma_at..chroma_at + 4)) {
            *lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            *hi = u32::from_le_bytes([y[0], y[1], 0, 0]);
        }
    }
}

/// Splits the windows into four planes of 16-bit words (two bytes each).
fn split_words(lo: &[u32], hi: &[u32], words: &mut [Vec<u16>; 4]) {
    let [w0, w1, w2, w3] = words;
    let n = lo
        .len()
        .min(hi.len())
        .min(w0.len())
        .min(w1.len())
        .min(w2.len())
        .min(w3.len());
    let (lo, hi) = (&lo[..n], &hi[..n]);
    let (w0, w1, w2, w3) = (&mut w0[..n], &mut w1[..n], &mut w2[..n], &mut w3[..n]);
    for i in 0..n {
        w0[i] = lo[i] as u16;
        w1[i] = (lo[i] >> 16) as u16;
        w2[i] = hi[i] as u16;
        w3[i] = (hi[i] >> 16) as u16;
    }
}

#[inline(always)]
fn low(w: u16) -> u16 {
    w & 0xff
}

#[inline(always)]
fn high(w: u16) -> u16 {
    w >> 8
}

/// Rounds an 8.8 value to a whole level.
#[inline(always)]
fn round_q8(v: u16) -> u8 {
    // `v` is at most 255 * 256, so adding one half cannot overflow.
    ((v + (ONE >> 1)) >> WEIGHT_BITS) as u8
}

/// RGB24 windows `R0 G0 | B0 R1 | G1 B1 | - -`: left pixel weighted `256 - k`, right `k`.
fn blend_rgb(w: [&Vec<u16>; 3], k: &[u16], rgb: [&mut Vec<u8>; 3]) {
    let [r, g, b] = rgb;
    let n = k.len().min(w[0].len()).min(w[1].len()).min(w[2].len());
    let n = n.min(r.len()).min(g.len()).min(b.len());
    let (w0, w1, w2, k) = (&w[0][..n], &w[1][..n], &w[2][..n], &k[..n]);
    let (r, g, b) = (&mut r[..n], &mut g[..n], &mut b[..n]);
    for i in 0..n {
        let (k1, k0) = (k[i], ONE - k[i]);
        r[i] = round_q8(low(w0[i]) * k0 + high(w1[i]) * k1);
        g[i] = round_q8(high(w0[i]) * k0 + low(w2[i]) * k1);
        b[i] = round_q8(low(w1[i]) * k0 + high(w2[i]) * k1);
    }
}

/// YUYV windows `Y0 U0 | Y1 V0 | Y2 U1 | Y3 V1`: luma weighted by three taps, chroma by the
/// weight of the second pair.
fn blend_yuyv(w: [&Vec<u16>; 4], k: [&Vec<u16>; 4], rgb: [&mut Vec<u8>; 3]) {
    let [r, g, b] = rgb;
    let n = w
        .iter()
        .map(|w| w.len())
        .chain(k.iter().map(|k| k.len()))
        .min()
        .unwrap_or(0);
    let n = n.min(r.len()).min(g.len()).min(b.len());
    let (w0, w1, w2, w3) = (&w[0][..n], &w[1][..n], &w[2][..n], &w[3][..n]);
    let (k0, k1, k2, c1) = (&k[0][..n], &k[1][..n], &k[2][..n], &k[3][..n]);
    let (r, g, b) = (&mut r[..n], &mut g[..n], &mut b[..n]);
    for i in 0..n {
        let c0 = ONE - c1[i];
        let y = low(w0[i]) * k0[i] + low(w1[i]) * k1[i] + low(w2[i]) * k2[i];
        let u = high(w0[i]) * c0 + high(w2[i]) * c1[i];
        let v = high(w1[i]) * c0 + high(w3[i]) * c1[i];
        [r[i], g[i], b[i]] = yuv_q8_to_rgb(y, u, v);
    }
}

/// NV12 windows `U0 V0 | U1 V1 | Yl Yr`.
fn blend_nv12(w: [&Vec<u16>; 3], k: [&Vec<u16>; 2], rgb: [&mut Vec<u8>; 3]) {
    let [r, g, b] = rgb;
    let n = w
        .iter()
        .map(|w| w.len())
        .chain(k.iter().map(|k| k.len()))
        .min()
        .unwrap_or(0);
    let n = n.min(r.len()).min(g.len()).min(b.len());
    let (w0, w1, w2) = (&w[0][..n], &w[1][..n], &w[2][..n]);
    let (k1, c1) = (&k[0][..n], &k[1][..n]);
    let (r, g, b) = (&mut r[..n], &mut g[..n], &mut b[..n]);
    for i in 0..n {
        let (k0, c0) = (ONE - k1[i], ONE - c1[i]);
        let y = low(w2[i]) * k0 + high(w2[i]) * k1[i];
        let u = low(w0[i]) * c0 + low(w1[i]) * c1[i];
        let v = high(w0[i]) * c0 + high(w1[i]) * c1[i];
        [r[i], g[i], b[i]] = yuv_q8_to_rgb(y, u, v);
    }
}

/// Interleaves the three planes (in tensor channel order) into the tensor row, mapping each
/// value to the tensor's.
fn interleave<T: Copy>(rgb: [&[u8]; 3], dst: &mut [T], map: impl Fn(u8) -> T) {
    let [r, g, b] = rgb;
    for (((px, &r), &g), &b) in dst.chunks_exact_mut(3).zip(r).zip(g).zip(b) {
        px[0] = map(r);
        px[1] = map(g);
        px[2] = map(b);
    }
}

/// [`interleave`] for raw uint8 values: four pixels at a time as three 32-bit words, which
/// takes a third of the stores.
fn pack_raw(rgb: [&[u8]; 3], dst: &mut [u8]) {
    let [r, g, b] = rgb;
    let word = |p: &[u8]| u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
    let quads = r
        .chunks_exact(4)
        .zip(g.chunks_exact(4))
        .zip(b.chunks_exact(4));
    let (blocks, tail) = dst.split_at_mut(dst.len() / 12 * 12);
    for (((r, g), b), out) in quads.zip(blocks.chunks_exact_mut(12)) {
        let (r, g, b) = (word(r), word(g), word(b));
        // r0 g0 b0 r1 | g1 b1 r2 g2 | b2 r3 g3 b3
        let w0 = (r & 0xff) | (g & 0xff) << 8 | (b & 0xff) << 16 | (r & 0xff00) << 16;
        let w1 = (g >> 8 & 0xff) | (b & 0xff00) | (r & 0xff_0000) | (g & 0xff_0000) << 8;
        let w2 = (b >> 16 & 0xff) | (r >> 16 & 0xff00) | (g >> 8 & 0xff_0000) | (b & 0xff00_0000);
        out[..4].copy_from_slice(&w0.to_le_bytes());
        out[4..8].copy_from_slice(&w1.to_le_bytes());
        out[8..].copy_from_slice(&w2.to_le_bytes());
    }
    let rest = r.iter().zip(g).zip(b).skip(blocks.len() / 3);
    for (px, ((&r, &g), &b)) in tail.chunks_exact_mut(3).zip(rest) {
        px.copy_from_slice(&[r, g, b]);
    }
}

/// The pixel range `[start, end)` a normalized interval covers, if it is inside the frame
/// and not empty.
fn crop(start: f32, len: f32, pixels: usize) -> Option<(usize, usize)> {
    let end = start + len;
    let inside = start >= 0.0 && len > 0.0 && end <= 1.0 + 1e-4;
    if !(inside && start.is_finite() && len.is_finite()) {
        return None;
    }
    let a = ((start as f64 * pixels as f64).round() as usize).min(pixels);
    let b = ((end as f64 * pixels as f64).round() as usize).min(pixels);
    (b > a).then_some((a, b))
}

/// For each of `dst_len` outputs: the two source indices (absolute, from `start`) it falls
/// between and the weight of the second, in 0..=256. With `adjacent`, the second index is
/// always the first plus one, moving the clamp into the weight, so one fixed window holds
/// both samples.
fn taps(
    start: usize,
    src_len: usize,
    dst_len: usize,
    adjacent: bool,
) -> impl Iterator<Item = (usize, usize, u16)> {
    let scale = src_len as f64 / dst_len as f64;
    (0..dst_len).map(move |d| {
        let src = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
        let mut i = src.floor() as usize;
        let mut frac = src - i as f64;
        if i + 1 >= src_len {
            if adjacent && src_len >= 2 {
                (i, frac) = (src_len - 2, 1.0);
            } else {
                (i, frac) = (src_len - 1, 0.0);
            }
        }
        let next = if adjacent {
            i + 1
        } else {
            (i + 1).min(src_len - 1)
        };
        let weight = (frac * ONE as f64).round() as u16;
        (start + i, start + next, weight)
    })
}

/// `FrameFormat::frame_len` with overflow and size checks.
fn checked_frame_len(frame: FrameFormat) -> Option<usize> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let even = !frame.pixel_format.needs_even_size() || (w % 2 == 0 && h % 2 == 0);
    if w == 0 || h == 0 || !even {
        return None;
    }
    let px = w.checked_mul(h)?;
    match frame.pixel_format {
        PixelFormat::Rgb24 => px.checked_mul(3),
        PixelFormat::Yuyv => px.checked_mul(2),
        PixelFormat::Nv12 => px.checked_add(px / 2),
    }
}

/// The 256-entry table from a channel value to the tensor value.
fn value_map(input: &InputSpec) -> Result<ValueMap, PreprocessError> {
    let norm = match (input.mean, input.std) {
        (None, None) => None,
        (Some(mean), Some(std)) => {
            if !mean.is_finite() || !std.is_finite() || std == 0.0 {
                return Err(PreprocessError::Normalization(
                    "mean and std must be finite, std non-zero",
                ));
            }
            Some((mean, std))
        }
        _ => {
            return Err(PreprocessError::Normalization(
                "mean and std must be given together",
            ))
        }
    };
    let real = |p: usize| norm.map_or(p as f32, |(mean, std)| (p as f32 - mean) / std);
    match (input.kind, norm) {
        (InputKind::U8 { .. }, None) => Ok(ValueMap::Identity),
        (
            InputKind::U8 {
                quant: Some((scale, zero_point)),
            },
            Some(_),
        ) => {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(PreprocessError::Normalization(
                    "quantization scale must be positive",
                ));
            }
            let mut lut = Box::new([0u8; 256]);
            for (p, q) in lut.iter_mut().enumerate() {
                let v = (real(p) / scale).round() + zero_point as f32;
                *q = v.clamp(0.0, 255.0) as u8;
            }
            Ok(ValueMap::U8(lut))
        }
        (InputKind::U8 { quant: None }, Some(_)) => Err(PreprocessError::Normalization(
            "a uint8 input without quantization cannot hold normalized values",
        )),
        (InputKind::F32, None) => Err(PreprocessError::Normalization(
            "a float input needs mean and std",
        )),
        (
            InputKind::I8 {
                quant: Some((scale, zero_point)),
            },
            _,
        ) => {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(PreprocessError::Normalization(
                    "quantization scale must be positive",
                ));
            }
            let mut lut = Box::new([0i8; 256]);
            for (p, q) in lut.iter_mut().enumerate() {
                let v = (real(p) / scale).round() + zero_point as f32;
                *q = v.clamp(-128.0, 127.0) as i8;
            }
            Ok(ValueMap::I8(lut))
        }
        (InputKind::I8 { quant: None }, _) => Err(PreprocessError::Normalization(
            "an int8 input needs its quantization (scale, zero point)",
        )),
        (InputKind::F32, Some(_)) => {
            let mut lut = Box::new([0f32; 256]);
            for (p, v) in lut.iter_mut().enumerate() {
                *v = real(p);
            }
            Ok(ValueMap::F32(lut))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::convert;

    /// A deterministic image with both smooth gradients and per-pixel noise.
    fn test_image(w: u32, h: u32, noise: u32) -> Vec<u8> {
        let mut state = 0x2545_f491_u32;
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    // Colours stay well inside the YCbCr gamut unless the noise is large.
                    let smooth = 32 + x * (c + 1) * 160 / (3 * w) + y * 32 / h;
                    let jitter = if noise == 0 { 0 } else { (state >> 24) % noise };
                    rgb.push((smooth + jitter).min(255) as u8);
                }
            }
        }
        rgb
    }

    /// Straightforward f32 bilinear resize of the pixel rectangle `crop` (x, y, w, h).
    fn reference(rgb: &[u8], w: usize, crop: [usize; 4], ow: usize, oh: usize) -> Vec<f32> {
        let [cx, cy, cw, ch] = crop;
        let sample = |d: usize, src: usize, dst: usize| {
            let s = ((d as f32 + 0.5) * src as f32 / dst as f32 - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(src - 1);
            let i1 = (i0 + 1).min(src - 1);
            (i0, i1, s - i0 as f32)
        };
        let mut out = Vec::with_capacity(ow * oh * 3);
        for dy in 0..oh {
            let (y0, y1, fy) = sample(dy, ch, oh);
            for dx in 0..ow {
                let (x0, x1, fx) = sample(dx, cw, ow);
                for c in 0..3 {
                    let p = |x: usize, y: usize| rgb[((cy + y) * w + cx + x) * 3 + c] as f32;
                    let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
                    let bottom = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
                    out.push(top * (1.0 - fy) + bottom * fy);
                }
            }
        }
        out
    }

    fn raw_u8(width: u32, height: u32) -> InputSpec {
        InputSpec {
            width,
            height,
            channels: 3,
            kind: InputKind::U8 { quant: None },
            mean: None,
            std: None,
            letterbox: false,
            bgr: false,
        }
    }

    fn frame_in(format: PixelFormat, w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
        let mut frame = vec![0; format.frame_len(w, h)];
        convert::rgb_to(format, w, h, rgb, &mut frame).unwrap();
        frame
    }

    fn max_error(got: &[u8], want: &[f32]) -> f32 {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(&g, &w)| (g as f32 - w).abs())
            .fold(0.0, f32::max)
    }

    fn mean_error(got: &[u8], want: &[f32]) -> f32 {
        let sum: f32 = got
            .iter()
            .zip(want)
            .map(|(&g, &w)| (g as f32 - w).abs())
            .sum();
        sum / got.len() as f32
    }

    fn run_u8(
        format: PixelFormat,
        w: u32,
        h: u32,
        frame: &[u8],
        roi: Roi,
        ow: u32,
        oh: u32,
    ) -> Vec<u8> {
        let ff = FrameFormat {
            width: w,
            height: h,
            pixel_format: format,
        };
        let mut pre = Preprocessor::new(ff, roi, &raw_u8(ow, oh)).unwrap();
        let mut out = vec![0u8; (ow * oh * 3) as usize];
        pre.run(frame, InputTensor::U8(&mut out)).unwrap();
        out
    }

    #[test]
    fn rgb24_matches_the_f32_reference_for_down_and_up_scaling() {
        let (w, h) = (64u32, 48u32);
        let rgb = test_image(w, h, 64);
        for (ow, oh) in [(30, 30), (17, 9), (64, 48), (100, 71), (1, 1)] {
            let got = run_u8(PixelFormat::Rgb24, w, h, &rgb, Roi::FULL, ow, oh);
            let want = reference(&rgb, 64, [0, 0, 64, 48], ow as usize, oh as usize);
            let err = max_error(&got, &want);
            assert!(err <= 2.0, "{ow}x{oh}: off by {err}");
        }
    }

    #[test]
    fn roi_crops_before_resizing() {
        let (w, h) = (64u32, 48u32);
        let rgb = test_image(w, h, 64);
        let roi = Roi {
            x: 0.25,
            y: 0.5,
            width: 0.5,
            height: 0.25,
        };
        let got = run_u8(PixelFormat::Rgb24, w, h, &rgb, roi, 20, 10);
        let want = reference(&rgb, 64, [16, 24, 32, 12], 20, 10);
        assert!(max_error(&got, &want) <= 2.0);
        // A one-pixel-wide region still samples, from that column only.
        let roi = Roi {
            x: 0.5,
            y: 0.0,
            width: 1.0 / 64.0,
            height: 1.0,
        };
        let got = run_u8(PixelFormat::Rgb24, w, h, &rgb, roi, 3, 5);
        let want = reference(&rgb, 64, [32, 0, 1, 48], 3, 5);
        assert!(max_error(&got, &want) <= 2.0);
        let pre = Preprocessor::new(
            FrameFormat {
                width: w,
                height: h,
                pixel_format: PixelFormat::Rgb24,
            },
            Roi {
                x: 0.1,
                y: 0.1,
                width: 0.5,
                height: 0.5,
            },
            &raw_u8(8, 8),
        )
        .unwrap();
        // Snapped to whole pixels: 6.4 -> 6, 4.8 -> 5.
        assert_eq!(pre.roi().x, 6.0 / 64.0);
        assert_eq!(pre.roi().y, 5.0 / 48.0);
    }

    #[test]
    fn yuv_frames_match_convert_then_resize() {
        let (w, h) = (64u32, 48u32);
        for noise in [0, 32, 96] {
            let rgb = test_image(w, h, noise);
            for format in [PixelFormat::Yuyv, PixelFormat::Nv12] {
                let frame = frame_in(format, w, h, &rgb);
                let mut as_rgb = vec![0; rgb.len()];
                convert::to_rgb(format, w, h, &frame, &mut as_rgb).unwrap();
                let crops = [
                    (Roi::FULL, [0, 0, 64, 48]),
                    (
                        Roi {
                            x: 0.25,
                            y: 0.25,
                            width: 0.5,
                            height: 0.5,
                        },
                        [16, 12, 32, 24],
                    ),
                ];
                for (roi, crop) in crops {
                    for (ow, oh) in [(30, 30), (13, 7), (100, 80)] {
                        let got = run_u8(format, w, h, &frame, roi, ow, oh);
                        let want = reference(&as_rgb, 64, crop, ow as usize, oh as usize);
                        let err = max_error(&got, &want);
                        let mean = mean_error(&got, &want);
                        // Strong noise pushes subsampled chroma out of the RGB gamut; "convert,
                        // then resize" clamps before blending and this path after, so only the
                        // mean stays tight there.
                        let bound = if noise <= 32 { 3.0 } else { 24.0 };
                        assert!(
                            err <= bound,
                            "{format} noise {noise} {ow}x{oh}: off by {err}"
                        );
                        assert!(
                            mean <= 0.75,
                            "{format} noise {noise} {ow}x{oh}: mean {mean}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn odd_region_edges_in_subsampled_frames() {
        let (w, h) = (10u32, 6u32);
        let rgb = test_image(w, h, 0);
        for format in [PixelFormat::Yuyv, PixelFormat::Nv12] {
            let frame = frame_in(format, w, h, &rgb);
            let mut as_rgb = vec![0; rgb.len()];
            convert::to_rgb(format, w, h, &frame, &mut as_rgb).unwrap();
            for x in 0..10 {
                for cw in 1..=(10 - x) {
                    let roi = Roi {
                        x: x as f32 / 10.0,
                        y: 0.5,
                        width: cw as f32 / 10.0,
                        height: 0.5,
                    };
                    let got = run_u8(format, w, h, &frame, roi, 7, 2);
                    let want = reference(&as_rgb, 10, [x, 3, cw, 3], 7, 2);
                    let err = max_error(&got, &want);
                    assert!(err <= 2.0, "{format} x {x} w {cw}: off by {err}");
                }
            }
        }
    }

    #[test]
    fn value_table_normalizes_and_quantizes() {
        let (w, h) = (4u32, 2u32);
        let rgb: Vec<u8> = (0..24).map(|i| (i * 11) as u8).collect();
        let ff = FrameFormat {
            width: w,
            height: h,
            pixel_format: PixelFormat::Rgb24,
        };
        let float = InputSpec {
            kind: InputKind::F32,
            mean: Some(127.5),
            std: Some(127.5),
            ..raw_u8(4, 2)
        };
        let mut pre = Preprocessor::new(ff, Roi::FULL, &float).unwrap();
        let mut out = vec![0f32; 24];
        pre.run(&rgb, InputTensor::F32(&mut out)).unwrap();
        for (&o, &p) in out.iter().zip(&rgb) {
            assert!((o - (p as f32 - 127.5) / 127.5).abs() < 1e-6);
        }
        // Raw RGB into a quantized model without mean/std, whatever its quantization.
        let quant = InputSpec {
            kind: InputKind::U8 {
                quant: Some((1.0 / 128.0, 128)),
            },
            ..raw_u8(4, 2)
        };
        let mut pre = Preprocessor::new(ff, Roi::FULL, &quant).unwrap();
        let mut raw = vec![0u8; 24];
        pre.run(&rgb, InputTensor::U8(&mut raw)).unwrap();
        assert_eq!(raw, rgb);
        // With mean/std, the real value is quantized and clamped.
        let quant = InputSpec {
            mean: Some(127.5),
            std: Some(127.5),
            ..quant
        };
        let mut pre = Preprocessor::new(ff, Roi::FULL, &quant).unwrap();
        pre.run(&rgb, InputTensor::U8(&mut raw)).unwrap();
        for (&q, &p) in raw.iter().zip(&rgb) {
            let want = (((p as f32 - 127.5) / 127.5) * 128.0 + 128.0)
                .round()
                .clamp(0.0, 255.0);
            assert_eq!(q as f32, want, "pixel {p}");
        }
    }

    #[test]
    fn bad_specs_are_rejected_at_start_up() {
        let ff = FrameFormat {
            width: 64,
            height: 48,
            pixel_format: PixelFormat::Yuyv,
        };
        let new = |ff: FrameFormat, roi: Roi, spec: InputSpec| {
            Preprocessor::new(ff, roi, &spec).unwrap_err()
        };
        let spec = raw_u8(8, 8);
        let float = InputSpec {
            kind: InputKind::F32,
            ..spec
        };
        assert!(matches!(
            new(ff, Roi::FULL, float),
            PreprocessError::Normalization(_)
        ));
        let half = InputSpec {
            mean: Some(1.0),
            ..float
        };
        assert!(matches!(
            new(ff, Roi::FULL, half),
            PreprocessError::Normalization(_)
        ));
        let zero_std = InputSpec {
            mean: Some(1.0),
            std: Some(0.0),
            ..float
        };
        assert!(matches!(
            new(ff, Roi::FULL, zero_std),
            PreprocessError::Normalization(_)
        ));
        let unquantized = InputSpec {
            mean: Some(1.0),
            std: Some(2.0),
            ..spec
        };
        assert!(matches!(
            new(ff, Roi::FULL, unquantized),
            PreprocessError::Normalization(_)
        ));
        let gray = InputSpec {
            channels: 1,
            ..spec
        };
        assert!(matches!(
            new(ff, Roi::FULL, gray),
            PreprocessError::InputShape { .. }
        ));
        let empty = InputSpec { width: 0, ..spec };
        assert!(matches!(
            new(ff, Roi::FULL, empty),
            PreprocessError::InputShape { .. }
        ));
        let odd = FrameFormat { width: 63, ..ff };
        assert!(matches!(
            new(odd, Roi::FULL, spec),
            PreprocessError::FrameSize { .. }
        ));
        for roi in [
            Roi {
                x: 0.5,
                y: 0.0,
                width: 0.6,
                height: 1.0,
            },
            Roi {
                x: -0.1,
                y: 0.0,
                width: 0.5,
                height: 1.0,
            },
            Roi {
                x: 0.0,
                y: 0.0,
                width: 0.0,
                height: 1.0,
            },
            Roi {
                x: 0.0,
                y: 0.0,
                width: 0.001,
                height: 1.0,
            },
            Roi {
                x: f32::NAN,
                y: 0.0,
                width: 0.5,
                height: 1.0,
            },
        ] {
            assert!(
                matches!(new(ff, roi, spec), PreprocessError::Roi { .. }),
                "{roi:?}"
            );
        }
    }

    /// YOLOX's input: letterbox, BGR, int8 `pixel - 128`.
    fn yolox_i8(width: u32, height: u32) -> InputSpec {
        InputSpec {
            kind: InputKind::I8 {
                quant: Some((1.0, -128)),
            },
            letterbox: true,
            bgr: true,
            ..raw_u8(width, height)
        }
    }

    #[test]
    fn letterbox_keeps_the_aspect_ratio_and_pads_the_rest() {
        // Wide frame into a square tensor: the content fills the top rows.
        let (w, h) = (64u32, 32u32);
        let rgb = test_image(w, h, 64);
        let ff = FrameFormat {
            width: w,
            height: h,
            pixel_format: PixelFormat::Rgb24,
        };
        let spec = InputSpec {
            letterbox: true,
            ..raw_u8(32, 32)
        };
        let mut pre = Preprocessor::new(ff, Roi::FULL, &spec).unwrap();
        let mut out = vec![0u8; 32 * 32 * 3];
        pre.run(&rgb, InputTensor::U8(&mut out)).unwrap();
        let want = reference(&rgb, 64, [0, 0, 64, 32], 32, 16);
        let (content, pad) = out.split_at(32 * 16 * 3);
        assert!(max_error(content, &want) <= 2.0);
        assert!(pad.iter().all(|&v| v == LETTERBOX_PAD));
        // The tensor stands for the frame plus as much again below it.
        assert_eq!(
            pre.tensor_region(),
            Roi {
                height: 2.0,
                ..Roi::FULL
            }
        );
        assert_eq!(pre.roi(), Roi::FULL);
        // Without letterbox it is the sampled region itself.
        let roi = Roi {
            x: 0.1,
            y: 0.3,
            width: 0.7,
            height: 0.3,
        };
        let pre = Preprocessor::new(ff, roi, &raw_u8(30, 30)).unwrap();
        assert_eq!(pre.tensor_region(), pre.roi());

        // Tall region into a square tensor: the content fills the left columns; 12 x 24
        // pixels scale to 16 x 32, padded on the right.
        let roi = Roi {
            x: 0.25,
            y: 0.125,
            width: 12.0 / 64.0,
            height: 0.75,
        };
        let mut pre = Preprocessor::new(ff, roi, &spec).unwrap();
        // Stale values from an earlier frame must be overwritten by the padding.
        out.fill(7);
        pre.run(&rgb, InputTensor::U8(&mut out)).unwrap();
        let want = reference(&rgb, 64, [16, 4, 12, 24], 16, 32);
        for (y, row) in out.chunks_exact(32 * 3).enumerate() {
            let (content, pad) = row.split_at(16 * 3);
            let want = &want[y * 16 * 3..(y + 1) * 16 * 3];
            assert!(max_error(content, want) <= 2.0, "row {y}");
            assert!(pad.iter().all(|&v| v == LETTERBOX_PAD), "row {y}");
        }
        let region = pre.tensor_region();
        assert_eq!((region.x, region.y), (0.25, 0.125));
        assert!((region.width - 24.0 / 64.0).abs() < 1e-6);
        assert!((region.height - 0.75).abs() < 1e-6);
        // A box over the content's right half comes back over the region's right half.
        let b = region.to_frame(crate::geometry::BBox::new(0.25, 0.0, 0.5, 1.0));
        assert!((b.xmin - (16.0 + 6.0) / 64.0).abs() < 1e-6, "{b:?}");
        assert!((b.xmax - 28.0 / 64.0).abs() < 1e-6, "{b:?}");
        assert!((b.ymin - 4.0 / 32.0).abs() < 1e-6 && (b.ymax - 28.0 / 32.0).abs() < 1e-6);
    }

    #[test]
    fn letterbox_rounds_the_content_size_down_like_yolox() {
        // 640 x 360 into 320 x 320: scale 0.5, 320 x 180. 100 x 30 into 64 x 64: scale 0.64,
        // 64 x 19 (19.2 rounded down).
        for ((w, h), (ow, oh), rows) in [((640, 360), (320, 320), 180), ((100, 30), (64, 64), 19)] {
            let ff = FrameFormat {
                width: w,
                height: h,
                pixel_format: PixelFormat::Rgb24,
            };
            let spec = InputSpec {
                letterbox: true,
                ..raw_u8(ow, oh)
            };
            let pre = Preprocessor::new(ff, Roi::FULL, &spec).unwrap();
            assert_eq!(pre.plan.rows.len(), rows);
            assert_eq!(pre.plan.window.len(), ow as usize);
            let r = pre.tensor_region();
            assert!((r.height - oh as f32 / rows as f32).abs() < 1e-6);
        }
    }

    #[test]
    fn bgr_order_and_int8_quantization() {
        let (w, h) = (4u32, 2u32);
        let rgb: Vec<u8> = (0..24).map(|i| (i * 11) as u8).collect();
        let ff = FrameFormat {
            width: w,
            height: h,
            pixel_format: PixelFormat::Rgb24,
        };
        // Same size, no letterbox effect: each pixel copied, channels reversed, minus 128.
        let mut pre = Preprocessor::new(ff, Roi::FULL, &yolox_i8(4, 2)).unwrap();
        let mut out = vec![0i8; 24];
        pre.run(&rgb, InputTensor::I8(&mut out)).unwrap();
        for (px, src) in out.chunks_exact(3).zip(rgb.chunks_exact(3)) {
            let want: Vec<i8> = src.iter().rev().map(|&p| (p as i32 - 128) as i8).collect();
            assert_eq!(px, &want[..]);
        }
        // RGB raw uint8 with BGR on: only the order changes.
        let spec = InputSpec {
            bgr: true,
            ..raw_u8(4, 2)
        };
        let mut pre = Preprocessor::new(ff, Roi::FULL, &spec).unwrap();
        let mut raw = vec![0u8; 24];
        pre.run(&rgb, InputTensor::U8(&mut raw)).unwrap();
        for (px, src) in raw.chunks_exact(3).zip(rgb.chunks_exact(3)) {
            assert_eq!(px, [src[2], src[1], src[0]]);
        }
        // Another quantization, and letterbox padding through it: 114 / 2 - 100 = -43.
        let spec = InputSpec {
            kind: InputKind::I8 {
                quant: Some((2.0, -100)),
            },
            ..yolox_i8(4, 4)
        };
        let mut pre = Preprocessor::new(ff, Roi::FULL, &spec).unwrap();
        let mut out = vec![0i8; 48];
        pre.run(&rgb, InputTensor::I8(&mut out)).unwrap();
        assert_eq!(out[0], ((rgb[2] as f32 / 2.0).round() - 100.0) as i8);
        assert!(out[24..].iter().all(|&v| v == -43));
        // An int8 model without quantization, and tensors of the wrong type, are errors.
        let spec = InputSpec {
            kind: InputKind::I8 { quant: None },
            ..yolox_i8(4, 2)
        };
        assert!(matches!(
            Preprocessor::new(ff, Roi::FULL, &spec),
            Err(PreprocessError::Normalization(_))
        ));
        let mut pre = Preprocessor::new(ff, Roi::FULL, &yolox_i8(4, 2)).unwrap();
        let err = pre.run(&rgb, InputTensor::U8(&mut raw)).unwrap_err();
        assert_eq!(
            err,
            PreprocessError::TensorKind {
                expected: "i8",
                got: "u8"
            }
        );
    }

    #[test]
    fn wrong_frames_and_tensors_are_errors_not_panics() {
        let ff = FrameFormat {
            width: 64,
            height: 48,
            pixel_format: PixelFormat::Nv12,
        };
        let mut pre = Preprocessor::new(ff, Roi::FULL, &raw_u8(8, 8)).unwrap();
        let frame = vec![0u8; ff.frame_len()];
        let mut out = vec![0u8; 8 * 8 * 3];
        let err = pre.run(&frame[1..], InputTensor::U8(&mut out)).unwrap_err();
        assert_eq!(
            err,
            PreprocessError::FrameLen {
                expected: 4608,
                got: 4607
            }
        );
        let err = pre.run(&frame, InputTensor::U8(&mut out[1..])).unwrap_err();
        assert_eq!(
            err,
            PreprocessError::TensorLen {
                expected: 192,
                got: 191
            }
        );
        let mut float = vec![0f32; 8 * 8 * 3];
        let err = pre.run(&frame, InputTensor::F32(&mut float)).unwrap_err();
        assert!(matches!(err, PreprocessError::TensorKind { .. }));
        assert!(pre.run(&frame, InputTensor::U8(&mut out)).is_ok());
    }
}
