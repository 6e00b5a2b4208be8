//! A message body as it streams past: count every payload byte, keep a bounded prefix, and
//! decompress `gzip`/`deflate` bodies into that prefix without ever inflating more than it holds.

use flate2::{Decompress, FlushDecompress, Status};

/// The content codings we decode. Anything else (br, zstd, stacked codings) is kept as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
    /// HTTP's `deflate` is zlib-wrapped, but some servers send raw deflate; we sniff which.
    Deflate,
}

impl Coding {
    /// The coding named by a message's `Content-Encoding` header values.
    pub(crate) fn from_header_values<'a>(values: impl Iterator<Item = &'a str>) -> Coding {
        let mut codings = values
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let (Some(only), None) = (codings.next(), codings.next()) else {
            return Coding::Identity;
        };
        if only.eq_ignore_ascii_case("gzip") || only.eq_ignore_ascii_case("x-gzip") {
            Coding::Gzip
        } else if only.eq_ignore_ascii_case("deflate") {
            Coding::Deflate
        } else {
            Coding::Identity
        }
    }
}

/// Collects one body. `size` is the payload length on the wire (after removing chunked framing,
/// before decompression, like Pixie's `body_size`); `kept` holds at most `limit` bytes of the
/// decoded payload.
#[derive(Debug)]
pub(crate) struct BodySink {
    kept: Vec<u8>,
    limit: usize,
    size: u64,
    inflater: Option<Box<Inflater>>,
    /// False once the prefix is full, bytes were lost, or decoding failed: later bytes are only
    /// counted, because appending them would misrepresent the body.
    keeping: bool,
    decode_error: bool,
}

impl BodySink {
    pub(crate) fn new(limit: usize, coding: Coding) -> Self {
        let inflater =
            (limit > 0 && coding != Coding::Identity).then(|| Box::new(Inflater::new(coding)));
        BodySink {
            kept: Vec::new(),
            limit,
            size: 0,
            inflater,
            keeping: limit > 0,
            decode_error: false,
        }
    }

    pub(crate) fn write(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        if !self.keeping {
            return;
        }
        match self.inflater.as_mut() {
            None => {
                let take = (self.limit - self.kept.len()).min(data.len());
                self.kept.extend_from_slice(&data[..take]);
            }
            Some(inflater) => match inflater.feed(data, &mut self.kept, self.limit) {
                Ok(Progress::More) => {}
                Ok(Progress::End) => self.stop(),
                Err(InflateError) => {
                    self.decode_error = true;
                    self.stop();
                }
            },
        }
        if self.kept.len() >= self.limit {
            self.stop();
        }
    }

    /// `len` payload bytes were lost: count them, keep nothing after the hole.
    pub(crate) fn gap(&mut self, len: u64) {
        self.size += len;
        self.stop();
    }

    /// The body so far, for a request answered before it finished.
    pub(crate) fn snapshot(&self) -> (Vec<u8>, u64) {
        (self.kept.clone(), self.size)
    }

    /// Returns the kept body, the wire size, and whether decompression failed (a compressed
    /// stream that is corrupt, or ends before its end marker while we were still keeping).
    pub(crate) fn finish(self) -> (Vec<u8>, u64, bool) {
        let truncated_stream = self.keeping && self.inflater.is_some() && self.size > 0;
        (self.kept, self.size, self.decode_error || truncated_stream)
    }

    fn stop(&mut self) {
        self.keeping = false;
        // Free the ~40 KiB of inflate state as soon as we stop needing it.
        self.inflater = None;
    }
}

#[derive(Debug)]
struct InflateError;

#[derive(Debug, PartialEq, Eq)]
enum Progress {
    More,
    End,
}

#[derive(Debug)]
struct Inflater {
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    GzipHeader(GzipHeader),
    /// Waiting for the first two bytes to tell zlib from raw deflate.
    DeflateSniff(Option<u8>),
    Stream(Decompress),
}

impl Inflater {
    fn new(coding: Coding) -> Self {
        let stage = match coding {
            Coding::Deflate => Stage::DeflateSniff(None),
            Coding::Gzip | Coding::Identity => Stage::GzipHeader(GzipHeader::default()),
        };
        Inflater { stage }
    }

    fn feed(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<Progress, InflateError> {
        loop {
            match &mut self.stage {
                Stage::GzipHeader(header) => {
                    if !header.consume(&mut data)? {
                        return Ok(Progress::More);
                    }
                    // The gzip member's body is raw deflate; its CRC trailer is ignored.
                    self.stage = Stage::Stream(Decompress::new(false));
                }
                Stage::DeflateSniff(first) => {
                    let Some((&byte, rest)) = data.split_first() else {
                        return Ok(Progress::More);
                    };
                    data = rest;
                    let Some(cmf) = *first else {
                        *first = Some(byte);
                        continue;
                    };
                    let zlib = cmf & 0x0f == 8
                        && cmf >> 4 <= 7
                        && (u16::from(cmf) << 8 | u16::from(byte)) % 31 == 0;
                    let mut z = Decompress::new(zlib);
                    if inflate(&mut z, &[cmf, byte], out, limit)? == Progress::End {
                        return Ok(Progress::End);
                    }
                    self.stage = Stage::Stream(z);
                }
                Stage::Stream(z) => return inflate(z, data, out, limit),
            }
        }
    }
}

/// Inflates `input` into `out`, stopping once `out` holds `limit` bytes: a gzip bomb costs at
/// most `limit` bytes of output and the decoder's fixed-size state.
fn inflate(
    z: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<Progress, InflateError> {
    let mut scratch = [0u8; 8 * 1024];
    while out.len() < limit {
        let room = (limit - out.len()).min(scratch.len());
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let status = z
            .decompress(input, &mut scratch[..room], FlushDecompress::None)
            .map_err(|_| InflateError)?;
        let used = (z.total_in() - in_before) as usize;
        let made = (z.total_out() - out_before) as usize;
        out.extend_from_slice(&scratch[..made]);
        input = &input[used..];
        if status == Status::StreamEnd {
            return Ok(Progress::End);
        }
        // No progress means the decoder wants more input; a full scratch means it may hold more
        // output even without input, so go round again.
        if (made == 0 && used == 0) || (input.is_empty() && made < room) {
            break;
        }
    }
    Ok(Progress::More)
}

const GZIP_FHCRC: u8 = 0x02;
const GZIP_FEXTRA: u8 = 0x04;
const GZIP_FNAME: u8 = 0x08;
const GZIP_FCOMMENT: u8 = 0x10;

/// An incremental gzip member header parser (RFC 1952) that skips optional fields without
/// storing them, so a never-ending file name costs nothing.
#[derive(Debug, Default)]
struct GzipHeader {
    fixed: [u8; 10],
    have: usize,
    step: GzipStep,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum GzipStep {
    #[default]
    Fixed,
    ExtraLen {
        low: Option<u8>,
    },
    Extra(u16),
    Name,
    Comment,
    HeaderCrc(u8),
    Done,
}

impl GzipHeader {
    /// Consumes header bytes from `data`; returns true once the header is complete.
    fn consume(&mut self, data: &mut &[u8]) -> Result<bool, InflateError> {
        loop {
            match self.step {
                GzipStep::Done => return Ok(true),
                _ if data.is_empty() => return Ok(false),
                GzipStep::Fixed => {
                    let take = (10 - self.have).min(data.len());
                    self.fixed[self.have..self.have + take].copy_from_slice(&data[..take]);
                    self.have += take;
                    *data = &data[take..];
                    if self.have == 10 {
                        let [id1, id2, method, flags, ..] = self.fixed;
                        if id1 != 0x1f || id2 != 0x8b || method != 8 || flags & 0xe0 != 0 {
                            return Err(InflateError);
                        }
                        self.step = self.after(GzipStep::Fixed);
                    }
                }
                GzipStep::ExtraLen { low: None } => {
                    self.step = GzipStep::ExtraLen { low: Some(data[0]) };
                    *data = &data[1..];
                }
                GzipStep::ExtraLen { low: Some(low) } => {
                    self.step = GzipStep::Extra(u16::from_le_bytes([low, data[0]]));
                    *data = &data[1..];
                }
                GzipStep::Extra(remaining) => {
                    let take = usize::from(remaining).min(data.len());
                    *data = &data[take..];
                    let left = remaining - take as u16;
                    self.step = if left == 0 {
                        self.after(GzipStep::Extra(0))
                    } else {
                        GzipStep::Extra(left)
                    };
                }
                step @ (GzipStep::Name | GzipStep::Comment) => match memchr::memchr(0, data) {
                    Some(nul) => {
                        *data = &data[nul + 1..];
                        self.step = self.after(step);
                    }
                    None => *data = &[],
                },
                GzipStep::HeaderCrc(remaining) => {
                    *data = &data[1..];
                    self.step = if remaining > 1 {
                        GzipStep::HeaderCrc(remaining - 1)
                    } else {
                        GzipStep::Done
                    };
                }
            }
        }
    }

    /// The optional field that follows `step`, per the flags byte.
    fn after(&self, step: GzipStep) -> GzipStep {
        let flags = self.fixed[3];
        let order = [
            (GZIP_FEXTRA, GzipStep::ExtraLen { low: None }),
            (GZIP_FNAME, GzipStep::Name),
            (GZIP_FCOMMENT, GzipStep::Comment),
            (GZIP_FHCRC, GzipStep::HeaderCrc(2)),
        ];
        let position = match step {
            GzipStep::Fixed => 0,
            GzipStep::ExtraLen { .. } | GzipStep::Extra(_) => 1,
            GzipStep::Name => 2,
            GzipStep::Comment => 3,
            GzipStep::HeaderCrc(_) | GzipStep::Done => 4,
        };
        order[position..]
            .iter()
            .find(|(flag, _)| flags & flag != 0)
            .map_or(GzipStep::Done, |(_, next)| *next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sink_through(
        coding: Coding,
        limit: usize,
        wire: &[u8],
        piece: usize,
    ) -> (Vec<u8>, u64, bool) {
        let mut sink = BodySink::new(limit, coding);
        for chunk in wire.chunks(piece.max(1)) {
            sink.write(chunk);
        }
        sink.finish()
    }

    #[test]
    fn coding_is_decoded_only_when_it_is_the_single_known_coding() {
        let cases: &[(&[&str], Coding)] = &[
            (&["gzip"], Coding::Gzip),
            (&["X-GZIP"], Coding::Gzip),
            (&[" deflate "], Coding::Deflate),
            (&["gzip, br"], Coding::Identity),
            (&["gzip", "gzip"], Coding::Identity),
            (&["br"], Coding::Identity),
            (&["identity"], Coding::Identity),
            (&[], Coding::Identity),
        ];
        for (values, want) in cases {
            assert_eq!(
                Coding::from_header_values(values.iter().copied()),
                *want,
                "{values:?}"
            );
        }
    }

    #[test]
    fn identity_body_keeps_a_prefix_and_counts_everything() {
        let (kept, size, err) = sink_through(Coding::Identity, 4, b"0123456789", 3);
        assert_eq!((kept.as_slice(), size, err), (&b"0123"[..], 10, false));
    }

    #[test]
    fn gzip_body_is_decompressed_in_any_split_and_sized_on_the_wire() {
        let plain = b"hello hello hello hello, gzip".repeat(3);
        // Every optional header field set, so the header parser walks all its steps.
        let mut encoder = flate2::GzBuilder::new()
            .filename("name.txt")
            .comment("a comment")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), Compression::default());
        encoder.write_all(&plain).unwrap();
        let wire = encoder.finish().unwrap();
        for piece in [1, 2, 7, wire.len()] {
            let (kept, size, err) = sink_through(Coding::Gzip, 1024, &wire, piece);
            assert_eq!(kept, plain, "piece {piece}");
            assert_eq!(size, wire.len() as u64);
            assert!(!err);
        }
    }

    #[test]
    fn gzip_header_crc_field_is_skipped() {
        let mut wire = gzip(b"with a header crc");
        wire[3] |= GZIP_FHCRC;
        // The CRC16 of the header goes right after the fixed 10 bytes; we do not check it.
        wire.splice(10..10, [0xab, 0xcd]);
        for piece in [1, wire.len()] {
            let (kept, _, err) = sink_through(Coding::Gzip, 1024, &wire, piece);
            assert_eq!((kept.as_slice(), err), (&b"with a header crc"[..], false));
        }
    }

    #[test]
    fn deflate_body_is_decoded_whether_zlib_wrapped_or_raw() {
        let plain = b"deflate me, deflate me".to_vec();
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&plain).unwrap();
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(&plain).unwrap();
        for wire in [z.finish().unwrap(), raw.finish().unwrap()] {
            for piece in [1, wire.len()] {
                let (kept, _, err) = sink_through(Coding::Deflate, 1024, &wire, piece);
                assert_eq!((kept.as_slice(), err), (plain.as_slice(), false));
            }
        }
    }

    #[test]
    fn gzip_bomb_inflates_no_more_than_the_limit() {
        let wire = gzip(&vec![0u8; 16 * 1024 * 1024]);
        let (kept, size, err) = sink_through(Coding::Gzip, 1000, &wire, 4096);
        assert_eq!(kept.len(), 1000);
        assert_eq!(size, wire.len() as u64);
        assert!(!err);
    }

    #[test]
    fn corrupt_or_truncated_gzip_is_reported_and_keeps_what_decoded() {
        let mut not_gzip = BodySink::new(100, Coding::Gzip);
        not_gzip.write(b"plain text, not gzip");
        assert_eq!(not_gzip.finish(), (Vec::new(), 20, true));

        let wire = gzip(b"abcdefghijklmnopqrstuvwxyz");
        let (_, size, err) = sink_through(Coding::Gzip, 100, &wire[..wire.len() - 12], 5);
        assert_eq!(size, wire.len() as u64 - 12);
        assert!(err, "a stream cut before its end marker is an error");
    }

    #[test]
    fn gap_stops_keeping_but_keeps_counting() {
        let mut sink = BodySink::new(100, Coding::Identity);
        sink.write(b"abc");
        sink.gap(10);
        sink.write(b"def");
        assert_eq!(sink.finish(), (b"abc".to_vec(), 16, false));
    }

    #[test]
    fn zero_limit_keeps_nothing_and_never_decodes() {
        let (kept, size, err) = sink_through(Coding::Gzip, 0, b"definitely not gzip", 4);
        assert_eq!((kept.len(), size, err), (0, 19, false));
    }
}
