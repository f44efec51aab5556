//! Linux GPIO character device (`/dev/gpiochipN`) through gpiocdev: any board, including the
//! Pi 5. Pins are line offsets on one chip. gpiocdev has no embedded-hal impl, so this file
//! adds a thin one.

use std::path::PathBuf;

use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin, StatefulOutputPin};
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

impl StatefulOutputPin for CdevOutput {
    /// The line's value as the kernel reads it back (on a Pi, the pad level register), so the
    /// monitor sees a line another process drives.
    fn is_set_high(&mut self) -> Result<bool, CdevError> {
        self.request
            .lone_value()
            .map(|v| v == Value::Active)
            .map_err(CdevError)
    }

    fn is_set_low(&mut self) -> Result<bool, CdevError> {
        self.is_set_high().map(|h| !h)
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

    fn output(&mut self, pin: u32, high: bool, rest_high: bool) -> Result<CdevOutput, PinError> {
        let value = if high { Value::Active } else { Value::Inactive };
        // What a line does once the process ends and the kernel releases it depends on the
        // pin controller: the Raspberry Pi kernel keeps a BCM283x/2711 output driving its last
        // level (the all red and resting heartbeat an orderly stop leaves), upstream kernels
        // and its `strict_gpiod` mode turn it back into an input, and a floating input can
        // half-drive a relay driver. The bias stays with the pin after release and pulls such
        // an input to the de-energised level, so either way the heartbeat relay drops and the
        // cabinet flasher takes the heads.
        let rest = if rest_high {
            Bias::PullUp
        } else {
            Bias::PullDown
        };
        let request = Request::builder()
            .on_chip(&self.chip)
            .with_consumer("edgewatch")
            .with_line(pin)
            .as_output(value)
            .with_bias(rest)
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
