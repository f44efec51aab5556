//! Linux GPIO character device (`/dev/gpiochipN`) through gpiocdev: any board, including the
//! Pi 5. Pins are line offsets on one chip. gpiocdev has no embedded-hal impl, so this file
//! adds a thin one.

use std::path::PathBuf;

use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin};
use gpiocdev::line::{Bias, Value};
use gpiocdev::Request;

use super::outputs::{PinBackend, PinError};
use super::plan::Pull;

/// Lines of one GPIO chip as a [`PinBackend`].
#[derive(Debug, Clone)]
pub struct CdevPins {
    chip: PathBuf,
}

impl CdevPins {
    /// Lines of `chip`, e.g. `/dev/gpiochip0` (a Pi 5's header is `/dev/gpiochip0` on current
    /// kernels, `/dev/gpiochip4` on older ones).
    pub fn new(chip: impl Into<PathBuf>) -> CdevPins {
        CdevPins { chip: chip.into() }
    }
}

/// A GPIO character device error, as an embedded-hal error.
#[derive(Debug)]
pub struct CdevError(pub gpiocdev::Error);

impl embedded_hal::digital::Error for CdevError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// One requested output line.
#[derive(Debug)]
pub struct CdevOutput {
    request: Request,
}

impl ErrorType for CdevOutput {
    type Error = CdevError;
}

impl OutputPin for CdevOutput {
    fn set_low(&mut self) -> Result<(), CdevError> {
        self.request
            .set_lone_value(Value::Inactive)
            .map_err(CdevError)
    }

    fn set_high(&mut self) -> Result<(), CdevError> {
        self.request
            .set_lone_value(Value::Active)
            .map_err(CdevError)
    }
}

/// One requested input line.
#[derive(Debug)]
pub struct CdevInput {
    request: Request,
}

impl ErrorType for CdevInput {
    type Error = CdevError;
}

impl InputPin for CdevInput {
    fn is_high(&mut self) -> Result<bool, CdevError> {
        self.request
            .lone_value()
            .map(|v| v == Value::Active)
            .map_err(CdevError)
    }

    fn is_low(&mut self) -> Result<bool, CdevError> {
        self.is_high().map(|h| !h)
    }
}

impl PinBackend for CdevPins {
    type Output = CdevOutput;
    type Input = CdevInput;

    fn output(&mut self, pin: u32, high: bool) -> Result<CdevOutput, PinError> {
        let value = if high { Value::Active } else { Value::Inactive };
        let request = Request::builder()
            .on_chip(&self.chip)
            .with_consumer("edgewatch")
            .with_line(pin)
            .as_output(value)
            .request()
            .map_err(|e| PinError::new(pin, format!("{}: {e}", self.chip.display())))?;
        Ok(CdevOutput { request })
    }

    fn input(&mut self, pin: u32, pull: Pull) -> Result<CdevInput, PinError> {
        let bias = match pull {
            Pull::None => Bias::Disabled,
            Pull::Up => Bias::PullUp,
            Pull::Down => Bias::PullDown,
        };
        let request = Request::builder()
            .on_chip(&self.chip)
            .with_consumer("edgewatch")
            .with_line(pin)
            .as_input()
            .with_bias(bias)
            .request()
            .map_err(|e| PinError::new(pin, format!("{}: {e}", self.chip.display())))?;
        Ok(CdevInput { request })
    }
}
