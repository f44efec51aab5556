//! Frame sources: where pixels come from, in the formats real cameras produce.

pub mod convert;
pub mod jpeg;
pub mod replay;
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

/// Frames delivered and dropped by a source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames handed to the pipeline.
    pub delivered: u64,
    /// Frames skipped because a newer one was ready before the pipeline asked.
    pub dropped: u64,
}

/// A camera or a recording. A source keeps its frames in buffers allocated when it opens and
/// hands out the newest one: frames that went stale while the pipeline was busy are dropped
/// and counted, never queued.
pub trait FrameSource: Send {
    /// Size and layout of every frame.
    fn format(&self) -> FrameFormat;
    /// The newest frame, waiting for one if none is due yet. `Ok(None)` at the end of a
    /// recording that does not loop.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError>;
    /// Delivered and dropped counts so far.
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
}
