//! The persistent fault latch: a conflict-monitor fault is written to a state file, so that a
//! restart (by the watchdog, systemd or a power cut) comes back in flash instead of clearing
//! the fault, as a cabinet's monitor unit holds its fault until a technician resets it.
//! `edgewatch reset-fault` removes the file.
//!
//! The file holds one line: the fault as the monitor reported it. It is written to a temporary
//! file beside it, synced, and renamed over it, and the directory is synced, so a power cut
//! leaves either no file or the whole one, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why the fault file could not be read, written or removed.
#[derive(Debug, thiserror::Error)]
pub enum LatchError {
    /// The file exists but could not be read.
    #[error("control.fault_file: cannot read {0}: {1}")]
    Read(PathBuf, io::Error),
    /// The file (or its directory) could not be written or synced.
    #[error("control.fault_file: cannot write {0}: {1}")]
    Write(PathBuf, io::Error),
    /// The file could not be removed.
    #[error("control.fault_file: cannot remove {0}: {1}")]
    Remove(PathBuf, io::Error),
}

/// The fault file of one unit.
#[derive(Debug, Clone)]
pub struct FaultLatch {
    path: PathBuf,
}

impl FaultLatch {
    /// The latch kept at `path` (`control.fault_file`).
    pub fn new(path: impl Into<PathBuf>) -> FaultLatch {
        FaultLatch { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The latched fault, if any. A file that exists but cannot be read is an error: the
    /// caller must then treat the unit as faulted (fail safe), not as clear.
    pub fn load(&self) -> Result<Option<String>, LatchError> {
        match fs::read(&self.path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let line = text.lines().next().unwrap_or("").trim();
                let reason = if line.is_empty() {
                    "(no reason recorded)"
                } else {
                    line
                };
                Ok(Some(reason.to_string()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LatchError::Read(self.path.clone(), e)),
        }
    }

    /// Latches `reason`: temporary file, fsync, rename over the file, fsync the directory.
    pub fn store(&self, reason: &str) -> Result<(), LatchError> {
        let err = |e| LatchError::Write(self.path.clone(), e);
        let dir = self.dir();
        fs::create_dir_all(dir).map_err(err)?;
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(err)?;
        writeln!(file, "{}", reason.replace('\n', " ")).map_err(err)?;
        file.sync_all().map_err(err)?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(err)?;
        sync_dir(dir).map_err(err)
    }

    /// Clears the latch; returns the fault it held, if any. A file that cannot be read is
    /// removed too (clearing it is the point), and reported as such.
    pub fn clear(&self) -> Result<Option<String>, LatchError> {
        let held = self
            .load()
            .unwrap_or_else(|e| Some(format!("an unreadable fault file ({e})")));
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LatchError::Remove(self.path.clone(), e)),
        }
        sync_dir(self.dir()).map_err(|e| LatchError::Remove(self.path.clone(), e))?;
        Ok(held)
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_loads_and_clears_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let latch = FaultLatch::new(dir.path().join("state/fault"));
        assert_eq!(latch.load().unwrap(), None);
        latch
            .store("conflicting greens: `main` and `minor`")
            .unwrap();
        assert_eq!(
            latch.load().unwrap().as_deref(),
            Some("conflicting greens: `main` and `minor`")
        );
        let names: Vec<_> = fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["fault"], "no temporary file left behind");
        assert!(latch.clear().unwrap().is_some());
        assert_eq!(latch.load().unwrap(), None);
        assert_eq!(latch.clear().unwrap(), None);
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_a_clear_latch() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be cannot be read as one.
        let latch = FaultLatch::new(dir.path());
        assert!(matches!(latch.load(), Err(LatchError::Read(..))));
    }
}
