//! What a fake device offers and which faults it injects, read from the environment at each
//! open (so a single-process test can change the variables between opens).
//!
//! Deciding whether a path is a fake device runs on every `open` in the process, so
//! [`device_index`] reads `FAKE_V4L2_DEVICES` with `getenv` and compares bytes in place: no
//! allocation, no lock. Everything else here runs only once a fake device is being opened, where
//! allocating is fine.

use core::ffi::{c_char, CStr};
use std::io::Write;
use std::path::PathBuf;

use super::frames::PixelFormat;

/// Largest number of formats, sizes or intervals a device offers (extra entries are ignored).
const MAX_LIST: usize = 16;
/// Frame sources loaded when `FAKE_V4L2_MAX_FRAMES` is unset.
const DEFAULT_MAX_FRAMES: usize = 32;
/// Frame rate when `FAKE_V4L2_FPS` is unset.
const DEFAULT_FPS: u32 = 30;
/// Highest frame rate accepted from `FAKE_V4L2_FPS`.
const MAX_FPS: u32 = 1000;

/// Calls `f` with the value of the environment variable `name` (`None` if unset).
///
/// `getenv` neither allocates nor locks; the slice is only valid while nobody changes the
/// environment, which is why it does not escape `f`.
pub(crate) fn with_env<R>(name: &CStr, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    // SAFETY: `name` is NUL-terminated. The returned pointer is either null or a NUL-terminated
    // string owned by the environment; it is read before this function returns, and the
    // documented contract of the fake is that the environment is not changed concurrently with
    // opens of fake devices (tests set variables between opens, on one thread).
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return f(None);
    }
    // SAFETY: non-null, NUL-terminated (see above).
    let bytes = unsafe { CStr::from_ptr(value as *const c_char) }.to_bytes();
    f(Some(bytes))
}

/// Position of `path` in `FAKE_V4L2_DEVICES` (comma-separated, exact byte comparison), or
/// `None` when the path is not a fake device (or the variable is unset: the fake is inert).
pub(crate) fn device_index(path: &[u8]) -> Option<usize> {
    with_env(c"FAKE_V4L2_DEVICES", |list| {
        list?
            .split(|&b| b == b',')
            .map(|entry| entry.trim_ascii())
            .filter(|entry| !entry.is_empty())
            .position(|entry| entry == path)
    })
}

/// Writes one diagnostic line to stderr (never panics, unlike `eprintln!`).
pub(crate) fn warn(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "fake-v4l2: {message}");
}

/// The scripted faults of one open (each `N` counts frames of that open; see the crate docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Faults {
    /// `unplug@N`: after N successful DQBUFs the device is gone (ENODEV, POLLERR|POLLHUP).
    pub(crate) unplug: Option<u64>,
    /// `eio@N`: after N successful DQBUFs every DQBUF fails with EIO (poll: POLLERR).
    pub(crate) eio: Option<u64>,
    /// `stall@N`: after N frames have been filled no more frames are produced.
    pub(crate) stall: Option<u64>,
    /// `short@N`: frames filled after the first N carry half their bytes.
    pub(crate) short: Option<u64>,
}

impl Faults {
    /// Parses `kind@N[,kind@N...]`; bad entries are reported on stderr and ignored.
    fn parse(text: &[u8]) -> Faults {
        let mut faults = Faults::default();
        for entry in text.split(|&b| b == b',').map(|e| e.trim_ascii()) {
            if entry.is_empty() {
                continue;
            }
            let parsed = entry
                .iter()
                .position(|&b| b == b'@')
                .and_then(|at| Some((&entry[..at], parse_u64(&entry[at + 1..])?)));
            let slot = match parsed {
                Some((b"unplug", n)) => Some((&mut faults.unplug, n)),
                Some((b"eio", n)) => Some((&mut faults.eio, n)),
                Some((b"stall", n)) => Some((&mut faults.stall, n)),
                Some((b"short", n)) => Some((&mut faults.short, n)),
                _ => None,
            };
            match slot {
                Some((slot, n)) => *slot = Some(n),
                None => warn(format_args!(
                    "ignoring fault {:?} (expected unplug@N, eio@N, stall@N or short@N)",
                    String::from_utf8_lossy(entry)
                )),
            }
        }
        faults
    }
}

/// Everything an open reads from the environment.
#[derive(Debug, Clone)]
pub(crate) struct DeviceConfig {
    /// Position of the path in `FAKE_V4L2_DEVICES` (reported as bus_info `fake:N`).
    pub(crate) index: usize,
    /// Hash of the path, to remember "absent" devices across opens.
    pub(crate) path_hash: u64,
    /// Formats offered, in enumeration order (never empty).
    pub(crate) formats: Vec<PixelFormat>,
    /// Frame sizes offered for every format, in enumeration order (never empty, even sizes).
    pub(crate) sizes: Vec<(u32, u32)>,
    /// Frame rates offered, fastest first (never empty).
    pub(crate) rates: Vec<u32>,
    /// Production rate until `S_PARM` changes it.
    pub(crate) default_fps: u32,
    /// Scripted faults of this open.
    pub(crate) faults: Faults,
    /// Opens that fail with ENOENT after an unplug of this path.
    pub(crate) absent_opens: u32,
    /// `FAKE_V4L2_FRAMES`: an image folder, an `.mjpeg` file or an image; `None`: test pattern.
    pub(crate) frames: Option<PathBuf>,
    /// `FAKE_V4L2_MAX_FRAMES`: how many source frames to load.
    pub(crate) max_frames: usize,
}

impl DeviceConfig {
    /// Reads the configuration for the fake device at `path`, listed at `index`.
    pub(crate) fn from_env(path: &[u8], index: usize) -> DeviceConfig {
        let formats = with_env(c"FAKE_V4L2_FORMATS", |v| v.map(parse_formats))
            .filter(|list| !list.is_empty())
            .unwrap_or_else(|| PixelFormat::ALL.to_vec());
        let sizes = with_env(c"FAKE_V4L2_SIZES", |v| v.map(parse_sizes))
            .filter(|list| !list.is_empty())
            .unwrap_or_else(|| vec![(640, 480), (320, 240), (640, 360)]);
        let default_fps = with_env(c"FAKE_V4L2_FPS", |v| v.and_then(parse_u64))
            .map(|fps| fps.clamp(1, u64::from(MAX_FPS)) as u32)
            .unwrap_or(DEFAULT_FPS);
        let mut rates = vec![30, 15];
        if !rates.contains(&default_fps) {
            rates.push(default_fps);
        }
        rates.sort_unstable_by(|a, b| b.cmp(a));
        DeviceConfig {
            index,
            path_hash: path_hash(path),
            formats,
            sizes,
            rates,
            default_fps,
            faults: fault_text(path, Faults::parse),
            absent_opens: with_env(c"FAKE_V4L2_ABSENT_OPENS", |v| v.and_then(parse_u64))
                .map_or(0, |k| k.min(u64::from(u32::MAX)) as u32),
            frames: with_env(c"FAKE_V4L2_FRAMES", |v| {
                v.filter(|v| !v.is_empty()).map(|v| {
                    use std::os::unix::ffi::OsStrExt;
                    PathBuf::from(std::ffi::OsStr::from_bytes(v))
                })
            }),
            max_frames: with_env(c"FAKE_V4L2_MAX_FRAMES", |v| v.and_then(parse_u64))
                .map_or(DEFAULT_MAX_FRAMES, |n| n.clamp(1, 10_000) as usize),
        }
    }
}

/// Applies `parse` to `FAKE_V4L2_FAULT_<basename of path>` if set, else to `FAKE_V4L2_FAULT`.
fn fault_text(path: &[u8], parse: impl Fn(&[u8]) -> Faults) -> Faults {
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let mut name = b"FAKE_V4L2_FAULT_".to_vec();
    name.extend_from_slice(base);
    name.push(0);
    let specific = CStr::from_bytes_with_nul(&name)
        .ok()
        .and_then(|name| with_env(name, |v| v.map(&parse)));
    specific.unwrap_or_else(|| with_env(c"FAKE_V4L2_FAULT", |v| v.map(&parse).unwrap_or_default()))
}

/// FNV-1a: a stable key for a device path without storing the path.
pub(crate) fn path_hash(path: &[u8]) -> u64 {
    path.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A decimal number, surrounding blanks allowed.
fn parse_u64(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

/// `YUYV,MJPG,...`: unknown fourccs are reported and skipped.
fn parse_formats(text: &[u8]) -> Vec<PixelFormat> {
    let mut formats = Vec::new();
    for entry in text.split(|&b| b == b',').map(|e| e.trim_ascii()) {
        let format = <[u8; 4]>::try_from(entry)
            .ok()
            .and_then(|code| PixelFormat::from_fourcc(u32::from_le_bytes(code)));
        match format {
            Some(f) if !formats.contains(&f) && formats.len() < MAX_LIST => formats.push(f),
            Some(_) => {}
            None if entry.is_empty() => {}
            None => warn(format_args!(
                "ignoring format {:?} in FAKE_V4L2_FORMATS (offered: YUYV MJPG NV12 YU12 RGB3 GREY)",
                String::from_utf8_lossy(entry)
            )),
        }
    }
    formats
}

/// `640x360,320x180`: sizes are rounded down to even numbers (4:2:0 and 4:2:2 need them).
fn parse_sizes(text: &[u8]) -> Vec<(u32, u32)> {
    let mut sizes = Vec::new();
    for entry in text.split(|&b| b == b',').map(|e| e.trim_ascii()) {
        let size = entry
            .iter()
            .position(|&b| b == b'x' || b == b'X')
            .and_then(|x| Some((parse_u64(&entry[..x])?, parse_u64(&entry[x + 1..])?)))
            .filter(|&(w, h)| (2..=8192).contains(&w) && (2..=8192).contains(&h))
            .map(|(w, h)| ((w & !1) as u32, (h & !1) as u32));
        match size {
            Some(s) if !sizes.contains(&s) && sizes.len() < MAX_LIST => sizes.push(s),
            Some(_) => {}
            None if entry.is_empty() => {}
            None => warn(format_args!(
                "ignoring size {:?} in FAKE_V4L2_SIZES (expected WxH, 2..=8192)",
                String::from_utf8_lossy(entry)
            )),
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    #[test]
    fn faults_parse_every_kind_and_skip_bad_entries() {
        let faults = super::Faults::parse(b"short@5, unplug@20,bogus@1,eio@x");
        assert_eq!(faults.short, Some(5));
        assert_eq!(faults.unplug, Some(20));
        assert_eq!(faults.eio, None);
        assert_eq!(faults.stall, None);
    }

    #[test]
    fn sizes_round_down_to_even() {
        assert_eq!(
            super::parse_sizes(b"641x361, 320X180,0x5"),
            vec![(640, 360), (320, 180)]
        );
    }
}
