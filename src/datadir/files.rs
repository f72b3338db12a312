//! Opening a data dir's files without trusting them: every file is opened with `O_NONBLOCK` and
//! checked with `fstat` to be a regular file before a byte is read, so that a FIFO, a device or a
//! socket put where `log`, `conf`, `name` or a snapshot belongs is an error naming it instead of a
//! read that never returns; and small files are read with a size cap, so that memory does not grow
//! with whatever sits there.
//!
//! It reads only. Every command (and `serve`) opens these files through here.

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::format::snapshot::{self, ParsedSnapshot, SnapshotError};

/// The most a `name` file may hold: raftd's names are 7 hex digits, and a name is sent in every
/// RPC and printed in every report.
pub const NAME_CAP: u64 = 4 << 10;

/// The most a `conf` file may hold: goraft's conf lists the peers (about 80 bytes each), so this
/// is hundreds of thousands of members.
pub const CONF_CAP: u64 = 64 << 20;

/// What a file that is not a regular file is, in words.
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// The error for a file that is `meta` instead of a regular file. Its message is all it says, so
/// that a caller's `path: error` reads `path: is a FIFO (named pipe), expected a regular file`.
fn not_regular(meta: &Metadata) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {}, expected a regular file", kind(meta)),
    )
}

/// Opens `path` read-only and non-blocking, and returns it with its metadata only when it is a
/// regular file (after following symlinks). Opening a FIFO this way returns at once, and a socket
/// fails (ENXIO): both are reported as what they are.
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        // A socket cannot be opened (ENXIO): say what it is rather than "No such device".
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
            return Err(match fs::metadata(path) {
                Ok(meta) if !meta.is_file() => not_regular(&meta),
                _ => e,
            })
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    Ok((file, meta))
}

/// How much of a file [`read_chunks`] reads at a time.
pub const CHUNK: usize = 1 << 20;

/// Reads `file` from where it stands to its end, [`CHUNK`] bytes at a time, handing each piece
/// to `each`; returns the length and CRC-32 of what was read. Memory stays one chunk whatever the
/// file's size (`repair` checks and backs up a log this way). A read error becomes `read_err`'s.
pub fn read_chunks<E>(
    file: &mut File,
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
    read_err: impl Fn(io::Error) -> E,
) -> Result<(u64, u32), E> {
    let mut buf = vec![0u8; CHUNK];
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok((len, crc.finalize())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        crc.update(&buf[..n]);
        len += n as u64;
        each(&buf[..n])?;
    }
}

/// Reads a regular file of at most `cap` bytes; `what` names it in the error for a larger one
/// ("a `name` file"). The file is read through the cap even if it grows meanwhile.
pub fn read_capped(path: &Path, cap: u64, what: &str) -> io::Result<Vec<u8>> {
    let (file, meta) = open_regular(path)?;
    let too_big = |len: u64| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is {len} bytes, more than the {cap} bytes {what} may hold"),
        )
    };
    if meta.len() > cap {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Reads an optional file with [`read_capped`]: `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path, cap: u64, what: &str) -> io::Result<Option<Vec<u8>>> {
    match read_capped(path, cap, what) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A snapshot file's size and parse (see [`read_snapshot`]).
pub type SnapshotRead = (u64, Result<ParsedSnapshot, SnapshotError>);

/// Parses a snapshot file as a stream (see [`crate::format::snapshot::parse_from`]): memory holds
/// what it decodes to, never the file. Returns the file's size with the parse; the outer error
/// is the file's (not regular, unreadable).
pub fn read_snapshot(path: &Path) -> io::Result<SnapshotRead> {
    let (mut file, meta) = open_regular(path)?;
    if meta.len() <= SNAPSHOT_IN_MEMORY {
        // Small enough to hold: the slice parser is much faster (start-up on a snapshot).
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        (&mut file)
            .take(SNAPSHOT_IN_MEMORY + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 <= SNAPSHOT_IN_MEMORY {
            return Ok((meta.len(), snapshot::parse(&bytes)));
        }
        return Ok((
            meta.len(),
            snapshot::parse_from(io::Cursor::new(bytes).chain(file))?,
        ));
    }
    Ok((meta.len(), snapshot::parse_from(file)?))
}

/// Snapshot files up to this size are read whole, then parsed from memory; larger ones are
/// parsed as a stream (memory then holds what they decode to, never the file).
const SNAPSHOT_IN_MEMORY: u64 = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_named_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("conf");
        let made = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo failed");
        let e = read_capped(&p, CONF_CAP, "a `conf` file").unwrap_err();
        assert_eq!(
            e.to_string(),
            "is a FIFO (named pipe), expected a regular file"
        );
        let e = read_snapshot(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    }

    #[test]
    fn a_socket_and_a_device_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("name");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = open_regular(&sock).unwrap_err();
        assert_eq!(e.to_string(), "is a socket, expected a regular file");
        // A character device of its own (the null device's numbers, 1:3), made in the test's
        // dir: mknod needs root, which the suite needs anyway (CONTRIBUTING.md).
        let dev = dir.path().join("conf");
        let made = std::process::Command::new("mknod")
            .arg(&dev)
            .args(["c", "1", "3"])
            .status()
            .unwrap();
        assert!(made.success(), "mknod failed (the test needs root)");
        let e = open_regular(&dev).unwrap_err();
        assert_eq!(
            e.to_string(),
            "is a character device, expected a regular file"
        );
        let e = open_regular(dir.path()).unwrap_err();
        assert_eq!(e.to_string(), "is a directory, expected a regular file");
    }

    #[test]
    fn the_cap_holds_and_names_the_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("name");
        fs::write(&p, vec![b'a'; NAME_CAP as usize]).unwrap();
        assert_eq!(
            read_capped(&p, NAME_CAP, "a `name` file").unwrap().len(),
            4096
        );
        fs::write(&p, vec![b'a'; NAME_CAP as usize + 1]).unwrap();
        let e = read_capped(&p, NAME_CAP, "a `name` file").unwrap_err();
        assert_eq!(
            e.to_string(),
            "is 4097 bytes, more than the 4096 bytes a `name` file may hold"
        );
        assert!(read_optional(&dir.path().join("none"), 1, "x")
            .unwrap()
            .is_none());
    }
}
