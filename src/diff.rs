//! Index-aligned comparison of N nodes' logs: where they agree, where they part ways, which node
//! holds which tail, what the files prove committed, and how conf, snapshots, membership and
//! (optionally) the replayed key-value states differ.
//!
//! It streams: one reader per node ([`crate::format::log::Frames`], which yields what `LogReader`
//! yields and takes over a frame another log holds byte for byte at the same offset), advanced in
//! lockstep by index, so it holds one entry per node at a time (plus a bounded number of
//! conflicting rows and events kept for the report), never whole logs. Each node's entries also
//! feed a [`Replayer`] (membership only, or the full state with `state`), so the same pass gives
//! membership and state differences.
//!
//! Through the common prefix, where every log holds the same bytes at the same offsets, it goes
//! in bulk: the logs are compared block by block, the first log's canonical frames are decoded
//! once and every node takes the same entries; replayers that mirror the first node's (same
//! start, membership only) are not fed but given its state when the bulk ends. Anything else
//! (a non-canonical frame, an index out of order, damage, a cut) takes the general path.
//!
//! Commit evidence, strongest first: an entry (same index, term and command) held by a majority
//! of the cluster is committed, and by Log Matching so is every entry before it (a later entry
//! built on them); a node's conf `commitIndex` and its snapshot's `lastIndex` are lower bounds for
//! that node (conf is stale: it is only written at membership changes). The cluster size is the
//! larger of the number of distinct nodes given and the largest membership replayed so far.
//!
//! Pure: it reads opened data dirs and returns a [`Divergence`]; `check::cluster` turns it into
//! findings and `render::diff` prints it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::datadir::DataDir;
use crate::format::log::{LogError, RawEntry};
use crate::model::{Entry, Index, Term};
use crate::replay::{self, Replay, ReplayError, ReplayOptions, Replayer};

/// One side of the comparison: a node's data dir, optionally cut at an index (`DIR@INDEX`).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The node's files.
    pub dir: &'a DataDir,
    /// Compare only entries up to this index.
    pub at: Option<Index>,
}

/// What to compare and how much detail to keep.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Replay each node's key-value state and compare it key by key.
    pub state: bool,
    /// Conflicting rows kept for the report (the rest are counted).
    pub max_rows: usize,
    /// Events of each kind kept (the rest are counted).
    pub max_events: usize,
    /// Tail segments kept (the rest are counted).
    pub max_tails: usize,
    /// Shared with another reader of the same logs (`verify`'s node passes): the length of the
    /// prefix in which every log is known to hold the same bytes as the first. The comparison
    /// skips comparing what it says and raises it as it compares more ([`SameBytes`]).
    pub same_bytes: Option<std::sync::Arc<SameBytes>>,
}

/// How many bytes at the start of every log of a comparison are known to be the same as the
/// first log's, shared between threads that compare them, so that a block compared by one
/// is not compared again by another. It only grows; a reader of it may only rely on it for
/// logs that do not change while it runs (as `verify` maps them).
#[derive(Debug, Default)]
pub struct SameBytes(std::sync::atomic::AtomicUsize);

impl SameBytes {
    /// The bytes known to be the same.
    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records that the first `len` bytes of every log are the same.
    pub fn raise(&self, len: usize) {
        self.0.fetch_max(len, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            state: false,
            max_rows: 1000,
            max_events: 100,
            max_tails: 1000,
            same_bytes: None,
        }
    }
}

/// Why a comparison cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// No node given.
    #[error("nothing to compare: no node given")]
    NoNodes,
    /// More nodes than the comparison supports.
    #[error("{0} nodes given; at most {MAX_NODES} can be compared at once")]
    TooManyNodes(usize),
    /// A node cannot be replayed to the point asked.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// The most nodes compared at once (holder sets are 64-bit masks).
pub const MAX_NODES: usize = 64;

/// A set of nodes, by position in the targets (bit k = node k).
pub type Nodes = u64;

/// The positions in a node set.
pub fn members_of(nodes: Nodes) -> impl Iterator<Item = usize> {
    (0..MAX_NODES).filter(move |k| nodes & (1 << k) != 0)
}

/// `from..to`, or `from` alone when they are equal.
pub fn span(from: Index, to: Index) -> String {
    if from == to {
        from.to_string()
    } else {
        format!("{from}..{to}")
    }
}

/// The snapshot a node would start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// File name.
    pub file: String,
    /// Its last index.
    pub last_index: Index,
    /// Its last term.
    pub last_term: Term,
}

/// A node's conf, reduced to what is compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfInfo {
    /// `commitIndex`.
    pub commit_index: Index,
    /// The peers' names plus the node's own name (each node's conf lists the others only).
    pub members: BTreeSet<String>,
}

/// One node as the comparison saw it.
#[derive(Debug, Clone)]
pub struct NodeSummary {
    /// The data dir.
    pub path: PathBuf,
    /// The cut, when given.
    pub at: Option<Index>,
    /// The node name.
    pub name: Option<String>,
    /// The position of the first target that is the same node (same path): two points of one
    /// node count once towards a majority.
    pub identity: usize,
    /// The first index compared.
    pub first_index: Option<Index>,
    /// The last index compared.
    pub last_index: Option<Index>,
    /// The term of that entry.
    pub last_term: Option<Term>,
    /// Entries compared.
    pub entries: u64,
    /// Entries whose index is not above the previous one (not compared).
    pub out_of_order: u64,
    /// The first damage: goraft truncates the log there, so nothing after it is compared.
    pub damage: Option<LogError>,
    /// The best snapshot.
    pub snapshot: Option<SnapshotInfo>,
    /// The conf, when present and valid.
    pub conf: Option<ConfInfo>,
    /// Why the conf is unusable, when it is present but invalid.
    pub conf_error: Option<String>,
    /// The replay of the node (membership and counts; the key-value state too with `state`).
    pub replay: Replay,
    /// The dialect its log was read under.
    pub dialect: crate::format::dialect::Dialect,
}

impl NodeSummary {
    /// A label: the path, with `@INDEX` when cut.
    pub fn label(&self) -> String {
        match self.at {
            Some(at) => format!("{}@{at}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

/// Why a node has no entry at an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// Before its log's first entry, covered by its snapshot.
    Covered,
    /// Before its first entry without a snapshot covering it, or a hole in its indexes.
    Missing,
    /// After its last entry (the log ends, is damaged, or is cut with `@INDEX`).
    Beyond,
}

/// A node's cell in a conflicting row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// The node's entry and its byte offset.
    Entry(Entry, u64),
    /// No entry here.
    Absent(Absent),
}

/// An index where nodes hold different entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The index.
    pub index: Index,
    /// One cell per node.
    pub cells: Vec<Cell>,
}

/// How two nodes first differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairDiff {
    /// Same entries wherever both have one, and the same last index.
    Identical,
    /// Different entries at this index.
    Conflict(Index),
    /// One log ends (or is cut) before the other: `shorter` is the node without entry `index`.
    Ends {
        /// The first index only one of them has.
        index: Index,
        /// The node whose log ends first.
        shorter: usize,
    },
    /// One node lacks the entry at `index` (a hole, or a log starting later without a snapshot).
    Missing {
        /// The index.
        index: Index,
        /// The node without it.
        missing: usize,
    },
}

impl PairDiff {
    /// The first index where they differ.
    pub fn index(&self) -> Option<Index> {
        match *self {
            PairDiff::Identical => None,
            PairDiff::Conflict(i)
            | PairDiff::Ends { index: i, .. }
            | PairDiff::Missing { index: i, .. } => Some(i),
        }
    }
}

/// One pair of nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// First node.
    pub a: usize,
    /// Second node.
    pub b: usize,
    /// How they first differ.
    pub diff: PairDiff,
}

/// Whether a tail can still be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailStatus {
    /// Held by a majority: committed.
    OnMajority,
    /// On fewer than a majority, but its holders' own files say it is committed: their snapshot
    /// covers it, or their conf `commitIndex` does.
    Claimed {
        /// Which of the holders' files says so.
        evidence: Evidence,
    },
    /// On fewer than a majority, and no other entry holds these indexes on a majority: it may
    /// still be committed, or be overwritten.
    NotOnMajority,
    /// Other entries hold these indexes on a majority: these can never be committed; goraft
    /// truncates them when the node follows the leader.
    Overwritten {
        /// The term of the majority's entries (later than the tail's in a normal divergence).
        by_term: Term,
    },
}

/// A run of consecutive entries beyond the common prefix, held identically by a set of nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The nodes holding it.
    pub nodes: Nodes,
    /// The byte offset of its first entry in each holder's log, in node order.
    pub offsets: Vec<u64>,
    /// Distinct nodes among them.
    pub holders: usize,
    /// First index.
    pub from: Index,
    /// Last index.
    pub to: Index,
    /// Lowest term in it.
    pub min_term: Term,
    /// Highest term in it.
    pub max_term: Term,
    /// Whether it can be committed.
    pub status: TailStatus,
}

/// Which kind of evidence proved the committed prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The entry is on a majority (and by Log Matching so is everything before it).
    Majority,
    /// A node's conf `commitIndex` (stale: written at the last membership change).
    ConfCommitIndex,
    /// A node's snapshot `lastIndex` (snapshots are taken at the commit index).
    Snapshot,
}

impl Evidence {
    /// A stable name: `majority`, `conf-commit-index`, `snapshot`.
    pub fn code(self) -> &'static str {
        match self {
            Evidence::Majority => "majority",
            Evidence::ConfCommitIndex => "conf-commit-index",
            Evidence::Snapshot => "snapshot",
        }
    }
}

/// The highest entry found on a majority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MajorityBound {
    /// Its index.
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// The nodes holding it.
    pub nodes: Nodes,
    /// Distinct nodes among them.
    pub holders: usize,
    /// The cluster size used at that index.
    pub cluster_size: usize,
}

/// A bound that comes from one node's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeBound {
    /// The index.
    pub index: Index,
    /// The node.
    pub node: usize,
}

/// What the files prove committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Commit {
    /// The highest index on a majority.
    pub majority: Option<MajorityBound>,
    /// The highest conf `commitIndex` (capped at that node's last index).
    pub conf: Option<NodeBound>,
    /// The highest snapshot `lastIndex`.
    pub snapshot: Option<NodeBound>,
    /// The cluster size at the end (distinct nodes given, or the largest membership replayed).
    pub cluster_size: usize,
}

impl Commit {
    /// The committed prefix `1..=index`, the evidence that proves the most, and the node whose
    /// log holds that prefix (a holder of the majority entry, else the node the bound comes from).
    pub fn committed(&self) -> Option<(Index, Evidence, usize)> {
        let mut best: Option<(Index, Evidence, usize)> = None;
        let mut consider = |c: (Index, Evidence, usize)| {
            if best.is_none_or(|b| c.0 > b.0) {
                best = Some(c);
            }
        };
        if let Some(m) = self.majority {
            consider((
                m.index,
                Evidence::Majority,
                members_of(m.nodes).next().unwrap_or(0),
            ));
        }
        if let Some(c) = self.conf {
            consider((c.index, Evidence::ConfCommitIndex, c.node));
        }
        if let Some(s) = self.snapshot {
            consider((s.index, Evidence::Snapshot, s.node));
        }
        best
    }
}

/// Why a version of an entry is known to be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// It is on a majority.
    Majority {
        /// Distinct holders.
        holders: usize,
        /// Cluster size.
        cluster_size: usize,
    },
    /// The node's conf `commitIndex` covers it.
    ConfCommitIndex {
        /// The node.
        node: usize,
        /// Its commitIndex.
        commit_index: Index,
    },
    /// The node's snapshot covers it.
    Snapshot {
        /// The node.
        node: usize,
        /// Its lastIndex.
        last_index: Index,
    },
}

/// One version of an entry that some evidence says is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenVersion {
    /// Its term.
    pub term: Term,
    /// Nodes holding it.
    pub nodes: Nodes,
    /// The first holder's byte offset (`None` for a snapshot's `lastTerm`, which has no entry).
    pub offset: Option<u64>,
    /// Why it counts as committed.
    pub claims: Vec<Claim>,
}

/// Two different entries at one index, each proven committed: State Machine Safety is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedConflict {
    /// The index.
    pub index: Index,
    /// The proven versions (two or more).
    pub versions: Vec<ProvenVersion>,
}

/// Two nodes' entries at one index, with their offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPair {
    /// The index.
    pub index: Index,
    /// The term (of both entries for Election Safety, of the shared entry for Log Matching).
    pub term: Term,
    /// First node.
    pub a: usize,
    /// Its entry's byte offset.
    pub a_offset: u64,
    /// Second node.
    pub b: usize,
    /// Its entry's byte offset.
    pub b_offset: u64,
    /// For Log Matching: where their prefixes first differ.
    pub prefix_differs_at: Option<Index>,
}

/// A bounded list of events with the total count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped<T> {
    /// The events kept.
    pub items: Vec<T>,
    /// How many there were.
    pub total: u64,
    cap: usize,
}

impl<T> Capped<T> {
    fn new(cap: usize) -> Self {
        Capped {
            items: Vec::new(),
            total: 0,
            cap,
        }
    }

    fn push(&mut self, t: T) {
        self.total += 1;
        if self.items.len() < self.cap {
            self.items.push(t);
        }
    }
}

/// A key whose value differs between the nodes' states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    /// The key.
    pub key: String,
    /// Each node's value (`None`: not set).
    pub values: Vec<Option<String>>,
}

/// The key-by-key comparison of the replayed states.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateDiff {
    /// Keys whose values differ, sorted.
    pub rows: Vec<StateRow>,
    /// Keys with the same value everywhere.
    pub same: u64,
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct Divergence {
    /// The nodes, in the order given.
    pub nodes: Vec<NodeSummary>,
    /// The range every node holds identically (`None` when they differ from the first index).
    pub common: Option<(Index, Index)>,
    /// Every pair of nodes.
    pub pairs: Vec<Pair>,
    /// Indexes where nodes hold different entries (at most `max_rows`).
    pub rows: Vec<Row>,
    /// How many such indexes there are.
    pub conflicting_indexes: u64,
    /// Runs beyond the common prefix and who holds them.
    pub tails: Vec<Tail>,
    /// Runs not kept (over `max_tails`).
    pub tails_dropped: u64,
    /// What the files prove committed.
    pub commit: Commit,
    /// Different entries with the same index and term (Election Safety).
    pub election_safety: Capped<EntryPair>,
    /// Same index and term, same entry, different prefixes (Log Matching).
    pub log_matching: Capped<EntryPair>,
    /// Same index, term and command, but different protobuf bytes.
    pub encoding: Capped<EntryPair>,
    /// Different entries at an index, each proven committed (State Machine Safety).
    pub committed_conflicts: Capped<CommittedConflict>,
    /// Whether the confs differ (commitIndex, or peers plus self as sets).
    pub conf_differs: bool,
    /// Whether the best snapshots differ.
    pub snapshots_differ: bool,
    /// Whether the replayed memberships differ.
    pub membership_differs: bool,
    /// The state comparison, with `state`.
    pub state: Option<StateDiff>,
}

impl Divergence {
    /// Whether nothing differs (names aside: different nodes have different names).
    pub fn identical(&self) -> bool {
        self.pairs.iter().all(|p| p.diff == PairDiff::Identical)
            && !self.conf_differs
            && !self.snapshots_differ
            && !self.membership_differs
            && self.state.as_ref().is_none_or(|s| s.rows.is_empty())
    }

    /// The committed prefix and its evidence; see [`Commit::committed`].
    pub fn committed(&self) -> Option<(Index, Evidence, usize)> {
        self.commit.committed()
    }
}

/// Sees every frame and every stretch of damage of one node's log, in file order, as the
/// comparison reads them: `verify` of several nodes runs each node's own rules
/// (`check::node::LogPass`) this way, so each log is read and decoded once for both.
pub trait Observer {
    /// A good frame.
    fn entry(&mut self, e: &RawEntry<'_>);
    /// A stretch of damage.
    fn damage(&mut self, e: &LogError);
}

/// One node's stream: the next entry in index order, its replayer, and what it has seen.
struct Cursor<'a, 'o> {
    reader: crate::format::log::Frames<'a>,
    bytes: &'a [u8],
    obs: Option<&'o mut dyn Observer>,
    len: u64,
    at: Option<Index>,
    next: Option<RawEntry<'a>>,
    /// Whether `next` was taken over from the lead given to the latest `fill` (so it holds the
    /// same bytes at the same index as the lead's `next`).
    same_as_lead: bool,
    ended: bool,
    replayer: Replayer,
    first: Option<Index>,
    last: Option<Index>,
    last_term: Option<Term>,
    entries: u64,
    out_of_order: u64,
    damage: Option<LogError>,
    covered_to: Index,
    covered_term: Term,
    claim_to: Index,
}

impl<'a> Cursor<'a, '_> {
    /// Reads up to the next entry to compare. `lead` is another log's bytes and the entry it
    /// has just read: when this log holds the same bytes at the same offset, that entry is taken
    /// over without decoding it again (identical logs are the common case).
    #[inline]
    fn fill(&mut self, mut lead: Option<(&[u8], &RawEntry<'_>)>) {
        self.same_as_lead = false;
        while self.next.is_none() && !self.ended {
            let same = lead
                .take()
                .and_then(|(bytes, e)| self.reader.next_if_same(bytes, e));
            self.same_as_lead = same.is_some();
            let item = match same {
                Some(e) => Some(Ok(e)),
                None => self.reader.next(),
            };
            match item {
                None => self.ended = true,
                Some(Ok(e)) => {
                    if let Some(o) = self.obs.as_deref_mut() {
                        o.entry(&e);
                    }
                    self.replayer.feed(&e);
                    if self.at.is_some_and(|at| e.index() > at) {
                        self.ended = true;
                    } else if self.last.is_some_and(|l| e.index() <= l) {
                        self.out_of_order += 1;
                        self.same_as_lead = false;
                    } else {
                        self.next = Some(e);
                    }
                }
                Some(Err(err)) => {
                    // goraft truncates here: nothing after it is compared, but the replayer
                    // counts what it would discard.
                    if let Some(o) = self.obs.as_deref_mut() {
                        o.damage(&err);
                    }
                    self.replayer.feed_damage(&err, self.len);
                    self.damage = Some(err);
                    self.ended = true;
                    for item in self.reader.by_ref() {
                        match item {
                            Ok(e) => {
                                if let Some(o) = self.obs.as_deref_mut() {
                                    o.entry(&e);
                                }
                                self.replayer.feed(&e);
                            }
                            Err(err) => {
                                if let Some(o) = self.obs.as_deref_mut() {
                                    o.damage(&err);
                                }
                                self.replayer.feed_damage(&err, self.len);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Takes `e` as the entry this node holds next: what [`Cursor::fill`] and [`Cursor::take`]
    /// do with a good frame in order, inside the common prefix.
    /// `replay`: whether to feed the replayer (not when it mirrors the first node's).
    #[inline]
    fn took(&mut self, e: &RawEntry<'_>, replay: bool) {
        if let Some(o) = self.obs.as_deref_mut() {
            o.entry(e);
        }
        if replay {
            self.replayer.feed(e);
        }
        self.first.get_or_insert(e.index());
        self.last = Some(e.index());
        self.last_term = Some(e.term());
        self.entries += 1;
    }

    fn peek_index(&self) -> Option<Index> {
        self.next.as_ref().map(RawEntry::index)
    }

    fn take(&mut self) -> Option<RawEntry<'a>> {
        let e = self.next.take()?;
        self.first.get_or_insert(e.index());
        self.last = Some(e.index());
        self.last_term = Some(e.term());
        self.entries += 1;
        Some(e)
    }

    fn absent(&self, i: Index) -> Absent {
        if i <= self.covered_to {
            Absent::Covered
        } else if self.next.is_none() {
            Absent::Beyond
        } else {
            Absent::Missing
        }
    }

    /// The last index this node vouches for: its last entry, or its snapshot's.
    fn end(&self) -> Option<Index> {
        self.last
            .max((self.covered_to > 0).then_some(self.covered_to))
    }
}

/// A distinct entry at one index and who holds it.
struct Version<'a> {
    entry: RawEntry<'a>,
    nodes: Nodes,
    holders: usize,
}

fn same_entry(a: &RawEntry<'_>, b: &RawEntry<'_>) -> bool {
    a.body == b.body
        || (a.wire.term == b.wire.term
            && a.wire.name == b.wire.name
            && a.wire.command == b.wire.command)
}

/// How many bytes from `pos` on every log holds the same as the first, looking at `window`
/// bytes at most (fewer where a log ends).
fn same_bytes(logs: &[&[u8]], pos: usize, window: usize) -> usize {
    let Some((lead, rest)) = logs.split_first() else {
        return 0;
    };
    let end = logs
        .iter()
        .map(|l| l.len())
        .min()
        .unwrap_or(0)
        .min(pos.saturating_add(window));
    let Some(lead) = lead.get(pos..end) else {
        return 0;
    };
    const BLOCK: usize = 4096;
    let mut same = lead.len();
    for other in rest {
        let other = &other[pos..pos + same];
        let mut at = 0;
        while at < same {
            let to = (at + BLOCK).min(same);
            if lead[at..to] != other[at..to] {
                at += lead[at..to]
                    .iter()
                    .zip(&other[at..to])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                break;
            }
            at = to;
        }
        same = at;
    }
    same
}

/// The bulk path's first and largest comparison window, and its longest wait after a miss.
const BULK_WINDOW_MIN: usize = 64 << 10;
const BULK_WINDOW_MAX: usize = 2 << 20;
const BULK_BACKOFF_MAX: u32 = 1024;

/// The next entry of every node, when all are at the same index with the same bytes.
#[inline]
fn unanimous<'a>(cursors: &[Cursor<'a, '_>]) -> Option<RawEntry<'a>> {
    let (first, rest) = cursors.split_first()?;
    let e = first.next?;
    rest.iter()
        .all(|c| {
            c.next.is_some_and(|f| {
                c.same_as_lead || (f.wire.index == e.wire.index && f.body == e.body)
            })
        })
        .then_some(e)
}

fn normalize(p: &Path) -> PathBuf {
    p.components().collect()
}

/// Compares the targets' logs side by side; see the module docs.
///
/// # Errors
/// [`DiffError`] when there is nothing to compare, too much, or a cut is before a snapshot of a
/// compacted log.
pub fn compare(targets: &[Target<'_>], opts: &DiffOptions) -> Result<Divergence, DiffError> {
    compare_observed(targets, opts, &mut [])
}

/// [`compare`], also showing every frame and damage of node k's log, in file order, to
/// `observers[k]` (an observer for each target, or none at all; `None` for a node nobody
/// watches; the observers are taken out of the slice). Each log is read to its end, past a cut
/// (`DIR@INDEX`) too, for its observer.
///
/// # Errors
/// As [`compare`]; an error comes before any observer has seen anything.
pub fn compare_observed(
    targets: &[Target<'_>],
    opts: &DiffOptions,
    observers: &mut [Option<&mut dyn Observer>],
) -> Result<Divergence, DiffError> {
    compare_impl(targets, opts, observers, true)
}

/// `shortcut`: take the short path for unanimous entries (off only in tests, which check that
/// both paths give the same comparison).
fn compare_impl(
    targets: &[Target<'_>],
    opts: &DiffOptions,
    observers: &mut [Option<&mut dyn Observer>],
    shortcut: bool,
) -> Result<Divergence, DiffError> {
    let n = targets.len();
    if n == 0 {
        return Err(DiffError::NoNodes);
    }
    if n > MAX_NODES {
        return Err(DiffError::TooManyNodes(n));
    }
    let identity: Vec<usize> = targets
        .iter()
        .map(|t| {
            let p = normalize(&t.dir.path);
            targets
                .iter()
                .position(|u| normalize(&u.dir.path) == p)
                .unwrap_or(0)
        })
        .collect();
    let distinct = identity
        .iter()
        .enumerate()
        .filter(|(k, id)| *k == **id)
        .count();
    let count = |nodes: Nodes| {
        let mut ids: Nodes = 0;
        for k in members_of(nodes) {
            ids |= 1 << identity[k];
        }
        ids.count_ones() as usize
    };

    let mut cursors = Vec::with_capacity(n);
    let mut observers = observers.iter_mut();
    for t in targets {
        let ropts = ReplayOptions {
            at: t.at,
            history: None,
            membership_only: !opts.state,
            machine: replay::MachineChoice::Auto,
        };
        let replayer = replay::replayer_for(t.dir, &ropts)?;
        let (covered_to, covered_term) = t
            .dir
            .best_snapshot()
            .and_then(|s| s.parsed.as_ref().ok())
            .and_then(|p| p.snapshot.as_ref().ok())
            .map_or((0, 0), |s| (s.last_index, s.last_term));
        let conf_commit = t.dir.conf().map_or(0, |c| c.commit_index);
        cursors.push(Cursor {
            reader: t.dir.frames(),
            bytes: t.dir.log.bytes(),
            obs: observers.next().and_then(Option::take),
            len: t.dir.log.bytes().len() as u64,
            at: t.at,
            next: None,
            same_as_lead: false,
            ended: false,
            replayer,
            first: None,
            last: None,
            last_term: None,
            entries: 0,
            out_of_order: 0,
            damage: None,
            covered_to,
            covered_term,
            claim_to: conf_commit.max(covered_to),
        });
    }

    let mut common_from: Option<Index> = None;
    let mut common_to: Option<Index> = None;
    let mut in_common = true;
    let mut pair_diff: Vec<Option<PairDiff>> = vec![None; n * n];
    let mut pair_lm_reported = vec![false; n * n];
    let mut rows = Vec::new();
    let mut conflicting_indexes = 0u64;
    let mut tails: Vec<Tail> = Vec::new();
    let mut tails_dropped = 0u64;
    let mut active: Vec<usize> = Vec::new();
    let mut next_active: Vec<usize> = Vec::new();
    let mut commit = Commit::default();
    let mut election_safety = Capped::new(opts.max_events);
    let mut log_matching = Capped::new(opts.max_events);
    let mut encoding = Capped::new(opts.max_events);
    let mut committed_conflicts = Capped::new(opts.max_events);
    let mut slots: Vec<Option<RawEntry<'_>>> = Vec::with_capacity(n);
    let mut versions: Vec<Version<'_>> = Vec::with_capacity(n);
    let mut slot_version: Vec<usize> = vec![usize::MAX; n];
    let mut cluster_size = distinct;
    let everyone: Nodes = if n == MAX_NODES {
        Nodes::MAX
    } else {
        (1 << n) - 1
    };
    let everyone_holders = count(everyone);

    // The bulk path through the common prefix (see below): how many bytes it compares at once,
    // and how many steps it waits after finding nothing to take.
    let mut bulk_window = BULK_WINDOW_MIN;
    let mut bulk_wait = 0u32;
    let mut bulk_backoff = 1u32;
    let logs: Vec<&[u8]> = cursors.iter().map(|c| c.bytes).collect();
    // The nodes whose replayers stand where the first node's does and only replay membership:
    // the bulk path feeds the first one alone and copies its state into them when it ends
    // (`lagging`). Once the general path has run, each is fed on its own.
    let mut mirrored: Vec<bool> = cursors
        .iter()
        .enumerate()
        .map(|(k, c)| k > 0 && shortcut && cursors[0].replayer.mirrors(&c.replayer))
        .collect();
    let mut lagging = false;

    loop {
        // The common case, in bulk: inside the common prefix, every log holds the same bytes at
        // the same offsets, one block after another. Then the first log's frames are decoded
        // once and every node takes the same entries, as the unanimous step below would one by
        // one, while the other logs are only compared byte for byte.
        if in_common && shortcut && n > 1 && bulk_wait == 0 {
            let pos = cursors[0].reader.position();
            let ready = cursors.iter().all(|c| {
                c.next.is_none() && !c.ended && c.at.is_none() && c.reader.position() == pos
            });
            let same = if ready {
                let pos = pos as usize;
                let known = opts.same_bytes.as_ref().map_or(0, |s| s.get());
                let end = logs.iter().map(|l| l.len()).min().unwrap_or(0);
                let window_end = end.min(pos.saturating_add(bulk_window));
                if known >= window_end {
                    window_end.saturating_sub(pos)
                } else {
                    let same = same_bytes(&logs, pos, bulk_window);
                    if let Some(s) = &opts.same_bytes {
                        s.raise(pos + same);
                    }
                    same
                }
            } else {
                0
            };
            let mut read = 0;
            if let (true, Some((first, rest))) = (same > 0, cursors.split_first_mut()) {
                let mut reader = first.reader.clone();
                read = reader.each_canonical_before(pos as usize + same, |e| {
                    let i = e.index();
                    if first.last.is_some_and(|l| i <= l) {
                        // Out of order: the general path says what that means.
                        return false;
                    }
                    first.took(e, true);
                    let mut members = first.replayer.kv().members.len();
                    for (c, &m) in rest.iter_mut().zip(&mirrored[1..]) {
                        c.took(e, !m);
                        if !m {
                            members = members.max(c.replayer.kv().members.len());
                        }
                    }
                    cluster_size = cluster_size.max(members);
                    if everyone_holders > cluster_size / 2 {
                        commit.majority = Some(MajorityBound {
                            index: i,
                            term: e.term(),
                            nodes: everyone,
                            holders: everyone_holders,
                            cluster_size,
                        });
                    }
                    common_from.get_or_insert(i);
                    common_to = Some(i);
                    true
                });
                let to = reader.position();
                first.reader = reader;
                for c in rest.iter_mut() {
                    c.reader.skip_same(to, read);
                }
            }
            if read > 0 {
                lagging |= mirrored.iter().any(|&m| m);
                bulk_window = (bulk_window * 2).min(BULK_WINDOW_MAX);
                bulk_backoff = 1;
                continue;
            }
            bulk_window = BULK_WINDOW_MIN;
            bulk_wait = bulk_backoff;
            bulk_backoff = (bulk_backoff * 2).min(BULK_BACKOFF_MAX);
        }
        bulk_wait = bulk_wait.saturating_sub(1);
        if mirrored.iter().any(|&m| m) {
            // The general path feeds every node's replayer: bring the mirrored ones up to date.
            if lagging {
                if let Some((first, rest)) = cursors.split_first_mut() {
                    for (c, &m) in rest.iter_mut().zip(&mirrored[1..]) {
                        if m {
                            let copied = first.replayer.copy_to(&mut c.replayer);
                            debug_assert!(copied, "mirrored replayers apply no writes");
                        }
                    }
                }
                lagging = false;
            }
            mirrored.fill(false);
        }
        if let Some((first, rest)) = cursors.split_first_mut() {
            first.fill(None);
            let lead = first.next.as_ref().map(|e| (first.bytes, e));
            for c in rest {
                c.fill(lead);
            }
        }
        // The common case, in short: inside the common prefix every node holds the same bytes
        // at the same index. The general path below would find one version held by everyone,
        // leave every pair undecided and extend the common prefix: do just that.
        if in_common && shortcut {
            if let Some(e) = unanimous(&cursors) {
                let (i, term) = (e.index(), e.term());
                let mut members = 0;
                for c in cursors.iter_mut() {
                    c.take();
                    members = members.max(c.replayer.kv().members.len());
                }
                cluster_size = cluster_size.max(members);
                if everyone_holders > cluster_size / 2 {
                    commit.majority = Some(MajorityBound {
                        index: i,
                        term,
                        nodes: everyone,
                        holders: everyone_holders,
                        cluster_size,
                    });
                }
                common_from.get_or_insert(i);
                common_to = Some(i);
                continue;
            }
        }
        let Some(i) = cursors.iter().filter_map(Cursor::peek_index).min() else {
            break;
        };
        slots.clear();
        versions.clear();
        for (k, c) in cursors.iter_mut().enumerate() {
            let e = if c.peek_index() == Some(i) {
                c.take()
            } else {
                None
            };
            slot_version[k] = usize::MAX;
            if let Some(e) = &e {
                match versions.iter_mut().position(|v| same_entry(&v.entry, e)) {
                    Some(v) => {
                        let first = members_of(versions[v].nodes).next().unwrap_or(k);
                        if versions[v].entry.body != e.body {
                            encoding.push(EntryPair {
                                index: i,
                                term: e.term(),
                                a: first,
                                a_offset: versions[v].entry.offset,
                                b: k,
                                b_offset: e.offset,
                                prefix_differs_at: None,
                            });
                        }
                        versions[v].nodes |= 1 << k;
                        slot_version[k] = v;
                    }
                    None => {
                        slot_version[k] = versions.len();
                        versions.push(Version {
                            entry: *e,
                            nodes: 1 << k,
                            holders: 0,
                        });
                    }
                }
            }
            slots.push(e);
        }
        let members = cursors
            .iter()
            .map(|c| c.replayer.kv().members.len())
            .max()
            .unwrap_or(0);
        cluster_size = cluster_size.max(members);
        let majority = cluster_size / 2 + 1;
        for v in versions.iter_mut() {
            v.holders = count(v.nodes);
        }
        let on_majority = versions.iter().position(|v| v.holders >= majority);
        if let Some(m) = on_majority {
            let v = &versions[m];
            commit.majority = Some(MajorityBound {
                index: i,
                term: v.entry.term(),
                nodes: v.nodes,
                holders: v.holders,
                cluster_size,
            });
        }

        // State Machine Safety: two different versions, each proven committed. A snapshot that
        // ends here (its log no longer holds the entry) vouches for an entry of its lastTerm.
        let snapshots_here = (0..n).any(|k| slots[k].is_none() && cursors[k].covered_to == i);
        if versions.len() > 1 || (snapshots_here && !versions.is_empty()) {
            let mut proven: Vec<ProvenVersion> = versions
                .iter()
                .map(|v| {
                    let mut claims = Vec::new();
                    if v.holders >= majority {
                        claims.push(Claim::Majority {
                            holders: v.holders,
                            cluster_size,
                        });
                    }
                    for k in members_of(v.nodes) {
                        let c = &cursors[k];
                        if c.covered_to >= i {
                            claims.push(Claim::Snapshot {
                                node: k,
                                last_index: c.covered_to,
                            });
                        } else if c.claim_to >= i {
                            claims.push(Claim::ConfCommitIndex {
                                node: k,
                                commit_index: c.claim_to,
                            });
                        }
                    }
                    ProvenVersion {
                        term: v.entry.term(),
                        nodes: v.nodes,
                        offset: Some(v.entry.offset),
                        claims,
                    }
                })
                .collect();
            for k in (0..n).filter(|&k| slots[k].is_none() && cursors[k].covered_to == i) {
                let claim = Claim::Snapshot {
                    node: k,
                    last_index: i,
                };
                let term = cursors[k].covered_term;
                match proven.iter_mut().find(|p| p.term == term) {
                    Some(p) => p.claims.push(claim),
                    None => proven.push(ProvenVersion {
                        term,
                        nodes: 1 << k,
                        offset: None,
                        claims: vec![claim],
                    }),
                }
            }
            proven.retain(|p| !p.claims.is_empty());
            if proven.len() > 1 {
                committed_conflicts.push(CommittedConflict {
                    index: i,
                    versions: proven,
                });
            }
        }
        if versions.len() > 1 {
            // Election Safety: the same term, different entries.
            for (x, vx) in versions.iter().enumerate() {
                for vy in &versions[x + 1..] {
                    if vx.entry.term() == vy.entry.term() {
                        election_safety.push(EntryPair {
                            index: i,
                            term: vx.entry.term(),
                            a: members_of(vx.nodes).next().unwrap_or(0),
                            a_offset: vx.entry.offset,
                            b: members_of(vy.nodes).next().unwrap_or(0),
                            b_offset: vy.entry.offset,
                            prefix_differs_at: None,
                        });
                    }
                }
            }
        }

        // Pairs: the first difference, and Log Matching after it.
        for a in 0..n {
            for b in a + 1..n {
                let slot = a * n + b;
                match pair_diff[slot] {
                    None => {
                        pair_diff[slot] = match (&slots[a], &slots[b]) {
                            (Some(_), Some(_)) if slot_version[a] == slot_version[b] => None,
                            (Some(_), Some(_)) => Some(PairDiff::Conflict(i)),
                            (Some(_), None) => absent_diff(i, b, cursors[b].absent(i)),
                            (None, Some(_)) => absent_diff(i, a, cursors[a].absent(i)),
                            (None, None) => None,
                        };
                    }
                    Some(PairDiff::Conflict(j)) | Some(PairDiff::Missing { index: j, .. })
                        if !pair_lm_reported[slot]
                            && slot_version[a] != usize::MAX
                            && slot_version[a] == slot_version[b] =>
                    {
                        pair_lm_reported[slot] = true;
                        if let (Some(ea), Some(eb)) = (&slots[a], &slots[b]) {
                            log_matching.push(EntryPair {
                                index: i,
                                term: ea.term(),
                                a,
                                a_offset: ea.offset,
                                b,
                                b_offset: eb.offset,
                                prefix_differs_at: Some(j),
                            });
                        }
                    }
                    _ => {}
                }
            }
        }

        // The common prefix.
        if in_common {
            let unanimous = versions.len() == 1
                && (0..n).all(|k| slots[k].is_some() || cursors[k].absent(i) == Absent::Covered);
            if unanimous {
                common_from.get_or_insert(i);
                common_to = Some(i);
            } else {
                in_common = false;
            }
        }
        if in_common {
            continue;
        }

        // Beyond the common prefix: conflicting rows and tails.
        if versions.len() > 1 {
            conflicting_indexes += 1;
            if rows.len() < opts.max_rows {
                let cells = (0..n)
                    .map(|k| match &slots[k] {
                        Some(e) => Cell::Entry(e.to_entry(), e.offset),
                        None => Cell::Absent(cursors[k].absent(i)),
                    })
                    .collect();
                rows.push(Row { index: i, cells });
            }
        }
        next_active.clear();
        for (x, v) in versions.iter().enumerate() {
            let claimed = members_of(v.nodes)
                .map(|k| &cursors[k])
                .fold(None, |acc, c| {
                    if c.covered_to >= i {
                        Some(Evidence::Snapshot)
                    } else if c.claim_to >= i {
                        acc.or(Some(Evidence::ConfCommitIndex))
                    } else {
                        acc
                    }
                });
            let status = if v.holders >= majority {
                TailStatus::OnMajority
            } else if let Some(evidence) = claimed {
                TailStatus::Claimed { evidence }
            } else {
                match versions
                    .iter()
                    .enumerate()
                    .find(|(y, w)| *y != x && w.holders >= majority)
                {
                    Some((_, w)) => TailStatus::Overwritten {
                        by_term: w.entry.term(),
                    },
                    None => TailStatus::NotOnMajority,
                }
            };
            let term = v.entry.term();
            let open = active.iter().copied().find(|&t| {
                tails[t].nodes == v.nodes
                    && tails[t].status == status
                    && tails[t].to.checked_add(1) == Some(i)
            });
            match open {
                Some(t) => {
                    let tail = &mut tails[t];
                    tail.to = i;
                    tail.min_term = tail.min_term.min(term);
                    tail.max_term = tail.max_term.max(term);
                    next_active.push(t);
                }
                None if tails.len() < opts.max_tails => {
                    next_active.push(tails.len());
                    tails.push(Tail {
                        nodes: v.nodes,
                        offsets: members_of(v.nodes)
                            .filter_map(|k| slots[k].as_ref().map(|e| e.offset))
                            .collect(),
                        holders: v.holders,
                        from: i,
                        to: i,
                        min_term: term,
                        max_term: term,
                        status,
                    });
                }
                None => tails_dropped += 1,
            }
        }
        std::mem::swap(&mut active, &mut next_active);
    }
    commit.cluster_size = cluster_size;
    // A cut (`DIR@INDEX`) stops the comparison early; observers see the whole log.
    for c in cursors.iter_mut() {
        if let Some(o) = c.obs.as_deref_mut() {
            for item in c.reader.by_ref() {
                match item {
                    Ok(e) => o.entry(&e),
                    Err(err) => o.damage(&err),
                }
            }
        }
    }

    let mut pairs = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            let diff = match pair_diff[a * n + b] {
                Some(d) => d,
                None if cursors[a].end() != cursors[b].end() => {
                    // Nothing differs where both hold entries, yet they end differently: one
                    // holds no entries at all, or a snapshot covers more than the other's log.
                    let shorter = if cursors[a].end() < cursors[b].end() {
                        a
                    } else {
                        b
                    };
                    let index = cursors[shorter].end().map_or(1, |l| l.saturating_add(1));
                    PairDiff::Ends { index, shorter }
                }
                None => PairDiff::Identical,
            };
            pairs.push(Pair { a, b, diff });
        }
    }

    let mut nodes = Vec::with_capacity(n);
    for ((t, c), id) in targets.iter().zip(cursors).zip(identity) {
        let snapshot = t.dir.best_snapshot().and_then(|s| {
            let snap = s.parsed.as_ref().ok()?.snapshot.as_ref().ok()?;
            Some(SnapshotInfo {
                file: s.file_name.clone(),
                last_index: snap.last_index,
                last_term: snap.last_term,
            })
        });
        let name = t.dir.node_name().map(str::to_string);
        let conf = t.dir.conf().map(|c| ConfInfo {
            commit_index: c.commit_index,
            members: c
                .peers
                .iter()
                .map(|p| p.name.clone())
                .chain(name.clone())
                .collect(),
        });
        let conf_error = t
            .dir
            .conf
            .as_ref()
            .and_then(|c| c.parsed.as_ref().err())
            .map(|e| e.to_string());
        nodes.push(NodeSummary {
            path: t.dir.path.clone(),
            at: t.at,
            name,
            identity: id,
            first_index: c.first,
            last_index: c.last,
            last_term: c.last_term,
            entries: c.entries,
            out_of_order: c.out_of_order,
            damage: c.damage,
            snapshot,
            conf,
            conf_error,
            replay: c.replayer.finish(),
            dialect: t.dir.dialect(),
        });
    }

    // Node-local bounds: conf commitIndex (capped at what the node holds) and snapshots.
    for (k, node) in nodes.iter().enumerate() {
        let held = node
            .last_index
            .max(node.snapshot.as_ref().map(|s| s.last_index));
        if let (Some(conf), Some(held)) = (&node.conf, held) {
            let index = conf.commit_index.min(held);
            if index > 0 && commit.conf.is_none_or(|c| index > c.index) {
                commit.conf = Some(NodeBound { index, node: k });
            }
        }
        if let Some(s) = &node.snapshot {
            if commit.snapshot.is_none_or(|c| s.last_index > c.index) {
                commit.snapshot = Some(NodeBound {
                    index: s.last_index,
                    node: k,
                });
            }
        }
    }

    let differ =
        |f: &dyn Fn(&NodeSummary) -> String| nodes.windows(2).any(|w| f(&w[0]) != f(&w[1]));
    let conf_differs = nodes
        .windows(2)
        .any(|w| w[0].conf != w[1].conf || w[0].conf_error.is_some() != w[1].conf_error.is_some());
    let snapshots_differ = nodes.windows(2).any(|w| w[0].snapshot != w[1].snapshot);
    let membership_differs = differ(&|s| format!("{:?}", s.replay.kv.members));
    let state = opts.state.then(|| state_diff(&nodes));

    Ok(Divergence {
        common: common_from.zip(common_to),
        pairs,
        rows,
        conflicting_indexes,
        tails,
        tails_dropped,
        commit,
        election_safety,
        log_matching,
        encoding,
        committed_conflicts,
        conf_differs,
        snapshots_differ,
        membership_differs,
        state,
        nodes,
    })
}

fn absent_diff(index: Index, node: usize, why: Absent) -> Option<PairDiff> {
    match why {
        Absent::Covered => None,
        Absent::Beyond => Some(PairDiff::Ends {
            index,
            shorter: node,
        }),
        Absent::Missing => Some(PairDiff::Missing {
            index,
            missing: node,
        }),
    }
}

/// Merges the nodes' sorted maps key by key.
fn state_diff(nodes: &[NodeSummary]) -> StateDiff {
    let sorted: Vec<_> = nodes.iter().map(|s| s.replay.kv.sorted()).collect();
    let mut iters: Vec<_> = sorted
        .iter()
        .map(|v| v.iter().copied().peekable())
        .collect();
    let mut out = StateDiff::default();
    while let Some(key) = iters
        .iter_mut()
        .filter_map(|it| it.peek().map(|(k, _)| *k))
        .min()
    {
        let values: Vec<Option<&str>> = iters
            .iter_mut()
            .map(|it| it.next_if(|(k, _)| *k == key).map(|(_, v)| v))
            .collect();
        if values.iter().all(|v| *v == values[0]) {
            out.same += 1;
        } else {
            out.rows.push(StateRow {
                key: key.to_owned(),
                values: values.into_iter().map(|v| v.map(str::to_owned)).collect(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::log::LogWriter;
    use crate::model::Command;

    fn w(k: &str, v: &str) -> Command {
        Command::Write {
            key: k.into(),
            value: v.into(),
        }
    }

    fn join(n: &str) -> Command {
        Command::Join {
            name: n.into(),
            connection_string: format!("http://{n}"),
        }
    }

    /// Writes a node dir with a log and a name into `root/<name>`.
    fn node(root: &Path, name: &str, entries: &[(Index, Term, Command)]) -> DataDir {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lw = LogWriter::new(Vec::new());
        for (i, t, c) in entries {
            lw.append(*i, *t, c).unwrap();
        }
        std::fs::write(dir.join("log"), lw.into_inner()).unwrap();
        std::fs::write(dir.join("name"), name).unwrap();
        crate::datadir::open(&dir).unwrap()
    }

    fn base() -> Vec<(Index, Term, Command)> {
        vec![
            (1, 0, join("a")),
            (2, 0, Command::Nop),
            (3, 0, join("b")),
            (4, 0, join("c")),
            (5, 0, w("k", "1")),
        ]
    }

    fn with(
        mut v: Vec<(Index, Term, Command)>,
        more: &[(Index, Term, Command)],
    ) -> Vec<(Index, Term, Command)> {
        v.extend(more.iter().cloned());
        v
    }

    fn targets(dirs: &[DataDir]) -> Vec<Target<'_>> {
        dirs.iter().map(|dir| Target { dir, at: None }).collect()
    }

    /// Every group of sibling data dirs under `fixtures/` (dirs holding a `log` that open).
    fn fixture_groups() -> Vec<Vec<DataDir>> {
        let mut groups: std::collections::BTreeMap<PathBuf, Vec<DataDir>> = Default::default();
        for dir in crate::datadir::testing::fixture_dirs() {
            if let Some(parent) = dir.path.parent() {
                groups.entry(parent.to_path_buf()).or_default().push(dir);
            }
        }
        groups.into_values().collect()
    }

    /// Records what an observer is shown.
    #[derive(Default)]
    struct Seen(Vec<Result<(u64, u64), (u64, u64)>>);

    impl Observer for Seen {
        fn entry(&mut self, e: &RawEntry<'_>) {
            self.0.push(Ok((e.offset, e.index())));
        }
        fn damage(&mut self, e: &LogError) {
            self.0.push(Err((e.offset, e.len)));
        }
    }

    #[test]
    fn the_unanimous_shortcut_and_the_observers_change_nothing() {
        let mut compared = 0;
        for group in fixture_groups() {
            // The group, and each dir next to the first (so that single dirs are compared too).
            let mut sets: Vec<Vec<&DataDir>> = vec![group.iter().collect()];
            sets.extend(group.iter().map(|d| vec![&group[0], d]));
            for set in sets {
                for at in [None, Some(3)] {
                    same_both_ways(&set, at);
                    compared += 1;
                }
            }
        }
        assert!(compared > 100, "{compared}");
    }

    /// The comparison of `set` (each cut at `at`) is the same with and without the shortcuts,
    /// and with observers, which see every log whole, in file order, as a reader does.
    fn same_both_ways(set: &[&DataDir], at: Option<Index>) {
        let t: Vec<Target<'_>> = set.iter().map(|&dir| Target { dir, at }).collect();
        let opts = DiffOptions::default();
        let general = compare_impl(&t, &opts, &mut [], false).map(|d| format!("{d:?}"));
        let short = compare_impl(&t, &opts, &mut [], true).map(|d| format!("{d:?}"));
        assert_eq!(
            short,
            general,
            "{:?}",
            set.iter().map(|d| &d.path).collect::<Vec<_>>()
        );
        let mut seen: Vec<Seen> = set.iter().map(|_| Seen::default()).collect();
        let mut obs: Vec<Option<&mut dyn Observer>> = seen
            .iter_mut()
            .map(|s| Some(s as &mut dyn Observer))
            .collect();
        let observed = compare_observed(&t, &opts, &mut obs).map(|d| format!("{d:?}"));
        assert_eq!(observed, general);
        for (s, dir) in seen.iter().zip(set) {
            let want: Vec<_> = match &observed {
                Ok(_) => {
                    crate::format::log::LogReader::with_dialect(dir.log.bytes(), dir.dialect())
                        .map(|i| match i {
                            Ok(e) => Ok((e.offset, e.index())),
                            Err(e) => Err((e.offset, e.len)),
                        })
                        .collect()
                }
                Err(_) => Vec::new(),
            };
            assert_eq!(s.0, want, "{}", dir.path.display());
        }
    }

    /// Long logs that share megabytes of bytes and then part, inside a frame or between two,
    /// with frames the bulk path through the common prefix must leave to the general one
    /// (non-canonical headers, an index out of order, a NUL hole, a torn tail): the comparison
    /// is the same with and without it.
    #[test]
    fn the_bulk_path_through_the_common_prefix_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut entries = vec![(1, 0, join("a")), (2, 0, join("b")), (3, 0, join("c"))];
        for i in 4..12_000u64 {
            entries.push((
                i,
                i / 3_000,
                w(&format!("k{}", i % 977), &format!("value {i}")),
            ));
        }
        let clean = node(tmp.path(), "clean", &entries);
        let bytes = clean.log.bytes().to_vec();
        let frame_at = |index: u64| crate::datadir::testing::frame_span(&bytes, index);
        let variant = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes.clone();
            f(&mut b);
            let dir = crate::datadir::testing::write_node(tmp.path(), name, &b, None);
            crate::datadir::open(&dir).unwrap()
        };
        let (mid, mid_end) = frame_at(6_000);
        // A value changed inside a frame; a frame cut short; the log cut between two frames.
        let inside = variant("inside", &|b| b[mid_end - 4] = b'X');
        let torn = variant("torn", &|b| b.truncate(mid + 20));
        let shorter = variant("shorter", &|b| b.truncate(mid));
        // Shared by every copy below: an upper-case header, an index repeated, a NUL hole.
        let odd = |b: &mut Vec<u8>| {
            let (at, _) = frame_at(2_000);
            let header = std::str::from_utf8(&b[at..at + 8]).unwrap().to_uppercase();
            b[at..at + 8].copy_from_slice(header.as_bytes());
            let (from, to) = frame_at(4_000);
            let (again, _) = frame_at(4_001);
            let copy = b[from..to].to_vec();
            b.splice(again..again, copy);
            let (hole, hole_end) = frame_at(8_000);
            let shift = to - from;
            b[hole + shift..hole_end + shift].fill(0);
        };
        let odd_a = variant("odd-a", &odd);
        let odd_b = variant("odd-b", &odd);
        let odd_c = variant("odd-c", &|b| {
            odd(b);
            let last = b.len() - 30;
            b[last] ^= 0x55;
        });
        let sets: Vec<Vec<&DataDir>> = vec![
            vec![&clean, &inside],
            vec![&clean, &clean, &clean],
            vec![&clean, &inside, &torn],
            vec![&torn, &clean, &shorter],
            vec![&shorter, &clean],
            vec![&odd_a, &odd_b, &odd_c],
            vec![&odd_a, &clean],
        ];
        for set in &sets {
            for at in [None, Some(7_000)] {
                same_both_ways(set, at);
            }
        }
        // What the comparisons say, besides being the same both ways.
        let common = |set: &[&DataDir]| {
            let t: Vec<Target<'_>> = set.iter().map(|&dir| Target { dir, at: None }).collect();
            compare(&t, &DiffOptions::default()).unwrap().common
        };
        assert_eq!(common(&[&clean, &clean, &clean]), Some((1, 11_999)));
        assert_eq!(common(&[&clean, &inside]), Some((1, 5_999)));
        // goraft keeps nothing after the hole: the comparison stops there.
        assert_eq!(common(&[&odd_a, &odd_b]), Some((1, 7_999)));
    }

    #[test]
    fn divergent_tail_overwritten_in_a_later_term() {
        let tmp = tempfile::tempdir().unwrap();
        let old = with(base(), &[(6, 0, w("k", "old")), (7, 0, w("x", "old"))]);
        let new = with(
            base(),
            &[
                (6, 1, Command::Nop),
                (7, 1, w("k", "new")),
                (8, 1, w("y", "new")),
            ],
        );
        let dirs = [
            node(tmp.path(), "a", &old),
            node(tmp.path(), "b", &new),
            node(tmp.path(), "c", &new),
        ];
        let d = compare(&targets(&dirs), &DiffOptions::default()).unwrap();
        assert_eq!(d.common, Some((1, 5)));
        let pairs: Vec<_> = d.pairs.iter().map(|p| (p.a, p.b, p.diff)).collect();
        assert_eq!(
            pairs,
            [
                (0, 1, PairDiff::Conflict(6)),
                (0, 2, PairDiff::Conflict(6)),
                (1, 2, PairDiff::Identical)
            ]
        );
        assert_eq!(d.rows.iter().map(|r| r.index).collect::<Vec<_>>(), [6, 7]);
        let Cell::Entry(e, offset) = &d.rows[0].cells[2] else {
            panic!("{:?}", d.rows[0])
        };
        assert_eq!(
            (e.index, e.term, e.name.as_str(), e.payload.as_deref()),
            (6, 1, "raft:nop", None)
        );
        let expected_offset = crate::format::log::LogReader::new(dirs[2].log.bytes())
            .nth(5)
            .unwrap()
            .unwrap()
            .offset;
        assert_eq!(*offset, expected_offset);
        let tails: Vec<_> = d
            .tails
            .iter()
            .map(|t| (t.nodes, t.from, t.to, t.status))
            .collect();
        assert_eq!(d.tails[1].offsets.len(), 2);
        assert_eq!(
            tails,
            [
                (0b001, 6, 7, TailStatus::Overwritten { by_term: 1 }),
                (0b110, 6, 8, TailStatus::OnMajority)
            ]
        );
        assert_eq!(d.committed(), Some((8, Evidence::Majority, 1)));
        assert_eq!(d.commit.cluster_size, 3);
        assert_eq!(
            (
                d.election_safety.total,
                d.log_matching.total,
                d.committed_conflicts.total
            ),
            (0, 0, 0)
        );
        assert!(!d.identical());
    }

    #[test]
    fn election_safety_and_log_matching() {
        let tmp = tempfile::tempdir().unwrap();
        // Two leaders in term 1 wrote different entries at index 6; then both logs hold the
        // same (7, 1) entry on different prefixes.
        let a = with(base(), &[(6, 1, w("k", "a")), (7, 1, w("z", "same"))]);
        let b = with(base(), &[(6, 1, w("k", "b")), (7, 1, w("z", "same"))]);
        let dirs = [node(tmp.path(), "a", &a), node(tmp.path(), "b", &b)];
        let d = compare(&targets(&dirs), &DiffOptions::default()).unwrap();
        let es: Vec<_> = d
            .election_safety
            .items
            .iter()
            .map(|e| (e.index, e.term, e.a, e.b))
            .collect();
        assert_eq!(es, [(6, 1, 0, 1)]);
        let lm: Vec<_> = d
            .log_matching
            .items
            .iter()
            .map(|e| (e.index, e.term, e.prefix_differs_at))
            .collect();
        assert_eq!(lm, [(7, 1, Some(6))]);
    }

    #[test]
    fn committed_conflict_needs_evidence_on_both_sides() {
        let tmp = tempfile::tempdir().unwrap();
        let a = with(base(), &[(6, 1, w("k", "a"))]);
        let b = with(base(), &[(6, 2, w("k", "b"))]);
        let dirs = [node(tmp.path(), "a", &a), node(tmp.path(), "b", &b)];
        let d = compare(&targets(&dirs), &DiffOptions::default()).unwrap();
        assert_eq!(
            d.committed_conflicts.total, 0,
            "no evidence: an ordinary divergence"
        );
        // Both confs claim index 6 committed.
        for n in ["a", "b"] {
            std::fs::write(
                tmp.path().join(n).join("conf"),
                br#"{"commitIndex":6,"peers":[]}"#,
            )
            .unwrap();
        }
        let dirs = [
            crate::datadir::open(&tmp.path().join("a")).unwrap(),
            crate::datadir::open(&tmp.path().join("b")).unwrap(),
        ];
        let d = compare(&targets(&dirs), &DiffOptions::default()).unwrap();
        let c = &d.committed_conflicts.items[0];
        assert_eq!((c.index, c.versions.len()), (6, 2));
        assert_eq!(
            c.versions[1].claims,
            [Claim::ConfCommitIndex {
                node: 1,
                commit_index: 6
            }]
        );
        assert!(d.conf_differs, "peers plus self differ: {{a}} vs {{b}}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Damaged, cut or garbage logs never make the comparison (or the state replays) panic,
        /// and what it reports stays within what the logs hold.
        #[test]
        fn never_panics_on_damaged_logs(
            flips in proptest::collection::vec((0usize..2000, proptest::prelude::any::<u8>()), 0..6),
            cut in 0usize..2000,
            at in proptest::option::of(0u64..12),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let log = with(base(), &[(6, 1, Command::Nop), (7, 1, w("k", "2")), (8, 1, w("j", "3"))]);
            let a = node(tmp.path(), "a", &log);
            let b = node(tmp.path(), "b", &log);
            let mut bytes = b.log.bytes().to_vec();
            let len = bytes.len().max(1);
            for (pos, x) in &flips {
                if let Some(byte) = bytes.get_mut(*pos % len) {
                    *byte ^= x;
                }
            }
            bytes.truncate(cut.min(bytes.len()));
            std::fs::write(tmp.path().join("b/log"), &bytes).unwrap();
            let b = crate::datadir::open(&tmp.path().join("b")).unwrap();
            let t = [Target { dir: &a, at }, Target { dir: &b, at: None }];
            let opts = DiffOptions { state: true, ..Default::default() };
            let d = compare(&t, &opts).unwrap();
            if let Some((_, to)) = d.common {
                proptest::prop_assert!(to <= d.nodes[0].last_index.unwrap_or(0));
            }
            proptest::prop_assert!(d.rows.len() as u64 <= d.conflicting_indexes);
        }
    }

    #[test]
    fn a_snapshot_vouches_for_its_last_term() {
        let tmp = tempfile::tempdir().unwrap();
        let log = with(base(), &[(6, 2, w("k", "b"))]);
        let b = node(tmp.path(), "b", &log);
        let c = node(tmp.path(), "c", &log);
        // Node a compacted everything into a snapshot that says entry 6 had term 1.
        let a_dir = tmp.path().join("a");
        std::fs::create_dir_all(a_dir.join("snapshot")).unwrap();
        std::fs::write(a_dir.join("log"), b"").unwrap();
        std::fs::write(a_dir.join("name"), "a").unwrap();
        let snap = crate::model::Snapshot {
            last_index: 6,
            last_term: 1,
            peers: None,
            state: Some(br#"{"k":"a"}"#.to_vec()),
            path: String::new(),
        };
        std::fs::write(
            a_dir.join("snapshot/1_6.ss"),
            crate::format::snapshot::encode(&snap),
        )
        .unwrap();
        let dirs = [crate::datadir::open(&a_dir).unwrap(), b, c];
        let d = compare(&targets(&dirs), &DiffOptions::default()).unwrap();
        let c = &d.committed_conflicts.items;
        assert_eq!(c.len(), 1, "{c:?}");
        let v: Vec<_> = c[0]
            .versions
            .iter()
            .map(|v| (v.term, v.nodes, v.offset.is_some()))
            .collect();
        assert_eq!(
            (c[0].index, v),
            (6, vec![(2, 0b110, true), (1, 0b001, false)])
        );
        assert_eq!(
            c[0].versions[1].claims,
            [Claim::Snapshot {
                node: 0,
                last_index: 6
            }]
        );
        let pairs: Vec<_> = d.pairs.iter().map(|p| p.diff).collect();
        assert_eq!(
            pairs,
            [
                PairDiff::Identical,
                PairDiff::Identical,
                PairDiff::Identical
            ]
        );
    }

    #[test]
    fn two_points_of_one_node_and_state() {
        let tmp = tempfile::tempdir().unwrap();
        let log = with(base(), &[(6, 0, w("k", "2")), (7, 0, w("j", "1"))]);
        let dirs = [node(tmp.path(), "a", &log)];
        let t = [
            Target {
                dir: &dirs[0],
                at: Some(5),
            },
            Target {
                dir: &dirs[0],
                at: None,
            },
        ];
        let opts = DiffOptions {
            state: true,
            ..Default::default()
        };
        let d = compare(&t, &opts).unwrap();
        assert_eq!(
            d.pairs[0].diff,
            PairDiff::Ends {
                index: 6,
                shorter: 0
            }
        );
        assert_eq!(d.nodes[1].identity, 0);
        let s = d.state.as_ref().unwrap();
        let rows: Vec<_> = s
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.values.clone()))
            .collect();
        assert_eq!(
            rows,
            [
                ("j", vec![None, Some("1".to_string())]),
                ("k", vec![Some("1".to_string()), Some("2".to_string())])
            ]
        );
        assert_eq!(s.same, 0);
        assert!(!d.identical());
        // The same point twice is identical.
        let t = [
            Target {
                dir: &dirs[0],
                at: Some(5),
            },
            Target {
                dir: &dirs[0],
                at: Some(5),
            },
        ];
        assert!(compare(&t, &opts).unwrap().identical());
    }
}
