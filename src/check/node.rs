//! One node's rules: the log (framing, protobuf, headers, index and term order, commands,
//! membership), its snapshots, conf, name and leftover files, each compared with what goraft's
//! loader would do with them.
//!
//! The log is checked in a single streaming pass ([`check_log`]) over the bytes: entries are
//! never collected, per-entry work is a few comparisons (command JSON is only decoded for
//! membership changes and for payloads the fast recogniser in `format::payload` does not accept),
//! and memory stays flat because findings are capped per code ([`LIMIT`]) and damage is summarised.
//! Pure: it takes an opened [`DataDir`] (or a byte slice) and returns findings; no I/O, no printing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::codes::finding;
use super::Finding;
use crate::datadir::{DataDir, InputKind, SnapshotFile, SnapshotLoadError};
use crate::format::command;
use crate::format::dialect::Dialect;
use crate::format::frame::{self, HeaderQuirks};
use crate::format::log::{DamageKind, LogError, RawEntry};
use crate::format::payload;
use crate::format::wire::{self, WireQuirk};
use crate::model::{Command, Peer, Snapshot};

mod entries;
mod files;
mod log_pass;
use files::*;
pub use log_pass::*;

/// How many findings of one code are listed per node; the rest are counted in one
/// `findings-suppressed` finding.
pub const LIMIT: u64 = 20;

/// What the log pass needs to know about the rest of the node.
#[derive(Debug, Clone, Default)]
pub struct LogContext {
    /// The node label put on findings.
    pub node: Option<String>,
    /// The log file's path, put on findings.
    pub file: PathBuf,
    /// goraft's `startIndex`: the lastIndex of the snapshot goraft would load, else 0. Frames at
    /// or below it are skipped (but counted) by goraft's loader.
    pub start_index: u64,
    /// The lastIndex of the newest valid snapshot, which may explain a log starting above 1.
    pub snapshot_last_index: Option<u64>,
    /// The members recorded in that snapshot: membership is replayed from them (joins and leaves
    /// above its lastIndex), else from an empty set.
    pub base_members: Option<Vec<Peer>>,
    /// conf's commitIndex (0 without conf): goraft applies entries up to it while loading.
    pub conf_commit: u64,
    /// Indexes whose term the pass records (the snapshots' lastIndex values).
    pub watch: Vec<u64>,
    /// The dialect the log is read under.
    pub dialect: Dialect,
}

/// The membership replayed from the part of the log goraft keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Whether the replay started from a known state (index 1, or a snapshot's peers).
    pub known: bool,
    /// Members (name -> connectionString) after every join and leave.
    pub members: BTreeMap<String, String>,
    /// Members after the joins and leaves at or below conf's commitIndex.
    pub at_conf: BTreeMap<String, String>,
    /// The index of each name's first join.
    pub joined: BTreeMap<String, u64>,
    /// The index of each name's last leave.
    pub left: BTreeMap<String, u64>,
}

/// What the log pass learned, besides its findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOutcome {
    /// File size.
    pub bytes: u64,
    /// Good frames in the file (before and after damage).
    pub entries: u64,
    /// Index of the first good frame.
    pub first_index: Option<u64>,
    /// Index of the last good frame.
    pub last_index: Option<u64>,
    /// Term of the last good frame.
    pub last_term: Option<u64>,
    /// Byte offset of the first damage: goraft keeps nothing after it.
    pub first_damage: Option<u64>,
    /// Where goraft's loader would truncate the file (its own byte count at the first damage).
    pub goraft_truncate_at: Option<u64>,
    /// Good frames before the first damage: what goraft keeps.
    pub kept_entries: u64,
    /// Index of the last frame goraft keeps.
    pub kept_last_index: Option<u64>,
    /// Whether the file starts with the July-2013 commit-index prefix.
    pub commit_index_prefix: bool,
    /// Membership replayed from the kept part.
    pub membership: Membership,
    /// `(index, term)` of the first frame at each watched index.
    pub watched: Vec<(u64, u64)>,
}

/// One node's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// The node's label (path and name).
    pub node: String,
    /// The path as given.
    pub path: PathBuf,
    /// What the log pass learned.
    pub log: LogOutcome,
    /// The findings, log first (in file order), then snapshots, conf, name and leftovers.
    pub findings: Vec<Finding>,
    /// The dialect the log was read under.
    pub dialect: Dialect,
}

/// Counts findings per code and says whether one more may be listed.
#[derive(Debug, Default, Clone)]
struct Sink {
    counts: Vec<(&'static str, u64)>,
}

impl Sink {
    fn want(&mut self, code: &'static str) -> bool {
        let i = match self.counts.iter().position(|(c, _)| *c == code) {
            Some(i) => i,
            None => {
                self.counts.push((code, 0));
                self.counts.len() - 1
            }
        };
        self.counts[i].1 += 1;
        self.counts[i].1 <= LIMIT
    }

    fn suppressed(&self, node: Option<&str>) -> Vec<Finding> {
        self.counts
            .iter()
            .filter(|(_, n)| *n > LIMIT)
            .map(|(code, n)| {
                let f = finding(
                    "findings-suppressed",
                    format!("{} more {code} findings on this node are not listed (the first {LIMIT} are)", n - LIMIT),
                );
                match node {
                    Some(n) => f.node(n),
                    None => f,
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The log pass.

#[derive(Debug, Clone)]
enum Damage {
    Reader(DamageKind),
    Prefix { commit: u32 },
}

#[derive(Debug, Clone)]
struct DamageRec {
    offset: u64,
    len: u64,
    kind: Damage,
    /// Good frames before it.
    before: u64,
    /// Index of the first good frame after it.
    next_index: Option<u64>,
    /// The reader's description.
    text: String,
}

#[derive(Clone)]
struct Unknown {
    name: Vec<u8>,
    count: u64,
    index: u64,
    offset: u64,
}

const MAX_UNKNOWN_NAMES: usize = 64;

#[derive(Clone)]
struct Pass<'c> {
    ctx: &'c LogContext,
    buf: &'c [u8],
    sink: Sink,
    findings: Vec<Finding>,
    out: LogOutcome,
    prev: Option<(u64, u64)>,
    goraft_bytes: u64,
    damage: Vec<DamageRec>,
    pending_next: bool,
    unknown: Vec<Unknown>,
    unknown_more: u64,
    membership_from: u64,
    /// The `raft:join` and `raft:leave` entries seen (see [`Pass::absorb`]).
    membership_cmds: u64,
}

/// Checks a log held in memory. This is the in-process entry point used by sweeps over damaged
/// copies; [`check`] calls it with the context taken from the rest of the data dir.
pub fn check_log(bytes: &[u8], ctx: &LogContext) -> (LogOutcome, Vec<Finding>) {
    let mut pass = LogPass::new(bytes, ctx);
    pass.run(&|_| {});
    let (out, mut findings, sink) = pass.finish();
    findings.extend(sink.suppressed(ctx.node.as_deref()));
    (out, findings)
}

/// One node's log pass, fed frame by frame: by its own reader ([`LogPass::run`]), or, when
/// `verify` checks several nodes, by the lockstep of `crate::diff` that reads every log once for
/// both the node rules and the cluster rules (as a [`crate::diff::Observer`]). Either way the
/// findings are the same: the pass sees the same frames in the same order.
pub struct LogPass<'c> {
    pass: Pass<'c>,
    /// Where the frames start: 9 after a commit-index prefix, else 0.
    base: u64,
    /// Where [`LogPass::run`] starts reading, and the number of good frames before it: not 0
    /// for a pass that goes on from a [`Fork`].
    from: (usize, u64),
    /// What it shares with another reader of the same logs (see [`LogPass::sharing`]).
    share: Option<(std::sync::Arc<crate::diff::SameBytes>, bool)>,
}

/// A log pass as it stood at a frame boundary, with no damage seen before it: the pass of
/// another log that holds the very same bytes up to there, with the same context but for the
/// node's label and file, stands exactly there too (the frames it saw depend only on their
/// own bytes). `verify` of several nodes reads their common prefix once this way.
#[derive(Clone)]
pub struct Fork<'c> {
    pass: Pass<'c>,
    /// The byte offset of the boundary and the good frames before it.
    at: (usize, u64),
}

// ---------------------------------------------------------------------------------------------
// The whole node.

/// Checks one node: its log in one streaming pass, then snapshots, conf, name and leftovers.
pub fn check(dir: &DataDir) -> NodeReport {
    let node = NodeCheck::new(dir);
    let mut pass = node.log_pass();
    pass.run_split(split_parts(dir.log.bytes().len()), &|r| dir.log.release(r));
    node.finish(pass)
}

/// One node's check in two halves, around its log pass: [`check`] runs the pass itself;
/// `verify` of several nodes feeds each node's pass from the lockstep over all logs
/// (`crate::diff::compare_observed`) and then finishes each node.
#[derive(Debug)]
pub struct NodeCheck<'d> {
    dir: &'d DataDir,
    label: String,
    ctx: LogContext,
}

impl<'d> NodeCheck<'d> {
    /// Prepares the log pass's context from the node's snapshots and conf.
    pub fn new(dir: &'d DataDir) -> Self {
        let label = dir.label();
        let snaps: Vec<&Snapshot> = dir.snapshots.iter().filter_map(valid_snapshot).collect();
        let best = dir.best_snapshot().and_then(valid_snapshot);
        let goraft_pick = dir.goraft_snapshot();
        let ctx = LogContext {
            node: Some(label.clone()),
            file: dir.log_path.clone(),
            start_index: goraft_pick
                .and_then(valid_snapshot)
                .map_or(0, |s| s.last_index),
            snapshot_last_index: best.map(|s| s.last_index),
            base_members: best.map(|s| s.peers.clone().unwrap_or_default()),
            conf_commit: dir.conf().map_or(0, |c| c.commit_index),
            watch: snaps.iter().map(|s| s.last_index).collect(),
            dialect: dir.dialect(),
        };
        NodeCheck { dir, label, ctx }
    }

    /// The context of the node's log pass.
    pub fn ctx(&self) -> &LogContext {
        &self.ctx
    }

    /// The node's log pass going on from `fork` (see [`LogPass::resume`]), or a fresh one.
    pub fn resumed_pass<'c>(&'c self, fork: Option<Fork<'_>>) -> LogPass<'c> {
        match fork {
            Some(f) => LogPass::resume(f, self.dir.log.bytes(), &self.ctx),
            None => self.log_pass(),
        }
    }

    /// A fresh pass over the node's log.
    pub fn log_pass(&self) -> LogPass<'_> {
        LogPass::new(self.dir.log.bytes(), &self.ctx)
    }

    /// Runs the rest of the node's rules on what the (complete) log pass learned.
    pub fn finish(&self, pass: LogPass<'_>) -> NodeReport {
        let dir = self.dir;
        let label = self.label.clone();
        let best = dir.best_snapshot().and_then(valid_snapshot);
        let (log, mut findings, mut sink) = pass.finish();
        let mut rest = Vec::new();
        snapshot_rules(dir, &log, &mut sink, &mut rest);
        conf_rules(dir, &log, best, &mut sink, &mut rest);
        name_rules(dir, &log, &mut sink, &mut rest);
        state_rules(dir, &log, best, &mut sink, &mut rest);
        let d = &dir.dialect;
        if d.conflicts() && !d.forced && sink.want("dialect-conflict") {
            rest.push(
                finding(
                    "dialect-conflict",
                    format!(
                        "the evidence for the log's dialect conflicts; read as {}: {}",
                        d.dialect,
                        d.evidence_line()
                    ),
                )
                .file(dir.log_path.clone()),
            );
        }
        for p in &dir.leftovers {
            let is_conf = p.file_name().is_some_and(|n| n == "conf.tmp");
            let (code, msg, goraft) = if is_conf {
                (
                    "leftover-conf-tmp",
                    "conf.tmp is left over: a crash interrupted a conf rewrite (it may hold a newer conf than conf)",
                    "overwrites it (O_TRUNC) at the next membership change; conf keeps the older content until then",
                )
            } else {
                (
                    "leftover-log-new",
                    "log.new is left over from a crashed compaction",
                    "opens log.new without O_TRUNC at its next compaction, so these bytes would become a prefix of the new log",
                )
            };
            if sink.want(code) {
                rest.push(finding(code, msg).file(p.clone()).goraft(goraft));
            }
        }
        for (p, e) in &dir.unreadable {
            if sink.want("file-unreadable") {
                rest.push(
                    finding("file-unreadable", format!("cannot read it: {e}")).file(p.clone()),
                );
            }
        }
        for f in rest {
            findings.push(f.node(label.clone()));
        }
        findings.extend(sink.suppressed(Some(&label)));
        super::name_implementation(&mut findings, dir.dialect());
        NodeReport {
            node: label,
            path: dir.path.clone(),
            log,
            findings,
            dialect: dir.dialect(),
        }
    }
}

#[cfg(test)]
mod tests;
