//! The filesystem edge: finds a node's files (a data dir, or a bare log file), memory-maps the
//! log and reads conf, name and snapshots into the model, collecting load problems.
//!
//! Reading never writes, creates, renames or locks anything; [`files`] opens every file (regular
//! files only, small ones with a size cap, snapshots as a stream). The one exception is [`lock`],
//! the advisory lock that the writers (`serve`, `repair --apply`) take on a dir. It does not
//! interpret what it reads beyond calling `format` (no Raft rules here: that is `check`).

pub mod files;
pub mod lock;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::format::dialect::{self, Choice, Detection, Dialect};
use crate::format::log::LogReader;
use crate::format::{conf, snapshot};
use crate::model::{Conf, Index, Term};

/// Why a path cannot be opened as a node at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The path does not exist.
    #[error("{}: no such file or directory", .0.display())]
    NotFound(PathBuf),
    /// A directory without a `log` file.
    #[error("{}: no `log` file in this directory (expected a goraft data dir or a log file)", .0.display())]
    NoLog(PathBuf),
    /// Any other I/O failure (permission, a symlink loop, a FIFO or a directory where a file was
    /// expected, ...).
    #[error("{}: {error}", path.display())]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The OS error (in the message, not a source: printed once).
        error: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LoadError + '_ {
    move |error| LoadError::Io {
        path: path.to_owned(),
        error,
    }
}

/// The bytes of a log file: a read-only memory map, or nothing for an empty file.
pub struct LogBytes {
    map: Option<memmap2::Mmap>,
}

impl crate::format::log::frames::Pages for LogBytes {
    fn bytes(&self) -> &[u8] {
        LogBytes::bytes(self)
    }

    fn release(&self, range: std::ops::Range<usize>) {
        LogBytes::release(self, range);
    }
}

impl LogBytes {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let (file, meta) = files::open_regular(path).map_err(io_err(path))?;
        if meta.len() == 0 {
            return Ok(LogBytes { map: None });
        }
        // SAFETY: the map is read-only and private to this process. If another process (a live
        // goraft node) truncates the file while it is mapped, reading the lost pages raises SIGBUS;
        // raftdump documents that a live node's log should be copied first. Nothing here writes
        // through the map, and the bytes are only ever read as `&[u8]`.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(path))?;
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(LogBytes { map: Some(map) })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Lets go of the pages of `range` that this process has read, so that a pass over a large
    /// log keeps its resident set flat: mapped file pages count as resident once touched, and
    /// nothing else would release them before the map is dropped. The bytes stay readable; a
    /// later read faults them in again from the page cache. A range past the end is clipped.
    pub fn release(&self, range: std::ops::Range<usize>) {
        let Some(map) = &self.map else { return };
        let end = range.end.min(map.len());
        if range.start >= end {
            return;
        }
        // SAFETY: `Mmap::map` maps the file read-only and shared (PROT_READ, MAP_SHARED). On such
        // a mapping MADV_DONTNEED only drops this process's page-table entries: the pages hold
        // the file's bytes, which were never changed through the map, and the next access maps
        // the same bytes from the page cache again. So every `&[u8]` borrowed from the map keeps
        // seeing the same content, which is what memmap2's warning about DontNeed (aimed at
        // private and anonymous mappings, which it would zero or reset) protects. A failure only
        // means the pages stay resident, so it is ignored.
        #[cfg(unix)]
        let _ = unsafe {
            map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                range.start,
                end - range.start,
            )
        };
    }
}

/// A [`LogReader`] over a data dir's log that gives the pages behind it back to the kernel as it
/// goes, so that a streaming pass over a log of many GB keeps a flat, small resident set.
///
/// Entries it yielded stay valid: their bytes are read back from the page cache if touched again.
pub struct LogStream<'a> {
    log: &'a LogBytes,
    reader: LogReader<'a>,
    released: usize,
}

/// How far the reader moves between two releases, and how much it keeps behind it.
const RELEASE_STEP: usize = 8 << 20;

impl<'a> Iterator for LogStream<'a> {
    type Item = <LogReader<'a> as Iterator>::Item;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.reader.next();
        let pos = self.reader.position() as usize;
        if pos >= self.released + 2 * RELEASE_STEP {
            let upto = pos - RELEASE_STEP;
            self.log.release(self.released..upto);
            self.released = upto;
        }
        item
    }
}

impl std::fmt::Debug for LogBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogBytes({} bytes)", self.bytes().len())
    }
}

/// A file that was read, with its raw bytes and what they decode to.
#[derive(Debug)]
pub struct Loaded<T, E> {
    /// Where it is.
    pub path: PathBuf,
    /// Its raw bytes.
    pub raw: Vec<u8>,
    /// What they mean, or why they do not.
    pub parsed: Result<T, E>,
}

/// One entry of the `snapshot/` directory.
#[derive(Debug)]
pub struct SnapshotFile {
    /// The directory entry's name.
    pub file_name: String,
    /// Its full path.
    pub path: PathBuf,
    /// `(term, index)` from the name, when it is `<term>_<index>.ss`.
    pub name_key: Option<(Term, Index)>,
    /// File size in bytes.
    pub size: u64,
    /// The parsed file (CRC and JSON), or why it cannot be read.
    pub parsed: Result<snapshot::ParsedSnapshot, SnapshotLoadError>,
}

/// Why a snapshot directory entry could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotLoadError {
    /// Reading failed.
    #[error("{0}")]
    Io(io::Error),
    /// The bytes are not a snapshot.
    #[error("{0}")]
    Format(snapshot::SnapshotError),
}

/// Whether the input was a directory or a bare log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A goraft data dir.
    Dir,
    /// Just a log file.
    LogFile,
}

/// Everything on a node's disk, read but not judged.
#[derive(Debug)]
pub struct DataDir {
    /// The path as given.
    pub path: PathBuf,
    /// Dir or bare log file.
    pub kind: InputKind,
    /// The log file's path.
    pub log_path: PathBuf,
    /// The log's bytes.
    pub log: LogBytes,
    /// The `name` file (raw content, no trimming, as raftd reads it).
    pub name: Option<Loaded<String, std::string::FromUtf8Error>>,
    /// The `conf` file.
    pub conf: Option<Loaded<Conf, conf::ConfError>>,
    /// Every entry of `snapshot/`, sorted by name.
    pub snapshots: Vec<SnapshotFile>,
    /// Whether `snapshot/` exists.
    pub has_snapshot_dir: bool,
    /// Leftover temporary files (`conf.tmp`, `log.new`) that a crash left behind.
    pub leftovers: Vec<PathBuf>,
    /// Files that exist but could not be read (reported, not fatal).
    pub unreadable: Vec<(PathBuf, io::Error)>,
    /// `raftdump-state`'s path and `currentTerm`, when the file exists and has one (the term
    /// and vote a raftdump node keeps; goraft never reads the file).
    pub state_term: Option<(PathBuf, u64)>,
    /// The log's dialect and the evidence for it (see `format::dialect::detect`).
    pub dialect: Detection,
    /// A SeaweedFS master's `host:port` server name, found from its `m<port>` dir and the
    /// names its log and snapshots hold (it has no `name` file; see
    /// `format::dialect::master_name`).
    pub server_name: Option<String>,
}

fn read_optional(
    path: &Path,
    cap: u64,
    what: &str,
    unreadable: &mut Vec<(PathBuf, io::Error)>,
) -> Option<Vec<u8>> {
    files::read_optional(path, cap, what).unwrap_or_else(|e| {
        unreadable.push((path.to_owned(), e));
        None
    })
}

/// Opens a data dir or a log file and detects its dialect. Reads only; see the module docs.
pub fn open(path: &Path) -> Result<DataDir, LoadError> {
    open_as(path, Choice::Auto)
}

/// [`open`], with the dialect detected (`Choice::Auto`) or forced.
pub fn open_as(path: &Path, choice: Choice) -> Result<DataDir, LoadError> {
    let mut dir = open_files(path)?;
    let states: Vec<&[u8]> = dir
        .snapshots
        .iter()
        .filter_map(|s| s.parsed.as_ref().ok())
        .filter_map(|p| p.snapshot.as_ref().ok())
        .filter_map(|s| s.state.as_deref())
        .collect();
    let file_name = dir.path.file_name().and_then(|n| n.to_str());
    // `m9333/.` or a trailing slash: the name of the directory itself.
    let canonical = fs::canonicalize(&dir.path).ok();
    let dir_name = file_name.or_else(|| canonical.as_deref()?.file_name()?.to_str());
    let clues = dialect::DirClues {
        dir_name,
        is_dir: dir.kind == InputKind::Dir,
        has_name_file: dir.name.is_some(),
        snapshot_states: states,
    };
    let detection = dialect::detect(dir.log.bytes(), &clues, choice);
    if detection.dialect == Dialect::Seaweedfs && dir.name.is_none() {
        let peers = dir
            .snapshots
            .iter()
            .filter_map(|s| s.parsed.as_ref().ok()?.snapshot.as_ref().ok())
            .flat_map(|s| s.peers.iter().flatten())
            .map(|p| p.name.as_str());
        let names = detection.joined.iter().map(String::as_str).chain(peers);
        dir.server_name = dir_name.and_then(|n| dialect::master_name(n, names));
    }
    dir.dialect = detection;
    Ok(dir)
}

fn open_files(path: &Path) -> Result<DataDir, LoadError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(LoadError::NotFound(path.to_owned()))
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    if !meta.is_dir() {
        return Ok(DataDir {
            path: path.to_owned(),
            kind: InputKind::LogFile,
            log_path: path.to_owned(),
            log: LogBytes::open(path)?,
            name: None,
            conf: None,
            snapshots: Vec::new(),
            has_snapshot_dir: false,
            leftovers: Vec::new(),
            unreadable: Vec::new(),
            state_term: None,
            dialect: Detection::default(),
            server_name: None,
        });
    }
    let log_path = path.join("log");
    // Only a `log` that is not there at all is "no log": a symlink loop, a dangling link or an
    // unreadable file is reported as what it is.
    if let Err(e) = fs::symlink_metadata(&log_path) {
        fs::read_dir(path).map_err(io_err(path))?;
        return Err(match e.kind() {
            io::ErrorKind::NotFound => LoadError::NoLog(path.to_owned()),
            _ => io_err(&log_path)(e),
        });
    }
    let log = LogBytes::open(&log_path)?;
    let mut unreadable = Vec::new();

    let name_path = path.join("name");
    let name = read_optional(
        &name_path,
        files::NAME_CAP,
        "a `name` file",
        &mut unreadable,
    )
    .map(|raw| Loaded {
        path: name_path,
        parsed: String::from_utf8(raw.clone()),
        raw,
    });
    let conf_path = path.join("conf");
    let conf = read_optional(
        &conf_path,
        files::CONF_CAP,
        "a `conf` file",
        &mut unreadable,
    )
    .map(|raw| Loaded {
        path: conf_path,
        parsed: conf::parse(&raw),
        raw,
    });
    let state_path = path.join("raftdump-state");
    // A term and a member's name: the `name` file's cap fits it.
    let state_term = read_optional(
        &state_path,
        files::NAME_CAP,
        "a `raftdump-state` file",
        &mut unreadable,
    )
    .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
    .and_then(|v| v.get("currentTerm")?.as_u64())
    .map(|t| (state_path, t));
    let leftovers = ["conf.tmp", "log.new"]
        .iter()
        .map(|n| path.join(n))
        .filter(|p| p.exists())
        .collect();

    let snap_dir = path.join("snapshot");
    let mut snapshots = Vec::new();
    let has_snapshot_dir = snap_dir.is_dir();
    if has_snapshot_dir {
        match fs::read_dir(&snap_dir) {
            Ok(rd) => {
                for ent in rd.flatten() {
                    let file_name = ent.file_name().to_string_lossy().into_owned();
                    let p = ent.path();
                    let size = ent.metadata().map(|m| m.len()).unwrap_or(0);
                    let parsed = match files::read_snapshot(&p) {
                        Ok((_, parsed)) => parsed.map_err(SnapshotLoadError::Format),
                        Err(e) => Err(SnapshotLoadError::Io(e)),
                    };
                    snapshots.push(SnapshotFile {
                        name_key: snapshot::parse_file_name(&file_name),
                        file_name,
                        path: p,
                        size,
                        parsed,
                    });
                }
            }
            Err(e) => unreadable.push((snap_dir, e)),
        }
        snapshots.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    }
    Ok(DataDir {
        path: path.to_owned(),
        kind: InputKind::Dir,
        log_path,
        log,
        name,
        conf,
        snapshots,
        has_snapshot_dir,
        leftovers,
        unreadable,
        state_term,
        dialect: Detection::default(),
        server_name: None,
    })
}

impl DataDir {
    /// Streams the log's frames (see [`LogStream`]).
    pub fn stream(&self) -> LogStream<'_> {
        LogStream {
            log: &self.log,
            reader: LogReader::with_dialect(self.log.bytes(), self.dialect()),
            released: 0,
        }
    }

    /// The dialect its log is read under.
    pub fn dialect(&self) -> Dialect {
        self.dialect.dialect
    }

    /// A fast reader of its log under its dialect (see [`crate::format::log::Frames`]), giving back the
    /// pages it has read.
    pub fn frames(&self) -> crate::format::log::Frames<'_> {
        crate::format::log::Frames::releasing(&self.log).dialect(self.dialect())
    }

    /// The first file of the dir that exists but could not be read (not a regular file, over its
    /// size cap, permission, ...), snapshots included, with why.
    pub fn first_unreadable(&self) -> Option<(&Path, &io::Error)> {
        let snapshots = self.snapshots.iter().filter_map(|s| match &s.parsed {
            Err(SnapshotLoadError::Io(e)) => Some((s.path.as_path(), e)),
            _ => None,
        });
        self.unreadable
            .iter()
            .map(|(p, e)| (p.as_path(), e))
            .chain(snapshots)
            .next()
    }

    /// The node name, when the `name` file is there and is UTF-8; for a SeaweedFS master,
    /// which has none, its `host:port` server name when it is known.
    pub fn node_name(&self) -> Option<&str> {
        match &self.name {
            Some(n) => n.parsed.as_ref().ok().map(String::as_str),
            None => self.server_name.as_deref(),
        }
    }

    /// The conf, when present and valid.
    pub fn conf(&self) -> Option<&Conf> {
        self.conf.as_ref().and_then(|c| c.parsed.as_ref().ok())
    }

    /// The snapshot raftdump would load: the highest `(index, term)` among well-named files whose
    /// CRC matches and whose JSON decodes.
    pub fn best_snapshot(&self) -> Option<&SnapshotFile> {
        self.snapshots
            .iter()
            .filter(|s| {
                s.name_key.is_some()
                    && matches!(&s.parsed, Ok(p) if p.crc_ok() && p.snapshot.is_ok())
            })
            .max_by_key(|s| s.name_key.map(|(t, i)| (i, t)))
    }

    /// The snapshot goraft's `LoadSnapshot` would pick (lexicographically last name, whatever it
    /// is), if the directory has any entry.
    pub fn goraft_snapshot(&self) -> Option<&SnapshotFile> {
        let name = snapshot::goraft_choice(self.snapshots.iter().map(|s| s.file_name.as_str()))?;
        self.snapshots.iter().find(|s| s.file_name == name)
    }

    /// A label for messages: the node name, else the path.
    pub fn label(&self) -> String {
        match self.node_name() {
            Some(n) => format!("{} ({})", self.path.display(), n),
            None => self.path.display().to_string(),
        }
    }
}

/// Helpers for tests that build data dirs from log bytes.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};

    use crate::model::{Command, Index, Term};

    /// A goraft log of `entries` (index, term, command), as the format layer's writer writes it.
    pub(crate) fn log_of(entries: &[(Index, Term, Command)]) -> Vec<u8> {
        let mut lw = crate::format::log::LogWriter::new(Vec::new());
        for (i, t, c) in entries {
            lw.append(*i, *t, c).unwrap();
        }
        lw.into_inner()
    }

    /// A `raft:join` of node `name` at `http://name`.
    pub(crate) fn join(name: &str) -> Command {
        Command::Join {
            name: name.into(),
            connection_string: format!("http://{name}"),
        }
    }

    /// The byte range of the first good frame at `index` in `log`.
    pub(crate) fn frame_span(log: &[u8], index: u64) -> (usize, usize) {
        frame_span_as(log, index, crate::format::dialect::Dialect::Goraft)
    }

    /// [`frame_span`] in a log of `dialect`.
    pub(crate) fn frame_span_as(
        log: &[u8],
        index: u64,
        dialect: crate::format::dialect::Dialect,
    ) -> (usize, usize) {
        crate::format::log::LogReader::with_dialect(log, dialect)
            .flatten()
            .find(|e| e.index() == index)
            .map(|e| (e.offset as usize, e.end() as usize))
            .unwrap()
    }

    /// Writes a data dir `root/name` holding `log`, a `name` file and, when given, `conf`.
    pub(crate) fn write_node(root: &Path, name: &str, log: &[u8], conf: Option<&str>) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("log"), log).unwrap();
        std::fs::write(dir.join("name"), name).unwrap();
        if let Some(c) = conf {
            std::fs::write(dir.join("conf"), c).unwrap();
        }
        dir
    }

    /// Every file named `log` under the project's `fixtures/`, in path order.
    pub(crate) fn fixture_logs() -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().is_some_and(|n| n == "log") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// Every data dir under the project's `fixtures/` that opens (a dir holding a `log`), in
    /// path order.
    pub(crate) fn fixture_dirs() -> Vec<super::DataDir> {
        fixture_logs()
            .iter()
            .filter_map(|log| log.parent())
            .filter_map(|d| super::open(d).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's resident file-backed memory, in bytes.
    #[cfg(target_os = "linux")]
    fn rss_file() -> u64 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    /// Without `release` a pass over a mapped log keeps every page resident, so inspect's peak
    /// RSS grew with the log (74 MB on the 73 MB large-1m log); with it the pages go.
    #[cfg(target_os = "linux")]
    #[test]
    fn release_drops_read_pages_and_keeps_the_bytes() {
        const LEN: usize = 32 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let content: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &content).unwrap();
        let log = LogBytes::open(&path).unwrap();
        let sum = |b: &[u8]| b.iter().map(|&x| u64::from(x)).sum::<u64>();
        let expected = sum(&content);
        drop(content);
        assert_eq!(sum(log.bytes()), expected);
        let touched = rss_file();
        log.release(0..LEN + 4096);
        let released = rss_file();
        assert!(
            touched - released.min(touched) >= (LEN as u64) * 3 / 4,
            "RssFile went from {touched} to {released} bytes"
        );
        assert_eq!(sum(log.bytes()), expected, "the bytes are still there");
        let (start, end) = (10, 5);
        log.release(start..end);
        log.release(LEN * 2..LEN * 3);
    }
}
