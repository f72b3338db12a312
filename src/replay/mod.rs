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

mod pipeline;
mod runs;
pub mod seaweedfs;

use compact_str::CompactString;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use crate::datadir::{DataDir, SnapshotFile};
use crate::format::log::{LogError, LogReader, RawEntry};
use crate::format::payload;
use crate::model::{Command, Index, Snapshot, Term};
use kv::{Applied, Kv, KvMap};
use pipeline::*;
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
mod tests;
