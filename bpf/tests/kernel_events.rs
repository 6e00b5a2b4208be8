//! The socket tracer against the running kernel: a loopback TCP exchange made by this test
//! process must come back as open, data and close events with the right bytes. Needs root.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use pixie_bpf::{ConnId, ConnOpen, Direction, Event, LoadOptions, OpenSource, Role, SocketTracer};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[derive(Debug, Default)]
struct Seen {
    opens: Vec<ConnOpen>,
    closes: Vec<(ConnId, u64, u64)>,
    data: Vec<(ConnId, Direction, u64, u32, Vec<u8>, u32)>,
}

#[test]
fn loopback_exchange_comes_back_as_open_data_close() {
    if !is_root() {
        eprintln!("\n\n*** SKIPPED: loading BPF programs needs root ***\n");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Trace this process too: the exchange below is what we look for.
        let mut tracer = SocketTracer::load(&LoadOptions {
            skip_tgid: None,
            ..Default::default()
        })
        .expect("load");
        tracer.attach().expect("attach");
        let mut reader = tracer.events().expect("events");

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server_addr = listener.local_addr().unwrap();
        let big = vec![b'x'; 40_000];
        let big_len = big.len();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"hello");
            s.write_all(b"world!").unwrap();
            // writev with two iovecs.
            let n = s
                .write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cde")])
                .unwrap();
            assert_eq!(n, 5);
            s.write_all(&big).unwrap();
            s.local_addr().unwrap()
        });
        let mut client = TcpStream::connect(server_addr).unwrap();
        let client_addr = client.local_addr().unwrap();
        client.write_all(b"hello").unwrap();
        // A peek must not be captured: the same bytes are read again below.
        let mut peeked = [0u8; 3];
        while client.peek(&mut peeked).unwrap() < 3 {}
        // readv into two buffers.
        let (mut a, mut b) = ([0u8; 4], [0u8; 2]);
        let mut n = 0usize;
        while n < 6 {
            let (head, tail) = (n.min(4), n.saturating_sub(4));
            n += client
                .read_vectored(&mut [
                    IoSliceMut::new(&mut a[head..]),
                    IoSliceMut::new(&mut b[tail..]),
                ])
                .unwrap();
        }
        assert_eq!([&a[..], &b[..]].concat(), b"world!");
        let mut got = vec![0u8; 5 + big_len];
        client.read_exact(&mut got).unwrap();
        let server_local = server.join().unwrap();
        assert_eq!(server_local, server_addr);
        drop(client);
        let me = std::process::id();

        let mut seen = Seen::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while seen.closes.iter().filter(|c| c.0.tgid == me).count() < 2 {
            let read = tokio::time::timeout_at(
                deadline,
                reader.read(|ev| match ev {
                    Event::ConnOpen(o) if o.conn.tgid == me => seen.opens.push(o),
                    Event::ConnClose(c) if c.conn.tgid == me => {
                        seen.closes.push((c.conn, c.bytes_sent, c.bytes_recv))
                    }
                    Event::Data(d) if d.conn.tgid == me => seen.data.push((
                        d.conn,
                        d.direction,
                        d.pos,
                        d.msg_size,
                        d.data.to_vec(),
                        d.syscall_nr,
                    )),
                    _ => {}
                }),
            )
            .await;
            if read.is_err() {
                panic!("timed out; saw {seen:#?}");
            }
        }

        let client_open = seen
            .opens
            .iter()
            .find(|o| o.role == Role::Client)
            .expect("client open");
        assert_eq!(client_open.source, OpenSource::Connect);
        assert_eq!(
            client_open.remote.socket_addr(),
            Some(server_addr),
            "client remote"
        );
        assert_eq!(
            client_open.local.socket_addr(),
            Some(client_addr),
            "client local"
        );
        let server_open = seen
            .opens
            .iter()
            .find(|o| o.role == Role::Server)
            .expect("server open");
        assert_eq!(server_open.source, OpenSource::Accept);
        assert_eq!(
            server_open.remote.socket_addr(),
            Some(client_addr),
            "server remote"
        );
        assert_eq!(
            server_open.local.socket_addr(),
            Some(server_addr),
            "server local"
        );

        let stream = |conn: ConnId, dir: Direction| -> (u64, Vec<u8>) {
            let mut chunks: Vec<_> = seen
                .data
                .iter()
                .filter(|d| d.0 == conn && d.1 == dir)
                .collect();
            chunks.sort_by_key(|d| d.2);
            let total = chunks.iter().map(|d| u64::from(d.3)).sum();
            let mut bytes = Vec::new();
            for c in &chunks {
                assert_eq!(c.2, bytes.len() as u64, "contiguous positions");
                bytes.extend_from_slice(&c.4);
                // Uncaptured tail of a capped event: fill so positions stay contiguous.
                bytes.resize(bytes.len() + (c.3 as usize - c.4.len()), b'?');
            }
            (total, bytes)
        };
        let (sent, bytes) = stream(client_open.conn, Direction::Send);
        assert_eq!((sent, bytes.as_slice()), (5, &b"hello"[..]));
        // Read once (the peek is not counted), through readv and then recvfrom.
        let (recv, bytes) = stream(client_open.conn, Direction::Recv);
        assert_eq!(recv, (6 + 5 + big_len) as u64);
        assert_eq!(&bytes[..11], b"world!abcde");
        let syscalls: std::collections::BTreeSet<u32> = seen
            .data
            .iter()
            .filter(|d| d.0 == client_open.conn && d.1 == Direction::Recv)
            .map(|d| d.5)
            .collect();
        assert!(syscalls.contains(&19), "readv captured: {syscalls:?}");
        let (recv, bytes) = stream(server_open.conn, Direction::Recv);
        assert_eq!((recv, bytes.as_slice()), (5, &b"hello"[..]));
        let (sent, bytes) = stream(server_open.conn, Direction::Send);
        assert_eq!(sent, (6 + 5 + big_len) as u64);
        assert_eq!(&bytes[..11], b"world!abcde");
        // The 40 kB write is capped per event: some of it is a gap, none of it is invented.
        assert!(bytes[11..].iter().all(|&b| b == b'x' || b == b'?'));
        assert!(
            bytes[11..].contains(&b'?'),
            "a 40 kB write must exceed the per-event cap"
        );

        let close = |conn: ConnId| seen.closes.iter().find(|c| c.0 == conn).copied().unwrap();
        let client_close = close(client_open.conn);
        assert_eq!(
            (client_close.1, client_close.2),
            (5, (6 + 5 + big_len) as u64)
        );
        let server_close = close(server_open.conn);
        assert_eq!(
            (server_close.1, server_close.2),
            ((6 + 5 + big_len) as u64, 5)
        );
        assert_eq!(tracer.stats().unwrap().lost_events, 0);
        assert_eq!(reader.decode_errors(), 0);
    });
}
