//! UTC timestamps for what leaves the unit (MQTT events, data bins): RFC 3339 with
//! milliseconds, written straight to a `Write`, from the system's wall clock. Only records
//! carry wall time; every interval and timeout in edgewatch runs on [`crate::clock::Clock`].

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds in a day.
pub const DAY_S: u64 = 86_400;

/// The wall clock, as records read it; tests set it (see the impl for
/// [`crate::clock::ManualClock`], whose time then counts from the Unix epoch).
pub trait WallClock: Send + Sync + std::fmt::Debug {
    /// Time since the Unix epoch.
    fn unix_now(&self) -> Duration;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn unix_now(&self) -> Duration {
        unix_now()
    }
}

impl WallClock for crate::clock::ManualClock {
    fn unix_now(&self) -> Duration {
        crate::clock::Clock::now(self)
    }
}

/// Seconds since the Unix epoch, 0 when the clock is set before it.
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Seconds after local midnight now, in the system's time zone (`TZ`, else `/etc/localtime`;
/// daylight saving included), for time-of-day signal plans; `None` if the C library cannot
/// convert the time. The first call reads the zone file (and allocates); later calls do not.
pub fn local_seconds_after_midnight() -> Option<u32> {
    let now = libc::time_t::try_from(unix_now().as_secs()).ok()?;
    // SAFETY: `tm` is plain old data, for which all-zero bytes are a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: `localtime_r` is the re-entrant form: it reads `now` and writes only `tm`, both
    // valid and exclusively borrowed for the call, and keeps no pointer to either.
    let converted = unsafe { !libc::localtime_r(&now, &mut tm).is_null() };
    let secs = tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec.min(59);
    converted.then_some(u32::try_from(secs).ok()?)
}

/// True when the kernel says the wall clock is synchronised (by NTP, or anything else that
/// disciplines it through `adjtimex`). A Raspberry Pi has no real-time clock: until NTP has
/// synchronised, the wall clock may read 1970 or the time `fake-hwclock` last saved, and a
/// time-of-day plan chosen from it would be wrong. Read-only (`modes = 0`), so no privilege is
/// needed and nothing is changed. `STA_UNSYNC` in the status, a `TIME_ERROR` return, or a
/// failed call (a sandbox that denies it) all count as not synchronised. No allocation.
pub fn clock_synchronised() -> bool {
    // SAFETY: `timex` is plain old data, for which all-zero bytes are a valid value; zero
    // `modes` asks only to read.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: the call reads and writes only `tx`, valid and exclusively borrowed for the
    // call, and keeps no pointer to it; with `modes == 0` it changes no kernel state.
    let state = unsafe { read_timex(&mut tx) };
    state >= 0 && state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0
}

#[cfg(target_env = "gnu")]
use libc::ntp_adjtime as read_timex;
// musl has no `ntp_adjtime`; `adjtimex` with zero modes is the same read.
#[cfg(not(target_env = "gnu"))]
use libc::adjtimex as read_timex;

/// `(year, month, day)` of the civil date `days` after 1970-01-01 (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's `civil_from_days`: eras of 400 years, March-based years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of the civil date `(year, month, day)`; the inverse of
/// [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Howard Hinnant's `days_from_civil`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Writes `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn write_seconds<W: Write + ?Sized>(w: &mut W, secs: u64) -> io::Result<()> {
    let (y, mo, d) = civil_from_days((secs / DAY_S) as i64);
    let s = secs % DAY_S;
    write!(
        w,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Writes day `day` since the epoch as `YYYY-MM-DD`.
pub fn write_date<W: Write + ?Sized>(w: &mut W, day: u64) -> io::Result<()> {
    let (y, mo, d) = civil_from_days(day as i64);
    write!(w, "{y:04}-{mo:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` into days since the epoch; `None` unless it is exactly that, a real
/// date, on or after 1970-01-01.
pub fn parse_date(text: &[u8]) -> Option<u64> {
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    let year = digits(&text[0..4])?;
    let (month, day) = (digits(&text[5..7])?, digits(&text[8..10])?);
    if !(1..=12).contains(&month) || day == 0 || year < 1970 {
        return None;
    }
    let days = days_from_civil(year as i64, month as u32, day as u32);
    // 31 February comes back as a day of March: refuse it.
    let (_, m, d) = civil_from_days(days);
    ((m, d) == (month as u32, day as u32)).then_some(days as u64)
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into seconds since the epoch; `None` unless it is exactly
/// that and a real instant.
pub fn parse_seconds(text: &[u8]) -> Option<u64> {
    if text.len() != 20 || text[10] != b'T' || text[13] != b':' || text[16] != b':' {
        return None;
    }
    if text[19] != b'Z' {
        return None;
    }
    let day = parse_date(&text[..10])?;
    let (h, m, s) = (
        digits(&text[11..13])?,
        digits(&text[14..16])?,
        digits(&text[17..19])?,
    );
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(day * DAY_S + h * 3600 + m * 60 + s)
}

fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Writes `since_epoch` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn write_rfc3339<W: Write + ?Sized>(w: &mut W, since_epoch: Duration) -> io::Result<()> {
    let secs = since_epoch.as_secs() as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    write!(
        w,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(secs: u64, ms: u64) -> String {
        let mut out = Vec::new();
        write_rfc3339(&mut out, Duration::from_millis(secs * 1000 + ms)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn local_time_follows_the_zone() {
        let secs = local_seconds_after_midnight().expect("the C library converts the time");
        assert!(secs < 86_400);
        // The zone's offset from UTC is whole quarter hours (every zone in use is).
        let utc = (unix_now().as_secs() % 86_400) as i64;
        let offset = (i64::from(secs) - utc).rem_euclid(86_400);
        assert!(
            offset % 900 <= 1 || offset % 900 >= 899,
            "offset {offset} s"
        );
    }

    #[test]
    fn known_instants() {
        assert_eq!(text(0, 0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a year divisible by 400).
        assert_eq!(text(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(text(1_798_761_599, 999), "2026-12-31T23:59:59.999Z");
        assert_eq!(text(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn seconds_and_dates_round_trip_and_nonsense_is_refused() {
        for secs in [0u64, 951_782_400, 1_798_761_599, 4_107_542_400] {
            let mut out = Vec::new();
            write_seconds(&mut out, secs).unwrap();
            assert_eq!(parse_seconds(&out), Some(secs), "{secs}");
            assert_eq!(parse_date(&out[..10]), Some(secs / DAY_S));
        }
        let mut out = Vec::new();
        write_date(&mut out, 20_794).unwrap();
        assert_eq!(out, b"2026-12-07");
        for bad in [
            &b"2026-02-30"[..],
            b"2026-13-01",
            b"1969-12-31",
            b"2026-1-01",
            b"2026-12-07T",
            b"+026-12-07",
        ] {
            assert_eq!(parse_date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        for bad in [
            &b"2026-12-07T24:00:00Z"[..],
            b"2026-12-07T10:60:00Z",
            b"2026-12-07T10:00:00",
            b"2026-12-07 10:00:00Z",
        ] {
            assert_eq!(parse_seconds(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn days_round_trip_through_a_naive_calendar() {
        let mut days = 0i64;
        for year in 1970..2200i64 {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let lengths = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            for (m, &len) in lengths.iter().enumerate() {
                for d in 1..=len {
                    assert_eq!(civil_from_days(days), (year, m as u32 + 1, d));
                    assert_eq!(days_from_civil(year, m as u32 + 1, d), days);
                    days += 1;
                }
            }
        }
    }
}
