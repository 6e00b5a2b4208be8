//! The connector driven by made-up kernel events, as the ring buffer would deliver them.

use std::collections::HashSet;
use std::net::SocketAddr;

use pixie_bpf::events::AF_INET;
use pixie_bpf::{
    ConnClose, ConnId, ConnOpen, DataEvent, Direction, Endpoint, Event, OpenSource, Role,
};
use pixie_store::tables::{conn_stats, http_events};

use super::*;

/// Start ticks are pid * 10; pids in `dead` are gone.
#[derive(Default)]
struct FakeProcs {
    dead: HashSet<u32>,
}

impl ProcessLookup for FakeProcs {
    fn start_ticks(&mut self, pid: u32) -> Option<u64> {
        (!self.dead.contains(&pid)).then_some(u64::from(pid) * 10)
    }

    fn is_alive(&mut self, pid: u32) -> bool {
        !self.dead.contains(&pid)
    }
}

const OFFSET: i64 = 1_000_000_000_000;
const SERVER: &str = "10.0.0.2:8080";
const CLIENT: &str = "10.0.0.1:40000";

fn connector() -> SocketTraceConnector<FakeProcs> {
    let config = SocketTraceConfig {
        asid: 7,
        ..Default::default()
    };
    SocketTraceConnector::new(
        config,
        FakeProcs::default(),
        ClockConverter { offset_ns: OFFSET },
    )
}

fn conn(tgid: u32) -> ConnId {
    ConnId {
        tgid,
        fd: 5,
        generation: 1,
    }
}

fn open(c: ConnId, role: Role, remote: &str, local: &str) -> Event<'static> {
    Event::ConnOpen(ConnOpen {
        conn: c,
        timestamp_ns: 1,
        remote: Endpoint::from_socket_addr(remote.parse().unwrap()),
        local: Endpoint::from_socket_addr(local.parse().unwrap()),
        role,
        source: if role == Role::Client {
            OpenSource::Connect
        } else {
            OpenSource::Accept
        },
    })
}

/// A data event at `pos`; `msg_size` larger than `data` means a capped capture.
fn data(c: ConnId, dir: Direction, pos: u64, ts: u64, bytes: &[u8], msg_size: u32) -> Event<'_> {
    Event::Data(DataEvent {
        conn: c,
        timestamp_ns: ts,
        direction: dir,
        pos,
        msg_size,
        syscall_nr: 0,
        data: bytes,
    })
}

fn close(c: ConnId, sent: u64, recv: u64) -> Event<'static> {
    Event::ConnClose(ConnClose {
        conn: c,
        timestamp_ns: 9,
        bytes_sent: sent,
        bytes_recv: recv,
    })
}

/// Feeds `ev` with the stream position tracked per direction, like the kernel side assigns it.
struct Stream {
    c: ConnId,
    send_pos: u64,
    recv_pos: u64,
}

impl Stream {
    fn new(c: ConnId) -> Self {
        Stream {
            c,
            send_pos: 0,
            recv_pos: 0,
        }
    }

    fn push(
        &mut self,
        t: &mut SocketTraceConnector<FakeProcs>,
        dir: Direction,
        ts: u64,
        bytes: &[u8],
    ) {
        let pos = match dir {
            Direction::Send => &mut self.send_pos,
            Direction::Recv => &mut self.recv_pos,
        };
        t.handle(data(self.c, dir, *pos, ts, bytes, bytes.len() as u32), ts);
        *pos += bytes.len() as u64;
    }
}

const REQ: &[u8] = b"GET /a?x=1 HTTP/1.1\r\nHost: svc\r\n\r\n";
const RESP: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn a_client_exchange_becomes_one_row_with_every_field() {
    let mut t = connector();
    let c = conn(100);
    t.handle(open(c, Role::Client, SERVER, CLIENT), 1);
    let mut s = Stream::new(c);
    s.push(&mut t, Direction::Send, 1_000, REQ);
    s.push(&mut t, Direction::Recv, 3_500, RESP);

    let rows = t.take_http_rows();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.upid, Upid::new(7, 100, 1000));
    assert_eq!((r.remote_addr.as_str(), r.remote_port), ("10.0.0.2", 8080));
    assert_eq!((r.local_addr.as_str(), r.local_port), ("10.0.0.1", 40000));
    assert_eq!(r.trace_role, 1);
    assert_eq!((r.major_version, r.minor_version), (1, 1));
    assert_eq!(r.req_method, "GET");
    assert_eq!(r.req_path, "/a?x=1");
    assert!(r.req_headers.contains("svc"), "{}", r.req_headers);
    assert_eq!((r.req_body.as_str(), r.req_body_size), ("", 0));
    assert_eq!((r.resp_status, r.resp_message.as_str()), (200, "OK"));
    assert_eq!((r.resp_body.as_str(), r.resp_body_size), ("hello", 5));
    assert_eq!(r.content_type, 1, "JSON");
    assert_eq!(r.latency, 2_500);
    assert_eq!(
        r.time_,
        3_500 + OFFSET,
        "time_ is the response time on the wall clock"
    );
    assert!(t.take_http_rows().is_empty(), "rows are handed out once");
}

#[test]
fn a_server_sees_the_same_exchange_from_the_other_side() {
    let mut t = connector();
    let c = conn(200);
    t.handle(open(c, Role::Server, CLIENT, SERVER), 1);
    let mut s = Stream::new(c);
    s.push(&mut t, Direction::Recv, 1_000, REQ);
    s.push(&mut t, Direction::Send, 1_200, RESP);
    let rows = t.take_http_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].trace_role, 2);
    assert_eq!(rows[0].remote_port, 40000);
    assert_eq!(rows[0].latency, 200);
}

#[test]
fn chunks_delivered_out_of_order_are_reordered_by_stream_position() {
    let mut t = connector();
    let (before_head, rows) = late_head(&mut t);
    assert!(before_head.is_empty());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].resp_body, "hello");
}

/// A client exchange whose response's first 20 bytes arrive after the rest: the rows before the
/// late head, and the rows once it is in.
fn late_head(
    t: &mut SocketTraceConnector<FakeProcs>,
) -> (Vec<http_events::Row>, Vec<http_events::Row>) {
    let c = conn(100);
    t.handle(open(c, Role::Client, SERVER, CLIENT), 1);
    t.handle(data(c, Direction::Send, 0, 10, REQ, REQ.len() as u32), 10);
    let (head, tail) = RESP.split_at(20);
    t.handle(
        data(c, Direction::Recv, 20, 30, tail, tail.len() as u32),
        30,
    );
    let before_head = t.take_http_rows();
    t.handle(data(c, Direction::Recv, 0, 20, head, head.len() as u32), 31);
    (before_head, t.take_http_rows())
}

/// [`late_head`] through a connector whose parser keeps at most 96 bytes.
fn late_head_with_budgets(spike_bytes: Option<usize>) -> Vec<http_events::Row> {
    let mut config = SocketTraceConfig {
        asid: 7,
        spike_bytes,
        ..Default::default()
    };
    config.http_limits.max_buffered_bytes = 96;
    let mut t = SocketTraceConnector::new(
        config,
        FakeProcs::default(),
        ClockConverter { offset_ns: OFFSET },
    );
    late_head(&mut t).1
}

#[test]
fn the_spike_size_lets_a_burst_wait_behind_a_hole_beyond_the_buffer_size() {
    // 61 bytes behind the hole: over the half of the 96-byte buffer a direction may hold, so
    // without a spike budget the hole is given up and the response is lost.
    assert!(RESP.len() - 20 > 48);
    assert!(late_head_with_budgets(None).is_empty());
    let rows = late_head_with_budgets(Some(1024));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].resp_body, "hello");
}

#[test]
fn a_capped_body_counts_in_full_and_the_next_exchange_still_parses() {
    let mut t = connector();
    let c = conn(100);
    t.handle(open(c, Role::Client, SERVER, CLIENT), 1);
    let mut s = Stream::new(c);
    s.push(&mut t, Direction::Send, 10, b"GET /big HTTP/1.1\r\n\r\n");
    let body_len = 40_000usize;
    let mut resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n").into_bytes();
    let head_len = resp.len();
    resp.resize(head_len + body_len, b'x');
    // The kernel copied only the first 16 KiB of the 40 kB send.
    let captured = &resp[..16 * 1024];
    t.handle(
        data(c, Direction::Recv, 0, 20, captured, resp.len() as u32),
        20,
    );
    s.recv_pos = resp.len() as u64;
    s.push(&mut t, Direction::Send, 30, b"GET /next HTTP/1.1\r\n\r\n");
    s.push(
        &mut t,
        Direction::Recv,
        40,
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    );
    let rows = t.take_http_rows();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].req_path.as_str(), rows[0].resp_body_size),
        ("/big", body_len as i64)
    );
    assert_eq!(
        (rows[1].req_path.as_str(), rows[1].resp_status),
        ("/next", 404)
    );
}

#[test]
fn a_connection_found_mid_stream_gets_its_role_from_the_traffic() {
    let mut t = connector();
    let c = conn(300);
    // No open event: the socket existed before tracing started.
    let mut s = Stream::new(c);
    s.push(
        &mut t,
        Direction::Recv,
        10,
        b"POST /submit HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    );
    s.push(
        &mut t,
        Direction::Send,
        20,
        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    );
    let rows = t.take_http_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].trace_role, 2, "received a request: server");
    assert_eq!(
        (rows[0].req_method.as_str(), rows[0].req_body_size),
        ("POST", 3)
    );
    assert_eq!(rows[0].remote_addr, "-");
    assert_eq!(t.stats().opened_from_data, 1);
}

#[test]
fn a_connection_found_mid_body_waits_for_the_next_message_start() {
    let mut t = connector();
    let c = conn(300);
    let mut s = Stream::new(c);
    s.push(&mut t, Direction::Recv, 10, b"tail of some earlier body");
    s.push(
        &mut t,
        Direction::Send,
        11,
        b"more bytes that are not a message start",
    );
    s.push(&mut t, Direction::Send, 12, REQ);
    s.push(&mut t, Direction::Recv, 13, RESP);
    let rows = t.take_http_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].trace_role, 1);
}

#[test]
fn non_http_traffic_is_counted_but_makes_no_rows() {
    let mut t = connector();
    let c = conn(100);
    t.handle(open(c, Role::Client, SERVER, CLIENT), 1);
    let mut s = Stream::new(c);
    for i in 0..20 {
        s.push(&mut t, Direction::Send, i, &[0x16, 0x03, 0x01, 0x00, 0x10]);
        s.push(&mut t, Direction::Recv, i, &[0x17, 0x03, 0x03]);
    }
    assert!(t.take_http_rows().is_empty());
    t.handle(close(c, 100, 60), 100);
    let rows = t.sample_conn_stats(100);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].protocol, 0);
    assert_eq!((rows[0].bytes_sent, rows[0].bytes_recv), (100, 60));
}

fn stats_row(rows: &[conn_stats::Row], pid: u32) -> &conn_stats::Row {
    rows.iter()
        .find(|r| r.upid.pid == pid)
        .expect("a conn_stats row for the pid")
}

#[test]
fn conn_stats_follow_open_bytes_and_close() {
    let mut t = connector();
    let c = conn(100);
    t.handle(open(c, Role::Client, SERVER, CLIENT), 1);
    let mut s = Stream::new(c);
    s.push(&mut t, Direction::Send, 10, REQ);
    s.push(&mut t, Direction::Recv, 20, RESP);

    let rows = t.sample_conn_stats(50);
    let r = stats_row(&rows, 100);
    assert_eq!((r.conn_open, r.conn_close, r.conn_active), (1, 0, 1));
    assert_eq!(
        (r.bytes_sent, r.bytes_recv),
        (REQ.len() as i64, RESP.len() as i64)
    );
    assert_eq!(
        (r.remote_addr.as_str(), r.remote_port, r.role, r.protocol),
        ("10.0.0.2", 8080, 1, 1)
    );
    assert_eq!(r.addr_family, i64::from(AF_INET));
    assert_eq!(r.time_, 50 + OFFSET);

    // The kernel's totals at close also cover a data event that never arrived.
    t.handle(close(c, REQ.len() as u64 + 7, RESP.len() as u64), 60);
    let rows = t.sample_conn_stats(70);
    let r = stats_row(&rows, 100);
    assert_eq!((r.conn_open, r.conn_close, r.conn_active), (1, 1, 0));
    assert_eq!(r.bytes_sent, REQ.len() as i64 + 7);
    assert!(
        t.sample_conn_stats(80).is_empty(),
        "reported once after the close"
    );
}

#[test]
fn closed_connections_linger_for_late_events_then_go() {
    let mut t = connector();
    let c = conn(100);
    t.handle(open(c, Role::Client, SERVER, CLIENT), 0);
    t.handle(close(c, 0, 0), 0);
    t.tick(500_000_000);
    assert_eq!(t.connections().count(), 1, "inside the grace period");
    t.tick(1_000_000_000);
    assert_eq!(t.connections().count(), 0);
    assert_eq!(t.stats().open_connections, 0);
}

#[test]
fn a_process_exit_closes_its_connections() {
    let mut t = connector();
    t.handle(open(conn(100), Role::Client, SERVER, CLIENT), 0);
    t.handle(open(conn(101), Role::Client, SERVER, CLIENT), 0);
    t.handle(
        Event::ProcExit {
            tgid: 100,
            timestamp_ns: 5,
        },
        5,
    );
    let rows = t.sample_conn_stats(10);
    assert_eq!(stats_row(&rows, 100).conn_close, 1);
    assert_eq!(stats_row(&rows, 101).conn_close, 0);
}

#[test]
fn a_lost_chunk_becomes_a_gap_after_the_reorder_wait() {
    let mut t = connector();
    let c = conn(100);
    t.handle(open(c, Role::Client, SERVER, CLIENT), 0);
    // Request 1 is lost in the ring buffer; request 2 and both responses arrive.
    let req2 = b"GET /second HTTP/1.1\r\n\r\n";
    t.handle(
        data(
            c,
            Direction::Send,
            REQ.len() as u64,
            10,
            req2,
            req2.len() as u32,
        ),
        10,
    );
    t.tick(100_000_000);
    assert!(t.take_http_rows().is_empty(), "still waiting for the hole");
    t.tick(300_000_000);
    let resp2 = b"HTTP/1.1 204 No Content\r\n\r\n";
    t.handle(
        data(
            c,
            Direction::Recv,
            0,
            400_000_000,
            resp2,
            resp2.len() as u32,
        ),
        400_000_000,
    );
    let rows = t.take_http_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].req_path.as_str(), rows[0].resp_status),
        ("/second", 204)
    );
}

#[test]
fn idle_connections_release_buffers_or_go_with_their_process() {
    let mut t = connector();
    let (alive, dead) = (conn(100), conn(101));
    t.handle(open(alive, Role::Client, SERVER, CLIENT), 0);
    t.handle(open(dead, Role::Client, SERVER, CLIENT), 0);
    // A half request sits in the parser of the live connection.
    t.handle(
        data(
            alive,
            Direction::Send,
            0,
            0,
            b"GET /half HTTP/1.1\r\nHo",
            22,
        ),
        0,
    );
    t.lookup.dead.insert(101);
    let idle = SocketTraceConfig::default().idle_timeout.as_nanos() as u64;
    t.tick(idle);
    assert_eq!(t.stats().idle_released, 1);
    assert_eq!(t.stats().idle_dropped, 1);
    assert_eq!(t.buffered_bytes(), 0);
    let rows = t.sample_conn_stats(idle);
    assert_eq!(stats_row(&rows, 100).conn_active, 1);
    assert_eq!(stats_row(&rows, 101).conn_close, 1);
    // The live connection parses again from the next message start.
    let mut s = Stream {
        c: alive,
        send_pos: 22,
        recv_pos: 0,
    };
    s.push(&mut t, Direction::Send, idle + 1, REQ);
    s.push(&mut t, Direction::Recv, idle + 2, RESP);
    assert_eq!(t.take_http_rows().len(), 1);
}

#[test]
fn the_upid_of_a_vanished_process_keeps_its_pid() {
    let mut t = connector();
    t.lookup.dead.insert(555);
    let c = conn(555);
    t.handle(open(c, Role::Client, SERVER, CLIENT), 0);
    let mut s = Stream::new(c);
    s.push(&mut t, Direction::Send, 1, REQ);
    s.push(&mut t, Direction::Recv, 2, RESP);
    let rows = t.take_http_rows();
    assert_eq!(rows[0].upid, Upid::new(7, 555, 0));
}

#[test]
fn role_for_maps_direction_and_message_kind() {
    use pixie_protocols::http::MessageKind;
    assert_eq!(
        conn_tracker::role_for(Direction::Send, MessageKind::Request),
        Role::Client
    );
    assert_eq!(
        conn_tracker::role_for(Direction::Recv, MessageKind::Response),
        Role::Client
    );
    assert_eq!(
        conn_tracker::role_for(Direction::Recv, MessageKind::Request),
        Role::Server
    );
    assert_eq!(
        conn_tracker::role_for(Direction::Send, MessageKind::Response),
        Role::Server
    );
    let _: SocketAddr = SERVER.parse().unwrap();
}

#[test]
fn a_new_connection_on_an_fd_closes_one_whose_close_was_lost() {
    let mut t = connector();
    let old = ConnId {
        tgid: 100,
        fd: 5,
        generation: 1,
    };
    let new = ConnId {
        tgid: 100,
        fd: 5,
        generation: 2,
    };
    t.handle(open(old, Role::Client, SERVER, CLIENT), 0);
    t.handle(open(new, Role::Client, SERVER, "10.0.0.1:40001"), 10);
    assert_eq!(t.stats().superseded, 1);
    let rows = t.sample_conn_stats(20);
    let r = stats_row(&rows, 100);
    assert_eq!((r.conn_open, r.conn_close, r.conn_active), (2, 1, 1));
    // Data on the fd without an open (its open was lost too) supersedes the same way.
    let newer = ConnId {
        tgid: 100,
        fd: 5,
        generation: 3,
    };
    t.handle(
        data(newer, Direction::Send, 0, 30, REQ, REQ.len() as u32),
        30,
    );
    assert_eq!(t.stats().superseded, 2);
}
