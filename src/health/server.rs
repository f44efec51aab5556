//! The local health endpoint: `GET /health` (JSON) and `GET /metrics` (Prometheus text), served
//! over plain HTTP/1.1 from threads of its own, so that no client can stall the pipeline.
//!
//! Everything is bounded by construction, and every bound is set at [`HealthServer::start`]:
//! - threads: one accept thread and `max_connections` workers, spawned once, never per client;
//! - connections: `max_connections` being served plus as many waiting in a bounded queue; any
//!   more are answered `503` by the accept thread and closed at once;
//! - memory: each worker owns one request buffer and one response buffer, allocated at start and
//!   reused; a request head that does not fit is answered `431`, a body that does not fit `500`;
//! - time: the whole request head must arrive within `read_timeout` and the whole response leave
//!   within `write_timeout`, so a client that trickles bytes (slowloris) or never reads is dropped.
//!
//! One request per connection (`Connection: close`): no keep-alive state to bound.
//!
//! With the live view (`[view]`), `GET /` is the status page compiled into the binary,
//! `GET /snapshot.jpg` a current JPEG, and `GET /stream.mjpeg` a multipart stream that keeps
//! its worker: at most `view.max_viewers` at once (validated below `max_connections`), each
//! part sent within `write_timeout` or the client is dropped, never buffered for.
//!
//! With traffic data bins (`[bins]`), `GET /bins.csv?from=&to=` streams the rows in range from
//! the files, in chunks of the worker's response buffer (chunked transfer encoding), each sent
//! within `write_timeout`: the work is bounded by the files' own bound, `bins.max_bytes`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bins::store::{copy_range, TimeRange, MAX_LINE};
use crate::bins::BinStats;
use crate::view::{ViewError, Viewer};

/// What the server serves; implemented by the lead over the pipeline's atomics.
///
/// Both methods write into the calling worker's reused response buffer, which refuses to grow
/// past [`ServerLimits::max_response_bytes`]: a body that needs more is answered `500`.
pub trait HealthSource: Send + Sync + 'static {
    /// Writes the `/health` JSON body.
    fn write_health(&self, out: &mut dyn Write) -> io::Result<()>;
    /// Writes the `/metrics` body (Prometheus text exposition format 0.0.4).
    fn write_metrics(&self, out: &mut dyn Write) -> io::Result<()>;
    /// The live view, when the site enables it.
    fn view(&self) -> Option<&Viewer> {
        None
    }
    /// The traffic data bins, when the site writes them.
    fn bins(&self) -> Option<&BinStats> {
        None
    }
}

/// The status page: one self-contained HTML file, no external assets.
const STATUS_PAGE: &str = include_str!("../view/status.html");
/// Most bytes of a URL-decoded query value (a camera name).
const MAX_QUERY_VALUE: usize = 64;
/// How long a stream waits for the next frame before asking again.
const STREAM_WAIT: Duration = Duration::from_secs(1);
/// Send buffer of a stream socket: about two frames, so a client that stops reading fills it
/// soon and is dropped by the write timeout instead of the kernel queueing megabytes for it.
const STREAM_SNDBUF_MIN: usize = 64 * 1024;

/// The server's bounds. Every field must be non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once (one worker thread each); as many more may wait in the queue.
    pub max_connections: usize,
    /// Largest request head (request line and headers) accepted; more is answered `431`.
    pub max_request_bytes: usize,
    /// Time allowed for the whole request head to arrive, from when a worker takes the
    /// connection: a deadline, not a per-read timeout, so trickled bytes do not extend it.
    pub read_timeout: Duration,
    /// Time allowed for the whole response to be sent.
    pub write_timeout: Duration,
    /// Largest response body; a body that would need more is answered `500`.
    pub max_response_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 8,
            max_request_bytes: 4096,
            read_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(2),
            max_response_bytes: 256 * 1024,
        }
    }
}

/// Why the health server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket could not be bound (address in use, not local, no permission).
    #[error("health server: cannot bind {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// A server thread could not be started.
    #[error("health server: cannot start a thread: {0}")]
    Thread(io::Error),
    /// A limit is zero, which would make the server refuse everything (or the OS reject it).
    #[error("health server: `{0}` must be greater than zero")]
    ZeroLimit(&'static str),
}

/// What the server has done since it started; read with [`HealthServer::counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// Requests answered `200`.
    pub served: u64,
    /// Requests answered with an error status by a worker (400, 404, 405, 431, 500).
    pub rejected: u64,
    /// Connections answered `503` by the accept thread because every worker and queue slot was
    /// taken.
    pub refused: u64,
    /// Connections dropped because the request head or the response missed its deadline.
    pub timed_out: u64,
}

/// The running health server. Dropping it stops it too; [`HealthServer::stop`] says so.
#[derive(Debug)]
pub struct HealthServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl HealthServer {
    /// Binds `addr` and starts the accept thread and `max_connections` workers. Every buffer
    /// the server uses is allocated here.
    pub fn start(
        addr: SocketAddr,
        limits: ServerLimits,
        source: Arc<dyn HealthSource>,
    ) -> Result<HealthServer, ServerError> {
        check_limits(&limits)?;
        let listener =
            TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let shared = Arc::new(Shared::default());
        let mut server = HealthServer {
            local_addr,
            shared: Arc::clone(&shared),
            accept: None,
            workers: Vec::with_capacity(limits.max_connections),
        };
        // The queue holds as many connections as there are workers: enough to absorb a burst
        // while workers finish, small enough that a waiting client is answered within about
        // one read deadline. A worker holds the lock only while it waits for a connection.
        let (queue, inbox) = sync_channel::<TcpStream>(limits.max_connections);
        let inbox = Arc::new(Mutex::new(inbox));
        for index in 0..limits.max_connections {
            let worker = Worker::new(limits, Arc::clone(&source), Arc::clone(&shared));
            let inbox = Arc::clone(&inbox);
            let spawned = thread::Builder::new()
                .name(format!("health-worker-{index}"))
                .spawn(move || worker.run(&inbox));
            match spawned {
                Ok(handle) => server.workers.push(handle),
                // Dropping `server` stops and joins the workers spawned so far.
                Err(e) => return Err(ServerError::Thread(e)),
            }
        }
        let accept_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("health-accept".into())
            .spawn(move || accept_loop(&listener, &queue, &accept_shared));
        server.accept = Some(spawned.map_err(ServerError::Thread)?);
        log::info!("health server listening on http://{local_addr}");
        Ok(server)
    }

    /// The address the server listens on (with the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What the server has done so far.
    pub fn counters(&self) -> ServerCounters {
        self.shared.counters.snapshot()
    }

    /// Stops accepting, closes every connection (served or queued) and joins the threads.
    /// Returns within about [`POLL`] plus the time to wake the accept thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            // The accept thread blocks in accept(): one connection to ourselves wakes it, and
            // it sees the stop flag before doing anything with the socket.
            match TcpStream::connect_timeout(&wake_addr(self.local_addr), WAKE_TIMEOUT) {
                Ok(_wake) => join_quietly(accept),
                // Joining would block forever; the thread exits at its next connection.
                Err(e) => log::error!(
                    "health server: cannot wake the accept thread on {}: {e}; leaving it",
                    self.local_addr
                ),
            }
        }
        // Workers see the stop flag within POLL, or the closed queue once the accept thread
        // (the only sender) has gone.
        for worker in self.workers.drain(..) {
            join_quietly(worker);
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How often a blocked worker looks at the stop flag (and the granularity of its deadlines).
pub const POLL: Duration = Duration::from_millis(100);
/// Headers parsed per request; more is answered `431`.
const MAX_HEADERS: usize = 32;
/// Room kept before the body in the response buffer for the status line and headers, which are
/// formatted after the body (they carry its length) and sent with it in one write.
const HEAD_RESERVE: usize = 256;
/// After an error answer, how long and how much unread input is drained before closing, so the
/// close sends FIN rather than a reset that could discard the answer at the client.
const LINGER_TIME: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// What the accept thread sends when every worker and queue slot is taken.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 5\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
\r\n\
busy\n";

fn check_limits(limits: &ServerLimits) -> Result<(), ServerError> {
    let zero = [
        (limits.max_connections == 0, "max_connections"),
        (limits.max_request_bytes == 0, "max_request_bytes"),
        (limits.read_timeout.is_zero(), "read_timeout"),
        (limits.write_timeout.is_zero(), "write_timeout"),
        (limits.max_response_bytes == 0, "max_response_bytes"),
    ];
    match zero.iter().find(|(is_zero, _)| *is_zero) {
        Some((_, name)) => Err(ServerError::ZeroLimit(name)),
        None => Ok(()),
    }
}

/// Where `stop` connects to wake the accept thread: the bound address, with an unspecified IP
/// (listening on all interfaces) replaced by loopback.
fn wake_addr(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

fn join_quietly(handle: JoinHandle<()>) {
    if handle.join().is_err() {
        log::error!("health server: a server thread panicked");
    }
}

/// State shared by the server handle and its threads.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    served: AtomicU64,
    rejected: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ServerCounters {
        ServerCounters {
            served: self.served.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Accepts connections and hands them to the workers; never blocks on a client.
fn accept_loop(listener: &TcpListener, queue: &SyncSender<TcpStream>, shared: &Shared) {
    let mut errors = 0u64;
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return; // drops the wake-up connection, the listener and the queue's sender
        }
        match accepted {
            Ok((stream, _peer)) => match queue.try_send(stream) {
                Ok(()) => {}
                Err(TrySendError::Full(stream) | TrySendError::Disconnected(stream)) => {
                    bump(&shared.counters.refused);
                    refuse(stream);
                }
            },
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                // Logged sparsely: a persistent error (no file descriptors) repeats every pass.
                errors += 1;
                if errors.is_power_of_two() {
                    log::warn!("health server: accept failed ({errors} times so far): {e}");
                }
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
}

/// Answers `503` without ever waiting on the client: nonblocking, one pass, then close.
fn refuse(mut stream: TcpStream) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    // Read what has already arrived so that closing sends FIN, not a reset that could make the
    // client discard the answer; what arrives later is the client's problem.
    let mut scratch = [0u8; 1024];
    for _ in 0..4 {
        match stream.read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    // A fresh socket's send buffer is empty, so this short write completes or fails at once.
    let _ = stream.write(BUSY_RESPONSE);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Which answer a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Health,
    Metrics,
    /// `GET /`: the status page.
    Page,
    /// `GET /snapshot.jpg`; the query's byte range in the request.
    Snapshot(Query),
    /// `GET /stream.mjpeg`; the query's byte range in the request.
    Stream(Query),
    /// `GET /bins.csv`; the query's byte range in the request.
    Bins(Query),
    Error(Status),
}

/// Where a request's query string lies in the worker's request buffer (empty: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Query {
    start: usize,
    end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeadersTooLarge,
    Internal,
    /// No camera has the name asked for.
    NoCamera,
    /// The site writes no bins.
    NoBins,
    /// The view is off, has no frame yet, or every viewer place is taken.
    Unavailable,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::HeadersTooLarge => "431 Request Header Fields Too Large",
            Status::Internal => "500 Internal Server Error",
            Status::NoCamera | Status::NoBins => "404 Not Found",
            Status::Unavailable => "503 Service Unavailable",
        }
    }

    fn body(self) -> &'static [u8] {
        match self {
            Status::BadRequest => b"bad request\n",
            Status::NotFound => {
                b"not found: try /, /health, /metrics, /snapshot.jpg, /bins.csv\n"
            }
            Status::MethodNotAllowed => b"method not allowed: use GET\n",
            Status::HeadersTooLarge => b"request too large\n",
            Status::Internal => b"internal error\n",
            Status::NoCamera => b"no camera has that name\n",
            Status::NoBins => b"no traffic data bins: the site has no [bins] section\n",
            Status::Unavailable => {
                b"no view: [view] is off, the camera has no frame yet, or view.max_viewers are watching\n"
            }
        }
    }
}

/// What reading a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incoming {
    /// A complete request head. `unread` is set when the client sent more than the head.
    Request {
        reply: Reply,
        head_only: bool,
        unread: bool,
    },
    /// The client gets no answer: it closed, failed, missed the deadline, or we are stopping.
    Drop { timed_out: bool },
}

/// The outcome of waiting for a socket under a deadline.
enum Wait {
    Done(usize),
    Closed,
    TimedOut,
    Stopped,
}

/// One worker thread's buffers and handles.
struct Worker {
    limits: ServerLimits,
    source: Arc<dyn HealthSource>,
    shared: Arc<Shared>,
    request: Box<[u8]>,
    /// `HEAD_RESERVE` bytes for the head, then the body; never grown past its capacity.
    response: Vec<u8>,
}

impl Worker {
    fn new(limits: ServerLimits, source: Arc<dyn HealthSource>, shared: Arc<Shared>) -> Self {
        Worker {
            limits,
            source,
            shared,
            request: vec![0u8; limits.max_request_bytes].into_boxed_slice(),
            response: Vec::with_capacity(HEAD_RESERVE + limits.max_response_bytes),
        }
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    fn run(mut self, inbox: &Mutex<Receiver<TcpStream>>) {
        loop {
            // The lock is held only around `recv`, which cannot panic; recover it anyway. A
            // timed wait rather than `recv`: workers must end at stop even if the accept thread
            // (the queue's only sender) could not be woken and still holds the queue open.
            let next = inbox
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recv_timeout(POLL);
            match next {
                Ok(stream) if !self.stopping() => self.serve(stream),
                Ok(_queued_at_stop) => {}
                Err(_) if self.stopping() => return,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Serves one connection; the socket is closed when it goes out of scope on every path.
    fn serve(&mut self, mut stream: TcpStream) {
        // The answer goes out in one write; Nagle would only delay it.
        let _ = stream.set_nodelay(true);
        let (reply, head_only, unread) = match self.read_request(&mut stream) {
            Incoming::Request {
                reply,
                head_only,
                unread,
            } => (reply, head_only, unread),
            Incoming::Drop { timed_out } => {
                if timed_out {
                    bump(&self.shared.counters.timed_out);
                }
                return;
            }
        };
        if let Reply::Stream(query) = reply {
            let source = Arc::clone(&self.source);
            if let Some(view) = source.view() {
                return self.stream(&mut stream, view, query);
            }
        }
        if let Reply::Bins(query) = reply {
            let source = Arc::clone(&self.source);
            if let Some(bins) = source.bins() {
                return self.bins(&mut stream, bins, query, head_only);
            }
        }
        let (start, end, reply) = self.build_response(reply, head_only);
        let counters = &self.shared.counters;
        bump(match reply {
            Reply::Error(_) => &counters.rejected,
            _ => &counters.served,
        });
        let deadline = Instant::now() + self.limits.write_timeout;
        match send(
            &mut stream,
            &self.response[start..end],
            deadline,
            &self.shared.stop,
        ) {
            Wait::Done(_) => {}
            Wait::TimedOut => return bump(&counters.timed_out),
            Wait::Closed | Wait::Stopped => return,
        }
        let _ = stream.shutdown(Shutdown::Write);
        if unread || matches!(reply, Reply::Error(_)) {
            self.linger(&mut stream);
        }
    }

    /// Reads until the request head is complete, too large, malformed, or out of time.
    fn read_request(&mut self, stream: &mut TcpStream) -> Incoming {
        let deadline = Instant::now() + self.limits.read_timeout;
        let mut filled = 0;
        loop {
            if filled == self.request.len() {
                return Incoming::Request {
                    reply: Reply::Error(Status::HeadersTooLarge),
                    head_only: false,
                    unread: true,
                };
            }
            let stop = &self.shared.stop;
            match recv(stream, &mut self.request[filled..], deadline, stop) {
                Wait::Done(n) => filled += n,
                Wait::TimedOut => return Incoming::Drop { timed_out: true },
                Wait::Closed | Wait::Stopped => return Incoming::Drop { timed_out: false },
            }
            if let Some(incoming) = parse_request(&self.request[..filled]) {
                return incoming;
            }
        }
    }

    /// Formats the answer into the response buffer and returns the range to send, with the
    /// reply actually given (a body that fails or does not fit turns into `500`).
    fn build_response(&mut self, reply: Reply, head_only: bool) -> (usize, usize, Reply) {
        let limit = HEAD_RESERVE + self.limits.max_response_bytes;
        self.response.clear();
        self.response.extend_from_slice(&[0u8; HEAD_RESERVE]);
        let mut reply = reply;
        let query = match reply {
            Reply::Snapshot(q) | Reply::Stream(q) => {
                std::str::from_utf8(&self.request[q.start..q.end]).unwrap_or("")
            }
            _ => "",
        };
        let written = {
            let mut body = BoundedBody {
                buf: &mut self.response,
                limit,
            };
            write_body(&*self.source, reply, query, &mut body)
        };
        if let Err(status) = written {
            self.response.truncate(HEAD_RESERVE);
            self.response.extend_from_slice(status.body());
            reply = Reply::Error(status);
        }
        let body_len = self.response.len() - HEAD_RESERVE;
        let mut head = [0u8; HEAD_RESERVE];
        let head_len = format_head(&mut head, reply, body_len);
        let start = HEAD_RESERVE - head_len;
        self.response[start..HEAD_RESERVE].copy_from_slice(&head[..head_len]);
        let end = if head_only {
            HEAD_RESERVE
        } else {
            self.response.len()
        };
        (start, end, reply)
    }

    /// Serves `/stream.mjpeg` on this worker until the client goes, misses a write deadline
    /// or the server stops. Each part is copied into the worker's response buffer and sent
    /// within `write_timeout`; nothing is queued for a slow client.
    fn stream(&mut self, stream: &mut TcpStream, view: &Viewer, query: Query) {
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        let query_text = std::str::from_utf8(&self.request[query.start..query.end]).unwrap_or("");
        let request = view_request(view, query_text);
        let watching = request.and_then(|(camera, raw)| Ok((camera, raw, view.watch()?)));
        let (camera, raw, _watching) = match watching {
            Ok(w) => w,
            Err(e) => {
                bump(&counters.rejected);
                let status = view_status(&e);
                let (start, end, _) = self.build_response(Reply::Error(status), false);
                let deadline = Instant::now() + self.limits.write_timeout;
                let _ = send(
                    stream,
                    &self.response[start..end],
                    deadline,
                    &self.shared.stop,
                );
                let _ = stream.shutdown(Shutdown::Write);
                return self.linger(stream);
            }
        };
        bump(&counters.served);
        limit_send_buffer(stream, 2 * view.max_jpeg());
        const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: multipart/x-mixed-replace; boundary=frame\r\n\
Cache-Control: no-store\r\nConnection: close\r\n\r\n";
        let deadline = Instant::now() + self.limits.write_timeout;
        if !matches!(
            send(stream, HEAD, deadline, &self.shared.stop),
            Wait::Done(_)
        ) {
            return;
        }
        let limit = HEAD_RESERVE + self.limits.max_response_bytes;
        let mut seq = 0;
        while !self.stopping() {
            self.response.clear();
            self.response.extend_from_slice(&[0u8; HEAD_RESERVE]);
            let mut body = BoundedBody {
                buf: &mut self.response,
                limit: limit - 2,
            };
            match view.next_jpeg(camera, raw, seq, STREAM_WAIT, &mut body) {
                Ok(Some(next)) => seq = next,
                // No frame yet (camera offline?): ask again, unless the client has gone.
                Ok(None) if client_closed(stream) => return,
                Ok(None) => continue,
                Err(e) => {
                    log::warn!("health server: stream ended: {e}");
                    return;
                }
            }
            let len = self.response.len() - HEAD_RESERVE;
            self.response.extend_from_slice(b"\r\n");
            let mut head = [0u8; HEAD_RESERVE];
            let mut cursor: &mut [u8] = &mut head[..];
            let _ = write!(
                cursor,
                "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len}\r\n\r\n"
            );
            let head_len = HEAD_RESERVE - cursor.len();
            let start = HEAD_RESERVE - head_len;
            self.response[start..HEAD_RESERVE].copy_from_slice(&head[..head_len]);
            let deadline = Instant::now() + self.limits.write_timeout;
            match send(stream, &self.response[start..], deadline, &self.shared.stop) {
                Wait::Done(_) => {}
                Wait::TimedOut => {
                    bump(&counters.timed_out);
                    view.counters.dropped_slow.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Wait::Closed | Wait::Stopped => return,
            }
        }
    }

    /// Serves `/bins.csv`: a `400` naming the bad parameter, or the rows in range in chunks of
    /// the response buffer. A read error ends the stream without its last chunk, so the client
    /// sees it cut short rather than complete.
    fn bins(&mut self, stream: &mut TcpStream, bins: &BinStats, query: Query, head_only: bool) {
        let counters = &Arc::clone(&self.shared).counters;
        let mut message = heapless::String::<160>::new();
        let range = bins_range(&self.request[query.start..query.end], &mut message);
        let deadline = Instant::now() + self.limits.write_timeout;
        let range = match range {
            Some(range) => range,
            None => {
                bump(&counters.rejected);
                let mut head = [0u8; HEAD_RESERVE];
                let mut body = [0u8; 256];
                let mut cursor: &mut [u8] = &mut body[..];
                let _ = writeln!(cursor, "bad query: {message}");
                let body_len = 256 - cursor.len();
                let head_len = format_head(&mut head, Reply::Error(Status::BadRequest), body_len);
                let stop = &self.shared.stop;
                if matches!(
                    send(stream, &head[..head_len], deadline, stop),
                    Wait::Done(_)
                ) {
                    let _ = send(stream, &body[..body_len], deadline, stop);
                }
                let _ = stream.shutdown(Shutdown::Write);
                return self.linger(stream);
            }
        };
        bump(&counters.served);
        const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/csv; charset=utf-8\r\n\
Transfer-Encoding: chunked\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
        if !matches!(
            send(stream, HEAD, deadline, &self.shared.stop),
            Wait::Done(_)
        ) || head_only
        {
            return;
        }
        // The response buffer, used to its capacity (no growth): file reads, then chunks.
        let capacity = self.response.capacity();
        self.response.clear();
        self.response.resize(capacity, 0);
        let (read_buf, chunk_buf) = self.response.split_at_mut(BINS_READ.min(capacity / 2));
        let mut chunks = Chunked {
            stream,
            buf: chunk_buf,
            len: 0,
            timeout: self.limits.write_timeout,
            stop: &self.shared.stop,
            timed_out: false,
        };
        let copied = copy_range(bins.dir(), range, read_buf, &mut chunks);
        let ended = copied.and_then(|_| chunks.finish());
        if chunks.timed_out {
            bump(&counters.timed_out);
        }
        if let Err(e) = ended {
            log::debug!("health server: /bins.csv cut short: {e}");
            return;
        }
        let _ = stream.shutdown(Shutdown::Write);
    }

    /// Reads and discards what the client still sends, for a bounded time and amount, so that
    /// closing does not reset the connection under the answer just sent.
    fn linger(&mut self, stream: &mut TcpStream) {
        let deadline = Instant::now() + LINGER_TIME.min(self.limits.read_timeout);
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match recv(stream, &mut self.request, deadline, &self.shared.stop) {
                Wait::Done(n) => drained += n,
                Wait::Closed | Wait::TimedOut | Wait::Stopped => return,
            }
        }
    }
}

/// Parses what has arrived; `None` while the head is incomplete.
fn parse_request(bytes: &[u8]) -> Option<Incoming> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let error = |status| Incoming::Request {
        reply: Reply::Error(status),
        head_only: false,
        unread: true,
    };
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(head_len)) => {
            let method = request.method.unwrap_or("");
            let target = request.path.unwrap_or("");
            // Only the view's routes read a query; Prometheus and probes may still send one.
            // Without a query, an empty slice at the end of the target (still inside `bytes`).
            let (path, query) = target
                .split_once('?')
                .unwrap_or((target, &target[target.len()..]));
            // `query` borrows `bytes`, so its offset there is a difference of addresses.
            let start = query.as_ptr() as usize - bytes.as_ptr() as usize;
            let query = Query {
                start,
                end: start + query.len(),
            };
            let known = match path {
                "/health" => Some(Reply::Health),
                "/metrics" => Some(Reply::Metrics),
                "/" | "/index.html" => Some(Reply::Page),
                "/snapshot.jpg" => Some(Reply::Snapshot(query)),
                "/stream.mjpeg" => Some(Reply::Stream(query)),
                "/bins.csv" => Some(Reply::Bins(query)),
                _ => None,
            };
            let reply = match (known, method) {
                (None, _) => Reply::Error(Status::NotFound),
                (Some(reply), "GET" | "HEAD") => reply,
                (Some(_), _) => Reply::Error(Status::MethodNotAllowed),
            };
            Some(Incoming::Request {
                reply,
                head_only: method == "HEAD",
                unread: head_len < bytes.len(),
            })
        }
        Err(httparse::Error::TooManyHeaders) => Some(error(Status::HeadersTooLarge)),
        Err(_) => Some(error(Status::BadRequest)),
    }
}

/// Writes the body of `reply`; the error status to answer instead if the source failed,
/// panicked or overflowed the buffer, or the view had no such camera or no frame.
fn write_body(
    source: &dyn HealthSource,
    reply: Reply,
    query: &str,
    body: &mut BoundedBody<'_>,
) -> Result<(), Status> {
    let result = match reply {
        // A panic in the source must not take a worker (and so a slot of the pool) with it.
        Reply::Health => catch_unwind(AssertUnwindSafe(|| source.write_health(body))),
        Reply::Metrics => catch_unwind(AssertUnwindSafe(|| source.write_metrics(body))),
        Reply::Page => Ok(body.write_all(STATUS_PAGE.as_bytes())),
        Reply::Snapshot(_) | Reply::Stream(_) => {
            let Some(view) = source.view() else {
                return Err(Status::Unavailable);
            };
            let snap = catch_unwind(AssertUnwindSafe(|| {
                let (camera, raw) = view_request(view, query)?;
                view.snapshot(camera, raw, body)
            }));
            return match snap {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(view_status(&e)),
                Err(_panic) => {
                    log::error!("health server: the snapshot panicked");
                    Err(Status::Internal)
                }
            };
        }
        // Served by `Worker::bins` when the site has bins.
        Reply::Bins(_) => return Err(Status::NoBins),
        Reply::Error(status) => Ok(body.write_all(status.body())),
    };
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            log::warn!("health server: cannot write the {reply:?} body: {e}");
            Err(Status::Internal)
        }
        Err(_panic) => {
            log::error!("health server: the {reply:?} body panicked");
            Err(Status::Internal)
        }
    }
}

/// The answer for a view that could not be served.
fn view_status(e: &ViewError) -> Status {
    match e {
        ViewError::UnknownCamera(_) => Status::NoCamera,
        ViewError::NoFrame(_) | ViewError::TooManyViewers(_) => Status::Unavailable,
        _ => Status::Internal,
    }
}

/// The camera (`camera=NAME`, default the first) and `raw=1` of a view request.
fn view_request(view: &Viewer, query: &str) -> Result<(usize, bool), ViewError> {
    let mut name = heapless::String::<MAX_QUERY_VALUE>::new();
    let mut named = false;
    let mut raw = false;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "camera" => {
                named = true;
                if !url_decode(value, &mut name) {
                    return Err(ViewError::UnknownCamera(String::new()));
                }
            }
            "raw" => raw = matches!(value, "1" | "true" | "yes"),
            _ => {}
        }
    }
    let camera = view.camera(named.then_some(name.as_str()))?;
    Ok((camera, raw))
}

/// Bytes of the response buffer `/bins.csv` reads files through (at least a line).
const BINS_READ: usize = 16 * 1024;
const _: () = assert!(BINS_READ > MAX_LINE);

/// The `from` and `to` of a `/bins.csv` query; `None` with the reason for a `400` written
/// to `message` otherwise.
fn bins_range(query: &[u8], message: &mut heapless::String<160>) -> Option<TimeRange> {
    let mut fail = |text: std::fmt::Arguments<'_>| {
        let _ = std::fmt::Write::write_fmt(message, text);
        None
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return fail(format_args!("not UTF-8"));
    };
    let mut from = heapless::String::<MAX_QUERY_VALUE>::new();
    let mut to = heapless::String::<MAX_QUERY_VALUE>::new();
    let (mut has_from, mut has_to) = (false, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (into, seen) = match key {
            "from" => (&mut from, &mut has_from),
            "to" => (&mut to, &mut has_to),
            _ => {
                let key = key.get(..32).unwrap_or(key);
                return fail(format_args!("unknown parameter `{key}`: use from= and to="));
            }
        };
        if *seen {
            return fail(format_args!("{key}: given twice"));
        }
        if !url_decode(value, into) {
            return fail(format_args!("{key}: not a valid value"));
        }
        *seen = true;
    }
    let from = has_from.then_some(from.as_str());
    let to = has_to.then_some(to.as_str());
    match TimeRange::parse(from, to) {
        Ok(range) => Some(range),
        Err(e) => fail(format_args!("{e}")),
    }
}

/// Sends what is written as HTTP/1.1 chunks of up to the buffer's size, each within
/// `timeout`.
struct Chunked<'a> {
    stream: &'a mut TcpStream,
    buf: &'a mut [u8],
    len: usize,
    timeout: Duration,
    stop: &'a AtomicBool,
    timed_out: bool,
}

impl Chunked<'_> {
    fn send_chunk(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let mut size = [0u8; 20];
        let mut cursor: &mut [u8] = &mut size[..];
        let _ = write!(cursor, "{:x}\r\n", self.len);
        let size_len = 20 - cursor.len();
        let deadline = Instant::now() + self.timeout;
        let len = self.len;
        self.len = 0;
        for part in [&size[..size_len], &self.buf[..len], b"\r\n"] {
            match send(self.stream, part, deadline, self.stop) {
                Wait::Done(_) => {}
                Wait::TimedOut => {
                    self.timed_out = true;
                    return Err(io::Error::from(ErrorKind::TimedOut));
                }
                Wait::Closed | Wait::Stopped => return Err(io::Error::from(ErrorKind::BrokenPipe)),
            }
        }
        Ok(())
    }

    /// Sends the last chunk and the empty one that ends the body.
    fn finish(&mut self) -> io::Result<()> {
        self.send_chunk()?;
        let deadline = Instant::now() + self.timeout;
        match send(self.stream, b"0\r\n\r\n", deadline, self.stop) {
            Wait::Done(_) => Ok(()),
            _ => Err(io::Error::from(ErrorKind::BrokenPipe)),
        }
    }
}

impl Write for Chunked<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.len == self.buf.len() {
            self.send_chunk()?;
        }
        let n = data.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_chunk()
    }
}

/// Decodes `%XX` and `+` of a query value into `out`; `false` if it is malformed, not UTF-8
/// or too long.
fn url_decode<const N: usize>(value: &str, out: &mut heapless::String<N>) -> bool {
    let mut bytes = heapless::Vec::<u8, N>::new();
    let mut it = value.bytes();
    while let Some(b) = it.next() {
        let byte = match b {
            b'+' => b' ',
            b'%' => {
                let hex = [it.next(), it.next()];
                let digit = |d: Option<u8>| (d? as char).to_digit(16);
                match (digit(hex[0]), digit(hex[1])) {
                    (Some(h), Some(l)) => (h * 16 + l) as u8,
                    _ => return false,
                }
            }
            b => b,
        };
        if bytes.push(byte).is_err() {
            return false;
        }
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => out.push_str(text).is_ok(),
        Err(_) => false,
    }
}

/// Formats the status line and headers into `head`; returns the length used.
fn format_head(head: &mut [u8; HEAD_RESERVE], reply: Reply, body_len: usize) -> usize {
    let (status, content_type) = match reply {
        Reply::Health => ("200 OK", "application/json"),
        Reply::Metrics => ("200 OK", "text/plain; version=0.0.4; charset=utf-8"),
        Reply::Page => ("200 OK", "text/html; charset=utf-8"),
        Reply::Snapshot(_) | Reply::Stream(_) => ("200 OK", "image/jpeg"),
        Reply::Bins(_) => ("200 OK", "text/csv; charset=utf-8"),
        Reply::Error(status) => (status.line(), "text/plain; charset=utf-8"),
    };
    let allow = match reply {
        Reply::Error(Status::MethodNotAllowed) => "Allow: GET, HEAD\r\n",
        _ => "",
    };
    let mut cursor: &mut [u8] = &mut head[..];
    // The longest head is about 200 bytes, so this cannot run out of room; if it ever did the
    // client would get a truncated head and a closed connection, not a panic.
    let _ = write!(
        cursor,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {body_len}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n{allow}\r\n"
    );
    HEAD_RESERVE - cursor.len()
}

/// A writer into the response buffer that fails instead of growing it.
struct BoundedBody<'a> {
    buf: &'a mut Vec<u8>,
    limit: usize,
}

impl Write for BoundedBody<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.len() > self.limit - self.buf.len() {
            // A bare kind carries no allocated message.
            return Err(io::Error::from(ErrorKind::OutOfMemory));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether the peer closed `stream` (or it failed), without waiting and without consuming
/// anything it sent.
fn client_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let closed = match stream.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).is_err() || closed
}

/// Caps the kernel's send buffer of `stream` at `bytes` (at least [`STREAM_SNDBUF_MIN`]), so a
/// client that stops reading blocks our sends soon and meets the write timeout.
fn limit_send_buffer(stream: &TcpStream, bytes: usize) {
    use std::os::fd::AsRawFd;
    let size = bytes.max(STREAM_SNDBUF_MIN).min(i32::MAX as usize) as libc::c_int;
    // SAFETY: the fd is the open socket `stream` owns for the whole call; the option value is a
    // c_int on our stack and the length passed is its size, as SO_SNDBUF expects.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!("health server: SO_SNDBUF: {}", io::Error::last_os_error());
    }
}

/// The time left before `deadline`, in slices of at most [`POLL`] so the stop flag is seen.
fn next_slice(deadline: Instant, stop: &AtomicBool) -> Result<Duration, Wait> {
    if stop.load(Ordering::Relaxed) {
        return Err(Wait::Stopped);
    }
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left.min(POLL)),
        _ => Err(Wait::TimedOut),
    }
}

/// One read of at least one byte before `deadline`.
fn recv(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant, stop: &AtomicBool) -> Wait {
    loop {
        let slice = match next_slice(deadline, stop) {
            Ok(slice) => slice,
            Err(wait) => return wait,
        };
        if stream.set_read_timeout(Some(slice)).is_err() {
            return Wait::Closed;
        }
        match stream.read(buf) {
            Ok(0) => return Wait::Closed,
            Ok(n) => return Wait::Done(n),
            Err(e) if is_transient(&e) => {}
            Err(_) => return Wait::Closed,
        }
    }
}

/// Sends all of `data` before `deadline`.
fn send(stream: &mut TcpStream, mut data: &[u8], deadline: Instant, stop: &AtomicBool) -> Wait {
    let total = data.len();
    while !data.is_empty() {
        let slice = match next_slice(deadline, stop) {
            Ok(slice) => slice,
            Err(wait) => return wait,
        };
        if stream.set_write_timeout(Some(slice)).is_err() {
            return Wait::Closed;
        }
        match stream.write(data) {
            Ok(0) => return Wait::Closed,
            Ok(n) => data = &data[n..],
            Err(e) if is_transient(&e) => {}
            Err(_) => return Wait::Closed,
        }
    }
    Wait::Done(total)
}

/// A socket timeout (one slice passed) or a signal: try again while the deadline allows.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &[u8]) -> Option<Incoming> {
        parse_request(bytes)
    }

    fn answer(reply: Reply) -> Option<Incoming> {
        Some(Incoming::Request {
            reply,
            head_only: false,
            unread: false,
        })
    }

    #[test]
    fn routes_known_paths_and_methods() {
        assert_eq!(
            parsed(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
            answer(Reply::Health)
        );
        assert_eq!(
            parsed(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            answer(Reply::Metrics)
        );
        assert_eq!(
            parsed(b"HEAD /health HTTP/1.1\r\n\r\n"),
            Some(Incoming::Request {
                reply: Reply::Health,
                head_only: true,
                unread: false
            })
        );
        assert_eq!(
            parsed(b"GET /nope HTTP/1.1\r\n\r\n"),
            answer(Reply::Error(Status::NotFound))
        );
        assert_eq!(
            parsed(b"POST /health HTTP/1.1\r\n\r\n"),
            answer(Reply::Error(Status::MethodNotAllowed))
        );
        assert_eq!(
            parsed(b"GET /health HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
            Some(Incoming::Request {
                reply: Reply::Health,
                head_only: false,
                unread: true
            })
        );
    }

    #[test]
    fn routes_the_view_and_finds_its_query() {
        assert_eq!(parsed(b"GET / HTTP/1.1\r\n\r\n"), answer(Reply::Page));
        let request = b"GET /snapshot.jpg?camera=north%20gate&raw=1 HTTP/1.1\r\n\r\n";
        let Some(Incoming::Request {
            reply: Reply::Snapshot(q),
            ..
        }) = parsed(request)
        else {
            panic!("not a snapshot");
        };
        assert_eq!(&request[q.start..q.end], b"camera=north%20gate&raw=1");
        let request = b"GET /stream.mjpeg HTTP/1.1\r\n\r\n";
        let Some(Incoming::Request {
            reply: Reply::Stream(q),
            ..
        }) = parsed(request)
        else {
            panic!("not a stream");
        };
        assert_eq!(q.start, q.end);
        let mut name = heapless::String::<8>::new();
        assert!(url_decode("a%20b+c", &mut name));
        assert_eq!(name.as_str(), "a b c");
        for bad in ["%2", "%zz", "123456789", "%ff"] {
            let mut name = heapless::String::<8>::new();
            assert!(!url_decode(bad, &mut name), "{bad}");
        }
    }

    #[test]
    fn routes_bins_and_reads_its_range_or_says_what_is_wrong() {
        let request = b"GET /bins.csv?from=2026-12-07&to=2026-12-07T12%3A00%3A00Z HTTP/1.1\r\n\r\n";
        let Some(Incoming::Request {
            reply: Reply::Bins(q),
            ..
        }) = parsed(request)
        else {
            panic!("not bins");
        };
        let mut message = heapless::String::new();
        let range = bins_range(&request[q.start..q.end], &mut message).unwrap();
        assert_eq!(
            (range.from, range.to),
            (1_796_601_600, 1_796_601_600 + 12 * 3600)
        );
        for (query, expected) in [
            (
                &b"from=2026-13-01"[..],
                "from: `2026-13-01` is not a UTC time",
            ),
            (b"to=", "to: `` is not a UTC time"),
            (b"from=2026-12-07&from=x", "from: given twice"),
            (b"limit=5", "unknown parameter `limit`: use from= and to="),
            (b"to=%", "to: not a valid value"),
            (b"\xff", "not UTF-8"),
        ] {
            let mut message = heapless::String::new();
            assert!(bins_range(query, &mut message).is_none(), "{expected}");
            assert!(message.starts_with(expected), "{message}");
        }
    }

    #[test]
    fn incomplete_heads_wait_and_bad_ones_are_rejected() {
        assert_eq!(parsed(b"GET /health HTTP/1.1\r\nHost:"), None);
        assert_eq!(parsed(b""), None);
        let bad = Some(Incoming::Request {
            reply: Reply::Error(Status::BadRequest),
            head_only: false,
            unread: true,
        });
        assert_eq!(parsed(b"\x00\x01\x02garbage\r\n\r\n"), bad);
        assert_eq!(parsed(b"GET /health HTTP/9.9\r\n\r\n"), bad);
        assert_eq!(parsed(b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n"), bad);
        let mut many = b"GET /health HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parsed(&many),
            Some(Incoming::Request {
                reply: Reply::Error(Status::HeadersTooLarge),
                head_only: false,
                unread: true
            })
        );
    }

    #[test]
    fn the_longest_head_fits_its_reserve() {
        let mut head = [0u8; HEAD_RESERVE];
        for reply in [
            Reply::Metrics,
            Reply::Error(Status::HeadersTooLarge),
            Reply::Error(Status::MethodNotAllowed),
        ] {
            let len = format_head(&mut head, reply, usize::MAX);
            assert!(len < HEAD_RESERVE, "{reply:?}: {len} bytes");
            assert!(head[..len].ends_with(b"\r\n\r\n"), "{reply:?} truncated");
        }
        let len = format_head(&mut head, Reply::Error(Status::MethodNotAllowed), 3);
        let text = std::str::from_utf8(&head[..len]).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 3\r\n"), "{text}");
    }

    #[test]
    fn bounded_body_fails_instead_of_growing() {
        let mut buf = Vec::with_capacity(8);
        let capacity = buf.capacity();
        let mut body = BoundedBody {
            buf: &mut buf,
            limit: 8,
        };
        body.write_all(b"12345").unwrap();
        let err = body.write_all(b"6789").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutOfMemory);
        body.write_all(b"678").unwrap();
        assert_eq!(buf, b"12345678");
        assert_eq!(buf.capacity(), capacity);
    }

    /// Writes `size` bytes of metrics, or panics, to drive the worker's error paths.
    struct Source {
        metrics_size: usize,
        panic: bool,
    }

    impl HealthSource for Source {
        fn write_health(&self, out: &mut dyn Write) -> io::Result<()> {
            assert!(!self.panic, "source panicked on purpose");
            out.write_all(b"{\"ok\":true}")
        }
        fn write_metrics(&self, out: &mut dyn Write) -> io::Result<()> {
            for _ in 0..self.metrics_size {
                out.write_all(b"x")?;
            }
            Ok(())
        }
    }

    fn worker(source: Source, max_response_bytes: usize) -> Worker {
        let limits = ServerLimits {
            max_response_bytes,
            ..ServerLimits::default()
        };
        Worker::new(limits, Arc::new(source), Arc::default())
    }

    fn built(worker: &mut Worker, reply: Reply, head_only: bool) -> (String, Reply) {
        let (start, end, reply) = worker.build_response(reply, head_only);
        let text = String::from_utf8_lossy(&worker.response[start..end]).into_owned();
        (text, reply)
    }

    #[test]
    fn responses_carry_length_and_reuse_the_buffer() {
        let mut w = worker(
            Source {
                metrics_size: 100,
                panic: false,
            },
            100,
        );
        let capacity = w.response.capacity();
        let (text, reply) = built(&mut w, Reply::Health, false);
        assert_eq!(reply, Reply::Health);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.contains("Content-Type: application/json\r\n"),
            "{text}"
        );
        assert!(text.ends_with("Content-Length: 11\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{\"ok\":true}"), "{text}");
        // Exactly at the limit is fine; HEAD gets the same length and no body.
        let (text, reply) = built(&mut w, Reply::Metrics, true);
        assert_eq!(reply, Reply::Metrics);
        assert!(text.contains("Content-Length: 100\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        assert_eq!(w.response.capacity(), capacity);
    }

    #[test]
    fn oversized_failing_or_panicking_bodies_become_500() {
        let mut w = worker(
            Source {
                metrics_size: 101,
                panic: true,
            },
            100,
        );
        let capacity = w.response.capacity();
        for reply in [Reply::Metrics, Reply::Health] {
            let (text, given) = built(&mut w, reply, false);
            assert_eq!(given, Reply::Error(Status::Internal), "{reply:?}");
            assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
            assert!(text.ends_with("\r\n\r\ninternal error\n"), "{text}");
            assert_eq!(w.response.capacity(), capacity, "{reply:?} grew the buffer");
        }
    }

    #[test]
    fn zero_limits_are_named() {
        let limits = ServerLimits {
            read_timeout: Duration::ZERO,
            ..ServerLimits::default()
        };
        let source = Arc::new(Source {
            metrics_size: 0,
            panic: false,
        });
        let err = HealthServer::start("127.0.0.1:0".parse().unwrap(), limits, source).unwrap_err();
        assert!(
            matches!(err, ServerError::ZeroLimit("read_timeout")),
            "{err:?}"
        );
        assert!(check_limits(&ServerLimits::default()).is_ok());
    }

    #[test]
    fn wakes_unspecified_addresses_on_loopback() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(wake_addr(any), "127.0.0.1:8080".parse().unwrap());
        let any6: SocketAddr = "[::]:9".parse().unwrap();
        assert_eq!(wake_addr(any6), "[::1]:9".parse().unwrap());
        let lan: SocketAddr = "192.168.1.5:80".parse().unwrap();
        assert_eq!(wake_addr(lan), lan);
    }
}
