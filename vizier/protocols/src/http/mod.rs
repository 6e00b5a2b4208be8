//! HTTP/1.x: one [`HttpStream`] per traced connection turns both byte streams into
//! request/response records, the rows of Pixie's `http_events` table.
//!
//! Choices worth knowing (each matches Pixie unless it says otherwise):
//! - **Pairing** is first-in first-out, so pipelined requests pair in order. A response pairs
//!   with the oldest waiting request only if that request began at or before the response;
//!   otherwise the response's own request was lost and it counts as unmatched. After the
//!   response direction lost bytes, older waiting requests whose responses must have been lost
//!   are evicted first. Push both directions in syscall order (as the ring buffer delivers them).
//! - **Bodies** are framed by `Transfer-Encoding: chunked` (extensions and trailers accepted,
//!   trailers discarded), `Content-Length`, or the status/method (HEAD, 1xx, 204, 304, CONNECT
//!   2xx have none). A response with neither header runs until [`HttpStream::close`], or until
//!   the client starts another request. `101 Switching Protocols` and a successful CONNECT end
//!   HTTP parsing on the connection; later bytes are only counted.
//! - **Body limits**: `body_size` is the payload size on the wire (chunk framing removed, before
//!   decompression), the same as Pixie's `req_body_size`/`resp_body_size`. `body` keeps at most
//!   `max_body_bytes` (default 1024, Pixie's `PX_STIRLING_HTTP_BODY_LIMIT_BYTES`). With
//!   `Content-Encoding: gzip` (or `x-gzip`, `deflate`) the kept body is the *decompressed*
//!   prefix, inflated while streaming and never past `max_body_bytes`, so a gzip bomb costs
//!   nothing (Pixie inflates whole bodies, its issue #394). Other codings are kept as sent.
//! - **Interim responses** (100, 102, 103) are skipped. A final response that arrives while its
//!   request is still unfinished pairs with the request as received so far; a request that
//!   waited for `100 Continue` and got a final answer instead is taken to send no body.
//! - **Limits**: a head over `max_header_bytes` is a parse error; each direction buffers at most
//!   `max_buffered_bytes` (only incomplete heads, chunk lines and trailers are ever buffered;
//!   bodies stream through); at most `max_pending` requests wait for responses, oldest evicted.
//!   Finished records wait in the stream until [`HttpStream::drain`]: drain after each batch.
//! - **Lost bytes** ([`HttpStream::push_gap`]) inside a body of known length keep the framing
//!   (the body is counted in full but kept only up to the hole); anywhere else the direction
//!   resynchronises at the next plausible message start (`HTTP/1.` for responses; a known
//!   method and a space for requests, or any upper-case token after a line break).

mod body;
mod decoder;
mod json;
mod start;

use std::collections::VecDeque;

pub use json::headers_json;
pub use start::infer;

use crate::{Direction, TraceRole};
use decoder::{After, Decoder, Events, Framing, Head, Message, StartLine};

/// What a stream carries, as seen from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Request,
    Response,
}

/// Bounds on what one [`HttpStream`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Bytes of each body kept (decompressed for gzip/deflate); the rest is only counted.
    pub max_body_bytes: usize,
    /// Largest request/status line plus headers (and chunked trailers) accepted.
    pub max_header_bytes: usize,
    /// Most bytes buffered per direction, like Pixie's 1 MB datastream buffer.
    pub max_buffered_bytes: usize,
    /// Most requests waiting for their responses; the oldest is evicted beyond it.
    pub max_pending: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 1024,
            max_header_bytes: 16 * 1024,
            max_buffered_bytes: 1024 * 1024,
            max_pending: 1024,
        }
    }
}

/// Counters of what a stream could not turn into records. All only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpStreamStats {
    /// Records produced.
    pub records: u64,
    /// Malformed messages: bad start line or headers, head over the limit, bad or conflicting
    /// lengths, bad chunk framing.
    pub parse_errors: u64,
    /// Bytes skipped while looking for the next message start.
    pub bytes_resynced: u64,
    /// Bytes thrown away because a direction's buffer would exceed `max_buffered_bytes`.
    pub bytes_dropped: u64,
    pub buffer_overflows: u64,
    /// Calls to [`HttpStream::push_gap`] and the bytes they reported lost.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Gaps that fell inside a body of known length, so no message was lost.
    pub gaps_bridged: u64,
    /// Final responses with no request to pair with.
    pub unmatched_responses: u64,
    /// Requests dropped without a response: queue full, their response lost, or left at close.
    pub evicted_requests: u64,
    /// `1xx` interim responses skipped.
    pub interim_responses: u64,
    /// Bodies whose gzip/deflate stream was corrupt or cut short.
    pub body_decode_errors: u64,
    /// Bytes after the connection stopped being HTTP (upgrade, tunnel, close), not parsed.
    pub opaque_bytes: u64,
}

/// Pixie's `http_events.content_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum ContentType {
    #[default]
    Unknown = 0,
    Json = 1,
    Grpc = 2,
}

impl ContentType {
    /// Classifies a `Content-Type` value: `application/grpc…` is gRPC, anything mentioning
    /// `json` is JSON (Pixie's `IsJSONContent`).
    pub fn from_header_value(value: &str) -> Self {
        let value = value.trim().to_ascii_lowercase();
        if value.starts_with("application/grpc") {
            ContentType::Grpc
        } else if value.contains("json") {
            ContentType::Json
        } else {
            ContentType::Unknown
        }
    }

    /// The integer Pixie stores.
    pub fn pixie_value(self) -> i64 {
        self as i64
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub minor_version: u8,
    pub method: String,
    pub path: String,
    /// In wire order, names as sent.
    pub headers: Vec<(String, String)>,
    /// At most `max_body_bytes`, decompressed if the body was gzip/deflate encoded.
    pub body: Vec<u8>,
    /// Payload bytes on the wire.
    pub body_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub minor_version: u8,
    pub status: u16,
    pub message: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub body_size: u64,
    pub content_type: ContentType,
}

/// A request and its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRecord {
    pub req: HttpRequest,
    pub resp: HttpResponse,
    /// Timestamp of the push that carried the request's first byte.
    pub req_timestamp_ns: u64,
    /// Timestamp of the push that carried the response's last byte.
    pub resp_timestamp_ns: u64,
}

impl HttpRecord {
    /// Pixie's `latency` column; zero if the timestamps are out of order.
    pub fn latency_ns(&self) -> u64 {
        self.resp_timestamp_ns.saturating_sub(self.req_timestamp_ns)
    }
}

/// Both directions of one HTTP/1.x connection, parsed incrementally.
#[derive(Debug)]
pub struct HttpStream {
    role: TraceRole,
    requests: Decoder,
    responses: Decoder,
    pairing: Pairing,
    opaque: bool,
}

impl HttpStream {
    pub fn new(role: TraceRole, limits: HttpLimits) -> Self {
        HttpStream {
            role,
            requests: Decoder::new(MessageKind::Request, &limits),
            responses: Decoder::new(MessageKind::Response, &limits),
            pairing: Pairing::new(limits.max_pending),
            opaque: false,
        }
    }

    pub fn role(&self) -> TraceRole {
        self.role
    }

    /// Bytes the traced process wrote or read, in order, with the timestamp of the syscall
    /// that carried them. Chunks may split anywhere.
    pub fn push(&mut self, dir: Direction, timestamp_ns: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if dir == self.role.request_direction() {
            let mut side = RequestSide {
                pairing: &mut self.pairing,
                responses: &mut self.responses,
            };
            self.requests.feed(data, timestamp_ns, &mut side);
        } else {
            let mut side = ResponseSide {
                pairing: &mut self.pairing,
                requests: Some(&mut self.requests),
            };
            self.responses.feed(data, timestamp_ns, &mut side);
        }
        self.apply_switch();
    }

    /// `len` bytes of this direction were lost (capped or dropped capture events).
    pub fn push_gap(&mut self, dir: Direction, len: u64) {
        if len == 0 {
            return;
        }
        if dir == self.role.request_direction() {
            let mut side = RequestSide {
                pairing: &mut self.pairing,
                responses: &mut self.responses,
            };
            self.requests.gap(len, &mut side);
        } else {
            let mut side = ResponseSide {
                pairing: &mut self.pairing,
                requests: Some(&mut self.requests),
            };
            self.responses.gap(len, &mut side);
        }
        self.apply_switch();
    }

    /// The connection closed: completes a response delimited by the close; requests still
    /// waiting are evicted, and later pushes are only counted.
    pub fn close(&mut self) {
        self.responses.close(&mut ResponseSide {
            pairing: &mut self.pairing,
            requests: None,
        });
        self.requests.close(&mut RequestSide {
            pairing: &mut self.pairing,
            responses: &mut self.responses,
        });
        let waiting = self.pairing.pending.len() as u64;
        self.pairing.stats.evicted_requests += waiting;
        self.pairing.pending.clear();
        self.opaque = true;
    }

    /// Completed request/response pairs, in the order the responses finished.
    pub fn drain(&mut self) -> Vec<HttpRecord> {
        std::mem::take(&mut self.pairing.records)
    }

    pub fn stats(&self) -> HttpStreamStats {
        self.pairing.stats
    }

    /// Bytes held in both directions' buffers; each direction holds at most
    /// `max_buffered_bytes` between calls.
    pub fn buffered_bytes(&self) -> usize {
        self.requests.buffered_bytes() + self.responses.buffered_bytes()
    }

    /// Requests waiting for a response; at most `max_pending`.
    pub fn pending_requests(&self) -> usize {
        self.pairing.pending.len()
    }

    /// True once the connection stopped carrying HTTP (upgrade, CONNECT tunnel, close): the
    /// caller may stop feeding it.
    pub fn is_opaque(&self) -> bool {
        self.opaque
    }

    fn apply_switch(&mut self) {
        if self.pairing.switched && !self.opaque {
            self.opaque = true;
            self.requests.make_opaque(&mut RequestSide {
                pairing: &mut self.pairing,
                responses: &mut self.responses,
            });
            self.responses.make_opaque(&mut ResponseSide {
                pairing: &mut self.pairing,
                requests: None,
            });
        }
    }
}

/// A finished request waiting for its response.
#[derive(Debug)]
struct Pending {
    req: HttpRequest,
    first_ts: u64,
}

/// What the response being decoded answers.
#[derive(Debug)]
enum Answer {
    Nothing,
    Interim,
    Unmatched {
        switches: bool,
    },
    Request {
        pending: Box<Pending>,
        switches: bool,
    },
}

/// State shared by the two directions: the request queue, finished records, counters.
#[derive(Debug)]
struct Pairing {
    max_pending: usize,
    pending: VecDeque<Pending>,
    records: Vec<HttpRecord>,
    stats: HttpStreamStats,
    /// The response direction lost its place since its last response head.
    responses_lost: bool,
    answering: Answer,
    /// A response switched the connection away from HTTP.
    switched: bool,
}

impl Pairing {
    fn new(max_pending: usize) -> Self {
        Pairing {
            max_pending,
            pending: VecDeque::new(),
            records: Vec::new(),
            stats: HttpStreamStats::default(),
            responses_lost: false,
            answering: Answer::Nothing,
            switched: false,
        }
    }

    fn enqueue(&mut self, pending: Pending) {
        self.pending.push_back(pending);
        while self.pending.len() > self.max_pending {
            self.pending.pop_front();
            self.stats.evicted_requests += 1;
        }
    }

    /// The waiting request a response starting at `ts` answers, if any.
    fn take_for_response(&mut self, ts: u64) -> Option<Pending> {
        if std::mem::take(&mut self.responses_lost) {
            // Responses were lost: every waiting request older than the newest one sent before
            // this response began must have been answered by them.
            while self.pending.get(1).is_some_and(|next| next.first_ts <= ts) {
                self.pending.pop_front();
                self.stats.evicted_requests += 1;
            }
        }
        // A request sent after the response began cannot be what it answers.
        if self.pending.front()?.first_ts <= ts {
            self.pending.pop_front()
        } else {
            None
        }
    }
}

struct RequestSide<'a> {
    pairing: &'a mut Pairing,
    responses: &'a mut Decoder,
}

impl Events for RequestSide<'_> {
    fn on_head(&mut self, _head: &Head, framing: Framing, _start_ts: u64) -> Framing {
        // A new request proves that a response being read until the close has in fact ended.
        self.responses.finish_until_close(&mut ResponseSide {
            pairing: self.pairing,
            requests: None,
        });
        framing
    }

    fn on_message(&mut self, message: Message) -> After {
        if !message.answered {
            let first_ts = message.first_ts;
            let req = request_from(message.head, message.body, message.body_size);
            self.pairing.enqueue(Pending { req, first_ts });
        }
        After::Continue
    }

    fn on_abandon(&mut self) {}

    fn on_resync(&mut self) {}

    fn stats(&mut self) -> &mut HttpStreamStats {
        &mut self.pairing.stats
    }
}

struct ResponseSide<'a> {
    pairing: &'a mut Pairing,
    /// To answer a request that has not finished yet; absent when finishing from elsewhere.
    requests: Option<&'a mut Decoder>,
}

impl Events for ResponseSide<'_> {
    fn on_head(&mut self, head: &Head, framing: Framing, start_ts: u64) -> Framing {
        let status = head.status().unwrap_or_default();
        if (100..200).contains(&status) && status != 101 {
            self.pairing.answering = Answer::Interim;
            return Framing::Empty;
        }
        let pending = self.pairing.take_for_response(start_ts).or_else(|| {
            if !self.pairing.pending.is_empty() {
                return None;
            }
            let (head, body, body_size, first_ts) =
                self.requests.as_mut()?.take_unfinished(start_ts)?;
            Some(Pending {
                req: request_from(head, body, body_size),
                first_ts,
            })
        });
        let Some(pending) = pending else {
            self.pairing.stats.unmatched_responses += 1;
            self.pairing.answering = Answer::Unmatched {
                switches: status == 101,
            };
            return if status == 101 {
                Framing::Empty
            } else {
                framing
            };
        };
        let method = pending.req.method.as_str();
        let tunnel = method.eq_ignore_ascii_case("CONNECT") && (200..300).contains(&status);
        let switches = tunnel || status == 101;
        let framing = if switches || method.eq_ignore_ascii_case("HEAD") {
            Framing::Empty
        } else {
            framing
        };
        self.pairing.answering = Answer::Request {
            pending: Box::new(pending),
            switches,
        };
        framing
    }

    fn on_message(&mut self, message: Message) -> After {
        let switches = match std::mem::replace(&mut self.pairing.answering, Answer::Nothing) {
            Answer::Interim => {
                self.pairing.stats.interim_responses += 1;
                false
            }
            Answer::Nothing => false,
            Answer::Unmatched { switches } => switches,
            Answer::Request { pending, switches } => {
                let record = HttpRecord {
                    req: pending.req,
                    req_timestamp_ns: pending.first_ts,
                    resp_timestamp_ns: message.last_ts,
                    resp: response_from(message),
                };
                self.pairing.records.push(record);
                self.pairing.stats.records += 1;
                switches
            }
        };
        if switches {
            self.pairing.switched = true;
            After::Opaque
        } else {
            After::Continue
        }
    }

    fn on_abandon(&mut self) {
        if let Answer::Request { .. } =
            std::mem::replace(&mut self.pairing.answering, Answer::Nothing)
        {
            self.pairing.stats.evicted_requests += 1;
        }
    }

    fn on_resync(&mut self) {
        self.pairing.responses_lost = true;
    }

    fn stats(&mut self) -> &mut HttpStreamStats {
        &mut self.pairing.stats
    }
}

fn request_from(head: Head, body: Vec<u8>, body_size: u64) -> HttpRequest {
    let (method, path) = match head.line {
        StartLine::Request { method, path } => (method, path),
        // The request decoder only produces request lines.
        StartLine::Response { .. } => Default::default(),
    };
    HttpRequest {
        minor_version: head.minor_version,
        method,
        path,
        headers: head.headers,
        body,
        body_size,
    }
}

fn response_from(message: Message) -> HttpResponse {
    let content_type = message
        .head
        .values("content-type")
        .next()
        .map(ContentType::from_header_value)
        .unwrap_or_default();
    let (status, reason) = match message.head.line {
        StartLine::Response { status, reason } => (status, reason),
        StartLine::Request { .. } => Default::default(),
    };
    HttpResponse {
        minor_version: message.head.minor_version,
        status,
        message: reason,
        headers: message.head.headers,
        body: message.body,
        body_size: message.body_size,
        content_type,
    }
}
