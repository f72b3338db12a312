//! One snapshot file in detail (`inspect --snapshot FILE`).

use std::io::{self, Write};
use std::path::Path;

use super::human::key;
use super::json::snapshot_fields;
use super::{
    esc_path, escape_terminal, is_json, json_terminal_safe, push_bytes_quoted, relayout_json,
    HumanStyle,
};
use crate::format::snapshot::{self, ParsedSnapshot};
use crate::render::jsonl::{push_base64, Obj};

/// One snapshot file read for `--snapshot`.
#[derive(Debug)]
pub struct SnapshotView<'a> {
    /// Its path as given.
    pub path: &'a Path,
    /// Its size in bytes.
    pub size: u64,
    /// The parse (CRC and JSON), or why the header is unreadable.
    pub parsed: Result<ParsedSnapshot, snapshot::SnapshotError>,
}

impl<'a> SnapshotView<'a> {
    /// The file at `path`, `size` bytes, parsed as `parsed` (the file is read as a stream, never
    /// held: see `datadir::files::read_snapshot`).
    pub fn new(
        path: &'a Path,
        size: u64,
        parsed: Result<ParsedSnapshot, snapshot::SnapshotError>,
    ) -> Self {
        SnapshotView { path, size, parsed }
    }

    /// Whether goraft would refuse it (bad header, CRC mismatch or JSON that does not decode).
    pub fn is_damaged(&self) -> bool {
        !matches!(&self.parsed, Ok(p) if p.crc_ok() && p.snapshot.is_ok())
    }

    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn state(&self) -> Option<&[u8]> {
        self.parsed
            .as_ref()
            .ok()?
            .snapshot
            .as_ref()
            .ok()?
            .state
            .as_deref()
    }
}

/// Writes one snapshot file in detail for people.
pub fn snapshot_human(
    out: &mut dyn Write,
    v: &SnapshotView<'_>,
    style: &HumanStyle,
) -> io::Result<()> {
    key(out, style, "snapshot", &esc_path(v.path))?;
    key(out, style, "size", &format!("{} bytes", v.size))?;
    let name = match snapshot::parse_file_name(&v.file_name()) {
        Some((t, i)) => format!("term {t}, index {i}"),
        None => "not <term>_<index>.ss".into(),
    };
    key(out, style, "file name", &name)?;
    let p = match &v.parsed {
        Err(e) => return key(out, style, "error", &escape_terminal(&e.to_string())),
        Ok(p) => p,
    };
    let crc = if p.crc_ok() {
        format!("{:08x}, ok", p.declared_crc)
    } else {
        format!(
            "bad: the header says {:08x}, the content has {:08x} (goraft refuses the file)",
            p.declared_crc, p.actual_crc
        )
    };
    key(out, style, "CRC", &crc)?;
    if !p.canonical_header {
        key(
            out,
            style,
            "header",
            "not canonical (goraft writes \"%08x\\n\")",
        )?;
    }
    let s = match &p.snapshot {
        Err(e) => return key(out, style, "error", &escape_terminal(&e.to_string())),
        Ok(s) => s,
    };
    key(out, style, "lastIndex", &s.last_index.to_string())?;
    key(out, style, "lastTerm", &s.last_term.to_string())?;
    let peers = match &s.peers {
        None => "null".to_string(),
        Some(ps) if ps.is_empty() => "none".to_string(),
        Some(ps) => {
            let l: Vec<_> = ps
                .iter()
                .map(|p| {
                    format!(
                        "{} {}",
                        escape_terminal(&p.name),
                        escape_terminal(&p.connection_string)
                    )
                })
                .collect();
            l.join("\n")
        }
    };
    key(out, style, "peers", &peers)?;
    key(out, style, "path", &escape_terminal(&s.path))?;
    let Some(state) = &s.state else {
        return key(out, style, "state", "null");
    };
    if is_json(state) {
        key(
            out,
            style,
            "state",
            &format!("{} bytes of JSON:", state.len()),
        )?;
        let mut pretty = Vec::with_capacity(state.len() * 2);
        relayout_json(state, Some("  "), &mut pretty);
        writeln!(
            out,
            "{}",
            json_terminal_safe(&String::from_utf8_lossy(&pretty))
        )?;
    } else {
        const PREVIEW: usize = 256;
        let shown = &state[..state.len().min(PREVIEW)];
        let more = state.len() - shown.len();
        let mut v = format!("{} bytes, not JSON: ", state.len());
        push_bytes_quoted(&mut v, shown);
        if more > 0 {
            v.push_str(&format!(" ... and {more} more bytes"));
        }
        key(out, style, "state", &v)?;
    }
    Ok(())
}

/// Writes one snapshot file in detail as a JSON `snapshot` object with `state_base64` and
/// `state_json`.
pub fn snapshot_json(out: &mut dyn Write, v: &SnapshotView<'_>) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut o = Obj::new(&mut buf, "snapshot");
    o.str("file", &v.file_name());
    o.path("path", v.path);
    o.u64("size", v.size);
    let name_key = snapshot::parse_file_name(&v.file_name());
    snapshot_fields(
        &mut o,
        name_key,
        v.parsed.as_ref().map_err(|e| e.to_string()),
    );
    match v.state() {
        Some(state) => {
            push_base64(o.key("state_base64"), state);
            let b = o.key("state_json");
            if is_json(state) {
                relayout_json(state, None, b);
            } else {
                b.extend_from_slice(b"null");
            }
        }
        None => {
            o.key("state_base64").extend_from_slice(b"null");
            o.key("state_json").extend_from_slice(b"null");
        }
    }
    o.end();
    out.write_all(&buf)
}
