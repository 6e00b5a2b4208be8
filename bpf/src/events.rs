//! The ring buffer records of the socket tracer: `#[repr(C)]` mirrors of `include/socket_trace.h`
//! and a decoder from raw record bytes to [`Event`].

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::header::*;

/// A traced connection: process, fd and the monotonic time of its open (unique per fd reuse).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub tgid: u32,
    pub fd: i32,
    pub generation: u64,
}

/// An IPv4/IPv6 address and port as the kernel side reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    pub _pad: u32,
    /// IPv4 in the first four bytes, network order.
    pub addr: [u8; 16],
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

impl Endpoint {
    pub fn ip(&self) -> Option<IpAddr> {
        match self.family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
                self.addr[0],
                self.addr[1],
                self.addr[2],
                self.addr[3],
            ))),
            AF_INET6 => {
                let v6 = Ipv6Addr::from(self.addr);
                // Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d; show them as IPv4.
                Some(
                    v6.to_ipv4_mapped()
                        .map(IpAddr::V4)
                        .unwrap_or(IpAddr::V6(v6)),
                )
            }
            _ => None,
        }
    }

    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.ip().map(|ip| SocketAddr::new(ip, self.port))
    }

    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        let mut out = Endpoint {
            port: addr.port(),
            ..Default::default()
        };
        match addr.ip() {
            IpAddr::V4(v4) => {
                out.family = AF_INET;
                out.addr[..4].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.family = AF_INET6;
                out.addr = v6.octets();
            }
        }
        out
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u32,
    pub _pad: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    pub conn: ConnId,
}

/// `PX_EVENT_CONN_OPEN` / `PX_EVENT_CONN_CLOSE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnEvent {
    pub hdr: EventHeader,
    pub remote: Endpoint,
    pub local: Endpoint,
    /// On close: stream bytes the kernel side saw since the open.
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub role: u32,
    pub source: u32,
}

/// The fixed part of `px_data_event` (everything before `data`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataEventHeader {
    pub hdr: EventHeader,
    pub pos: u64,
    pub msg_size: u32,
    pub data_len: u32,
    pub direction: u32,
    pub syscall_nr: u32,
}

// The layout checks: the same numbers the C compiler checks in socket_trace.h.
const _: () = {
    assert!(size_of::<ConnId>() == PX_LAYOUT_PX_CONN_ID_SIZE);
    assert!(offset_of!(ConnId, tgid) == PX_LAYOUT_PX_CONN_ID_TGID);
    assert!(offset_of!(ConnId, fd) == PX_LAYOUT_PX_CONN_ID_FD);
    assert!(offset_of!(ConnId, generation) == PX_LAYOUT_PX_CONN_ID_GENERATION);
    assert!(size_of::<Endpoint>() == PX_LAYOUT_PX_ENDPOINT_SIZE);
    assert!(offset_of!(Endpoint, family) == PX_LAYOUT_PX_ENDPOINT_FAMILY);
    assert!(offset_of!(Endpoint, port) == PX_LAYOUT_PX_ENDPOINT_PORT);
    assert!(offset_of!(Endpoint, addr) == PX_LAYOUT_PX_ENDPOINT_ADDR);
    assert!(size_of::<EventHeader>() == PX_LAYOUT_PX_EVENT_HEADER_SIZE);
    assert!(offset_of!(EventHeader, kind) == PX_LAYOUT_PX_EVENT_HEADER_KIND);
    assert!(offset_of!(EventHeader, timestamp_ns) == PX_LAYOUT_PX_EVENT_HEADER_TIMESTAMP_NS);
    assert!(offset_of!(EventHeader, conn) == PX_LAYOUT_PX_EVENT_HEADER_CONN);
    assert!(size_of::<ConnEvent>() == PX_LAYOUT_PX_CONN_EVENT_SIZE);
    assert!(offset_of!(ConnEvent, remote) == PX_LAYOUT_PX_CONN_EVENT_REMOTE);
    assert!(offset_of!(ConnEvent, local) == PX_LAYOUT_PX_CONN_EVENT_LOCAL);
    assert!(offset_of!(ConnEvent, bytes_sent) == PX_LAYOUT_PX_CONN_EVENT_BYTES_SENT);
    assert!(offset_of!(ConnEvent, bytes_recv) == PX_LAYOUT_PX_CONN_EVENT_BYTES_RECV);
    assert!(offset_of!(ConnEvent, role) == PX_LAYOUT_PX_CONN_EVENT_ROLE);
    assert!(offset_of!(ConnEvent, source) == PX_LAYOUT_PX_CONN_EVENT_SOURCE);
    assert!(size_of::<DataEventHeader>() == PX_LAYOUT_PX_DATA_EVENT_DATA);
    assert!(PX_LAYOUT_PX_DATA_EVENT_SIZE == PX_LAYOUT_PX_DATA_EVENT_DATA + PX_MAX_DATA as usize);
    assert!(offset_of!(DataEventHeader, pos) == PX_LAYOUT_PX_DATA_EVENT_POS);
    assert!(offset_of!(DataEventHeader, msg_size) == PX_LAYOUT_PX_DATA_EVENT_MSG_SIZE);
    assert!(offset_of!(DataEventHeader, data_len) == PX_LAYOUT_PX_DATA_EVENT_DATA_LEN);
    assert!(offset_of!(DataEventHeader, direction) == PX_LAYOUT_PX_DATA_EVENT_DIRECTION);
    assert!(offset_of!(DataEventHeader, syscall_nr) == PX_LAYOUT_PX_DATA_EVENT_SYSCALL_NR);
    assert!(size_of::<EventHeader>() == PX_LAYOUT_PX_PROC_EVENT_SIZE);
};

/// Which side of the connection the traced process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Seen before tracing started: decided later from the traffic.
    Unknown,
    Client,
    Server,
}

impl Role {
    fn from_raw(raw: u32) -> Result<Self, DecodeError> {
        match raw {
            PX_ROLE_UNKNOWN => Ok(Role::Unknown),
            PX_ROLE_CLIENT => Ok(Role::Client),
            PX_ROLE_SERVER => Ok(Role::Server),
            other => Err(DecodeError::BadField {
                field: "role",
                value: other,
            }),
        }
    }
}

/// How the kernel side learned about a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenSource {
    Connect,
    Accept,
    /// First data on a socket opened before tracing started.
    Inferred,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Send,
    Recv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnOpen {
    pub conn: ConnId,
    pub timestamp_ns: u64,
    pub remote: Endpoint,
    pub local: Endpoint,
    pub role: Role,
    pub source: OpenSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnClose {
    pub conn: ConnId,
    pub timestamp_ns: u64,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
}

/// A chunk of one direction's byte stream: `data` covers `[pos, pos + data.len())`, and
/// `[pos + data.len(), pos + msg_size)` was not captured (a gap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataEvent<'a> {
    pub conn: ConnId,
    pub timestamp_ns: u64,
    pub direction: Direction,
    pub pos: u64,
    pub msg_size: u32,
    pub syscall_nr: u32,
    pub data: &'a [u8],
}

impl DataEvent<'_> {
    /// Stream bytes the syscall moved that are not in `data`.
    pub fn gap_len(&self) -> u64 {
        u64::from(self.msg_size) - self.data.len() as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    ConnOpen(ConnOpen),
    ConnClose(ConnClose),
    Data(DataEvent<'a>),
    ProcExit { tgid: u32, timestamp_ns: u64 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than a {what} ({need} bytes)")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("bad {field} value {value}")]
    BadField { field: &'static str, value: u32 },
    #[error(
        "data_len {data_len} exceeds msg_size {msg_size} or the record ({available} bytes left)"
    )]
    BadDataLen {
        data_len: u32,
        msg_size: u32,
        available: usize,
    },
}

/// Plain-old-data records: every bit pattern is a valid value.
///
/// # Safety
/// Only for `#[repr(C)]` structs made of integers and integer arrays.
unsafe trait Pod: Copy {}
unsafe impl Pod for EventHeader {}
unsafe impl Pod for ConnEvent {}
unsafe impl Pod for DataEventHeader {}

fn read<T: Pod>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            what,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: the length is checked above, T is Pod (any bit pattern is valid) and
    // read_unaligned has no alignment requirement.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes one ring buffer record.
pub fn decode(record: &[u8]) -> Result<Event<'_>, DecodeError> {
    let hdr: EventHeader = read(record, "event header")?;
    match hdr.kind {
        PX_EVENT_CONN_OPEN => {
            let ev: ConnEvent = read(record, "connection event")?;
            let source = match ev.source {
                PX_SOURCE_CONNECT => OpenSource::Connect,
                PX_SOURCE_ACCEPT => OpenSource::Accept,
                PX_SOURCE_INFERRED => OpenSource::Inferred,
                other => {
                    return Err(DecodeError::BadField {
                        field: "source",
                        value: other,
                    });
                }
            };
            Ok(Event::ConnOpen(ConnOpen {
                conn: hdr.conn,
                timestamp_ns: hdr.timestamp_ns,
                remote: ev.remote,
                local: ev.local,
                role: Role::from_raw(ev.role)?,
                source,
            }))
        }
        PX_EVENT_CONN_CLOSE => {
            let ev: ConnEvent = read(record, "connection event")?;
            Ok(Event::ConnClose(ConnClose {
                conn: hdr.conn,
                timestamp_ns: hdr.timestamp_ns,
                bytes_sent: ev.bytes_sent,
                bytes_recv: ev.bytes_recv,
            }))
        }
        PX_EVENT_DATA => {
            let ev: DataEventHeader = read(record, "data event")?;
            let payload = &record[size_of::<DataEventHeader>()..];
            if ev.data_len > ev.msg_size
                || ev.data_len > PX_MAX_DATA
                || ev.data_len as usize > payload.len()
            {
                return Err(DecodeError::BadDataLen {
                    data_len: ev.data_len,
                    msg_size: ev.msg_size,
                    available: payload.len(),
                });
            }
            let direction = match ev.direction {
                PX_DIR_SEND => Direction::Send,
                PX_DIR_RECV => Direction::Recv,
                other => {
                    return Err(DecodeError::BadField {
                        field: "direction",
                        value: other,
                    });
                }
            };
            Ok(Event::Data(DataEvent {
                conn: hdr.conn,
                timestamp_ns: hdr.timestamp_ns,
                direction,
                pos: ev.pos,
                msg_size: ev.msg_size,
                syscall_nr: ev.syscall_nr,
                data: &payload[..ev.data_len as usize],
            }))
        }
        PX_EVENT_PROC_EXIT => Ok(Event::ProcExit {
            tgid: hdr.conn.tgid,
            timestamp_ns: hdr.timestamp_ns,
        }),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// Test helpers that build records the way the kernel side lays them out.
pub mod encode {
    use super::*;

    fn bytes_of<T: Pod>(v: &T) -> Vec<u8> {
        // SAFETY: T is Pod: a plain #[repr(C)] struct of integers, so its bytes are initialised
        // (the explicit _pad fields leave no implicit padding).
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    pub fn conn_event(ev: &ConnEvent) -> Vec<u8> {
        bytes_of(ev)
    }

    pub fn data_event(hdr: &DataEventHeader, data: &[u8]) -> Vec<u8> {
        let mut out = bytes_of(hdr);
        out.extend_from_slice(data);
        out
    }

    pub fn header(hdr: &EventHeader) -> Vec<u8> {
        bytes_of(hdr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnId {
        ConnId {
            tgid: 42,
            fd: 7,
            generation: 1234,
        }
    }

    #[test]
    fn decodes_an_open_with_ipv4_endpoints() {
        let ev = ConnEvent {
            hdr: EventHeader {
                kind: PX_EVENT_CONN_OPEN,
                timestamp_ns: 99,
                conn: conn(),
                ..Default::default()
            },
            remote: Endpoint::from_socket_addr("10.1.2.3:8080".parse().unwrap()),
            local: Endpoint::from_socket_addr("127.0.0.1:5555".parse().unwrap()),
            role: PX_ROLE_CLIENT,
            source: PX_SOURCE_CONNECT,
            ..Default::default()
        };
        let bytes = encode::conn_event(&ev);
        let Event::ConnOpen(open) = decode(&bytes).unwrap() else {
            panic!("not an open")
        };
        assert_eq!(open.conn, conn());
        assert_eq!(open.timestamp_ns, 99);
        assert_eq!(
            open.remote.socket_addr(),
            Some("10.1.2.3:8080".parse().unwrap())
        );
        assert_eq!(
            open.local.socket_addr(),
            Some("127.0.0.1:5555".parse().unwrap())
        );
        assert_eq!(open.role, Role::Client);
        assert_eq!(open.source, OpenSource::Connect);
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_read_as_ipv4() {
        let ep = Endpoint::from_socket_addr("[::ffff:192.168.0.9]:80".parse().unwrap());
        assert_eq!(ep.family, AF_INET6);
        assert_eq!(ep.ip(), Some("192.168.0.9".parse().unwrap()));
        let v6 = Endpoint::from_socket_addr("[2001:db8::1]:443".parse().unwrap());
        assert_eq!(v6.ip(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(Endpoint::default().ip(), None);
    }

    #[test]
    fn decodes_a_close_with_kernel_byte_totals() {
        let ev = ConnEvent {
            hdr: EventHeader {
                kind: PX_EVENT_CONN_CLOSE,
                conn: conn(),
                ..Default::default()
            },
            bytes_sent: 10,
            bytes_recv: 20,
            ..Default::default()
        };
        let Event::ConnClose(close) = decode(&encode::conn_event(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!((close.bytes_sent, close.bytes_recv), (10, 20));
    }

    #[test]
    fn decodes_a_truncated_data_event_as_payload_plus_gap() {
        let hdr = DataEventHeader {
            hdr: EventHeader {
                kind: PX_EVENT_DATA,
                timestamp_ns: 5,
                conn: conn(),
                ..Default::default()
            },
            pos: 100,
            msg_size: 10,
            data_len: 4,
            direction: PX_DIR_RECV,
            syscall_nr: 45,
        };
        let bytes = encode::data_event(&hdr, b"GET ");
        let Event::Data(data) = decode(&bytes).unwrap() else {
            panic!("not data")
        };
        assert_eq!(data.data, b"GET ");
        assert_eq!(data.pos, 100);
        assert_eq!(data.gap_len(), 6);
        assert_eq!(data.direction, Direction::Recv);
    }

    #[test]
    fn rejects_records_that_lie_about_their_length() {
        let mut hdr = DataEventHeader {
            hdr: EventHeader {
                kind: PX_EVENT_DATA,
                conn: conn(),
                ..Default::default()
            },
            msg_size: 10,
            data_len: 8,
            direction: PX_DIR_SEND,
            ..Default::default()
        };
        // Fewer payload bytes than data_len.
        assert!(matches!(
            decode(&encode::data_event(&hdr, b"abc")),
            Err(DecodeError::BadDataLen { .. })
        ));
        // data_len larger than msg_size.
        hdr.data_len = 11;
        assert!(matches!(
            decode(&encode::data_event(&hdr, &[0; 11])),
            Err(DecodeError::BadDataLen { .. })
        ));
        // A header cut short.
        let full = encode::conn_event(&ConnEvent {
            hdr: EventHeader {
                kind: PX_EVENT_CONN_OPEN,
                ..Default::default()
            },
            source: PX_SOURCE_ACCEPT,
            ..Default::default()
        });
        assert!(matches!(
            decode(&full[..50]),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(decode(&full[..3]), Err(DecodeError::Short { .. })));
    }

    #[test]
    fn rejects_unknown_kinds_and_enum_values() {
        let hdr = EventHeader {
            kind: 77,
            ..Default::default()
        };
        assert_eq!(
            decode(&encode::header(&hdr)),
            Err(DecodeError::UnknownKind(77))
        );
        let ev = ConnEvent {
            hdr: EventHeader {
                kind: PX_EVENT_CONN_OPEN,
                ..Default::default()
            },
            role: 9,
            source: PX_SOURCE_ACCEPT,
            ..Default::default()
        };
        assert_eq!(
            decode(&encode::conn_event(&ev)),
            Err(DecodeError::BadField {
                field: "role",
                value: 9
            })
        );
    }

    #[test]
    fn decodes_process_exit() {
        let hdr = EventHeader {
            kind: PX_EVENT_PROC_EXIT,
            timestamp_ns: 8,
            conn: ConnId {
                tgid: 31,
                fd: -1,
                generation: 0,
            },
            ..Default::default()
        };
        assert_eq!(
            decode(&encode::header(&hdr)),
            Ok(Event::ProcExit {
                tgid: 31,
                timestamp_ns: 8
            })
        );
    }
}
