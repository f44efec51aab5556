//! TensorFlow Lite backend of [`Detector`]: loads and verifies a `.tflite` model, allocates its
//! tensor arena once, and decodes the outputs one of three ways: the SSD heads in Rust
//! ([`QuantizedSsdHead`], after cutting the `TFLite_Detection_PostProcess` tail off the graph),
//! that op's own outputs (`model.head = "tflite-op"`, or a graph the cut does not recognise), or
//! raw SSD outputs such as BlazeFace's (anchor decoding + NMS in Rust).
//!
//! Tensors are reached through `tensor_buffer`/`tensor_buffer_mut`, which hand out the arena's
//! bytes without copying: the crate's `tensor_data*` build a `TensorInfo` (a `String` and a
//! `Vec`) on every call, which the frame loop cannot afford.

use tflite::model::stl::vector::VectorSlice;
use tflite::model::{BuiltinOperator, Model, TensorType};
use tflite::ops::builtin::BuiltinOpResolver;
use tflite::{FlatBufferModel, Interpreter, InterpreterBuilder};

use super::detection::{Detection, Detections};
use super::detector::{warm_up, Detector, DetectorError};
use super::preprocess::{InputKind, InputSpec, InputTensor};
use super::ssd::{generate_anchors, RawSsdDecoder};
use super::ssd_head::{self, QuantizedSsdHead, SsdGraph};
use super::yolox;
use crate::config::{HeadChoice, ModelConfig, ModelFamily};
use crate::geometry::BBox;

const POSTPROCESS_OP: &[u8] = ssd_head::POSTPROCESS_OP.as_bytes();

/// A TFLite model ready to run, with every buffer allocated.
pub struct TfliteDetector {
    interpreter: Interpreter<'static, BuiltinOpResolver>,
    input_index: i32,
    input_spec: InputSpec,
    head: Head,
    labels: Vec<String>,
    score_threshold: f32,
    max_detections: usize,
}

impl std::fmt::Debug for TfliteDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TfliteDetector")
            .field("input_spec", &self.input_spec)
            .field("head", &self.head)
            .field("labels", &self.labels.len())
            .finish_non_exhaustive()
    }
}

/// How the model's outputs become detections.
#[derive(Debug)]
pub(crate) enum Head {
    /// The graph ends in `TFLite_Detection_PostProcess`: boxes, classes, scores, count.
    PostProcess {
        boxes: i32,
        classes: i32,
        scores: i32,
        count: i32,
        max: usize,
    },
    /// Raw per-anchor box regressors and class logits, decoded in Rust.
    RawSsd {
        regressors: i32,
        scores: i32,
        decoder: Box<RawSsdDecoder>,
    },
    /// The graph was cut before the post-process op: per-head uint8 box encodings and class
    /// logits (tensor indices in anchor order), decoded by the Rust head.
    QuantizedSsd {
        tensors: Vec<(i32, i32)>,
        head: Box<QuantizedSsdHead>,
    },
    /// YOLOX's one raw `[1, cells, 5 + classes]` output, decoded in Rust.
    Yolox {
        output: i32,
        kind: tflite::context::ElementKind,
        head: Box<yolox::YoloxHead>,
    },
}

impl Head {
    /// Decodes the last invoke's outputs, read through `it`, into `out` (cleared first);
    /// `(labels, score threshold, max detections)` bound what the post-process op's outputs
    /// give. Allocates nothing.
    pub(crate) fn decode(
        &mut self,
        it: &impl Tensors,
        (labels, score_threshold, max_detections): (usize, f32, usize),
        out: &mut Detections,
    ) -> Result<(), DetectorError> {
        out.clear();
        match self {
            Head::PostProcess {
                boxes,
                classes,
                scores,
                count,
                max,
            } => {
                let (b, c) = (output_f32(it, *boxes)?, output_f32(it, *classes)?);
                let (s, n) = (output_f32(it, *scores)?, output_f32(it, *count)?);
                let n = n.first().map_or(0, |&n| {
                    if n.is_finite() {
                        n.max(0.0) as usize
                    } else {
                        0
                    }
                });
                let n = n.min(*max).min(max_detections);
                let num_classes = labels as f32;
                for i in 0..n {
                    let (score, class) = (s[i], c[i]);
                    // Written so that NaN scores or classes are skipped too.
                    if !(score >= score_threshold && (0.0..num_classes).contains(&class)) {
                        continue;
                    }
                    let bx = &b[i * 4..i * 4 + 4];
                    let bbox = BBox::new(bx[1], bx[0], bx[3], bx[2]);
                    let _ = out.push(Detection {
                        class: class as u16,
                        score,
                        bbox,
                    });
                }
                Ok(())
            }
            Head::RawSsd {
                regressors,
                scores,
                decoder,
            } => {
                let regs = output_f32(it, *regressors)?;
                let logits = output_f32(it, *scores)?;
                decoder
                    .decode(regs, logits, out)
                    .map_err(|e| DetectorError::Decode(e.to_string()))
            }
            Head::QuantizedSsd { tensors, head } => {
                let tensors = &*tensors;
                let outputs = |h: usize| {
                    let &(boxes, scores) = tensors.get(h)?;
                    Some((it.tensor_buffer(boxes)?, it.tensor_buffer(scores)?))
                };
                head.decode(outputs, out)
                    .map_err(|e| DetectorError::Decode(e.to_string()))
            }
            Head::Yolox { output, kind, head } => {
                use tflite::context::ElementKind as K;
                let raw = it
                    .tensor_buffer(*output)
                    .ok_or_else(|| DetectorError::Decode("the YOLOX output is missing".into()))?;
                match kind {
                    K::kTfLiteInt8 => head.decode_i8(bytemuck::cast_slice(raw), out),
                    K::kTfLiteUInt8 => head.decode_u8(raw, out),
                    _ => head.decode_f32(bytemuck::try_cast_slice(raw).unwrap_or_default(), out),
                }
                .map_err(|e| DetectorError::Decode(e.to_string()))
            }
        }
    }
}

/// A model read, verified and, when its SSD tail is recognised and `model.head = "auto"`, cut
/// before that tail: ready to build interpreters from (one, or a pool sharing it).
pub struct PreparedModel {
    /// The model TFLite runs (the cut one, if cut).
    model: FlatBufferModel,
    pub(crate) info: ModelInfo,
    /// The SSD tail that was cut off, if it was.
    pub(crate) ssd: Option<SsdGraph>,
    /// The inputs and outputs of the model as run, from its flatbuffer.
    pub(crate) io: IoTensors,
}

/// The graph inputs and outputs of a verified model, as the flatbuffer declares them: what a
/// runtime that does not expose tensor details by index (LiteRT) decodes with.
#[derive(Debug, Clone, Default)]
pub(crate) struct IoTensors {
    /// `(index, name, element type, shape)` of each of them.
    pub tensors: Vec<(i32, String, tflite::context::ElementKind, Vec<usize>)>,
}

/// The shape of output `tensor` if the post-process op writes it: the exporter leaves those
/// shapes out of the flatbuffer (the op sets them when it runs), but a runtime that binds
/// outputs before running (LiteRT) needs them: `[1, max, 4]` boxes, `[1, max]` classes and
/// scores, `[1]` count, `max` from the op's options.
fn postprocess_output_shape(model: &Model, tensor: i32) -> Result<Option<Vec<usize>>, String> {
    let graph = model.subgraphs.first().ok_or("the model has no subgraph")?;
    for op in graph.operators.iter() {
        let Some(position) = op.outputs.as_slice().iter().position(|&o| o == tensor) else {
            continue;
        };
        let custom = model
            .operator_codes
            .get(op.opcode_index as usize)
            .is_some_and(|c| {
                c.builtin_code == BuiltinOperator::BuiltinOperator_CUSTOM
                    && c.custom_code.c_str().to_bytes() == POSTPROCESS_OP
            });
        if !custom {
            return Ok(None);
        }
        let max = ssd_head::PostProcessOptions::parse(op.custom_options.as_slice())
            .map_err(|e| format!("{}: {e}", ssd_head::POSTPROCESS_OP))?
            .max_detections;
        return Ok(Some(match position {
            0 => vec![1, max, 4],
            1 | 2 => vec![1, max],
            _ => vec![1],
        }));
    }
    Ok(None)
}

impl IoTensors {
    fn read(model: &Model) -> Result<IoTensors, String> {
        use tflite::context::ElementKind as K;
        let graph = model.subgraphs.first().ok_or("the model has no subgraph")?;
        let mut tensors = Vec::new();
        for &i in graph
            .inputs
            .as_slice()
            .iter()
            .chain(graph.outputs.as_slice())
        {
            let t = usize::try_from(i)
                .ok()
                .and_then(|i| graph.tensors.get(i))
                .ok_or(format!("input/output tensor {i} is out of range"))?;
            let kind = match t.typ {
                TensorType::TensorType_UINT8 => K::kTfLiteUInt8,
                TensorType::TensorType_INT8 => K::kTfLiteInt8,
                TensorType::TensorType_FLOAT32 => K::kTfLiteFloat32,
                TensorType::TensorType_INT32 => K::kTfLiteInt32,
                _ => K::kTfLiteNoType,
            };
            let mut shape = t
                .shape
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| format!("tensor {i} has a dynamic shape")))
                .collect::<Result<Vec<usize>, String>>()?;
            if shape.is_empty() {
                shape = postprocess_output_shape(model, i)?.unwrap_or_default();
            }
            let name = t.name.c_str().to_string_lossy().into_owned();
            tensors.push((i, name, kind, shape));
        }
        Ok(IoTensors { tensors })
    }
}

impl std::fmt::Debug for PreparedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedModel")
            .field("bytes", &self.model.buffer().len())
            .field("rust_head", &self.ssd.is_some())
            .finish_non_exhaustive()
    }
}

impl PreparedModel {
    /// The flatbuffer bytes of the model as run (cut, if the Rust head decodes).
    pub(crate) fn bytes(&self) -> &[u8] {
        self.model.buffer()
    }

    /// Reads and verifies `cfg.file` and decides which head decodes it (logged).
    pub fn read(cfg: &ModelConfig) -> Result<PreparedModel, DetectorError> {
        let path = cfg.file.as_path();
        let bad = |message: String| DetectorError::BadModel {
            path: path.into(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|source| DetectorError::Io {
            path: path.into(),
            source,
        })?;
        if bytes.len() < 8 || &bytes[4..8] != b"TFL3" {
            return Err(bad(
                "not a TensorFlow Lite model (no TFL3 identifier at byte 4)".into(),
            ));
        }
        let mut parsed = Model::from_buffer(&bytes)
            .ok_or("corrupt or truncated model: flatbuffer verification failed")
            .map_err(|e| bad(e.into()))?;
        // Nothing TensorFlow Lite or LiteRT would trust unchecked goes further.
        ssd_head::check_ops(&parsed).map_err(bad)?;
        let mut info = inspect(&parsed).map_err(bad)?;
        info.yolox = match cfg.family {
            ModelFamily::Yolox => true,
            ModelFamily::Auto => looks_like_yolox(&parsed),
            ModelFamily::Ssd => false,
        };
        let recognised = if info.yolox {
            Ok(None)
        } else {
            ssd_head::recognise(&parsed)
        };
        let ssd = match (cfg.head, recognised) {
            (_, Ok(None)) => None,
            (HeadChoice::TfliteOp, _) => {
                log::info!("model.head = \"tflite-op\": the model's post-process op decodes");
                None
            }
            (HeadChoice::Auto, Err(reason)) => {
                log::info!(
                    "SSD tail not recognised ({reason}): the model's post-process op decodes"
                );
                None
            }
            (HeadChoice::Auto, Ok(Some(ssd))) => Some(ssd),
        };
        let io;
        let model = match &ssd {
            Some(ssd) => {
                log_rust_head(ssd, cfg);
                // Each copy of the weights goes as soon as the next exists, to keep the
                // load-time peak RSS (which the soak test budgets) low.
                drop(bytes);
                ssd_head::cut(&mut parsed, ssd);
                io = IoTensors::read(&parsed).map_err(bad)?;
                let cut = parsed.to_buffer();
                drop(parsed);
                FlatBufferModel::build_from_buffer(cut)
            }
            None => {
                io = IoTensors::read(&parsed).map_err(bad)?;
                drop(parsed);
                FlatBufferModel::build_from_buffer(bytes)
            }
        }
        .map_err(|e| bad(format!("TensorFlow Lite rejected the model: {e}")))?;
        Ok(PreparedModel {
            model,
            info,
            ssd,
            io,
        })
    }
}

/// What the flatbuffer says about the model, read before the interpreter is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModelInfo {
    input_quant: Option<(f32, i32)>,
    /// Quantization of the first output, for raw heads that dequantize it (YOLOX).
    output_quant: Option<(f32, i32)>,
    /// The model is decoded as YOLOX (`model.family`, or recognised from its shapes).
    yolox: bool,
    /// Classes of the post-process op (background excluded), if the graph has one.
    postprocess_classes: Option<usize>,
}

impl TfliteDetector {
    /// Loads `cfg.file`, verifies it, builds the interpreter with `cfg.threads` threads and
    /// checks the labels file against the model's classes.
    pub fn load(cfg: &ModelConfig) -> Result<TfliteDetector, DetectorError> {
        let prepared = PreparedModel::read(cfg)?;
        let (info, ssd) = (prepared.info, prepared.ssd);
        let builder = InterpreterBuilder::new(prepared.model, BuiltinOpResolver::default());
        Self::build(builder, &info, ssd.as_ref(), cfg, cfg.threads)
    }

    /// One single-threaded interpreter on `model`, which interpreters of a pool share; the
    /// model must outlive them all, hence `'static`.
    pub fn on_shared(
        model: &'static PreparedModel,
        cfg: &ModelConfig,
    ) -> Result<TfliteDetector, DetectorError> {
        let builder = InterpreterBuilder::new(&model.model, BuiltinOpResolver::default());
        Self::build(builder, &model.info, model.ssd.as_ref(), cfg, 1)
    }

    fn build(
        builder: tflite::Result<InterpreterBuilder<'static, BuiltinOpResolver>>,
        info: &ModelInfo,
        ssd: Option<&SsdGraph>,
        cfg: &ModelConfig,
        threads: u32,
    ) -> Result<TfliteDetector, DetectorError> {
        let path = cfg.file.as_path();
        let bad = |message: String| DetectorError::BadModel {
            path: path.into(),
            message,
        };
        if info.yolox {
            let why = match cfg.family {
                ModelFamily::Yolox => "model.family = \"yolox\"",
                _ => "the model's shapes are YOLOX's (model.family = \"auto\")",
            };
            return Err(bad(format!("{why}: {NO_YOLOX}")));
        }
        let builder = builder.map_err(|e| bad(format!("cannot build an interpreter: {e}")))?;
        // build_with_threads, not set_num_threads: the latter prints to stdout, which would
        // corrupt `--json` output.
        let interpreter = builder.build_with_threads(threads as i32).map_err(|e| {
            bad(format!(
                "cannot build an interpreter (unsupported op or inconsistent tensors): {e}"
            ))
        })?;
        let input_spec = input_spec(&interpreter, info, cfg).map_err(bad)?;
        let input_index = interpreter.inputs()[0];
        let (head, num_classes) = match ssd {
            Some(ssd) => rust_head(&interpreter, ssd, cfg).map_err(bad)?,
            None => build_head(&interpreter, info, cfg, &input_spec).map_err(bad)?,
        };
        let labels = load_labels(cfg, num_classes)?;
        let mut detector = TfliteDetector {
            interpreter,
            input_index,
            input_spec,
            head,
            labels,
            score_threshold: cfg.score_threshold,
            max_detections: cfg.max_detections,
        };
        if let InputTensor::F32(t) = detector.input_tensor() {
            if t.is_empty() {
                return Err(bad("the float input tensor is not 4-byte aligned".into()));
            }
        }
        // Model parsing allocated and freed several megabytes; hand them back to the OS so
        // the steady-state RSS is what the frame loop actually uses. Before the warm-up: its
        // first invoke makes the arena resident, which would otherwise come on top of them.
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
        warm_up(&mut detector, path)?;
        Ok(detector)
    }
}

impl TfliteDetector {
    /// Whether the Rust SSD head decodes (the graph was cut before its post-process op).
    pub fn has_rust_head(&self) -> bool {
        matches!(self.head, Head::QuantizedSsd { .. })
    }
}

/// What model loading and decoding need of a runtime: its input and output tensor indices
/// (the flatbuffer's), their shape and type, and their bytes. Both backends, TensorFlow Lite
/// 1.15 here and LiteRT (`super::litert`), implement it, so the heads below decode either's
/// outputs with the same code. `tensor_info` allocates (load time only); `tensor_buffer` must
/// not (it runs per frame).
pub(crate) trait Tensors {
    /// Tensor indices of the model inputs.
    fn inputs(&self) -> &[i32];
    /// Tensor indices of the model outputs, in the graph's order.
    fn outputs(&self) -> &[i32];
    /// Name, element type and shape of a tensor.
    fn tensor_info(&self, index: i32) -> Option<tflite::context::TensorInfo>;
    /// The bytes of a tensor after an invoke.
    fn tensor_buffer(&self, index: i32) -> Option<&[u8]>;
}

impl Tensors for Interpreter<'static, BuiltinOpResolver> {
    fn inputs(&self) -> &[i32] {
        Interpreter::inputs(self)
    }
    fn outputs(&self) -> &[i32] {
        Interpreter::outputs(self)
    }
    fn tensor_info(&self, index: i32) -> Option<tflite::context::TensorInfo> {
        Interpreter::tensor_info(self, index)
    }
    fn tensor_buffer(&self, index: i32) -> Option<&[u8]> {
        Interpreter::tensor_buffer(self, index)
    }
}

/// A float32 output tensor, read in place from the arena.
fn output_f32(interpreter: &impl Tensors, index: i32) -> Result<&[f32], DetectorError> {
    let bytes = interpreter.tensor_buffer(index).unwrap_or_default();
    // Misalignment cannot happen with TFLite's 16-byte arena; if it ever did, the frame is
    // reported as undecodable rather than read wrongly.
    bytemuck::try_cast_slice(bytes).map_err(|_| {
        DetectorError::Decode(format!(
            "output tensor {index} is not a whole number of aligned float32 values"
        ))
    })
}

impl Detector for TfliteDetector {
    fn input_spec(&self) -> &InputSpec {
        &self.input_spec
    }

    fn input_tensor(&mut self) -> InputTensor<'_> {
        let kind = self.input_spec.kind;
        let bytes = self
            .interpreter
            .tensor_buffer_mut(self.input_index)
            .unwrap_or_default();
        InputTensor::from_bytes(kind, bytes)
    }

    fn invoke(&mut self) -> Result<(), DetectorError> {
        self.interpreter.invoke().map_err(|_| DetectorError::Invoke)
    }

    fn decode(&mut self, out: &mut Detections) -> Result<(), DetectorError> {
        let limits = (self.labels.len(), self.score_threshold, self.max_detections);
        self.head.decode(&self.interpreter, limits, out)
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }
}

/// The YOLOX head on the model's one raw output.
fn yolox_head(
    interpreter: &impl Tensors,
    info: &ModelInfo,
    cfg: &ModelConfig,
    input: &InputSpec,
) -> Result<(Head, usize), String> {
    let &[output] = interpreter.outputs() else {
        return Err(format!(
            "YOLOX has one output, this model has {}",
            interpreter.outputs().len()
        ));
    };
    let t = interpreter
        .tensor_info(output)
        .ok_or("the output tensor is missing")?;
    let shape = t.dims.clone();
    if !yolox::wanted(cfg.family, input.width, input.height, &shape).map_err(|e| e.to_string())? {
        return Err(format!("output shape {shape:?} is not YOLOX's"));
    }
    use tflite::context::ElementKind as K;
    let quant = match t.element_kind {
        K::kTfLiteInt8 | K::kTfLiteUInt8 => info
            .output_quant
            .ok_or("the YOLOX output is quantized but has no scale and zero point")?,
        K::kTfLiteFloat32 => (1.0, 0),
        other => return Err(format!("YOLOX output type {other:?} is not supported")),
    };
    let head = yolox::YoloxHead::new(
        input.width,
        input.height,
        &shape,
        quant,
        cfg.score_threshold,
        yolox::DEFAULT_NMS_IOU,
        cfg.max_detections,
    )
    .map_err(|e| e.to_string())?;
    let classes = head.num_classes();
    log::info!("YOLOX head: {shape:?} decoded in Rust, {classes} classes");
    Ok((
        Head::Yolox {
            output,
            kind: t.element_kind,
            head: Box::new(head),
        },
        classes,
    ))
}

/// Why a YOLOX model is refused here, before TensorFlow Lite fails on its int8 ops.
const NO_YOLOX: &str =
    "TensorFlow Lite 1.15 cannot run YOLOX's int8 graph; it needs model.runtime = litert";

/// Whether the graph's one input and one output have YOLOX's shapes ([`yolox::matches`]).
fn looks_like_yolox(model: &Model) -> bool {
    let Some(graph) = model.subgraphs.first() else {
        return false;
    };
    let shape = |index: Option<&i32>| -> Option<Vec<usize>> {
        let t = graph.tensors.get(usize::try_from(*index?).ok()?)?;
        t.shape.iter().map(|&d| usize::try_from(d).ok()).collect()
    };
    if graph.inputs.len() != 1 || graph.outputs.len() != 1 {
        return false;
    }
    match (shape(graph.inputs.first()), shape(graph.outputs.first())) {
        (Some(input), Some(output)) => match input[..] {
            [1, h, w, 3] => match (u32::try_from(w), u32::try_from(h)) {
                (Ok(w), Ok(h)) => yolox::matches(w, h, &output),
                _ => false,
            },
            _ => false,
        },
        _ => false,
    }
}

/// Reads what the interpreter does not expose: the input's quantization and whether the
/// graph ends in the SSD post-process op.
fn inspect(model: &Model) -> Result<ModelInfo, String> {
    let graph = model.subgraphs.first().ok_or("the model has no subgraph")?;
    if graph.inputs.len() != 1 {
        return Err(format!(
            "a detector has one input tensor, this model has {}",
            graph.inputs.len()
        ));
    }
    let input = usize::try_from(graph.inputs[0])
        .ok()
        .and_then(|i| graph.tensors.get(i))
        .ok_or("the input tensor index is out of range")?;
    let quant = |t: &tflite::model::TensorT| match t.typ {
        TensorType::TensorType_UINT8 | TensorType::TensorType_INT8 if t.quantization.is_valid() => {
            let q = &t.quantization;
            q.scale
                .first()
                .zip(q.zero_point.first())
                .map(|(&s, &z)| (s, z as i32))
        }
        _ => None,
    };
    let input_quant = quant(input);
    let output_quant = graph
        .outputs
        .first()
        .and_then(|&i| graph.tensors.get(usize::try_from(i).ok()?))
        .and_then(|t| quant(t));
    let mut postprocess_classes = None;
    for op in graph.operators.iter() {
        let code = model
            .operator_codes
            .get(op.opcode_index as usize)
            .ok_or("operator code out of range")?;
        let custom = code.builtin_code == BuiltinOperator::BuiltinOperator_CUSTOM
            && code.custom_code.c_str().to_bytes() == POSTPROCESS_OP;
        if custom {
            let scores = op
                .inputs
                .get(1)
                .and_then(|&i| graph.tensors.get(usize::try_from(i).ok()?));
            let classes = scores
                .and_then(|t| t.shape.last().copied())
                .ok_or("post-process op without class scores")?;
            // The class scores include a background column that the op drops.
            postprocess_classes = Some((classes.max(1) - 1) as usize);
        }
    }
    Ok(ModelInfo {
        input_quant,
        output_quant,
        yolox: false,
        postprocess_classes,
    })
}

pub(crate) fn dims(interpreter: &impl Tensors, index: i32) -> Result<Vec<usize>, String> {
    interpreter
        .tensor_info(index)
        .map(|t| t.dims)
        .ok_or_else(|| format!("tensor {index} is missing"))
}

pub(crate) fn input_spec(
    interpreter: &impl Tensors,
    info: &ModelInfo,
    cfg: &ModelConfig,
) -> Result<InputSpec, String> {
    let index = *interpreter
        .inputs()
        .first()
        .ok_or("the model has no input")?;
    let t = interpreter
        .tensor_info(index)
        .ok_or("the input tensor is missing")?;
    let &[1, h, w, 3] = t.dims.as_slice() else {
        return Err(format!(
            "input shape {:?} is not [1, height, width, 3] (an RGB image)",
            t.dims
        ));
    };
    use tflite::context::ElementKind as K;
    let kind = match t.element_kind {
        K::kTfLiteUInt8 => InputKind::U8 {
            quant: info.input_quant,
        },
        K::kTfLiteFloat32 => InputKind::F32,
        K::kTfLiteInt8 if info.yolox => InputKind::I8 {
            quant: info.input_quant,
        },
        other => {
            return Err(format!(
                "input type {other:?} is not supported (uint8 or float32)"
            ))
        }
    };
    if info.yolox {
        return Ok(yolox::input_spec(w as u32, h as u32, kind));
    }
    Ok(InputSpec {
        width: w as u32,
        height: h as u32,
        channels: 3,
        kind,
        mean: cfg.input_mean,
        std: cfg.input_std,
        letterbox: false,
        bgr: false,
    })
}

/// The Rust head for a cut SSD: checks the interpreter's outputs are the heads the cut left.
pub(crate) fn rust_head(
    interpreter: &impl Tensors,
    ssd: &SsdGraph,
    cfg: &ModelConfig,
) -> Result<(Head, usize), String> {
    let tensors: Vec<(i32, i32)> = ssd.heads.iter().map(|h| (h.boxes, h.scores)).collect();
    let expected: Vec<i32> = tensors
        .iter()
        .map(|t| t.0)
        .chain(tensors.iter().map(|t| t.1))
        .collect();
    if interpreter.outputs() != expected.as_slice() {
        return Err("the cut model's outputs are not its SSD heads".into());
    }
    for (h, &(boxes, scores)) in ssd.heads.iter().zip(&tensors) {
        for (t, want) in [
            (boxes, h.anchors * 4),
            (scores, h.anchors * ssd.classes_with_background),
        ] {
            let info = interpreter
                .tensor_info(t)
                .ok_or("an SSD head tensor is missing")?;
            let n: usize = info.dims.iter().product();
            if info.element_kind != tflite::context::ElementKind::kTfLiteUInt8 || n != want {
                return Err(format!(
                    "SSD head `{}` is not {want} bytes of uint8",
                    info.name
                ));
            }
        }
    }
    let head = QuantizedSsdHead::new(ssd, cfg.score_threshold, cfg.max_detections)
        .map_err(|e| e.to_string())?;
    let classes = head.num_classes();
    Ok((
        Head::QuantizedSsd {
            tensors,
            head: Box::new(head),
        },
        classes,
    ))
}

/// Logs the choice of the Rust head, once per loaded model.
fn log_rust_head(ssd: &SsdGraph, cfg: &ModelConfig) {
    let o = &ssd.options;
    log::info!(
        "SSD post-process in Rust: the graph is cut before {} (and its concatenations); \
         {} heads, {} anchors, {} classes, {} NMS at IoU {}, up to {} detections (the op: {})",
        ssd_head::POSTPROCESS_OP,
        ssd.heads.len(),
        ssd.anchors.len(),
        o.num_classes,
        if o.use_regular_nms { "regular" } else { "fast" },
        o.iou_threshold,
        cfg.max_detections,
        o.max_detections
    );
}

/// Chooses how to decode outputs and returns the number of classes the labels must cover.
pub(crate) fn build_head(
    interpreter: &impl Tensors,
    info: &ModelInfo,
    cfg: &ModelConfig,
    input: &InputSpec,
) -> Result<(Head, usize), String> {
    if info.yolox {
        return yolox_head(interpreter, info, cfg, input);
    }
    let outputs = interpreter.outputs().to_vec();
    for &o in &outputs {
        let t = interpreter
            .tensor_info(o)
            .ok_or("an output tensor is missing")?;
        if t.element_kind != tflite::context::ElementKind::kTfLiteFloat32 {
            return Err(format!(
                "output `{}` is {:?}; float32 outputs are expected",
                t.name, t.element_kind
            ));
        }
    }
    if let Some(num_classes) = info.postprocess_classes {
        let [boxes, classes, scores, count] = outputs[..] else {
            return Err(format!(
                "the post-process op should give 4 outputs, not {}",
                outputs.len()
            ));
        };
        let box_dims = dims(interpreter, boxes)?;
        let &[1, max, 4] = box_dims.as_slice() else {
            return Err(format!(
                "post-process boxes have shape {box_dims:?}, not [1, N, 4]"
            ));
        };
        for (name, o, want) in [
            ("classes", classes, max),
            ("scores", scores, max),
            ("count", count, 1),
        ] {
            let n: usize = dims(interpreter, o)?.iter().product();
            if n != want {
                return Err(format!(
                    "post-process {name} output has {n} values, expected {want}"
                ));
            }
        }
        log::info!(
            "model ends in {}: up to {max} detections, {num_classes} classes",
            "TFLite_Detection_PostProcess"
        );
        return Ok((
            Head::PostProcess {
                boxes,
                classes,
                scores,
                count,
                max,
            },
            num_classes,
        ));
    }
    let [a, b] = outputs[..] else {
        return Err(format!(
            "{} outputs: expected the post-process op's 4 or raw SSD box regressors + class scores",
            outputs.len()
        ));
    };
    let (da, db) = (dims(interpreter, a)?, dims(interpreter, b)?);
    // The regressors carry at least the 4 box values per anchor; class scores are the other.
    let ((regressors, rd), (scores, sd)) =
        if da.last() >= Some(&4) && db.last() < Some(&4) || db.last() < da.last() {
            ((a, da), (b, db))
        } else {
            ((b, db), (a, da))
        };
    let (&[1, n, coords], &[1, n2, classes]) = (rd.as_slice(), sd.as_slice()) else {
        return Err(format!("raw SSD outputs have shapes {rd:?} and {sd:?}, expected [1, anchors, 4+] and [1, anchors, classes]"));
    };
    let anchors_cfg = cfg.anchors.as_ref().ok_or(
        "the model has raw SSD outputs and no post-process op: configure model.anchors for it"
            .to_string(),
    )?;
    let anchors = generate_anchors(anchors_cfg, input.width, input.height)
        .map_err(|e| format!("model.anchors: {e}"))?;
    if anchors.len() != n || n2 != n || coords < 4 {
        return Err(format!(
            "model.anchors gives {} anchors; the model's outputs have {n} and {n2} rows of {coords} and {classes}",
            anchors.len()
        ));
    }
    let decoder = RawSsdDecoder::new(
        anchors,
        classes,
        coords,
        anchors_cfg,
        cfg.score_threshold,
        cfg.max_detections,
    )
    .map_err(|e| e.to_string())?;
    log::info!("model has raw SSD outputs: {n} anchors, {classes} classes, decoded in Rust");
    Ok((
        Head::RawSsd {
            regressors,
            scores,
            decoder: Box::new(decoder),
        },
        classes,
    ))
}

/// Reads `cfg.labels`, one label a line; the count must equal the model's number of classes.
pub(crate) fn load_labels(
    cfg: &ModelConfig,
    num_classes: usize,
) -> Result<Vec<String>, DetectorError> {
    let path = cfg.labels.as_path();
    let text = std::fs::read_to_string(path).map_err(|source| DetectorError::Io {
        path: path.into(),
        source,
    })?;
    let labels: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    let labels = match labels.iter().rposition(|l| !l.is_empty()) {
        Some(last) => labels[..=last].to_vec(),
        None => Vec::new(),
    };
    if labels.len() != num_classes {
        return Err(DetectorError::BadLabels {
            path: path.into(),
            message: format!(
                "{} labels, but the model {} has {num_classes} classes",
                labels.len(),
                cfg.file.display()
            ),
        });
    }
    Ok(labels)
}

/// Model class ids of `names`, in order; the error names the first unknown label.
pub fn class_ids(labels: &[String], names: &[String]) -> Result<Vec<u16>, String> {
    names
        .iter()
        .map(|name| {
            labels
                .iter()
                .position(|l| l == name)
                .map(|i| i as u16)
                .ok_or_else(|| format!("model.classes: `{name}` is not one of the model's labels"))
        })
        .collect()
}
