//! The goraft `log` file: a concatenation of `"%8x\n"` + protobuf `LogEntry` frames.
//!
//! It owns the streaming [`LogReader`] (an iterator over a byte slice that yields every good entry
//! with its byte offset, and every stretch of damage as a typed [`LogError`], then resynchronises
//! and continues) and the [`LogWriter`] that writes frames byte-identical to goraft's or to the
//! seaweedfs/raft fork's. Both work under a [`Dialect`], which decides how a body is decoded and
//! encoded (gogo proto2 or proto3). Pure: it sees `&[u8]` (usually a memory map) and an
//! `io::Write`, never a path.

use std::borrow::Cow;
use std::fmt;

pub mod frames;
pub use frames::{boundary_after, Frames};

use super::dialect::Dialect;
use super::frame::{self, Header, HeaderError};
use super::wire::{self, WireEntry, WireError};
use crate::model::{Command, Entry};

/// A good frame: an entry that decodes as goraft would decode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntry<'a> {
    /// Byte offset of the frame's header in the file.
    pub offset: u64,
    /// Position among the good entries, from 0.
    pub ordinal: u64,
    /// The parsed header (its quirks say whether it is canonical).
    pub header: Header,
    /// The protobuf body.
    pub body: &'a [u8],
    /// The decoded fields.
    pub wire: WireEntry<'a>,
}

impl<'a> RawEntry<'a> {
    /// Log index.
    pub fn index(&self) -> u64 {
        self.wire.index
    }

    /// Term.
    pub fn term(&self) -> u64 {
        self.wire.term
    }

    /// The command name (lossy only if the bytes are not UTF-8, which goraft never writes).
    pub fn name(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.wire.name)
    }

    /// The payload bytes, if the Command field is present.
    pub fn payload(&self) -> Option<&'a [u8]> {
        self.wire.command
    }

    /// The frame's total size: header plus body.
    pub fn frame_len(&self) -> u64 {
        (self.header.len + self.body.len()) as u64
    }

    /// Byte offset just past this frame.
    pub fn end(&self) -> u64 {
        self.offset + self.frame_len()
    }

    /// Decodes the command payload.
    pub fn command(&self) -> Command {
        super::command::decode(self.wire.name, self.wire.command)
    }

    /// Whether the frame is byte-for-byte what goraft writes.
    pub fn is_canonical(&self) -> bool {
        self.header.quirks.is_canonical() && self.wire.canonical
    }

    /// An owned copy.
    pub fn to_entry(&self) -> Entry {
        Entry {
            index: self.wire.index,
            term: self.wire.term,
            name: self.name().into_owned(),
            payload: self.wire.command.map(<[u8]>::to_vec),
        }
    }
}

/// A stretch of bytes that is not a good frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogError {
    /// Byte offset where the damage starts (a frame boundary).
    pub offset: u64,
    /// How many good entries precede it (the ordinal the next good entry will have).
    pub entry: u64,
    /// Bytes covered, up to the next good frame or the end of the file.
    pub len: u64,
    /// What kind of damage.
    pub kind: DamageKind,
}

/// The kinds of damage, told apart because goraft treats them differently.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DamageKind {
    /// The file ends inside a header (only padding and digits remain). goraft takes this as a
    /// clean end and keeps the bytes, which then swallow the next appended frame.
    TornHeader {
        /// Whether length digits were present.
        has_digits: bool,
    },
    /// A header whose body runs past the end of the file.
    TornBody {
        /// Header size.
        header_len: u64,
        /// The declared body length.
        declared: u64,
        /// Body bytes present.
        available: u64,
    },
    /// A run of 0x00 bytes at a frame boundary (goraft's hole bug).
    NulRun,
    /// Bytes that are not a frame.
    Garbage {
        /// Offset of the first byte that broke the header grammar.
        at: u64,
        /// That byte.
        found: u8,
        /// What was expected there.
        expected: &'static str,
    },
    /// A frame whose header is intact but whose body does not decode (or whose declared length
    /// runs past the next frame).
    BadEntry {
        /// Header size.
        header_len: u64,
        /// Declared body length.
        body_len: u64,
        /// Why Go's decoder rejects it.
        error: WireError,
    },
}

impl DamageKind {
    /// A short stable name: `torn-header`, `torn-body`, `nul-run`, `garbage`, `bad-entry`.
    pub fn code(&self) -> &'static str {
        match self {
            DamageKind::TornHeader { .. } => "torn-header",
            DamageKind::TornBody { .. } => "torn-body",
            DamageKind::NulRun => "nul-run",
            DamageKind::Garbage { .. } => "garbage",
            DamageKind::BadEntry { .. } => "bad-entry",
        }
    }

    /// Whether this is a torn tail (a write cut short at the end of the file).
    pub fn is_torn_tail(&self) -> bool {
        matches!(
            self,
            DamageKind::TornHeader { .. } | DamageKind::TornBody { .. }
        )
    }
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.offset;
        match &self.kind {
            DamageKind::TornHeader { has_digits } => write!(
                f,
                "torn tail at byte {o}: {} header bytes{} at end of file, expected a complete \"%8x\\n\" length header",
                self.len,
                if *has_digits { " with no newline" } else { " of padding" }
            ),
            DamageKind::TornBody {
                declared,
                available,
                ..
            } => write!(
                f,
                "torn tail at byte {o}: header declares a {declared}-byte body but only {available} bytes remain"
            ),
            DamageKind::NulRun => write!(f, "{} zero bytes at byte {o}, expected a frame header", self.len),
            DamageKind::Garbage { at, found, expected } => write!(
                f,
                "{} bytes of garbage at byte {o}: byte {at} is {found:#04x}, expected {expected}",
                self.len
            ),
            DamageKind::BadEntry { body_len, error, header_len } => {
                let body_at = o + header_len;
                let detail = match error.offset() {
                    Some(off) => format!("{error} (file byte {})", body_at + off as u64),
                    None => error.to_string(),
                };
                write!(f, "undecodable entry at byte {o} ({body_len}-byte body): {detail}")
            }
        }
    }
}

impl std::error::Error for LogError {}

/// Streams the frames of a log held in memory; see the module docs.
#[derive(Debug, Clone)]
pub struct LogReader<'a> {
    buf: &'a [u8],
    pos: usize,
    ordinal: u64,
    dialect: Dialect,
}

impl<'a> LogReader<'a> {
    /// Reads `buf` from its start, as goraft does.
    pub fn new(buf: &'a [u8]) -> Self {
        Self::with_dialect(buf, Dialect::Goraft)
    }

    /// Reads `buf` from its start under `dialect`.
    pub fn with_dialect(buf: &'a [u8], dialect: Dialect) -> Self {
        LogReader {
            buf,
            pos: 0,
            ordinal: 0,
            dialect,
        }
    }

    /// This reader with another dialect (same position).
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Reads `buf` from `pos`, where an earlier reader found a good entry preceded by `ordinal`
    /// good entries. A reader's state is only its position and that count, so the resumed reader
    /// yields exactly what the earlier one yielded from there on; this lets passes over
    /// separate stretches of a log run side by side.
    pub fn resume(buf: &'a [u8], pos: u64, ordinal: u64) -> Self {
        LogReader {
            buf,
            pos: usize::try_from(pos).map_or(buf.len(), |p| p.min(buf.len())),
            ordinal,
            dialect: Dialect::Goraft,
        }
    }

    /// The byte offset of the next frame.
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    fn damage(&mut self, end: usize, kind: DamageKind) -> LogError {
        let e = LogError {
            offset: self.pos as u64,
            entry: self.ordinal,
            len: (end - self.pos) as u64,
            kind,
        };
        self.pos = end;
        e
    }

    /// The offset of the next good frame strictly after `from`, found by scanning for a canonical
    /// header followed by the Index tag, whose body decodes.
    fn resync(&self, from: usize) -> Option<usize> {
        let buf = self.buf;
        let mut q = from + 8;
        while q < buf.len() {
            let nl = buf[q..].iter().position(|&b| b == b'\n')? + q;
            let p = nl - 8;
            if p >= from && frame_ok_at(buf, p, self.dialect) {
                return Some(p);
            }
            q = nl + 1;
        }
        None
    }
}

/// Whether a complete, decodable frame starts at `p` (canonical header required).
fn frame_ok_at(buf: &[u8], p: usize, dialect: Dialect) -> bool {
    let Some(h) = frame::looks_like_frame_start(&buf[p..]) else {
        return false;
    };
    let start = p + h.len;
    let Some(body) = buf.get(start..start + h.body_len as usize) else {
        return false;
    };
    dialect.decode_entry(body).is_ok()
}

/// Whether a complete, decodable frame (any header Go accepts) starts at `p`.
fn lenient_frame_ok_at(buf: &[u8], p: usize, dialect: Dialect) -> bool {
    let Ok(h) = frame::parse_header(&buf[p..]) else {
        return false;
    };
    let start = p + h.len;
    let Some(body) = buf.get(start..start + h.body_len as usize) else {
        return false;
    };
    dialect.decode_entry(body).is_ok()
}

impl<'a> Iterator for LogReader<'a> {
    type Item = Result<RawEntry<'a>, LogError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let buf = self.buf;
        let pos = self.pos;
        if pos >= buf.len() {
            return None;
        }
        let end = buf.len();
        let header = match frame::parse_header(&buf[pos..]) {
            Ok(h) => h,
            Err(HeaderError::Torn { has_digits, .. }) => {
                return Some(Err(self.damage(end, DamageKind::TornHeader { has_digits })))
            }
            Err(HeaderError::Nul) => {
                let n = buf[pos..].iter().position(|&b| b != 0).unwrap_or(end - pos);
                return Some(Err(self.damage(pos + n, DamageKind::NulRun)));
            }
            Err(HeaderError::Invalid {
                at,
                found,
                expected,
            }) => {
                let next = self.resync(pos + 1).unwrap_or(end);
                let kind = DamageKind::Garbage {
                    at: (pos + at) as u64,
                    found,
                    expected,
                };
                return Some(Err(self.damage(next, kind)));
            }
        };
        let body_start = pos + header.len;
        let body_end = body_start + header.body_len as usize;
        if body_end > end {
            // Either a write cut short, or a corrupt length with good frames after it.
            return Some(Err(match self.resync(pos + 1) {
                Some(next) => self.damage(
                    next,
                    DamageKind::BadEntry {
                        header_len: header.len as u64,
                        body_len: u64::from(header.body_len),
                        error: WireError::Truncated {
                            offset: 0,
                            field: 0,
                            needed: u64::from(header.body_len),
                            available: (next - body_start.min(next)) as u64,
                        },
                    },
                ),
                None => self.damage(
                    end,
                    DamageKind::TornBody {
                        header_len: header.len as u64,
                        declared: u64::from(header.body_len),
                        available: (end - body_start) as u64,
                    },
                ),
            }));
        }
        let body = &buf[body_start..body_end];
        match self.dialect.decode_entry(body) {
            Ok(wire) => {
                let e = RawEntry {
                    offset: pos as u64,
                    ordinal: self.ordinal,
                    header,
                    body,
                    wire,
                };
                self.pos = body_end;
                self.ordinal += 1;
                Some(Ok(e))
            }
            Err(error) => {
                let next = if body_end == end || lenient_frame_ok_at(buf, body_end, self.dialect) {
                    body_end
                } else {
                    self.resync(pos + 1).unwrap_or(end)
                };
                let kind = DamageKind::BadEntry {
                    header_len: header.len as u64,
                    body_len: u64::from(header.body_len),
                    error,
                };
                Some(Err(self.damage(next, kind)))
            }
        }
    }
}

/// Appends one canonical goraft frame for the given fields to `out`.
pub fn encode_frame(index: u64, term: u64, name: &[u8], payload: Option<&[u8]>, out: &mut Vec<u8>) {
    let body_len = 3
        + wire::varint_len(index)
        + wire::varint_len(term)
        + wire::varint_len(name.len() as u64)
        + name.len()
        + payload.map_or(0, |p| 1 + wire::varint_len(p.len() as u64) + p.len());
    out.reserve(frame::CANONICAL_HEADER_LEN + body_len);
    frame::write_header(body_len as u32, out);
    wire::encode_entry(index, term, name, payload, out);
}

/// Appends one frame around `body`, a `LogEntry` body already encoded (canonically, for a
/// frame byte-identical to goraft's).
pub fn encode_frame_of(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(frame::CANONICAL_HEADER_LEN + body.len());
    frame::write_header(body.len() as u32, out);
    out.extend_from_slice(body);
}

/// Appends one frame for the given fields to `out`, as `dialect`'s writer encodes it.
pub fn encode_frame_as(
    dialect: Dialect,
    index: u64,
    term: u64,
    name: &[u8],
    payload: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    match dialect {
        Dialect::Goraft => encode_frame(index, term, name, payload, out),
        Dialect::Seaweedfs => {
            let body_len = wire::proto3_entry_len(index, term, name, payload);
            out.reserve(frame::CANONICAL_HEADER_LEN + body_len);
            frame::write_header(body_len as u32, out);
            wire::encode_entry_proto3(index, term, name, payload, out);
        }
    }
}

/// Writes frames byte-identical to goraft's `LogEntry.Encode` (or the seaweedfs/raft fork's,
/// under [`Dialect::Seaweedfs`]), to any `io::Write`.
#[derive(Debug)]
pub struct LogWriter<W: std::io::Write> {
    out: W,
    buf: Vec<u8>,
    bytes: u64,
    dialect: Dialect,
}

impl<W: std::io::Write> LogWriter<W> {
    /// Writes goraft's frames to `out`.
    pub fn new(out: W) -> Self {
        Self::with_dialect(out, Dialect::Goraft)
    }

    /// Writes `dialect`'s frames to `out`.
    pub fn with_dialect(out: W, dialect: Dialect) -> Self {
        LogWriter {
            out,
            buf: Vec::with_capacity(256),
            bytes: 0,
            dialect,
        }
    }

    /// Appends a frame with a raw payload.
    pub fn append_raw(
        &mut self,
        index: u64,
        term: u64,
        name: &str,
        payload: Option<&[u8]>,
    ) -> std::io::Result<()> {
        self.buf.clear();
        encode_frame_as(
            self.dialect,
            index,
            term,
            name.as_bytes(),
            payload,
            &mut self.buf,
        );
        self.out.write_all(&self.buf)?;
        self.bytes += self.buf.len() as u64;
        Ok(())
    }

    /// Appends a frame for a command raftdump can encode (join, leave, nop, write).
    ///
    /// # Errors
    /// `InvalidInput` for `Command::Other` / `Command::Invalid`, which carry no bytes; use
    /// [`LogWriter::append_raw`] for those.
    pub fn append(&mut self, index: u64, term: u64, command: &Command) -> std::io::Result<()> {
        let (name, payload) = super::command::encode(command).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "only join, leave, nop and write commands can be encoded",
            )
        })?;
        self.append_raw(index, term, name, payload.as_deref())
    }

    /// Appends an owned entry as it is.
    pub fn append_entry(&mut self, entry: &Entry) -> std::io::Result<()> {
        self.append_raw(
            entry.index,
            entry.term,
            &entry.name,
            entry.payload.as_deref(),
        )
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Gives back the underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::frame::HeaderQuirks;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// What a fresh raftd writes: the real order (join, nop, write in term 0), 161 bytes
    /// (docs/format.md, 'Log entries').
    pub(crate) fn sample() -> Vec<u8> {
        hex("20202020202034660a080110001a09726166743a6a6f696e223e7b226e616d65223a2232383332626661222c22636f6e6e656374696f6e537472696e67223a22687474703a2f2f6c6f63616c686f73743a34303031227d0a20202020202020650a080210001a08726166743a6e6f7020202020202032390a080310001a057772697465221c7b226b6579223a22666f6f222c2276616c7565223a22626172227d0a")
    }

    #[test]
    fn writer_reproduces_the_spec_sample() {
        let mut w = LogWriter::new(Vec::new());
        w.append(
            1,
            0,
            &Command::Join {
                name: "2832bfa".into(),
                connection_string: "http://localhost:4001".into(),
            },
        )
        .unwrap();
        w.append(2, 0, &Command::Nop).unwrap();
        w.append(
            3,
            0,
            &Command::Write {
                key: "foo".into(),
                value: "bar".into(),
            },
        )
        .unwrap();
        assert_eq!(w.bytes_written(), 161);
        assert_eq!(w.into_inner(), sample());
    }

    #[test]
    fn reader_yields_offsets_and_commands() {
        let log = sample();
        let entries: Vec<_> = LogReader::new(&log).map(Result::unwrap).collect();
        let got: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    e.offset,
                    e.ordinal,
                    e.index(),
                    e.term(),
                    e.name().into_owned(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, 0, 1, 0, "raft:join".to_string()),
                (88, 1, 2, 0, "raft:nop".to_string()),
                (111, 2, 3, 0, "write".to_string())
            ]
        );
        assert!(entries.iter().all(RawEntry::is_canonical));
        assert_eq!(entries[2].end(), 161);
    }

    fn problems(log: &[u8]) -> (usize, Vec<(u64, u64, &'static str)>) {
        let mut good = 0;
        let mut bad = Vec::new();
        for r in LogReader::new(log) {
            match r {
                Ok(_) => good += 1,
                Err(e) => bad.push((e.offset, e.len, e.kind.code())),
            }
        }
        (good, bad)
    }

    #[test]
    fn every_tail_of_the_spec_table() {
        let base = sample();
        let cases: [(&[u8], &str); 8] = [
            (b"     ", "torn-header"),
            (b"       2", "torn-header"),
            (b"      29", "torn-header"),
            (b"      29\n", "torn-body"),
            (b"      29\n\x08\x04\x10", "torn-body"),
            (b"CORRUPT!", "garbage"),
            (b"\0\0\0\0", "nul-run"),
            (b"       0\n", "bad-entry"),
        ];
        for (tail, code) in cases {
            let mut log = base.clone();
            log.extend_from_slice(tail);
            let (good, bad) = problems(&log);
            assert_eq!(good, 3, "{code}");
            assert_eq!(bad, [(161, tail.len() as u64, code)], "{code}");
        }
    }

    #[test]
    fn resynchronises_after_a_nul_hole_and_garbage() {
        let base = sample();
        let mut log = base[..88].to_vec();
        log.extend_from_slice(&[0; 23]);
        log.extend_from_slice(b"xx");
        log.extend_from_slice(&base[88..]);
        let (good, bad) = problems(&log);
        assert_eq!(good, 3);
        assert_eq!(bad, [(88, 23, "nul-run"), (111, 2, "garbage")]);
        let e: Vec<_> = LogReader::new(&log).filter_map(Result::ok).collect();
        assert_eq!((e[1].offset, e[1].ordinal, e[1].index()), (113, 1, 2));
    }

    #[test]
    fn corrupt_length_in_the_middle_is_not_a_torn_tail() {
        let mut log = sample();
        // Make the join frame claim 0xff bytes: its body now runs into the next frames.
        log[6] = b'f';
        log[7] = b'f';
        let (good, bad) = problems(&log);
        assert_eq!(good, 2);
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].0, bad[0].1, bad[0].2), (0, 88, "bad-entry"));
    }

    proptest::proptest! {
        #[test]
        fn any_proto3_log_written_reads_back_identically(
            entries in proptest::collection::vec(
                (1u64..1 << 40, 0u64..4, "[A-Za-z:]{0,12}", proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40))),
                0..20,
            ),
        ) {
            let mut w = LogWriter::with_dialect(Vec::new(), Dialect::Seaweedfs);
            for (index, term, name, payload) in &entries {
                w.append_raw(*index, *term, name, payload.as_deref()).unwrap();
            }
            let bytes = w.into_inner();
            let read: Vec<RawEntry<'_>> = LogReader::with_dialect(&bytes, Dialect::Seaweedfs)
                .collect::<Result<_, _>>()
                .unwrap();
            let got: Vec<Entry> = read.iter().map(RawEntry::to_entry).collect();
            // proto3 leaves an empty command out: it reads back absent.
            let want: Vec<Entry> = entries
                .iter()
                .map(|(index, term, name, payload)| Entry {
                    index: *index,
                    term: *term,
                    name: name.clone(),
                    payload: payload.clone().filter(|p| !p.is_empty()),
                })
                .collect();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert!(read.iter().all(RawEntry::is_canonical));
            let frames = Frames::new(&bytes).dialect(Dialect::Seaweedfs);
            proptest::prop_assert_eq!(frames.map(Result::unwrap).collect::<Vec<_>>(), read);
        }
    }

    #[test]
    fn lenient_headers_decode_with_quirks() {
        // The unpadded 2013 header for the write entry.
        let base = sample();
        let mut log = base[..111].to_vec();
        log.extend_from_slice(b"29\n");
        log.extend_from_slice(&base[120..]);
        let e: Vec<_> = LogReader::new(&log).map(Result::unwrap).collect();
        assert_eq!(e.len(), 3);
        assert!(e[2].header.quirks.contains(HeaderQuirks::UNPADDED));
        assert!(!e[2].is_canonical());
    }
}
