//! Replay of recorded frames: a directory of images (BMP, PNG, JPEG, PPM), one image, a raw
//! Y4M video or an MJPEG file (`.mjpeg`, `.mjpg`: concatenated JPEGs), delivered in the pixel
//! format a real camera would produce.
//!
//! Images are decoded and converted once, at start-up, into slots sized by
//! `cameras[].max_frames`; a Y4M video streams through one preallocated picture, an MJPEG
//! file through a buffer of `cameras[].max_frame_kib` and the JPEG decoder's NV12 frame. Paced replay
//! behaves like a camera: frames fall due at the configured fps whether or not the pipeline is
//! ready, and the pipeline gets the newest one, the rest being counted as dropped.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::convert;
use super::jpeg::{self, JpegDecoder};
use super::mjpeg_file::MjpegFile;
use super::y4m::{self, Y4mError};
use super::{CaptureError, CaptureStats, Frame, FrameFormat, FrameSource, Next, PixelFormat};
use crate::clock::Clock;
use crate::config::CameraConfig;

/// File endings replayed as MJPEG files.
const MJPEG_EXTENSIONS: [&str; 2] = ["mjpeg", "mjpg"];

/// The time between frames a replay at `fps` delivers; `None` (lock-step) for 0. Callers that
/// drive a replay's clock frame by frame (`eval`) step by exactly this.
pub fn frame_interval(fps: f32) -> Option<Duration> {
    (fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps as f64))
}

/// Image file endings a directory replay picks up.
const IMAGE_EXTENSIONS: [&str; 6] = ["bmp", "png", "jpg", "jpeg", "ppm", "pnm"];

/// A replayed recording that behaves like a camera.
pub struct ReplaySource {
    format: FrameFormat,
    media: Media,
    clock: Arc<dyn Clock>,
    /// Frame interval; `None` replays in lock-step with the pipeline.
    interval: Option<Duration>,
    looping: bool,
    /// Clock time of frame 0.
    start: Duration,
    /// Sequence number the next delivered frame will have at least.
    next_seq: u64,
    stats: CaptureStats,
}

impl std::fmt::Debug for ReplaySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplaySource")
            .field("format", &self.format)
            .field("interval", &self.interval)
            .field("looping", &self.looping)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

enum Media {
    /// Decoded images, `count` slots of one frame each, back to back.
    Images { slots: Vec<u8>, count: u64 },
    /// A Y4M file streamed through one I420 picture and one converted frame.
    Y4m(Box<Y4mStream>),
    /// An MJPEG file streamed through one compressed frame and one decoded frame.
    Mjpeg(Box<MjpegStream>),
}

struct MjpegStream {
    file: MjpegFile,
    decoder: JpegDecoder,
    nv12: Vec<u8>,
    /// The frame converted to the camera's format; empty when that is NV12.
    frame: Vec<u8>,
    /// Scratch RGB for formats other than NV12 and RGB24; empty otherwise.
    rgb: Vec<u8>,
    /// Index in the file of the next frame to read, sequence number it will carry, and the
    /// frames in the file once known (as for Y4M).
    file_index: u64,
    next_read_seq: u64,
    loop_len: Option<u64>,
}

struct Y4mStream {
    path: PathBuf,
    reader: BufReader<File>,
    /// File offset of the first FRAME line.
    data_start: u64,
    line: Vec<u8>,
    i420: Vec<u8>,
    frame: Vec<u8>,
    /// Index in the file of the next picture to read.
    file_index: u64,
    /// Sequence number the next picture read will carry.
    next_read_seq: u64,
    /// Pictures in the file, known after the first pass.
    loop_len: Option<u64>,
}

impl ReplaySource {
    /// Opens the recording named by `cam.path` and prepares every buffer it will use.
    pub fn open(cam: &CameraConfig, clock: Arc<dyn Clock>) -> Result<ReplaySource, CaptureError> {
        let format = FrameFormat {
            width: cam.width,
            height: cam.height,
            pixel_format: cam.capture_format().delivered(),
        };
        let path = cam.path.as_path();
        let meta = std::fs::metadata(path).map_err(|source| io_err(path, source))?;
        let media = if meta.is_dir() {
            let files = list_images(path, cam.pattern.as_deref(), cam.max_frames)?;
            load_images(&files, format)?
        } else if has_extension(path, &["y4m"]) {
            open_y4m(path, format)?
        } else if has_extension(path, &MJPEG_EXTENSIONS) {
            open_mjpeg(path, format, cam.max_frame_bytes())?
        } else {
            load_images(&[path.to_path_buf()], format)?
        };
        let interval = frame_interval(cam.fps);
        let start = clock.now();
        Ok(ReplaySource {
            format,
            media,
            clock,
            interval,
            looping: cam.looping,
            start,
            next_seq: 0,
            stats: CaptureStats {
                online: true,
                ..CaptureStats::default()
            },
        })
    }

    /// Clock time at which frame `seq` falls due.
    fn due_at(&self, seq: u64) -> Duration {
        let step = self.interval.map_or(0, |i| i.as_nanos() as u64);
        self.start + Duration::from_nanos(step.saturating_mul(seq))
    }

    /// Sequence number of the newest frame due now, waiting for the next one if none is due.
    fn due_seq(&self) -> u64 {
        let Some(interval) = self.interval else {
            return self.next_seq;
        };
        let next_at = self.due_at(self.next_seq);
        let now = self.clock.now();
        if now < next_at {
            self.clock.sleep_until(next_at);
            return self.next_seq;
        }
        let elapsed = now - self.start;
        (elapsed.as_nanos() / interval.as_nanos().max(1)) as u64
    }
}

impl FrameSource for ReplaySource {
    fn format(&self) -> FrameFormat {
        self.format
    }

    fn next_frame(&mut self) -> Result<Next<'_>, CaptureError> {
        let seq = self.due_seq().max(self.next_seq);
        let timestamp = match self.interval {
            Some(_) => self.due_at(seq),
            None => self.clock.now(),
        };
        let frame_len = self.format.frame_len();
        let data: &[u8] = match &mut self.media {
            Media::Images { slots, count } => {
                if !self.looping && seq >= *count {
                    return Ok(Next::End);
                }
                let i = (seq % *count) as usize;
                &slots[i * frame_len..(i + 1) * frame_len]
            }
            Media::Y4m(y) => {
                let found =
                    read_y4m_until(y, seq, self.looping).map_err(|e| y4m_err(&y.path, e))?;
                if !found {
                    return Ok(Next::End);
                }
                let f = self.format;
                if let Err(e) =
                    convert::i420_to(f.pixel_format, f.width, f.height, &y.i420, &mut y.frame)
                {
                    return Err(CaptureError::Decode {
                        path: y.path.clone(),
                        message: e.to_string(),
                    });
                }
                &y.frame
            }
            Media::Mjpeg(m) => {
                let corrupt = match read_mjpeg_until(m, seq, self.looping)? {
                    Some(corrupt) => corrupt,
                    None => return Ok(Next::End),
                };
                self.stats.corrupt += corrupt;
                mjpeg_frame(m, self.format)?
            }
        };
        self.stats.dropped += seq - self.next_seq;
        self.stats.delivered += 1;
        self.next_seq = seq + 1;
        Ok(Next::Frame(Frame {
            data,
            seq,
            timestamp,
        }))
    }

    fn stats(&self) -> CaptureStats {
        self.stats
    }
}

/// Reads forward, rewinding at the end when looping, until the picture for sequence number
/// `seq` is in `i420`; `Ok(false)` when a non-looping file ends first.
fn read_y4m_until(y: &mut Y4mStream, seq: u64, looping: bool) -> Result<bool, Y4mError> {
    loop {
        // Whole loops the pipeline missed are skipped, not read.
        if let Some(len) = y.loop_len {
            y.next_read_seq += (seq - y.next_read_seq) / len * len;
        }
        if y4m::read_frame(&mut y.reader, &mut y.line, &mut y.i420, y.file_index)? {
            let got = y.next_read_seq;
            y.next_read_seq += 1;
            y.file_index += 1;
            if got == seq {
                return Ok(true);
            }
            continue;
        }
        if y.file_index == 0 {
            return Err(Y4mError::Format("the file holds no frames".into()));
        }
        if !looping {
            return Ok(false);
        }
        y.loop_len = Some(y.file_index);
        y.file_index = 0;
        y.reader.seek(SeekFrom::Start(y.data_start))?;
    }
}

/// Reads forward, rewinding at the end when looping, until the frame for sequence number
/// `seq` is decoded into `m.nv12`; `None` when a non-looping file ends first, otherwise how
/// many frames were damaged on the way (each is skipped, as a camera's would be, and the next
/// frame takes its place).
fn read_mjpeg_until(
    m: &mut MjpegStream,
    seq: u64,
    looping: bool,
) -> Result<Option<u64>, CaptureError> {
    let mut corrupt = 0;
    loop {
        if let Some(len) = m.loop_len {
            m.next_read_seq += (seq.max(m.next_read_seq) - m.next_read_seq) / len * len;
        }
        if let Some(jpeg) = m.file.next_frame()? {
            let got = m.next_read_seq;
            m.next_read_seq += 1;
            m.file_index += 1;
            if got < seq {
                continue;
            }
            match m.decoder.decode(jpeg, &mut m.nv12) {
                Ok(()) => return Ok(Some(corrupt)),
                Err(e) => {
                    corrupt += 1;
                    if corrupt.is_power_of_two() {
                        log::warn!(
                            "{}: frame {} skipped: {e}",
                            m.file.path().display(),
                            m.file_index - 1
                        );
                    }
                    continue;
                }
            }
        }
        if m.file_index == 0 {
            return Err(CaptureError::Empty {
                path: m.file.path().to_path_buf(),
                message: "no JPEG frame (FF D8 .. FF D9) in the file".into(),
            });
        }
        if !looping {
            return Ok(None);
        }
        m.loop_len = Some(m.file_index);
        m.file_index = 0;
        m.file.rewind()?;
    }
}

/// The decoded frame in the camera's pixel format.
fn mjpeg_frame(m: &mut MjpegStream, f: FrameFormat) -> Result<&[u8], CaptureError> {
    let decode_err = |e: convert::ConvertError| CaptureError::Decode {
        path: m.file.path().to_path_buf(),
        message: e.to_string(),
    };
    match f.pixel_format {
        PixelFormat::Nv12 => return Ok(&m.nv12),
        PixelFormat::Rgb24 => {
            convert::to_rgb(PixelFormat::Nv12, f.width, f.height, &m.nv12, &mut m.frame)
                .map_err(decode_err)?
        }
        other => {
            convert::to_rgb(PixelFormat::Nv12, f.width, f.height, &m.nv12, &mut m.rgb)
                .map_err(decode_err)?;
            convert::rgb_to(other, f.width, f.height, &m.rgb, &mut m.frame).map_err(decode_err)?;
        }
    }
    Ok(&m.frame)
}

/// The width and height of the first frame of an MJPEG file, from its frame header.
pub fn mjpeg_size(path: &Path, max_frame: usize) -> Result<(u32, u32), CaptureError> {
    let mut file = MjpegFile::open(path, max_frame)?;
    let first = file.next_frame()?.ok_or_else(|| CaptureError::Empty {
        path: path.to_path_buf(),
        message: "no JPEG frame (FF D8 .. FF D9) in the file".into(),
    })?;
    jpeg::frame_size(first).map_err(|e| CaptureError::Decode {
        path: path.to_path_buf(),
        message: format!("frame 0: {e}"),
    })
}

fn open_mjpeg(path: &Path, format: FrameFormat, max_frame: usize) -> Result<Media, CaptureError> {
    let (width, height) = mjpeg_size(path, max_frame)?;
    check_size(path, width, height, format)?;
    let decoder = JpegDecoder::try_new(width, height).map_err(|e| CaptureError::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let rgb_len = PixelFormat::Rgb24.frame_len(width, height);
    let (frame, rgb) = match format.pixel_format {
        PixelFormat::Nv12 => (Vec::new(), Vec::new()),
        PixelFormat::Rgb24 => (vec![0; rgb_len], Vec::new()),
        _ => (vec![0; format.frame_len()], vec![0; rgb_len]),
    };
    Ok(Media::Mjpeg(Box::new(MjpegStream {
        file: MjpegFile::open(path, max_frame)?,
        nv12: vec![0; decoder.nv12_len()],
        decoder,
        frame,
        rgb,
        file_index: 0,
        next_read_seq: 0,
        loop_len: None,
    })))
}

fn io_err(path: &Path, source: std::io::Error) -> CaptureError {
    CaptureError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn y4m_err(path: &Path, e: Y4mError) -> CaptureError {
    match e {
        Y4mError::Io(source) => io_err(path, source),
        Y4mError::Format(message) => CaptureError::Y4m {
            path: path.to_path_buf(),
            message,
        },
    }
}

fn has_extension(path: &Path, exts: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
fn matches_pattern(name: &str, pattern: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let mut parts = parts.peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return rest.len() >= part.len() && rest.ends_with(part);
        }
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Image files in `dir` whose names match `pattern`, sorted by name, at most `max` of them.
fn list_images(
    dir: &Path,
    pattern: Option<&str>,
    max: usize,
) -> Result<Vec<PathBuf>, CaptureError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let path = entry.map_err(|e| io_err(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let wanted = pattern.is_none_or(|p| matches_pattern(name, p));
        if wanted && path.is_file() && has_extension(&path, &IMAGE_EXTENSIONS) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(CaptureError::Empty {
            path: dir.to_path_buf(),
            message: format!(
                "no images ({}) matching `{}` in this directory",
                IMAGE_EXTENSIONS.join(", "),
                pattern.unwrap_or("*")
            ),
        });
    }
    if files.len() > max {
        return Err(CaptureError::Empty {
            path: dir.to_path_buf(),
            message: format!(
                "{} images, more than the camera's max_frames ({max}): raise it or replay a Y4M",
                files.len()
            ),
        });
    }
    Ok(files)
}

/// Decodes every image into one slot each, converted to the camera's pixel format.
fn load_images(files: &[PathBuf], format: FrameFormat) -> Result<Media, CaptureError> {
    let frame_len = format.frame_len();
    let mut slots = vec![0u8; frame_len * files.len()];
    for (path, slot) in files.iter().zip(slots.chunks_exact_mut(frame_len)) {
        let img = image::ImageReader::open(path)
            .map_err(|e| io_err(path, e))?
            .with_guessed_format()
            .map_err(|e| io_err(path, e))?
            .decode()
            .map_err(|e| CaptureError::Decode {
                path: path.clone(),
                message: e.to_string(),
            })?
            .into_rgb8();
        check_size(path, img.width(), img.height(), format)?;
        convert::rgb_to(
            format.pixel_format,
            format.width,
            format.height,
            img.as_raw(),
            slot,
        )
        .map_err(|e| CaptureError::Decode {
            path: path.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(Media::Images {
        slots,
        count: files.len() as u64,
    })
}

fn check_size(path: &Path, width: u32, height: u32, want: FrameFormat) -> Result<(), CaptureError> {
    if (width, height) != (want.width, want.height) {
        return Err(CaptureError::Size {
            path: path.to_path_buf(),
            width,
            height,
            want_width: want.width,
            want_height: want.height,
        });
    }
    Ok(())
}

fn open_y4m(path: &Path, format: FrameFormat) -> Result<Media, CaptureError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let header = y4m::read_header(&mut reader).map_err(|e| y4m_err(path, e))?;
    check_size(path, header.width, header.height, format)?;
    let data_start = reader.stream_position().map_err(|e| io_err(path, e))?;
    Ok(Media::Y4m(Box::new(Y4mStream {
        path: path.to_path_buf(),
        reader,
        data_start,
        line: Vec::with_capacity(1024),
        i420: vec![0u8; header.frame_len()],
        frame: vec![0u8; format.frame_len()],
        file_index: 0,
        next_read_seq: 0,
        loop_len: None,
    })))
}

#[cfg(test)]
mod tests {
    use super::matches_pattern;

    #[test]
    fn patterns_match_like_a_shell_glob() {
        assert!(matches_pattern("traffic_0001.bmp", "traffic_*.bmp"));
        assert!(matches_pattern("traffic_.bmp", "traffic_*.bmp"));
        assert!(!matches_pattern("face.jpg", "traffic_*.bmp"));
        assert!(matches_pattern("a.bmp", "*"));
        assert!(matches_pattern("abc", "abc"));
        assert!(!matches_pattern("abcd", "abc"));
        assert!(matches_pattern("x_1_y_2.png", "x_*_y_*.png"));
        assert!(!matches_pattern("ab", "a*b*b"));
    }
}
