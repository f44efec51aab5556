//! A Motion JPEG over HTTP server on loopback for camera tests. It serves the frames of
//! `$EDGEWATCH_CLIPS_DIR/traffic.mjpeg` (640x360, 480 JPEGs) as one
//! `multipart/x-mixed-replace` response per connection, and misbehaves on request: slow,
//! stalling, truncating, oversized parts, closing, `404`, not multipart, hanging up.
//!
//! ```ignore
//! let server = MjpegServer::start(Behaviour::stream().fps(30.0));
//! let url = server.url(); // http://127.0.0.1:<port>/video
//! // ... point an HttpMjpegSource at `url` ...
//! drop(server); // stops the thread and closes every socket
//! ```
//!
//! - One thread accepts and serves connections one at a time; a newer connection waits in the
//!   backlog until the current one ends. A client that hangs up is noticed within a few
//!   milliseconds, even while the server paces or stalls.
//! - Connection `i` (counted from start, or from the last [`MjpegServer::set_script`]) follows
//!   `script[min(i, script.len() - 1)]`.
//! - On every connection, part `k` is clip frame `k % 480`, so a client's sequence number tells
//!   which frame it got ([`clip`] gives the JPEGs).
//! - Frames are read once per process ([`clip`]) and part heads are formatted into a stack
//!   buffer: after [`MjpegServer::start`] the serving thread allocates nothing, per frame or
//!   per connection (the accept log is preallocated). A test that counts every allocation of
//!   its process can still run the server in a child process: see [`serve_from_env`] and
//!   [`ChildServer`].
//! - Dropping the server sets a stop flag, wakes the accept with a connection to itself and
//!   joins the thread.
//!
//! [`BlackHole`] is the opposite: a loopback address where a connect hangs until it times out,
//! like a camera whose host silently drops packets.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Frames in the clip.
pub const CLIP_FRAMES: usize = 480;
/// Size of the clip's frames.
pub const CLIP_WIDTH: u32 = 640;
/// Size of the clip's frames.
pub const CLIP_HEIGHT: u32 = 360;
/// The boundary the server declares (unless a behaviour says otherwise).
pub const BOUNDARY: &str = "edgewatchframe";
/// Connections whose accept time is recorded; later ones are only counted.
const ACCEPT_LOG: usize = 4096;
/// How often a waiting server looks at the stop flag and for a client that left.
const POLL: Duration = Duration::from_millis(2);

/// The JPEG frames of `traffic.mjpeg`, loaded once per process.
pub fn clip() -> &'static [Vec<u8>] {
    static CLIP: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CLIP.get_or_init(|| {
        let path = crate::util::clips_dir().join("traffic.mjpeg");
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let frames = split_jpegs(&data);
        assert_eq!(frames.len(), CLIP_FRAMES, "{}", path.display());
        frames
    })
}

/// Splits concatenated JPEGs at each EOI (FF D9) that is followed by an SOI (FF D8) or the end.
fn split_jpegs(data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut start = 0;
    let mut i = 2;
    while i + 1 < data.len() {
        if data[i] == 0xFF && data[i + 1] == 0xD9 {
            let next = &data[i + 2..];
            if next.is_empty() || next.starts_with(&[0xFF, 0xD8]) {
                frames.push(data[start..i + 2].to_vec());
                start = i + 2;
                i = start + 2;
                continue;
            }
        }
        i += 1;
    }
    frames
}

/// How the server answers a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `200` with a `multipart/x-mixed-replace` stream of frames.
    Stream,
    /// `404 Not Found`.
    NotFound,
    /// `200` with one `image/jpeg`, then close.
    NotMultipart,
    /// Accept, then close without reading or answering.
    HangUp,
}

/// What the server does on one connection. Build with [`Behaviour::stream`] (or
/// [`Behaviour::not_found`], [`Behaviour::not_multipart`], [`Behaviour::hang_up`]) and the
/// methods below.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    /// The answer.
    pub answer: Answer,
    /// Parts carry `Content-Length`.
    pub content_length: bool,
    /// Frames per second; 0 sends as fast as the client reads.
    pub fps: f64,
    /// Each part is written in pieces of this many bytes with this pause between them.
    pub trickle: Option<(usize, Duration)>,
    /// After this many frames: a closing delimiter, then close.
    pub close_after: Option<u64>,
    /// After this many frames: the head and half the body of one more part, then close.
    pub truncate_after: Option<u64>,
    /// Part `k` of the connection is replaced by `n` bytes of junk (0xAB).
    pub oversized: Option<(u64, usize)>,
    /// After this many frames, nothing is sent for this long.
    pub stall: Option<(u64, Duration)>,
    /// The boundary declared and used.
    pub boundary: &'static str,
}

impl Behaviour {
    /// Frames with `Content-Length`, as fast as the client reads.
    pub fn stream() -> Behaviour {
        Behaviour {
            answer: Answer::Stream,
            content_length: true,
            fps: 0.0,
            trickle: None,
            close_after: None,
            truncate_after: None,
            oversized: None,
            stall: None,
            boundary: BOUNDARY,
        }
    }

    /// Answers `404 Not Found`.
    pub fn not_found() -> Behaviour {
        Behaviour {
            answer: Answer::NotFound,
            ..Behaviour::stream()
        }
    }

    /// Answers `200` with a single `image/jpeg`.
    pub fn not_multipart() -> Behaviour {
        Behaviour {
            answer: Answer::NotMultipart,
            ..Behaviour::stream()
        }
    }

    /// Closes every connection at once (the accept time is still recorded).
    pub fn hang_up() -> Behaviour {
        Behaviour {
            answer: Answer::HangUp,
            ..Behaviour::stream()
        }
    }

    /// Parts without `Content-Length`: the client must find the next boundary.
    pub fn without_length(self) -> Behaviour {
        Behaviour {
            content_length: false,
            ..self
        }
    }

    /// Paces frames at `fps`.
    pub fn fps(self, fps: f64) -> Behaviour {
        Behaviour { fps, ..self }
    }

    /// Writes each part in pieces of `bytes` with `pause` between them.
    pub fn trickle(self, bytes: usize, pause: Duration) -> Behaviour {
        Behaviour {
            trickle: Some((bytes.max(1), pause)),
            ..self
        }
    }

    /// Ends the stream properly after `frames` frames and closes.
    pub fn close_after(self, frames: u64) -> Behaviour {
        Behaviour {
            close_after: Some(frames),
            ..self
        }
    }

    /// After `frames` frames sends half a part and closes.
    pub fn truncate_after(self, frames: u64) -> Behaviour {
        Behaviour {
            truncate_after: Some(frames),
            ..self
        }
    }

    /// Replaces part `index` with `bytes` bytes of junk.
    pub fn oversized_at(self, index: u64, bytes: usize) -> Behaviour {
        Behaviour {
            oversized: Some((index, bytes)),
            ..self
        }
    }

    /// Sends nothing for `pause` after `frames` frames.
    pub fn stall_after(self, frames: u64, pause: Duration) -> Behaviour {
        Behaviour {
            stall: Some((frames, pause)),
            ..self
        }
    }

    /// Declares and uses `boundary`.
    pub fn boundary(self, boundary: &'static str) -> Behaviour {
        Behaviour { boundary, ..self }
    }
}

/// The running server; dropping it stops it.
#[derive(Debug)]
pub struct MjpegServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    script: Mutex<Script>,
    connections: AtomicU64,
    /// A connection is open (accepted and not yet closed).
    serving: AtomicBool,
    frames_sent: AtomicU64,
    accepted_at: Mutex<Vec<Instant>>,
}

#[derive(Debug)]
struct Script {
    behaviours: Vec<Behaviour>,
    /// Connection count when the script was set.
    base: u64,
}

impl MjpegServer {
    /// Starts a server on an ephemeral loopback port where every connection follows
    /// `behaviour`.
    pub fn start(behaviour: Behaviour) -> MjpegServer {
        MjpegServer::start_script(vec![behaviour])
    }

    /// Starts a server on an ephemeral loopback port; connection `i` follows
    /// `script[min(i, len - 1)]`.
    pub fn start_script(script: Vec<Behaviour>) -> MjpegServer {
        MjpegServer::start_at("127.0.0.1:0".parse().unwrap(), script)
    }

    /// Starts a server on `addr` (e.g. the address of a server that was dropped, to bring a
    /// camera back on the same port).
    pub fn start_at(addr: SocketAddr, script: Vec<Behaviour>) -> MjpegServer {
        assert!(!script.is_empty(), "a script needs at least one behaviour");
        let frames = clip();
        let junk_len = script
            .iter()
            .filter_map(|b| b.oversized.map(|(_, n)| n))
            .max()
            .unwrap_or(0);
        // Behaviours set later may not need more junk than this.
        let junk = vec![0xAB; junk_len.max(1 << 20)];
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            script: Mutex::new(Script {
                behaviours: script,
                base: 0,
            }),
            connections: AtomicU64::new(0),
            serving: AtomicBool::new(false),
            frames_sent: AtomicU64::new(0),
            accepted_at: Mutex::new(Vec::with_capacity(ACCEPT_LOG)),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("mjpeg-server".into())
            .spawn(move || accept_loop(&listener, &thread_shared, frames, &junk))
            .expect("spawn the server thread");
        MjpegServer {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The stream's URL.
    pub fn url(&self) -> String {
        format!("http://{}/video", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(SeqCst)
    }

    /// Whether a connection is open on the server's side right now.
    pub fn serving(&self) -> bool {
        self.shared.serving.load(SeqCst)
    }

    /// Whole frames written so far, on every connection (junk parts not counted).
    pub fn frames_sent(&self) -> u64 {
        self.shared.frames_sent.load(SeqCst)
    }

    /// When each connection was accepted (the first 4096).
    pub fn accepted_at(&self) -> Vec<Instant> {
        lock(&self.shared.accepted_at).clone()
    }

    /// Replaces the script for the connections accepted from now on (counted from 0 again).
    pub fn set_script(&self, script: Vec<Behaviour>) {
        assert!(!script.is_empty(), "a script needs at least one behaviour");
        let mut current = lock(&self.shared.script);
        current.behaviours = script;
        current.base = self.connections();
    }
}

impl Drop for MjpegServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        // The thread may be blocked in accept(): a connection wakes it; it then sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept_loop(listener: &TcpListener, shared: &Shared, frames: &[Vec<u8>], junk: &[u8]) {
    while !shared.stop.load(SeqCst) {
        let Ok((stream, _)) = listener.accept() else {
            thread::sleep(POLL);
            continue;
        };
        if shared.stop.load(SeqCst) {
            return;
        }
        let index = shared.connections.fetch_add(1, SeqCst);
        {
            let mut log = lock(&shared.accepted_at);
            if log.len() < log.capacity() {
                log.push(Instant::now());
            }
        }
        let behaviour = {
            let script = lock(&shared.script);
            let i = (index - script.base.min(index)) as usize;
            script.behaviours[i.min(script.behaviours.len() - 1)]
        };
        shared.serving.store(true, SeqCst);
        let mut conn = Conn { stream, shared };
        // Any error means the client left or the server stops: either way, close.
        let _ = conn.serve(&behaviour, frames, junk);
        drop(conn);
        shared.serving.store(false, SeqCst);
    }
}

/// One client connection, non-blocking so the server can watch the stop flag and the client.
struct Conn<'a> {
    stream: TcpStream,
    shared: &'a Shared,
}

/// Why serving a connection ended early.
fn gone() -> io::Error {
    io::Error::from(ErrorKind::ConnectionAborted)
}

impl Conn<'_> {
    fn serve(&mut self, b: &Behaviour, frames: &[Vec<u8>], junk: &[u8]) -> io::Result<()> {
        self.stream.set_nodelay(true)?;
        self.stream.set_nonblocking(true)?;
        if b.answer == Answer::HangUp {
            return Ok(());
        }
        self.read_request()?;
        let mut head = [0u8; 256];
        match b.answer {
            Answer::NotFound => {
                let body = b"not found\n";
                let n = fmt(
                    &mut head,
                    format_args!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                ),
                );
                self.send_all(&[&head[..n], body], None)
            }
            Answer::NotMultipart => {
                let n = fmt(
                    &mut head,
                    format_args!(
                        "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                        frames[0].len()
                    ),
                );
                self.send_all(&[&head[..n], &frames[0]], None)
            }
            Answer::Stream | Answer::HangUp => {
                let n = fmt(
                    &mut head,
                    format_args!(
                    "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={}\r\n\
                     Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
                    b.boundary
                ),
                );
                self.send_all(&[&head[..n]], None)?;
                self.stream_frames(b, frames, junk)
            }
        }
    }

    fn stream_frames(&mut self, b: &Behaviour, frames: &[Vec<u8>], junk: &[u8]) -> io::Result<()> {
        let interval = (b.fps > 0.0).then(|| Duration::from_secs_f64(1.0 / b.fps));
        let mut due = Instant::now();
        let mut head = [0u8; 256];
        for k in 0u64.. {
            if self.shared.stop.load(SeqCst) {
                return Err(gone());
            }
            if b.close_after == Some(k) {
                let n = fmt(&mut head, format_args!("--{}--\r\n", b.boundary));
                return self.send_all(&[&head[..n]], None);
            }
            if let Some((at, pause)) = b.stall {
                if at == k {
                    self.pause(pause)?;
                    due = Instant::now();
                }
            }
            if let Some(interval) = interval {
                self.pause(due.saturating_duration_since(Instant::now()))?;
                // A server that fell behind does not burst to catch up.
                due = (due + interval).max(Instant::now());
            }
            let oversized = b.oversized.filter(|&(at, _)| at == k);
            let body: &[u8] = match oversized {
                Some((_, n)) => &junk[..n.min(junk.len())],
                None => &frames[k as usize % frames.len()],
            };
            let mut n = fmt(
                &mut head,
                format_args!("--{}\r\nContent-Type: image/jpeg\r\n", b.boundary),
            );
            if b.content_length {
                n += fmt(
                    &mut head[n..],
                    format_args!("Content-Length: {}\r\n", body.len()),
                );
            }
            n += fmt(&mut head[n..], format_args!("\r\n"));
            if b.truncate_after == Some(k) {
                return self.send_all(&[&head[..n], &body[..body.len() / 2]], b.trickle);
            }
            self.send_all(&[&head[..n], body, b"\r\n"], b.trickle)?;
            if oversized.is_none() {
                self.shared.frames_sent.fetch_add(1, SeqCst);
            }
        }
        Ok(())
    }

    /// Reads the request head (up to a blank line), bounded in size and time.
    fn read_request(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        let mut len = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            if len == buf.len() || Instant::now() > deadline {
                return Err(gone());
            }
            match self.stream.read(&mut buf[len..]) {
                Ok(0) => return Err(gone()),
                Ok(n) => len += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.idle()?,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes `pieces` in order, in chunks of `trickle.0` bytes with pauses if given.
    fn send_all(&mut self, pieces: &[&[u8]], trickle: Option<(usize, Duration)>) -> io::Result<()> {
        for piece in pieces {
            let step = trickle.map_or(usize::MAX, |(n, _)| n);
            for chunk in piece.chunks(step.min(piece.len().max(1))) {
                self.send(chunk)?;
                if let Some((_, pause)) = trickle {
                    self.pause(pause)?;
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.stream.write(data) {
                Ok(0) => return Err(gone()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.check_client()?;
                    self.idle()?;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits `d`, ending early if the server stops or the client leaves.
    fn pause(&mut self, d: Duration) -> io::Result<()> {
        let until = Instant::now() + d;
        loop {
            self.check_client()?;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            if self.shared.stop.load(SeqCst) {
                return Err(gone());
            }
            thread::sleep(left.min(POLL));
        }
    }

    /// One poll interval of waiting for the socket (without reading from it: the request
    /// may still be arriving).
    fn idle(&mut self) -> io::Result<()> {
        if self.shared.stop.load(SeqCst) {
            return Err(gone());
        }
        thread::sleep(POLL);
        Ok(())
    }

    /// Fails if the client closed its end; reads and ignores anything it sent.
    fn check_client(&mut self) -> io::Result<()> {
        let mut scratch = [0u8; 512];
        match self.stream.read(&mut scratch) {
            Ok(0) => Err(gone()),
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Formats into `buf` without allocating; returns the length written (truncated if full).
fn fmt(buf: &mut [u8], args: std::fmt::Arguments<'_>) -> usize {
    let room = buf.len();
    let mut cursor: &mut [u8] = buf;
    let _ = cursor.write_fmt(args);
    room - cursor.len()
}

/// Environment variable that makes [`serve_from_env`] serve: the frames per second.
pub const SERVE_ENV: &str = "EDGEWATCH_MJPEG_SERVE_FPS";

/// If [`SERVE_ENV`] is set: serves [`Behaviour::stream`] at that many frames per second,
/// prints `listening on <addr>` on stdout, serves until stdin closes and returns `true` (the
/// caller should then exit). Otherwise returns `false` at once. Call it first thing in the
/// `main` of a `harness = false` test, or in a test of its own that
/// [`ChildServer::spawn_with_args`] selects; [`ChildServer`] starts the executable this way.
pub fn serve_from_env() -> bool {
    let Some(fps) = std::env::var(SERVE_ENV).ok() else {
        return false;
    };
    let fps: f64 = fps.parse().expect("EDGEWATCH_MJPEG_SERVE_FPS is a number");
    let server = MjpegServer::start(Behaviour::stream().fps(fps));
    println!("listening on {}", server.addr());
    io::stdout().flush().unwrap();
    // Returns at EOF: the parent closed stdin (or died).
    let _ = io::copy(&mut io::stdin(), &mut io::sink());
    drop(server);
    true
}

/// A server in a child process (the current executable, which must call [`serve_from_env`]
/// first thing), so that the parent's allocation counters see none of its work. Dropping it
/// closes the child's stdin and waits for it to exit.
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl ChildServer {
    /// Starts the current executable (a `harness = false` test whose `main` calls
    /// [`serve_from_env`]) serving frames at `fps`, and waits until it listens.
    pub fn spawn(fps: f64) -> ChildServer {
        ChildServer::spawn_with_args(fps, &[])
    }

    /// Like [`ChildServer::spawn`], passing `args`: for a libtest executable, the name of a
    /// test that calls [`serve_from_env`], with `--exact` and `--nocapture`.
    pub fn spawn_with_args(fps: f64, args: &[&str]) -> ChildServer {
        let exe = std::env::current_exe().expect("the current executable");
        let mut child = Command::new(exe)
            .args(args)
            .env(SERVE_ENV, fps.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server child");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            let n = stdout
                .read_line(&mut line)
                .expect("read the child's output");
            assert!(n > 0, "the server child exited without listening");
            if let Some(addr) = line.trim().strip_prefix("listening on ") {
                break addr.parse().expect("an address");
            }
        };
        ChildServer {
            child,
            stdin,
            stdout,
            addr,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The stream's URL.
    pub fn url(&self) -> String {
        format!("http://{}/video", self.addr)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // Read what it still prints, so it never fails on a closed pipe.
        let _ = io::copy(&mut self.stdout, &mut io::sink());
        let _ = self.child.wait();
    }
}

/// A loopback address whose connects hang for their whole timeout, as when a camera's host
/// silently drops SYNs (an unrouted address cannot be relied on: a sandbox or a site may
/// answer, or refuse at once). A listener that never accepts has its backlog set to 0 and
/// filled with a connection of its own; Linux then drops every further SYN while the accept
/// queue is full. [`BlackHole::start`] checks that a connect really times out. Dropping it
/// closes the listener and the filler.
#[derive(Debug)]
pub struct BlackHole {
    listener: TcpListener,
    /// The connections that fill the accept queue.
    fillers: Vec<TcpStream>,
    addr: SocketAddr,
}

impl BlackHole {
    /// Listens on an ephemeral loopback port, fills the backlog and checks the hole.
    pub fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        // SAFETY: `listener` owns the descriptor and outlives the call; listening again on a
        // listening socket only changes its backlog.
        let rc = unsafe { libc::listen(listener.as_raw_fd(), 0) };
        assert_eq!(rc, 0, "listen(0): {}", io::Error::last_os_error());
        let probe = Duration::from_millis(250);
        let mut fillers = Vec::new();
        loop {
            match TcpStream::connect_timeout(&addr, probe) {
                Ok(stream) => fillers.push(stream),
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => break,
                Err(e) => panic!("connecting to the black hole at {addr}: {e}"),
            }
            assert!(
                fillers.len() <= 16,
                "{addr}: the backlog never filled; connects do not hang"
            );
        }
        BlackHole {
            listener,
            fillers,
            addr,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A stream URL there.
    pub fn url(&self) -> String {
        format!("http://{}/video", self.addr)
    }
}
