//! Puts one direction of a connection back in stream order.
//!
//! The kernel side stamps every data event with its byte offset in the direction's stream
//! (`pos`, reserved atomically at syscall exit), so order and loss are both visible: the next
//! event should start where the previous one ended. Events of one thread arrive in order; events
//! of concurrent threads on the same socket, or events after a dropped one, leave a hole. Chunks
//! past a hole wait, bounded in bytes and time, and then the hole is declared a gap: the parser is
//! told how many bytes it missed and carries on.

use std::collections::BTreeMap;

/// What the parser sees, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'a> {
    Data {
        timestamp_ns: u64,
        bytes: &'a [u8],
    },
    /// Stream bytes that were never captured (capped events, lost events).
    Gap(u64),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Chunks that arrived ahead of a hole and had to wait.
    pub out_of_order: u64,
    /// Bytes declared lost: holes given up on plus the uncaptured tails of capped events.
    pub gap_bytes: u64,
    /// Holes given up on because the wait buffer was full.
    pub forced_by_size: u64,
    /// Holes given up on because they stayed open too long.
    pub forced_by_age: u64,
    /// Bytes that arrived after their place in the stream had been declared a gap.
    pub late_bytes: u64,
}

#[derive(Debug)]
struct Waiting {
    timestamp_ns: u64,
    /// Stream bytes this chunk covers (>= data.len()).
    msg_size: u64,
    data: Vec<u8>,
}

#[derive(Debug)]
pub struct Reassembler {
    next_pos: u64,
    waiting: BTreeMap<u64, Waiting>,
    waiting_bytes: usize,
    max_waiting_bytes: usize,
    /// Monotonic time at which the current hole was first seen.
    hole_since_ns: Option<u64>,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// `max_waiting_bytes`: payload bytes held behind a hole before it is declared a gap.
    pub fn new(max_waiting_bytes: usize) -> Self {
        Reassembler {
            next_pos: 0,
            waiting: BTreeMap::new(),
            waiting_bytes: 0,
            max_waiting_bytes,
            hole_since_ns: None,
            stats: ReassemblyStats::default(),
        }
    }

    /// Adds a chunk covering stream bytes `[pos, pos + msg_size)` of which the first `data.len()`
    /// were captured. `now_ns` is the caller's monotonic clock, used to age holes.
    pub fn push(
        &mut self,
        pos: u64,
        msg_size: u64,
        timestamp_ns: u64,
        data: &[u8],
        now_ns: u64,
        out: &mut impl FnMut(Segment<'_>),
    ) {
        let data = &data[..data.len().min(msg_size as usize)];
        if msg_size == 0 {
            return;
        }
        if pos <= self.next_pos {
            self.emit_from(pos, msg_size, timestamp_ns, data, out);
            self.drain_contiguous(out);
        } else {
            self.stats.out_of_order += 1;
            let entry = self.waiting.entry(pos).or_insert(Waiting {
                timestamp_ns,
                msg_size: 0,
                data: Vec::new(),
            });
            // A duplicate offset keeps the chunk that covers more.
            if msg_size > entry.msg_size {
                self.waiting_bytes = self.waiting_bytes - entry.data.len() + data.len();
                *entry = Waiting {
                    timestamp_ns,
                    msg_size,
                    data: data.to_vec(),
                };
            }
            self.hole_since_ns.get_or_insert(now_ns);
            while self.waiting_bytes > self.max_waiting_bytes {
                self.stats.forced_by_size += 1;
                self.skip_first_hole(out);
            }
        }
        if self.waiting.is_empty() {
            self.hole_since_ns = None;
        }
    }

    /// Declares the hole a gap if it has been open for `max_wait_ns` or longer.
    pub fn expire_hole(
        &mut self,
        now_ns: u64,
        max_wait_ns: u64,
        out: &mut impl FnMut(Segment<'_>),
    ) {
        if let Some(since) = self.hole_since_ns
            && now_ns.saturating_sub(since) >= max_wait_ns
        {
            self.stats.forced_by_age += 1;
            while !self.waiting.is_empty() {
                self.skip_first_hole(out);
            }
            self.hole_since_ns = None;
        }
    }

    /// Emits everything still waiting, holes as gaps (the connection closed).
    pub fn flush(&mut self, out: &mut impl FnMut(Segment<'_>)) {
        while !self.waiting.is_empty() {
            self.skip_first_hole(out);
        }
        self.hole_since_ns = None;
    }

    /// Drops everything waiting without emitting it (an idle connection releasing memory); the
    /// stream continues after the furthest byte seen.
    pub fn discard(&mut self) {
        if let Some((&pos, w)) = self.waiting.iter().next_back() {
            self.stats.gap_bytes += pos + w.msg_size - self.next_pos;
            self.next_pos = pos + w.msg_size;
        }
        self.waiting.clear();
        self.waiting_bytes = 0;
        self.hole_since_ns = None;
    }

    /// The stream offset the next in-order chunk starts at.
    pub fn next_pos(&self) -> u64 {
        self.next_pos
    }

    pub fn waiting_bytes(&self) -> usize {
        self.waiting_bytes
    }

    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Emits the part of `[pos, pos + msg_size)` at or after `next_pos`.
    fn emit_from(
        &mut self,
        pos: u64,
        msg_size: u64,
        timestamp_ns: u64,
        data: &[u8],
        out: &mut impl FnMut(Segment<'_>),
    ) {
        let end = pos + msg_size;
        if end <= self.next_pos {
            self.stats.late_bytes += msg_size;
            return;
        }
        let skip = self.next_pos - pos;
        self.stats.late_bytes += skip;
        let captured = &data[(skip as usize).min(data.len())..];
        if !captured.is_empty() {
            out(Segment::Data {
                timestamp_ns,
                bytes: captured,
            });
        }
        let tail = end - self.next_pos - captured.len() as u64;
        if tail > 0 {
            self.stats.gap_bytes += tail;
            out(Segment::Gap(tail));
        }
        self.next_pos = end;
    }

    fn drain_contiguous(&mut self, out: &mut impl FnMut(Segment<'_>)) {
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > self.next_pos {
                break;
            }
            let (pos, w) = entry.remove_entry();
            self.waiting_bytes -= w.data.len();
            self.emit_from(pos, w.msg_size, w.timestamp_ns, &w.data, out);
        }
    }

    fn skip_first_hole(&mut self, out: &mut impl FnMut(Segment<'_>)) {
        if let Some((&pos, _)) = self.waiting.first_key_value() {
            if pos > self.next_pos {
                let gap = pos - self.next_pos;
                self.stats.gap_bytes += gap;
                out(Segment::Gap(gap));
                self.next_pos = pos;
            }
            self.drain_contiguous(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Collects segments as owned values; data as (ts, bytes), gaps as (u64::MAX, len).
    #[derive(Default, Debug)]
    struct Sink(Vec<(u64, Vec<u8>)>);

    impl Sink {
        fn f(&mut self) -> impl FnMut(Segment<'_>) + '_ {
            |seg| match seg {
                Segment::Data {
                    timestamp_ns,
                    bytes,
                } => self.0.push((timestamp_ns, bytes.to_vec())),
                Segment::Gap(n) => self.0.push((u64::MAX, n.to_le_bytes().to_vec())),
            }
        }

        /// The stream as text, gaps as `~n~`.
        fn text(&self) -> String {
            self.0
                .iter()
                .map(|(ts, b)| {
                    if *ts == u64::MAX {
                        format!("~{}~", u64::from_le_bytes(b.as_slice().try_into().unwrap()))
                    } else {
                        String::from_utf8_lossy(b).into_owned()
                    }
                })
                .collect()
        }
    }

    #[test]
    fn in_order_chunks_pass_straight_through() {
        let mut r = Reassembler::new(1024);
        let mut sink = Sink::default();
        r.push(0, 4, 10, b"GET ", 0, &mut sink.f());
        r.push(4, 2, 11, b"/x", 0, &mut sink.f());
        assert_eq!(sink.text(), "GET /x");
        assert_eq!(sink.0[1].0, 11, "timestamps travel with their bytes");
        assert_eq!(r.next_pos(), 6);
        assert_eq!(r.stats(), ReassemblyStats::default());
    }

    #[test]
    fn a_capped_event_becomes_data_then_gap() {
        let mut r = Reassembler::new(1024);
        let mut sink = Sink::default();
        r.push(0, 10, 1, b"abc", 0, &mut sink.f());
        r.push(10, 1, 2, b"z", 0, &mut sink.f());
        assert_eq!(sink.text(), "abc~7~z");
        assert_eq!(r.stats().gap_bytes, 7);
    }

    #[test]
    fn a_chunk_ahead_of_a_hole_waits_for_it() {
        let mut r = Reassembler::new(1024);
        let mut sink = Sink::default();
        r.push(3, 3, 2, b"def", 0, &mut sink.f());
        assert_eq!(sink.text(), "");
        assert_eq!(r.waiting_bytes(), 3);
        r.push(0, 3, 1, b"abc", 0, &mut sink.f());
        assert_eq!(sink.text(), "abcdef");
        assert_eq!(r.waiting_bytes(), 0);
        assert_eq!(r.stats().out_of_order, 1);
    }

    #[test]
    fn a_hole_older_than_the_wait_becomes_a_gap() {
        let mut r = Reassembler::new(1024);
        let mut sink = Sink::default();
        r.push(0, 2, 1, b"ab", 100, &mut sink.f());
        r.push(5, 2, 1, b"fg", 100, &mut sink.f());
        r.expire_hole(150, 100, &mut sink.f());
        assert_eq!(sink.text(), "ab", "not old enough yet");
        r.expire_hole(200, 100, &mut sink.f());
        assert_eq!(sink.text(), "ab~3~fg");
        assert_eq!(r.stats().forced_by_age, 1);
        // The lost chunk arriving now is late and dropped.
        r.push(2, 3, 1, b"cde", 300, &mut sink.f());
        assert_eq!(sink.text(), "ab~3~fg");
        assert_eq!(r.stats().late_bytes, 3);
    }

    #[test]
    fn a_full_wait_buffer_gives_up_on_the_oldest_hole() {
        let mut r = Reassembler::new(4);
        let mut sink = Sink::default();
        r.push(10, 3, 1, b"xyz", 0, &mut sink.f());
        assert_eq!(sink.text(), "");
        r.push(20, 3, 1, b"123", 0, &mut sink.f());
        // 6 bytes waiting > 4: the oldest hole goes, which is enough to fit again.
        assert_eq!(sink.text(), "~10~xyz");
        assert_eq!(r.waiting_bytes(), 3);
        assert_eq!(r.stats().forced_by_size, 1);
        r.push(13, 7, 1, b"4567890", 0, &mut sink.f());
        assert_eq!(sink.text(), "~10~xyz4567890123");
    }

    #[test]
    fn overlapping_chunks_are_trimmed_not_repeated() {
        let mut r = Reassembler::new(1024);
        let mut sink = Sink::default();
        r.push(0, 4, 1, b"abcd", 0, &mut sink.f());
        r.push(2, 4, 1, b"cdef", 0, &mut sink.f());
        assert_eq!(sink.text(), "abcdef");
        assert_eq!(r.stats().late_bytes, 2);
    }

    #[test]
    fn flush_turns_remaining_holes_into_gaps() {
        let mut r = Reassembler::new(1024);
        let mut sink = Sink::default();
        r.push(4, 2, 1, b"ef", 0, &mut sink.f());
        r.flush(&mut sink.f());
        assert_eq!(sink.text(), "~4~ef");
        assert_eq!(r.next_pos(), 6);
    }

    #[test]
    fn discard_forgets_waiting_chunks_and_moves_past_them() {
        let mut r = Reassembler::new(1024);
        let mut sink = Sink::default();
        r.push(4, 2, 1, b"ef", 0, &mut sink.f());
        r.discard();
        assert_eq!(r.next_pos(), 6);
        assert_eq!(r.waiting_bytes(), 0);
        r.push(6, 1, 1, b"g", 0, &mut sink.f());
        assert_eq!(sink.text(), "g");
    }

    proptest! {
        /// Any delivery order of a chunked stream, with some chunks lost, comes out as the
        /// stream's bytes in order with the lost ranges as gaps of the right size, once flushed.
        #[test]
        fn any_order_reassembles_to_the_stream(
            stream in proptest::collection::vec(any::<u8>(), 1..400),
            cuts in proptest::collection::vec(1usize..40, 1..40),
            order_seed in any::<u64>(),
            lose_mask in any::<u64>(),
            limit in 1usize..600,
        ) {
            let mut chunks = Vec::new();
            let mut pos = 0;
            for c in cuts.iter().cycle() {
                if pos >= stream.len() { break; }
                let end = (pos + c).min(stream.len());
                chunks.push((pos, end));
                pos = end;
            }
            // Deterministic shuffle.
            let mut order: Vec<usize> = (0..chunks.len()).collect();
            let mut s = order_seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut r = Reassembler::new(limit);
            let mut out: Vec<Option<u8>> = Vec::new();
            let mut sink = |seg: Segment<'_>| match seg {
                Segment::Data { bytes, .. } => out.extend(bytes.iter().map(|&b| Some(b))),
                Segment::Gap(n) => out.extend(std::iter::repeat_n(None, n as usize)),
            };
            for &i in &order {
                if lose_mask >> (i % 64) & 1 == 1 && i % 3 == 0 { continue; }
                let (a, b) = chunks[i];
                r.push(a as u64, (b - a) as u64, 0, &stream[a..b], 0, &mut sink);
                prop_assert!(r.waiting_bytes() <= limit);
            }
            r.flush(&mut sink);
            // Everything up to the furthest byte delivered is accounted for exactly once.
            let end = r.next_pos() as usize;
            prop_assert_eq!(out.len(), end);
            for (i, b) in out.iter().enumerate() {
                if let Some(b) = b { prop_assert_eq!(*b, stream[i]); }
            }
        }
    }
}
