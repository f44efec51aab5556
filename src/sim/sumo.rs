//! Starting SUMO's programs: `netconvert` builds the network, `sumo` runs it headless.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::SimError;

/// Where one run writes its outputs.
#[derive(Debug, Clone)]
pub struct RunFiles {
    /// `--tripinfo-output`.
    pub tripinfo: PathBuf,
    /// `--collision-output`.
    pub collisions: PathBuf,
    /// sumo's own messages (stdout and stderr).
    pub log: PathBuf,
}

impl RunFiles {
    /// Files named `<name>-*.xml` in `dir`.
    pub fn new(dir: &Path, name: &str) -> RunFiles {
        RunFiles {
            tripinfo: dir.join(format!("{name}-tripinfo.xml")),
            collisions: dir.join(format!("{name}-collisions.xml")),
            log: dir.join(format!("{name}-sumo.log")),
        }
    }
}

/// Runs `netconvert` on the node and edge files into `out`.
pub fn netconvert(nodes: &Path, edges: &Path, args: &[String], out: &Path) -> Result<(), SimError> {
    let mut cmd = Command::new("netconvert");
    cmd.arg("--node-files")
        .arg(nodes)
        .arg("--edge-files")
        .arg(edges)
        .args(args)
        .arg("--output-file")
        .arg(out);
    let output = cmd.output().map_err(|source| SimError::Spawn {
        program: "netconvert",
        source,
    })?;
    if !output.status.success() {
        return Err(SimError::Failed {
            program: "netconvert",
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// What a `sumo` run is given.
#[derive(Debug, Clone)]
pub struct SumoArgs<'a> {
    /// The network.
    pub net: &'a Path,
    /// The demand.
    pub routes: &'a Path,
    /// Additional files.
    pub additional: &'a [PathBuf],
    /// Simulated seconds.
    pub end_s: f64,
    /// Step length.
    pub step_s: f64,
    /// Random seed (departures, driver imperfection).
    pub seed: u64,
}

/// The `sumo` command for one run: headless, outputs to `files`, teleporting off (a starved
/// vehicle must show as a long wait, not vanish), every collision checked and reported.
pub fn sumo_command(a: &SumoArgs<'_>, files: &RunFiles) -> Result<Command, SimError> {
    let log = std::fs::File::create(&files.log).map_err(|source| SimError::Write {
        path: files.log.clone(),
        source,
    })?;
    let log2 = log.try_clone().map_err(|source| SimError::Write {
        path: files.log.clone(),
        source,
    })?;
    let mut cmd = Command::new("sumo");
    cmd.arg("--net-file")
        .arg(a.net)
        .arg("--route-files")
        .arg(a.routes);
    if !a.additional.is_empty() {
        let list: Vec<String> = a
            .additional
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        cmd.arg("--additional-files").arg(list.join(","));
    }
    cmd.args(["--begin", "0", "--end"])
        .arg(a.end_s.to_string())
        .arg("--step-length")
        .arg(a.step_s.to_string())
        .arg("--seed")
        .arg(a.seed.to_string())
        .args(["--no-step-log", "true", "--time-to-teleport", "-1"])
        .arg("--tripinfo-output")
        .arg(&files.tripinfo)
        .args(["--tripinfo-output.write-unfinished", "true"])
        .args([
            "--collision.action",
            "warn",
            "--collision.check-junctions",
            "true",
        ])
        .arg("--collision-output")
        .arg(&files.collisions)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    Ok(cmd)
}

/// Runs `cmd` to the end.
pub fn run_to_end(mut cmd: Command, files: &RunFiles) -> Result<(), SimError> {
    let status = cmd.status().map_err(|source| SimError::Spawn {
        program: "sumo",
        source,
    })?;
    if !status.success() {
        return Err(failed(files, &format!("exited with {status}")));
    }
    Ok(())
}

/// A `sumo` started with `--remote-port`; killed if dropped before [`Sumo::wait`].
#[derive(Debug)]
pub struct Sumo {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    files: RunFiles,
}

impl Sumo {
    /// Starts `cmd` listening for TraCI on a free loopback port.
    pub fn start(mut cmd: Command, files: &RunFiles) -> Result<Sumo, SimError> {
        // Ask the kernel for a free port, then hand it to sumo (it binds it a moment later).
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|source| SimError::Spawn {
                program: "sumo",
                source,
            })?
            .port();
        cmd.arg("--remote-port").arg(port.to_string());
        let child = cmd.spawn().map_err(|source| SimError::Spawn {
            program: "sumo",
            source,
        })?;
        Ok(Sumo {
            child: Some(child),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            files: files.clone(),
        })
    }

    /// Waits (at most `limit`) for sumo to write its outputs and exit after the TraCI close.
    pub fn wait(mut self, limit: Duration) -> Result<(), SimError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let began = Instant::now();
        loop {
            let status = child.try_wait().map_err(|source| SimError::Spawn {
                program: "sumo",
                source,
            })?;
            match status {
                Some(s) if s.success() => return Ok(()),
                Some(s) => return Err(failed(&self.files, &format!("exited with {s}"))),
                None if began.elapsed() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(failed(&self.files, "did not exit after the TraCI close"));
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// sumo's last log lines, to explain a failure.
    pub fn failure(&self, what: &str) -> SimError {
        failed(&self.files, what)
    }
}

impl Drop for Sumo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn failed(files: &RunFiles, what: &str) -> SimError {
    let log = std::fs::read_to_string(&files.log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    SimError::Failed {
        program: "sumo",
        message: format!("{what} (log {}: {})", files.log.display(), tail.join(" | ")),
    }
}
