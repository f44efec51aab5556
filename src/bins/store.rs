//! The bins on disk: one CSV file per UTC day, `YYYY-MM-DD.csv`, with a header line, appended
//! and fsynced at the end of each bin, kept within `retention_days` and `max_bytes` (the
//! oldest days go first), and read back by time range.
//!
//! A power cut can leave at most a torn last line (the bin being written); [`BinStore::open`]
//! cuts it off, and the reader skips any line that is not complete and well formed, so a
//! damaged file never stops a read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::accum::BinRecord;
use super::BinsError;
use crate::utc::{self, DAY_S};

/// The first line of every file.
pub const HEADER: &str =
    "start,end,kind,name,class,in,out,occupancy_pct,max_queue,frames,faults,degraded_s\n";
/// Lines longer than this are not rows (the reader skips them).
pub const MAX_LINE: usize = 1024;

/// Names the rows are written with, fixed at start-up.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Zone names and the index of the camera each is drawn on, in config order.
    pub zones: Vec<(String, usize)>,
    /// Line names and their cameras.
    pub lines: Vec<(String, usize)>,
    /// Counted class names.
    pub classes: Vec<String>,
}

/// Writes `name` as a CSV field, quoted when it holds a comma, a quote or a line break.
fn field(out: &mut Vec<u8>, name: &str) {
    if name.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        for b in name.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            // A line break inside a field would split the row for line-based readers.
            out.push(if b == b'\n' || b == b'\r' { b' ' } else { b });
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(name.as_bytes());
    }
}

/// `part` of `whole` as a percentage with one decimal, empty when `whole` is 0.
fn percent(out: &mut Vec<u8>, part: u32, whole: u32) -> io::Result<()> {
    match whole {
        0 => Ok(()),
        w => write!(out, "{:.1}", f64::from(part) * 100.0 / f64::from(w)),
    }
}

/// Appends the CSV rows of `record` to `out`: per zone and per line, one row per counted
/// class and one `all` row.
pub fn write_rows(record: &BinRecord, layout: &Layout, out: &mut Vec<u8>) -> io::Result<()> {
    let classes = layout.classes.len();
    let mut prefix = Vec::with_capacity(48);
    utc::write_seconds(&mut prefix, record.start)?;
    prefix.push(b',');
    utc::write_seconds(&mut prefix, record.end)?;
    let camera_tail = |out: &mut Vec<u8>, camera: usize| -> io::Result<()> {
        let c = record.cameras.get(camera).copied().unwrap_or_default();
        writeln!(
            out,
            ",{},{},{:.1}",
            c.frames,
            c.faults,
            c.degraded.as_secs_f64()
        )
    };
    for ((name, camera), z) in layout.zones.iter().zip(record.zones.iter()) {
        let frames = record.cameras.get(*camera).map_or(0, |c| c.frames);
        for class in 0..=classes {
            out.extend_from_slice(&prefix);
            out.extend_from_slice(b",zone,");
            field(out, name);
            out.push(b',');
            let (entries, exits, occupied, max) = if class == classes {
                out.extend_from_slice(b"all");
                let sum = |a: &[u32]| a[..classes].iter().map(|&n| u64::from(n)).sum::<u64>();
                (
                    sum(&z.entries),
                    sum(&z.exits),
                    z.occupied_frames,
                    z.max_queue,
                )
            } else {
                field(out, &layout.classes[class]);
                (
                    u64::from(z.entries[class]),
                    u64::from(z.exits[class]),
                    z.class_frames[class],
                    z.class_max[class],
                )
            };
            write!(out, ",{entries},{exits},")?;
            percent(out, occupied, frames)?;
            write!(out, ",{max}")?;
            camera_tail(out, *camera)?;
        }
    }
    for ((name, camera), l) in layout.lines.iter().zip(record.lines.iter()) {
        for class in 0..=classes {
            out.extend_from_slice(&prefix);
            out.extend_from_slice(b",line,");
            field(out, name);
            out.push(b',');
            let (inbound, outbound) = if class == classes {
                out.extend_from_slice(b"all");
                (
                    l.inbound[..classes].iter().sum::<u64>(),
                    l.outbound[..classes].iter().sum::<u64>(),
                )
            } else {
                field(out, &layout.classes[class]);
                (l.inbound[class], l.outbound[class])
            };
            write!(out, ",{inbound},{outbound},,")?;
            camera_tail(out, *camera)?;
        }
    }
    Ok(())
}

/// How much the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinLimits {
    /// Days of files kept before today's.
    pub retention_days: u32,
    /// Most bytes over every file.
    pub max_bytes: u64,
}

/// The folder of daily files, written by one thread.
#[derive(Debug)]
pub struct BinStore {
    dir: PathBuf,
    limits: BinLimits,
    /// The day file being appended to.
    current: Option<(u64, File)>,
}

/// The day of a file named `YYYY-MM-DD.csv`.
fn file_day(name: &std::ffi::OsStr) -> Option<u64> {
    let name = name.to_str()?.strip_suffix(".csv")?;
    utc::parse_date(name.as_bytes())
}

/// The name of day `day`'s file.
pub fn file_name(day: u64) -> String {
    let mut name = Vec::with_capacity(14);
    // Writing digits into a Vec cannot fail.
    let _ = utc::write_date(&mut name, day);
    name.extend_from_slice(b".csv");
    String::from_utf8(name).unwrap_or_default()
}

/// Every day file in `dir` with its size, oldest first.
fn day_files(dir: &Path) -> io::Result<Vec<(u64, u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(day) = file_day(&entry.file_name()) else {
            continue;
        };
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        files.push((day, len, entry.path()));
    }
    files.sort();
    Ok(files)
}

/// Cuts `path` back to its last complete line; returns the bytes cut.
fn cut_torn_tail(path: &Path) -> io::Result<u64> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut keep = len;
    let mut chunk = [0u8; 4096];
    // Backwards in chunks until a newline: everything after the last one is torn.
    while keep > 0 {
        let n = keep.min(chunk.len() as u64);
        file.seek(SeekFrom::Start(keep - n))?;
        file.read_exact(&mut chunk[..n as usize])?;
        match chunk[..n as usize].iter().rposition(|&b| b == b'\n') {
            Some(i) => {
                keep = keep - n + i as u64 + 1;
                break;
            }
            None => keep -= n,
        }
    }
    if keep < len {
        file.set_len(keep)?;
        file.sync_all()?;
    }
    Ok(len - keep)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BinStore {
    /// Opens (creating) `dir` and cuts any torn last line left by a power cut. Files already
    /// there are kept and appended to.
    pub fn open(dir: &Path, limits: BinLimits) -> Result<BinStore, BinsError> {
        let err = |source| BinsError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        for (_, _, path) in day_files(dir).map_err(err)? {
            match cut_torn_tail(&path) {
                Ok(0) => {}
                Ok(n) => log::warn!(
                    "bins: {}: cut a torn last line of {n} bytes (a power cut while writing)",
                    path.display()
                ),
                Err(e) => log::warn!("bins: {}: cannot check the last line: {e}", path.display()),
            }
        }
        Ok(BinStore {
            dir: dir.to_path_buf(),
            limits,
            current: None,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `rows` to day `day`'s file (with the header when the file is new) and syncs it
    /// to the disk. A failed write is cut back off, so the file never keeps half a bin.
    pub fn append(&mut self, day: u64, rows: &[u8]) -> io::Result<()> {
        if self.current.as_ref().is_none_or(|(d, _)| *d != day) {
            self.current = None;
            let path = self.dir.join(file_name(day));
            let file = OpenOptions::new().append(true).create(true).open(&path)?;
            if file.metadata()?.len() == 0 {
                (&file).write_all(HEADER.as_bytes())?;
                file.sync_all()?;
                sync_dir(&self.dir)?;
            }
            self.current = Some((day, file));
        }
        let Some((_, file)) = &mut self.current else {
            return Ok(());
        };
        let before = file.metadata()?.len();
        let written = file.write_all(rows).and_then(|()| file.sync_data());
        if written.is_err() {
            let _ = file.set_len(before);
            self.current = None;
        }
        written
    }

    /// Deletes the files of days more than `retention_days` before `today`, then the oldest
    /// until all fit in `max_bytes` (never `today`'s). Returns the files deleted.
    pub fn prune(&mut self, today: u64) -> io::Result<u64> {
        let files = day_files(&self.dir)?;
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        let oldest_kept = today.saturating_sub(u64::from(self.limits.retention_days));
        let mut deleted = 0;
        for (day, len, path) in files {
            let expired = day < oldest_kept;
            let over = total > self.limits.max_bytes;
            if day == today || !(expired || over) {
                continue;
            }
            if self.current.as_ref().is_some_and(|(d, _)| *d == day) {
                self.current = None;
            }
            fs::remove_file(&path)?;
            total -= len;
            deleted += 1;
        }
        Ok(deleted)
    }
}

/// Rows whose bin starts at or after `from` and before `to` (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// First second included.
    pub from: u64,
    /// First second excluded.
    pub to: u64,
}

/// A `from` or `to` that is not a UTC time or date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DD`.
    #[error(
        "{key}: `{value}` is not a UTC time like 2026-12-07T10:15:00Z or a date like 2026-12-07"
    )]
    BadTime {
        /// `from` or `to`.
        key: &'static str,
        /// What was given (cut to 64 bytes).
        value: String,
    },
    /// `to` is not after `from`.
    #[error("to: must be after from")]
    Empty,
}

impl TimeRange {
    /// Everything.
    pub const ALL: TimeRange = TimeRange {
        from: 0,
        to: u64::MAX,
    };

    /// From optional `from` and `to` values: a time, or a date (`from` its first second, `to`
    /// the day after it, so `to=2026-12-07` includes that day).
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<TimeRange, RangeError> {
        let time = |key: &'static str, value: &str, end_of_day: bool| {
            let b = value.as_bytes();
            let secs = match b.len() {
                10 => utc::parse_date(b).map(|d| (d + u64::from(end_of_day)) * DAY_S),
                _ => utc::parse_seconds(b),
            };
            secs.ok_or_else(|| RangeError::BadTime {
                key,
                value: value.chars().take(64).collect(),
            })
        };
        let from = from.map(|v| time("from", v, false)).transpose()?;
        let to = to.map(|v| time("to", v, true)).transpose()?;
        let range = TimeRange {
            from: from.unwrap_or(0),
            to: to.unwrap_or(u64::MAX),
        };
        if range.to <= range.from {
            return Err(RangeError::Empty);
        }
        Ok(range)
    }

    fn has_day(&self, day: u64) -> bool {
        let start = day.saturating_mul(DAY_S);
        start < self.to && start.saturating_add(DAY_S) > self.from
    }
}

/// The bin start of a row, when the line is a complete, well-formed row.
fn row_start(line: &[u8]) -> Option<u64> {
    if line.len() < 42 || line[20] != b',' || line[41] != b',' {
        return None;
    }
    let start = utc::parse_seconds(&line[..20])?;
    utc::parse_seconds(&line[21..41])?;
    Some(start)
}

/// Writes the header and every row of `dir` in `range` to `out`, oldest day first, reading
/// through `buf` (at least [`MAX_LINE`] bytes). Lines that are torn, too long or malformed
/// are skipped. Returns the rows written.
pub fn copy_range(
    dir: &Path,
    range: TimeRange,
    buf: &mut [u8],
    out: &mut dyn Write,
) -> io::Result<u64> {
    out.write_all(HEADER.as_bytes())?;
    let mut rows = 0;
    let files = match day_files(dir) {
        Ok(f) => f,
        // Nothing written yet: just the header.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for (day, _, path) in files {
        if !range.has_day(day) {
            continue;
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            // Pruned meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        rows += copy_file(file, range, buf, out)?;
    }
    Ok(rows)
}

fn copy_file(
    mut file: File,
    range: TimeRange,
    buf: &mut [u8],
    out: &mut dyn Write,
) -> io::Result<u64> {
    let mut rows = 0;
    let mut filled = 0;
    // Inside a line too long for the buffer: skip to its end.
    let mut skipping = false;
    loop {
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            // What is left has no newline: a torn last line, or one being written now.
            return Ok(rows);
        }
        filled += n;
        let mut at = 0;
        while let Some(i) = buf[at..filled].iter().position(|&b| b == b'\n') {
            let line = &buf[at..at + i];
            let end = at + i + 1;
            if !skipping && line.len() <= MAX_LINE {
                if let Some(start) = row_start(line) {
                    if start >= range.from && start < range.to {
                        out.write_all(&buf[at..end])?;
                        rows += 1;
                    }
                }
            }
            skipping = false;
            at = end;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        if filled == buf.len() {
            skipping = true;
            filled = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_take_times_and_whole_days() {
        let day = 20_794 * DAY_S; // 2026-12-07
        let r = TimeRange::parse(Some("2026-12-07"), Some("2026-12-07")).unwrap();
        assert_eq!((r.from, r.to), (day, day + DAY_S));
        let r = TimeRange::parse(Some("2026-12-07T10:15:00Z"), None).unwrap();
        assert_eq!((r.from, r.to), (day + 36_900, u64::MAX));
        assert_eq!(TimeRange::parse(None, None).unwrap(), TimeRange::ALL);
        let e = TimeRange::parse(Some("yesterday"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "from: `yesterday` is not a UTC time like 2026-12-07T10:15:00Z or a date like 2026-12-07"
        );
        assert_eq!(
            TimeRange::parse(Some("2026-12-08"), Some("2026-12-07")),
            Err(RangeError::Empty)
        );
        assert!(r.has_day(20_794) && !r.has_day(20_793));
    }

    #[test]
    fn names_with_commas_are_quoted() {
        let mut out = Vec::new();
        field(&mut out, "a,\"b\"");
        assert_eq!(out, b"\"a,\"\"b\"\"\"");
    }

    #[test]
    fn long_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let row = "2026-12-07T10:00:00Z,2026-12-07T10:15:00Z,zone,z,all,0,0,,0,0,0,0.0\n";
        let text = format!(
            "{HEADER}{}\n{row}garbage\n{row}2026-12-07T10:1",
            "x".repeat(3000)
        );
        fs::write(dir.path().join("2026-12-07.csv"), text).unwrap();
        let mut out = Vec::new();
        let rows = copy_range(dir.path(), TimeRange::ALL, &mut [0; 1024], &mut out).unwrap();
        assert_eq!(rows, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{HEADER}{row}{row}")
        );
    }
}
