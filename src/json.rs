//! The few JSON pieces the summary line and `/health` share, written straight to a `Write`
//! with no intermediate strings.

use std::io::{self, Write};
use std::time::Duration;

use crate::control::SignalStatus;
use crate::health::stats::{Histogram, Stage};

/// Writes `s` as a JSON string literal.
pub fn string<W: Write + ?Sized>(w: &mut W, s: &str) -> io::Result<()> {
    w.write_all(b"\"")?;
    for c in s.chars() {
        match c {
            '"' => w.write_all(b"\\\"")?,
            '\\' => w.write_all(b"\\\\")?,
            c if (c as u32) < 0x20 => write!(w, "\\u{:04x}", c as u32)?,
            c => write!(w, "{c}")?,
        }
    }
    w.write_all(b"\"")
}

/// Writes `{"name": <value>, ...}`, each value written by `value`.
pub fn object<'a, T>(
    w: &mut dyn Write,
    entries: impl Iterator<Item = (&'a str, T)>,
    mut value: impl FnMut(&mut dyn Write, T) -> io::Result<()>,
) -> io::Result<()> {
    w.write_all(b"{")?;
    for (i, (name, v)) in entries.enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        string(w, name)?;
        w.write_all(b":")?;
        value(w, v)?;
    }
    w.write_all(b"}")
}

/// Writes `["a", "b", ...]`.
pub fn strings<'a>(w: &mut dyn Write, items: impl Iterator<Item = &'a str>) -> io::Result<()> {
    w.write_all(b"[")?;
    for (i, s) in items.enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        string(w, s)?;
    }
    w.write_all(b"]")
}

/// `{"class": count, ...}` for the counted classes.
pub fn class_counts(
    w: &mut dyn Write,
    classes: &[String],
    counts: impl Iterator<Item = u64>,
) -> io::Result<()> {
    object(w, classes.iter().map(String::as_str).zip(counts), |w, n| {
        write!(w, "{n}")
    })
}

/// `{"in": {...}, "out": {...}}` for one counting line.
pub fn line_counts(
    w: &mut dyn Write,
    classes: &[String],
    inbound: impl Iterator<Item = u64>,
    outbound: impl Iterator<Item = u64>,
) -> io::Result<()> {
    w.write_all(b"{\"in\":")?;
    class_counts(w, classes, inbound)?;
    w.write_all(b",\"out\":")?;
    class_counts(w, classes, outbound)?;
    w.write_all(b"}")
}

/// `{"stage": {"p50": ms, "p99": ms}, ...}`.
pub fn latency<'a>(
    w: &mut dyn Write,
    stages: &[Stage],
    hist: impl Fn(Stage) -> &'a Histogram,
) -> io::Result<()> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    object(w, stages.iter().map(|&s| (s.name(), hist(s))), |w, h| {
        write!(
            w,
            "{{\"p50\":{:.3},\"p99\":{:.3}}}",
            ms(h.quantile(0.5)),
            ms(h.quantile(0.99))
        )
    })
}

/// `{"group": "state", ...}` for the signal groups.
pub fn signal_groups(w: &mut dyn Write, status: &SignalStatus) -> io::Result<()> {
    object(w, status.states(), |w, state| {
        write!(w, "\"{}\"", state.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        string(&mut out, "a\"b\\c\nd").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\u000ad""#);
    }

    #[test]
    fn objects_and_counts() {
        let mut out = Vec::new();
        let classes = ["car".to_string(), "bus".to_string()];
        line_counts(
            &mut out,
            &classes,
            [1, 2].into_iter(),
            [3, 4, 5].into_iter(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"in":{"car":1,"bus":2},"out":{"car":3,"bus":4}}"#
        );
    }
}
