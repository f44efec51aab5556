//! Event snapshots on disk: annotated JPEGs in `snapshots.dir`, bounded by `max_files`,
//! `max_bytes` and `min_free_disk_mib`. The oldest files go first; writing pauses while the
//! disk is low. Each file is written to a temporary name in the same directory and renamed,
//! so a crash leaves no half-written snapshot, and temporaries left by one are removed at
//! start-up.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Files this store names: `<13-digit unix ms>-<6-digit seq>-<what>.jpg`, so sorting the names
/// sorts them by age.
const SUFFIX: &str = ".jpg";
const TMP_SUFFIX: &str = ".jpg.tmp";

/// Why the snapshot folder could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The folder could not be created or read.
    #[error("snapshots.dir: {0}: {1}")]
    Dir(PathBuf, std::io::Error),
}

/// What the store did; shown in `/metrics`.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Snapshots written.
    pub saved: AtomicU64,
    /// Old snapshots deleted to keep within `max_files` / `max_bytes`.
    pub rotated: AtomicU64,
    /// Snapshots not written: the disk was low, the file larger than `max_bytes`, or a write
    /// failed.
    pub skipped: AtomicU64,
}

/// The bounds of the snapshot folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most files kept.
    pub max_files: usize,
    /// Most bytes kept, over every file.
    pub max_bytes: u64,
    /// Writing pauses while the file system has less free space than this (MiB).
    pub min_free_disk_mib: u64,
}

/// The snapshot folder and what is in it, oldest first.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    limits: StoreLimits,
    files: VecDeque<(PathBuf, u64)>,
    bytes: u64,
    seq: u64,
    counters: Arc<StoreCounters>,
}

impl SnapshotStore {
    /// Opens (creating) `dir`, removes temporaries a crash left, and takes stock of the
    /// snapshots already there, deleting the oldest beyond the limits.
    pub fn open(dir: &Path, limits: StoreLimits) -> Result<SnapshotStore, StoreError> {
        let err = |e| StoreError::Dir(dir.to_path_buf(), e);
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TMP_SUFFIX) {
                let _ = std::fs::remove_file(entry.path());
            } else if name.ends_with(SUFFIX)
                && name.as_bytes().first().is_some_and(u8::is_ascii_digit)
            {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                found.push((entry.path(), len));
            }
        }
        found.sort();
        let mut store = SnapshotStore {
            dir: dir.to_path_buf(),
            limits,
            bytes: found.iter().map(|f| f.1).sum(),
            // Grows with the folder up to max_files (it never holds more); a large bound does
            // not reserve its whole size up front.
            files: VecDeque::with_capacity(limits.max_files.min(4096) + 1),
            seq: 0,
            counters: Arc::default(),
        };
        store.files.extend(found);
        store.make_room(0);
        Ok(store)
    }

    /// The counters, shareable with `/metrics`.
    pub fn counters(&self) -> &Arc<StoreCounters> {
        &self.counters
    }

    /// Files and bytes kept now.
    pub fn usage(&self) -> (usize, u64) {
        (self.files.len(), self.bytes)
    }

    /// Deletes the oldest files until one of `incoming` bytes fits both limits.
    fn make_room(&mut self, incoming: u64) {
        let full = |s: &Self| {
            s.files.len() + usize::from(incoming > 0) > s.limits.max_files
                || s.bytes + incoming > s.limits.max_bytes
        };
        while full(self) {
            let Some((path, len)) = self.files.pop_front() else {
                break;
            };
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("snapshots: cannot delete {}: {e}", path.display()),
            }
            self.bytes = self.bytes.saturating_sub(len);
            self.counters.rotated.fetch_add(1, Relaxed);
        }
    }

    /// Writes `jpeg` as a snapshot described by `what` (e.g. `highway-line-gantry-bus`),
    /// taken at `unix_ms`. Returns the file written, or `None` when it was skipped (counted).
    pub fn save(&mut self, unix_ms: u64, what: &str, jpeg: &[u8]) -> Option<PathBuf> {
        let len = jpeg.len() as u64;
        if len > self.limits.max_bytes {
            self.skip(format_args!("{len} bytes is more than snapshots.max_bytes"));
            return None;
        }
        match free_disk_mib(&self.dir) {
            Some(free) if free < self.limits.min_free_disk_mib => {
                self.skip(format_args!(
                    "{free} MiB free, below snapshots.min_free_disk_mib"
                ));
                return None;
            }
            _ => {}
        }
        self.make_room(len);
        self.seq += 1;
        let name = format!(
            "{unix_ms:013}-{:06}-{}",
            self.seq % 1_000_000,
            safe_name(what)
        );
        let path = self.dir.join(format!("{name}{SUFFIX}"));
        let tmp = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(jpeg))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            self.skip(format_args!("cannot write {}: {e}", path.display()));
            return None;
        }
        self.files.push_back((path.clone(), len));
        self.bytes += len;
        self.counters.saved.fetch_add(1, Relaxed);
        Some(path)
    }

    fn skip(&self, why: std::fmt::Arguments<'_>) {
        let n = self.counters.skipped.fetch_add(1, Relaxed) + 1;
        if n.is_power_of_two() {
            log::warn!("snapshots: skipped ({n} so far): {why}");
        }
    }
}

/// `what` with anything but ASCII letters, digits, `-` and `_` replaced by `_`.
fn safe_name(what: &str) -> String {
    what.chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Free space for unprivileged users on the file system holding `dir`, in MiB.
fn free_disk_mib(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `stat` points to
    // writable memory of the struct's size, which statvfs fills on success.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialized `stat`.
    let stat = unsafe { stat.assume_init() };
    // The field types differ across targets (32-bit on armv7), hence the casts.
    #[allow(clippy::unnecessary_cast)]
    let free = stat.f_bavail as u64 * stat.f_frsize as u64;
    Some(free / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_files: usize, max_bytes: u64) -> StoreLimits {
        StoreLimits {
            max_files,
            max_bytes,
            min_free_disk_mib: 0,
        }
    }

    #[test]
    fn keeps_within_files_and_bytes_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SnapshotStore::open(dir.path(), limits(3, 1000)).unwrap();
        for i in 0..5u64 {
            store.save(1000 + i, &format!("e{i}"), &[0u8; 100]).unwrap();
        }
        assert_eq!(store.usage(), (3, 300));
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert!(names[0].ends_with("-e2.jpg"), "{names:?}");
        // The file count binds: one more goes for the 450-byte file (3 files, 650 bytes).
        store.save(2000, "big", &[0u8; 450]).unwrap();
        assert_eq!(store.usage(), (3, 650));
        // Then the bytes bind: for 600 more, e3 goes (count), then e4 and the 450 (bytes).
        store.save(2001, "bigger", &[0u8; 600]).unwrap();
        assert_eq!(store.usage(), (1, 600));
        assert_eq!(store.counters().rotated.load(Relaxed), 6);
        // Larger than max_bytes on its own: skipped, nothing deleted for it.
        assert!(store.save(3000, "huge", &[0u8; 1001]).is_none());
        assert_eq!(store.counters().skipped.load(Relaxed), 1);
    }

    #[test]
    fn reopening_removes_temporaries_and_applies_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0000000000001-000001-x.jpg.tmp"), b"half").unwrap();
        for i in 0..4 {
            std::fs::write(
                dir.path().join(format!("000000000000{i}-00000{i}-x.jpg")),
                [0u8; 10],
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"kept").unwrap();
        let store = SnapshotStore::open(dir.path(), limits(2, 1000)).unwrap();
        assert_eq!(store.usage(), (2, 20));
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "0000000000002-000002-x.jpg",
                "0000000000003-000003-x.jpg",
                "notes.txt"
            ]
        );
    }

    #[test]
    fn a_low_disk_pauses_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SnapshotStore::open(
            dir.path(),
            StoreLimits {
                min_free_disk_mib: u64::MAX,
                ..limits(10, 1000)
            },
        )
        .unwrap();
        assert!(store.save(1, "x", b"jpeg").is_none());
        assert_eq!(store.counters().skipped.load(Relaxed), 1);
        assert_eq!(store.usage(), (0, 0));
    }
}
