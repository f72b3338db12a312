//! A deterministic simulator: N cores over [`MemStore`]s and an in-memory network with seeded
//! delays, drops, partitions and crashes, on a simulated clock. The same seed replays the same
//! run, so a failing seed reproduces from its number.
//!
//! It carries out the core's actions exactly as the runtime does (hard state first, replies
//! held until the log is synced, commit applied to [`Kv`]). With [`SimConfig::fsync_delay`] the
//! fsync completes later, as the runtime's pipelined group commit does, and a crash drops what
//! was not synced yet ([`MemStore::crash`]).
//!
//! It checks safety as it goes, on every event it carries out:
//! - at most one leader per term;
//! - Log Matching: every `(index, term)` ever appended on any node names one entry with one
//!   previous term (so two logs with the same index and term hold the same entry and, by
//!   induction, the same prefix);
//! - committed entries are never lost or changed: every entry any node applies is recorded, and
//!   every later application (any node, after any crash) must equal it; a node never truncates
//!   what it applied; a new leader holds every recorded entry; after a crash a majority still
//!   holds every recorded entry durably.
//!
//! [`super::chaos`] drives it with random writes, reads, crashes, restarts, partitions and
//! network changes for one seed, and judges whether the cluster recovers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::core::{
    Action, AppendRequest, AppendResponse, Config, Core, EntryBatch, Event, Millis, Rejection,
    RequestId, Role, SentAppend, SnapshotInstall, VoteRequest, VoteResponse, XorShift,
};
mod effects;

use super::exec;
use super::storage::{MemStore, Storage};
use super::transport::{MemTransport, Outbound};
use crate::format::command;
use crate::model::{names, Entry, Index, Peer, Snapshot, Term};
use crate::replay::kv::Kv;
use effects::NodeFx;

/// Network and timing parameters of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed: everything random derives from it.
    pub seed: u64,
    /// Smallest one-way delay (ms).
    pub min_delay: Millis,
    /// Largest one-way delay (ms).
    pub max_delay: Millis,
    /// Messages dropped, per thousand.
    pub drop_per_mille: u64,
    /// Most entries per AppendEntries.
    pub max_batch_entries: u64,
    /// Most AppendEntries in flight per peer (the simulated network may reorder them).
    pub max_inflight: u32,
    /// The up-to-date check of votes.
    pub vote_rule: super::core::VoteRule,
    /// Messages delivered twice, per thousand.
    pub dup_per_mille: u64,
    /// How long an fsync takes (ms, a range); `(0, 0)` syncs at once after every event.
    pub fsync_delay: (Millis, Millis),
}

impl SimConfig {
    /// A lossless network with 1-5 ms delays.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            min_delay: 1,
            max_delay: 5,
            drop_per_mille: 0,
            max_batch_entries: 1000,
            max_inflight: 1,
            vote_rule: super::core::VoteRule::default(),
            dup_per_mille: 0,
            fsync_delay: (0, 0),
        }
    }
}

#[derive(Debug, Clone)]
enum Packet {
    AppendReq {
        from: usize,
        to: usize,
        req: AppendRequest,
        sent: SentAppend,
    },
    AppendResp {
        from: usize,
        to: usize,
        sent: SentAppend,
        resp: AppendResponse,
    },
    VoteReq {
        from: usize,
        to: usize,
        req: VoteRequest,
    },
    VoteResp {
        from: usize,
        to: usize,
        term: Term,
        resp: VoteResponse,
    },
    Snapshot {
        from: usize,
        to: usize,
        install: SnapshotInstall,
    },
    SnapshotResp {
        from: usize,
        to: usize,
        last_index: Index,
        ok: bool,
    },
    /// The transport gave up on an AppendEntries (lost request or answer): `to` hears `None`.
    Lost {
        peer: usize,
        to: usize,
        sent: SentAppend,
    },
    /// A node's fsync completes (ignored if the node crashed since: another incarnation).
    Fsync { node: usize, incarnation: u64 },
}

/// How long the simulated transport waits before reporting a lost AppendEntries (goraft: 200).
const RPC_TIMEOUT: Millis = 200;

impl Packet {
    fn ends(&self) -> (usize, usize) {
        match *self {
            Packet::AppendReq { from, to, .. }
            | Packet::AppendResp { from, to, .. }
            | Packet::VoteReq { from, to, .. }
            | Packet::VoteResp { from, to, .. }
            | Packet::Snapshot { from, to, .. }
            | Packet::SnapshotResp { from, to, .. } => (from, to),
            Packet::Lost { to, .. } => (to, to),
            Packet::Fsync { node, .. } => (node, node),
        }
    }

    /// For a lost AppendEntries request or answer: who waits for it, on which peer, and what.
    fn waiter(&self) -> Option<(usize, usize, SentAppend)> {
        match *self {
            Packet::AppendReq { from, to, sent, .. } => Some((from, to, sent)),
            Packet::AppendResp { from, to, sent, .. } => Some((to, from, sent)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Pending {
    Append { from: usize, sent: SentAppend },
    Vote { from: usize, term: Term },
    Snapshot { from: usize, last_index: Index },
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// Its name (`n1`, `n2`, ...).
    pub name: String,
    /// The Raft core.
    pub core: Core,
    /// Its storage (survives crashes).
    pub store: MemStore,
    /// Its state machine.
    pub kv: Kv,
    /// Whether it is running.
    pub up: bool,
    /// Proposal results by id.
    pub proposals: BTreeMap<RequestId, Result<Index, Rejection>>,
    /// Read results by id (the read index, after the state machine applied it).
    pub reads: BTreeMap<RequestId, Result<Index, Rejection>>,
    /// Its in-memory transport (drained onto the simulated network).
    pub transport: MemTransport,
    pending: BTreeMap<RequestId, Pending>,
    /// Replies held until the next fsync completes.
    awaiting: Vec<Packet>,
    /// Writes not yet synced (an fsync is scheduled).
    unsynced: bool,
    /// Bumped at every crash.
    pub incarnation: u64,
}

impl SimNode {
    fn new(name: String, core: Core) -> Self {
        SimNode {
            core,
            name,
            store: MemStore::new(),
            kv: Kv::new(),
            up: true,
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            transport: MemTransport::new(),
            pending: BTreeMap::new(),
            awaiting: Vec::new(),
            unsynced: false,
            incarnation: 0,
        }
    }
}

/// What the safety checker recorded.
#[derive(Debug, Default)]
pub struct Checked {
    /// Every entry some node applied, by index.
    pub committed: BTreeMap<Index, Entry>,
    /// Every `(index, term)` appended anywhere: the previous entry's term and the entry.
    seen: HashMap<(Index, Term), (Term, Entry)>,
    /// Events carried out (each followed by the checks).
    pub events: u64,
    /// Entries appended (each checked against Log Matching).
    pub appends: u64,
    /// Unsynced entries crashes dropped.
    pub lost_unsynced: u64,
}

/// The simulated cluster.
#[derive(Debug)]
pub struct Sim {
    /// The simulated clock.
    pub now: Millis,
    /// The nodes, by position.
    pub nodes: Vec<SimNode>,
    cfg: SimConfig,
    rng: XorShift,
    queue: BTreeMap<(Millis, u64), Packet>,
    seq: u64,
    next_id: RequestId,
    blocked: BTreeSet<(usize, usize)>,
    leaders: BTreeMap<Term, String>,
    /// The safety checker's record.
    pub checked: Checked,
}

fn node_config(name: &str, seed: u64, cfg: &SimConfig) -> Config {
    let mut c = Config::new(name, format!("mem://{name}"));
    c.seed = seed;
    c.max_batch_entries = cfg.max_batch_entries;
    c.max_inflight = cfg.max_inflight;
    c.vote_rule = cfg.vote_rule;
    c
}

impl Sim {
    /// `n` empty nodes named `n1..`; nothing is bootstrapped.
    pub fn new(cfg: SimConfig, n: usize) -> Self {
        let mut rng = XorShift::new(cfg.seed);
        let nodes = (1..=n)
            .map(|i| {
                let name = format!("n{i}");
                let c = node_config(&name, rng.next_u64(), &cfg);
                SimNode::new(name, Core::new(c, Default::default(), 0))
            })
            .collect();
        Sim {
            now: 0,
            nodes,
            cfg,
            rng,
            queue: BTreeMap::new(),
            seq: 0,
            next_id: 1,
            blocked: BTreeSet::new(),
            leaders: BTreeMap::new(),
            checked: Checked::default(),
        }
    }

    /// A cluster of `n` nodes built like raftd: n1 bootstraps, the others join one at a time.
    pub fn cluster(cfg: SimConfig, n: usize) -> Self {
        let mut sim = Sim::new(cfg, n);
        sim.step(0, Event::Bootstrap);
        for i in 1..n {
            let name = sim.nodes[i].name.clone();
            let ok = sim.join(0, &name);
            assert!(matches!(ok, Some(Ok(_))), "join of {name}: {ok:?}");
        }
        sim
    }

    /// Proposes the join of `name` (at `mem://name`) to node `i`, retried as `serve --join`
    /// retries a 503 while the leader refuses it for now (a change in progress, a joiner not
    /// caught up, too few members heard from); its outcome.
    pub fn join(&mut self, i: usize, name: &str) -> Option<Result<Index, Rejection>> {
        let payload = command::encode_join(name, &format!("mem://{name}"));
        for _ in 0..50 {
            let id = self.propose(i, names::JOIN, Some(payload.clone()));
            let ok = self.run_until_done(i, id, 5_000);
            if !matches!(
                ok,
                Some(Err(Rejection::Unsafe(_) | Rejection::ConfigChangePending))
            ) {
                return ok;
            }
            self.run_for(100);
        }
        None
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    fn lose(&mut self, p: &Packet) {
        if let Some((waiter, peer, sent)) = p.waiter() {
            self.report_lost(waiter, peer, sent);
        }
    }

    /// `waiter` hears, after the transport's timeout, that its AppendEntries `sent` to `peer`
    /// got no answer (as the runtime's transport reports every request it cannot complete).
    fn report_lost(&mut self, waiter: usize, peer: usize, sent: SentAppend) {
        self.seq += 1;
        let lost = Packet::Lost {
            peer,
            to: waiter,
            sent,
        };
        self.queue.insert((self.now + RPC_TIMEOUT, self.seq), lost);
    }

    fn send(&mut self, p: Packet) {
        let (from, to) = p.ends();
        if self.blocked.contains(&(from, to)) || self.rng.range(0, 1000) < self.cfg.drop_per_mille {
            self.lose(&p);
            return;
        }
        if self.cfg.dup_per_mille > 0 && self.rng.range(0, 1000) < self.cfg.dup_per_mille {
            let at = self.now + self.rng.range(self.cfg.min_delay, self.cfg.max_delay + 1);
            self.seq += 1;
            self.queue.insert((at, self.seq), p.clone());
        }
        let at = self.now + self.rng.range(self.cfg.min_delay, self.cfg.max_delay + 1);
        self.seq += 1;
        self.queue.insert((at, self.seq), p);
    }

    /// Proposes a command on node `i`; returns the proposal id.
    pub fn propose(&mut self, i: usize, name: &str, payload: Option<Vec<u8>>) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.step(
            i,
            Event::Propose {
                id,
                name: name.to_string(),
                payload,
            },
        );
        id
    }

    /// Proposes raftd's `write key=value` on node `i`.
    pub fn write(&mut self, i: usize, key: &str, value: &str) -> RequestId {
        self.propose(
            i,
            names::WRITE,
            Some(command::encode_write(key.as_bytes(), value.as_bytes())),
        )
    }

    /// Asks node `i` for a linearizable read; returns its id.
    pub fn read(&mut self, i: usize) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.step(i, Event::Read { id });
        id
    }

    /// Feeds one event to node `i` and carries out what it returns.
    pub fn step(&mut self, i: usize, event: Event) {
        if !self.nodes[i].up {
            return;
        }
        // Time only enters the core through Tick: every event is preceded by the clock.
        let now = self.now;
        let actions = self.nodes[i].core.step_many([Event::Tick(now), event]);
        self.exec(i, actions);
    }

    /// Carries out node `i`'s actions with the runtime's executor, then checks the cluster's
    /// safety and either syncs at once or schedules the fsync.
    fn exec(&mut self, i: usize, actions: Vec<Action>) {
        let mut fx = NodeFx {
            sim: self,
            i,
            held: Vec::new(),
            wrote: false,
        };
        exec::execute(&mut fx, actions).expect("memory");
        let NodeFx { held, wrote, .. } = fx;
        self.checked.events += 1;
        let node = &self.nodes[i];
        if node.core.role() == Role::Leader {
            let s = node.core.status();
            let mut new_leader = false;
            let prev = self.leaders.entry(s.term).or_insert_with(|| {
                new_leader = true;
                s.name.clone()
            });
            assert_eq!(
                *prev, s.name,
                "seed {}: two leaders in term {}",
                self.cfg.seed, s.term
            );
            if new_leader {
                self.check_leader_completeness(i);
            }
        }
        if wrote {
            if self.cfg.fsync_delay.1 == 0 {
                let last = self.nodes[i].store.sync().expect("memory");
                let more = self.nodes[i].core.step(Event::Persisted(last));
                self.exec(i, more);
            } else if !self.nodes[i].unsynced {
                self.nodes[i].unsynced = true;
                let (lo, hi) = self.cfg.fsync_delay;
                let at = self.now + self.rng.range(lo, hi + 1);
                self.seq += 1;
                let incarnation = self.nodes[i].incarnation;
                self.queue.insert(
                    (at, self.seq),
                    Packet::Fsync {
                        node: i,
                        incarnation,
                    },
                );
            }
        }
        if self.nodes[i].unsynced {
            // Every reply waits for the fsync that covers the writes before it.
            self.nodes[i].awaiting.extend(held);
        } else {
            for p in held {
                self.send(p);
            }
        }
    }

    /// A leader's log holds every entry recorded as committed (the Leader Completeness
    /// property, checked when a node starts leading a term).
    fn check_leader_completeness(&self, i: usize) {
        let node = &self.nodes[i];
        let terms = node.store.terms();
        for (idx, e) in self.checked.committed.range(terms.start_index + 1..) {
            assert_eq!(
                terms.term_at(*idx),
                Some(e.term),
                "seed {}: {} leads term {} without committed entry {idx} (term {})",
                self.cfg.seed,
                node.name,
                node.core.hard_state().term,
                e.term
            );
        }
    }

    /// Every recorded committed entry is durable on enough nodes that every majority includes
    /// one of them (checked after every crash). With an even count that is half of them: goraft
    /// applies a join when it commits, so the join of the 4th node commits on 2 of the 3.
    fn check_durable_majority(&self) {
        let n = self.nodes.len();
        for (idx, e) in &self.checked.committed {
            let holders = self
                .nodes
                .iter()
                .filter(|node| {
                    let d = node.store.durable_terms();
                    d.start_index >= *idx || d.term_at(*idx) == Some(e.term)
                })
                .count();
            // Every majority (n / 2 + 1 nodes) must include a holder.
            let lost = holders + n / 2 < n;
            if lost {
                for node in &self.nodes {
                    eprintln!(
                        "{} up={} durable={:?} log={:?} applied={}",
                        node.name,
                        node.up,
                        node.store.durable_terms(),
                        node.store.terms(),
                        node.kv.applied
                    );
                }
            }
            assert!(
                !lost,
                "seed {}: committed entry {idx} (term {}) is durable on {holders} of {n} nodes",
                self.cfg.seed, e.term
            );
        }
    }

    /// Moves what node `i` sent through its [`MemTransport`] onto the simulated network.
    fn flush_outbox(&mut self, i: usize) {
        for msg in self.nodes[i].transport.drain() {
            let packet = match msg {
                Outbound::Append { to, req, sent } => {
                    self.index_of(&to.name).map(|t| Packet::AppendReq {
                        from: i,
                        to: t,
                        req,
                        sent,
                    })
                }
                Outbound::Vote { to, req } => self.index_of(&to.name).map(|t| Packet::VoteReq {
                    from: i,
                    to: t,
                    req,
                }),
                Outbound::Snapshot { to, install } => {
                    self.index_of(&to.name).map(|t| Packet::Snapshot {
                        from: i,
                        to: t,
                        install,
                    })
                }
            };
            if let Some(p) = packet {
                self.send(p);
            }
        }
    }

    fn deliver(&mut self, p: Packet) {
        let (_, to) = p.ends();
        if !self.nodes[to].up {
            self.lose(&p);
            return;
        }
        if let Packet::Fsync { node, incarnation } = p {
            if self.nodes[node].incarnation == incarnation && self.nodes[node].unsynced {
                self.nodes[node].unsynced = false;
                let last = self.nodes[node].store.sync().expect("memory");
                for p in std::mem::take(&mut self.nodes[node].awaiting) {
                    self.send(p);
                }
                self.step(node, Event::Persisted(last));
            }
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        match p {
            Packet::AppendReq {
                from, req, sent, ..
            } => {
                self.nodes[to]
                    .pending
                    .insert(id, Pending::Append { from, sent });
                self.step(
                    to,
                    Event::Append {
                        id,
                        req: req.into(),
                    },
                );
            }
            Packet::AppendResp {
                from, sent, resp, ..
            } => {
                let peer = self.nodes[from].name.clone();
                self.step(
                    to,
                    Event::AppendResult {
                        peer,
                        sent,
                        resp: Some(resp),
                        raftdump: true,
                    },
                );
            }
            Packet::VoteReq { from, req, .. } => {
                let term = req.term;
                self.nodes[to]
                    .pending
                    .insert(id, Pending::Vote { from, term });
                self.step(to, Event::Vote { id, req });
            }
            Packet::VoteResp {
                from, term, resp, ..
            } => {
                let peer = self.nodes[from].name.clone();
                self.step(
                    to,
                    Event::VoteResult {
                        peer,
                        term,
                        resp: Some(resp),
                    },
                );
            }
            Packet::Snapshot { from, install, .. } => {
                let last_index = install.last_index;
                self.nodes[to]
                    .pending
                    .insert(id, Pending::Snapshot { from, last_index });
                self.step(
                    to,
                    Event::SnapshotOffer {
                        id,
                        leader: install.leader.clone(),
                        last_index,
                        last_term: install.last_term,
                    },
                );
                if self.nodes[to].pending.contains_key(&id) {
                    self.step(to, Event::SnapshotInstall { id, req: install });
                }
            }
            Packet::Lost { peer, sent, .. } => {
                let peer = self.nodes[peer].name.clone();
                self.step(
                    to,
                    Event::AppendResult {
                        peer,
                        sent,
                        resp: None,
                        raftdump: false,
                    },
                );
            }
            Packet::Fsync { .. } => {}
            Packet::SnapshotResp {
                from,
                last_index,
                ok,
                ..
            } => {
                let peer = self.nodes[from].name.clone();
                self.step(
                    to,
                    Event::SnapshotResult {
                        peer,
                        last_index,
                        ok,
                    },
                );
            }
        }
    }

    /// Runs the simulation up to time `until`.
    pub fn run_until(&mut self, until: Millis) {
        // Bounded: simulated time must advance (a core that wants a tick in the past forever
        // would spin).
        let mut spins = 0u64;
        loop {
            spins += 1;
            assert!(
                spins < 50_000_000,
                "seed {}: the simulation does not advance at t={}",
                self.cfg.seed,
                self.now
            );
            let next_packet = self.queue.keys().next().map(|k| k.0);
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .map(|n| n.core.next_deadline())
                .min();
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(Millis::MAX),
            }
            .max(self.now);
            // Nothing pending (every node down, nothing in flight) or not before `until`.
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
            while let Some(entry) = self.queue.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let p = entry.remove();
                self.deliver(p);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].up && self.nodes[i].core.next_deadline() <= self.now {
                    let now = self.now;
                    self.step(i, Event::Tick(now));
                }
            }
        }
    }

    /// Runs `ms` more milliseconds.
    pub fn run_for(&mut self, ms: Millis) {
        let t = self.now + ms;
        self.run_until(t);
    }

    /// Runs until node `i` has a result for proposal `id`, at most `ms` milliseconds.
    pub fn run_until_done(
        &mut self,
        i: usize,
        id: RequestId,
        ms: Millis,
    ) -> Option<Result<Index, Rejection>> {
        let deadline = self.now + ms;
        while self.now < deadline {
            if let Some(r) = self.nodes[i].proposals.get(&id) {
                return Some(r.clone());
            }
            self.run_for(1);
        }
        self.nodes[i].proposals.get(&id).cloned()
    }

    /// The position of the current leader that every live node agrees on, if any.
    pub fn leader(&self) -> Option<usize> {
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up && self.nodes[i].core.role() == Role::Leader)
            .collect();
        let top = leaders
            .iter()
            .max_by_key(|&&i| self.nodes[i].core.hard_state().term)?;
        Some(*top)
    }

    /// Runs until some node leads (at most `ms`), returning it.
    pub fn await_leader(&mut self, ms: Millis) -> Option<usize> {
        let deadline = self.now + ms;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if self.now >= deadline {
                return None;
            }
            self.run_for(5);
        }
    }

    /// Changes the network: drops per thousand and the one-way delay range.
    pub fn set_network(&mut self, drop_per_mille: u64, min_delay: Millis, max_delay: Millis) {
        self.cfg.drop_per_mille = drop_per_mille;
        self.cfg.min_delay = min_delay;
        self.cfg.max_delay = max_delay;
    }

    /// Changes how many messages are delivered twice, per thousand.
    pub fn set_duplicates(&mut self, per_mille: u64) {
        self.cfg.dup_per_mille = per_mille;
    }

    /// Changes how long an fsync takes (ms, a range); `(0, 0)` syncs at once after every event.
    pub fn set_fsync_delay(&mut self, range: (Millis, Millis)) {
        self.cfg.fsync_delay = range;
    }

    /// The vote rule every node of this simulation runs.
    pub fn vote_rule(&self) -> super::core::VoteRule {
        self.cfg.vote_rule
    }

    /// How many distinct terms had a leader so far.
    pub fn leader_terms(&self) -> u64 {
        self.leaders.len() as u64
    }

    /// Cuts node `i` off from every other node, both ways.
    pub fn isolate(&mut self, i: usize) {
        for j in 0..self.nodes.len() {
            if j != i {
                self.blocked.insert((i, j));
                self.blocked.insert((j, i));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Cuts the nodes in `group` off from the others, both ways.
    pub fn partition(&mut self, group: &[usize]) {
        for a in 0..self.nodes.len() {
            for b in 0..self.nodes.len() {
                if group.contains(&a) != group.contains(&b) {
                    self.blocked.insert((a, b));
                }
            }
        }
    }

    /// Stops node `i`: volatile state is lost, and so is every log write not yet synced (a
    /// random prefix of the unsynced appends may survive, as on a disk).
    pub fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.up = false;
        let pending = std::mem::take(&mut node.pending);
        let awaiting = std::mem::take(&mut node.awaiting);
        node.unsynced = false;
        node.incarnation += 1;
        let (_, extra) = node.store.unsynced();
        let keep = if extra > 0 {
            self.rng.range(0, extra as u64 + 1) as usize
        } else {
            0
        };
        let lost = self.nodes[i].store.crash(keep);
        self.checked.lost_unsynced += lost as u64;
        // The requests it was answering die with it: their senders' transports time out.
        for p in pending.into_values() {
            if let Pending::Append { from, sent } = p {
                self.report_lost(from, i, sent);
            }
        }
        for p in &awaiting {
            self.lose(p);
        }
        self.check_durable_majority();
    }

    /// Restarts node `i` from its storage, as a process restart would.
    pub fn restart(&mut self, i: usize) {
        let seed = self.rng.next_u64();
        let node = &mut self.nodes[i];
        let conf_commit = node.store.conf.as_ref().map_or(0, |c| c.commit_index);
        let terms = node.store.terms().clone();
        let mut config = Vec::new();
        if terms.last_index() > terms.start_index {
            for e in node
                .store
                .entries(terms.start_index + 1, terms.last_index())
                .expect("memory")
            {
                if let Some(c) = super::core::ConfigChange::of(&e.name, e.payload.as_deref()) {
                    config.push((e.index, c));
                }
            }
        }
        let (kv, init) =
            exec::startup(&mut node.store, conf_commit, config, &node.name).expect("memory");
        node.kv = kv;
        node.core = Core::new(node_config(&node.name, seed, &self.cfg), init, self.now);
        node.up = true;
        node.proposals.clear();
        node.reads.clear();
    }

    /// Adds an empty node (not yet a member) and returns its position.
    pub fn add_node(&mut self) -> usize {
        let name = format!("n{}", self.nodes.len() + 1);
        let c = node_config(&name, self.rng.next_u64(), &self.cfg);
        self.nodes.push(SimNode::new(
            name,
            Core::new(c, Default::default(), self.now),
        ));
        self.nodes.len() - 1
    }

    /// Gives node `i` a snapshot at its commit point and an empty log after it, as goraft's
    /// compaction would leave it, and restarts it (used to test snapshot install).
    pub fn compact(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let commit = node.kv.applied;
        let term = node.store.terms().term_at(commit).unwrap_or(0);
        let snap = Snapshot {
            last_index: commit,
            last_term: term,
            peers: Some(node.kv.peers()),
            state: Some(exec::snapshot_state(&node.kv)),
            path: String::new(),
        };
        let rest = if node.store.terms().last_index() > commit {
            node.store
                .entries(commit + 1, node.store.terms().last_index())
                .expect("memory")
        } else {
            Vec::new()
        };
        let conf = exec::conf_of(&node.kv, &node.name, commit);
        node.store.install_snapshot(snap, &conf).expect("memory");
        node.store
            .append(&EntryBatch::from_entries(&rest))
            .expect("memory");
        node.store.sync().expect("memory");
        // The core learns the new log shape at start-up, as after goraft's compaction.
        self.crash(i);
        self.restart(i);
    }

    /// The value of `key` on node `i`'s state machine.
    pub fn get(&self, i: usize, key: &str) -> Option<String> {
        self.nodes[i].kv.get(key).map(str::to_string)
    }

    /// The members node `i` knows, as peers.
    pub fn members(&self, i: usize) -> Vec<Peer> {
        self.nodes[i].kv.peers()
    }
}
