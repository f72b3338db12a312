//! The filesystem edge: finds a node's files (a data dir, or a bare log file), memory-maps the
//! log and reads conf, name and snapshots into the model, collecting load problems.
//!
//! It never writes, creates, renames or locks anything. It does not interpret what it reads beyond
//! calling `format` (no Raft rules here: that is `check`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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
    /// Any other I/O failure (permission, a directory where a file was expected, ...).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The bytes of a log file: a read-only memory map, or nothing for an empty file.
pub struct LogBytes {
    map: Option<memmap2::Mmap>,
}

impl LogBytes {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let file = fs::File::open(path).map_err(io_err(path))?;
        let meta = file.metadata().map_err(io_err(path))?;
        if meta.is_dir() {
            return Err(LoadError::Io {
                path: path.to_owned(),
                source: io::Error::other("is a directory, expected a log file"),
            });
        }
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
}

fn read_optional(path: &Path, unreadable: &mut Vec<(PathBuf, io::Error)>) -> Option<Vec<u8>> {
    match fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            unreadable.push((path.to_owned(), e));
            None
        }
    }
}

/// Opens a data dir or a log file. Reads only; see the module docs.
pub fn open(path: &Path) -> Result<DataDir, LoadError> {
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
        });
    }
    let log_path = path.join("log");
    if !log_path.exists() {
        fs::read_dir(path).map_err(io_err(path))?;
        return Err(LoadError::NoLog(path.to_owned()));
    }
    let log = LogBytes::open(&log_path)?;
    let mut unreadable = Vec::new();

    let name_path = path.join("name");
    let name = read_optional(&name_path, &mut unreadable).map(|raw| Loaded {
        path: name_path,
        parsed: String::from_utf8(raw.clone()),
        raw,
    });
    let conf_path = path.join("conf");
    let conf = read_optional(&conf_path, &mut unreadable).map(|raw| Loaded {
        path: conf_path,
        parsed: conf::parse(&raw),
        raw,
    });
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
                    let parsed = fs::read(&p)
                        .map_err(SnapshotLoadError::Io)
                        .and_then(|b| snapshot::parse(&b).map_err(SnapshotLoadError::Format));
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
    })
}

impl DataDir {
    /// The node name, when the `name` file is there and is UTF-8.
    pub fn node_name(&self) -> Option<&str> {
        self.name.as_ref().and_then(|n| n.parsed.as_ref().ok()).map(String::as_str)
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
