use std::fmt;
use std::str::FromStr;

/// Pixie's unique process id: the same pid can be reused on a node and across nodes, so a process is
/// named by the agent that saw it (`asid`), its pid and its start time (clock ticks since boot, field 22
/// of `/proc/<pid>/stat`).
///
/// Stored in tables as text, `"asid:pid:start_time_ticks"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Upid {
    pub asid: u32,
    pub pid: u32,
    pub start_time_ticks: u64,
}

impl Upid {
    pub fn new(asid: u32, pid: u32, start_time_ticks: u64) -> Self {
        Upid {
            asid,
            pid,
            start_time_ticks,
        }
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.asid, self.pid, self.start_time_ticks)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid upid {0:?}: want \"asid:pid:start_time_ticks\"")]
pub struct UpidParseError(pub String);

impl FromStr for Upid {
    type Err = UpidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UpidParseError(s.to_owned());
        let mut parts = s.split(':');
        let (Some(asid), Some(pid), Some(start), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err());
        };
        Ok(Upid {
            asid: asid.parse().map_err(|_| err())?,
            pid: pid.parse().map_err(|_| err())?,
            start_time_ticks: start.parse().map_err(|_| err())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_colon_separated_text() {
        assert_eq!(Upid::new(7, 1234, 987654).to_string(), "7:1234:987654");
    }

    #[test]
    fn parses_its_own_display() {
        let upid = Upid::new(u32::MAX, 1, u64::MAX);
        assert_eq!(upid.to_string().parse::<Upid>(), Ok(upid));
    }

    #[test]
    fn rejects_wrong_part_counts_and_non_numbers() {
        for bad in ["", "1:2", "1:2:3:4", "a:2:3", "1:-2:3", "1:2:", " 1:2:3"] {
            assert!(bad.parse::<Upid>().is_err(), "{bad:?} parsed");
        }
    }
}
