//! YOLOX decoding: the anchor-free head of YOLOX-style models, whose one raw output holds,
//! per grid cell of the stride 8, 16 and 32 feature maps, `x, y, w, h, objectness` and one
//! score per class (objectness and class scores already through the sigmoid).
//!
//! The decoder is runtime-independent: a backend hands it the output tensor's bytes and it
//! fills a [`Detections`] list. Every buffer is sized by [`YoloxHead::new`]; the decode
//! allocates nothing. Most cells see nothing, so it first compares each cell's objectness, one
//! quantized value, against a threshold converted to the quantized domain at start-up, and only
//! the few survivors are dequantized, scored and decoded. NMS is the one the SSD decoders use
//! ([`non_max_suppression`]).

use crate::config::ModelFamily;
use crate::geometry::BBox;
use crate::vision::detection::{Detections, MAX_DETECTIONS};
use crate::vision::preprocess::{InputKind, InputSpec};
use crate::vision::ssd::{non_max_suppression, Candidate, NmsOptions};

/// The strides of YOLOX's three feature maps, in output order.
pub const STRIDES: [u32; 3] = [8, 16, 32];

/// Values before the class scores in each output row: x, y, w, h, objectness.
pub const BOX_VALUES: usize = 5;

/// The NMS IoU threshold YOLOX's reference post-processing uses.
pub const DEFAULT_NMS_IOU: f32 = 0.45;

/// Index of the objectness value in an output row.
const OBJECTNESS: usize = 4;

/// Why a YOLOX head could not be built or could not decode an output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum YoloxError {
    /// The input size cannot carry YOLOX's stride 8/16/32 grids.
    #[error("YOLOX: input {width}x{height} is not usable (width and height must be non-zero multiples of 32)")]
    InputSize {
        /// Input width in pixels.
        width: u32,
        /// Input height in pixels.
        height: u32,
    },
    /// The output shape is not `[1, cells, 5 + classes]` for this input size.
    #[error("YOLOX: output shape {shape:?} does not fit a {width}x{height} input (expected [1, {cells}, 5 + classes] with at least one class)")]
    OutputShape {
        /// The shape given.
        shape: Vec<usize>,
        /// Input width in pixels.
        width: u32,
        /// Input height in pixels.
        height: u32,
        /// Grid cells a YOLOX head has at this input size.
        cells: usize,
    },
    /// A parameter is out of range; the message names it.
    #[error("YOLOX: {0}")]
    Invalid(&'static str),
    /// The output given to a decode does not have the size the head was built for.
    #[error("YOLOX: output has {got} values, expected {expected}")]
    OutputLen {
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
}

/// Grid cells of the three feature maps of a `width` x `height` input, if the size fits
/// YOLOX's strides (both non-zero multiples of 32, as every YOLOX export is).
pub fn cell_count(width: u32, height: u32) -> Option<usize> {
    let last = STRIDES[STRIDES.len() - 1];
    if width == 0 || height == 0 || !width.is_multiple_of(last) || !height.is_multiple_of(last) {
        return None;
    }
    let cells = STRIDES
        .iter()
        .map(|&s| (width / s) as u64 * (height / s) as u64)
        .sum::<u64>();
    usize::try_from(cells).ok()
}

/// Whether a model with a `width` x `height` input and this output shape is a YOLOX head:
/// `[1, N, 5 + C]` with `N` the cells of the stride 8, 16 and 32 grids and `C >= 1`.
/// Backends call this to pick the family when `model.family = "auto"`.
pub fn matches(width: u32, height: u32, output_shape: &[usize]) -> bool {
    match (cell_count(width, height), output_shape) {
        (Some(cells), &[1, n, values]) => n == cells && values > BOX_VALUES,
        _ => false,
    }
}

/// Whether the model is decoded as YOLOX, given `model.family`: `yolox` insists (and an
/// output that does not fit is an error naming the shape), `ssd` never, `auto` when
/// [`matches`] says so.
pub fn wanted(
    family: ModelFamily,
    width: u32,
    height: u32,
    output_shape: &[usize],
) -> Result<bool, YoloxError> {
    match family {
        ModelFamily::Ssd => Ok(false),
        ModelFamily::Auto => Ok(matches(width, height, output_shape)),
        ModelFamily::Yolox => {
            let cells = cell_count(width, height).ok_or(YoloxError::InputSize { width, height })?;
            if matches(width, height, output_shape) {
                Ok(true)
            } else {
                Err(YoloxError::OutputShape {
                    shape: output_shape.to_vec(),
                    width,
                    height,
                    cells,
                })
            }
        }
    }
}

/// The input a YOLOX model expects: the frame letterboxed into the top-left corner (pad 114),
/// BGR order, raw pixel values 0..255 encoded by the tensor's own `kind` (for int8 with
/// scale 1 and zero point -128, `pixel - 128`).
pub fn input_spec(width: u32, height: u32, kind: InputKind) -> InputSpec {
    InputSpec {
        width,
        height,
        channels: 3,
        kind,
        mean: None,
        std: None,
        letterbox: true,
        bgr: true,
    }
}

/// Where one grid cell sits: its column and row and the stride of its grid, in input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cell {
    x: f32,
    y: f32,
    stride: f32,
}

/// Decodes YOLOX's raw output into detections, with every buffer sized at start-up.
#[derive(Debug)]
pub struct YoloxHead {
    cells: Vec<Cell>,
    num_classes: usize,
    /// `1 / input width`, `1 / input height`: boxes come out normalized to the input.
    inv_w: f32,
    inv_h: f32,
    /// Output quantization: real value = `scale * (q - zero_point)`.
    scale: f32,
    zero_point: i32,
    score_threshold: f32,
    /// The least int8 / uint8 objectness that can reach the score threshold (one past the
    /// type's range when none can).
    gate_i8: i32,
    gate_u8: i32,
    nms: NmsOptions,
    max_detections: usize,
    /// One slot per cell: at most one candidate (its best class) per cell.
    candidates: Vec<Candidate>,
}

impl YoloxHead {
    /// A head for a `input_w` x `input_h` model whose output has `output_shape`
    /// (`[1, cells, 5 + classes]`) and quantization `quant` (`(scale, zero_point)`; ignored by
    /// [`YoloxHead::decode_f32`]). Keeps detections scoring at least `score_threshold`
    /// (objectness x class score), suppresses boxes overlapping a better one by more than
    /// `nms_iou` whatever their class (one object, one box, which is what a tracker wants),
    /// and keeps at most `max_detections` (1 to [`MAX_DETECTIONS`]).
    pub fn new(
        input_w: u32,
        input_h: u32,
        output_shape: &[usize],
        quant: (f32, i32),
        score_threshold: f32,
        nms_iou: f32,
        max_detections: usize,
    ) -> Result<Self, YoloxError> {
        wanted(ModelFamily::Yolox, input_w, input_h, output_shape)?;
        let num_classes = output_shape[2] - BOX_VALUES;
        if num_classes > u16::MAX as usize + 1 {
            return Err(YoloxError::Invalid("at most 65536 classes"));
        }
        let (scale, zero_point) = quant;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(YoloxError::Invalid(
                "the output quantization scale must be positive",
            ));
        }
        if !(0.0..=1.0).contains(&score_threshold) {
            return Err(YoloxError::Invalid("the score threshold must be in 0..=1"));
        }
        if !(0.0..=1.0).contains(&nms_iou) {
            return Err(YoloxError::Invalid(
                "the NMS IoU threshold must be in 0..=1",
            ));
        }
        if max_detections == 0 || max_detections > MAX_DETECTIONS {
            return Err(YoloxError::Invalid("max detections must be 1 to 128"));
        }
        let mut cells = Vec::with_capacity(output_shape[1]);
        for stride in STRIDES {
            let (cols, rows) = (input_w / stride, input_h / stride);
            for y in 0..rows {
                for x in 0..cols {
                    cells.push(Cell {
                        x: x as f32,
                        y: y as f32,
                        stride: stride as f32,
                    });
                }
            }
        }
        let real = |q: i32| probability(scale * (q - zero_point) as f32);
        let gate = |range: std::ops::RangeInclusive<i32>| {
            let end = *range.end() + 1;
            range
                .into_iter()
                .find(|&q| real(q) >= score_threshold)
                .unwrap_or(end)
        };
        Ok(YoloxHead {
            candidates: Vec::with_capacity(cells.len()),
            cells,
            num_classes,
            inv_w: 1.0 / input_w as f32,
            inv_h: 1.0 / input_h as f32,
            scale,
            zero_point,
            score_threshold,
            gate_i8: gate(-128..=127),
            gate_u8: gate(0..=255),
            nms: NmsOptions {
                iou_threshold: nms_iou,
                weighted: false,
                class_aware: false,
            },
            max_detections,
        })
    }

    /// Classes per cell; the labels file must have this many lines (80 for COCO, in the order
    /// of `coco80_labels.txt`). A detection's class is its column among the class scores.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Grid cells (output rows).
    pub fn cells(&self) -> usize {
        self.cells.len()
    }

    /// The least int8 objectness a cell needs to be decoded at all (128 when none can reach
    /// the threshold).
    pub fn objectness_gate_i8(&self) -> i32 {
        self.gate_i8
    }

    /// Decodes an int8 output. Replaces the contents of `out` with the detections, best
    /// first, boxes normalized to the model input (not clipped to it). Allocates nothing.
    pub fn decode_i8(&mut self, raw: &[i8], out: &mut Detections) -> Result<(), YoloxError> {
        let (scale, zp, gate) = (self.scale, self.zero_point, self.gate_i8);
        self.decode_with(
            raw,
            |q| (q as i32) >= gate,
            |q| scale * (q as i32 - zp) as f32,
            out,
        )
    }

    /// Decodes a uint8 output, as [`YoloxHead::decode_i8`].
    pub fn decode_u8(&mut self, raw: &[u8], out: &mut Detections) -> Result<(), YoloxError> {
        let (scale, zp, gate) = (self.scale, self.zero_point, self.gate_u8);
        self.decode_with(
            raw,
            |q| (q as i32) >= gate,
            |q| scale * (q as i32 - zp) as f32,
            out,
        )
    }

    /// Decodes a float32 output (real values; the quantization is not used), as
    /// [`YoloxHead::decode_i8`].
    pub fn decode_f32(&mut self, raw: &[f32], out: &mut Detections) -> Result<(), YoloxError> {
        let threshold = self.score_threshold;
        self.decode_with(raw, |v| probability(v) >= threshold, |v| v, out)
    }

    /// The decode: `passes` is the cheap objectness gate on the raw value (a necessary
    /// condition for the score to reach the threshold), `real` dequantizes.
    fn decode_with<T: Copy + PartialOrd>(
        &mut self,
        raw: &[T],
        passes: impl Fn(T) -> bool,
        real: impl Fn(T) -> f32,
        out: &mut Detections,
    ) -> Result<(), YoloxError> {
        let row_len = BOX_VALUES + self.num_classes;
        let expected = self.cells.len() * row_len;
        if raw.len() != expected {
            return Err(YoloxError::OutputLen {
                expected,
                got: raw.len(),
            });
        }
        self.candidates.clear();
        for (index, (row, cell)) in raw.chunks_exact(row_len).zip(&self.cells).enumerate() {
            if !passes(row[OBJECTNESS]) {
                continue;
            }
            // Dequantization is increasing, so the best raw value is the best class.
            let classes = &row[BOX_VALUES..];
            let mut best = 0;
            for (c, &v) in classes.iter().enumerate().skip(1) {
                if v > classes[best] {
                    best = c;
                }
            }
            let score = probability(real(row[OBJECTNESS])) * probability(real(classes[best]));
            // NaN fails `is_ge` too, so a NaN score is dropped.
            if !score
                .partial_cmp(&self.score_threshold)
                .is_some_and(|o| o.is_ge())
            {
                continue;
            }
            let s = cell.stride;
            let cx = (real(row[0]) + cell.x) * s * self.inv_w;
            let cy = (real(row[1]) + cell.y) * s * self.inv_h;
            let w = real(row[2]).exp() * s * self.inv_w;
            let h = real(row[3]).exp() * s * self.inv_h;
            if !(cx.is_finite() && cy.is_finite() && w.is_finite() && h.is_finite()) {
                continue;
            }
            // Capacity is the cell count, so this never reallocates.
            self.candidates.push(Candidate {
                class: best as u16,
                score,
                anchor: index as u32,
                bbox: BBox::from_center(cx, cy, w, h),
            });
        }
        out.clear();
        non_max_suppression(&mut self.candidates, &self.nms, self.max_detections, out);
        Ok(())
    }
}

/// A sigmoid output as a probability: quantization can round it a little past 1, and a
/// detection's score must stay in 0..=1.
#[inline]
fn probability(v: f32) -> f32 {
    v.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model in `../shared/models`: 320 x 320, 80 classes, int8 scale and zero point.
    const SHAPE: [usize; 3] = [1, 2100, 85];
    const QUANT: (f32, i32) = (0.026_599_208, -30);

    fn head(threshold: f32, max: usize) -> YoloxHead {
        YoloxHead::new(320, 320, &SHAPE, QUANT, threshold, 0.45, max).unwrap()
    }

    /// The int8 value nearest to `v`.
    fn q(v: f32) -> i8 {
        ((v / QUANT.0).round() as i32 + QUANT.1).clamp(-128, 127) as i8
    }

    fn deq(q: i8) -> f32 {
        QUANT.0 * (q as i32 - QUANT.1) as f32
    }

    /// An output where nothing is seen: objectness and every class at zero.
    fn silent() -> Vec<i8> {
        vec![q(0.0); 2100 * 85]
    }

    /// Cell `i` sees class `class` with these raw box values and probabilities.
    fn fire(out: &mut [i8], i: usize, [x, y, w, h]: [f32; 4], obj: f32, class: usize, p: f32) {
        let row = &mut out[i * 85..(i + 1) * 85];
        row[..5].copy_from_slice(&[q(x), q(y), q(w), q(h), q(obj)]);
        row[5 + class] = q(p);
    }

    #[test]
    fn cell_counts_follow_the_three_grids() {
        assert_eq!(cell_count(320, 320), Some(1600 + 400 + 100));
        assert_eq!(cell_count(416, 416), Some(3549));
        assert_eq!(cell_count(640, 384), Some(80 * 48 + 40 * 24 + 20 * 12));
        assert_eq!(cell_count(300, 300), None);
        assert_eq!(cell_count(0, 320), None);
        assert!(matches(320, 320, &[1, 2100, 85]));
        assert!(matches(320, 320, &[1, 2100, 6]));
        assert!(!matches(320, 320, &[1, 2100, 5]));
        assert!(!matches(320, 320, &[1, 2000, 85]));
        assert!(!matches(320, 320, &[2100, 85]));
        assert!(!matches(300, 300, &[1, 1917, 85]));
        // The SSD's outputs are not mistaken for YOLOX.
        assert!(!matches(300, 300, &[1, 10, 4]));
    }

    #[test]
    fn a_known_cell_gives_a_known_box() {
        let mut raw = silent();
        // Stride 16 grid (after the 1600 stride-8 cells), column 7, row 11.
        let cell = 1600 + 11 * 20 + 7;
        fire(&mut raw, cell, [0.5, 0.25, 1.0, 0.5], 0.9, 2, 0.8);
        let mut head = head(0.3, 10);
        let mut out = Detections::new();
        head.decode_i8(&raw, &mut out).unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        let d = out[0];
        assert_eq!(d.class, 2);
        let (x, y, w, h) = (deq(q(0.5)), deq(q(0.25)), deq(q(1.0)), deq(q(0.5)));
        assert!((d.score - deq(q(0.9)) * deq(q(0.8))).abs() < 1e-6);
        assert!((d.score - 0.72).abs() < 0.03);
        let want = BBox::from_center(
            (x + 7.0) * 16.0 / 320.0,
            (y + 11.0) * 16.0 / 320.0,
            w.exp() * 16.0 / 320.0,
            h.exp() * 16.0 / 320.0,
        );
        assert!(d.bbox.close_to(&want), "{:?} vs {want:?}", d.bbox);
        // About (7.5 * 16, 11.25 * 16) = (120, 180) px, 43 x 26 px.
        assert!((d.bbox.xmin - (120.0 - 21.75) / 320.0).abs() < 0.01);
        assert!((d.bbox.ymax - (180.0 + 13.2) / 320.0).abs() < 0.01);
        // Decoding again replaces, never appends.
        head.decode_i8(&raw, &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn strides_and_grids_are_in_output_order() {
        let mut head = head(0.3, 10);
        let mut out = Detections::new();
        // The first cell of each grid, and the last cell overall.
        for (cell, stride, gx, gy) in [
            (0, 8.0, 0.0, 0.0),
            (41, 8.0, 1.0, 1.0),
            (1600, 16.0, 0.0, 0.0),
            (2000, 32.0, 0.0, 0.0),
            (2099, 32.0, 9.0, 9.0),
        ] {
            let mut raw = silent();
            fire(&mut raw, cell, [0.0, 0.0, 0.0, 0.0], 1.0, 0, 1.0);
            head.decode_i8(&raw, &mut out).unwrap();
            assert_eq!(out.len(), 1);
            let want = BBox::from_center(
                gx * stride / 320.0,
                gy * stride / 320.0,
                stride / 320.0,
                stride / 320.0,
            );
            assert!(
                out[0].bbox.close_to(&want),
                "cell {cell}: {:?}",
                out[0].bbox
            );
        }
    }

    #[test]
    fn nms_suppresses_a_duplicate_of_any_class() {
        let mut raw = silent();
        // One car seen by two neighbouring stride-8 cells (boxes 8 px apart, 64 px wide),
        // the weaker one calling it a truck; another car far away.
        let size = (64.0f32 / 8.0).ln();
        fire(&mut raw, 20 * 40 + 10, [0.0, 0.0, size, size], 0.9, 2, 0.9);
        fire(&mut raw, 20 * 40 + 11, [0.0, 0.0, size, size], 0.8, 7, 0.9);
        fire(&mut raw, 2 * 40 + 30, [0.0, 0.0, size, size], 0.6, 2, 0.9);
        let mut out = Detections::new();
        head(0.3, 10).decode_i8(&raw, &mut out).unwrap();
        let got: Vec<(u16, usize)> = out
            .iter()
            .map(|d| (d.class, (d.bbox.xmin * 320.0).round() as usize))
            .collect();
        assert_eq!(got, [(2, 80 - 32), (2, 240 - 32)]);
        assert!(out[0].score > out[1].score);
    }

    #[test]
    fn threshold_gates_on_objectness_and_on_the_product() {
        let mut raw = silent();
        // 0.6 x 0.6 = 0.36: objectness passes the gate, the product does not.
        fire(&mut raw, 100, [0.0; 4], 0.6, 0, 0.6);
        // Objectness under the threshold: skipped however sure the class is.
        fire(&mut raw, 300, [0.0; 4], 0.45, 1, 1.0);
        // 0.9 x 0.7 = 0.63 passes.
        fire(&mut raw, 500, [0.0; 4], 0.9, 3, 0.7);
        let mut out = Detections::new();
        let mut h = head(0.5, 10);
        h.decode_i8(&raw, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class, 3);
        // The gate is the least int8 objectness at or above 0.5: 0.5 / 0.0266 - 30 = -11.2.
        assert_eq!(h.objectness_gate_i8(), -11);
        assert!(deq(-11) >= 0.5 && deq(-12) < 0.5);
        // A lower threshold lets the others through, in score order.
        head(0.3, 10).decode_i8(&raw, &mut out).unwrap();
        let classes: Vec<u16> = out.iter().map(|d| d.class).collect();
        assert_eq!(classes, [3, 1, 0]);
        // max_detections bounds the list.
        head(0.3, 2).decode_i8(&raw, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        // Threshold 1 keeps only certain ones; nothing here.
        head(1.0, 10).decode_i8(&raw, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn u8_and_f32_outputs_decode_alike() {
        let mut raw = silent();
        fire(&mut raw, 1234, [0.3, -0.2, 0.7, 1.1], 0.95, 9, 0.85);
        let mut want = Detections::new();
        let mut head = head(0.3, 10);
        head.decode_i8(&raw, &mut want).unwrap();
        assert_eq!(want.len(), 1);
        let real: Vec<f32> = raw.iter().map(|&v| deq(v)).collect();
        let mut got = Detections::new();
        head.decode_f32(&real, &mut got).unwrap();
        assert_eq!(got.len(), 1);
        assert!((got[0].score - want[0].score).abs() < 1e-6);
        assert!(got[0].bbox.close_to(&want[0].bbox));
        // The same values as uint8 with the zero point moved by 128.
        let mut u8_head =
            YoloxHead::new(320, 320, &SHAPE, (QUANT.0, QUANT.1 + 128), 0.3, 0.45, 10).unwrap();
        let as_u8: Vec<u8> = raw.iter().map(|&v| (v as i32 + 128) as u8).collect();
        u8_head.decode_u8(&as_u8, &mut got).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].class, 9);
        assert!((got[0].score - want[0].score).abs() < 1e-6);
        assert!(got[0].bbox.close_to(&want[0].bbox));
    }

    #[test]
    fn garbage_outputs_are_errors_or_dropped_never_panics() {
        let mut head = head(0.3, 10);
        let mut out = Detections::new();
        let raw = silent();
        let err = head.decode_i8(&raw[1..], &mut out).unwrap_err();
        assert_eq!(
            err,
            YoloxError::OutputLen {
                expected: 178_500,
                got: 178_499
            }
        );
        let mut real = vec![0f32; 2100 * 85];
        real[5 * 85..5 * 85 + 6].copy_from_slice(&[0.0, 0.0, f32::INFINITY, 0.0, 1.0, 1.0]);
        real[6 * 85..6 * 85 + 6].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, f32::NAN, 1.0]);
        real[7 * 85..7 * 85 + 6].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 1.0, f32::NAN]);
        real[8 * 85..8 * 85 + 6].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 2.0, 3.0]);
        head.decode_f32(&real, &mut out).unwrap();
        // Only the cell with out-of-range (clamped) probabilities survives, scored 1.
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 1.0);
    }

    #[test]
    fn wrong_shapes_and_parameters_are_errors() {
        let new = |w, h, shape: &[usize]| YoloxHead::new(w, h, shape, QUANT, 0.3, 0.45, 10);
        let err = new(320, 320, &[1, 2000, 85]).unwrap_err();
        assert!(matches!(err, YoloxError::OutputShape { cells: 2100, .. }));
        assert!(err.to_string().contains("YOLOX"), "{err}");
        assert!(err.to_string().contains("[1, 2000, 85]"), "{err}");
        assert!(matches!(
            new(300, 300, &SHAPE).unwrap_err(),
            YoloxError::InputSize { .. }
        ));
        assert!(new(320, 320, &[1, 2100, 5]).is_err());
        assert!(new(320, 320, &[2100, 85]).is_err());
        assert!(new(416, 416, &[1, 3549, 85]).is_ok());
        let p = |quant, score, iou, max| YoloxHead::new(320, 320, &SHAPE, quant, score, iou, max);
        assert!(p((0.0, 0), 0.3, 0.45, 10).is_err());
        assert!(p((f32::NAN, 0), 0.3, 0.45, 10).is_err());
        assert!(p(QUANT, 1.5, 0.45, 10).is_err());
        assert!(p(QUANT, 0.3, -0.1, 10).is_err());
        assert!(p(QUANT, 0.3, 0.45, 0).is_err());
        assert!(p(QUANT, 0.3, 0.45, 129).is_err());
        let head = p(QUANT, 0.3, 0.45, 10).unwrap();
        assert_eq!((head.cells(), head.num_classes()), (2100, 80));
    }

    #[test]
    fn family_choice() {
        let w = |f| wanted(f, 320, 320, &SHAPE);
        assert_eq!(w(ModelFamily::Auto), Ok(true));
        assert_eq!(w(ModelFamily::Yolox), Ok(true));
        assert_eq!(w(ModelFamily::Ssd), Ok(false));
        let ssd = [1, 10, 4];
        assert_eq!(wanted(ModelFamily::Auto, 320, 320, &ssd), Ok(false));
        assert!(wanted(ModelFamily::Yolox, 320, 320, &ssd).is_err());
        assert!(wanted(ModelFamily::Yolox, 300, 300, &SHAPE).is_err());
        let spec = input_spec(320, 320, InputKind::I8 { quant: None });
        assert!(spec.letterbox && spec.bgr && spec.mean.is_none());
    }
}
