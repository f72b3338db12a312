//! Repair of one node's data dir: a plan (what to cut, what to salvage, what stays) made from
//! `verify`'s findings, and its application.
//!
//! This is, with a future node's storage, the only code that writes data files. It never changes
//! a file the plan does not name, never without a byte-identical backup written and synced first
//! (`<file>.raftdump-backup-<unix-seconds>[-<n>]`, never overwriting anything), never while
//! another process holds the dir's lock (a node serving it), and never when the plan
//! has blockers: problems a cut cannot fix safely (conflicting entries after a hole, index or term
//! disorder in the part that stays, a bad snapshot or conf, committed entries the cut would drop).
//! Planning reads only.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::check::codes::finding;
use crate::check::node::{self, NodeReport};
use crate::check::{Finding, Severity};
use crate::datadir::lock::{DirLock, LockError};
use crate::datadir::{self, files, DataDir, LoadError};
use crate::format::dialect::{Choice, Dialect};
use crate::format::frame;
use crate::format::log::LogReader;

/// What the caller asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairOptions {
    /// Re-append the good frames found after the cut when they continue the index sequence.
    pub salvage: bool,
    /// The dialect to read the log under, or detection.
    pub dialect: Choice,
}

/// A stretch of good frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// How many frames.
    pub frames: u64,
    /// Their bytes in the file.
    pub bytes: u64,
    /// The first one's index.
    pub first_index: Option<u64>,
    /// The last one's index.
    pub last_index: Option<u64>,
}

impl Span {
    fn add(&mut self, index: u64, bytes: u64) {
        self.frames += 1;
        self.bytes += bytes;
        self.first_index.get_or_insert(index);
        self.last_index = Some(index);
    }
}

/// Where the log is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The file is truncated to this many bytes (the first damaged byte).
    pub offset: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// The finding that made the cut necessary.
    pub reason: Finding,
}

/// A good frame after the cut that is re-appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Its offset in the damaged file.
    pub offset: u64,
    /// Its size there (header + body).
    pub len: u64,
    /// Its body size (it is re-written with a canonical header).
    pub body_len: u64,
    /// Index.
    pub index: u64,
    /// Term.
    pub term: u64,
}

/// What repair would do to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The node's label.
    pub node: String,
    /// The path as given.
    pub dir: PathBuf,
    /// The log file.
    pub log_path: PathBuf,
    /// Its size when planned.
    pub log_len: u64,
    /// Its CRC-32 when planned, if the plan changes it (apply refuses if the file changed
    /// since); 0 otherwise.
    pub log_crc: u32,
    /// The frames that stay in place.
    pub keep: Span,
    /// The cut, if the log is damaged.
    pub cut: Option<Cut>,
    /// Frames re-appended after the cut (only with `--salvage`).
    pub salvage: Vec<Frame>,
    /// How many frames after the cut continue the sequence (what `--salvage` would keep).
    pub salvageable: u64,
    /// Good frames after the cut that are not kept.
    pub dropped: Span,
    /// Of those, frames that repeat an entry that stays, byte for byte.
    pub duplicates: u64,
    /// Leftover temporary files to remove.
    pub remove: Vec<PathBuf>,
    /// Problems repair cannot fix safely; a plan with blockers is never applied.
    pub blockers: Vec<Finding>,
    /// Errors and warnings repair leaves as they are (they are not about the cut).
    pub untouched: Vec<Finding>,
    /// The dialect the log was read under (apply checks the result under it too).
    pub dialect: Dialect,
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.cut.is_none() && self.remove.is_empty()
    }

    /// The bytes the salvaged frames add.
    pub fn salvage_bytes(&self) -> u64 {
        self.salvage
            .iter()
            .map(|f| f.body_len + frame::CANONICAL_HEADER_LEN as u64)
            .sum()
    }
}

/// Errors that codes blocking a repair carry when they are in the part that stays.
const BLOCK_BEFORE_CUT: &[&str] = &[
    "index-gap",
    "index-duplicate",
    "term-decrease",
    "log-first-index",
];
/// Errors that always block a repair.
const BLOCK_ALWAYS: &[&str] = &[
    "log-commit-index-prefix",
    "snapshot-crc",
    "snapshot-invalid",
    "snapshot-log-mismatch",
    "snapshot-goraft-choice",
    "conf-invalid",
    "file-unreadable",
];
/// Codes the plan fixes.
const FIXED: &[&str] = &[
    "log-torn-tail",
    "log-nul-hole",
    "log-garbage",
    "log-bad-entry",
    "leftover-conf-tmp",
    "leftover-log-new",
];

/// Opens `path`, checks it and plans its repair. Reads only.
pub fn plan(path: &Path, opts: RepairOptions) -> Result<Plan, LoadError> {
    let dir = datadir::open_as(path, opts.dialect)?;
    let report = node::check(&dir);
    plan_for(&dir, &report, opts).map_err(|error| LoadError::Io {
        path: dir.log_path.clone(),
        error,
    })
}

/// Plans the repair of an opened node from its check report: which findings block it, what
/// stays before the first damaged byte, what after it can be salvaged, and whether conf's
/// commitIndex stays covered. Reads the log once more, a chunk at a time, for its CRC when the
/// plan changes it (a CRC of the mapped log would hold every page of it in memory).
pub fn plan_for(dir: &DataDir, report: &NodeReport, opts: RepairOptions) -> io::Result<Plan> {
    let bytes = dir.log.bytes();
    let cut_at = report.log.first_damage;
    let (mut blockers, untouched) = sort_findings(report, cut_at);
    let split = split_at_cut(dir, cut_at);
    let snapshot_last = dir
        .best_snapshot()
        .and_then(|s| s.parsed.as_ref().ok())
        .and_then(|p| p.snapshot.as_ref().ok())
        .map(|s| s.last_index);
    let walk = walk_after_cut(dir, report, &split, snapshot_last, &mut blockers);
    let mut dropped = walk.dropped;
    let salvageable = walk.chain.len() as u64;
    let salvage = if opts.salvage {
        walk.chain
    } else {
        for f in &walk.chain {
            dropped.add(f.index, f.len);
        }
        Vec::new()
    };
    let kept_last = split.kept_last.map(|(i, _)| i);
    let new_last = salvage.last().map(|f| f.index).or(kept_last).unwrap_or(0);
    let new_last = new_last.max(snapshot_last.unwrap_or(0));
    let short_by = (
        split.keep.last_index.unwrap_or(0) + salvageable,
        opts.salvage,
    );
    blockers.extend(conf_blocker(dir, report, new_last, short_by));
    blockers.dedup();
    let log_crc = match cut_at {
        Some(_) => {
            let (mut file, _) = files::open_regular(&dir.log_path)?;
            files::read_chunks(&mut file, |_| Ok(()), |e| e)?.1
        }
        None => 0,
    };
    Ok(Plan {
        node: report.node.clone(),
        dir: dir.path.clone(),
        log_path: dir.log_path.clone(),
        log_len: bytes.len() as u64,
        log_crc,
        keep: split.keep,
        cut: cut_at.map(|offset| cut_of(report, offset, bytes.len() as u64)),
        salvage,
        salvageable,
        dropped,
        duplicates: walk.duplicates,
        remove: dir.leftovers.clone(),
        blockers,
        untouched,
        dialect: dir.dialect(),
    })
}

/// The findings that block the repair, and the problems it leaves as they are (before the cut,
/// neither fixed nor blocking).
fn sort_findings(report: &NodeReport, cut_at: Option<u64>) -> (Vec<Finding>, Vec<Finding>) {
    let mut blockers = Vec::new();
    let mut untouched = Vec::new();
    for f in &report.findings {
        let before_cut = match (f.offset, cut_at) {
            (Some(o), Some(c)) => o < c,
            _ => true,
        };
        if f.severity == Severity::Error
            && (BLOCK_ALWAYS.contains(&f.code) || BLOCK_BEFORE_CUT.contains(&f.code) && before_cut)
        {
            blockers.push(f.clone());
        } else if f.severity != Severity::Info && !FIXED.contains(&f.code) && before_cut {
            untouched.push(f.clone());
        }
    }
    (blockers, untouched)
}

/// The log's good frames on either side of the cut.
struct Split<'a> {
    /// Where the log is cut (the first damaged byte).
    cut_at: Option<u64>,
    /// The frames that stay.
    keep: Span,
    /// The last frame that stays: index and term.
    kept_last: Option<(u64, u64)>,
    /// The good frames after the cut.
    after: Vec<crate::format::log::RawEntry<'a>>,
}

/// Reads the log's good frames and splits them at the cut.
fn split_at_cut(dir: &DataDir, cut_at: Option<u64>) -> Split<'_> {
    let mut split = Split {
        cut_at,
        keep: Span::default(),
        kept_last: None,
        after: Vec::new(),
    };
    for e in LogReader::with_dialect(dir.log.bytes(), dir.dialect()).flatten() {
        if cut_at.is_none_or(|c| e.offset < c) {
            split.keep.add(e.index(), e.frame_len());
            split.kept_last = Some((e.index(), e.term()));
        } else {
            split.after.push(e);
        }
    }
    split
}

/// What the frames after the cut hold.
struct Walk {
    /// The chain that continues the kept sequence (what `--salvage` re-appends).
    chain: Vec<Frame>,
    /// The frames dropped: copies, conflicts, and everything after the chain breaks.
    dropped: Span,
    /// Frames after the cut that repeat, byte for byte, an entry that stays.
    duplicates: u64,
}

/// Walks the frames after the cut: the chain that continues the sequence, harmless copies,
/// conflicts (each a blocker added to `blockers`), and the rest.
fn walk_after_cut(
    dir: &DataDir,
    report: &NodeReport,
    split: &Split<'_>,
    snapshot_last: Option<u64>,
    blockers: &mut Vec<Finding>,
) -> Walk {
    let mut bodies: HashMap<u64, &[u8]> = HashMap::new();
    if !split.after.is_empty() {
        let cut_at = split.cut_at;
        for e in LogReader::with_dialect(dir.log.bytes(), dir.dialect()).flatten() {
            if cut_at.is_none_or(|c| e.offset < c) {
                bodies.entry(e.index()).or_insert(e.body);
            }
        }
    }
    let (mut next, mut term) = match split.kept_last {
        Some((i, t)) => (i.saturating_add(1), t),
        None => (snapshot_last.unwrap_or(0) + 1, 0),
    };
    let mut walk = Walk {
        chain: Vec::new(),
        dropped: Span::default(),
        duplicates: 0,
    };
    let mut broken = false;
    for e in &split.after {
        let (index, t) = (e.index(), e.term());
        if index < next {
            match bodies.get(&index) {
                Some(b) if *b == e.body => walk.duplicates += 1,
                Some(_) => blockers.push(conflict(dir, report, &walk.chain, e)),
                None => {}
            }
            walk.dropped.add(index, e.frame_len());
        } else if !broken && index == next && t >= term {
            bodies.insert(index, e.body);
            walk.chain.push(Frame {
                offset: e.offset,
                len: e.frame_len(),
                body_len: e.body.len() as u64,
                index,
                term: t,
            });
            next = index.saturating_add(1);
            term = t;
        } else {
            broken = true;
            walk.dropped.add(index, e.frame_len());
        }
    }
    walk
}

/// The blocker for a frame after the damage that holds an index already taken by a different
/// entry (in the part that stays, or earlier in the chain after the damage).
fn conflict(
    dir: &DataDir,
    report: &NodeReport,
    chain: &[Frame],
    e: &crate::format::log::RawEntry<'_>,
) -> Finding {
    let (index, t) = (e.index(), e.term());
    let what = if chain.iter().any(|f| f.index == index) {
        "the frames found after the damage"
    } else {
        "the part that stays"
    };
    finding(
        "index-duplicate",
        format!(
            "conflicting middle section: the frame at byte {} after the damage holds index {index} (term {t}), but {what} already has a different entry at index {index}; raftdump cannot tell which one the cluster committed",
            e.offset
        ),
    )
    .node(report.node.clone())
    .file(dir.log_path.clone())
    .offset(e.offset)
    .index(index)
}

/// The blocker when the repaired log would end at `new_last`, below conf's commitIndex.
/// `(reach, salvage)`: the last index `--salvage` would reach, and whether it was given (the
/// message then says it would keep them).
fn conf_blocker(
    dir: &DataDir,
    report: &NodeReport,
    new_last: u64,
    (reach, salvage): (u64, bool),
) -> Option<Finding> {
    let conf = dir.conf()?;
    if conf.commit_index <= new_last {
        return None;
    }
    let hint = if !salvage && reach >= conf.commit_index {
        " (--salvage would keep them)"
    } else {
        ""
    };
    let path = dir
        .conf
        .as_ref()
        .map(|c| c.path.clone())
        .unwrap_or_default();
    Some(
        finding(
            "conf-commit-beyond-log",
            format!(
                "the repaired log would end at index {new_last}, below conf commitIndex {}: entries goraft already committed would be lost{hint}",
                conf.commit_index
            ),
        )
        .node(report.node.clone())
        .file(path),
    )
}

/// The cut at `offset` of a log of `len` bytes, with the finding that explains it.
fn cut_of(report: &NodeReport, offset: u64, len: u64) -> Cut {
    Cut {
        offset,
        bytes: len - offset,
        reason: report
            .findings
            .iter()
            .find(|f| f.offset == Some(offset) && FIXED.contains(&f.code))
            .or_else(|| report.findings.iter().find(|f| f.offset == Some(offset)))
            .cloned()
            .unwrap_or_else(|| finding("log-bad-entry", "damage").offset(offset)),
    }
}

/// What an applied repair did.
#[derive(Debug)]
pub struct Applied {
    /// `(original, backup)` for every file changed or removed.
    pub backups: Vec<(PathBuf, PathBuf)>,
    /// The size the log was cut to.
    pub cut_to: Option<u64>,
    /// Frames re-appended after the cut, and their bytes.
    pub appended: (u64, u64),
    /// Files removed (after their backup).
    pub removed: Vec<PathBuf>,
    /// `verify` of the result.
    pub after: NodeReport,
}

/// Why a repair was not (completely) applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    /// The plan has blockers.
    #[error("refusing to repair {}: {} (nothing was changed)", dir.display(), reasons.join("; "))]
    Refused {
        /// The data dir.
        dir: PathBuf,
        /// One line per blocker.
        reasons: Vec<String>,
    },
    /// The log changed between planning and applying.
    #[error("{}: the file changed since the plan was made (nothing was changed)", .0.display())]
    Changed(PathBuf),
    /// A file to change, or its directory, may not be written (a read-only mount, permission
    /// bits); found before anything is written, so nothing was changed.
    #[error("{} is not writable: {error} (nothing was changed)", path.display())]
    NotWritable {
        /// The file or directory.
        path: PathBuf,
        /// Why (the OS error of `access(W_OK)`).
        error: io::Error,
    },
    /// A backup could not be written; nothing was changed.
    #[error("cannot write the backup {}: {error} (nothing was changed)", path.display())]
    Backup {
        /// The backup's path.
        path: PathBuf,
        /// The OS error (in the message, not a source: printed once).
        error: io::Error,
    },
    /// Writing failed after the backups were made.
    #[error("{}: {error} (the backups are in place)", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, not a source: printed once).
        error: io::Error,
    },
    /// The data dir could not be reopened for the final verify.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Another process (a node serving the dir) holds its lock; nothing was changed.
    /// (In the message, not a source: printed once.)
    #[error("{0} (nothing was changed)")]
    Locked(LockError),
}

/// The backup name for `path` at `now` (unix seconds), next to it: `<name>.raftdump-backup-<now>`
/// for the first try, then `<name>.raftdump-backup-<now>-<try>`.
pub fn backup_path(path: &Path, now: u64, attempt: u32) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".raftdump-backup-{now}"));
    if attempt > 0 {
        name.push(format!("-{attempt}"));
    }
    path.with_file_name(name)
}

/// How many names [`write_backup`] tries before it gives up.
const BACKUP_ATTEMPTS: u32 = 1000;

/// The directory whose lock guards the repair of `plan`: the data dir, or the one holding a
/// bare log file.
fn lock_dir(plan: &Plan) -> &Path {
    if plan.dir.is_dir() {
        &plan.dir
    } else {
        parent(&plan.log_path)
    }
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Copies `path` to a backup under the first free name of [`backup_path`] (created with O_EXCL,
/// so an existing file is never overwritten and two runs in the same second do not collide), a
/// chunk at a time whatever the file's size, and syncs it. With `expect`, the copy must have
/// that length and CRC-32: the file is still the one that was planned. On failure nothing it
/// wrote is left.
fn copy_to_backup(
    path: &Path,
    now: u64,
    expect: Option<(u64, u32)>,
) -> Result<PathBuf, RepairError> {
    let (mut src, _) = files::open_regular(path).map_err(|error| RepairError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let (backup, mut dst) = create_backup(path, now)?;
    let copied = copy_hashing(&mut src, &mut dst, path, &backup);
    let failed = match copied {
        Ok(got) if expect.is_none_or(|e| e == got) => return Ok(backup),
        Ok(_) => RepairError::Changed(path.to_path_buf()),
        Err(e) => e,
    };
    let _ = fs::remove_file(&backup);
    Err(failed)
}

/// Creates the backup file of `path` under the first free name.
fn create_backup(path: &Path, now: u64) -> Result<(PathBuf, fs::File), RepairError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut attempt = 0;
    loop {
        let b = backup_path(path, now, attempt);
        match opts.open(&b) {
            Ok(f) => return Ok((b, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < BACKUP_ATTEMPTS => {
                attempt += 1
            }
            Err(error) => return Err(RepairError::Backup { path: b, error }),
        }
    }
}

/// Copies `src` (the file at `path`) to `dst` (the backup at `backup`) and syncs it; returns
/// the length and CRC-32 of what was copied.
fn copy_hashing(
    src: &mut fs::File,
    dst: &mut fs::File,
    path: &Path,
    backup: &Path,
) -> Result<(u64, u32), RepairError> {
    let write_err = |error| RepairError::Backup {
        path: backup.to_path_buf(),
        error,
    };
    let got = files::read_chunks(
        src,
        |piece| dst.write_all(piece).map_err(write_err),
        |error| RepairError::Io {
            path: path.to_path_buf(),
            error,
        },
    )?;
    dst.sync_all().map_err(write_err)?;
    Ok(got)
}

/// Cuts the log at `cut` and re-appends the salvaged frames with canonical headers, each read
/// from the backup (a frame at a time); syncs the log. Returns the frames and bytes appended.
fn rewrite_tail(
    log: &Path,
    backup: &Path,
    cut: u64,
    salvage: &[Frame],
) -> Result<(u64, u64), RepairError> {
    use std::os::unix::fs::FileExt;
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |error| RepairError::Io { path, error }
    };
    let from = fs::File::open(backup).map_err(io_err(backup))?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(log)
        .map_err(io_err(log))?;
    file.set_len(cut).map_err(io_err(log))?;
    file.seek(SeekFrom::Start(cut)).map_err(io_err(log))?;
    let mut out = io::BufWriter::with_capacity(files::CHUNK, file);
    let (mut body, mut header) = (Vec::new(), Vec::new());
    let mut appended = (0, 0);
    for f in salvage {
        body.resize(f.body_len as usize, 0);
        from.read_exact_at(&mut body, f.offset + f.len - f.body_len)
            .map_err(io_err(backup))?;
        header.clear();
        frame::write_header(f.body_len as u32, &mut header);
        out.write_all(&header).map_err(io_err(log))?;
        out.write_all(&body).map_err(io_err(log))?;
        appended.0 += 1;
        appended.1 += (header.len() + body.len()) as u64;
    }
    let file = out.into_inner().map_err(|e| io_err(log)(e.into_error()))?;
    file.sync_all().map_err(io_err(log))?;
    Ok(appended)
}

/// Applies a plan made by [`plan`] (after the `DataDir` it was made from is dropped: the log is
/// truncated in place). `now` names the backups.
pub fn apply(plan: &Plan, now: u64) -> Result<Applied, RepairError> {
    if !plan.blockers.is_empty() {
        return Err(RepairError::Refused {
            dir: plan.dir.clone(),
            reasons: plan.blockers.iter().map(blocker_line).collect(),
        });
    }
    // Refuse before anything is written when a file or the directory its backup goes to may
    // not be written: otherwise read-only data fails at the first backup (or at the lock).
    let targets = plan.cut.iter().map(|_| &plan.log_path).chain(&plan.remove);
    for path in targets {
        for p in [path.as_path(), parent(path)] {
            if let Err(e) = rustix::fs::access(p, rustix::fs::Access::WRITE_OK) {
                return Err(RepairError::NotWritable {
                    path: p.to_path_buf(),
                    error: e.into(),
                });
            }
        }
    }
    // One writer per dir: refused while a node serves it. Taken before the files are read, and
    // held until the result is verified.
    let _lock = DirLock::acquire(lock_dir(plan)).map_err(RepairError::Locked)?;
    // Backups of everything first, each checked to be what was planned; undone if one fails.
    let planned = (plan.log_len, plan.log_crc);
    let sources = (plan.cut.iter().map(|_| (&plan.log_path, Some(planned))))
        .chain(plan.remove.iter().map(|p| (p, None)));
    let mut backups: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (path, expect) in sources {
        match copy_to_backup(path, now, expect) {
            Ok(b) => backups.push((path.clone(), b)),
            Err(e) => {
                for (_, made) in &backups {
                    let _ = fs::remove_file(made);
                }
                return Err(e);
            }
        }
    }
    let dirs: Vec<&Path> = {
        let mut d: Vec<&Path> = backups.iter().map(|(p, _)| parent(p)).collect();
        d.dedup();
        d
    };
    for d in &dirs {
        sync_dir(d).map_err(|error| RepairError::Backup {
            path: d.to_path_buf(),
            error,
        })?;
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |error| RepairError::Io { path, error }
    };
    // The log: cut, then re-append the salvaged frames with canonical headers.
    let mut appended = (0, 0);
    if let (Some(cut), Some((_, backup))) = (&plan.cut, backups.first()) {
        appended = rewrite_tail(&plan.log_path, backup, cut.offset, &plan.salvage)?;
    }
    let mut removed = Vec::new();
    for p in &plan.remove {
        fs::remove_file(p).map_err(io_err(p))?;
        removed.push(p.clone());
    }
    for d in &dirs {
        sync_dir(d).map_err(io_err(d))?;
    }
    let dir = datadir::open_as(&plan.dir, Choice::Force(plan.dialect))?;
    let after = node::check(&dir);
    Ok(Applied {
        backups,
        cut_to: plan.cut.as_ref().map(|c| c.offset),
        appended,
        removed,
        after,
    })
}

/// A blocker as one line: `code at file:offset (index N): message`.
pub fn blocker_line(f: &Finding) -> String {
    let mut s = f.code.to_string();
    if let Some(file) = &f.file {
        s.push_str(&format!(" at {}", file.display()));
        if let Some(o) = f.offset {
            s.push_str(&format!(":{o}"));
        }
    }
    if let Some(i) = f.index {
        s.push_str(&format!(" (index {i})"));
    }
    s.push_str(": ");
    s.push_str(&f.message);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_are_printed_once() {
        let os = || io::Error::from_raw_os_error(30);
        let text = os().to_string();
        for e in [
            RepairError::Backup {
                path: "/d/log.bak".into(),
                error: os(),
            },
            RepairError::Io {
                path: "/d/log".into(),
                error: os(),
            },
        ] {
            let shown = format!("{:#}", anyhow::Error::from(e));
            assert_eq!(shown.matches(&text).count(), 1, "{shown}");
            assert!(
                shown.starts_with("cannot write the backup /d/log.bak: ")
                    || shown.starts_with("/d/log: "),
                "{shown}"
            );
        }
    }
}
