//! `board/pi4-intersection.toml`: its `[signals]` section validates against its own zones and
//! classes, its pin map matches `board/README.md`, and it runs two simulated hours of random
//! traffic on simulated pins without a fault.

mod signal_common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use edgewatch::clock::ManualClock;
use edgewatch::config::MAX_CLASSES;
use edgewatch::signal::{GroupState, SignalConfig, SimPins, SimSignalSystem};
use signal_common::Rng;

fn board_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("board")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The site TOML's signals section, zone names and counted classes.
fn site() -> (SignalConfig, Vec<String>, Vec<String>) {
    let site: toml::Table = board_file("pi4-intersection.toml")
        .parse()
        .expect("valid TOML");
    let zones = site["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["name"].as_str().unwrap().to_string())
        .collect();
    let classes = site["model"]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let signals = site["signals"]
        .clone()
        .try_into()
        .expect("[signals] fits the schema");
    (signals, zones, classes)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn signals_section_validates() {
    let (signals, zones, classes) = site();
    signals
        .validate(&strs(&zones), &strs(&classes))
        .expect("board config is valid");
    assert_eq!(signals.groups.len(), 6);
    // Breaking it is caught with the key named: a 30 km/h amber on the 50 km/h main road.
    let mut broken = signals.clone();
    broken.phases[0].amber_s = Some(3.0);
    broken.phases[0].approach_speed_kmh = Some(70.0);
    let err = broken
        .validate(&strs(&zones), &strs(&classes))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("signals.phases[0].amber_s: 3 s is below the kinematic minimum"),
        "{err}"
    );
}

#[test]
fn pin_map_matches_the_readme() {
    let (signals, _, _) = site();
    let mut config_pins = BTreeMap::new();
    for g in &signals.groups {
        let lamps = [
            ("red", g.red),
            ("amber", g.amber),
            ("green", g.green),
            ("dont_walk", g.dont_walk),
            ("walk", g.walk),
            ("go", g.go),
            ("stop", g.stop),
            ("lamp", g.lamp),
        ];
        for (lamp, pin) in lamps {
            if let Some(pin) = pin {
                let active = if pin.active_low { "low" } else { "high" };
                config_pins.insert(pin.pin, format!("{} {lamp} {active}", g.name));
            }
        }
    }
    let mut readme_pins = BTreeMap::new();
    let readme = board_file("README.md");
    for row in readme.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        if let (5, Ok(bcm)) = (cells.len(), cells[0].parse::<u32>()) {
            readme_pins.insert(bcm, format!("{} {} {}", cells[2], cells[3], cells[4]));
        }
    }
    assert_eq!(readme_pins, config_pins);
    let inputs: Vec<u32> = signals.inputs.iter().map(|i| i.pin).collect();
    for pin in inputs {
        assert!(
            readme.contains(&format!("| {pin} |")),
            "input pin {pin} not documented"
        );
    }
}

#[test]
fn runs_two_hours_of_random_traffic_without_a_fault() {
    let (signals, zones, classes) = site();
    let clock = ManualClock::new();
    let mut pins = SimPins::new(clock.clone(), 256);
    let mut system = SimSignalSystem::new(
        &signals,
        &strs(&zones),
        &strs(&classes),
        clock.clone(),
        &mut pins,
    )
    .unwrap();
    let mut occupancy = vec![[0u32; MAX_CLASSES]; zones.len()];
    let mut rng = Rng::new(2024);
    let (mut steps, mut minor_greens, mut last_minor) = (0u64, 0, GroupState::Red);
    let mut transitions = 0u64;
    for i in 0..72_000u64 {
        for row in occupancy.iter_mut() {
            for n in row.iter_mut().take(classes.len()) {
                if rng.chance(0.003) {
                    *n = u32::from(rng.chance(0.5));
                }
            }
        }
        clock.advance(std::time::Duration::from_millis(100));
        let report = system.tick(&occupancy, !(40_000..40_600).contains(&i));
        assert!(
            report.new_fault.is_none(),
            "fault at tick {i}: {:?}",
            report.new_fault
        );
        let minor = system.states().find(|(n, _)| *n == "minor").unwrap().1;
        minor_greens += u32::from(minor == GroupState::Green && last_minor != GroupState::Green);
        last_minor = minor;
        pins.take_transitions(|t| {
            assert!(
                system.lamp_of_pin(t.pin).is_some(),
                "transition on unmapped pin {}",
                t.pin
            );
            transitions += 1;
        });
        steps += 1;
    }
    eprintln!("signal_board: {steps} steps, {minor_greens} minor greens, {transitions} pin transitions, no fault");
    assert!(
        minor_greens > 10,
        "the minor road was served ({minor_greens} times)"
    );
    assert_eq!(pins.dropped(), 0);
}
