//! The mailbox between the control socket's thread and the signal control loop. The loop
//! owns the signal system, so requests go to it: through a channel of one slot that it polls
//! with `try_recv` on its tick, answering with `try_send`. It never waits on the socket side;
//! the socket side waits for the answer, for a bounded time. A request whose caller has
//! stopped waiting is dropped, not carried out late.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A request for the control loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalRequest {
    /// Maintenance flash on (`true`) or off.
    Flash(bool),
    /// Clear the latched fault if the monitor no longer sees it.
    ResetFault,
}

/// The control loop's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; what happened.
    Done(String),
    /// Refused; why. Nothing changed.
    Refused(String),
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The loop has a request pending already (cannot happen with one socket connection).
    #[error("the control loop is busy with another request")]
    Busy,
    /// The loop has ended.
    #[error("the control loop has stopped")]
    Stopped,
    /// The loop did not answer in time (it answers on its next tick, unless it is clearing
    /// the signals to stop).
    #[error("the control loop did not answer within {0:?}; it may be shutting down")]
    Timeout(Duration),
}

/// The socket side of the mailbox.
#[derive(Debug)]
pub struct CommandLink {
    requests: SyncSender<Pending>,
    /// Only the socket thread locks it; the control loop never does.
    replies: Mutex<(Receiver<(u64, Outcome)>, u64)>,
}

/// The control loop's side of the mailbox.
#[derive(Debug)]
pub struct CommandPort {
    requests: Receiver<Pending>,
    replies: SyncSender<(u64, Outcome)>,
}

/// A request in the slot: its number, what, and when its caller stops waiting.
type Pending = (u64, SignalRequest, Instant);

/// A connected pair.
pub fn link() -> (CommandLink, CommandPort) {
    let (requests, inbox) = sync_channel(1);
    let (replies, answers) = sync_channel(1);
    (
        CommandLink {
            requests,
            replies: Mutex::new((answers, 0)),
        },
        CommandPort {
            requests: inbox,
            replies,
        },
    )
}

impl CommandLink {
    /// Sends `request` and waits at most `timeout` for its answer. An answer to an earlier
    /// request that timed out is recognised by its number and dropped.
    pub fn call(&self, request: SignalRequest, timeout: Duration) -> Result<Outcome, CallError> {
        let mut guard = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        let (answers, next) = &mut *guard;
        *next += 1;
        let seq = *next;
        // A late answer left over from a timed-out call would fill the reply slot.
        while answers.try_recv().is_ok() {}
        let deadline = Instant::now() + timeout;
        self.requests
            .try_send((seq, request, deadline))
            .map_err(|e| match e {
                std::sync::mpsc::TrySendError::Full(_) => CallError::Busy,
                std::sync::mpsc::TrySendError::Disconnected(_) => CallError::Stopped,
            })?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match answers.recv_timeout(left) {
                Ok((n, outcome)) if n == seq => return Ok(outcome),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => return Err(CallError::Timeout(timeout)),
                Err(RecvTimeoutError::Disconnected) => return Err(CallError::Stopped),
            }
        }
    }
}

impl CommandPort {
    /// The pending request, if any and if its caller still waits; never waits itself.
    pub fn poll(&self) -> Option<(u64, SignalRequest)> {
        let (seq, request, deadline) = self.requests.try_recv().ok()?;
        (Instant::now() < deadline).then_some((seq, request))
    }

    /// Answers request `seq`; never waits (an answer nobody collects is dropped).
    pub fn answer(&self, seq: u64, outcome: Outcome) {
        let _ = self.replies.try_send((seq, outcome));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_reach_their_request_and_late_ones_are_dropped() {
        let (link, port) = link();
        assert_eq!(port.poll(), None);
        // Nobody answers: the call times out, and the loop never carries the request out.
        let short = Duration::from_millis(20);
        let err = link.call(SignalRequest::Flash(true), short).unwrap_err();
        assert_eq!(err, CallError::Timeout(short));
        assert_eq!(port.poll(), None, "expired requests are dropped");
        // An answer that comes late anyway must not be taken for the next call's.
        port.answer(1, Outcome::Done("late".into()));
        let loop_side = std::thread::spawn(move || loop {
            if let Some((seq, r)) = port.poll() {
                assert_eq!(r, SignalRequest::ResetFault);
                port.answer(seq, Outcome::Refused("still faulted".into()));
                return port;
            }
            std::thread::sleep(Duration::from_millis(1));
        });
        let got = link.call(SignalRequest::ResetFault, Duration::from_secs(10));
        assert_eq!(got, Ok(Outcome::Refused("still faulted".into())));
        drop(loop_side.join().unwrap());
        assert_eq!(
            link.call(SignalRequest::ResetFault, short),
            Err(CallError::Stopped)
        );
    }
}
