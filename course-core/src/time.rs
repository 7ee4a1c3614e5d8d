//! Dates for people, without a date library.

/// `YYYY-MM-DD HH:MM` (UTC) of Unix seconds, without a date library.
pub fn utc_date_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60
    )
}

/// Unix seconds of a wall-clock `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS` read as UTC (a
/// caller subtracts its zone's offset); `None` for anything else, an impossible date
/// included.
pub fn parse_date_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = match text.split_once(' ') {
        Some((d, t)) => (d, Some(t.trim())),
        None => (text, None),
    };
    let num = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut d = date.split('-');
    let (year, month, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    if d.next().is_some() || !(1..=12).contains(&month) || day < 1 {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
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
    if day > month_days[(month - 1) as usize] {
        return None;
    }
    let seconds = match time {
        None => 0,
        Some(t) => {
            let mut t = t.split(':');
            let (h, m, s) = (num(t.next()?, 2)?, num(t.next()?, 2)?, num(t.next()?, 2)?);
            if t.next().is_some() || h > 23 || m > 59 || s > 59 {
                return None;
            }
            h * 3_600 + m * 60 + s
        }
    };
    // Howard Hinnant's days-from-civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + seconds)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parsed_dates() {
        use super::parse_date_time as p;
        assert_eq!(p("1970-01-01"), Some(0));
        assert_eq!(p("2026-11-25 13:23:18"), Some(1_795_612_998));
        assert_eq!(p("2000-02-29"), Some(951_782_400));
        assert_eq!(p("2100-12-31"), Some(4_133_894_400));
        for bad in [
            "",
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "2026-01-01 24:00:00",
            "2026-01-01T00:00:00",
            "0000-00-00 00:00:00",
            "2026-01-01 10:00",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(super::utc_date_time(0), "1970-01-01 00:00");
        assert_eq!(super::utc_date_time(1_795_612_998), "2026-11-25 13:23");
        assert_eq!(super::utc_date_time(951_782_400), "2000-02-29 00:00");
        assert_eq!(super::utc_date_time(1_740_837_900), "2025-03-01 14:05");
    }
}
