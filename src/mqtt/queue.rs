//! The bounded queue between the thread that notices changes and the thread that talks to the
//! broker: a ring of fixed-size messages allocated at start-up. When the broker is away and
//! the ring is full, the oldest message is overwritten and counted, so memory never grows and
//! the newest state always gets through first when the broker is back.

use std::io;
use std::sync::{Mutex, MutexGuard};

/// The longest topic: a prefix of `MQTT_PREFIX_MAX` bytes and two names of `MQTT_NAME_MAX`.
pub const TOPIC_MAX: usize = 224;

/// One message to publish: topic, payload and retain flag, in buffers sized at start-up.
#[derive(Debug, Clone)]
pub struct Message {
    topic: heapless::String<TOPIC_MAX>,
    payload: Box<[u8]>,
    len: usize,
    retain: bool,
}

/// A message whose topic or payload did not fit its fixed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message larger than its {0}-byte buffer")]
pub struct Oversize(pub usize);

impl Message {
    /// An empty message whose payload holds up to `payload_max` bytes.
    pub fn new(payload_max: usize) -> Message {
        Message {
            topic: heapless::String::new(),
            payload: vec![0; payload_max].into_boxed_slice(),
            len: 0,
            retain: false,
        }
    }

    /// Fills the message: `topic` and `payload` write into the fixed buffers. On overflow
    /// the message is left empty.
    pub fn fill(
        &mut self,
        retain: bool,
        topic: impl FnOnce(&mut heapless::String<TOPIC_MAX>) -> std::fmt::Result,
        payload: impl FnOnce(&mut dyn io::Write) -> io::Result<()>,
    ) -> Result<(), Oversize> {
        self.topic.clear();
        self.len = 0;
        self.retain = retain;
        if topic(&mut self.topic).is_err() {
            self.topic.clear();
            return Err(Oversize(TOPIC_MAX));
        }
        let mut w = io::Cursor::new(&mut self.payload[..]);
        let written = payload(&mut w);
        let end = w.position() as usize;
        if written.is_err() {
            self.topic.clear();
            return Err(Oversize(self.payload.len()));
        }
        self.len = end;
        Ok(())
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload[..self.len]
    }

    /// Whether the broker keeps it for late subscribers.
    pub fn retain(&self) -> bool {
        self.retain
    }

    /// Copies `other` into this message's buffers (no allocation; the payload is cut to
    /// this buffer's size, which the queue makes equal).
    fn copy_from(&mut self, other: &Message) {
        self.topic.clear();
        // Same capacity on both sides: cannot fail.
        let _ = self.topic.push_str(&other.topic);
        let n = other.len.min(self.payload.len());
        self.payload[..n].copy_from_slice(&other.payload[..n]);
        self.len = n;
        self.retain = other.retain;
    }
}

/// The queue's counters, read together under its lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages offered for publishing.
    pub enqueued: u64,
    /// Messages lost: overwritten while the ring was full, handed to a connection that
    /// then broke before the broker acknowledged them, or too large for a slot.
    pub dropped: u64,
    /// Messages waiting now.
    pub queued: usize,
}

#[derive(Debug)]
struct Ring {
    slots: Box<[Message]>,
    /// Index of the oldest message.
    head: usize,
    len: usize,
    counts: QueueCounts,
}

/// A bounded, drop-oldest queue of fixed-size messages, shared by two threads.
#[derive(Debug)]
pub struct MessageQueue {
    ring: Mutex<Ring>,
    payload_max: usize,
}

impl MessageQueue {
    /// A queue of `capacity` messages (at least 1) of up to `payload_max` bytes each.
    pub fn new(capacity: usize, payload_max: usize) -> MessageQueue {
        let slots = (0..capacity.max(1))
            .map(|_| Message::new(payload_max))
            .collect();
        MessageQueue {
            ring: Mutex::new(Ring {
                slots,
                head: 0,
                len: 0,
                counts: QueueCounts::default(),
            }),
            payload_max,
        }
    }

    /// The most messages held.
    pub fn capacity(&self) -> usize {
        self.lock().slots.len()
    }

    /// A message with a payload buffer the size of this queue's slots.
    pub fn message(&self) -> Message {
        Message::new(self.payload_max)
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring inconsistent (every update is
        // a few integer stores), so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a copy of `m`, overwriting (and counting) the oldest message when full.
    pub fn push(&self, m: &Message) {
        let mut r = self.lock();
        r.counts.enqueued += 1;
        let cap = r.slots.len();
        let tail = (r.head + r.len) % cap;
        r.slots[tail].copy_from(m);
        if r.len == cap {
            r.head = (r.head + 1) % cap;
            r.counts.dropped += 1;
        } else {
            r.len += 1;
        }
        r.counts.queued = r.len;
    }

    /// Moves the oldest message into `into`; false when empty.
    pub fn pop_into(&self, into: &mut Message) -> bool {
        let mut r = self.lock();
        if r.len == 0 {
            return false;
        }
        let head = r.head;
        into.copy_from(&r.slots[head]);
        r.head = (head + 1) % r.slots.len();
        r.len -= 1;
        r.counts.queued = r.len;
        true
    }

    /// Puts a popped message back at the front (it could not be handed over). When the ring
    /// filled up meanwhile it is the oldest message, so it is the one dropped.
    pub fn requeue_front(&self, m: &Message) {
        let mut r = self.lock();
        let cap = r.slots.len();
        if r.len == cap {
            r.counts.dropped += 1;
            return;
        }
        r.head = (r.head + cap - 1) % cap;
        let head = r.head;
        r.slots[head].copy_from(m);
        r.len += 1;
        r.counts.queued = r.len;
    }

    /// Counts `n` messages offered outside the ring (availability, sent straight away).
    pub fn count_direct(&self, n: u64) {
        self.lock().counts.enqueued += n;
    }

    /// Counts `n` messages lost after leaving the ring, or never fitting in it.
    pub fn count_lost(&self, n: u64) {
        self.lock().counts.dropped += n;
    }

    /// The counters, consistent with each other.
    pub fn counts(&self) -> QueueCounts {
        self.lock().counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(q: &MessageQueue, n: u32) -> Message {
        let mut m = q.message();
        m.fill(
            false,
            |t| std::fmt::Write::write_fmt(t, format_args!("t/{n}")),
            |w| write!(w, "{n}"),
        )
        .unwrap();
        m
    }

    #[test]
    fn keeps_the_newest_and_counts_what_it_overwrote() {
        let q = MessageQueue::new(3, 16);
        for n in 0..5 {
            q.push(&msg(&q, n));
        }
        let c = q.counts();
        assert_eq!((c.enqueued, c.dropped, c.queued), (5, 2, 3));
        let mut out = q.message();
        let mut seen = Vec::new();
        while q.pop_into(&mut out) {
            seen.push((out.topic().to_string(), out.payload().to_vec()));
        }
        assert_eq!(
            seen,
            [("t/2", b"2"), ("t/3", b"3"), ("t/4", b"4")].map(|(t, p)| (t.into(), p.to_vec()))
        );
        assert_eq!(q.counts().queued, 0);
    }

    #[test]
    fn a_requeued_message_goes_first_or_is_the_one_dropped() {
        let q = MessageQueue::new(2, 16);
        q.push(&msg(&q, 1));
        let mut out = q.message();
        assert!(q.pop_into(&mut out));
        q.push(&msg(&q, 2));
        q.requeue_front(&out);
        assert!(q.pop_into(&mut out));
        assert_eq!(out.topic(), "t/1");
        q.push(&msg(&q, 3));
        // Full: the requeued message is the oldest, so it is dropped.
        q.requeue_front(&out);
        let c = q.counts();
        assert_eq!((c.enqueued, c.dropped, c.queued), (3, 1, 2));
        assert!(q.pop_into(&mut out));
        assert_eq!(out.topic(), "t/2");
    }

    #[test]
    fn an_oversize_payload_is_refused_not_cut() {
        let q = MessageQueue::new(2, 4);
        let mut m = q.message();
        let r = m.fill(
            true,
            |t| t.push_str("x").map_err(|_| std::fmt::Error),
            |w| w.write_all(b"12345"),
        );
        assert_eq!(r, Err(Oversize(4)));
        assert_eq!((m.topic(), m.payload()), ("", &b""[..]));
        m.fill(
            true,
            |t| t.push_str("x").map_err(|_| std::fmt::Error),
            |w| w.write_all(b"1234"),
        )
        .unwrap();
        assert_eq!(
            (m.topic(), m.payload(), m.retain()),
            ("x", &b"1234"[..], true)
        );
    }
}
