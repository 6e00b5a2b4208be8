//! `conn_stats`: connection counters per (process, remote endpoint, role), cumulative since tracing
//! started, sampled periodically (Pixie samples every 5 s).
//!
//! Counters are computed at sample time from the live connections plus the totals folded in from
//! closed ones, so a connection whose role or protocol is learnt after it opened is never counted
//! under two keys. A key whose connections are all closed is reported once more with its final
//! numbers and then forgotten: servers see a new remote port per client connection, and keeping
//! every one forever would grow without bound.

use std::collections::HashMap;
use std::net::SocketAddr;

use pixie_store::Upid;
use pixie_store::tables::conn_stats::Row;
use pixie_store::tables::{Protocol, TraceRole};

/// What conn_stats needs to know about one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSnapshot {
    pub upid: Upid,
    pub remote: Option<SocketAddr>,
    /// AF_INET / AF_INET6 as the kernel reported it.
    pub addr_family: u16,
    pub role: TraceRole,
    pub protocol: Protocol,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    upid: Upid,
    remote: SocketAddr,
    role: TraceRole,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    addr_family: u16,
    protocol: i64,
    open: u64,
    close: u64,
    sent: u64,
    recv: u64,
}

impl Counters {
    fn add(&mut self, conn: &ConnSnapshot, closed: bool) {
        self.addr_family = conn.addr_family;
        // A key may mix protocols; the last one that was recognised wins.
        if conn.protocol != Protocol::Unknown || self.protocol == 0 {
            self.protocol = conn.protocol.into();
        }
        self.open += 1;
        self.close += u64::from(closed);
        self.sent += conn.bytes_sent;
        self.recv += conn.bytes_recv;
    }
}

#[derive(Debug, Default)]
pub struct ConnStats {
    closed: HashMap<Key, Counters>,
    reported: HashMap<Key, Counters>,
}

impl ConnStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds a connection that is gone into the totals. Connections without a known remote
    /// endpoint are not reported (the row would have no key).
    pub fn record_closed(&mut self, conn: &ConnSnapshot) {
        if let Some(remote) = conn.remote {
            let key = Key {
                upid: conn.upid,
                remote,
                role: conn.role,
            };
            self.closed.entry(key).or_default().add(conn, true);
        }
    }

    /// Rows for every key with an open connection or a change since the last sample.
    pub fn sample(
        &mut self,
        live: impl IntoIterator<Item = ConnSnapshot>,
        time_ns: i64,
    ) -> Vec<Row> {
        let mut current = self.closed.clone();
        for conn in live {
            if let Some(remote) = conn.remote {
                let key = Key {
                    upid: conn.upid,
                    remote,
                    role: conn.role,
                };
                current.entry(key).or_default().add(&conn, false);
            }
        }

        let mut rows = Vec::new();
        for (key, counters) in &current {
            let active = counters.open - counters.close;
            let changed = self.reported.get(key) != Some(counters);
            if active == 0 && !changed {
                // Reported with its final numbers last time: forget it.
                self.closed.remove(key);
                self.reported.remove(key);
                continue;
            }
            if changed || active > 0 {
                rows.push(to_row(key, counters, time_ns));
                self.reported.insert(key.clone(), *counters);
            }
        }
        // Keys that vanished entirely (never closed, dropped without a close) are forgotten too.
        self.reported.retain(|key, _| current.contains_key(key));
        rows.sort_by(|a, b| {
            (&a.upid, &a.remote_addr, a.remote_port).cmp(&(&b.upid, &b.remote_addr, b.remote_port))
        });
        rows
    }

    /// Keys currently remembered (bounded by live connections plus one sample of closed ones).
    pub fn tracked_keys(&self) -> usize {
        self.closed.len().max(self.reported.len())
    }
}

fn to_row(key: &Key, c: &Counters, time_ns: i64) -> Row {
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Row {
        time_: time_ns,
        upid: key.upid,
        remote_addr: key.remote.ip().to_string(),
        remote_port: i64::from(key.remote.port()),
        addr_family: i64::from(c.addr_family),
        protocol: c.protocol,
        role: key.role.into(),
        conn_open: to_i64(c.open),
        conn_close: to_i64(c.close),
        conn_active: to_i64(c.open - c.close),
        bytes_sent: to_i64(c.sent),
        bytes_recv: to_i64(c.recv),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(port: u16, sent: u64, recv: u64) -> ConnSnapshot {
        ConnSnapshot {
            upid: Upid::new(0, 100, 5),
            remote: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            addr_family: 2,
            role: TraceRole::Client,
            protocol: Protocol::Http,
            bytes_sent: sent,
            bytes_recv: recv,
        }
    }

    fn counts(r: &Row) -> (i64, i64, i64, i64, i64) {
        (
            r.conn_open,
            r.conn_close,
            r.conn_active,
            r.bytes_sent,
            r.bytes_recv,
        )
    }

    #[test]
    fn live_connections_are_reported_every_sample() {
        let mut stats = ConnStats::new();
        let rows = stats.sample([conn(80, 10, 20)], 1);
        assert_eq!(rows.len(), 1);
        assert_eq!(counts(&rows[0]), (1, 0, 1, 10, 20));
        assert_eq!(rows[0].remote_addr, "127.0.0.1");
        assert_eq!(rows[0].remote_port, 80);
        assert_eq!(rows[0].role, 1);
        assert_eq!(rows[0].protocol, 1);
        assert_eq!(rows[0].time_, 1);
        // Unchanged but still open: reported again, as Pixie reports active connections.
        assert_eq!(stats.sample([conn(80, 10, 20)], 2).len(), 1);
    }

    #[test]
    fn connections_to_one_endpoint_add_up() {
        let mut stats = ConnStats::new();
        stats.record_closed(&conn(80, 1, 2));
        stats.record_closed(&conn(80, 3, 4));
        let rows = stats.sample([conn(80, 5, 6)], 1);
        assert_eq!(rows.len(), 1);
        assert_eq!(counts(&rows[0]), (3, 2, 1, 9, 12));
    }

    #[test]
    fn a_closed_key_is_reported_once_more_then_forgotten() {
        let mut stats = ConnStats::new();
        assert_eq!(
            counts(&stats.sample([conn(80, 1, 2)], 1)[0]),
            (1, 0, 1, 1, 2)
        );
        stats.record_closed(&conn(80, 7, 8));
        let rows = stats.sample([], 2);
        assert_eq!(counts(&rows[0]), (1, 1, 0, 7, 8), "final numbers");
        assert!(stats.sample([], 3).is_empty());
        assert_eq!(stats.tracked_keys(), 0);
    }

    #[test]
    fn role_and_process_split_keys_and_unknown_remotes_are_skipped() {
        let mut stats = ConnStats::new();
        let mut server = conn(80, 1, 1);
        server.role = TraceRole::Server;
        let mut other_proc = conn(80, 1, 1);
        other_proc.upid = Upid::new(0, 101, 5);
        let mut no_remote = conn(80, 1, 1);
        no_remote.remote = None;
        let rows = stats.sample([conn(80, 1, 1), server, other_proc, no_remote], 1);
        assert_eq!(rows.len(), 3);
    }
}
