//! "Did you mean ...?" for unknown tables, columns, functions and names.

/// The candidate closest to `name`, if one is close enough to be worth suggesting: within an edit
/// distance of about a third of the name (at least 2), or containing / contained in it (e.g.
/// `status` → `resp_status`). Case is ignored; when several candidates are equally close the
/// suggestion would be a guess, so there is none.
pub fn closest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let wanted = name.to_lowercase();
    let budget = (wanted.chars().count() / 3).max(2);
    let mut best: Option<(usize, &str)> = None;
    let mut tied = false;
    for candidate in candidates {
        let lower = candidate.to_lowercase();
        if lower == wanted {
            return Some(candidate);
        }
        let distance = edit_distance(&wanted, &lower);
        let related = wanted.chars().count() >= 3
            && (lower.contains(wanted.as_str()) || wanted.contains(lower.as_str()));
        if distance > budget && !related {
            continue;
        }
        match best {
            Some((d, _)) if distance > d => {}
            Some((d, _)) if distance == d => tied = true,
            _ => {
                best = Some((distance, candidate));
                tied = false;
            }
        }
    }
    if tied {
        return None;
    }
    best.map(|(_, candidate)| candidate)
}

/// `"; did you mean 'x'?"` or nothing.
pub fn did_you_mean<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    closest(name, candidates)
        .map(|c| format!("; did you mean '{c}'?"))
        .unwrap_or_default()
}

/// Damerau–Levenshtein distance (optimal string alignment) over characters, so a swapped pair of
/// letters counts as one typo.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: two back, previous, current.
    let mut two_back = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(two_back[j - 2] + 1);
            }
        }
        std::mem::swap(&mut two_back, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const TABLES: [&str; 3] = ["http_events", "conn_stats", "process_stats"];

    #[test]
    fn suggests_the_table_one_letter_away() {
        assert_eq!(closest("http_event", TABLES), Some("http_events"));
        assert_eq!(closest("conn_stat", TABLES), Some("conn_stats"));
    }

    #[test]
    fn suggests_a_column_that_contains_the_name() {
        assert_eq!(
            closest("status", ["resp_status", "latency"]),
            Some("resp_status")
        );
    }

    #[test]
    fn suggests_nothing_for_an_unrelated_name() {
        assert_eq!(closest("dns_events", TABLES), None);
        assert_eq!(did_you_mean("zzz", TABLES), "");
    }

    #[test]
    fn transposed_letters_are_one_edit() {
        assert_eq!(edit_distance("latnecy", "latency"), 1);
        assert_eq!(
            closest("latnecy", ["latency", "local_addr"]),
            Some("latency")
        );
    }

    #[test]
    fn equally_close_candidates_suggest_nothing() {
        assert_eq!(closest("p95", ["p25", "p50", "p90", "p99"]), None);
        assert_eq!(closest("p5O", ["p25", "p50", "p90", "p99"]), Some("p50"));
    }

    #[test]
    fn case_is_ignored() {
        assert_eq!(closest("HTTP_EVENTS", TABLES), Some("http_events"));
    }

    proptest! {
        #[test]
        fn distance_is_a_symmetric_bounded_metric(a in "[a-d]{0,8}", b in "[a-d]{0,8}") {
            let d = edit_distance(&a, &b);
            prop_assert_eq!(d, edit_distance(&b, &a));
            prop_assert_eq!(d == 0, a == b);
            prop_assert!(d <= a.len().max(b.len()));
            prop_assert!(d >= a.len().abs_diff(b.len()));
        }

        #[test]
        fn one_deleted_character_is_always_suggested(word in "[a-z_]{3,12}", at in 0usize..12) {
            let at = at % word.len();
            let mut typo = word.clone();
            typo.remove(at);
            prop_assert_eq!(closest(&typo, [word.as_str(), "zzzzzzzzzzzzzzzz"]), Some(word.as_str()));
        }
    }
}
