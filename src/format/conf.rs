//! The `conf` file: `{"commitIndex":N,"peers":[{"name","connectionString"},...]}`.
//!
//! It owns parsing (with byte offsets for bad JSON) and the exact bytes goraft's `json.Marshal`
//! writes. Pure functions over `&[u8]`.

use std::fmt;

use super::gojson::write_string;
use crate::model::{Conf, Peer};

/// Why a conf file is not what goraft reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// Byte offset of the problem, when it has one.
    pub offset: Option<usize>,
    /// What was expected.
    pub message: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{} at byte {o}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfError {}

/// The byte offset of a serde_json error, from its line and column.
pub(crate) fn json_error_offset(bytes: &[u8], e: &serde_json::Error) -> usize {
    let line_start: usize = bytes
        .split_inclusive(|&b| b == b'\n')
        .take(e.line().saturating_sub(1))
        .map(<[u8]>::len)
        .sum();
    (line_start + e.column().saturating_sub(1)).min(bytes.len())
}

/// Parses a conf file.
pub fn parse(bytes: &[u8]) -> Result<Conf, ConfError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| ConfError {
        offset: Some(json_error_offset(bytes, &e)),
        message: format!("invalid JSON ({e}), expected {{\"commitIndex\":N,\"peers\":[...]}}"),
    })?;
    let shape = |message: String| ConfError {
        offset: None,
        message,
    };
    let obj = value
        .as_object()
        .ok_or_else(|| shape("expected a JSON object with commitIndex and peers".into()))?;
    let commit_index = match obj.get("commitIndex") {
        None | Some(serde_json::Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| shape(format!("commitIndex is {v}, expected an unsigned integer")))?,
    };
    let peers = match obj.get("peers") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value::<Vec<Peer>>(v.clone()).map_err(|e| {
            shape(format!(
                "peers is not a list of {{\"name\",\"connectionString\"}} objects: {e}"
            ))
        })?,
    };
    Ok(Conf {
        commit_index,
        peers,
    })
}

/// The bytes goraft writes for `conf` (compact JSON, no trailing newline).
pub fn encode(conf: &Conf) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + conf.peers.len() * 64);
    out.extend_from_slice(b"{\"commitIndex\":");
    out.extend_from_slice(conf.commit_index.to_string().as_bytes());
    out.extend_from_slice(b",\"peers\":[");
    for (i, p) in conf.peers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        write_string(p.name.as_bytes(), &mut out);
        out.extend_from_slice(b",\"connectionString\":");
        write_string(p.connection_string.as_bytes(), &mut out);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples_round_trip() {
        for text in [
            &b"{\"commitIndex\":1,\"peers\":[]}"[..],
            b"{\"commitIndex\":4,\"peers\":[{\"name\":\"7bd5bdc\",\"connectionString\":\"http://localhost:4002\"},{\"name\":\"3c0ffee\",\"connectionString\":\"http://localhost:4003\"}]}",
        ] {
            let conf = parse(text).unwrap();
            assert_eq!(encode(&conf), text);
        }
    }

    #[test]
    fn errors_have_offsets() {
        let e = parse(b"{\"commitIndex\":1,\"peers\":[}").unwrap_err();
        assert_eq!(e.offset, Some(26));
        let e = parse(b"{\"commitIndex\":-1}").unwrap_err();
        assert!(e.message.contains("unsigned"), "{e}");
    }
}
