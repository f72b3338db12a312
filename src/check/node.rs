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

/// Whether two contexts give the same log pass over the same bytes: all but the label and file.
pub fn same_rules(a: &LogContext, b: &LogContext) -> bool {
    a.start_index == b.start_index
        && a.snapshot_last_index == b.snapshot_last_index
        && a.base_members == b.base_members
        && a.conf_commit == b.conf_commit
        && a.watch == b.watch
        && a.dialect == b.dialect
}

impl<'c> LogPass<'c> {
    /// A pass over `bytes` (the whole log file) with `ctx`.
    pub fn new(bytes: &'c [u8], ctx: &'c LogContext) -> Self {
        let mut pass = Pass {
            ctx,
            buf: bytes,
            sink: Sink::default(),
            findings: Vec::new(),
            out: LogOutcome {
                bytes: bytes.len() as u64,
                ..LogOutcome::default()
            },
            prev: None,
            goraft_bytes: 0,
            damage: Vec::new(),
            pending_next: false,
            unknown: Vec::new(),
            unknown_more: 0,
            membership_from: 0,
            membership_cmds: 0,
        };
        if let Some(peers) = &ctx.base_members {
            pass.out.membership.known = true;
            pass.membership_from = ctx.snapshot_last_index.unwrap_or(0);
            for p in peers {
                pass.out
                    .membership
                    .members
                    .insert(p.name.clone(), p.connection_string.clone());
                pass.out
                    .membership
                    .at_conf
                    .insert(p.name.clone(), p.connection_string.clone());
            }
        }
        let base = match commit_index_prefix(bytes, ctx.dialect) {
            Some(commit) => {
                pass.out.commit_index_prefix = true;
                pass.out.first_damage = Some(0);
                pass.out.goraft_truncate_at = Some(0);
                pass.damage.push(DamageRec {
                    offset: 0,
                    len: 9,
                    kind: Damage::Prefix { commit },
                    before: 0,
                    next_index: None,
                    text: String::new(),
                });
                pass.sink.want("log-commit-index-prefix");
                pass.pending_next = true;
                9
            }
            None => 0,
        };
        LogPass {
            pass,
            base,
            from: (0, 0),
            share: None,
        }
    }

    /// The pass of `bytes` with `ctx` going on from `fork`, which another pass took at a frame
    /// boundary up to which `bytes` hold the same bytes as its log, with the same rules
    /// ([`same_rules`]). The findings it had made take this node's label and file.
    pub fn resume(fork: Fork<'_>, bytes: &'c [u8], ctx: &'c LogContext) -> Self {
        let Fork { pass: p, at } = fork;
        let mut findings = p.findings;
        for f in &mut findings {
            f.node.clone_from(&ctx.node);
            f.file = Some(ctx.file.clone());
        }
        let pass = Pass {
            ctx,
            buf: bytes,
            sink: p.sink,
            findings,
            out: LogOutcome {
                bytes: bytes.len() as u64,
                ..p.out
            },
            prev: p.prev,
            goraft_bytes: p.goraft_bytes,
            damage: p.damage,
            pending_next: p.pending_next,
            unknown: p.unknown,
            unknown_more: p.unknown_more,
            membership_from: p.membership_from,
            membership_cmds: p.membership_cmds,
        };
        LogPass {
            pass,
            base: 0,
            from: at,
            share: None,
        }
    }

    /// Makes [`LogPass::run_forking`] share what it learns of the other logs' bytes with another
    /// reader of the same logs (`verify`'s cross-node comparison): it skips comparing the
    /// prefix `same` says every log holds alike, and, when `all` (its others are every other
    /// log of that comparison), raises `same` as it compares. The findings are the same.
    pub fn sharing(mut self, same: std::sync::Arc<crate::diff::SameBytes>, all: bool) -> Self {
        self.share = Some((same, all));
        self
    }

    /// Whether the frames must be read by [`LogPass::run`]: the file starts with a commit-index
    /// prefix, so they start at byte 9, not where a reader of the whole file finds them.
    pub fn needs_own_reader(&self) -> bool {
        self.base != 0
    }

    /// Reads the frames itself. `release` is told the byte ranges the pass has left behind, so
    /// that a memory-mapped log of many GB can give those pages back (see
    /// `datadir::LogBytes::release`).
    pub fn run(&mut self, release: &dyn Fn(std::ops::Range<usize>)) {
        self.run_forking(release, &[], &|_, _| {}, &mut |_, _| {});
    }

    /// [`LogPass::run`], also comparing the pass's log with each of `others` (other nodes'
    /// logs, read side by side with it) and handing `fork(k, …)` a fork of the pass for
    /// `others[k]` as soon as it is known: the pass as it stood before the first frame that is
    /// damaged or does not end where `others[k]` still holds the same bytes (or at the end).
    /// `None` when it had seen damage before that point, or when the log starts with a
    /// commit-index prefix. `release_other(k, range)` is told the ranges of `others[k]` it has
    /// left behind.
    pub fn run_forking(
        &mut self,
        release: &dyn Fn(std::ops::Range<usize>),
        others: &[&[u8]],
        release_other: &dyn Fn(usize, std::ops::Range<usize>),
        fork: &mut dyn FnMut(usize, Option<Fork<'c>>),
    ) {
        const STEP: usize = 4 << 20;
        let base = self.base;
        let bytes = self.pass.buf;
        let mut released = 0usize;
        let (from, from_ordinal) = self.from;
        let mut reader = match bytes.get(base as usize..) {
            Some(b) if from == 0 => crate::format::log::Frames::new(b),
            Some(b) => crate::format::log::Frames::resume(b, from, from_ordinal),
            None => crate::format::log::Frames::new(&[]),
        }
        .dialect(self.pass.ctx.dialect);
        let mut sides: Vec<Side> = others
            .iter()
            .map(|_| Side {
                same_to: 0,
                limit: None,
                done: base != 0,
                released: 0,
            })
            .collect();
        if base != 0 {
            for k in 0..others.len() {
                fork(k, None);
            }
        }
        // A frame that ends beyond this, or damage, may decide a fork.
        let mut horizon = if sides.iter().all(|s| s.done) {
            usize::MAX
        } else {
            0
        };
        let mut last = (from, from_ordinal);
        let share = self.share.as_ref().map(|(s, all)| (&**s, *all));
        let pass = &mut self.pass;
        let mut step = |item: Result<&RawEntry<'_>, LogError>, pos: usize| {
            let pos = base as usize + pos;
            if pos > horizon || (item.is_err() && horizon != usize::MAX) {
                horizon = usize::MAX;
                let mut copy: Option<Option<Fork<'c>>> = None;
                for (k, side) in sides.iter_mut().enumerate() {
                    if side.done {
                        continue;
                    }
                    let known = share.map_or(0, |(s, _)| s.get());
                    side.compare(bytes, others[k], pos, known, &|r| release_other(k, r));
                    let passed = side.limit.is_some_and(|l| pos > l);
                    if passed || item.is_err() {
                        side.done = true;
                        fork(k, copy.get_or_insert_with(|| pass.fork(last)).clone());
                    } else {
                        horizon = horizon.min(side.limit.unwrap_or(side.same_to));
                    }
                }
                if let Some((s, true)) = share {
                    s.raise(
                        sides
                            .iter()
                            .map(|s| s.limit.unwrap_or(s.same_to))
                            .min()
                            .unwrap_or(0),
                    );
                }
            }
            match item {
                Ok(e) => {
                    last = (pos, e.ordinal + 1);
                    pass.entry(e, base);
                }
                Err(e) => {
                    last = (pos, e.entry);
                    pass.damage(rebase(e, base));
                }
            }
            if pos >= released + 2 * STEP {
                release(released..pos - STEP);
                released = pos - STEP;
            }
        };
        reader.each(&mut step);
        // The others that hold at least all of this log: their passes go on from its end.
        let mut copy: Option<Option<Fork<'c>>> = None;
        for (k, side) in sides.iter_mut().enumerate() {
            if !side.done {
                fork(k, copy.get_or_insert_with(|| pass.fork(last)).clone());
            }
        }
    }

    /// [`LogPass::run`] in `parts` parts checked at once, one per thread: the log is cut at
    /// likely frame boundaries ([`crate::format::log::boundary_after`]); each later part is checked
    /// from a copy of the initial pass, as if its first frame followed an entry of the index
    /// before and the same term, and this thread checks the first part. Then, in order, each
    /// part is taken over (`Pass::absorb`) when this pass stopped exactly at its first frame
    /// and the part found nothing that depends on what came before; any other part (damage, a
    /// finding, a membership entry, a false boundary) is read again here, frame by frame. So
    /// the findings are always those of [`LogPass::run`], and a clean log is checked in about
    /// `1 / parts` of its time. `parts` below 2, a commit-index prefix or a resumed pass: the
    /// plain run. Returns how many parts were taken over.
    pub fn run_split(
        &mut self,
        parts: usize,
        release: &(dyn Fn(std::ops::Range<usize>) + Sync),
    ) -> usize {
        const STEP: usize = 4 << 20;
        let bytes = self.pass.buf;
        let dialect = self.pass.ctx.dialect;
        let mut starts: Vec<(usize, u64, u64)> = Vec::new();
        if parts >= 2 && self.base == 0 && self.from == (0, 0) {
            for k in 1..parts {
                let from = (bytes.len() / parts * k).max(starts.last().map_or(0, |s| s.0 + 1));
                if let Some(b) = crate::format::log::boundary_after(bytes, from, dialect) {
                    if b.1 >= 1 {
                        starts.push(b);
                    }
                }
            }
        }
        if starts.is_empty() {
            self.run(release);
            return 0;
        }
        let ends: Vec<usize> = starts
            .iter()
            .skip(1)
            .map(|s| s.0)
            .chain([usize::MAX])
            .collect();
        let initial = self.pass.clone();
        // Reads `reader` up to `end` into `pass`, giving back the pages left behind.
        let read =
            |reader: &mut crate::format::log::Frames<'c>, end: usize, pass: &mut Pass<'c>| {
                let mut released = crate::format::log::Frames::position(reader) as usize;
                reader.each_before(end, |item, pos| {
                    match item {
                        Ok(e) => pass.entry(e, 0),
                        Err(e) => pass.damage(e),
                    }
                    if pos >= released + 2 * STEP {
                        release(released..pos - STEP);
                        released = pos - STEP;
                    }
                });
            };
        let mut taken_over = 0;
        std::thread::scope(|s| {
            let handles: Vec<_> = starts
                .iter()
                .zip(&ends)
                .map(|(&(start, index, term), &end)| {
                    let mut pass = initial.clone();
                    pass.prev = Some((index - 1, term));
                    s.spawn(move || {
                        let mut reader =
                            crate::format::log::Frames::resume(bytes, start, 0).dialect(dialect);
                        read(&mut reader, end, &mut pass);
                        (pass, reader.position() as usize)
                    })
                })
                .collect();
            let pass = &mut self.pass;
            let mut reader = crate::format::log::Frames::new(bytes).dialect(dialect);
            read(&mut reader, starts[0].0, pass);
            for ((handle, &(start, index, term)), &end) in
                handles.into_iter().zip(&starts).zip(&ends)
            {
                let taken = match handle.join() {
                    Ok((part, part_end)) => {
                        reader.position() as usize == start
                            && pass.absorb(&part, (index, term))
                            && {
                                let ordinal = reader.ordinal() + part.out.entries;
                                reader =
                                    crate::format::log::Frames::resume(bytes, part_end, ordinal)
                                        .dialect(dialect);
                                true
                            }
                    }
                    // A part that panicked is read here (and panics here too).
                    Err(_) => false,
                };
                if taken {
                    taken_over += 1;
                } else {
                    read(&mut reader, end, pass);
                }
            }
        });
        taken_over
    }

    /// Ends the pass: what it learned, its findings in file order, and the per-code counts (the
    /// rest of the node's rules go on counting in them).
    fn finish(self) -> (LogOutcome, Vec<Finding>, Sink) {
        let mut pass = self.pass;
        pass.finish();
        let Pass {
            mut findings,
            out,
            sink,
            ..
        } = pass;
        findings.sort_by_key(|f| f.offset.unwrap_or(u64::MAX));
        (out, findings, sink)
    }
}

impl crate::diff::Observer for LogPass<'_> {
    #[inline]
    fn entry(&mut self, e: &RawEntry<'_>) {
        // Only used without a prefix (`needs_own_reader`), where `base` is 0.
        self.pass.entry(e, self.base);
    }

    fn damage(&mut self, e: &LogError) {
        self.pass.damage(rebase(e.clone(), self.base));
    }
}

/// In how many parts [`LogPass::run_split`] checks a log of `len` bytes: one per core, up to
/// four, each of at least 8 MiB (below, starting a thread costs more than it saves).
pub fn split_parts(len: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.min(4).min(len / (8 << 20)).max(1)
}

/// One other log read side by side with a pass, for [`LogPass::run_forking`].
struct Side {
    /// The bytes known to be the same in both logs: `..same_to`.
    same_to: usize,
    /// Where they differ (or the shorter log ends), once found.
    limit: Option<usize>,
    /// Whether its fork was handed out.
    done: bool,
    /// How much of it was given back.
    released: usize,
}

impl Side {
    /// Compares a block at a time, until the same bytes reach `pos` or a difference is found.
    /// The first `known` bytes of both are known to be the same (see [`LogPass::sharing`]).
    fn compare(
        &mut self,
        mine: &[u8],
        other: &[u8],
        pos: usize,
        known: usize,
        release: &dyn Fn(std::ops::Range<usize>),
    ) {
        const BLOCK: usize = 1 << 20;
        const STEP: usize = 4 << 20;
        let known = known.min(mine.len()).min(other.len());
        if self.limit.is_none() && known > self.same_to {
            self.same_to = known;
            if known == mine.len() || known == other.len() {
                self.limit = Some(known);
            }
        }
        while self.limit.is_none() && self.same_to < pos {
            let end = (self.same_to + BLOCK).min(mine.len()).min(other.len());
            let (a, b) = (&mine[self.same_to..end], &other[self.same_to..end]);
            if a == b {
                self.same_to = end;
                if end == mine.len() || end == other.len() {
                    self.limit = Some(end);
                }
            } else {
                let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
                self.limit = Some(self.same_to + at);
            }
            if self.same_to >= self.released + 2 * STEP {
                release(self.released..self.same_to - STEP);
                self.released = self.same_to - STEP;
            }
        }
    }
}

fn rebase(mut e: LogError, base: u64) -> LogError {
    e.offset += base;
    if let DamageKind::Garbage { at, .. } = &mut e.kind {
        *at += base;
    }
    e
}

/// Whether the file starts with the July-2013 `"%8x\n"` commit index before its first frame:
/// a 9-byte header whose "frame" does not decode, followed by a frame that does.
fn commit_index_prefix(bytes: &[u8], dialect: Dialect) -> Option<u32> {
    let h = frame::parse_header(bytes).ok()?;
    if h.len != 9 || frame_decodes_at(bytes, 0, dialect) || !frame_decodes_at(bytes, 9, dialect) {
        return None;
    }
    Some(h.body_len)
}

/// Whether a frame with any header Go accepts starts at `p` and its body decodes.
fn frame_decodes_at(bytes: &[u8], p: usize, dialect: Dialect) -> bool {
    let Some(rest) = bytes.get(p..) else {
        return false;
    };
    let Ok(h) = frame::parse_header(rest) else {
        return false;
    };
    rest.get(h.len..h.len + h.body_len as usize)
        .is_some_and(|body| dialect.decode_entry(body).is_ok())
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl<'c> Pass<'c> {
    /// A fork at `at` (the position and good frames before the next item), when no damage
    /// came before it.
    /// Takes over `part`, a pass over the frames that follow this pass's last one, started on
    /// its own from a copy of the initial pass whose previous entry was set to `(first index -
    /// 1, first term)` (see [`LogPass::run_split`]), when that is what reading those frames
    /// here would have done: this pass saw no damage and its last entry is the one `part`
    /// assumed (or an older term), and `part` found nothing at all (no finding, no count, no
    /// damage, no unknown name, no membership entry, which is all that depends on the state
    /// before it). Then only counts and the last entry carry over. Returns whether it took it;
    /// if not, nothing changed and the frames must be read here.
    fn absorb(&mut self, part: &Pass<'c>, first: (u64, u64)) -> bool {
        let plain = part.findings.is_empty()
            && part.sink.counts.is_empty()
            && part.damage.is_empty()
            && part.out.first_damage.is_none()
            && !part.pending_next
            && part.unknown.is_empty()
            && part.unknown_more == 0
            && part.membership_cmds == 0;
        let follows = self.damage.is_empty()
            && self.out.first_damage.is_none()
            && !self.pending_next
            && self
                .prev
                .is_some_and(|(i, t)| i.checked_add(1) == Some(first.0) && t <= first.1);
        if !(plain && follows) {
            return false;
        }
        let (o, p) = (&mut self.out, &part.out);
        o.entries += p.entries;
        o.kept_entries += p.kept_entries;
        o.kept_last_index = p.kept_last_index.or(o.kept_last_index);
        o.last_index = p.last_index.or(o.last_index);
        o.last_term = p.last_term.or(o.last_term);
        for &(index, term) in &p.watched {
            if !o.watched.iter().any(|(i, _)| *i == index) {
                o.watched.push((index, term));
            }
        }
        self.goraft_bytes += part.goraft_bytes;
        self.prev = part.prev;
        true
    }

    fn fork(&self, at: (usize, u64)) -> Option<Fork<'c>> {
        (self.out.first_damage.is_none() && self.damage.is_empty()).then(|| Fork {
            pass: self.clone(),
            at,
        })
    }

    fn emit(&mut self, f: Finding) {
        let f = f.file(self.ctx.file.clone());
        self.findings.push(match &self.ctx.node {
            Some(n) => f.node(n.clone()),
            None => f,
        });
    }

    #[inline]
    fn entry(&mut self, e: &RawEntry<'_>, base: u64) {
        let off = base + e.offset;
        let (index, term) = (e.wire.index, e.wire.term);
        let in_prefix = self.out.first_damage.is_none();
        self.out.entries += 1;
        if self.pending_next {
            for d in self.damage.iter_mut().filter(|d| d.next_index.is_none()) {
                d.next_index = Some(index);
            }
            self.pending_next = false;
        }
        if !e.header.quirks.is_canonical() {
            self.header_quirks(e, off);
        }
        if !e.wire.canonical {
            self.wire_quirks(e, off);
        }
        match self.prev {
            None => {
                self.out.first_index = Some(index);
                self.first_index(index, off);
                self.out.membership.known |= index == 1;
            }
            Some((pi, pt)) => {
                if Some(index) != pi.checked_add(1) {
                    self.index_step(pi, index, off);
                }
                if term < pt && self.sink.want("term-decrease") {
                    self.emit(
                        finding(
                            "term-decrease",
                            format!("term {term} at index {index} is lower than the previous entry's term {pt} (index {pi})"),
                        )
                        .offset(off)
                        .index(index)
                        .goraft("loads it without checking; terms must never decrease along a Raft log, so this log was damaged or mixed with another node's"),
                    );
                }
            }
        }
        self.prev = Some((index, term));
        let undecodable = self.command(e, off, in_prefix);
        if in_prefix {
            self.out.kept_entries += 1;
            self.out.kept_last_index = Some(index);
            // goraft's loader `continue`s before counting a frame whose command it cannot
            // decode, when it applies it during load (index <= conf commitIndex).
            let uncounted =
                undecodable && index <= self.ctx.conf_commit && index > self.ctx.start_index;
            if !uncounted {
                self.goraft_bytes += e.body.len() as u64 + frame::CANONICAL_HEADER_LEN as u64;
            }
        }
        if !self.ctx.watch.is_empty()
            && self.ctx.watch.contains(&index)
            && !self.out.watched.iter().any(|(i, _)| *i == index)
        {
            self.out.watched.push((index, term));
        }
        self.out.last_index = Some(index);
        self.out.last_term = Some(term);
    }

    fn first_index(&mut self, index: u64, off: u64) {
        let covered = match self.ctx.snapshot_last_index {
            Some(last) => index >= 1 && index <= last.saturating_add(1),
            None => index == 1,
        };
        if covered {
            return;
        }
        let why = match self.ctx.snapshot_last_index {
            Some(last) => format!("the newest snapshot covers only up to index {last}"),
            None if index == 0 => "goraft's indexes start at 1".to_string(),
            None => "no snapshot covers the indexes before it".to_string(),
        };
        let missing = if index > 1 {
            format!(
                "; entries {}..{} are missing",
                self.ctx.snapshot_last_index.map_or(1, |l| l + 1),
                index - 1
            )
        } else {
            String::new()
        };
        if self.sink.want("log-first-index") {
            self.emit(
                finding("log-first-index", format!("the log starts at index {index}, but {why}{missing}"))
                    .offset(off)
                    .index(index)
                    .goraft("loads the entries at the wrong positions (it places index i at i - startIndex - 1), so lookups by index return the wrong entries"),
            );
        }
    }

    fn index_step(&mut self, prev: u64, index: u64, off: u64) {
        if index > prev {
            if self.sink.want("index-gap") {
                self.emit(
                    finding(
                        "index-gap",
                        format!(
                            "index {index} follows index {prev}: {} missing",
                            plural(index - prev - 1, "entry is", "entries are")
                        ),
                    )
                    .offset(off)
                    .index(index)
                    .goraft("loads it without a continuity check; its in-memory positions then no longer match the indexes, so lookups return the wrong entries"),
                );
            }
        } else if self.sink.want("index-duplicate") {
            let what = if index == prev {
                format!("index {index} repeats the previous entry's index")
            } else {
                format!("index {index} follows index {prev}: the log goes back")
            };
            self.emit(
                finding("index-duplicate", what)
                    .offset(off)
                    .index(index)
                    .goraft("loads both copies without checking; stale entries can be resurrected this way (the compaction position bug; docs/format.md, 'Compaction') and replace what the leader wrote"),
            );
        }
    }

    fn header_quirks(&mut self, e: &RawEntry<'_>, off: u64) {
        let q = e.header.quirks;
        let start = off as usize;
        let found = String::from_utf8_lossy(
            self.buf
                .get(start..start + e.header.len)
                .unwrap_or_default(),
        );
        let mut canonical = Vec::new();
        frame::write_header(e.header.body_len, &mut canonical);
        let skew = e.header.len as i64 - frame::CANONICAL_HEADER_LEN as i64;
        let goraft = match skew {
            0 => "Go's reader accepts it; goraft never writes it".to_string(),
            1.. => format!(
                "Go's reader accepts it but counts 9 bytes for this {}-byte header, so goraft's byte count falls {skew} short from here on (a later truncation would cut in the wrong place)",
                e.header.len
            ),
            _ => format!(
                "Go's reader accepts it but counts 9 bytes for this {}-byte header, so goraft's byte count is {} too high from here on (a later truncation would cut in the wrong place)",
                e.header.len,
                -skew
            ),
        };
        for (quirk, code) in [
            (HeaderQuirks::EXTRA_SPACES, "header-extra-spaces"),
            (HeaderQuirks::UNPADDED, "header-unpadded"),
            (HeaderQuirks::UPPERCASE, "header-uppercase"),
            (HeaderQuirks::LEADING_ZEROS, "header-leading-zeros"),
        ] {
            if q.contains(quirk) && self.sink.want(code) {
                let desc = match code {
                    "header-extra-spaces" => "more than 8 characters of padding",
                    "header-unpadded" => "fewer than 8 characters (the unpadded July-2013 form)",
                    "header-uppercase" => "uppercase hex digits",
                    _ => "zero padding instead of spaces",
                };
                let msg = format!(
                    "frame header \"{}\" + newline ({} bytes) has {desc}; goraft writes \"{}\"",
                    found.trim_end_matches('\n'),
                    e.header.len,
                    String::from_utf8_lossy(&canonical).trim_end_matches('\n')
                );
                self.emit(
                    finding(code, msg)
                        .offset(off)
                        .index(e.wire.index)
                        .goraft(goraft.clone()),
                );
            }
        }
    }

    fn wire_quirks(&mut self, e: &RawEntry<'_>, off: u64) {
        let syntax = self.ctx.dialect.syntax();
        let Ok(quirks) = wire::check_as(e.body, &wire::LOG_ENTRY, syntax) else {
            return;
        };
        let body_at = off + e.header.len as u64;
        for q in quirks {
            let (code, goraft) = match q {
                WireQuirk::UnknownField { .. } => (
                    "wire-unknown-field",
                    "Go keeps the unknown field and sends it on when it replicates the entry",
                ),
                WireQuirk::DuplicateField { .. } => (
                    "wire-duplicate-field",
                    "Go keeps the last value; goraft writes every field once",
                ),
                WireQuirk::OutOfOrder { .. } => (
                    "wire-out-of-order",
                    "Go accepts any order; goraft writes fields 1, 2, 3, 4",
                ),
                WireQuirk::InvalidUtf8 { .. } => (
                    "wire-invalid-utf8",
                    "Go's proto2 decoder accepts it; the name matches no registered command",
                ),
                WireQuirk::ZeroWritten { .. } => (
                    "wire-zero-written",
                    "proto3 reads it as the zero it holds; the fork's own writer leaves such a field out",
                ),
            };
            if self.sink.want(code) {
                let msg = format!(
                    "entry body: {q} (file byte {})",
                    body_at + q.offset() as u64
                );
                let f = finding(code, msg)
                    .offset(off)
                    .index(e.wire.index)
                    .goraft(goraft);
                self.emit(match q {
                    WireQuirk::ZeroWritten { .. } => f.implementation("seaweedfs/raft"),
                    _ => f,
                });
            }
        }
    }

    /// Checks the command; returns whether goraft's `newCommand` would fail on it.
    #[inline]
    fn command(&mut self, e: &RawEntry<'_>, off: u64, in_prefix: bool) -> bool {
        let payload = e.wire.command;
        match e.wire.name {
            b"write" => match e.wire.command.and_then(payload::canonical_write) {
                Some(c) => {
                    if c.fffd_escape || c.fffd_raw {
                        self.replacement_char(e, off, "value", c.fffd_escape);
                    }
                    false
                }
                None => self.write_slow(e, off),
            },
            b"raft:nop" => {
                if payload.is_some() && self.sink.want("command-non-canonical") {
                    self.emit(
                        finding(
                            "command-non-canonical",
                            format!(
                                "raft:nop entry carries a {}-byte payload; goraft writes none",
                                payload.map_or(0, <[u8]>::len)
                            ),
                        )
                        .offset(off)
                        .index(e.wire.index)
                        .goraft("ignores the payload (the NOP decoder reads nothing)"),
                    );
                }
                false
            }
            b"raft:join" | b"raft:leave" => {
                self.membership_cmds += 1;
                self.membership(e, off, in_prefix)
            }
            name => {
                // SeaweedFS registers it with the fork (its master's one command).
                if name == b"MaxVolumeId" && self.ctx.dialect == Dialect::Seaweedfs {
                    return false;
                }
                // A canonical body skips `wire::check`, which is where invalid UTF-8 is found.
                if e.wire.canonical
                    && std::str::from_utf8(name).is_err()
                    && self.sink.want("wire-invalid-utf8")
                {
                    let msg = format!(
                        "entry body: field CommandName at body offset {} is not valid UTF-8",
                        // The tag after `08 <index> 10 <term>`.
                        2 + wire::varint_len(e.wire.index) + wire::varint_len(e.wire.term)
                    );
                    self.emit(
                        finding("wire-invalid-utf8", msg)
                            .offset(off)
                            .index(e.wire.index)
                            .goraft("Go's proto2 decoder accepts it; the name matches no registered command"),
                    );
                }
                self.unknown(name, e.wire.index, off);
                true
            }
        }
    }

    fn write_slow(&mut self, e: &RawEntry<'_>, off: u64) -> bool {
        match command::decode(e.wire.name, e.wire.command) {
            Command::Write { key, value } => {
                self.non_canonical(e, off);
                let escape = e
                    .wire
                    .command
                    .is_some_and(|p| p.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\ufffd")));
                if value.contains('\u{fffd}') {
                    self.replacement_char(e, off, "value", escape);
                } else if key.contains('\u{fffd}') {
                    self.replacement_char(e, off, "key", escape);
                }
                false
            }
            Command::Invalid { reason } => {
                self.invalid(e, off, &reason);
                true
            }
            _ => false,
        }
    }

    fn invalid(&mut self, e: &RawEntry<'_>, off: u64, reason: &str) {
        if self.sink.want("command-invalid") {
            let name = String::from_utf8_lossy(e.wire.name);
            self.emit(
                finding(
                    "command-invalid",
                    format!("{name} payload at index {} does not decode: {reason}", e.wire.index),
                )
                .offset(off)
                .index(e.wire.index)
                .goraft("newCommand fails: the entry is skipped when loaded and never applied once committed (setCommitIndex returns the error)"),
            );
        }
    }

    fn non_canonical(&mut self, e: &RawEntry<'_>, off: u64) {
        if self.sink.want("command-non-canonical") {
            let name = String::from_utf8_lossy(e.wire.name);
            self.emit(
                finding(
                    "command-non-canonical",
                    format!(
                        "{name} payload at index {} decodes, but is not the bytes goraft writes (Go's JSON encoder output: compact, fixed key order, Go's escaping, one trailing newline)",
                        e.wire.index
                    ),
                )
                .offset(off)
                .index(e.wire.index)
                .goraft("decodes it leniently (case-insensitive keys, bytes after the first JSON value ignored); the payload was altered or written by another encoder"),
            );
        }
    }

    fn replacement_char(&mut self, e: &RawEntry<'_>, off: u64, which: &str, escape: bool) {
        if self.sink.want("write-replacement-char") {
            let how = if escape {
                "written as a JSON escape, which Go's encoder writes in place of invalid UTF-8: the bytes the client sent are lost"
            } else {
                "a raw U+FFFD character (sent by the client, or already lossy before it reached raftd)"
            };
            self.emit(
                finding(
                    "write-replacement-char",
                    format!(
                        "write at index {} has a {which} containing U+FFFD: {how}",
                        e.wire.index
                    ),
                )
                .offset(off)
                .index(e.wire.index)
                .goraft("applies it as it is: GET returns ef bf bd where the original bytes were"),
            );
        }
    }

    fn unknown(&mut self, name: &[u8], index: u64, off: u64) {
        if let Some(u) = self.unknown.iter_mut().find(|u| u.name == name) {
            u.count += 1;
        } else if self.unknown.len() < MAX_UNKNOWN_NAMES {
            self.unknown.push(Unknown {
                name: name.to_vec(),
                count: 1,
                index,
                offset: off,
            });
        } else {
            self.unknown_more += 1;
        }
    }

    fn membership(&mut self, e: &RawEntry<'_>, off: u64, in_prefix: bool) -> bool {
        let index = e.wire.index;
        let cmd = command::decode(e.wire.name, e.wire.command);
        let keys: &[&str] = if e.wire.name == b"raft:join" {
            &["name", "connectionString"]
        } else {
            &["name"]
        };
        let canonical = e
            .wire
            .command
            .and_then(|p| payload::canonical(p, keys))
            .is_some();
        let apply = in_prefix && self.out.membership.known && index > self.membership_from;
        let at_conf = index <= self.ctx.conf_commit;
        match cmd {
            Command::Invalid { reason } => {
                self.invalid(e, off, &reason);
                return true;
            }
            Command::Join {
                name,
                connection_string,
            } => {
                if name.is_empty() {
                    if self.sink.want("join-empty-name") {
                        let what = if e.wire.command.is_some_and(|p| p.trim_ascii() == b"null") {
                            "a null payload"
                        } else {
                            "an empty name"
                        };
                        self.emit(
                            finding("join-empty-name", format!("raft:join at index {index} has {what}"))
                                .offset(off)
                                .index(index)
                                .goraft("adds a member with an empty name and connectionString when it applies it: the cluster then counts a member that does not exist, and commits that need it hang"),
                        );
                    }
                } else if !canonical {
                    self.non_canonical(e, off);
                }
                if apply {
                    let m = &mut self.out.membership;
                    if let Some(old) = m.members.get(&name) {
                        let old = old.clone();
                        if self.sink.want("join-duplicate") {
                            let detail = if old == connection_string {
                                String::new()
                            } else {
                                format!(" (it keeps connectionString \"{old}\", not \"{connection_string}\")")
                            };
                            self.emit(
                                finding("join-duplicate", format!("raft:join at index {index} for \"{name}\", which is already a member"))
                                    .offset(off)
                                    .index(index)
                                    .goraft(format!("ignores it at apply: AddPeer returns early{detail}")),
                            );
                        }
                    } else {
                        m.members.insert(name.clone(), connection_string.clone());
                        if at_conf {
                            m.at_conf.insert(name.clone(), connection_string);
                        }
                    }
                    self.out.membership.joined.entry(name).or_insert(index);
                }
            }
            Command::Leave { name } => {
                if !canonical {
                    self.non_canonical(e, off);
                }
                if apply {
                    let m = &mut self.out.membership;
                    m.members.remove(&name);
                    if at_conf {
                        m.at_conf.remove(&name);
                    }
                    m.left.insert(name, index);
                }
            }
            _ => {}
        }
        false
    }

    fn damage(&mut self, e: LogError) {
        if self.out.first_damage.is_none() {
            self.out.first_damage = Some(e.offset);
            self.out.goraft_truncate_at = Some(self.goraft_bytes);
        }
        let code = damage_code(&Damage::Reader(e.kind.clone()));
        if self.sink.want(code) {
            self.damage.push(DamageRec {
                offset: e.offset,
                len: e.len,
                text: e.to_string(),
                kind: Damage::Reader(e.kind),
                before: e.entry,
                next_index: None,
            });
            self.pending_next = true;
        }
    }

    fn finish(&mut self) {
        for d in std::mem::take(&mut self.damage) {
            let f = self.damage_finding(&d);
            self.emit(f);
        }
        for u in std::mem::take(&mut self.unknown) {
            if !self.sink.want("unknown-command") {
                continue;
            }
            let name = String::from_utf8_lossy(&u.name);
            let count = if u.count == 1 {
                String::new()
            } else {
                format!(" ({} entries, the first at index {})", u.count, u.index)
            };
            let (app, never) = match self.ctx.dialect {
                Dialect::Goraft => ("raftd", "raftd never applies it"),
                Dialect::Seaweedfs => ("SeaweedFS", "the master never applies it"),
            };
            self.emit(
                finding(
                    "unknown-command",
                    format!("command name \"{name}\" is registered by neither goraft nor {app}{count}"),
                )
                .offset(u.offset)
                .index(u.index)
                .goraft(format!("skips it while loading (and does not count its bytes when it is at or below conf commitIndex, so a later truncation would cut too early); {never}")),
            );
        }
        if self.unknown_more > 0 && self.sink.want("unknown-command") {
            let n = self.unknown_more;
            self.emit(finding(
                "unknown-command",
                format!("{} with further unregistered command names (more than {MAX_UNKNOWN_NAMES} distinct names)", plural(n, "entry", "entries")),
            ));
        }
    }

    fn damage_finding(&self, d: &DamageRec) -> Finding {
        let o = &self.out;
        let total = o.entries;
        let after = total - d.before.min(total);
        let first = o.first_damage == Some(d.offset);
        let t = o.goraft_truncate_at.unwrap_or(0);
        let found_after = match (after, d.next_index, o.last_index) {
            (0, _, _) => String::new(),
            (n, Some(a), Some(b)) => format!(
                "; {} it (index {a} to {b})",
                plural(n, "good frame follows", "good frames follow")
            ),
            (n, _, _) => format!(
                "; {} it",
                plural(n, "good frame follows", "good frames follow")
            ),
        };
        let lost = o.bytes.saturating_sub(t);
        let skew = if first && t != d.offset {
            format!(
                " (goraft's own count puts the cut at byte {t}, not at the damage at byte {}: it counts 9 header bytes per frame and skips entries it cannot decode at or below conf commitIndex)",
                d.offset
            )
        } else {
            String::new()
        };
        let discard = format!(
            "truncates the log to {t} bytes at its next start{skew}, discarding the {lost} bytes from there on{}; its write offset is not reset, so the next append leaves a hole of zero bytes (hole bug)",
            if after == 0 {
                String::new()
            } else {
                format!(" ({} among them)", plural(after, "good frame", "good frames"))
            }
        );
        let later = format!("inside the part goraft discards (it truncates the log to {t} bytes)");
        let (code, msg, goraft) = match &d.kind {
            Damage::Prefix { commit } => (
                "log-commit-index-prefix",
                format!(
                    "the log starts with a 9-byte commit-index prefix (commit index {commit}), the format goraft wrote between 2013-07-20 and 2013-07-23{found_after}"
                ),
                format!(
                    "reads the prefix as a header declaring a {commit}-byte body, fails to decode it and truncates the log to 0 bytes: all {} entries are lost",
                    after
                ),
            ),
            Damage::Reader(kind) => {
                let code = damage_code(&d.kind);
                match kind {
                    DamageKind::TornHeader { has_digits: false } => (
                        code,
                        format!("the log ends with {} after the last frame: a length header cut short in its padding (a write cut short)", plural(d.len, "space byte", "space bytes")),
                        if first {
                            format!("takes them as a clean end of file and keeps them; the next frame is appended after them and still parses, but goraft's byte count is off by {} from then on (a later truncation would cut in the wrong place)", d.len)
                        } else {
                            later
                        },
                    ),
                    DamageKind::TornHeader { has_digits: true } => (
                        code,
                        format!("the log ends inside a frame header: {} with no newline (a write cut short)", plural(d.len, "byte", "bytes")),
                        if first {
                            format!("takes this as a clean end of file and keeps the {} stale bytes; the next appended frame is glued to them, fails to decode at the following start and is lost when goraft truncates the log to {t} bytes", d.len)
                        } else {
                            later
                        },
                    ),
                    DamageKind::TornBody { declared, available: 0, .. } => (
                        code,
                        format!("the log ends with a complete header declaring a {declared}-byte body, and no body bytes (a write cut short)"),
                        if first {
                            format!("takes this as a clean end of file (io.EOF) and keeps the {}-byte stale header; it swallows the next appended frame, which is lost when goraft truncates the log to {t} bytes at the following start", d.len)
                        } else {
                            later
                        },
                    ),
                    DamageKind::TornBody { declared, available, .. } => (
                        code,
                        format!("the last frame is cut short: its header declares a {declared}-byte body but only {available} bytes remain"),
                        if first {
                            format!("truncates the log to {t} bytes at its next start{skew} (the partial entry, {} bytes, is lost) without resetting its write offset: its next append leaves a hole of {} zero bytes, and that entry and every later one are lost at the following start (hole bug)", d.len, d.len)
                        } else {
                            later
                        },
                    ),
                    DamageKind::NulRun => (
                        code,
                        format!("{} at a frame boundary (goraft's hole bug){found_after}", plural(d.len, "zero byte", "zero bytes")),
                        if first { discard } else { later },
                    ),
                    _ => (
                        code,
                        format!("{}{found_after}", d.text),
                        if first { discard } else { later },
                    ),
                }
            }
        };
        let f = finding(code, msg).offset(d.offset).goraft(goraft);
        // Only proto3 rejects a CommandName that is not UTF-8: goraft would load the entry.
        match &d.kind {
            Damage::Reader(DamageKind::BadEntry {
                error: wire::WireError::InvalidUtf8 { .. },
                ..
            }) => f.implementation("seaweedfs/raft"),
            _ => f,
        }
    }
}

fn damage_code(kind: &Damage) -> &'static str {
    match kind {
        Damage::Prefix { .. } => "log-commit-index-prefix",
        Damage::Reader(DamageKind::TornHeader { .. } | DamageKind::TornBody { .. }) => {
            "log-torn-tail"
        }
        Damage::Reader(DamageKind::NulRun) => "log-nul-hole",
        Damage::Reader(DamageKind::Garbage { .. }) => "log-garbage",
        Damage::Reader(_) => "log-bad-entry",
    }
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

fn valid_snapshot(s: &SnapshotFile) -> Option<&Snapshot> {
    s.name_key?;
    match &s.parsed {
        Ok(p) if p.crc_ok() => p.snapshot.as_ref().ok(),
        _ => None,
    }
}

fn snapshot_rules(dir: &DataDir, log: &LogOutcome, sink: &mut Sink, out: &mut Vec<Finding>) {
    let best = dir.best_snapshot();
    let pick = dir.goraft_snapshot();
    let picked = |s: &SnapshotFile| pick.is_some_and(|p| p.file_name == s.file_name);
    for s in &dir.snapshots {
        let at = |f: Finding| f.file(s.path.clone());
        if s.name_key.is_none() {
            if sink.want("snapshot-stray-file") {
                let goraft = if picked(s) {
                    "LoadSnapshot lists every name and picks the last in string order: it picks this file and fails"
                } else {
                    "LoadSnapshot lists it too; harmless while a snapshot name sorts after it"
                };
                out.push(
                    at(finding(
                        "snapshot-stray-file",
                        format!("snapshot/{} is not named <term>_<index>.ss", s.file_name),
                    ))
                    .goraft(goraft),
                );
            }
            continue;
        }
        let load_fails = if picked(s) {
            "LoadSnapshot picks this file (it sorts last) and fails: bad snapshot file"
        } else {
            "not the file LoadSnapshot picks, so it is never loaded"
        };
        let parsed = match &s.parsed {
            Ok(p) => p,
            Err(e) => {
                if sink.want("snapshot-invalid") {
                    let (msg, off) = match e {
                        SnapshotLoadError::Io(e) => (format!("cannot read it: {e}"), None),
                        SnapshotLoadError::Format(e) => {
                            ("not a snapshot: it does not start with a CRC-32 of 8 hex digits and a newline".to_string(), e.offset)
                        }
                    };
                    let f = at(finding("snapshot-invalid", msg)).goraft(load_fails);
                    out.push(match off {
                        Some(o) => f.offset(o as u64),
                        None => f,
                    });
                }
                continue;
            }
        };
        if !parsed.crc_ok() && sink.want("snapshot-crc") {
            out.push(
                at(finding(
                    "snapshot-crc",
                    format!(
                        "the header declares CRC-32 {:08x} but the {} bytes after it have {:08x} (goraft writes snapshots in place without O_TRUNC: a shorter rewrite keeps an older file's last bytes)",
                        parsed.declared_crc,
                        s.size.saturating_sub(parsed.header_len as u64),
                        parsed.actual_crc
                    ),
                ))
                .offset(0)
                .goraft(load_fails),
            );
        }
        let snap = match &parsed.snapshot {
            Ok(v) => v,
            Err(e) => {
                if sink.want("snapshot-invalid") {
                    let f = at(finding(
                        "snapshot-invalid",
                        format!("snapshot JSON: {}", e.message),
                    ))
                    .goraft(load_fails);
                    out.push(match e.offset {
                        Some(o) => f.offset(o as u64),
                        None => f,
                    });
                }
                continue;
            }
        };
        if let Some((term, index)) = s.name_key {
            if (term, index) != (snap.last_term, snap.last_index)
                && sink.want("snapshot-name-mismatch")
            {
                out.push(
                    at(finding(
                        "snapshot-name-mismatch",
                        format!(
                            "the file name says term {term}, index {index}; the JSON says lastTerm {}, lastIndex {}",
                            snap.last_term, snap.last_index
                        ),
                    ))
                    .goraft("trusts the JSON; the name only decides which file LoadSnapshot picks"),
                );
            }
        }
        let recorded = Path::new(&snap.path);
        if recorded
            .file_name()
            .is_some_and(|n| n.to_string_lossy() != s.file_name)
            || snap.path.is_empty()
        {
            if sink.want("snapshot-path-mismatch") {
                out.push(
                    at(finding(
                        "snapshot-path-mismatch",
                        format!("its recorded path \"{}\" names another file than {}", snap.path, s.file_name),
                    ))
                    .goraft("deletes the recorded path, not this file, when a newer snapshot replaces it"),
                );
            }
        } else if std::path::absolute(&s.path).ok() != std::path::absolute(recorded).ok()
            && sink.want("snapshot-path-moved")
        {
            out.push(
                at(finding(
                    "snapshot-path-moved",
                    format!("its recorded path \"{}\" is not where the file is now (the data dir was moved or copied)", snap.path),
                ))
                .goraft("deletes the recorded path, not this file, when a newer snapshot replaces it, so this file would be left behind"),
            );
        }
        if let Some((_, term)) = log.watched.iter().find(|(i, _)| *i == snap.last_index) {
            if *term != snap.last_term && sink.want("snapshot-log-mismatch") {
                out.push(
                    at(finding(
                        "snapshot-log-mismatch",
                        format!(
                            "the snapshot ends at index {} with term {}, but the log's entry at that index has term {term}",
                            snap.last_index, snap.last_term
                        ),
                    ))
                    .index(snap.last_index)
                    .goraft("starts from the snapshot and keeps log entries above its lastIndex: the state and the log then come from different histories"),
                );
            }
        }
        // The fork snapshots by itself and leaves the older files: its normal state.
        if best.is_some_and(|b| b.file_name != s.file_name)
            && !dir.dialect().snapshots_by_itself()
            && sink.want("snapshot-orphan")
        {
            out.push(
                at(finding(
                    "snapshot-orphan",
                    format!("an older snapshot (lastIndex {}) next to the newest one", snap.last_index),
                ))
                .goraft("never deletes a snapshot it did not take itself in this run: old files pile up"),
            );
        }
    }
    if let Some(p) = pick {
        let differs = best.is_none_or(|b| b.file_name != p.file_name);
        let stray = p.name_key.is_none();
        if differs && (best.is_some() || stray) && sink.want("snapshot-goraft-choice") {
            let newest = match best.and_then(valid_snapshot) {
                Some(b) => format!("the newest valid snapshot has lastIndex {}", b.last_index),
                None => "there is no valid snapshot".to_string(),
            };
            let what = match valid_snapshot(p) {
                Some(v) => format!(
                    "loads the older state at index {} and replays the log from there",
                    v.last_index
                ),
                None => "fails to load it (it is not a valid snapshot): the node cannot start"
                    .to_string(),
            };
            out.push(
                finding(
                    "snapshot-goraft-choice",
                    format!("goraft's LoadSnapshot picks {} (the last name in string order, goraft issue #235); {newest}", p.file_name),
                )
                .file(p.path.clone())
                .goraft(what),
            );
        }
    }
}

fn conf_rules(
    dir: &DataDir,
    log: &LogOutcome,
    best: Option<&Snapshot>,
    sink: &mut Sink,
    out: &mut Vec<Finding>,
) {
    let Some(loaded) = &dir.conf else {
        return;
    };
    let at = |f: Finding| f.file(loaded.path.clone());
    let conf = match &loaded.parsed {
        Ok(c) => c,
        Err(e) => {
            if sink.want("conf-invalid") {
                let f = at(finding("conf-invalid", e.message.clone()))
                    .goraft("Init fails (raft: Initialization error); raftd ignores the error and dies with `raft: Has been stopped`");
                out.push(match e.offset {
                    Some(o) => f.offset(o as u64),
                    None => f,
                });
            }
            return;
        }
    };
    let last = log
        .kept_last_index
        .unwrap_or(0)
        .max(best.map_or(0, |s| s.last_index));
    if conf.commit_index > last && sink.want("conf-commit-beyond-log") {
        let kept = if log.first_damage.is_some() {
            " once it has cut the damage"
        } else {
            ""
        };
        let f = at(finding(
            "conf-commit-beyond-log",
            format!(
                "conf commitIndex {} is above {last}, the last index goraft keeps{kept}",
                conf.commit_index
            ),
        ));
        // The fork reaches TakeSnapshot by itself, once more than 400 entries are in memory.
        out.push(match dir.dialect() {
            Dialect::Goraft => f.goraft(format!(
                "commitInfo() panics with index out of range (reached through TakeSnapshot), and setCommitIndex ignores every commit below {}, so later entries are not applied until then",
                conf.commit_index
            )),
            Dialect::Seaweedfs => f.goraft(format!(
                "commitInfo() panics with index out of range when its automatic snapshot runs (more than 400 entries in memory), and setCommitIndex ignores every commit below {}, so later entries are not applied until then",
                conf.commit_index
            ))
            .implementation("seaweedfs/raft"),
        });
    }
    let m = &log.membership;
    // The trimmed name: a newline added to the name file is reported on its own.
    let Some(me) = dir
        .node_name()
        .map(|n| n.trim_end_matches(['\n', '\r', ' ', '\t']))
        .filter(|n| !n.is_empty())
    else {
        return;
    };
    if !m.known || log.kept_entries == 0 && dir.best_snapshot().is_none() {
        return;
    }
    let mut expected = if conf.commit_index > last {
        m.members.clone()
    } else {
        m.at_conf.clone()
    };
    expected.remove(me);
    let mut listed: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for p in &conf.peers {
        if listed
            .insert(p.name.clone(), p.connection_string.clone())
            .is_some()
        {
            problems.push(format!("lists \"{}\" twice", p.name));
        }
    }
    if listed.contains_key(me) {
        problems.push(format!(
            "lists the node itself (\"{me}\"); goraft's conf holds only the other members"
        ));
        listed.remove(me);
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !listed.contains_key(*k))
        .collect();
    let extra: Vec<_> = listed
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("lacks {}", names(&missing)));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "lists {}, which the log does not make members",
            names(&extra)
        ));
    }
    for (name, cs) in &listed {
        if let Some(want) = expected.get(name) {
            if want != cs {
                problems.push(format!(
                    "gives \"{name}\" connectionString \"{cs}\", the log \"{want}\""
                ));
            }
        }
    }
    if !problems.is_empty() && sink.want("conf-peers-mismatch") {
        let upto = if conf.commit_index > last {
            "all joins and leaves".to_string()
        } else {
            format!(
                "the joins and leaves up to conf commitIndex {}",
                conf.commit_index
            )
        };
        out.push(
            at(finding(
                "conf-peers-mismatch",
                format!("conf peers disagree with {upto}: conf {}", problems.join("; ")),
            ))
            .goraft("never reads peers back (it replays the joins and leaves instead), so conf was edited, or written by another history"),
        );
    }
}

fn names(list: &[&String]) -> String {
    list.iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `raftdump-state`'s term against the log's: a node's term rises one per election, so a term
/// far beyond the log's last term (or near overflow) was forged or corrupted.
fn state_rules(
    dir: &DataDir,
    log: &LogOutcome,
    best: Option<&Snapshot>,
    sink: &mut Sink,
    out: &mut Vec<Finding>,
) {
    let Some((path, term)) = &dir.state_term else {
        return;
    };
    let last = log
        .last_term
        .unwrap_or(0)
        .max(best.map_or(0, |s| s.last_term));
    let far = term.saturating_sub(last) > crate::model::MAX_TERM_STEP;
    if (far || crate::model::term_is_poisoned(*term)) && sink.want("state-term-beyond-log") {
        out.push(
            finding(
                "state-term-beyond-log",
                format!(
                    "currentTerm {term} is far beyond the log's last term {last}: a forged or \
                     corrupt term that leaves no room for elections"
                ),
            )
            .file(path.clone())
            .offset(0),
        );
    }
}

fn name_rules(dir: &DataDir, log: &LogOutcome, sink: &mut Sink, out: &mut Vec<Finding>) {
    if dir.kind != InputKind::Dir {
        return;
    }
    let Some(loaded) = &dir.name else {
        return;
    };
    let at = |f: Finding| f.file(loaded.path.clone());
    let raw = &loaded.raw;
    let Ok(name) = &loaded.parsed else {
        if sink.want("name-invalid") {
            out.push(at(finding("name-invalid", format!("the name file ({} bytes) is not UTF-8", raw.len())))
                .goraft("raftd uses the raw bytes as the node name anyway; they cannot match a JSON join"));
        }
        return;
    };
    if name.is_empty() {
        if sink.want("name-invalid") {
            out.push(
                at(finding("name-invalid", "the name file is empty")).goraft(
                    "raftd reads it successfully and uses the empty string as the node name",
                ),
            );
        }
        return;
    }
    let m = &log.membership;
    let trimmed = name.trim_end_matches(['\n', '\r', ' ', '\t']);
    if trimmed.len() != name.len() {
        if sink.want("name-trailing-newline") {
            let joined = match m.joined.get(trimmed) {
                Some(i) => {
                    format!(
                        ", so this node no longer matches its join of \"{trimmed}\" at index {i}"
                    )
                }
                None => String::new(),
            };
            out.push(
                at(finding(
                    "name-trailing-newline",
                    format!("the name file holds \"{name}\": whitespace follows \"{trimmed}\""),
                ))
                .goraft(format!(
                    "raftd uses the whole content, whitespace included, as the node name{joined}"
                )),
            );
        }
        if m.joined.contains_key(trimmed) {
            return;
        }
    }
    if !m.known || log.kept_entries == 0 || m.members.contains_key(name.as_str()) {
        return;
    }
    if sink.want("name-not-joined") {
        let why = match (m.joined.get(name.as_str()), m.left.get(name.as_str())) {
            (Some(_), Some(l)) => format!("it left at index {l}"),
            _ => {
                let mut s = String::from("no raft:join for it in the log");
                if !m.members.is_empty() {
                    let members: Vec<_> = m.members.keys().collect();
                    let _ = write!(s, " (members: {})", names(&members));
                }
                s
            }
        };
        out.push(at(finding("name-not-joined", format!("node name \"{name}\" is not a member: {why}")))
            .goraft("restarts from this log as a node its cluster does not know: no leader replicates to it"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::log::LogWriter;

    fn log(entries: &[(u64, u64, Command)]) -> Vec<u8> {
        let mut w = LogWriter::new(Vec::new());
        for (i, t, c) in entries {
            w.append(*i, *t, c).unwrap();
        }
        w.into_inner()
    }

    fn join(name: &str) -> Command {
        Command::Join {
            name: name.into(),
            connection_string: format!("http://127.0.0.1:{}", name.len()),
        }
    }

    fn write(k: &str, v: &str) -> Command {
        Command::Write {
            key: k.into(),
            value: v.into(),
        }
    }

    fn codes(bytes: &[u8]) -> Vec<(&'static str, Option<u64>, Option<u64>)> {
        check_log(bytes, &LogContext::default())
            .1
            .iter()
            .map(|f| (f.code, f.offset, f.index))
            .collect()
    }

    /// [`check_log`] with the pass run in `parts` parts, and how many parts were taken over.
    fn split_check(
        bytes: &[u8],
        ctx: &LogContext,
        parts: usize,
    ) -> ((LogOutcome, Vec<Finding>), usize) {
        let mut pass = LogPass::new(bytes, ctx);
        let taken = pass.run_split(parts, &|_| {});
        let (out, mut findings, sink) = pass.finish();
        findings.extend(sink.suppressed(ctx.node.as_deref()));
        ((out, findings), taken)
    }

    /// Puts another entry in place of the write at an index (see [`writes`]), or returns false.
    type Plant = Box<dyn Fn(&mut LogWriter<Vec<u8>>, u64) -> bool>;

    /// A log of writes `1..n` in term 1 where `f(i)` may put another command at index `i`.
    fn writes(n: u64, mut f: impl FnMut(&mut LogWriter<Vec<u8>>, u64) -> bool) -> Vec<u8> {
        let mut w = LogWriter::new(Vec::new());
        for i in 1..=n {
            if !f(&mut w, i) {
                w.append(i, 1, &write(&format!("k{i}"), "value")).unwrap();
            }
        }
        w.into_inner()
    }

    /// A pass in parts finds what one pass finds: on every fixture log, and on a long log
    /// with odd payloads, findings over the per-code limit, a hole, garbage and a torn tail,
    /// with and without the commit-index prefix and a context, in 2 to 4 parts.
    #[test]
    fn a_pass_in_parts_finds_the_same() {
        let logs = crate::datadir::testing::fixture_logs();
        for path in &logs {
            let bytes = std::fs::read(path).unwrap();
            let ctx = LogContext::default();
            assert_eq!(
                split_check(&bytes, &ctx, 2).0,
                check_log(&bytes, &ctx),
                "{}",
                path.display()
            );
        }
        assert!(logs.len() > 40, "{} fixture logs", logs.len());
        let mut w = LogWriter::new(Vec::new());
        w.append(1, 0, &join("a")).unwrap();
        for i in 2..20_000u64 {
            match i % 997 {
                5 => w
                    .append_raw(i, 1, "write", Some(b"{\"value\":\"v\",\"key\":\"k\"}"))
                    .unwrap(),
                6 => w.append(i, 1, &write("k", "lost \u{fffd}")).unwrap(),
                7 => w.append_raw(i, 1, "etcd:set", Some(b"{}")).unwrap(),
                8 => w.append_raw(i, 1, "write", Some(b"{not json")).unwrap(),
                9 => w.append(i, 0, &Command::Nop).unwrap(),
                _ => w.append(i, 1, &write(&format!("k{i}"), "v")).unwrap(),
            }
        }
        let long = w.into_inner();
        let mut damaged = long.clone();
        damaged[500_000..501_000].fill(0);
        damaged[900_000..900_050].fill(b'x');
        damaged.truncate(damaged.len() - 7);
        let mut prefixed = b"      2a\n".to_vec();
        prefixed.extend_from_slice(&long);
        let ctx = LogContext {
            node: Some("n1".into()),
            file: PathBuf::from("n1/log"),
            conf_commit: 3_000,
            watch: vec![10, 15_000],
            ..LogContext::default()
        };
        for bytes in [&long, &damaged, &prefixed] {
            for ctx in [&LogContext::default(), &ctx] {
                let want = check_log(bytes, ctx);
                assert!(want.1.len() > 10, "{:?}", want.1);
                for parts in 2..=4 {
                    assert_eq!(split_check(bytes, ctx, parts).0, want, "{parts} parts");
                }
            }
        }
    }

    /// The parts of a clean log are taken over (the work is shared), and so are those of a
    /// log whose findings all lie in the first part; with watched indexes in every part.
    #[test]
    fn clean_parts_are_taken_over() {
        let ctx = LogContext {
            watch: vec![3, 2_500, 7_000, 9_999],
            ..LogContext::default()
        };
        let clean = writes(10_000, |_, _| false);
        let want = check_log(&clean, &ctx);
        assert_eq!(want.1, []);
        assert_eq!(want.0.watched.len(), 4);
        for parts in 2..=4 {
            assert_eq!(split_check(&clean, &ctx, parts), (want.clone(), parts - 1));
        }
        let early = writes(10_000, |w, i| {
            (i == 10)
                .then(|| w.append(i, 0, &Command::Nop).unwrap())
                .is_some()
        });
        let want = check_log(&early, &ctx);
        assert_eq!(want.1.len(), 1, "{:?}", want.1);
        assert_eq!(split_check(&early, &ctx, 2), (want, 1));
    }

    /// A part is read again when what it found depends on the entries before it: a term that
    /// decreases or an index that jumps at (or next to) a part's first frame, a membership
    /// entry inside a part, a finding or damage inside a part; the answer is always that of
    /// one pass.
    #[test]
    fn parts_that_depend_on_what_came_before_are_read_again() {
        let n = 10_000u64;
        let base = writes(n, |_, _| false);
        // The entry at the middle of the log is where a part of two starts.
        let (at, mid, _) =
            crate::format::log::boundary_after(&base, base.len() / 2, Dialect::Goraft).unwrap();
        assert!(at > 0 && mid > 1);
        for j in [mid - 1, mid, mid + 1, mid + 2] {
            let cases: [Plant; 5] = [
                Box::new(move |w, i| {
                    (i == j)
                        .then(|| w.append(i, 0, &write("k", "v")).unwrap())
                        .is_some()
                }),
                Box::new(move |w, i| {
                    (i == j)
                        .then(|| w.append(i + 5, 1, &write("k", "v")).unwrap())
                        .is_some()
                }),
                Box::new(move |w, i| {
                    (i == j)
                        .then(|| w.append(i, 1, &join("b")).unwrap())
                        .is_some()
                }),
                Box::new(move |w, i| {
                    (i == j)
                        .then(|| w.append_raw(i, 1, "etcd:set", Some(b"{}")).unwrap())
                        .is_some()
                }),
                Box::new(move |w, i| {
                    (i == j)
                        .then(|| w.append(i, 1, &write("k", "\u{fffd}")).unwrap())
                        .is_some()
                }),
            ];
            for (c, f) in cases.iter().enumerate() {
                let bytes = writes(n, f);
                let ctx = LogContext {
                    base_members: Some(Vec::new()),
                    ..LogContext::default()
                };
                let want = check_log(&bytes, &ctx);
                assert!(!want.1.is_empty() || c == 2, "case {c} at index {j}");
                let (got, taken) = split_check(&bytes, &ctx, 2);
                assert_eq!(got, want, "case {c} at index {j}");
                // Where this log's second part starts (the entries before it changed size), as
                // the number of frames before it; the changed entry is frame `j - 1`.
                let (at, _, _) =
                    crate::format::log::boundary_after(&bytes, bytes.len() / 2, Dialect::Goraft)
                        .unwrap();
                let mut cut = 0;
                crate::format::log::Frames::new(&bytes).each_before(at, |_, _| cut += 1);
                // An entry before the cut leaves the part after it plain, unless it is an index
                // the part's first frame does not follow.
                let plain = j - 1 < cut && !(c == 1 && j == cut);
                assert_eq!(
                    taken,
                    usize::from(plain),
                    "case {c} at index {j}, cut before frame {cut}"
                );
            }
        }
        let mut torn = base.clone();
        torn.truncate(torn.len() - 3);
        let mut holed = base.clone();
        holed[base.len() * 3 / 4..base.len() * 3 / 4 + 100].fill(0);
        for bytes in [torn, holed] {
            let want = check_log(&bytes, &LogContext::default());
            assert_eq!(split_check(&bytes, &LogContext::default(), 2), (want, 0));
        }
    }

    /// A cut at a false boundary (frames inside a payload) is not trusted: the reader of the
    /// first part does not stop there, so the part is read again. Here the false frames go on
    /// with the indexes after the payload's entry and the true frames after them, so the part
    /// looks plain and follows on: only the reader's position tells.
    #[test]
    fn a_false_boundary_is_not_trusted() {
        let (half, k) = (2_000u64, 200u64);
        let mut fake = LogWriter::new(Vec::new());
        for i in half + 1..=half + k {
            fake.append(i, 1, &write(&format!("k{i}"), "value"))
                .unwrap();
        }
        let fake = fake.into_inner();
        // Logs with more and more entries after the blob, until the middle of one falls just
        // before the blob's first false frame.
        let log = |after: u64| {
            let mut w = LogWriter::new(Vec::new());
            for i in (1..=half + k + after).filter(|i| !(half + 1..=half + k).contains(i)) {
                if i == half {
                    w.append_raw(i, 1, "blob", Some(&fake)).unwrap();
                } else {
                    w.append(i, 1, &write(&format!("k{i}"), "value")).unwrap();
                }
            }
            w.into_inner()
        };
        let bytes = (1_700..2 * half)
            .map(log)
            .find(|b| {
                crate::format::log::boundary_after(b, b.len() / 2, Dialect::Goraft)
                    .is_some_and(|c| c.1 == half + 1)
            })
            .unwrap();
        let want = check_log(&bytes, &LogContext::default());
        assert!(want.1.iter().any(|f| f.code == "index-gap"), "{:?}", want.1);
        assert_eq!(split_check(&bytes, &LogContext::default(), 2), (want, 0));
    }

    /// The spec's 161-byte sample (section 2.4.2): join@1, nop@2, write@3, term 0.
    fn sample() -> Vec<u8> {
        let join = Command::Join {
            name: "2832bfa".into(),
            connection_string: "http://localhost:4001".into(),
        };
        let l = log(&[
            (1, 0, join),
            (2, 0, Command::Nop),
            (3, 0, write("foo", "bar")),
        ]);
        assert_eq!(l.len(), 161);
        l
    }

    #[test]
    fn clean_log_has_no_findings() {
        let (out, f) = check_log(&sample(), &LogContext::default());
        assert_eq!(f, []);
        assert_eq!(
            (
                out.entries,
                out.first_index,
                out.last_index,
                out.kept_entries
            ),
            (3, Some(1), Some(3), 3)
        );
        assert_eq!(out.first_damage, None);
        assert_eq!(
            out.membership.members.keys().collect::<Vec<_>>(),
            ["2832bfa"]
        );
    }

    #[test]
    fn torn_tails_say_what_goraft_does() {
        let base = sample();
        let mut cut = base.clone();
        cut.truncate(base.len() - 10);
        let (out, f) = check_log(&cut, &LogContext::default());
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].code, f[0].offset, out.goraft_truncate_at),
            ("log-torn-tail", Some(111), Some(111))
        );
        assert!(
            f[0].goraft
                .as_deref()
                .unwrap()
                .contains("truncates the log to 111 bytes"),
            "{f:?}"
        );
        let mut stale = base.clone();
        stale.extend_from_slice(b"      29");
        let f = check_log(&stale, &LogContext::default()).1;
        assert!(
            f[0].goraft
                .as_deref()
                .unwrap()
                .contains("keeps the 8 stale bytes"),
            "{f:?}"
        );
        let mut spaces = base;
        spaces.extend_from_slice(b"   ");
        assert_eq!(codes(&spaces), [("log-torn-tail", Some(161), None)]);
    }

    #[test]
    fn nul_hole_lists_the_frames_after_it() {
        let base = sample();
        let mut holed = base[..88].to_vec();
        holed.extend_from_slice(&[0; 30]);
        holed.extend_from_slice(&base[88..]);
        let (out, f) = check_log(&holed, &LogContext::default());
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].code, f[0].offset), ("log-nul-hole", Some(88)));
        assert!(
            f[0].message
                .contains("2 good frames follow it (index 2 to 3)"),
            "{}",
            f[0].message
        );
        assert!(f[0]
            .goraft
            .as_deref()
            .unwrap()
            .contains("truncates the log to 88 bytes"));
        assert_eq!(
            (out.kept_entries, out.kept_last_index, out.entries),
            (1, Some(1), 3)
        );
    }

    #[test]
    fn index_and_term_order() {
        let l = log(&[
            (1, 1, Command::Nop),
            (2, 1, Command::Nop),
            (4, 1, Command::Nop),
            (4, 0, Command::Nop),
        ]);
        assert_eq!(
            codes(&l),
            [
                ("index-gap", Some(46), Some(4)),
                ("index-duplicate", Some(69), Some(4)),
                ("term-decrease", Some(69), Some(4))
            ]
        );
        let l = log(&[(5, 0, Command::Nop)]);
        assert_eq!(codes(&l), [("log-first-index", Some(0), Some(5))]);
        let ctx = LogContext {
            snapshot_last_index: Some(4),
            ..LogContext::default()
        };
        assert_eq!(check_log(&l, &ctx).1, []);
    }

    #[test]
    fn commands() {
        let mut w = LogWriter::new(Vec::new());
        w.append(1, 0, &join("a")).unwrap();
        w.append_raw(2, 0, "etcd:set", Some(b"{}")).unwrap();
        w.append_raw(3, 0, "write", Some(b"{\"key\":1}\n")).unwrap();
        w.append_raw(4, 0, "write", Some(b"{\"value\":\"v\",\"key\":\"k\"}\n"))
            .unwrap();
        w.append(
            5,
            0,
            &Command::Write {
                key: "k".into(),
                value: "a\u{fffd}".into(),
            },
        )
        .unwrap();
        w.append_raw(6, 0, "raft:join", Some(b"null\n")).unwrap();
        w.append(7, 0, &join("a")).unwrap();
        w.append_raw(8, 0, "etcd:set", Some(b"{}")).unwrap();
        let got: Vec<_> = codes(&w.into_inner())
            .into_iter()
            .map(|(c, _, i)| (c, i))
            .collect();
        assert_eq!(
            got,
            [
                ("unknown-command", Some(2)),
                ("command-invalid", Some(3)),
                ("command-non-canonical", Some(4)),
                ("write-replacement-char", Some(5)),
                ("join-empty-name", Some(6)),
                ("join-duplicate", Some(7)),
            ]
        );
    }

    #[test]
    fn findings_are_capped_per_code() {
        let mut w = LogWriter::new(Vec::new());
        for i in 1..=30 {
            w.append_raw(i, 0, "write", Some(b"{\"key\":1}\n")).unwrap();
        }
        let f = check_log(&w.into_inner(), &LogContext::default()).1;
        assert_eq!(f.len(), LIMIT as usize + 1);
        assert_eq!(f.last().unwrap().code, "findings-suppressed");
        assert!(f
            .last()
            .unwrap()
            .message
            .starts_with("10 more command-invalid findings"));
    }

    #[test]
    fn commit_index_prefix_is_recognised() {
        let mut l = b"      10\n".to_vec();
        l.extend_from_slice(&sample());
        let (out, f) = check_log(&l, &LogContext::default());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].code, f[0].offset),
            ("log-commit-index-prefix", Some(0))
        );
        assert_eq!(
            (out.entries, out.kept_entries, out.first_damage),
            (3, 0, Some(0))
        );
    }

    #[test]
    fn a_proto3_log_checked_in_parts_gives_what_one_pass_gives() {
        // A master's log: term 0 (no Term field) then term 2; then with an unknown command and
        // a zero byte in the middle.
        let master = |other: Option<u64>| {
            let mut w = LogWriter::with_dialect(Vec::new(), Dialect::Seaweedfs);
            for i in 1..=400u64 {
                let term = if i < 200 { 0 } else { 2 };
                let payload = format!("{{\"maxVolumeId\":{i}}}\n");
                let name = if Some(i) == other {
                    "Other"
                } else {
                    "MaxVolumeId"
                };
                w.append_raw(i, term, name, Some(payload.as_bytes()))
                    .unwrap();
            }
            w.into_inner()
        };
        let ctx = LogContext {
            dialect: Dialect::Seaweedfs,
            ..LogContext::default()
        };
        // Clean, its parts are read on their own threads and taken over.
        let log = master(None);
        let whole = check_log(&log, &ctx);
        assert_eq!((whole.0.entries, whole.1.len()), (400, 0));
        for parts in 2..=4 {
            assert_eq!(split_check(&log, &ctx, parts), (whole.clone(), parts - 1));
        }
        let mut log = master(Some(300));
        let (at, _) = crate::datadir::testing::frame_span_as(&log, 250, Dialect::Seaweedfs);
        log.insert(at, 0);
        let whole = check_log(&log, &ctx);
        assert_eq!(whole.0.entries, 400);
        let codes: Vec<_> = whole.1.iter().map(|f| f.code).collect();
        assert_eq!(codes, ["log-nul-hole", "unknown-command"]);
        for parts in 2..=4 {
            assert_eq!(split_check(&log, &ctx, parts).0, whole, "{parts} parts");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_reports_in_file_order(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            at in 0usize..161,
            splice in proptest::bool::ANY,
        ) {
            // Arbitrary bytes on their own, and spliced into goraft's 161-byte sample log.
            let mut spliced = sample();
            if splice {
                spliced.splice(at..at, noise.iter().copied());
            } else {
                let n = noise.len().min(161 - at);
                spliced[at..at + n].copy_from_slice(&noise[..n]);
            }
            // The same under the seaweedfs dialect (proto3 reads more bodies as entries).
            let proto3 = LogContext {
                dialect: Dialect::Seaweedfs,
                ..LogContext::default()
            };
            for (bytes, ctx) in [&noise[..], &spliced[..]]
                .into_iter()
                .flat_map(|b| [(b, LogContext::default()), (b, proto3.clone())])
            {
                let (out, f) = check_log(bytes, &ctx);
                for parts in 2..=3 {
                    proptest::prop_assert_eq!(split_check(bytes, &ctx, parts).0, (out.clone(), f.clone()));
                }
                let offsets: Vec<u64> = f.iter().filter_map(|f| f.offset).collect();
                proptest::prop_assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
                proptest::prop_assert!(out.kept_entries <= out.entries);
                proptest::prop_assert_eq!(out.first_damage.is_some(), out.goraft_truncate_at.is_some());
            }
        }
    }
}
