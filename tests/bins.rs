//! Traffic data bins: figures land in the right bin and columns, bins align to UTC, the files
//! survive a restart and a torn last line, stay within their bounds, and come back through
//! `GET /bins.csv` of the real binary and `edgewatch bins`. Time is a manual clock.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use edgewatch::bins::store::{copy_range, file_name, write_rows, HEADER};
use edgewatch::bins::{
    self, BinAccumulator, BinLimits, BinQueue, BinRecord, BinStats, BinStore, Layout, TimeRange,
};
use edgewatch::clock::ManualClock;
use edgewatch::config::MAX_CLASSES;
use edgewatch::scene::LineCount;
use util::thread_alloc::{allocations_in, ThreadCountingAllocator};

#[global_allocator]
static ALLOC: ThreadCountingAllocator = ThreadCountingAllocator;

/// 2026-12-07T00:00:00Z.
const DAY: u64 = 1_796_601_600;
const DAY_NUMBER: u64 = DAY / 86_400;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn counts(n: &[u32]) -> [u32; MAX_CLASSES] {
    let mut a = [0; MAX_CLASSES];
    a[..n.len()].copy_from_slice(n);
    a
}

fn line(inbound: &[u64], outbound: &[u64]) -> LineCount {
    let mut c = LineCount::default();
    c.inbound[..inbound.len()].copy_from_slice(inbound);
    c.outbound[..outbound.len()].copy_from_slice(outbound);
    c
}

/// One zone ("stop bar") and one line ("gantry") on one camera, classes car and bus.
fn layout() -> Layout {
    Layout {
        zones: vec![("stop bar".into(), 0)],
        lines: vec![("gantry".into(), 0)],
        classes: vec!["car".into(), "bus".into()],
    }
}

/// An accumulator of `interval_s` bins on a wall clock set to `at`.
fn accumulator(at: u64, interval_s: u64) -> (BinAccumulator, Arc<BinQueue>, ManualClock) {
    let wall = ManualClock::new();
    wall.set(secs(at));
    let queue = Arc::new(BinQueue::new(4, 1, 1, 1));
    let acc = BinAccumulator::new(1, 1, 1, interval_s, queue.clone(), Arc::new(wall.clone()));
    (acc, queue, wall)
}

fn rows_of(record: &BinRecord) -> Vec<String> {
    let mut out = Vec::new();
    write_rows(record, &layout(), &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn pop(queue: &BinQueue) -> BinRecord {
    let mut r = BinRecord::new(1, 1, 1);
    assert!(queue.pop_into(&mut r), "no bin closed");
    r
}

#[test]
fn known_crossings_and_occupancy_land_in_the_right_bin_and_columns() {
    // 10:14:00: the 10:00 bin is running.
    let (mut acc, queue, wall) = accumulator(DAY + 10 * 3600 + 14 * 60, 900);
    let frames: [([u32; MAX_CLASSES], LineCount); 4] = [
        (counts(&[0, 0]), line(&[0, 0], &[0, 0])),
        (counts(&[2, 0]), line(&[1, 0], &[0, 0])),
        (counts(&[3, 1]), line(&[3, 1], &[1, 0])),
        (counts(&[1, 0]), line(&[3, 1], &[2, 0])),
    ];
    for (i, (occupancy, crossings)) in frames.iter().enumerate() {
        acc.tick(secs(i as u64));
        acc.observe(0, false, secs(i as u64));
        acc.frame(0, &[0], &[*occupancy], &[0], &[*crossings]);
    }
    // One frame the detector could not process.
    acc.observe(0, false, secs(4));
    acc.fault(0);
    assert_eq!(queue.queued(), 0, "closed before its end");
    // 10:15:00 exactly: the bin closes; the next frame goes into the 10:15 bin.
    wall.set(secs(DAY + 10 * 3600 + 15 * 60));
    acc.tick(secs(5));
    acc.frame(0, &[0], &[counts(&[1, 0])], &[0], &[line(&[4, 1], &[2, 0])]);
    let rows = rows_of(&pop(&queue));
    let t = "2026-12-07T10:00:00Z,2026-12-07T10:15:00Z";
    assert_eq!(
        rows,
        [
            // Arrivals 2 + 1 + 0 cars, departures 2; 3 of 4 frames with a car, at most 3.
            format!("{t},zone,stop bar,car,3,2,75.0,3,4,1,0.0"),
            format!("{t},zone,stop bar,bus,1,1,25.0,1,4,1,0.0"),
            format!("{t},zone,stop bar,all,4,3,75.0,4,4,1,0.0"),
            format!("{t},line,gantry,car,3,2,,,4,1,0.0"),
            format!("{t},line,gantry,bus,1,0,,,4,1,0.0"),
            format!("{t},line,gantry,all,4,2,,,4,1,0.0"),
        ]
    );
    // The crossing after the boundary is the next bin's.
    wall.set(secs(DAY + 10 * 3600 + 30 * 60));
    acc.tick(secs(6));
    let next = rows_of(&pop(&queue));
    assert_eq!(
        next[3],
        "2026-12-07T10:15:00Z,2026-12-07T10:30:00Z,line,gantry,car,1,0,,,1,0,0.0"
    );
}

#[test]
fn bins_align_to_utc_boundaries_whatever_the_start() {
    for (interval_min, at, start) in [
        (15, 10 * 3600 + 7 * 60 + 33, 10 * 3600),
        (15, 10 * 3600 + 59 * 60 + 59, 10 * 3600 + 45 * 60),
        (60, 10 * 3600 + 7 * 60, 10 * 3600),
        (1, 10 * 3600 + 7 * 60 + 59, 10 * 3600 + 7 * 60),
        (5, 0, 0),
    ] {
        let (mut acc, _, _) = accumulator(DAY + at, interval_min * 60);
        acc.tick(Duration::ZERO);
        let bin = acc.running();
        assert_eq!(bin.start, DAY + start, "{interval_min} min at {at}");
        assert_eq!(bin.end, DAY + start + interval_min * 60);
    }
}

#[test]
fn a_wall_clock_that_jumps_closes_the_bin_it_left() {
    // The Pi has no real-time clock: NTP may set it far forward or back after boot.
    let (mut acc, queue, wall) = accumulator(DAY + 3600, 900);
    acc.tick(Duration::ZERO);
    wall.set(secs(DAY + 5 * 3600 + 1));
    acc.tick(secs(1));
    assert_eq!(pop(&queue).start, DAY + 3600);
    assert_eq!(acc.running().start, DAY + 5 * 3600);
}

#[test]
fn adding_up_and_closing_allocate_nothing() {
    let (mut acc, queue, wall) = accumulator(DAY, 60);
    let mut out = BinRecord::new(1, 1, 1);
    acc.tick(Duration::ZERO);
    let n = allocations_in(|| {
        for i in 0..10_000u64 {
            wall.set(secs(DAY + i));
            acc.tick(secs(i));
            acc.observe(0, i % 7 == 0, secs(i));
            acc.fault(0);
            let c = counts(&[(i % 3) as u32, 1]);
            acc.frame(0, &[0], &[c], &[0], &[line(&[i], &[i / 2])]);
            // The writer's side empties the queue (as its thread would).
            while queue.pop_into(&mut out) {}
        }
    });
    assert_eq!(n, 0, "allocations while adding up and closing bins");
    assert_eq!(queue.dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
}

fn limits() -> BinLimits {
    BinLimits {
        retention_days: 30,
        max_bytes: 1 << 30,
    }
}

/// A closed bin starting at `start` with a car crossing the line `n` times.
fn record(start: u64, n: u64) -> BinRecord {
    let mut r = BinRecord::new(1, 1, 1);
    r.start = start;
    r.end = start + 900;
    r.lines[0].inbound[0] = n;
    r.cameras[0].frames = 100;
    r
}

fn write(store: &mut BinStore, stats: &BinStats, r: &BinRecord) {
    bins::write_one(store, &layout(), stats, r, &mut Vec::new());
}

fn stats(dir: &Path) -> BinStats {
    BinStats::new(dir, Arc::new(BinQueue::new(1, 1, 1, 1)))
}

fn read_all(dir: &Path, range: TimeRange) -> String {
    let mut out = Vec::new();
    copy_range(dir, range, &mut [0; 4096], &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_restart_appends_to_the_day_file_through_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    for (start, n) in [(DAY + 3600, 7), (DAY + 4500, 9)] {
        // Each pass is a process: open the store, write one bin through the thread, stop.
        let store = BinStore::open(dir.path(), limits()).unwrap();
        let queue = Arc::new(BinQueue::new(2, 1, 1, 1));
        let stats = Arc::new(BinStats::new(dir.path(), queue.clone()));
        let writer = bins::start(store, layout(), stats.clone()).unwrap();
        queue.push(&record(start, n));
        writer.stop();
        assert_eq!(
            stats.counts().written,
            1,
            "the queued bin is written at stop"
        );
    }
    let text = std::fs::read_to_string(dir.path().join("2026-12-07.csv")).unwrap();
    assert!(text.starts_with(HEADER), "{text}");
    assert_eq!(text.matches("start,end").count(), 1, "one header: {text}");
    assert!(
        text.contains(
            "2026-12-07T01:00:00Z,2026-12-07T01:15:00Z,line,gantry,car,7,0,,,100,0,0.0\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "2026-12-07T01:15:00Z,2026-12-07T01:30:00Z,line,gantry,car,9,0,,,100,0,0.0\n"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1 + 2 * 6);
}

#[test]
fn a_bin_goes_into_the_file_of_its_start_day() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = BinStore::open(dir.path(), limits()).unwrap();
    let s = stats(dir.path());
    write(&mut store, &s, &record(DAY - 900, 1));
    write(&mut store, &s, &record(DAY, 2));
    let before = std::fs::read_to_string(dir.path().join("2026-12-06.csv")).unwrap();
    assert!(before.contains("2026-12-06T23:45:00Z,2026-12-07T00:00:00Z"));
    assert!(dir.path().join("2026-12-07.csv").exists());
}

#[test]
fn retention_and_max_bytes_delete_the_oldest_days() {
    let dir = tempfile::tempdir().unwrap();
    let tight = BinLimits {
        retention_days: 3,
        max_bytes: 1 << 30,
    };
    let mut store = BinStore::open(dir.path(), tight).unwrap();
    let s = stats(dir.path());
    for d in 0..6 {
        write(&mut store, &s, &record(DAY + d * 86_400, d));
    }
    // Today (day 5) and the 3 days before it.
    let names = |dir: &Path| {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
    };
    let kept: Vec<String> = (2..6).map(|d| file_name(DAY_NUMBER + d)).collect();
    assert_eq!(names(dir.path()), kept);
    assert_eq!(s.counts().pruned, 2);

    // Each day's file is a header and 6 rows, about 600 bytes: 1500 bytes hold two.
    let one = std::fs::metadata(dir.path().join(&kept[0])).unwrap().len();
    drop(store);
    let small = BinLimits {
        retention_days: 30,
        max_bytes: one * 2 + one / 2,
    };
    let mut store = BinStore::open(dir.path(), small).unwrap();
    write(&mut store, &s, &record(DAY + 6 * 86_400, 6));
    assert_eq!(
        names(dir.path()),
        [file_name(DAY_NUMBER + 5), file_name(DAY_NUMBER + 6)]
    );
    // Never today's file, even when it alone is over.
    let tiny = BinLimits {
        retention_days: 30,
        max_bytes: 1,
    };
    let mut store = BinStore::open(dir.path(), tiny).unwrap();
    write(&mut store, &s, &record(DAY + 6 * 86_400 + 900, 6));
    assert_eq!(names(dir.path()), [file_name(DAY_NUMBER + 6)]);
}

#[test]
fn a_torn_last_line_never_breaks_the_reader_and_is_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = BinStore::open(dir.path(), limits()).unwrap();
    let s = stats(dir.path());
    write(&mut store, &s, &record(DAY, 1));
    drop(store);
    let path = dir.path().join("2026-12-07.csv");
    let whole = std::fs::read_to_string(&path).unwrap();
    // A power cut in the middle of the next bin's write: half a row, then zeros.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"2026-12-07T00:15:00Z,2026-12-07T00:30:00Z,line,gan\0\0\0")
        .unwrap();
    drop(f);
    assert_eq!(read_all(dir.path(), TimeRange::ALL), whole);
    // Opening cuts the torn tail; the next bin starts on a line of its own.
    let mut store = BinStore::open(dir.path(), limits()).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
    write(&mut store, &s, &record(DAY + 900, 2));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1 + 2 * 6, "{text}");
    assert!(text.lines().all(|l| l.split(',').count() == 12), "{text}");
}

#[test]
fn reading_by_range_takes_times_and_dates() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = BinStore::open(dir.path(), limits()).unwrap();
    let s = stats(dir.path());
    for (start, n) in [(DAY - 900, 1), (DAY, 2), (DAY + 900, 3), (DAY + 86_400, 4)] {
        write(&mut store, &s, &record(start, n));
    }
    let cars = |from: Option<&str>, to: Option<&str>| -> Vec<String> {
        let text = read_all(dir.path(), TimeRange::parse(from, to).unwrap());
        assert!(text.starts_with(HEADER));
        text.lines()
            .filter(|l| l.contains(",line,gantry,car,"))
            .map(|l| l.split(',').nth(5).unwrap().to_string())
            .collect()
    };
    assert_eq!(cars(None, None), ["1", "2", "3", "4"]);
    assert_eq!(cars(Some("2026-12-07"), Some("2026-12-07")), ["2", "3"]);
    assert_eq!(
        cars(Some("2026-12-07T00:15:00Z"), Some("2026-12-08T00:00:01Z")),
        ["3", "4"]
    );
    assert_eq!(cars(None, Some("2026-12-07T00:00:00Z")), ["1"]);
}

/// The demo site with the health endpoint on a free port and bins in `dir`.
struct Unit {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Unit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn demo_with_bins(dir: &Path, extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    let site = tempfile::tempdir().unwrap();
    let path = site.path().join("site.toml");
    std::fs::write(
        &path,
        format!(
            "{demo}\n[health]\nbind = \"127.0.0.1:0\"\nmax_connections = 4\n\n[bins]\ndir = \"{}\"\n{extra}\n",
            dir.display()
        ),
    )
    .unwrap();
    (site, path)
}

fn start_unit(config: &Path) -> Unit {
    let (child, addr) = util::spawn_unit(config, |_| {});
    Unit { child, addr }
}

/// One request; the status, the headers and the body (de-chunked when chunked).
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    if !head.contains("Transfer-Encoding: chunked") {
        return (code, head.to_string(), body.to_string());
    }
    let (mut rest, mut out) = (body, String::new());
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            assert_eq!(after, "\r\n", "the body ends with the empty chunk");
            return (code, head.to_string(), out);
        }
        out.push_str(&after[..size]);
        assert_eq!(&after[size..size + 2], "\r\n");
        rest = &after[size + 2..];
    }
}

/// Files for 2026-12-01 .. 2026-12-03 with a bin at 08:00 and 08:15 each, written by the
/// library as a unit would have.
fn earlier_days(dir: &Path) {
    let mut store = BinStore::open(dir, limits()).unwrap();
    let s = stats(dir);
    for d in 1..=3u64 {
        let day = DAY - (7 - d) * 86_400;
        write(&mut store, &s, &record(day + 8 * 3600, d * 10));
        write(&mut store, &s, &record(day + 8 * 3600 + 900, d * 10 + 1));
    }
}

#[test]
fn the_binary_serves_bins_csv_by_range_and_refuses_bad_queries() {
    let dir = tempfile::tempdir().unwrap();
    earlier_days(dir.path());
    let (_site, config) = demo_with_bins(dir.path(), "interval_min = 15");
    let unit = start_unit(&config);

    let (code, head, body) = get(
        unit.addr,
        "/bins.csv?from=2026-12-02&to=2026-12-03T08:15:00Z",
    );
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(head.contains("Content-Type: text/csv"), "{head}");
    let cars: Vec<&str> = body
        .lines()
        .filter(|l| l.contains(",line,gantry,car,"))
        .collect();
    assert!(body.starts_with(HEADER), "{body}");
    assert_eq!(
        cars,
        [
            "2026-12-02T08:00:00Z,2026-12-02T08:15:00Z,line,gantry,car,20,0,,,100,0,0.0",
            "2026-12-02T08:15:00Z,2026-12-02T08:30:00Z,line,gantry,car,21,0,,,100,0,0.0",
            "2026-12-03T08:00:00Z,2026-12-03T08:15:00Z,line,gantry,car,30,0,,,100,0,0.0",
        ]
    );
    // URL-encoded colons, and everything.
    let (code, _, body) = get(unit.addr, "/bins.csv?from=2026-12-01T08%3A15%3A00Z");
    assert_eq!(code, 200);
    let gantry_cars = body.lines().filter(|l| l.contains(",line,gantry,car,"));
    assert_eq!(gantry_cars.count(), 5);
    let (code, _, all) = get(unit.addr, "/bins.csv");
    // Three days of two bins, of six rows each.
    assert_eq!((code, all.lines().count()), (200, 1 + 3 * 2 * 6));

    for (query, needle) in [
        ("from=yesterday", "from: `yesterday` is not a UTC time"),
        ("to=2026-02-30", "to: `2026-02-30` is not a UTC time"),
        ("from=2026-12-03&to=2026-12-01", "to: must be after from"),
        ("since=2026-12-01", "unknown parameter `since`"),
        ("from=%zz", "from: not a valid value"),
    ] {
        let (code, _, body) = get(unit.addr, &format!("/bins.csv?{query}"));
        assert_eq!(code, 400, "{query}: {body}");
        assert!(
            body.starts_with("bad query: ") && body.contains(needle),
            "{query}: {body}"
        );
    }
    let (code, _, health) = get(unit.addr, "/health");
    assert_eq!(code, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["bins"]["dropped"], 0, "{health}");
    let (_, _, metrics) = get(unit.addr, "/metrics");
    assert!(
        metrics.contains("edgewatch_bins_dropped_total 0"),
        "{metrics}"
    );
}

#[test]
fn without_bins_the_route_says_so() {
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    let site = tempfile::tempdir().unwrap();
    let path = site.path().join("site.toml");
    std::fs::write(
        &path,
        format!("{demo}\n[health]\nbind = \"127.0.0.1:0\"\nmax_connections = 4\n"),
    )
    .unwrap();
    let unit = start_unit(&path);
    let (code, _, body) = get(unit.addr, "/bins.csv");
    assert_eq!(code, 404);
    assert!(body.contains("no [bins] section"), "{body}");
}

#[test]
fn edgewatch_bins_prints_the_range_and_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    earlier_days(dir.path());
    let (_site, config) = demo_with_bins(dir.path(), "");
    let config = config.to_str().unwrap();
    let out = util::edgewatch(&["bins", "--config", config, "--from", "2026-12-03"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(HEADER), "{text}");
    assert_eq!(text.lines().count(), 1 + 2 * 6, "{text}");
    assert!(
        text.lines()
            .skip(1)
            .all(|l| l.starts_with("2026-12-03T08:")),
        "{text}"
    );

    let out = util::edgewatch(&["bins", "--config", config, "--to", "12/03/2026"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--to: `12/03/2026` is not a UTC time like 2026-12-07T10:15:00Z"),
        "{err}"
    );

    let (_bad_site, bad) = demo_with_bins(dir.path(), "interval_min = 7");
    let out = util::edgewatch(&["bins", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bins.interval_min: 7 does not divide the hour"),
        "{err}"
    );
    let out = util::edgewatch(&["run", "--config", bad.to_str().unwrap(), "--frames", "1"]);
    assert_eq!(out.status.code(), Some(2));

    let (_typo_site, typo) = demo_with_bins(dir.path(), "retention = 5");
    let out = util::edgewatch(&["check-config", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bins") && err.contains("retention"), "{err}");
}

#[test]
fn the_frame_loop_adds_frames_faults_and_zone_counts_into_the_bin() {
    use edgewatch::pipeline::{Pipeline, Step};
    let frames = util::frames_dir();
    let mut config = util::config_from(&util::ssd_site(&frames, 256, 256, "yuyv"));
    // Every invoke after the 6th fails: the rest of the bin's frames are detector faults.
    config.testing.fail_invoke_after_frames = Some(6);
    let clock = Arc::new(edgewatch::clock::MonotonicClock::new());
    let mut pipeline = Pipeline::build(&config, clock).unwrap();
    let wall = ManualClock::new();
    wall.set(secs(DAY + 12 * 3600 + 5));
    let queue = Arc::new(BinQueue::new(4, 1, 1, 1));
    let layout = pipeline.enable_bins(300, queue.clone(), Arc::new(wall.clone()));
    assert_eq!(layout.zones, [("road".to_string(), 0)]);
    assert_eq!(layout.lines, [("gantry".to_string(), 0)]);
    let mut steps = Vec::new();
    for _ in 0..10 {
        steps.push(pipeline.step().unwrap());
    }
    assert_eq!(steps.iter().filter(|&&s| s == Step::Processed).count(), 6);
    let occupancy_seen = pipeline.bins().unwrap().running().zones[0];
    wall.set(secs(DAY + 12 * 3600 + 300));
    pipeline.step().unwrap();
    let bin = pop(&queue);
    assert_eq!(
        (bin.start, bin.end),
        (DAY + 12 * 3600, DAY + 12 * 3600 + 300)
    );
    assert_eq!((bin.cameras[0].frames, bin.cameras[0].faults), (6, 4));
    assert_eq!(bin.zones[0], occupancy_seen);
    // The sample frames have cars on the road.
    assert!(bin.zones[0].max_queue > 0, "{:?}", bin.zones[0]);
    assert!(bin.zones[0].occupied_frames <= 6);
    let mut rows = Vec::new();
    write_rows(&bin, &layout, &mut rows).unwrap();
    let rows = String::from_utf8(rows).unwrap();
    let first = "2026-12-07T12:00:00Z,2026-12-07T12:05:00Z,zone,road,car,";
    assert!(rows.starts_with(first), "{rows}");
}
