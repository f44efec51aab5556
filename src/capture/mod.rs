//! Frame sources: where pixels come from, in the formats real cameras produce.

pub mod backoff;
pub mod convert;
pub mod jpeg;
pub mod jpeg_split;
pub mod mjpeg_file;
pub mod mjpeg_http;
pub mod replay;
pub mod v4l2;
pub mod y4m;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Pixel layouts that cameras deliver and the preprocessor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Packed 8-bit R, G, B.
    Rgb24,
    /// Packed 4:2:2: Y0 U Y1 V for every two pixels (V4L2 `YUYV`).
    Yuyv,
    /// Planar 4:2:0: a Y plane, then one interleaved U/V plane at half resolution (V4L2 `NV12`).
    Nv12,
}

impl PixelFormat {
    /// Bytes one frame of `width` x `height` takes.
    pub fn frame_len(self, width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        match self {
            PixelFormat::Rgb24 => w * h * 3,
            PixelFormat::Yuyv => w * h * 2,
            PixelFormat::Nv12 => w * h + w * h / 2,
        }
    }

    /// Whether the format subsamples chroma, so width and height must be even.
    pub fn needs_even_size(self) -> bool {
        !matches!(self, PixelFormat::Rgb24)
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Nv12 => "nv12",
        })
    }
}

/// Size and layout of the frames a source delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFormat {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel layout.
    pub pixel_format: PixelFormat,
}

impl FrameFormat {
    /// Bytes one frame takes.
    pub fn frame_len(&self) -> usize {
        self.pixel_format.frame_len(self.width, self.height)
    }
}

/// A frame borrowed from the source's own buffer; valid until the next call to the source.
#[derive(Debug)]
pub struct Frame<'a> {
    /// Pixels in the source's [`FrameFormat`].
    pub data: &'a [u8],
    /// Sequence number of this frame at the source (counts dropped frames too).
    pub seq: u64,
    /// When the frame was captured, on the pipeline's clock.
    pub timestamp: Duration,
}

/// What a source delivered, dropped and went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames handed to the pipeline.
    pub delivered: u64,
    /// Frames skipped because a newer one was ready before the pipeline asked.
    pub dropped: u64,
    /// Frames rejected as damaged: undecodable JPEG, wrong size, over the size limit.
    pub corrupt: u64,
    /// Times a live camera was closed after a fault and opened again.
    pub reconnects: u64,
    /// Whether the source is delivering now (a live camera that is reconnecting is not).
    pub online: bool,
}

/// What [`FrameSource::next_frame`] got.
#[derive(Debug)]
pub enum Next<'a> {
    /// The newest frame.
    Frame(Frame<'a>),
    /// No frame this time: a live camera is stale or reconnecting. The pipeline moves on
    /// and asks again later; the source never blocks longer than its own timeout.
    Waiting,
    /// A recording that does not loop has ended.
    End,
}

impl<'a> Next<'a> {
    /// The frame, if one came.
    pub fn frame(self) -> Option<Frame<'a>> {
        match self {
            Next::Frame(f) => Some(f),
            Next::Waiting | Next::End => None,
        }
    }
}

/// A camera or a recording. A source keeps its frames in buffers allocated when it opens and
/// hands out the newest one: frames that went stale while the pipeline was busy are dropped
/// and counted, never queued. A live camera that fails (unplugged, I/O error, no frames) is
/// closed, marked offline and reopened with backoff inside the source; the pipeline only
/// sees [`Next::Waiting`] meanwhile.
pub trait FrameSource: Send {
    /// Size and layout of every frame.
    fn format(&self) -> FrameFormat;
    /// The newest frame, waiting a bounded time for one if none is ready yet. Errors are
    /// reserved for faults the source cannot recover from (a bad recording).
    fn next_frame(&mut self) -> Result<Next<'_>, CaptureError>;
    /// Counters so far.
    fn stats(&self) -> CaptureStats;
}

/// Why a source could not open or deliver a frame.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An image file could not be decoded.
    #[error("{path}: cannot decode image: {message}")]
    Decode {
        /// The image.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// A frame does not have the size the camera is configured for.
    #[error("{path}: frame is {width}x{height}, the camera is configured for {want_width}x{want_height}")]
    Size {
        /// The image or video.
        path: PathBuf,
        /// Actual width.
        width: u32,
        /// Actual height.
        height: u32,
        /// Configured width.
        want_width: u32,
        /// Configured height.
        want_height: u32,
    },
    /// A Y4M stream is malformed.
    #[error("{path}: bad Y4M stream: {message}")]
    Y4m {
        /// The video.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// The source has nothing to play.
    #[error("{path}: {message}")]
    Empty {
        /// The directory or file.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// A camera cannot be used as configured (not a capture device, format not offered, a
    /// malformed URL, ...).
    #[error("camera {camera}: {message}")]
    Camera {
        /// The camera's name and device or URL.
        camera: String,
        /// What is wrong.
        message: String,
    },
}
