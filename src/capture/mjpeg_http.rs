//! A network camera serving Motion JPEG over HTTP: one endless `multipart/x-mixed-replace`
//! response whose parts are JPEG frames.
//!
//! Everything is allocated in [`HttpMjpegSource::open`]: the request bytes, a receive buffer
//! (which also bounds the response and part heads to [`HEAD_MAX`]), two frame buffers of
//! `max_frame_kib` (the part being assembled and the newest complete JPEG), the JPEG decoder
//! and its NV12 output. Streaming reads into those buffers and allocates nothing; only the
//! fault path (log lines, and a thread per connection attempt) does.
//!
//! The source runs on the caller's thread, inside [`FrameSource::next_frame`], except for
//! connecting. Each call takes everything that has already arrived and keeps only the newest
//! complete part (older ones are dropped and counted); if none is complete it waits at most
//! `min(timeout_ms, 100 ms)`, keeping a partial part for the next call. The response head of a
//! new connection is read the same way, within the same bound. A fault (connection refused,
//! reset or closed, a status other than 200, a malformed or oversized head, no frame for
//! `timeout_ms`) closes the socket, marks the camera offline and schedules a reconnect with
//! [`Backoff`]. A connection counts as up (online, backoff reset, and a reconnect if an earlier
//! connection streamed) once its response head is a `200` multipart stream. A part over
//! `max_frame_kib` is skipped without being buffered and counted as corrupt, and the stream
//! carries on at the next boundary.
//!
//! Connecting can block for seconds: a host that drops SYNs holds a connect for the whole
//! `connect_timeout_ms`, and name resolution has timeouts of its own. The caller polls several
//! cameras in turn from one thread, so each attempt (resolve, connect, send the request) runs
//! on a short-lived thread of its own (see `Connector`). Until an attempt is due, and while one
//! is in flight, `next_frame` returns [`Next::Waiting`] at once. A failed attempt counts as
//! failing when it started, so attempts are spaced as they were when they ran inline.
//!
//! Tolerated: quoted boundaries, boundaries declared with their leading `--`, a missing CRLF
//! before a delimiter, LF-only line endings, a preamble, and `Transfer-Encoding: chunked`
//! (undone in place in the receive buffer).

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv6Addr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::jpeg::JpegDecoder;
use super::{CaptureError, CaptureStats, Frame, FrameFormat, FrameSource, Next, PixelFormat};
use crate::clock::Clock;
use crate::config::{CameraConfig, CaptureFormat};

/// Longest response head or part head accepted (status or delimiter line plus headers).
pub const HEAD_MAX: usize = 8 * 1024;
/// The receive buffer: a whole head plus what follows it, and room for the next read.
const RX_LEN: usize = 2 * HEAD_MAX;
/// Headers parsed per head; more is a fault.
const MAX_HEADERS: usize = 32;
/// Longest boundary RFC 2046 allows.
const BOUNDARY_MAX: usize = 70;
/// Longest line of chunked framing (a hex size and its extensions).
const CHUNK_LINE_MAX: usize = 256;
/// Longest one call to `next_frame` waits for a frame, whatever `timeout_ms` is.
const WAIT_CAP: Duration = Duration::from_millis(100);
/// Name of the short-lived threads that connect to cameras, as `/proc/<pid>/task/*/comm` shows
/// it (for diagnostics and tests).
pub const CONNECT_THREAD: &str = "mjpeg-connect";

/// A network camera serving Motion JPEG over HTTP, read on the caller's thread (connection
/// attempts run on short-lived threads of their own).
pub struct HttpMjpegSource {
    name: String,
    url: String,
    /// Makes connection attempts off the caller's thread.
    connector: Connector,
    format: FrameFormat,
    clock: Arc<dyn Clock>,
    /// No complete part for this long is a fault.
    timeout: Duration,
    /// Longest wait in one call.
    wait_cap: Duration,
    /// The connection; `None` while offline. Dropping it closes the socket.
    stream: Option<TcpStream>,
    parts: Multipart,
    decoder: JpegDecoder,
    nv12: Box<[u8]>,
    backoff: Backoff,
    delivered: u64,
    /// Complete parts the decoder rejected.
    undecodable: u64,
    reconnects: u64,
    online: bool,
    /// Whether any connection ever got as far as streaming (later ones are reconnects).
    ever_online: bool,
    /// When the last part completed, or the connection was opened.
    last_part_at: Duration,
    /// When the current connection started streaming.
    online_since: Option<Duration>,
    /// Faults since the camera last streamed for a whole `timeout`; logging is rate-limited
    /// on it.
    streak: u64,
    /// Oversized parts already reported.
    oversized_seen: u64,
}

impl fmt::Debug for HttpMjpegSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpMjpegSource")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("format", &self.format)
            .field("connected", &self.stream.is_some())
            .field("connecting", &self.connector.in_flight.is_some())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl HttpMjpegSource {
    /// Opens the camera `cam` describes: checks the URL, allocates every buffer and starts the
    /// first connection attempt (without waiting for it). A camera that is down is not an
    /// error: the source starts offline and keeps trying with backoff. Errors are for a
    /// configuration that can never work (a malformed URL, a size the decoder cannot take).
    pub fn open(
        cam: &CameraConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<HttpMjpegSource, CaptureError> {
        let fail = |message: String| CaptureError::Camera {
            camera: cam.name.clone(),
            message,
        };
        let target =
            Target::parse(&cam.url).map_err(|what| fail(format!("url {:?}: {what}", cam.url)))?;
        if cam.capture_format() != CaptureFormat::Mjpeg {
            return Err(fail(format!(
                "an HTTP camera sends mjpeg; pixel_format {} is not available",
                cam.capture_format()
            )));
        }
        let format = cam.frame_format();
        let decoder =
            JpegDecoder::try_new(cam.width, cam.height).map_err(|e| fail(e.to_string()))?;
        if format.pixel_format != PixelFormat::Nv12 || format.frame_len() != decoder.nv12_len() {
            return Err(fail(format!(
                "frames are decoded to NV12, not {}",
                format.pixel_format
            )));
        }
        let max_frame = cam.max_frame_bytes();
        if max_frame == 0 {
            return Err(fail("max_frame_kib must be greater than zero".into()));
        }
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: edgewatch/{}\r\n\
             Accept: multipart/x-mixed-replace\r\nConnection: close\r\n\r\n",
            target.path,
            target.host_header(),
            env!("CARGO_PKG_VERSION")
        );
        let timeout = Duration::from_millis(cam.timeout_ms.max(1));
        let now = clock.now();
        let connector = Connector::new(Dial {
            host: target.host,
            port: target.port,
            request: request.into_bytes().into_boxed_slice(),
            timeout: Duration::from_millis(cam.connect_timeout_ms.max(1)),
        });
        let mut source = HttpMjpegSource {
            name: cam.name.clone(),
            url: cam.url.clone(),
            connector,
            format,
            clock,
            timeout,
            wait_cap: timeout.min(WAIT_CAP),
            stream: None,
            parts: Multipart::new(max_frame),
            nv12: vec![0; decoder.nv12_len()].into_boxed_slice(),
            decoder,
            backoff: Backoff::new(
                Duration::from_millis(cam.reconnect_min_ms),
                Duration::from_millis(cam.reconnect_max_ms),
            ),
            delivered: 0,
            undecodable: 0,
            reconnects: 0,
            online: false,
            ever_online: false,
            last_part_at: now,
            online_since: None,
            streak: 0,
            oversized_seen: 0,
        };
        if let Err(fault) = source.connector.start(now) {
            source.fault(now, fault);
        }
        Ok(source)
    }

    /// Moves reconnecting along without blocking: collects a finished attempt, or starts one
    /// when the backoff says it is due. `true` once a connection is up (its request sent).
    fn connected(&mut self, now: Duration) -> bool {
        match self.connector.poll() {
            Attempt::InFlight => false,
            Attempt::Idle => {
                if self.backoff.due(now) {
                    if let Err(fault) = self.connector.start(now) {
                        self.fault(now, fault);
                    }
                }
                false
            }
            Attempt::Done {
                started,
                result: Err(fault),
            } => {
                // The wait counts from the attempt's start, as when attempts ran inline.
                self.fault(started, fault);
                false
            }
            Attempt::Done {
                result: Ok(stream), ..
            } => {
                self.parts.reset();
                self.stream = Some(stream);
                self.last_part_at = now;
                true
            }
        }
    }

    /// Reads what has arrived, then waits for a complete part until the call's deadline.
    fn pump(&mut self) -> Result<(), Fault> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let deadline = Instant::now() + self.wait_cap;
        // Drain without blocking: the newest complete part wins.
        stream.set_nonblocking(true).map_err(Fault::Read)?;
        while read_into(stream, &mut self.parts)? {
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
        if self.parts.fresh {
            return Ok(());
        }
        stream.set_nonblocking(false).map_err(Fault::Read)?;
        while !self.parts.fresh {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stream.set_read_timeout(Some(left)).map_err(Fault::Read)?;
            if !read_into(stream, &mut self.parts)? {
                break;
            }
        }
        Ok(())
    }

    /// The connection got a valid response head: it streams.
    fn came_online(&mut self, now: Duration) {
        self.online = true;
        self.online_since = Some(now);
        self.backoff.succeeded();
        if self.ever_online {
            self.reconnects += 1;
            // Logged when the fault before it was.
            if self.streak.is_power_of_two() {
                log::info!(
                    "camera {}: streaming again from {} ({} reconnects so far)",
                    self.name,
                    self.url,
                    self.reconnects
                );
            }
        } else {
            log::info!("camera {}: streaming from {}", self.name, self.url);
        }
        self.ever_online = true;
    }

    /// Closes the connection, marks the camera offline and schedules the next attempt.
    fn fault(&mut self, now: Duration, fault: Fault) {
        self.stream = None;
        self.parts.reset();
        self.online = false;
        // A camera that streamed for a whole timeout before failing starts a new streak, so
        // its first fault is logged; one that keeps failing is logged at 1, 2, 4, 8, ...
        if self
            .online_since
            .take()
            .is_some_and(|since| now.saturating_sub(since) >= self.timeout)
        {
            self.streak = 0;
        }
        self.streak += 1;
        let wait = self.backoff.failed(now);
        if self.streak.is_power_of_two() {
            log::warn!(
                "camera {} ({}): {fault}; offline, next attempt in {} ms ({} failures in a row)",
                self.name,
                self.url,
                wait.as_millis(),
                self.streak
            );
        }
    }

    /// Reports parts skipped for their size, at 1, 2, 4, 8, ... of them.
    fn note_oversized(&mut self) {
        let (seen, now) = (self.oversized_seen, self.parts.oversized);
        if crossed_power_of_two(seen, now) {
            log::warn!(
                "camera {}: skipped a part larger than max_frame_kib ({} KiB; {now} so far)",
                self.name,
                self.parts.max / 1024
            );
        }
        self.oversized_seen = now;
    }

    /// Decodes and hands out the newest complete part, if one came.
    fn deliver(&mut self, now: Duration) -> Next<'_> {
        let Some(jpeg) = self.parts.take_newest() else {
            return Next::Waiting;
        };
        match self.decoder.decode(jpeg, &mut self.nv12) {
            Ok(()) => {
                let seq = self.delivered + self.parts.dropped;
                self.delivered += 1;
                Next::Frame(Frame {
                    data: &self.nv12,
                    seq,
                    timestamp: now,
                })
            }
            Err(e) => {
                self.undecodable += 1;
                if self.undecodable.is_power_of_two() {
                    log::warn!(
                        "camera {}: frame rejected ({} so far): {e}",
                        self.name,
                        self.undecodable
                    );
                }
                Next::Waiting
            }
        }
    }
}

impl FrameSource for HttpMjpegSource {
    fn format(&self) -> FrameFormat {
        self.format
    }

    fn next_frame(&mut self) -> Result<Next<'_>, CaptureError> {
        let now = self.clock.now();
        if self.stream.is_none() && !self.connected(now) {
            return Ok(Next::Waiting);
        }
        let parts_before = self.parts.parts;
        let pumped = self.pump();
        let now = self.clock.now();
        if self.parts.streaming && !self.online {
            self.came_online(now);
        }
        if self.parts.parts != parts_before {
            self.last_part_at = now;
        }
        self.note_oversized();
        match pumped {
            Err(fault) => self.fault(now, fault),
            Ok(()) => {
                let idle = now.saturating_sub(self.last_part_at);
                if idle >= self.timeout {
                    self.fault(now, Fault::Stale(idle));
                }
            }
        }
        // A part completed before a fault is still the newest frame.
        Ok(self.deliver(now))
    }

    fn stats(&self) -> CaptureStats {
        CaptureStats {
            delivered: self.delivered,
            dropped: self.parts.dropped,
            corrupt: self.parts.oversized + self.undecodable,
            reconnects: self.reconnects,
            online: self.online,
        }
    }
}

/// Where and how to connect; shared by the source and the thread of each attempt.
#[derive(Debug)]
struct Dial {
    /// A name or an IP address (IPv6 without brackets).
    host: String,
    port: u16,
    /// `GET` request, formatted once.
    request: Box<[u8]>,
    /// For connecting (all addresses together) and for sending the request.
    timeout: Duration,
}

impl Dial {
    /// Resolves the host, connects and sends the request. Blocks: runs on an attempt's thread.
    fn run(&self) -> Result<TcpStream, Fault> {
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(Fault::Resolve)?;
        let started = Instant::now();
        let mut last_error = None;
        let mut stream = None;
        for addr in addrs {
            // Several addresses share one connect timeout.
            let left = self.timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let mut stream = stream.ok_or_else(|| {
            Fault::Connect(last_error.unwrap_or_else(|| io::Error::from(ErrorKind::NotFound)))
        })?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(Fault::Send)?;
        stream.write_all(&self.request).map_err(Fault::Send)?;
        Ok(stream)
    }
}

/// Connection attempts off the caller's thread. Each attempt is a thread of its own, spawned
/// when the attempt starts (allocation on the reconnect path, never per frame); it runs
/// [`Dial::run`] (resolve, connect, send the request), hands the stream or the fault back
/// through a one-slot channel and exits. At most one attempt is in flight. Nobody joins the
/// thread, so dropping the source never waits for a connect: if the source is gone when the
/// attempt ends, the send fails and the stream is dropped, and so closed, on that thread.
#[derive(Debug)]
struct Connector {
    dial: Arc<Dial>,
    /// The attempt in flight: where its result arrives, and the clock time it started.
    in_flight: Option<(Receiver<Result<TcpStream, Fault>>, Duration)>,
}

/// Where a connection attempt is.
enum Attempt {
    /// None is in flight.
    Idle,
    /// Still resolving, connecting or sending.
    InFlight,
    /// Ended; it started at clock time `started`.
    Done {
        started: Duration,
        result: Result<TcpStream, Fault>,
    },
}

impl Connector {
    fn new(dial: Dial) -> Connector {
        Connector {
            dial: Arc::new(dial),
            in_flight: None,
        }
    }

    /// Starts an attempt at clock time `now`, unless one is in flight already.
    fn start(&mut self, now: Duration) -> Result<(), Fault> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let dial = Arc::clone(&self.dial);
        thread::Builder::new()
            .name(CONNECT_THREAD.into())
            .spawn(move || {
                // Fails only if the source is gone: the stream is then closed right here.
                let _ = tx.send(dial.run());
            })
            .map_err(Fault::Spawn)?;
        self.in_flight = Some((rx, now));
        Ok(())
    }

    /// Where the attempt is, without waiting; a finished attempt is handed out once.
    fn poll(&mut self) -> Attempt {
        let Some((rx, started)) = &self.in_flight else {
            return Attempt::Idle;
        };
        let result = match rx.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return Attempt::InFlight,
            // The thread ended without sending: it panicked.
            Err(TryRecvError::Disconnected) => Err(Fault::Connect(io::Error::other(
                "the connection attempt ended without a result",
            ))),
        };
        let started = *started;
        self.in_flight = None;
        Attempt::Done { started, result }
    }
}

/// One read into the parser. `true` if bytes came, `false` if none were ready in time.
fn read_into(stream: &mut TcpStream, parts: &mut Multipart) -> Result<bool, Fault> {
    loop {
        let buf = parts.spare();
        if buf.is_empty() {
            // The parser consumes or rejects every head before the buffer fills.
            return Err(Fault::Invalid("receive buffer full"));
        }
        match stream.read(buf) {
            Ok(0) => return Err(Fault::Closed(parts.where_in_stream())),
            Ok(n) => {
                parts.filled(n)?;
                return Ok(true);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(false)
            }
            Err(e) => return Err(Fault::Read(e)),
        }
    }
}

/// Feeds `response` (what a camera sends after the request) to the stream parser in reads of
/// at most `read` bytes, as the socket loop does, taking every complete part; returns how
/// many parts came, or the error that drops the connection. For the fuzz harness and tests:
/// the same parser, without a socket.
pub fn parse_response(response: &[u8], read: usize, max_part: usize) -> Result<u64, String> {
    let mut parts = Multipart::new(max_part);
    let (mut at, mut taken) = (0, 0);
    while at < response.len() {
        let buf = parts.spare();
        if buf.is_empty() {
            return Err(Fault::Invalid("receive buffer full").to_string());
        }
        let n = buf.len().min(read.max(1)).min(response.len() - at);
        buf[..n].copy_from_slice(&response[at..at + n]);
        at += n;
        let filled = parts.filled(n);
        if parts.take_newest().is_some() {
            taken += 1;
        }
        filled.map_err(|e| e.to_string())?;
    }
    Ok(taken)
}

/// Whether a counter going from `old` to `new` reached a power of two.
fn crossed_power_of_two(old: u64, new: u64) -> bool {
    new > old && (old == 0 || new.ilog2() > old.ilog2())
}

/// Why a connection was given up.
#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error("cannot resolve the host: {0}")]
    Resolve(io::Error),
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("cannot start a connection attempt: {0}")]
    Spawn(io::Error),
    #[error("cannot send the request: {0}")]
    Send(io::Error),
    #[error("read failed: {0}")]
    Read(io::Error),
    #[error("the camera closed the connection {0}")]
    Closed(&'static str),
    #[error("the camera ended the stream (closing boundary)")]
    Ended,
    #[error("the camera answered {code} {reason}")]
    Status { code: u16, reason: ShortText },
    #[error("the response is not a multipart stream (Content-Type: {0})")]
    NotMultipart(ShortText),
    #[error("bad multipart boundary: {0}")]
    Boundary(&'static str),
    #[error("malformed {what}: {error}")]
    Malformed {
        what: &'static str,
        error: httparse::Error,
    },
    #[error("{0} longer than {HEAD_MAX} bytes")]
    HeadTooLong(&'static str),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("no frame for {} ms", .0.as_millis())]
    Stale(Duration),
}

/// A short printable copy of text from the network, for log lines: ASCII only, truncated.
#[derive(Clone, Copy)]
struct ShortText {
    bytes: [u8; 48],
    len: usize,
}

impl ShortText {
    fn new(text: &[u8]) -> ShortText {
        let mut out = ShortText {
            bytes: [0; 48],
            len: 0,
        };
        let room = out.bytes.len();
        let take = if text.len() > room {
            room - 3
        } else {
            text.len()
        };
        for &b in &text[..take] {
            out.bytes[out.len] = if b == b' ' || b.is_ascii_graphic() {
                b
            } else {
                b'?'
            };
            out.len += 1;
        }
        if take < text.len() {
            out.bytes[out.len..out.len + 3].copy_from_slice(b"...");
            out.len += 3;
        }
        out
    }
}

impl fmt::Display for ShortText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only ASCII bytes are ever stored.
        f.write_str(std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?"))
    }
}

impl fmt::Debug for ShortText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// Where the stream is, from a checked `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// A name or an IP address (IPv6 without brackets).
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, &'static str> {
        let scheme = url.get(..7).filter(|s| s.eq_ignore_ascii_case("http://"));
        if scheme.is_none() {
            return Err("must start with http:// (TLS is not supported)");
        }
        let rest = &url[7..];
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err("user names and passwords in the URL are not supported");
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&n| n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or("the port must be a number from 1 to 65535")?,
        };
        if host.is_empty() {
            return Err("no host");
        }
        let ipv6 = host.contains(':');
        if !ipv6
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err("the host has characters no host name has");
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("the path has spaces or control characters (percent-encode them)");
        }
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Target {
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The `Host` header's value.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            80 => host,
            port => format!("{host}:{port}"),
        }
    }
}

/// Splits `host[:port]` or `[ipv6][:port]`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("no ] after an IPv6 address")?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| "not an IPv6 address in [ ]")?;
        return match after {
            "" => Ok((host, None)),
            _ => Ok((host, Some(after.strip_prefix(':').ok_or("junk after ]")?))),
        };
    }
    Ok(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// The delimiter parts are separated by: `--` and the boundary.
#[derive(Clone, Copy)]
struct Marker {
    bytes: [u8; BOUNDARY_MAX + 2],
    len: usize,
    /// The boundary was declared with its leading `--`; delimiters may then carry two more.
    dashed: bool,
}

impl Marker {
    fn new(boundary: &[u8]) -> Result<Marker, Fault> {
        if boundary.len() > BOUNDARY_MAX {
            return Err(Fault::Boundary("longer than 70 characters"));
        }
        if boundary.iter().all(|&b| b == b'-') {
            return Err(Fault::Boundary("empty"));
        }
        let dashed = boundary.starts_with(b"--");
        let mut marker = Marker {
            bytes: [0; BOUNDARY_MAX + 2],
            len: 0,
            dashed,
        };
        // Searching for the boundary as declared finds both `--b` and `----b` on the wire.
        let prefix: &[u8] = if dashed { b"" } else { b"--" };
        for &b in prefix.iter().chain(boundary) {
            marker.bytes[marker.len] = b;
            marker.len += 1;
        }
        Ok(marker)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Parses the boundary out of a `multipart/...; boundary=...` Content-Type.
    fn from_content_type(value: &[u8]) -> Result<Marker, Fault> {
        let mut fields = value.split(|&b| b == b';');
        let media = trim(fields.next().unwrap_or_default());
        if !media
            .get(..10)
            .is_some_and(|m| m.eq_ignore_ascii_case(b"multipart/"))
        {
            return Err(Fault::NotMultipart(ShortText::new(value)));
        }
        for field in fields {
            let Some(eq) = field.iter().position(|&b| b == b'=') else {
                continue;
            };
            if trim(&field[..eq]).eq_ignore_ascii_case(b"boundary") {
                return Marker::new(unquote(trim(&field[eq + 1..])));
            }
        }
        Err(Fault::Boundary("no boundary parameter in the Content-Type"))
    }
}

impl fmt::Debug for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(s), Some(e)) => &bytes[s..=e],
        _ => &[],
    }
}

fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ ..] => inner.split(|&b| b == b'"').next().unwrap_or_default(),
        _ => value,
    }
}

/// The first header named `name`.
fn header<'h>(headers: &[httparse::Header<'h>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Where `needle` (not empty) first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let last = hay.len().checked_sub(needle.len())?;
    let mut from = 0;
    while from <= last {
        let at = from + hay[from..=last].iter().position(|&b| b == needle[0])?;
        if hay[at..at + needle.len()] == *needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// What the parser expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The HTTP status line and headers.
    Response,
    /// The next delimiter, discarding what comes before it: the preamble, the CRLF after a
    /// sized part, the rest of an oversized part.
    Seek,
    /// The rest of a delimiter line; a closing delimiter (`--` after it) ends the stream.
    DelimiterLine,
    /// A part's headers.
    PartHead,
    /// A part body of known length, `left` bytes still to come.
    Sized { left: usize },
    /// A part body that ends at the next delimiter.
    Unsized,
    /// An oversized part of known length being skipped.
    Skip { left: u64 },
}

/// Chunked transfer coding, undone in the receive buffer before the multipart parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Not chunked.
    Off,
    /// A chunk-size line.
    Size,
    /// Chunk data, `left` bytes still to come.
    Data { left: u64 },
    /// The CRLF after chunk data.
    DataEnd,
    /// The last chunk came: the stream is over once the data before it is parsed.
    Last,
}

/// A `multipart/x-mixed-replace` response parsed from fixed buffers: feed it with
/// [`Multipart::spare`] and [`Multipart::filled`], take frames with
/// [`Multipart::take_newest`].
struct Multipart {
    /// Received bytes: `start..avail` ready for the parser, `avail..end` chunked framing not
    /// yet undone.
    rx: Box<[u8]>,
    start: usize,
    avail: usize,
    end: usize,
    chunk: Chunk,
    phase: Phase,
    marker: Marker,
    /// Largest part kept.
    max: usize,
    /// The part being assembled.
    body: Box<[u8]>,
    body_len: usize,
    /// The newest complete part.
    newest: Box<[u8]>,
    newest_len: usize,
    /// `newest` has not been taken yet.
    fresh: bool,
    /// The response head was accepted on this connection.
    streaming: bool,
    /// Parts completed.
    parts: u64,
    /// Complete parts replaced by a newer one before they were taken.
    dropped: u64,
    /// Parts skipped for being larger than `max`.
    oversized: u64,
    /// Every part completed, for the parser's tests.
    #[cfg(test)]
    completed: Vec<Vec<u8>>,
}

impl fmt::Debug for Multipart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Multipart")
            .field("phase", &self.phase)
            .field("chunk", &self.chunk)
            .field("marker", &self.marker)
            .field("buffered", &(self.end - self.start))
            .field("body_len", &self.body_len)
            .field("fresh", &self.fresh)
            .finish_non_exhaustive()
    }
}

impl Multipart {
    fn new(max: usize) -> Multipart {
        Multipart {
            rx: vec![0; RX_LEN].into_boxed_slice(),
            start: 0,
            avail: 0,
            end: 0,
            chunk: Chunk::Off,
            phase: Phase::Response,
            marker: Marker {
                bytes: [0; BOUNDARY_MAX + 2],
                len: 0,
                dashed: false,
            },
            max,
            body: vec![0; max].into_boxed_slice(),
            body_len: 0,
            newest: vec![0; max].into_boxed_slice(),
            newest_len: 0,
            fresh: false,
            streaming: false,
            parts: 0,
            dropped: 0,
            oversized: 0,
            #[cfg(test)]
            completed: Vec::new(),
        }
    }

    /// Forgets the connection's state; a complete part not yet taken is kept.
    fn reset(&mut self) {
        (self.start, self.avail, self.end) = (0, 0, 0);
        self.chunk = Chunk::Off;
        self.phase = Phase::Response;
        self.body_len = 0;
        self.streaming = false;
    }

    /// Where a connection that ends now ended, for the log.
    fn where_in_stream(&self) -> &'static str {
        match self.phase {
            Phase::Response => "before its response head",
            Phase::Seek => "between parts",
            _ => "inside a part",
        }
    }

    /// Whether the next read goes straight into the body: a sized part, nothing buffered.
    fn reads_into_body(&self) -> bool {
        matches!(self.phase, Phase::Sized { .. })
            && self.chunk == Chunk::Off
            && self.start == self.end
    }

    /// Where the next read should go (never more than the current part still needs when it
    /// goes straight into the body).
    fn spare(&mut self) -> &mut [u8] {
        if let Phase::Sized { left } = self.phase {
            if self.reads_into_body() {
                return &mut self.body[self.body_len..self.body_len + left];
            }
        }
        if self.start == self.end {
            (self.start, self.avail, self.end) = (0, 0, 0);
        } else if self.end == self.rx.len() {
            self.rx.copy_within(self.start..self.end, 0);
            self.avail -= self.start;
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.rx[self.end..]
    }

    /// Takes in `n` bytes just read into [`Multipart::spare`].
    fn filled(&mut self, n: usize) -> Result<(), Fault> {
        if let Phase::Sized { left } = self.phase {
            if self.reads_into_body() {
                self.body_len += n;
                self.sized_progress(left - n);
                return Ok(());
            }
        }
        self.end += n;
        self.dechunk()?;
        while self.step()? {}
        if self.chunk == Chunk::Last {
            return Err(Fault::Ended);
        }
        Ok(())
    }

    /// The newest complete part, once.
    fn take_newest(&mut self) -> Option<&[u8]> {
        if !self.fresh {
            return None;
        }
        self.fresh = false;
        Some(&self.newest[..self.newest_len])
    }

    fn complete(&mut self) {
        if self.fresh {
            self.dropped += 1;
        }
        std::mem::swap(&mut self.body, &mut self.newest);
        self.newest_len = self.body_len;
        self.body_len = 0;
        self.fresh = true;
        self.parts += 1;
        #[cfg(test)]
        self.completed.push(self.newest[..self.newest_len].to_vec());
    }

    fn sized_progress(&mut self, left: usize) {
        if left == 0 {
            self.complete();
            self.phase = Phase::Seek;
        } else {
            self.phase = Phase::Sized { left };
        }
    }

    /// Removes chunked framing from `avail..end`, moving data down to `avail`.
    fn dechunk(&mut self) -> Result<(), Fault> {
        if self.chunk == Chunk::Off {
            self.avail = self.end;
            return Ok(());
        }
        let (mut r, mut w) = (self.avail, self.avail);
        while r < self.end && self.chunk != Chunk::Last {
            if let Chunk::Data { left } = self.chunk {
                let k = (self.end - r).min(usize::try_from(left).unwrap_or(usize::MAX));
                self.rx.copy_within(r..r + k, w);
                (r, w) = (r + k, w + k);
                let left = left - k as u64;
                self.chunk = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data { left }
                };
                continue;
            }
            let Some(lf) = self.rx[r..self.end].iter().position(|&b| b == b'\n') else {
                if self.end - r > CHUNK_LINE_MAX {
                    return Err(Fault::Invalid("chunked framing: a size line is too long"));
                }
                break;
            };
            let line = &self.rx[r..r + lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.chunk = if self.chunk == Chunk::DataEnd {
                if !line.is_empty() {
                    return Err(Fault::Invalid("chunked framing: no CRLF after chunk data"));
                }
                Chunk::Size
            } else {
                match chunk_size(line)? {
                    0 => Chunk::Last,
                    left => Chunk::Data { left },
                }
            };
            r += lf + 1;
        }
        // An incomplete framing line waits behind the data.
        self.rx.copy_within(r..self.end, w);
        self.end = w + (self.end - r);
        self.avail = w;
        Ok(())
    }

    /// Advances the parser over the ready bytes; `false` when it needs more.
    fn step(&mut self) -> Result<bool, Fault> {
        let ready = self.avail - self.start;
        match self.phase {
            Phase::Response => self.response_head(),
            Phase::PartHead => self.part_head(),
            Phase::Unsized => self.unsized_body(),
            Phase::Seek => {
                let window = &self.rx[self.start..self.avail];
                match find(window, self.marker.as_bytes()) {
                    Some(at) => {
                        self.start += at + self.marker.len;
                        self.phase = Phase::DelimiterLine;
                        Ok(true)
                    }
                    None => {
                        // Keep what could be the start of a delimiter split across reads.
                        self.start = self.avail - ready.min(self.marker.len - 1);
                        Ok(false)
                    }
                }
            }
            Phase::DelimiterLine => {
                let window = &self.rx[self.start..self.avail];
                match window {
                    [] | [b'-'] => return Ok(false),
                    [b'-', b'-', ..] => return Err(Fault::Ended),
                    _ => {}
                }
                match window.iter().position(|&b| b == b'\n') {
                    Some(lf) => {
                        self.start += lf + 1;
                        self.phase = Phase::PartHead;
                        Ok(true)
                    }
                    None if ready >= HEAD_MAX => Err(Fault::HeadTooLong("a delimiter line")),
                    None => Ok(false),
                }
            }
            Phase::Sized { left } => {
                let k = ready.min(left);
                if k == 0 {
                    return Ok(false);
                }
                self.body[self.body_len..self.body_len + k]
                    .copy_from_slice(&self.rx[self.start..self.start + k]);
                self.body_len += k;
                self.start += k;
                self.sized_progress(left - k);
                Ok(true)
            }
            Phase::Skip { left } => {
                let k = (ready as u64).min(left);
                if k == 0 {
                    return Ok(false);
                }
                self.start += k as usize;
                self.phase = match left - k {
                    0 => Phase::Seek,
                    left => Phase::Skip { left },
                };
                Ok(true)
            }
        }
    }

    fn response_head(&mut self) -> Result<bool, Fault> {
        let window = &self.rx[self.start..self.avail];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(window) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if window.len() >= HEAD_MAX => {
                return Err(Fault::HeadTooLong("the response head"))
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(error) => {
                return Err(Fault::Malformed {
                    what: "response head",
                    error,
                })
            }
        };
        let code = response.code.unwrap_or(0);
        if code != 200 {
            let reason = response.reason.unwrap_or("").as_bytes();
            return Err(Fault::Status {
                code,
                reason: ShortText::new(reason),
            });
        }
        let content_type = header(response.headers, "content-type").unwrap_or_default();
        let marker = Marker::from_content_type(content_type)?;
        let chunked = match header(response.headers, "transfer-encoding").map(trim) {
            None => false,
            Some(te) if te.eq_ignore_ascii_case(b"chunked") => true,
            Some(te) if te.eq_ignore_ascii_case(b"identity") => false,
            Some(_) => return Err(Fault::Invalid("unsupported Transfer-Encoding")),
        };
        self.marker = marker;
        self.start += len;
        self.phase = Phase::Seek;
        self.streaming = true;
        if chunked {
            // What followed the head is still framed.
            self.chunk = Chunk::Size;
            self.avail = self.start;
            self.dechunk()?;
        }
        Ok(true)
    }

    fn part_head(&mut self) -> Result<bool, Fault> {
        let window = &self.rx[self.start..self.avail];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (len, length) = match httparse::parse_headers(window, &mut headers) {
            Ok(httparse::Status::Complete((len, headers))) => {
                (len, header(headers, "content-length").map(content_length))
            }
            Ok(httparse::Status::Partial) if window.len() >= HEAD_MAX => {
                return Err(Fault::HeadTooLong("part headers"))
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(error) => {
                return Err(Fault::Malformed {
                    what: "part headers",
                    error,
                })
            }
        };
        self.start += len;
        self.body_len = 0;
        self.phase = match length.transpose()? {
            None => Phase::Unsized,
            Some(0) => {
                self.complete();
                Phase::Seek
            }
            Some(n) if n > self.max as u64 => {
                self.oversized += 1;
                Phase::Skip { left: n }
            }
            Some(n) => Phase::Sized { left: n as usize },
        };
        Ok(true)
    }

    fn unsized_body(&mut self) -> Result<bool, Fault> {
        let window = &self.rx[self.start..self.avail];
        let found = find(window, self.marker.as_bytes());
        // Without a delimiter, keep what could be the start of one split across reads.
        let take = found.unwrap_or(window.len().saturating_sub(self.marker.len - 1));
        if self.body_len + take > self.max {
            // Skip the rest without buffering it; resume at the next delimiter.
            self.oversized += 1;
            self.body_len = 0;
            self.start += take;
            self.phase = Phase::Seek;
            return Ok(true);
        }
        self.body[self.body_len..self.body_len + take]
            .copy_from_slice(&self.rx[self.start..self.start + take]);
        self.body_len += take;
        self.start += take;
        if found.is_none() {
            return Ok(false);
        }
        // The line break before the delimiter (and the two extra dashes of a dashed boundary)
        // belong to the delimiter, not the body.
        let mut body = &self.body[..self.body_len];
        if self.marker.dashed {
            body = body.strip_suffix(b"--").unwrap_or(body);
        }
        body = body.strip_suffix(b"\n").unwrap_or(body);
        body = body.strip_suffix(b"\r").unwrap_or(body);
        self.body_len = body.len();
        self.start += self.marker.len;
        self.complete();
        self.phase = Phase::DelimiterLine;
        Ok(true)
    }
}

fn content_length(value: &[u8]) -> Result<u64, Fault> {
    let digits = trim(value);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Fault::Invalid("a part's Content-Length is not a number"));
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn chunk_size(line: &[u8]) -> Result<u64, Fault> {
    let bad = Fault::Invalid("chunked framing: a chunk size is not a hex number");
    let hex = trim(line.split(|&b| b == b';').next().unwrap_or_default());
    if hex.is_empty() || hex.len() > 15 {
        return Err(bad);
    }
    hex.iter().try_fold(0u64, |n, &d| {
        let digit = (d as char).to_digit(16).ok_or(Fault::Invalid(
            "chunked framing: a chunk size is not a hex number",
        ))?;
        Ok(n * 16 + u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
        Content-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n";

    fn part(body: &[u8], with_length: bool) -> Vec<u8> {
        let mut out = b"--frame\r\nContent-Type: image/jpeg\r\n".to_vec();
        if with_length {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Feeds `bytes` in reads of at most `chunk` bytes; returns every part completed.
    fn feed(p: &mut Multipart, bytes: &[u8], chunk: usize) -> (Vec<Vec<u8>>, Option<Fault>) {
        let mut at = 0;
        let mut fault = None;
        while at < bytes.len() && fault.is_none() {
            let spare = p.spare();
            let n = spare.len().min(chunk).min(bytes.len() - at);
            spare[..n].copy_from_slice(&bytes[at..at + n]);
            at += n;
            fault = p.filled(n).err();
        }
        (std::mem::take(&mut p.completed), fault)
    }

    /// Part lengths, for readable assertion messages.
    fn lens(parts: &[Vec<u8>]) -> Vec<usize> {
        parts.iter().map(Vec::len).collect()
    }

    fn bodies() -> Vec<Vec<u8>> {
        vec![
            b"\xff\xd8first frame\xff\xd9".to_vec(),
            (0..3000u32).map(|i| (i * 7 % 251) as u8).collect(),
            b"-".to_vec(),
            b"--fram".to_vec(),
        ]
    }

    #[test]
    fn parts_survive_every_split_with_and_without_length() {
        for with_length in [true, false] {
            let mut stream = HEAD.to_vec();
            for body in bodies() {
                stream.extend_from_slice(&part(&body, with_length));
            }
            stream.extend_from_slice(b"--frame\r\n");
            for chunk in [1, 2, 3, 7, 64, 1000, usize::MAX] {
                let mut p = Multipart::new(4096);
                let (parts, fault) = feed(&mut p, &stream, chunk);
                assert!(fault.is_none(), "{with_length} {chunk}: {fault:?}");
                assert!(
                    parts == bodies(),
                    "length {with_length}, reads of {chunk}: {:?}",
                    lens(&parts)
                );
                assert!(p.streaming);
            }
        }
    }

    #[test]
    fn tolerates_lf_endings_missing_crlf_quotes_dashes_and_a_preamble() {
        let cases: [(&[u8], &[u8]); 4] = [
            (
                b"HTTP/1.0 200 OK\nContent-Type: multipart/x-mixed-replace;boundary=\"b b\"\n\n",
                b"preamble\n--b b\nContent-Type: image/jpeg\n\nAAA--b b\n\nBBB\n--b b\n",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: Multipart/X-Mixed-Replace; boundary=--myb\r\n\r\n",
                b"--myb\r\n\r\nAAA\r\n--myb\r\n\r\nBBB\r\n--myb\r\n",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=--myb\r\n\r\n",
                b"----myb\r\n\r\nAAA\r\n----myb\r\n\r\nBBB\r\n----myb\r\n",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-type: multipart/mixed; charset=x; BOUNDARY=b\r\n\r\n",
                b"--b\r\nContent-Length: 3\r\n\r\nAAA--b\r\nContent-Length: 3\r\n\r\nBBB",
            ),
        ];
        for (head, body) in cases {
            let stream = [head, body].concat();
            for chunk in [1, 5, usize::MAX] {
                let mut p = Multipart::new(64);
                let (parts, fault) = feed(&mut p, &stream, chunk);
                assert!(fault.is_none(), "{fault:?}");
                assert_eq!(parts, [b"AAA".to_vec(), b"BBB".to_vec()], "{stream:?}");
            }
        }
    }

    #[test]
    fn newer_parts_replace_untaken_ones_and_count_as_dropped() {
        let mut stream = HEAD.to_vec();
        for body in bodies() {
            stream.extend_from_slice(&part(&body, true));
        }
        let mut p = Multipart::new(4096);
        let spare = p.spare();
        spare[..stream.len()].copy_from_slice(&stream);
        p.filled(stream.len()).unwrap();
        assert_eq!(p.take_newest(), Some(&b"--fram"[..]));
        assert_eq!((p.parts, p.dropped), (4, 3));
        assert_eq!(p.take_newest(), None);
    }

    #[test]
    fn oversized_parts_are_skipped_and_the_stream_resumes() {
        for with_length in [true, false] {
            let big = vec![0xAB; 5000];
            let mut stream = HEAD.to_vec();
            stream.extend_from_slice(&part(b"small", with_length));
            stream.extend_from_slice(&part(&big, with_length));
            stream.extend_from_slice(&part(b"after", with_length));
            stream.extend_from_slice(b"--frame\r\n");
            for chunk in [1, 100, usize::MAX] {
                let mut p = Multipart::new(1024);
                let (parts, fault) = feed(&mut p, &stream, chunk);
                assert!(fault.is_none(), "{fault:?}");
                assert_eq!(parts, [b"small".to_vec(), b"after".to_vec()]);
                assert_eq!(p.oversized, 1, "length {with_length}, reads of {chunk}");
            }
        }
    }

    #[test]
    fn chunked_responses_are_undone_in_place() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
            Content-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n";
        let mut payload = Vec::new();
        for body in bodies() {
            payload.extend_from_slice(&part(&body, false));
        }
        payload.extend_from_slice(b"--frame\r\n");
        let mut stream = head.to_vec();
        for piece in payload.chunks(333) {
            stream.extend_from_slice(format!("{:X};ext=1\r\n", piece.len()).as_bytes());
            stream.extend_from_slice(piece);
            stream.extend_from_slice(b"\r\n");
        }
        stream.extend_from_slice(b"0\r\n\r\n");
        for chunk in [1, 4, 50, usize::MAX] {
            let mut p = Multipart::new(4096);
            let (parts, fault) = feed(&mut p, &stream, chunk);
            assert!(matches!(fault, Some(Fault::Ended)), "{fault:?}");
            assert!(parts == bodies(), "reads of {chunk}: {:?}", lens(&parts));
        }
    }

    fn fault_of(stream: &[u8]) -> Fault {
        let mut p = Multipart::new(1024);
        feed(&mut p, stream, usize::MAX).1.expect("a fault")
    }

    #[test]
    fn bad_responses_are_faults_that_say_why() {
        let cases: [(&[u8], &str); 8] = [
            (b"HTTP/1.1 404 Not Found\r\n\r\n", "answered 404 Not Found"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n\r\n",
                "not a multipart stream (Content-Type: image/jpeg)",
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", "not a multipart stream"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace\r\n\r\n",
                "no boundary",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=\"\"\r\n\r\n",
                "empty",
            ),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed response head"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x; boundary=b\r\n\r\n--b\r\nContent-Length: x\r\n\r\n",
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x; boundary=b\r\n\r\n--b--\r\n",
                "ended the stream",
            ),
        ];
        for (stream, expected) in cases {
            let text = fault_of(stream).to_string();
            assert!(text.contains(expected), "{text:?} lacks {expected:?}");
        }
        let mut head = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
        head.resize(HEAD_MAX + 10, b'x');
        assert!(fault_of(&head).to_string().contains("response head longer"));
        let long = [b"--".as_slice(), &[b'a'; 71]].concat();
        assert!(Marker::new(&long[2..]).is_err());
        assert!(Marker::new(&long[3..]).is_ok());
        let mut head = HEAD.to_vec();
        head.extend_from_slice(b"--frame\r\n");
        head.extend_from_slice(&vec![b'X'; HEAD_MAX]);
        assert!(fault_of(&head).to_string().contains("part headers longer"));
    }

    #[test]
    fn urls_are_checked() {
        let t = Target::parse("http://cam.local:8080/video?fps=5#x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("cam.local", 8080, "/video?fps=5")
        );
        assert_eq!(t.host_header(), "cam.local:8080");
        let t = Target::parse("HTTP://10.0.0.2").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("10.0.0.2", 80, "/")
        );
        assert_eq!(t.host_header(), "10.0.0.2");
        let t = Target::parse("http://[::1]:81?q").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 81, "/?q")
        );
        assert_eq!(t.host_header(), "[::1]:81");
        for (url, why) in [
            ("https://cam/", "http://"),
            ("cam/video", "http://"),
            ("http://", "no host"),
            ("http:///video", "no host"),
            ("http://cam:/", "port"),
            ("http://cam:0/", "port"),
            ("http://cam:65536/", "port"),
            ("http://cam:x/", "port"),
            ("http://user:pw@cam/", "passwords"),
            ("http://ca m/", "host"),
            ("http://cam/a b", "path"),
            ("http://[::1/", "]"),
            ("http://[nope]/", "IPv6"),
        ] {
            let err = Target::parse(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    /// Polls `connector` until its attempt ends.
    fn finish(connector: &mut Connector) -> (Duration, Result<TcpStream, Fault>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match connector.poll() {
                Attempt::Done { started, result } => return (started, result),
                Attempt::InFlight => std::thread::sleep(Duration::from_millis(1)),
                Attempt::Idle => panic!("no attempt in flight"),
            }
            assert!(Instant::now() < deadline, "the attempt never ended");
        }
    }

    #[test]
    fn attempts_run_one_at_a_time_and_hand_back_a_sent_request_or_a_fault() {
        const REQUEST: &[u8] = b"GET /video HTTP/1.1\r\n\r\n";
        let dial = |port| Dial {
            host: "127.0.0.1".into(),
            port,
            request: REQUEST.into(),
            timeout: Duration::from_secs(5),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut connector = Connector::new(dial(listener.local_addr().unwrap().port()));
        assert!(matches!(connector.poll(), Attempt::Idle));
        let ms = Duration::from_millis;
        connector.start(ms(7)).unwrap();
        // Already in flight: no second attempt.
        connector.start(ms(8)).unwrap();
        let (started, result) = finish(&mut connector);
        assert_eq!(started, ms(7));
        assert!(result.is_ok(), "{result:?}");
        assert!(matches!(connector.poll(), Attempt::Idle));
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0; REQUEST.len()];
        conn.read_exact(&mut request).unwrap();
        assert_eq!(request, REQUEST);
        listener.set_nonblocking(true).unwrap();
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "one connection per attempt"
        );
        // Nobody listens there any more: refused.
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut connector = Connector::new(dial(refused));
        connector.start(ms(9)).unwrap();
        let (_, result) = finish(&mut connector);
        assert!(matches!(result, Err(Fault::Connect(_))), "{result:?}");
    }

    #[test]
    fn power_of_two_crossings() {
        let logged: Vec<u64> = (1..=20)
            .filter(|&n| crossed_power_of_two(n - 1, n))
            .collect();
        assert_eq!(logged, [1, 2, 4, 8, 16]);
        assert!(crossed_power_of_two(5, 9));
        assert!(!crossed_power_of_two(5, 7));
        assert!(!crossed_power_of_two(4, 4));
    }

    #[test]
    fn short_text_is_printable_and_bounded() {
        assert_eq!(ShortText::new(b"Not Found").to_string(), "Not Found");
        assert_eq!(ShortText::new(b"a\x00\xffb").to_string(), "a??b");
        let long = ShortText::new(&[b'x'; 100]).to_string();
        assert_eq!(long.len(), 48);
        assert!(long.ends_with("..."));
    }
}
