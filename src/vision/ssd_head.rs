//! The SSD detector head in Rust, in place of TFLite's `TFLite_Detection_PostProcess` op.
//!
//! TensorFlow's Object Detection API exports an SSD as per-head box encodings and class
//! logits, concatenated (`CONCATENATION`), squashed (`LOGISTIC`) and handed with constant
//! anchors to the post-process op. That tail allocates on every invoke (the op's NMS builds
//! `std::vector`s; quantized concatenation builds its tensor lists) and caps the output at the
//! exporter's `max_detections` (10). [`recognise`] finds that structure in the flatbuffer,
//! [`cut`] removes it so the interpreter stops at the per-head uint8 outputs, and
//! [`QuantizedSsdHead`] does the rest with buffers sized at load:
//!
//! - the score threshold becomes one byte comparison per class: each head's logits go through
//!   a 256-entry sigmoid table, monotonic in the byte, so "score >= threshold" is
//!   "byte >= the first byte whose score reaches it";
//! - the heads are read in order as one logical concatenation, without copying;
//! - only anchors that pass are dequantized and decoded ([`decode_box`], shared with the
//!   BlazeFace decoder), then [`non_max_suppression`] keeps up to the configured maximum.
//!
//! The op's parameters come from its FlexBuffer custom options, the anchors from the model's
//! constant buffer, so the results match the op's (same classes, scores and boxes within
//! quantization error) up to its 10; past it this head keeps going.

use tflite::model::stl::vector::{VectorErase, VectorInsert, VectorSlice};
use tflite::model::{BuiltinOperator, Model, SubGraphT, TensorT, TensorType};

use super::detection::{Detection, Detections, MAX_DETECTIONS};
use super::flexbuffer::FlexMap;
use super::ssd::{decode_box, non_max_suppression, Anchor, BoxCoding, BoxOrder, Candidate};
use super::ssd::{NmsOptions, SsdError};

/// Custom code of the op this head replaces.
pub const POSTPROCESS_OP: &str = "TFLite_Detection_PostProcess";

/// The op's default when its options leave `detections_per_class` out (TFLite's
/// `kNumDetectionsPerClass`).
const DEFAULT_DETECTIONS_PER_CLASS: usize = 100;

/// Parameters of `TFLite_Detection_PostProcess`, from its custom options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PostProcessOptions {
    /// Detections the op outputs (the exporter's cap; this head uses the configured one).
    pub max_detections: usize,
    /// Classes reported per box in fast NMS.
    pub max_classes_per_detection: usize,
    /// Detections kept per class in regular NMS.
    pub detections_per_class: usize,
    /// Regular NMS (per class) rather than fast NMS (one class per box, class-agnostic).
    pub use_regular_nms: bool,
    /// Least score the op considers.
    pub score_threshold: f32,
    /// Boxes overlapping a kept one by more than this IoU are suppressed.
    pub iou_threshold: f32,
    /// Classes, background excluded.
    pub num_classes: usize,
    /// Box coding scales.
    pub y_scale: f32,
    /// See `y_scale`.
    pub x_scale: f32,
    /// See `y_scale`.
    pub h_scale: f32,
    /// See `y_scale`.
    pub w_scale: f32,
}

/// Largest `max_detections` and `detections_per_class` accepted: exporters use 10 to 100;
/// the op sizes its outputs and NMS vectors by them, so a corrupt huge value must not reach it.
const MAX_OP_DETECTIONS: usize = 1000;
/// Largest `num_classes` accepted (COCO has 90; Open Images 601).
const MAX_OP_CLASSES: usize = 10_000;
/// Largest box-coding scale accepted (exporters use 5 and 10).
const MAX_OP_SCALE: f32 = 1000.0;

impl PostProcessOptions {
    /// Reads the op's FlexBuffer options and range-checks every one, because TensorFlow Lite's
    /// op trusts them (a corrupt count crashes it or fails every invoke). Every key the op
    /// requires must be there; the two it defaults (`detections_per_class`,
    /// `use_regular_nms`) get the op's defaults. The error names the option.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let map = FlexMap::parse(bytes).map_err(|e| e.to_string())?;
        let get = |key: &str| map.get(key).map_err(|e| format!("{key}: {e}"));
        let int = |key: &str, max: usize| -> Result<usize, String> {
            let v = get(key)?
                .ok_or(format!("custom options lack `{key}`"))?
                .as_i64()
                .ok_or(format!("custom option `{key}` is not a number"))?;
            usize::try_from(v)
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or(format!("custom option `{key}` = {v} is not in 1..={max}"))
        };
        let float = |key: &str, range: std::ops::RangeInclusive<f32>| -> Result<f32, String> {
            let v = get(key)?
                .ok_or(format!("custom options lack `{key}`"))?
                .as_f64()
                .ok_or(format!("custom option `{key}` is not a number"))?
                as f32;
            if range.contains(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "custom option `{key}` = {v} is not in {}..={}",
                    range.start(),
                    range.end()
                ))
            }
        };
        let detections_per_class = match get("detections_per_class")? {
            None => DEFAULT_DETECTIONS_PER_CLASS,
            Some(_) => int("detections_per_class", MAX_OP_DETECTIONS)?,
        };
        let use_regular_nms = match get("use_regular_nms")? {
            None => false,
            Some(v) => v
                .as_bool()
                .ok_or("custom option `use_regular_nms` is not a bool")?,
        };
        let num_classes = int("num_classes", MAX_OP_CLASSES)?;
        // A scale of 0 divides by zero in the op; the smallest positive f32 is as bad.
        let scale = |key: &str| float(key, 1e-3..=MAX_OP_SCALE);
        Ok(PostProcessOptions {
            max_detections: int("max_detections", MAX_OP_DETECTIONS)?,
            max_classes_per_detection: int("max_classes_per_detection", num_classes)?,
            detections_per_class,
            use_regular_nms,
            score_threshold: float("nms_score_threshold", 0.0..=1.0)?,
            iou_threshold: float("nms_iou_threshold", 1e-3..=1.0)?,
            num_classes,
            y_scale: scale("y_scale")?,
            x_scale: scale("x_scale")?,
            h_scale: scale("h_scale")?,
            w_scale: scale("w_scale")?,
        })
    }

    /// The box coding these options describe (TF's centre-size encoding: y, x, h, w).
    pub fn coding(&self) -> BoxCoding {
        BoxCoding {
            order: BoxOrder::Yxhw,
            x_scale: self.x_scale,
            y_scale: self.y_scale,
            w_scale: self.w_scale,
            h_scale: self.h_scale,
            exp_size: true,
        }
    }
}

/// Affine quantization of a uint8 tensor: real = scale * (byte - zero_point).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quant {
    /// Step between two byte values.
    pub scale: f32,
    /// Byte value of 0.
    pub zero_point: i32,
}

impl Quant {
    /// The real value of `q`.
    #[inline]
    pub fn real(&self, q: u8) -> f32 {
        self.scale * (q as i32 - self.zero_point) as f32
    }
}

/// One prediction head: its box-encoding and class-score tensors and how many anchors it
/// covers, in the order the concatenation lays them out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadTensors {
    /// Tensor index of the box encodings (`anchors x 4` bytes).
    pub boxes: i32,
    /// Tensor index of the class logits (`anchors x classes with background` bytes).
    pub scores: i32,
    /// Anchors of this head.
    pub anchors: usize,
    /// Quantization of the box encodings.
    pub box_quant: Quant,
    /// Quantization of the class logits.
    pub score_quant: Quant,
}

/// What [`recognise`] found: everything needed to cut the graph and decode its heads.
#[derive(Debug, Clone)]
pub struct SsdGraph {
    /// The op's parameters.
    pub options: PostProcessOptions,
    /// Prediction heads, in anchor order.
    pub heads: Vec<HeadTensors>,
    /// Anchors (dequantized), in output order.
    pub anchors: Vec<Anchor>,
    /// Score columns per anchor, background included.
    pub classes_with_background: usize,
    /// The scores pass through a `LOGISTIC` op (cut too, so the head applies the sigmoid).
    pub sigmoid: bool,
    /// Operator indices the cut removes.
    removed: Vec<usize>,
}

fn opcode(model: &Model, op: usize) -> Option<(BuiltinOperator, String)> {
    let op = model.subgraphs.first()?.operators.get(op)?;
    let code = model.operator_codes.get(op.opcode_index as usize)?;
    let custom = code.custom_code.c_str().to_string_lossy().into_owned();
    Some((code.builtin_code, custom))
}

fn tensor(graph: &SubGraphT, index: i32) -> Result<&TensorT, String> {
    usize::try_from(index)
        .ok()
        .and_then(|i| graph.tensors.get(i))
        .map(|t| &**t)
        .ok_or(format!("tensor {index} is out of range"))
}

/// The operator that writes `tensor`, if any.
fn producer(graph: &SubGraphT, tensor: i32) -> Option<usize> {
    graph
        .operators
        .iter()
        .position(|op| op.outputs.as_slice().contains(&tensor))
}

fn quant(t: &TensorT) -> Result<Quant, String> {
    let name = t.name.c_str().to_string_lossy();
    if t.typ != TensorType::TensorType_UINT8 || !t.quantization.is_valid() {
        return Err(format!("tensor `{name}` is not quantized uint8"));
    }
    let q = &t.quantization;
    match (q.scale.as_slice(), q.zero_point.as_slice()) {
        (&[scale], &[zp]) if scale.is_finite() && scale > 0.0 && (0..=255).contains(&zp) => {
            Ok(Quant {
                scale,
                zero_point: zp as i32,
            })
        }
        _ => Err(format!("tensor `{name}` has no single positive scale")),
    }
}

/// Follows `tensor` back through the ops in `through` (each optional, in that order) to a
/// `CONCATENATION`, recording every op passed; returns the concatenation's inputs.
fn concat_inputs(
    model: &Model,
    mut tensor: i32,
    through: &[BuiltinOperator],
    removed: &mut Vec<usize>,
    passed: &mut Vec<BuiltinOperator>,
) -> Result<Vec<i32>, String> {
    let graph = &model.subgraphs[0];
    let mut allowed = through.iter();
    loop {
        let op = producer(graph, tensor).ok_or("an input of the op has no producer")?;
        let (code, _) = opcode(model, op).ok_or("operator code out of range")?;
        removed.push(op);
        let inputs = graph.operators[op].inputs.as_slice();
        if code == BuiltinOperator::BuiltinOperator_CONCATENATION {
            return Ok(inputs.to_vec());
        }
        if !allowed.any(|&c| c == code) {
            return Err(format!("{code:?} between the heads and the op"));
        }
        passed.push(code);
        tensor = *inputs.first().ok_or("an op without inputs")?;
    }
}

/// Checks every `TFLite_Detection_PostProcess` op of `model` before TensorFlow Lite or LiteRT
/// may run it: its options in range ([`PostProcessOptions::parse`]) and its inputs of the
/// shapes its C++ code assumes without checking: box encodings `[1, N, >=4]`, class scores
/// `[1, N, C]` with `num_classes <= C <= num_classes + 1`, constant anchors `[N, 4]`.
/// The FlatBuffer verifier looks inside none of this. Returns the first op's options.
pub fn check_ops(model: &Model) -> Result<Option<PostProcessOptions>, String> {
    let Some(graph) = model.subgraphs.first() else {
        return Ok(None);
    };
    let mut first = None;
    for (i, op) in graph.operators.iter().enumerate() {
        let is_op = opcode(model, i).is_some_and(|(code, name)| {
            code == BuiltinOperator::BuiltinOperator_CUSTOM && name == POSTPROCESS_OP
        });
        if !is_op {
            continue;
        }
        let checked =
            check_op(model, op).map_err(|e| format!("{POSTPROCESS_OP} (operator {i}): {e}"))?;
        first.get_or_insert(checked);
    }
    Ok(first)
}

fn check_op(model: &Model, op: &tflite::model::OperatorT) -> Result<PostProcessOptions, String> {
    let graph = &model.subgraphs[0];
    let (&[boxes, scores, anchors], 4) = (op.inputs.as_slice(), op.outputs.len()) else {
        return Err("the op does not have 3 inputs and 4 outputs".into());
    };
    let options = PostProcessOptions::parse(op.custom_options.as_slice())?;
    let shape = |index: i32, what: &str| -> Result<Vec<i32>, String> {
        let t = tensor(graph, index).map_err(|e| format!("{what}: {e}"))?;
        let ok_type = matches!(
            t.typ,
            TensorType::TensorType_UINT8 | TensorType::TensorType_FLOAT32
        );
        if !ok_type {
            return Err(format!("{what} are {:?}, not uint8 or float32", t.typ));
        }
        Ok(t.shape.as_slice().to_vec())
    };
    let (bs, ss, a) = (
        shape(boxes, "box encodings")?,
        shape(scores, "class scores")?,
        shape(anchors, "anchors")?,
    );
    let n = match (bs.as_slice(), ss.as_slice(), a.as_slice()) {
        (&[1, n, coords], &[1, m, _], &[k, 4]) if n > 0 && n == m && n == k && coords >= 4 => n,
        _ => {
            return Err(format!(
                "inputs of shapes {bs:?}, {ss:?} and {a:?}, not [1, N, 4+], [1, N, C] and [N, 4]"
            ))
        }
    };
    let columns = ss[2].max(0) as usize;
    if !(options.num_classes..=options.num_classes + 1).contains(&columns) {
        return Err(format!(
            "custom option `num_classes` = {} does not fit the {columns} score columns",
            options.num_classes
        ));
    }
    let read = read_anchors(model, anchors)?;
    if read.len() != n as usize {
        return Err(format!("{} anchors for {n} boxes", read.len()));
    }
    Ok(options)
}

/// Looks for the TensorFlow Object Detection API's SSD tail. `Ok(None)`: the model has no
/// post-process op. `Err`: it has one, but not in a shape this head can replace (the reason
/// says why; the caller keeps the op).
pub fn recognise(model: &Model) -> Result<Option<SsdGraph>, String> {
    use BuiltinOperator::*;
    let graph = model.subgraphs.first().ok_or("the model has no subgraph")?;
    let Some(pp) = (0..graph.operators.len()).find(|&i| {
        opcode(model, i)
            .is_some_and(|(code, name)| code == BuiltinOperator_CUSTOM && name == POSTPROCESS_OP)
    }) else {
        return Ok(None);
    };
    let op = &graph.operators[pp];
    let (&[boxes, scores, anchors], 4) = (op.inputs.as_slice(), op.outputs.len()) else {
        return Err("the op does not have 3 inputs and 4 outputs".into());
    };
    let mut outs = graph.outputs.as_slice().to_vec();
    let mut op_outs = op.outputs.as_slice().to_vec();
    outs.sort_unstable();
    op_outs.sort_unstable();
    if outs != op_outs {
        return Err("the model's outputs are not exactly the op's".into());
    }
    let options = PostProcessOptions::parse(op.custom_options.as_slice())?;
    if !options.use_regular_nms && options.max_classes_per_detection != 1 {
        return Err(format!(
            "fast NMS with {} classes per box is not supported",
            options.max_classes_per_detection
        ));
    }

    let mut removed = vec![pp];
    let mut passed = Vec::new();
    let box_heads = concat_inputs(
        model,
        boxes,
        &[BuiltinOperator_RESHAPE],
        &mut removed,
        &mut passed,
    )?;
    passed.clear();
    let score_heads = concat_inputs(
        model,
        scores,
        &[
            BuiltinOperator_RESHAPE,
            BuiltinOperator_LOGISTIC,
            BuiltinOperator_RESHAPE,
        ],
        &mut removed,
        &mut passed,
    )?;
    let sigmoid = passed.contains(&BuiltinOperator_LOGISTIC);
    // Nothing outside the cut may read what the cut removes.
    let cut_outputs: Vec<i32> = removed
        .iter()
        .flat_map(|&i| graph.operators[i].outputs.as_slice().to_vec())
        .collect();
    for (i, op) in graph.operators.iter().enumerate() {
        if !removed.contains(&i) && op.inputs.iter().any(|t| cut_outputs.contains(t)) {
            return Err(format!("operator {i} reads an output of the SSD tail"));
        }
    }

    let anchors = read_anchors(model, anchors)?;
    if box_heads.len() != score_heads.len() || box_heads.is_empty() {
        return Err("box and score heads do not pair up".into());
    }
    let classes_with_background = score_heads
        .first()
        .map(|&t| tensor(graph, t))
        .transpose()?
        .and_then(|t| t.shape.as_slice().last().copied())
        .and_then(|c| usize::try_from(c).ok())
        .ok_or("score heads have no class dimension")?;
    if classes_with_background < options.num_classes + 1 || options.num_classes == 0 {
        return Err(format!(
            "{classes_with_background} score columns for {} classes and background",
            options.num_classes
        ));
    }
    let mut heads = Vec::with_capacity(box_heads.len());
    for (&b, &s) in box_heads.iter().zip(&score_heads) {
        let (bt, st) = (tensor(graph, b)?, tensor(graph, s)?);
        let (bs, ss) = (bt.shape.as_slice(), st.shape.as_slice());
        let n = match (bs, ss) {
            (&[1, n, ..], &[1, m, c]) if n == m && c as usize == classes_with_background => n,
            _ => return Err(format!("head shapes {bs:?} and {ss:?} do not match")),
        };
        let n = usize::try_from(n).map_err(|_| "negative head size")?;
        let values: i64 = bs.iter().map(|&d| d as i64).product();
        if values != 4 * n as i64 {
            return Err(format!("box head shape {bs:?} is not anchors x 4"));
        }
        heads.push(HeadTensors {
            boxes: b,
            scores: s,
            anchors: n,
            box_quant: quant(bt)?,
            score_quant: quant(st)?,
        });
    }
    let total: usize = heads.iter().map(|h| h.anchors).sum();
    if total != anchors.len() {
        return Err(format!(
            "the heads cover {total} anchors, the op has {}",
            anchors.len()
        ));
    }
    Ok(Some(SsdGraph {
        options,
        heads,
        anchors,
        classes_with_background,
        sigmoid,
        removed,
    }))
}

/// The op's constant anchors input, dequantized: rows of (y, x, h, w).
fn read_anchors(model: &Model, index: i32) -> Result<Vec<Anchor>, String> {
    let graph = &model.subgraphs[0];
    let t = tensor(graph, index)?;
    let data = model
        .buffers
        .get(t.buffer as usize)
        .map(|b| b.data.as_slice())
        .filter(|d| !d.is_empty())
        .ok_or("the anchors are not a constant tensor")?;
    let &[n, 4] = t.shape.as_slice() else {
        return Err(format!(
            "anchors have shape {:?}, not [N, 4]",
            t.shape.as_slice()
        ));
    };
    let n = usize::try_from(n).map_err(|_| "negative anchor count")?;
    let values: Vec<f32> = match t.typ {
        TensorType::TensorType_UINT8 => {
            let q = quant(t)?;
            data.iter().map(|&b| q.real(b)).collect()
        }
        TensorType::TensorType_FLOAT32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        other => return Err(format!("anchors of type {other:?}")),
    };
    if values.len() != n * 4 || values.iter().any(|v| !v.is_finite()) {
        return Err("the anchor buffer does not hold N x 4 numbers".into());
    }
    Ok(values
        .chunks_exact(4)
        .map(|a| Anchor {
            cy: a[0],
            cx: a[1],
            h: a[2],
            w: a[3],
        })
        .collect())
}

/// Removes the SSD tail [`recognise`] found: the model's outputs become the per-head box
/// encodings, then the per-head class logits, in anchor order.
pub fn cut(model: &mut Model, ssd: &SsdGraph) {
    let mut removed = ssd.removed.clone();
    removed.sort_unstable();
    removed.dedup();
    let graph = &mut model.subgraphs[0];
    for &i in removed.iter().rev() {
        graph.operators.erase(i);
    }
    let outputs = ssd.heads.iter().map(|h| h.boxes);
    graph
        .outputs
        .assign(outputs.chain(ssd.heads.iter().map(|h| h.scores)));
}

/// Per-head tables built at load.
#[derive(Debug, Clone)]
struct HeadTables {
    anchors: usize,
    /// First anchor of the head in the logical concatenation.
    first: usize,
    box_quant: Quant,
    /// Score of each logit byte (sigmoid applied if the graph had `LOGISTIC`).
    score: [f32; 256],
    /// Least byte whose score reaches the threshold; 256 if none does.
    min_byte: u16,
}

/// Decodes the raw heads of a cut SSD (see the module docs). Every buffer is sized at load;
/// [`QuantizedSsdHead::decode`] allocates nothing.
#[derive(Debug)]
pub struct QuantizedSsdHead {
    heads: Vec<HeadTables>,
    anchors: Vec<Anchor>,
    classes_with_background: usize,
    /// Column of class 0 (1: the background column comes first).
    label_offset: usize,
    num_classes: usize,
    coding: BoxCoding,
    nms: NmsOptions,
    regular: bool,
    per_class: usize,
    max_detections: usize,
    candidates: Vec<Candidate>,
    /// Regular NMS: each class's survivors, then merged by score.
    selected: Vec<Detection>,
    scratch: Detections,
}

impl QuantizedSsdHead {
    /// A head for `ssd` keeping scores at or above `score_threshold` (and the op's own) and at
    /// most `max_detections` (1 to [`MAX_DETECTIONS`]).
    pub fn new(
        ssd: &SsdGraph,
        score_threshold: f32,
        max_detections: usize,
    ) -> Result<Self, SsdError> {
        if !(0.0..=1.0).contains(&score_threshold) {
            return Err(SsdError::Invalid("the score threshold must be in 0..=1"));
        }
        if max_detections == 0 || max_detections > MAX_DETECTIONS {
            return Err(SsdError::Invalid("max detections must be 1 to 128"));
        }
        let o = &ssd.options;
        let threshold = score_threshold.max(o.score_threshold);
        let mut first = 0;
        let heads = ssd
            .heads
            .iter()
            .map(|h| {
                let score = std::array::from_fn(|q| {
                    let v = h.score_quant.real(q as u8);
                    if ssd.sigmoid {
                        1.0 / (1.0 + (-v).exp())
                    } else {
                        v
                    }
                });
                let t = HeadTables {
                    anchors: h.anchors,
                    first,
                    box_quant: h.box_quant,
                    score,
                    min_byte: min_byte(&score, threshold),
                };
                first += h.anchors;
                t
            })
            .collect();
        let per_class = o.detections_per_class.clamp(1, max_detections);
        Ok(QuantizedSsdHead {
            heads,
            anchors: ssd.anchors.clone(),
            classes_with_background: ssd.classes_with_background,
            label_offset: ssd.classes_with_background - o.num_classes,
            num_classes: o.num_classes,
            coding: o.coding(),
            nms: NmsOptions {
                iou_threshold: o.iou_threshold,
                weighted: false,
                class_aware: o.use_regular_nms,
            },
            regular: o.use_regular_nms,
            per_class,
            max_detections,
            candidates: Vec::with_capacity(ssd.anchors.len()),
            selected: Vec::with_capacity(o.num_classes * per_class),
            scratch: Detections::new(),
        })
    }

    /// Classes the head reports (background excluded).
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Whether it runs regular (per-class) NMS rather than fast NMS.
    pub fn regular_nms(&self) -> bool {
        self.regular
    }

    /// Decodes one inference. `head(i)` gives head `i`'s box-encoding and class-logit bytes
    /// (or `None` if the tensor is missing). Replaces `out` with the detections, boxes
    /// normalized to the model input. Allocates nothing.
    pub fn decode<'t>(
        &mut self,
        head: impl Fn(usize) -> Option<(&'t [u8], &'t [u8])>,
        out: &mut Detections,
    ) -> Result<(), SsdError> {
        out.clear();
        self.candidates.clear();
        let cwb = self.classes_with_background;
        for (h, tables) in self.heads.iter().enumerate() {
            let (boxes, scores) = head(h).ok_or(SsdError::Invalid("a head tensor is missing"))?;
            if boxes.len() != tables.anchors * 4 {
                return Err(SsdError::RegressorLen {
                    expected: tables.anchors * 4,
                    got: boxes.len(),
                });
            }
            if scores.len() != tables.anchors * cwb {
                return Err(SsdError::ScoreLen {
                    expected: tables.anchors * cwb,
                    got: scores.len(),
                });
            }
        }
        if self.regular {
            self.decode_regular(&head, out);
        } else {
            self.decode_fast(&head);
            non_max_suppression(&mut self.candidates, &self.nms, self.max_detections, out);
        }
        Ok(())
    }

    /// Fast NMS's candidates: each anchor's best class, if it reaches the threshold.
    fn decode_fast<'t>(&mut self, head: &impl Fn(usize) -> Option<(&'t [u8], &'t [u8])>) {
        let (cwb, offset, n) = (
            self.classes_with_background,
            self.label_offset,
            self.num_classes,
        );
        for (h, t) in self.heads.iter().enumerate() {
            let Some((boxes, scores)) = head(h) else {
                continue;
            };
            if t.min_byte > 255 {
                continue;
            }
            for (a, row) in scores.chunks_exact(cwb).enumerate() {
                let row = &row[offset..offset + n];
                // A plain max over bytes, which the compiler turns into SIMD: most anchors
                // stop here.
                let best = row.iter().fold(0u8, |m, &q| m.max(q));
                if (best as u16) < t.min_byte {
                    continue;
                }
                let class = row.iter().position(|&q| q == best).unwrap_or(0);
                let index = t.first + a;
                if let Some(c) = self.candidate(t, boxes, a, index, class, best) {
                    self.candidates.push(c);
                }
            }
        }
    }

    /// Regular NMS: per class, suppress among that class's boxes and keep at most
    /// `detections_per_class`; then the best `max_detections` over all classes.
    fn decode_regular<'t>(
        &mut self,
        head: &impl Fn(usize) -> Option<(&'t [u8], &'t [u8])>,
        out: &mut Detections,
    ) {
        let cwb = self.classes_with_background;
        self.selected.clear();
        for class in 0..self.num_classes {
            self.candidates.clear();
            let column = self.label_offset + class;
            for (h, t) in self.heads.iter().enumerate() {
                let Some((boxes, scores)) = head(h) else {
                    continue;
                };
                if t.min_byte > 255 {
                    continue;
                }
                for a in 0..t.anchors {
                    let q = scores[a * cwb + column];
                    if (q as u16) < t.min_byte {
                        continue;
                    }
                    if let Some(c) = self.candidate(t, boxes, a, t.first + a, class, q) {
                        self.candidates.push(c);
                    }
                }
            }
            self.scratch.clear();
            non_max_suppression(
                &mut self.candidates,
                &self.nms,
                self.per_class,
                &mut self.scratch,
            );
            // Capacity is classes x per_class, so this never reallocates.
            self.selected.extend_from_slice(&self.scratch);
        }
        self.selected
            .sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.class.cmp(&b.class)));
        for d in self.selected.iter().take(self.max_detections) {
            if out.push(*d).is_err() {
                break;
            }
        }
    }

    /// Anchor `a` of head `t` as a candidate of `class` with score byte `q`; `None` if its box
    /// is not finite.
    #[inline]
    fn candidate(
        &self,
        t: &HeadTables,
        boxes: &[u8],
        a: usize,
        index: usize,
        class: usize,
        q: u8,
    ) -> Option<Candidate> {
        let raw = &boxes[a * 4..a * 4 + 4];
        let raw = [0, 1, 2, 3].map(|i| t.box_quant.real(raw[i]));
        let bbox = decode_box(raw, &self.anchors[index], &self.coding);
        [bbox.xmin, bbox.ymin, bbox.xmax, bbox.ymax]
            .iter()
            .all(|v| v.is_finite())
            .then_some(Candidate {
                class: class as u16,
                score: t.score[q as usize],
                anchor: index as u32,
                bbox,
            })
    }
}

/// The least byte whose score reaches `threshold` (256 if none): the scores grow with the
/// byte, so this one comparison replaces dequantizing every value.
fn min_byte(score: &[f32; 256], threshold: f32) -> u16 {
    score
        .iter()
        .position(|&s| s >= threshold)
        .map_or(256, |q| q as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-head graph: head 0 with 3 anchors, head 1 with 2; 3 classes + background.
    fn graph(regular: bool) -> SsdGraph {
        let q = |scale, zero_point| Quant { scale, zero_point };
        let anchor = |cy, cx| Anchor {
            cy,
            cx,
            h: 0.2,
            w: 0.2,
        };
        SsdGraph {
            options: PostProcessOptions {
                max_detections: 10,
                max_classes_per_detection: 1,
                detections_per_class: 100,
                use_regular_nms: regular,
                score_threshold: 1e-8,
                iou_threshold: 0.6,
                num_classes: 3,
                y_scale: 10.0,
                x_scale: 10.0,
                h_scale: 5.0,
                w_scale: 5.0,
            },
            heads: vec![
                HeadTensors {
                    boxes: 0,
                    scores: 1,
                    anchors: 3,
                    box_quant: q(0.1, 128),
                    score_quant: q(0.05, 128),
                },
                HeadTensors {
                    boxes: 2,
                    scores: 3,
                    anchors: 2,
                    box_quant: q(0.05, 100),
                    score_quant: q(0.1, 100),
                },
            ],
            anchors: vec![
                anchor(0.2, 0.2),
                anchor(0.2, 0.22),
                anchor(0.8, 0.8),
                anchor(0.5, 0.5),
                anchor(0.5, 0.52),
            ],
            classes_with_background: 4,
            sigmoid: true,
            removed: vec![],
        }
    }

    struct Outputs {
        boxes: [Vec<u8>; 2],
        scores: [Vec<u8>; 2],
    }

    impl Outputs {
        /// Every box at its anchor, every score far below 0.5.
        fn silent() -> Self {
            Outputs {
                boxes: [vec![128; 12], vec![100; 8]],
                scores: [vec![0; 12], vec![0; 8]],
            }
        }

        fn decode(&self, head: &mut QuantizedSsdHead) -> Detections {
            let mut out = Detections::new();
            head.decode(
                |h| Some((&self.boxes.get(h)?[..], &self.scores.get(h)?[..])),
                &mut out,
            )
            .unwrap();
            out
        }
    }

    fn sigmoid(x: f32) -> f32 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn threshold_byte_matches_the_float_comparison() {
        let g = graph(false);
        let head = QuantizedSsdHead::new(&g, 0.5, 10).unwrap();
        // Head 0: logit = 0.05 (q - 128) >= 0 exactly from q = 128.
        assert_eq!(head.heads[0].min_byte, 128);
        assert_eq!(head.heads[1].min_byte, 100);
        for t in &head.heads {
            for q in 0..256 {
                assert_eq!(q >= t.min_byte as usize, t.score[q] >= 0.5);
            }
        }
        // A threshold no byte reaches disables the head.
        let head = QuantizedSsdHead::new(&g, 1.0, 10).unwrap();
        assert_eq!(head.heads[0].min_byte, 256);
    }

    #[test]
    fn fast_nms_takes_each_anchors_best_class_across_heads() {
        let g = graph(false);
        let mut head = QuantizedSsdHead::new(&g, 0.5, 10).unwrap();
        let mut o = Outputs::silent();
        // Head 0 anchor 2: class 1 (column 2) at logit 2.0; background column ignored.
        o.scores[0][2 * 4] = 255;
        o.scores[0][2 * 4 + 2] = 168;
        o.scores[0][2 * 4 + 1] = 140;
        // Head 1 anchor 0 (global anchor 3): class 2 at logit 1.0, box moved and resized.
        o.scores[1][3] = 110;
        o.boxes[1][..4].copy_from_slice(&[120, 80, 100, 100 + 20]);
        let out = o.decode(&mut head);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].class, 1);
        assert!((out[0].score - sigmoid(2.0)).abs() < 1e-6);
        let b = out[0].bbox;
        assert!(
            (b.xmin - 0.7).abs() < 1e-6 && (b.ymax - 0.9).abs() < 1e-6,
            "{b:?}"
        );
        assert_eq!(out[1].class, 2);
        assert!((out[1].score - sigmoid(1.0)).abs() < 1e-6);
        // ty = 1 -> cy + 0.1 * h; tx = -1 -> cx - 0.1 * w; tw = 1 -> w * e^(1/5).
        let want =
            crate::geometry::BBox::from_center(0.5 - 0.02, 0.5 + 0.02, 0.2 * 0.2f32.exp(), 0.2);
        let b = out[1].bbox;
        for (x, y) in [
            (b.xmin, want.xmin),
            (b.ymin, want.ymin),
            (b.xmax, want.xmax),
            (b.ymax, want.ymax),
        ] {
            assert!((x - y).abs() < 1e-5, "{b:?} vs {want:?}");
        }
    }

    #[test]
    fn fast_nms_is_class_agnostic_and_regular_nms_is_not() {
        let mut o = Outputs::silent();
        // Anchors 0 and 1 overlap (IoU 0.82): class 0 strong on one, class 1 on the other.
        o.scores[0][1] = 200;
        o.scores[0][4 + 2] = 180;
        let mut fast = QuantizedSsdHead::new(&graph(false), 0.5, 10).unwrap();
        let out = o.decode(&mut fast);
        assert_eq!(out.iter().map(|d| d.class).collect::<Vec<_>>(), [0]);
        let mut regular = QuantizedSsdHead::new(&graph(true), 0.5, 10).unwrap();
        let out = o.decode(&mut regular);
        assert_eq!(out.iter().map(|d| d.class).collect::<Vec<_>>(), [0, 1]);
        assert!(out[0].score > out[1].score);
        // Regular NMS still suppresses within a class.
        o.scores[0][4 + 1] = 190;
        let out = o.decode(&mut regular);
        assert_eq!(out.iter().map(|d| d.class).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn max_detections_bounds_the_output_and_lengths_are_checked() {
        let mut o = Outputs::silent();
        // Three disjoint anchors fire: 0, 2 and 3.
        o.scores[0][1] = 200;
        o.scores[0][2 * 4 + 1] = 190;
        o.scores[1][1] = 180;
        let mut head = QuantizedSsdHead::new(&graph(false), 0.5, 2).unwrap();
        let out = o.decode(&mut head);
        assert_eq!(out.len(), 2);
        assert!(out[0].score >= out[1].score);
        let mut out = Detections::new();
        let short = [0u8; 11];
        let err = head
            .decode(
                |h| {
                    Some((
                        &o.boxes[h][..],
                        if h == 0 { &short[..] } else { &o.scores[h][..] },
                    ))
                },
                &mut out,
            )
            .unwrap_err();
        assert_eq!(
            err,
            SsdError::ScoreLen {
                expected: 12,
                got: 11
            }
        );
        assert!(head.decode(|_| None, &mut out).is_err());
        assert!(QuantizedSsdHead::new(&graph(false), 0.5, 0).is_err());
        assert!(QuantizedSsdHead::new(&graph(false), 0.5, 129).is_err());
        assert!(QuantizedSsdHead::new(&graph(false), -0.1, 10).is_err());
    }
}
