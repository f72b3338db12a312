//! JSON Lines (schema in the parent module's docs), written by hand into one reused buffer.

use std::io::{self, Write};

use serde::Serialize;

use super::{is_json, relayout_json, View};
use crate::datadir::{DataDir, InputKind};
use crate::format::log::{DamageKind, LogError, RawEntry};
use crate::format::snapshot::ParsedSnapshot;
use crate::inspect::{self, entry_quirks, Progress, Summary};
use crate::model::{Command, Index};
use crate::render::jsonl::{push_base64, push_hex, push_json_str, Obj};

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
    let d = &dd.dialect;
    o.str("dialect", d.dialect.name());
    o.str("dialect_how", d.how());
    let evidence: Vec<_> = d
        .evidence
        .iter()
        .map(|e| serde_json::json!({"dialect": e.points_to.name(), "what": e.what}))
        .collect();
    o.value("dialect_evidence", &evidence);
    o.bool("dialect_conflict", d.conflicts());
    o.value("server_name", &dd.server_name);
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
pub(super) fn snapshot_fields(
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

pub(crate) fn json_problem(buf: &mut Vec<u8>, err: &LogError, last: Option<Index>) {
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
    dialect: crate::format::dialect::Dialect,
    last_name: &'l [u8],
    name_json: Vec<u8>,
    /// The fast-path field names for `last_name` (write, join), if any.
    fast_keys: Option<&'static [&'static str; 2]>,
    last_is_nop: bool,
}

impl<'l> EntryLines<'l> {
    fn new(log: &'l [u8], raw: bool, dialect: crate::format::dialect::Dialect) -> Self {
        EntryLines {
            log,
            raw,
            dialect,
            last_name: b"",
            name_json: b"\"\"".to_vec(),
            fast_keys: None,
            last_is_nop: false,
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
            self.fast_keys = match e.wire.name {
                b"write" => Some(&WRITE_KEYS),
                b"raft:join" => Some(&JOIN_KEYS),
                _ => None,
            };
            self.last_is_nop = e.wire.name == b"raft:nop";
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
        let fast = match self.fast_keys {
            Some(keys) => {
                canonical_string_fields(payload, *keys).map(|t| push_token_object(buf, keys, &t))
            }
            None if self.last_is_nop && e.payload().is_none() => {
                buf.extend_from_slice(b"null");
                Some(())
            }
            None => None,
        };
        let error = if fast.is_some() {
            None
        } else {
            push_command(buf, e)
        };
        let mut o = Obj::continuing(buf);
        match e.payload() {
            Some(p) => push_base64(o.key("payload_base64"), p),
            None => o.key("payload_base64").extend_from_slice(b"null"),
        }
        if let Some(reason) = error {
            o.str("command_error", &reason);
        }
        if !canonical {
            o.value("quirks", &entry_quirks(e, self.dialect));
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

/// The lines `inspect --follow --json` starts with: node, conf and snapshots (no summary: the
/// log is still growing).
pub(crate) fn follow_header(buf: &mut Vec<u8>, dd: &DataDir) {
    json_node(buf, dd);
    json_conf(buf, dd);
    json_snapshots(buf, dd);
}

/// One entry line, as `inspect --json` writes it (without --raw).
pub(crate) fn entry_line(
    buf: &mut Vec<u8>,
    e: &RawEntry<'_>,
    dialect: crate::format::dialect::Dialect,
) {
    EntryLines::new(&[], false, dialect).push(buf, e);
}

const FLUSH_AT: usize = 1 << 16;

/// The entry lines in parts that are formatted on their own: the log cut at the summary's resume
/// points into stretches of about [`inspect::RESUME_STEP`] bytes. Part by part, in order, they
/// are what [`json_entries`] writes; the command layer formats them on several lanes
/// (`cli::parts::write_in_parts`).
pub struct EntryParts<'v, 'a> {
    view: &'v View<'a>,
}

impl<'v, 'a> EntryParts<'v, 'a> {
    /// The parts of the view's entry lines; `None` when they are one whole: with `--limit` (a
    /// limit counts across parts) or without entry lines (`--summary`).
    pub fn of(view: &'v View<'a>) -> Option<Self> {
        (view.opts.limit.is_none() && !view.summary_only).then_some(EntryParts { view })
    }

    /// How many parts there are.
    pub fn len(&self) -> usize {
        self.view.summary.resume_points.len()
    }

    /// Whether there is no part (a log without a good entry).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The byte offset in the log where part `i` ends.
    pub fn end(&self, i: usize) -> u64 {
        let points = &self.view.summary.resume_points;
        points
            .get(i + 1)
            .map_or(self.view.dd.log.bytes().len() as u64, |p| p.offset)
    }

    /// Appends part `i`'s entry lines to `buf`.
    pub fn format(&self, i: usize, buf: &mut Vec<u8>) {
        let view = self.view;
        let log = view.dd.log.bytes();
        let Some(&start) = view.summary.resume_points.get(i) else {
            return;
        };
        let mut lines = EntryLines::new(log, view.raw, view.dd.dialect());
        let entries = inspect::entries_between(log, view.opts, start, self.end(i));
        for e in entries.dialect(view.dd.dialect()) {
            lines.push(buf, &e);
        }
    }
}

/// Writes the JSON Lines report (see the schema in the module docs): [`json_head`], then
/// [`json_entries`], then [`json_problems`].
///
/// `progress` is called now and then with the byte offset reached.
pub fn json(out: &mut dyn Write, view: &View<'_>, progress: &mut dyn FnMut(u64)) -> io::Result<()> {
    json_head(out, view)?;
    json_entries(out, view, progress)?;
    json_problems(out, view, progress)
}

/// The lines before the entries: the node, its conf, its snapshots and the log's summary.
pub fn json_head(out: &mut dyn Write, view: &View<'_>) -> io::Result<()> {
    let mut buf = Vec::with_capacity(FLUSH_AT);
    json_node(&mut buf, view.dd);
    json_conf(&mut buf, view.dd);
    json_snapshots(&mut buf, view.dd);
    json_summary(&mut buf, view.summary);
    out.write_all(&buf)
}

/// The entry lines in one pass (none with `--summary`); `progress` is called now and then with
/// the byte offset reached.
pub fn json_entries(
    out: &mut dyn Write,
    view: &View<'_>,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    if view.summary_only {
        return Ok(());
    }
    let log = view.dd.log.bytes();
    let mut buf = Vec::with_capacity(FLUSH_AT + 4096);
    let mut lines = EntryLines::new(log, view.raw, view.dd.dialect());
    let entries = inspect::entries(log, view.opts).dialect(view.dd.dialect());
    for e in entries.with_progress(Progress::new(progress)) {
        lines.push(&mut buf, &e);
        if buf.len() >= FLUSH_AT {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}

/// The lines after the entries: one per damaged stretch of a damaged log; `progress` is called
/// now and then with the byte offset reached.
pub fn json_problems(
    out: &mut dyn Write,
    view: &View<'_>,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    if !view.summary.is_damaged() {
        return Ok(());
    }
    let mut buf = Vec::with_capacity(FLUSH_AT + 4096);
    inspect::for_each_problem(
        view.dd.log.bytes(),
        view.dd.dialect(),
        Progress::new(progress),
        |err, last| {
            json_problem(&mut buf, &err, last);
            if buf.len() >= FLUSH_AT {
                out.write_all(&buf)?;
                buf.clear();
            }
            Ok::<_, io::Error>(())
        },
    )?;
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
