//! The detector interface the pipeline drives: fill the input tensor, invoke, decode.

use std::path::PathBuf;

use super::detection::Detections;
use super::preprocess::{InputSpec, InputTensor};

/// An object detector with its input tensor and working memory allocated when it loads.
///
/// The pipeline calls, per frame: [`Detector::input_tensor`] (the preprocessor writes the
/// frame straight into it), [`Detector::invoke`], then [`Detector::decode`]. None of them
/// allocates.
pub trait Detector: Send {
    /// Shape, element type and normalization of the model input.
    fn input_spec(&self) -> &InputSpec;
    /// The input tensor, to be filled with one frame.
    fn input_tensor(&mut self) -> InputTensor<'_>;
    /// Runs the model on the current input.
    fn invoke(&mut self) -> Result<(), DetectorError>;
    /// Decodes the last invocation's outputs into `out` (cleared first): boxes normalized to
    /// the model input, scores at or above the threshold, at most the configured number.
    fn decode(&mut self, out: &mut Detections) -> Result<(), DetectorError>;
    /// Class labels, indexed by [`crate::vision::detection::Detection::class`].
    fn labels(&self) -> &[String];
    /// How many invokes the detections of [`Detector::decode`] trail the frame just invoked:
    /// 0 for one interpreter; `N - 1` for a pool of `N`, whose other frames are still in
    /// flight (its first `N - 1` decodes give no detections).
    fn latency(&self) -> usize {
        0
    }
}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// The model or labels file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The model file is not a valid TFLite model.
    #[error("{path}: {message}")]
    BadModel {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The labels file does not fit the model or the config.
    #[error("{path}: {message}")]
    BadLabels {
        /// The labels file.
        path: PathBuf,
        /// What does not fit.
        message: String,
    },
    /// The model's outputs could not be decoded.
    #[error("decoding model output: {0}")]
    Decode(String),
    /// The interpreter failed while running the model.
    #[error("model invocation failed")]
    Invoke,
    /// The inference runtime itself is unusable: `libLiteRt.so` missing, of another
    /// architecture or release (the message names the file and what to run).
    #[error("{0}")]
    Runtime(String),
}
