//! Builders shared by the HTTP test suites: wire bytes for messages, and a conversation that is
//! fed to an `HttpStream` in order.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;

use pixie_protocols::http::{HttpLimits, HttpRecord, HttpStream, HttpStreamStats};
use pixie_protocols::{Direction, TraceRole};

/// A request or response head with the given first line and headers, then `body` verbatim.
pub fn message(first_line: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{first_line}\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `body` in chunked transfer coding, cut into chunks of the given sizes (cycled; zero sizes are
/// skipped because a zero chunk ends the body).
pub fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = sizes.iter().copied().filter(|s| *s > 0).cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// One push (or lost bytes) in syscall order.
#[derive(Debug, Clone)]
pub enum Event {
    Data {
        dir: Direction,
        ts: u64,
        bytes: Vec<u8>,
    },
    Gap {
        dir: Direction,
        len: u64,
    },
}

/// Feeds a conversation to a fresh stream; returns its records and stats.
pub fn run(
    role: TraceRole,
    limits: HttpLimits,
    events: &[Event],
) -> (Vec<HttpRecord>, HttpStreamStats) {
    let mut stream = HttpStream::new(role, limits);
    let mut records = Vec::new();
    for event in events {
        match event {
            Event::Data { dir, ts, bytes } => stream.push(*dir, *ts, bytes),
            Event::Gap { dir, len } => stream.push_gap(*dir, *len),
        }
        records.extend(stream.drain());
    }
    (records, stream.stats())
}

/// Client-side shorthand: requests are sent, responses received.
pub fn send(ts: u64, bytes: impl AsRef<[u8]>) -> Event {
    Event::Data {
        dir: Direction::Send,
        ts,
        bytes: bytes.as_ref().to_vec(),
    }
}

pub fn recv(ts: u64, bytes: impl AsRef<[u8]>) -> Event {
    Event::Data {
        dir: Direction::Recv,
        ts,
        bytes: bytes.as_ref().to_vec(),
    }
}

pub fn client(events: &[Event]) -> (Vec<HttpRecord>, HttpStreamStats) {
    run(TraceRole::Client, HttpLimits::default(), events)
}

/// (method, path, status, request body size, response body size) of each record.
pub fn summary(records: &[HttpRecord]) -> Vec<(String, String, u16, u64, u64)> {
    records
        .iter()
        .map(|r| {
            (
                r.req.method.clone(),
                r.req.path.clone(),
                r.resp.status,
                r.req.body_size,
                r.resp.body_size,
            )
        })
        .collect()
}
