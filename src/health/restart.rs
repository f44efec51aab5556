//! Restarting after a watchdog breach. Under systemd the service manager restarts us (and
//! rate-limits it); standalone, the process re-executes `/proc/self/exe` with its restart
//! history in the environment, within a budget that stops restart storms.

use std::os::unix::process::CommandExt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::notify::Notifier;

/// Unix times (seconds) of the restarts so far, comma separated, passed across `exec`.
pub const RESTARTS_ENV: &str = "EDGEWATCH_RESTARTS";
/// Why the last restart happened.
pub const REASON_ENV: &str = "EDGEWATCH_RESTART_REASON";
/// Exit status once the restart budget is spent.
pub const EXIT_BUDGET_SPENT: i32 = 3;

/// Exit status after `edgewatch ctl reload` under systemd, whose `Restart=on-failure` starts
/// the unit again with the new config (`EX_TEMPFAIL`).
pub const EXIT_RELOAD: i32 = 75;

/// Restarts so far, from the environment the previous process left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartHistory {
    /// Unix times of the restarts, oldest first.
    pub times: Vec<u64>,
    /// Why the last one happened.
    pub last_reason: Option<String>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RestartHistory {
    /// Reads [`RESTARTS_ENV`] and [`REASON_ENV`]; malformed entries are ignored.
    pub fn from_env() -> RestartHistory {
        let times = std::env::var(RESTARTS_ENV).unwrap_or_default();
        RestartHistory {
            times: times
                .split(',')
                .filter_map(|t| t.trim().parse().ok())
                .collect(),
            last_reason: std::env::var(REASON_ENV).ok().filter(|r| !r.is_empty()),
        }
    }

    /// Restarts recorded in the environment: those within the restart window of the last one.
    pub fn count(&self) -> usize {
        self.times.len()
    }

    /// The restart times within `window_s` of `now`, plus `now`: the history a restart at
    /// `now` would pass on.
    pub fn with_restart_at(&self, now: u64, window_s: u64) -> Vec<u64> {
        let mut recent: Vec<u64> = self
            .times
            .iter()
            .copied()
            .filter(|&t| t.saturating_add(window_s) > now)
            .collect();
        recent.push(now);
        recent
    }
}

/// Restarts the process after a breach; the outputs are already safe. Never returns.
///
/// Under systemd, sends `WATCHDOG=trigger` and aborts so the restart is the service
/// manager's, counted against `StartLimitBurst`. Standalone, re-executes this binary unless
/// more than `budget` restarts fell within `window_s`: then it exits with
/// [`EXIT_BUDGET_SPENT`], leaving the signals at all red.
pub fn restart(
    reason: &str,
    history: &RestartHistory,
    budget: u32,
    window_s: u64,
    notifier: Option<&Notifier>,
) -> ! {
    // No stdout flush here: a pipeline stuck writing to a full stdout pipe holds its lock.
    if let Some(n) = notifier {
        let _ = n.send(b"WATCHDOG=trigger");
        log::error!("restart: asking systemd to restart edgewatch ({reason})");
        std::process::abort();
    }
    let recent = history.with_restart_at(unix_now(), window_s);
    if recent.len() > budget as usize {
        log::error!(
            "restart budget spent: {} restarts within {window_s} s; signals stay at all red, exiting",
            recent.len() - 1
        );
        std::process::exit(EXIT_BUDGET_SPENT);
    }
    let times: Vec<String> = recent.iter().map(u64::to_string).collect();
    log::error!(
        "restart {} of at most {budget} within {window_s} s: {reason}",
        recent.len()
    );
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "edgewatch".into());
    // Every fd the process opened is close-on-exec (Rust opens them so), so the camera and
    // the sockets are released by the exec itself.
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(RESTARTS_ENV, times.join(","))
        .env(REASON_ENV, reason)
        .exec();
    log::error!("restart: cannot re-execute /proc/self/exe: {err}");
    std::process::exit(1);
}

/// Restarts the process to apply a config `edgewatch ctl reload` accepted; the signals are
/// already at all red. Under systemd (`under_systemd`), exits with [`EXIT_RELOAD`] for the
/// service manager to start it again; standalone, re-executes this binary with the same
/// arguments. A reload asked for by an operator is not a watchdog restart: the restart
/// history passes on unchanged and no restart reason is set. Never returns.
pub fn reload(under_systemd: bool) -> ! {
    if under_systemd {
        log::warn!(
            "reload: exiting with status {EXIT_RELOAD} for systemd to start edgewatch again"
        );
        std::process::exit(EXIT_RELOAD);
    }
    log::warn!("reload: re-executing edgewatch with the new config");
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "edgewatch".into());
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env_remove(REASON_ENV)
        .exec();
    log::error!("reload: cannot re-execute /proc/self/exe: {err}");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_only_the_window() {
        let h = RestartHistory {
            times: vec![100, 500, 900],
            last_reason: None,
        };
        assert_eq!(h.with_restart_at(1000, 600), vec![500, 900, 1000]);
        assert_eq!(h.with_restart_at(1000, 50), vec![1000]);
        assert_eq!(h.count(), 3);
    }
}
