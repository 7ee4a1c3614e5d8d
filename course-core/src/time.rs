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

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::utc_date_time(0), "1970-01-01 00:00");
        assert_eq!(super::utc_date_time(1_795_612_998), "2026-11-25 13:23");
        assert_eq!(super::utc_date_time(951_782_400), "2000-02-29 00:00");
        assert_eq!(super::utc_date_time(1_740_837_900), "2025-03-01 14:05");
    }
}
