//! `replay` output: a header saying what was applied and from where, then the sections asked for
//! (the state, one key, a key's history, membership over time, stats), as tables with escaped
//! values or as JSON Lines.
//!
//! JSON Lines schema (fields are only ever added):
//! - `{"type":"replay", path, name, start, unused_snapshot?, goraft_snapshot?, first_applied,
//!   last_applied, last_term, entries_applied, skipped, point, at, note, committed?, stop,
//!   damage?, irregular, irregular_count}` first, once per replay;
//!   plus `machine` (`seaweedfs` or `unknown`) and `machine_reason` when the state is not
//!   raftd's key-value map;
//! - for a SeaweedFS master, `{"type":"seaweedfs", max_volume_id, topology_id, index}` instead of
//!   the `kv` lines (none for an unknown state);
//! - `{"type":"kv", key, value}` per key, sorted, with `key_base64` / `value_base64` added where the
//!   bytes are not valid UTF-8; with `--key` also `known`, `set_at_index`, `set_at_term`, `set_from_snapshot`, `changes`
//!   (`value` is null when the key is not set or unknown);
//! - `{"type":"history", key, index, term, old, new, from_snapshot}` per change;
//! - `{"type":"member", index, term, change, name, connection_string, effective, members}` per
//!   membership event, then `{"type":"members", index, members:[{name, connection_string}]}`;
//! - `{"type":"stats", keys, state_bytes, entries, writes, overwrites, joins, leaves, nops,
//!   unknown, invalid, log_bytes, written_bytes, per_term:[{term, entries, writes, first_index,
//!   last_index}], volume_ids?}` (`volume_ids`: MaxVolumeId entries, when there are any or the
//!   machine is not raftd's).

use std::io::{self, Write};

use comfy_table::{presets, Cell, CellAlignment, Table};
use serde::Serialize;

use super::escape_terminal;
use super::jsonl::Obj;
use super::machine;
use crate::diff::{Commit, Evidence};
use crate::model::Index;
use crate::replay::{
    KeyState, Machine, MemberChangeKind, Replay, SnapshotState, Start, Stop, UnusedReason,
};

/// Which sections to print. With none of them the whole state is listed.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    /// `--key K`.
    pub key: Option<String>,
    /// `--history K` (the key is the replay's tracked key).
    pub history: bool,
    /// `--membership`.
    pub membership: bool,
    /// `--stats`.
    pub stats: bool,
}

impl Sections {
    fn state(&self) -> bool {
        self.key.is_none() && !self.history && !self.membership && !self.stats
    }
}

/// How a `--committed` replay chose its point.
#[derive(Debug, Clone)]
pub struct Committed<'a> {
    /// The committed prefix's last index.
    pub index: Index,
    /// The evidence that proved it.
    pub evidence: Evidence,
    /// All the bounds found.
    pub commit: &'a Commit,
    /// Labels of the nodes compared, in order.
    pub labels: Vec<String>,
    /// The node replayed.
    pub source: usize,
}

impl Committed<'_> {
    fn detail(&self) -> String {
        let label = |k: usize| self.labels.get(k).cloned().unwrap_or_default();
        match (self.evidence, self.commit.majority) {
            (Evidence::Majority, Some(m)) => format!(
                "entry {} (term {}) is on {} of {} nodes ({}), and by Log Matching so is every entry before it",
                m.index,
                m.term,
                m.holders,
                m.cluster_size,
                crate::diff::members_of(m.nodes).map(label).collect::<Vec<_>>().join(", ")
            ),
            (Evidence::Snapshot, _) => format!("the snapshot of {}", label(self.source)),
            _ => format!(
                "the conf commitIndex of {} (a stale lower bound: goraft writes conf only at membership changes)",
                label(self.source)
            ),
        }
    }
}

const NOTE_ALL: &str =
    "goraft does not record the commit index, so every entry in the log was applied (--at INDEX or --committed choose a point)";

/// The largest number of characters of a value shown in a table cell.
const CLIP: usize = 60;

fn clip(s: &str) -> String {
    super::escape_clipped(s, CLIP).unwrap_or_else(|head| format!("{head}… ({} bytes)", s.len()))
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_MARKDOWN);
    t.set_header(header.iter().copied().map(Cell::new));
    t
}

fn right(t: &mut Table, cols: &[usize]) {
    for &c in cols {
        if let Some(col) = t.column_mut(c) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn source(r: &Replay) -> String {
    let p = escape_terminal(&r.path.to_string_lossy()).into_owned();
    match &r.name {
        Some(n) => format!("{p} (name {})", escape_terminal(n)),
        None => p,
    }
}

fn point(r: &Replay, committed: Option<&Committed<'_>>) -> String {
    if let Some(c) = committed {
        return format!(
            "the committed prefix, up to index {}: {}",
            c.index,
            c.detail()
        );
    }
    match (r.at, &r.stop) {
        (Some(at), Stop::At) => format!("--at {at}: entries after index {at} were not applied"),
        (Some(at), _) if r.last_applied() < at => {
            format!(
                "--at {at}: the log ends at index {}, before it",
                r.last_applied()
            )
        }
        (Some(at), _) => format!("--at {at}"),
        (None, _) => NOTE_ALL.to_string(),
    }
}

/// Writes the human form.
pub fn human(
    out: &mut dyn Write,
    r: &Replay,
    sections: &Sections,
    committed: Option<&Committed<'_>>,
) -> io::Result<()> {
    human_summary(out, r, committed)?;
    human_state(out, r, sections)?;
    human_key(out, r, sections)?;
    human_history(out, r, sections)?;
    human_membership(out, r, sections)?;
    human_stats(out, r, sections)?;
    machine::keep_line(out, r)
}

/// Where the replay started, what it applied, where it stopped, and any damage.
fn human_summary(
    out: &mut dyn Write,
    r: &Replay,
    committed: Option<&Committed<'_>>,
) -> io::Result<()> {
    writeln!(out, "replay of {}", source(r))?;
    match &r.start {
        Start::Empty => writeln!(out, "  start    empty state")?,
        Start::Snapshot(s) => {
            let state = match &s.state {
                SnapshotState::Loaded { keys } => format!("{keys} keys loaded"),
                SnapshotState::Master {
                    max_volume_id,
                    topology_id,
                } => format!(
                    "SeaweedFS master state loaded (maxVolumeId {max_volume_id}, topologyId {})",
                    escape_terminal(topology_id)
                ),
                SnapshotState::Opaque { reason } => format!(
                    "state opaque ({}): only keys written after it are known; membership and counts are complete",
                    escape_terminal(reason)
                ),
            };
            writeln!(
                out,
                "  start    snapshot {} (index {}, term {}): {state}",
                escape_terminal(&s.file),
                s.last_index,
                s.last_term
            )?;
        }
    }
    if let Some(u) = &r.unused_snapshot {
        let why = match u.reason {
            UnusedReason::AtIsEarlier => "--at is before it and the log still starts at index 1",
            UnusedReason::OpaqueState => "its state is opaque and the log still starts at index 1",
        };
        writeln!(
            out,
            "  snapshot {} (index {}) not used: {why}",
            escape_terminal(&u.file),
            u.last_index
        )?;
    }
    if let Some(g) = &r.goraft_snapshot {
        writeln!(
            out,
            "  goraft   would load snapshot {} instead (it picks the lexicographically last name)",
            escape_terminal(g)
        )?;
    }
    if r.skipped > 0 {
        writeln!(
            out,
            "  skipped  {} entries covered by the snapshot",
            r.skipped
        )?;
    }
    match r.first_applied {
        Some(first) => writeln!(
            out,
            "  applied  index {first}..{}: {} entries, last term {}",
            r.last_applied(),
            r.stats.entries,
            r.last_term.unwrap_or(0)
        )?,
        None => writeln!(out, "  applied  no entries")?,
    }
    writeln!(out, "  point    {}", point(r, committed))?;
    if let Some(d) = r.damage() {
        let last = d
            .last_index_after
            .map_or(String::new(), |i| format!(", up to index {i}"));
        writeln!(
            out,
            "  damage   {}; {} the log there on start-up: {} bytes and {} entries after it are discarded{last}{}",
            d.error,
            match r.dialect {
                crate::format::dialect::Dialect::Goraft => "goraft truncates",
                crate::format::dialect::Dialect::Seaweedfs => "goraft and seaweedfs/raft truncate",
            },
            d.bytes_after,
            d.entries_after,
            if d.more_damage > 0 { format!(" ({} more damaged stretches)", d.more_damage) } else { String::new() }
        )?;
    }
    if let Some(i) = r.irregular.first() {
        writeln!(
            out,
            "  warning  index {} at byte {} where {} was expected ({} entries do not step by one; applied in file order, as goraft does)",
            i.found, i.offset, i.expected, r.irregular_count
        )?;
    }
    Ok(())
}

/// The state's keys and values (`--state`).
fn human_state(out: &mut dyn Write, r: &Replay, sections: &Sections) -> io::Result<()> {
    if sections.state() && !machine::human_state(out, r)? {
        writeln!(out)?;
        let mut t = table(&["Key", "Value"]);
        for (k, v) in r.kv.sorted() {
            t.add_row(vec![clip(k), clip(v)]);
        }
        if r.kv.data.is_empty() {
            writeln!(out, "no keys")?;
        } else {
            writeln!(out, "{t}")?;
            let n = r.kv.data.len();
            writeln!(out, "{n} key{}", if n == 1 { "" } else { "s" })?;
        }
        if r.opaque() {
            writeln!(
                out,
                "only keys written after the snapshot are listed: its state is opaque"
            )?;
        }
    }
    Ok(())
}

/// One key's value and when it was set (`--key`).
fn human_key(out: &mut dyn Write, r: &Replay, sections: &Sections) -> io::Result<()> {
    if let Some(key) = &sections.key {
        writeln!(out)?;
        let last = r.history.as_ref().and_then(|h| h.changes.last());
        let changes = r.history.as_ref().map_or(0, |h| h.changes.len());
        let value = match (machine::master_key(r, key), r.get(key)) {
            (Some(Some(v)), _) => escape_terminal(&v).into_owned(),
            (Some(None), _) => "(not set)".to_string(),
            (None, KeyState::Value(v)) => escape_terminal(v).into_owned(),
            (None, KeyState::Missing) => "(not set)".to_string(),
            (None, KeyState::Unknown) => "(unknown: the snapshot's state is opaque)".to_string(),
        };
        let since = match last {
            Some(c) if c.from_snapshot => format!("snapshot (index {})", c.index),
            Some(c) => format!("index {} (term {})", c.index, c.term),
            None => "-".to_string(),
        };
        let mut t = table(&["Key", "Value", "Set at", "Changes"]);
        t.add_row(vec![
            escape_terminal(key).into_owned(),
            value,
            since,
            changes.to_string(),
        ]);
        right(&mut t, &[3]);
        writeln!(out, "{t}")?;
    }
    Ok(())
}

/// One key's changes (`--history`).
fn human_history(out: &mut dyn Write, r: &Replay, sections: &Sections) -> io::Result<()> {
    if sections.history {
        if let Some(h) = &r.history {
            writeln!(out)?;
            writeln!(out, "history of {}", escape_terminal(&h.key))?;
            let mut t = table(&["Index", "Term", "Old", "New"]);
            for c in &h.changes {
                let old = match (&c.old, c.from_snapshot) {
                    (_, true) => "(from the snapshot)".to_string(),
                    (Some(o), _) => clip(o),
                    (None, _) => "(not set)".to_string(),
                };
                t.add_row(vec![
                    c.index.to_string(),
                    c.term.to_string(),
                    old,
                    clip(&c.new),
                ]);
            }
            right(&mut t, &[0, 1]);
            if h.changes.is_empty() {
                writeln!(out, "no change")?;
            } else {
                writeln!(out, "{t}")?;
            }
        }
    }
    Ok(())
}

/// The membership changes and the members at the end (`--membership`).
fn human_membership(out: &mut dyn Write, r: &Replay, sections: &Sections) -> io::Result<()> {
    if sections.membership {
        writeln!(out)?;
        let mut t = table(&["Index", "Term", "Change", "Name", "URL", "Members"]);
        for m in &r.membership {
            let change = match (m.kind, m.effective) {
                (MemberChangeKind::Join, true) => "join",
                (MemberChangeKind::Join, false) => "join (already a member)",
                (MemberChangeKind::Leave, true) => "leave",
                (MemberChangeKind::Leave, false) => "leave (not a member)",
                (MemberChangeKind::Snapshot, _) => "in snapshot",
            };
            t.add_row(vec![
                m.index.to_string(),
                m.term.to_string(),
                change.to_string(),
                escape_terminal(&m.name).into_owned(),
                m.connection_string
                    .as_deref()
                    .map_or(String::new(), |c| escape_terminal(c).into_owned()),
                m.members.to_string(),
            ]);
        }
        right(&mut t, &[0, 1, 5]);
        if r.membership.is_empty() {
            writeln!(out, "no membership change")?;
        } else {
            writeln!(out, "{t}")?;
        }
        let names: Vec<String> =
            r.kv.members
                .keys()
                .map(|n| escape_terminal(n).into_owned())
                .collect();
        writeln!(
            out,
            "members at index {}: {}",
            r.last_applied(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )?;
    }
    Ok(())
}

/// The counts and the per-term table (`--stats`).
fn human_stats(out: &mut dyn Write, r: &Replay, sections: &Sections) -> io::Result<()> {
    if sections.stats {
        writeln!(out)?;
        let s = &r.stats;
        let mut t = table(&["Stat", "Value"]);
        let mut rows: Vec<(&str, u64)> = vec![
            ("keys", r.kv.data.len() as u64),
            ("state bytes (keys + values)", r.kv.state_bytes()),
            ("entries applied", s.entries),
            ("writes", s.writes),
            ("overwrites", s.overwrites),
            ("joins", s.joins),
            ("leaves", s.leaves),
            ("nops", s.nops),
            ("unknown commands", s.unknown),
            ("undecodable commands", s.invalid),
            ("log bytes applied", s.log_bytes),
            ("bytes written (keys + values)", s.written_bytes),
        ];
        if r.machine != Machine::Raftd || s.volume_ids > 0 {
            rows.push(("MaxVolumeId commands", s.volume_ids));
        }
        for (k, v) in rows {
            t.add_row(vec![k.to_string(), v.to_string()]);
        }
        right(&mut t, &[1]);
        writeln!(out, "{t}")?;
        let mut t = table(&["Term", "Entries", "Writes", "Indexes"]);
        for p in &s.per_term {
            t.add_row(vec![
                p.term.to_string(),
                p.entries.to_string(),
                p.writes.to_string(),
                format!("{}..{}", p.first_index, p.last_index),
            ]);
        }
        right(&mut t, &[0, 1, 2]);
        if !s.per_term.is_empty() {
            writeln!(out)?;
            writeln!(out, "{t}")?;
        }
    }
    Ok(())
}

/// Writes one JSON Lines object with `"type"` first, then the fields of `value` (an object; any
/// other JSON value goes in a `"value"` field).
pub(crate) fn line<T: Serialize>(out: &mut dyn Write, ty: &str, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    write!(out, "{{\"type\":\"{ty}\"")?;
    match body.strip_prefix(b"{").and_then(|b| b.strip_suffix(b"}")) {
        Some([]) => {}
        Some(fields) => {
            out.write_all(b",")?;
            out.write_all(fields)?;
        }
        None => {
            out.write_all(b",\"value\":")?;
            out.write_all(&body)?;
        }
    }
    out.write_all(b"}\n")
}

/// Base64 of bytes that are not valid UTF-8 (raftd's values always are: Go replaced invalid
/// bytes with U+FFFD before they were stored), for the `*_base64` fields.
pub(crate) fn b64_if_not_utf8(b: &[u8]) -> Option<String> {
    use base64::Engine as _;
    std::str::from_utf8(b)
        .is_err()
        .then(|| base64::engine::general_purpose::STANDARD.encode(b))
}

#[derive(Serialize)]
struct KvLine<'a> {
    key: &'a str,
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    known: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    set_at_index: Option<Index>,
    #[serde(skip_serializing_if = "Option::is_none")]
    set_at_term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    set_from_snapshot: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<usize>,
}

impl<'a> KvLine<'a> {
    fn new(key: &'a str, value: Option<&'a str>) -> Self {
        KvLine {
            key,
            value,
            key_base64: b64_if_not_utf8(key.as_bytes()),
            value_base64: value.and_then(|v| b64_if_not_utf8(v.as_bytes())),
            known: None,
            set_at_index: None,
            set_at_term: None,
            set_from_snapshot: None,
            changes: None,
        }
    }
}

/// The state's `kv` lines in parts of [`KvParts::CHUNK`] pairs, formatted on their own: part by
/// part, in order, they are byte for byte what `line()` writes for each pair in key order.
/// The command layer formats them on several lanes (`cli::parts::write_in_parts`);
/// [`json_state`] one after the other.
///
/// Why not `line()`: writing 250,000 lines one by one through serde took a sixth of a large
/// replay.
pub struct KvParts<'r> {
    pairs: Pairs<'r>,
}

/// The pairs in key order: the state's packed form, or a sorted list of the map's pairs.
enum Pairs<'r> {
    Packed(&'r crate::replay::kv::Packed),
    Sorted(Vec<(&'r str, &'r str)>),
}

impl<'r> KvParts<'r> {
    /// Pairs a part.
    pub const CHUNK: usize = 1 << 13;

    /// The `kv` lines of the replay's state; `None` when the state is not asked for or is not
    /// raftd's key-value map (a SeaweedFS master's state is one line).
    pub fn of(r: &'r Replay, sections: &Sections) -> Option<Self> {
        if !sections.state() || !matches!(r.machine, Machine::Raftd) {
            return None;
        }
        let pairs = match r.kv.data.packed() {
            Some(packed) => Pairs::Packed(packed),
            None => Pairs::Sorted(r.kv.sorted()),
        };
        Some(KvParts { pairs })
    }

    fn pairs(&self) -> usize {
        match &self.pairs {
            Pairs::Packed(p) => p.len(),
            Pairs::Sorted(v) => v.len(),
        }
    }

    /// How many parts there are.
    pub fn len(&self) -> usize {
        self.pairs().div_ceil(Self::CHUNK)
    }

    /// Whether there is no part (an empty state).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends part `i`'s lines to `buf`.
    pub fn format(&self, i: usize, buf: &mut Vec<u8>) {
        let range = i * Self::CHUNK..((i + 1) * Self::CHUNK).min(self.pairs());
        match &self.pairs {
            Pairs::Packed(p) => format_kv(buf, range, &|i| p.pair(i)),
            Pairs::Sorted(v) => format_kv(buf, range, &|i| v.get(i).copied().unwrap_or(("", ""))),
        }
    }
}

/// Appends the `kv` lines of pairs `range` to `buf`, as [`line()`] writes them.
fn format_kv<'a>(
    buf: &mut Vec<u8>,
    range: std::ops::Range<usize>,
    pair: &impl Fn(usize) -> (&'a str, &'a str),
) {
    for i in range {
        let (k, v) = pair(i);
        let mut o = Obj::new(buf, "kv");
        o.str("key", k);
        o.str("value", v);
        o.end();
    }
}

#[derive(Serialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
enum StartJson<'a> {
    Empty,
    Snapshot {
        file: &'a str,
        last_index: Index,
        last_term: u64,
        state: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        keys: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    },
}

#[derive(Serialize)]
struct Unused<'a> {
    file: &'a str,
    last_index: Index,
    reason: &'static str,
}

#[derive(Serialize)]
struct DamageJson {
    offset: u64,
    kind: &'static str,
    message: String,
    bytes_after: u64,
    entries_after: u64,
    last_index_after: Option<Index>,
    more_damage: u64,
}

#[derive(Serialize)]
struct IrregularJson {
    offset: u64,
    expected: Index,
    found: Index,
}

#[derive(Serialize)]
struct CommittedJson {
    index: Index,
    evidence: &'static str,
    node: String,
    detail: String,
}

#[derive(Serialize)]
struct Header<'a> {
    path: String,
    name: Option<&'a str>,
    start: StartJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unused_snapshot: Option<Unused<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    goraft_snapshot: Option<&'a str>,
    first_applied: Option<Index>,
    last_applied: Index,
    last_term: Option<u64>,
    entries_applied: u64,
    skipped: u64,
    point: &'static str,
    at: Option<Index>,
    note: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    committed: Option<CommittedJson>,
    stop: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    damage: Option<DamageJson>,
    irregular: Vec<IrregularJson>,
    irregular_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    machine: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    machine_reason: Option<&'a str>,
}

/// Writes the JSON Lines form: [`json_header`], [`json_state`], then [`json_sections`].
pub fn json(
    out: &mut dyn Write,
    r: &Replay,
    sections: &Sections,
    committed: Option<&Committed<'_>>,
) -> io::Result<()> {
    json_header(out, r, committed)?;
    json_state(out, r, sections)?;
    json_sections(out, r, sections)
}

/// The sections after the state: the key, its history, membership and stats, as asked.
pub fn json_sections(out: &mut dyn Write, r: &Replay, sections: &Sections) -> io::Result<()> {
    json_key(out, r, sections)?;
    json_history(out, r, sections)?;
    json_membership(out, r, sections)?;
    json_stats(out, r, sections)
}

/// The `replay` line: where the replay started, what it applied and where it stopped.
pub fn json_header(
    out: &mut dyn Write,
    r: &Replay,
    committed: Option<&Committed<'_>>,
) -> io::Result<()> {
    let start = match &r.start {
        Start::Empty => StartJson::Empty,
        Start::Snapshot(s) => {
            let (state, keys, reason) = match &s.state {
                SnapshotState::Loaded { keys } => ("loaded", Some(*keys), None),
                SnapshotState::Master { .. } => ("seaweedfs", None, None),
                SnapshotState::Opaque { reason } => ("opaque", None, Some(reason.as_str())),
            };
            StartJson::Snapshot {
                file: &s.file,
                last_index: s.last_index,
                last_term: s.last_term,
                state,
                keys,
                reason,
            }
        }
    };
    let header = Header {
        path: r.path.to_string_lossy().into_owned(),
        name: r.name.as_deref(),
        start,
        unused_snapshot: r.unused_snapshot.as_ref().map(|u| Unused {
            file: &u.file,
            last_index: u.last_index,
            reason: match u.reason {
                UnusedReason::AtIsEarlier => "at-is-earlier",
                UnusedReason::OpaqueState => "opaque-state",
            },
        }),
        goraft_snapshot: r.goraft_snapshot.as_deref(),
        first_applied: r.first_applied,
        last_applied: r.last_applied(),
        last_term: r.last_term,
        entries_applied: r.stats.entries,
        skipped: r.skipped,
        point: match (committed, r.at) {
            (Some(_), _) => "committed",
            (None, Some(_)) => "at",
            (None, None) => "end-of-log",
        },
        at: r.at,
        note: point(r, committed),
        committed: committed.map(|c| CommittedJson {
            index: c.index,
            evidence: c.evidence.code(),
            node: c.labels.get(c.source).cloned().unwrap_or_default(),
            detail: c.detail(),
        }),
        stop: match r.stop {
            Stop::EndOfLog => "end-of-log",
            Stop::At => "at",
            Stop::Damage(_) => "damage",
        },
        damage: r.damage().map(|d| DamageJson {
            offset: d.error.offset,
            kind: d.error.kind.code(),
            message: d.error.to_string(),
            bytes_after: d.bytes_after,
            entries_after: d.entries_after,
            last_index_after: d.last_index_after,
            more_damage: d.more_damage,
        }),
        irregular: r
            .irregular
            .iter()
            .map(|i| IrregularJson {
                offset: i.offset,
                expected: i.expected,
                found: i.found,
            })
            .collect(),
        irregular_count: r.irregular_count,
        machine: machine::header_fields(r).0,
        machine_reason: machine::header_fields(r).1,
    };
    line(out, "replay", &header)?;
    Ok(())
}

/// The state when it is asked for: the `kv` lines ([`KvParts`], one part after the other), or a
/// SeaweedFS master's state line.
pub fn json_state(out: &mut dyn Write, r: &Replay, sections: &Sections) -> io::Result<()> {
    match KvParts::of(r, sections) {
        Some(kv) => {
            let mut buf = Vec::new();
            for i in 0..kv.len() {
                kv.format(i, &mut buf);
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        None if sections.state() => {
            machine::json_state(out, r)?;
        }
        None => {}
    }
    Ok(())
}

/// The `key` line (`--key`).
fn json_key(out: &mut dyn Write, r: &Replay, sections: &Sections) -> io::Result<()> {
    if let Some(key) = &sections.key {
        let last = r.history.as_ref().and_then(|h| h.changes.last());
        let master = machine::master_key(r, key);
        let (value, known) = match (&master, r.get(key)) {
            (Some(v), _) => (v.as_deref(), true),
            (None, KeyState::Value(v)) => (Some(v), true),
            (None, KeyState::Missing) => (None, true),
            (None, KeyState::Unknown) => (None, false),
        };
        let mut l = KvLine::new(key, value);
        l.known = Some(known);
        l.set_at_index = last.map(|c| c.index);
        l.set_at_term = last.map(|c| c.term);
        l.set_from_snapshot = last.map(|c| c.from_snapshot);
        l.changes = Some(r.history.as_ref().map_or(0, |h| h.changes.len()));
        line(out, "kv", &l)?;
    }
    Ok(())
}

/// The `change` lines of one key (`--history`).
fn json_history(out: &mut dyn Write, r: &Replay, sections: &Sections) -> io::Result<()> {
    if sections.history {
        #[derive(Serialize)]
        struct H<'a> {
            key: &'a str,
            index: Index,
            term: u64,
            old: Option<&'a str>,
            new: &'a str,
            from_snapshot: bool,
        }
        if let Some(h) = &r.history {
            for c in &h.changes {
                line(
                    out,
                    "history",
                    &H {
                        key: &h.key,
                        index: c.index,
                        term: c.term,
                        old: c.old.as_deref(),
                        new: &c.new,
                        from_snapshot: c.from_snapshot,
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// The membership lines (`--membership`).
fn json_membership(out: &mut dyn Write, r: &Replay, sections: &Sections) -> io::Result<()> {
    if sections.membership {
        #[derive(Serialize)]
        struct M<'a> {
            index: Index,
            term: u64,
            change: &'static str,
            name: &'a str,
            connection_string: Option<&'a str>,
            effective: bool,
            members: usize,
        }
        for m in &r.membership {
            line(
                out,
                "member",
                &M {
                    index: m.index,
                    term: m.term,
                    change: match m.kind {
                        MemberChangeKind::Join => "join",
                        MemberChangeKind::Leave => "leave",
                        MemberChangeKind::Snapshot => "snapshot",
                    },
                    name: &m.name,
                    connection_string: m.connection_string.as_deref(),
                    effective: m.effective,
                    members: m.members,
                },
            )?;
        }
        #[derive(Serialize)]
        struct P<'a> {
            name: &'a str,
            connection_string: &'a str,
        }
        #[derive(Serialize)]
        struct Ms<'a> {
            index: Index,
            members: Vec<P<'a>>,
        }
        let members =
            r.kv.members
                .iter()
                .map(|(name, cs)| P {
                    name,
                    connection_string: cs,
                })
                .collect();
        line(
            out,
            "members",
            &Ms {
                index: r.last_applied(),
                members,
            },
        )?;
    }
    Ok(())
}

/// The `stats` line (`--stats`).
fn json_stats(out: &mut dyn Write, r: &Replay, sections: &Sections) -> io::Result<()> {
    if sections.stats {
        #[derive(Serialize)]
        struct T {
            term: u64,
            entries: u64,
            writes: u64,
            first_index: Index,
            last_index: Index,
        }
        #[derive(Serialize)]
        struct S {
            keys: usize,
            state_bytes: u64,
            entries: u64,
            writes: u64,
            overwrites: u64,
            joins: u64,
            leaves: u64,
            nops: u64,
            unknown: u64,
            invalid: u64,
            log_bytes: u64,
            written_bytes: u64,
            per_term: Vec<T>,
            #[serde(skip_serializing_if = "Option::is_none")]
            volume_ids: Option<u64>,
        }
        let s = &r.stats;
        line(
            out,
            "stats",
            &S {
                keys: r.kv.data.len(),
                state_bytes: r.kv.state_bytes(),
                entries: s.entries,
                writes: s.writes,
                overwrites: s.overwrites,
                joins: s.joins,
                leaves: s.leaves,
                nops: s.nops,
                unknown: s.unknown,
                invalid: s.invalid,
                log_bytes: s.log_bytes,
                written_bytes: s.written_bytes,
                per_term: s
                    .per_term
                    .iter()
                    .map(|p| T {
                        term: p.term,
                        entries: p.entries,
                        writes: p.writes,
                        first_index: p.first_index,
                        last_index: p.last_index,
                    })
                    .collect(),
                volume_ids: (r.machine != Machine::Raftd || s.volume_ids > 0)
                    .then_some(s.volume_ids),
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
