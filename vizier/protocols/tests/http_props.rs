//! Properties of `HttpStream` over generated conversations and arbitrary bytes.

mod common;

use common::*;
use pixie_protocols::http::{HttpLimits, HttpRecord, HttpStream};
use pixie_protocols::{Direction, TraceRole};
use proptest::prelude::*;
use proptest::sample::Index;

/// One generated request/response pair, before rendering to bytes.
#[derive(Debug, Clone)]
struct Exchange {
    method: String,
    path: String,
    req_body: Vec<u8>,
    req_chunks: Option<Vec<usize>>,
    status: u16,
    reason: String,
    resp_body: Vec<u8>,
    resp_chunks: Option<Vec<usize>>,
    resp_gzip: bool,
}

impl Exchange {
    fn response_has_body(&self) -> bool {
        self.method != "HEAD" && self.status != 204 && self.status != 304
    }

    fn request_bytes(&self) -> Vec<u8> {
        let line = format!("{} {} HTTP/1.1", self.method, self.path);
        match &self.req_chunks {
            Some(sizes) => message(
                &line,
                &[("Host", "h"), ("Transfer-Encoding", "chunked")],
                &chunked(&self.req_body, sizes),
            ),
            None => message(
                &line,
                &[
                    ("Host", "h"),
                    ("Content-Length", &self.req_body.len().to_string()),
                ],
                &self.req_body,
            ),
        }
    }

    /// The response body as sent: gzip-compressed if chosen.
    fn resp_wire_body(&self) -> Vec<u8> {
        if self.resp_gzip {
            gzip(&self.resp_body)
        } else {
            self.resp_body.clone()
        }
    }

    fn response_bytes(&self) -> Vec<u8> {
        let line = format!("HTTP/1.1 {} {}", self.status, self.reason);
        let wire = self.resp_wire_body();
        let mut headers = vec![("Content-Type", "application/json")];
        if self.resp_gzip {
            headers.push(("Content-Encoding", "gzip"));
        }
        let length = wire.len().to_string();
        let body = match &self.resp_chunks {
            Some(sizes) => {
                headers.push(("Transfer-Encoding", "chunked"));
                chunked(&wire, sizes)
            }
            None => {
                headers.push(("Content-Length", &length));
                wire
            }
        };
        // HEAD, 204 and 304 carry the headers of a body but not the body itself.
        message(
            &line,
            &headers,
            if self.response_has_body() { &body } else { b"" },
        )
    }
}

fn exchange() -> impl Strategy<Value = Exchange> {
    let method = prop::sample::select(vec![
        "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND",
    ]);
    let chunks = prop::option::of(prop::collection::vec(1usize..40, 1..4));
    let status = prop_oneof![Just(200u16), Just(204), Just(304), Just(404), 200u16..600];
    (
        method,
        "/[a-z0-9._~-]{0,12}(\\?[a-z0-9=&]{0,8})?",
        prop::collection::vec(any::<u8>(), 0..200),
        chunks.clone(),
        status,
        "[A-Za-z ]{0,12}",
        prop::collection::vec(any::<u8>(), 0..300),
        chunks,
        any::<bool>(),
    )
        .prop_map(
            |(
                method,
                path,
                req_body,
                req_chunks,
                status,
                reason,
                resp_body,
                resp_chunks,
                resp_gzip,
            )| Exchange {
                method: method.to_string(),
                path,
                req_body,
                req_chunks,
                status,
                reason: reason.trim().to_string(),
                resp_body,
                resp_chunks,
                resp_gzip,
            },
        )
}

/// Exchanges and how many requests are pipelined before their responses.
fn conversation() -> impl Strategy<Value = (Vec<Exchange>, usize, TraceRole)> {
    (
        prop::collection::vec(exchange(), 1..8),
        1usize..4,
        prop_oneof![Just(TraceRole::Client), Just(TraceRole::Server)],
    )
}

/// The conversation as pushes in syscall order, one push per message.
fn events(exchanges: &[Exchange], depth: usize, role: TraceRole) -> Vec<Event> {
    let request_dir = role.request_direction();
    let response_dir = if request_dir == Direction::Send {
        Direction::Recv
    } else {
        Direction::Send
    };
    let mut ts = 0;
    let mut out = Vec::new();
    for group in exchanges.chunks(depth) {
        for (dir, bytes) in group
            .iter()
            .map(|e| (request_dir, e.request_bytes()))
            .chain(group.iter().map(|e| (response_dir, e.response_bytes())))
        {
            ts += 100;
            out.push(Event::Data { dir, ts, bytes });
        }
    }
    out
}

/// Each push cut at the given points (same timestamp for every piece).
fn split(events: &[Event], cuts: &[Vec<Index>]) -> Vec<Event> {
    let mut out = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let Event::Data { dir, ts, bytes } = event else {
            out.push(event.clone());
            continue;
        };
        let mut points: Vec<usize> = cuts
            .get(i % cuts.len().max(1))
            .map(|c| c.iter().map(|ix| ix.index(bytes.len() + 1)).collect())
            .unwrap_or_default();
        points.sort_unstable();
        points.dedup();
        let mut start = 0;
        for point in points.into_iter().chain([bytes.len()]) {
            out.push(Event::Data {
                dir: *dir,
                ts: *ts,
                bytes: bytes[start..point].to_vec(),
            });
            start = point;
        }
    }
    out
}

const SMALL_BODY: HttpLimits = HttpLimits {
    max_body_bytes: 64,
    max_header_bytes: 16 * 1024,
    max_buffered_bytes: 1 << 20,
    max_pending: 1024,
};

// Default config: 256 cases, or PROPTEST_CASES for a longer hunt.
proptest! {
    /// (1) However the pushes are cut, the records are the same as with one push per message.
    #[test]
    fn any_split_of_a_valid_stream_yields_the_same_records(
        (exchanges, depth, role) in conversation(),
        cuts in prop::collection::vec(prop::collection::vec(any::<Index>(), 0..6), 0..20),
    ) {
        let whole = events(&exchanges, depth, role);
        let (expected, _) = run(role, SMALL_BODY, &whole);
        let (got, stats) = run(role, SMALL_BODY, &split(&whole, &cuts));
        prop_assert_eq!(got, expected);
        prop_assert_eq!(stats.parse_errors, 0);
    }

    /// (3) Generated messages come back with their method, path, status, sizes and bodies.
    #[test]
    fn generated_exchanges_round_trip((exchanges, depth, role) in conversation()) {
        let (records, stats) = run(role, SMALL_BODY, &events(&exchanges, depth, role));
        prop_assert_eq!(records.len(), exchanges.len(), "{:?}", stats);
        for (record, exchange) in records.iter().zip(&exchanges) {
            check_round_trip(record, exchange)?;
        }
        prop_assert_eq!((stats.parse_errors, stats.unmatched_responses, stats.evicted_requests), (0, 0, 0));
        prop_assert_eq!(stats.bytes_resynced, 0);
    }

    /// (2) Arbitrary input never panics, and what the stream holds stays within its limits.
    #[test]
    fn arbitrary_input_never_panics_and_memory_stays_bounded(
        role in prop_oneof![Just(TraceRole::Client), Just(TraceRole::Server)],
        limits in limits(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut stream = HttpStream::new(role, limits);
        let mut drained = 0u64;
        for op in ops {
            match op {
                Op::Push(dir, ts, data) => stream.push(dir, ts, &data),
                Op::Gap(dir, len) => stream.push_gap(dir, len),
                Op::Close => stream.close(),
            }
            prop_assert!(stream.buffered_bytes() <= 2 * limits.max_buffered_bytes,
                "buffered {} > 2 x {}", stream.buffered_bytes(), limits.max_buffered_bytes);
            prop_assert!(stream.pending_requests() <= limits.max_pending);
            for record in stream.drain() {
                drained += 1;
                prop_assert!(record.req.body.len() <= limits.max_body_bytes);
                prop_assert!(record.resp.body.len() <= limits.max_body_bytes);
            }
        }
        prop_assert_eq!(stream.stats().records, drained);
    }
}

fn check_round_trip(record: &HttpRecord, exchange: &Exchange) -> Result<(), TestCaseError> {
    prop_assert_eq!(&record.req.method, &exchange.method);
    prop_assert_eq!(&record.req.path, &exchange.path);
    prop_assert_eq!(record.req.body_size, exchange.req_body.len() as u64);
    let kept = exchange.req_body.len().min(SMALL_BODY.max_body_bytes);
    prop_assert_eq!(&record.req.body, &exchange.req_body[..kept]);
    prop_assert_eq!(record.resp.status, exchange.status);
    prop_assert_eq!(&record.resp.message, &exchange.reason);
    if exchange.response_has_body() {
        // Wire size, but the kept prefix is of the decompressed body.
        prop_assert_eq!(
            record.resp.body_size,
            exchange.resp_wire_body().len() as u64
        );
        let kept = exchange.resp_body.len().min(SMALL_BODY.max_body_bytes);
        prop_assert_eq!(&record.resp.body, &exchange.resp_body[..kept]);
    } else {
        prop_assert_eq!((record.resp.body_size, record.resp.body.len()), (0, 0));
    }
    prop_assert!(record.resp_timestamp_ns > record.req_timestamp_ns);
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Push(Direction, u64, Vec<u8>),
    Gap(Direction, u64),
    Close,
}

/// Pieces of HTTP that reach the parser's deeper states far more often than random bytes do.
const FRAGMENTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\n",
    b"HEAD /h HTTP/1.1\r\n",
    b"POST /p HTTP/1.0\r\n",
    b"CONNECT a:1 HTTP/1.1\r\n",
    b"BREW /pot HTTP/1.1\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.0 204 No Content\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 70000\r\n",
    b"Content-Length: 1, 2\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Encoding: gzip\r\n",
    b"Content-Encoding: deflate\r\n",
    b"Expect: 100-continue\r\n",
    b"X-Header: value\r\n",
    b"\r\n",
    b"\n",
    b"5\r\nhello\r\n",
    b"a;ext=1\r\n0123456789\r\n",
    b"0\r\n\r\n",
    b"0\r\nTrailer: t\r\n\r\n",
    b"fffffffffffff\r\n",
    b"\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\x03name",
    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\x48\xcd\xc9\xc9\x07\x00",
    b"\x78\x9c",
    b"hello world ",
];

fn op() -> impl Strategy<Value = Op> {
    let dir = prop_oneof![Just(Direction::Send), Just(Direction::Recv)];
    let data = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        prop::collection::vec(prop::sample::select(FRAGMENTS), 1..10)
            .prop_map(|parts| parts.concat()),
    ];
    prop_oneof![
        20 => (dir.clone(), 0u64..1000, data).prop_map(|(d, ts, bytes)| Op::Push(d, ts, bytes)),
        3 => (dir, prop_oneof![0u64..16, 0u64..100_000]).prop_map(|(d, len)| Op::Gap(d, len)),
        1 => Just(Op::Close),
    ]
}

fn limits() -> impl Strategy<Value = HttpLimits> {
    (0usize..64, 0usize..300, 0usize..600, 0usize..6).prop_map(
        |(max_body_bytes, max_header_bytes, max_buffered_bytes, max_pending)| HttpLimits {
            max_body_bytes,
            max_header_bytes,
            max_buffered_bytes,
            max_pending,
        },
    )
}
