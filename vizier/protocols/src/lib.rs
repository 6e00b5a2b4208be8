//! Pure, incremental wire-protocol parsers: bytes in, request/response records out. No I/O, and
//! no input may panic them or make them grow without bound.
//!
//! The socket tracer (`pixie-collector`) owns the connections: it infers each connection's protocol
//! from its first bytes ([`http::infer`]), then feeds both byte streams, in syscall order, to one
//! stream parser per connection ([`http::HttpStream`]) and drains the finished records into the
//! `http_events` table. Everything here is synchronous and allocation-bounded by explicit limits
//! ([`http::HttpLimits`]), so a hostile or corrupt stream costs bounded memory and is counted in
//! the stream's stats instead of being trusted.

pub mod http;

/// Which side of the connection the traced process is on.
///
/// It decides which [`Direction`] carries requests: a client sends requests and receives
/// responses, a server receives requests and sends responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceRole {
    Client,
    Server,
}

impl TraceRole {
    /// The value Pixie stores in the `trace_role` column (`kRoleClient = 1`, `kRoleServer = 2`).
    pub fn pixie_value(self) -> i64 {
        match self {
            TraceRole::Client => 1,
            TraceRole::Server => 2,
        }
    }

    /// The direction that carries this side's requests.
    pub fn request_direction(self) -> Direction {
        match self {
            TraceRole::Client => Direction::Send,
            TraceRole::Server => Direction::Recv,
        }
    }
}

/// Bytes the traced process wrote (`Send`) or read (`Recv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Send,
    Recv,
}
