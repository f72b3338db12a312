//! Snapshot files `snapshot/<lastTerm>_<lastIndex>.ss`: a `"%08x\n"` CRC-32/IEEE of the JSON that
//! follows, then `{"lastIndex","lastTerm","peers","state","path"}`.
//!
//! It owns the CRC check over exactly the JSON bytes, the JSON fields, the file-name grammar and
//! goraft's (lexicographic) choice of which snapshot to load. Pure functions; the parser takes any
//! `io::Read` (a byte slice is one) rather than `&[u8]` alone, because a snapshot file may be far
//! larger than what it decodes to and is read as a stream: it opens nothing itself.

use std::fmt;
use std::io::{self, Read};

use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::conf::Uint;
use super::gojson::write_string;
use crate::model::{Index, Snapshot, Term};

/// A snapshot file's header and body, parsed as far as they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSnapshot {
    /// The CRC the header declares.
    pub declared_crc: u32,
    /// The CRC of the bytes after the header.
    pub actual_crc: u32,
    /// Header size (9 when canonical).
    pub header_len: usize,
    /// Whether the header is exactly `%08x\n`.
    pub canonical_header: bool,
    /// The decoded JSON, or why it does not decode.
    pub snapshot: Result<Snapshot, SnapshotError>,
}

impl ParsedSnapshot {
    /// Whether the checksum matches (goraft refuses the file otherwise: `bad snapshot file`).
    pub fn crc_ok(&self) -> bool {
        self.declared_crc == self.actual_crc
    }
}

/// Why a snapshot file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError {
    /// Byte offset in the file, when there is one.
    pub offset: Option<usize>,
    /// What was expected.
    pub message: String,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{} at byte {o}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Parses a snapshot file. Only a missing or broken CRC header is an error; a CRC mismatch or bad
/// JSON is reported inside the result, so that a forensic tool can still show what is there.
pub fn parse(bytes: &[u8]) -> Result<ParsedSnapshot, SnapshotError> {
    if let Some(p) = parse_clean(bytes) {
        return Ok(p);
    }
    parse_from(bytes).unwrap_or_else(|e| {
        Err(SnapshotError {
            offset: None,
            message: e.to_string(),
        })
    })
}

/// The fast path of [`parse`] for a file whose JSON decodes: serde_json's slice reader, many
/// times faster than its byte-at-a-time stream reader on a large `state`. Anything else (`None`)
/// goes through [`parse_from`], which locates the error; the result is the same either way.
fn parse_clean(bytes: &[u8]) -> Option<ParsedSnapshot> {
    let header = super::frame::parse_lenient(bytes.get(..MAX_HEADER.min(bytes.len()))?).ok()?;
    let body = bytes.get(header.len..)?;
    let canonical_header = header.len == 9
        && bytes[..8]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    let snapshot = serde_json::from_slice::<SnapshotJson>(body).ok()?.0;
    Some(ParsedSnapshot {
        declared_crc: header.body_len,
        actual_crc: crc32fast::hash(body),
        header_len: header.len,
        canonical_header,
        snapshot: Ok(snapshot),
    })
}

/// The longest header read before giving up on it: goraft writes 9 bytes, Go's `%8x` scan allows
/// leading spaces, and nothing sane needs more.
const MAX_HEADER: usize = 64 << 10;

/// [`parse`] over a stream, for files too large to hold: the CRC is computed as the bytes go by
/// and the JSON is decoded as it is read (the `state` string is decoded from base64 as soon as it
/// is complete), so memory holds the decoded snapshot, never the file. A slice is a reader:
/// [`parse`] falls back to this function to locate an error; the outer error is the reader's
/// own failure.
pub fn parse_from(mut r: impl Read) -> io::Result<Result<ParsedSnapshot, SnapshotError>> {
    let head = read_header(&mut r)?;
    let header = match super::frame::parse_lenient(&head) {
        Ok(h) => h,
        Err(e) => {
            return Ok(Err(SnapshotError {
                offset: Some(match e {
                    super::frame::HeaderError::Invalid { at, .. } => at,
                    super::frame::HeaderError::Torn { len, .. } => len,
                    super::frame::HeaderError::Nul => 0,
                }),
                message: "expected a \"%08x\\n\" CRC-32 header".into(),
            }))
        }
    };
    let canonical_header = header.len == 9
        && head[..8]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    let mut json = Tracked::new(&head[header.len..], r);
    let snapshot = decode_json(&mut json);
    json.drain();
    if let Some(e) = json.error.take() {
        return Err(e);
    }
    Ok(Ok(ParsedSnapshot {
        declared_crc: header.body_len,
        actual_crc: json.crc.clone().finalize(),
        header_len: header.len,
        canonical_header,
        snapshot: snapshot.map_err(|mut e| {
            e.offset = e.offset.map(|o| o + header.len);
            e
        }),
    }))
}

/// Reads the header: bytes up to and including the first newline, or up to the first byte no
/// header can hold, or [`MAX_HEADER`] bytes. What was read past the header is returned too.
fn read_header(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(16);
    let mut byte = [0u8; 1];
    while head.len() < MAX_HEADER {
        match r.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let b = byte[0];
        if b == b'\n' || !(b == b' ' || b.is_ascii_hexdigit()) {
            break;
        }
    }
    Ok(head)
}

/// The JSON part of a snapshot file as it is read: it feeds the CRC with every byte, counts them,
/// and remembers where the last two lines started, so that a JSON error's line and column become a
/// byte offset without holding the bytes. A read error is kept (and the stream ends) so that it
/// can be told apart from bad JSON.
struct Tracked<'h, R> {
    pending: &'h [u8],
    inner: R,
    buf: Box<[u8]>,
    at: usize,
    filled: usize,
    crc: crc32fast::Hasher,
    pos: u64,
    line_starts: [u64; 2],
    lines: u64,
    error: Option<io::Error>,
}

impl<'h, R: Read> Tracked<'h, R> {
    fn new(pending: &'h [u8], inner: R) -> Self {
        let mut crc = crc32fast::Hasher::new();
        crc.update(pending);
        Tracked {
            pending,
            inner,
            buf: vec![0; 256 << 10].into_boxed_slice(),
            at: 0,
            filled: 0,
            crc,
            pos: 0,
            line_starts: [0, 0],
            lines: 0,
            error: None,
        }
    }

    /// The next bytes to hand out: what followed the header, then the reader's, hashed as they
    /// are fetched.
    fn fill(&mut self) -> &[u8] {
        if !self.pending.is_empty() {
            return self.pending;
        }
        if self.at == self.filled && self.error.is_none() {
            self.at = 0;
            self.filled = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.error = Some(e);
                        break 0;
                    }
                }
            };
            self.crc.update(&self.buf[..self.filled]);
        }
        &self.buf[self.at..self.filled]
    }

    /// Reads (and hashes) the rest of the stream.
    fn drain(&mut self) {
        loop {
            let n = self.fill().len();
            if n == 0 {
                return;
            }
            self.consume(n);
        }
    }

    fn consume(&mut self, n: usize) {
        if !self.pending.is_empty() {
            self.pending = &self.pending[n..];
        } else {
            self.at += n;
        }
        self.pos += n as u64;
    }

    /// The byte offset of serde_json's 1-based `line` and `column`, when that line is one of the
    /// last two this reader has handed out (serde_json reports where it stopped, at most one byte
    /// ahead); else where the reader is.
    fn offset_of(&self, line: usize, column: usize) -> u64 {
        let line = line as u64;
        let start = if line == self.lines + 1 {
            self.line_starts[1]
        } else if line == self.lines && line > 0 {
            self.line_starts[0]
        } else {
            return self.pos;
        };
        (start + (column as u64).saturating_sub(1)).min(self.pos)
    }
}

impl<R: Read> Read for Tracked<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill();
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        // serde_json reads one byte at a time: only those are searched for newlines, so a drain
        // with a large buffer costs no scan.
        if n == 1 && out[0] == b'\n' {
            self.lines += 1;
            self.line_starts = [self.line_starts[1], self.pos + 1];
        }
        self.consume(n);
        Ok(n)
    }
}

fn decode_json<R: Read>(json: &mut Tracked<'_, R>) -> Result<Snapshot, SnapshotError> {
    let mut de = serde_json::Deserializer::from_reader(&mut *json);
    let parsed = SnapshotJson::deserialize(&mut de).and_then(|s| de.end().map(|()| s));
    drop(de);
    match parsed {
        Ok(s) => Ok(s.0),
        Err(e) if e.is_io() => Err(SnapshotError {
            offset: None,
            message: format!("cannot read the snapshot JSON ({e})"),
        }),
        Err(e) => {
            let offset = json.offset_of(e.line(), e.column()) as usize;
            Err(SnapshotError {
                offset: Some(offset),
                message: format!("invalid snapshot JSON ({e})"),
            })
        }
    }
}

/// The snapshot JSON as goraft's `encoding/json` reads it into its struct: fields in any order,
/// unknown fields skipped without being held, `null` as the zero value, the last of duplicate
/// keys winning, and `state` decoded from standard base64 as soon as its string is read.
struct SnapshotJson(Snapshot);

impl<'de> Deserialize<'de> for SnapshotJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SnapshotVisitor)
    }
}

struct SnapshotVisitor;

impl<'de> Visitor<'de> for SnapshotVisitor {
    type Value = SnapshotJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with lastIndex, lastTerm, peers, state and path")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SnapshotJson, A::Error> {
        let mut s = Snapshot {
            last_index: 0,
            last_term: 0,
            peers: None,
            state: None,
            path: String::new(),
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "lastIndex" => s.last_index = map.next_value::<Option<Uint>>()?.map_or(0, |u| u.0),
                "lastTerm" => s.last_term = map.next_value::<Option<Uint>>()?.map_or(0, |u| u.0),
                "peers" => s.peers = map.next_value()?,
                "state" => s.state = map.next_value::<Option<Base64>>()?.map(|b| b.0),
                "path" => s.path = map.next_value::<Option<String>>()?.unwrap_or_default(),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(SnapshotJson(s))
    }
}

/// A standard-base64 JSON string, decoded (Go's `[]byte` in JSON).
struct Base64(Vec<u8>);

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Base64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Base64, E> {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map(Base64)
                    .map_err(|e| E::custom(format!("state is not standard base64: {e}")))
            }
        }
        d.deserialize_str(V)
    }
}

/// The bytes goraft writes for a snapshot.
pub fn encode(s: &Snapshot) -> Vec<u8> {
    let mut json = Vec::new();
    json.extend_from_slice(b"{\"lastIndex\":");
    json.extend_from_slice(s.last_index.to_string().as_bytes());
    json.extend_from_slice(b",\"lastTerm\":");
    json.extend_from_slice(s.last_term.to_string().as_bytes());
    json.extend_from_slice(b",\"peers\":");
    match &s.peers {
        None => json.extend_from_slice(b"null"),
        Some(peers) => {
            json.push(b'[');
            for (i, p) in peers.iter().enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                json.extend_from_slice(b"{\"name\":");
                write_string(p.name.as_bytes(), &mut json);
                json.extend_from_slice(b",\"connectionString\":");
                write_string(p.connection_string.as_bytes(), &mut json);
                json.push(b'}');
            }
            json.push(b']');
        }
    }
    json.extend_from_slice(b",\"state\":");
    match &s.state {
        None => json.extend_from_slice(b"null"),
        Some(state) => {
            json.push(b'"');
            json.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(state)
                    .as_bytes(),
            );
            json.push(b'"');
        }
    }
    json.extend_from_slice(b",\"path\":");
    write_string(s.path.as_bytes(), &mut json);
    json.push(b'}');
    let mut out = format!("{:08x}\n", crc32fast::hash(&json)).into_bytes();
    out.extend_from_slice(&json);
    out
}

/// Parses a snapshot file name `<term>_<index>.ss` (decimal, no padding, each fitting a u64).
pub fn parse_file_name(name: &str) -> Option<(Term, Index)> {
    use nom::bytes::complete::tag;
    use nom::character::complete::{char, digit1};
    use nom::combinator::{all_consuming, map_res, verify};
    use nom::sequence::{separated_pair, terminated};
    let decimal = || {
        map_res(
            verify(digit1::<&str, nom::error::Error<&str>>, |d: &str| {
                d == "0" || !d.starts_with('0')
            }),
            str::parse::<u64>,
        )
    };
    let mut grammar = all_consuming(terminated(
        separated_pair(decimal(), char('_'), decimal()),
        tag(".ss"),
    ));
    grammar(name).ok().map(|(_, name)| name)
}

/// The name goraft's `LoadSnapshot` picks: the lexicographically last entry of the directory,
/// whatever it is (goraft issue #235).
pub fn goraft_choice<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names.into_iter().max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        let file = b"7cb9e321\n{\"lastIndex\":252,\"lastTerm\":0,\"peers\":[{\"name\":\"2832bfa\",\"connectionString\":\"http://localhost:4001\"}],\"state\":\"aGVsbG88Jj4=\",\"path\":\"/var/lib/raftd/node1/snapshot/0_252.ss\"}";
        assert_eq!(file.len(), 182);
        let p = parse(file).unwrap();
        assert!(p.crc_ok() && p.canonical_header);
        let s = p.snapshot.unwrap();
        assert_eq!((s.last_index, s.last_term), (252, 0));
        assert_eq!(s.state.as_deref(), Some(&b"hello<&>"[..]));
        assert_eq!(encode(&s), file);
    }

    #[test]
    fn names_and_choice() {
        assert_eq!(parse_file_name("17_1043.ss"), Some((17, 1043)));
        assert_eq!(parse_file_name("0_252.ss"), Some((0, 252)));
        assert_eq!(parse_file_name("017_1.ss"), None);
        assert_eq!(parse_file_name(".DS_Store"), None);
        for bad in [
            "1_2.ss ",
            "1_2",
            "_2.ss",
            "1__2.ss",
            "1_02.ss",
            "+1_2.ss",
            "18446744073709551616_1.ss",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
        assert_eq!(parse_file_name("0_0.ss"), Some((0, 0)));
        assert_eq!(
            parse_file_name("18446744073709551615_1.ss"),
            Some((u64::MAX, 1))
        );
        assert_eq!(goraft_choice(["10_500.ss", "9_100.ss"]), Some("9_100.ss"));
    }

    /// A reader that hands out at most `step` bytes per call, as a file or pipe may.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn json_errors_point_at_their_byte_across_lines() {
        let file = b"00000000\n{\n  \"lastIndex\": 1,\n  \"lastTerm\": x}";
        let e = parse(file).unwrap().snapshot.unwrap_err();
        let x = file.iter().rposition(|&b| b == b'x').unwrap();
        assert_eq!(e.offset, Some(x), "{e}");
        let e = parse(b"00000000\n{\"state\":\"***\"}")
            .unwrap()
            .snapshot
            .unwrap_err();
        assert!(e.message.contains("state is not standard base64"), "{e}");
        let e = parse(b"00000000\n[1]").unwrap().snapshot.unwrap_err();
        assert!(e.message.contains("expected a JSON object"), "{e}");
    }

    #[test]
    fn unknown_fields_nulls_and_duplicates_read_as_goraft_does() {
        let json = br#"{"x":[1,{"y":"z"}],"lastIndex":null,"lastIndex":7,"peers":null,"state":null,"path":null}"#;
        let mut file = format!("{:08x}\n", crc32fast::hash(json)).into_bytes();
        file.extend_from_slice(json);
        let p = parse(&file).unwrap();
        assert!(p.crc_ok());
        let s = p.snapshot.unwrap();
        assert_eq!(
            (s.last_index, s.last_term, s.peers, s.state, s.path),
            (7, 0, None, None, String::new())
        );
    }

    proptest::proptest! {
        /// However the bytes arrive, the stream parses as the whole slice does: the buffer, the
        /// CRC and the line tracking do not depend on read sizes.
        #[test]
        fn a_trickled_stream_parses_as_the_slice(
            state in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            cut in 0usize..200,
            flip in proptest::option::of((0usize..200, 1u8..=255)),
            step in 1usize..16,
        ) {
            let snap = Snapshot {
                last_index: 9,
                last_term: 2,
                peers: Some(vec![]),
                state: Some(state),
                path: "/p\n".into(),
            };
            let mut file = encode(&snap);
            if let Some((at, x)) = flip {
                let at = at % file.len();
                file[at] ^= x;
            }
            file.truncate(file.len().saturating_sub(cut % 8));
            let whole = parse(&file);
            let trickled = parse_from(Trickle { bytes: &file, step }).unwrap();
            proptest::prop_assert_eq!(whole, trickled);
        }
    }

    #[test]
    fn bad_crc_is_reported_not_fatal() {
        let p = parse(b"00000000\n{}").unwrap();
        assert!(!p.crc_ok());
        assert!(parse(b"zz").is_err());
    }
}
