//! What to publish: a few times a second the watcher looks at the atomics the pipeline and the
//! control loop already publish ([`SceneFeed`], [`SignalStatus`]), compares them with what it
//! saw last, and queues one message per change. The frame loop does not know it exists.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use super::queue::{Message, MessageQueue, TOPIC_MAX};
use crate::config::MAX_CLASSES;
use crate::control::{SceneFeed, SignalStatus};
use crate::detector_outputs::{DetectorStatus, FailSafe};
use crate::health::server::HealthSource;
use crate::signal::GroupState;

/// Names the topics are made of, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Topic prefix, e.g. `edgewatch/demo`.
    pub prefix: String,
    /// Zone names, in config order.
    pub zones: Vec<String>,
    /// Line names, in config order.
    pub lines: Vec<String>,
    /// Counted class names.
    pub classes: Vec<String>,
}

/// A detector output's call and fail-safe reason, as last published.
type CallState = (bool, Option<FailSafe>);

/// Watches the shared state and queues a message for each change; see the module docs.
pub struct Watcher {
    topics: Topics,
    feed: Arc<SceneFeed>,
    signals: Option<Arc<SignalStatus>>,
    health: Arc<dyn HealthSource>,
    queue: Arc<MessageQueue>,
    scratch: Message,
    /// Zone counts last published; `u32::MAX` until the first look publishes them all.
    zones: Box<[[u32; MAX_CLASSES]]>,
    /// Line crossings last seen, in then out, per class.
    lines: Box<[[[u64; MAX_CLASSES]; 2]]>,
    /// Signal states last published; `None` until the first look.
    groups: Box<[Option<GroupState>]>,
    /// Detector outputs (detector mode), and their call and fail-safe last published.
    detectors: Option<Arc<DetectorStatus>>,
    calls: Box<[Option<CallState>]>,
    stats_every: Duration,
    next_stats: Option<Duration>,
    /// Asks for every retained topic again after a (re)connection.
    resync: Option<Arc<super::MqttStats>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// A watcher that queues into `queue`; `stats` every `stats_every`, starting at the
    /// first look.
    pub fn new(
        topics: Topics,
        feed: Arc<SceneFeed>,
        signals: Option<Arc<SignalStatus>>,
        health: Arc<dyn HealthSource>,
        queue: Arc<MessageQueue>,
        stats_every: Duration,
    ) -> Watcher {
        let groups = signals.as_ref().map_or(0, |s| s.states().count());
        Watcher {
            zones: vec![[u32::MAX; MAX_CLASSES]; topics.zones.len()].into_boxed_slice(),
            lines: vec![[[0; MAX_CLASSES]; 2]; topics.lines.len()].into_boxed_slice(),
            groups: vec![None; groups].into_boxed_slice(),
            detectors: None,
            calls: Box::new([]),
            scratch: queue.message(),
            topics,
            feed,
            signals,
            health,
            queue,
            stats_every,
            next_stats: None,
            resync: None,
        }
    }

    /// Also publishes each detector output's status (detector mode) when its call or
    /// fail-safe changes.
    pub fn with_detector_outputs(mut self, status: Arc<DetectorStatus>) -> Watcher {
        self.calls = vec![None; status.outputs().count()].into_boxed_slice();
        self.detectors = Some(status);
        self
    }

    /// Publishes every retained topic again whenever `stats` says the link (re)connected.
    pub fn resync_on_connect(mut self, stats: Arc<super::MqttStats>) -> Watcher {
        self.resync = Some(stats);
        self
    }

    /// Looks once at clock time `now`, `wall` being the time since the Unix epoch (for the
    /// events' timestamps), and queues what changed.
    pub fn poll(&mut self, now: Duration, wall: Duration) {
        if self.resync.as_ref().is_some_and(|s| s.take_resync()) {
            self.zones.fill([u32::MAX; MAX_CLASSES]);
            self.groups.fill(None);
            self.calls.fill(None);
        }
        self.zones_changed();
        self.lines_crossed(wall);
        self.signals_changed();
        self.detectors_changed();
        if self.next_stats.is_none_or(|at| now >= at) {
            self.next_stats = Some(now + self.stats_every);
            let (prefix, health) = (&self.topics.prefix, &self.health);
            send(
                &mut self.scratch,
                &self.queue,
                false,
                |t| write!(t, "{prefix}/stats"),
                |w| health.write_health(w),
            );
        }
    }

    fn zones_changed(&mut self) {
        for zone in 0..self.zones.len() {
            for (class, n) in self.feed.zone(zone).enumerate() {
                if class >= self.topics.classes.len() || self.zones[zone][class] == n {
                    continue;
                }
                self.zones[zone][class] = n;
                let (p, z, c) = (
                    &self.topics.prefix,
                    &self.topics.zones[zone],
                    &self.topics.classes[class],
                );
                let topic = |t: &mut heapless::String<TOPIC_MAX>| write!(t, "{p}/zones/{z}/{c}");
                send(&mut self.scratch, &self.queue, true, topic, |w| {
                    write!(w, "{n}")
                });
            }
        }
    }

    fn lines_crossed(&mut self, wall: Duration) {
        for line in 0..self.lines.len() {
            for (dir, out) in [(0, false), (1, true)] {
                for (class, total) in self.feed.line(line, out).enumerate() {
                    let last = self.lines[line][dir][class];
                    if class >= self.topics.classes.len() || total <= last {
                        continue;
                    }
                    self.lines[line][dir][class] = total;
                    let event = Crossing {
                        line: &self.topics.lines[line],
                        class: &self.topics.classes[class],
                        direction: if out { "out" } else { "in" },
                        count: total - last,
                        total,
                        wall,
                    };
                    let prefix = &self.topics.prefix;
                    let topic = |t: &mut heapless::String<TOPIC_MAX>| {
                        write!(t, "{prefix}/lines/{}/crossing", event.line)
                    };
                    send(&mut self.scratch, &self.queue, false, topic, |w| {
                        event.write_json(w)
                    });
                }
            }
        }
    }

    fn signals_changed(&mut self) {
        let Some(signals) = &self.signals else {
            return;
        };
        for (last, (name, state)) in self.groups.iter_mut().zip(signals.states()) {
            if *last == Some(state) {
                continue;
            }
            *last = Some(state);
            let prefix = &self.topics.prefix;
            let topic = |t: &mut heapless::String<TOPIC_MAX>| write!(t, "{prefix}/signals/{name}");
            send(&mut self.scratch, &self.queue, true, topic, |w| {
                w.write_all(state.as_str().as_bytes())
            });
        }
    }
}

impl Watcher {
    /// `detectors/<output>`, retained: `{"call":..,"fail_safe":..,"volume":..,"occupancy":..}`
    /// in NTCIP 1202 terms, on a change of call or fail-safe.
    fn detectors_changed(&mut self) {
        let Some(detectors) = &self.detectors else {
            return;
        };
        for (last, o) in self.calls.iter_mut().zip(detectors.outputs()) {
            if *last == Some((o.call, o.fail_safe)) {
                continue;
            }
            *last = Some((o.call, o.fail_safe));
            let prefix = &self.topics.prefix;
            let topic =
                |t: &mut heapless::String<TOPIC_MAX>| write!(t, "{prefix}/detectors/{}", o.name);
            send(&mut self.scratch, &self.queue, true, topic, |w| {
                write!(w, "{{\"call\":{},\"fail_safe\":", o.call)?;
                match o.fail_safe {
                    Some(f) => write!(w, "\"{}\"", f.as_str())?,
                    None => w.write_all(b"null")?,
                }
                write!(
                    w,
                    ",\"volume\":{},\"occupancy\":{:.4}}}",
                    o.volume, o.occupancy
                )
            });
        }
    }
}

/// Fills `scratch` and queues a copy; a message too large for its buffer is counted lost.
fn send(
    scratch: &mut Message,
    queue: &MessageQueue,
    retain: bool,
    topic: impl FnOnce(&mut heapless::String<TOPIC_MAX>) -> std::fmt::Result,
    payload: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) {
    match scratch.fill(retain, topic, payload) {
        Ok(()) => queue.push(scratch),
        Err(e) => {
            queue.count_lost(1);
            log::warn!("mqtt: {e}; not sent (raise mqtt.max_message_kib)");
        }
    }
}

/// One line-crossing event: `count` objects of `class` crossed `line` towards `direction`
/// since the last look, `total` so far.
struct Crossing<'a> {
    line: &'a str,
    class: &'a str,
    direction: &'static str,
    count: u64,
    total: u64,
    wall: Duration,
}

impl Crossing<'_> {
    fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(b"{\"line\":")?;
        crate::json::string(w, self.line)?;
        w.write_all(b",\"class\":")?;
        crate::json::string(w, self.class)?;
        write!(
            w,
            ",\"direction\":\"{}\",\"count\":{},\"total\":{},\"time\":\"",
            self.direction, self.count, self.total
        )?;
        crate::utc::write_rfc3339(w, self.wall)?;
        w.write_all(b"\"}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::LineCount;

    struct FixedHealth;

    impl HealthSource for FixedHealth {
        fn write_health(&self, out: &mut dyn Write) -> io::Result<()> {
            out.write_all(b"{\"status\":\"ok\"}")
        }
        fn write_metrics(&self, _: &mut dyn Write) -> io::Result<()> {
            Ok(())
        }
    }

    fn drain(q: &MessageQueue) -> Vec<(String, String, bool)> {
        let mut m = q.message();
        let mut out = Vec::new();
        while q.pop_into(&mut m) {
            let payload = String::from_utf8(m.payload().to_vec()).unwrap();
            out.push((m.topic().to_string(), payload, m.retain()));
        }
        out
    }

    fn watcher(feed: &Arc<SceneFeed>, q: &Arc<MessageQueue>) -> Watcher {
        let topics = Topics {
            prefix: "ew/site".into(),
            zones: vec!["road".into()],
            lines: vec!["gantry".into()],
            classes: vec!["car".into(), "bus".into()],
        };
        Watcher::new(
            topics,
            feed.clone(),
            None,
            Arc::new(FixedHealth),
            q.clone(),
            Duration::from_secs(10),
        )
    }

    #[test]
    fn publishes_everything_first_then_only_changes() {
        let feed = Arc::new(SceneFeed::new(1, 1));
        let q = Arc::new(MessageQueue::new(64, 256));
        let mut w = watcher(&feed, &q);
        w.poll(Duration::ZERO, Duration::from_secs(86_400));
        let first = drain(&q);
        let topics: Vec<&str> = first.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(
            topics,
            [
                "ew/site/zones/road/car",
                "ew/site/zones/road/bus",
                "ew/site/stats"
            ]
        );
        assert!(first[0].2 && !first[2].2, "counts retained, stats not");
        assert_eq!(first[2].1, "{\"status\":\"ok\"}");

        // Nothing changed, stats not due: nothing.
        w.poll(Duration::from_secs(5), Duration::from_secs(86_405));
        assert!(drain(&q).is_empty());

        let mut occ = [[0u32; MAX_CLASSES]];
        occ[0][1] = 2;
        feed.publish(&occ, Duration::from_secs(6));
        let mut count = LineCount::default();
        count.outbound[0] = 3;
        feed.publish_lines(&[0], std::slice::from_ref(&count));
        w.poll(Duration::from_secs(10), Duration::from_secs(86_410));
        let got = drain(&q);
        assert_eq!(got[0], ("ew/site/zones/road/bus".into(), "2".into(), true));
        assert_eq!(got[1].0, "ew/site/lines/gantry/crossing");
        assert_eq!(
            got[1].1,
            "{\"line\":\"gantry\",\"class\":\"car\",\"direction\":\"out\",\"count\":3,\
             \"total\":3,\"time\":\"1970-01-02T00:00:10.000Z\"}"
        );
        assert_eq!(got[2].0, "ew/site/stats");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn a_stats_body_too_large_for_a_slot_is_counted_lost() {
        let feed = Arc::new(SceneFeed::new(0, 0));
        let q = Arc::new(MessageQueue::new(4, 8));
        let mut w = watcher(&feed, &q);
        w.topics.zones.clear();
        w.topics.lines.clear();
        w.zones = Box::new([]);
        w.lines = Box::new([]);
        w.poll(Duration::ZERO, Duration::ZERO);
        let c = q.counts();
        assert_eq!((c.enqueued, c.dropped, c.queued), (0, 1, 0));
    }
}
