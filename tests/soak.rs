//! Memory stays flat: `edgewatch soak` runs the demo pipeline well past its warm-up and the
//! resident set at the end equals the one at the checkpoint, under the 21 MiB budget.

mod util;

use std::process::Command;

/// Reads `key=value` from the soak output line that starts with `prefix`.
fn field(text: &str, prefix: &str, key: &str) -> i64 {
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with(prefix) && l.contains(key))
        .expect(prefix);
    let value = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .expect(key);
    value.parse().unwrap()
}

#[test]
fn rss_is_flat_and_under_budget() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_edgewatch"))
        .args([
            "soak",
            "--config",
            demo,
            "--frames",
            "1200",
            "--checkpoint",
            "200",
        ])
        .env("EDGEWATCH_MODEL_DIR", util::model_dir())
        .env("EDGEWATCH_FRAMES_DIR", util::frames_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert_eq!(field(&text, "soak: frames=", "frames"), 1200);
    assert_eq!(
        field(&text, "soak: rss_growth", "rss_growth_kib"),
        0,
        "RSS grew after the checkpoint"
    );
    assert_eq!(
        field(&text, "soak: rss_growth", "heap_growth_bytes"),
        0,
        "the heap grew"
    );
    assert_eq!(field(&text, "soak: rss_growth", "errors"), 0);
    let peak_kib = field(&text, "soak: rss_growth", "peak_rss_kib");
    assert!(
        peak_kib < 21 * 1024,
        "peak RSS {peak_kib} KiB is over the 21 MiB budget"
    );
}
