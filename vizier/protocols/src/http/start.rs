//! Where an HTTP/1.x message may begin: protocol inference on a stream's first bytes, and the
//! scan that finds the next message start after garbage or lost bytes.

use super::MessageKind;

/// Methods we trust as a message start anywhere in a stream (Pixie's list). Other method tokens
/// are accepted at the start of a stream, and after a line break while resynchronising.
const KNOWN_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
];

const RESPONSE_PREFIX: &[u8] = b"HTTP/1.";

/// Longest method token we believe in. Real methods are short; a long token is body text.
pub(crate) const MAX_METHOD_LEN: usize = 20;

/// Guesses from the first bytes of a stream whether it carries HTTP/1.x requests or responses.
///
/// Conservative: `None` unless the bytes begin with a known method and a plausible request
/// target (`GET /`, `OPTIONS *`, `CONNECT host:443`, `GET http://…`) or with a full status-line
/// prefix (`HTTP/1.1 200`). A prefix too short to decide is `None` as well.
pub fn infer(data: &[u8]) -> Option<MessageKind> {
    if let Some(rest) = data.strip_prefix(RESPONSE_PREFIX) {
        let plausible = rest.len() >= 5
            && matches!(rest[0], b'0' | b'1')
            && rest[1] == b' '
            && rest[2..5].iter().all(u8::is_ascii_digit);
        return plausible.then_some(MessageKind::Response);
    }
    KNOWN_METHODS.iter().find_map(|method| {
        let target = data.strip_prefix(*method)?.first()?;
        (*target == b'/' || *target == b'*' || target.is_ascii_alphanumeric())
            .then_some(MessageKind::Request)
    })
}

/// Whether bytes at the start of a message can still become a valid start line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Prefix {
    Plausible,
    Invalid,
}

/// A cheap check on the first bytes of a message, so garbage is rejected at once instead of
/// after buffering up to the header limit while waiting for a blank line.
pub(crate) fn check_prefix(kind: MessageKind, data: &[u8]) -> Prefix {
    let ok = match kind {
        MessageKind::Response => {
            let n = data.len().min(RESPONSE_PREFIX.len());
            data[..n] == RESPONSE_PREFIX[..n]
        }
        MessageKind::Request => {
            // Looking one byte past the longest method is enough to decide.
            let data = &data[..data.len().min(MAX_METHOD_LEN + 1)];
            let token_len = data.iter().take_while(|b| is_tchar(**b)).count();
            match data.get(token_len) {
                // The token ended: it must be followed by the space before the target.
                Some(b' ') => (1..=MAX_METHOD_LEN).contains(&token_len),
                Some(_) => false,
                None => token_len <= MAX_METHOD_LEN,
            }
        }
    };
    if ok {
        Prefix::Plausible
    } else {
        Prefix::Invalid
    }
}

/// Result of scanning for the next message start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A message may start at this offset.
    Found(usize),
    /// No start in the data; bytes before `keep_from` can be discarded, the rest may be the
    /// beginning of a start that more data will complete.
    NotFound { keep_from: usize },
}

/// Finds the next offset where a message of `kind` plausibly starts. `prev` is the byte that
/// preceded `data[0]` in the stream (`b'\n'` if unknown but plausible).
pub(crate) fn find_message_start(kind: MessageKind, data: &[u8], prev: u8) -> Scan {
    match kind {
        MessageKind::Response => find_response_start(data),
        MessageKind::Request => find_request_start(data, prev),
    }
}

fn find_response_start(data: &[u8]) -> Scan {
    if let Some(i) = memchr::memmem::find(data, RESPONSE_PREFIX) {
        return Scan::Found(i);
    }
    // Keep a tail that is a proper prefix of "HTTP/1.", if any.
    let keep_from = (data.len().saturating_sub(RESPONSE_PREFIX.len() - 1)..data.len())
        .find(|&i| RESPONSE_PREFIX.starts_with(&data[i..]))
        .unwrap_or(data.len());
    Scan::NotFound { keep_from }
}

#[derive(PartialEq, Eq)]
enum Candidate {
    Yes,
    No,
    /// Could become a start once more bytes arrive.
    Maybe,
}

fn find_request_start(data: &[u8], prev: u8) -> Scan {
    let mut first_maybe = None;
    for i in 0..data.len() {
        let before = if i == 0 { prev } else { data[i - 1] };
        match request_candidate(&data[i..], before) {
            Candidate::Yes => return Scan::Found(i),
            Candidate::Maybe if first_maybe.is_none() => first_maybe = Some(i),
            _ => {}
        }
    }
    Scan::NotFound {
        keep_from: first_maybe.unwrap_or(data.len()),
    }
}

fn request_candidate(data: &[u8], before: u8) -> Candidate {
    if !data.first().is_some_and(u8::is_ascii_uppercase) {
        return Candidate::No;
    }
    let mut maybe = false;
    for method in KNOWN_METHODS {
        if data.starts_with(method) {
            return Candidate::Yes;
        }
        maybe |= method.starts_with(data);
    }
    // Any other upper-case token counts only at a line start: inside a body, words like
    // "HELLO " are far more common than unknown methods.
    if before == b'\n' {
        let token_len = data
            .iter()
            .take_while(|b| b.is_ascii_uppercase() || **b == b'-' || **b == b'_')
            .count();
        match data.get(token_len) {
            Some(b' ') if (3..=MAX_METHOD_LEN).contains(&token_len) => return Candidate::Yes,
            None if token_len <= MAX_METHOD_LEN => maybe = true,
            _ => {}
        }
    }
    if maybe {
        Candidate::Maybe
    } else {
        Candidate::No
    }
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infer_recognises_message_starts_and_refuses_everything_else() {
        let cases: &[(&[u8], Option<MessageKind>)] = &[
            (b"GET / HTTP/1.1\r\n", Some(MessageKind::Request)),
            (b"POST /api HTTP/1.0\r\n", Some(MessageKind::Request)),
            (b"OPTIONS * HTTP/1.1\r\n", Some(MessageKind::Request)),
            (
                b"CONNECT example.com:443 HTTP/1.1\r\n",
                Some(MessageKind::Request),
            ),
            (b"GET http://x/ HTTP/1.1", Some(MessageKind::Request)),
            (b"HTTP/1.1 200 OK\r\n", Some(MessageKind::Response)),
            (b"HTTP/1.0 404", Some(MessageKind::Response)),
            (b"HTTP/1.1 20", None),
            (b"HTTP/2 200", None),
            (b"HTTP/1.1 abc", None),
            (b"GET", None),
            (b"GET ", None),
            (b"GET  /", None),
            (b"get / HTTP/1.1", None),
            (b"PROPFIND / HTTP/1.1", None),
            (b"\x16\x03\x01\x02\x00", None),
            (b"", None),
        ];
        for (data, want) in cases {
            assert_eq!(infer(data), *want, "{:?}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn prefix_check_rejects_garbage_before_the_head_is_complete() {
        use MessageKind::*;
        let cases: &[(MessageKind, &[u8], Prefix)] = &[
            (Request, b"GE", Prefix::Plausible),
            (Request, b"PROPFIND /x", Prefix::Plausible),
            (Request, b"GET\x00", Prefix::Invalid),
            (Request, b" GET", Prefix::Invalid),
            (Request, b"AAAAAAAAAAAAAAAAAAAAAAAAA", Prefix::Invalid),
            (Response, b"HTT", Prefix::Plausible),
            (Response, b"HTTP/1.1 200", Prefix::Plausible),
            (Response, b"HTTX", Prefix::Invalid),
            (Response, b"{\"a\":1}", Prefix::Invalid),
        ];
        for (kind, data, want) in cases {
            assert_eq!(
                check_prefix(*kind, data),
                *want,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn resync_scan_finds_the_earliest_plausible_start_and_keeps_partial_tails() {
        use MessageKind::*;
        let cases: &[(MessageKind, &[u8], u8, Scan)] = &[
            (Request, b"xx}GET / HTTP/1.1", 0, Scan::Found(3)),
            (Request, b"ABCGET / HTTP/1.1", 0, Scan::Found(3)),
            (Request, b"hello world", 0, Scan::NotFound { keep_from: 11 }),
            (
                Request,
                b"hello wor POS",
                0,
                Scan::NotFound { keep_from: 10 },
            ),
            (Request, b"HELLO WORLD", 0, Scan::NotFound { keep_from: 10 }), // "D" may begin "DELETE "
            (Request, b"x\nPROPFIND / HTTP/1.1", 0, Scan::Found(2)),
            (Request, b"PROPFIND / HTTP/1.1", b'\n', Scan::Found(0)),
            (
                Request,
                b"PROPFIND / HTTP/1.1",
                b'x',
                Scan::NotFound { keep_from: 19 },
            ),
            (Response, b"garbage HTTP/1.1 200", 0, Scan::Found(8)),
            (
                Response,
                b"garbage HTTP/",
                0,
                Scan::NotFound { keep_from: 8 },
            ),
            (Response, b"garbage", 0, Scan::NotFound { keep_from: 7 }),
        ];
        for (kind, data, prev, want) in cases {
            assert_eq!(
                find_message_start(*kind, data, *prev),
                *want,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }
}
