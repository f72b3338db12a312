//! `serve --snapshot-every N`: a node's own snapshots and the log compaction that follows them,
//! as goraft's `TakeSnapshot` does, made crash-safe and kept off the write path.
//!
//! # Design
//! 1. **Plan** (runtime thread, cheap): once `N` entries were applied since the last snapshot,
//!    the runtime clones the state machine ([`crate::replay::kv::Kv`] is a plain map) and asks
//!    the store for a [`Plan`]: the snapshot point `I` (the applied index), the compaction
//!    point `C = min(I, last - 200)` (goraft keeps 200 entries after a snapshot), the byte
//!    range of the log to keep that is already written (`from..to`), and a handle on the log.
//! 2. **Prepare** (a background thread, the slow part): the state is serialized as raftd's db
//!    would `Save` it, written to `snapshot.new` in the data dir, fsynced, renamed to
//!    `snapshot/<term>_<index>.ss` (the name goraft gives it) and the `snapshot` directory
//!    fsynced; then `log.new` is created empty, the bytes `from..to` copied into it and
//!    fsynced. Appends go on meanwhile: they only add bytes after `to`.
//! 3. **Finish** (runtime thread, short): the bytes appended since `to` are copied to
//!    `log.new`, which is fsynced and renamed over `log`; the directory is fsynced; the store
//!    rebases its offsets and starts after `I`; older `.ss` files are removed. If the log was
//!    truncated below `to`, or a leader's snapshot was installed meanwhile, the compaction is
//!    dropped (the snapshot file stays: it is valid).
//!
//! The renames are the commit points. A crash before the `.ss` rename leaves `snapshot.new`;
//! before the `log` rename it leaves `log.new`: neither is ever read, and opening a data dir
//! removes both. A snapshot whose log was not compacted yet is fine: the loader skips log
//! entries at or below the snapshot point, as goraft does with the 200 entries it keeps.
//! [`Steps`] numbers every file-system call so that tests can stop after any of them.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::storage::{FileStore, StoreError};
use crate::format::snapshot as snapshot_format;
use crate::model::Peer;
use crate::model::{Index, Snapshot, Term};

impl FileStore {
    /// Step 1 of [the module docs](self): a snapshot of `kv_applied` (with `peers`, the state to be
    /// filled in) and the bytes to keep. `None` when there is nothing new to snapshot.
    pub fn plan_snapshot(
        &mut self,
        applied: Index,
        peers: Vec<Peer>,
    ) -> Result<Option<Plan>, StoreError> {
        let start = self.terms.start_index;
        let Some(term) = self.terms.term_at(applied).filter(|_| applied > start) else {
            return Ok(None);
        };
        self.flush_writes()?;
        let keep_after = applied.min(self.terms.last_index().saturating_sub(KEEP));
        let from = if keep_after > start {
            self.offset_of(keep_after + 1)
        } else {
            0
        };
        let path = self
            .dir
            .join("snapshot")
            .join(format!("{term}_{applied}.ss"));
        self.cut_below = u64::MAX;
        Ok(Some(Plan {
            dir: self.dir.clone(),
            snapshot: Snapshot {
                last_index: applied,
                last_term: term,
                peers: Some(peers),
                state: None,
                path: path.to_string_lossy().into_owned(),
            },
            from,
            to: self.written,
            log: self.sync_handle()?,
            installs: self.installs,
        }))
    }

    /// Step 3 of [the module docs](self): swaps `log.new` in with the bytes appended meanwhile, and
    /// starts the log after the snapshot. Returns the new snapshot point, or `None` when the
    /// compaction was dropped (see the module docs).
    pub fn finish_compaction(
        &mut self,
        p: Prepared,
        steps: &mut Steps,
    ) -> Result<Option<(Index, Term)>, StoreError> {
        let (index, term) = (p.snapshot.last_index, p.snapshot.last_term);
        let new_path = self.dir.join(TEMP_FILES[1]);
        if p.installs != self.installs
            || self.cut_below < p.copied
            || self.terms.term_at(index) != Some(term)
        {
            drop(p.new_log);
            steps.run(&new_path, "remove", || fs::remove_file(&new_path))?;
            return Ok(None);
        }
        self.flush_writes()?;
        copy(
            steps,
            &self.file,
            &p.new_log,
            p.copied,
            self.written,
            p.from,
        )?;
        steps.run(&new_path, "fsync", || p.new_log.sync_all())?;
        steps.run(&self.log_path, "rename", || {
            fs::rename(&new_path, &self.log_path)
        })?;
        sync_dir(steps, &self.dir)?;
        let old = self.snapshot.replace((p.path, p.snapshot));
        self.file = p.new_log;
        let drop_n = (index - self.terms.start_index) as usize;
        self.offsets.drain(..drop_n);
        for o in &mut self.offsets {
            *o -= p.from;
        }
        self.end -= p.from;
        self.written -= p.from;
        self.terms.compact_to(index, term);
        while self.recent.front().is_some_and(|e| e.index <= index) {
            self.recent.pop_front();
        }
        let mut older = older_snapshots(&self.dir, index, term);
        if let Some((path, _)) = old {
            if !older.contains(&path) && path.exists() && path != self.snapshot_path() {
                older.push(path);
            }
        }
        for f in &older {
            steps.run(f, "remove", || fs::remove_file(f))?;
        }
        if !older.is_empty() {
            sync_dir(steps, &self.dir.join("snapshot"))?;
        }
        Ok(Some((index, term)))
    }

    fn snapshot_path(&self) -> PathBuf {
        self.snapshot
            .as_ref()
            .map(|(p, _)| p.clone())
            .unwrap_or_default()
    }
}

/// Entries goraft keeps in the log after a snapshot (`NumberOfLogEntriesAfterSnapshot`).
pub const KEEP: u64 = 200;

/// The temporary names, never read and removed on open.
pub const TEMP_FILES: [&str; 2] = ["snapshot.new", "log.new"];

/// A failpoint: counts file-system steps and fails after `limit` of them (tests only set one).
#[derive(Debug, Default)]
pub struct Steps {
    done: usize,
    limit: Option<usize>,
}

impl Steps {
    /// No limit.
    pub fn all() -> Self {
        Steps::default()
    }

    /// Stops (as a crash would) after `k` steps.
    pub fn stop_after(k: usize) -> Self {
        Steps {
            done: 0,
            limit: Some(k),
        }
    }

    /// Steps taken so far.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Runs step `f` unless the limit was reached.
    pub fn run<T>(
        &mut self,
        path: &Path,
        op: &'static str,
        f: impl FnOnce() -> std::io::Result<T>,
    ) -> Result<T, StoreError> {
        if self.limit.is_some_and(|l| self.done >= l) {
            return Err(StoreError::Io {
                path: path.to_owned(),
                op,
                error: std::io::Error::other("stopped by a test failpoint"),
            });
        }
        self.done += 1;
        f().map_err(|error| StoreError::Io {
            path: path.to_owned(),
            op,
            error,
        })
    }
}

/// What the background thread needs: made by [`super::storage::FileStore::plan_snapshot`].
#[derive(Debug)]
pub struct Plan {
    /// The data dir.
    pub dir: PathBuf,
    /// The snapshot, its `state` still to fill in and its `path` set.
    pub snapshot: Snapshot,
    /// The first byte of the log to keep, and the end of what was written at planning time.
    pub from: u64,
    /// See `from`.
    pub to: u64,
    /// A read handle on the log.
    pub log: File,
    /// The store's install counter at planning time.
    pub installs: u64,
}

/// A durable snapshot and a `log.new` holding `from..copied`: made by [`prepare`].
#[derive(Debug)]
pub struct Prepared {
    /// The snapshot (with its state) and its file.
    pub snapshot: Snapshot,
    /// Its file.
    pub path: PathBuf,
    /// The first byte kept.
    pub from: u64,
    /// Bytes `from..copied` are in `log.new`.
    pub copied: u64,
    /// The open `log.new`.
    pub new_log: File,
    /// See [`Plan::installs`].
    pub installs: u64,
}

/// Fsyncs a directory.
pub fn sync_dir(steps: &mut Steps, dir: &Path) -> Result<(), StoreError> {
    steps.run(dir, "fsync directory", || File::open(dir)?.sync_all())
}

/// Step 2 of the module docs: the `.ss` file, then `log.new` with the written bytes to keep.
pub fn prepare(plan: Plan, steps: &mut Steps) -> Result<Prepared, StoreError> {
    let bytes = snapshot_format::encode(&plan.snapshot);
    let tmp = plan.dir.join(TEMP_FILES[0]);
    let path = PathBuf::from(&plan.snapshot.path);
    let mut f = steps.run(&tmp, "create", || {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
    })?;
    steps.run(&tmp, "write", || f.write_all(&bytes))?;
    steps.run(&tmp, "fsync", || f.sync_all())?;
    steps.run(&path, "rename", || fs::rename(&tmp, &path))?;
    sync_dir(steps, &plan.dir.join("snapshot"))?;
    let new_path = plan.dir.join(TEMP_FILES[1]);
    let new_log = steps.run(&new_path, "create", || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&new_path)
    })?;
    copy(steps, &plan.log, &new_log, plan.from, plan.to, plan.from)?;
    steps.run(&new_path, "fsync", || new_log.sync_all())?;
    Ok(Prepared {
        snapshot: plan.snapshot,
        path,
        from: plan.from,
        copied: plan.to,
        new_log,
        installs: plan.installs,
    })
}

/// Copies bytes `a..b` of `src` to `dst` at `a - base`, in 1 MiB steps.
pub fn copy(
    steps: &mut Steps,
    src: &File,
    dst: &File,
    a: u64,
    b: u64,
    base: u64,
) -> Result<(), StoreError> {
    let mut buf = vec![0u8; (1 << 20).min((b - a) as usize)];
    let mut at = a;
    while at < b {
        let n = ((b - at) as usize).min(buf.len());
        let chunk = &mut buf[..n];
        steps.run(Path::new("log"), "read", || src.read_exact_at(chunk, at))?;
        steps.run(Path::new("log.new"), "write", || {
            dst.write_all_at(chunk, at - base)
        })?;
        at += n as u64;
    }
    Ok(())
}

/// The `.ss` files in `dir/snapshot` older than `(index, term)`.
pub fn older_snapshots(dir: &Path, index: Index, term: Term) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir.join("snapshot")) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| {
            snapshot_format::parse_file_name(&e.file_name().to_string_lossy())
                .is_some_and(|(t, i)| (i, t) < (index, term))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::batch::EntryBatch;
    use crate::format::command;
    use crate::model::{Entry, Peer};
    use crate::node::exec;
    use crate::node::storage::{FileStore, Storage};

    const N: u64 = 600;

    fn entry(index: Index) -> Entry {
        let (name, payload) = if index == 1 {
            (
                "raft:join",
                command::encode_join("n1", "http://localhost:4001"),
            )
        } else {
            let k = format!("k{index}");
            ("write", command::encode_write(k.as_bytes(), b"v"))
        };
        Entry {
            index,
            term: 1,
            name: name.into(),
            payload: Some(payload),
        }
    }

    /// A node's dir with entries 1..=N, all applied; conf says so.
    fn node(dir: &Path) -> FileStore {
        fs::write(dir.join("name"), "n1").unwrap();
        let (mut s, _) = FileStore::open(dir).unwrap();
        let all: Vec<Entry> = (1..=N).map(entry).collect();
        s.append(&EntryBatch::from_entries(&all)).unwrap();
        s.sync().unwrap();
        s.write_conf(&crate::model::Conf {
            commit_index: N,
            peers: vec![],
        })
        .unwrap();
        s
    }

    /// A snapshot at `at` (and compaction) stopped after `k` steps, with more entries appended
    /// between its background part and its end.
    fn snapshot_stopped(dir: &Path, at: Index, k: usize) -> usize {
        let mut s = node(dir);
        let mut steps = Steps::stop_after(k);
        let peers = vec![Peer {
            name: "n1".into(),
            connection_string: "http://localhost:4001".into(),
        }];
        let mut plan = s.plan_snapshot(at, peers).unwrap().unwrap();
        let mut kv = crate::replay::kv::Kv::new();
        exec::apply_to(&mut s, &mut kv, at, "n1", false).unwrap();
        plan.snapshot.state = Some(exec::snapshot_state(&kv));
        if let Ok(p) = prepare(plan, &mut steps) {
            s.append(&EntryBatch::from_entries(&[entry(N + 1)]))
                .unwrap();
            s.sync().unwrap();
            let _ = s.finish_compaction(p, &mut steps);
        }
        // A kill -9: nothing more reaches the files (the drop only syncs the log, which a
        // crash after a write would also keep in the page cache).
        std::mem::forget(s);
        steps.done()
    }

    fn reopen_and_verify(dir: &Path, k: usize) {
        let (mut s, report) = FileStore::open(dir).unwrap_or_else(|e| panic!("step {k}: {e}"));
        let (kv, _) = exec::startup(&mut s, report.conf_commit, report.config, "n1").unwrap();
        for i in 2..=N {
            assert_eq!(kv.get(&format!("k{i}")), Some("v"), "step {k}: key k{i}");
        }
        assert!(s.terms().last_index() >= N, "step {k}");
        drop(s);
        for t in TEMP_FILES {
            assert!(!dir.join(t).exists(), "step {k}: {t} left");
        }
        let d = crate::datadir::open(dir).unwrap();
        let (reports, across) = crate::check::cluster::check_all(&[d]);
        let mut all = crate::check::Report::default();
        for r in reports {
            all.findings.extend(r.findings);
        }
        all.findings.extend(across);
        assert!(!all.fails(false), "step {k}: {:#?}", all.findings);
    }

    #[test]
    fn a_crash_after_any_step_leaves_a_dir_that_starts_and_verifies_clean() {
        let whole = {
            let dir = tempfile::tempdir().unwrap();
            snapshot_stopped(dir.path(), N - 50, usize::MAX)
        };
        assert!(whole > 10, "{whole} steps");
        for k in 0..=whole {
            let dir = tempfile::tempdir().unwrap();
            snapshot_stopped(dir.path(), N - 50, k);
            reopen_and_verify(dir.path(), k);
        }
    }

    #[test]
    fn compaction_keeps_200_entries_and_a_second_snapshot_removes_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = node(dir.path());
        for at in [N - 300, N - 10] {
            let mut plan = s.plan_snapshot(at, vec![]).unwrap().unwrap();
            plan.snapshot.state = Some(b"{}".to_vec());
            let p = prepare(plan, &mut Steps::all()).unwrap();
            let done = s.finish_compaction(p, &mut Steps::all()).unwrap();
            assert_eq!(done, Some((at, 1)));
            assert_eq!(s.terms().start_index, at);
            assert_eq!(s.entries(at + 1, N).unwrap()[0], entry(at + 1));
        }
        drop(s);
        let names: Vec<String> = fs::read_dir(dir.path().join("snapshot"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [format!("1_{}.ss", N - 10)]);
        let log = fs::read(dir.path().join("log")).unwrap();
        let first = crate::format::log::LogReader::new(&log)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(first.index(), N - 200 + 1, "goraft keeps 200 entries");
    }
}
