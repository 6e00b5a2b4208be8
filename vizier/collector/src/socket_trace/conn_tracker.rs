//! One traced connection: its endpoints and role, both directions' reassembly, protocol inference
//! and the HTTP parser that turns its bytes into records.

use std::net::SocketAddr;

use pixie_bpf::{ConnId, ConnOpen, DataEvent, Direction, OpenSource, Role};
use pixie_protocols::http::{self, HttpLimits, HttpRecord, HttpStream, MessageKind};
use pixie_protocols::{Direction as ParserDirection, TraceRole as ParserRole};
use pixie_store::Upid;
use pixie_store::tables::{Protocol, TraceRole};

use super::SocketTraceConfig;
use super::reassembly::{Reassembler, ReassemblyStats, Segment};
use crate::conn_stats::ConnSnapshot;

/// Data chunks tried for protocol inference before a connection is taken to be something else.
/// More than one: a connection found mid-stream may start in the middle of a body.
const MAX_INFERENCE_ATTEMPTS: u32 = 8;

#[derive(Debug)]
enum ProtocolState {
    Unknown {
        attempts: u32,
    },
    Http(Box<HttpStream>),
    /// Not a protocol we parse: bytes are only counted.
    Other,
}

#[derive(Debug)]
pub struct ConnTracker {
    pub id: ConnId,
    pub upid: Upid,
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub addr_family: u16,
    pub role: Role,
    /// None when the open event was never seen (lost, or a tracker rebuilt from data).
    pub source: Option<OpenSource>,
    /// Stream bytes seen per direction, gaps included.
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    /// Monotonic time of the last event.
    pub last_activity_ns: u64,
    /// Monotonic time of the close, once closed.
    pub closed_at_ns: Option<u64>,
    protocol: ProtocolState,
    send: Reassembler,
    recv: Reassembler,
    http_limits: HttpLimits,
}

impl ConnTracker {
    pub fn from_open(open: &ConnOpen, upid: Upid, config: &SocketTraceConfig, now_ns: u64) -> Self {
        let mut t = ConnTracker::unknown(open.conn, upid, config, now_ns);
        t.remote = open.remote.socket_addr();
        t.local = open.local.socket_addr();
        t.addr_family = open.remote.family;
        t.role = open.role;
        t.source = Some(open.source);
        t
    }

    /// A connection we learn about from its data only.
    pub fn unknown(id: ConnId, upid: Upid, config: &SocketTraceConfig, now_ns: u64) -> Self {
        let limits = config.http_limits;
        // Each direction waits behind holes with up to half of the connection's spike budget.
        let per_direction = config.spike_bytes.unwrap_or(limits.max_buffered_bytes) / 2;
        ConnTracker {
            id,
            upid,
            remote: None,
            local: None,
            addr_family: 0,
            role: Role::Unknown,
            source: None,
            bytes_sent: 0,
            bytes_recv: 0,
            last_activity_ns: now_ns,
            closed_at_ns: None,
            protocol: ProtocolState::Unknown { attempts: 0 },
            send: Reassembler::new(per_direction),
            recv: Reassembler::new(per_direction),
            http_limits: limits,
        }
    }

    /// Adds a data event and returns the records it completed.
    pub fn on_data(&mut self, ev: &DataEvent<'_>, now_ns: u64) -> Vec<HttpRecord> {
        self.last_activity_ns = now_ns;
        let stream_end = ev.pos + u64::from(ev.msg_size);
        let (reassembler, bytes) = match ev.direction {
            Direction::Send => (&mut self.send, &mut self.bytes_sent),
            Direction::Recv => (&mut self.recv, &mut self.bytes_recv),
        };
        // Positions are stream offsets from the open, so the furthest end is the byte count,
        // and chunks lost in the ring buffer are still counted.
        *bytes = (*bytes).max(stream_end);
        let protocol = &mut self.protocol;
        let role = &mut self.role;
        let limits = self.http_limits;
        let dir = ev.direction;
        reassembler.push(
            ev.pos,
            u64::from(ev.msg_size),
            ev.timestamp_ns,
            ev.data,
            now_ns,
            &mut |seg| deliver(protocol, role, limits, dir, seg),
        );
        self.drain()
    }

    /// Gives up on holes older than `max_wait_ns`; returns the records that completes.
    pub fn expire_holes(&mut self, now_ns: u64, max_wait_ns: u64) -> Vec<HttpRecord> {
        let (protocol, role, limits) = (&mut self.protocol, &mut self.role, self.http_limits);
        self.send.expire_hole(now_ns, max_wait_ns, &mut |seg| {
            deliver(protocol, role, limits, Direction::Send, seg)
        });
        self.recv.expire_hole(now_ns, max_wait_ns, &mut |seg| {
            deliver(protocol, role, limits, Direction::Recv, seg)
        });
        self.drain()
    }

    /// The connection closed: flushes both directions and the parser. `kernel_sent`/`recv` are the
    /// kernel's byte totals, which also cover data events that were lost.
    pub fn close(&mut self, kernel_sent: u64, kernel_recv: u64, now_ns: u64) -> Vec<HttpRecord> {
        self.bytes_sent = self.bytes_sent.max(kernel_sent);
        self.bytes_recv = self.bytes_recv.max(kernel_recv);
        self.closed_at_ns = Some(now_ns);
        self.last_activity_ns = now_ns;
        let (protocol, role, limits) = (&mut self.protocol, &mut self.role, self.http_limits);
        self.send
            .flush(&mut |seg| deliver(protocol, role, limits, Direction::Send, seg));
        self.recv
            .flush(&mut |seg| deliver(protocol, role, limits, Direction::Recv, seg));
        if let ProtocolState::Http(stream) = &mut self.protocol {
            stream.close();
        }
        self.drain()
    }

    /// Releases parser and reassembly memory of an idle connection; counters and endpoints stay.
    /// The parser restarts at the next message start.
    pub fn release_buffers(&mut self) {
        self.send.discard();
        self.recv.discard();
        if matches!(self.protocol, ProtocolState::Http(_)) {
            self.protocol = ProtocolState::Unknown { attempts: 0 };
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed_at_ns.is_some()
    }

    pub fn protocol(&self) -> Protocol {
        match self.protocol {
            ProtocolState::Http(_) => Protocol::Http,
            ProtocolState::Unknown { .. } | ProtocolState::Other => Protocol::Unknown,
        }
    }

    pub fn trace_role(&self) -> TraceRole {
        match self.role {
            Role::Unknown => TraceRole::Unknown,
            Role::Client => TraceRole::Client,
            Role::Server => TraceRole::Server,
        }
    }

    /// Bytes held for this connection: reassembly waits plus the parser's buffers.
    pub fn buffered_bytes(&self) -> usize {
        let parser = match &self.protocol {
            ProtocolState::Http(s) => s.buffered_bytes(),
            _ => 0,
        };
        self.send.waiting_bytes() + self.recv.waiting_bytes() + parser
    }

    pub fn reassembly_stats(&self) -> (ReassemblyStats, ReassemblyStats) {
        (self.send.stats(), self.recv.stats())
    }

    pub fn http_stats(&self) -> Option<http::HttpStreamStats> {
        match &self.protocol {
            ProtocolState::Http(s) => Some(s.stats()),
            _ => None,
        }
    }

    pub fn snapshot(&self) -> ConnSnapshot {
        ConnSnapshot {
            upid: self.upid,
            remote: self.remote,
            addr_family: self.addr_family,
            role: self.trace_role(),
            protocol: self.protocol(),
            bytes_sent: self.bytes_sent,
            bytes_recv: self.bytes_recv,
        }
    }

    fn drain(&mut self) -> Vec<HttpRecord> {
        match &mut self.protocol {
            ProtocolState::Http(stream) => stream.drain(),
            _ => Vec::new(),
        }
    }
}

/// Which role a first message implies: sending a request or receiving a response is a client.
pub fn role_for(dir: Direction, kind: MessageKind) -> Role {
    match (dir, kind) {
        (Direction::Send, MessageKind::Request) | (Direction::Recv, MessageKind::Response) => {
            Role::Client
        }
        (Direction::Recv, MessageKind::Request) | (Direction::Send, MessageKind::Response) => {
            Role::Server
        }
    }
}

fn parser_direction(dir: Direction) -> ParserDirection {
    match dir {
        Direction::Send => ParserDirection::Send,
        Direction::Recv => ParserDirection::Recv,
    }
}

/// Hands one in-order segment to the protocol state, inferring the protocol (and, for connections
/// found mid-stream, the role) from the first data that looks like a message start.
fn deliver(
    protocol: &mut ProtocolState,
    role: &mut Role,
    limits: HttpLimits,
    dir: Direction,
    seg: Segment<'_>,
) {
    match (&mut *protocol, seg) {
        (
            ProtocolState::Http(stream),
            Segment::Data {
                timestamp_ns,
                bytes,
            },
        ) => stream.push(parser_direction(dir), timestamp_ns, bytes),
        (ProtocolState::Http(stream), Segment::Gap(len)) => {
            stream.push_gap(parser_direction(dir), len)
        }
        (
            ProtocolState::Unknown { attempts },
            Segment::Data {
                timestamp_ns,
                bytes,
            },
        ) => {
            let implied = http::infer(bytes).map(|kind| role_for(dir, kind));
            match implied {
                Some(implied) if *role == Role::Unknown || *role == implied => {
                    *role = implied;
                    let parser_role = match implied {
                        Role::Client => ParserRole::Client,
                        _ => ParserRole::Server,
                    };
                    let mut stream = Box::new(HttpStream::new(parser_role, limits));
                    stream.push(parser_direction(dir), timestamp_ns, bytes);
                    *protocol = ProtocolState::Http(stream);
                }
                _ => {
                    *attempts += 1;
                    if *attempts >= MAX_INFERENCE_ATTEMPTS {
                        *protocol = ProtocolState::Other;
                    }
                }
            }
        }
        (ProtocolState::Unknown { .. }, Segment::Gap(_)) | (ProtocolState::Other, _) => {}
    }
}
