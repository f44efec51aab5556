//! LiteRT backend of [`Detector`]: the same verified (and, for an SSD, cut) model as the
//! TensorFlow Lite 1.15 backend, run by LiteRT's CPU accelerator (XNNPACK), decoded by the same
//! heads ([`Head`]: the Rust SSD head, raw SSD anchors, the post-process op's outputs).
//!
//! **Which API.** `libLiteRt.so` (the `ai-edge-litert` wheel) exports only LiteRT's own C API
//! (`LiteRtCreateCompiledModel`, `LiteRtRunCompiledModel`, ...), not the classic
//! `TfLiteInterpreter*` one (checked with `nm -D` on 2.3.0; the wheel's other libraries do not
//! export it either), so the compiled-model API it is. It binds signature inputs and outputs
//! only; a model without signatures (the SSD, cut or not, BlazeFace) gets a default one from
//! the graph's inputs and outputs, which is why the SSD cut (which rewrites the graph outputs
//! and, through TFLite 1.15's schema, drops any signature) works unchanged. Each signature
//! tensor is mapped back to its flatbuffer index, so the heads read tensors by index as on
//! TFLite 1.15.
//!
//! **Memory.** Every input and output is bound once, at load, to a 64-byte-aligned buffer of
//! ours (`LiteRtCreateTensorBufferFromHostMemory`): XNNPACK reads and writes them in place
//! (LiteRT installs them as the tensors' custom allocations), the preprocessor writes the
//! frame straight into the input, the heads read the outputs where they are, and no lock or
//! copy happens per frame. `LiteRtRunCompiledModel` itself makes a fixed number of short-lived
//! mallocs per run (freed before it returns): 3 plus one per bound buffer, 16 for the cut SSD
//! (1 input, 12 head outputs), 6 for BlazeFace (`tests/zero_alloc.rs` asserts both). Fewer
//! outputs would mean fewer mallocs, but keeping the SSD's two concatenations (2 outputs) was
//! measured at 28: XNNPACK does not take a concatenation of inputs with different scales, so
//! TensorFlow Lite's own kernel runs it and allocates its input lists on every run.
//!
//! **Errors.** Everything is verified before LiteRT sees the bytes (`PreparedModel::read`),
//! and the model runs once at load on a zero input, so a model LiteRT cannot load, compile or
//! run is a load error (one line, with LiteRT's own reason), never a failure mid-stream.

pub mod api;

use std::ffi::c_void;
use std::sync::Arc;

use tflite::context::{ElementKind, TensorInfo};

use self::api::{Api, Handle, RankedTensorType, OK};
use super::detection::Detections;
use super::detector::{warm_up, Detector, DetectorError};
use super::preprocess::{InputSpec, InputTensor};
use super::tflite::{build_head, input_spec, load_labels, rust_head};
use super::tflite::{Head, PreparedModel, Tensors};
use crate::config::ModelConfig;

/// A 64-byte-aligned buffer bound to one model tensor.
#[derive(Debug)]
struct Bound {
    /// Flatbuffer tensor index.
    index: i32,
    /// Backing store; `offset` aligns it.
    memory: Vec<u8>,
    offset: usize,
    /// Bytes of the tensor (the buffer may be larger: LiteRT's requirement).
    len: usize,
    /// LiteRT's handle on it.
    handle: Handle,
}

/// LiteRT's alignment for host memory buffers (`LITERT_HOST_MEMORY_BUFFER_ALIGNMENT`).
const ALIGN: usize = 64;

impl Bound {
    fn bytes(&self) -> &[u8] {
        &self.memory[self.offset..self.offset + self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.memory[self.offset..self.offset + self.len]
    }
}

/// The tensors of a LiteRT model as [`Tensors`] sees them: indices and details from the
/// verified flatbuffer, bytes from the bound buffers.
#[derive(Debug)]
struct LiteRtTensors {
    model: Arc<PreparedModel>,
    inputs: Vec<Bound>,
    outputs: Vec<Bound>,
    input_indices: Vec<i32>,
    output_indices: Vec<i32>,
}

impl Tensors for LiteRtTensors {
    fn inputs(&self) -> &[i32] {
        &self.input_indices
    }
    fn outputs(&self) -> &[i32] {
        &self.output_indices
    }
    fn tensor_info(&self, index: i32) -> Option<TensorInfo> {
        let (_, name, kind, dims) = self.model.io.tensors.iter().find(|t| t.0 == index)?;
        Some(TensorInfo {
            name: name.clone(),
            element_kind: *kind,
            dims: dims.clone(),
        })
    }
    fn tensor_buffer(&self, index: i32) -> Option<&[u8]> {
        self.outputs
            .iter()
            .chain(&self.inputs)
            .find(|b| b.index == index)
            .map(Bound::bytes)
    }
}

/// LiteRT's objects for one compiled model and the buffers bound to it; dropping it destroys
/// them in order.
struct Compiled {
    api: &'static Api,
    env: Handle,
    model: Handle,
    compiled: Handle,
    /// Handles passed to each run, in signature order.
    input_handles: Vec<Handle>,
    output_handles: Vec<Handle>,
    tensors: LiteRtTensors,
}

impl Compiled {
    fn run(&mut self) -> i32 {
        // SAFETY: `compiled` is a live compiled model; the handle arrays hold one live tensor
        // buffer per signature input and output, in order, each over memory `tensors` owns.
        unsafe {
            (self.api.run_compiled_model)(
                self.compiled,
                0,
                self.input_handles.len(),
                self.input_handles.as_mut_ptr(),
                self.output_handles.len(),
                self.output_handles.as_mut_ptr(),
            )
        }
    }
}

/// A model compiled by LiteRT, with its input and output buffers bound.
pub struct LiteRtDetector {
    c: Compiled,
    input_spec: InputSpec,
    head: Head,
    labels: Vec<String>,
    score_threshold: f32,
    max_detections: usize,
}

impl std::fmt::Debug for LiteRtDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteRtDetector")
            .field("input_spec", &self.input_spec)
            .field("head", &self.head)
            .field("outputs", &self.c.output_handles.len())
            .finish_non_exhaustive()
    }
}

// SAFETY: the LiteRT objects are only used through `&mut self` (one thread at a time) and are
// not tied to the thread that created them; the buffers they point into are owned by the
// detector and move with it (a `Vec`'s heap block does not move when the `Vec` does). The
// shared `PreparedModel` is never written after load, and only its bytes are read.
unsafe impl Send for Compiled {}

/// Turns a LiteRT status into an error naming the model file and, if LiteRT logged one, its
/// reason.
fn check(status: i32, what: &str, logged: &str) -> Result<(), String> {
    if status == OK {
        return Ok(());
    }
    let reason = tidy(logged);
    Err(if reason.is_empty() {
        format!("{what} ({})", api::status_name(status))
    } else {
        format!("{what} ({}: {reason})", api::status_name(status))
    })
}

impl LiteRtDetector {
    /// Loads `cfg.file`, verifies it, compiles it for XNNPACK on `cfg.threads` threads and
    /// checks the labels against it.
    pub fn load(cfg: &ModelConfig) -> Result<LiteRtDetector, DetectorError> {
        // The model is verified before the library is even opened.
        let model = Arc::new(PreparedModel::read(cfg)?);
        Self::build(library()?, model, cfg, cfg.threads)
    }

    /// One single-threaded compiled model on `model`, which the detectors of a pool share.
    pub fn on_shared(
        model: Arc<PreparedModel>,
        cfg: &ModelConfig,
    ) -> Result<LiteRtDetector, DetectorError> {
        Self::build(library()?, model, cfg, 1)
    }

    /// Whether the Rust SSD head decodes (the graph was cut before its post-process op).
    pub fn has_rust_head(&self) -> bool {
        matches!(self.head, Head::QuantizedSsd { .. })
    }

    fn build(
        api: &'static Api,
        model: Arc<PreparedModel>,
        cfg: &ModelConfig,
        threads: u32,
    ) -> Result<LiteRtDetector, DetectorError> {
        let path = cfg.file.as_path();
        let bad = |message: String| DetectorError::BadModel {
            path: path.into(),
            message,
        };
        let (compiled, logged) = api::capture_stderr(|| compile(api, &model, threads));
        let c = compiled.map_err(|e| bad(with_log(e, &logged)))?;
        let input_spec = input_spec(&c.tensors, &model.info, cfg).map_err(bad)?;
        let (head, num_classes) = match model.ssd.as_ref() {
            Some(ssd) => rust_head(&c.tensors, ssd, cfg).map_err(bad)?,
            None => build_head(&c.tensors, &model.info, cfg, &input_spec).map_err(bad)?,
        };
        let labels = load_labels(cfg, num_classes)?;
        let mut detector = LiteRtDetector {
            c,
            input_spec,
            head,
            labels,
            score_threshold: cfg.score_threshold,
            max_detections: cfg.max_detections,
        };
        // One run and decode on the zeroed input: what LiteRT only finds out when it first
        // runs (tensor allocation, a kernel's preparation) is then a load error, with what
        // LiteRT logged, not a failed frame.
        let (warmed, logged) = api::capture_stderr(|| warm_up(&mut detector, path));
        warmed.map_err(|e| match e {
            DetectorError::BadModel { path, message } => DetectorError::BadModel {
                path,
                message: with_log(message, &logged),
            },
            other => other,
        })?;
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
        Ok(detector)
    }
}

/// What LiteRT logged, as one line: severity prefixes and source locations dropped, lines
/// joined with "; ".
fn tidy(logged: &str) -> String {
    logged
        .lines()
        .map(|line| {
            let mut line = line.trim();
            for prefix in ["ERROR: ", "WARNING: ", "INFO: "] {
                line = line.strip_prefix(prefix).unwrap_or(line);
            }
            if line.starts_with('[') {
                line = line.split_once("] ").map_or(line, |(_, rest)| rest);
            }
            line.trim_end_matches('.').trim()
        })
        .filter(|line| !line.is_empty() && !line.starts_with("See instructions"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Appends what LiteRT logged, if anything, to an error message.
fn with_log(message: String, logged: &str) -> String {
    let logged = tidy(logged);
    if logged.is_empty() || message.contains(&logged) {
        message
    } else {
        format!("{message}; LiteRT said: {logged}")
    }
}

/// The library, or the error saying how to install it (a configuration's runtime choice is
/// the user's to change, so the message names both fixes).
fn library() -> Result<&'static Api, DetectorError> {
    api::api().map_err(DetectorError::Runtime)
}

/// Environment, model, options, compiled model and bound buffers; the head is filled in by
/// the caller.
fn compile(
    api: &'static Api,
    prepared: &Arc<PreparedModel>,
    threads: u32,
) -> Result<Compiled, String> {
    let env = api::create_environment(api)
        .map_err(|s| check(s, "LiteRT environment", "").unwrap_err())?;
    // From here on the detector owns every handle made, so an error drops (frees) them.
    let mut d = Compiled {
        api,
        env,
        model: std::ptr::null_mut(),
        compiled: std::ptr::null_mut(),
        input_handles: Vec::new(),
        output_handles: Vec::new(),
        tensors: LiteRtTensors {
            model: prepared.clone(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            input_indices: Vec::new(),
            output_indices: Vec::new(),
        },
    };
    let bytes = prepared.bytes();
    // SAFETY: `bytes` belongs to the `PreparedModel` the detector holds an `Arc` of, so it
    // outlives the LiteRT model, as LiteRtCreateModelFromBuffer requires.
    let status = unsafe {
        (api.create_model_from_buffer)(d.env, bytes.as_ptr().cast(), bytes.len(), &mut d.model)
    };
    check(status, "LiteRT cannot load the model", "")?;
    let signature = signature(api, d.model)?;
    let options = options(api, threads)?;
    // SAFETY: live environment, model and options; `compiled` is a valid out-pointer. The
    // options are not destroyed afterwards (see `options`).
    let status = unsafe { (api.create_compiled_model)(d.env, d.model, options, &mut d.compiled) };
    check(
        status,
        "LiteRT cannot compile the model (an op it does not support, or inconsistent tensors)",
        "",
    )?;
    for input in [true, false] {
        let count = signature_count(api, signature, input)?;
        for i in 0..count {
            let bound = bind(api, &d, prepared, signature, input, i)?;
            if input {
                d.input_handles.push(bound.handle);
                d.tensors.input_indices.push(bound.index);
                d.tensors.inputs.push(bound);
            } else {
                d.output_handles.push(bound.handle);
                d.tensors.output_indices.push(bound.index);
                d.tensors.outputs.push(bound);
            }
        }
    }
    Ok(d)
}

/// The model's first signature (LiteRT makes a default one for a model without any).
fn signature(api: &Api, model: Handle) -> Result<Handle, String> {
    let mut n = 0usize;
    // SAFETY: live model, valid out-pointer.
    check(
        unsafe { (api.num_model_signatures)(model, &mut n) },
        "LiteRT signatures",
        "",
    )?;
    if n == 0 {
        return Err("LiteRT finds no signature in the model".into());
    }
    if n > 1 {
        log::info!("the model has {n} signatures; LiteRT runs the first");
    }
    let mut signature: Handle = std::ptr::null_mut();
    // SAFETY: index 0 < n; valid out-pointer.
    check(
        unsafe { (api.model_signature)(model, 0, &mut signature) },
        "LiteRT signature",
        "",
    )?;
    Ok(signature)
}

fn signature_count(api: &Api, signature: Handle, input: bool) -> Result<usize, String> {
    let mut n = 0usize;
    let f = if input {
        api.num_signature_inputs
    } else {
        api.num_signature_outputs
    };
    // SAFETY: live signature (owned by the model), valid out-pointer.
    check(
        unsafe { f(signature, &mut n) },
        "LiteRT signature tensors",
        "",
    )?;
    Ok(n)
}

/// Compilation options: the CPU (XNNPACK) with `threads` threads. XNNPACK's settings go in as
/// opaque options named `xnnpack` whose payload is TOML text (`num_threads = N`), as LiteRT's
/// own CPU options helper writes it (that helper is not exported by the library).
///
/// The options are never destroyed: whether the options own the opaque options added to them
/// changed between LiteRT releases, and a double free would be worse than the ~100 bytes kept
/// per compiled model.
fn options(api: &Api, threads: u32) -> Result<Handle, String> {
    let mut options: Handle = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    check(
        unsafe { (api.create_options)(&mut options) },
        "LiteRT options",
        "",
    )?;
    // SAFETY: live options.
    check(
        unsafe { (api.set_hardware_accelerators)(options, api::HW_CPU) },
        "LiteRT options",
        "",
    )?;
    let text = format!("num_threads = {threads}\n\0");
    // SAFETY: `text` is NUL-terminated; strdup copies it into malloc'd memory, which LiteRT
    // frees with the destructor we give it (libc's free).
    let payload = unsafe { libc::strdup(text.as_ptr().cast()) };
    if payload.is_null() {
        return Err("out of memory".into());
    }
    let mut opaque: Handle = std::ptr::null_mut();
    // SAFETY: NUL-terminated identifier, malloc'd payload with its matching destructor, valid
    // out-pointer.
    let status = unsafe {
        (api.create_opaque_options)(
            c"xnnpack".as_ptr(),
            payload.cast(),
            Some(libc::free as unsafe extern "C" fn(*mut c_void)),
            &mut opaque,
        )
    };
    if status != OK {
        // SAFETY: LiteRT did not take the payload.
        unsafe { libc::free(payload.cast()) };
    }
    check(status, "LiteRT XNNPACK options", "")?;
    // SAFETY: live options and opaque options.
    check(
        unsafe { (api.add_opaque_options)(options, opaque) },
        "LiteRT XNNPACK options",
        "",
    )?;
    Ok(options)
}

/// Binds signature input or output `i` to a buffer of ours, after checking that LiteRT sees
/// the tensor as the verified flatbuffer declares it.
fn bind(
    api: &Api,
    d: &Compiled,
    prepared: &PreparedModel,
    signature: Handle,
    input: bool,
    i: usize,
) -> Result<Bound, String> {
    let what = if input { "input" } else { "output" };
    let mut tensor: Handle = std::ptr::null_mut();
    let f = if input {
        api.signature_input
    } else {
        api.signature_output
    };
    // SAFETY: live signature, `i` below its tensor count, valid out-pointer.
    check(
        unsafe { f(signature, i, &mut tensor) },
        "LiteRT signature tensor",
        "",
    )?;
    let mut index = 0u32;
    // SAFETY: live tensor, valid out-pointer.
    check(
        unsafe { (api.tensor_index)(tensor, &mut index) },
        "LiteRT tensor index",
        "",
    )?;
    let index = index as i32;
    let (_, name, kind, shape) =
        prepared
            .io
            .tensors
            .iter()
            .find(|t| t.0 == index)
            .ok_or(format!(
                "LiteRT's signature {what} {i} is tensor {index}, not one of the graph's"
            ))?;
    let mut ty = RankedTensorType::default();
    // SAFETY: live tensor; `ty` is at least as large as LiteRtRankedTensorType.
    check(
        unsafe { (api.ranked_tensor_type)(tensor, &mut ty) },
        "LiteRT tensor type",
        "",
    )?;
    let mut dims: Vec<usize> = ty.dims().iter().map(|&d| d.max(0) as usize).collect();
    if dims.is_empty() && !shape.is_empty() {
        // An output whose op sets its shape when it runs (the post-process op's): bind it
        // with the shape that op will give it.
        ty.set_dims(shape)
            .map_err(|e| format!("{what} `{name}`: {e}"))?;
        dims = shape.clone();
    }
    let element = match kind {
        ElementKind::kTfLiteUInt8 => Some(api::element::UINT8),
        ElementKind::kTfLiteInt8 => Some(api::element::INT8),
        ElementKind::kTfLiteFloat32 => Some(api::element::FLOAT32),
        _ => None,
    };
    if &dims != shape || element.is_some_and(|e| e != ty.element_type) {
        return Err(format!(
            "LiteRT sees {what} `{name}` as type {} shape {dims:?}, the model says {kind:?} \
             {shape:?} (a libLiteRt.so other than 2.3?)",
            ty.element_type
        ));
    }
    let element_size = match kind {
        ElementKind::kTfLiteFloat32 | ElementKind::kTfLiteInt32 => 4,
        _ => 1,
    };
    let len = shape.iter().product::<usize>() * element_size;
    let mut requirements: Handle = std::ptr::null_mut();
    let f = if input {
        api.input_requirements
    } else {
        api.output_requirements
    };
    // SAFETY: live compiled model, signature 0, `i` in range, valid out-pointer. The
    // requirements stay owned by the compiled model.
    check(
        unsafe { f(d.compiled, 0, i, &mut requirements) },
        "LiteRT buffer requirements",
        "",
    )?;
    let mut size = 0usize;
    // SAFETY: live requirements, valid out-pointer.
    check(
        unsafe { (api.requirements_buffer_size)(requirements, &mut size) },
        "LiteRT buffer requirements",
        "",
    )?;
    // LiteRT may ask for more than the tensor holds (padding); never less than it holds.
    let size = size.max(len);
    let memory = vec![0u8; size + ALIGN];
    let offset = memory.as_ptr().align_offset(ALIGN);
    let mut bound = Bound {
        index,
        memory,
        offset,
        len,
        handle: std::ptr::null_mut(),
    };
    let host = bound.memory[offset..].as_mut_ptr();
    // SAFETY: `ty` came from LiteRT for this tensor; `host` points to `size` writable bytes,
    // 64-byte aligned, owned by `bound`, which lives (unmoved on the heap) as long as the
    // handle; no deallocator: the memory is ours.
    let status = unsafe {
        (api.create_buffer_from_host_memory)(&ty, host.cast(), size, None, &mut bound.handle)
    };
    check(status, "LiteRT tensor buffer", "")?;
    Ok(bound)
}

impl Drop for Compiled {
    fn drop(&mut self) {
        let api = self.api;
        // LiteRT logs each accelerator it destroys at INFO level whatever the environment's
        // logger severity: keep that off stderr.
        api::capture_stderr(|| {
            // SAFETY: each handle was created by LiteRT and is destroyed once, users first: the
            // compiled model, then the buffers it ran on, the model, the environment. Null
            // handles (a load that failed part-way) are skipped.
            unsafe {
                if !self.compiled.is_null() {
                    (api.destroy_compiled_model)(self.compiled);
                }
                for b in self.tensors.inputs.iter().chain(&self.tensors.outputs) {
                    if !b.handle.is_null() {
                        (api.destroy_tensor_buffer)(b.handle);
                    }
                }
                if !self.model.is_null() {
                    (api.destroy_model)(self.model);
                }
                if !self.env.is_null() {
                    (api.destroy_environment)(self.env);
                }
            }
        });
    }
}

impl Detector for LiteRtDetector {
    fn input_spec(&self) -> &InputSpec {
        &self.input_spec
    }

    fn input_tensor(&mut self) -> InputTensor<'_> {
        let kind = self.input_spec.kind;
        let bytes = match self.c.tensors.inputs.first_mut() {
            Some(b) => b.bytes_mut(),
            None => &mut [],
        };
        InputTensor::from_bytes(kind, bytes)
    }

    fn invoke(&mut self) -> Result<(), DetectorError> {
        if self.c.run() == OK {
            Ok(())
        } else {
            Err(DetectorError::Invoke)
        }
    }

    fn decode(&mut self, out: &mut Detections) -> Result<(), DetectorError> {
        let limits = (self.labels.len(), self.score_threshold, self.max_detections);
        self.head.decode(&self.c.tensors, limits, out)
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litert_log_lines_become_one_line() {
        let logged = "ERROR: Encountered unresolved custom op: X.\nSee instructions: https://x \n\
                      ERROR: Node number 0 (X) failed to prepare.\n\
                      ERROR: [litert_compiled_model.cc:164] Failed to allocate tensors\n";
        assert_eq!(
            tidy(logged),
            "Encountered unresolved custom op: X; Node number 0 (X) failed to prepare; \
             Failed to allocate tensors"
        );
        let err = check(3, "LiteRT cannot run the model", logged).unwrap_err();
        assert_eq!(err.lines().count(), 1);
        assert!(err.starts_with("LiteRT cannot run the model (runtime failure: "));
        assert_eq!(check(0, "x", logged), Ok(()));
        assert_eq!(tidy(""), "");
    }
}
