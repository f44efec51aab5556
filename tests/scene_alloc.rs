//! Proves that `Scene::update` never touches the heap: every table is allocated by the
//! constructor, then 10,000 frames of objects entering, moving, leaving, overflowing the track
//! table and the detection bound run without a single allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edgewatch::config::{Anchor, InSide, LineConfig, TrackerConfig, ZoneConfig, MAX_CLASSES};
use edgewatch::geometry::BBox;
use edgewatch::scene::Scene;
use edgewatch::vision::detection::{Detection, MAX_DETECTIONS};

/// Wraps the system allocator and counts allocations and reallocations made on a thread while
/// that thread has switched counting on.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Only the measuring thread counts: the test harness's own threads may allocate at any
    // time (output capture, bookkeeping), and that is not the scene's doing. A const-initialized
    // `Cell` has no destructor and needs no lazy set-up, so reading it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; the counter and the thread-local read have no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's guarantees for `layout` are passed on as they are.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` was allocated by `System` through this wrapper with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through this wrapper with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const PERSON: u16 = 0;
const CAR: u16 = 2;
const BUS: u16 = 5;
const UNCOUNTED: u16 = 9;
const CAPACITY: usize = 8;
const FRAMES: u64 = 10_000;
const FRAME_MS: u64 = 33;

/// Object `k`'s detection in frame `f`, if it is in view and the detector did not miss it.
/// Objects reappear every 300 frames with staggered entries and lifetimes, cross the frame left
/// to right or right to left, and now and then go undetected for a frame.
fn object(k: u64, f: u64) -> Option<Detection> {
    const PERIOD: u64 = 300;
    let start = (k * 37) % PERIOD;
    let life = 60 + (k * 13) % 120;
    let age = (f + PERIOD - start) % PERIOD;
    if age >= life || (f + k).is_multiple_of(11) {
        return None;
    }
    let progress = age as f32 / life as f32;
    let x = if k.is_multiple_of(2) {
        0.05 + 0.9 * progress
    } else {
        0.95 - 0.9 * progress
    };
    let y = 0.2 + (k % 7) as f32 * 0.1;
    let class = [PERSON, CAR, BUS, UNCOUNTED][(k % 4) as usize];
    Some(Detection {
        class,
        score: 0.8,
        bbox: BBox::from_center(x, y - 0.04, 0.08, 0.08),
    })
}

#[test]
fn scene_update_never_allocates() {
    let tracker = TrackerConfig {
        capacity: CAPACITY,
        ttl_ms: 200,
        confirm_hits: 2,
        ..TrackerConfig::default()
    };
    let zones = [
        ZoneConfig {
            name: "kerb".into(),
            camera: None,
            points: vec![[0.0, 0.0], [0.4, 0.0], [0.4, 1.0], [0.0, 1.0]],
            anchor: Anchor::BottomCenter,
            enter_frames: 2,
            exit_ms: 100,
            ignore_stationary: false,
        },
        ZoneConfig {
            name: "junction".into(),
            camera: None,
            points: vec![
                [0.5, 0.1],
                [0.9, 0.1],
                [0.9, 0.9],
                [0.3, 0.9],
                [0.3, 0.6],
                [0.5, 0.6],
            ],
            anchor: Anchor::BottomCenter,
            enter_frames: 2,
            exit_ms: 100,
            ignore_stationary: true,
        },
    ];
    let lines = [
        LineConfig {
            name: "west".into(),
            camera: None,
            from: [0.3, 0.0],
            to: [0.3, 1.0],
            in_side: InSide::Left,
            anchor: Anchor::BottomCenter,
        },
        LineConfig {
            name: "east".into(),
            camera: None,
            from: [0.7, 0.1],
            to: [0.7, 0.7],
            in_side: InSide::Right,
            anchor: Anchor::BottomCenter,
        },
        LineConfig {
            name: "diag".into(),
            camera: None,
            from: [0.2, 0.2],
            to: [0.8, 0.9],
            in_side: InSide::Left,
            anchor: Anchor::BottomCenter,
        },
    ];
    let mut scene = Scene::new(&tracker, &zones, &lines, &[PERSON, CAR, BUS]);
    let mut buffer = [Detection::default(); MAX_DETECTIONS + 20];
    let mut most_occupied = 0;
    let mut most_live = 0;

    COUNTING.with(|c| c.set(true));
    // The counter must see an allocation when there is one, or a pass would prove nothing.
    black_box(Vec::<u8>::with_capacity(black_box(16)));
    assert_eq!(
        ALLOCATIONS.swap(0, Ordering::Relaxed),
        1,
        "the counting allocator is not in use"
    );
    for f in 0..FRAMES {
        let mut n = 0;
        for k in 0..24 {
            if let Some(d) = object(k, f) {
                buffer[n] = d;
                n += 1;
            }
        }
        if f % 997 == 0 {
            // A burst of clutter past the detection bound.
            for (i, d) in buffer.iter_mut().enumerate().skip(n) {
                *d = Detection {
                    class: CAR,
                    score: 0.5,
                    bbox: BBox::from_center((i % 20) as f32 * 0.05, 0.95, 0.02, 0.02),
                };
            }
            n = buffer.len();
        }
        scene.update(&buffer[..n], Duration::from_millis(f * FRAME_MS));
        let occupied: u32 = scene.zone_occupancy().iter().flatten().sum();
        most_occupied = most_occupied.max(occupied);
        most_live = most_live.max(scene.tracks().len());
        black_box(scene.line_counts());
    }
    COUNTING.with(|c| c.set(false));

    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(
        allocations, 0,
        "Scene::update allocated {allocations} times over {FRAMES} frames"
    );

    // The run must have gone through every path that could have grown something.
    let stats = scene.stats();
    let crossings: u64 = scene
        .line_counts()
        .iter()
        .map(|c| c.total_inbound() + c.total_outbound())
        .sum();
    assert_eq!(most_live, CAPACITY, "{stats:?}");
    assert!(stats.created > 50 * CAPACITY as u64, "{stats:?}");
    assert!(stats.evicted > 50 * CAPACITY as u64, "{stats:?}");
    assert!(
        stats.dropped_full > 0 && stats.dropped_overflow > 0 && stats.ignored > 0,
        "{stats:?}"
    );
    assert!(most_occupied > 0);
    assert!(crossings > 100, "{:?}", scene.line_counts());
    assert!(scene
        .line_counts()
        .iter()
        .all(|c| c.inbound.len() == MAX_CLASSES));
}
