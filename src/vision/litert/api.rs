//! The part of LiteRT's C API that edgewatch calls, loaded from `libLiteRt.so` at run time.
//!
//! Declarations are ours, checked against the exported symbols of the pinned wheel
//! (`nm -D libLiteRt.so`, 2.3.0) and, where the headers changed between releases, against the
//! library's machine code: `LiteRtCreateModelFromBuffer` takes the environment first (it did
//! not before 2.1.6), and the tensor type written by `LiteRtGetRankedTensorType` is the 8-rank
//! layout below (the loader compares the dimensions it reads with the flatbuffer's, so a
//! different layout is an error, not a misread).
//!
//! Why `dlopen` (through `libloading`) rather than linking: a missing, foreign-architecture or
//! older library is then one error naming the file and the command that installs it, instead
//! of the dynamic loader refusing to start the process; and the same binary runs TensorFlow
//! Lite 1.15 (`model.runtime = "tflite"`) on a machine without the library (armv7, for which
//! no wheel exists). Where the library is looked for: [`library_candidates`].

use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::OnceLock;

/// `LiteRtStatus`: 0 is success.
pub type Status = c_int;
/// Any LiteRT handle (environment, model, options, compiled model, tensor buffer, ...).
pub type Handle = *mut c_void;

/// `kLiteRtStatusOk`.
pub const OK: Status = 0;
/// `kLiteRtHwAcceleratorCpu`.
pub const HW_CPU: c_int = 1;
/// `kLiteRtEnvOptionTagMinLoggerSeverity`.
const ENV_MIN_LOGGER_SEVERITY: c_int = 25;
/// `kLiteRtAnyTypeInt`.
const ANY_INT: c_int = 2;
/// `kLiteRtLogSeverityError`: LiteRT's informational lines would interleave with ours (and
/// with `--json` consumers' stderr); its errors are turned into ours anyway.
const SEVERITY_ERROR: i64 = 3;

/// `LiteRtElementType` values edgewatch reads.
pub mod element {
    /// `kLiteRtElementTypeFloat32`.
    pub const FLOAT32: i32 = 1;
    /// `kLiteRtElementTypeUInt8`.
    pub const UINT8: i32 = 3;
    /// `kLiteRtElementTypeInt8`.
    pub const INT8: i32 = 9;
}

/// `LiteRtAny`: a type tag, then an 8-byte union (here its integer member).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Any {
    kind: c_int,
    value: i64,
}

/// `LiteRtEnvOption`: a tag and a `LiteRtAny`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvOption {
    tag: c_int,
    value: Any,
}

/// `LiteRtRankedTensorType`: element type, then `LiteRtLayout` (rank in the low 7 bits of the
/// first word, up to 8 dimensions, 8 strides). The reserve makes a larger layout in another
/// release write into our memory rather than past it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RankedTensorType {
    /// `LiteRtElementType`.
    pub element_type: c_int,
    rank_bits: u32,
    dims: [i32; 8],
    strides: [u32; 8],
    reserve: [u8; 184],
}

impl Default for RankedTensorType {
    fn default() -> Self {
        RankedTensorType {
            element_type: 0,
            rank_bits: 0,
            dims: [0; 8],
            strides: [0; 8],
            reserve: [0; 184],
        }
    }
}

impl RankedTensorType {
    /// The dimensions (empty if the rank is not one the layout can hold).
    pub fn dims(&self) -> &[i32] {
        let rank = (self.rank_bits & 0x7f) as usize;
        self.dims.get(..rank).unwrap_or(&[])
    }

    /// Sets the shape (no strides).
    pub fn set_dims(&mut self, dims: &[usize]) -> Result<(), String> {
        if dims.len() > self.dims.len() {
            return Err(format!("rank {} is over LiteRT's 8", dims.len()));
        }
        for (slot, &d) in self.dims.iter_mut().zip(dims) {
            *slot = i32::try_from(d).map_err(|_| format!("dimension {d} is too large"))?;
        }
        self.rank_bits = dims.len() as u32;
        Ok(())
    }
}

/// Destructor of an opaque options payload.
pub type PayloadDestructor = unsafe extern "C" fn(*mut c_void);

/// Generates the function table: one field per C function, each resolved by its symbol name.
macro_rules! api {
    ($($field:ident = $symbol:literal: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// LiteRT's functions, resolved once from the library.
        #[derive(Debug)]
        pub struct Api {
            $(
                #[doc = concat!("`", $symbol, "`.")]
                pub $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?,
            )*
        }

        impl Api {
            fn resolve(lib: &'static libloading::Library) -> Result<Api, String> {
                Ok(Api {
                    $(
                        // SAFETY: the symbol is a function of this signature in the pinned
                        // LiteRT release (see the module docs); the library stays loaded for
                        // the process lifetime (leaked), so the pointer never dangles.
                        $field: unsafe {
                            *lib.get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                                concat!($symbol, "\0").as_bytes(),
                            )
                            .map_err(|_| format!("it lacks {}", $symbol))?
                        },
                    )*
                })
            }
        }
    };
}

api! {
    create_environment = "LiteRtCreateEnvironment": fn(c_int, *const EnvOption, *mut Handle) -> Status;
    destroy_environment = "LiteRtDestroyEnvironment": fn(Handle);
    create_model_from_buffer = "LiteRtCreateModelFromBuffer": fn(Handle, *const c_void, usize, *mut Handle) -> Status;
    destroy_model = "LiteRtDestroyModel": fn(Handle);
    num_model_signatures = "LiteRtGetNumModelSignatures": fn(Handle, *mut usize) -> Status;
    model_signature = "LiteRtGetModelSignature": fn(Handle, usize, *mut Handle) -> Status;
    num_signature_inputs = "LiteRtGetNumSignatureInputs": fn(Handle, *mut usize) -> Status;
    num_signature_outputs = "LiteRtGetNumSignatureOutputs": fn(Handle, *mut usize) -> Status;
    signature_input = "LiteRtGetSignatureInputTensorByIndex": fn(Handle, usize, *mut Handle) -> Status;
    signature_output = "LiteRtGetSignatureOutputTensorByIndex": fn(Handle, usize, *mut Handle) -> Status;
    tensor_index = "LiteRtGetTensorIndex": fn(Handle, *mut u32) -> Status;
    ranked_tensor_type = "LiteRtGetRankedTensorType": fn(Handle, *mut RankedTensorType) -> Status;
    create_options = "LiteRtCreateOptions": fn(*mut Handle) -> Status;
    set_hardware_accelerators = "LiteRtSetOptionsHardwareAccelerators": fn(Handle, c_int) -> Status;
    create_opaque_options = "LiteRtCreateOpaqueOptions": fn(*const c_char, *mut c_void, Option<PayloadDestructor>, *mut Handle) -> Status;
    add_opaque_options = "LiteRtAddOpaqueOptions": fn(Handle, Handle) -> Status;
    create_compiled_model = "LiteRtCreateCompiledModel": fn(Handle, Handle, Handle, *mut Handle) -> Status;
    destroy_compiled_model = "LiteRtDestroyCompiledModel": fn(Handle);
    input_requirements = "LiteRtGetCompiledModelInputBufferRequirements": fn(Handle, usize, usize, *mut Handle) -> Status;
    output_requirements = "LiteRtGetCompiledModelOutputBufferRequirements": fn(Handle, usize, usize, *mut Handle) -> Status;
    requirements_buffer_size = "LiteRtGetTensorBufferRequirementsBufferSize": fn(Handle, *mut usize) -> Status;
    create_buffer_from_host_memory = "LiteRtCreateTensorBufferFromHostMemory": fn(*const RankedTensorType, *mut c_void, usize, Option<PayloadDestructor>, *mut Handle) -> Status;
    destroy_tensor_buffer = "LiteRtDestroyTensorBuffer": fn(Handle);
    run_compiled_model = "LiteRtRunCompiledModel": fn(Handle, usize, usize, *mut Handle, usize, *mut Handle) -> Status;
}

/// What `LiteRtStatus` codes mean, for error messages.
pub fn status_name(status: Status) -> &'static str {
    match status {
        0 => "ok",
        1 => "invalid argument",
        2 => "memory allocation failure",
        3 => "runtime failure",
        4 => "missing input tensor",
        5 => "unsupported",
        6 => "not found",
        500 => "file I/O error",
        501 => "invalid flatbuffer",
        504 => "compilation failed",
        _ => "error",
    }
}

/// Environment variable naming the library file, ahead of the usual places.
pub const LIB_ENV: &str = "EDGEWATCH_LITERT_LIB";

/// Where `libLiteRt.so` is looked for, in order: `$EDGEWATCH_LITERT_LIB`; `libLiteRt.so`
/// beside the executable (an installed unit), then in `../lib/edgewatch/` from it (the Debian
/// package); `vendor/litert/<arch>/` of the source tree it
/// was built from (where `scripts/setup.sh` puts it; the build records the path, like an
/// rpath); then the dynamic loader's own search (`LD_LIBRARY_PATH`, system directories).
pub fn library_candidates() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os(LIB_ENV) {
        return vec![PathBuf::from(path)];
    }
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
    {
        out.push(dir.join("libLiteRt.so"));
        // The Debian package: /usr/bin/edgewatch, /usr/lib/edgewatch/libLiteRt.so.
        out.push(dir.join("../lib/edgewatch/libLiteRt.so"));
    }
    out.push(PathBuf::from(env!("EDGEWATCH_LITERT_DIR")).join("libLiteRt.so"));
    out
}

/// Loads the library and resolves [`Api`] once per process; later calls return the same table
/// (or the same error).
pub fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Api, String> {
    let candidates = library_candidates();
    let explicit = std::env::var_os(LIB_ENV).is_some();
    let mut tried = Vec::new();
    let mut found = None;
    for path in &candidates {
        if !path.exists() {
            tried.push(path.display().to_string());
            continue;
        }
        found = Some(path.clone());
        break;
    }
    if let Some(path) = &found {
        check_architecture(path)?;
    }
    let lib = match found {
        // SAFETY: loading runs the library's initializers; libLiteRt.so's only register its
        // built-in accelerators and allocate, which is sound at any point of our start-up.
        Some(path) => unsafe { libloading::Library::new(&path) }.map_err(|e| {
            format!(
                "{}: cannot load LiteRT ({}); run scripts/setup.sh to install the library for \
                 this machine, or set model.runtime = \"tflite\"",
                path.display(),
                short_dl_error(&e.to_string(), &path)
            )
        })?,
        None if explicit => {
            return Err(format!(
            "{}: no such file ({LIB_ENV}); run scripts/setup.sh, or set model.runtime = \"tflite\"",
            tried.join(", ")
        ))
        }
        // SAFETY: as above, through the dynamic loader's search path.
        None => unsafe { libloading::Library::new("libLiteRt.so") }.map_err(|_| {
            format!(
                "LiteRT library libLiteRt.so not found (looked in {} and the loader's path); run \
                 scripts/setup.sh to install it, or set model.runtime = \"tflite\"",
                tried.join(", ")
            )
        })?,
    };
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    Api::resolve(lib).map_err(|e| {
        format!("libLiteRt.so is not the LiteRT release edgewatch expects (2.3): {e}; run scripts/setup.sh")
    })
}

/// ELF `e_machine` of the architecture this binary runs on.
const fn own_machine() -> Option<u16> {
    if cfg!(target_arch = "x86_64") {
        Some(62)
    } else if cfg!(target_arch = "aarch64") {
        Some(183)
    } else if cfg!(target_arch = "arm") {
        Some(40)
    } else {
        None
    }
}

fn machine_name(machine: u16) -> String {
    match machine {
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        40 => "32-bit ARM".into(),
        3 => "x86".into(),
        other => format!("ELF machine {other}"),
    }
}

/// Refuses, with a message that says so, a library built for another architecture (the
/// dynamic loader's own message for that is obscure, or just "cannot open").
fn check_architecture(path: &std::path::Path) -> Result<(), String> {
    use std::io::Read;
    let mut header = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header));
    if read.is_err() || &header[..4] != b"\x7fELF" {
        // Not an ELF file at all: the loader's error says so.
        return Ok(());
    }
    let machine = u16::from_le_bytes([header[18], header[19]]);
    match own_machine() {
        Some(own) if own != machine => Err(format!(
            "{}: a LiteRT library for {}, but this machine is {}; run scripts/setup.sh to \
             install the one for this machine, or set model.runtime = \"tflite\"",
            path.display(),
            machine_name(machine),
            machine_name(own)
        )),
        _ => Ok(()),
    }
}

/// The loader's message without the path it starts with (`/x/libLiteRt.so: invalid ELF
/// header` -> `invalid ELF header`).
fn short_dl_error<'a>(message: &'a str, path: &std::path::Path) -> &'a str {
    let prefix = format!("{}: ", path.display());
    message.strip_prefix(prefix.as_str()).unwrap_or(message)
}

/// Creates an environment with LiteRT's logging limited to errors.
pub fn create_environment(api: &Api) -> Result<Handle, Status> {
    let option = EnvOption {
        tag: ENV_MIN_LOGGER_SEVERITY,
        value: Any {
            kind: ANY_INT,
            value: SEVERITY_ERROR,
        },
    };
    let mut env: Handle = std::ptr::null_mut();
    // SAFETY: one valid option and a valid out-pointer, as the function expects.
    let status = unsafe { (api.create_environment)(1, &option, &mut env) };
    if status != OK || env.is_null() {
        return Err(status);
    }
    Ok(env)
}

/// Runs `f` with the process's stderr (fd 2) sent to a memory file, and returns what was
/// written there meanwhile. LiteRT reports why a model fails on stderr, on lines of its own;
/// loading captures them so the error edgewatch prints is one line that includes LiteRT's
/// reason. Only load-time calls are wrapped (no frame is running); a line another thread
/// logs meanwhile lands in the capture, and is printed again with the error if there is one.
/// If the memory file cannot be made, `f` runs uncaptured.
pub fn capture_stderr<R>(f: impl FnOnce() -> R) -> (R, String) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: plain fd syscalls on fds this function creates and closes (and on fd 2, which
    // it restores before returning); the C string is NUL-terminated.
    unsafe {
        let file = libc::memfd_create(c"litert-log".as_ptr(), libc::MFD_CLOEXEC);
        if file < 0 {
            return (f(), String::new());
        }
        let saved = libc::dup(2);
        if saved < 0 || libc::dup2(file, 2) < 0 {
            libc::close(file);
            if saved >= 0 {
                libc::close(saved);
            }
            return (f(), String::new());
        }
        let result = f();
        libc::dup2(saved, 2);
        libc::close(saved);
        let mut text = Vec::new();
        let mut chunk = [0u8; 4096];
        libc::lseek(file, 0, libc::SEEK_SET);
        loop {
            let n = libc::read(file, chunk.as_mut_ptr().cast(), chunk.len());
            if n <= 0 || text.len() > 64 * 1024 {
                break;
            }
            text.extend_from_slice(&chunk[..n as usize]);
        }
        libc::close(file);
        (result, String::from_utf8_lossy(&text).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_option_and_tensor_type_have_the_c_layout() {
        // LiteRtEnvOption: int tag; LiteRtAny { int type; union { ... int64 } }.
        assert_eq!(std::mem::size_of::<EnvOption>(), 24);
        assert_eq!(std::mem::offset_of!(EnvOption, value), 8);
        assert_eq!(std::mem::offset_of!(Any, value), 8);
        // LiteRtRankedTensorType: element type, rank word, 8 dims, 8 strides.
        assert_eq!(std::mem::offset_of!(RankedTensorType, dims), 8);
        assert_eq!(std::mem::offset_of!(RankedTensorType, reserve), 72);
    }

    #[test]
    fn rank_bits_limit_the_dimensions() {
        let mut t = RankedTensorType {
            rank_bits: 3 | 0x80,
            ..Default::default()
        };
        t.dims[..3].copy_from_slice(&[1, 896, 16]);
        assert_eq!(t.dims(), &[1, 896, 16]);
        t.rank_bits = 9;
        assert!(t.dims().is_empty());
    }

    #[test]
    fn loader_messages_keep_the_reason() {
        let path = std::path::Path::new("/x/libLiteRt.so");
        assert_eq!(
            short_dl_error("/x/libLiteRt.so: wrong ELF class: ELFCLASS32", path),
            "wrong ELF class: ELFCLASS32"
        );
        assert_eq!(short_dl_error("other", path), "other");
    }

    #[test]
    fn a_library_of_another_architecture_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libLiteRt.so");
        let mut header = [0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        let other: u16 = if cfg!(target_arch = "aarch64") {
            62
        } else {
            183
        };
        header[18..20].copy_from_slice(&other.to_le_bytes());
        std::fs::write(&path, header).unwrap();
        let err = check_architecture(&path).unwrap_err();
        assert!(err.contains("but this machine is"), "{err}");
        assert!(err.contains("scripts/setup.sh"), "{err}");
        std::fs::write(&path, b"not elf").unwrap();
        assert!(check_architecture(&path).is_ok());
    }
}
