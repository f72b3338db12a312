//! Command payloads: goraft's `raft:join` / `raft:leave` / `raft:nop`, raftd's `write`, and
//! every other name passed through untouched.
//!
//! Decoding follows Go's lenient `encoding/json` (see `format::gojson`); encoding writes the exact
//! bytes goraft's `json.NewEncoder` produces, trailing newline included. Pure functions.

use super::gojson::{decode_string_fields, write_string};
use crate::model::{names, Command};

/// Decodes a payload by command name. Never fails: a known name with a bad payload becomes
/// [`Command::Invalid`], an unknown name [`Command::Other`].
pub fn decode(name: &[u8], payload: Option<&[u8]>) -> Command {
    let body = payload.unwrap_or(b"");
    match name {
        b"raft:nop" => Command::Nop,
        b"write" => match decode_string_fields(body, ["key", "value"]) {
            Ok([key, value]) => Command::Write { key, value },
            Err(e) => Command::Invalid {
                reason: e.to_string(),
            },
        },
        b"raft:join" => match decode_string_fields(body, ["name", "connectionString"]) {
            Ok([name, connection_string]) => Command::Join {
                name,
                connection_string,
            },
            Err(e) => Command::Invalid {
                reason: e.to_string(),
            },
        },
        b"raft:leave" => match decode_string_fields(body, ["name"]) {
            Ok([name]) => Command::Leave { name },
            Err(e) => Command::Invalid {
                reason: e.to_string(),
            },
        },
        _ => Command::Other {
            json: payload.and_then(|p| serde_json::from_slice(p).ok()),
        },
    }
}

/// The payload goraft writes for `raft:join`.
pub fn encode_join(name: &str, connection_string: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + name.len() + connection_string.len());
    out.extend_from_slice(b"{\"name\":");
    write_string(name.as_bytes(), &mut out);
    out.extend_from_slice(b",\"connectionString\":");
    write_string(connection_string.as_bytes(), &mut out);
    out.extend_from_slice(b"}\n");
    out
}

/// The payload goraft writes for `raft:leave`.
pub fn encode_leave(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + name.len());
    out.extend_from_slice(b"{\"name\":");
    write_string(name.as_bytes(), &mut out);
    out.extend_from_slice(b"}\n");
    out
}

/// The payload raftd writes for `write`: the key and the raw POST body, with Go's escaping
/// (invalid UTF-8 in either becomes `\ufffd`, exactly as raftd stored it).
pub fn encode_write(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + key.len() + value.len());
    out.extend_from_slice(b"{\"key\":");
    write_string(key, &mut out);
    out.extend_from_slice(b",\"value\":");
    write_string(value, &mut out);
    out.extend_from_slice(b"}\n");
    out
}

/// The command name and payload goraft would write for a decoded command, when raftdump knows
/// how to encode it (`Other` and `Invalid` carry no bytes of their own).
pub fn encode(command: &Command) -> Option<(&'static str, Option<Vec<u8>>)> {
    Some(match command {
        Command::Join {
            name,
            connection_string,
        } => (names::JOIN, Some(encode_join(name, connection_string))),
        Command::Leave { name } => (names::LEAVE, Some(encode_leave(name))),
        Command::Nop => (names::NOP, None),
        Command::Write { key, value } => {
            (names::WRITE, Some(encode_write(key.as_bytes(), value.as_bytes())))
        }
        Command::Other { .. } | Command::Invalid { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_payloads() {
        let join = encode_join("2832bfa", "http://localhost:4001");
        assert_eq!(join, b"{\"name\":\"2832bfa\",\"connectionString\":\"http://localhost:4001\"}\n");
        assert_eq!(join.len(), 62);
        assert_eq!(encode_leave("7bd5bdc"), b"{\"name\":\"7bd5bdc\"}\n");
        assert_eq!(encode_write(b"foo", b"bar"), b"{\"key\":\"foo\",\"value\":\"bar\"}\n");
        assert_eq!(
            decode(b"raft:join", Some(&join)),
            Command::Join {
                name: "2832bfa".into(),
                connection_string: "http://localhost:4001".into()
            }
        );
        assert_eq!(decode(b"raft:nop", None), Command::Nop);
    }

    #[test]
    fn quirks() {
        // raftd's `POST /join` with body null: an empty member.
        assert_eq!(
            decode(b"raft:join", Some(b"null\n")),
            Command::Join {
                name: String::new(),
                connection_string: String::new()
            }
        );
        assert!(matches!(decode(b"write", Some(b"{\"key\":1}\n")), Command::Invalid { .. }));
        assert!(matches!(decode(b"write", None), Command::Invalid { .. }));
        assert_eq!(
            decode(b"etcd:set", Some(b"{\"k\":\"v\"}\n")),
            Command::Other {
                json: Some(serde_json::json!({"k":"v"}))
            }
        );
        assert_eq!(decode(b"etcd:raw", Some(b"\x00\x01")), Command::Other { json: None });
    }
}
