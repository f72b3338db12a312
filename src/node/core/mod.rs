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

pub use crate::format::batch::{EntryBatch, EntryRef};
use crate::format::command;
pub use crate::format::rpc::{
    AppendRequest, AppendResponse, ReceivedAppend, SnapshotInstall, VoteRequest, VoteResponse,
};
use crate::model::{names, term_in_bounds, term_is_poisoned, Index, Peer, Term, MAX_TERM_STEP};

use super::ratelog::RateLog;

mod proposals;
mod replication;
mod types;

/// The sites of the core's rate-limited log lines (level, target).
const WARN: (log::Level, &str) = (log::Level::Warn, module_path!());
const ERROR: (log::Level, &str) = (log::Level::Error, module_path!());

pub use types::*;

#[derive(Debug, Clone)]
struct Progress {
    next: Index,
    matched: Index,
    inflight: u32,
    epoch: u64,
    acked_round: u64,
    raftdump: bool,
    snapshot_inflight: bool,
    /// When the peer last answered an AppendEntries (any answer).
    heard_at: Option<Millis>,
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
    /// Log lines that can repeat per request (refused RPCs, refused AppendEntries), timed by
    /// `now`.
    ratelog: RateLog,
    /// The last member whose join this node applied, and the join's index.
    last_join: Option<(String, Index)>,
    /// The index of the applied `raft:leave` that removed this node.
    removed_at: Option<Index>,
    stuck_logged: bool,
    out: Vec<Action>,
}

/// How long a leader waits before telling idle followers about a new commit index.
const COMMIT_NOTIFY_MS: Millis = 5;

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
            ratelog: RateLog::default(),
            last_join: None,
            removed_at: None,
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

    /// Logs a refusal, rate-limited per sender (a flood of forged requests logs a line every
    /// few seconds, see [`RateLog`]).
    fn log_refusal(&mut self, reason: &Refusal) {
        let from = match reason {
            Refusal::NotMember(n) | Refusal::TermOutOfBounds { from: n, .. } => n,
        };
        let key = format!("refusal {from}");
        self.ratelog.log(self.now, WARN, &key, || {
            format!("refused a Raft RPC: {reason}")
        });
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
            Event::Remove { id, name, force } => self.remove(id, name, force),
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
            Event::Compacted { index, term } => {
                if index <= self.commit && self.log.term_at(index) == Some(term) {
                    self.log.compact_to(index, term);
                }
            }
            Event::SnapshotResult {
                peer,
                last_index,
                ok,
            } => {
                let start = self.log.start_index;
                if let Some(p) = self.progress.get_mut(&peer) {
                    p.snapshot_inflight = false;
                    if !ok {
                        // A peer that restarted knows no leader and refuses snapshots until
                        // it hears one: the next round probes it with an AppendEntries from
                        // the snapshot point, its refusal names the leader and its last index,
                        // and the snapshot follows.
                        p.next = p.next.max(start.saturating_add(1));
                    }
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
        self.ratelog.flush(self.now);
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
        let mut entry = EntryBatch::new();
        entry.push(index, term, &name, payload.as_deref());
        self.out.push(Action::Append(entry));
        self.replicate_pending = true;
        index
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
            heard_at: None,
        }
    }
}

#[cfg(test)]
mod tests;
