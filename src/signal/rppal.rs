//! Raspberry Pi GPIO through rppal (Pi 3/4; the Pi 5 works through the `gpio-cdev` backend).
//! Pins are BCM numbers.

use super::outputs::{PinBackend, PinError};
use super::plan::Pull;

/// The rppal GPIO peripheral as a [`PinBackend`].
#[derive(Debug)]
pub struct RppalPins {
    gpio: rppal::gpio::Gpio,
}

impl RppalPins {
    /// Opens the GPIO peripheral (`/dev/gpiomem`).
    pub fn new() -> Result<RppalPins, PinError> {
        let gpio = rppal::gpio::Gpio::new().map_err(|e| PinError::new(0, e))?;
        Ok(RppalPins { gpio })
    }

    fn pin(&self, pin: u32) -> Result<rppal::gpio::Pin, PinError> {
        let bcm = u8::try_from(pin).map_err(|_| PinError::new(pin, "not a BCM pin number"))?;
        self.gpio.get(bcm).map_err(|e| PinError::new(pin, e))
    }
}

impl PinBackend for RppalPins {
    type Output = rppal::gpio::OutputPin;
    type Input = rppal::gpio::InputPin;

    fn output(&mut self, pin: u32, high: bool, _rest_high: bool) -> Result<Self::Output, PinError> {
        let pin = self.pin(pin)?;
        let mut out = if high {
            pin.into_output_high()
        } else {
            pin.into_output_low()
        };
        // rppal turns a dropped pin back into an input, which on an orderly exit drops every
        // relay and leaves the heads dark. Keep the last level instead: the all red the
        // control loop left them at (with the heartbeat at rest, so the flash-transfer relay
        // hands the heads to the cabinet flasher).
        out.set_reset_on_drop(false);
        Ok(out)
    }

    fn input(&mut self, pin: u32, pull: Pull) -> Result<Self::Input, PinError> {
        let pin = self.pin(pin)?;
        Ok(match pull {
            Pull::None => pin.into_input(),
            Pull::Up => pin.into_input_pullup(),
            Pull::Down => pin.into_input_pulldown(),
        })
    }
}
