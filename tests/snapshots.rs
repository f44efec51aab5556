//! Event snapshots: the folder stays within `max_bytes` and `max_files` over 500 events
//! (oldest first, no temporary left), and the real binary on the demo site saves annotated
//! JPEGs for zone entries and line crossings.

mod util;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use edgewatch::view::store::{SnapshotStore, StoreLimits};

fn folder(dir: &Path) -> (Vec<String>, u64) {
    let mut names = Vec::new();
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        bytes += e.metadata().unwrap().len();
        names.push(e.file_name().into_string().unwrap());
    }
    names.sort();
    (names, bytes)
}

/// Real JPEGs of a few sizes: the encoder on noise of growing area.
fn jpegs() -> Vec<Vec<u8>> {
    (1..=5u32)
        .map(|k| {
            let (w, h) = (32 * k, 24 * k);
            let mut seed = k;
            let rgb: Vec<u8> = (0..w * h * 3)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let mut out = Vec::new();
            edgewatch::view::encode_jpeg(&rgb, w, h, 75, &mut out, usize::MAX).unwrap();
            out
        })
        .collect()
}

#[test]
fn rotation_keeps_a_tiny_folder_within_its_limits_over_500_events() {
    let dir = tempfile::tempdir().unwrap();
    let jpegs = jpegs();
    let largest = jpegs.iter().map(Vec::len).max().unwrap() as u64;
    let limits = StoreLimits {
        max_files: 50,
        // Room for about three of the largest: bytes bind long before the file count.
        max_bytes: 3 * largest,
        min_free_disk_mib: 0,
    };
    let mut store = SnapshotStore::open(dir.path(), limits).unwrap();
    for i in 0..500u64 {
        let jpeg = &jpegs[i as usize % jpegs.len()];
        let path = store
            .save(
                1_700_000_000_000 + i,
                &format!("cam-line-gantry-bus-{i}"),
                jpeg,
            )
            .expect("saved");
        let newest = path.file_name().unwrap().to_string_lossy().into_owned();
        let (names, bytes) = folder(dir.path());
        assert!(
            bytes <= limits.max_bytes,
            "event {i}: {bytes} bytes on disk, limit {}",
            limits.max_bytes
        );
        assert!(names.len() <= limits.max_files);
        assert!(names.iter().all(|n| n.ends_with(".jpg")), "{names:?}");
        assert_eq!(names.last(), Some(&newest), "the newest is kept");
    }
    let counters = store.counters();
    let (names, _) = folder(dir.path());
    assert_eq!(counters.saved.load(Relaxed), 500);
    assert_eq!(counters.rotated.load(Relaxed), 500 - names.len() as u64);
    assert_eq!(counters.skipped.load(Relaxed), 0);
    // What is left is the newest run of events, in order.
    let first_kept: u64 = names[0]
        .rsplit('-')
        .next()
        .unwrap()
        .trim_end_matches(".jpg")
        .parse()
        .unwrap();
    assert_eq!(first_kept, 500 - names.len() as u64, "{names:?}");
}

#[test]
fn the_demo_saves_annotated_frames_for_zone_entries_and_line_crossings() {
    let dir = tempfile::tempdir().unwrap();
    let shots = dir.path().join("shots");
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "{demo}\n[health]\nbind = \"127.0.0.1:0\"\n\n[snapshots]\ndir = \"{}\"\n\
             max_files = 4\nmin_free_disk_mib = 0\nevents = [{{ zone = \"road\" }}, \
             {{ line = \"gantry\", classes = [\"car\"] }}]\n",
            shots.display()
        ),
    )
    .unwrap();
    let out = util::edgewatch(&["run", "--config", site.to_str().unwrap(), "--frames", "40"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (names, _) = folder(&shots);
    assert!(!names.is_empty(), "no snapshot was saved");
    assert!(names.len() <= 4, "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("-highway-zone-road-car.jpg")),
        "{names:?}"
    );
    for name in &names {
        let jpeg = std::fs::read(shots.join(name)).unwrap();
        let mut decoder = zune_jpeg::JpegDecoder::new(std::io::Cursor::new(&jpeg));
        decoder.decode().unwrap();
        assert_eq!(decoder.dimensions(), Some((256, 256)), "{name}");
    }
}

#[test]
fn a_failed_detector_and_the_watchdog_restart_save_fault_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let shots = dir.path().join("shots");
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    // From frame 20 every invoke fails; 4 in a row mark the detector failed, and the watchdog
    // restarts the process, which then runs normally (the fault is not injected again).
    let demo = demo.replace(
        "score_threshold = 0.2",
        "score_threshold = 0.2\nmax_failures = 4",
    );
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "{demo}\n[health]\nbind = \"127.0.0.1:0\"\n[watchdog]\nperiod_ms = 50\n\
             [testing]\nfail_invoke_after_frames = 20\n\n[snapshots]\ndir = \"{}\"\n\
             min_free_disk_mib = 0\nfaults = true\n",
            shots.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgewatch"))
        .args(["run", "--config", site.to_str().unwrap(), "--frames", "30"])
        .env("EDGEWATCH_MODEL_DIR", util::model_dir())
        .env("EDGEWATCH_FRAMES_DIR", util::frames_dir())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("EDGEWATCH_RESTARTS")
        .env_remove("EDGEWATCH_RESTART_REASON")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("watchdog: detector failed"), "{err}");
    let (names, _) = folder(&shots);
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("-highway-watchdog-restart.jpg")),
        "{names:?}"
    );
}
