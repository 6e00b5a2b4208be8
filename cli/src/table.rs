//! The text tables of `kubectl pixie get` and `status`, laid out like kubectl's: upper-case headers,
//! left-aligned columns three spaces apart, no borders, and ages in kubectl's short human form.

use std::time::Duration;

/// What kubectl prints for a value that is not there.
pub const NONE: &str = "<none>";

/// Rows of text cells under a header row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; a short row is padded with empty cells so that every row has every column.
    pub fn push<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.headers.len().max(row.len()), String::new());
        self.rows.push(row);
    }

    /// Puts `header` in front of the other columns, with `cells[i]` in row `i` (kubectl's
    /// NAMESPACE column under `-A`).
    pub fn prepend_column(&mut self, header: &str, cells: &[String]) {
        self.headers.insert(0, header.to_owned());
        for (row, cell) in self.rows.iter_mut().zip(cells) {
            row.insert(0, cell.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines: columns as wide as their widest cell plus three spaces, the last column
    /// not padded (so no line ends in spaces).
    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[i] - cell.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// kubectl's age format (`HumanDuration` in k8s.io/apimachinery): `45s`, `5m30s` under ten minutes,
/// `3h` and `3h20m`, `5d` and `2d4h` under a week, then `12d`, then years.
pub fn age(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        match days % 365 {
            0 => format!("{}y", days / 365),
            d => format!("{}y{d}d", days / 365),
        }
    } else {
        format!("{}y", days / 365)
    }
}

/// The age of an RFC 3339 timestamp (`metadata.creationTimestamp`) at `now`, or `<none>` when
/// there is no timestamp or it does not parse. A time slightly in the future (clock skew) is `0s`.
pub fn age_since(timestamp: Option<&str>, now: k8s_openapi::jiff::Timestamp) -> String {
    let Some(then) = timestamp.and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok()) else {
        return NONE.to_owned();
    };
    let elapsed = now.duration_since(then);
    age(elapsed.try_into().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_plus_three_spaces() {
        let mut table = Table::new(["NAME", "READY", "AGE"]);
        table.push(["pixie", "True", "5m"]);
        table.push(["a-much-longer-name", "False", "12d"]);
        assert_eq!(
            table.render(),
            "NAME                 READY   AGE\n\
             pixie                True    5m\n\
             a-much-longer-name   False   12d\n"
        );
    }

    #[test]
    fn an_empty_last_cell_leaves_no_trailing_spaces_and_short_rows_are_padded() {
        let mut table = Table::new(["NAME", "MESSAGE"]);
        table.push(["x"]);
        assert_eq!(table.render(), "NAME   MESSAGE\nx\n");
    }

    #[test]
    fn a_prepended_column_goes_first() {
        let mut table = Table::new(["NAME"]);
        table.push(["pixie"]);
        table.push(["other"]);
        table.prepend_column("NAMESPACE", &["pl".into(), "team-a".into()]);
        assert_eq!(
            table.render(),
            "NAMESPACE   NAME\npl          pixie\nteam-a      other\n"
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        let s = Duration::from_secs;
        assert_eq!(age(s(0)), "0s");
        assert_eq!(age(s(119)), "119s");
        assert_eq!(age(s(120)), "2m");
        assert_eq!(age(s(5 * 60 + 30)), "5m30s");
        assert_eq!(age(s(10 * 60 + 30)), "10m");
        assert_eq!(age(s(179 * 60)), "179m");
        assert_eq!(age(s(3 * 3600)), "3h");
        assert_eq!(age(s(3 * 3600 + 20 * 60)), "3h20m");
        assert_eq!(age(s(47 * 3600)), "47h");
        assert_eq!(age(s(2 * 86400 + 4 * 3600)), "2d4h");
        assert_eq!(age(s(5 * 86400)), "5d");
        assert_eq!(age(s(12 * 86400)), "12d");
        assert_eq!(age(s(800 * 86400)), "2y70d");
        assert_eq!(age(s(3000 * 86400)), "8y");
    }

    #[test]
    fn ages_of_timestamps_tolerate_skew_and_absence() {
        let now: k8s_openapi::jiff::Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        assert_eq!(age_since(Some("2026-01-01T00:00:00Z"), now), "10m");
        assert_eq!(age_since(Some("2026-01-01T00:10:05Z"), now), "0s");
        assert_eq!(age_since(None, now), "<none>");
        assert_eq!(age_since(Some("yesterday"), now), "<none>");
    }
}
