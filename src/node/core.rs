//! The pure Raft core: `step(Event) -> Vec<Action>`.
//!
//! It owns the Raft rules (roles, terms, votes, the log's shape, replication progress, commit,
//! membership as goraft applies it, linearizable read confirmation) and nothing else: no I/O, no
//! clock, no threads. Time arrives as [`Event::Tick`], randomness comes from a seeded
//! [`XorShift`], storage and the network are reached only through the [`Action`]s it returns,
//! which the runtime (or a test simulator) carries out **in order**.
//!
//! The log itself is not held here: only its shape ([`LogTerms`]: first index, last index and
//! the term of every index as runs), so that a node with a million entries costs a few bytes.
//! Messages that carry entries name a range ([`Action::SendAppend`]); the executor reads it
//! from storage.
//!
//! # Contract with the executor
//! - `SaveHardState` must be durable before any later action is carried out.
//! - `Truncate` / `Append` may be buffered, but every `Reply*` action must be sent only after
//!   the entries appended so far are durable (group commit: one fsync before the replies).
//! - After making the log durable, the executor reports [`Event::Persisted`]; a leader counts
//!   itself in a quorum only up to that index.
//! - Time enters only through [`Event::Tick`]: feed `Tick(now)` before (or with) every other
//!   event, so that timers reset from the right time.
//! - `Commit(i)` means entries up to `i` are committed: apply them before carrying out the
//!   `ProposalDone` / `ReadDone` actions that follow it.

use std::collections::{BTreeMap, BTreeSet};

use crate::format::command;
use crate::model::{
    names, term_in_bounds, term_is_poisoned, Command, Entry, Index, Peer, Term, MAX_TERM_STEP,
};

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

/// goraft's AppendEntriesRequest, with owned entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// Leader's term.
    pub term: Term,
    /// Index before the first entry.
    pub prev_index: Index,
    /// Its term.
    pub prev_term: Term,
    /// Leader's commit index.
    pub commit: Index,
    /// Leader's name.
    pub leader: String,
    /// The entries.
    pub entries: Vec<Entry>,
}

/// goraft's AppendEntriesResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResponse {
    /// Responder's term.
    pub term: Term,
    /// On success the last index known to match the leader; on failure the last log index.
    pub index: Index,
    /// Responder's commit index.
    pub commit: Index,
    /// Whether the entries were accepted.
    pub success: bool,
}

/// goraft's RequestVoteRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRequest {
    /// Candidate's term.
    pub term: Term,
    /// Candidate's last log index.
    pub last_index: Index,
    /// Candidate's last log term.
    pub last_term: Term,
    /// Candidate's name.
    pub candidate: String,
}

/// goraft's RequestVoteResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteResponse {
    /// Responder's term.
    pub term: Term,
    /// Whether the vote was granted.
    pub granted: bool,
}

/// goraft's SnapshotRecoveryRequest, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInstall {
    /// Sender.
    pub leader: String,
    /// Snapshot point.
    pub last_index: Index,
    /// Its term.
    pub last_term: Term,
    /// Every member, the leader included.
    pub peers: Vec<Peer>,
    /// State machine bytes.
    pub state: Vec<u8>,
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
        /// The request.
        req: AppendRequest,
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
    /// Append these entries to the log.
    Append(Vec<Entry>),
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

#[derive(Debug, Clone)]
struct Progress {
    next: Index,
    matched: Index,
    inflight: u32,
    epoch: u64,
    acked_round: u64,
    raftdump: bool,
    snapshot_inflight: bool,
}

#[derive(Debug, Clone)]
struct PendingRead {
    id: RequestId,
    index: Index,
    round: u64,
}

/// A snapshot of the core's public state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// Known leader.
    pub leader: Option<String>,
    /// Commit index.
    pub commit: Index,
    /// Last log index.
    pub last_index: Index,
    /// Members (name -> URL), this node included when it joined.
    pub members: BTreeMap<String, String>,
}

/// The Raft state machine of one node. See the module docs.
#[derive(Debug)]
pub struct Core {
    cfg: Config,
    rng: XorShift,
    now: Millis,
    hs: HardState,
    role: Role,
    leader: Option<String>,
    log: LogTerms,
    commit: Index,
    members: BTreeMap<String, String>,
    pending_config: BTreeMap<Index, ConfigChange>,
    election_deadline: Millis,
    heartbeat_deadline: Millis,
    votes: BTreeSet<String>,
    progress: BTreeMap<String, Progress>,
    persisted: Index,
    proposals: BTreeMap<Index, (RequestId, Term)>,
    reads: Vec<PendingRead>,
    round: u64,
    round_in_flight: bool,
    term_start: Index,
    replicate_pending: bool,
    commit_notify_at: Option<Millis>,
    refusals_logged: BTreeSet<String>,
    stuck_logged: bool,
    out: Vec<Action>,
}

/// How long a leader waits before telling idle followers about a new commit index.
const COMMIT_NOTIFY_MS: Millis = 5;

/// Most distinct senders whose refusal is logged (each once); later ones are only counted.
const MAX_LOGGED_REFUSALS: usize = 64;

/// A sender's name as a refusal keeps it: at most 64 bytes (a forged name may be megabytes).
fn short_name(name: &str) -> String {
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// Why a Raft RPC was refused without being looked at further (answered with a 4xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The sender is not a member this node knows (see [`Core::knows`]).
    NotMember(String),
    /// The request's term is beyond the bound of [`term_in_bounds`].
    TermOutOfBounds {
        /// The sender.
        from: String,
        /// The term it carried.
        term: Term,
        /// This node's term.
        current: Term,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotMember(n) => write!(f, "sender {n:?} is not a member of this cluster"),
            Refusal::TermOutOfBounds {
                from,
                term,
                current,
            } => write!(
                f,
                "term {term} from {from:?} is out of bounds (current term {current}; at most \
                 {MAX_TERM_STEP} above it, and not within {MAX_TERM_STEP} of the largest term)"
            ),
        }
    }
}

impl Core {
    /// A follower at time `now`, from what storage loaded.
    pub fn new(cfg: Config, init: InitialState, now: Millis) -> Self {
        let mut hs = init.hard_state;
        if init.log.last_term() > hs.term {
            hs.term = init.log.last_term();
            hs.voted_for = None;
        }
        let commit = init
            .commit
            .min(init.log.last_index())
            .max(init.log.start_index);
        let rng = XorShift::new(cfg.seed);
        let persisted = init.log.last_index();
        let mut core = Core {
            cfg,
            rng,
            now,
            hs,
            role: Role::Follower,
            leader: None,
            log: init.log,
            commit,
            members: init.members,
            pending_config: init.pending_config,
            election_deadline: 0,
            heartbeat_deadline: 0,
            votes: BTreeSet::new(),
            progress: BTreeMap::new(),
            persisted,
            proposals: BTreeMap::new(),
            reads: Vec::new(),
            round: 0,
            round_in_flight: false,
            term_start: 0,
            replicate_pending: false,
            commit_notify_at: None,
            refusals_logged: BTreeSet::new(),
            stuck_logged: false,
            out: Vec::new(),
        };
        core.pending_config.retain(|&i, _| i > commit);
        // A lone member need not wait for a timeout: nobody else can be leader.
        if core.peers().is_empty() && core.promotable() {
            core.election_deadline = now;
        } else {
            core.reset_election_timer();
        }
        core
    }

    /// Feeds one event; returns what to do.
    pub fn step(&mut self, event: Event) -> Vec<Action> {
        self.step_many(std::iter::once(event))
    }

    /// Feeds several events as one batch: replication of new entries is sent once at the end.
    ///
    /// A `Tick` in the batch moves the clock at once, but its timers fire after the other
    /// events: a node that was stalled (a slow fsync) first hears the heartbeats that queued
    /// up meanwhile, instead of starting an election it has no reason for.
    pub fn step_many(&mut self, events: impl IntoIterator<Item = Event>) -> Vec<Action> {
        let mut tick = None;
        for e in events {
            match e {
                Event::Tick(now) => {
                    self.now = self.now.max(now);
                    tick = Some(self.now);
                }
                other => self.handle(other),
            }
        }
        if let Some(now) = tick {
            self.tick(now);
        }
        if self.replicate_pending {
            self.replicate_pending = false;
            self.replicate_all(false);
        }
        std::mem::take(&mut self.out)
    }

    /// The public state.
    pub fn status(&self) -> Status {
        Status {
            name: self.cfg.name.clone(),
            role: self.role,
            term: self.hs.term,
            leader: self.leader.clone(),
            commit: self.commit,
            last_index: self.log.last_index(),
            members: self.members.clone(),
        }
    }

    /// Brings `s` up to [`Core::status`] without allocating when only numbers changed (the
    /// runtime publishes it after every batch).
    pub fn update_status(&self, s: &mut Status) {
        if s.name != self.cfg.name {
            s.name.clone_from(&self.cfg.name);
        }
        s.role = self.role;
        s.term = self.hs.term;
        if s.leader != self.leader {
            s.leader.clone_from(&self.leader);
        }
        s.commit = self.commit;
        s.last_index = self.log.last_index();
        if s.members != self.members {
            s.members.clone_from(&self.members);
        }
    }

    /// How many peers this node replicates to (0 unless it leads other members).
    pub fn peer_count(&self) -> usize {
        if self.role == Role::Leader {
            self.progress.len()
        } else {
            0
        }
    }

    /// Whether a proposal made now would go out to a peer at once: this node leads, and some
    /// peer has room for another AppendEntries in flight. Otherwise new entries wait for the
    /// next answer (or heartbeat), and an executor may take proposals at that point instead.
    pub fn has_idle_peer(&self) -> bool {
        let max = self.cfg.max_inflight.max(1);
        self.role == Role::Leader
            && self
                .progress
                .values()
                .any(|p| p.inflight < max && !p.snapshot_inflight)
    }

    /// Whether this node's own log being durable further would let something happen now:
    /// a leader's commit index would advance (its peers hold more than it has synced), or
    /// this node does not lead (its answers wait for its fsync). A leader whose fsync ends
    /// before any follower answers learns of it with the next answer, without a wake-up.
    pub fn waits_on_own_log(&self) -> bool {
        if self.role != Role::Leader {
            return true;
        }
        let last = self.log.last_index();
        if self.persisted >= last {
            return false;
        }
        let mut m: Vec<Index> = self
            .members
            .keys()
            .filter(|n| **n != self.cfg.name)
            .map(|n| self.progress.get(n).map_or(0, |x| x.matched))
            .collect();
        m.push(last);
        m.sort_unstable_by(|a, b| b.cmp(a));
        m.get(self.quorum() - 1)
            .is_some_and(|&n| n > self.commit && n > self.persisted)
    }

    /// Replication progress per peer, for debugging: `(name, next, matched, inflight)`.
    pub fn progress_summary(&self) -> Vec<(String, Index, Index, u32)> {
        self.progress
            .iter()
            .map(|(n, p)| (n.clone(), p.next, p.matched, p.inflight))
            .collect()
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The log's shape.
    pub fn log(&self) -> &LogTerms {
        &self.log
    }

    /// The commit index.
    pub fn commit_index(&self) -> Index {
        self.commit
    }

    /// The persisted term and vote.
    pub fn hard_state(&self) -> &HardState {
        &self.hs
    }

    /// When the core next needs a [`Event::Tick`].
    pub fn next_deadline(&self) -> Millis {
        match self.role {
            Role::Leader => self
                .heartbeat_deadline
                .min(self.commit_notify_at.unwrap_or(Millis::MAX)),
            _ => self.election_deadline,
        }
    }

    /// The known leader as a peer (name and URL; the URL may come from a join that is not
    /// applied here yet).
    pub fn leader_peer(&self) -> Option<Peer> {
        let name = self.leader.as_ref()?;
        let pending = self.pending_config.values().find_map(|c| match c {
            ConfigChange::Join(p) if p.name == *name => Some(p.connection_string.clone()),
            _ => None,
        });
        Some(Peer {
            name: name.clone(),
            connection_string: self
                .members
                .get(name)
                .cloned()
                .or(pending)
                .unwrap_or_default(),
        })
    }

    fn peers(&self) -> Vec<Peer> {
        self.members
            .iter()
            .filter(|(n, _)| **n != self.cfg.name)
            .map(|(n, c)| Peer {
                name: n.clone(),
                connection_string: c.clone(),
            })
            .collect()
    }

    /// goraft's quorum: `(peers + 1) / 2 + 1`, peers excluding self.
    fn quorum(&self) -> usize {
        let peers = self.members.keys().filter(|n| **n != self.cfg.name).count();
        peers.div_ceil(2) + 1
    }

    /// goraft's promotable(): a node with an empty log (and no snapshot) never campaigns.
    /// Beyond goraft: only a member campaigns. A node that knows no members yet may campaign
    /// only if every membership entry in its log is its own self-join (a lone node whose conf
    /// was lost); a node that just joined and has not applied its membership must not, or it
    /// would count itself a quorum of one.
    fn promotable(&self) -> bool {
        if self.log.last_index() == 0 {
            return false;
        }
        if self.members.is_empty() {
            return self
                .pending_config
                .values()
                .all(|c| matches!(c, ConfigChange::Join(p) if p.name == self.cfg.name));
        }
        self.members.contains_key(&self.cfg.name)
    }

    /// Whether `name` is a member this node knows: in its members or joining by an entry of
    /// its log. Until the node has seen its own join (it has just asked to join, and holds no
    /// log or only the start of one), anyone: it learns the members from the leader's entries,
    /// and it has nothing to protect yet (it is no member: it neither votes nor campaigns).
    pub fn knows(&self, name: &str) -> bool {
        self.known(name) || !self.joined()
    }

    /// Whether this node has seen its own join (in its members or its log). Until then its
    /// join window is open: see [`Core::knows`].
    pub fn joined(&self) -> bool {
        self.known(&self.cfg.name)
    }

    fn known(&self, name: &str) -> bool {
        self.members.contains_key(name)
            || self
                .pending_config
                .values()
                .any(|c| matches!(c, ConfigChange::Join(p) if p.name == name))
    }

    /// Why an incoming RPC must be refused, if it must: its sender is unknown, or its term is
    /// out of bounds. Other events pass.
    pub fn refusal(&self, event: &Event) -> Option<(RequestId, Refusal)> {
        let (id, from, term) = match event {
            Event::Append { id, req } => (*id, &req.leader, Some(req.term)),
            Event::Vote { id, req } => (*id, &req.candidate, Some(req.term)),
            Event::SnapshotOffer { id, leader, .. } => (*id, leader, None),
            Event::SnapshotInstall { id, req } => (*id, &req.leader, None),
            _ => return None,
        };
        if *from == self.cfg.name || !self.knows(from) {
            return Some((id, Refusal::NotMember(short_name(from))));
        }
        let current = self.hs.term;
        match term {
            Some(term) if !term_in_bounds(current, term) => Some((
                id,
                Refusal::TermOutOfBounds {
                    from: short_name(from),
                    term,
                    current,
                },
            )),
            _ => None,
        }
    }

    /// Logs a refusal once per sender (a flood of forged requests logs one line each).
    fn log_refusal(&mut self, reason: &Refusal) {
        let from = match reason {
            Refusal::NotMember(n) | Refusal::TermOutOfBounds { from: n, .. } => n,
        };
        if self.refusals_logged.len() < MAX_LOGGED_REFUSALS
            && self.refusals_logged.insert(from.clone())
        {
            log::warn!("refused a Raft RPC: {reason}; further ones from it are not logged");
        }
    }

    fn reset_election_timer(&mut self) {
        let t = self.cfg.election_timeout_ms;
        self.election_deadline = self
            .now
            .saturating_add(self.rng.range(t, t.saturating_mul(2)));
    }

    fn save_hard_state(&mut self) {
        self.out.push(Action::SaveHardState(self.hs.clone()));
    }

    fn handle(&mut self, event: Event) {
        if let Some((id, reason)) = self.refusal(&event) {
            self.log_refusal(&reason);
            self.out.push(Action::Refuse { id, reason });
            return;
        }
        match event {
            Event::Tick(now) => self.tick(now),
            Event::Bootstrap => self.bootstrap(),
            Event::Propose { id, name, payload } => self.propose(id, name, payload),
            Event::Read { id } => self.read(id),
            Event::Persisted(i) => {
                self.persisted = self.persisted.max(i.min(self.log.last_index()));
                if self.role == Role::Leader {
                    self.advance_commit();
                } else if self.role == Role::Follower && self.leader.is_some() {
                    // Our own slow fsync held the leader's answer (and so its next request):
                    // that silence is ours, not the leader's.
                    self.reset_election_timer();
                }
            }
            Event::Append { id, req } => self.on_append(id, req),
            Event::AppendResult {
                peer,
                sent,
                resp,
                raftdump,
            } => self.on_append_result(&peer, sent, resp, raftdump),
            Event::Vote { id, req } => self.on_vote(id, req),
            Event::VoteResult { peer, term, resp } => self.on_vote_result(peer, term, resp),
            Event::SnapshotOffer {
                id,
                leader,
                last_index,
                last_term,
            } => {
                let accept = (self.role == Role::Follower
                    && self.leader.as_deref() == Some(leader.as_str()))
                .then(|| {
                    self.log.term_at(last_index) != Some(last_term) && last_index > self.commit
                });
                self.reset_election_timer();
                self.out.push(Action::ReplySnapshotOffer { id, accept });
            }
            Event::SnapshotInstall { id, req } => self.on_snapshot_install(id, req),
            Event::SnapshotResult {
                peer,
                last_index,
                ok,
            } => {
                if let Some(p) = self.progress.get_mut(&peer) {
                    p.snapshot_inflight = false;
                    if ok {
                        p.matched = p.matched.max(last_index);
                        p.next = p.matched.saturating_add(1);
                        p.epoch = p.epoch.wrapping_add(1);
                        p.inflight = 0;
                        self.send_append(&peer, false);
                        self.advance_commit();
                    }
                }
            }
        }
    }

    fn tick(&mut self, now: Millis) {
        self.now = self.now.max(now);
        match self.role {
            Role::Leader => {
                if self.commit_notify_at.is_some_and(|t| self.now >= t) {
                    self.commit_notify_at = None;
                    let idle: Vec<String> = self
                        .progress
                        .iter()
                        .filter(|(_, p)| p.inflight == 0)
                        .map(|(n, _)| n.clone())
                        .collect();
                    for name in idle {
                        self.send_append(&name, true);
                    }
                }
                if self.now >= self.heartbeat_deadline {
                    self.heartbeat_deadline = self.now.saturating_add(self.cfg.heartbeat_ms);
                    let max = self.cfg.max_inflight.max(1);
                    let open: Vec<String> = self
                        .progress
                        .iter()
                        .filter(|(_, p)| p.inflight < max)
                        .map(|(n, _)| n.clone())
                        .collect();
                    for n in open {
                        self.send_append(&n, true);
                    }
                }
            }
            Role::Follower | Role::Candidate => {
                if self.now >= self.election_deadline {
                    if self.promotable() {
                        self.campaign();
                    } else {
                        self.reset_election_timer();
                    }
                }
            }
        }
    }

    fn bootstrap(&mut self) {
        if !self.log.is_empty() || self.log.start_index != 0 {
            return;
        }
        // goraft (docs/format.md, 'Terms and bootstrap'): the first node joins itself and leads in term 0 without an election.
        let join = command::encode_join(&self.cfg.name, &self.cfg.connection_string);
        let term = self.hs.term;
        self.append_local(names::JOIN.to_string(), Some(join));
        self.role = Role::Leader;
        self.leader = Some(self.cfg.name.clone());
        self.start_leading(term);
    }

    fn campaign(&mut self) {
        let next = self.hs.term.saturating_add(1);
        if term_is_poisoned(next) {
            // No term is left to campaign in; the operator must reset the saved term (`serve`
            // prints how at start).
            if !self.stuck_logged {
                self.stuck_logged = true;
                log::error!(
                    "term {} leaves no room for an election; this node does not campaign",
                    self.hs.term
                );
            }
            self.reset_election_timer();
            return;
        }
        self.hs.term = next;
        self.hs.voted_for = Some(self.cfg.name.clone());
        self.save_hard_state();
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.cfg.name.clone());
        self.reset_election_timer();
        if self.votes.len() >= self.quorum() {
            self.become_leader();
            return;
        }
        let req = VoteRequest {
            term: self.hs.term,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            candidate: self.cfg.name.clone(),
        };
        for to in self.peers() {
            self.out.push(Action::SendVote {
                to,
                req: req.clone(),
            });
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.name.clone());
        let term = self.hs.term;
        self.start_leading(term);
    }

    fn start_leading(&mut self, term: Term) {
        let next = self.log.last_index().saturating_add(1);
        self.progress.clear();
        for p in self.peers() {
            self.progress.insert(p.name, Progress::new(next));
        }
        self.round_in_flight = false;
        // Every new leader appends a nop in its term (goraft's leaderLoop); committing it
        // commits everything before it, and reads wait for it.
        self.term_start = self.append_local(names::NOP.to_string(), None);
        debug_assert_eq!(self.log.term_at(self.term_start), Some(term));
        self.heartbeat_deadline = self.now.saturating_add(self.cfg.heartbeat_ms);
        self.replicate_all(true);
        self.advance_commit();
    }

    /// Steps down to follower, adopting `term` if it is higher.
    fn become_follower(&mut self, term: Term, leader: Option<String>) {
        if term > self.hs.term {
            self.hs.term = term;
            self.hs.voted_for = None;
            self.save_hard_state();
        }
        if self.role == Role::Leader {
            for r in std::mem::take(&mut self.reads) {
                self.out.push(Action::ReadDone {
                    id: r.id,
                    result: Err(Rejection::NotLeader(None)),
                });
            }
            self.progress.clear();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_election_timer();
    }

    fn append_local(&mut self, name: String, payload: Option<Vec<u8>>) -> Index {
        let index = self.log.last_index().saturating_add(1);
        let term = self.hs.term;
        if let Some(c) = ConfigChange::of(&name, payload.as_deref()) {
            self.pending_config.insert(index, c);
        }
        self.log.push(index, term);
        self.out.push(Action::Append(vec![Entry {
            index,
            term,
            name,
            payload,
        }]));
        self.replicate_pending = true;
        index
    }

    fn propose(&mut self, id: RequestId, name: String, payload: Option<Vec<u8>>) {
        if self.role != Role::Leader {
            self.out.push(Action::ProposalDone {
                id,
                result: Err(Rejection::NotLeader(self.leader_peer())),
            });
            return;
        }
        if let Some(change) = ConfigChange::of(&name, payload.as_deref()) {
            // One change at a time, and none before this leader's nop is committed (the
            // single-server change rule: a new leader first commits an entry of its term).
            if self
                .pending_config
                .range(self.commit.saturating_add(1)..)
                .next()
                .is_some()
                || self.commit < self.term_start
            {
                self.out.push(Action::ProposalDone {
                    id,
                    result: Err(Rejection::ConfigChangePending),
                });
                return;
            }
            if let ConfigChange::Join(p) = &change {
                if self.members.contains_key(&p.name) {
                    self.out.push(Action::ProposalDone {
                        id,
                        result: Err(Rejection::DuplicateMember(p.name.clone())),
                    });
                    return;
                }
            }
        }
        let index = self.append_local(name, payload);
        self.proposals.insert(index, (id, self.hs.term));
        if self.quorum() == 1 {
            self.advance_commit();
        }
    }

    fn read(&mut self, id: RequestId) {
        if self.role != Role::Leader {
            self.out.push(Action::ReadDone {
                id,
                result: Err(Rejection::NotLeader(self.leader_peer())),
            });
            return;
        }
        let index = self.commit.max(self.term_start);
        self.reads.push(PendingRead {
            id,
            index,
            round: self.round.saturating_add(1),
        });
        if self.quorum() == 1 {
            self.round = self.round.saturating_add(1);
            self.check_reads();
        } else if !self.round_in_flight {
            self.start_round();
        }
    }

    fn start_round(&mut self) {
        self.round = self.round.saturating_add(1);
        self.round_in_flight = true;
        let names: Vec<String> = self.progress.keys().cloned().collect();
        for n in names {
            self.send_append(&n, true);
        }
    }

    /// The highest round acknowledged by a quorum (self always counts).
    fn confirmed_round(&self) -> u64 {
        let mut acks: Vec<u64> = self.progress.values().map(|p| p.acked_round).collect();
        acks.push(self.round);
        acks.sort_unstable_by(|a, b| b.cmp(a));
        acks.get(self.quorum() - 1).copied().unwrap_or(0)
    }

    fn check_reads(&mut self) {
        if self.role != Role::Leader || self.reads.is_empty() {
            return;
        }
        let confirmed = self.confirmed_round();
        if confirmed >= self.round {
            self.round_in_flight = false;
        }
        let commit = self.commit;
        let mut waiting = Vec::new();
        for r in std::mem::take(&mut self.reads) {
            if r.round <= confirmed && r.index <= commit {
                self.out.push(Action::ReadDone {
                    id: r.id,
                    result: Ok(r.index),
                });
            } else {
                waiting.push(r);
            }
        }
        self.reads = waiting;
        if !self.round_in_flight && self.reads.iter().any(|r| r.round > confirmed) {
            for r in &mut self.reads {
                r.round = r.round.max(self.round.saturating_add(1));
            }
            self.start_round();
        }
    }

    fn replicate_all(&mut self, force: bool) {
        let names: Vec<String> = self.progress.keys().cloned().collect();
        for n in names {
            self.send_append(&n, force);
        }
    }

    /// Sends the next batch to `name`; `force` sends even with nothing new or a full window
    /// (heartbeats and read rounds).
    fn send_append(&mut self, name: &str, force: bool) {
        if self.role != Role::Leader {
            return;
        }
        let Some(conn) = self.members.get(name).cloned() else {
            return;
        };
        let last_index = self.log.last_index();
        let (commit, term, round, start) =
            (self.commit, self.hs.term, self.round, self.log.start_index);
        let max_batch = self.cfg.max_batch_entries.max(1);
        let max_inflight = self.cfg.max_inflight.max(1);
        let Some(p) = self.progress.get_mut(name) else {
            return;
        };
        if p.snapshot_inflight {
            return;
        }
        if p.next <= start {
            // The entries this peer needs were compacted into our snapshot.
            if p.raftdump {
                p.snapshot_inflight = true;
                self.out.push(Action::SendSnapshot {
                    to: Peer {
                        name: name.to_string(),
                        connection_string: conn,
                    },
                    last_index: start,
                });
                return;
            }
            // Never send snapshot RPCs to a goraft node (docs/format.md, 'RPCs'): probe from the snapshot point;
            // a raftdump peer reveals itself in its answer.
            p.next = start.saturating_add(1);
        }
        if !force && (p.inflight >= max_inflight || p.next > last_index) {
            return;
        }
        let prev = p.next.saturating_sub(1);
        let Some(prev_term) = self.log.term_at(prev) else {
            return;
        };
        let last = last_index.min(prev.saturating_add(max_batch));
        p.inflight = p.inflight.saturating_add(1);
        p.next = last.saturating_add(1);
        let sent = SentAppend {
            term,
            epoch: p.epoch,
            round,
            prev,
            last,
        };
        self.out.push(Action::SendAppend {
            to: Peer {
                name: name.to_string(),
                connection_string: conn,
            },
            term,
            prev_index: prev,
            prev_term,
            last,
            commit,
            sent,
        });
    }

    fn on_append_result(
        &mut self,
        peer: &str,
        sent: SentAppend,
        resp: Option<AppendResponse>,
        raftdump: bool,
    ) {
        let resp = resp.filter(|r| term_in_bounds(self.hs.term, r.term));
        if let Some(r) = resp {
            if r.term > self.hs.term {
                self.become_follower(r.term, None);
                return;
            }
        }
        if self.role != Role::Leader || sent.term != self.hs.term {
            return;
        }
        let last_index = self.log.last_index();
        let Some(p) = self.progress.get_mut(peer) else {
            return;
        };
        let Some(r) = resp else {
            if sent.epoch == p.epoch {
                // The request may be lost: resend it (a new epoch; later answers to the old
                // one still count as matches).
                p.epoch = p.epoch.wrapping_add(1);
                p.inflight = 0;
                p.next = sent.prev.saturating_add(1).max(p.matched.saturating_add(1));
            }
            return;
        };
        p.raftdump |= raftdump;
        p.acked_round = p.acked_round.max(sent.round);
        if r.success {
            p.matched = p.matched.max(sent.last);
            if sent.epoch == p.epoch {
                p.inflight = p.inflight.saturating_sub(1);
            }
            p.next = p.next.max(p.matched.saturating_add(1));
            self.advance_commit();
            self.send_append(peer, false);
        } else if sent.epoch == p.epoch {
            p.epoch = p.epoch.wrapping_add(1);
            p.inflight = 0;
            // Step back: the peer's log is shorter, or its entry at `prev` differs. Entries it
            // has committed match ours (Log Matching), so never go below its commit index.
            let mut next = sent.prev.min(r.index.saturating_add(1));
            next = next
                .max(r.commit.saturating_add(1))
                .max(p.matched.saturating_add(1));
            next = next.clamp(1, last_index.saturating_add(1));
            let progressed = next <= sent.prev;
            p.next = next;
            if progressed {
                self.send_append(peer, false);
            }
        }
        self.check_reads();
    }

    fn advance_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        loop {
            let mut m: Vec<Index> = self
                .peers()
                .iter()
                .map(|p| self.progress.get(&p.name).map_or(0, |x| x.matched))
                .collect();
            m.push(self.persisted.min(self.log.last_index()));
            m.sort_unstable_by(|a, b| b.cmp(a));
            let Some(&n) = m.get(self.quorum() - 1) else {
                return;
            };
            // Only entries of the current term are committed by counting (Raft §5.4.2).
            if n <= self.commit || self.log.term_at(n) != Some(self.hs.term) {
                return;
            }
            // Apply one membership change at a time: the quorum changes with it.
            let n = match self
                .pending_config
                .range(self.commit.saturating_add(1)..=n)
                .next()
            {
                Some((&c, _)) => c,
                None => n,
            };
            let before = self.members.clone();
            self.set_commit(n);
            if self.members == before {
                return;
            }
        }
    }

    fn set_commit(&mut self, n: Index) {
        if n <= self.commit {
            return;
        }
        self.commit = n;
        self.out.push(Action::Commit(n));
        let applied: Vec<(Index, ConfigChange)> = self
            .pending_config
            .range(..=n)
            .map(|(i, c)| (*i, c.clone()))
            .collect();
        for (i, c) in applied {
            self.pending_config.remove(&i);
            match c {
                ConfigChange::Join(p) => {
                    self.members.entry(p.name).or_insert(p.connection_string);
                }
                ConfigChange::Leave(name) => {
                    self.members.remove(&name);
                }
            }
        }
        if self.role == Role::Leader {
            let next = self.log.last_index().saturating_add(1);
            let peers = self.peers();
            self.progress
                .retain(|n, _| peers.iter().any(|p| &p.name == n));
            for p in peers {
                if !self.progress.contains_key(&p.name) {
                    self.progress.insert(p.name.clone(), Progress::new(next));
                    self.send_append(&p.name, true);
                }
            }
            if !self.members.is_empty() && !self.members.contains_key(&self.cfg.name) {
                // This leader committed its own removal.
                self.become_follower(self.hs.term, None);
            }
        }
        let done: Vec<(Index, (RequestId, Term))> =
            self.proposals.range(..=n).map(|(i, v)| (*i, *v)).collect();
        for (i, (id, term)) in done {
            self.proposals.remove(&i);
            let result = if self.log.term_at(i) == Some(term) {
                Ok(i)
            } else {
                Err(Rejection::Superseded)
            };
            self.out.push(Action::ProposalDone { id, result });
        }
        if self.role == Role::Leader {
            // Followers learn the new commit index soon even when idle, but not with an extra
            // request per commit: under load the next batch carries it anyway.
            if self.commit_notify_at.is_none() {
                self.commit_notify_at = Some(self.now.saturating_add(COMMIT_NOTIFY_MS));
            }
        }
        self.check_reads();
    }

    fn reply_append(&mut self, id: RequestId, index: Index, success: bool) {
        self.out.push(Action::ReplyAppend {
            id,
            resp: AppendResponse {
                term: self.hs.term,
                index,
                commit: self.commit,
                success,
            },
        });
    }

    fn on_append(&mut self, id: RequestId, req: AppendRequest) {
        if req.term < self.hs.term {
            let last = self.log.last_index();
            self.reply_append(id, last, false);
            return;
        }
        if req.term == self.hs.term && self.role == Role::Leader {
            // Two leaders in one term cannot happen with persisted votes; refuse, never crash.
            log::error!(
                "AppendEntries from {} in my own leader term {}: refused",
                req.leader,
                req.term
            );
            let last = self.log.last_index();
            self.reply_append(id, last, false);
            return;
        }
        if req.term > self.hs.term || self.role != Role::Follower {
            self.become_follower(req.term, Some(req.leader.clone()));
        }
        self.leader = Some(req.leader.clone());
        self.reset_election_timer();

        let last = self.log.last_index();
        if req.prev_index > last {
            self.reply_append(id, last, false);
            return;
        }
        let mut prev = req.prev_index;
        let mut entries = req.entries;
        // Entries at or below our snapshot point or commit index are committed: they match the
        // leader's (Log Matching), so they are skipped rather than checked.
        let known = self.commit.max(self.log.start_index);
        if prev < known {
            let skip = entries.iter().take_while(|e| e.index <= known).count();
            let matched_to = prev.saturating_add(skip as u64);
            entries.drain(..skip);
            if entries.is_empty() {
                let commit_to = req.commit.min(matched_to);
                self.follower_commit(commit_to);
                self.reply_append(id, matched_to, true);
                return;
            }
            prev = matched_to;
        } else if self.log.term_at(prev) != Some(req.prev_term) {
            self.reply_append(id, last, false);
            return;
        }
        // Validate the batch before touching the log.
        let mut expect = prev;
        let mut term_floor = self.log.term_at(prev).unwrap_or(0);
        for e in &entries {
            if Some(e.index) != expect.checked_add(1) || e.term < term_floor || e.term > req.term {
                log::warn!(
                    "AppendEntries from {}: entry {} (term {}) does not follow {} (term {})",
                    req.leader,
                    e.index,
                    e.term,
                    expect,
                    term_floor
                );
                self.reply_append(id, last, false);
                return;
            }
            expect = e.index;
            term_floor = e.term;
        }
        let last_new = expect;
        let mut first_new = entries.len();
        for (k, e) in entries.iter().enumerate() {
            match self.log.term_at(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    if e.index <= self.commit {
                        log::error!(
                            "leader {} conflicts with committed entry {}",
                            req.leader,
                            e.index
                        );
                        let last = self.log.last_index();
                        self.reply_append(id, last, false);
                        return;
                    }
                    self.truncate_after(e.index.saturating_sub(1));
                    first_new = k;
                    break;
                }
                None => {
                    first_new = k;
                    break;
                }
            }
        }
        let new: Vec<Entry> = entries.split_off(first_new);
        if !new.is_empty() {
            for e in &new {
                if let Some(c) = ConfigChange::of(&e.name, e.payload.as_deref()) {
                    self.pending_config.insert(e.index, c);
                }
                self.log.push(e.index, e.term);
            }
            self.out.push(Action::Append(new));
        }
        self.follower_commit(req.commit.min(last_new));
        self.reply_append(id, last_new, true);
    }

    fn truncate_after(&mut self, index: Index) {
        self.log.truncate_after(index);
        self.pending_config.retain(|&i, _| i <= index);
        self.persisted = self.persisted.min(index);
        self.out.push(Action::Truncate(index));
        let dropped: Vec<Index> = self
            .proposals
            .range(index.saturating_add(1)..)
            .map(|(i, _)| *i)
            .collect();
        for i in dropped {
            if let Some((id, _)) = self.proposals.remove(&i) {
                self.out.push(Action::ProposalDone {
                    id,
                    result: Err(Rejection::Superseded),
                });
            }
        }
    }

    fn follower_commit(&mut self, to: Index) {
        if to > self.commit {
            self.set_commit(to);
        }
    }

    fn on_vote(&mut self, id: RequestId, req: VoteRequest) {
        if req.term < self.hs.term {
            self.out.push(Action::ReplyVote {
                id,
                resp: VoteResponse {
                    term: self.hs.term,
                    granted: false,
                },
            });
            return;
        }
        // A follower or candidate keeps its election timer when a newer term's request comes
        // (it is reset below only if the vote is granted): otherwise a node whose log is too
        // short to win, timing out again and again, would keep resetting the timer of the
        // only nodes that can win, and no leader would be elected (the Raft paper resets the
        // timer on granting a vote, not on seeing a newer term).
        let kept_deadline = (self.role != Role::Leader).then_some(self.election_deadline);
        if req.term > self.hs.term {
            self.become_follower(req.term, None);
            if let Some(d) = kept_deadline {
                self.election_deadline = d;
            }
        }
        let other_vote = self
            .hs
            .voted_for
            .as_ref()
            .is_some_and(|v| *v != req.candidate);
        let (mine, theirs) = (
            (self.log.last_term(), self.log.last_index()),
            (req.last_term, req.last_index),
        );
        let behind = !self.cfg.vote_rule.up_to_date(mine, theirs);
        let granted = !other_vote && !behind && self.role == Role::Follower;
        if granted {
            if self.hs.voted_for.is_none() {
                self.hs.voted_for = Some(req.candidate.clone());
                self.save_hard_state();
            }
            self.reset_election_timer();
        }
        self.out.push(Action::ReplyVote {
            id,
            resp: VoteResponse {
                term: self.hs.term,
                granted,
            },
        });
    }

    fn on_vote_result(&mut self, peer: String, term: Term, resp: Option<VoteResponse>) {
        let Some(r) = resp.filter(|r| term_in_bounds(self.hs.term, r.term)) else {
            return;
        };
        if r.term > self.hs.term {
            self.become_follower(r.term, None);
            return;
        }
        if self.role != Role::Candidate || term != self.hs.term || !r.granted {
            return;
        }
        if self.members.contains_key(&peer) {
            self.votes.insert(peer);
        }
        if self.votes.len() >= self.quorum() {
            self.become_leader();
        }
    }

    fn on_snapshot_install(&mut self, id: RequestId, req: SnapshotInstall) {
        let from_leader =
            self.role == Role::Follower && self.leader.as_deref() == Some(req.leader.as_str());
        if !from_leader {
            self.out
                .push(Action::ReplySnapshotInstall { id, resp: None });
            return;
        }
        self.reset_election_timer();
        if req.last_index <= self.commit {
            // Already covered by committed entries: nothing to replace.
            let resp = Some((self.hs.term, true, self.commit));
            self.out.push(Action::ReplySnapshotInstall { id, resp });
            return;
        }
        for (_, (pid, _)) in std::mem::take(&mut self.proposals) {
            self.out.push(Action::ProposalDone {
                id: pid,
                result: Err(Rejection::Superseded),
            });
        }
        self.log = LogTerms::new(req.last_index, req.last_term);
        self.persisted = req.last_index;
        self.commit = req.last_index;
        self.pending_config.clear();
        self.members = req
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.connection_string.clone()))
            .collect();
        let term = self.hs.term;
        self.out.push(Action::InstallSnapshot {
            id,
            snapshot: req,
            term,
        });
    }
}

impl Progress {
    fn new(next: Index) -> Self {
        Progress {
            next,
            matched: 0,
            inflight: 0,
            epoch: 0,
            acked_round: 0,
            raftdump: false,
            snapshot_inflight: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: Index, term: Term) -> Entry {
        Entry {
            index,
            term,
            name: "write".into(),
            payload: Some(format!("{{\"key\":\"k{index}\",\"value\":\"v\"}}\n").into_bytes()),
        }
    }

    fn follower(terms: &[Term]) -> Core {
        let mut log = LogTerms::new(0, 0);
        for (i, t) in terms.iter().enumerate() {
            log.push(i as u64 + 1, *t);
        }
        let mut members = BTreeMap::new();
        for n in ["a", "b", "c"] {
            members.insert(n.to_string(), format!("http://{n}"));
        }
        Core::new(
            Config::new("a", "http://a"),
            InitialState {
                log,
                members,
                ..Default::default()
            },
            0,
        )
    }

    #[test]
    fn a_denied_newer_candidate_does_not_hold_back_our_election() {
        let mut c = follower(&[1, 1, 1]);
        c.step(Event::Tick(10));
        let deadline = c.next_deadline();
        assert!(deadline > 10);
        // A candidate with a shorter log in a newer term: denied, and our timer runs on.
        let acts = c.step(Event::Vote {
            id: 7,
            req: VoteRequest {
                term: 5,
                last_index: 1,
                last_term: 1,
                candidate: "b".into(),
            },
        });
        assert!(acts.contains(&Action::ReplyVote {
            id: 7,
            resp: VoteResponse {
                term: 5,
                granted: false
            }
        }));
        assert_eq!(c.next_deadline(), deadline);
        c.step(Event::Tick(deadline));
        assert_eq!((c.role(), c.hard_state().term), (Role::Candidate, 6));
    }

    #[test]
    fn update_status_in_place_matches_status() {
        let mut c = Core::new(Config::new("n1", "http://h:1"), InitialState::default(), 0);
        let mut s = follower(&[1, 1]).status();
        c.update_status(&mut s);
        assert_eq!(s, c.status());
        c.step(Event::Bootstrap);
        c.step(Event::Persisted(2));
        c.update_status(&mut s);
        assert_eq!(s, c.status());
        assert_eq!(
            (s.role, s.commit, s.last_index, s.members.len()),
            (Role::Leader, 2, 2, 1)
        );
        assert_eq!(s.leader.as_deref(), Some("n1"));
    }

    #[test]
    fn log_terms_runs() {
        let mut l = LogTerms::new(10, 2);
        assert_eq!(
            (l.term_at(10), l.term_at(11), l.last_term()),
            (Some(2), None, 2)
        );
        for (i, t) in [(11, 2), (12, 3), (13, 3), (14, 5)] {
            l.push(i, t);
        }
        assert_eq!(
            (11..=14).map(|i| l.term_at(i).unwrap()).collect::<Vec<_>>(),
            [2, 3, 3, 5]
        );
        assert_eq!(l.term_at(9), None);
        l.truncate_after(12);
        assert_eq!(
            (l.last_index(), l.last_term(), l.term_at(13)),
            (12, 3, None)
        );
        l.truncate_after(3);
        assert_eq!((l.last_index(), l.is_empty()), (10, true));
    }

    #[test]
    fn bootstrap_is_term_zero_join_then_nop() {
        let mut c = Core::new(Config::new("n1", "http://h:1"), InitialState::default(), 0);
        let acts = c.step(Event::Bootstrap);
        let appended: Vec<(Index, Term, String)> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Append(es) => Some(es.iter().map(|e| (e.index, e.term, e.name.clone()))),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            appended,
            [
                (1, 0, "raft:join".to_string()),
                (2, 0, "raft:nop".to_string())
            ]
        );
        assert_eq!(c.role(), Role::Leader);
        // Nothing is committed before the log is durable.
        assert_eq!(c.commit_index(), 0);
        let acts = c.step(Event::Persisted(2));
        assert_eq!(acts, [Action::Commit(1), Action::Commit(2)]);
        assert_eq!(c.status().members.len(), 1);
    }

    #[test]
    fn empty_log_never_campaigns() {
        let mut c = Core::new(Config::new("n1", "http://h:1"), InitialState::default(), 0);
        assert!(c.step(Event::Tick(10_000)).is_empty());
        assert_eq!(c.role(), Role::Follower);
    }

    #[test]
    fn a_joined_node_that_applied_nothing_never_campaigns_alone() {
        let mut log = LogTerms::new(0, 0);
        for i in 1..=3 {
            log.push(i, 0);
        }
        let join = |n: &str| {
            ConfigChange::Join(Peer {
                name: n.into(),
                connection_string: format!("http://{n}"),
            })
        };
        let mut pending = BTreeMap::new();
        pending.insert(1, join("n1"));
        pending.insert(3, join("n2"));
        let init = InitialState {
            log: log.clone(),
            pending_config: pending,
            ..Default::default()
        };
        let mut c = Core::new(Config::new("n2", "http://n2"), init, 0);
        assert!(c.step(Event::Tick(10_000)).is_empty());
        assert_eq!(c.role(), Role::Follower);
        // A lone node whose conf was lost (only its own self-join in the log) does campaign.
        let mut pending = BTreeMap::new();
        pending.insert(1, join("n1"));
        let init = InitialState {
            log,
            pending_config: pending,
            ..Default::default()
        };
        let mut c = Core::new(Config::new("n1", "http://n1"), init, 0);
        c.step(Event::Tick(0));
        assert_eq!(c.role(), Role::Leader);
    }

    #[test]
    fn goraft_vote_rule() {
        // Mine: (index 3, term 2).
        for (li, lt, granted) in [(3, 2, true), (4, 2, true), (2, 3, false), (5, 1, false)] {
            let mut c = follower(&[1, 2, 2]);
            c.cfg.vote_rule = VoteRule::Goraft;
            let acts = c.step(Event::Vote {
                id: 7,
                req: VoteRequest {
                    term: 5,
                    last_index: li,
                    last_term: lt,
                    candidate: "b".into(),
                },
            });
            let save = Action::SaveHardState(HardState {
                term: 5,
                voted_for: None,
            });
            assert_eq!(acts[0], save);
            assert_eq!(
                acts.last(),
                Some(&Action::ReplyVote {
                    id: 7,
                    resp: VoteResponse { term: 5, granted }
                }),
                "{li}/{lt}"
            );
            if granted {
                assert_eq!(c.hard_state().voted_for.as_deref(), Some("b"));
            }
        }
    }

    #[test]
    fn the_paper_rule_breaks_goraft_s_stalemate() {
        // Mine: (index 10, term 1); the candidate's: (index 8, term 2).
        for (rule, granted) in [(VoteRule::Goraft, false), (VoteRule::Paper, true)] {
            let mut c = follower(&[1; 10]);
            c.cfg.vote_rule = rule;
            let acts = c.step(Event::Vote {
                id: 1,
                req: VoteRequest {
                    term: 3,
                    last_index: 8,
                    last_term: 2,
                    candidate: "b".into(),
                },
            });
            assert!(
                matches!(acts.last(), Some(Action::ReplyVote { resp, .. }) if resp.granted == granted),
                "{rule:?}"
            );
        }
    }

    #[test]
    fn goraft_s_votes_are_a_subset_of_the_paper_s() {
        // Every pair of log ends over small terms and indexes: what goraft's rule grants, the
        // paper's grants too, and the paper's grants some that goraft's refuses.
        let ends: Vec<(Term, Index)> = (0..4).flat_map(|t| (0..6).map(move |i| (t, i))).collect();
        let mut wider = 0;
        for &mine in &ends {
            for &theirs in &ends {
                let (g, p) = (
                    VoteRule::Goraft.up_to_date(mine, theirs),
                    VoteRule::Paper.up_to_date(mine, theirs),
                );
                assert!(!g || p, "mine {mine:?}, theirs {theirs:?}");
                wider += usize::from(p && !g);
            }
        }
        assert!(wider > 0);
        assert_eq!(VoteRule::default(), VoteRule::Paper);
    }

    #[test]
    fn one_vote_per_term() {
        let mut c = follower(&[1]);
        let vote = |c: &mut Core, who: &str| {
            c.step(Event::Vote {
                id: 1,
                req: VoteRequest {
                    term: 2,
                    last_index: 1,
                    last_term: 1,
                    candidate: who.into(),
                },
            })
        };
        assert!(
            matches!(vote(&mut c, "b").last(), Some(Action::ReplyVote { resp, .. }) if resp.granted)
        );
        assert!(
            matches!(vote(&mut c, "c").last(), Some(Action::ReplyVote { resp, .. }) if !resp.granted)
        );
        assert!(
            matches!(vote(&mut c, "b").last(), Some(Action::ReplyVote { resp, .. }) if resp.granted)
        );
    }

    #[test]
    fn conflicting_tail_is_truncated_not_holed() {
        let mut c = follower(&[1, 1, 1, 1]);
        let acts = c.step(Event::Append {
            id: 3,
            req: AppendRequest {
                term: 2,
                prev_index: 2,
                prev_term: 1,
                commit: 0,
                leader: "b".into(),
                entries: vec![entry(3, 1), entry(4, 2), entry(5, 2)],
            },
        });
        let kinds: Vec<String> = acts
            .iter()
            .map(|a| match a {
                Action::SaveHardState(h) => format!("save {}", h.term),
                Action::Truncate(i) => format!("truncate {i}"),
                Action::Append(es) => format!("append {}..{}", es[0].index, es[es.len() - 1].index),
                Action::ReplyAppend { resp, .. } => {
                    format!("reply {} {}", resp.index, resp.success)
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            ["save 2", "truncate 3", "append 4..5", "reply 5 true"]
        );
        assert_eq!(c.log().term_at(4), Some(2));
    }

    #[test]
    fn mismatched_prev_is_refused_with_last_index() {
        let mut c = follower(&[1, 1]);
        let acts = c.step(Event::Append {
            id: 3,
            req: AppendRequest {
                term: 1,
                prev_index: 2,
                prev_term: 2,
                commit: 0,
                leader: "b".into(),
                entries: vec![],
            },
        });
        assert_eq!(
            acts,
            [Action::ReplyAppend {
                id: 3,
                resp: AppendResponse {
                    term: 1,
                    index: 2,
                    commit: 0,
                    success: false
                }
            }]
        );
    }

    #[test]
    fn leader_commits_only_current_term_by_majority() {
        let mut c = follower(&[1, 1]);
        c.step(Event::Tick(1_000));
        assert_eq!(c.role(), Role::Candidate);
        let acts = c.step(Event::VoteResult {
            peer: "b".into(),
            term: 2,
            resp: Some(VoteResponse {
                term: 2,
                granted: true,
            }),
        });
        assert_eq!(c.role(), Role::Leader);
        // The nop at 3 went out to both peers at once.
        let sends: Vec<(String, Index, Index)> = acts
            .iter()
            .filter_map(|a| match a {
                Action::SendAppend {
                    to,
                    prev_index,
                    last,
                    ..
                } => Some((to.name.clone(), *prev_index, *last)),
                _ => None,
            })
            .collect();
        assert_eq!(sends, [("b".into(), 2, 3), ("c".into(), 2, 3)]);
        // The nop is not durable here yet, but no follower holds it either: the end of the
        // leader's fsync would change nothing now (its runtime need not be woken for it).
        assert!(!c.waits_on_own_log());
        let sent = SentAppend {
            term: 2,
            epoch: 0,
            round: 0,
            prev: 2,
            last: 3,
        };
        let ok = Some(AppendResponse {
            term: 2,
            index: 3,
            commit: 0,
            success: true,
        });
        // b has it but the leader's own log is not durable yet: b + nothing = 1 < 2? No: the
        // leader has persisted the old entries (1..2) only, so the quorum-th match is 2, of
        // term 1: not committed by counting.
        let acts = c.step(Event::AppendResult {
            peer: "b".into(),
            sent,
            resp: ok,
            raftdump: true,
        });
        assert!(!acts.iter().any(|a| matches!(a, Action::Commit(_))));
        // Now the commit waits for the leader's own fsync.
        assert!(c.waits_on_own_log());
        let acts = c.step(Event::Persisted(3));
        assert_eq!(acts.first(), Some(&Action::Commit(3)));
        assert!(!c.waits_on_own_log());
        // A follower's answers always wait for its fsync.
        assert!(follower(&[1, 1]).waits_on_own_log());
    }

    fn append_from(leader: &str, term: Term, prev: Index, prev_term: Term) -> Event {
        Event::Append {
            id: 9,
            req: AppendRequest {
                term,
                prev_index: prev,
                prev_term,
                commit: 0,
                leader: leader.into(),
                entries: vec![entry(prev + 1, term)],
            },
        }
    }

    #[test]
    fn rpcs_from_non_members_and_out_of_bound_terms_change_nothing() {
        let mut c = follower(&[1, 1]);
        let before = (c.hard_state().clone(), c.log().clone(), c.role());
        let forged = [
            append_from("evil", 2, 2, 1),
            append_from("a", 2, 2, 1),
            append_from("b", u64::MAX, 2, 1),
            append_from("b", 1 + MAX_TERM_STEP + 1, 2, 1),
            Event::Vote {
                id: 9,
                req: VoteRequest {
                    term: 5,
                    last_index: 9,
                    last_term: 5,
                    candidate: "evil".into(),
                },
            },
            Event::SnapshotOffer {
                id: 9,
                leader: "x".repeat(1000),
                last_index: 9,
                last_term: 1,
            },
        ];
        for e in forged {
            let acts = c.step(e);
            assert!(
                matches!(acts.as_slice(), [Action::Refuse { id: 9, reason }] if reason.to_string().len() < 300),
                "{acts:?}"
            );
        }
        assert_eq!((c.hard_state().clone(), c.log().clone(), c.role()), before);
        // A member within the bound is heard: exactly 2^32 up.
        let acts = c.step(append_from("b", 1 + MAX_TERM_STEP, 2, 1));
        assert!(acts
            .iter()
            .any(|a| matches!(a, Action::ReplyAppend { resp, .. } if resp.success)));
        assert_eq!(c.hard_state().term, 1 + MAX_TERM_STEP);
    }

    #[test]
    fn a_node_that_has_not_seen_its_own_join_hears_the_leader_it_joined() {
        let mut c = Core::new(Config::new("new", "http://new"), Default::default(), 0);
        assert!(c.knows("anyone"));
        let join = |n: &str, i: Index| Entry {
            index: i,
            term: 3,
            name: names::JOIN.into(),
            payload: Some(command::encode_join(n, &format!("http://{n}"))),
        };
        let ok = |acts: &[Action]| {
            acts.iter()
                .any(|a| matches!(a, Action::ReplyAppend { resp, .. } if resp.success))
        };
        // The start of the log (a partial first batch): still anyone.
        let mut first = append_from("leader", 3, 0, 0);
        if let Event::Append { req, .. } = &mut first {
            req.entries = vec![join("leader", 1)];
        }
        assert!(ok(&c.step(first)));
        assert!(c.knows("anyone"));
        // Once its own join is in its log, only members (or joins in its log) are known.
        let mut second = append_from("leader", 3, 1, 3);
        if let Event::Append { req, .. } = &mut second {
            req.entries = vec![join("new", 2)];
        }
        assert!(ok(&c.step(second)));
        assert!(!c.knows("anyone"));
        assert!(c.knows("leader") && c.knows("new"));
    }

    #[test]
    fn a_poisoned_term_never_wraps_and_never_campaigns() {
        let mut c = follower(&[1]);
        c.hs.term = u64::MAX - 1;
        c.step(Event::Tick(1_000_000));
        assert_eq!(
            (c.role(), c.hard_state().term),
            (Role::Follower, u64::MAX - 1)
        );
        // Answers with an impossible term are ignored, not adopted.
        let mut c = follower(&[1]);
        c.step(Event::Tick(1_000_000));
        assert_eq!(c.role(), Role::Candidate);
        let term = c.hard_state().term;
        c.step(Event::VoteResult {
            peer: "b".into(),
            term,
            resp: Some(VoteResponse {
                term: u64::MAX,
                granted: false,
            }),
        });
        assert_eq!((c.role(), c.hard_state().term), (Role::Candidate, term));
    }
}
