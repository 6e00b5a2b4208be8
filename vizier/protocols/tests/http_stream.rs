//! Behaviour of `HttpStream`, one property per test.

mod common;

use common::*;
use pixie_protocols::http::{ContentType, HttpLimits, HttpStream, headers_json};
use pixie_protocols::{Direction, TraceRole};

fn s(
    method: &str,
    path: &str,
    status: u16,
    req_size: u64,
    resp_size: u64,
) -> (String, String, u16, u64, u64) {
    (
        method.to_string(),
        path.to_string(),
        status,
        req_size,
        resp_size,
    )
}

#[test]
fn simple_exchange_yields_one_record_with_every_field() {
    let (records, stats) = client(&[
        send(
            100,
            message(
                "POST /api/v1?x=1 HTTP/1.1",
                &[("Host", "a"), ("Content-Length", "7")],
                b"{\"a\":1}",
            ),
        ),
        recv(
            250,
            message(
                "HTTP/1.1 201 Created",
                &[
                    ("Content-Type", "application/json"),
                    ("Content-Length", "2"),
                ],
                b"{}",
            ),
        ),
    ]);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (
            r.req.minor_version,
            r.req.method.as_str(),
            r.req.path.as_str()
        ),
        (1, "POST", "/api/v1?x=1")
    );
    assert_eq!(
        r.req.headers,
        vec![
            ("Host".into(), "a".into()),
            ("Content-Length".into(), "7".into())
        ]
    );
    assert_eq!(
        (r.req.body.as_slice(), r.req.body_size),
        (&b"{\"a\":1}"[..], 7)
    );
    assert_eq!(
        (r.resp.minor_version, r.resp.status, r.resp.message.as_str()),
        (1, 201, "Created")
    );
    assert_eq!((r.resp.body.as_slice(), r.resp.body_size), (&b"{}"[..], 2));
    assert_eq!(r.resp.content_type, ContentType::Json);
    assert_eq!(
        (r.req_timestamp_ns, r.resp_timestamp_ns, r.latency_ns()),
        (100, 250, 150)
    );
    assert_eq!(
        headers_json(&r.resp.headers),
        r#"{"Content-Length":"2","Content-Type":"application/json"}"#
    );
    assert_eq!(
        (stats.records, stats.parse_errors, stats.bytes_resynced),
        (1, 0, 0)
    );
}

#[test]
fn body_framing_follows_headers_status_and_method() {
    type Case = (
        &'static str,
        Vec<Vec<u8>>,
        Vec<Vec<u8>>,
        Vec<(String, String, u16, u64, u64)>,
        Vec<&'static [u8]>,
    );
    let cases: Vec<Case> = vec![
        (
            "content-length on both sides",
            vec![message(
                "PUT /a HTTP/1.1",
                &[("Content-Length", "3")],
                b"abc",
            )],
            vec![message(
                "HTTP/1.1 200 OK",
                &[("Content-Length", "5")],
                b"hello",
            )],
            vec![s("PUT", "/a", 200, 3, 5)],
            vec![b"hello"],
        ),
        (
            "chunked response with extensions and upper-case hex",
            vec![message("GET /c HTTP/1.1", &[], b"")],
            vec![message(
                "HTTP/1.1 200 OK",
                &[("Transfer-Encoding", "chunked")],
                b"5;name=value\r\nhello\r\nA\r\n0123456789\r\n0;last\r\n\r\n",
            )],
            vec![s("GET", "/c", 200, 0, 15)],
            vec![b"hello0123456789"],
        ),
        (
            "chunked request with trailers",
            vec![message(
                "POST /t HTTP/1.1",
                &[("Transfer-Encoding", "gzip, chunked")],
                b"4\r\nwxyz\r\n0\r\nChecksum: abc\r\nX-More: 1\r\n\r\n",
            )],
            vec![message("HTTP/1.1 204 No Content", &[], b"")],
            vec![s("POST", "/t", 204, 4, 0)],
            vec![b""],
        ),
        (
            "HEAD response has no body despite its content-length",
            vec![
                message("HEAD /h HTTP/1.1", &[], b""),
                message("GET /g HTTP/1.1", &[], b""),
            ],
            vec![
                message("HTTP/1.1 200 OK", &[("Content-Length", "1000")], b""),
                message("HTTP/1.1 200 OK", &[("Content-Length", "2")], b"ok"),
            ],
            vec![s("HEAD", "/h", 200, 0, 0), s("GET", "/g", 200, 0, 2)],
            vec![b"", b"ok"],
        ),
        (
            "204 and 304 have no body whatever the headers say",
            vec![
                message("GET /1 HTTP/1.1", &[], b""),
                message("GET /2 HTTP/1.1", &[], b""),
            ],
            vec![
                message("HTTP/1.1 204 No Content", &[("Content-Length", "10")], b""),
                message(
                    "HTTP/1.1 304 Not Modified",
                    &[("Transfer-Encoding", "chunked")],
                    b"",
                ),
            ],
            vec![s("GET", "/1", 204, 0, 0), s("GET", "/2", 304, 0, 0)],
            vec![b"", b""],
        ),
        (
            "100-continue: the interim response is skipped",
            vec![
                message(
                    "POST /up HTTP/1.1",
                    &[("Expect", "100-continue"), ("Content-Length", "4")],
                    b"",
                ),
                b"data".to_vec(),
            ],
            vec![
                message("HTTP/1.1 100 Continue", &[], b""),
                message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
            ],
            vec![s("POST", "/up", 200, 4, 0)],
            vec![b""],
        ),
        (
            "bare LF line endings and HTTP/1.0",
            vec![b"GET /lf HTTP/1.0\nHost: x\n\n".to_vec()],
            vec![b"HTTP/1.0 200 OK\nContent-Length: 2\n\nok".to_vec()],
            vec![s("GET", "/lf", 200, 0, 2)],
            vec![b"ok"],
        ),
        (
            "repeated identical content-length values agree",
            vec![message(
                "POST /r HTTP/1.1",
                &[("Content-Length", "3, 3"), ("Content-Length", "3")],
                b"abc",
            )],
            vec![message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b"")],
            vec![s("POST", "/r", 200, 3, 0)],
            vec![b""],
        ),
        (
            "empty lines between requests are ignored",
            vec![
                [
                    message("POST /e HTTP/1.1", &[("Content-Length", "1")], b"x"),
                    b"\r\n".to_vec(),
                ]
                .concat(),
                message("GET /f HTTP/1.1", &[], b""),
            ],
            vec![
                message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
                message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
            ],
            vec![s("POST", "/e", 200, 1, 0), s("GET", "/f", 200, 0, 0)],
            vec![b"", b""],
        ),
    ];
    for (name, requests, responses, want, bodies) in cases {
        let mut events = Vec::new();
        let mut responses = responses.into_iter();
        for (i, request) in requests.into_iter().enumerate() {
            events.push(send(i as u64 * 10, request));
            // Interleave one response per request where one exists; the rest follow.
            if let Some(response) = responses.next() {
                events.push(recv(i as u64 * 10 + 5, response));
            }
        }
        events.extend(responses.map(|r| recv(1000, r)));
        let (records, stats) = client(&events);
        assert_eq!(summary(&records), want, "{name}");
        let got: Vec<&[u8]> = records.iter().map(|r| r.resp.body.as_slice()).collect();
        assert_eq!(got, bodies, "{name}");
        assert_eq!(stats.parse_errors, 0, "{name}");
    }
}

#[test]
fn pipelined_requests_pair_with_responses_in_order() {
    let requests: Vec<u8> = (1..=3)
        .flat_map(|i| message(&format!("GET /{i} HTTP/1.1"), &[("Host", "x")], b""))
        .collect();
    let responses: Vec<u8> = [200, 404, 500]
        .iter()
        .flat_map(|status| {
            message(
                &format!("HTTP/1.1 {status} X"),
                &[("Content-Length", "1")],
                b"z",
            )
        })
        .collect();
    let (records, stats) = client(&[send(1, requests), recv(2, responses)]);
    assert_eq!(
        summary(&records),
        vec![
            s("GET", "/1", 200, 0, 1),
            s("GET", "/2", 404, 0, 1),
            s("GET", "/3", 500, 0, 1)
        ]
    );
    assert_eq!(stats.unmatched_responses, 0);
}

#[test]
fn server_role_reads_requests_from_recv_and_responses_from_send() {
    let events = [
        common::Event::Data {
            dir: Direction::Recv,
            ts: 1,
            bytes: message("GET /s HTTP/1.1", &[], b""),
        },
        common::Event::Data {
            dir: Direction::Send,
            ts: 2,
            bytes: message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
        },
    ];
    let (records, _) = run(TraceRole::Server, HttpLimits::default(), &events);
    assert_eq!(summary(&records), vec![s("GET", "/s", 200, 0, 0)]);

    let (records, stats) = run(TraceRole::Client, HttpLimits::default(), &events);
    assert!(records.is_empty(), "with the roles swapped nothing parses");
    assert!(stats.parse_errors >= 2);
}

#[test]
fn timestamps_are_first_request_byte_and_last_response_byte() {
    let request = message("POST /t HTTP/1.1", &[("Content-Length", "4")], b"abcd");
    let response = message("HTTP/1.1 200 OK", &[("Content-Length", "4")], b"wxyz");
    let (records, _) = client(&[
        send(10, &request[..5]),
        send(20, &request[5..]),
        recv(30, &response[..response.len() - 2]),
        recv(45, &response[response.len() - 2..]),
    ]);
    assert_eq!(
        (
            records[0].req_timestamp_ns,
            records[0].resp_timestamp_ns,
            records[0].latency_ns()
        ),
        (10, 45, 35)
    );
}

#[test]
fn every_split_point_of_a_chunked_gzip_exchange_gives_the_same_record() {
    let request = message(
        "POST /split HTTP/1.1",
        &[("Transfer-Encoding", "chunked")],
        &chunked(b"0123456789abcdef", &[3, 7]),
    );
    let response = message(
        "HTTP/1.1 200 OK",
        &[
            ("Content-Encoding", "gzip"),
            ("Transfer-Encoding", "chunked"),
        ],
        &chunked(&gzip(b"the quick brown fox"), &[5]),
    );
    let (whole, _) = client(&[send(1, &request), recv(2, &response)]);
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].resp.body, b"the quick brown fox");
    for cut in 0..=request.len() {
        let (records, _) = client(&[
            send(1, &request[..cut]),
            send(1, &request[cut..]),
            recv(2, &response),
        ]);
        assert_eq!(records, whole, "request cut at {cut}");
    }
    for cut in 0..=response.len() {
        let (records, _) = client(&[
            send(1, &request),
            recv(2, &response[..cut]),
            recv(2, &response[cut..]),
        ]);
        assert_eq!(records, whole, "response cut at {cut}");
    }
}

#[test]
fn garbage_before_messages_is_skipped_and_counted() {
    let (records, stats) = client(&[
        send(1, b"\x00\x01binary junk }"),
        send(2, message("GET /after-junk HTTP/1.1", &[], b"")),
        recv(3, b"tail of an old body"),
        recv(
            4,
            message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
        ),
    ]);
    assert_eq!(summary(&records), vec![s("GET", "/after-junk", 200, 0, 0)]);
    assert_eq!(stats.parse_errors, 2);
    assert!(stats.bytes_resynced >= 30, "{stats:?}");
}

#[test]
fn false_message_starts_inside_text_are_rejected_without_losing_the_real_one() {
    // "GET a coffee" and "HTTP/1.x" inside prose look like starts until their line completes.
    let (records, stats) = client(&[
        send(1, b"junk GET a coffee\r\nPOST"),
        send(2, b" /real HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        recv(3, b"I like HTTP/1.1 a lot\r\n"),
        recv(
            4,
            message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
        ),
    ]);
    assert_eq!(summary(&records), vec![s("POST", "/real", 200, 0, 0)]);
    assert_eq!(
        stats.parse_errors, 2,
        "only the two stream starts were real errors: {stats:?}"
    );
}

#[test]
fn gap_inside_a_body_of_known_length_keeps_the_record() {
    let mut stream = HttpStream::new(TraceRole::Client, HttpLimits::default());
    stream.push(Direction::Send, 1, &message("GET / HTTP/1.1", &[], b""));
    stream.push(
        Direction::Recv,
        2,
        &message("HTTP/1.1 200 OK", &[("Content-Length", "10")], b"abc"),
    );
    stream.push_gap(Direction::Recv, 4);
    stream.push(Direction::Recv, 3, b"hij");
    let records = stream.drain();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].resp.body.as_slice(), records[0].resp.body_size),
        (&b"abc"[..], 10)
    );
    let stats = stream.stats();
    assert_eq!((stats.gaps, stats.gap_bytes, stats.gaps_bridged), (1, 4, 1));
}

#[test]
fn gap_in_a_chunked_body_within_one_chunk_keeps_the_framing() {
    let mut stream = HttpStream::new(TraceRole::Client, HttpLimits::default());
    stream.push(Direction::Send, 1, &message("GET / HTTP/1.1", &[], b""));
    stream.push(
        Direction::Recv,
        2,
        &message(
            "HTTP/1.1 200 OK",
            &[("Transfer-Encoding", "chunked")],
            b"8\r\nab",
        ),
    );
    stream.push_gap(Direction::Recv, 6);
    stream.push(Direction::Recv, 3, b"\r\n2\r\nyz\r\n0\r\n\r\n");
    let records = stream.drain();
    assert_eq!(summary(&records), vec![s("GET", "/", 200, 0, 10)]);
    assert_eq!(records[0].resp.body, b"ab");
}

#[test]
fn gap_in_a_head_resynchronises_at_the_next_message() {
    let mut stream = HttpStream::new(TraceRole::Client, HttpLimits::default());
    stream.push(Direction::Send, 1, b"GET /lost HTTP/1.1\r\nHo");
    stream.push_gap(Direction::Send, 20);
    stream.push(
        Direction::Send,
        2,
        b"rest of lost head\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
    );
    stream.push(
        Direction::Recv,
        3,
        &message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
    );
    assert_eq!(summary(&stream.drain()), vec![s("GET", "/next", 200, 0, 0)]);
    assert_eq!(stream.stats().gaps_bridged, 0);
}

#[test]
fn response_lost_to_a_gap_evicts_its_request_instead_of_shifting_pairs() {
    let ok = |n: &str| message("HTTP/1.1 200 OK", &[("Content-Length", "1")], n.as_bytes());
    let (records, stats) = client(&[
        send(10, message("GET /1 HTTP/1.1", &[], b"")),
        recv(20, &ok("1")[..8]),
        Event::Gap {
            dir: Direction::Recv,
            len: 50,
        },
        send(30, message("GET /2 HTTP/1.1", &[], b"")),
        recv(40, ok("2")),
    ]);
    assert_eq!(summary(&records), vec![s("GET", "/2", 200, 0, 1)]);
    assert_eq!(records[0].resp.body, b"2");
    assert_eq!((stats.evicted_requests, stats.unmatched_responses), (1, 0));
}

#[test]
fn response_older_than_the_oldest_waiting_request_is_unmatched() {
    // The request for the response at t=15 was lost; the waiting request was sent later.
    let ok = message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b"");
    let (records, stats) = client(&[
        send(20, message("GET /b HTTP/1.1", &[], b"")),
        recv(15, &ok),
        recv(25, &ok),
    ]);
    assert_eq!(summary(&records), vec![s("GET", "/b", 200, 0, 0)]);
    assert_eq!(records[0].req_timestamp_ns, 20);
    assert_eq!(stats.unmatched_responses, 1);
}

#[test]
fn response_without_any_request_is_counted_as_unmatched() {
    let (records, stats) = client(&[recv(
        1,
        message("HTTP/1.1 200 OK", &[("Content-Length", "2")], b"ok"),
    )]);
    assert!(records.is_empty());
    assert_eq!(stats.unmatched_responses, 1);
}

#[test]
fn head_over_the_limit_is_a_parse_error_and_the_stream_recovers() {
    let limits = HttpLimits {
        max_header_bytes: 64,
        ..HttpLimits::default()
    };
    let mut stream = HttpStream::new(TraceRole::Client, limits);
    stream.push(
        Direction::Send,
        1,
        &message("GET /big HTTP/1.1", &[("X-Filler", &"f".repeat(100))], b""),
    );
    assert!(stream.buffered_bytes() <= 64);
    // A head that never ends is cut off at the limit, not buffered forever.
    for _ in 0..100 {
        stream.push(
            Direction::Send,
            2,
            b"GET /endless HTTP/1.1\r\nX-A: aaaaaaaaaaaaaaaaaa\r\n",
        );
        assert!(stream.buffered_bytes() <= 64);
    }
    // The endless head is still open; the next request's line is not a header, so it restarts.
    stream.push(Direction::Send, 3, b"GET /small HTTP/1.1\r\n\r\n");
    stream.push(
        Direction::Recv,
        4,
        &message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
    );
    assert_eq!(
        summary(&stream.drain()),
        vec![s("GET", "/small", 200, 0, 0)]
    );
    assert!(stream.stats().parse_errors >= 2);
}

#[test]
fn buffer_over_its_cap_is_dropped_and_counted() {
    let limits = HttpLimits {
        max_buffered_bytes: 4,
        ..HttpLimits::default()
    };
    let mut stream = HttpStream::new(TraceRole::Client, limits);
    stream.push(Direction::Send, 1, b"zzz");
    stream.push(Direction::Send, 1, b"zOPTIO");
    assert!(stream.buffered_bytes() <= 4);
    let stats = stream.stats();
    assert_eq!(stats.buffer_overflows, 1, "{stats:?}");
    assert_eq!(stats.bytes_dropped, 5);
}

#[test]
fn waiting_requests_beyond_the_cap_evict_the_oldest() {
    let limits = HttpLimits {
        max_pending: 2,
        ..HttpLimits::default()
    };
    let mut stream = HttpStream::new(TraceRole::Client, limits);
    for i in 1..=4 {
        stream.push(
            Direction::Send,
            i,
            &message(&format!("GET /{i} HTTP/1.1"), &[], b""),
        );
        assert!(stream.pending_requests() <= 2);
    }
    stream.push(
        Direction::Recv,
        9,
        &message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
    );
    assert_eq!(summary(&stream.drain()), vec![s("GET", "/3", 200, 0, 0)]);
    assert_eq!(stream.stats().evicted_requests, 2);
}

#[test]
fn bodies_are_truncated_to_the_limit_but_sized_in_full() {
    let limits = HttpLimits {
        max_body_bytes: 8,
        ..HttpLimits::default()
    };
    let body = b"0123456789".repeat(200);
    let (records, _) = run(
        TraceRole::Client,
        limits,
        &[
            send(
                1,
                message("POST /big HTTP/1.1", &[("Content-Length", "2000")], &body),
            ),
            recv(
                2,
                message(
                    "HTTP/1.1 200 OK",
                    &[("Transfer-Encoding", "chunked")],
                    &chunked(&body, &[333]),
                ),
            ),
        ],
    );
    let r = &records[0];
    assert_eq!(
        (r.req.body.as_slice(), r.req.body_size),
        (&b"01234567"[..], 2000)
    );
    assert_eq!(
        (r.resp.body.as_slice(), r.resp.body_size),
        (&b"01234567"[..], 2000)
    );
}

#[test]
fn default_limits_keep_1024_bytes_of_body_like_pixie() {
    let body = vec![b'x'; 5000];
    let (records, _) = client(&[
        send(1, message("GET / HTTP/1.1", &[], b"")),
        recv(
            2,
            message("HTTP/1.1 200 OK", &[("Content-Length", "5000")], &body),
        ),
    ]);
    assert_eq!(
        (records[0].resp.body.len(), records[0].resp.body_size),
        (1024, 5000)
    );
}

#[test]
fn gzip_body_is_kept_decompressed_and_sized_on_the_wire() {
    let plain = b"{\"items\":[1,2,3,4,5,6,7,8,9,10]}".repeat(100);
    let wire = gzip(&plain);
    let limits = HttpLimits {
        max_body_bytes: 100,
        ..HttpLimits::default()
    };
    let (records, stats) = run(
        TraceRole::Client,
        limits,
        &[
            send(
                1,
                message("GET /z HTTP/1.1", &[("Accept-Encoding", "gzip")], b""),
            ),
            recv(
                2,
                message(
                    "HTTP/1.1 200 OK",
                    &[
                        ("Content-Encoding", "gzip"),
                        ("Content-Length", &wire.len().to_string()),
                    ],
                    &wire,
                ),
            ),
        ],
    );
    assert_eq!(records[0].resp.body, plain[..100]);
    assert_eq!(records[0].resp.body_size, wire.len() as u64);
    assert_eq!(stats.body_decode_errors, 0);
}

#[test]
fn gzip_bomb_costs_no_more_than_the_body_limit() {
    let wire = gzip(&vec![0u8; 16 * 1024 * 1024]);
    let (records, _) = client(&[
        send(1, message("GET /bomb HTTP/1.1", &[], b"")),
        recv(
            2,
            message(
                "HTTP/1.1 200 OK",
                &[
                    ("Content-Encoding", "gzip"),
                    ("Content-Length", &wire.len().to_string()),
                ],
                &wire,
            ),
        ),
    ]);
    assert_eq!(records[0].resp.body, vec![0u8; 1024]);
    assert_eq!(records[0].resp.body_size, wire.len() as u64);
}

#[test]
fn corrupt_gzip_body_is_counted_and_the_record_kept() {
    let (records, stats) = client(&[
        send(1, message("GET / HTTP/1.1", &[], b"")),
        recv(
            2,
            message(
                "HTTP/1.1 200 OK",
                &[("Content-Encoding", "gzip"), ("Content-Length", "9")],
                b"not gzip!",
            ),
        ),
    ]);
    assert_eq!(summary(&records), vec![s("GET", "/", 200, 0, 9)]);
    assert_eq!(stats.body_decode_errors, 1);
}

#[test]
fn switching_protocols_stops_parsing_both_directions() {
    let mut stream = HttpStream::new(TraceRole::Client, HttpLimits::default());
    let first_frame = b"\x81\x05hello";
    let client_frame = b"\x81\x85mask!frame";
    let http_lookalike = b"GET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
    stream.push(
        Direction::Send,
        1,
        &message(
            "GET /ws HTTP/1.1",
            &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
            b"",
        ),
    );
    stream.push(
        Direction::Recv,
        2,
        &message(
            "HTTP/1.1 101 Switching Protocols",
            &[("Upgrade", "websocket")],
            first_frame,
        ),
    );
    stream.push(Direction::Send, 3, client_frame);
    stream.push(Direction::Recv, 4, http_lookalike);
    assert_eq!(summary(&stream.drain()), vec![s("GET", "/ws", 101, 0, 0)]);
    assert!(stream.is_opaque());
    let stats = stream.stats();
    assert_eq!((stats.parse_errors, stats.unmatched_responses), (0, 0));
    assert_eq!(
        stats.opaque_bytes,
        (first_frame.len() + client_frame.len() + http_lookalike.len()) as u64
    );
}

#[test]
fn connect_tunnel_is_not_parsed_as_http() {
    let (records, stats) = client(&[
        send(
            1,
            message("CONNECT db:5432 HTTP/1.1", &[("Host", "db:5432")], b""),
        ),
        recv(2, message("HTTP/1.1 200 Connection Established", &[], b"")),
        send(3, b"\x16\x03\x01 tls hello"),
        recv(4, b"\x16\x03\x03 tls reply"),
    ]);
    assert_eq!(summary(&records), vec![s("CONNECT", "db:5432", 200, 0, 0)]);
    assert_eq!(stats.parse_errors, 0);
}

#[test]
fn final_answer_to_an_expect_continue_request_pairs_and_the_next_request_parses() {
    let (records, stats) = client(&[
        send(
            1,
            message(
                "POST /upload HTTP/1.1",
                &[("Expect", "100-continue"), ("Content-Length", "5")],
                b"",
            ),
        ),
        recv(
            2,
            message(
                "HTTP/1.1 417 Expectation Failed",
                &[("Content-Length", "0")],
                b"",
            ),
        ),
        send(3, message("GET /next HTTP/1.1", &[], b"")),
        recv(
            4,
            message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
        ),
    ]);
    assert_eq!(
        summary(&records),
        vec![
            s("POST", "/upload", 417, 0, 0),
            s("GET", "/next", 200, 0, 0)
        ]
    );
    assert_eq!(stats.parse_errors, 0);
}

#[test]
fn early_response_to_an_unfinished_upload_pairs_once() {
    let (records, stats) = client(&[
        send(
            1,
            message("POST /big HTTP/1.1", &[("Content-Length", "6")], b"abc"),
        ),
        recv(
            2,
            message(
                "HTTP/1.1 413 Payload Too Large",
                &[("Content-Length", "0")],
                b"",
            ),
        ),
        send(3, b"def"),
        send(4, message("GET /then HTTP/1.1", &[], b"")),
        recv(
            5,
            message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
        ),
    ]);
    assert_eq!(
        summary(&records),
        vec![s("POST", "/big", 413, 3, 0), s("GET", "/then", 200, 0, 0)]
    );
    assert_eq!((stats.parse_errors, stats.unmatched_responses), (0, 0));
}

#[test]
fn response_delimited_by_close_completes_on_close() {
    let mut stream = HttpStream::new(TraceRole::Client, HttpLimits::default());
    stream.push(Direction::Send, 1, &message("GET /old HTTP/1.0", &[], b""));
    stream.push(
        Direction::Recv,
        2,
        &message(
            "HTTP/1.0 200 OK",
            &[("Content-Type", "text/plain")],
            b"part one, ",
        ),
    );
    stream.push(Direction::Recv, 3, b"part two");
    assert!(stream.drain().is_empty(), "the body may still grow");
    stream.close();
    let records = stream.drain();
    assert_eq!(summary(&records), vec![s("GET", "/old", 200, 0, 18)]);
    assert_eq!(
        (
            records[0].resp.body.as_slice(),
            records[0].resp_timestamp_ns
        ),
        (&b"part one, part two"[..], 3)
    );
    stream.push(Direction::Recv, 4, b"after close");
    assert_eq!(stream.stats().opaque_bytes, 11);
}

#[test]
fn response_delimited_by_close_ends_when_the_client_sends_another_request() {
    let (records, _) = client(&[
        send(1, message("GET /a HTTP/1.1", &[], b"")),
        recv(2, message("HTTP/1.1 200 OK", &[], b"unframed")),
        send(3, message("GET /b HTTP/1.1", &[], b"")),
        recv(
            4,
            message("HTTP/1.1 200 OK", &[("Content-Length", "1")], b"b"),
        ),
    ]);
    assert_eq!(
        summary(&records),
        vec![s("GET", "/a", 200, 0, 8), s("GET", "/b", 200, 0, 1)]
    );
}

#[test]
fn close_evicts_requests_that_never_got_a_response() {
    let mut stream = HttpStream::new(TraceRole::Client, HttpLimits::default());
    stream.push(Direction::Send, 1, &message("GET /x HTTP/1.1", &[], b""));
    assert_eq!(stream.pending_requests(), 1);
    stream.close();
    assert_eq!(
        (stream.pending_requests(), stream.stats().evicted_requests),
        (0, 1)
    );
}

#[test]
fn unusable_lengths_are_parse_errors() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("non-numeric content-length", &[("Content-Length", "abc")]),
        ("conflicting content-lengths", &[("Content-Length", "1, 2")]),
        ("negative content-length", &[("Content-Length", "-1")]),
        (
            "overflowing content-length",
            &[("Content-Length", "99999999999999999999999")],
        ),
        (
            "request transfer-encoding without chunked",
            &[("Transfer-Encoding", "gzip")],
        ),
    ];
    for (name, headers) in cases {
        let (records, stats) = client(&[
            send(1, message("POST /bad HTTP/1.1", headers, b"")),
            send(2, message("GET /good HTTP/1.1", &[], b"")),
            recv(
                3,
                message("HTTP/1.1 200 OK", &[("Content-Length", "0")], b""),
            ),
        ]);
        assert_eq!(
            summary(&records),
            vec![s("GET", "/good", 200, 0, 0)],
            "{name}"
        );
        assert_eq!(stats.parse_errors, 1, "{name}");
    }
}

#[test]
fn bad_chunk_framing_is_a_parse_error() {
    let cases: &[(&str, &[u8])] = &[
        ("non-hex size", b"zz\r\n"),
        ("missing CRLF after data", b"3\r\nabcX\r\n0\r\n\r\n"),
        ("size too large", b"11111111111111111\r\n"),
    ];
    for (name, body) in cases {
        let (records, stats) = client(&[
            send(1, message("GET /a HTTP/1.1", &[], b"")),
            recv(
                2,
                message("HTTP/1.1 200 OK", &[("Transfer-Encoding", "chunked")], body),
            ),
        ]);
        assert!(records.is_empty(), "{name}");
        assert_eq!(
            (stats.parse_errors, stats.evicted_requests),
            (1, 1),
            "{name}"
        );
    }
}

#[test]
fn content_type_is_classified_like_pixie() {
    let cases = [
        ("application/json", ContentType::Json),
        ("application/json; charset=utf-8", ContentType::Json),
        ("application/vnd.api+JSON", ContentType::Json),
        ("application/grpc", ContentType::Grpc),
        ("application/grpc+proto", ContentType::Grpc),
        ("text/html", ContentType::Unknown),
        ("", ContentType::Unknown),
    ];
    for (value, want) in cases {
        assert_eq!(ContentType::from_header_value(value), want, "{value}");
    }
    assert_eq!(
        [ContentType::Unknown, ContentType::Json, ContentType::Grpc].map(ContentType::pixie_value),
        [0, 1, 2]
    );
}

#[test]
fn trace_role_maps_to_pixie_values_and_request_directions() {
    assert_eq!(
        (
            TraceRole::Client.pixie_value(),
            TraceRole::Server.pixie_value()
        ),
        (1, 2)
    );
    assert_eq!(TraceRole::Client.request_direction(), Direction::Send);
    assert_eq!(TraceRole::Server.request_direction(), Direction::Recv);
}
