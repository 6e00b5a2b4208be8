//! One readable line per table row, for `vizier pem --print`.

use pixie_store::tables::{conn_stats, http_events, process_stats};

/// `2026-11-25T15:50:01.123456Z` from nanoseconds since the Unix epoch (UTC).
pub fn timestamp(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let micros = ns.rem_euclid(1_000_000_000) / 1_000;
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn role(value: i64) -> &'static str {
    match value {
        1 => "client",
        2 => "server",
        _ => "unknown",
    }
}

/// `1.5ms`, `250us`, `3.2s`.
pub fn latency(ns: i64) -> String {
    match ns {
        n if n >= 1_000_000_000 => format!("{:.2}s", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}ms", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}us", n as f64 / 1e3),
        n => format!("{n}ns"),
    }
}

pub fn http_event(r: &http_events::Row) -> String {
    // The arrow points from the client to the server whichever side was traced.
    let (arrow, peer) = if r.trace_role == 2 {
        ("<-", "client")
    } else {
        ("->", "server")
    };
    format!(
        "http_events {} upid={} {} {}:{} {arrow} {peer} {}:{} {} {} HTTP/{}.{} -> {} {} req_body={}B resp_body={}B latency={}",
        timestamp(r.time_),
        r.upid,
        role(r.trace_role),
        r.local_addr,
        r.local_port,
        r.remote_addr,
        r.remote_port,
        r.req_method,
        r.req_path,
        r.major_version,
        r.minor_version,
        r.resp_status,
        r.resp_message,
        r.req_body_size,
        r.resp_body_size,
        latency(r.latency),
    )
}

pub fn conn_stat(r: &conn_stats::Row) -> String {
    let protocol = match r.protocol {
        1 => "http",
        2 => "http2",
        _ => "unknown",
    };
    format!(
        "conn_stats {} upid={} {} remote={}:{} protocol={protocol} open={} close={} active={} sent={}B recv={}B",
        timestamp(r.time_),
        r.upid,
        role(r.role),
        r.remote_addr,
        r.remote_port,
        r.conn_open,
        r.conn_close,
        r.conn_active,
        r.bytes_sent,
        r.bytes_recv,
    )
}

pub fn process_stat(r: &process_stats::Row) -> String {
    format!(
        "process_stats {} upid={} cpu_user={} cpu_sys={} threads={} rss={}KiB vsize={}KiB rchar={}B wchar={}B faults={}/{}",
        timestamp(r.time_),
        r.upid,
        latency(r.cpu_utime_ns),
        latency(r.cpu_ktime_ns),
        r.num_threads,
        r.rss_bytes / 1024,
        r.vsize_bytes / 1024,
        r.rchar_bytes,
        r.wchar_bytes,
        r.major_faults,
        r.minor_faults,
    )
}

#[cfg(test)]
mod tests {
    use pixie_store::Upid;

    use super::*;

    #[test]
    fn timestamps_are_utc_iso8601_with_microseconds() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            timestamp(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            timestamp(1_764_085_801_123_456_789),
            "2025-11-25T15:50:01.123456Z"
        );
        assert_eq!(timestamp(-1_000), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn latency_picks_a_readable_unit() {
        assert_eq!(latency(999), "999ns");
        assert_eq!(latency(1_500), "1.5us");
        assert_eq!(latency(2_345_678), "2.35ms");
        assert_eq!(latency(3_200_000_000), "3.20s");
    }

    #[test]
    fn an_http_row_reads_as_one_line() {
        let row = http_events::Row {
            time_: 0,
            upid: Upid::new(0, 42, 7),
            remote_addr: "127.0.0.1".into(),
            remote_port: 50000,
            local_addr: "127.0.0.1".into(),
            local_port: 8080,
            trace_role: 2,
            major_version: 1,
            minor_version: 1,
            content_type: 1,
            req_headers: "{}".into(),
            req_method: "POST".into(),
            req_path: "/items".into(),
            req_body: "{}".into(),
            req_body_size: 2,
            resp_headers: "{}".into(),
            resp_status: 201,
            resp_message: "Created".into(),
            resp_body: String::new(),
            resp_body_size: 0,
            latency: 1_500_000,
        };
        assert_eq!(
            http_event(&row),
            "http_events 1970-01-01T00:00:00.000000Z upid=0:42:7 server 127.0.0.1:8080 <- client \
             127.0.0.1:50000 POST /items HTTP/1.1 -> 201 Created req_body=2B resp_body=0B latency=1.50ms"
        );
    }
}
