//! The health HTTP server against real sockets on 127.0.0.1: routes and headers, oversized and
//! hostile requests, a slowloris client, floods of connections (threads and RSS stay bounded)
//! and a prompt stop.
//!
//! The tests take one lock so that only one server runs at a time: the thread census counts the
//! server's threads by name, and a loaded CI machine should not also run five servers at once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use edgewatch::health::memory::rss_bytes;
use edgewatch::health::server::{HealthServer, HealthSource, ServerError, ServerLimits};

/// Counts the allocations made on the server's threads while armed. The server's threads are
/// recognised by their kernel thread ids, collected by name from `/proc/self/task`: the server
/// code knows nothing of this test, and the harness's own threads may allocate at any time.
struct ServerThreadAllocations;

static ARMED: AtomicBool = AtomicBool::new(false);
static SERVER_TIDS: [AtomicI32; 16] = [const { AtomicI32::new(0) }; 16];
static SERVER_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count_if_server_thread() {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    if SERVER_TIDS.iter().any(|t| t.load(Ordering::Relaxed) == tid) {
        SERVER_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; counting touches only atomics and never allocates.
unsafe impl GlobalAlloc for ServerThreadAllocations {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_if_server_thread();
        // SAFETY: the caller's guarantees for `layout` are passed on as they are.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_if_server_thread();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_if_server_thread();
        // SAFETY: `ptr` was allocated by `System` through this wrapper with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through this wrapper with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: ServerThreadAllocations = ServerThreadAllocations;

static ONE_SERVER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_SERVER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fixed JSON body and a metrics body that counts the requests for it.
#[derive(Debug, Default)]
struct FakeSource {
    metrics_calls: AtomicU64,
}

const HEALTH_JSON: &str = r#"{"status":"ok","frames":42}"#;

impl HealthSource for FakeSource {
    fn write_health(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(HEALTH_JSON.as_bytes())
    }

    fn write_metrics(&self, out: &mut dyn Write) -> io::Result<()> {
        let n = self.metrics_calls.fetch_add(1, Ordering::Relaxed) + 1;
        write!(
            out,
            "# TYPE edgewatch_metrics_requests_total counter\nedgewatch_metrics_requests_total {n}\n"
        )
    }
}

fn start(limits: ServerLimits) -> (HealthServer, Arc<FakeSource>) {
    let source = Arc::new(FakeSource::default());
    let server = HealthServer::start("127.0.0.1:0".parse().unwrap(), limits, source.clone())
        .expect("start the health server");
    (server, source)
}

/// Limits short enough for tests, generous enough for a loaded 2-core CI machine.
fn test_limits() -> ServerLimits {
    ServerLimits {
        max_connections: 4,
        max_request_bytes: 4096,
        read_timeout: Duration::from_millis(1000),
        write_timeout: Duration::from_millis(1000),
        max_response_bytes: 16 * 1024,
    }
}

/// The longest any client here waits for the server to answer or close.
const CLIENT_PATIENCE: Duration = Duration::from_secs(15);

#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads until the server closes. `Err` if nothing came back (closed or reset without an
/// answer); panics if the server neither answers nor closes within [`CLIENT_PATIENCE`].
fn read_response(stream: &mut TcpStream) -> Result<Response, io::Error> {
    stream.set_read_timeout(Some(CLIENT_PATIENCE)).unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("server neither answered nor closed within {CLIENT_PATIENCE:?}")
            }
            // A reset after a complete answer still leaves the answer.
            Err(e) if raw.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("no complete head in {:?}", String::from_utf8_lossy(&raw)),
        ));
    };
    let head = String::from_utf8(raw[..split].to_vec()).expect("ASCII head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    Ok(Response {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    })
}

/// Sends `request` on a new connection and reads the answer.
fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(request).expect("send request");
    read_response(&mut stream).expect("an answer")
}

fn get(addr: SocketAddr, path: &str) -> Response {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

/// Asks for `/health` until a worker is free to answer (503 means all are busy).
fn get_health_eventually(addr: SocketAddr, within: Duration) -> Response {
    let start = Instant::now();
    loop {
        let attempt = TcpStream::connect(addr).and_then(|mut s| {
            s.write_all(b"GET /health HTTP/1.1\r\n\r\n")?;
            read_response(&mut s)
        });
        match attempt {
            Ok(response) if response.status == 200 => return response,
            Ok(response) => assert_eq!(response.status, 503, "{}", response.head),
            Err(_refused_and_reset) => {}
        }
        assert!(
            start.elapsed() < within,
            "no 200 for /health within {within:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Kernel thread ids of the server's threads (named `health-...`).
fn server_tids() -> Vec<i32> {
    let mut tids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let Ok(task) = task else { continue };
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("health-") {
            tids.extend(
                task.file_name()
                    .to_str()
                    .and_then(|t| t.parse::<i32>().ok()),
            );
        }
    }
    tids
}

/// Threads of this process whose name starts with `health-` (the server's), and all threads.
fn thread_census() -> (usize, usize) {
    let mut server = 0;
    let mut all = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let Ok(task) = task else { continue };
        all += 1;
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("health-") {
            server += 1;
        }
    }
    (server, all)
}

/// The server's thread count once every new thread has named itself: a thread takes its name
/// from the inside, shortly after `spawn` returns.
fn settled_server_threads(expected: usize) -> usize {
    let start = Instant::now();
    loop {
        let (server, _) = thread_census();
        if server == expected || start.elapsed() > Duration::from_secs(5) {
            return server;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn assert_body_length(response: &Response) {
    let length: usize = response
        .header("Content-Length")
        .expect("Content-Length")
        .parse()
        .expect("numeric Content-Length");
    assert_eq!(length, response.body.len(), "{}", response.head);
}

#[test]
fn serves_health_and_metrics_and_rejects_the_rest() {
    let _serial = serial();
    let (server, source) = start(test_limits());
    let addr = server.local_addr();

    let health = get(addr, "/health");
    assert_eq!(health.status, 200, "{}", health.head);
    assert_eq!(health.header("Content-Type"), Some("application/json"));
    assert_eq!(health.header("Connection"), Some("close"));
    assert_eq!(health.body, HEALTH_JSON.as_bytes());
    assert_body_length(&health);

    for round in 1..=2 {
        let metrics = get(addr, "/metrics");
        assert_eq!(metrics.status, 200, "{}", metrics.head);
        assert_eq!(
            metrics.header("Content-Type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = String::from_utf8(metrics.body.clone()).unwrap();
        assert!(
            text.ends_with(&format!("edgewatch_metrics_requests_total {round}\n")),
            "{text}"
        );
        assert_body_length(&metrics);
    }
    assert_eq!(source.metrics_calls.load(Ordering::Relaxed), 2);

    let head = exchange(addr, b"HEAD /health HTTP/1.1\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("Content-Length"),
        Some(HEALTH_JSON.len().to_string().as_str())
    );
    assert!(head.body.is_empty(), "HEAD got a body");

    let missing = get(addr, "/nope");
    assert_eq!(missing.status, 404, "{}", missing.head);
    assert_body_length(&missing);

    let post = exchange(
        addr,
        b"POST /health HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(post.status, 405, "{}", post.head);
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
    assert_body_length(&post);

    let garbage = exchange(addr, b"\x16\x03\x01\x02\x00garbage\r\n\r\n");
    assert_eq!(garbage.status, 400, "{}", garbage.head);
    assert_body_length(&garbage);

    let counters = server.counters();
    assert_eq!(counters.served, 4, "{counters:?}");
    assert_eq!(counters.rejected, 3, "{counters:?}");
    assert_eq!(counters.refused, 0, "{counters:?}");
    server.stop();
}

#[test]
fn oversized_requests_get_431_and_the_server_goes_on() {
    let _serial = serial();
    let (server, _source) = start(test_limits());
    let addr = server.local_addr();

    // 64 KiB of headers, far past the 4 KiB request limit.
    let mut request = b"GET /health HTTP/1.1\r\nX-Fill: ".to_vec();
    request.resize(64 * 1024, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_write_timeout(Some(CLIENT_PATIENCE)).unwrap();
    // The server may close before taking it all; the answer is what matters.
    let _ = stream.write_all(&request);
    let response = read_response(&mut stream).expect("an answer to the oversized request");
    assert_eq!(response.status, 431, "{}", response.head);
    assert_eq!(response.header("Connection"), Some("close"));
    assert_body_length(&response);
    // read_response only returns once the server closed the connection.

    // More headers than the parser's fixed array, though small in bytes.
    let mut many = b"GET /health HTTP/1.1\r\n".to_vec();
    for i in 0..40 {
        many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(exchange(addr, &many).status, 431);

    let next = get(addr, "/health");
    assert_eq!(next.status, 200, "{}", next.head);
    assert_eq!(next.body, HEALTH_JSON.as_bytes());
    server.stop();
}

#[test]
fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let _serial = serial();
    let limits = ServerLimits {
        max_connections: 2,
        read_timeout: Duration::from_millis(500),
        ..test_limits()
    };
    let (server, _source) = start(limits);
    let addr = server.local_addr();

    let slowloris = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        // The client's read doubles as its pause between bytes: it returns early if the server
        // closes or answers.
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let trickle = b"GET /health HTTP/1.1\r\nX-Slow: ";
        let mut sent = 0usize;
        let mut reply = [0u8; 256];
        loop {
            let byte = trickle.get(sent).copied().unwrap_or(b'a');
            if stream.write_all(&[byte]).is_err() {
                return (started.elapsed(), sent, 0);
            }
            sent += 1;
            match stream.read(&mut reply) {
                Ok(n) => return (started.elapsed(), sent, n),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return (started.elapsed(), sent, 0),
            }
            assert!(
                started.elapsed() < CLIENT_PATIENCE,
                "slowloris never cut off"
            );
        }
    });

    // While the slowloris holds one worker, the other answers everyone else.
    thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        let response = get(addr, "/health");
        assert_eq!(response.status, 200, "{}", response.head);
    }

    let (after, sent, answered) = slowloris.join().unwrap();
    eprintln!("slowloris cut off after {after:?}, {sent} bytes sent");
    assert_eq!(
        answered, 0,
        "the slowloris got an answer instead of a close"
    );
    assert!(
        after >= Duration::from_millis(400),
        "cut off after {after:?}, before its deadline"
    );
    assert!(server.counters().timed_out >= 1, "{:?}", server.counters());
    assert_eq!(get(addr, "/health").status, 200);
    server.stop();
}

/// Opens 200 connections at once: a third send a request, a third half a request, a third
/// nothing. Returns how many got 200, 503, and no answer at all.
fn flood(addr: SocketAddr) -> (usize, usize, usize) {
    let mut clients = Vec::with_capacity(200);
    for i in 0..200 {
        let mut stream = TcpStream::connect(addr).expect("connect (the backlog holds them)");
        // A refused client may already be reset, so a failed send is part of the test.
        let _ = match i % 3 {
            0 => stream.write_all(b"GET /health HTTP/1.1\r\n\r\n"),
            1 => stream.write_all(b"GET /health HTTP/1.1\r\nHost:"),
            _ => Ok(()),
        };
        clients.push(stream);
    }
    // Meanwhile a fresh client is answered once the idle ones are cut off.
    let fresh = get_health_eventually(addr, CLIENT_PATIENCE);
    assert_eq!(fresh.body, HEALTH_JSON.as_bytes());

    let (mut ok, mut busy, mut dropped) = (0, 0, 0);
    for (i, mut stream) in clients.into_iter().enumerate() {
        match read_response(&mut stream) {
            Ok(r) if r.status == 200 => {
                assert_eq!(i % 3, 0, "client {i} sent no complete request");
                ok += 1;
            }
            Ok(r) => {
                assert_eq!(r.status, 503, "client {i}: {}", r.head);
                assert_eq!(r.header("Connection"), Some("close"));
                busy += 1;
            }
            Err(_) => dropped += 1,
        }
    }
    (ok, busy, dropped)
}

#[test]
fn floods_of_connections_stay_bounded_in_threads_and_memory() {
    let _serial = serial();
    let limits = test_limits();
    let (_, threads_before) = thread_census();
    let (server, _source) = start(limits);
    let addr = server.local_addr();
    let expected_threads = limits.max_connections + 1;

    let mut baseline_rss = 0;
    for round in 0..5 {
        let (ok, busy, dropped) = flood(addr);
        let (server_threads, all_threads) = thread_census();
        let rss = rss_bytes().expect("/proc/self/statm");
        eprintln!(
            "round {round}: {ok} ok, {busy} busy, {dropped} dropped; \
             {server_threads} server threads ({all_threads} in all, {threads_before} before); \
             RSS {} KiB",
            rss / 1024
        );
        assert_eq!(ok + busy + dropped, 200);
        assert!(
            busy > 0,
            "200 connections on 4 workers and 4 queue slots, none refused"
        );
        // Counted by name: the test harness starts and ends threads of its own meanwhile.
        assert_eq!(server_threads, expected_threads);
        // The first round warms up stacks, buffers and the allocator; later rounds must not grow.
        if round == 0 {
            baseline_rss = rss;
        } else {
            let growth = rss.saturating_sub(baseline_rss);
            assert!(
                growth <= 2 * 1024 * 1024,
                "RSS grew by {} KiB over round 0",
                growth / 1024
            );
        }
    }
    let counters = server.counters();
    eprintln!("{counters:?}");
    assert!(counters.timed_out > 0, "idle clients were never cut off");
    server.stop();
    assert_eq!(thread_census().0, 0, "server threads left after stop");
}

#[test]
fn stop_closes_connections_and_joins_promptly() {
    let _serial = serial();
    // Deadlines far longer than the test: only stop() can end these connections in time.
    let limits = ServerLimits {
        max_connections: 2,
        read_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(60),
        ..test_limits()
    };
    let (server, _source) = start(limits);
    let addr = server.local_addr();
    assert_eq!(settled_server_threads(3), 3);
    assert_eq!(get(addr, "/health").status, 200);

    // Two idle clients hold both workers, a third waits in the queue.
    // The pauses let each worker take its client: a burst could briefly fill the queue (the
    // worker that just answered is not yet waiting on it) and the last client would get 503.
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| {
            let stream = TcpStream::connect(addr).unwrap();
            thread::sleep(Duration::from_millis(100));
            stream
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(server.counters().refused, 0, "{:?}", server.counters());

    let started = Instant::now();
    server.stop();
    let took = started.elapsed();
    eprintln!("stop took {took:?}");
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert_eq!(thread_census().0, 0, "server threads left after stop");

    for mut stream in idle {
        // Closed without an answer: EOF or reset, never a hang.
        let answer = read_response(&mut stream);
        assert!(answer.is_err(), "{answer:?}");
    }
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after stop"
    );
}

#[test]
fn a_taken_address_is_a_bind_error_naming_it() {
    let _serial = serial();
    let (server, source) = start(test_limits());
    let addr = server.local_addr();
    let err = HealthServer::start(addr, test_limits(), source).unwrap_err();
    assert!(
        matches!(err, ServerError::Bind { addr: a, .. } if a == addr),
        "{err:?}"
    );
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    // The failed start left the running server alone.
    assert_eq!(get(addr, "/health").status, 200);
    server.stop();
}

#[test]
fn bodies_over_the_response_limit_are_500_not_growth() {
    #[derive(Debug)]
    struct Chatty;
    impl HealthSource for Chatty {
        fn write_health(&self, out: &mut dyn Write) -> io::Result<()> {
            out.write_all(b"{}")
        }
        fn write_metrics(&self, out: &mut dyn Write) -> io::Result<()> {
            for i in 0..100_000 {
                writeln!(out, "edgewatch_series{{n=\"{i}\"}} 1")?;
            }
            Ok(())
        }
    }
    let _serial = serial();
    let server = HealthServer::start(
        "127.0.0.1:0".parse().unwrap(),
        test_limits(),
        Arc::new(Chatty),
    )
    .unwrap();
    let addr = server.local_addr();
    let response = get(addr, "/metrics");
    assert_eq!(response.status, 500, "{}", response.head);
    assert_body_length(&response);
    assert_eq!(get(addr, "/health").status, 200);
    server.stop();
}

/// Sends `request` and reads the answer with stack buffers only, so that this client adds
/// nothing to the allocation count; returns the status code (0 if there was no answer).
fn status_without_allocating(addr: SocketAddr, request: &[u8]) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(CLIENT_PATIENCE));
    let _ = stream.write_all(request);
    let mut answer = [0u8; 512];
    let mut filled = 0;
    while filled < answer.len() {
        match stream.read(&mut answer[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    let code = answer.get(9..12).unwrap_or(b"000");
    code.iter().fold(0u16, |acc, d| {
        acc * 10 + u16::from(d.wrapping_sub(b'0') % 10)
    })
}

#[test]
fn serving_allocates_nothing_per_request() {
    let _serial = serial();
    let limits = test_limits();
    let (server, _source) = start(limits);
    let addr = server.local_addr();
    assert_eq!(
        settled_server_threads(limits.max_connections + 1),
        limits.max_connections + 1
    );
    let requests: [(&[u8], u16); 6] = [
        (b"GET /health HTTP/1.1\r\n\r\n", 200),
        (b"GET /metrics HTTP/1.1\r\n\r\n", 200),
        (b"HEAD /metrics HTTP/1.1\r\n\r\n", 200),
        (b"GET /nope HTTP/1.1\r\n\r\n", 404),
        (b"DELETE /health HTTP/1.1\r\n\r\n", 405),
        (b"\x00\x01 garbage\r\n\r\n", 400),
    ];
    // Warm-up: the first pass of each worker may set up thread-locals in std. Which worker
    // takes a connection is the scheduler's choice, so first hold one half-sent request per
    // worker open at once: every worker then serves at least one.
    for _ in 0..2 {
        let mut held: Vec<std::net::TcpStream> = (0..limits.max_connections)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
                s
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(200));
        for s in &mut held {
            s.write_all(b"\r\n").unwrap();
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
        }
    }
    for _ in 0..limits.max_connections {
        for (request, status) in requests {
            assert_eq!(status_without_allocating(addr, request), status);
        }
    }
    let tids = server_tids();
    assert_eq!(tids.len(), limits.max_connections + 1, "{tids:?}");
    for (slot, tid) in SERVER_TIDS.iter().zip(tids) {
        slot.store(tid, Ordering::Relaxed);
    }
    ARMED.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        for (request, status) in requests {
            assert_eq!(status_without_allocating(addr, request), status);
        }
    }
    ARMED.store(false, Ordering::SeqCst);
    for slot in &SERVER_TIDS {
        slot.store(0, Ordering::Relaxed);
    }
    let allocations = SERVER_ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(
        allocations, 0,
        "server threads allocated while serving 120 requests"
    );
    server.stop();
}
