//! `scripts/diag` against a real OpenSSH server on loopback, started here with a throwaway
//! host key and client key, and a running edgewatch demo whose health endpoint it reads. Three
//! units at once: one that answers, one whose port refuses, one that accepts and never speaks.

mod util;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child when dropped, so a failing assertion leaves no server behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is installed by scripts/setup.sh");
    assert!(status.success());
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An sshd on `port` that lets in `client_key.pub` for the current user.
fn sshd(dir: &Path, port: u16) -> Running {
    keygen(&dir.join("host_key"));
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\nStrictModes no\n\
             UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // sshd refuses to start without its privilege separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd (openssh-server) is installed by scripts/setup.sh");
    let running = Running(child);
    wait_for_port(port, "sshd");
    running
}

#[test]
fn diag_collects_from_a_unit_and_names_the_unreachable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("client_key"));
    let ssh_port = free_port();
    let _sshd = sshd(d, ssh_port);

    // A unit that accepts the connection and never sends its banner.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hung.incoming().flatten() {
            held.push(s);
        }
    });
    let refused_port = free_port();

    // The demo with its health endpoint on a free port.
    let health_port = free_port();
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    let site = d.join("site.toml");
    std::fs::write(
        &site,
        format!("{demo}\n[health]\nbind = \"127.0.0.1:{health_port}\"\n"),
    )
    .unwrap();
    let _demo = Running(
        Command::new(env!("CARGO_BIN_EXE_edgewatch"))
            .args([
                "run",
                "--config",
                site.to_str().unwrap(),
                "--frames",
                "1000000",
            ])
            .env("EDGEWATCH_MODEL_DIR", util::model_dir())
            .env("EDGEWATCH_FRAMES_DIR", util::frames_dir())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(health_port, "the demo's health endpoint");

    // The unit's config as diag reads it, with a secret to mask.
    let unit_config = d.join("unit.toml");
    std::fs::write(
        &unit_config,
        "site = \"pole-7\"\n[mqtt]\nhost = \"broker\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let ssh_config = d.join("ssh_config");
    let host = |name: &str, port: u16| {
        format!(
            "Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  \
             IdentityFile {d}/client_key\n  StrictHostKeyChecking no\n  \
             UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
            user = user(),
            d = d.display()
        )
    };
    std::fs::write(
        &ssh_config,
        [
            host("good", ssh_port),
            host("refused", refused_port),
            host("hung", hung_port),
        ]
        .concat(),
    )
    .unwrap();

    let out_dir = d.join("out");
    let start = Instant::now();
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/diag"))
        .args(["-j", "3", "-t", "8", "-F"])
        .arg(&ssh_config)
        .arg("-o")
        .arg(&out_dir)
        .args(["--health", &format!("http://127.0.0.1:{health_port}")])
        .args(["--bin", env!("CARGO_BIN_EXE_edgewatch")])
        .arg("--config")
        .arg(&unit_config)
        .args(["good", "refused", "hung"])
        .output()
        .unwrap();
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{stdout}{stderr}({took:?})");

    // One line per unit; the run fails because two were not reached.
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let line = |host: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{host}: ")))
            .unwrap_or_else(|| panic!("no line for {host}: {stdout}"))
            .to_string()
    };
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(line("refused").contains("UNREACHABLE: connection refused"));
    assert!(line("hung").contains("UNREACHABLE"), "{}", line("hung"));
    assert!(line("hung").contains("timed out"), "{}", line("hung"));
    let good = line("good");
    assert!(!good.contains("UNREACHABLE"), "{good}");
    // The demo answers /health (degraded or ok) and its binary is there: neither is flagged.
    assert!(!good.contains("health endpoint down"), "{good}");
    assert!(!good.contains("not installed"), "{good}");
    // The hung unit was cut off by the time limit, not waited for.
    assert!(took < Duration::from_secs(60), "took {took:?}");

    // The good unit's tarball holds every section.
    let tarball = out_dir.join("good.tar.gz");
    let file = |name: &str| -> String {
        let out = Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .args(["-O", &format!("./{name}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} is missing from {tarball:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(file("version.txt").starts_with("edgewatch "));
    assert!(file("health.json").starts_with("{\"status\":"));
    assert!(file("metrics.txt").contains("edgewatch_frames_total"));
    for name in [
        "journal-this-boot.txt",
        "journal-previous-boot.txt",
        "systemctl.txt",
        "dmesg.txt",
        "throttled.txt",
        "disk.txt",
        "memory.txt",
        "summary.txt",
    ] {
        file(name);
    }
    let config = file("config.toml");
    assert!(!config.contains("hunter2"), "{config}");
    assert!(config.contains("password = \"***\""), "{config}");
    assert!(config.contains("host = \"broker\""), "{config}");
    // Nothing left for the unreachable units but their error notes.
    assert!(!out_dir.join("refused.tar.gz").exists());
    let mut note = String::new();
    std::fs::File::open(out_dir.join("refused.ssh-error.txt"))
        .unwrap()
        .read_to_string(&mut note)
        .unwrap();
    assert!(note.to_lowercase().contains("refused"), "{note}");
}
