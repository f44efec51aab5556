//! Ticking the signal system, reading its states and printing its summary line allocate
//! nothing: an hour of simulated operation (traffic, buses, pedestrians, camera dropouts,
//! maintenance flash, a pin fault and its reset) under a counting global allocator.

mod signal_common;
mod util;

use std::fmt::Write as _;

use signal_common::*;
use util::thread_alloc::{allocations_in, ThreadCountingAllocator};

#[global_allocator]
static ALLOCATOR: ThreadCountingAllocator = ThreadCountingAllocator;

#[test]
fn an_hour_of_ticks_allocates_nothing() {
    // Every lamp sensed: the field read-back runs each tick too.
    // The detector diagnostics on, at their shortest, so their timers and marks run too.
    let text = with_sense(SITE).replace(
        "startup_flash_s = 3.0",
        "startup_flash_s = 3.0\nno_activity_s = 60\nmax_presence_s = 60",
    );
    let mut site = Site::new(&text, 100);
    let mut line = heapless::String::<512>::new();
    let mut rng = Rng::new(7);
    // The counter counts: a control allocation shows up.
    assert!(
        allocations_in(|| drop(std::hint::black_box(vec![1u8; 16]))) > 0,
        "the counting allocator is not in use"
    );
    let mut steps = 0u64;
    let mut faults = 0u32;
    let mut stuck_ticks = 0u32;
    let allocations = allocations_in(|| {
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
                    assert!(site.signals.reset(), "in fault flash");
                }
                _ => {}
            }
            let report = site.step_allowing_faults();
            faults += u32::from(report.new_fault.is_some());
            stuck_ticks += u32::from(site.signals.controller().max_presence() != (0, 0));
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
    });
    eprintln!("signal_alloc: {steps} steps, {faults} fault(s), {allocations} allocations");
    assert_eq!(faults, 1, "exactly the injected pin fault");
    assert!(
        stuck_ticks > 0,
        "max presence never tripped: its path was not run"
    );
    assert_eq!(site.signals.controller().incidents(), 1);
    assert_eq!(allocations, 0);
}
