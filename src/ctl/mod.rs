//! `edgewatch ctl`: commands that change the signals, over a Unix socket only.
//!
//! The HTTP endpoint is read-only; what changes a signal (maintenance flash, clearing a
//! latched fault, reloading the config) goes through the control socket
//! (`control.socket`), which only root, the service user and members of its group may use:
//! the file is mode 0660 and every peer's credentials are checked as well.
//!
//! - [`request`]: the line protocol, one request line and one answer line.
//! - [`link`]: the bounded mailbox between the socket thread and the control loop, which
//!   polls it on its tick and never waits on it.
//! - [`server`]: the socket thread, one connection at a time, every read and write bounded.
//! - [`client`]: what `edgewatch ctl` runs.

pub mod client;
pub mod link;
pub mod request;
pub mod server;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use client::{ClientError, Response};
pub use link::{CommandLink, CommandPort, Outcome, SignalRequest};
pub use request::{ParseError, Request, MAX_REQUEST};
pub use server::{CtlServer, ServerError};

/// What the control socket has done so far, for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct CtlCounters {
    requests: AtomicU64,
    refused: AtomicU64,
    malformed: AtomicU64,
}

/// A copy of [`CtlCounters`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtlCounts {
    /// Well-formed requests from permitted peers (whatever their answer).
    pub requests: u64,
    /// Connections refused: the peer is not root, the service user or in its group.
    pub refused: u64,
    /// Requests too long, not text, unknown, or not sent within the read timeout.
    pub malformed: u64,
}

impl CtlCounters {
    /// The counts now.
    pub fn counts(&self) -> CtlCounts {
        CtlCounts {
            requests: self.requests.load(Relaxed),
            refused: self.refused.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}
