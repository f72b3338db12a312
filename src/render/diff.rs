//! `diff` output: the nodes, where their logs part ways, the conflicting entries side by side,
//! the tails and whether they can be committed, the commit evidence, broken invariants, conf,
//! snapshot, membership and (with `--state`) key-by-key differences. Human text is coloured on a
//! terminal (never the tables); JSON Lines otherwise.
//!
//! JSON Lines schema (fields are only ever added):
//! - `{"type":"node", id, path, at, name, first_index, last_index, last_term, entries,
//!   out_of_order, damage, snapshot, conf, conf_error, members, removed?, replayed_to}` per
//!   node (`removed`, `[{name, index}]` of the members a `raft:leave` removed, only when any);
//! - `{"type":"common", from, to}` (null when the nodes differ from the first index);
//! - `{"type":"pair", a, b, status: identical|conflict|ends|missing, index, node}`;
//! - `{"type":"conflict", index, cells:[{node, term, command, key?, value?, name?,
//!   connection_string?, payload?, payload_base64?, offset} | {node, absent}]}` per conflicting
//!   index kept;
//! - `{"type":"tail", nodes, from, to, min_term, max_term, holders, status:
//!   on-majority|covered-by-snapshot|covered-by-conf-commit-index|not-on-majority|overwritten,
//!   by_term?}`;
//! - `{"type":"commit", index, evidence, node, cluster_size, majority, conf, snapshot}`;
//! - `{"type":"finding", severity, code, node?, file?, offset?, index?, message, goraft?}` for each
//!   broken invariant (errors and warnings of `check::cluster`);
//! - `{"type":"state", key, values:[{node, value}]}` per differing key with `--state`;
//! - `{"type":"summary", identical, conflicting_indexes, conf_differs, snapshots_differ,
//!   membership_differs, state_keys_differ, state_keys_same}` last.

use std::collections::BTreeSet;
use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use comfy_table::{presets, Cell as TableCell, CellAlignment, Table};
use serde::Serialize;

use super::escape_terminal;
use super::replay::{b64_if_not_utf8, line};
use crate::check::{Finding, Severity};
use crate::diff::{
    members_of, span, Absent, Cell, Divergence, Evidence, NodeSummary, Nodes, PairDiff, TailStatus,
};
use crate::format::command;
use crate::model::{Command, Entry, Index};

mod json_lines;
pub use json_lines::*;

/// The short id of node `k` in tables: A, B, C ... then n27, n28 ...
pub fn node_id(k: usize) -> String {
    match u8::try_from(k) {
        Ok(b) if b < 26 => char::from(b'A' + b).to_string(),
        _ => format!("n{}", k + 1),
    }
}

struct Paint(bool);

impl Paint {
    fn paint(&self, style: Style, text: impl std::fmt::Display) -> String {
        if self.0 {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    }
    fn title(&self, t: &str) -> String {
        self.paint(Style::new().bold(), t)
    }
    fn bad(&self, t: impl std::fmt::Display) -> String {
        self.paint(AnsiColor::Red.on_default().bold(), t)
    }
    fn good(&self, t: impl std::fmt::Display) -> String {
        self.paint(AnsiColor::Green.on_default(), t)
    }
    fn maybe(&self, t: impl std::fmt::Display) -> String {
        self.paint(AnsiColor::Yellow.on_default(), t)
    }
}

fn ids(nodes: Nodes) -> String {
    members_of(nodes)
        .map(node_id)
        .collect::<Vec<_>>()
        .join(", ")
}

const CLIP: usize = 40;

fn clip(s: &str) -> String {
    super::escape_clipped(s, CLIP).unwrap_or_else(|head| format!("{head}…"))
}

/// A one-line, terminal-safe description of an entry: `t1 write key = value`.
pub fn describe(e: &Entry) -> String {
    let cmd = command::decode(e.name.as_bytes(), e.payload.as_deref());
    let what = match cmd {
        Command::Write { key, value } => format!("write {} = {}", clip(&key), clip(&value)),
        Command::Join {
            name,
            connection_string,
        } => format!("raft:join {} {}", clip(&name), clip(&connection_string)),
        Command::Leave { name } => format!("raft:leave {}", clip(&name)),
        Command::Nop => "raft:nop".to_string(),
        Command::Other { .. } => format!(
            "{} ({} payload bytes)",
            clip(&e.name),
            e.payload.as_ref().map_or(0, Vec::len)
        ),
        Command::Invalid { reason } => {
            format!("{} (undecodable: {})", clip(&e.name), clip(&reason))
        }
    };
    format!("t{} {what}", e.term)
}

fn absent_text(a: Absent) -> &'static str {
    match a {
        Absent::Covered => "(covered by its snapshot)",
        Absent::Missing => "(no entry)",
        Absent::Beyond => "(after its end)",
    }
}

fn range(n: &NodeSummary) -> String {
    match (n.first_index, n.last_index) {
        (Some(f), Some(l)) => format!(
            "index {f}..{l}, {} entries, last term {}",
            n.entries,
            n.last_term.unwrap_or(0)
        ),
        _ => "no entries".to_string(),
    }
}

fn set(s: &BTreeSet<String>) -> String {
    let v: Vec<String> = s.iter().map(|n| escape_terminal(n).into_owned()).collect();
    format!("{{{}}}", v.join(", "))
}

/// Writes a per-node comparison line: "same on every node" or each node's value.
fn per_node(
    out: &mut dyn Write,
    p: &Paint,
    what: &str,
    nodes: &[NodeSummary],
    value: impl Fn(&NodeSummary) -> String,
    differs: bool,
) -> io::Result<()> {
    if !differs {
        let v = nodes.first().map(&value).unwrap_or_default();
        return writeln!(out, "  {what:<12} {v} on every node");
    }
    let each: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(k, n)| format!("{} {}", node_id(k), value(n)))
        .collect();
    writeln!(out, "  {what:<12} {}: {}", p.bad("differ"), each.join("; "))
}

/// Writes the human form; `findings` are the broken invariants to list (errors and warnings).
pub fn human(
    out: &mut dyn Write,
    d: &Divergence,
    findings: &[Finding],
    color: bool,
) -> io::Result<()> {
    let p = Paint(color);
    human_nodes(out, d, &p)?;
    human_log(out, d, &p)?;
    human_conflicts(out, d, &p)?;
    human_tails(out, d, &p)?;
    human_commit(out, d, &p)?;
    human_invariants(out, &p, findings)?;
    human_files(out, d, &p)?;
    human_state(out, d, &p)?;
    human_result(out, d, &p)?;
    Ok(())
}

/// The nodes compared, each with its range and damage.
fn human_nodes(out: &mut dyn Write, d: &Divergence, p: &Paint) -> io::Result<()> {
    let nodes = &d.nodes;
    writeln!(
        out,
        "{}",
        p.title(&format!("diff of {} nodes", nodes.len()))
    )?;
    for (k, n) in nodes.iter().enumerate() {
        let name = n
            .name
            .as_deref()
            .map_or(String::new(), |s| format!(" (name {})", escape_terminal(s)));
        writeln!(
            out,
            "  {}  {}{name}: {}",
            node_id(k),
            escape_terminal(&n.label()),
            range(n)
        )?;
        if let Some(e) = &n.damage {
            writeln!(
                out,
                "     {}: {e}; {} the log there on start-up, so nothing after it is compared",
                p.bad("damaged"),
                match n.dialect {
                    crate::format::dialect::Dialect::Goraft => "goraft truncates",
                    crate::format::dialect::Dialect::Seaweedfs =>
                        "goraft and seaweedfs/raft truncate",
                }
            )?;
        }
        if n.out_of_order > 0 {
            writeln!(
                out,
                "     {} entries whose index does not rise were not compared",
                n.out_of_order
            )?;
        }
    }
    Ok(())
}

/// The common prefix and how each pair of nodes differs.
fn human_log(out: &mut dyn Write, d: &Divergence, p: &Paint) -> io::Result<()> {
    let nodes = &d.nodes;
    writeln!(out)?;
    writeln!(out, "{}", p.title("log"))?;
    match d.common {
        Some((f, t)) => {
            let covered: Vec<String> = nodes
                .iter()
                .enumerate()
                .filter_map(|(k, n)| {
                    let first = n.first_index.unwrap_or(t.saturating_add(1));
                    (first > f).then(|| {
                        format!(
                            "{} holds {} by its snapshot only",
                            node_id(k),
                            span(f, (first - 1).min(t))
                        )
                    })
                })
                .collect();
            let note = if covered.is_empty() {
                String::new()
            } else {
                format!(" ({})", covered.join("; "))
            };
            writeln!(
                out,
                "  common prefix  index {} on every node{note}",
                span(f, t)
            )?;
        }
        None => writeln!(
            out,
            "  common prefix  none: the nodes differ from the first index"
        )?,
    }
    for pair in &d.pairs {
        let (a, b) = (node_id(pair.a), node_id(pair.b));
        let text = match pair.diff {
            PairDiff::Identical => p.good("identical"),
            PairDiff::Conflict(i) => p.bad(format!("conflict at index {i}")),
            PairDiff::Ends { index, shorter } => {
                let longer = if shorter == pair.a { pair.b } else { pair.a };
                let end = if index > 1 {
                    format!("ends at index {}", index - 1)
                } else {
                    "has no entries".to_string()
                };
                format!(
                    "same entries; {} {end}, {} continues to {}",
                    node_id(shorter),
                    node_id(longer),
                    nodes[longer].last_index.unwrap_or(0)
                )
            }
            PairDiff::Missing { index, missing } => p.bad(format!(
                "{} has no entry at index {index}",
                node_id(missing)
            )),
        };
        writeln!(out, "  {a} vs {b}         {text}")?;
    }
    Ok(())
}

/// The table of conflicting entries past the common prefix.
fn human_conflicts(out: &mut dyn Write, d: &Divergence, p: &Paint) -> io::Result<()> {
    let nodes = &d.nodes;
    if d.conflicting_indexes > 0 {
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            p.title(&format!(
                "conflicting entries: {} ind{}",
                d.conflicting_indexes,
                if d.conflicting_indexes == 1 {
                    "ex"
                } else {
                    "exes"
                }
            ))
        )?;
        let mut t = Table::new();
        t.load_preset(presets::ASCII_MARKDOWN);
        let mut header = vec![TableCell::new("Index")];
        header.extend((0..nodes.len()).map(|k| TableCell::new(node_id(k))));
        t.set_header(header);
        for row in &d.rows {
            let mut cells = vec![row.index.to_string()];
            cells.extend(row.cells.iter().map(|c| match c {
                Cell::Entry(e, _) => describe(e),
                Cell::Absent(a) => absent_text(*a).to_string(),
            }));
            t.add_row(cells);
        }
        if let Some(col) = t.column_mut(0) {
            col.set_cell_alignment(CellAlignment::Right);
        }
        writeln!(out, "{t}")?;
        let left = d.conflicting_indexes - d.rows.len() as u64;
        if left > 0 {
            writeln!(out, "{left} more conflicting indexes not listed")?;
        }
    }
    Ok(())
}

/// The tails: runs of entries after the common prefix, and whether each is committed.
fn human_tails(out: &mut dyn Write, d: &Divergence, p: &Paint) -> io::Result<()> {
    if !d.tails.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            p.title("tails (entries after the common prefix)")
        )?;
        let size = d.commit.cluster_size;
        for t in &d.tails {
            let terms = if t.min_term == t.max_term {
                format!("term {}", t.min_term)
            } else {
                format!("terms {}..{}", t.min_term, t.max_term)
            };
            let status = match t.status {
                TailStatus::OnMajority => {
                    p.good(format!("on a majority ({} of {size} nodes): committed", t.holders))
                }
                TailStatus::Claimed { evidence } => p.good(match evidence {
                    Evidence::Snapshot => "committed: its holder's snapshot covers it",
                    _ => "committed: within its holder's conf commitIndex",
                }),
                TailStatus::Overwritten { by_term } => p.bad(format!(
                    "must be uncommitted: other entries hold these indexes on a majority{}",
                    if by_term > t.max_term {
                        format!(" in the later term {by_term}")
                    } else {
                        format!(" (term {by_term})")
                    }
                )),
                TailStatus::NotOnMajority => p.maybe(format!(
                    "not on a majority ({} of {size} nodes), not contradicted by one: may still be committed, or be overwritten",
                    t.holders
                )),
            };
            writeln!(
                out,
                "  {:<6} {} ({terms}): {status}",
                ids(t.nodes),
                span(t.from, t.to)
            )?;
        }
        if d.tails_dropped > 0 {
            writeln!(out, "  {} more tail segments not listed", d.tails_dropped)?;
        }
    }
    Ok(())
}

/// How far the log is proven committed, and the evidence.
fn human_commit(out: &mut dyn Write, d: &Divergence, p: &Paint) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "{}", p.title("commit"))?;
    match d.committed() {
        Some((index, evidence, node)) => {
            let how = match (evidence, d.commit.majority) {
                (Evidence::Majority, Some(m)) => format!(
                    "entry {} (term {}) is on {} of {} nodes ({}), and by Log Matching so is every entry before it",
                    m.index,
                    m.term,
                    m.holders,
                    m.cluster_size,
                    ids(m.nodes)
                ),
                (Evidence::Snapshot, _) => format!("the snapshot of {}", node_id(node)),
                _ => format!(
                    "the conf commitIndex of {} (a stale lower bound: goraft writes conf only at membership changes)",
                    node_id(node)
                ),
            };
            writeln!(out, "  proven committed up to index {index}: {how}")?;
        }
        None => writeln!(
            out,
            "  nothing proven committed: no entry is on a majority, and no conf commitIndex or snapshot covers one"
        )?,
    }
    let mut bounds = Vec::new();
    if let Some(m) = d.commit.majority {
        bounds.push(format!("on a majority up to {}", m.index));
    }
    if let Some(c) = d.commit.conf {
        bounds.push(format!(
            "conf commitIndex {} ({})",
            c.index,
            node_id(c.node)
        ));
    }
    if let Some(s) = d.commit.snapshot {
        bounds.push(format!("snapshot up to {} ({})", s.index, node_id(s.node)));
    }
    if !bounds.is_empty() {
        writeln!(out, "  evidence: {}", bounds.join("; "))?;
    }
    Ok(())
}

/// The broken invariants.
fn human_invariants(out: &mut dyn Write, p: &Paint, findings: &[Finding]) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        p.title("invariants (Election Safety, Log Matching, State Machine Safety, names)")
    )?;
    if findings.is_empty() {
        writeln!(out, "  {}", p.good("none broken"))?;
    }
    for f in findings {
        let sev = match f.severity {
            Severity::Error => p.bad("error"),
            Severity::Warning => p.maybe("warning"),
            Severity::Info => "info".to_string(),
        };
        writeln!(out, "  {sev} {}: {}", f.code, escape_terminal(&f.message))?;
    }
    Ok(())
}

/// The conf, snapshot and membership of each node, side by side.
fn human_files(out: &mut dyn Write, d: &Divergence, p: &Paint) -> io::Result<()> {
    let nodes = &d.nodes;
    writeln!(out)?;
    writeln!(out, "{}", p.title("files"))?;
    let conf_ci = |n: &NodeSummary| match (&n.conf, &n.conf_error) {
        (Some(c), _) => format!("commitIndex {}", c.commit_index),
        (None, Some(e)) => format!("invalid ({})", escape_terminal(e)),
        (None, None) => "none".to_string(),
    };
    let conf_ci_differ = nodes.windows(2).any(|w| conf_ci(&w[0]) != conf_ci(&w[1]));
    per_node(out, p, "conf", nodes, conf_ci, conf_ci_differ)?;
    let conf_m = |n: &NodeSummary| n.conf.as_ref().map_or("-".to_string(), |c| set(&c.members));
    let conf_m_differ = nodes.windows(2).any(|w| conf_m(&w[0]) != conf_m(&w[1]));
    per_node(out, p, "conf members", nodes, conf_m, conf_m_differ)?;
    let snap = |n: &NodeSummary| {
        n.snapshot.as_ref().map_or("none".to_string(), |s| {
            format!(
                "{} (index {}, term {})",
                escape_terminal(&s.file),
                s.last_index,
                s.last_term
            )
        })
    };
    per_node(out, p, "snapshot", nodes, snap, d.snapshots_differ)?;
    let members = |n: &NodeSummary| {
        let s: BTreeSet<String> = n.replay.kv.members.keys().cloned().collect();
        format!(
            "{}{} (replayed to index {})",
            set(&s),
            removed(n),
            n.replay.last_applied()
        )
    };
    let members_same = |n: &NodeSummary| {
        let s: BTreeSet<String> = n.replay.kv.members.keys().cloned().collect();
        format!("{}{}", set(&s), removed(n))
    };
    if d.membership_differs {
        per_node(out, p, "membership", nodes, members, true)?;
    } else {
        per_node(out, p, "membership", nodes, members_same, false)?;
    }
    Ok(())
}

/// `; removed: NAME at INDEX, ...` for the members a replayed `raft:leave` removed, or nothing.
fn removed(n: &NodeSummary) -> String {
    let r = &n.replay.kv.removed;
    if r.is_empty() {
        return String::new();
    }
    let each: Vec<String> = r
        .iter()
        .map(|(name, at)| format!("{} at {at}", escape_terminal(name)))
        .collect();
    format!("; removed: {}", each.join(", "))
}

/// How the replayed states differ (`--state`).
fn human_state(out: &mut dyn Write, d: &Divergence, p: &Paint) -> io::Result<()> {
    let nodes = &d.nodes;
    if let Some(s) = &d.state {
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            p.title(&format!(
                "state: {} key{} differ, {} the same",
                s.rows.len(),
                if s.rows.len() == 1 { "" } else { "s" },
                s.same
            ))
        )?;
        for (k, n) in nodes.iter().enumerate() {
            if n.replay.opaque() {
                writeln!(
                    out,
                    "  {}'s snapshot state is opaque: only keys written after it are known",
                    node_id(k)
                )?;
            }
        }
        if !s.rows.is_empty() {
            let mut t = Table::new();
            t.load_preset(presets::ASCII_MARKDOWN);
            let mut header = vec![TableCell::new("Key")];
            header.extend((0..nodes.len()).map(|k| {
                TableCell::new(format!(
                    "{} (index {})",
                    node_id(k),
                    nodes[k].replay.last_applied()
                ))
            }));
            t.set_header(header);
            for r in &s.rows {
                let mut cells = vec![clip(&r.key)];
                cells.extend(
                    r.values
                        .iter()
                        .map(|v| v.as_deref().map_or("(not set)".to_string(), clip)),
                );
                t.add_row(cells);
            }
            writeln!(out, "{t}")?;
        }
    }
    Ok(())
}

/// The one-line result.
fn human_result(out: &mut dyn Write, d: &Divergence, p: &Paint) -> io::Result<()> {
    writeln!(out)?;
    if d.identical() {
        writeln!(out, "{}", p.good("result: identical"))?;
    } else {
        let mut what = Vec::new();
        if d.pairs.iter().any(|x| x.diff != PairDiff::Identical) {
            what.push("log");
        }
        if d.conf_differs {
            what.push("conf");
        }
        if d.snapshots_differ {
            what.push("snapshots");
        }
        if d.membership_differs {
            what.push("membership");
        }
        if d.state.as_ref().is_some_and(|s| !s.rows.is_empty()) {
            what.push("state");
        }
        writeln!(
            out,
            "{}",
            p.bad(format!("result: the nodes differ ({})", what.join(", ")))
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
