//! The core's inputs, outputs and state: its configuration, [`Event`]s, [`Action`]s, the log's
//! shape and the node's status.

use std::collections::BTreeMap;

use super::Refusal;
use crate::format::batch::EntryBatch;
use crate::format::command;
use crate::format::rpc::{
    AppendResponse, ReceivedAppend, SnapshotInstall, VoteRequest, VoteResponse,
};
use crate::model::{names, Command, Index, Peer, Term};

/// Milliseconds on the injected clock.
pub type Millis = u64;
/// An opaque id the executor uses to route a reply or a client result.
pub type RequestId = u64;

/// Timing and batching knobs.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's name.
    pub name: String,
    /// This node's advertised URL (`http://host:port`).
    pub connection_string: String,
    /// Leader heartbeat interval (raftd: 50 ms).
    pub heartbeat_ms: Millis,
    /// Election timeout T: each wait is uniform in `[T, 2T)` (raftd: 150 ms).
    pub election_timeout_ms: Millis,
    /// The leader refuses a membership change that would leave the members it hears from
    /// short of a quorum, and a join while the last one has not caught up (the default;
    /// `false` is goraft's behaviour: every change is appended).
    pub strict_reconfig: bool,
    /// Most entries in one AppendEntries request.
    pub max_batch_entries: u64,
    /// Most AppendEntries requests in flight to one peer (pipelining). raftdump's HTTP
    /// transport pipelines them on one connection per peer (heartbeats go out behind a
    /// request in flight), but more than one request of entries in flight splits the batches:
    /// more CPU per write for as many fsyncs on the follower. The default is 1 (3 nodes, 16
    /// clients on 2 vCPUs: 5.6k writes/s against 3.8k with 4); the simulator also runs with 4.
    pub max_inflight: u32,
    /// Seed of the election-timeout randomness.
    pub seed: u64,
    /// How a vote request's log is judged up to date.
    pub vote_rule: VoteRule,
}

/// The up-to-date check of a vote request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoteRule {
    /// goraft's (docs/format.md, 'RPCs'): deny if our last index OR our last term is greater. Safe (it
    /// grants a subset of the paper's votes) but it can stall for good, every fault healed:
    /// four nodes whose logs end at (index 100, term 1), (50, 2), (60, 1) and (55, 2) refuse
    /// every candidate a majority (see `chaos::goraft_stall`). Kept to reproduce goraft.
    Goraft,
    /// The Raft paper's: grant if the candidate's last term is greater, or equal with an index
    /// at least ours. The default: the most up-to-date log in the paper's order always collects
    /// the vote of every live node, so a healed cluster always elects a leader.
    #[default]
    Paper,
}

impl VoteRule {
    /// Whether a voter whose log ends at `mine` judges a candidate whose log ends at `theirs`
    /// up to date; both are `(last term, last index)`. Every pair goraft's rule accepts, the
    /// paper's accepts too, so a cluster mixing the two keeps the paper's safety argument.
    pub fn up_to_date(self, mine: (Term, Index), theirs: (Term, Index)) -> bool {
        match self {
            // goraft's rule (docs/format.md, 'RPCs'): deny when our last index OR our last term is greater.
            VoteRule::Goraft => mine.1 <= theirs.1 && mine.0 <= theirs.0,
            VoteRule::Paper => mine <= theirs,
        }
    }
}

impl Config {
    /// raftd's defaults for a node (but the paper's vote rule: see [`VoteRule`]).
    pub fn new(name: impl Into<String>, connection_string: impl Into<String>) -> Self {
        Config {
            name: name.into(),
            connection_string: connection_string.into(),
            heartbeat_ms: 50,
            election_timeout_ms: 150,
            strict_reconfig: true,
            max_batch_entries: 1000,
            max_inflight: 1,
            seed: 1,
            vote_rule: VoteRule::default(),
        }
    }
}

/// A tiny deterministic generator (xorshift64*): election timeouts only, never security.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeds the generator (a zero seed is replaced by a constant).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[lo, hi)` (returns `lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }
}

/// What must survive a restart: goraft keeps neither (docs/format.md, 'Terms and bootstrap'); raftdump persists both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardState {
    /// The current term.
    pub term: Term,
    /// Whom this node voted for in `term`.
    pub voted_for: Option<String>,
}

/// The shape of the log: the snapshot point and the term of every index, as runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogTerms {
    /// The index covered by the snapshot (0 without one); entries start after it.
    pub start_index: Index,
    /// The term of `start_index`.
    pub start_term: Term,
    /// `(first index, term)` of each run of equal terms, ascending.
    runs: Vec<(Index, Term)>,
    /// The last index (== `start_index` when empty).
    last: Index,
}

impl LogTerms {
    /// An empty log after a snapshot at `(start_index, start_term)`.
    pub fn new(start_index: Index, start_term: Term) -> Self {
        LogTerms {
            start_index,
            start_term,
            runs: Vec::new(),
            last: start_index,
        }
    }

    /// The last index.
    pub fn last_index(&self) -> Index {
        self.last
    }

    /// The term of the last entry (or of the snapshot).
    pub fn last_term(&self) -> Term {
        self.runs.last().map_or(self.start_term, |r| r.1)
    }

    /// Whether the log holds no entry after the snapshot point.
    pub fn is_empty(&self) -> bool {
        self.last == self.start_index
    }

    /// The term at `index`, if the log (or its snapshot point) covers it.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.start_index {
            return Some(self.start_term);
        }
        if index < self.start_index || index > self.last {
            return None;
        }
        let i = self.runs.partition_point(|r| r.0 <= index);
        self.runs.get(i.checked_sub(1)?).map(|r| r.1)
    }

    /// Records the entry `index` with `term`; it must be `last + 1` (the caller checks).
    pub fn push(&mut self, index: Index, term: Term) {
        debug_assert_eq!(Some(index), self.last.checked_add(1));
        if self.runs.last().is_none_or(|r| r.1 != term) {
            self.runs.push((index, term));
        }
        self.last = index;
    }

    /// Moves the snapshot point forward to `index` (within the log), whose term is `term`:
    /// the entries up to it are now covered by a snapshot.
    pub fn compact_to(&mut self, index: Index, term: Term) {
        if index <= self.start_index || index > self.last {
            return;
        }
        let keep = self.runs.partition_point(|r| r.0 <= index);
        // The run holding `index` continues after it when its next index is still in it.
        let mut runs: Vec<(Index, Term)> = Vec::with_capacity(self.runs.len() + 1 - keep);
        if index < self.last && self.runs.get(keep).is_none_or(|r| r.0 != index + 1) {
            runs.push((index + 1, term));
        }
        runs.extend_from_slice(&self.runs[keep..]);
        self.runs = runs;
        self.start_index = index;
        self.start_term = term;
    }

    /// Drops every entry after `index`.
    pub fn truncate_after(&mut self, index: Index) {
        let index = index.max(self.start_index);
        while self.runs.last().is_some_and(|r| r.0 > index) {
            self.runs.pop();
        }
        self.last = self.last.min(index);
    }
}

/// A membership change carried by a `raft:join` / `raft:leave` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Add a member.
    Join(Peer),
    /// Remove a member.
    Leave(String),
}

impl ConfigChange {
    /// The change an entry carries, if it is a membership entry goraft would apply.
    pub fn of(name: &str, payload: Option<&[u8]>) -> Option<ConfigChange> {
        if name != names::JOIN && name != names::LEAVE {
            return None;
        }
        match command::decode(name.as_bytes(), payload) {
            Command::Join {
                name,
                connection_string,
            } => Some(ConfigChange::Join(Peer {
                name,
                connection_string,
            })),
            Command::Leave { name } => Some(ConfigChange::Leave(name)),
            _ => None,
        }
    }
}

/// Everything the core starts from.
#[derive(Debug, Clone, Default)]
pub struct InitialState {
    /// Persisted term and vote (the runtime raises the term to the last log term).
    pub hard_state: HardState,
    /// The log's shape.
    pub log: LogTerms,
    /// An index known to be committed (conf's commitIndex, the snapshot point).
    pub commit: Index,
    /// Members (name -> URL) as of `commit`, this node included when it joined.
    pub members: BTreeMap<String, String>,
    /// Membership entries after `commit`, by index.
    pub pending_config: BTreeMap<Index, ConfigChange>,
}

/// The node's role; the strings are goraft's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for votes.
    Candidate,
    /// Leads.
    Leader,
}

impl Role {
    /// goraft's state string.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// What the executor echoes back with the result of an AppendEntries it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentAppend {
    /// Term the request carried.
    pub term: Term,
    /// The peer's replication epoch when it was sent (bumped on every reset).
    pub epoch: u64,
    /// The read-confirmation round it was sent in.
    pub round: u64,
    /// prev_index of the request.
    pub prev: Index,
    /// Last index it carried (== prev for a heartbeat).
    pub last: Index,
}

/// Why a proposal or read was not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// This node is not the leader; the leader's name and URL when known.
    NotLeader(Option<Peer>),
    /// A membership change is still uncommitted: one at a time.
    ConfigChangePending,
    /// A join for a name that is already a member.
    DuplicateMember(String),
    /// The entry was overwritten by another leader's entry: not committed.
    Superseded,
    /// A membership change the strict check refuses: why.
    Unsafe(String),
    /// A removal of a name that is not a member.
    NoSuchMember(String),
    /// This node was removed from the cluster by the `raft:leave` at this index.
    Removed(Index),
}

/// Inputs of the core.
#[derive(Debug, Clone)]
pub enum Event {
    /// The clock reads `now`.
    Tick(Millis),
    /// Start a new cluster (empty log only): self-join at 1, nop at 2, term 0, leader at once.
    Bootstrap,
    /// A client command (a write, a join, a leave).
    Propose {
        /// Routes the result.
        id: RequestId,
        /// Command name.
        name: String,
        /// Payload.
        payload: Option<Vec<u8>>,
    },
    /// Remove a member: a `raft:leave` of `name`, checked like a join unless `force`.
    Remove {
        /// Routes the result.
        id: RequestId,
        /// The member.
        name: String,
        /// Skip the quorum check.
        force: bool,
    },
    /// A linearizable read: answered once leadership is confirmed and applied >= read index.
    Read {
        /// Routes the result.
        id: RequestId,
    },
    /// The log is durable up to `index`.
    Persisted(Index),
    /// An AppendEntries request from a leader.
    Append {
        /// Routes the reply.
        id: RequestId,
        /// The request, its entries still in the body's bytes.
        req: ReceivedAppend,
    },
    /// The outcome of an AppendEntries this node sent (`None`: no usable answer).
    AppendResult {
        /// The peer.
        peer: String,
        /// What was sent.
        sent: SentAppend,
        /// Its answer.
        resp: Option<AppendResponse>,
        /// Whether the peer is a raftdump node (snapshots may be sent to it).
        raftdump: bool,
    },
    /// A RequestVote request.
    Vote {
        /// Routes the reply.
        id: RequestId,
        /// The request.
        req: VoteRequest,
    },
    /// The outcome of a RequestVote this node sent.
    VoteResult {
        /// The peer.
        peer: String,
        /// The term the request carried.
        term: Term,
        /// Its answer.
        resp: Option<VoteResponse>,
    },
    /// goraft's SnapshotRequest: would this node take a snapshot at this point?
    SnapshotOffer {
        /// Routes the reply.
        id: RequestId,
        /// Sender.
        leader: String,
        /// Snapshot point.
        last_index: Index,
        /// Its term.
        last_term: Term,
    },
    /// goraft's SnapshotRecoveryRequest.
    SnapshotInstall {
        /// Routes the reply.
        id: RequestId,
        /// The request.
        req: SnapshotInstall,
    },
    /// This node's own snapshot at `index` (with `term`) is durable and its log now starts
    /// after it (`--snapshot-every`).
    Compacted {
        /// The snapshot point.
        index: Index,
        /// Its term.
        term: Term,
    },
    /// The outcome of a snapshot transfer this node sent.
    SnapshotResult {
        /// The peer.
        peer: String,
        /// The snapshot point sent.
        last_index: Index,
        /// Whether the peer now holds it.
        ok: bool,
    },
}

/// Outputs of the core, to be carried out in order (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Persist term and vote durably (fsync) before anything that follows.
    SaveHardState(HardState),
    /// Drop log entries after this index.
    Truncate(Index),
    /// Append these entries to the log: a received body's (the store writes their bytes as
    /// they are), or the leader's own proposal.
    Append(EntryBatch),
    /// Send AppendEntries with the entries `prev+1..=last` read from storage.
    SendAppend {
        /// The peer.
        to: Peer,
        /// Leader's term.
        term: Term,
        /// prev index.
        prev_index: Index,
        /// prev term.
        prev_term: Term,
        /// Last entry to include (== prev_index for a heartbeat).
        last: Index,
        /// Leader's commit index.
        commit: Index,
        /// Echo this back in [`Event::AppendResult`].
        sent: SentAppend,
    },
    /// Send RequestVote.
    SendVote {
        /// The peer.
        to: Peer,
        /// The request.
        req: VoteRequest,
    },
    /// Transfer this node's snapshot (SnapshotRequest, then SnapshotRecoveryRequest); only to
    /// raftdump peers. Answer with [`Event::SnapshotResult`].
    SendSnapshot {
        /// The peer.
        to: Peer,
        /// The snapshot point the core expects.
        last_index: Index,
    },
    /// Answer an AppendEntries (after the log is durable).
    ReplyAppend {
        /// The request.
        id: RequestId,
        /// The answer.
        resp: AppendResponse,
    },
    /// Refuse an RPC from a sender that is not a member, or with a term out of bounds: the
    /// request changed nothing (a 4xx that says why).
    Refuse {
        /// The request.
        id: RequestId,
        /// Why.
        reason: Refusal,
    },
    /// Answer a RequestVote.
    ReplyVote {
        /// The request.
        id: RequestId,
        /// The answer.
        resp: VoteResponse,
    },
    /// Answer a SnapshotRequest (`None`: not handled in this state, goraft's 500).
    ReplySnapshotOffer {
        /// The request.
        id: RequestId,
        /// Whether the node wants the snapshot.
        accept: Option<bool>,
    },
    /// Answer a SnapshotRecoveryRequest without installing (`None`: not handled, goraft's 500).
    ReplySnapshotInstall {
        /// The request.
        id: RequestId,
        /// `(term, success, commit index)`.
        resp: Option<(Term, bool, Index)>,
    },
    /// Replace the log and the state machine with this snapshot, then reply
    /// `(term, true, last_index)`.
    InstallSnapshot {
        /// The request to answer.
        id: RequestId,
        /// The snapshot.
        snapshot: SnapshotInstall,
        /// The term to answer with.
        term: Term,
    },
    /// Entries up to this index are committed: apply them.
    Commit(Index),
    /// A proposal's fate.
    ProposalDone {
        /// The proposal.
        id: RequestId,
        /// Its index when committed.
        result: Result<Index, Rejection>,
    },
    /// A read may be served once the state machine has applied the index.
    ReadDone {
        /// The read.
        id: RequestId,
        /// The read index.
        result: Result<Index, Rejection>,
    },
}
