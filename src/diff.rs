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

mod compare;
pub use compare::*;

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

#[cfg(test)]
mod tests;
