//! Replay: apply a log (from its snapshot, up to a chosen index) to raftd's state machine.
//!
//! `kv` is the one state machine of the project: `serve` applies committed entries with the same
//! code, so what `replay` says a node holds is what a node serving that log answers.
//!
//! A [`Replayer`] is fed one entry at a time and keeps only the state (the key-value map, the
//! members, counters, and the history of one key when asked): it never holds entries, so a log of
//! any length replays in the memory of its final state. [`replay`] drives it over a data dir: it
//! starts from the numerically best snapshot when that snapshot's state is raftd-style JSON of the
//! key-value map (else it says the state is opaque and still shows membership and counts), applies
//! the entries after the snapshot's `lastIndex` up to `--at` (default: every entry in the log,
//! because goraft does not record the true commit index), and stops at the first damage, where
//! goraft's loader truncates the log.
//!
//! Pure: it reads the data dir's bytes through `datadir`, never a file of its own, and prints
//! nothing.

pub mod kv;
mod machine;
mod runs;
pub mod seaweedfs;

use compact_str::CompactString;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use crate::datadir::{DataDir, SnapshotFile};
use crate::format::log::{LogError, LogReader, RawEntry};
use crate::format::payload;
use crate::model::{Command, Index, Snapshot, Term};
use kv::{Applied, Kv, KvMap};
use runs::{RunBatch, Runs};
use seaweedfs::Master;

/// What to replay and what to record along the way.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Apply entries up to and including this index; `None` applies every entry in the log.
    pub at: Option<Index>,
    /// Record every change of this key.
    pub history: Option<String>,
    /// Track membership and counts only: `write` entries are counted but neither decoded nor
    /// applied, so `written_bytes`, `overwrites` and `invalid` stay 0 for them (used by `diff`
    /// without `--state`, where the key-value map is not needed).
    pub membership_only: bool,
    /// Which state machine the log's commands belong to.
    pub machine: MachineChoice,
}

/// The state machine asked for (`--machine`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MachineChoice {
    /// Chosen from the log's commands and the snapshot's state ([`Machine`]).
    #[default]
    Auto,
    /// raftd's key-value map: `write` commands.
    Raftd,
    /// A SeaweedFS master: `MaxVolumeId` commands.
    Seaweedfs,
}

/// The state machine a replay's state belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Machine {
    /// raftd's key-value map (`kv`).
    Raftd,
    /// A SeaweedFS master (`master`).
    Seaweedfs,
    /// Neither: the state is unknown; membership and counts are still complete.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// Why a replay cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// `--at` asks for a point the files no longer hold: the snapshot is later and the log was
    /// compacted.
    #[error(
        "{path}: cannot replay to index {at}: snapshot {file} starts at index {last_index} and the log's first entry is {}",
        first_index.map_or("missing (the log is empty)".to_string(), |i| format!("index {i}"))
    )]
    BeforeSnapshot {
        /// The data dir.
        path: String,
        /// The index asked for.
        at: Index,
        /// The snapshot file.
        file: String,
        /// Its last index.
        last_index: Index,
        /// The log's first index, if any.
        first_index: Option<Index>,
    },
}

/// Where the replay started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// From an empty state before index 1.
    Empty,
    /// From a snapshot.
    Snapshot(SnapshotStart),
}

/// The snapshot a replay started from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStart {
    /// The file name, e.g. `1_1003.ss`.
    pub file: String,
    /// The last index it covers.
    pub last_index: Index,
    /// The term of that entry.
    pub last_term: Term,
    /// Whether its state could be loaded.
    pub state: SnapshotState,
}

/// What a snapshot's `state` turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotState {
    /// raftd-style JSON of the key-value map, loaded.
    Loaded {
        /// Keys loaded.
        keys: usize,
    },
    /// A SeaweedFS master's state, loaded into `master`.
    Master {
        /// Its max volume id.
        max_volume_id: u32,
        /// Its topology id.
        topology_id: String,
    },
    /// Not a JSON object of strings (another application's state machine, or `null`): the
    /// key-value map is unknown before the snapshot; membership and counts are still shown, and
    /// keys written after it.
    Opaque {
        /// Why it is not a key-value map.
        reason: String,
    },
}

/// A snapshot that exists but was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusedSnapshot {
    /// The file name.
    pub file: String,
    /// Its last index.
    pub last_index: Index,
    /// Why it was not used.
    pub reason: UnusedReason,
}

/// Why a snapshot was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnusedReason {
    /// `--at` is before it, and the log still starts at index 1.
    AtIsEarlier,
    /// Its state is opaque and the log still starts at index 1, so the whole state can be
    /// rebuilt from the log.
    OpaqueState,
}

/// Why the replay stopped where it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Every good entry was applied.
    EndOfLog,
    /// The next entry is after `--at`.
    At,
    /// The log is damaged here; goraft truncates it at this point on start-up, so nothing after
    /// it was applied.
    Damage(Damage),
}

/// The first damage in the log and what lies after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The damage (offset, kind).
    pub error: LogError,
    /// Good entries found after it: goraft discards them.
    pub entries_after: u64,
    /// Bytes after the damage's start, up to the end of the file.
    pub bytes_after: u64,
    /// The highest index among the entries after it.
    pub last_index_after: Option<Index>,
    /// Further damaged stretches after the first.
    pub more_damage: u64,
}

/// An index that does not follow its predecessor by exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Irregular {
    /// Byte offset of the entry.
    pub offset: u64,
    /// The index expected (previous + 1).
    pub expected: Index,
    /// The index found.
    pub found: Index,
}

/// One change of the tracked key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The entry's index (the snapshot's last index when the value came from the snapshot).
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// The value before, if any.
    pub old: Option<String>,
    /// The value after.
    pub new: String,
    /// Whether the value was loaded from the snapshot rather than written by an entry.
    pub from_snapshot: bool,
}

/// Every change of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The key.
    pub key: String,
    /// The changes, in log order.
    pub changes: Vec<Change>,
}

/// A membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChangeKind {
    /// `raft:join`.
    Join,
    /// `raft:leave`.
    Leave,
    /// A member listed in the snapshot's peers.
    Snapshot,
}

/// One membership event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChange {
    /// The entry's index (the snapshot's last index for snapshot members).
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// What happened.
    pub kind: MemberChangeKind,
    /// The member's name.
    pub name: String,
    /// Its URL (joins and snapshot members).
    pub connection_string: Option<String>,
    /// Whether it changed the membership (goraft ignores a join of a known member and a leave of
    /// an unknown one).
    pub effective: bool,
    /// The number of members afterwards.
    pub members: usize,
}

/// Counts for one term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TermStats {
    /// The term.
    pub term: Term,
    /// Entries applied.
    pub entries: u64,
    /// `write` entries applied.
    pub writes: u64,
    /// First index applied in this term.
    pub first_index: Index,
    /// Last index applied in this term.
    pub last_index: Index,
}

/// Counts over the applied entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// Entries applied.
    pub entries: u64,
    /// `write` entries applied.
    pub writes: u64,
    /// Writes that replaced an existing value.
    pub overwrites: u64,
    /// `raft:join` entries.
    pub joins: u64,
    /// `raft:leave` entries.
    pub leaves: u64,
    /// `raft:nop` entries.
    pub nops: u64,
    /// Entries with a command name raftd does not register (skipped, as goraft would).
    pub unknown: u64,
    /// Entries with a known name whose payload does not decode (skipped).
    pub invalid: u64,
    /// Bytes of the log frames applied.
    pub log_bytes: u64,
    /// Bytes of keys and values written (after Go's decoding).
    pub written_bytes: u64,
    /// SeaweedFS `MaxVolumeId` entries applied (counted as unknown when the machine is raftd).
    pub volume_ids: u64,
    /// Per term, in order.
    pub per_term: Vec<TermStats>,
}

/// The result of a replay.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The data dir (or log file) replayed.
    pub path: PathBuf,
    /// The node name, when known.
    pub name: Option<String>,
    /// The state reached. `kv.applied` is the last index applied (the snapshot's when nothing
    /// after it was).
    pub kv: Kv,
    /// Where it started.
    pub start: Start,
    /// A snapshot that exists but was not used.
    pub unused_snapshot: Option<UnusedSnapshot>,
    /// The snapshot goraft's `LoadSnapshot` would pick instead (lexicographic order), when it
    /// differs from the one used.
    pub goraft_snapshot: Option<String>,
    /// `--at`, when given.
    pub at: Option<Index>,
    /// The first index applied from the log.
    pub first_applied: Option<Index>,
    /// The term of the last entry applied.
    pub last_term: Option<Term>,
    /// Entries in the log at or below the snapshot's last index (skipped, as goraft does).
    pub skipped: u64,
    /// Why it stopped.
    pub stop: Stop,
    /// Indexes that do not step by one (at most 16 kept).
    pub irregular: Vec<Irregular>,
    /// How many there were in all.
    pub irregular_count: u64,
    /// The tracked key's history.
    pub history: Option<History>,
    /// Membership changes, in order.
    pub membership: Vec<MemberChange>,
    /// Counts.
    pub stats: Stats,
    /// Whether `write` entries were applied (false with `membership_only`).
    pub writes_applied: bool,
    /// The state machine of the log (decided when the replay ends).
    pub machine: Machine,
    /// The SeaweedFS master's state (meaningful when `machine` is [`Machine::Seaweedfs`]).
    pub master: Master,
    /// The dialect the log was read in (which implementations truncate at damage).
    pub dialect: crate::format::dialect::Dialect,
}

/// What the replayed state says about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState<'a> {
    /// It has this value.
    Value(&'a str),
    /// It is not set.
    Missing,
    /// Unknown: the snapshot's state is opaque and no entry after it wrote the key.
    Unknown,
}

impl Replay {
    /// The last index applied (the snapshot's last index when nothing after it was), 0 for none.
    pub fn last_applied(&self) -> Index {
        self.kv.applied
    }

    /// Whether the key-value map before the snapshot is unknown.
    pub fn opaque(&self) -> bool {
        matches!(
            &self.start,
            Start::Snapshot(SnapshotStart {
                state: SnapshotState::Opaque { .. },
                ..
            })
        )
    }

    /// What the state says about `key`.
    pub fn get(&self, key: &str) -> KeyState<'_> {
        match self.kv.get(key) {
            Some(v) => KeyState::Value(v),
            None if self.opaque() => KeyState::Unknown,
            None => KeyState::Missing,
        }
    }

    /// The damage the replay stopped at, if any.
    pub fn damage(&self) -> Option<&Damage> {
        match &self.stop {
            Stop::Damage(d) => Some(d),
            _ => None,
        }
    }
}

/// What [`Replayer::feed`] did with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// Applied.
    Applied,
    /// At or below the snapshot's last index: skipped, as goraft does.
    Skipped,
    /// Past `--at` or after damage: not applied, and no later entry will be.
    Done,
}

/// The streaming state machine driver: feed it a log's entries in file order.
#[derive(Debug)]
pub struct Replayer {
    r: Replay,
    /// `--machine`.
    choice: MachineChoice,
    /// Whether `write` entries go down the key-value path (writes applied, and the machine
    /// is not forced to SeaweedFS's).
    kv_writes: bool,
    /// Whether `MaxVolumeId` entries are applied (the machine is not forced to raftd's).
    volume_ids: bool,
    /// `write` entries seen whose payload did not decode (the valid ones are `stats.writes`).
    invalid_writes: u64,
    start_index: Index,
    expected: Option<Index>,
    term: Option<TermStats>,
    done: bool,
    pipe: Pipeline,
}

const MAX_IRREGULAR: usize = 16;

/// The write path's second stage when no history is kept: each full batch of writes is applied
/// to the state on a worker thread while the replayer decodes the next one. One batch is in
/// flight at a time and batches are applied in log order, so the state ends as applying the
/// writes one by one would leave it. Why: applying cost as much as decoding, and a replay of a
/// large log left the second core idle. Without a thread (spawning failed) batches are applied
/// in place.
///
/// The state is kept as sorted runs ([`runs`]) from the first batch on (the snapshot's pairs
/// move there) and becomes the map again, in its sorted form, at [`Pipeline::finish`].
///
/// The reader's thread applies the partitions below `split` of each batch itself, after it has
/// handed the batch to the worker (both read it), and the worker the rest. Why: applying cost
/// more than reading, so the reader waited on the worker for a third of the read. `split`
/// follows the load: it grows by one partition when the reader had to wait for the worker, and
/// shrinks by one when the worker was done first. Which thread applies a partition never
/// changes the result: each partition still takes every batch once, in log order.
#[derive(Debug)]
struct Pipeline {
    /// The batch being filled.
    batch: RunBatch,
    /// An empty batch with capacity, returned by the worker.
    spare: RunBatch,
    /// The state, from the first hand-off on (with a worker, only the reader's partitions);
    /// `None` before it.
    runs: Option<Runs>,
    /// The worker's partitions, while the worker does not hold them.
    theirs: Option<Runs>,
    /// The reader applies the partitions below this one.
    split: usize,
    /// Whether the state has moved into runs.
    started: bool,
    /// The key hash, seeded per process (keys sent to `serve` cannot be chosen to collide).
    hasher: runs::KeyHasher,
    /// Writes per batch.
    limit: usize,
    worker: Option<Worker>,
    /// Whether spawning the worker failed (then it is not tried again).
    no_worker: bool,
    /// Whether the worker holds its partitions.
    in_flight: bool,
    /// The longest key or value the runs take ([`runs::LONGEST`]; less in tests).
    longest: usize,
    /// Whether the runs are left: a key or value longer than `longest` came (in a write or in
    /// the snapshot's state), so every write from then on goes to the map one by one.
    off: bool,
}

/// The partitions the reader's thread applies at first (of [`runs::PARTS`]).
const READER_PARTS: usize = 12;

/// A job of the worker: its partitions, the batch, and which partitions to apply.
type Job = (Runs, Arc<RunBatch>, Range<usize>);

/// A thread that applies batches to the partitions it is sent with, and sends them back.
#[derive(Debug)]
struct Worker {
    to: mpsc::Sender<Job>,
    from: mpsc::Receiver<(Runs, Arc<RunBatch>, u64)>,
    handle: std::thread::JoinHandle<()>,
}

impl Worker {
    fn spawn() -> Option<Worker> {
        let (to, jobs) = mpsc::channel::<Job>();
        let (done, from) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("replay-apply".into())
            .spawn(move || {
                for (mut runs, batch, parts) in jobs {
                    let overwrites = runs.absorb(&batch, parts);
                    if done.send((runs, batch, overwrites)).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Worker { to, from, handle })
    }
}

impl Pipeline {
    fn new() -> Self {
        Pipeline {
            batch: RunBatch::default(),
            spare: RunBatch::default(),
            runs: None,
            theirs: None,
            split: READER_PARTS,
            started: false,
            hasher: runs::KeyHasher::default(),
            limit: kv::BATCH,
            worker: None,
            no_worker: false,
            in_flight: false,
            longest: runs::LONGEST,
            off: false,
        }
    }

    /// Queues a write; hands the batch off when it is full. A key or value too long for the
    /// runs turns them off: what is queued is applied, and from then on writes go to the map.
    #[inline]
    fn push(&mut self, key: &[u8], value: &[u8], data: &mut KvMap, overwrites: &mut u64) {
        let fits = key.len() <= self.longest && value.len() <= self.longest;
        if !self.off && fits && self.batch.push(&self.hasher, key, value) {
            if self.batch.len() >= self.limit {
                self.hand_off(data, overwrites);
            }
            return;
        }
        if !self.off {
            self.finish(data, overwrites);
            self.off = true;
        }
        put(data, key, value, overwrites);
    }

    /// Moves the state into runs on first use; `false` when the runs are off (then or before:
    /// a pair of the state is too long for them).
    fn start(&mut self, data: &mut KvMap) -> bool {
        if !self.started && !self.off {
            let pairs = std::mem::take(data).into_pairs();
            match Runs::new(pairs, self.hasher.clone(), self.longest) {
                Ok(runs) => {
                    self.started = true;
                    self.runs = Some(runs);
                }
                Err(pairs) => {
                    *data = pairs.into_iter().collect();
                    self.off = true;
                }
            }
        }
        !self.off
    }

    /// Applies the batch to the map one by one (the runs are off).
    fn apply_here(&mut self, data: &mut KvMap, overwrites: &mut u64) {
        self.batch.each(|k, v| put(data, k, v, overwrites));
        self.batch.clear();
    }

    /// Waits for the batch in flight and takes the worker's partitions back; moves one
    /// partition to whichever thread was done first.
    fn collect(&mut self, overwrites: &mut u64) {
        if !self.in_flight {
            return;
        }
        self.in_flight = false;
        let answer = self.worker.as_ref().map(|w| match w.from.try_recv() {
            Ok(answer) => Ok((answer, false)),
            Err(mpsc::TryRecvError::Empty) => w.from.recv().map(|a| (a, true)).map_err(|_| ()),
            Err(mpsc::TryRecvError::Disconnected) => Err(()),
        });
        match answer {
            Some(Ok(((mut theirs, batch, n), waited))) => {
                *overwrites += n;
                if let Some(mine) = self.runs.as_mut() {
                    if waited && self.split < runs::PARTS / 2 {
                        mine.take_part(&mut theirs, self.split);
                        self.split += 1;
                    } else if !waited && self.split > 0 {
                        self.split -= 1;
                        theirs.take_part(mine, self.split);
                    }
                }
                self.theirs = Some(theirs);
                // The reader let go of its handle when it had applied its partitions.
                if let Ok(mut batch) = Arc::try_unwrap(batch) {
                    batch.clear();
                    self.spare = batch;
                }
            }
            _ => {
                // The worker panicked while it held the state: a bug; surface its panic.
                if let Some(Err(panic)) = self.worker.take().map(|w| w.handle.join()) {
                    std::panic::resume_unwind(panic);
                }
                unreachable!("the replay worker stopped without answering");
            }
        }
    }

    /// Puts the worker's partitions (when it has some) back with the reader's.
    fn rejoin(&mut self) {
        if let (Some(mine), Some(mut theirs)) = (self.runs.as_mut(), self.theirs.take()) {
            for p in self.split..runs::PARTS {
                mine.take_part(&mut theirs, p);
            }
        }
    }

    fn hand_off(&mut self, data: &mut KvMap, overwrites: &mut u64) {
        self.collect(overwrites);
        if !self.start(data) {
            self.apply_here(data, overwrites);
            return;
        }
        if self.worker.is_none() && !self.no_worker {
            self.worker = Worker::spawn();
            self.no_worker = self.worker.is_none();
            if let (Some(_), Some(mine)) = (&self.worker, self.runs.as_mut()) {
                let mut theirs = Runs::empty(self.hasher.clone());
                for p in self.split..runs::PARTS {
                    theirs.take_part(mine, p);
                }
                self.theirs = Some(theirs);
            }
        }
        let batch = Arc::new(std::mem::replace(
            &mut self.batch,
            std::mem::take(&mut self.spare),
        ));
        let mine = self.split;
        if let (Some(w), Some(theirs)) = (&self.worker, self.theirs.take()) {
            match w.to.send((theirs, Arc::clone(&batch), mine..runs::PARTS)) {
                Ok(()) => self.in_flight = true,
                Err(mpsc::SendError((mut theirs, batch, parts))) => {
                    // No worker after all: its partitions are applied here from now on.
                    *overwrites += theirs.absorb(&batch, parts);
                    self.theirs = Some(theirs);
                    self.rejoin();
                    self.worker = None;
                    self.no_worker = true;
                }
            }
        }
        let Some(runs) = self.runs.as_mut() else {
            unreachable!("the state is here once started");
        };
        let parts = if self.worker.is_some() {
            0..mine
        } else {
            0..runs::PARTS
        };
        *overwrites += runs.absorb(&batch, parts);
        if let Ok(mut batch) = Arc::try_unwrap(batch) {
            // The worker was not sent this batch.
            batch.clear();
            self.spare = batch;
        }
    }

    /// Applies everything queued and puts the state back in `data` (sorted); the worker
    /// thread ends. Nothing changes when no write was queued.
    fn finish(&mut self, data: &mut KvMap, overwrites: &mut u64) {
        self.collect(overwrites);
        self.worker = None;
        if !self.started && self.batch.len() == 0 {
            return;
        }
        if !self.start(data) {
            self.apply_here(data, overwrites);
            return;
        }
        self.rejoin();
        if let Some(mut runs) = self.runs.take() {
            *overwrites += runs.absorb(&self.batch, 0..runs::PARTS);
            self.batch.clear();
            let (packed, n) = runs.finish();
            *overwrites += n;
            *data = KvMap::from_packed(packed);
        }
    }
}

/// Sets `key` in the map (UTF-8 bytes), counting an overwrite.
fn put(data: &mut KvMap, key: &[u8], value: &[u8], overwrites: &mut u64) {
    let string = |b: &[u8]| {
        CompactString::from_utf8(b)
            .unwrap_or_else(|_| CompactString::from(String::from_utf8_lossy(b).as_ref()))
    };
    if data.insert(string(key), string(value)).is_some() {
        *overwrites += 1;
    }
}

impl Replayer {
    /// A replayer starting from an empty state.
    pub fn new(path: PathBuf, name: Option<String>, opts: &ReplayOptions) -> Self {
        Replayer {
            r: Replay {
                path,
                name,
                kv: Kv::new(),
                start: Start::Empty,
                unused_snapshot: None,
                goraft_snapshot: None,
                at: opts.at,
                first_applied: None,
                last_term: None,
                skipped: 0,
                stop: Stop::EndOfLog,
                irregular: Vec::new(),
                irregular_count: 0,
                history: opts.history.clone().map(|key| History {
                    key,
                    changes: Vec::new(),
                }),
                membership: Vec::new(),
                stats: Stats::default(),
                writes_applied: !opts.membership_only,
                machine: Machine::Raftd,
                master: Master::default(),
                dialect: crate::format::dialect::Dialect::Goraft,
            },
            choice: opts.machine,
            kv_writes: !opts.membership_only && opts.machine != MachineChoice::Seaweedfs,
            volume_ids: opts.machine != MachineChoice::Raftd,
            invalid_writes: 0,
            start_index: 0,
            expected: None,
            term: None,
            done: false,
            pipe: Pipeline::new(),
        }
    }

    /// Starts from a snapshot instead of the empty state: loads its key-value map when its state
    /// is raftd-style JSON (else marks it opaque) and its peers as the members. Entries at or
    /// below its last index are then skipped.
    pub fn load_snapshot(&mut self, file: &str, snap: &Snapshot) {
        let state = match &snap.state {
            None => SnapshotState::Opaque {
                reason: "the snapshot's state is null".into(),
            },
            Some(bytes) if self.is_master_state(bytes) => self.master_snapshot(snap, bytes),
            Some(bytes) => match serde_json::from_slice::<BTreeMap<String, String>>(bytes) {
                Ok(map) => {
                    let keys = map.len();
                    if let Some(h) = &mut self.r.history {
                        if let Some(v) = map.get(&h.key) {
                            h.changes.push(Change {
                                index: snap.last_index,
                                term: snap.last_term,
                                old: None,
                                new: v.clone(),
                                from_snapshot: true,
                            });
                        }
                    }
                    if self.r.writes_applied {
                        self.r.kv.data =
                            map.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
                    }
                    SnapshotState::Loaded { keys }
                }
                Err(e) => SnapshotState::Opaque {
                    reason: format!(
                        "the snapshot's state ({} bytes) is not a JSON object of strings: {e}",
                        bytes.len()
                    ),
                },
            },
        };
        for p in snap.peers.iter().flatten() {
            let effective = self
                .r
                .kv
                .members
                .insert(p.name.clone(), p.connection_string.clone())
                .is_none();
            self.r.membership.push(MemberChange {
                index: snap.last_index,
                term: snap.last_term,
                kind: MemberChangeKind::Snapshot,
                name: p.name.clone(),
                connection_string: Some(p.connection_string.clone()),
                effective,
                members: self.r.kv.members.len(),
            });
        }
        self.r.kv.applied = snap.last_index;
        self.r.last_term = Some(snap.last_term);
        self.start_index = snap.last_index;
        self.r.start = Start::Snapshot(SnapshotStart {
            file: file.to_string(),
            last_index: snap.last_index,
            last_term: snap.last_term,
            state,
        });
    }

    /// The state so far. Without a tracked key, `data` does not hold the writes fed so far
    /// (they are applied in batches, some on a worker thread) until [`Replayer::finish`]; the
    /// members, counters and `applied` are current.
    pub fn kv(&self) -> &Kv {
        &self.r.kv
    }

    /// Whether no later entry will be applied (past `--at`, or after damage).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether feeding this replayer and `other` the same entries leaves them in the same state
    /// but for their node's path and name: both only replay membership (no writes applied) and
    /// stand in the same state now. Then [`Replayer::copy_to`] may stand in for feeding `other`.
    pub fn mirrors(&self, other: &Replayer) -> bool {
        let unnamed = |r: &Replay| {
            format!(
                "{:?}",
                Replay {
                    path: PathBuf::new(),
                    name: None,
                    ..r.clone()
                }
            )
        };
        !self.r.writes_applied
            && !other.r.writes_applied
            && self.start_index == other.start_index
            && self.expected == other.expected
            && self.term == other.term
            && self.done == other.done
            && unnamed(&self.r) == unnamed(&other.r)
    }

    /// Puts this replayer's state into `other`, keeping `other`'s path and name: for a replayer
    /// that [`Replayer::mirrors`] this one and was due the same entries since. `false` (and
    /// nothing done) when this one applies writes.
    pub fn copy_to(&self, other: &mut Replayer) -> bool {
        if self.r.writes_applied || other.r.writes_applied {
            return false;
        }
        other.r = Replay {
            path: std::mem::take(&mut other.r.path),
            name: other.r.name.take(),
            ..self.r.clone()
        };
        other.start_index = self.start_index;
        other.expected = self.expected;
        other.term = self.term;
        other.done = self.done;
        true
    }

    /// Feeds the next good entry of the log, in file order.
    #[inline]
    pub fn feed(&mut self, e: &RawEntry<'_>) -> Fed {
        if self.done {
            if let Stop::Damage(d) = &mut self.r.stop {
                d.entries_after += 1;
                d.last_index_after = d.last_index_after.max(Some(e.index()));
            }
            return Fed::Done;
        }
        let index = e.index();
        if index <= self.start_index && self.expected.is_none() {
            self.r.skipped += 1;
            return Fed::Skipped;
        }
        if self.r.at.is_some_and(|at| index > at) {
            self.done = true;
            self.r.stop = Stop::At;
            return Fed::Done;
        }
        let expected = self.expected.unwrap_or(self.start_index.saturating_add(1));
        if index != expected {
            self.r.irregular_count += 1;
            if self.r.irregular.len() < MAX_IRREGULAR {
                self.r.irregular.push(Irregular {
                    offset: e.offset,
                    expected,
                    found: index,
                });
            }
        }
        self.expected = Some(index.saturating_add(1));
        if self.r.first_applied.is_none() {
            self.r.first_applied = Some(index);
        }
        let term = e.term();
        self.count_term(term, index);
        let st = &mut self.r.stats;
        st.entries += 1;
        st.log_bytes += e.frame_len();
        self.r.last_term = Some(term);
        match e.wire.name {
            b"write" => self.write(index, term, e.payload().unwrap_or_default()),
            b"MaxVolumeId" if self.volume_ids => {
                self.volume_id(index, term, e.payload().unwrap_or_default());
            }
            b"raft:nop" => {
                st.nops += 1;
                self.r.kv.apply(index, Command::Nop);
            }
            b"raft:join" | b"raft:leave" => self.member(index, term, e.command()),
            _ => {
                st.unknown += 1;
                // The payload's meaning is irrelevant: goraft skips unregistered names.
                self.r.kv.apply(index, Command::Other { json: None });
            }
        }
        Fed::Applied
    }

    #[inline]
    fn count_term(&mut self, term: Term, index: Index) {
        match &mut self.term {
            Some(t) if t.term == term => {
                t.entries += 1;
                t.last_index = index;
            }
            slot => {
                if let Some(t) = slot.take() {
                    self.r.stats.per_term.push(t);
                }
                *slot = Some(TermStats {
                    term,
                    entries: 1,
                    writes: 0,
                    first_index: index,
                    last_index: index,
                });
            }
        }
    }

    #[inline]
    fn write(&mut self, index: Index, term: Term, payload: &[u8]) {
        if !self.kv_writes {
            if self.choice == MachineChoice::Seaweedfs {
                self.foreign_write(index);
                return;
            }
            // Membership only: the payload is not even decoded (diff's pass stays cheap).
            self.r.stats.writes += 1;
            if let Some(t) = &mut self.term {
                t.writes += 1;
            }
            self.r.kv.applied = index;
            return;
        }
        self.apply_write(index, term, payload);
    }

    /// [`Replayer::write`] when writes are applied (kept apart so that the membership-only
    /// case above inlines into `feed`).
    fn apply_write(&mut self, index: Index, term: Term, payload: &[u8]) {
        if self.r.history.is_none() {
            match payload::decode_write_bytes(payload) {
                Ok([key, value]) => self.queue_write(index, &key, &value),
                Err(e) => self.invalid_write(index, &e),
            }
            return;
        }
        let [key, value] = match payload::decode_write(payload) {
            Ok(kv) => kv,
            Err(e) => {
                self.invalid_write(index, &e);
                return;
            }
        };
        let st = &mut self.r.stats;
        st.writes += 1;
        st.written_bytes += (key.len() + value.len()) as u64;
        if let Some(t) = &mut self.term {
            t.writes += 1;
        }
        let tracked = match &self.r.history {
            Some(h) if h.key == key => Some(value.clone().into_owned()),
            _ => None,
        };
        let previous = self.r.kv.put_str(index, &key, &value);
        if previous.is_some() {
            self.r.stats.overwrites += 1;
        }
        if let (Some(new), Some(h)) = (tracked, &mut self.r.history) {
            h.changes.push(Change {
                index,
                term,
                old: previous.map(String::from),
                new,
                from_snapshot: false,
            });
        }
    }

    /// Counts a write whose payload does not decode.
    fn invalid_write(&mut self, index: Index, e: &crate::format::gojson::JsonError) {
        self.invalid_writes += 1;
        self.r.stats.invalid += 1;
        self.r.kv.apply(
            index,
            Command::Invalid {
                reason: e.to_string(),
            },
        );
    }

    /// Counts a decoded write (its key and value as UTF-8 bytes) and queues it (no history to
    /// keep); overwrites are counted as batches are applied.
    #[inline]
    fn queue_write(&mut self, index: Index, key: &[u8], value: &[u8]) {
        let st = &mut self.r.stats;
        st.writes += 1;
        st.written_bytes += (key.len() + value.len()) as u64;
        if let Some(t) = &mut self.term {
            t.writes += 1;
        }
        self.r.kv.applied = index;
        self.pipe.push(
            key,
            value,
            &mut self.r.kv.data,
            &mut self.r.stats.overwrites,
        );
    }

    fn member(&mut self, index: Index, term: Term, command: Command) {
        let (kind, name, cs) = match &command {
            Command::Join {
                name,
                connection_string,
            } => (
                MemberChangeKind::Join,
                name.clone(),
                Some(connection_string.clone()),
            ),
            Command::Leave { name } => (MemberChangeKind::Leave, name.clone(), None),
            _ => {
                self.r.stats.invalid += 1;
                self.r.kv.apply(index, command);
                return;
            }
        };
        let effective = match self.r.kv.apply(index, command) {
            Applied::Joined(e) => {
                self.r.stats.joins += 1;
                e
            }
            Applied::Left(e) => {
                self.r.stats.leaves += 1;
                e
            }
            _ => false,
        };
        self.r.membership.push(MemberChange {
            index,
            term,
            kind,
            name,
            connection_string: cs,
            effective,
            members: self.r.kv.members.len(),
        });
    }

    /// Feeds a damaged stretch of the log. The first one stops the replay (goraft truncates the
    /// log there on start-up); later ones are counted.
    pub fn feed_damage(&mut self, err: &LogError, file_len: u64) {
        match &mut self.r.stop {
            Stop::Damage(d) => d.more_damage += 1,
            _ if self.done => {}
            stop => {
                *stop = Stop::Damage(Damage {
                    error: err.clone(),
                    entries_after: 0,
                    bytes_after: file_len.saturating_sub(err.offset),
                    last_index_after: None,
                    more_damage: 0,
                });
                self.done = true;
            }
        }
    }

    /// Ends the replay.
    pub fn finish(mut self) -> Replay {
        self.pipe
            .finish(&mut self.r.kv.data, &mut self.r.stats.overwrites);
        self.r.stats.overwrites += self.r.kv.flush();
        if let Some(t) = self.term.take() {
            self.r.stats.per_term.push(t);
        }
        // The state is handed over in key order, which is how it is written out.
        self.r.kv.data.sort();
        self.r.machine = self.machine();
        self.r
    }
}

/// The snapshot chosen to start from (with its decoded content), and a snapshot deliberately
/// not used.
pub type StartChoice<'d> = (
    Option<(&'d SnapshotFile, &'d Snapshot)>,
    Option<UnusedSnapshot>,
);

/// The snapshot to start from for a replay up to `at` (the numerically best one, unless `at` is
/// before it), and a snapshot deliberately not used.
///
/// # Errors
/// [`ReplayError::BeforeSnapshot`] when `at` is before the best snapshot and the log no longer
/// starts at index 1.
pub fn choose_start(dir: &DataDir, at: Option<Index>) -> Result<StartChoice<'_>, ReplayError> {
    let Some((best, snap)) = dir.best_snapshot().and_then(|f| match &f.parsed {
        Ok(p) => p.snapshot.as_ref().ok().map(|s| (f, s)),
        Err(_) => None,
    }) else {
        return Ok((None, None));
    };
    if let Some(at) = at.filter(|&at| at < snap.last_index) {
        let first = first_index(dir);
        if first == Some(1) {
            let unused = UnusedSnapshot {
                file: best.file_name.clone(),
                last_index: snap.last_index,
                reason: UnusedReason::AtIsEarlier,
            };
            return Ok((None, Some(unused)));
        }
        return Err(ReplayError::BeforeSnapshot {
            path: dir.path.display().to_string(),
            at,
            file: best.file_name.clone(),
            last_index: snap.last_index,
            first_index: first,
        });
    }
    Ok((Some((best, snap)), None))
}

/// The index of the log's first good entry.
fn first_index(dir: &DataDir) -> Option<Index> {
    LogReader::with_dialect(dir.log.bytes(), dir.dialect())
        .find_map(Result::ok)
        .map(|e| e.index())
}

/// A replayer for `dir` set up with its starting snapshot (see [`choose_start`]). A snapshot
/// whose state is opaque is not used when the log still starts at index 1: the log then gives
/// the whole state.
///
/// # Errors
/// As [`choose_start`].
pub fn replayer_for(dir: &DataDir, opts: &ReplayOptions) -> Result<Replayer, ReplayError> {
    let (snap, unused) = choose_start(dir, opts.at)?;
    let fresh = || {
        let mut r = Replayer::new(dir.path.clone(), dir.node_name().map(str::to_string), opts);
        r.r.dialect = dir.dialect();
        r
    };
    let mut r = fresh();
    r.r.unused_snapshot = unused;
    if let Some((file, s)) = snap {
        r.load_snapshot(&file.file_name, s);
        if r.r.opaque() && first_index(dir) == Some(1) {
            r = fresh();
            r.r.unused_snapshot = Some(UnusedSnapshot {
                file: file.file_name.clone(),
                last_index: s.last_index,
                reason: UnusedReason::OpaqueState,
            });
            return Ok(r);
        }
        if let Some(g) = dir.goraft_snapshot() {
            if g.file_name != file.file_name {
                r.r.goraft_snapshot = Some(g.file_name.clone());
            }
        }
    }
    Ok(r)
}

/// Replays a data dir: see the module docs.
///
/// # Errors
/// As [`choose_start`].
pub fn replay(dir: &DataDir, opts: &ReplayOptions) -> Result<Replay, ReplayError> {
    let mut r = replayer_for(dir, opts)?;
    let len = dir.log.bytes().len() as u64;
    // The fast reader of canonical frames (it yields exactly what `LogReader` yields), releasing
    // the pages behind it. Why: the general reader's frame decoding was a sixth of a replay.
    dir.frames().each_until(|item| {
        match item {
            Ok(e) => {
                if r.feed(e) == Fed::Done && r.r.damage().is_none() {
                    return ControlFlow::Break(());
                }
            }
            Err(err) => r.feed_damage(&err, len),
        }
        ControlFlow::Continue(())
    });
    // Every byte needed has been read: the pages still mapped would only add to the resident
    // set while the state is written out.
    dir.log.release(0..len as usize);
    Ok(r.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::log::LogWriter;
    use crate::model::{Command, Peer};

    fn w(k: &str, v: &str) -> Command {
        Command::Write {
            key: k.into(),
            value: v.into(),
        }
    }

    fn log(entries: &[(Index, Term, Command)]) -> Vec<u8> {
        let mut lw = LogWriter::new(Vec::new());
        for (i, t, c) in entries {
            lw.append(*i, *t, c).unwrap();
        }
        lw.into_inner()
    }

    fn run(bytes: &[u8], opts: &ReplayOptions, snap: Option<&Snapshot>) -> Replay {
        let mut r = replayer(opts, snap);
        feed_all(&mut r, bytes);
        r.finish()
    }

    /// A replayer of `opts`, started from `snap`.
    fn replayer(opts: &ReplayOptions, snap: Option<&Snapshot>) -> Replayer {
        let mut r = Replayer::new(PathBuf::from("mem"), None, opts);
        if let Some(s) = snap {
            r.load_snapshot("1_3.ss", s);
        }
        r
    }

    /// Feeds `r` the log `bytes` as `replay` does.
    fn feed_all(r: &mut Replayer, bytes: &[u8]) {
        for item in LogReader::new(bytes) {
            match item {
                Ok(e) => {
                    if r.feed(&e) == Fed::Done && r.r.damage().is_none() {
                        break;
                    }
                }
                Err(err) => r.feed_damage(&err, bytes.len() as u64),
            }
        }
    }

    fn join(n: &str) -> Command {
        Command::Join {
            name: n.into(),
            connection_string: format!("http://{n}"),
        }
    }

    fn sample() -> Vec<u8> {
        log(&[
            (1, 0, join("a")),
            (2, 0, Command::Nop),
            (3, 0, w("k", "1")),
            (4, 0, w("j", "x")),
            (5, 1, Command::Nop),
            (6, 1, w("k", "2")),
            (7, 1, Command::Leave { name: "a".into() }),
            (8, 2, w("k", "3")),
        ])
    }

    #[test]
    fn history_stats_and_membership() {
        let opts = ReplayOptions {
            history: Some("k".into()),
            ..Default::default()
        };
        let r = run(&sample(), &opts, None);
        assert_eq!(r.stop, Stop::EndOfLog);
        assert_eq!(
            (r.last_applied(), r.first_applied, r.last_term),
            (8, Some(1), Some(2))
        );
        assert_eq!(r.kv.get("k"), Some("3"));
        let h: Vec<_> = r
            .history
            .unwrap()
            .changes
            .into_iter()
            .map(|c| (c.index, c.term, c.old, c.new))
            .collect();
        assert_eq!(
            h,
            [
                (3, 0, None, "1".to_string()),
                (6, 1, Some("1".to_string()), "2".to_string()),
                (8, 2, Some("2".to_string()), "3".to_string())
            ]
        );
        let s = &r.stats;
        assert_eq!(
            (s.entries, s.writes, s.overwrites, s.joins, s.leaves, s.nops),
            (8, 4, 2, 1, 1, 2)
        );
        let terms: Vec<_> = s
            .per_term
            .iter()
            .map(|t| (t.term, t.entries, t.writes, t.first_index, t.last_index))
            .collect();
        assert_eq!(terms, [(0, 4, 2, 1, 4), (1, 3, 1, 5, 7), (2, 1, 1, 8, 8)]);
        let m: Vec<_> = r
            .membership
            .iter()
            .map(|m| (m.index, m.kind, m.name.as_str(), m.effective, m.members))
            .collect();
        assert_eq!(
            m,
            [
                (1, MemberChangeKind::Join, "a", true, 1),
                (7, MemberChangeKind::Leave, "a", true, 0)
            ]
        );
    }

    #[test]
    fn at_stops_after_the_index() {
        let opts = ReplayOptions {
            at: Some(6),
            ..Default::default()
        };
        let r = run(&sample(), &opts, None);
        assert_eq!(
            (r.stop.clone(), r.last_applied(), r.kv.get("k")),
            (Stop::At, 6, Some("2"))
        );
    }

    #[test]
    fn damage_stops_the_replay_and_counts_what_goraft_discards() {
        let mut bytes = sample();
        let cut = {
            let e: Vec<_> = LogReader::new(&bytes).map(Result::unwrap).collect();
            e[5].offset as usize
        };
        // A NUL hole where entry 6 starts: entries 6..8 survive after it but goraft drops them.
        let mut damaged = bytes[..cut].to_vec();
        damaged.extend_from_slice(&[0; 10]);
        damaged.extend_from_slice(&bytes[cut..]);
        let r = run(&damaged, &ReplayOptions::default(), None);
        let d = r.damage().unwrap();
        assert_eq!(
            (d.error.offset, d.error.kind.code()),
            (cut as u64, "nul-run")
        );
        assert_eq!(
            (d.entries_after, d.last_index_after, d.more_damage),
            (3, Some(8), 0)
        );
        assert_eq!(d.bytes_after, (damaged.len() - cut) as u64);
        assert_eq!((r.last_applied(), r.kv.get("k")), (5, Some("1")));
        // A torn tail.
        bytes.extend_from_slice(b"      29\n\x08");
        let r = run(&bytes, &ReplayOptions::default(), None);
        assert_eq!(r.damage().map(|d| d.error.kind.code()), Some("torn-body"));
        assert_eq!(r.last_applied(), 8);
    }

    #[test]
    fn snapshot_start_skips_covered_entries() {
        let snap = Snapshot {
            last_index: 3,
            last_term: 0,
            peers: Some(vec![Peer {
                name: "a".into(),
                connection_string: "http://a".into(),
            }]),
            state: Some(br#"{"k":"from-snap","z":"\u003c"}"#.to_vec()),
            path: String::new(),
        };
        let opts = ReplayOptions {
            history: Some("k".into()),
            ..Default::default()
        };
        let r = run(&sample(), &opts, Some(&snap));
        assert_eq!(r.skipped, 3);
        assert_eq!(r.first_applied, Some(4));
        assert_eq!(r.kv.get("z"), Some("<"));
        let h = r.history.unwrap();
        assert_eq!(
            (
                h.changes[0].from_snapshot,
                h.changes[0].new.as_str(),
                h.changes[1].old.as_deref()
            ),
            (true, "from-snap", Some("from-snap"))
        );
        assert!(matches!(
            r.start,
            Start::Snapshot(SnapshotStart {
                state: SnapshotState::Loaded { keys: 2 },
                ..
            })
        ));
        // An opaque state: membership still known, key state unknown unless written later.
        let opaque = Snapshot {
            state: Some(b"\x00binary".to_vec()),
            ..snap
        };
        let r = run(&sample(), &ReplayOptions::default(), Some(&opaque));
        assert!(r.opaque());
        assert_eq!(r.get("k"), KeyState::Value("3"));
        assert_eq!(r.get("nope"), KeyState::Unknown);
        assert_eq!(r.kv.members.len(), 0, "a left at index 7");
        assert_eq!(r.membership[0].kind, MemberChangeKind::Snapshot);
    }

    #[test]
    fn irregular_indexes_are_reported_and_applied_in_file_order() {
        let bytes = log(&[
            (1, 0, w("k", "1")),
            (3, 0, w("k", "2")),
            (2, 0, w("k", "3")),
        ]);
        let r = run(&bytes, &ReplayOptions::default(), None);
        assert_eq!(r.irregular_count, 2);
        assert_eq!((r.irregular[0].expected, r.irregular[0].found), (2, 3));
        assert_eq!(r.kv.get("k"), Some("3"));
    }

    #[test]
    fn bad_payloads_and_unknown_names_are_counted() {
        let mut lw = LogWriter::new(Vec::new());
        lw.append_raw(1, 0, "write", Some(b"{\"key\":1}\n"))
            .unwrap();
        lw.append_raw(2, 0, "etcd:set", Some(b"{}")).unwrap();
        lw.append_raw(3, 0, "raft:join", Some(b"[]\n")).unwrap();
        let bytes = lw.into_inner();
        let r = run(&bytes, &ReplayOptions::default(), None);
        assert_eq!(
            (r.stats.invalid, r.stats.unknown, r.kv.invalid, r.kv.unknown),
            (2, 1, 2, 1)
        );
        assert_eq!(r.last_applied(), 3);
    }

    /// `run` with the batch size of the write pipeline set to `limit`, and its worker thread
    /// allowed or not (as when spawning it fails).
    fn run_batched(
        bytes: &[u8],
        opts: &ReplayOptions,
        limit: usize,
        thread: bool,
    ) -> (Replay, bool) {
        run_bulk(bytes, opts, None, (limit, thread, runs::LONGEST))
    }

    /// `run_batched` from `snap`, with the longest key or value the runs take set to `longest`.
    fn run_bulk(
        bytes: &[u8],
        opts: &ReplayOptions,
        snap: Option<&Snapshot>,
        (limit, thread, longest): (usize, bool, usize),
    ) -> (Replay, bool) {
        let mut r = replayer(opts, snap);
        r.pipe.limit = limit;
        r.pipe.no_worker = !thread;
        r.pipe.longest = longest;
        feed_all(&mut r, bytes);
        let threaded = r.pipe.worker.is_some();
        (r.finish(), threaded)
    }

    #[test]
    fn pipelined_writes_give_the_state_of_one_by_one_writes() {
        let mut lw = LogWriter::new(Vec::new());
        let mut index = 0;
        let mut next = || {
            index += 1;
            index
        };
        for i in 0..500u64 {
            let k = format!("k{}", i % 37);
            lw.append(next(), i / 100, &w(&k, &format!("v{i}")))
                .unwrap();
            if i % 7 == 0 {
                lw.append(next(), i / 100, &Command::Nop).unwrap();
            }
            if i % 11 == 0 {
                // An escaped key and value (the general decoder), then an undecodable write.
                let p = format!(
                    "{{\"key\":\"k\\u00{:02x}\",\"value\":\"\\n{i}\"}}\n",
                    i % 5 + 0x61
                );
                lw.append_raw(next(), i / 100, "write", Some(p.as_bytes()))
                    .unwrap();
                lw.append_raw(next(), i / 100, "write", Some(b"{\"key\":1}\n"))
                    .unwrap();
            }
            if i % 50 == 0 {
                lw.append(next(), i / 100, &join(&format!("n{i}"))).unwrap();
            }
        }
        let bytes = lw.into_inner();
        // A tracked key takes the one-by-one path (put_str): the reference.
        let slow_opts = ReplayOptions {
            history: Some("not-a-key".into()),
            ..Default::default()
        };
        let slow = run(&bytes, &slow_opts, None);
        assert_eq!(slow.kv.get("ka"), Some("\n495"));
        assert_eq!(slow.kv.data.len(), 37 + 5);
        for at in [None, Some(1), Some(333)] {
            let slow = run(
                &bytes,
                &ReplayOptions {
                    at,
                    ..slow_opts.clone()
                },
                None,
            );
            for (limit, thread) in [1, 3, 64, kv::BATCH]
                .into_iter()
                .flat_map(|l| [(l, true), (l, false)])
            {
                let opts = ReplayOptions {
                    at,
                    ..Default::default()
                };
                let (fast, threaded) = run_batched(&bytes, &opts, limit, thread);
                assert_eq!(
                    threaded,
                    thread && fast.stats.writes >= limit as u64,
                    "limit {limit} at {at:?}"
                );
                assert_eq!(
                    fast.kv.to_btree(),
                    slow.kv.to_btree(),
                    "limit {limit} at {at:?}"
                );
                assert_eq!(fast.stats, slow.stats, "limit {limit} at {at:?}");
                assert_eq!(
                    (fast.kv.applied, fast.kv.invalid, &fast.kv.members),
                    (slow.kv.applied, slow.kv.invalid, &slow.kv.members)
                );
            }
        }
        assert_eq!((slow.stats.writes, slow.stats.overwrites), (546, 504));
    }

    #[test]
    fn a_pair_too_long_for_the_runs_keeps_the_bulk_path_off() {
        let snap = Snapshot {
            last_index: 0,
            last_term: 0,
            peers: None,
            state: Some(br#"{"snap":"0123456789","a":"0"}"#.to_vec()),
            path: String::new(),
        };
        let mut lw = LogWriter::new(Vec::new());
        for i in 1..=10u64 {
            let p = crate::format::command::encode_write(b"a", i.to_string().as_bytes());
            lw.append_raw(i, 0, "write", Some(&p)).unwrap();
        }
        let bytes = lw.into_inner();
        for thread in [false, true] {
            let (r, _) = run_bulk(
                &bytes,
                &ReplayOptions::default(),
                Some(&snap),
                (2, thread, 5),
            );
            assert!(r.kv.data.is_sorted());
            assert_eq!(
                r.kv.sorted(),
                [("a", "10"), ("snap", "0123456789")],
                "the snapshot's long pair is kept"
            );
            assert_eq!((r.stats.writes, r.stats.overwrites), (10, 10));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// The bulk write path (batches of any size, the reader's and the worker's shares of
        /// the partitions moving between them, or no worker) leaves the state, counts and
        /// overwrites that applying the writes one by one leaves: keys written many times in one
        /// batch, escaped and non-ASCII keys and values (through the general decoder), invalid
        /// UTF-8 (mangled as Go does), undecodable payloads, and entries that are not writes.
        #[test]
        fn bulk_writes_give_the_state_of_one_by_one_writes(
            writes in proptest::collection::vec(
                (0usize..6, 0u8..40, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6)),
                0..400),
            limit in proptest::prop_oneof![1usize..8, 8usize..300],
            thread: bool,
            longest in proptest::prop_oneof![proptest::strategy::Just(runs::LONGEST), 0usize..6],
            snap_value in proptest::option::of("[a-z]{0,8}"),
        ) {
            const KEYS: [&[u8]; 6] = [b"k", b"k\"q\"", "\u{e9}t\u{2028}".as_bytes(), b"", b"x\n", b"\xffbad"];
            let mut lw = LogWriter::new(Vec::new());
            for (i, (k, kind, v)) in writes.iter().enumerate() {
                let index = i as u64 + 1;
                match kind {
                    0 => lw.append_raw(index, 0, "write", Some(b"{\"key\":1}\n")).unwrap(),
                    1 => lw.append(index, 0, &Command::Nop).unwrap(),
                    // An escape the encoder would not write: the general decoder's path.
                    2 => {
                        let p = format!("{{\"key\":\"\\u006b{k}\",\"value\":\"\\t\"}}\n");
                        lw.append_raw(index, 0, "write", Some(p.as_bytes())).unwrap()
                    }
                    _ => {
                        let p = crate::format::command::encode_write(KEYS[*k], v);
                        lw.append_raw(index, 0, "write", Some(&p)).unwrap()
                    }
                }
            }
            let bytes = lw.into_inner();
            // A snapshot at index 0 (every entry is applied after it), its state a pair no
            // write touches, which may be too long for the runs.
            let snap = snap_value.map(|v| Snapshot {
                last_index: 0,
                last_term: 0,
                peers: None,
                state: Some(serde_json::to_vec(&BTreeMap::from([("snap", v)])).unwrap()),
                path: String::new(),
            });
            let slow_opts = ReplayOptions {
                history: Some("not-a-key".into()),
                ..Default::default()
            };
            let slow = run(&bytes, &slow_opts, snap.as_ref());
            // Writes longer than `longest` turn the runs off midway (or from the start).
            let (fast, _) = run_bulk(
                &bytes,
                &ReplayOptions::default(),
                snap.as_ref(),
                (limit, thread, longest),
            );
            proptest::prop_assert_eq!(fast.kv.to_btree(), slow.kv.to_btree());
            proptest::prop_assert_eq!(&fast.stats, &slow.stats);
            proptest::prop_assert_eq!(
                (fast.kv.applied, fast.kv.invalid, fast.kv.data.is_sorted()),
                (slow.kv.applied, slow.kv.invalid, true)
            );
        }
    }

    #[test]
    fn membership_only_counts_writes_without_applying_them() {
        let opts = ReplayOptions {
            membership_only: true,
            ..Default::default()
        };
        let r = run(&sample(), &opts, None);
        assert!(r.kv.data.is_empty());
        assert_eq!((r.stats.writes, r.last_applied()), (4, 8));
    }
}
