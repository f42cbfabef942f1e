//! Instants and durations as the spec writes them (DOMAIN C1): unix milliseconds, ISO-8601 UTC
//! with milliseconds, and the `<D:short>` / `<D:long>` renderings used in messages.
//!
//! Calendar arithmetic is done by hand (proleptic Gregorian, days from civil) so the core needs
//! no date crate and never touches a clock.

/// An instant in unix milliseconds, or a duration in milliseconds.
pub type Millis = i64;

/// One second in milliseconds.
pub const SECOND: Millis = 1_000;
/// One minute in milliseconds.
pub const MINUTE: Millis = 60 * SECOND;
/// One hour in milliseconds.
pub const HOUR: Millis = 60 * MINUTE;

/// `n` seconds as milliseconds.
#[must_use]
pub const fn secs(n: i64) -> Millis {
    n * SECOND
}

/// `n` minutes as milliseconds.
#[must_use]
pub const fn mins(n: i64) -> Millis {
    n * MINUTE
}

/// `n` hours as milliseconds.
#[must_use]
pub const fn hours(n: i64) -> Millis {
    n * HOUR
}

/// "X is older than D" (C1): `now − X ≥ D`; a missing X is older than any D.
#[must_use]
pub fn older_than(x: Option<Millis>, d: Millis, now: Millis) -> bool {
    match x {
        None => true,
        Some(x) => now.saturating_sub(x) >= d,
    }
}

/// "X is within D" (C1): `now − X < D`; a missing X is never within.
#[must_use]
pub fn within(x: Option<Millis>, d: Millis, now: Millis) -> bool {
    match x {
        None => false,
        Some(x) => now.saturating_sub(x) < d,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats an instant as ISO-8601 UTC with milliseconds, e.g. `2026-06-01T10:00:00.000Z`.
#[must_use]
pub fn format_iso(ms: Millis) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (mi, rem) = (rem / 60_000, rem % 60_000);
    let (s, milli) = (rem / 1000, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an ISO-8601 instant: `YYYY-MM-DD`, optionally followed by `THH:MM[:SS[.fff…]]` and a zone
/// (`Z`, `+HH:MM`, `+HHMM`, `-HH:MM`); a date-time without a zone is read as UTC. Returns `None` for
/// anything else, including out-of-range fields.
#[must_use]
pub fn parse_iso(input: &str) -> Option<Millis> {
    let s = input.trim();
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (s.get(..i)?, Some(s.get(i + 1..)?)),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let (y, m, d) = (dp.next()?, dp.next()?, dp.next()?);
    if dp.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (digits(y)?, digits(m)?, digits(d)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    let Some(rest) = rest else { return Some(ms) };
    let (time, offset) = split_zone(rest)?;
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let mut tp = hms.split(':');
    let h = digits(tp.next().filter(|p| p.len() == 2)?)?;
    let mi = digits(tp.next().filter(|p| p.len() == 2)?)?;
    let sec = match tp.next() {
        Some(p) if p.len() == 2 => digits(p)?,
        Some(_) => return None,
        None if frac.is_some() => return None,
        None => 0,
    };
    if tp.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let milli = match frac {
        None => 0,
        Some(f) => {
            digits(f)?;
            let mut padded: String = f.chars().take(3).collect();
            while padded.len() < 3 {
                padded.push('0');
            }
            digits(&padded)?
        }
    };
    ms += h * 3_600_000 + mi * 60_000 + sec * 1000 + milli;
    Some(ms - offset)
}

fn split_zone(rest: &str) -> Option<(&str, Millis)> {
    if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        return Some((t, 0));
    }
    let Some(i) = rest.rfind(['+', '-']) else {
        return Some((rest, 0));
    };
    let (time, zone) = (rest.get(..i)?, rest.get(i..)?);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let z = zone.get(1..)?.replace(':', "");
    if z.len() != 4 {
        return None;
    }
    let (zh, zm) = (digits(z.get(..2)?)?, digits(z.get(2..)?)?);
    if zh > 23 || zm > 59 {
        return None;
    }
    Some((time, sign * (zh * 3_600_000 + zm * 60_000)))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `<D:short>` (C1): hours, minutes and seconds, zero parts left out, joined by spaces
/// (`2h 30min`, `2h`, `45s`). Sub-second remainders are dropped; zero is `0s`.
#[must_use]
pub fn short(d: Millis) -> String {
    let total = d / SECOND;
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}min"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

/// `<D:long>` (C1): in the largest of hours, minutes and seconds that divides it, singular for one
/// (`1 hour`, `15 minutes`, `90 seconds`).
#[must_use]
pub fn long(d: Millis) -> String {
    let (n, unit) = if d != 0 && d % HOUR == 0 {
        (d / HOUR, "hour")
    } else if d != 0 && d % MINUTE == 0 {
        (d / MINUTE, "minute")
    } else {
        (d / SECOND, "second")
    };
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Millis = 1_780_308_000_000;

    #[test]
    fn iso_formats_the_spec_instant() {
        assert_eq!(format_iso(T), "2026-06-01T10:00:00.000Z");
        assert_eq!(format_iso(T + 735_000), "2026-06-01T10:12:15.000Z");
        assert_eq!(format_iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_iso(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn iso_parses_common_forms() {
        assert_eq!(parse_iso("2026-06-01T10:00:00.000Z"), Some(T));
        assert_eq!(parse_iso("2026-06-01T10:00:00Z"), Some(T));
        assert_eq!(parse_iso("2026-06-01T12:00:00+02:00"), Some(T));
        assert_eq!(parse_iso("2026-06-01T10:00:00.5Z"), Some(T + 500));
        assert_eq!(parse_iso("2026-06-01"), Some(T - 10 * HOUR));
        assert_eq!(parse_iso("2026-06-01T10:00Z"), Some(T));
    }

    #[test]
    fn iso_rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30",
            "2026-06-01T25:00:00Z",
            "2026-6-1",
            "2026-06-01T10:00:00.abcZ",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_render_as_the_spec_writes_them() {
        assert_eq!(short(hours(2) + mins(30)), "2h 30min");
        assert_eq!(short(hours(2)), "2h");
        assert_eq!(short(secs(45)), "45s");
        assert_eq!(short(hours(24)), "24h");
        assert_eq!(long(hours(1)), "1 hour");
        assert_eq!(long(mins(15)), "15 minutes");
        assert_eq!(long(secs(90)), "90 seconds");
        assert_eq!(long(mins(30)), "30 minutes");
    }

    #[test]
    fn age_predicates_follow_c1() {
        assert!(older_than(None, 5, 0));
        assert!(older_than(Some(0), 5, 5));
        assert!(!older_than(Some(1), 5, 5));
        assert!(within(Some(1), 5, 5));
        assert!(!within(None, 5, 5));
    }
}
