//! A record's `start` spelled out on the stack: RFC 3339, UTC, microseconds, exactly as
//! `humantime::format_rfc3339_micros` writes it (the records before this one were written with it), without
//! going through `fmt` and a `String` for every record.

use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub const LENGTH: usize = 27;

/// The first second humantime does not format (year 10000).
const YEAR_10000: u64 = 253_402_300_800;

/// `at` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` in `text`; `None` before 1970 or from year 10000 on, which the
/// caller leaves to humantime (its answers there are its own).
pub fn micros(at: SystemTime, text: &mut [u8; LENGTH]) -> Option<&str> {
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    let seconds = since.as_secs();
    if seconds >= YEAR_10000 {
        return None;
    }
    let micros = since.subsec_micros();
    let (year, month, day) = civil_date((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    let mut at = 0;
    let mut put = |value: u64, digits: u32, after: Option<u8>| {
        for place in (0..digits).rev() {
            text[at] = b'0' + (value / 10u64.pow(place) % 10) as u8;
            at += 1;
        }
        if let Some(separator) = after {
            text[at] = separator;
            at += 1;
        }
    };
    put(year as u64, 4, Some(b'-'));
    put(month, 2, Some(b'-'));
    put(day, 2, Some(b'T'));
    put(second_of_day / 3600, 2, Some(b':'));
    put(second_of_day / 60 % 60, 2, Some(b':'));
    put(second_of_day % 60, 2, Some(b'.'));
    put(u64::from(micros), 6, Some(b'Z'));
    std::str::from_utf8(&text[..]).ok()
}

/// Year, month and day of the day `days` after 1970-01-01 (proleptic Gregorian; Howard Hinnant's
/// `civil_from_days`).
fn civil_date(days: i64) -> (i64, u64, u64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u64;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u64;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ours(at: SystemTime) -> Option<String> {
        let mut text = [0u8; LENGTH];
        micros(at, &mut text).map(str::to_owned)
    }

    fn humantime(at: SystemTime) -> String {
        humantime::format_rfc3339_micros(at).to_string()
    }

    #[test]
    fn times_are_spelled_as_humantime_spells_them() {
        // Every day boundary of leap years, century years, the epoch, and the last second humantime takes.
        let mut seconds: Vec<u64> = vec![
            0,
            1,
            86_399,
            86_400,
            951_782_400,
            4_107_542_399,
            YEAR_10000 - 1,
        ];
        // A pseudo-random walk over the whole range, with its sub-second parts.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            seconds.push(state % YEAR_10000);
        }
        for (index, second) in seconds.into_iter().enumerate() {
            let nanos = (index as u32).wrapping_mul(2_654_435_761) % 1_000_000_000;
            let at = UNIX_EPOCH + Duration::new(second, nanos);
            assert_eq!(
                ours(at).as_deref(),
                Some(humantime(at).as_str()),
                "{second}.{nanos}"
            );
        }
    }

    #[test]
    fn times_humantime_would_not_take_are_left_to_it() {
        assert_eq!(ours(UNIX_EPOCH + Duration::from_secs(YEAR_10000)), None);
        assert_eq!(ours(UNIX_EPOCH - Duration::from_secs(1)), None);
    }
}
