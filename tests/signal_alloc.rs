//! Ticking the signal system, reading its states and printing its summary line allocate
//! nothing: an hour of simulated operation (traffic, buses, pedestrians, camera dropouts,
//! maintenance flash, a pin fault and its reset) under a counting global allocator.

mod signal_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use signal_common::*;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting every allocation and reallocation.
struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; counting touches only an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's `layout` obligations pass straight through to `System`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; `new_size` obligations are the caller's, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn an_hour_of_ticks_allocates_nothing() {
    let mut site = Site::new(SITE, 100);
    let mut line = heapless::String::<512>::new();
    let mut rng = Rng::new(7);
    // The counter counts: a control allocation shows up.
    let probe = ALLOCATIONS.load(Ordering::Relaxed);
    drop(std::hint::black_box(vec![1u8; 16]));
    assert!(
        ALLOCATIONS.load(Ordering::Relaxed) > probe,
        "the counting allocator is not in use"
    );
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut steps = 0u64;
    let mut faults = 0u32;
    for i in 0..36_000u64 {
        for (zone, class) in [
            (Z_MAIN, CAR),
            (Z_MINOR, CAR),
            (Z_TURN, CAR),
            (Z_CROSSING, PERSON),
            (Z_BUS, BUS),
        ] {
            if rng.chance(0.02) {
                site.occupancy[zone][class] = (rng.next_u64() % 3) as u32;
            }
        }
        site.camera_ok = !(10_000..10_300).contains(&i);
        match i {
            20_000 => site.signals.set_maintenance_flash(true),
            21_000 => site.signals.set_maintenance_flash(false),
            30_000 => site.pins.fail_writes(MAIN_RED, true),
            30_050 => {
                site.pins.fail_writes(MAIN_RED, false);
                site.signals.reset();
            }
            _ => {}
        }
        let report = site.step_allowing_faults();
        faults += u32::from(report.new_fault.is_some());
        line.clear();
        let _fits = write!(line, "{}", site.signals);
        let lit = site
            .signals
            .states()
            .filter(|(_, s)| s.as_str() != "dark")
            .count();
        assert!(lit > 0);
        steps += 1;
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    eprintln!("signal_alloc: {steps} steps, {faults} fault(s), {allocations} allocations");
    assert_eq!(faults, 1, "exactly the injected pin fault");
    assert_eq!(site.signals.controller().incidents(), 1);
    assert_eq!(allocations, 0);
}
