//! `--follow`: reads a log that a running node is appending to, as `tail -f` does, and turns
//! what happens to the file into [`Event`]s: each new entry, damage that stays, a truncation, the
//! file replaced or removed.
//!
//! [`Follower::poll`] stats the path and reads, with `pread` on the open file, only the bytes
//! past the last good frame, in windows of at most [`WINDOW`] bytes, through the project's one
//! [`LogReader`]. Every good frame is final (its parse depends on its own bytes only). Damage
//! that reaches the end of the file may be an append in progress, so it is reported only once it
//! has stayed at the same offset for the settle time; a torn tail that is reported is not passed:
//! if the writer completes the frame later, the entry is printed then.
//!
//! Truncation (a follower's log cut by a new leader, as goraft's `Log.truncate` does it, or a
//! torn tail cut by `repair`) is seen as the file shrinking below what was read, or, when it has
//! grown again since the last poll, as the last frame read no longer being there. The cut is
//! found from [`Mark`]s: one at the first entry, at every term change or index gap, and every
//! [`MARK_STEP`] bytes; between two marks the entries are consecutive indexes of one term. By
//! Raft's Log Matching property, an entry with the same index and term holds the same log
//! before it, so the cut is the first entry (by position) whose index and term differ from what
//! was read there, found by re-reading from the last mark still in place (at most a few MiB).
//!
//! Memory: the read window (up to [`WINDOW`], or one frame when a frame is larger; up to 16 MiB
//! past damage in the middle of the log, to find the next good frame as a reader of the whole
//! file would) and 32 bytes per mark: one per term change and per 4 MiB of log (a 100 GiB log
//! of 1,000 terms: 26,600 marks, 850 KB), never a list of every entry.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::format::dialect::Dialect;
use crate::format::frame;
use crate::format::log::{DamageKind, LogError, LogReader, RawEntry};

/// The most bytes read at once (more when one frame is larger).
pub const WINDOW: u64 = 1 << 20;

/// How far past damage in the middle of the log the reader looks for the next good frame.
const DAMAGE_WINDOW: u64 = 16 << 20;

/// A mark every this many bytes of log, at least.
pub const MARK_STEP: u64 = 4 << 20;

/// What happened to the followed log.
#[derive(Debug)]
pub enum Event<'a> {
    /// A good entry, in file order.
    Entry(&'a RawEntry<'a>),
    /// Damage that stayed for the settle time (or lies before good frames).
    Problem {
        /// The damage.
        error: LogError,
        /// The index of the last good entry before it.
        last_index: Option<u64>,
    },
    /// The log was cut: entries read before are gone.
    Truncated {
        /// The first index removed (one past the last index kept: goraft's indexes are
        /// consecutive).
        index: u64,
        /// The byte offset of the cut: where the first removed frame started.
        offset: u64,
        /// The last index kept, if any.
        last_index: Option<u64>,
        /// How many entries read before are gone.
        removed: u64,
    },
    /// The path now names another file (a rename over it, or removed and created again): it is
    /// read from its start.
    Replaced,
    /// The path is gone; the follower waits for it to come back.
    Removed,
}

/// Where a run of entries starts: the entries from here to the next mark have consecutive
/// indexes from `index`, all of term `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Byte offset of the frame.
    pub offset: u64,
    /// How many good entries precede it.
    pub ordinal: u64,
    /// Its index.
    pub index: u64,
    /// Its term.
    pub term: u64,
}

/// The last good entry read.
#[derive(Debug, Clone, Copy)]
struct Last {
    offset: u64,
    end: u64,
    index: u64,
    term: u64,
}

/// What a window's pass ended on.
enum Pass {
    /// Everything in the window was read.
    Done,
    /// Damage at the end of the file, not reported yet or a torn tail: wait for more bytes.
    Wait,
    /// Damage short of the end of the file: read a wider window from it.
    Widen,
}

/// Follows one log file; see the module docs.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    dialect: Dialect,
    settle: Duration,
    file: Option<File>,
    id: (u64, u64),
    removed: bool,
    seen: Option<(u64, SystemTime)>,
    pos: u64,
    ordinal: u64,
    last: Option<Last>,
    marks: Vec<Mark>,
    pending: Option<(u64, Instant)>,
    reported: Option<u64>,
    wide: bool,
    buf: Vec<u8>,
}

impl Follower {
    /// Follows the log at `path`, decoded under `dialect`; damage at the end of the file is
    /// reported once it has stayed `settle`.
    pub fn new(path: PathBuf, dialect: Dialect, settle: Duration) -> Self {
        Follower {
            path,
            dialect,
            settle,
            file: None,
            id: (0, 0),
            removed: false,
            seen: None,
            pos: 0,
            ordinal: 0,
            last: None,
            marks: Vec::new(),
            pending: None,
            reported: None,
            wide: false,
            buf: Vec::new(),
        }
    }

    /// The marks kept (for tests and the memory figure).
    pub fn marks(&self) -> &[Mark] {
        &self.marks
    }

    /// Looks at the file once and passes what happened since the last look to `sink`.
    pub fn poll(
        &mut self,
        now: Instant,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.removed {
                    self.removed = true;
                    sink(Event::Removed)?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let id = (meta.dev(), meta.ino());
        if self.file.is_none() || self.removed || id != self.id {
            if self.file.is_some() || self.removed {
                sink(Event::Replaced)?;
            }
            let file = File::open(&self.path)?;
            *self = Follower {
                file: Some(file),
                id,
                buf: std::mem::take(&mut self.buf),
                ..Follower::new(self.path.clone(), self.dialect, self.settle)
            };
        }
        let size = meta.len();
        let seen = (size, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        if self.seen == Some(seen) && self.pending.is_none() {
            return Ok(());
        }
        let changed = self.seen.is_some_and(|s| s != seen);
        self.seen = Some(seen);
        if size < self.pos || (changed && !self.last_still_there(size)?) {
            self.truncated(size, sink)?;
        }
        self.read_new(size, now, sink)
    }

    /// Whether the last good entry read is still the frame at its offset (same length, index
    /// and term).
    fn last_still_there(&mut self, size: u64) -> io::Result<bool> {
        let Some(l) = self.last else {
            return Ok(true);
        };
        Ok(self.entry_at(l.offset, size)? == Some((l.end, l.index, l.term)))
    }

    /// The end, index and term of the good frame at `offset`, if there is one.
    fn entry_at(&mut self, offset: u64, size: u64) -> io::Result<Option<(u64, u64, u64)>> {
        let head = 32.min(size.saturating_sub(offset));
        if !self.read_at(offset, head)? {
            return Ok(None);
        }
        let Ok(h) = frame::parse_header(&self.buf) else {
            return Ok(None);
        };
        let len = (h.len as u64 + u64::from(h.body_len)).min(size - offset);
        if !self.read_at(offset, len)? {
            return Ok(None);
        }
        Ok(
            match LogReader::with_dialect(&self.buf, self.dialect).next() {
                Some(Ok(e)) => Some((offset + e.end(), e.index(), e.term())),
                _ => None,
            },
        )
    }

    /// Reads `len` bytes at `offset` into the buffer; false if the file is shorter now.
    fn read_at(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        self.buf.clear();
        self.buf.resize(len as usize, 0);
        match file.read_exact_at(&mut self.buf, offset) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.buf.clear();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads from the last good frame to `size`, a window at a time.
    fn read_new(
        &mut self,
        size: u64,
        now: Instant,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        while self.pos < size {
            let cap = if self.wide { DAMAGE_WINDOW } else { WINDOW };
            let len = (size - self.pos).min(cap.max(self.frame_need(size)));
            let at_eof = self.pos + len == size;
            if !self.read_at(self.pos, len)? {
                return Ok(());
            }
            match self.pass(at_eof, now, sink)? {
                Pass::Done => self.wide = false,
                Pass::Wait => return Ok(()),
                Pass::Widen => self.wide = true,
            }
        }
        Ok(())
    }

    /// The size of the frame whose header is at the read position, as far as the file holds it
    /// (so that a frame larger than a window is read whole).
    fn frame_need(&mut self, size: u64) -> u64 {
        let head = 32.min(size - self.pos);
        if self.read_at(self.pos, head).unwrap_or(false) {
            if let Ok(h) = frame::parse_header(&self.buf) {
                return h.len as u64 + u64::from(h.body_len);
            }
        }
        0
    }

    /// Reads the window in the buffer (which starts at the read position).
    fn pass(
        &mut self,
        at_eof: bool,
        now: Instant,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<()>,
    ) -> io::Result<Pass> {
        let buf = std::mem::take(&mut self.buf);
        let result = self.pass_over(&buf, at_eof, now, sink);
        self.buf = buf;
        result
    }

    fn pass_over(
        &mut self,
        buf: &[u8],
        at_eof: bool,
        now: Instant,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<()>,
    ) -> io::Result<Pass> {
        let base = self.pos;
        for item in LogReader::with_dialect(buf, self.dialect) {
            match item {
                Ok(mut e) => {
                    e.offset += base;
                    e.ordinal = self.ordinal;
                    self.accept(&e);
                    sink(Event::Entry(&e))?;
                }
                Err(mut d) => {
                    d.offset += base;
                    d.entry = self.ordinal;
                    if let DamageKind::Garbage { at, .. } = &mut d.kind {
                        *at += base;
                    }
                    let end = d.offset + d.len;
                    if !at_eof && d.kind.is_torn_tail() {
                        // A frame cut by the window's end: the next window starts with it whole.
                        return Ok(Pass::Done);
                    }
                    if !at_eof && !self.wide {
                        return Ok(Pass::Widen);
                    }
                    if at_eof && !self.settled(d.offset, now) {
                        return Ok(Pass::Wait);
                    }
                    if self.reported != Some(d.offset) {
                        self.reported = Some(d.offset);
                        self.pending = None;
                        let last_index = self.last.map(|l| l.index);
                        sink(Event::Problem {
                            error: d,
                            last_index,
                        })?;
                    }
                    if at_eof && end == base + buf.len() as u64 {
                        // A torn tail stays unread: the writer may still complete the frame.
                        return Ok(Pass::Wait);
                    }
                    self.pos = end;
                    self.pending = None;
                }
            }
        }
        Ok(Pass::Done)
    }

    /// Whether damage at `offset` has stayed for the settle time (starting the clock when it
    /// is new).
    fn settled(&mut self, offset: u64, now: Instant) -> bool {
        match self.pending {
            Some((at, since)) if at == offset => now.duration_since(since) >= self.settle,
            _ => {
                log::debug!(
                    "byte {offset}: an incomplete or damaged frame at the end of the log; waiting {} ms for it to settle",
                    self.settle.as_millis()
                );
                self.pending = Some((offset, now));
                self.settle.is_zero()
            }
        }
    }

    /// Takes a good entry: the position moves past it, and a mark is set where needed.
    fn accept(&mut self, e: &RawEntry<'_>) {
        let (index, term) = (e.index(), e.term());
        let mark = match (self.last, self.marks.last()) {
            (Some(l), Some(m)) => {
                term != l.term
                    || Some(index) != l.index.checked_add(1)
                    || e.offset >= m.offset + MARK_STEP
            }
            _ => true,
        };
        if mark {
            self.marks.push(Mark {
                offset: e.offset,
                ordinal: self.ordinal,
                index,
                term,
            });
        }
        self.last = Some(Last {
            offset: e.offset,
            end: e.end(),
            index,
            term,
        });
        self.ordinal += 1;
        self.pos = e.end();
        if self.pending.is_some_and(|(at, _)| at < self.pos) {
            self.pending = None;
        }
    }

    /// The index and term the entry numbered `ordinal` had when it was read.
    fn expected(&self, ordinal: u64) -> Option<(u64, u64)> {
        let k = self.marks.partition_point(|m| m.ordinal <= ordinal);
        let m = self.marks.get(k.checked_sub(1)?)?;
        Some((m.index + (ordinal - m.ordinal), m.term))
    }

    /// The log was cut: finds where (see the module docs), says so and reads on from there.
    fn truncated(
        &mut self,
        size: u64,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        // The last mark whose frame is still in place, and the first one that is not.
        let mut limit = self.ordinal;
        let mut start = None;
        for k in (0..self.marks.len()).rev() {
            let m = self.marks[k];
            if self.entry_at(m.offset, size)?.map(|(_, i, t)| (i, t)) == Some((m.index, m.term)) {
                start = Some(k);
                break;
            }
            limit = m.ordinal;
        }
        let (mut cut, mut kept, mut last) = (0, 0, None);
        if let Some(k) = start {
            let m = self.marks[k];
            let span_end = self.marks.get(k + 1).map_or(self.pos, |n| n.offset);
            let len = span_end.min(size) - m.offset;
            if self.read_at(m.offset, len)? {
                (cut, kept) = (m.offset, m.ordinal);
                for e in LogReader::with_dialect(&self.buf, self.dialect).map_while(Result::ok) {
                    let here = (e.index(), e.term());
                    if kept >= limit || self.expected(kept) != Some(here) {
                        break;
                    }
                    last = Some(Last {
                        offset: m.offset + e.offset,
                        end: m.offset + e.end(),
                        index: here.0,
                        term: here.1,
                    });
                    cut = m.offset + e.end();
                    kept += 1;
                }
            }
        }
        let index = match self.expected(kept) {
            Some((i, _)) if kept < self.ordinal => i,
            _ => last.map_or(1, |l: Last| l.index + 1),
        };
        sink(Event::Truncated {
            index,
            offset: cut,
            last_index: last.map(|l| l.index),
            removed: self.ordinal - kept,
        })?;
        self.marks.retain(|m| m.ordinal < kept);
        (self.pos, self.ordinal, self.last) = (cut, kept, last);
        (self.pending, self.reported, self.wide) = (None, None, false);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
