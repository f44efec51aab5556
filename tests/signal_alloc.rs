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
    let mut site = Site::new(&with_sense(SITE), 100);
    let mut line = heapless::String::<512>::new();
    let mut rng = Rng::new(7);
    // The counter counts: a control allocation shows up.
    assert!(
        allocations_in(|| drop(std::hint::black_box(vec![1u8; 16]))) > 0,
        "the counting allocator is not in use"
    );
    let mut steps = 0u64;
    let mut faults = 0u32;
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
    });
    eprintln!("signal_alloc: {steps} steps, {faults} fault(s), {allocations} allocations");
    assert_eq!(faults, 1, "exactly the injected pin fault");
    assert_eq!(site.signals.controller().incidents(), 1);
    assert_eq!(allocations, 0);
}
