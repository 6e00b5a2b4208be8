//! One direction of an HTTP/1.x connection: a framing state machine that turns a byte stream
//! (with holes) into messages.
//!
//! Only what cannot be consumed yet is buffered: an incomplete head, chunk-size line or trailer
//! section, each capped. Body bytes stream straight into a [`BodySink`], so a 1 GB upload costs
//! `max_body_bytes`, not 1 GB. Pairing requests with responses is the caller's business, through
//! [`Events`].

use super::body::{BodySink, Coding};
use super::start::{self, Prefix, Scan};
use super::{HttpLimits, HttpStreamStats, MessageKind};

/// Longest chunk-size line (size plus extensions) we wait for.
const MAX_CHUNK_LINE: usize = 4096;

/// Bytes of a large push copied into the buffer at a time while a partial element is pending,
/// so one huge push does not double its memory.
const FEED_STEP: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) minor_version: u8,
    pub(crate) line: StartLine,
    pub(crate) headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request { method: String, path: String },
    Response { status: u16, reason: String },
}

impl Head {
    /// Values of every header called `name` (case-insensitive), in wire order.
    pub(crate) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn status(&self) -> Option<u16> {
        match self.line {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// How the body is delimited, from the headers alone (RFC 9112 §6.3). The peer's request can
    /// still override it for a response (HEAD, CONNECT), see [`Events::on_head`].
    fn framing(&self) -> Result<Framing, ()> {
        let status = self.status();
        if status.is_some_and(|s| (100..200).contains(&s) || s == 204 || s == 304) {
            return Ok(Framing::Empty);
        }
        let mut codings = self
            .values("transfer-encoding")
            .flat_map(|v| v.split(','))
            .map(str::trim);
        let mut last_coding = None;
        for coding in codings.by_ref().filter(|c| !c.is_empty()) {
            last_coding = Some(coding);
        }
        if let Some(last) = last_coding {
            return match (last.eq_ignore_ascii_case("chunked"), status) {
                (true, _) => Ok(Framing::Chunked),
                // A response whose final coding is not chunked runs to the connection's end; a
                // request like that cannot be delimited at all.
                (false, Some(_)) => Ok(Framing::UntilClose),
                (false, None) => Err(()),
            };
        }
        let mut length = None;
        for value in self
            .values("content-length")
            .flat_map(|v| v.split(','))
            .map(str::trim)
        {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            let n: u64 = value.parse().map_err(|_| ())?;
            // Differing lengths mean we cannot know where the message ends.
            if length.is_some_and(|l| l != n) {
                return Err(());
            }
            length = Some(n);
        }
        Ok(match (length, status) {
            (Some(n), _) => Framing::Length(n),
            (None, None) => Framing::Empty,
            (None, Some(_)) => Framing::UntilClose,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A finished message.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) head: Head,
    pub(crate) body: Vec<u8>,
    pub(crate) body_size: u64,
    /// Timestamp of the push that carried the first byte.
    pub(crate) first_ts: u64,
    /// Timestamp of the push that carried the last byte.
    pub(crate) last_ts: u64,
    /// Already handed out as the request of an early response; must not be queued again.
    pub(crate) answered: bool,
}

/// What the decoder should do after delivering a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    Continue,
    /// The connection switched protocols (101, CONNECT tunnel): stop parsing this direction.
    Opaque,
}

/// The decoder's view of the rest of the connection.
pub(crate) trait Events {
    /// A head was parsed; returns the framing to use for its body (`framing` unless the peer's
    /// request says otherwise).
    fn on_head(&mut self, head: &Head, framing: Framing, start_ts: u64) -> Framing;
    fn on_message(&mut self, message: Message) -> After;
    /// The message in progress, whose head was parsed, was abandoned (parse error, lost bytes).
    fn on_abandon(&mut self);
    /// The decoder lost its place and is looking for the next message start.
    fn on_resync(&mut self);
    fn stats(&mut self) -> &mut HttpStreamStats;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a message boundary, reading a head.
    Head,
    /// Looking for the next plausible message start.
    Resync,
    Body(Body),
    /// Not HTTP any more (upgraded, tunnelled or closed): bytes are counted and ignored.
    Opaque,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    UntilClose,
}

#[derive(Debug)]
struct InProgress {
    head: Head,
    sink: BodySink,
    first_ts: u64,
    last_ts: u64,
    answered: bool,
    expect_continue: bool,
}

/// Timestamps of the bytes being decoded: the first `carry_len` came with `carry_ts` in an
/// earlier push, the rest with `now`.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    carry_len: usize,
    carry_ts: u64,
    now: u64,
}

impl Stamp {
    fn at(&self, offset: usize) -> u64 {
        if offset < self.carry_len {
            self.carry_ts
        } else {
            self.now
        }
    }
}

#[derive(Debug)]
pub(crate) struct Decoder {
    kind: MessageKind,
    header_limit: usize,
    line_limit: usize,
    max_buffered: usize,
    max_body: usize,
    buf: Vec<u8>,
    carry_ts: u64,
    state: State,
    current: Option<InProgress>,
    /// Bytes at the start of the pending head already searched for its blank line.
    head_scanned: usize,
    /// The pending head's first line was complete and valid.
    first_line_ok: bool,
    /// The byte before `buf[0]` while resynchronising.
    prev_byte: u8,
    /// The pending head was found by the resync scan, not at a known message boundary.
    candidate: bool,
}

enum HeadParse {
    Incomplete,
    Invalid,
    Complete(Head, usize),
}

impl Decoder {
    pub(crate) fn new(kind: MessageKind, limits: &HttpLimits) -> Self {
        Decoder {
            kind,
            header_limit: limits.max_header_bytes.min(limits.max_buffered_bytes),
            line_limit: MAX_CHUNK_LINE.min(limits.max_buffered_bytes),
            max_buffered: limits.max_buffered_bytes,
            max_body: limits.max_body_bytes,
            buf: Vec::new(),
            carry_ts: 0,
            state: State::Head,
            current: None,
            head_scanned: 0,
            first_line_ok: false,
            prev_byte: b'\n',
            candidate: false,
        }
    }

    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn feed(&mut self, data: &[u8], ts: u64, ev: &mut dyn Events) {
        let mut rest = data;
        while !self.buf.is_empty() && !rest.is_empty() {
            let take = rest.len().min(FEED_STEP);
            let stamp = Stamp {
                carry_len: self.buf.len(),
                carry_ts: self.carry_ts,
                now: ts,
            };
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            let buf = std::mem::take(&mut self.buf);
            let used = self.run(&buf, stamp, ev);
            self.keep_tail(buf, used, stamp.at(used), ev);
        }
        if !rest.is_empty() {
            // Nothing pending: decode straight from the caller's slice, buffer only the tail.
            let used = self.run(
                rest,
                Stamp {
                    carry_len: 0,
                    carry_ts: ts,
                    now: ts,
                },
                ev,
            );
            self.buf.extend_from_slice(&rest[used..]);
            self.carry_ts = ts;
            self.enforce_cap(ev);
        }
    }

    /// `len` bytes of this direction were lost.
    pub(crate) fn gap(&mut self, len: u64, ev: &mut dyn Events) {
        let stats = ev.stats();
        stats.gaps += 1;
        stats.gap_bytes += len;
        match self.state {
            State::Opaque => ev.stats().opaque_bytes += len,
            State::Body(Body::Length(remaining)) => {
                let absorbed = len.min(remaining);
                self.sink().gap(absorbed);
                if len < remaining {
                    self.state = State::Body(Body::Length(remaining - len));
                    ev.stats().gaps_bridged += 1;
                } else {
                    // The hole ends this body exactly or reaches past it into what followed.
                    self.complete(ev);
                    if len == remaining {
                        ev.stats().gaps_bridged += 1;
                    } else {
                        self.lose_place(ev);
                    }
                }
            }
            State::Body(Body::ChunkData(remaining)) if len <= remaining => {
                self.sink().gap(len);
                let left = remaining - len;
                self.state = State::Body(if left == 0 {
                    Body::ChunkDataEnd
                } else {
                    Body::ChunkData(left)
                });
                ev.stats().gaps_bridged += 1;
            }
            State::Body(Body::UntilClose) => {
                self.sink().gap(len);
                ev.stats().gaps_bridged += 1;
            }
            State::Body(Body::Trailers) => {
                // All of the body arrived; only trailers (which we discard) are lost.
                self.complete(ev);
                self.lose_place(ev);
            }
            State::Head | State::Resync | State::Body(_) => self.lose_place(ev),
        }
    }

    /// The connection closed: a body delimited by the close is complete, anything else partial
    /// is abandoned, and later bytes are ignored.
    pub(crate) fn close(&mut self, ev: &mut dyn Events) {
        if self.state == State::Body(Body::UntilClose) {
            self.complete(ev);
        }
        self.make_opaque(ev);
    }

    /// Stops parsing: the connection is no longer HTTP.
    pub(crate) fn make_opaque(&mut self, ev: &mut dyn Events) {
        if self.current.take().is_some() {
            ev.on_abandon();
        }
        ev.stats().opaque_bytes += self.buf.len() as u64;
        self.buf = Vec::new();
        self.state = State::Opaque;
    }

    /// Finishes a response delimited by connection close when the peer starts a new request,
    /// which proves the connection stayed open.
    pub(crate) fn finish_until_close(&mut self, ev: &mut dyn Events) {
        if self.state == State::Body(Body::UntilClose) {
            self.complete(ev);
        }
    }

    /// The request in progress, if its head was parsed at or before `ts` and nobody took it yet,
    /// for a final response that arrived before the request finished. The request keeps being
    /// decoded (its body still frames the stream) but will not be delivered again; a request
    /// waiting for `100 Continue` that got a final answer instead will send no body, so its
    /// framing is dropped.
    pub(crate) fn take_unfinished(&mut self, ts: u64) -> Option<(Head, Vec<u8>, u64, u64)> {
        let current = self
            .current
            .as_mut()
            .filter(|c| !c.answered && c.first_ts <= ts)?;
        current.answered = true;
        let (body, size) = current.sink.snapshot();
        let taken = (current.head.clone(), body, size, current.first_ts);
        if current.expect_continue && size == 0 {
            self.current = None;
            self.state = State::Head;
            self.reset_head();
        }
        Some(taken)
    }

    /// Decodes as much of `input` as possible; returns how many bytes were consumed. The rest is
    /// an incomplete element (head, chunk line, trailers, resync candidate) within its limit.
    fn run(&mut self, input: &[u8], stamp: Stamp, ev: &mut dyn Events) -> usize {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Opaque => {
                    ev.stats().opaque_bytes += rest.len() as u64;
                    return input.len();
                }
                State::Resync => match start::find_message_start(self.kind, rest, self.prev_byte) {
                    Scan::Found(skip) => {
                        ev.stats().bytes_resynced += skip as u64;
                        pos += skip;
                        self.state = State::Head;
                        self.candidate = true;
                        self.reset_head();
                    }
                    Scan::NotFound { keep_from } => {
                        ev.stats().bytes_resynced += keep_from as u64;
                        if keep_from > 0 {
                            self.prev_byte = rest[keep_from - 1];
                        }
                        return pos + keep_from;
                    }
                },
                State::Head => {
                    // Empty lines between messages are allowed (RFC 9112 §2.2).
                    let blank = rest
                        .iter()
                        .take_while(|b| matches!(b, b'\r' | b'\n'))
                        .count();
                    if blank > 0 {
                        pos += blank;
                        self.reset_head();
                        continue;
                    }
                    if rest.is_empty() {
                        return pos;
                    }
                    match self.parse_head(rest) {
                        HeadParse::Incomplete if rest.len() <= self.header_limit => return pos,
                        HeadParse::Incomplete | HeadParse::Invalid => {
                            // Skip the byte that looked like a start, so the scan moves on. A
                            // start the scan guessed is only an error once its start line proved
                            // it a real message; before that it was a false start.
                            let stats = ev.stats();
                            stats.bytes_resynced += 1;
                            if !self.candidate || self.first_line_ok {
                                stats.parse_errors += 1;
                            }
                            self.enter_resync(rest[0], ev);
                            pos += 1;
                        }
                        HeadParse::Complete(head, len) => {
                            let start_ts = stamp.at(pos);
                            pos += len;
                            self.begin(head, start_ts, stamp.at(pos - 1), ev);
                        }
                    }
                }
                State::Body(Body::Length(remaining)) | State::Body(Body::ChunkData(remaining)) => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    if n == 0 {
                        return pos;
                    }
                    self.sink().write(&rest[..n]);
                    pos += n;
                    self.touch(stamp.now);
                    let left = remaining - n as u64;
                    match self.state {
                        State::Body(Body::Length(_)) if left == 0 => self.complete(ev),
                        State::Body(Body::Length(_)) => {
                            self.state = State::Body(Body::Length(left))
                        }
                        _ if left == 0 => self.state = State::Body(Body::ChunkDataEnd),
                        _ => self.state = State::Body(Body::ChunkData(left)),
                    }
                }
                State::Body(Body::ChunkSize) => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        pos += used;
                        self.touch(stamp.now);
                        self.state = State::Body(if size == 0 {
                            Body::Trailers
                        } else {
                            Body::ChunkData(size)
                        });
                    }
                    Ok(httparse::Status::Partial) if rest.len() <= self.line_limit => return pos,
                    _ => self.fail(before(input, pos), ev),
                },
                State::Body(Body::ChunkDataEnd) => match rest {
                    [] | [b'\r'] => return pos,
                    [b'\r', b'\n', ..] | [b'\n', ..] => {
                        pos += if rest[0] == b'\n' { 1 } else { 2 };
                        self.touch(stamp.now);
                        self.state = State::Body(Body::ChunkSize);
                    }
                    _ => self.fail(before(input, pos), ev),
                },
                State::Body(Body::Trailers) => match trailer_section_len(rest, self.header_limit) {
                    Ok(Some(len)) => {
                        pos += len;
                        self.touch(stamp.now);
                        self.complete(ev);
                    }
                    Ok(None) => return pos,
                    Err(()) => self.fail(before(input, pos), ev),
                },
                State::Body(Body::UntilClose) => {
                    if !rest.is_empty() {
                        self.sink().write(rest);
                        self.touch(stamp.now);
                    }
                    return input.len();
                }
            }
        }
    }

    fn parse_head(&mut self, data: &[u8]) -> HeadParse {
        if start::check_prefix(self.kind, data) == Prefix::Invalid {
            return HeadParse::Invalid;
        }
        if !self.first_line_ok {
            // Bytes before `head_scanned` hold no newline yet: search only the new ones.
            let from = self.head_scanned;
            let Some(newline) = memchr::memchr(b'\n', &data[from..]).map(|i| i + from) else {
                self.head_scanned = data.len();
                return HeadParse::Incomplete;
            };
            // Validate the start line as soon as it is complete, so a false start found while
            // resynchronising is dropped now rather than after a header limit's worth of bytes.
            match self.httparse(&data[..=newline], 1) {
                Err(()) => return HeadParse::Invalid,
                Ok(_) => self.first_line_ok = true,
            }
        }
        let Some(end) = self.find_head_end(data) else {
            return HeadParse::Incomplete;
        };
        if end > self.header_limit {
            return HeadParse::Invalid;
        }
        let lines = memchr::memchr_iter(b'\n', &data[..end]).count();
        match self.httparse(&data[..end], lines) {
            Ok(Some(head)) => HeadParse::Complete(head, end),
            Ok(None) | Err(()) => HeadParse::Invalid,
        }
    }

    /// Parses with httparse; `Ok(None)` means valid so far but incomplete.
    fn httparse(&self, data: &[u8], max_headers: usize) -> Result<Option<Head>, ()> {
        let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
        let owned = |headers: &[httparse::Header]| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect::<Vec<_>>()
        };
        match self.kind {
            MessageKind::Request => {
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(data).map_err(|_| ())? {
                    httparse::Status::Partial => Ok(None),
                    httparse::Status::Complete(_) => Ok(Some(Head {
                        minor_version: req.version.unwrap_or(1),
                        line: StartLine::Request {
                            method: req.method.unwrap_or_default().to_owned(),
                            path: req.path.unwrap_or_default().to_owned(),
                        },
                        headers: owned(req.headers),
                    })),
                }
            }
            MessageKind::Response => {
                let mut resp = httparse::Response::new(&mut headers);
                let mut config = httparse::ParserConfig::default();
                // What browsers tolerate from servers, we tolerate too: we observe, not judge.
                config
                    .allow_obsolete_multiline_headers_in_responses(true)
                    .allow_spaces_after_header_name_in_responses(true)
                    .allow_multiple_spaces_in_response_status_delimiters(true);
                match config.parse_response(&mut resp, data).map_err(|_| ())? {
                    httparse::Status::Partial => Ok(None),
                    httparse::Status::Complete(_) => Ok(Some(Head {
                        minor_version: resp.version.unwrap_or(1),
                        line: StartLine::Response {
                            status: resp.code.unwrap_or_default(),
                            reason: resp.reason.unwrap_or_default().to_owned(),
                        },
                        headers: owned(resp.headers),
                    })),
                }
            }
        }
    }

    /// Offset just past the blank line ending the head, searching only bytes not searched before.
    fn find_head_end(&mut self, data: &[u8]) -> Option<usize> {
        let from = self.head_scanned;
        for newline in memchr::memchr_iter(b'\n', &data[from..]).map(|i| i + from) {
            match &data[newline + 1..] {
                [b'\n', ..] => return Some(newline + 2),
                [b'\r', b'\n', ..] => return Some(newline + 3),
                [] | [b'\r'] => {
                    // Undecided until more bytes arrive: resume the search here.
                    self.head_scanned = newline;
                    return None;
                }
                _ => {}
            }
        }
        self.head_scanned = data.len();
        None
    }

    fn begin(&mut self, head: Head, start_ts: u64, now: u64, ev: &mut dyn Events) {
        self.candidate = false;
        let Ok(framing) = head.framing() else {
            ev.stats().parse_errors += 1;
            self.enter_resync(b'\n', ev);
            return;
        };
        let framing = ev.on_head(&head, framing, start_ts);
        let coding = Coding::from_header_values(head.values("content-encoding"));
        let expect_continue = head
            .values("expect")
            .any(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        self.current = Some(InProgress {
            sink: BodySink::new(self.max_body, coding),
            head,
            first_ts: start_ts,
            last_ts: now,
            answered: false,
            expect_continue,
        });
        match framing {
            Framing::Empty | Framing::Length(0) => self.complete(ev),
            Framing::Length(n) => self.state = State::Body(Body::Length(n)),
            Framing::Chunked => self.state = State::Body(Body::ChunkSize),
            Framing::UntilClose => self.state = State::Body(Body::UntilClose),
        }
    }

    fn complete(&mut self, ev: &mut dyn Events) {
        self.state = State::Head;
        self.reset_head();
        let Some(current) = self.current.take() else {
            return;
        };
        let (body, body_size, decode_error) = current.sink.finish();
        if decode_error {
            ev.stats().body_decode_errors += 1;
        }
        let message = Message {
            head: current.head,
            body,
            body_size,
            first_ts: current.first_ts,
            last_ts: current.last_ts,
            answered: current.answered,
        };
        if ev.on_message(message) == After::Opaque {
            self.state = State::Opaque;
        }
    }

    /// A framing error: drop the message in progress and look for the next start.
    fn fail(&mut self, prev_byte: u8, ev: &mut dyn Events) {
        ev.stats().parse_errors += 1;
        self.enter_resync(prev_byte, ev);
    }

    /// Bytes were lost: whatever is buffered cannot be continued.
    fn lose_place(&mut self, ev: &mut dyn Events) {
        if self.state == State::Opaque {
            return;
        }
        ev.stats().bytes_resynced += self.buf.len() as u64;
        self.buf.clear();
        // After a hole anything may come next, as at a line start.
        self.enter_resync(b'\n', ev);
    }

    fn enter_resync(&mut self, prev_byte: u8, ev: &mut dyn Events) {
        if self.current.take().is_some() {
            ev.on_abandon();
        }
        self.state = State::Resync;
        self.prev_byte = prev_byte;
        ev.on_resync();
    }

    fn keep_tail(&mut self, mut buf: Vec<u8>, used: usize, tail_ts: u64, ev: &mut dyn Events) {
        buf.drain(..used);
        self.buf = buf;
        self.carry_ts = tail_ts;
        self.enforce_cap(ev);
    }

    /// Never hold more than `max_buffered_bytes`: drop it all and resynchronise.
    fn enforce_cap(&mut self, ev: &mut dyn Events) {
        if self.buf.len() <= self.max_buffered {
            if self.buf.is_empty() && self.buf.capacity() > FEED_STEP {
                // Do not sit on a large allocation for a quiet connection.
                self.buf = Vec::new();
            }
            return;
        }
        let stats = ev.stats();
        stats.buffer_overflows += 1;
        stats.bytes_dropped += self.buf.len() as u64;
        let prev = self.buf.last().copied().unwrap_or(b'\n');
        self.buf = Vec::new();
        self.enter_resync(prev, ev);
    }

    fn reset_head(&mut self) {
        self.head_scanned = 0;
        self.first_line_ok = false;
    }

    fn touch(&mut self, ts: u64) {
        if let Some(current) = self.current.as_mut() {
            current.last_ts = ts;
        }
    }

    fn sink(&mut self) -> &mut BodySink {
        // Body states are only entered with a message in progress (see `begin`).
        &mut self
            .current
            .as_mut()
            .expect("body state without a message")
            .sink
    }
}

fn before(input: &[u8], pos: usize) -> u8 {
    pos.checked_sub(1).map_or(b'\n', |i| input[i])
}

/// Length of a trailer section (fields, then an empty line) at the start of `data`: `Ok(None)`
/// if incomplete, `Err` if malformed or over `limit`.
fn trailer_section_len(data: &[u8], limit: usize) -> Result<Option<usize>, ()> {
    match data {
        [b'\n', ..] => return Ok(Some(1)),
        [b'\r', b'\n', ..] => return Ok(Some(2)),
        [] | [b'\r'] => return Ok(None),
        [b'\r', ..] => return Err(()),
        _ => {}
    }
    let end = memchr::memchr_iter(b'\n', data).find_map(|i| match &data[i + 1..] {
        [b'\n', ..] => Some(Some(i + 2)),
        [b'\r', b'\n', ..] => Some(Some(i + 3)),
        [] | [b'\r'] => Some(None),
        _ => None,
    });
    match end.flatten() {
        Some(end) if end <= limit => {
            let lines = memchr::memchr_iter(b'\n', &data[..end]).count();
            let mut fields = vec![httparse::EMPTY_HEADER; lines];
            match httparse::parse_headers(&data[..end], &mut fields) {
                Ok(httparse::Status::Complete(_)) => Ok(Some(end)),
                _ => Err(()),
            }
        }
        Some(_) => Err(()),
        None if data.len() > limit => Err(()),
        None => Ok(None),
    }
}
