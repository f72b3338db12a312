//! Output of `raftdump inspect`: a header block and a table of entries for people, JSON Lines
//! for programs, and the detail view of one snapshot file.
//!
//! Both renderers stream: the entries are read again from the log's bytes (never collected), the
//! human table is drawn in chunks of [`CHUNK_ROWS`] rows with column widths measured in a pass
//! before, and JSON lines are written by hand into one reused buffer. Untrusted bytes (names,
//! payloads, paths) are escaped for the terminal in human output and kept lossless in JSON.
//!
//! # JSON schema
//!
#![doc = include_str!("inspect-json.txt")]

use std::io::{self, Write};
use std::path::Path;

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table, Width};
use serde::Serialize;
use unicode_width::UnicodeWidthStr;

use super::{escape_bytes, escape_terminal};
use crate::datadir::{DataDir, InputKind};
use crate::format::log::{DamageKind, LogError, RawEntry};
use crate::format::snapshot::{self, ParsedSnapshot};
use crate::inspect::{self, entry_quirks, InspectOptions, Progress, Summary};
use crate::model::{Command, Index};

/// The JSON Lines schema, as documented above (also the man page's text).
pub const JSON_SCHEMA: &str = include_str!("inspect-json.txt");

/// Rows per comfy-table chunk: bounds the memory a long log's table needs.
pub const CHUNK_ROWS: usize = 256;

/// Box drawing like comfy-table's `UTF8_FULL_CONDENSED`, with solid inner lines.
const TABLE_PRESET: &str = "││──╞═╪╡│    ┬┴┌┐└┘";

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

// ---------------------------------------------------------------------------------------------
// Human output
// ---------------------------------------------------------------------------------------------

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

/// The "decoded" cell: the command with its values quoted and escaped for a terminal.
fn decoded_cell(e: &RawEntry<'_>, out: &mut String) {
    out.clear();
    match e.command() {
        Command::Write { key, value } => {
            out.push_str("key=");
            push_quoted(out, &key);
            out.push_str(" value=");
            push_quoted(out, &value);
        }
        Command::Join {
            name,
            connection_string,
        } => {
            out.push_str("name=");
            push_quoted(out, &name);
            out.push_str(" connectionString=");
            push_quoted(out, &connection_string);
        }
        Command::Leave { name } => {
            out.push_str("name=");
            push_quoted(out, &name);
        }
        Command::Nop => {
            if let Some(p) = e.payload() {
                out.push_str("(unexpected payload) ");
                push_bytes_quoted(out, p);
            }
        }
        Command::Other { .. } => match e.payload() {
            None => out.push_str("(no payload)"),
            Some(p) if is_json(p) => {
                let mut buf = Vec::with_capacity(p.len());
                relayout_json(p, None, &mut buf);
                out.push_str(&json_terminal_safe(&String::from_utf8_lossy(&buf)));
            }
            Some(p) => {
                out.push_str("(not JSON) ");
                push_bytes_quoted(out, p);
            }
        },
        Command::Invalid { reason } => {
            out.push_str("(invalid: ");
            out.push_str(&escape_terminal(&reason));
            out.push_str(") ");
            match e.payload() {
                Some(p) => push_bytes_quoted(out, p),
                None => out.push_str("(no payload)"),
            }
        }
    }
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

/// Widths of the five columns, measured over the shown entries.
#[derive(Debug, Clone, Copy)]
struct Layout {
    widths: [usize; 5],
    shown: u64,
}

const HEADERS: [&str; 5] = ["index", "term", "offset", "command", "decoded"];
const RAW_HEADERS: [&str; 5] = ["index", "term", "offset", "command", "raw"];

fn digits(n: u64) -> usize {
    itoa::Buffer::new().format(n).len()
}

fn measure(
    view: &View<'_>,
    log: &[u8],
    style: &HumanStyle,
    progress: &mut dyn FnMut(u64),
) -> Layout {
    let heads = if view.raw { RAW_HEADERS } else { HEADERS };
    let mut w = heads.map(str::len);
    let mut shown = 0;
    let mut cell = String::new();
    for e in inspect::entries(log, view.opts).with_progress(Progress::new(progress)) {
        shown += 1;
        w[0] = w[0].max(digits(e.index()));
        w[1] = w[1].max(digits(e.term()));
        w[2] = w[2].max(digits(e.offset));
        w[3] = w[3].max(escape_bytes(e.wire.name).width());
        if view.raw {
            raw_text(log, &e, &mut cell);
            w[4] = w[4].max(cell.lines().map(UnicodeWidthStr::width).max().unwrap_or(0));
        } else {
            decoded_cell(&e, &mut cell);
            w[4] = w[4].max(cell.width());
        }
    }
    // Borders: 6 vertical lines and one space of padding on each side of 5 cells.
    let fixed: usize = w[..4].iter().sum::<usize>() + 6 + 10;
    let avail = style.width.saturating_sub(fixed).max(20);
    w[4] = w[4].min(avail);
    Layout { widths: w, shown }
}

/// The raw cell, with the header bytes taken from the log.
fn raw_text(log: &[u8], e: &RawEntry<'_>, out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    let start = e.offset as usize;
    let header = log.get(start..start + e.header.len).unwrap_or(&[]);
    let digits = format!("{:x}", e.body.len().max(1)).len().max(4);
    let line = |out: &mut String, label: &str, bytes: &[u8]| {
        let _ = write!(out, "{label:<digits$}  ");
        for b in bytes {
            let _ = write!(out, "{b:02x} ");
        }
        for _ in bytes.len()..16 {
            out.push_str("   ");
        }
        out.push(' ');
        out.extend(bytes.iter().map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        }));
    };
    for (n, chunk) in header.chunks(16).enumerate() {
        if n > 0 {
            out.push('\n');
        }
        line(out, "hdr", chunk);
    }
    for (n, chunk) in e.body.chunks(16).enumerate() {
        out.push('\n');
        line(out, &format!("{:0digits$x}", n * 16), chunk);
    }
}

/// Writes one chunk of rows as a comfy-table with fixed column widths, leaving out the top border
/// of every chunk but the first and keeping the bottom border for the caller (so that chunks join
/// into one table).
fn write_chunk(
    out: &mut dyn Write,
    rows: &mut Vec<[String; 5]>,
    layout: &Layout,
    heads: Option<[&str; 5]>,
    bottom: &mut Option<String>,
) -> io::Result<()> {
    let mut t = Table::new();
    t.load_preset(TABLE_PRESET);
    t.set_content_arrangement(ContentArrangement::Disabled);
    if let Some(h) = heads {
        t.set_header(h);
    }
    for r in rows.drain(..) {
        t.add_row(r);
    }
    for (i, w) in layout.widths.iter().enumerate() {
        if let Some(col) = t.column_mut(i) {
            let w = u16::try_from(*w + 2).unwrap_or(u16::MAX);
            col.set_constraint(ColumnConstraint::Absolute(Width::Fixed(w)));
            if i < 3 {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    let mut lines = t.lines().peekable();
    if heads.is_none() {
        lines.next();
    }
    while let Some(line) = lines.next() {
        if lines.peek().is_none() {
            *bottom = Some(line);
        } else {
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    Ok(())
}

fn key(out: &mut dyn Write, style: &HumanStyle, k: &str, v: &str) -> io::Result<()> {
    let mut lines = v.split('\n');
    let first = lines.next().unwrap_or("");
    if style.color {
        let b = anstyle::Style::new().bold();
        writeln!(out, "{}{k:<11}{} {first}", b.render(), b.render_reset())?;
    } else {
        writeln!(out, "{k:<11} {first}")?;
    }
    for l in lines {
        writeln!(out, "{:<11} {l}", "")?;
    }
    Ok(())
}

fn counts(list: &[(&'static str, u64)]) -> String {
    list.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn snapshot_line(dd: &DataDir, s: &crate::datadir::SnapshotFile) -> String {
    let mut parts = vec![match s.name_key {
        Some((t, i)) => format!("term {t}, index {i}"),
        None => "name is not <term>_<index>.ss".to_string(),
    }];
    parts.push(format!("{} bytes", s.size));
    match &s.parsed {
        Ok(p) if p.crc_ok() => parts.push("CRC ok".into()),
        Ok(p) => parts.push(format!(
            "CRC bad (header says {:08x}, content has {:08x})",
            p.declared_crc, p.actual_crc
        )),
        Err(e) => parts.push(format!("unreadable: {}", escape_terminal(&e.to_string()))),
    }
    if let Ok(Err(e)) = s.parsed.as_ref().map(|p| &p.snapshot) {
        parts.push(format!("bad JSON: {}", escape_terminal(&e.to_string())));
    }
    if dd
        .best_snapshot()
        .is_some_and(|b| b.file_name == s.file_name)
    {
        parts.push("raftdump loads this one (highest index)".into());
    }
    if dd
        .goraft_snapshot()
        .is_some_and(|b| b.file_name == s.file_name)
    {
        parts.push("goraft loads this one (last name)".into());
    }
    format!("{}: {}", escape_terminal(&s.file_name), parts.join(", "))
}

fn write_header(
    out: &mut dyn Write,
    view: &View<'_>,
    style: &HumanStyle,
    shown: Option<u64>,
) -> io::Result<()> {
    let (dd, s) = (view.dd, view.summary);
    key(out, style, "path", &esc_path(&dd.path))?;
    key(
        out,
        style,
        "log",
        &format!("{}, {} bytes", esc_path(&dd.log_path), s.file_size),
    )?;
    if dd.kind == InputKind::Dir {
        let name = match &dd.name {
            None => "none (no name file)".to_string(),
            Some(l) => match &l.parsed {
                Ok(n) => escape_terminal(n).into_owned(),
                Err(_) => format!("{} (not UTF-8)", escape_bytes(&l.raw)),
            },
        };
        key(out, style, "node name", &name)?;
        let conf = match &dd.conf {
            None => "none (no conf file)".to_string(),
            Some(l) => match &l.parsed {
                Err(e) => format!("unreadable: {}", escape_terminal(&e.to_string())),
                Ok(c) if c.peers.is_empty() => format!("commitIndex {}, no peers", c.commit_index),
                Ok(c) => {
                    let mut v = format!("commitIndex {}, {} peers", c.commit_index, c.peers.len());
                    for p in &c.peers {
                        v.push_str(&format!(
                            "\npeer {} {}",
                            escape_terminal(&p.name),
                            escape_terminal(&p.connection_string)
                        ));
                    }
                    v
                }
            },
        };
        key(out, style, "conf", &conf)?;
        let snaps = if !dd.has_snapshot_dir {
            "none (no snapshot/ directory)".to_string()
        } else if dd.snapshots.is_empty() {
            "none".to_string()
        } else {
            let l: Vec<_> = dd.snapshots.iter().map(|f| snapshot_line(dd, f)).collect();
            l.join("\n")
        };
        key(out, style, "snapshots", &snaps)?;
        if !dd.leftovers.is_empty() {
            let l: Vec<_> = dd
                .leftovers
                .iter()
                .map(|p| format!("{} (left behind by a crash)", esc_path(p)))
                .collect();
            key(out, style, "leftovers", &l.join("\n"))?;
        }
        if !dd.unreadable.is_empty() {
            let l: Vec<_> = dd
                .unreadable
                .iter()
                .map(|(p, e)| format!("{}: {}", esc_path(p), escape_terminal(&e.to_string())))
                .collect();
            key(out, style, "unreadable", &l.join("\n"))?;
        }
    }
    let entries = match (s.first_index, s.last_index) {
        (Some(f), Some(l)) => format!("{}, index {f}..{l}", s.entries),
        _ => "0".to_string(),
    };
    key(out, style, "entries", &entries)?;
    let mut terms: Vec<_> = s
        .terms
        .iter()
        .map(|r| {
            format!(
                "term {} from index {} ({} entries)",
                r.term, r.start_index, r.count
            )
        })
        .collect();
    if s.terms_unlisted > 0 {
        terms.push(format!("... and {} more term changes", s.terms_unlisted));
    }
    key(
        out,
        style,
        "terms",
        &if terms.is_empty() {
            "none".into()
        } else {
            terms.join("\n")
        },
    )?;
    let mut cmds: Vec<_> = s
        .commands
        .iter()
        .map(|c| format!("{} {}", escape_bytes(&c.name), c.count))
        .collect();
    if s.commands_unlisted > 0 {
        cmds.push(format!("other names {}", s.commands_unlisted));
    }
    key(
        out,
        style,
        "commands",
        &if cmds.is_empty() {
            "none".into()
        } else {
            cmds.join(", ")
        },
    )?;
    let frames = if s.non_canonical == 0 {
        "all canonical".to_string()
    } else {
        let mut v = format!(
            "{} non-canonical (goraft reads them, but would not write them): {}",
            s.non_canonical,
            counts(&s.quirk_counts)
        );
        const SHOW: usize = 10;
        for n in s.non_canonical_listed.iter().take(SHOW) {
            let q: Vec<_> = n.quirks.iter().map(|q| q.message.as_str()).collect();
            v.push_str(&format!(
                "\nbyte {}, index {}: {}",
                n.offset,
                n.index,
                q.join("; ")
            ));
        }
        if s.non_canonical > SHOW as u64 {
            v.push_str(&format!(
                "\n... and {} more (all are listed by --json)",
                s.non_canonical - SHOW as u64
            ));
        }
        v
    };
    key(out, style, "frames", &frames)?;
    let problems = if s.problem_count == 0 {
        "none".to_string()
    } else {
        format!(
            "{} ({}), {} bytes; listed {}",
            s.problem_count,
            counts(&s.problem_kinds),
            s.problem_bytes,
            if view.summary_only {
                "below"
            } else {
                "after the entries"
            }
        )
    };
    key(out, style, "problems", &problems)?;
    if let Some(n) = shown {
        key(
            out,
            style,
            "shown",
            &format!("{n} of {} entries ({})", s.entries, view.opts.describe()),
        )?;
    }
    Ok(())
}

fn write_problems(
    out: &mut dyn Write,
    log: &[u8],
    style: &HumanStyle,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    writeln!(out)?;
    if style.color {
        let b = anstyle::Style::new().bold();
        writeln!(out, "{}problems:{}", b.render(), b.render_reset())?;
    } else {
        writeln!(out, "problems:")?;
    }
    inspect::for_each_problem(log, Progress::new(progress), |err, last| {
        let after = match last {
            Some(i) => format!("after index {i}"),
            None => "before any good entry".to_string(),
        };
        // NUL runs and garbage already say how many bytes they cover.
        match err.kind {
            DamageKind::NulRun | DamageKind::Garbage { .. } => writeln!(out, "  {err} ({after})"),
            _ => writeln!(out, "  {err} ({} bytes, {after})", err.len),
        }
    })
}

/// Writes the human report: header block, entry table (unless `summary_only`), problems.
///
/// `progress` is called now and then with the byte offset reached.
pub fn human(
    out: &mut dyn Write,
    view: &View<'_>,
    style: &HumanStyle,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let log = view.dd.log.bytes();
    if view.summary_only {
        write_header(out, view, style, None)?;
    } else {
        let layout = measure(view, log, style, progress);
        let shown = (!view.opts.is_unfiltered()).then_some(layout.shown);
        write_header(out, view, style, shown)?;
        writeln!(out)?;
        if layout.shown == 0 {
            writeln!(out, "(no entries to show)")?;
        } else {
            write_table(out, view, log, &layout, progress)?;
        }
    }
    if view.summary.is_damaged() {
        write_problems(out, log, style, progress)?;
    }
    Ok(())
}

fn write_table(
    out: &mut dyn Write,
    view: &View<'_>,
    log: &[u8],
    layout: &Layout,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let heads = if view.raw { RAW_HEADERS } else { HEADERS };
    let mut rows: Vec<[String; 5]> = Vec::with_capacity(CHUNK_ROWS);
    let mut bottom = None;
    let mut first = true;
    let mut cell = String::new();
    for e in inspect::entries(log, view.opts).with_progress(Progress::new(progress)) {
        if view.raw {
            raw_text(log, &e, &mut cell);
        } else {
            decoded_cell(&e, &mut cell);
        }
        rows.push([
            e.index().to_string(),
            e.term().to_string(),
            e.offset.to_string(),
            escape_bytes(e.wire.name).into_owned(),
            std::mem::take(&mut cell),
        ]);
        if rows.len() == CHUNK_ROWS {
            write_chunk(out, &mut rows, layout, first.then_some(heads), &mut bottom)?;
            first = false;
        }
    }
    if !rows.is_empty() {
        write_chunk(out, &mut rows, layout, first.then_some(heads), &mut bottom)?;
    }
    if let Some(b) = bottom {
        writeln!(out, "{}", b.trim_end())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JSON Lines
// ---------------------------------------------------------------------------------------------

/// One JSON object being written into a buffer: `{"type":…` then `,"key":value` pairs.
struct Obj<'b> {
    buf: &'b mut Vec<u8>,
}

impl<'b> Obj<'b> {
    fn new(buf: &'b mut Vec<u8>, ty: &str) -> Self {
        buf.extend_from_slice(b"{\"type\":\"");
        buf.extend_from_slice(ty.as_bytes());
        buf.push(b'"');
        Obj { buf }
    }

    fn key(&mut self, k: &str) -> &mut Vec<u8> {
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.buf
    }

    fn u64(&mut self, k: &str, v: u64) {
        let s = itoa::Buffer::new().format(v).as_bytes().to_vec();
        self.key(k).extend_from_slice(&s);
    }

    fn opt_u64(&mut self, k: &str, v: Option<u64>) {
        match v {
            Some(v) => self.u64(k, v),
            None => self.key(k).extend_from_slice(b"null"),
        }
    }

    fn bool(&mut self, k: &str, v: bool) {
        self.key(k)
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    fn str(&mut self, k: &str, v: &str) {
        push_json_str(self.key(k), v);
    }

    /// `"k":"<lossy UTF-8>"`, plus `"k_base64"` when the bytes are not UTF-8.
    fn bytes(&mut self, k: &str, v: &[u8]) {
        match std::str::from_utf8(v) {
            Ok(s) => self.str(k, s),
            Err(_) => {
                self.str(k, &String::from_utf8_lossy(v));
                push_base64(self.key(&format!("{k}_base64")), v);
            }
        }
    }

    fn path(&mut self, k: &str, p: &Path) {
        self.bytes(k, p.as_os_str().as_encoded_bytes());
    }

    fn value<T: Serialize + ?Sized>(&mut self, k: &str, v: &T) {
        let buf = self.key(k);
        if serde_json::to_writer(&mut *buf, v).is_err() {
            buf.extend_from_slice(b"null");
        }
    }

    fn end(self) {
        self.buf.extend_from_slice(b"}\n");
    }
}

fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    // serde_json only for the escaping; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(buf, s);
}

/// Standard base64 of every 12-bit value: two output characters per lookup.
static BASE64_PAIRS: [[u8; 2]; 4096] = {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut t = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = [T[i >> 6], T[i & 63]];
        i += 1;
    }
    t
};

/// Appends `"<standard base64>"`. Hand-written because payloads are short and the general
/// engine's per-call overhead dominated `--json`; a unit test holds it to the base64 crate.
fn push_base64(buf: &mut Vec<u8>, b: &[u8]) {
    let start = buf.len();
    buf.resize(start + 2 + b.len().div_ceil(3) * 4, b'=');
    buf[start] = b'"';
    let end = buf.len() - 1;
    buf[end] = b'"';
    let out = &mut buf[start + 1..end];
    // Six input bytes (read as eight) to eight output bytes per step, then three to four.
    let (mut i, mut j) = (0, 0);
    while let (Some(w), Some(o)) = (b.get(i..i + 8), out.get_mut(j..j + 8)) {
        let w = u64::from_be_bytes(w.try_into().unwrap_or([0; 8]));
        let pair = |shift: u32| {
            u64::from(u16::from_le_bytes(
                BASE64_PAIRS[(w >> shift) as usize & 0xfff],
            ))
        };
        let v = pair(52) | pair(40) << 16 | pair(28) << 32 | pair(16) << 48;
        o.copy_from_slice(&v.to_le_bytes());
        i += 6;
        j += 8;
    }
    let (b, out) = (&b[i..], &mut out[j..]);
    let mut chunks = b.chunks_exact(3);
    let mut outs = out.chunks_exact_mut(4);
    for (c, o) in (&mut chunks).zip(&mut outs) {
        let n = usize::from(c[0]) << 16 | usize::from(c[1]) << 8 | usize::from(c[2]);
        o[..2].copy_from_slice(&BASE64_PAIRS[n >> 12]);
        o[2..].copy_from_slice(&BASE64_PAIRS[n & 0xfff]);
    }
    if let Some(o) = outs.next() {
        let c = |i: usize| BASE64_PAIRS[i][1];
        match *chunks.remainder() {
            [a] => {
                o[0] = c(usize::from(a >> 2));
                o[1] = c(usize::from(a & 3) << 4);
            }
            [a, b] => {
                o[0] = c(usize::from(a >> 2));
                o[1] = c(usize::from(a & 3) << 4 | usize::from(b >> 4));
                o[2] = c(usize::from(b & 15) << 2);
            }
            _ => {}
        }
    }
}

fn push_hex(buf: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    for &x in b {
        buf.push(HEX[usize::from(x >> 4)]);
        buf.push(HEX[usize::from(x & 15)]);
    }
    buf.push(b'"');
}

#[derive(Serialize)]
struct KindCount {
    kind: &'static str,
    count: u64,
}

fn kind_counts(list: &[(&'static str, u64)]) -> Vec<KindCount> {
    list.iter()
        .map(|&(kind, count)| KindCount { kind, count })
        .collect()
}

fn json_node(buf: &mut Vec<u8>, dd: &DataDir) {
    let mut o = Obj::new(buf, "node");
    o.path("path", &dd.path);
    o.str(
        "input",
        if dd.kind == InputKind::Dir {
            "dir"
        } else {
            "log-file"
        },
    );
    o.path("log_path", &dd.log_path);
    o.u64("log_size", dd.log.bytes().len() as u64);
    match &dd.name {
        Some(l) => o.bytes("name", &l.raw),
        None => o.key("name").extend_from_slice(b"null"),
    }
    o.bool("has_snapshot_dir", dd.has_snapshot_dir);
    let left: Vec<String> = dd
        .leftovers
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    o.value("leftovers", &left);
    let unreadable: Vec<_> = dd
        .unreadable
        .iter()
        .map(|(p, e)| serde_json::json!({"path": p.to_string_lossy(), "error": e.to_string()}))
        .collect();
    o.value("unreadable", &unreadable);
    o.end();
}

fn json_conf(buf: &mut Vec<u8>, dd: &DataDir) {
    let Some(l) = &dd.conf else { return };
    let mut o = Obj::new(buf, "conf");
    o.path("path", &l.path);
    match &l.parsed {
        Ok(c) => {
            o.u64("commit_index", c.commit_index);
            o.value("peers", &c.peers);
        }
        Err(e) => {
            o.key("commit_index").extend_from_slice(b"null");
            o.key("peers").extend_from_slice(b"null");
            o.str("error", &e.to_string());
            push_base64(o.key("raw_base64"), &l.raw);
        }
    }
    o.end();
}

/// Writes the fields every snapshot object has (after `file`, `path`, `size`).
fn snapshot_fields(
    o: &mut Obj<'_>,
    name_key: Option<(u64, u64)>,
    parsed: Result<&ParsedSnapshot, String>,
) {
    o.opt_u64("name_term", name_key.map(|k| k.0));
    o.opt_u64("name_index", name_key.map(|k| k.1));
    let p = parsed.as_ref().ok();
    match p {
        Some(p) => {
            o.bool("crc_ok", p.crc_ok());
            o.str("declared_crc", &format!("{:08x}", p.declared_crc));
            o.str("actual_crc", &format!("{:08x}", p.actual_crc));
            o.bool("canonical_header", p.canonical_header);
        }
        None => {
            for k in ["crc_ok", "declared_crc", "actual_crc", "canonical_header"] {
                o.key(k).extend_from_slice(b"null");
            }
        }
    }
    let snap = p.and_then(|p| p.snapshot.as_ref().ok());
    o.opt_u64("last_index", snap.map(|s| s.last_index));
    o.opt_u64("last_term", snap.map(|s| s.last_term));
    o.value("peers", &snap.map(|s| &s.peers));
    match snap {
        Some(s) => o.str("snapshot_path", &s.path),
        None => o.key("snapshot_path").extend_from_slice(b"null"),
    }
    o.opt_u64(
        "state_size",
        snap.and_then(|s| s.state.as_ref()).map(|s| s.len() as u64),
    );
    let error = match (&parsed, p.map(|p| &p.snapshot)) {
        (Err(e), _) => Some(e.clone()),
        (_, Some(Err(e))) => Some(e.to_string()),
        _ => None,
    };
    o.value("error", &error);
}

fn json_snapshots(buf: &mut Vec<u8>, dd: &DataDir) {
    let best = dd.best_snapshot().map(|s| s.file_name.as_str());
    let goraft = dd.goraft_snapshot().map(|s| s.file_name.as_str());
    for s in &dd.snapshots {
        let mut o = Obj::new(buf, "snapshot");
        o.str("file", &s.file_name);
        o.path("path", &s.path);
        o.u64("size", s.size);
        snapshot_fields(
            &mut o,
            s.name_key,
            s.parsed.as_ref().map_err(|e| e.to_string()),
        );
        o.bool("raftdump_choice", best == Some(s.file_name.as_str()));
        o.bool("goraft_choice", goraft == Some(s.file_name.as_str()));
        o.end();
    }
}

fn json_summary(buf: &mut Vec<u8>, s: &Summary) {
    let mut o = Obj::new(buf, "summary");
    o.u64("file_size", s.file_size);
    o.u64("entries", s.entries);
    o.opt_u64("first_index", s.first_index);
    o.opt_u64("last_index", s.last_index);
    o.value("terms", &s.terms);
    o.u64("terms_unlisted", s.terms_unlisted);
    let b = o.key("commands");
    b.push(b'[');
    for (i, c) in s.commands.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(b"{\"command_name\":");
        push_json_str(b, &String::from_utf8_lossy(&c.name));
        if std::str::from_utf8(&c.name).is_err() {
            b.extend_from_slice(b",\"command_name_base64\":");
            push_base64(b, &c.name);
        }
        b.extend_from_slice(b",\"count\":");
        b.extend_from_slice(itoa::Buffer::new().format(c.count).as_bytes());
        b.push(b'}');
    }
    b.push(b']');
    o.u64("commands_unlisted", s.commands_unlisted);
    o.u64("non_canonical", s.non_canonical);
    o.value("quirks", &kind_counts(&s.quirk_counts));
    o.value("non_canonical_listed", &s.non_canonical_listed);
    o.u64("problems", s.problem_count);
    o.u64("problem_bytes", s.problem_bytes);
    o.value("problem_kinds", &kind_counts(&s.problem_kinds));
    o.end();
}

fn json_problem(buf: &mut Vec<u8>, err: &LogError, last: Option<Index>) {
    let mut o = Obj::new(buf, "problem");
    o.u64("offset", err.offset);
    o.u64("entry", err.entry);
    o.u64("len", err.len);
    o.str("kind", err.kind.code());
    o.bool("torn_tail", err.kind.is_torn_tail());
    o.opt_u64("last_index", last);
    match &err.kind {
        DamageKind::TornBody {
            header_len,
            declared,
            available,
        } => {
            o.u64("header_len", *header_len);
            o.u64("declared", *declared);
            o.u64("available", *available);
        }
        DamageKind::Garbage { at, found, .. } => {
            o.u64("at", *at);
            o.u64("found", u64::from(*found));
        }
        DamageKind::BadEntry {
            header_len,
            body_len,
            error,
        } => {
            o.u64("header_len", *header_len);
            o.u64("body_len", *body_len);
            o.str("error", &error.to_string());
        }
        _ => {}
    }
    o.str("message", &err.to_string());
    o.end();
}

/// A mask with the high bit set in (at least) the lowest byte of `w` that is not plain JSON
/// string content: `"`, `\\`, a control byte or a non-ASCII byte; 0 when all eight are plain.
/// Borrows can only flag bytes above a real hit, so the lowest flagged byte is exact.
#[inline]
fn special_bytes(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = w ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | quote | backslash | w) & (ONES * 0x80)
}

/// The length of the JSON string token at the start of `s` (quotes included) when it is valid
/// JSON that decodes to exactly what Go decodes: valid UTF-8, no raw control bytes, only
/// standard escapes, and no `\u` escape of a surrogate (Go turns those into U+FFFD).
fn json_string_token_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    loop {
        // Eight plain bytes at a time, then byte by byte up to the next special one.
        while let Some(w) = s.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
            let m = special_bytes(u64::from_le_bytes(w));
            if m != 0 {
                i += (m.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        while s
            .get(i)
            .is_some_and(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\')
        {
            i += 1;
        }
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => match *s.get(i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' => {
                    let hex = s.get(i + 2..i + 6)?;
                    let surrogate = matches!(hex[0], b'd' | b'D') && !hex[1].is_ascii_digit()
                        || matches!(hex[0], b'd' | b'D') && matches!(hex[1], b'8' | b'9');
                    if !hex.iter().all(u8::is_ascii_hexdigit) || surrogate {
                        return None;
                    }
                    i += 6;
                }
                _ => return None,
            },
            0..=0x1f => return None,
            lead => {
                let n = match lead {
                    0xc2..=0xdf => 2,
                    0xe0..=0xef => 3,
                    0xf0..=0xf4 => 4,
                    _ => return None,
                };
                std::str::from_utf8(s.get(i..i + n)?).ok()?;
                i += n;
            }
        }
    }
}

/// The raw string tokens of a payload laid out exactly as goraft's `json.Encoder` writes a
/// struct of string fields, `{"k1":"..","k2":".."}` plus a newline, when every token passes
/// [`json_string_token_len`]. Copying these tokens gives the same JSON values as decoding the
/// payload like Go and encoding the strings again, without allocating; anything else returns
/// `None` and takes the decoding path.
fn canonical_string_fields<'p, const N: usize>(
    payload: &'p [u8],
    keys: [&str; N],
) -> Option<[&'p [u8]; N]> {
    let mut p = payload.strip_suffix(b"\n")?.strip_prefix(b"{")?;
    let mut out = [&payload[..0]; N];
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            p = p.strip_prefix(b",")?;
        }
        p = p
            .strip_prefix(b"\"")?
            .strip_prefix(k.as_bytes())?
            .strip_prefix(b"\":")?;
        let len = json_string_token_len(p)?;
        out[i] = &p[..len];
        p = &p[len..];
    }
    (p == b"}").then_some(out)
}

/// Appends `{"k1":tok1,...}` from raw string tokens.
fn push_token_object(b: &mut Vec<u8>, keys: &[&str], tokens: &[&[u8]]) {
    b.push(b'{');
    for (i, (k, t)) in keys.iter().zip(tokens).enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.push(b'"');
        b.extend_from_slice(k.as_bytes());
        b.extend_from_slice(b"\":");
        b.extend_from_slice(t);
    }
    b.push(b'}');
}

/// Appends the command as JSON from the decoded payload (the general path); returns why a known
/// command does not decode.
fn push_command(b: &mut Vec<u8>, e: &RawEntry<'_>) -> Option<String> {
    match e.command() {
        Command::Write { key, value } => {
            b.extend_from_slice(b"{\"key\":");
            push_json_str(b, &key);
            b.extend_from_slice(b",\"value\":");
            push_json_str(b, &value);
            b.push(b'}');
        }
        Command::Join {
            name,
            connection_string,
        } => {
            b.extend_from_slice(b"{\"name\":");
            push_json_str(b, &name);
            b.extend_from_slice(b",\"connectionString\":");
            push_json_str(b, &connection_string);
            b.push(b'}');
        }
        Command::Leave { name } => {
            b.extend_from_slice(b"{\"name\":");
            push_json_str(b, &name);
            b.push(b'}');
        }
        Command::Nop => b.extend_from_slice(b"null"),
        Command::Other { .. } => match e.payload() {
            Some(p) if is_json(p) => relayout_json(p, None, b),
            _ => b.extend_from_slice(b"null"),
        },
        Command::Invalid { reason } => {
            b.extend_from_slice(b"null");
            return Some(reason);
        }
    }
    None
}

const WRITE_KEYS: [&str; 2] = ["key", "value"];
const JOIN_KEYS: [&str; 2] = ["name", "connectionString"];

/// Writes entry lines into a reused buffer. This is the hot path of `--json`: consecutive
/// entries nearly always share a command name, so its escaped form is kept, and canonical
/// write and join payloads are copied token by token instead of decoded.
struct EntryLines<'l> {
    log: &'l [u8],
    raw: bool,
    last_name: &'l [u8],
    name_json: Vec<u8>,
}

impl<'l> EntryLines<'l> {
    fn new(log: &'l [u8], raw: bool) -> Self {
        EntryLines {
            log,
            raw,
            last_name: b"",
            name_json: b"\"\"".to_vec(),
        }
    }

    fn push(&mut self, buf: &mut Vec<u8>, e: &RawEntry<'l>) {
        let canonical = e.is_canonical();
        let mut n = itoa::Buffer::new();
        buf.extend_from_slice(b"{\"type\":\"entry\",\"index\":");
        buf.extend_from_slice(n.format(e.index()).as_bytes());
        buf.extend_from_slice(b",\"term\":");
        buf.extend_from_slice(n.format(e.term()).as_bytes());
        buf.extend_from_slice(b",\"offset\":");
        buf.extend_from_slice(n.format(e.offset).as_bytes());
        buf.extend_from_slice(b",\"frame_len\":");
        buf.extend_from_slice(n.format(e.frame_len()).as_bytes());
        buf.extend_from_slice(if canonical {
            b",\"canonical\":true,\"command_name\":"
        } else {
            b",\"canonical\":false,\"command_name\":"
        });
        if e.wire.name != self.last_name {
            self.last_name = e.wire.name;
            self.name_json.clear();
            push_json_str(&mut self.name_json, &String::from_utf8_lossy(e.wire.name));
            if std::str::from_utf8(e.wire.name).is_err() {
                self.name_json
                    .extend_from_slice(b",\"command_name_base64\":");
                push_base64(&mut self.name_json, e.wire.name);
            }
        }
        buf.extend_from_slice(&self.name_json);
        buf.extend_from_slice(b",\"command\":");
        let payload = e.payload().unwrap_or(b"");
        let fast = match e.wire.name {
            b"write" => canonical_string_fields(payload, WRITE_KEYS)
                .map(|t| push_token_object(buf, &WRITE_KEYS, &t)),
            b"raft:join" => canonical_string_fields(payload, JOIN_KEYS)
                .map(|t| push_token_object(buf, &JOIN_KEYS, &t)),
            b"raft:nop" if e.payload().is_none() => {
                buf.extend_from_slice(b"null");
                Some(())
            }
            _ => None,
        };
        let error = if fast.is_some() {
            None
        } else {
            push_command(buf, e)
        };
        let mut o = Obj { buf };
        match e.payload() {
            Some(p) => push_base64(o.key("payload_base64"), p),
            None => o.key("payload_base64").extend_from_slice(b"null"),
        }
        if let Some(reason) = error {
            o.str("command_error", &reason);
        }
        if !canonical {
            o.value("quirks", &entry_quirks(e));
        }
        if self.raw {
            let start = e.offset as usize;
            let header = self.log.get(start..start + e.header.len).unwrap_or(&[]);
            push_hex(o.key("header_hex"), header);
            push_hex(o.key("body_hex"), e.body);
        }
        o.end();
    }
}

const FLUSH_AT: usize = 1 << 16;

/// Writes the JSON Lines report (see the schema in the module docs).
///
/// `progress` is called now and then with the byte offset reached.
pub fn json(out: &mut dyn Write, view: &View<'_>, progress: &mut dyn FnMut(u64)) -> io::Result<()> {
    let log = view.dd.log.bytes();
    let mut buf = Vec::with_capacity(FLUSH_AT + 4096);
    json_node(&mut buf, view.dd);
    json_conf(&mut buf, view.dd);
    json_snapshots(&mut buf, view.dd);
    json_summary(&mut buf, view.summary);
    if !view.summary_only {
        let mut lines = EntryLines::new(log, view.raw);
        for e in inspect::entries(log, view.opts).with_progress(Progress::new(&mut *progress)) {
            lines.push(&mut buf, &e);
            if buf.len() >= FLUSH_AT {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
    }
    if view.summary.is_damaged() {
        inspect::for_each_problem(log, Progress::new(progress), |err, last| {
            json_problem(&mut buf, &err, last);
            if buf.len() >= FLUSH_AT {
                out.write_all(&buf)?;
                buf.clear();
            }
            Ok::<_, io::Error>(())
        })?;
    }
    out.write_all(&buf)
}

// ---------------------------------------------------------------------------------------------
// One snapshot file in detail (--snapshot)
// ---------------------------------------------------------------------------------------------

/// One snapshot file read for `--snapshot`.
#[derive(Debug)]
pub struct SnapshotView<'a> {
    /// Its path as given.
    pub path: &'a Path,
    /// Its bytes.
    pub bytes: &'a [u8],
    /// The parse (CRC and JSON), or why the header is unreadable.
    pub parsed: Result<ParsedSnapshot, snapshot::SnapshotError>,
}

impl<'a> SnapshotView<'a> {
    /// Parses `bytes`, the content of the file at `path`.
    pub fn new(path: &'a Path, bytes: &'a [u8]) -> Self {
        SnapshotView {
            path,
            bytes,
            parsed: snapshot::parse(bytes),
        }
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
    key(out, style, "size", &format!("{} bytes", v.bytes.len()))?;
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
    o.u64("size", v.bytes.len() as u64);
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn base64_matches_the_base64_crate() {
        let mut x: u32 = 0x9e37_79b9;
        let data: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for len in 0..data.len() {
            let mut buf = b"x".to_vec();
            push_base64(&mut buf, &data[..len]);
            let want = format!(
                "x\"{}\"",
                base64::engine::general_purpose::STANDARD.encode(&data[..len])
            );
            assert_eq!(String::from_utf8(buf).unwrap(), want, "length {len}");
        }
    }

    #[test]
    fn special_bytes_finds_the_first_non_plain_byte() {
        let first = |s: &[u8; 8]| match special_bytes(u64::from_le_bytes(*s)) {
            0 => None,
            m => Some(m.trailing_zeros() / 8),
        };
        assert_eq!(first(b"abcdefgh"), None);
        assert_eq!(first(b"~ !#[]{}"), None);
        assert_eq!(first(b"abc\"efgh"), Some(3));
        assert_eq!(first(b"a\\cdefgh"), Some(1));
        assert_eq!(first(b"abcdefg\x1f"), Some(7));
        assert_eq!(first(b"\x00\"\"\"\"\"\"\""), Some(0));
        assert_eq!(first(b"abcd\xc3\xa9gh"), Some(4));
        assert_eq!(first(b"abcdef\x7f\x20"), None);
    }

    #[test]
    fn string_tokens_are_taken_only_when_they_mean_what_go_decodes() {
        let len = |s: &[u8]| json_string_token_len(s);
        assert_eq!(len(b"\"plain\" rest"), Some(7));
        assert_eq!(
            len(b"\"a long plain value with \\\"quotes\\\" in\","),
            Some(39)
        );
        assert_eq!(
            len(b"\"\\u003chtml\\u003e \\u2028 \\n\\t\\\\ \\/\""),
            Some(35)
        );
        assert_eq!(len("\"unicode é 日本 🎉\"".as_bytes()), Some(24));
        assert_eq!(
            len(b"\"\\ud83c\\udf89\""),
            None,
            "surrogates: Go may differ"
        );
        assert_eq!(len(b"\"\\uDBFF\""), None);
        assert_eq!(len(b"\"\\ue000\""), Some(8));
        assert_eq!(len(b"\"raw\x01ctrl\""), None);
        assert_eq!(len(b"\"bad \xff utf8\""), None);
        assert_eq!(len(b"\"\\x41\""), None);
        assert_eq!(len(b"\"\\u12\""), None);
        assert_eq!(len(b"\"unterminated"), None);
        assert_eq!(len(b"unquoted"), None);
    }

    #[test]
    fn canonical_fields_need_goraft_layout() {
        fn f(p: &[u8]) -> Option<[&[u8]; 2]> {
            canonical_string_fields(p, WRITE_KEYS)
        }
        let got = f(b"{\"key\":\"k\",\"value\":\"v\\u003c\"}\n").unwrap();
        assert_eq!(got, [&b"\"k\""[..], &b"\"v\\u003c\""[..]]);
        assert_eq!(f(b"{\"key\":\"k\",\"value\":\"v\"}"), None, "no newline");
        assert_eq!(f(b"{\"value\":\"v\",\"key\":\"k\"}\n"), None, "order");
        assert_eq!(f(b"{\"Key\":\"k\",\"value\":\"v\"}\n"), None, "case");
        assert_eq!(f(b"{\"key\":\"k\", \"value\":\"v\"}\n"), None, "space");
        assert_eq!(
            f(b"{\"key\":\"k\",\"value\":\"v\",\"x\":1}\n"),
            None,
            "extra key"
        );
        assert_eq!(f(b"{\"key\":\"k\",\"value\":null}\n"), None, "null");
    }

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

    #[test]
    fn decoded_cells_quote_and_escape_values() {
        use crate::format::log::{LogReader, LogWriter};
        let mut w = LogWriter::new(Vec::new());
        let value = "q\"<&>\u{fffd}\u{2028}\x01\x1b[2J\\".to_string();
        w.append(
            1,
            0,
            &Command::Write {
                key: "k y".into(),
                value,
            },
        )
        .unwrap();
        w.append_raw(2, 0, "etcd:set", Some(b"{\"a\":\"\\u2028\"}\n"))
            .unwrap();
        w.append_raw(3, 0, "etcd:raw", Some(b"\xffbin\n")).unwrap();
        w.append_raw(4, 0, "write", Some(b"[]\n")).unwrap();
        w.append(5, 1, &Command::Nop).unwrap();
        let log = w.into_inner();
        let mut cell = String::new();
        let cells: Vec<String> = LogReader::new(&log)
            .map(|e| {
                decoded_cell(&e.unwrap(), &mut cell);
                cell.clone()
            })
            .collect();
        assert_eq!(
            cells,
            [
                "key=\"k y\" value=\"q\\\"<&>\u{fffd}\\u{2028}\\u{1}\\u{1b}[2J\\\\\"",
                "{\"a\":\"\\u2028\"}",
                "(not JSON) \"\\xffbin\\n\"",
                "(invalid: expected a JSON object at payload offset 0) \"[]\\n\"",
                "",
            ]
        );
    }
}
