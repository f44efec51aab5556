//! Publishing to a fleet MQTT broker, off the frame loop.
//!
//! Two threads, joined by a [`MessageQueue`] of fixed-size messages allocated at start-up:
//!
//! - the **watcher** ([`watch::Watcher`]) looks at the atomics the pipeline and the control
//!   loop publish anyway, a few times a second, and queues one message per change (zone
//!   counts, line crossings, signal states) and the `/health` JSON every
//!   `mqtt.stats_interval_s`;
//! - the **link** owns the MQTT connection (rumqttc's sync client, QoS 1): it hands queued
//!   messages to the client only while connected, counts a message published when the broker
//!   acknowledges it, and reconnects with backoff when the connection breaks.
//!
//! The frame loop never touches either. When the broker is away the queue keeps the newest
//! `mqtt.queue_capacity` messages and counts the ones it overwrites; messages already handed
//! to a connection that breaks before the broker acknowledges them are counted lost too, so
//! at any time `enqueued = published + dropped + queued + in flight`.

pub mod queue;
pub mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rumqttc::{
    Client, Connection, Event, LastWill, MqttOptions, Packet, QoS, RecvTimeoutError,
    TlsConfiguration, Transport,
};

use crate::capture::backoff::Backoff;
use crate::clock::Clock;
use crate::config::MqttConfig;
use queue::{Message, MessageQueue, QueueCounts};
use watch::Watcher;

/// Messages handed to the client and not yet acknowledged, at most.
const MAX_IN_FLIGHT: u64 = 32;
/// How long the link waits for the connection at a time, so it notices new messages and
/// `stop` soon enough.
const LINK_POLL: Duration = Duration::from_millis(50);
/// How long the link lets one connection attempt run. Waiting less would cancel attempts
/// (TCP, TLS handshake, CONNACK) that take longer than [`LINK_POLL`] on a real network, and
/// none would ever finish; rumqttc bounds an attempt itself, at 5 s.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long shutting down may spend flushing the queue and saying `offline`.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Why MQTT could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// A TLS file named in the config could not be read.
    #[error("{key}: {path}: {source}")]
    TlsFile {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start the mqtt {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
}

/// The link's counters, for `/health` and `/metrics`.
#[derive(Debug)]
pub struct MqttStats {
    queue: Arc<MessageQueue>,
    published: AtomicU64,
    in_flight: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
    /// Set on every (re)connection: the watcher publishes every retained topic again, so a
    /// broker that restarted without persistence learns the current state.
    resync: AtomicBool,
}

/// One consistent-enough reading of [`MqttStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttCounts {
    /// The queue's counters.
    pub queue: QueueCounts,
    /// The queue's bound.
    pub capacity: usize,
    /// Messages the broker acknowledged.
    pub published: u64,
    /// Handed to the connection, not yet acknowledged.
    pub in_flight: u64,
    /// Times the connection came back after breaking.
    pub reconnects: u64,
    /// Connected to the broker now.
    pub connected: bool,
}

impl MqttStats {
    /// Counters around `queue`.
    pub fn new(queue: Arc<MessageQueue>) -> MqttStats {
        MqttStats {
            queue,
            published: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            resync: AtomicBool::new(false),
        }
    }

    /// True once after each (re)connection.
    pub fn take_resync(&self) -> bool {
        self.resync.swap(false, Relaxed)
    }

    /// The queue the counters are about.
    pub fn queue(&self) -> &Arc<MessageQueue> {
        &self.queue
    }

    /// The counters now.
    pub fn counts(&self) -> MqttCounts {
        // Read first: the link counts a broken connection's losses before it clears this, so
        // `connected == false` here means the counts below include them.
        let connected = self.connected.load(SeqCst);
        MqttCounts {
            queue: self.queue.counts(),
            capacity: self.queue.capacity(),
            published: self.published.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            connected,
        }
    }
}

/// The running watcher and link threads.
#[derive(Debug)]
pub struct MqttThreads {
    stop_watch: Arc<AtomicBool>,
    stop_link: Arc<AtomicBool>,
    watch: JoinHandle<Watcher>,
    link: JoinHandle<()>,
    clock: Arc<dyn Clock>,
}

impl MqttThreads {
    /// Stops: one last look (the signals' final state), a short flush, `offline`, and a clean
    /// disconnect.
    pub fn stop(self) {
        self.stop_watch.store(true, Relaxed);
        match self.watch.join() {
            Ok(mut watcher) => watcher.poll(self.clock.now(), crate::utc::unix_now()),
            Err(_) => log::error!("the mqtt watcher thread panicked"),
        }
        self.stop_link.store(true, Relaxed);
        if self.link.join().is_err() {
            log::error!("the mqtt link thread panicked");
        }
    }
}

/// The broker connection's settings for site `site`, read from the config and its TLS files;
/// done before anything else starts, so a missing file stops the unit at once.
pub fn connect_options(cfg: &MqttConfig, site: &str) -> Result<MqttOptions, MqttError> {
    let available = available_topic(cfg, site);
    let mut o = MqttOptions::new(cfg.client_id(site), cfg.host.clone(), cfg.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s));
    o.set_clean_session(true);
    o.set_last_will(LastWill::new(available, "offline", QoS::AtLeastOnce, true));
    let payload_max = cfg.max_message_kib * 1024;
    o.set_max_packet_size(64 * 1024, payload_max + 1024);
    if let Some(user) = &cfg.username {
        o.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
    }
    if cfg.tls {
        let read = |key: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|source| MqttError::TlsFile {
                key,
                path: path.clone(),
                source,
            })
        };
        let client_auth = match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => Some((
                read("mqtt.client_cert", cert)?,
                read("mqtt.client_key", key)?,
            )),
            _ => None,
        };
        let tls = match &cfg.ca_file {
            Some(ca) => TlsConfiguration::Simple {
                ca: read("mqtt.ca_file", ca)?,
                alpn: None,
                client_auth,
            },
            // The system's roots (rustls-native-certs).
            None => TlsConfiguration::default(),
        };
        o.set_transport(Transport::tls_with_config(tls));
    }
    Ok(o)
}

fn available_topic(cfg: &MqttConfig, site: &str) -> String {
    format!("{}/available", cfg.prefix(site))
}

/// Starts the watcher and the link for the site `site` with `options` (see
/// [`connect_options`]); `watcher` says what to publish and where, `stats` is the counters
/// shared with the health endpoint.
pub fn start(
    cfg: &MqttConfig,
    site: &str,
    options: MqttOptions,
    watcher: Watcher,
    stats: Arc<MqttStats>,
    clock: Arc<dyn Clock>,
) -> Result<MqttThreads, MqttError> {
    let available = available_topic(cfg, site);
    let (client, connection) = Client::new(options, MAX_IN_FLIGHT as usize * 2);
    let stop_watch = Arc::new(AtomicBool::new(false));
    let stop_link = Arc::new(AtomicBool::new(false));
    let period = Duration::from_millis(cfg.poll_ms);
    let watch = {
        let (stop, clock) = (stop_watch.clone(), clock.clone());
        let mut watcher = watcher;
        std::thread::Builder::new()
            .name("mqtt-watch".into())
            .spawn(move || {
                let mut next = clock.now();
                while !stop.load(Relaxed) {
                    watcher.poll(clock.now(), crate::utc::unix_now());
                    next = (next + period).max(clock.now());
                    clock.sleep_until(next);
                }
                watcher
            })
            .map_err(|e| MqttError::Thread("watcher", e))?
    };
    let link = Link {
        msg: stats.queue.message(),
        held: false,
        client,
        connection,
        available,
        backoff: Backoff::new(
            Duration::from_millis(cfg.reconnect_min_ms),
            Duration::from_millis(cfg.reconnect_max_ms),
        ),
        ever_connected: false,
        stats,
        clock: clock.clone(),
        stop: stop_link.clone(),
        broker: format!("{}:{}", cfg.host, cfg.port),
    };
    let link = std::thread::Builder::new()
        .name("mqtt-link".into())
        .spawn(move || link.run())
        .map_err(|e| MqttError::Thread("link", e))?;
    Ok(MqttThreads {
        stop_watch,
        stop_link,
        watch,
        link,
        clock,
    })
}

/// The connection side: see the module docs.
struct Link {
    client: Client,
    connection: Connection,
    /// The message taken from the queue and not yet accepted by the client.
    msg: Message,
    held: bool,
    available: String,
    backoff: Backoff,
    ever_connected: bool,
    stats: Arc<MqttStats>,
    clock: Arc<dyn Clock>,
    stop: Arc<AtomicBool>,
    broker: String,
}

impl Link {
    fn connected(&self) -> bool {
        self.stats.connected.load(SeqCst)
    }

    fn run(mut self) {
        let mut flush_until = None;
        loop {
            if self.stop.load(Relaxed) {
                let now = self.clock.now();
                let until = *flush_until.get_or_insert(now + FLUSH_LIMIT);
                let drained = !self.held && self.stats.queue.counts().queued == 0;
                if !self.connected() || now >= until || drained {
                    break;
                }
            }
            let wait = if self.connected() {
                self.hand_over();
                LINK_POLL
            } else {
                CONNECT_WAIT
            };
            match self.connection.recv_timeout(wait) {
                Ok(Ok(event)) => self.on_event(event),
                Ok(Err(e)) => self.on_error(&e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        if self.held {
            // Not handed over before the flush ran out: it stays counted as queued.
            self.stats.queue.requeue_front(&self.msg);
            self.held = false;
        }
        if self.connected() {
            self.say_offline_and_disconnect();
        }
    }

    /// Hands queued messages to the client while the in-flight window has room.
    fn hand_over(&mut self) {
        while self.stats.in_flight.load(Relaxed) < MAX_IN_FLIGHT {
            if !self.held {
                if !self.stats.queue.pop_into(&mut self.msg) {
                    return;
                }
                self.held = true;
            }
            let m = &self.msg;
            if !rumqttc::valid_topic(m.topic()) {
                // The config checks every name that goes into a topic; should one slip
                // through, drop that message rather than hold up the queue behind it.
                log::warn!("mqtt: `{}` is not a valid topic; dropped", m.topic());
                self.stats.queue.count_lost(1);
                self.held = false;
                continue;
            }
            let sent =
                self.client
                    .try_publish(m.topic(), QoS::AtLeastOnce, m.retain(), m.payload());
            if sent.is_err() {
                // The client's channel is full: keep the message and try after the next event.
                return;
            }
            self.held = false;
            self.stats.in_flight.fetch_add(1, Relaxed);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                if self.ever_connected {
                    self.stats.reconnects.fetch_add(1, Relaxed);
                }
                log::info!("mqtt: connected to {}", self.broker);
                self.ever_connected = true;
                self.backoff.succeeded();
                self.stats.connected.store(true, SeqCst);
                self.stats.resync.store(true, Relaxed);
                self.stats.queue.count_direct(1);
                match self
                    .client
                    .try_publish(&self.available, QoS::AtLeastOnce, true, "online")
                {
                    Ok(()) => {
                        self.stats.in_flight.fetch_add(1, Relaxed);
                    }
                    Err(_) => self.stats.queue.count_lost(1),
                }
            }
            Event::Incoming(Packet::PubAck(_)) => {
                // Saturating: a late ack must not wrap the counter below zero.
                let _ = self
                    .stats
                    .in_flight
                    .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
                self.stats.published.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }

    /// The connection broke or could not be made: count what it took with it, give the held
    /// message back to the queue, and wait before the next attempt.
    fn on_error(&mut self, e: &rumqttc::ConnectionError) {
        let was_connected = self.connected();
        // A clean session forgets what the broker never acknowledged; count it here rather
        // than let rumqttc resend it into a new session that would drop it anyway.
        let lost = self.stats.in_flight.swap(0, Relaxed);
        self.stats.queue.count_lost(lost);
        self.connection.eventloop.pending.clear();
        if self.held {
            self.stats.queue.requeue_front(&self.msg);
            self.held = false;
        }
        // Last, so whoever sees `connected == false` sees the losses counted.
        self.stats.connected.store(false, SeqCst);
        let wait = self.backoff.failed(self.clock.now());
        if was_connected || !self.ever_connected && wait == self.backoff_min() {
            log::warn!(
                "mqtt: {}: {e}; {lost} unacknowledged messages lost; retrying in {} ms",
                self.broker,
                wait.as_millis()
            );
        } else {
            log::debug!(
                "mqtt: {}: {e}; retrying in {} ms",
                self.broker,
                wait.as_millis()
            );
        }
        let until = self.clock.now() + wait;
        while !self.stop.load(Relaxed) && self.clock.now() < until {
            let step = (self.clock.now() + LINK_POLL).min(until);
            self.clock.sleep_until(step);
        }
    }

    fn backoff_min(&self) -> Duration {
        // The first wait of a schedule is its minimum; used to log a failure streak once.
        self.backoff.first_wait()
    }

    fn say_offline_and_disconnect(&mut self) {
        self.stats.queue.count_direct(1);
        if self
            .client
            .try_publish(&self.available, QoS::AtLeastOnce, true, "offline")
            .is_err()
        {
            self.stats.queue.count_lost(1);
        } else {
            self.stats.in_flight.fetch_add(1, Relaxed);
        }
        let deadline = self.clock.now() + FLUSH_LIMIT;
        let mut disconnecting = false;
        while self.clock.now() < deadline {
            if !disconnecting && self.stats.in_flight.load(Relaxed) == 0 {
                let _ = self.client.try_disconnect();
                disconnecting = true;
            }
            match self.connection.recv_timeout(LINK_POLL) {
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) => break,
                Ok(Ok(event)) => self.on_event(event),
                Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        let lost = self.stats.in_flight.swap(0, Relaxed);
        self.stats.queue.count_lost(lost);
        self.stats.connected.store(false, SeqCst);
    }
}
