//! The `conf` file: `{"commitIndex":N,"peers":[{"name","connectionString"},...]}`.
//!
//! It owns parsing (with byte offsets for bad JSON) and the exact bytes goraft's `json.Marshal`
//! writes. Pure functions over `&[u8]`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

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

/// Parses a conf file. The JSON is decoded straight into the model (unknown fields skipped, never
/// held), so memory follows the peers it lists, not the shape of whatever the file holds.
pub fn parse(bytes: &[u8]) -> Result<Conf, ConfError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let conf = ConfJson::deserialize(&mut de).and_then(|c| de.end().map(|()| c));
    conf.map(|c| c.0).map_err(|e| ConfError {
        offset: Some(json_error_offset(bytes, &e)),
        message: match e.classify() {
            serde_json::error::Category::Data => {
                format!("{e}, expected {{\"commitIndex\":N,\"peers\":[...]}}")
            }
            _ => format!("invalid JSON ({e}), expected {{\"commitIndex\":N,\"peers\":[...]}}"),
        },
    })
}

/// `conf` as goraft's `encoding/json` reads it: fields in any order, `null` as the zero value,
/// the last of duplicate keys winning.
struct ConfJson(Conf);

impl<'de> Deserialize<'de> for ConfJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConfJson;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with commitIndex and peers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConfJson, A::Error> {
                let mut conf = Conf {
                    commit_index: 0,
                    peers: Vec::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "commitIndex" => {
                            conf.commit_index = map.next_value::<Option<Uint>>()?.map_or(0, |u| u.0)
                        }
                        "peers" => {
                            conf.peers = map.next_value::<Option<Vec<Peer>>>()?.unwrap_or_default()
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(ConfJson(conf))
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON number that is an unsigned 64-bit integer (Go's `uint64`), with an error that says so.
pub(crate) struct Uint(pub(crate) u64);

impl<'de> Deserialize<'de> for Uint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Uint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Uint, E> {
                Ok(Uint(v))
            }
        }
        d.deserialize_u64(V)
    }
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
        assert_eq!(e.offset, Some(16), "just after the number");
    }

    #[test]
    fn unknown_fields_and_nulls_read_as_goraft_does() {
        let conf =
            parse(br#"{"x":[1,[2,{"y":3}]],"commitIndex":null,"peers":null,"commitIndex":4}"#);
        assert_eq!(
            conf,
            Ok(Conf {
                commit_index: 4,
                peers: Vec::new()
            })
        );
    }
}
