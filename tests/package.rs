//! The Debian package: `scripts/package.sh` builds it from the tested binary, its file list and
//! control fields are what the README promises, and installed with dpkg (as root, on this
//! machine) it creates the edgewatch user in the gpio and video groups, enables the unit, and
//! the installed binary runs the demo with the packaged LiteRT. Purging removes it again.

mod util;

use std::path::Path;
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Purges the package when dropped, so a failed assertion leaves the machine as it was.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "edgewatch"]).output();
    }
}

#[test]
fn the_package_installs_a_working_unit_and_purges_cleanly() {
    let root = text(&run(Command::new("id").arg("-u"))).trim() == "0";
    assert!(root, "installing the package needs root (CI runs as root)");
    let out_dir = tempfile::tempdir().unwrap();
    let built = run(
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package.sh"))
            .args(["--bin", env!("CARGO_BIN_EXE_edgewatch"), "--out"])
            .arg(out_dir.path()),
    );
    let deb = text(&built).trim().to_string();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{deb}");

    let listing = text(&run(Command::new("dpkg-deb").args(["-c", &deb])));
    let litert = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
    let mut want = vec![
        "./usr/bin/edgewatch",
        "./lib/systemd/system/edgewatch.service",
        "./etc/edgewatch/site.toml",
        "./etc/systemd/journald.conf.d/edgewatch.conf",
        "./usr/share/doc/edgewatch/README.Debian",
    ];
    if litert {
        want.push("./usr/lib/edgewatch/libLiteRt.so");
    }
    for path in want {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} in {listing}"
        );
    }
    let fields = text(&run(
        Command::new("dpkg-deb").args(["-f", &deb, "Package", "Version", "Depends"])
    ));
    assert!(fields.contains("Package: edgewatch"), "{fields}");
    assert!(
        fields.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{fields}"
    );

    let _installed = Installed;
    run(Command::new("dpkg").args(["-i", &deb]));
    let groups = text(&run(Command::new("id").arg("edgewatch")));
    assert!(
        groups.contains("(gpio)") && groups.contains("(video)"),
        "{groups}"
    );
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/edgewatch.service").exists(),
        "postinst enables the unit"
    );
    let unit = std::fs::read_to_string("/lib/systemd/system/edgewatch.service").unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/edgewatch run --config /etc/edgewatch/site.toml"));
    // The folder of the `edgewatch ctl` socket (control.socket's default).
    assert!(unit.contains("RuntimeDirectory=edgewatch\nRuntimeDirectoryMode=0750"));
    let journald = std::fs::read_to_string("/etc/systemd/journald.conf.d/edgewatch.conf").unwrap();
    for key in [
        "Storage=persistent",
        "SystemMaxUse=",
        "RuntimeMaxUse=",
        "RateLimitBurst=",
    ] {
        assert!(journald.contains(key), "{key} in {journald}");
    }

    // The installed binary, from its installed path, on the demo it ships as an example.
    let version = text(&run(Command::new("/usr/bin/edgewatch").arg("--version")));
    assert!(version.starts_with("edgewatch "), "{version}");
    let demo = run(Command::new("/usr/bin/edgewatch")
        .args([
            "run",
            "--config",
            "/usr/share/doc/edgewatch/examples/demo.toml",
            "--frames",
            "5",
        ])
        .env("EDGEWATCH_MODEL_DIR", util::model_dir())
        .env("EDGEWATCH_FRAMES_DIR", util::frames_dir())
        .env("RUST_LOG", "info")
        .env_remove("EDGEWATCH_LITERT_LIB"));
    let stdout = text(&demo);
    let stderr = String::from_utf8_lossy(&demo.stderr);
    assert!(stdout.contains("final frames 5"), "{stdout}");
    if litert {
        assert!(stderr.contains("LiteRT (XNNPACK)"), "{stderr}");
    }

    run(Command::new("dpkg").args(["--purge", "edgewatch"]));
    assert!(!Path::new("/usr/bin/edgewatch").exists());
    assert!(!Path::new("/etc/edgewatch/site.toml").exists());
    let gone = Command::new("id").arg("edgewatch").output().unwrap();
    assert!(!gone.status.success(), "purge removes the user");
}
