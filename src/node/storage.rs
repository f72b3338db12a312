//! Where a node keeps its log, term and vote, conf and snapshot: the [`Storage`] trait, the
//! [`FileStore`] that writes goraft's files exactly, and the [`MemStore`] used by simulations.
//!
//! The file store writes `log` frames byte-identical to goraft's (via `format::log`), `conf`
//! through `conf.tmp` + fsync + rename + directory fsync, `name`, and snapshots as
//! `snapshot/<term>_<index>.ss`. It adds one file goraft never reads, `raftdump-state`
//! (currentTerm and votedFor), so the directory stays usable by goraft. It keeps only an index of
//! frame offsets in memory (8 bytes per entry) plus a small cache of recent entries; older
//! entries are read back from the file with one `pread` per range. It must not interpret
//! entries beyond their index and term (that is `core` and `replay::kv`).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::compaction;
use super::core::{ConfigChange, HardState, LogTerms};
use crate::datadir::{files, LogBytes};
use crate::format::batch::EntryBatch;
use crate::format::log::{encode_frame_of, LogReader};
use crate::format::{conf as conf_format, snapshot as snapshot_format};
use crate::model::{Conf, Entry, Index, Snapshot};

/// The file goraft ignores where raftdump keeps currentTerm and votedFor.
pub const STATE_FILE: &str = "raftdump-state";

/// The most `raftdump-state` may hold: it is one small JSON object (a term and a name).
const STATE_CAP: u64 = 64 << 10;

/// Why a data dir cannot be served, or a write failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O error on a file.
    #[error("{}: {op}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error (in the message, not a source: printed once).
        error: io::Error,
    },
    /// The log has damage with good entries after it: serving would drop committed entries.
    #[error("{}: damage at byte {offset} before entry #{entry} ({detail}) with good entries after it; run `raftdump verify` and repair the log first", path.display())]
    Damaged {
        /// The log.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// Good entries before it.
        entry: u64,
        /// What the reader found.
        detail: String,
    },
    /// Entries do not step by one (or do not start after the snapshot point).
    #[error("{}: entry at byte {offset} has index {found}, expected {expected}", path.display())]
    Gap {
        /// The log.
        path: PathBuf,
        /// The frame's offset.
        offset: u64,
        /// The index expected there.
        expected: Index,
        /// The index found.
        found: Index,
    },
    /// A file whose content is not what raftdump or goraft writes.
    #[error("{}: {detail}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

fn io_at<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |error| StoreError::Io {
        path: path.to_owned(),
        op,
        error,
    }
}

/// A node's durable state.
///
/// # Correctness
/// - `save_hard_state` returns only once the term and vote are durable.
/// - `append` and `truncate_after` may be buffered; `sync` makes every earlier call durable
///   (one fsync for all of them: group commit) and returns the last index.
/// - Entries always step by one after the snapshot point; `append` refuses anything else.
/// - `entries(from, to)` returns exactly the entries `from..=to` as written.
pub trait Storage: Send {
    /// Term and vote as persisted.
    fn hard_state(&self) -> HardState;
    /// Persists term and vote durably.
    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError>;
    /// The log's shape.
    fn terms(&self) -> &LogTerms;
    /// Appends entries (the first must be `last + 1`).
    fn append(&mut self, entries: &EntryBatch) -> Result<(), StoreError>;
    /// Drops every entry after `index`.
    fn truncate_after(&mut self, index: Index) -> Result<(), StoreError>;
    /// Makes every append and truncation durable; returns the last index.
    fn sync(&mut self) -> Result<Index, StoreError>;
    /// The entries `from..=to` (both within the log).
    fn entries(&mut self, from: Index, to: Index) -> Result<Vec<Entry>, StoreError>;
    /// The snapshot the log starts after, if any.
    fn snapshot(&self) -> Option<&Snapshot>;
    /// Replaces everything with a snapshot (the log becomes empty after it).
    fn install_snapshot(&mut self, snapshot: Snapshot, conf: &Conf) -> Result<(), StoreError>;
    /// Rewrites `conf`.
    fn write_conf(&mut self, conf: &Conf) -> Result<(), StoreError>;
}

fn check_next(terms: &LogTerms, entries: &EntryBatch) -> Result<(), StoreError> {
    for (expect, e) in (terms.last_index() + 1..).zip(entries.iter()) {
        if e.index != expect {
            return Err(StoreError::Invalid {
                path: PathBuf::from("log"),
                detail: format!("append of entry {} where {} was expected", e.index, expect),
            });
        }
    }
    Ok(())
}

/// An in-memory store for simulations and tests.
///
/// It models a disk's page cache: `append` and `truncate_after` change only the volatile log
/// until `sync`; [`MemStore::crash`] drops what was not synced (keeping, at the caller's
/// choice, a prefix of the unsynced appends, as a disk may have written some of them). Term and
/// vote, conf and snapshots are durable when their call returns, as [`FileStore`] makes them
/// (write to a temporary file, fsync, rename, directory fsync).
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    hs: HardState,
    terms: LogTerms,
    entries: Vec<Entry>,
    snapshot: Option<Snapshot>,
    /// The last conf written.
    pub conf: Option<Conf>,
    /// How many times `sync` made something durable.
    pub syncs: u64,
    dirty: bool,
    /// The log as of the last `sync` (or snapshot install).
    durable: Vec<Entry>,
    durable_terms: LogTerms,
    /// `entries[..unchanged]` equals `durable[..unchanged]`.
    unchanged: usize,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        MemStore::default()
    }

    /// Entries appended or truncated since the last `sync`, as `(entries that survive a crash
    /// whatever happens, unsynced appends a crash may keep a prefix of)`.
    pub fn unsynced(&self) -> (usize, usize) {
        if self.unchanged >= self.durable.len() {
            (self.durable.len(), self.entries.len() - self.durable.len())
        } else {
            (self.durable.len(), 0)
        }
    }

    /// A crash: the log goes back to what was synced, plus the first `keep` unsynced appends
    /// when nothing synced was truncated since (a torn write that reached the disk in order).
    /// Returns how many unsynced entries were lost.
    pub fn crash(&mut self, keep: usize) -> usize {
        let (_, extra) = self.unsynced();
        let keep = keep.min(extra);
        let lost = self.entries.len().abs_diff(self.durable.len() + keep);
        let survivors = if extra > 0 {
            self.entries[self.durable.len()..self.durable.len() + keep].to_vec()
        } else {
            Vec::new()
        };
        self.entries.clone_from(&self.durable);
        self.terms = self.durable_terms.clone();
        for e in survivors {
            self.terms.push(e.index, e.term);
            self.entries.push(e);
        }
        self.sync_now();
        lost
    }

    /// The log's shape as of the last `sync`: what a crash now would leave at least.
    pub fn durable_terms(&self) -> &LogTerms {
        &self.durable_terms
    }

    fn sync_now(&mut self) {
        self.durable.truncate(self.unchanged);
        self.durable
            .extend_from_slice(&self.entries[self.unchanged..]);
        self.durable_terms = self.terms.clone();
        self.unchanged = self.entries.len();
    }
}

impl Storage for MemStore {
    fn hard_state(&self) -> HardState {
        self.hs.clone()
    }
    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError> {
        self.hs = hs.clone();
        Ok(())
    }
    fn terms(&self) -> &LogTerms {
        &self.terms
    }
    fn append(&mut self, entries: &EntryBatch) -> Result<(), StoreError> {
        check_next(&self.terms, entries)?;
        for e in entries.iter() {
            self.terms.push(e.index, e.term);
            self.entries.push(e.to_entry());
        }
        self.dirty |= !entries.is_empty();
        Ok(())
    }
    fn truncate_after(&mut self, index: Index) -> Result<(), StoreError> {
        let keep = index.saturating_sub(self.terms.start_index) as usize;
        self.entries.truncate(keep);
        self.unchanged = self.unchanged.min(self.entries.len());
        self.terms.truncate_after(index);
        self.dirty = true;
        Ok(())
    }
    fn sync(&mut self) -> Result<Index, StoreError> {
        if std::mem::take(&mut self.dirty) {
            self.syncs += 1;
            self.sync_now();
        }
        Ok(self.terms.last_index())
    }
    fn entries(&mut self, from: Index, to: Index) -> Result<Vec<Entry>, StoreError> {
        let start = self.terms.start_index;
        if from <= start || to > self.terms.last_index() || from > to + 1 {
            return Err(StoreError::Invalid {
                path: PathBuf::from("memory"),
                detail: format!("entries {from}..={to} are not in the log"),
            });
        }
        Ok(self.entries[(from - start - 1) as usize..(to - start) as usize].to_vec())
    }
    fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    fn install_snapshot(&mut self, snapshot: Snapshot, conf: &Conf) -> Result<(), StoreError> {
        self.terms = LogTerms::new(snapshot.last_index, snapshot.last_term);
        self.entries.clear();
        self.snapshot = Some(snapshot);
        self.conf = Some(conf.clone());
        // FileStore swaps in the new, empty log with an fsync and a rename: durable at once.
        self.unchanged = 0;
        self.sync_now();
        self.dirty = false;
        Ok(())
    }
    fn write_conf(&mut self, conf: &Conf) -> Result<(), StoreError> {
        self.conf = Some(conf.clone());
        Ok(())
    }
}

/// What [`FileStore::open`] found besides the log.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// conf's commitIndex (0 when there is no conf).
    pub conf_commit: Index,
    /// Membership entries after the snapshot point, by index.
    pub config: Vec<(Index, ConfigChange)>,
    /// Bytes cut from a torn tail, with the reason.
    pub truncated_tail: Option<(u64, String)>,
    /// Files that were ignored (stray names in `snapshot/`).
    pub ignored: Vec<PathBuf>,
}

const RECENT: usize = 8192;

/// goraft's files in a data dir. See the module docs.
#[derive(Debug)]
pub struct FileStore {
    pub(super) dir: PathBuf,
    pub(super) log_path: PathBuf,
    pub(super) file: File,
    pub(super) hs: HardState,
    pub(super) terms: LogTerms,
    /// Offset of each entry after the snapshot point.
    pub(super) offsets: Vec<u64>,
    /// Logical end of the log (written + buffered).
    pub(super) end: u64,
    /// Bytes actually written to the file.
    pub(super) written: u64,
    pub(super) wbuf: Vec<u8>,
    pub(super) dirty: bool,
    pub(super) recent: VecDeque<Entry>,
    pub(super) snapshot: Option<(PathBuf, Snapshot)>,
    /// Snapshots installed from a leader (a compaction planned before one is dropped).
    pub(super) installs: u64,
    /// The lowest byte the log was truncated to since the last compaction plan.
    pub(super) cut_below: u64,
}

/// Fsyncs a directory so a rename in it is durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir, "fsync directory"))
}

/// Writes `bytes` to `dir/name` atomically: `name.tmp`, fsync, rename, directory fsync.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_at(&tmp, "create"))?;
    f.write_all(bytes).map_err(io_at(&tmp, "write"))?;
    f.sync_all().map_err(io_at(&tmp, "fsync"))?;
    fs::rename(&tmp, &dst).map_err(io_at(&dst, "rename"))?;
    sync_dir(dir)
}

/// The common case of a `write` payload, `{"key":"K","value":"V"}\n` with no escapes, control
/// bytes or invalid UTF-8 in K and V, decoded without the general JSON parser. Anything else
/// gives `None` (the caller falls back to `format::command::decode`, which it equals).
fn plain_write(p: &[u8]) -> Option<crate::model::Command> {
    let rest = p.strip_prefix(b"{\"key\":\"")?;
    let plain = |b: &u8| *b != b'\\' && *b >= 0x20;
    let k = rest.iter().position(|&b| b == b'"')?;
    let (key, rest) = rest.split_at(k);
    let rest = rest.strip_prefix(b"\",\"value\":\"")?;
    let v = rest.iter().position(|&b| b == b'"')?;
    let (value, rest) = rest.split_at(v);
    if rest != b"\"}\n" || !key.iter().all(plain) || !value.iter().all(plain) {
        return None;
    }
    Some(crate::model::Command::Write {
        key: std::str::from_utf8(key).ok()?.to_string(),
        value: std::str::from_utf8(value).ok()?.to_string(),
    })
}

/// Reads the `name` file, or creates the dir and a name of 7 random lowercase hex digits.
pub fn ensure_name(dir: &Path, seed: u64) -> Result<String, StoreError> {
    let path = dir.join("name");
    match files::read_capped(&path, files::NAME_CAP, "a `name` file") {
        Ok(b) => String::from_utf8(b).map_err(|_| StoreError::Invalid {
            path: path.clone(),
            detail: "the node name is not UTF-8".into(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_at(dir, "create directory"))?;
            let mut rng = super::core::XorShift::new(seed);
            let name = format!("{:07x}", rng.next_u64() >> 36);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
                .map_err(io_at(&path, "create"))?;
            f.write_all(name.as_bytes())
                .map_err(io_at(&path, "write"))?;
            f.sync_all().map_err(io_at(&path, "fsync"))?;
            sync_dir(dir)?;
            Ok(name)
        }
        Err(e) => Err(io_at(&path, "read")(e)),
    }
}

/// Parses `raftdump-state`.
fn parse_state(path: &Path, bytes: &[u8]) -> Result<HardState, StoreError> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| StoreError::Invalid {
        path: path.to_owned(),
        detail: format!("invalid JSON ({e}), expected {{\"currentTerm\":N,\"votedFor\":\"name\"}}"),
    })?;
    let term = v
        .get("currentTerm")
        .and_then(|t| t.as_u64())
        .ok_or_else(|| StoreError::Invalid {
            path: path.to_owned(),
            detail: "currentTerm is missing or not an unsigned integer".into(),
        })?;
    let voted_for = match v.get("votedFor") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(StoreError::Invalid {
                path: path.to_owned(),
                detail: format!("votedFor is {other}, expected a string or null"),
            })
        }
    };
    Ok(HardState { term, voted_for })
}

/// Loads the snapshot goraft's rules would want, chosen numerically by (index, term).
fn load_snapshot(
    dir: &Path,
    report: &mut LoadReport,
) -> Result<Option<(PathBuf, Snapshot)>, StoreError> {
    let sdir = dir.join("snapshot");
    let Ok(rd) = fs::read_dir(&sdir) else {
        return Ok(None);
    };
    let mut best: Option<((Index, u64), PathBuf)> = None;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        match snapshot_format::parse_file_name(&name) {
            Some((t, i)) => {
                if best.as_ref().is_none_or(|(k, _)| (i, t) > *k) {
                    best = Some(((i, t), e.path()));
                }
            }
            None => report.ignored.push(e.path()),
        }
    }
    let Some((_, path)) = best else {
        return Ok(None);
    };
    let invalid = |detail: String| StoreError::Invalid {
        path: path.clone(),
        detail,
    };
    let parsed = files::read_snapshot(&path)
        .map_err(io_at(&path, "read"))?
        .1
        .map_err(|e| invalid(e.to_string()))?;
    if !parsed.crc_ok() {
        return Err(invalid(format!(
            "CRC mismatch: header says {:08x}, content is {:08x}",
            parsed.declared_crc, parsed.actual_crc
        )));
    }
    let snap = parsed.snapshot.map_err(|e| invalid(e.to_string()))?;
    Ok(Some((path, snap)))
}

impl FileStore {
    /// The error for damage `d` found reading the frames from byte `base` on, the first of
    /// them entry `from`.
    fn damaged(&self, base: u64, from: Index, d: crate::format::log::LogError) -> StoreError {
        StoreError::Damaged {
            path: self.log_path.clone(),
            offset: base + d.offset,
            entry: from + d.entry,
            detail: d.to_string(),
        }
    }

    /// Opens (creating files as goraft does) the data dir `dir`, which must exist.
    pub fn open(dir: &Path) -> Result<(FileStore, LoadReport), StoreError> {
        let mut report = LoadReport::default();
        let sdir = dir.join("snapshot");
        if !sdir.exists() {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&sdir)
                .map_err(io_at(&sdir, "create directory"))?;
        }
        let state_path = dir.join(STATE_FILE);
        let hs = match files::read_capped(&state_path, STATE_CAP, "raftdump-state") {
            Ok(b) => parse_state(&state_path, &b)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => HardState::default(),
            Err(e) => return Err(io_at(&state_path, "read")(e)),
        };
        let conf_path = dir.join("conf");
        report.conf_commit = match files::read_capped(&conf_path, files::CONF_CAP, "a `conf` file")
        {
            Ok(b) => {
                conf_format::parse(&b)
                    .map_err(|e| StoreError::Invalid {
                        path: conf_path.clone(),
                        detail: e.to_string(),
                    })?
                    .commit_index
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_at(&conf_path, "read")(e)),
        };
        for t in compaction::TEMP_FILES {
            // Only the renames of a compaction commit; what was left before them goes.
            match fs::remove_file(dir.join(t)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_at(&dir.join(t), "remove")(e))
                }
                _ => {}
            }
        }
        let snapshot = load_snapshot(dir, &mut report)?;
        let (start, start_term) = snapshot
            .as_ref()
            .map_or((0, 0), |(_, s)| (s.last_index, s.last_term));

        let log_path = dir.join("log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&log_path)
            .map_err(io_at(&log_path, "open"))?;
        let mut terms = LogTerms::new(start, start_term);
        let mut offsets = Vec::new();
        let mut end = 0u64;
        let mut damage: Option<crate::format::log::LogError> = None;
        {
            let bytes = LogBytes::open(&log_path).map_err(|e| match e {
                // The message names the file once.
                crate::datadir::LoadError::Io { error, .. } => io_at(&log_path, "map")(error),
                other => StoreError::Invalid {
                    path: log_path.clone(),
                    detail: other.to_string(),
                },
            })?;
            for r in LogReader::new(bytes.bytes()) {
                match r {
                    Ok(e) => {
                        if let Some(d) = damage {
                            return Err(StoreError::Damaged {
                                path: log_path,
                                offset: d.offset,
                                entry: d.entry,
                                detail: d.to_string(),
                            });
                        }
                        let index = e.index();
                        if index <= start && offsets.is_empty() {
                            end = e.end();
                            continue;
                        }
                        if index != terms.last_index() + 1 {
                            return Err(StoreError::Gap {
                                path: log_path,
                                offset: e.offset,
                                expected: terms.last_index() + 1,
                                found: index,
                            });
                        }
                        if let Some(c) = ConfigChange::of(&e.name(), e.payload()) {
                            report.config.push((index, c));
                        }
                        offsets.push(e.offset);
                        terms.push(index, e.term());
                        end = e.end();
                    }
                    Err(d) => {
                        if damage.is_none() {
                            damage = Some(d);
                        }
                    }
                }
            }
        }
        if let Some(d) = &damage {
            // A write torn by a crash and zero-filled by the file system (the size reached the
            // disk, the data did not) can leave a frame whose declared length is covered by
            // NULs: it parses, but its body is not what was written. A frame that ends in a
            // NUL right before the NUL run is that torn frame: it goes with the tail. (It was
            // never fsynced, so never acknowledged.)
            if matches!(d.kind, crate::format::log::DamageKind::NulRun)
                && d.offset == end
                && end > 0
                && !offsets.is_empty()
            {
                let mut last = [0u8; 1];
                file.read_exact_at(&mut last, end - 1)
                    .map_err(io_at(&log_path, "read"))?;
                if last[0] == 0 {
                    let torn_at = offsets.pop().unwrap_or(end);
                    let index = terms.last_index();
                    terms.truncate_after(index - 1);
                    report.config.retain(|(i, _)| *i != index);
                    end = torn_at;
                }
            }
        }
        if let Some(d) = damage {
            // A torn tail (goraft truncates there too); set_len and write at `end` below, so
            // there is no NUL hole.
            file.set_len(end)
                .map_err(io_at(&log_path, "truncate torn tail"))?;
            file.sync_all().map_err(io_at(&log_path, "fsync"))?;
            report.truncated_tail = Some((d.len, d.to_string()));
        }
        Ok((
            FileStore {
                dir: dir.to_owned(),
                log_path,
                file,
                hs,
                terms,
                offsets,
                end,
                written: end,
                wbuf: Vec::new(),
                dirty: false,
                recent: VecDeque::new(),
                snapshot,
                installs: 0,
                cut_below: u64::MAX,
            },
            report,
        ))
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn flush_writes(&mut self) -> Result<(), StoreError> {
        if !self.wbuf.is_empty() {
            self.file
                .write_all_at(&self.wbuf, self.written)
                .map_err(io_at(&self.log_path, "write"))?;
            self.written += self.wbuf.len() as u64;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Writes what is buffered to the file without an fsync; returns the last index.
    pub fn write_out(&mut self) -> Result<Index, StoreError> {
        self.flush_writes()?;
        Ok(self.terms.last_index())
    }

    /// A second handle on the log file, for an fsync on another thread (it covers everything
    /// [`FileStore::write_out`] wrote before it starts).
    pub fn sync_handle(&self) -> Result<File, StoreError> {
        self.file
            .try_clone()
            .map_err(io_at(&self.log_path, "duplicate handle"))
    }

    /// Calls `f` with the decoded command of every entry `from..=to`, read from the file in
    /// large chunks without building [`Entry`] values (the fast path for applying a long log).
    /// The range must have been written out ([`FileStore::write_out`]).
    pub fn decode_range(
        &self,
        from: Index,
        to: Index,
        f: &mut dyn FnMut(Index, crate::model::Command),
    ) -> Result<(), StoreError> {
        self.read_range(from, to, &mut |i, e| {
            let cmd = match (e.wire.name, e.payload()) {
                (b"write", Some(p)) => plain_write(p).unwrap_or_else(|| e.command()),
                _ => e.command(),
            };
            f(i, cmd);
        })
    }

    /// Calls `f` with every entry `from..=to` as read from the file (checked: no damage, each
    /// index one above the last), in large chunks; see [`FileStore::decode_range`].
    pub fn read_range(
        &self,
        from: Index,
        to: Index,
        f: &mut dyn FnMut(Index, &crate::format::log::RawEntry<'_>),
    ) -> Result<(), StoreError> {
        let start = self.terms.start_index;
        let out_of_range = || StoreError::Invalid {
            path: self.log_path.clone(),
            detail: format!("entries {from}..={to} are not written in the log"),
        };
        if from <= start || to > self.terms.last_index() || from > to {
            return Err(out_of_range());
        }
        let (a, b) = (self.offset_of(from), self.offset_of(to + 1));
        if b > self.written {
            return Err(out_of_range());
        }
        let mut buf = vec![0u8; (b - a) as usize];
        self.file
            .read_exact_at(&mut buf, a)
            .map_err(io_at(&self.log_path, "read"))?;
        for (expect, r) in (from..).zip(LogReader::new(&buf)) {
            let e = r.map_err(|d| self.damaged(a, from, d))?;
            if e.index() != expect {
                return Err(StoreError::Gap {
                    path: self.log_path.clone(),
                    offset: a + e.offset,
                    expected: expect,
                    found: e.index(),
                });
            }
            f(expect, &e);
        }
        Ok(())
    }

    pub(super) fn offset_of(&self, index: Index) -> u64 {
        let k = (index - self.terms.start_index - 1) as usize;
        self.offsets.get(k).copied().unwrap_or(self.end)
    }
}

impl Drop for FileStore {
    /// A clean stop writes and syncs what is buffered (a crash may lose it: it was never
    /// acknowledged).
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            log::error!("{e}");
        }
    }
}

impl Storage for FileStore {
    fn hard_state(&self) -> HardState {
        self.hs.clone()
    }

    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError> {
        let mut out = b"{\"currentTerm\":".to_vec();
        out.extend_from_slice(hs.term.to_string().as_bytes());
        out.extend_from_slice(b",\"votedFor\":");
        match &hs.voted_for {
            Some(v) => crate::format::gojson::write_string(v.as_bytes(), &mut out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}\n");
        write_atomic(&self.dir, STATE_FILE, &out)?;
        self.hs = hs.clone();
        Ok(())
    }

    fn terms(&self) -> &LogTerms {
        &self.terms
    }

    /// Writes each entry's body as it is in the batch (canonical by the batch's invariant),
    /// through the write buffer in pieces of about 1 MiB: a received batch is never copied
    /// whole. Only the last [`RECENT`] entries are copied, into the cache.
    fn append(&mut self, entries: &EntryBatch) -> Result<(), StoreError> {
        check_next(&self.terms, entries).map_err(|_| StoreError::Invalid {
            path: self.log_path.clone(),
            detail: format!(
                "append of entry {} after {}",
                entries.first().map_or(0, |e| e.index),
                self.terms.last_index()
            ),
        })?;
        self.offsets.reserve(entries.len());
        // The cache stays one run of consecutive entries ending at the last.
        let cached_from = entries.len().saturating_sub(RECENT);
        if cached_from > 0 {
            self.recent.clear();
        }
        for (k, e) in entries.iter().enumerate() {
            self.offsets.push(self.end);
            let before = self.wbuf.len();
            encode_frame_of(e.body, &mut self.wbuf);
            self.end += (self.wbuf.len() - before) as u64;
            self.terms.push(e.index, e.term);
            if k >= cached_from {
                if self.recent.len() == RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(e.to_entry());
            }
            if self.wbuf.len() > 1 << 20 {
                self.flush_writes()?;
            }
        }
        self.dirty |= !entries.is_empty();
        Ok(())
    }

    fn truncate_after(&mut self, index: Index) -> Result<(), StoreError> {
        if index >= self.terms.last_index() {
            return Ok(());
        }
        let index = index.max(self.terms.start_index);
        let new_end = self.offset_of(index + 1);
        if new_end >= self.written {
            self.wbuf.truncate((new_end - self.written) as usize);
        } else {
            self.wbuf.clear();
            self.file
                .set_len(new_end)
                .map_err(io_at(&self.log_path, "truncate"))?;
            self.written = new_end;
        }
        self.offsets
            .truncate((index - self.terms.start_index) as usize);
        self.cut_below = self.cut_below.min(new_end);
        self.end = new_end;
        self.terms.truncate_after(index);
        while self.recent.back().is_some_and(|e| e.index > index) {
            self.recent.pop_back();
        }
        self.dirty = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<Index, StoreError> {
        self.flush_writes()?;
        if std::mem::take(&mut self.dirty) {
            self.file
                .sync_data()
                .map_err(io_at(&self.log_path, "fsync"))?;
        }
        Ok(self.terms.last_index())
    }

    fn entries(&mut self, from: Index, to: Index) -> Result<Vec<Entry>, StoreError> {
        let start = self.terms.start_index;
        if from <= start || to > self.terms.last_index() || from > to + 1 {
            return Err(StoreError::Invalid {
                path: self.log_path.clone(),
                detail: format!("entries {from}..={to} are not in the log"),
            });
        }
        if from > to {
            return Ok(Vec::new());
        }
        if let Some(first) = self.recent.front().map(|e| e.index) {
            if from >= first {
                let k = (from - first) as usize;
                return Ok(self
                    .recent
                    .range(k..k + (to - from + 1) as usize)
                    .cloned()
                    .collect());
            }
        }
        self.flush_writes()?;
        let a = self.offset_of(from);
        let b = self.offset_of(to + 1);
        let mut buf = vec![0u8; (b - a) as usize];
        self.file
            .read_exact_at(&mut buf, a)
            .map_err(io_at(&self.log_path, "read"))?;
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        for r in LogReader::new(&buf) {
            let e = r.map_err(|d| self.damaged(a, from, d))?;
            out.push(e.to_entry());
        }
        if out.len() as u64 != to - from + 1 || out.first().map(|e| e.index) != Some(from) {
            return Err(StoreError::Invalid {
                path: self.log_path.clone(),
                detail: format!("bytes {a}..{b} do not hold entries {from}..={to}"),
            });
        }
        Ok(out)
    }

    fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref().map(|(_, s)| s)
    }

    fn install_snapshot(&mut self, mut snapshot: Snapshot, conf: &Conf) -> Result<(), StoreError> {
        let sdir = self.dir.join("snapshot");
        let path = sdir.join(format!("{}_{}.ss", snapshot.last_term, snapshot.last_index));
        snapshot.path = path.to_string_lossy().into_owned();
        let bytes = snapshot_format::encode(&snapshot);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_at(&path, "create"))?;
        f.write_all(&bytes).map_err(io_at(&path, "write"))?;
        f.sync_all().map_err(io_at(&path, "fsync"))?;
        sync_dir(&sdir)?;
        // The log restarts empty after the snapshot point: log.new (truncated, unlike goraft),
        // fsync, rename, directory fsync.
        let new_path = self.dir.join("log.new");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&new_path)
            .map_err(io_at(&new_path, "create"))?;
        file.sync_all().map_err(io_at(&new_path, "fsync"))?;
        fs::rename(&new_path, &self.log_path).map_err(io_at(&self.log_path, "rename"))?;
        sync_dir(&self.dir)?;
        if let Some((old, _)) = &self.snapshot {
            if *old != path {
                let _ = fs::remove_file(old);
            }
        }
        self.file = file;
        self.terms = LogTerms::new(snapshot.last_index, snapshot.last_term);
        self.offsets.clear();
        self.end = 0;
        self.written = 0;
        self.wbuf.clear();
        self.recent.clear();
        self.dirty = false;
        self.snapshot = Some((path, snapshot));
        self.installs += 1;
        self.write_conf(conf)
    }

    fn write_conf(&mut self, conf: &Conf) -> Result<(), StoreError> {
        write_atomic(&self.dir, "conf", &conf_format::encode(conf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::log::encode_frame;
    use crate::model::Peer;

    fn b(es: &[Entry]) -> EntryBatch {
        EntryBatch::from_entries(es)
    }

    fn e(index: Index, term: u64, v: &str) -> Entry {
        Entry {
            index,
            term,
            name: "write".into(),
            payload: Some(format!("{{\"key\":\"k\",\"value\":\"{v}\"}}\n").into_bytes()),
        }
    }

    /// Regression (found by tests/it/store_crash.rs, seed 1, crash point 3): a crash that
    /// tore the last frame and zero-filled the rest (size on disk, data not) left a frame that
    /// parses with NULs in its payload; the loader kept it as a good entry, a different entry
    /// under the same index and term as the leader's. It is now cut with the torn tail.
    #[test]
    fn a_zero_filled_torn_frame_goes_with_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = FileStore::open(dir.path()).unwrap();
            s.append(&b(&[e(1, 1, "a"), e(2, 1, "bbbbbbbbbbbbbbbbbbbb")]))
                .unwrap();
            s.sync().unwrap();
        }
        let log = dir.path().join("log");
        let mut bytes = fs::read(&log).unwrap();
        let n = bytes.len();
        bytes[n - 12..].fill(0);
        bytes.resize(n + 300, 0);
        fs::write(&log, &bytes).unwrap();
        let (mut s, report) = FileStore::open(dir.path()).unwrap();
        assert_eq!(s.terms().last_index(), 1);
        assert_eq!(s.entries(1, 1).unwrap(), [e(1, 1, "a")]);
        assert!(report.truncated_tail.is_some());
        // Not without the zeros: an intact last frame followed by NULs stays.
        drop(s);
        let (mut s, _) = FileStore::open(dir.path()).unwrap();
        s.append(&b(&[e(2, 1, "b")])).unwrap();
        s.sync().unwrap();
        drop(s);
        let mut bytes = fs::read(&log).unwrap();
        bytes.resize(bytes.len() + 300, 0);
        fs::write(&log, &bytes).unwrap();
        let (s, _) = FileStore::open(dir.path()).unwrap();
        assert_eq!(s.terms().last_index(), 2);
    }

    /// The conformance suite every [`Storage`] must pass.
    fn conformance(s: &mut dyn Storage) {
        assert_eq!(s.terms().last_index(), 0);
        s.append(&b(&[e(1, 0, "a"), e(2, 0, "b"), e(3, 1, "c")]))
            .unwrap();
        assert!(s.append(&b(&[e(5, 1, "x")])).is_err(), "a gap is refused");
        assert_eq!(s.entries(2, 3).unwrap(), [e(2, 0, "b"), e(3, 1, "c")]);
        assert_eq!(s.sync().unwrap(), 3);
        s.truncate_after(1).unwrap();
        assert_eq!((s.terms().last_index(), s.terms().term_at(1)), (1, Some(0)));
        s.append(&b(&[e(2, 2, "B")])).unwrap();
        assert_eq!(s.sync().unwrap(), 2);
        assert_eq!(s.entries(1, 2).unwrap(), [e(1, 0, "a"), e(2, 2, "B")]);
        assert!(s.entries(2, 3).is_err());
        let hs = HardState {
            term: 7,
            voted_for: Some("n\"2".into()),
        };
        s.save_hard_state(&hs).unwrap();
        assert_eq!(s.hard_state(), hs);
        let conf = Conf {
            commit_index: 2,
            peers: vec![],
        };
        s.install_snapshot(
            Snapshot {
                last_index: 10,
                last_term: 2,
                peers: Some(vec![Peer {
                    name: "a".into(),
                    connection_string: "http://a".into(),
                }]),
                state: Some(b"{}".to_vec()),
                path: String::new(),
            },
            &conf,
        )
        .unwrap();
        assert_eq!((s.terms().start_index, s.terms().last_index()), (10, 10));
        s.append(&b(&[e(11, 3, "z")])).unwrap();
        assert_eq!(s.entries(11, 11).unwrap(), [e(11, 3, "z")]);
        assert_eq!(s.snapshot().map(|x| x.last_index), Some(10));
    }

    #[test]
    fn the_plain_write_fast_path_equals_the_json_decoder() {
        let cases: [&[u8]; 9] = [
            b"{\"key\":\"foo\",\"value\":\"bar\"}\n",
            b"{\"key\":\"\",\"value\":\"\"}\n",
            b"{\"key\":\"k\",\"value\":\"a\\\"b\"}\n",
            b"{\"key\":\"k\",\"value\":\"\\u003c\"}\n",
            b"{\"key\":\"k\",\"value\":\"\xc3\xa9\"}\n",
            b"{\"key\":\"k\",\"value\":\"\xff\"}\n",
            b"{\"key\":\"k\",\"value\":\"v\"}",
            b"{\"value\":\"v\",\"key\":\"k\"}\n",
            b"{\"key\":\"k\t\",\"value\":\"v\"}\n",
        ];
        for p in cases {
            let slow = crate::format::command::decode(b"write", Some(p));
            if let Some(fast) = plain_write(p) {
                assert_eq!(fast, slow, "{}", String::from_utf8_lossy(p));
            }
        }
        assert!(plain_write(cases[0]).is_some() && plain_write(cases[4]).is_some());
        assert!(plain_write(cases[2]).is_none() && plain_write(cases[5]).is_none());
    }

    #[test]
    fn memory_store_conforms() {
        conformance(&mut MemStore::new());
    }

    #[test]
    fn file_store_conforms_and_writes_goraft_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = FileStore::open(dir.path()).unwrap();
        conformance(&mut s);
        drop(s);
        let log = fs::read(dir.path().join("log")).unwrap();
        let mut expected = Vec::new();
        encode_frame(
            11,
            3,
            b"write",
            Some(b"{\"key\":\"k\",\"value\":\"z\"}\n"),
            &mut expected,
        );
        assert_eq!(log, expected);
        assert_eq!(
            fs::read(dir.path().join("conf")).unwrap(),
            b"{\"commitIndex\":2,\"peers\":[]}"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(STATE_FILE)).unwrap(),
            "{\"currentTerm\":7,\"votedFor\":\"n\\\"2\"}\n"
        );
        assert!(dir.path().join("snapshot/2_10.ss").exists());
        assert!(!dir.path().join("conf.tmp").exists());
        // Reopen: everything comes back.
        let (mut s, report) = FileStore::open(dir.path()).unwrap();
        assert_eq!((s.terms().start_index, s.terms().last_index()), (10, 11));
        assert_eq!(s.hard_state().term, 7);
        assert_eq!(report.conf_commit, 2);
        assert_eq!(s.entries(11, 11).unwrap(), [e(11, 3, "z")]);
    }

    #[test]
    fn reads_old_entries_from_the_file_and_truncates_without_a_hole() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = FileStore::open(dir.path()).unwrap();
        let many: Vec<Entry> = (1..=RECENT as u64 + 100)
            .map(|i| e(i, 1, &i.to_string()))
            .collect();
        s.append(&b(&many)).unwrap();
        s.sync().unwrap();
        assert_eq!(s.entries(5, 7).unwrap(), many[4..7]);
        drop(s);
        // A torn tail: cut in the middle of the last frame, then reopen, append, reopen.
        let path = dir.path().join("log");
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (mut s, report) = FileStore::open(dir.path()).unwrap();
        assert!(report.truncated_tail.is_some());
        let last = s.terms().last_index();
        assert_eq!(last, RECENT as u64 + 99);
        s.append(&b(&[e(last + 1, 2, "new")])).unwrap();
        s.sync().unwrap();
        drop(s);
        let bytes = fs::read(&path).unwrap();
        let good = LogReader::new(&bytes).filter(|r| r.is_ok()).count();
        assert_eq!(good as u64, last + 1);
        assert!(LogReader::new(&bytes).all(|r| r.is_ok()), "no NUL hole");
    }

    #[test]
    fn mid_log_damage_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = FileStore::open(dir.path()).unwrap();
        s.append(&b(&[e(1, 0, "a"), e(2, 0, "b")])).unwrap();
        s.sync().unwrap();
        drop(s);
        let path = dir.path().join("log");
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] = b'Z';
        fs::write(&path, &bytes).unwrap();
        let err = FileStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::Damaged { offset: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn new_name_is_seven_hex_digits_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("new");
        let n = ensure_name(&d, 42).unwrap();
        assert_eq!(n.len(), 7);
        assert!(n
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(ensure_name(&d, 7).unwrap(), n);
    }
}
