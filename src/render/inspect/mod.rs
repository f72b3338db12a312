//! Output of `raftdump inspect`: a header block and a table of entries for people
//! ([`human()`]), JSON Lines for programs ([`json()`]), and the detail view of one snapshot file
//! ([`snapshot_human`], [`snapshot_json`]).
//!
//! Both renderers stream: the entries are read again from the log's bytes (never collected), the
//! human table is drawn in chunks of [`CHUNK_ROWS`] rows with column widths measured in a pass
//! before, and JSON lines are written by hand into one reused buffer. Untrusted bytes (names,
//! payloads, paths) are escaped for the terminal in human output and kept lossless in JSON.
//!
//! # JSON schema
//!
#![doc = include_str!("json-schema.txt")]

use std::path::Path;

use super::{escape_bytes, escape_terminal};
use crate::datadir::DataDir;
use crate::inspect::{InspectOptions, Summary};

mod human;
mod json;
mod snapshot;

pub(crate) use human::{decoded_cell, header_files};
pub use human::{human, CHUNK_ROWS};
pub(crate) use json::{entry_line, follow_header, json_problem};
pub use json::{json, json_entries, json_head, json_problems, EntryParts};
pub use snapshot::{snapshot_human, snapshot_json, SnapshotView};

/// The JSON Lines schema, as documented above (also the man page's text).
pub const JSON_SCHEMA: &str = include_str!("json-schema.txt");

/// What to show: the loaded node, its summary and the options of the run.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The node (or bare log file).
    pub dd: &'a DataDir,
    /// The summary pass over its log.
    pub summary: &'a Summary,
    /// Which entries to show.
    pub opts: &'a InspectOptions,
    /// Show each entry's header and body bytes.
    pub raw: bool,
    /// Show the header only, no entries.
    pub summary_only: bool,
}

/// Terminal layout of human output.
#[derive(Debug, Clone, Copy)]
pub struct HumanStyle {
    /// Width to fit the table into (long cells wrap).
    pub width: usize,
    /// Bold header keys (tables are never colored).
    pub color: bool,
}

fn esc_path(p: &Path) -> String {
    escape_bytes(p.as_os_str().as_encoded_bytes()).into_owned()
}

/// `"…"` around a terminal-escaped string, with inner quotes escaped.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in escape_terminal(s).chars() {
        if c == '"' {
            out.push_str("\\\"");
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

/// Makes JSON text safe for a terminal without breaking it: DEL, C1 controls and the line and
/// paragraph separators (which JSON allows raw inside strings) become `\uXXXX` escapes.
pub fn json_terminal_safe(json: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c) || c == '\u{2028}' || c == '\u{2029}'
    };
    if !json.chars().any(bad) {
        return json.into();
    }
    let mut out = String::with_capacity(json.len() + 12);
    for c in json.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Re-lays out valid JSON `src` without changing its tokens (key order and escapes are kept):
/// compact when `indent` is `None`, else one member per line.
fn relayout_json(src: &[u8], indent: Option<&str>, out: &mut Vec<u8>) {
    let newline = |out: &mut Vec<u8>, depth: usize| {
        if let Some(ind) = indent {
            out.push(b'\n');
            for _ in 0..depth {
                out.extend_from_slice(ind.as_bytes());
            }
        }
    };
    let (mut depth, mut i) = (0usize, 0usize);
    while i < src.len() {
        let b = src[i];
        match b {
            b'"' => {
                let start = i;
                i += 1;
                while i < src.len() && src[i] != b'"' {
                    i += if src[i] == b'\\' { 2 } else { 1 };
                }
                out.extend_from_slice(&src[start..(i + 1).min(src.len())]);
            }
            b'{' | b'[' => {
                out.push(b);
                let close = if b == b'{' { b'}' } else { b']' };
                let next = src[i + 1..].iter().position(|c| !c.is_ascii_whitespace());
                if next.is_some_and(|n| src[i + 1 + n] == close) {
                    out.push(close);
                    i += 1 + next.unwrap_or(0);
                } else {
                    depth += 1;
                    newline(out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(out, depth);
            }
            b':' => {
                out.push(b);
                if indent.is_some() {
                    out.push(b' ');
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => out.push(b),
        }
        i += 1;
    }
}

/// Whether `b` is one JSON value (surrounding whitespace allowed), as serde_json reads it.
fn is_json(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

fn push_bytes_quoted(out: &mut String, b: &[u8]) {
    out.push('"');
    for c in escape_bytes(b).chars() {
        if c == '"' {
            out.push_str("\\\"");
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_relayout_keeps_tokens_and_order() {
        let src = br#" {"b": [1, {"x":"a, b"}], "a" :{}, "e":[] , "s":"q\"{"} "#;
        let mut compact = Vec::new();
        relayout_json(src, None, &mut compact);
        assert_eq!(
            compact,
            br#"{"b":[1,{"x":"a, b"}],"a":{},"e":[],"s":"q\"{"}"#
        );
        let mut pretty = Vec::new();
        relayout_json(br#"{"k":[1,2],"e":{}}"#, Some("  "), &mut pretty);
        assert_eq!(
            String::from_utf8(pretty).unwrap(),
            "{\n  \"k\": [\n    1,\n    2\n  ],\n  \"e\": {}\n}"
        );
        assert_eq!(
            json_terminal_safe("\"a\u{2028}\u{9b}b\""),
            "\"a\\u2028\\u009bb\""
        );
    }
}
