//! SSD box decoding for raw-output models: anchor generation, box decoding, NMS.
//!
//! Follows MediaPipe's `SsdAnchorsCalculator`, `TensorsToDetectionsCalculator` and
//! `NonMaxSuppressionCalculator`, so a model such as BlazeFace decodes here as it does there.
//! Anchors and every buffer are made at start-up; [`RawSsdDecoder::decode`] allocates nothing.
//! The box and NMS helpers are public functions over slices so other raw-output heads (the
//! COCO SSD's 1917 anchors x 91 classes) can reuse them.

use crate::config::AnchorConfig;
use crate::geometry::BBox;
use crate::vision::detection::{Detection, Detections, MAX_DETECTIONS};

/// Most anchors a configuration may generate; far above any real SSD (BlazeFace: 896, COCO
/// SSD: 1917), low enough that a bad configuration cannot exhaust memory.
pub const MAX_ANCHORS: usize = 1 << 20;

/// Logits are clamped to this magnitude before the sigmoid, as MediaPipe's
/// `score_clipping_thresh` does for BlazeFace.
const LOGIT_CLAMP: f32 = 100.0;

/// Why anchors or a decoder could not be built, or a decode could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SsdError {
    /// A parameter is out of range; the message names it.
    #[error("ssd decoding: {0}")]
    Invalid(&'static str),
    /// The configuration would generate an unreasonable number of anchors.
    #[error("anchor configuration gives {count} anchors, more than {MAX_ANCHORS}")]
    TooManyAnchors {
        /// Anchors it would generate.
        count: u64,
    },
    /// The box regressor output does not have `anchors x box_coords` values.
    #[error("box regressors have {got} values, expected {expected} (anchors x coordinates)")]
    RegressorLen {
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// The score output does not have `anchors x classes` values.
    #[error("class scores have {got} values, expected {expected} (anchors x classes)")]
    ScoreLen {
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
}

/// One SSD anchor: a prior box in coordinates normalized to the model input.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Anchor {
    /// Centre, horizontal.
    pub cx: f32,
    /// Centre, vertical.
    pub cy: f32,
    /// Width (1 for fixed-size anchors, which leave the size to the regressor).
    pub w: f32,
    /// Height.
    pub h: f32,
}

/// Generates the anchors of MediaPipe's `SsdAnchorsCalculator` with `fixed_anchor_size`
/// (every anchor 1 x 1, as BlazeFace uses) and an anchor offset of 0.5.
///
/// Consecutive layers with the same stride share one feature map; each of its cells gets
/// `per_cell` anchors per layer, all centred on the cell. Order: layer group, row, column,
/// anchor, as the model's outputs are laid out. BlazeFace short range (strides 8, 16, 16, 16,
/// 2 per cell, 128 x 128) gives 16 x 16 x 2 + 8 x 8 x 6 = 896.
pub fn generate_anchors(
    cfg: &AnchorConfig,
    input_w: u32,
    input_h: u32,
) -> Result<Vec<Anchor>, SsdError> {
    if cfg.strides.is_empty() || cfg.strides.contains(&0) {
        return Err(SsdError::Invalid(
            "anchor strides must be given and non-zero",
        ));
    }
    if cfg.per_cell == 0 || input_w == 0 || input_h == 0 {
        return Err(SsdError::Invalid(
            "anchors per cell and the input size must be non-zero",
        ));
    }
    let groups = || {
        cfg.strides.chunk_by(|a, b| a == b).map(|group| {
            let stride = group[0];
            let (cols, rows) = (input_w.div_ceil(stride), input_h.div_ceil(stride));
            (cols, rows, cfg.per_cell as u64 * group.len() as u64)
        })
    };
    let count: u64 = groups().map(|(c, r, per)| c as u64 * r as u64 * per).sum();
    if count > MAX_ANCHORS as u64 {
        return Err(SsdError::TooManyAnchors { count });
    }
    let mut anchors = Vec::with_capacity(count as usize);
    for (cols, rows, per_cell) in groups() {
        for y in 0..rows {
            let cy = (y as f32 + 0.5) / rows as f32;
            for x in 0..cols {
                let cx = (x as f32 + 0.5) / cols as f32;
                for _ in 0..per_cell {
                    anchors.push(Anchor {
                        cx,
                        cy,
                        w: 1.0,
                        h: 1.0,
                    });
                }
            }
        }
    }
    Ok(anchors)
}

/// Order of the four box values at the start of each anchor's regressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxOrder {
    /// x centre, y centre, width, height (MediaPipe's `reverse_output_order`, BlazeFace).
    Xywh,
    /// y centre, x centre, height, width (TensorFlow Object Detection API SSDs).
    Yxhw,
}

/// How regressor values encode a box relative to its anchor (MediaPipe's
/// `TensorsToDetectionsCalculator` options).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxCoding {
    /// Order of the box values.
    pub order: BoxOrder,
    /// Divisor of the x centre offset.
    pub x_scale: f32,
    /// Divisor of the y centre offset.
    pub y_scale: f32,
    /// Divisor of the width value.
    pub w_scale: f32,
    /// Divisor of the height value.
    pub h_scale: f32,
    /// Sizes are `exp(value / scale) * anchor size` rather than `value / scale * anchor size`.
    pub exp_size: bool,
}

impl BoxCoding {
    /// BlazeFace-style coding: x, y, w, h in input pixels, `scale` being the input size.
    pub fn pixels(scale: f32) -> Self {
        let s = scale;
        BoxCoding {
            order: BoxOrder::Xywh,
            x_scale: s,
            y_scale: s,
            w_scale: s,
            h_scale: s,
            exp_size: false,
        }
    }

    /// The TensorFlow Object Detection API's SSD coding (scales 10, 10, 5, 5; y first; log
    /// sizes), as the COCO SSD's raw outputs use.
    pub fn tf_object_detection() -> Self {
        BoxCoding {
            order: BoxOrder::Yxhw,
            x_scale: 10.0,
            y_scale: 10.0,
            w_scale: 5.0,
            h_scale: 5.0,
            exp_size: true,
        }
    }

    fn is_valid(&self) -> bool {
        [self.x_scale, self.y_scale, self.w_scale, self.h_scale]
            .iter()
            .all(|s| s.is_finite() && *s > 0.0)
    }
}

/// Decodes one anchor's box from its first four regressor values.
#[inline]
pub fn decode_box(raw: [f32; 4], anchor: &Anchor, coding: &BoxCoding) -> BBox {
    let [x, y, w, h] = match coding.order {
        BoxOrder::Xywh => raw,
        BoxOrder::Yxhw => [raw[1], raw[0], raw[3], raw[2]],
    };
    let cx = x / coding.x_scale * anchor.w + anchor.cx;
    let cy = y / coding.y_scale * anchor.h + anchor.cy;
    let (w, h) = if coding.exp_size {
        (
            (w / coding.w_scale).exp() * anchor.w,
            (h / coding.h_scale).exp() * anchor.h,
        )
    } else {
        (w / coding.w_scale * anchor.w, h / coding.h_scale * anchor.h)
    };
    BBox::from_center(cx, cy, w, h)
}

/// The sigmoid of a logit clamped to +-100, as MediaPipe scores raw SSD outputs.
#[inline]
pub fn sigmoid_score(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)).exp())
}

/// A decoded box before non-maximum suppression.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Candidate {
    /// Class index.
    pub class: u16,
    /// Confidence in [0, 1].
    pub score: f32,
    /// Anchor the box came from (breaks score ties, so results do not depend on the sort).
    pub anchor: u32,
    /// Box normalized to the model input.
    pub bbox: BBox,
}

/// How non-maximum suppression treats overlapping boxes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NmsOptions {
    /// Boxes overlapping a kept box by more than this IoU are suppressed (or merged).
    pub iou_threshold: f32,
    /// MediaPipe's `WEIGHTED` algorithm: a kept box becomes the score-weighted mean of itself
    /// and the boxes it suppresses (its score stays the highest one's). Otherwise plain hard
    /// suppression.
    pub weighted: bool,
    /// Only boxes of the same class suppress each other.
    pub class_aware: bool,
}

/// Sorts `candidates` by descending score and suppresses overlaps, appending at most
/// `max_detections` results to `out` (fewer if it fills up). Reorders and overwrites
/// `candidates`; allocates nothing.
pub fn non_max_suppression(
    candidates: &mut [Candidate],
    opts: &NmsOptions,
    max_detections: usize,
    out: &mut Detections,
) {
    candidates.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.anchor.cmp(&b.anchor)));
    let mut len = candidates.len();
    let mut next = 0;
    let limit = out.len().saturating_add(max_detections);
    while next < len && out.len() < limit {
        let top = candidates[next];
        let mut merged = WeightedBox::new(&top);
        // Survivors move up behind the kept box, staying in score order.
        let mut kept = next + 1;
        for i in next + 1..len {
            let c = candidates[i];
            let same_class = !opts.class_aware || c.class == top.class;
            if same_class && c.bbox.iou(&top.bbox) > opts.iou_threshold {
                merged.add(&c);
            } else {
                candidates[kept] = c;
                kept += 1;
            }
        }
        let bbox = if opts.weighted {
            merged.mean().unwrap_or(top.bbox)
        } else {
            top.bbox
        };
        let detection = Detection {
            class: top.class,
            score: top.score,
            bbox,
        };
        if out.push(detection).is_err() {
            break;
        }
        len = kept;
        next += 1;
    }
}

/// Running score-weighted sum of box edges.
#[derive(Debug, Clone, Copy)]
struct WeightedBox {
    edges: [f32; 4],
    total: f32,
}

impl WeightedBox {
    fn new(c: &Candidate) -> Self {
        let mut w = WeightedBox {
            edges: [0.0; 4],
            total: 0.0,
        };
        w.add(c);
        w
    }

    fn add(&mut self, c: &Candidate) {
        let b = &c.bbox;
        for (sum, edge) in self.edges.iter_mut().zip([b.xmin, b.ymin, b.xmax, b.ymax]) {
            *sum += edge * c.score;
        }
        self.total += c.score;
    }

    fn mean(&self) -> Option<BBox> {
        (self.total > 0.0).then(|| {
            let [x0, y0, x1, y1] = self.edges.map(|e| e / self.total);
            BBox::new(x0, y0, x1, y1)
        })
    }
}

/// Decodes a raw-output SSD (box regressors + class logits per anchor) into detections, with
/// every buffer sized at start-up.
#[derive(Debug)]
pub struct RawSsdDecoder {
    anchors: Vec<Anchor>,
    num_classes: usize,
    box_coords: usize,
    coding: BoxCoding,
    nms: NmsOptions,
    score_threshold: f32,
    max_detections: usize,
    /// One slot per anchor: at most one candidate (its best class) per anchor.
    candidates: Vec<Candidate>,
}

impl RawSsdDecoder {
    /// A decoder for BlazeFace-style outputs: `box_coords` values per anchor (16 for
    /// BlazeFace: box then 6 keypoints, which are not decoded), pixel coding with `cfg.scale`,
    /// and `cfg`'s NMS. Anchors scoring below `score_threshold` are dropped; at most
    /// `max_detections` (up to [`MAX_DETECTIONS`]) are kept.
    pub fn new(
        anchors: Vec<Anchor>,
        num_classes: usize,
        box_coords: usize,
        cfg: &AnchorConfig,
        score_threshold: f32,
        max_detections: usize,
    ) -> Result<Self, SsdError> {
        let nms = NmsOptions {
            iou_threshold: cfg.nms_iou,
            weighted: cfg.weighted_nms,
            class_aware: false,
        };
        let coding = BoxCoding::pixels(cfg.scale);
        let decoder = Self::with_coding(anchors, num_classes, box_coords, coding, nms)?;
        decoder.thresholds(score_threshold, max_detections)
    }

    /// A decoder with an explicit box coding and NMS; score threshold 0.5 and
    /// [`MAX_DETECTIONS`] until [`RawSsdDecoder::thresholds`] sets them.
    pub fn with_coding(
        anchors: Vec<Anchor>,
        num_classes: usize,
        box_coords: usize,
        coding: BoxCoding,
        nms: NmsOptions,
    ) -> Result<Self, SsdError> {
        if anchors.is_empty() || anchors.len() > MAX_ANCHORS {
            return Err(SsdError::Invalid("the decoder needs 1 to 2^20 anchors"));
        }
        if num_classes == 0 || num_classes > u16::MAX as usize + 1 {
            return Err(SsdError::Invalid(
                "the number of classes must be 1 to 65536",
            ));
        }
        if box_coords < 4 {
            return Err(SsdError::Invalid(
                "each anchor needs at least 4 box coordinates",
            ));
        }
        if !coding.is_valid() {
            return Err(SsdError::Invalid("box coding scales must be positive"));
        }
        if !(0.0..=1.0).contains(&nms.iou_threshold) {
            return Err(SsdError::Invalid("the NMS IoU threshold must be in 0..=1"));
        }
        let candidates = Vec::with_capacity(anchors.len());
        Ok(RawSsdDecoder {
            anchors,
            num_classes,
            box_coords,
            coding,
            nms,
            score_threshold: 0.5,
            max_detections: MAX_DETECTIONS,
            candidates,
        })
    }

    /// Sets the least score kept (in 0..=1) and the most detections per frame (1 to
    /// [`MAX_DETECTIONS`]).
    pub fn thresholds(
        mut self,
        score_threshold: f32,
        max_detections: usize,
    ) -> Result<Self, SsdError> {
        if !(0.0..=1.0).contains(&score_threshold) {
            return Err(SsdError::Invalid("the score threshold must be in 0..=1"));
        }
        if max_detections == 0 || max_detections > MAX_DETECTIONS {
            return Err(SsdError::Invalid("max detections must be 1 to 128"));
        }
        self.score_threshold = score_threshold;
        self.max_detections = max_detections;
        Ok(self)
    }

    /// The anchors, in output order.
    pub fn anchors(&self) -> &[Anchor] {
        &self.anchors
    }

    /// Decodes one inference: `regressors` holds `anchors x box_coords` values, `scores`
    /// `anchors x num_classes` logits. Replaces the contents of `out` with the detections,
    /// boxes normalized to the model input (not clipped to it). Allocates nothing.
    pub fn decode(
        &mut self,
        regressors: &[f32],
        scores: &[f32],
        out: &mut Detections,
    ) -> Result<(), SsdError> {
        let n = self.anchors.len();
        let expected = n * self.box_coords;
        if regressors.len() != expected {
            return Err(SsdError::RegressorLen {
                expected,
                got: regressors.len(),
            });
        }
        let expected = n * self.num_classes;
        if scores.len() != expected {
            return Err(SsdError::ScoreLen {
                expected,
                got: scores.len(),
            });
        }
        self.candidates.clear();
        let per_anchor = regressors
            .chunks_exact(self.box_coords)
            .zip(scores.chunks_exact(self.num_classes))
            .zip(&self.anchors);
        for (index, ((raw, logits), anchor)) in per_anchor.enumerate() {
            // The sigmoid is monotonic: the best logit gives the best score.
            let (class, logit) =
                logits
                    .iter()
                    .copied()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (c, l)| {
                        if l > best.1 {
                            (c, l)
                        } else {
                            best
                        }
                    });
            // NaN logits never win the fold above, so `score` is a number.
            let score = sigmoid_score(logit);
            if score < self.score_threshold {
                continue;
            }
            let bbox = decode_box([raw[0], raw[1], raw[2], raw[3]], anchor, &self.coding);
            if ![bbox.xmin, bbox.ymin, bbox.xmax, bbox.ymax]
                .iter()
                .all(|v| v.is_finite())
            {
                continue;
            }
            // Capacity is the anchor count, so this never reallocates.
            self.candidates.push(Candidate {
                class: class as u16,
                score,
                anchor: index as u32,
                bbox,
            });
        }
        out.clear();
        non_max_suppression(&mut self.candidates, &self.nms, self.max_detections, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blazeface() -> AnchorConfig {
        AnchorConfig {
            strides: vec![8, 16, 16, 16],
            per_cell: 2,
            scale: 128.0,
            nms_iou: 0.3,
            weighted_nms: true,
        }
    }

    fn decoder(weighted: bool, max: usize) -> RawSsdDecoder {
        let cfg = AnchorConfig {
            weighted_nms: weighted,
            ..blazeface()
        };
        let anchors = generate_anchors(&cfg, 128, 128).unwrap();
        RawSsdDecoder::new(anchors, 1, 16, &cfg, 0.5, max).unwrap()
    }

    /// Outputs where every anchor scores far below any threshold.
    fn silent() -> (Vec<f32>, Vec<f32>) {
        (vec![0.0; 896 * 16], vec![-50.0; 896])
    }

    /// Makes anchor `i` fire with `logit`, moved by (dx, dy) pixels, sized w x h pixels.
    fn fire(out: &mut (Vec<f32>, Vec<f32>), i: usize, logit: f32, [dx, dy, w, h]: [f32; 4]) {
        out.0[i * 16..i * 16 + 4].copy_from_slice(&[dx, dy, w, h]);
        out.1[i] = logit;
    }

    #[test]
    fn blazeface_anchors_match_mediapipe() {
        let anchors = generate_anchors(&blazeface(), 128, 128).unwrap();
        assert_eq!(anchors.len(), 896);
        let at = |i: usize| (anchors[i].cx, anchors[i].cy, anchors[i].w, anchors[i].h);
        // Values of MediaPipe's anchors for face_detection_short_range.
        assert_eq!(at(0), (0.03125, 0.03125, 1.0, 1.0));
        assert_eq!(at(1), (0.03125, 0.03125, 1.0, 1.0));
        assert_eq!(at(2), (0.09375, 0.03125, 1.0, 1.0));
        assert_eq!(at(32), (0.03125, 0.09375, 1.0, 1.0));
        assert_eq!(at(511), (0.96875, 0.96875, 1.0, 1.0));
        // The three stride-16 layers share one 8 x 8 grid, 6 anchors a cell.
        assert_eq!(at(512), (0.0625, 0.0625, 1.0, 1.0));
        assert_eq!(at(517), (0.0625, 0.0625, 1.0, 1.0));
        assert_eq!(at(518), (0.1875, 0.0625, 1.0, 1.0));
        assert_eq!(at(895), (0.9375, 0.9375, 1.0, 1.0));
    }

    #[test]
    fn anchor_configs_that_cannot_work_are_errors() {
        let bad = AnchorConfig {
            strides: vec![],
            ..blazeface()
        };
        assert!(matches!(
            generate_anchors(&bad, 128, 128),
            Err(SsdError::Invalid(_))
        ));
        let bad = AnchorConfig {
            strides: vec![8, 0],
            ..blazeface()
        };
        assert!(matches!(
            generate_anchors(&bad, 128, 128),
            Err(SsdError::Invalid(_))
        ));
        assert!(generate_anchors(&blazeface(), 0, 128).is_err());
        let huge = AnchorConfig {
            strides: vec![1],
            per_cell: 16,
            ..blazeface()
        };
        let err = generate_anchors(&huge, 4096, 4096).unwrap_err();
        assert!(matches!(err, SsdError::TooManyAnchors { .. }));
        // Non-square inputs round partial cells up, as MediaPipe does.
        let cfg = AnchorConfig {
            strides: vec![16],
            per_cell: 1,
            ..blazeface()
        };
        assert_eq!(generate_anchors(&cfg, 100, 40).unwrap().len(), 7 * 3);
    }

    #[test]
    fn decodes_boxes_relative_to_their_anchor() {
        let mut outputs = silent();
        // Anchor 512 sits at (0.0625, 0.0625); move it 12.8 px right, 25.6 px down.
        fire(&mut outputs, 512, 3.0, [12.8, 25.6, 32.0, 64.0]);
        let mut dec = decoder(true, 10);
        let mut out = Detections::new();
        dec.decode(&outputs.0, &outputs.1, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let d = out[0];
        assert_eq!(d.class, 0);
        assert!((d.score - sigmoid_score(3.0)).abs() < 1e-6);
        assert!((d.score - 0.952_574_1).abs() < 1e-6);
        let want = BBox::from_center(0.0625 + 0.1, 0.0625 + 0.2, 0.25, 0.5);
        assert!(d.bbox.close_to(&want), "{:?}", d.bbox);
        // Decoding again replaces, never appends.
        dec.decode(&outputs.0, &outputs.1, &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn tf_coding_reads_y_first_and_log_sizes() {
        let anchor = Anchor {
            cx: 0.5,
            cy: 0.4,
            w: 0.2,
            h: 0.1,
        };
        let coding = BoxCoding::tf_object_detection();
        // ty = 1 -> +0.1 * h; tx = 2 -> +0.2 * w; th = tw = 0 -> anchor size.
        let b = decode_box([1.0, 2.0, 0.0, 5.0 * 2f32.ln()], &anchor, &coding);
        let want = BBox::from_center(0.5 + 0.04, 0.4 + 0.01, 0.4, 0.1);
        assert!(b.close_to(&want), "{b:?}");
    }

    #[test]
    fn weighted_nms_blends_overlaps_and_keeps_disjoint_boxes() {
        let mut outputs = silent();
        // Two anchors of one cell seeing the same face, shifted by 2 px; one far away.
        fire(&mut outputs, 512 + 6 * 9, 2.0, [0.0, 0.0, 32.0, 32.0]);
        fire(&mut outputs, 512 + 6 * 9 + 1, 1.0, [2.56, 0.0, 32.0, 32.0]);
        fire(&mut outputs, 895, 0.5, [0.0, 0.0, 16.0, 16.0]);
        let mut out = Detections::new();
        decoder(true, 10)
            .decode(&outputs.0, &outputs.1, &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        let (s_hi, s_lo) = (sigmoid_score(2.0), sigmoid_score(1.0));
        assert_eq!(out[0].score, s_hi);
        // The blend moves the box towards the weaker one by its share of the score.
        let cx = 0.1875 + 0.02 * s_lo / (s_hi + s_lo);
        let want = BBox::from_center(cx, 0.1875, 0.25, 0.25);
        assert!(out[0].bbox.close_to(&want), "{:?} vs {want:?}", out[0].bbox);
        assert_eq!(out[1].score, sigmoid_score(0.5));
        assert!(out[1]
            .bbox
            .close_to(&BBox::from_center(0.9375, 0.9375, 0.125, 0.125)));

        // Hard NMS keeps the strongest box as it is.
        decoder(false, 10)
            .decode(&outputs.0, &outputs.1, &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0]
            .bbox
            .close_to(&BBox::from_center(0.1875, 0.1875, 0.25, 0.25)));
    }

    #[test]
    fn score_threshold_and_max_detections_bound_the_output() {
        let mut outputs = silent();
        // Ten disjoint faces along the stride-8 grid, scores falling with the index.
        for k in 0..10 {
            fire(
                &mut outputs,
                2 * (2 * k),
                3.0 - 0.1 * k as f32,
                [0.0, 0.0, 8.0, 8.0],
            );
        }
        // Just under the threshold: sigmoid(-0.01) < 0.5.
        fire(&mut outputs, 200, -0.01, [0.0, 0.0, 8.0, 8.0]);
        let mut out = Detections::new();
        decoder(true, 100)
            .decode(&outputs.0, &outputs.1, &mut out)
            .unwrap();
        assert_eq!(out.len(), 10);
        assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
        decoder(true, 3)
            .decode(&outputs.0, &outputs.1, &mut out)
            .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].score, sigmoid_score(3.0));
        assert_eq!(out[2].score, sigmoid_score(2.8));
    }

    #[test]
    fn class_aware_nms_keeps_overlapping_boxes_of_other_classes() {
        let b = BBox::new(0.1, 0.1, 0.5, 0.5);
        let c = |class, score, anchor| Candidate {
            class,
            score,
            anchor,
            bbox: b,
        };
        let mut cands = [c(1, 0.6, 0), c(2, 0.9, 1), c(1, 0.8, 2)];
        let mut out = Detections::new();
        let opts = NmsOptions {
            iou_threshold: 0.5,
            weighted: false,
            class_aware: true,
        };
        non_max_suppression(&mut cands, &opts, 10, &mut out);
        let got: Vec<(u16, f32)> = out.iter().map(|d| (d.class, d.score)).collect();
        assert_eq!(got, [(2, 0.9), (1, 0.8)]);
        let mut cands = [c(1, 0.6, 0), c(2, 0.9, 1), c(1, 0.8, 2)];
        out.clear();
        let opts = NmsOptions {
            class_aware: false,
            ..opts
        };
        non_max_suppression(&mut cands, &opts, 10, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn garbage_outputs_are_errors_or_dropped_never_panics() {
        let (reg, scores) = silent();
        let mut dec = decoder(true, 10);
        let mut out = Detections::new();
        let err = dec.decode(&reg[1..], &scores, &mut out).unwrap_err();
        assert_eq!(
            err,
            SsdError::RegressorLen {
                expected: 14336,
                got: 14335
            }
        );
        let err = dec.decode(&reg, &scores[..895], &mut out).unwrap_err();
        assert_eq!(
            err,
            SsdError::ScoreLen {
                expected: 896,
                got: 895
            }
        );
        let mut outputs = silent();
        fire(&mut outputs, 3, f32::NAN, [0.0; 4]);
        fire(&mut outputs, 4, 5.0, [f32::INFINITY, 0.0, 1.0, 1.0]);
        fire(&mut outputs, 5, f32::INFINITY, [0.0, 0.0, 8.0, 8.0]);
        dec.decode(&outputs.0, &outputs.1, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 1.0);
    }

    #[test]
    fn decoder_parameters_are_checked() {
        let anchors = || generate_anchors(&blazeface(), 128, 128).unwrap();
        let cfg = blazeface();
        assert!(RawSsdDecoder::new(vec![], 1, 16, &cfg, 0.5, 10).is_err());
        assert!(RawSsdDecoder::new(anchors(), 0, 16, &cfg, 0.5, 10).is_err());
        assert!(RawSsdDecoder::new(anchors(), 1, 3, &cfg, 0.5, 10).is_err());
        assert!(RawSsdDecoder::new(anchors(), 1, 16, &cfg, 1.5, 10).is_err());
        assert!(RawSsdDecoder::new(anchors(), 1, 16, &cfg, 0.5, 0).is_err());
        assert!(RawSsdDecoder::new(anchors(), 1, 16, &cfg, 0.5, 129).is_err());
        let zero_scale = AnchorConfig {
            scale: 0.0,
            ..blazeface()
        };
        assert!(RawSsdDecoder::new(anchors(), 1, 16, &zero_scale, 0.5, 10).is_err());
        let bad_iou = AnchorConfig {
            nms_iou: f32::NAN,
            ..blazeface()
        };
        assert!(RawSsdDecoder::new(anchors(), 1, 16, &bad_iou, 0.5, 10).is_err());
        assert_eq!(
            RawSsdDecoder::new(anchors(), 1, 16, &cfg, 0.5, 10)
                .unwrap()
                .anchors()
                .len(),
            896
        );
    }
}
