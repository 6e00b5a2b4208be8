//! The user-space half of the socket tracer (Pixie's `SocketTraceConnector`): kernel events in,
//! `http_events` and `conn_stats` rows out.
//!
//! Connections are keyed by (pid, fd, generation) as the kernel side names them. Each direction is
//! put back in stream order by byte offset ([`reassembly`]), the protocol is inferred from the
//! first message start, and HTTP/1.x bytes go to `pixie_protocols::http::HttpStream`. Nothing here
//! does I/O except through [`ProcessLookup`], so the whole path is unit-tested with made-up events.

pub mod conn_tracker;
pub mod reassembly;

use std::collections::HashMap;
use std::time::Duration;

use pixie_bpf::{ConnId, Event};
use pixie_protocols::http::{self, HttpLimits, HttpRecord};
use pixie_store::Upid;
use pixie_store::tables::{conn_stats, http_events};

use crate::clock::ClockConverter;
use crate::conn_stats::ConnStats;
pub use conn_tracker::ConnTracker;

/// What the tracer needs to know about processes.
pub trait ProcessLookup {
    /// Start time of `pid` in clock ticks since boot (field 22 of /proc/pid/stat).
    fn start_ticks(&mut self, pid: u32) -> Option<u64>;
    fn is_alive(&mut self, pid: u32) -> bool;
}

/// [`ProcessLookup`] backed by /proc.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcFs;

impl ProcessLookup for ProcFs {
    fn start_ticks(&mut self, pid: u32) -> Option<u64> {
        crate::process_stats::process_start_ticks(pid).ok()
    }

    fn is_alive(&mut self, pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketTraceConfig {
    /// The agent's short id, the first part of every upid.
    pub asid: u32,
    /// Parser limits; `max_buffered_bytes` is what a parser keeps between events (Pixie's 1 MB
    /// `datastream_buffer_size`).
    pub http_limits: HttpLimits,
    /// What a connection may hold for a moment behind a hole, while it waits `reorder_wait` for the
    /// missing chunk (Pixie's `datastream_buffer_spike_size`); `None` is `max_buffered_bytes`.
    pub spike_bytes: Option<usize>,
    /// How long chunks wait behind a hole before the hole is declared lost.
    pub reorder_wait: Duration,
    /// A connection with no events for this long releases its buffers, and is dropped if its
    /// process is gone.
    pub idle_timeout: Duration,
    /// How long a closed connection is kept to absorb late events from other threads.
    pub closed_grace: Duration,
}

impl Default for SocketTraceConfig {
    fn default() -> Self {
        SocketTraceConfig {
            asid: 0,
            http_limits: HttpLimits::default(),
            spike_bytes: None,
            reorder_wait: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(300),
            closed_grace: Duration::from_secs(1),
        }
    }
}

/// Counters of what the connector did; all only grow except `open_connections`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectorStats {
    pub events: u64,
    pub opens: u64,
    pub closes: u64,
    pub data_events: u64,
    pub data_bytes: u64,
    pub gap_bytes: u64,
    /// Trackers created from data because their open was never seen.
    pub opened_from_data: u64,
    pub process_exits: u64,
    pub http_records: u64,
    pub idle_released: u64,
    pub idle_dropped: u64,
    /// Connections closed because a newer one appeared on their fd (their close was lost).
    pub superseded: u64,
    pub open_connections: u64,
}

pub struct SocketTraceConnector<P: ProcessLookup> {
    config: SocketTraceConfig,
    lookup: P,
    conns: HashMap<ConnId, ConnTracker>,
    /// The newest connection seen on each (tgid, fd).
    by_fd: HashMap<(u32, i32), ConnId>,
    upids: HashMap<u32, Upid>,
    conn_stats: ConnStats,
    http_rows: Vec<http_events::Row>,
    clock: ClockConverter,
    stats: ConnectorStats,
}

impl<P: ProcessLookup> SocketTraceConnector<P> {
    pub fn new(config: SocketTraceConfig, lookup: P, clock: ClockConverter) -> Self {
        SocketTraceConnector {
            config,
            lookup,
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            upids: HashMap::new(),
            conn_stats: ConnStats::new(),
            http_rows: Vec::new(),
            clock,
            stats: ConnectorStats::default(),
        }
    }

    pub fn set_clock(&mut self, clock: ClockConverter) {
        self.clock = clock;
    }

    /// Handles one kernel event; `now_ns` is the monotonic clock (the kernel events' clock).
    pub fn handle(&mut self, event: Event<'_>, now_ns: u64) {
        self.stats.events += 1;
        match event {
            Event::ConnOpen(open) => {
                self.stats.opens += 1;
                self.supersede(open.conn, now_ns);
                let upid = self.upid(open.conn.tgid);
                self.conns
                    .entry(open.conn)
                    .or_insert_with(|| ConnTracker::from_open(&open, upid, &self.config, now_ns));
            }
            Event::ConnClose(close) => {
                self.stats.closes += 1;
                if let Some(t) = self.conns.get_mut(&close.conn)
                    && !t.is_closed()
                {
                    let records = t.close(close.bytes_sent, close.bytes_recv, now_ns);
                    self.conn_stats.record_closed(&t.snapshot());
                    self.emit(close.conn, records);
                }
            }
            Event::Data(data) => {
                self.stats.data_events += 1;
                self.stats.data_bytes += data.data.len() as u64;
                self.stats.gap_bytes += data.gap_len();
                if !self.conns.contains_key(&data.conn) {
                    self.stats.opened_from_data += 1;
                    self.supersede(data.conn, now_ns);
                    let upid = self.upid(data.conn.tgid);
                    let t = ConnTracker::unknown(data.conn, upid, &self.config, now_ns);
                    self.conns.insert(data.conn, t);
                }
                let t = self.conns.get_mut(&data.conn).expect("inserted above");
                let records = t.on_data(&data, now_ns);
                self.emit(data.conn, records);
            }
            Event::ProcExit { tgid, .. } => {
                self.stats.process_exits += 1;
                self.close_process(tgid, now_ns);
                self.upids.remove(&tgid);
            }
        }
    }

    /// Periodic upkeep: expires reordering holes, forgets closed connections after their grace
    /// period, and handles idle ones.
    pub fn tick(&mut self, now_ns: u64) {
        let reorder_wait = self.config.reorder_wait.as_nanos() as u64;
        let grace = self.config.closed_grace.as_nanos() as u64;
        let idle = self.config.idle_timeout.as_nanos() as u64;

        let mut finished = Vec::new();
        let mut idle_conns = Vec::new();
        let mut completed = Vec::new();
        for (id, t) in &mut self.conns {
            if let Some(closed_at) = t.closed_at_ns {
                if now_ns.saturating_sub(closed_at) >= grace {
                    finished.push(*id);
                }
                continue;
            }
            let records = t.expire_holes(now_ns, reorder_wait);
            if !records.is_empty() {
                completed.push((*id, records));
            }
            if now_ns.saturating_sub(t.last_activity_ns) >= idle {
                idle_conns.push(*id);
            }
        }
        for (id, records) in completed {
            self.emit(id, records);
        }
        for id in finished {
            self.conns.remove(&id);
            if self.by_fd.get(&(id.tgid, id.fd)) == Some(&id) {
                self.by_fd.remove(&(id.tgid, id.fd));
            }
        }
        for id in idle_conns {
            let Some(t) = self.conns.get_mut(&id) else {
                continue;
            };
            if self.lookup.is_alive(id.tgid) {
                // Still there: keep the counters, let go of the buffers.
                t.release_buffers();
                t.last_activity_ns = now_ns;
                self.stats.idle_released += 1;
            } else {
                let records = t.close(t.bytes_sent, t.bytes_recv, now_ns);
                self.conn_stats.record_closed(&t.snapshot());
                self.emit(id, records);
                self.stats.idle_dropped += 1;
            }
        }
        self.stats.open_connections = self.conns.values().filter(|t| !t.is_closed()).count() as u64;
    }

    /// The http_events rows completed since the last call.
    pub fn take_http_rows(&mut self) -> Vec<http_events::Row> {
        std::mem::take(&mut self.http_rows)
    }

    /// A conn_stats sample at monotonic time `now_ns`.
    pub fn sample_conn_stats(&mut self, now_ns: u64) -> Vec<conn_stats::Row> {
        let live: Vec<_> = self
            .conns
            .values()
            .filter(|t| !t.is_closed())
            .map(|t| t.snapshot())
            .collect();
        self.conn_stats
            .sample(live, self.clock.to_realtime_ns(now_ns))
    }

    pub fn stats(&self) -> ConnectorStats {
        self.stats
    }

    pub fn connections(&self) -> impl Iterator<Item = &ConnTracker> {
        self.conns.values()
    }

    /// Bytes held by all connections' reassembly and parser buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.conns.values().map(ConnTracker::buffered_bytes).sum()
    }

    /// Records `id` as the newest connection on its fd. An older one still open there lost its
    /// close event (ring buffer overflow): the fd was reused, so it is closed now.
    fn supersede(&mut self, id: ConnId, now_ns: u64) {
        let previous = self.by_fd.insert((id.tgid, id.fd), id);
        if let Some(old) = previous
            && old.generation < id.generation
            && let Some(t) = self.conns.get_mut(&old)
            && !t.is_closed()
        {
            let records = t.close(t.bytes_sent, t.bytes_recv, now_ns);
            self.conn_stats.record_closed(&t.snapshot());
            self.emit(old, records);
            self.stats.superseded += 1;
        }
    }

    fn close_process(&mut self, tgid: u32, now_ns: u64) {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(id, t)| id.tgid == tgid && !t.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let t = self.conns.get_mut(&id).expect("listed above");
            let records = t.close(t.bytes_sent, t.bytes_recv, now_ns);
            self.conn_stats.record_closed(&t.snapshot());
            self.emit(id, records);
        }
    }

    fn upid(&mut self, tgid: u32) -> Upid {
        if let Some(upid) = self.upids.get(&tgid) {
            return *upid;
        }
        // A process that is already gone keeps start time 0: its rows still carry the pid.
        let start = self.lookup.start_ticks(tgid).unwrap_or(0);
        let upid = Upid::new(self.config.asid, tgid, start);
        if start != 0 {
            self.upids.insert(tgid, upid);
        }
        upid
    }

    fn emit(&mut self, id: ConnId, records: Vec<HttpRecord>) {
        if records.is_empty() {
            return;
        }
        let Some(t) = self.conns.get(&id) else { return };
        self.stats.http_records += records.len() as u64;
        for record in records {
            self.http_rows.push(http_row(t, &record, &self.clock));
        }
    }
}

/// One `http_events` row from a record of connection `t`.
pub fn http_row(t: &ConnTracker, r: &HttpRecord, clock: &ClockConverter) -> http_events::Row {
    let addr = |a: Option<std::net::SocketAddr>| {
        a.map(|a| a.ip().to_string()).unwrap_or_else(|| "-".into())
    };
    let port = |a: Option<std::net::SocketAddr>| a.map(|a| i64::from(a.port())).unwrap_or(-1);
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    http_events::Row {
        time_: clock.to_realtime_ns(r.resp_timestamp_ns),
        upid: t.upid,
        remote_addr: addr(t.remote),
        remote_port: port(t.remote),
        local_addr: addr(t.local),
        local_port: port(t.local),
        trace_role: t.trace_role().into(),
        major_version: 1,
        minor_version: i64::from(r.req.minor_version),
        content_type: r.resp.content_type.pixie_value(),
        req_headers: http::headers_json(&r.req.headers),
        req_method: r.req.method.clone(),
        req_path: r.req.path.clone(),
        req_body: String::from_utf8_lossy(&r.req.body).into_owned(),
        req_body_size: to_i64(r.req.body_size),
        resp_headers: http::headers_json(&r.resp.headers),
        resp_status: i64::from(r.resp.status),
        resp_message: r.resp.message.clone(),
        resp_body: String::from_utf8_lossy(&r.resp.body).into_owned(),
        resp_body_size: to_i64(r.resp.body_size),
        latency: to_i64(r.latency_ns()),
    }
}

#[cfg(test)]
mod tests;
