//! `HttpMjpegSource` against the loopback MJPEG server of `tests/util/mjpeg_server.rs`: frames
//! decode, only the newest is kept, slow and stalling servers, truncated and oversized parts,
//! a camera that goes away and comes back (with backoff), a camera whose host drops SYNs
//! (connecting never holds up the caller), wrong answers, bad URLs, a thousand reconnects
//! without a leak, and the binary running on an HTTP camera.
//!
//! Time bounds are generous: they only catch a source that hangs or never recovers.

mod util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use edgewatch::capture::mjpeg_http::{HttpMjpegSource, CONNECT_THREAD};
use edgewatch::capture::{CaptureError, CaptureStats, FrameSource, Next, PixelFormat};
use edgewatch::clock::MonotonicClock;
use edgewatch::config::CameraConfig;
use util::mjpeg_server::{
    clip, serve_from_env, Behaviour, BlackHole, ChildServer, MjpegServer, CLIP_FRAMES, CLIP_HEIGHT,
    CLIP_WIDTH,
};
use util::thread_alloc::{allocations_in, ThreadCountingAllocator};

#[global_allocator]
static ALLOCATOR: ThreadCountingAllocator = ThreadCountingAllocator;

/// Tests share the process with the leak test, which counts file descriptors: it runs alone.
static FD_COUNTING: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    FD_COUNTING.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FD_COUNTING.write().unwrap_or_else(|e| e.into_inner())
}

/// How long any one expectation may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A camera for `url` with the clip's size; `extra` is more TOML (`key = value` lines).
fn camera(url: &str, extra: &str) -> CameraConfig {
    let text = format!(
        "name = \"ipcam\"\nsource = \"http\"\nurl = \"{url}\"\nwidth = {CLIP_WIDTH}\n\
         height = {CLIP_HEIGHT}\n{extra}"
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn open(cam: &CameraConfig) -> HttpMjpegSource {
    HttpMjpegSource::open(cam, Arc::new(MonotonicClock::new())).expect("the source opens")
}

/// A frame copied out of the source.
struct Got {
    seq: u64,
    data: Vec<u8>,
}

/// What one call returned.
enum Outcome {
    Frame(Got),
    Waiting,
}

fn poll(src: &mut HttpMjpegSource) -> Outcome {
    match src.next_frame().expect("a live camera never errors") {
        Next::Frame(f) => Outcome::Frame(Got {
            seq: f.seq,
            data: f.data.to_vec(),
        }),
        Next::Waiting => Outcome::Waiting,
        Next::End => panic!("a live camera never ends"),
    }
}

/// Polls until `n` frames came; counts the `Waiting` answers in between.
fn frames(src: &mut HttpMjpegSource, n: usize) -> (Vec<Got>, u64) {
    let deadline = Instant::now() + PATIENCE;
    let (mut got, mut waits) = (Vec::new(), 0);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} frames in {PATIENCE:?}: {:?}",
            got.len(),
            src.stats()
        );
        match poll(src) {
            Outcome::Frame(f) => got.push(f),
            Outcome::Waiting => {
                waits += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    (got, waits)
}

/// Polls until `done(stats)`, returning every stats snapshot seen on the way.
fn until(
    src: &mut HttpMjpegSource,
    what: &str,
    done: impl Fn(&CaptureStats) -> bool,
) -> Vec<CaptureStats> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let _ = poll(src);
        let stats = src.stats();
        seen.push(stats);
        if done(&stats) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "not {what} in {PATIENCE:?}: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Full-range BT.601 luma of clip frame `index`, decoded by the `image` crate.
fn reference_luma(index: usize) -> Vec<u8> {
    let rgb = image::load_from_memory_with_format(&clip()[index], image::ImageFormat::Jpeg)
        .expect("the image crate decodes the clip")
        .to_rgb8();
    rgb.pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(f32::from);
            (0.299 * r + 0.587 * g + 0.114 * b)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.len() as f64
}

#[test]
fn streams_decoded_frames_with_and_without_content_length() {
    let _serial = shared();
    for with_length in [true, false] {
        let behaviour = Behaviour::stream().fps(60.0);
        let behaviour = if with_length {
            behaviour
        } else {
            behaviour.without_length()
        };
        let server = MjpegServer::start(behaviour);
        let mut src = open(&camera(&server.url(), ""));
        let format = src.format();
        assert_eq!(
            (format.width, format.height, format.pixel_format),
            (CLIP_WIDTH, CLIP_HEIGHT, PixelFormat::Nv12)
        );
        let (got, _) = frames(&mut src, 6);
        let (w, h) = (CLIP_WIDTH as usize, CLIP_HEIGHT as usize);
        for pair in got.windows(2) {
            assert!(pair[1].seq > pair[0].seq, "sequence numbers grow");
        }
        for f in &got {
            assert_eq!(f.data.len(), w * h * 3 / 2);
        }
        // One connection, nothing corrupt: a frame's sequence number is its part number.
        let last = got.last().unwrap();
        let index = last.seq as usize % CLIP_FRAMES;
        let diff = mean_abs_diff(&last.data[..w * h], &reference_luma(index));
        let next = (index + 1) % CLIP_FRAMES;
        let neighbour = mean_abs_diff(&last.data[..w * h], &reference_luma(next));
        println!(
            "length {with_length}: frame {index} luma differs from image's by {diff:.3} on \
             average (from frame {next}'s by {neighbour:.3})"
        );
        // Decoders may round differently; neighbouring frames of the clip differ by about 1.
        assert!(diff < 0.75, "frame {index}: mean luma difference {diff}");
        assert!(neighbour > diff + 0.25, "the comparison tells frames apart");
        let stats = src.stats();
        assert!(stats.online, "{stats:?}");
        assert_eq!(
            (stats.delivered, stats.corrupt, stats.reconnects),
            (6, 0, 0),
            "{stats:?}"
        );
        assert_eq!(server.connections(), 1);
    }
}

#[test]
fn a_slow_consumer_gets_the_newest_frame_and_the_rest_are_dropped() {
    let _serial = shared();
    let server = MjpegServer::start(Behaviour::stream().fps(200.0));
    let mut src = open(&camera(&server.url(), ""));
    frames(&mut src, 1);
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(100));
        let sent = server.frames_sent();
        let (got, _) = frames(&mut src, 1);
        // Everything sent before the call was readable: the frame is one of the newest, and
        // its pixels are those of part `seq` (clip frame `seq % 480`), not an older part's.
        let seq = got[0].seq;
        assert!(
            seq + 3 >= sent,
            "frame {seq} delivered when {sent} had been sent"
        );
        let luma = &got[0].data[..(CLIP_WIDTH * CLIP_HEIGHT) as usize];
        let diff = mean_abs_diff(luma, &reference_luma(seq as usize % CLIP_FRAMES));
        assert!(
            diff < 0.75,
            "frame {seq} has another frame's pixels: {diff}"
        );
    }
    let stats = src.stats();
    println!(
        "slow consumer: {stats:?}, server sent {}",
        server.frames_sent()
    );
    assert_eq!(stats.delivered, 7);
    assert!(stats.dropped > stats.delivered, "{stats:?}");
    assert_eq!((stats.corrupt, stats.reconnects), (0, 0), "{stats:?}");
}

#[test]
fn a_slow_server_still_delivers_within_the_timeout() {
    let _serial = shared();
    // At least 40 pieces 5 ms apart: every frame takes longer than one call may wait.
    let server = MjpegServer::start(Behaviour::stream().trickle(256, Duration::from_millis(5)));
    let mut src = open(&camera(&server.url(), "timeout_ms = 5000"));
    let started = Instant::now();
    let (got, waits) = frames(&mut src, 3);
    let stats = src.stats();
    println!(
        "trickle: 3 frames in {:?}, {waits} waits, {stats:?}",
        started.elapsed()
    );
    assert!(
        waits >= 2,
        "partial parts are kept across calls: {waits} waits"
    );
    assert_eq!(got[2].seq, 2, "no part lost");
    assert_eq!((stats.corrupt, stats.reconnects), (0, 0), "{stats:?}");
    assert!(stats.online);
    assert_eq!(server.connections(), 1);
}

#[test]
fn a_stall_past_the_timeout_takes_the_camera_offline_and_back() {
    let _serial = shared();
    let server = MjpegServer::start_script(vec![
        Behaviour::stream()
            .fps(50.0)
            .stall_after(5, Duration::from_secs(10)),
        Behaviour::stream().fps(50.0),
    ]);
    let cam = camera(
        &server.url(),
        "timeout_ms = 300\nreconnect_min_ms = 20\nreconnect_max_ms = 100",
    );
    let mut src = open(&cam);
    frames(&mut src, 2);
    let started = Instant::now();
    let seen = until(&mut src, "reconnected", |s| s.reconnects == 1 && s.online);
    let took = started.elapsed();
    assert!(seen.iter().any(|s| !s.online), "went offline: {seen:?}");
    frames(&mut src, 3);
    let stats = src.stats();
    println!("stall: back after {took:?}, {stats:?}");
    assert!(
        took >= Duration::from_millis(300),
        "not before the timeout: {took:?}"
    );
    assert_eq!((stats.reconnects, stats.corrupt), (1, 0), "{stats:?}");
    assert_eq!(server.connections(), 2);
}

#[test]
fn a_truncated_part_is_a_fault_and_frames_resume() {
    let _serial = shared();
    for with_length in [true, false] {
        let first = Behaviour::stream().fps(50.0).truncate_after(4);
        let (first, then) = match with_length {
            true => (first, Behaviour::stream().fps(50.0)),
            false => (
                first.without_length(),
                Behaviour::stream().fps(50.0).without_length(),
            ),
        };
        let server = MjpegServer::start_script(vec![first, then]);
        let cam = camera(
            &server.url(),
            "reconnect_min_ms = 10\nreconnect_max_ms = 50",
        );
        let mut src = open(&cam);
        let seen = until(&mut src, "reconnected", |s| s.reconnects == 1 && s.online);
        assert!(seen.iter().any(|s| !s.online), "went offline: {seen:?}");
        let before = src.stats().delivered;
        frames(&mut src, 3);
        let stats = src.stats();
        println!("truncated (length {with_length}): {stats:?}");
        assert!(before >= 1 && stats.delivered >= before + 3, "{stats:?}");
        assert_eq!((stats.reconnects, stats.corrupt), (1, 0), "{stats:?}");
        assert_eq!(server.connections(), 2);
    }
}

#[test]
fn an_oversized_part_is_skipped_without_reconnecting() {
    let _serial = shared();
    for with_length in [true, false] {
        let behaviour = Behaviour::stream().fps(50.0).oversized_at(3, 300_000);
        let behaviour = if with_length {
            behaviour
        } else {
            behaviour.without_length()
        };
        let server = MjpegServer::start(behaviour);
        let mut src = open(&camera(&server.url(), "max_frame_kib = 64"));
        let (got, _) = frames(&mut src, 8);
        let stats = src.stats();
        println!("oversized (length {with_length}): {stats:?}");
        assert_eq!((stats.corrupt, stats.reconnects), (1, 0), "{stats:?}");
        assert!(stats.online);
        assert!(got.iter().all(|f| f.data.len() == 640 * 360 * 3 / 2));
        assert_eq!(server.connections(), 1);
    }
}

#[test]
fn a_camera_that_goes_away_is_retried_with_growing_waits_up_to_the_maximum() {
    let _serial = shared();
    let (min, max) = (40u64, 320u64);
    let server = MjpegServer::start_script(vec![
        Behaviour::stream().fps(50.0).close_after(5),
        Behaviour::hang_up(),
    ]);
    let cam = camera(
        &server.url(),
        &format!("reconnect_min_ms = {min}\nreconnect_max_ms = {max}"),
    );
    let mut src = open(&cam);
    until(&mut src, "offline after the stream ended", |s| {
        !s.online && s.delivered > 0
    });
    // Hung up on every attempt: offline, waiting, with attempts further and further apart.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(2000) {
        assert!(matches!(poll(&mut src), Outcome::Waiting));
        assert!(!src.stats().online);
        std::thread::sleep(Duration::from_millis(1));
    }
    let attempts = server.accepted_at();
    let gaps: Vec<u64> = attempts[1..]
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect();
    // The stream's end waited `min`; each hang-up doubles the wait, up to `max`.
    let expected: Vec<u64> = (1..=gaps.len() as u32)
        .map(|i| (min << i).min(max))
        .collect();
    println!("gaps between attempts: {gaps:?} ms, backoff {expected:?} ms");
    assert!(gaps.len() >= 5, "attempts kept coming: {gaps:?}");
    // Accept times jitter with scheduling; the sum only by the first one's delay.
    let span = (*attempts.last().unwrap() - attempts[1]).as_millis() as u64;
    assert!(
        span + 30 >= expected.iter().sum::<u64>(),
        "never early: {gaps:?} vs {expected:?}"
    );
    assert!(gaps[2] > gaps[0] + 100, "waits grow: {gaps:?}");
    // Doubling past the maximum would wait 640 ms.
    assert!(
        gaps.iter().all(|&g| g < 2 * max - 40),
        "waits stay at most {max} ms: {gaps:?}"
    );
    // Back: the next attempt streams again.
    server.set_script(vec![Behaviour::stream().fps(50.0)]);
    until(&mut src, "back online", |s| s.online);
    frames(&mut src, 3);
    let stats = src.stats();
    assert_eq!(stats.reconnects, 1, "{stats:?}");
}

#[test]
fn a_camera_down_at_start_up_or_refusing_is_retried_on_the_same_port() {
    let _serial = shared();
    // A port nobody listens on, for now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/video");
    let cam = camera(&url, "reconnect_min_ms = 10\nreconnect_max_ms = 40");
    let mut src = open(&cam);
    assert!(
        !src.stats().online,
        "down at start-up is not an error, just offline"
    );
    for _ in 0..20 {
        assert!(matches!(poll(&mut src), Outcome::Waiting));
        std::thread::sleep(Duration::from_millis(5));
    }
    let server = MjpegServer::start_at(addr, vec![Behaviour::stream().fps(50.0)]);
    frames(&mut src, 3);
    assert_eq!(
        src.stats().reconnects,
        0,
        "the first connection is not a reconnect"
    );
    drop(server);
    until(&mut src, "offline", |s| !s.online);
    for _ in 0..20 {
        assert!(matches!(poll(&mut src), Outcome::Waiting));
        std::thread::sleep(Duration::from_millis(5));
    }
    let server = MjpegServer::start_at(addr, vec![Behaviour::stream().fps(50.0)]);
    frames(&mut src, 3);
    let stats = src.stats();
    assert!(stats.online);
    assert_eq!(stats.reconnects, 1, "{stats:?}");
    drop(server);
}

#[test]
fn wrong_answers_keep_the_camera_offline_and_retrying() {
    let _serial = shared();
    for behaviour in [Behaviour::not_found(), Behaviour::not_multipart()] {
        let server = MjpegServer::start(behaviour);
        let cam = camera(
            &server.url(),
            "reconnect_min_ms = 10\nreconnect_max_ms = 40",
        );
        let mut src = open(&cam);
        let watch = Instant::now();
        while watch.elapsed() < Duration::from_millis(500) || server.connections() < 3 {
            assert!(
                watch.elapsed() < PATIENCE,
                "{:?} was not retried",
                behaviour.answer
            );
            assert!(matches!(poll(&mut src), Outcome::Waiting));
            assert!(!src.stats().online);
            std::thread::sleep(Duration::from_millis(2));
        }
        let stats = src.stats();
        println!(
            "{:?}: {} attempts, {stats:?}",
            behaviour.answer,
            server.connections()
        );
        assert_eq!((stats.delivered, stats.reconnects), (0, 0), "{stats:?}");
    }
}

#[test]
fn bad_urls_are_camera_errors_that_say_what_is_wrong() {
    let _serial = shared();
    for (url, why) in [
        ("https://cam.local/video", "http://"),
        ("rtsp://cam.local/video", "http://"),
        ("http:///video", "no host"),
        ("http://cam.local:99999/video", "port"),
        ("http://cam.local:http/video", "port"),
        ("http://admin:secret@cam.local/video", "passwords"),
        ("http://cam.local/my video", "path"),
    ] {
        let cam = camera(url, "");
        match HttpMjpegSource::open(&cam, Arc::new(MonotonicClock::new())) {
            Err(CaptureError::Camera { camera, message }) => {
                assert_eq!(camera, "ipcam");
                assert!(
                    message.contains(url) && message.contains(why),
                    "{url}: {message}"
                );
            }
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn streaming_allocates_nothing_per_frame() {
    let _serial = shared();
    let counted = allocations_in(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert_eq!(counted, 1, "the counter sees this thread's allocations");
    for behaviour in [
        Behaviour::stream().fps(200.0),
        Behaviour::stream().fps(200.0).without_length(),
        // Over 100 ms a frame: calls that find only part of one return Waiting.
        Behaviour::stream().trickle(512, Duration::from_millis(6)),
    ] {
        let want = if behaviour.trickle.is_some() { 8 } else { 30 };
        let server = MjpegServer::start(behaviour);
        let mut src = open(&camera(&server.url(), ""));
        frames(&mut src, 5);
        let deadline = Instant::now() + PATIENCE;
        let (mut got, mut waits) = (0, 0);
        let allocations = allocations_in(|| {
            while got < want && Instant::now() < deadline {
                match src.next_frame() {
                    Ok(Next::Frame(f)) => {
                        assert_eq!(f.data.len(), 640 * 360 * 3 / 2);
                        got += 1;
                    }
                    Ok(Next::Waiting) => waits += 1,
                    other => panic!("{other:?}"),
                }
                // Let a few parts pile up now and then, so some are dropped.
                if got % 5 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        let stats = src.stats();
        println!("{behaviour:?}: {allocations} allocations over {got} frames and {waits} waits, {stats:?}");
        assert_eq!(got, want, "{stats:?}");
        assert_eq!(allocations, 0, "steady-state streaming allocated");
        if behaviour.trickle.is_some() {
            assert!(waits > 0, "the waiting path was measured too");
        }
        assert_eq!((stats.reconnects, stats.corrupt), (0, 0), "{stats:?}");
    }
}

/// Serves frames when this executable is started by `ChildServer`; passes otherwise.
#[test]
fn serve_in_a_child_when_asked() {
    serve_from_env();
}

#[test]
fn a_server_in_a_child_process_streams_too() {
    let _serial = shared();
    let child = ChildServer::spawn_with_args(
        50.0,
        &["--exact", "serve_in_a_child_when_asked", "--nocapture"],
    );
    let mut src = open(&camera(&child.url(), ""));
    let (got, _) = frames(&mut src, 3);
    assert!(got.windows(2).all(|p| p[1].seq > p[0].seq));
    assert_eq!(src.stats().reconnects, 0);
    drop(child);
    until(&mut src, "offline once the child is gone", |s| !s.online);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss() -> u64 {
    edgewatch::health::memory::rss_bytes().expect("RSS from /proc")
}

/// Threads of this process making a connection attempt right now.
fn connect_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == CONNECT_THREAD)
        .count()
}

/// Waits until no connection attempt is running; returns how long that took.
fn attempts_finish() -> Duration {
    let started = Instant::now();
    while connect_threads() > 0 {
        assert!(
            started.elapsed() < PATIENCE,
            "a connection attempt still runs after {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

#[test]
fn a_camera_whose_host_drops_syns_never_holds_up_the_caller() {
    // Alone: it times calls, and counts threads and descriptors.
    let _alone = exclusive();
    let hole = BlackHole::start();
    let server = MjpegServer::start(Behaviour::stream().fps(50.0));
    let mut live = open(&camera(&server.url(), "timeout_ms = 10000"));
    frames(&mut live, 3);
    attempts_finish();
    let fds = open_fds();
    let bound = Duration::from_millis(300);
    let opened = Instant::now();
    let mut dead = open(&camera(
        &hole.url(),
        "connect_timeout_ms = 2000
reconnect_min_ms = 10
reconnect_max_ms = 40",
    ));
    let open_took = opened.elapsed();
    // Both cameras in turn from one thread, as the pipeline polls them: through the whole
    // first attempt (2 s) and into the second.
    let (mut slowest, mut calls, mut live_frames) = (Duration::ZERO, 0u64, 0u64);
    let (mut in_flight_seen, mut most_early, mut most) = (0u64, 0, 0);
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(2600) {
        let call = Instant::now();
        let outcome = poll(&mut dead);
        slowest = slowest.max(call.elapsed());
        calls += 1;
        assert!(
            matches!(outcome, Outcome::Waiting),
            "the black hole sent a frame"
        );
        assert!(!dead.stats().online);
        if let Outcome::Frame(_) = poll(&mut live) {
            live_frames += 1;
        }
        let dialing = connect_threads();
        most = most.max(dialing);
        let at = watch.elapsed();
        // Well inside the first attempt, whatever the scheduling: it is still connecting.
        if at >= Duration::from_millis(500) && at < Duration::from_millis(1500) {
            most_early = most_early.max(dialing);
            in_flight_seen += u64::from(dialing == 1);
        }
    }
    let (dead_stats, live_stats) = (dead.stats(), live.stats());
    println!(
        "black hole: open took {open_took:?}; {calls} calls, slowest {slowest:?}; live camera \
         {live_frames} frames meanwhile; at most {most} connect threads; dead {dead_stats:?}, \
         live {live_stats:?}"
    );
    assert!(
        open_took < bound,
        "open waited for the connect: {open_took:?}"
    );
    assert!(
        in_flight_seen > 0 && most_early == 1,
        "one attempt was in flight for over a second ({in_flight_seen} polls saw it, at most \
         {most_early} threads): the hole really holds connects"
    );
    // The second attempt may start while the first one's thread is still on its way out.
    assert!(most <= 2, "attempts pile up: {most} threads");
    assert!(
        slowest < bound,
        "next_frame blocked for {slowest:?} while connecting"
    );
    assert!(
        live_frames >= 40,
        "the other camera stalled: {live_frames} frames in 2.6 s at 50 fps"
    );
    assert_eq!(
        (dead_stats.delivered, dead_stats.reconnects),
        (0, 0),
        "{dead_stats:?}"
    );
    assert_eq!(
        (live_stats.reconnects, live_stats.corrupt),
        (0, 0),
        "{live_stats:?}"
    );
    // Dropped while its attempt is in flight: no wait, and the socket is closed once the
    // detached attempt ends.
    assert!(connect_threads() >= 1, "an attempt is in flight");
    let dropping = Instant::now();
    drop(dead);
    let drop_took = dropping.elapsed();
    let ended = attempts_finish();
    println!("dropped in {drop_took:?}; the attempt ended {ended:?} later");
    assert!(
        drop_took < bound,
        "drop waited for the attempt: {drop_took:?}"
    );
    assert_eq!(open_fds(), fds, "the attempt's socket was not closed");
    drop(live);
    drop(server);
    drop(hole);
}

#[test]
fn a_thousand_reconnects_leak_neither_sockets_nor_memory() {
    let _alone = exclusive();
    let server = MjpegServer::start(Behaviour::stream().close_after(1));
    let cam = camera(&server.url(), "reconnect_min_ms = 1\nreconnect_max_ms = 1");
    let mut src = open(&cam);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let mut samples = Vec::new();
    for target in [0, 100, 1000] {
        until(&mut src, "through the cycle", |s| {
            assert!(
                Instant::now() < deadline,
                "1000 cycles take too long: {s:?}"
            );
            s.reconnects == target && !s.online && s.delivered > target
        });
        // Measured between connections, once the server has closed its end too.
        let quiet = Instant::now();
        while server.serving() {
            assert!(quiet.elapsed() < PATIENCE, "the server never closed");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Every attempt's thread ends once its stream is handed over.
        attempts_finish();
        let (fds, rss) = (open_fds(), rss());
        println!(
            "cycle {target}: {fds} fds, RSS {} KiB, {:?}",
            rss / 1024,
            src.stats()
        );
        samples.push((fds, rss));
    }
    println!("1000 reconnect cycles in {:?}", started.elapsed());
    let stats = src.stats();
    assert!(stats.delivered >= 1001, "a frame per connection: {stats:?}");
    assert_eq!(stats.corrupt, 0);
    assert_eq!(
        samples[1].0, samples[2].0,
        "file descriptors leak: {samples:?}"
    );
    let growth = samples[2].1.saturating_sub(samples[1].1);
    assert!(
        growth < 1 << 20,
        "RSS grew by {} KiB: {samples:?}",
        growth / 1024
    );
}

#[test]
fn the_binary_runs_a_site_with_an_http_camera() {
    let _serial = shared();
    let server = MjpegServer::start(Behaviour::stream().fps(30.0));
    let models = util::model_dir();
    let site = format!(
        r#"
site = "http-test"
[[cameras]]
name = "ipcam"
source = "http"
url = "{url}"
width = {CLIP_WIDTH}
height = {CLIP_HEIGHT}

[model]
file = "{model}"
labels = "{labels}"
score_threshold = 0.3
classes = ["car", "truck", "bus", "person"]

[[zones]]
name = "road"
points = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]

[health]
enabled = false

# The camera path is under test, not the detector's speed on a loaded machine.
[watchdog]
inference_limit_ms = 30000
latency_budget_ms = 30000
"#,
        url = server.url(),
        model = models.join("ssd_mobilenet_v1_coco_quant.tflite").display(),
        labels = models.join("coco_labels.txt").display(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(&path, site).unwrap();
    let output = run_with_timeout(&path, Duration::from_secs(180));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary: {stdout}\n{stderr}"));
    assert_eq!(last["frames"].as_u64(), Some(20), "{last}");
    assert!(server.connections() >= 1);
}

/// Runs `edgewatch run` on `config` for 20 frames, killing it if it takes longer than `limit`.
fn run_with_timeout(config: &Path, limit: Duration) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgewatch"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--frames",
            "20",
            "--json",
        ])
        .env("EDGEWATCH_MODEL_DIR", util::model_dir())
        .env("EDGEWATCH_FRAMES_DIR", util::frames_dir())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("edgewatch starts");
    // Read both pipes while waiting, so a chatty child cannot block on a full pipe.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for edgewatch") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("edgewatch did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}
