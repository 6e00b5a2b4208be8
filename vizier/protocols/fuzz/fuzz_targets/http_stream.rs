//! Arbitrary bytes, cut into arbitrary pushes and gaps in both directions, must never panic an
//! `HttpStream` nor let it hold more than its limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pixie_protocols::http::{HttpLimits, HttpStream};
use pixie_protocols::{Direction, TraceRole};

fuzz_target!(|data: &[u8]| {
    let Some((config, mut ops)) = data.split_first_chunk::<5>() else {
        return;
    };
    let role = if config[0] & 1 == 0 {
        TraceRole::Client
    } else {
        TraceRole::Server
    };
    // Mostly small limits, so every cap is reached; sometimes the defaults, so realistic
    // messages get through to the deeper states.
    let limits = if config[0] & 2 == 0 {
        HttpLimits {
            max_body_bytes: usize::from(config[1] % 128),
            max_header_bytes: usize::from(config[2]) * 4,
            max_buffered_bytes: usize::from(config[3]) * 8,
            max_pending: usize::from(config[4] % 8),
        }
    } else {
        HttpLimits::default()
    };
    let mut stream = HttpStream::new(role, limits);
    let mut ts = 0u64;
    let mut drained = 0u64;
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        let dir = if op & 1 == 0 {
            Direction::Send
        } else {
            Direction::Recv
        };
        match op >> 1 {
            // Rarely: lost bytes, or the connection closing.
            0..=5 => {
                let Some((len, rest)) = ops.split_first_chunk::<2>() else {
                    break;
                };
                ops = rest;
                stream.push_gap(dir, u64::from(u16::from_le_bytes(*len)));
            }
            6 => stream.close(),
            _ => {
                let Some((&len, rest)) = ops.split_first() else {
                    break;
                };
                let len = usize::from(len).min(rest.len());
                let (chunk, rest) = rest.split_at(len);
                ops = rest;
                ts += u64::from(op & 0x0f);
                stream.push(dir, ts, chunk);
            }
        }
        assert!(
            stream.buffered_bytes() <= 2 * limits.max_buffered_bytes,
            "buffered {} bytes, limit {} per direction",
            stream.buffered_bytes(),
            limits.max_buffered_bytes
        );
        assert!(stream.pending_requests() <= limits.max_pending);
        for record in stream.drain() {
            drained += 1;
            assert!(record.req.body.len() <= limits.max_body_bytes);
            assert!(record.resp.body.len() <= limits.max_body_bytes);
        }
    }
    assert_eq!(stream.stats().records, drained);
});
