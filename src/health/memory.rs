//! Resident memory of this process, read from `/proc` into stack buffers so the watchdog and
//! the soak test can sample it without allocating.

use std::fs::File;
use std::io::Read;

/// Reads `path` into `buf`, returning the filled part; `None` if it cannot be read.
fn read_proc<'a>(path: &str, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    let mut f = File::open(path).ok()?;
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    Some(&buf[..len])
}

fn parse_u64(field: &[u8]) -> Option<u64> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    field.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on error, handled below.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// Current resident set size in bytes (`/proc/self/statm`, second field).
pub fn rss_bytes() -> Option<u64> {
    let mut buf = [0u8; 256];
    let text = read_proc("/proc/self/statm", &mut buf)?;
    let pages = parse_u64(text.split(|&b| b == b' ').nth(1)?)?;
    Some(pages * page_size())
}

/// Peak resident set size in bytes (`VmHWM` in `/proc/self/status`).
pub fn peak_rss_bytes() -> Option<u64> {
    let mut buf = [0u8; 4096];
    let text = read_proc("/proc/self/status", &mut buf)?;
    let line = text
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(b"VmHWM:"))?;
    let kb = line[6..]
        .split(|&b| b == b' ' || b == b'\t')
        .find(|f| !f.is_empty())?;
    Some(parse_u64(kb)? * 1024)
}

/// Bytes in use by glibc's allocator, across all arenas: what C/C++ code holds on the heap.
#[cfg(target_env = "gnu")]
pub fn heap_in_use() -> HeapUsage {
    // SAFETY: mallinfo2 only reads the allocator's statistics; it has no preconditions.
    let m = unsafe { libc::mallinfo2() };
    HeapUsage {
        bytes: m.uordblks as u64 + m.hblkhd as u64,
        mmapped_blocks: m.hblks as u64,
    }
}

/// Heap figures from [`heap_in_use`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapUsage {
    /// Bytes allocated and not freed (arena chunks plus mmapped blocks).
    pub bytes: u64,
    /// Blocks allocated with mmap.
    pub mmapped_blocks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_peak() {
        let rss = rss_bytes().unwrap();
        let peak = peak_rss_bytes().unwrap();
        assert!(rss > 100_000 && peak >= rss / 2, "rss {rss} peak {peak}");
    }

    #[test]
    fn parses_only_plain_numbers() {
        assert_eq!(parse_u64(b"1234"), Some(1234));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"99999999999999999999999"), None);
    }

    #[cfg(target_env = "gnu")]
    #[test]
    fn heap_usage_sees_a_large_allocation() {
        let before = heap_in_use().bytes;
        let v = std::hint::black_box(vec![1u8; 64 << 20]);
        assert!(heap_in_use().bytes >= before + (60 << 20));
        drop(v);
    }
}
