//! Time strings in PxL: durations (`'5m'`, `'1h30m'`, `'250ms'`) and the start/end times of
//! `px.DataFrame`, either relative to now (`'-5m'`) or absolute (`'2024-01-01T00:00:00Z'`).

use arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;

/// Unit suffixes; where two match ("m" and "ms") the longer one wins.
const UNITS: [(&str, i64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Parses a duration made of `<integer><unit>` parts (units `ns`, `us`, `ms`, `s`, `m`, `h`, `d`),
/// e.g. `5m` or `1h30m`, into nanoseconds. `None` when malformed, empty or overflowing.
pub fn parse_duration(text: &str) -> Option<i64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let amount: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, scale) = UNITS
            .into_iter()
            .filter(|(unit, _)| rest.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())?;
        rest = &rest[unit.len()..];
        total = total.checked_add(amount.checked_mul(scale)?)?;
    }
    Some(total)
}

/// Resolves a start or end time string to nanoseconds since the Unix epoch: `now`, `-<duration>`
/// or `+<duration>` relative to `now_ns`, or an absolute RFC 3339-like timestamp (UTC when it has no
/// offset). The error text says what was expected.
pub fn parse_time(text: &str, now_ns: i64) -> Result<i64, String> {
    let trimmed = text.trim();
    let relative =
        |sign: i64, rest: &str| parse_duration(rest).and_then(|d| now_ns.checked_add(sign * d));
    let parsed = if trimmed == "now" {
        Some(now_ns)
    } else if let Some(rest) = trimmed.strip_prefix('-') {
        relative(-1, rest)
    } else if let Some(rest) = trimmed.strip_prefix('+') {
        relative(1, rest)
    } else if trimmed.starts_with(|c: char| c.is_ascii_digit()) && trimmed.contains('-') {
        string_to_timestamp_nanos(trimmed).ok()
    } else {
        None
    };
    parsed.ok_or_else(|| {
        format!(
            "invalid time '{text}': want a relative time like '-5m', '-30s' or '-1h', \
             or an absolute time like '2024-01-01T00:00:00Z'"
        )
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;
    const S: i64 = 1_000_000_000;

    #[test]
    fn relative_times_count_back_from_now() {
        assert_eq!(parse_time("-5m", NOW), Ok(NOW - 300 * S));
        assert_eq!(parse_time("-30s", NOW), Ok(NOW - 30 * S));
        assert_eq!(parse_time("-1h", NOW), Ok(NOW - 3600 * S));
        assert_eq!(parse_time("-1h30m", NOW), Ok(NOW - 5400 * S));
        assert_eq!(parse_time("-2d", NOW), Ok(NOW - 2 * 86_400 * S));
        assert_eq!(parse_time("-250ms", NOW), Ok(NOW - 250_000_000));
        assert_eq!(parse_time("+1m", NOW), Ok(NOW + 60 * S));
        assert_eq!(parse_time("now", NOW), Ok(NOW));
    }

    #[test]
    fn absolute_times_are_utc_unless_they_say_otherwise() {
        assert_eq!(parse_time("2023-11-14T22:13:20Z", NOW), Ok(NOW));
        assert_eq!(parse_time("2023-11-14 22:13:20", NOW), Ok(NOW));
        assert_eq!(parse_time("2023-11-14T23:13:20+01:00", NOW), Ok(NOW));
    }

    #[test]
    fn malformed_times_are_refused_with_the_expected_forms() {
        for bad in [
            "",
            "5m",
            "-",
            "-5",
            "-5 minutes",
            "-m",
            "yesterday",
            "-5x",
            "2023-13-45",
        ] {
            let err = parse_time(bad, NOW).unwrap_err();
            assert!(
                err.contains("want a relative time like '-5m'"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn durations_read_every_unit() {
        assert_eq!(parse_duration("7ns"), Some(7));
        assert_eq!(parse_duration("3us"), Some(3_000));
        assert_eq!(parse_duration("3µs"), Some(3_000));
        assert_eq!(parse_duration("2ms"), Some(2_000_000));
        assert_eq!(parse_duration("1m1s"), Some(61 * S));
        assert_eq!(parse_duration("1d"), Some(86_400 * S));
        assert_eq!(parse_duration("99999999999999999h"), None);
    }

    proptest! {
        #[test]
        fn minutes_and_seconds_compose(m in 0i64..100_000, s in 0i64..100_000) {
            prop_assert_eq!(parse_duration(&format!("{m}m{s}s")), Some(m * 60 * S + s * S));
            prop_assert_eq!(parse_time(&format!("-{m}m"), NOW), Ok(NOW - m * 60 * S));
        }

        #[test]
        fn never_panics(text in "\\PC{0,20}") {
            let _ = parse_time(&text, NOW);
            let _ = parse_duration(&text);
        }
    }
}
