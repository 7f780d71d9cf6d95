//! UTC timestamps as config writes them: `YYYY-MM-DDTHH:MM:SSZ` (or a bare `YYYY-MM-DD`, meaning
//! midnight UTC), as milliseconds since the Unix epoch.

use crate::text::Text;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of `days_from_civil` (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses `2026-11-22T04:40:00Z` or `2026-11-22` into ms since the epoch; `None` if malformed.
pub fn parse_utc_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, time) = match s.cut(b'T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (s, None),
    };
    let mut dp = date.parts(b'-');
    let y: i64 = dp.next()?.int_as()?;
    let m: u32 = dp.next()?.int_as()?;
    let d: u32 = dp.next()?.int_as()?;
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    let secs_of_day = match time {
        None => 0,
        Some(t) => {
            let t = t.before(b'.');
            let mut tp = t.parts(b':');
            let h: u64 = tp.next()?.int_as()?;
            let mi: u64 = tp.next()?.int_as()?;
            let se: u64 = tp.next()?.int_as()?;
            if tp.next().is_some() || h > 23 || mi > 59 || se > 60 {
                return None;
            }
            h * 3600 + mi * 60 + se
        }
    };
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    Some((days * 86_400 + secs_of_day) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_timestamps() {
        assert_eq!(parse_utc_ms("1970-01-01"), Some(0));
        assert_eq!(parse_utc_ms("1970-01-02T00:00:01Z"), Some(86_401_000));
        assert_eq!(parse_utc_ms("2026-12-01T00:00:00Z"), Some(1_796_083_200_000));
        assert_eq!(parse_utc_ms("2000-02-29"), Some(951_782_400_000));
        assert_eq!(parse_utc_ms("2026-11-22T04:51:29.521Z"), Some(1_795_323_089_000));
        for bad in ["2026-13-01", "2026-11-22T25:00:00Z", "2026-11-22T04:00:00", "yesterday", "2026-11"] {
            assert_eq!(parse_utc_ms(bad), None, "{bad}");
        }
    }
}
