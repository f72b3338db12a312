//! The runtime: one thread that owns the core, the file store and the state machine, drains
//! inputs in batches and carries out the core's actions with group commit (see the diagram in
//! `node/mod.rs`). Also the read-only node, which serves a data dir's state at an index
//! without writing anything.
//!
//! It must not decide anything Raft decides (that is `core`), nor speak HTTP (that is `http`
//! and `transport`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::core::{
    Action, AppendResponse, Config, ConfigChange, Core, Event, InitialState, Millis, Refusal,
    Rejection, RequestId, Role, Status, VoteResponse,
};
use super::exec;

mod snapshots;
use super::storage::{FileStore, Storage, StoreError};
use super::transport::{self, HttpTransport, Outbound, Timeouts, Transport};
use crate::format::log::LogReader;
use crate::model::{Index, Term};
use crate::replay::kv::Kv;

/// How to run a node.
#[derive(Debug, Clone)]
pub struct Options {
    /// The data dir (it must exist and hold the `name` file or be new).
    pub dir: PathBuf,
    /// The node name.
    pub name: String,
    /// The advertised URL.
    pub connection_string: String,
    /// Heartbeat interval (ms).
    pub heartbeat_ms: Millis,
    /// Election timeout T (ms): waits are uniform in `[T, 2T)`.
    pub election_timeout_ms: Millis,
    /// Seed of the election randomness.
    pub seed: u64,
    /// Start a new cluster (self-join + nop in term 0) when the log is empty.
    pub bootstrap: bool,
    /// Peer RPC timeouts.
    pub timeouts: Timeouts,
    /// The up-to-date check for votes.
    pub vote_rule: super::core::VoteRule,
    /// See [`super::core::Config::strict_reconfig`].
    pub strict_reconfig: bool,
    /// The cluster token sent with every RPC (see [`super::security`]).
    pub token: Option<String>,
    /// Take a snapshot and compact the log after this many applied entries (see
    /// [`super::compaction`]).
    pub snapshot_every: Option<u64>,
}

/// An answer from the runtime to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// AppendEntries answer.
    Append(AppendResponse),
    /// RequestVote answer.
    Vote(VoteResponse),
    /// SnapshotRequest answer (`None`: goraft's 500).
    SnapshotOffer(Option<bool>),
    /// SnapshotRecoveryRequest answer `(term, success, commit)` (`None`: goraft's 500).
    SnapshotInstall(Option<(Term, bool, Index)>),
    /// A proposal's fate.
    Proposal(Result<Index, Rejection>),
    /// A read barrier's fate.
    Read(Result<Index, Rejection>),
    /// An RPC refused unread: its sender is not a member, or its term is out of bounds.
    Refused(Refusal),
}

/// Why a call got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// No answer in time (a write may still commit later).
    Timeout,
    /// The runtime has stopped.
    Stopped,
}

/// Called once with the answer to an asynchronous call (on the runtime thread: keep it short;
/// it may write a small answer on a socket, never wait for another thread).
pub type Callback = Box<dyn FnOnce(Result<Reply, CallError>) + Send>;

/// Who waits for an answer.
enum Waiter {
    /// A blocked thread.
    Chan(Sender<Reply>),
    /// A callback, answered with `Timeout` after its deadline.
    Cb(Callback),
}

impl Waiter {
    fn answer(self, r: Result<Reply, CallError>) {
        match (self, r) {
            (Waiter::Chan(tx), Ok(reply)) => {
                let _ = tx.send(reply);
            }
            (Waiter::Chan(_), Err(_)) => {}
            (Waiter::Cb(cb), r) => cb(r),
        }
    }
}

enum Input {
    Event(Event),
    Call(Event, Sender<Reply>),
    /// An asynchronous call: the callback gets the answer, or `Timeout` at the instant given.
    CallAsync(Event, Callback, Instant),
    /// The fsync thread finished request `id`.
    Synced(u64, Result<(), String>),
    /// Asynchronous calls are queued in [`Shared::calls`].
    Wake,
    /// The background part of a snapshot ended.
    Snapshot(Result<super::compaction::Prepared, StoreError>),
    Stop,
}

/// State the runtime publishes for the HTTP threads.
pub struct Shared {
    /// The state machine.
    pub kv: RwLock<Kv>,
    status: Mutex<Status>,
    failure: Mutex<Option<String>>,
    /// Asynchronous calls (writes, a follower's AppendEntries), taken by the runtime at the
    /// top of every loop. They wake it only when it rings the doorbell: a leader whose peers
    /// all have an AppendEntries in flight takes new writes when the next answer wakes it
    /// (they could not go out sooner), one wake-up per round instead of one per write.
    calls: Mutex<Vec<Input>>,
    /// Set by the runtime when a queued call should wake it.
    doorbell: AtomicBool,
    /// The runtime has stopped: queued calls are answered `Stopped` by whoever sees them.
    stopped: AtomicBool,
    /// Called after every loop in which asynchronous calls were answered.
    batch_done: std::sync::OnceLock<BatchHook>,
}

/// What [`Handle::on_batch_done`] registers.
pub type BatchHook = Box<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("kv", &self.kv)
            .field("status", &self.status)
            .field("failure", &self.failure)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn take_calls(&self) -> Vec<Input> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Answers `Stopped` to every queued call.
    fn abandon_calls(&self) {
        for input in self.take_calls() {
            if let Input::CallAsync(_, cb, _) = input {
                cb(Err(CallError::Stopped));
            }
        }
    }
}

/// A cheap, cloneable way to talk to a running node.
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Input>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
}

impl Handle {
    /// Sends the event `make(id)` and waits for its reply.
    pub fn call(
        &self,
        make: impl FnOnce(RequestId) -> Event,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Input::Call(make(id), tx))
            .map_err(|_| CallError::Stopped)?;
        rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => CallError::Timeout,
            RecvTimeoutError::Disconnected => CallError::Stopped,
        })
    }

    /// Sends the event `make(id)`; `done` is called with its answer, or with `Timeout` after
    /// `timeout`, or `Stopped`. It runs on the runtime thread: it must not block.
    pub fn call_async(
        &self,
        make: impl FnOnce(RequestId) -> Event,
        timeout: Duration,
        done: Callback,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let input = Input::CallAsync(make(id), done, Instant::now() + timeout);
        let sh = &self.shared;
        sh.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(input);
        if sh.doorbell.swap(false, Ordering::SeqCst) && self.tx.send(Input::Wake).is_err() {
            sh.stopped.store(true, Ordering::SeqCst);
        }
        if sh.stopped.load(Ordering::SeqCst) {
            sh.abandon_calls();
        }
    }

    /// Registers `f`, called on the runtime thread after each batch of asynchronous calls it
    /// answered (the callbacks ran just before): their receiver can hand them on in one go.
    /// Only one hook can be registered; returns whether this one was.
    pub fn on_batch_done(&self, f: BatchHook) -> bool {
        self.shared.batch_done.set(f).is_ok()
    }

    /// The core's public state, as of the last batch.
    pub fn status(&self) -> Status {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The state machine, for reading.
    pub fn kv(&self) -> RwLockReadGuard<'_, Kv> {
        self.shared.kv.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the runtime stopped, if it failed.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().ok().and_then(|f| f.clone())
    }
}

/// What start-up found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartReport {
    /// The log's last index.
    pub last_index: Index,
    /// The snapshot point (0 without one).
    pub start_index: Index,
    /// The index known committed at start (applied at once).
    pub commit: Index,
    /// Whether the log was empty.
    pub empty: bool,
    /// Whether this node is a member by its files: the snapshot's members and every
    /// membership entry of the log, committed or not, include its name (its own `raft:join` is
    /// there).
    pub member: bool,
    /// A torn tail cut at start-up: (bytes, reason).
    pub truncated_tail: Option<(u64, String)>,
}

/// Whether `name` is a member once every membership entry of the log is applied.
fn is_member(init: &InitialState, name: &str) -> bool {
    let mut member = init.members.contains_key(name);
    for change in init.pending_config.values() {
        match change {
            ConfigChange::Join(p) if p.name == name => member = true,
            ConfigChange::Leave(n) if n == name => member = false,
            _ => {}
        }
    }
    member
}

/// A running node: its thread and a handle.
pub struct Runtime {
    handle: Handle,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
}

impl Runtime {
    /// Opens the data dir, restores the state machine and starts the runtime thread.
    pub fn start(opts: Options) -> Result<(Runtime, StartReport), StoreError> {
        let (mut store, report) = FileStore::open(&opts.dir)?;
        let (kv, init) = exec::startup(&mut store, report.conf_commit, report.config, &opts.name)?;
        let start = StartReport {
            last_index: init.log.last_index(),
            start_index: init.log.start_index,
            commit: init.commit,
            empty: init.log.last_index() == 0,
            member: is_member(&init, &opts.name),
            truncated_tail: report.truncated_tail,
        };
        let mut cfg = Config::new(opts.name.clone(), opts.connection_string.clone());
        cfg.heartbeat_ms = opts.heartbeat_ms;
        cfg.election_timeout_ms = opts.election_timeout_ms;
        cfg.seed = opts.seed;
        cfg.vote_rule = opts.vote_rule;
        cfg.strict_reconfig = opts.strict_reconfig;
        let core = Core::new(cfg, init, 0);
        let (tx, rx) = mpsc::channel::<Input>();
        let shared = Arc::new(Shared {
            kv: RwLock::new(kv),
            status: Mutex::new(core.status()),
            failure: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
            doorbell: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            batch_done: std::sync::OnceLock::new(),
        });
        let sink_tx = Mutex::new(tx.clone());
        let sink: transport::Sink = Arc::new(move |e| {
            if let Ok(t) = sink_tx.lock() {
                let _ = t.send(Input::Event(e));
            }
        });
        let transport = HttpTransport::with_token(sink, opts.timeouts, opts.token.as_deref());
        if opts.bootstrap && start.empty {
            let _ = tx.send(Input::Event(Event::Bootstrap));
        }
        let (sync_tx, sync_rx) = mpsc::channel::<(u64, std::fs::File)>();
        let synced_tx = Mutex::new(tx.clone());
        let sync_state = Arc::new(SyncState::default());
        let st = sync_state.clone();
        std::thread::Builder::new()
            .name("raft-fsync".into())
            .spawn(move || {
                while let Ok((id, file)) = sync_rx.recv() {
                    let r = file.sync_data().map_err(|e| e.to_string());
                    if r.is_ok() {
                        st.done.store(id, Ordering::SeqCst);
                        if !st.wanted.swap(false, Ordering::SeqCst) {
                            // The runtime reads `done` when it next wakes.
                            continue;
                        }
                    }
                    match synced_tx.lock() {
                        Ok(t) if t.send(Input::Synced(id, r)).is_ok() => {}
                        _ => return,
                    }
                }
            })
            .map_err(|source| StoreError::Io {
                path: opts.dir.clone(),
                op: "start the fsync thread",
                error: source,
            })?;
        let persisted = store.terms().last_index();
        let mut worker = Worker {
            core,
            store,
            transport,
            shared: shared.clone(),
            name: opts.name,
            waiting: HashMap::new(),
            deadlines: std::collections::VecDeque::new(),
            clock: Instant::now(),
            sync_tx,
            sync_state,
            sync: None,
            sync_seq: 0,
            persisted,
            shipped: 0,
            held: Vec::new(),
            answered: false,
            snapshots: snapshots::Snapshots {
                every: opts.snapshot_every,
                last: start.start_index,
                running: false,
                tx: tx.clone(),
            },
        };
        let thread = std::thread::Builder::new()
            .name("raft-runtime".into())
            .spawn(move || {
                let r = worker.run(rx);
                worker.abandon();
                worker.batch_done();
                if let Err(e) = &r {
                    log::error!("{e}");
                    if let Ok(mut f) = worker.shared.failure.lock() {
                        *f = Some(e.to_string());
                    }
                }
                r
            })
            .map_err(|source| StoreError::Io {
                path: opts.dir.clone(),
                op: "start the runtime thread",
                error: source,
            })?;
        let handle = Handle {
            tx,
            shared,
            next_id: Arc::new(AtomicU64::new(1)),
        };
        Ok((
            Runtime {
                handle,
                thread: Some(thread),
            },
            start,
        ))
    }

    /// A handle for the HTTP threads.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Whether the runtime thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the runtime: the log is synced and files closed.
    pub fn stop(mut self) -> Result<(), StoreError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), StoreError> {
        let _ = self.handle.tx.send(Input::Stop);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(StoreError::Invalid {
                path: PathBuf::from("runtime"),
                detail: "the runtime thread panicked".into(),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

struct Worker {
    core: Core,
    store: FileStore,
    transport: HttpTransport,
    shared: Arc<Shared>,
    name: String,
    waiting: HashMap<RequestId, Waiter>,
    /// Deadlines of asynchronous calls, in arrival order (their timeouts are equal).
    deadlines: std::collections::VecDeque<(Instant, RequestId)>,
    clock: Instant,
    /// Requests to the fsync thread.
    sync_tx: Sender<(u64, std::fs::File)>,
    /// What the fsync thread finished, and whether it should wake the runtime for it.
    sync_state: Arc<SyncState>,
    /// The fsync in flight: its id and the last index it makes durable.
    sync: Option<(u64, Index)>,
    sync_seq: u64,
    /// The log is durable up to here.
    persisted: Index,
    /// The last index sent to a peer in an AppendEntries.
    shipped: Index,
    /// Replies waiting for the log to be durable up to an index.
    held: Vec<(Index, Waiter, Reply)>,
    /// Asynchronous calls were answered since the batch hook last ran.
    answered: bool,
    snapshots: snapshots::Snapshots,
}

const MAX_BATCH: usize = 4096;

/// Shared by the runtime and its fsync thread. A finished fsync is recorded in `done`; it
/// wakes the runtime (an [`Input::Synced`]) only when `wanted` is set, that is when the
/// runtime waits for it ([`Core::waits_on_own_log`]). A leader's fsync usually ends before
/// any follower answers for the same entries, and the answer's wake-up then reads `done`:
/// one wake-up and context switch fewer per round. Failures always wake the runtime.
#[derive(Default)]
struct SyncState {
    /// The id of the last fsync that succeeded.
    done: AtomicU64,
    /// Set by the runtime (before it sleeps) when a finished fsync should wake it.
    wanted: AtomicBool,
}

impl Worker {
    fn now(&self) -> Millis {
        self.clock.elapsed().as_millis() as Millis
    }

    fn run(&mut self, rx: Receiver<Input>) -> Result<(), StoreError> {
        loop {
            let now = self.now();
            let mut wait = self
                .core
                .next_deadline()
                .saturating_sub(now)
                .clamp(1, 1_000);
            if let Some((d, _)) = self.deadlines.front() {
                let left = d.saturating_duration_since(Instant::now()).as_millis() as u64;
                wait = wait.min(left.max(1));
            }
            let ring = self.wants_calls();
            self.shared.doorbell.store(ring, Ordering::SeqCst);
            let queued = ring
                && !self
                    .shared
                    .calls
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty();
            // Set before `done` is read (both SeqCst): an fsync that ends after this read
            // sees `wanted` and wakes us.
            let want_sync = self.sync.is_some()
                && (self.core.waits_on_own_log()
                    || self.held.iter().any(|(need, _, _)| *need > self.persisted));
            self.sync_state.wanted.store(want_sync, Ordering::SeqCst);
            let sync_ended = want_sync && self.sync_finished();
            let first = if queued || sync_ended {
                // Calls queued before the doorbell was set: no wake-up will come for them.
                match rx.try_recv() {
                    Ok(i) => Some(i),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
                }
            } else {
                match rx.recv_timeout(Duration::from_millis(wait)) {
                    Ok(i) => Some(i),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
            };
            super::ratelog::flush();
            let mut events = vec![Event::Tick(self.now())];
            let mut stop = false;
            let mut synced = Vec::new();
            let mut prepared = None;
            let mut take =
                |input: Input,
                 waiting: &mut HashMap<RequestId, Waiter>,
                 deadlines: &mut std::collections::VecDeque<(Instant, RequestId)>| {
                    match input {
                        Input::Event(e) => events.push(e),
                        Input::Call(e, tx) => {
                            if let Some(id) = event_id(&e) {
                                waiting.insert(id, Waiter::Chan(tx));
                            }
                            events.push(e);
                        }
                        Input::CallAsync(e, cb, deadline) => {
                            match event_id(&e) {
                                Some(id) => {
                                    waiting.insert(id, Waiter::Cb(cb));
                                    deadlines.push_back((deadline, id));
                                }
                                None => cb(Err(CallError::Stopped)),
                            }
                            events.push(e);
                        }
                        Input::Synced(id, r) => synced.push((id, r)),
                        Input::Wake => {}
                        Input::Snapshot(r) => prepared = Some(r),
                        Input::Stop => stop = true,
                    }
                };
            // Queued calls first: a write taken in the same batch as an AppendEntries answer
            // is appended before the core sends that peer its next request, so it goes out
            // with it instead of a round later.
            for i in self.shared.take_calls() {
                take(i, &mut self.waiting, &mut self.deadlines);
            }
            if let Some(i) = first {
                take(i, &mut self.waiting, &mut self.deadlines);
                for _ in 0..MAX_BATCH {
                    match rx.try_recv() {
                        Ok(i) => take(i, &mut self.waiting, &mut self.deadlines),
                        Err(_) => break,
                    }
                }
            }
            for (_, r) in synced {
                if let Err(e) = r {
                    return Err(StoreError::Invalid {
                        path: self.store.dir().join("log"),
                        detail: format!("fsync failed: {e}"),
                    });
                }
            }
            if let Some(upto) = self.take_finished_sync() {
                events.push(Event::Persisted(upto));
            }
            if let Some(r) = prepared {
                self.snapshots.running = false;
                if let Some((index, term)) = self.finish_snapshot(r)? {
                    events.push(Event::Compacted { index, term });
                }
            }
            let actions = self.core.step_many(events);
            self.exec(actions)?;
            if stop {
                self.store.sync()?;
                self.persisted = self.store.terms().last_index();
                self.release();
                self.batch_done();
                return Ok(());
            }
            self.start_sync()?;
            self.maybe_snapshot()?;
            self.release();
            self.expire();
            self.batch_done();
            let mut s = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
            self.core.update_status(&mut s);
        }
    }

    /// Group commit, pipelined: while one fsync runs, new entries are written (no fsync) and
    /// the next fsync covers all of them.
    fn start_sync(&mut self) -> Result<(), StoreError> {
        let last = self.store.write_out()?;
        // An fsync that ended without waking us: the next one can start.
        if let Some(upto) = self.take_finished_sync() {
            let actions = self.core.step(Event::Persisted(upto));
            self.exec(actions)?;
        }
        if self.sync.is_none() && last > self.persisted && self.core.role() != Role::Leader {
            // A follower's fsync is on the path of every write (the leader waits for its
            // answer) and it has nothing else to do meanwhile: syncing here saves the two
            // thread hand-offs (there and back) of the fsync thread. What arrives during it
            // is batched into the next loop, and so into the next fsync.
            let last = self.store.sync()?;
            self.persisted = last;
            let actions = self.core.step(Event::Persisted(last));
            return self.exec(actions);
        }
        // A leader with peers fsyncs what it has sent them: an entry commits only once a
        // follower's answer for it comes back, which takes longer than this fsync. Entries
        // written meanwhile wait for the next AppendEntries, and so for the next fsync: one
        // fsync per replication round instead of one per batch, with no later commit (less
        // CPU, and less load on a disk the followers may share).
        let wanted = self.core.peer_count() == 0 || self.shipped > self.persisted;
        if self.sync.is_none() && last > self.persisted && wanted {
            self.sync_seq += 1;
            let file = self.store.sync_handle()?;
            self.sync = Some((self.sync_seq, last));
            if self.sync_tx.send((self.sync_seq, file)).is_err() {
                return Err(StoreError::Invalid {
                    path: self.store.dir().join("log"),
                    detail: "the fsync thread stopped".into(),
                });
            }
        }
        Ok(())
    }

    /// Whether the fsync in flight has finished (successfully).
    fn sync_finished(&self) -> bool {
        self.sync
            .is_some_and(|(id, _)| self.sync_state.done.load(Ordering::SeqCst) >= id)
    }

    /// Ends the fsync in flight if it finished: returns the index now durable.
    fn take_finished_sync(&mut self) -> Option<Index> {
        if !self.sync_finished() {
            return None;
        }
        let (_, upto) = self.sync.take()?;
        self.persisted = self.persisted.max(upto);
        Some(upto)
    }

    /// Calls the batch hook if asynchronous calls were answered since the last call.
    fn batch_done(&mut self) {
        if std::mem::take(&mut self.answered) {
            if let Some(f) = self.shared.batch_done.get() {
                f();
            }
        }
    }

    /// Sends the replies whose entries are durable, in the order they were made: answers to
    /// requests pipelined on one connection must go out in request order.
    fn release(&mut self) {
        let persisted = self.persisted;
        if !self.held.iter().any(|(need, _, _)| *need <= persisted) {
            return;
        }
        self.answered = true;
        for (need, w, reply) in std::mem::take(&mut self.held) {
            if need <= persisted {
                w.answer(Ok(reply));
            } else {
                self.held.push((need, w, reply));
            }
        }
    }

    /// Answers `Timeout` to asynchronous calls past their deadline.
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(&(d, id)) = self.deadlines.front() {
            if d > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(w) = self.waiting.remove(&id) {
                self.answered = true;
                w.answer(Err(CallError::Timeout));
            }
        }
        if self.deadlines.len() > 2 * self.waiting.len() + 64 {
            let waiting = &self.waiting;
            self.deadlines.retain(|(_, id)| waiting.contains_key(id));
        }
    }

    /// Whether a queued asynchronous call should wake the runtime (see [`Shared::calls`]).
    fn wants_calls(&self) -> bool {
        match self.core.role() {
            Role::Leader if self.core.peer_count() > 0 => self.core.has_idle_peer(),
            // Alone: writes commit with the next fsync, which starts when the one in flight
            // ends (and wakes the runtime).
            Role::Leader => self.sync.is_none(),
            _ => true,
        }
    }

    /// Answers `Stopped` to everyone still waiting (the runtime is exiting).
    fn abandon(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.abandon_calls();
        self.answered = true;
        for (_, w) in self.waiting.drain() {
            w.answer(Err(CallError::Stopped));
        }
        for (_, w, _) in self.held.drain(..) {
            w.answer(Err(CallError::Stopped));
        }
    }

    fn hold(&mut self, id: RequestId, reply: Reply) {
        if let Some(w) = self.waiting.remove(&id) {
            // An AppendEntries answer vouches for every entry this log holds: it waits for
            // them to be durable. Other answers depend on nothing unsynced.
            let need = match reply {
                Reply::Append(_) => self.store.terms().last_index(),
                _ => 0,
            };
            self.held.push((need, w, reply));
        } else {
            // The caller gave up (timeout) before the answer came.
            log::debug!("no one waits any more for the answer to request {id}: {reply:?}");
        }
    }

    /// Carries out actions in order.
    fn exec(&mut self, actions: Vec<Action>) -> Result<(), StoreError> {
        exec::execute(self, actions)
    }
}

impl exec::Effects for Worker {
    type Store = FileStore;

    fn parts(&mut self) -> (&mut FileStore, &str) {
        (&mut self.store, &self.name)
    }

    fn send(&mut self, msg: Outbound) {
        if let Outbound::Append { sent, .. } = &msg {
            self.shipped = self.shipped.max(sent.last);
        }
        self.transport.send(msg);
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        self.hold(id, reply);
    }

    fn truncated(&mut self, to: Index) {
        // What an fsync in flight covers at or below `to` is still the same bytes.
        self.persisted = self.persisted.min(to);
        if let Some((_, upto)) = &mut self.sync {
            *upto = (*upto).min(to);
        }
        clamp_held(&mut self.held, to);
    }

    fn installed(&mut self, kv: Kv, last: Index) {
        clamp_held(&mut self.held, last);
        *self.shared.kv.write().unwrap_or_else(|e| e.into_inner()) = kv;
    }

    fn commit(&mut self, to: Index) -> Result<(), StoreError> {
        let mut kv = self.shared.kv.write().unwrap_or_else(|e| e.into_inner());
        if to.saturating_sub(kv.applied) > PARALLEL_APPLY {
            let t = Instant::now();
            let from = kv.applied;
            apply_pipelined(&mut self.store, &mut kv, to, &self.name)?;
            log::info!("applied {} entries in {:?}", to - from, t.elapsed());
            Ok(())
        } else {
            exec::apply_to(&mut self.store, &mut kv, to, &self.name, true)
        }
    }
}

/// After the log was cut back to `to` (a truncation, or a snapshot replacing it), no held
/// reply may wait for entries past `to`: they are gone, so it would wait for ever, and with it
/// every later answer on its connection (a connection's answers go out in order). An
/// AppendEntries answer that vouched for them becomes a refusal naming `to`: the entries it
/// claimed are no longer all here. (This happens to a node that stopped leading with an
/// fsync in flight and is then cut back by the new leader.)
fn clamp_held(held: &mut [(Index, Waiter, Reply)], to: Index) {
    for (need, _, reply) in held.iter_mut() {
        if *need > to {
            *need = to;
            if let Reply::Append(r) = reply {
                r.success = false;
                r.index = r.index.min(to);
            }
        }
    }
}

/// Above this many entries, applying takes the fast path (no `Entry` values built).
const PARALLEL_APPLY: u64 = 50_000;

/// Applies `kv.applied+1..=to`, decoding straight from the file's bytes in large chunks.
/// conf is written once at the end if membership changed (its commitIndex is the last
/// membership entry's index, as goraft's last rewrite would leave it). A second decoding
/// thread was tried: glibc's cross-thread frees made it slower.
fn apply_pipelined(
    store: &mut FileStore,
    kv: &mut Kv,
    to: Index,
    name: &str,
) -> Result<(), StoreError> {
    use crate::replay::kv::Applied;
    const CHUNK: u64 = 16_384;
    store.write_out()?;
    let to = to.min(store.terms().last_index());
    let mut conf_at = None;
    let mut a = kv.applied + 1;
    let mut result = Ok(());
    while a <= to && result.is_ok() {
        let b = to.min(a + CHUNK - 1);
        result = store.read_range(a, b, &mut |i, e| {
            // Writes are decoded in place and queued by key partition (flushed below):
            // applying a long run of them partition by partition keeps each small map in
            // the CPU cache. Payloads that do not decode take the general path.
            if let (b"write", Some(p)) = (e.wire.name, e.payload()) {
                if let Ok([key, value]) = crate::format::payload::decode_write(p) {
                    kv.put_batched(i, &key, &value);
                    return;
                }
            }
            let c = e.command();
            let self_join = matches!(&c, crate::model::Command::Join { name: n, .. } if n == name);
            let applied = kv.apply(i, c);
            if self_join || matches!(applied, Applied::Joined(true) | Applied::Left(true)) {
                conf_at = Some(i);
            }
        });
        a = b + 1;
    }
    // Even after an error: what was queued was applied (kv.applied says so).
    kv.flush();
    result?;
    if let Some(i) = conf_at {
        store.write_conf(&exec::conf_of(kv, name, i))?;
    }
    Ok(())
}

fn event_id(e: &Event) -> Option<RequestId> {
    match e {
        Event::Propose { id, .. }
        | Event::Remove { id, .. }
        | Event::Read { id }
        | Event::Append { id, .. }
        | Event::Vote { id, .. }
        | Event::SnapshotOffer { id, .. }
        | Event::SnapshotInstall { id, .. } => Some(*id),
        _ => None,
    }
}

/// A node that serves the state of a data dir at one index, read from the files without
/// writing anything (GETs only).
#[derive(Debug)]
pub struct ReadOnlyNode {
    /// The node's name (from the `name` file, or empty).
    pub name: String,
    /// The index served.
    pub at: Index,
    /// The state at `at`.
    pub kv: Kv,
}

/// Why a read-only node cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadOnlyError {
    /// The data dir cannot be read.
    #[error(transparent)]
    Load(#[from] crate::datadir::LoadError),
    /// The index is not covered by the snapshot and log.
    #[error("{path}: index {at} is not in the log (entries {first}..={last} after snapshot point {start})")]
    OutOfRange {
        /// The log.
        path: String,
        /// Requested index.
        at: Index,
        /// First index available.
        first: Index,
        /// Last index available.
        last: Index,
        /// The snapshot point.
        start: Index,
    },
    /// The snapshot's state does not decode, or the log has a gap.
    #[error("{0}")]
    Invalid(String),
}

impl ReadOnlyNode {
    /// Replays `dir` up to `at` (default: the last entry of the log).
    pub fn open(dir: &Path, at: Option<Index>) -> Result<ReadOnlyNode, ReadOnlyError> {
        let d = crate::datadir::open(dir)?;
        // A file that cannot be read (a FIFO, one over its cap) would be served as if absent.
        if let Some((path, e)) = d.first_unreadable() {
            return Err(ReadOnlyError::Invalid(format!("{}: {e}", path.display())));
        }
        let name = d.node_name().unwrap_or_default().to_string();
        let snap = d
            .best_snapshot()
            .and_then(|s| s.parsed.as_ref().ok())
            .filter(|p| p.crc_ok())
            .and_then(|p| p.snapshot.as_ref().ok())
            .filter(|s| at.is_none_or(|a| s.last_index <= a));
        let mut kv = match snap {
            Some(s) => exec::kv_from_snapshot(s).map_err(ReadOnlyError::Invalid)?,
            None => Kv::new(),
        };
        let start = kv.applied;
        let mut first = None;
        let mut last = start;
        for e in LogReader::new(d.log.bytes()).flatten() {
            let i = e.index();
            if i <= start {
                continue;
            }
            first.get_or_insert(i);
            if i != last + 1 {
                return Err(ReadOnlyError::Invalid(format!(
                    "{}: entry at byte {} has index {i}, expected {}",
                    d.log_path.display(),
                    e.offset,
                    last + 1
                )));
            }
            last = i;
            if at.is_none_or(|a| i <= a) {
                kv.apply(i, e.command());
            }
        }
        let at = at.unwrap_or(last);
        if at > last || at < start {
            return Err(ReadOnlyError::OutOfRange {
                path: d.log_path.display().to_string(),
                at,
                first: first.unwrap_or(start + 1),
                last,
                start,
            });
        }
        Ok(ReadOnlyNode { name, at, kv })
    }
}

/// The state string `/state` shows for a role.
pub fn role_name(role: Role) -> &'static str {
    role.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::batch::EntryBatch;
    use crate::format::command;
    use crate::model::{names, Entry};

    #[test]
    fn held_replies_never_wait_for_entries_that_were_cut() {
        use super::super::core::AppendResponse;
        let (tx, _rx) = mpsc::channel();
        let ok = |index| {
            Reply::Append(AppendResponse {
                term: 3,
                index,
                commit: 2,
                success: true,
            })
        };
        let mut held = vec![
            (9, Waiter::Chan(tx.clone()), ok(9)),
            (5, Waiter::Chan(tx.clone()), ok(5)),
            (
                0,
                Waiter::Chan(tx),
                Reply::Vote(VoteResponse {
                    term: 3,
                    granted: true,
                }),
            ),
        ];
        clamp_held(&mut held, 6);
        let got: Vec<(Index, Reply)> = held.into_iter().map(|(n, _, r)| (n, r)).collect();
        let refused = Reply::Append(AppendResponse {
            term: 3,
            index: 6,
            commit: 2,
            success: false,
        });
        assert_eq!(
            got,
            [
                (6, refused),
                (5, ok(5)),
                (
                    0,
                    Reply::Vote(VoteResponse {
                        term: 3,
                        granted: true
                    })
                ),
            ]
        );
    }

    #[test]
    fn the_fast_apply_path_gives_the_same_state_and_conf() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = FileStore::open(dir.path()).unwrap();
        let mut entries = vec![Entry {
            index: 1,
            term: 0,
            name: names::JOIN.into(),
            payload: Some(command::encode_join("me", "http://me")),
        }];
        for i in 2..=60_000u64 {
            // Writes the in-place decoder leaves to the general one, among plain ones:
            // escapes, an invalid payload, a missing value, bytes that are not UTF-8.
            let odd: Option<&[u8]> = match i % 1000 {
                7 => Some(b"{\"key\":\"odd7\",\"value\":\"a\\u00e9\\\"b\"}\n"),
                8 => Some(b"{\"key\":\"odd7\",\"value\":"),
                9 => Some(b"{\"key\":\"odd9\"}\n"),
                10 => Some(b"{\"key\":\"odd10\",\"value\":\"\xff\xfe\"}\n"),
                11 => Some(b"{\"value\":\"x\",\"key\":\"odd11\",\"key\":\"odd12\"}\n"),
                _ => None,
            };
            let (name, payload) = if i == 30_000 {
                (names::JOIN, command::encode_join("other", "http://o"))
            } else if let Some(p) = odd {
                (names::WRITE, p.to_vec())
            } else {
                (
                    names::WRITE,
                    command::encode_write(
                        format!("k{}", i % 977).as_bytes(),
                        format!("v{i}").as_bytes(),
                    ),
                )
            };
            entries.push(Entry {
                index: i,
                term: 0,
                name: name.into(),
                payload: Some(payload),
            });
        }
        store.append(&EntryBatch::from_entries(&entries)).unwrap();
        let mut slow = Kv::new();
        exec::apply_to(&mut store, &mut slow, 60_000, "me", false).unwrap();
        let mut fast = Kv::new();
        apply_pipelined(&mut store, &mut fast, 60_000, "me").unwrap();
        assert_eq!(fast, slow);
        assert_eq!(fast.applied, 60_000);
        assert_eq!(fast.invalid, 60, "the truncated payloads");
        let get = |k: &str| fast.data.get(k).map(|v| v.to_string());
        assert_eq!(get("odd7").as_deref(), Some("a\u{e9}\"b"));
        assert_eq!(get("odd9").as_deref(), Some(""));
        assert_eq!(get("odd10").as_deref(), Some("\u{fffd}\u{fffd}"));
        assert_eq!((get("odd11"), get("odd12").as_deref()), (None, Some("x")));
        assert_eq!(
            std::fs::read(dir.path().join("conf")).unwrap(),
            b"{\"commitIndex\":30000,\"peers\":[{\"name\":\"other\",\"connectionString\":\"http://o\"}]}"
        );
    }
}
