//! The detector interface the pipeline drives: fill the input tensor, invoke, decode.

use std::path::{Path, PathBuf};

use super::detection::{Detections, MAX_DETECTIONS};
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

/// Runs `detector` once on its input as loaded (zeroed) and decodes the result, so that a
/// model that cannot run one frame is refused at load, naming `path`, rather than skipping
/// every frame in service.
pub(crate) fn warm_up(detector: &mut dyn Detector, path: &Path) -> Result<(), DetectorError> {
    let bad = |what: &str, e: DetectorError| DetectorError::BadModel {
        path: path.into(),
        message: format!("cannot {what} one frame at load: {e}"),
    };
    detector.invoke().map_err(|e| bad("run", e))?;
    let mut out = Detections::new();
    detector.decode(&mut out).map_err(|e| bad("decode", e))?;
    debug_assert!(out.len() <= MAX_DETECTIONS);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::preprocess::InputKind;

    /// A detector whose invoke or decode fails, as a corrupt model's would.
    struct Failing {
        spec: InputSpec,
        invoke_fails: bool,
    }

    impl Detector for Failing {
        fn input_spec(&self) -> &InputSpec {
            &self.spec
        }
        fn input_tensor(&mut self) -> InputTensor<'_> {
            InputTensor::U8(&mut [])
        }
        fn invoke(&mut self) -> Result<(), DetectorError> {
            if self.invoke_fails {
                Err(DetectorError::Invoke)
            } else {
                Ok(())
            }
        }
        fn decode(&mut self, _: &mut Detections) -> Result<(), DetectorError> {
            Err(DetectorError::Decode("output 3 is empty".into()))
        }
        fn labels(&self) -> &[String] {
            &[]
        }
    }

    #[test]
    fn warm_up_refuses_a_model_that_cannot_run_or_decode_one_frame() {
        let spec = InputSpec {
            width: 4,
            height: 4,
            channels: 3,
            kind: InputKind::U8 { quant: None },
            mean: None,
            std: None,
            letterbox: false,
            bgr: false,
        };
        let path = Path::new("/models/broken.tflite");
        for (invoke_fails, want) in [(true, "cannot run one frame"), (false, "output 3 is empty")] {
            let mut d = Failing { spec, invoke_fails };
            let err = warm_up(&mut d, path).unwrap_err().to_string();
            assert!(err.starts_with("/models/broken.tflite: "), "{err}");
            assert!(err.contains(want), "{err}");
        }
    }
}
