//! Snapshot files `snapshot/<lastTerm>_<lastIndex>.ss`: a `"%08x\n"` CRC-32/IEEE of the JSON that
//! follows, then `{"lastIndex","lastTerm","peers","state","path"}`.
//!
//! It owns the CRC check over exactly the JSON bytes, the JSON fields, the file-name grammar and
//! goraft's (lexicographic) choice of which snapshot to load. Pure functions.

use std::fmt;

use base64::Engine as _;

use super::conf::json_error_offset;
use super::gojson::write_string;
use crate::model::{Index, Peer, Snapshot, Term};

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
    let header = super::frame::parse_lenient(bytes).map_err(|e| SnapshotError {
        offset: Some(match e {
            super::frame::HeaderError::Invalid { at, .. } => at,
            super::frame::HeaderError::Torn { len, .. } => len,
            super::frame::HeaderError::Nul => 0,
        }),
        message: "expected a \"%08x\\n\" CRC-32 header".into(),
    })?;
    let canonical_header = header.len == 9
        && bytes[..8]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    let json = &bytes[header.len..];
    let actual_crc = crc32fast::hash(json);
    Ok(ParsedSnapshot {
        declared_crc: header.body_len,
        actual_crc,
        header_len: header.len,
        canonical_header,
        snapshot: parse_json(json).map_err(|mut e| {
            e.offset = e.offset.map(|o| o + header.len);
            e
        }),
    })
}

fn parse_json(json: &[u8]) -> Result<Snapshot, SnapshotError> {
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| SnapshotError {
        offset: Some(json_error_offset(json, &e)),
        message: format!("invalid snapshot JSON ({e})"),
    })?;
    let shape = |message: String| SnapshotError {
        offset: None,
        message,
    };
    let obj = value
        .as_object()
        .ok_or_else(|| shape("expected a JSON object".into()))?;
    let num = |key: &str| -> Result<u64, SnapshotError> {
        match obj.get(key) {
            None | Some(serde_json::Value::Null) => Ok(0),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| shape(format!("{key} is {v}, expected an unsigned integer"))),
        }
    };
    let peers = match obj.get("peers") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value::<Vec<Peer>>(v.clone())
                .map_err(|e| shape(format!("peers: {e}")))?,
        ),
    };
    let state = match obj.get("state") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| shape(format!("state is not standard base64: {e}")))?,
        ),
        Some(v) => return Err(shape(format!("state is {v}, expected a base64 string"))),
    };
    let path = match obj.get("path") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => return Err(shape(format!("path is {v}, expected a string"))),
    };
    Ok(Snapshot {
        last_index: num("lastIndex")?,
        last_term: num("lastTerm")?,
        peers,
        state,
        path,
    })
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
            json.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(state).as_bytes());
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

/// Parses a snapshot file name `<term>_<index>.ss` (decimal, no padding).
pub fn parse_file_name(name: &str) -> Option<(Term, Index)> {
    let stem = name.strip_suffix(".ss")?;
    let (t, i) = stem.split_once('_')?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    (ok(t) && ok(i)).then(|| Some((t.parse().ok()?, i.parse().ok()?)))?
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
        assert_eq!(goraft_choice(["10_500.ss", "9_100.ss"]), Some("9_100.ss"));
    }

    #[test]
    fn bad_crc_is_reported_not_fatal() {
        let p = parse(b"00000000\n{}").unwrap();
        assert!(!p.crc_ok());
        assert!(parse(b"zz").is_err());
    }
}
