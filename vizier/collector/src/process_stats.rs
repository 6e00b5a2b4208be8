//! `process_stats` from /proc: one row per process per scan, from `/proc/<pid>/stat` (faults, CPU
//! time, threads, memory) and `/proc/<pid>/io` (I/O bytes).
//!
//! Parsing is pure ([`parse_stat`], [`parse_io`]); [`ProcessStatsSource`] is the I/O edge. Processes
//! come and go while a scan runs, and `/proc/<pid>/io` is unreadable for other users' processes
//! unless we are root, so a vanished process is skipped and an unreadable `io` file gives zero I/O
//! columns rather than failing the scan.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pixie_store::Upid;
use pixie_store::tables::process_stats::Row;

/// The fields of `/proc/<pid>/stat` we use (see proc(5); field numbers are 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 1.
    pub pid: u32,
    /// Field 2, without its parentheses; may itself contain spaces and parentheses.
    pub comm: String,
    /// Field 3.
    pub state: char,
    /// Field 10.
    pub minor_faults: u64,
    /// Field 12.
    pub major_faults: u64,
    /// Field 14, clock ticks.
    pub utime_ticks: u64,
    /// Field 15, clock ticks.
    pub stime_ticks: u64,
    /// Field 20.
    pub num_threads: i64,
    /// Field 22, clock ticks since boot: with the pid, what makes a [`Upid`] unique on a host.
    pub start_time_ticks: u64,
    /// Field 23.
    pub vsize_bytes: u64,
    /// Field 24, pages.
    pub rss_pages: i64,
}

/// The counters of `/proc/<pid>/io` we use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcIo {
    pub rchar: u64,
    pub wchar: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no parenthesised comm field")]
    MissingComm,
    #[error("field {field} is missing")]
    MissingField { field: &'static str },
    #[error("field {field} is not a number: {value:?}")]
    InvalidNumber { field: &'static str, value: String },
}

/// Parses the one line of `/proc/<pid>/stat`.
///
/// `comm` is whatever the process named itself, so it can hold spaces and `)`; it runs from the
/// first `(` to the *last* `)`, and every later field is a plain number (or the state letter).
pub fn parse_stat(text: &str) -> Result<ProcStat, ParseError> {
    let open = text.find('(').ok_or(ParseError::MissingComm)?;
    let close = text.rfind(')').ok_or(ParseError::MissingComm)?;
    if close < open {
        return Err(ParseError::MissingComm);
    }
    let pid = number("pid", Some(text[..open].trim()))?;
    let comm = text[open + 1..close].to_owned();
    // rest[0] is field 3.
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    let state = field(3)
        .and_then(|s| s.chars().next())
        .ok_or(ParseError::MissingField { field: "state" })?;
    Ok(ProcStat {
        pid,
        comm,
        state,
        minor_faults: number("minflt", field(10))?,
        major_faults: number("majflt", field(12))?,
        utime_ticks: number("utime", field(14))?,
        stime_ticks: number("stime", field(15))?,
        num_threads: number("num_threads", field(20))?,
        start_time_ticks: number("starttime", field(22))?,
        vsize_bytes: number("vsize", field(23))?,
        rss_pages: number("rss", field(24))?,
    })
}

/// Parses `/proc/<pid>/io` (`key: value` lines); the four byte counters must all be present.
pub fn parse_io(text: &str) -> Result<ProcIo, ParseError> {
    let value = |key: &'static str| {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'));
        number(key, line.map(str::trim))
    };
    Ok(ProcIo {
        rchar: value("rchar")?,
        wchar: value("wchar")?,
        read_bytes: value("read_bytes")?,
        write_bytes: value("write_bytes")?,
    })
}

fn number<T: std::str::FromStr>(field: &'static str, text: Option<&str>) -> Result<T, ParseError> {
    let text = text.ok_or(ParseError::MissingField { field })?;
    text.parse().map_err(|_| ParseError::InvalidNumber {
        field,
        value: text.to_owned(),
    })
}

/// The start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`), which with
/// the pid and the agent's asid makes a [`Upid`].
pub fn process_start_ticks(pid: u32) -> io::Result<u64> {
    read_stat(Path::new("/proc"), pid).map(|s| s.start_time_ticks)
}

fn read_stat(proc_root: &Path, pid: u32) -> io::Result<ProcStat> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("stat"))?;
    parse_stat(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the CPU and start times in `/proc/<pid>/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // USER_HZ has been 100 on every Linux ABI; only a broken libc would fail here.
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `sysconf(_SC_PAGESIZE)`: the unit of `rss` in `/proc/<pid>/stat`.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// What the last scan saw, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Rows produced.
    pub processes: usize,
    /// Pids listed whose `stat` was gone (or unparsable) by the time we read it.
    pub skipped: usize,
    /// Rows whose I/O columns are zero because `io` could not be read.
    pub io_unreadable: usize,
}

/// Scans /proc for every process's stats.
#[derive(Debug, Clone)]
pub struct ProcessStatsSource {
    asid: u32,
    proc_root: PathBuf,
    ticks_per_second: u64,
    page_size: u64,
    last_scan: ScanSummary,
}

impl ProcessStatsSource {
    /// `asid` is this agent's id, the first part of every row's [`Upid`].
    pub fn new(asid: u32) -> Self {
        Self::with_proc_root(asid, "/proc")
    }

    /// Reads a /proc-shaped tree elsewhere (tests, or a host /proc mounted into a container).
    pub fn with_proc_root(asid: u32, proc_root: impl Into<PathBuf>) -> Self {
        ProcessStatsSource {
            asid,
            proc_root: proc_root.into(),
            ticks_per_second: clock_ticks_per_second(),
            page_size: page_size(),
            last_scan: ScanSummary::default(),
        }
    }

    /// One row per live process, stamped with the current wall-clock time. A /proc that cannot be
    /// listed is logged and gives no rows: the collector keeps running with its other sources.
    pub fn sample(&mut self) -> Vec<Row> {
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        match self.scan(now_ns) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(proc_root = %self.proc_root.display(), error = %e, "listing processes");
                Vec::new()
            }
        }
    }

    /// One row per process, stamped `time_ns`. Fails only when the /proc root cannot be listed.
    pub fn scan(&mut self, time_ns: i64) -> io::Result<Vec<Row>> {
        let mut summary = ScanSummary::default();
        let mut rows = Vec::new();
        for entry in fs::read_dir(&self.proc_root)? {
            let Some(pid) = entry
                .ok()
                .and_then(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            else {
                continue;
            };
            let stat = match read_stat(&self.proc_root, pid) {
                Ok(stat) => stat,
                Err(e) => {
                    // Exited since the listing (ENOENT on open, ESRCH on read) is routine.
                    if e.kind() != io::ErrorKind::NotFound && e.raw_os_error() != Some(libc::ESRCH)
                    {
                        tracing::debug!(pid, error = %e, "skipping process: reading stat");
                    }
                    summary.skipped += 1;
                    continue;
                }
            };
            let io = fs::read_to_string(self.proc_root.join(pid.to_string()).join("io"))
                .ok()
                .and_then(|text| parse_io(&text).ok());
            if io.is_none() {
                summary.io_unreadable += 1;
            }
            rows.push(to_row(
                self.asid,
                time_ns,
                &stat,
                io.unwrap_or_default(),
                self.ticks_per_second,
                self.page_size,
            ));
        }
        summary.processes = rows.len();
        self.last_scan = summary;
        Ok(rows)
    }

    pub fn last_scan(&self) -> ScanSummary {
        self.last_scan
    }
}

fn to_row(
    asid: u32,
    time_ns: i64,
    stat: &ProcStat,
    io: ProcIo,
    ticks_per_second: u64,
    page_size: u64,
) -> Row {
    // u128 so that neither the tick conversion nor rss * page size can overflow before clamping.
    let ticks_to_ns =
        |ticks: u64| clamp(u128::from(ticks) * 1_000_000_000 / u128::from(ticks_per_second));
    let rss_bytes =
        clamp(u128::from(u64::try_from(stat.rss_pages).unwrap_or(0)) * u128::from(page_size));
    Row {
        time_: time_ns,
        upid: Upid::new(asid, stat.pid, stat.start_time_ticks),
        major_faults: clamp(stat.major_faults.into()),
        minor_faults: clamp(stat.minor_faults.into()),
        cpu_utime_ns: ticks_to_ns(stat.utime_ticks),
        cpu_ktime_ns: ticks_to_ns(stat.stime_ticks),
        num_threads: stat.num_threads,
        vsize_bytes: clamp(stat.vsize_bytes.into()),
        rss_bytes,
        rchar_bytes: clamp(io.rchar.into()),
        wchar_bytes: clamp(io.wchar.into()),
        read_bytes: clamp(io.read_bytes.into()),
        write_bytes: clamp(io.write_bytes.into()),
    }
}

/// Table columns are `INT64`; kernel counters are unsigned and never near 2^63 in practice.
fn clamp(v: u128) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from a kernel 6.x `/proc/<pid>/stat`, with a hostile comm.
    fn stat_line(comm: &str) -> String {
        format!(
            "4242 ({comm}) S 1 4242 4242 0 -1 4194560 1500 0 7 0 250 125 0 0 20 0 3 0 98765 \
             12345678 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 2 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }

    #[test]
    fn parse_stat_reads_the_fields_we_use() {
        let stat = parse_stat(&stat_line("nginx")).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                pid: 4242,
                comm: "nginx".into(),
                state: 'S',
                minor_faults: 1500,
                major_faults: 7,
                utime_ticks: 250,
                stime_ticks: 125,
                num_threads: 3,
                start_time_ticks: 98765,
                vsize_bytes: 12345678,
                rss_pages: 321,
            }
        );
    }

    #[test]
    fn parse_stat_handles_comm_with_spaces_and_parentheses() {
        for comm in ["my (weird) proc", ") ) (", "a b c 1 2 3", "x)", ""] {
            let stat = parse_stat(&stat_line(comm)).unwrap();
            assert_eq!(stat.comm, comm);
            assert_eq!(stat.start_time_ticks, 98765, "comm {comm:?}");
            assert_eq!(stat.rss_pages, 321, "comm {comm:?}");
        }
    }

    #[test]
    fn parse_stat_rejects_truncated_and_garbled_lines() {
        assert_eq!(parse_stat("4242 nginx S 1"), Err(ParseError::MissingComm));
        assert_eq!(parse_stat("4242 )nginx( S"), Err(ParseError::MissingComm));
        assert_eq!(
            parse_stat("4242 (nginx) S 1 2 3"),
            Err(ParseError::MissingField { field: "minflt" })
        );
        let bad_pid = stat_line("x").replacen("4242", "-1", 1);
        assert!(matches!(
            parse_stat(&bad_pid),
            Err(ParseError::InvalidNumber { field: "pid", .. })
        ));
        let bad_utime = stat_line("x").replace(" 250 ", " lots ");
        assert!(matches!(
            parse_stat(&bad_utime),
            Err(ParseError::InvalidNumber { field: "utime", .. })
        ));
    }

    const IO: &str = "rchar: 1000\nwchar: 2000\nsyscr: 10\nsyscw: 20\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";

    #[test]
    fn parse_io_reads_the_byte_counters() {
        assert_eq!(
            parse_io(IO),
            Ok(ProcIo {
                rchar: 1000,
                wchar: 2000,
                read_bytes: 4096,
                write_bytes: 8192,
            })
        );
    }

    #[test]
    fn parse_io_does_not_confuse_prefixed_keys() {
        // `cancelled_write_bytes` ends in `write_bytes`; keys are matched whole and in any order.
        let reordered =
            "cancelled_write_bytes: 5\nwrite_bytes: 6\nread_bytes: 7\nwchar: 8\nrchar: 9\n";
        assert_eq!(
            parse_io(reordered),
            Ok(ProcIo {
                rchar: 9,
                wchar: 8,
                read_bytes: 7,
                write_bytes: 6,
            })
        );
    }

    #[test]
    fn parse_io_rejects_missing_or_bad_counters() {
        assert_eq!(
            parse_io("rchar: 1\nwchar: 2\nread_bytes: 3\n"),
            Err(ParseError::MissingField {
                field: "write_bytes"
            })
        );
        assert!(matches!(
            parse_io(&IO.replace("2000", "2k")),
            Err(ParseError::InvalidNumber { field: "wchar", .. })
        ));
    }

    #[test]
    fn rows_convert_ticks_and_pages_to_nanoseconds_and_bytes() {
        let stat = parse_stat(&stat_line("svc")).unwrap();
        let io = parse_io(IO).unwrap();
        let row = to_row(9, 1_000, &stat, io, 100, 4096);
        assert_eq!(row.upid, Upid::new(9, 4242, 98765));
        assert_eq!(row.time_, 1_000);
        assert_eq!(row.cpu_utime_ns, 2_500_000_000);
        assert_eq!(row.cpu_ktime_ns, 1_250_000_000);
        assert_eq!(row.rss_bytes, 321 * 4096);
        assert_eq!(row.vsize_bytes, 12345678);
        assert_eq!(
            (row.major_faults, row.minor_faults, row.num_threads),
            (7, 1500, 3)
        );
        assert_eq!((row.rchar_bytes, row.wchar_bytes), (1000, 2000));
        assert_eq!((row.read_bytes, row.write_bytes), (4096, 8192));
        // A tick rate that does not divide 1e9 still converts exactly, rounding down.
        assert_eq!(to_row(9, 0, &stat, io, 300, 4096).cpu_utime_ns, 833_333_333);
    }

    #[test]
    fn huge_counters_saturate_instead_of_wrapping() {
        let mut stat = parse_stat(&stat_line("svc")).unwrap();
        stat.vsize_bytes = u64::MAX;
        stat.utime_ticks = u64::MAX;
        let row = to_row(0, 0, &stat, ProcIo::default(), 100, 4096);
        assert_eq!(row.vsize_bytes, i64::MAX);
        assert_eq!(row.cpu_utime_ns, i64::MAX);
    }

    /// A throwaway /proc-shaped directory, removed on drop.
    struct FakeProc(PathBuf);

    impl FakeProc {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("pixie-fake-proc-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            FakeProc(dir)
        }

        fn process(&self, pid: u32, stat: Option<&str>, io: Option<&str>) {
            let dir = self.0.join(pid.to_string());
            fs::create_dir_all(&dir).unwrap();
            if let Some(stat) = stat {
                fs::write(dir.join("stat"), stat).unwrap();
            }
            if let Some(io) = io {
                fs::write(dir.join("io"), io).unwrap();
            }
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn scan_skips_vanished_processes_and_zeroes_unreadable_io() {
        let proc = FakeProc::new("scan");
        proc.process(
            10,
            Some(&stat_line("full").replacen("4242", "10", 1)),
            Some(IO),
        );
        proc.process(
            11,
            Some(&stat_line("no io").replacen("4242", "11", 1)),
            None,
        );
        // A directory where the io file should be: reading it fails like a permission error does.
        proc.process(
            12,
            Some(&stat_line("bad io").replacen("4242", "12", 1)),
            None,
        );
        fs::create_dir(proc.0.join("12").join("io")).unwrap();
        proc.process(13, None, Some(IO)); // exited between the listing and the read
        proc.process(14, Some("garbage"), None);
        fs::create_dir_all(proc.0.join("self")).unwrap(); // not a pid
        fs::write(proc.0.join("uptime"), "1.0 2.0").unwrap();

        let mut source = ProcessStatsSource::with_proc_root(5, &proc.0);
        let mut rows = source.scan(777).unwrap();
        rows.sort_by_key(|r| r.upid.pid);
        let pids: Vec<u32> = rows.iter().map(|r| r.upid.pid).collect();
        assert_eq!(pids, [10, 11, 12]);
        assert!(rows.iter().all(|r| r.time_ == 777 && r.upid.asid == 5));
        assert_eq!(rows[0].rchar_bytes, 1000);
        assert_eq!((rows[1].rchar_bytes, rows[2].write_bytes), (0, 0));
        assert_eq!(
            source.last_scan(),
            ScanSummary {
                processes: 3,
                skipped: 2,
                io_unreadable: 2,
            }
        );
    }

    #[test]
    fn a_missing_proc_root_is_an_error_for_scan_and_empty_for_sample() {
        let mut source = ProcessStatsSource::with_proc_root(0, "/nonexistent/pixie/proc");
        assert_eq!(source.scan(0).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(source.sample().is_empty());
    }

    #[test]
    fn the_real_proc_has_this_process_with_its_start_time() {
        // Burn a little CPU so that utime is at least one tick.
        let me = std::process::id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut x = 0u64;
        while read_stat(Path::new("/proc"), me).unwrap().utime_ticks == 0
            && std::time::Instant::now() < deadline
        {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }

        let mut source = ProcessStatsSource::new(3);
        let rows = source.sample();
        assert!(rows.len() > 1, "only {} processes", rows.len());
        let mine = rows
            .iter()
            .find(|r| r.upid.pid == me)
            .expect("this process is listed");
        assert_eq!(
            mine.upid,
            Upid::new(3, me, process_start_ticks(me).unwrap())
        );
        assert!(mine.num_threads >= 1);
        assert!(mine.rss_bytes > 0 && mine.vsize_bytes >= mine.rss_bytes);
        assert!(mine.cpu_utime_ns > 0);
        assert_eq!(
            mine.cpu_utime_ns % (1_000_000_000 / clock_ticks_per_second() as i64),
            0
        );
        // The scan itself read /proc files through read(2).
        assert!(mine.rchar_bytes > 0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        assert!((now - mine.time_).abs() < 60_000_000_000);
    }

    #[test]
    fn start_ticks_of_a_missing_process_is_not_found() {
        // Pids are capped at 2^22 on Linux, so this one cannot exist.
        let err = process_start_ticks(u32::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
