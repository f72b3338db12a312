//! One writer per data dir: an advisory `flock(2)` on `DIR/raftdump.lock`, taken by every
//! raftdump process that writes the dir (`serve`, `repair --apply`) before it reads anything it
//! will write, and held until it exits.
//!
//! The holder writes its pid into the file, so that a refused process can name it. The kernel
//! releases the lock when the holder's descriptor is closed, at exit or on `kill -9` alike, so a
//! stale file never blocks a restart; the file is left in place (removing it would let two
//! processes lock two different files). goraft ignores files it does not know in a data dir.
//!
//! The lock is advisory and only raftdump takes it: an original goraft node (raftd) on the same
//! dir does not see it and is not seen by it. Readers (`inspect`, `verify`, `diff`, `replay`,
//! `serve --read-only`) take no lock: they never write, may run on read-only media, and must
//! not stop a node from starting.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// The lock file's name inside a data dir.
pub const LOCK_FILE: &str = "raftdump.lock";

/// Why a dir could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{} is in use: {} holds the lock {} (one process per data dir: stop it first)",
        dir.display(),
        holder(*.pid),
        path.display()
    )]
    Held {
        /// The data dir.
        dir: PathBuf,
        /// The lock file.
        path: PathBuf,
        /// The holder's pid, as it wrote it in the file (`None` when it has not yet).
        pid: Option<u32>,
    },
    /// The lock file cannot be created, opened or locked.
    #[error("{}: cannot lock the data dir: {error}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error (in the message, not a source: printed once).
        error: io::Error,
    },
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("raftdump process {p}"),
        None => "another raftdump process".into(),
    }
}

/// The exclusive lock on a data dir, held until dropped (or the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock on `dir` (which must exist) without waiting, and writes this process's pid
    /// into the lock file. Refused with [`LockError::Held`] when another process holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |error| LockError::Io {
            path: path.clone(),
            error,
        };
        // O_NOFOLLOW: a symlink planted as the lock file must not make this process truncate
        // the file it points to.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(&path)
            .map_err(io)?;
        if !file.metadata().map_err(io)?.is_file() {
            return Err(io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is not a regular file",
            )));
        }
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    pid: read_pid(&mut file),
                    path,
                })
            }
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid a holder wrote, if the file holds one.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_pid_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        match DirLock::acquire(dir.path()) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_symlinked_lock_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(LOCK_FILE)).unwrap();
        let e = DirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(e, LockError::Io { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
