//! The kernel's hardware watchdog (`/dev/watchdog`; `bcm2835_wdt` on a Raspberry Pi), pinged
//! by the control loop while it ticks. If the loop stops (a hung process the software
//! watchdog could not restart) or the kernel hangs, the pings stop and the SoC resets after
//! the timeout; the heads are the cabinet flasher's meanwhile (the heartbeat stopped too).
//!
//! Dropping it (an orderly stop, or a start-up error after it was opened) writes the magic
//! character `V` before closing, which disarms drivers that allow it (`nowayout` unset), so
//! `systemctl stop` or a bad config does not reboot the unit. A process that is killed,
//! aborts or hangs never gets there: the watchdog stays armed, and resets the unit unless the
//! next process opens it within the timeout.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `WDIOC_SETTIMEOUT`: `_IOWR('W', 6, int)` from `<linux/watchdog.h>`.
const WDIOC_SETTIMEOUT: u32 = 0xC004_5706;

/// How often the loop pings: well inside any timeout the config allows (at least 2 s).
const PING_EVERY: Duration = Duration::from_millis(500);

/// Why the watchdog device could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum HwWatchdogError {
    /// The device could not be opened (absent, no permission, or held by systemd's
    /// `RuntimeWatchdogSec`).
    #[error("control.hardware_watchdog: cannot open {0}: {1}")]
    Open(PathBuf, io::Error),
}

/// An open watchdog device; see the module docs.
#[derive(Debug)]
pub struct HardwareWatchdog {
    file: File,
    path: PathBuf,
    last_ping: Option<Duration>,
    pings: u64,
    failures: u64,
}

impl HardwareWatchdog {
    /// Opens `path` (which arms the watchdog) and asks for `timeout_s`. A device that does
    /// not take the timeout keeps its driver's default (logged).
    pub fn open(path: &Path, timeout_s: u32) -> Result<HardwareWatchdog, HwWatchdogError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| HwWatchdogError::Open(path.to_path_buf(), e))?;
        let mut timeout = libc::c_int::try_from(timeout_s).unwrap_or(libc::c_int::MAX);
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one c_int through the pointer, which is a
        // live, exclusively borrowed local for the duration of the call; the fd is open.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT as _, &mut timeout) };
        if rc != 0 {
            log::warn!(
                "control.hardware_watchdog: {} did not take a {timeout_s} s timeout ({}); the \
                 driver's default applies",
                path.display(),
                io::Error::last_os_error()
            );
        } else {
            log::info!(
                "hardware watchdog {} armed: {timeout} s without a ping resets the unit",
                path.display()
            );
        }
        Ok(HardwareWatchdog {
            file,
            path: path.to_path_buf(),
            last_ping: None,
            pings: 0,
            failures: 0,
        })
    }

    /// Pings at clock time `now` if one is due. Called every control tick; never allocates.
    pub fn ping(&mut self, now: Duration) {
        if self
            .last_ping
            .is_some_and(|at| now.saturating_sub(at) < PING_EVERY)
        {
            return;
        }
        self.last_ping = Some(now);
        match self.file.write_all(b"\0") {
            Ok(()) => self.pings += 1,
            Err(e) => {
                self.failures += 1;
                if self.failures == 1 {
                    log::error!(
                        "hardware watchdog {}: ping failed: {e}",
                        self.path.display()
                    );
                }
            }
        }
    }

    /// Pings sent so far.
    pub fn pings(&self) -> u64 {
        self.pings
    }
}

/// The magic close: disarms the watchdog where the driver allows it.
impl Drop for HardwareWatchdog {
    fn drop(&mut self) {
        if let Err(e) = self.file.write_all(b"V") {
            log::warn!(
                "hardware watchdog {}: magic close failed ({e}); it stays armed",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_most_twice_a_second_and_disarms_with_v() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watchdog");
        std::fs::write(&path, b"").unwrap();
        // A plain file takes no timeout: a warning, not an error.
        let mut wd = HardwareWatchdog::open(&path, 15).unwrap();
        for tick in 0..30u64 {
            wd.ping(Duration::from_millis(100 * tick));
        }
        assert_eq!(wd.pings(), 6, "every 500 ms over 3 s");
        drop(wd);
        assert_eq!(std::fs::read(&path).unwrap(), b"\0\0\0\0\0\0V");
    }

    #[test]
    fn a_missing_device_is_an_error_naming_it() {
        let err = HardwareWatchdog::open(Path::new("/nonexistent/watchdog"), 15).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("control.hardware_watchdog: cannot open /nonexistent/watchdog:"),
            "{err}"
        );
    }
}
