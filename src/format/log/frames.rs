//! A fast way through a log's frames for whole-log passes (`verify`, `diff`).
//!
//! [`Frames`] yields exactly what [`LogReader`] yields over the same bytes: the same entries and
//! the same damage, with the same offsets and ordinals. It decodes the frames goraft writes (a
//! canonical `"%8x\n"` header and a canonical body whose varints fit in 9 bytes) inline, with
//! small return values, and hands anything else to a [`LogReader`] started at that frame, which
//! reads from there exactly as it would have from the start (it never looks back before a frame
//! boundary). Optionally it tells the owner of the bytes (a memory-mapped log, see [`Pages`])
//! which pages lie behind it, so that they can be released.
//!
//! It owns no format knowledge of its own beyond the canonical shape, and it must not decide
//! anything [`LogReader`] decides: whatever it does not recognise, damage and its
//! resynchronisation included, goes to the reader. Pure: it sees `&[u8]` and the [`Pages`] hook.

use super::{DamageKind, LogError, LogReader, RawEntry};
use crate::format::dialect::Dialect;
use crate::format::frame::{self, Header, HeaderQuirks, CANONICAL_HEADER_LEN};
use crate::format::wire::{self, WireEntry};

/// Bytes whose pages can be given back once read: a memory-mapped log (`datadir::LogBytes`).
pub trait Pages {
    /// The bytes.
    fn bytes(&self) -> &[u8];
    /// Gives back the pages of `range`; the bytes stay readable (they are read again from the
    /// file if touched).
    fn release(&self, range: std::ops::Range<usize>);
}

/// How far the reader moves between two releases, and how much it keeps behind it: at most
/// twice this is resident per log (`verify` of several nodes reads them all at once).
const RELEASE_STEP: usize = 4 << 20;

/// Streams the frames of a log held in memory; see the module docs.
#[derive(Clone)]
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    ordinal: u64,
    log: Option<&'a dyn Pages>,
    released: usize,
    dialect: Dialect,
}

impl std::fmt::Debug for Frames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frames(at byte {} of {})", self.pos, self.buf.len())
    }
}

impl<'a> Frames<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Frames {
            buf,
            pos: 0,
            ordinal: 0,
            log: None,
            released: 0,
            dialect: Dialect::Goraft,
        }
    }

    /// This reader under `dialect` (goraft's unless told): its fast path is that dialect's
    /// canonical layout, and what it does not recognise goes to a [`LogReader`] of the same
    /// dialect.
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Reads `buf` from byte `pos`, where a reader started at 0 finds its frame number
    /// `ordinal` (counting good frames): so a pass can go on from where another reader of the
    /// same bytes stood.
    pub fn resume(buf: &'a [u8], pos: usize, ordinal: u64) -> Self {
        Frames {
            pos: pos.min(buf.len()),
            ordinal,
            ..Frames::new(buf)
        }
    }

    /// Reads a data dir's mapped log, giving back the pages it has left behind (see
    /// [`Pages::release`]) so that the resident set stays flat.
    pub fn releasing(log: &'a dyn Pages) -> Self {
        Frames {
            log: Some(log),
            ..Frames::new(log.bytes())
        }
    }

    /// The byte offset of the next frame.
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    /// The good frames read so far (counting those before the start of a resumed reader).
    pub fn ordinal(&self) -> u64 {
        self.ordinal
    }

    /// [`Frames::each`] for the items that start before byte `end`: it stops at the first frame
    /// (or damage) that starts at or after `end`, leaving the reader there. A frame that starts
    /// before `end` is read whole, wherever it ends.
    #[inline]
    pub fn each_before(
        &mut self,
        end: usize,
        f: impl FnMut(Result<&RawEntry<'a>, LogError>, usize),
    ) {
        // The dialect is decided once per pass, not once per frame.
        match self.dialect {
            Dialect::Goraft => self.each_before_as::<false>(end, f),
            Dialect::Seaweedfs => self.each_before_as::<true>(end, f),
        }
    }

    #[inline(always)]
    fn each_before_as<const PROTO3: bool>(
        &mut self,
        end: usize,
        mut f: impl FnMut(Result<&RawEntry<'a>, LogError>, usize),
    ) {
        while self.pos < end {
            if let Some(e) = self.fast_as::<PROTO3>(self.buf) {
                self.pos += CANONICAL_HEADER_LEN + e.body.len();
                self.ordinal += 1;
                self.release();
                f(Ok(&e), self.pos);
                continue;
            }
            let Some(item) = self.slow() else {
                return;
            };
            self.release();
            match item {
                Ok(e) => f(Ok(&e), self.pos),
                Err(d) => f(Err(d), self.pos),
            }
        }
    }

    /// The next frame without decoding it, when this log holds at this position the very bytes
    /// of `e`, a good frame that another log (`other`) holds at the same offset: then it is
    /// the frame [`Iterator::next`] would yield (a good frame's parse depends on its own bytes
    /// only), pointing into this log. `None` (and nothing read) otherwise.
    #[inline]
    pub fn next_if_same(&mut self, other: &[u8], e: &RawEntry<'_>) -> Option<RawEntry<'a>> {
        let pos = self.pos;
        if e.offset != pos as u64 {
            return None;
        }
        let len = e.header.len + e.body.len();
        let end = pos.checked_add(len)?;
        let mine = self.buf.get(pos..end)?;
        if other.get(pos..end)? != mine {
            return None;
        }
        // Where the name and the command sit inside the body: the same places here.
        let body = &mine[e.header.len..];
        let at = |part: &[u8]| {
            let from = (part.as_ptr() as usize).wrapping_sub(e.body.as_ptr() as usize);
            body.get(from..from.checked_add(part.len())?)
        };
        let name = at(e.wire.name)?;
        let command = match e.wire.command {
            Some(c) => Some(at(c)?),
            None => None,
        };
        let frame = RawEntry {
            offset: e.offset,
            ordinal: self.ordinal,
            header: e.header,
            body,
            wire: WireEntry {
                name,
                command,
                ..e.wire
            },
        };
        self.pos = end;
        self.ordinal += 1;
        self.release();
        Some(frame)
    }

    /// Calls `f` with every item [`Iterator::next`] would yield, in file order, and the byte
    /// offset reached after it. Good frames are passed by reference where they are decoded:
    /// moving each one through an `Option<Result<RawEntry, LogError>>` cost a fifth of a
    /// whole-log pass in stalled copies.
    #[inline]
    pub fn each(&mut self, f: impl FnMut(Result<&RawEntry<'a>, LogError>, usize)) {
        self.each_before(usize::MAX, f);
    }

    /// Reads the canonical good frames that lie wholly before byte `end`, passing each to `f`,
    /// for as long as `f` returns true. It stops, leaving the reader before it, at the first frame
    /// that is not canonical, not good, or not wholly before `end`, and at the first frame `f`
    /// refuses. Returns how many frames it read. A canonical good frame's parse depends on its own
    /// bytes only, so every frame passed is the one [`Iterator::next`] would yield, whatever
    /// follows `end`.
    #[inline]
    pub fn each_canonical_before(
        &mut self,
        end: usize,
        f: impl FnMut(&RawEntry<'a>) -> bool,
    ) -> u64 {
        match self.dialect {
            Dialect::Goraft => self.each_canonical_before_as::<false>(end, f),
            Dialect::Seaweedfs => self.each_canonical_before_as::<true>(end, f),
        }
    }

    #[inline(always)]
    fn each_canonical_before_as<const PROTO3: bool>(
        &mut self,
        end: usize,
        mut f: impl FnMut(&RawEntry<'a>) -> bool,
    ) -> u64 {
        let Some(buf) = self.buf.get(..end) else {
            return 0;
        };
        let mut read = 0;
        while let Some(e) = self.fast_as::<PROTO3>(buf) {
            if !f(&e) {
                break;
            }
            self.pos += CANONICAL_HEADER_LEN + e.body.len();
            self.ordinal += 1;
            read += 1;
        }
        self.release();
        read
    }

    /// Moves on to byte `pos`, past `frames` good frames, without reading them: for a reader
    /// whose log holds, from its position to `pos`, the very bytes in which another reader of
    /// the same offsets found those frames (see [`Frames::each_canonical_before`]). Then it is
    /// where [`Iterator::next`] would have brought it.
    pub fn skip_same(&mut self, pos: u64, frames: u64) {
        debug_assert!(pos as usize >= self.pos && pos as usize <= self.buf.len());
        self.pos = (pos as usize).clamp(self.pos, self.buf.len());
        self.ordinal += frames;
        self.release();
    }

    /// [`Frames::each`] that stops as soon as `f` breaks; the position is then just after the
    /// item it broke on. For a pass that can end early (`replay --at`).
    #[inline]
    pub fn each_until(
        &mut self,
        f: impl FnMut(Result<&RawEntry<'a>, LogError>) -> std::ops::ControlFlow<()>,
    ) {
        match self.dialect {
            Dialect::Goraft => self.each_until_as::<false>(f),
            Dialect::Seaweedfs => self.each_until_as::<true>(f),
        }
    }

    #[inline(always)]
    fn each_until_as<const PROTO3: bool>(
        &mut self,
        mut f: impl FnMut(Result<&RawEntry<'a>, LogError>) -> std::ops::ControlFlow<()>,
    ) {
        loop {
            let flow = if let Some(e) = self.fast_as::<PROTO3>(self.buf) {
                self.pos += CANONICAL_HEADER_LEN + e.body.len();
                self.ordinal += 1;
                self.release();
                f(Ok(&e))
            } else {
                let Some(item) = self.slow() else {
                    return;
                };
                self.release();
                match item {
                    Ok(e) => f(Ok(&e)),
                    Err(d) => f(Err(d)),
                }
            };
            if flow.is_break() {
                return;
            }
        }
    }

    /// The next frame, when it is canonical.
    #[inline(always)]
    fn fast(&self) -> Option<RawEntry<'a>> {
        match self.dialect {
            Dialect::Goraft => self.fast_as::<false>(self.buf),
            Dialect::Seaweedfs => self.fast_as::<true>(self.buf),
        }
    }

    /// The next frame of `buf` (this reader's bytes, or their start), when it is in the
    /// canonical layout of goraft's proto2 or, with `PROTO3`, of the seaweedfs/raft fork.
    #[inline(always)]
    fn fast_as<const PROTO3: bool>(&self, buf: &'a [u8]) -> Option<RawEntry<'a>> {
        let pos = self.pos;
        let h = buf.get(pos..)?.first_chunk::<CANONICAL_HEADER_LEN>()?;
        let body_len = frame::canonical_body_len(h)?;
        let start = pos + CANONICAL_HEADER_LEN;
        let body = buf.get(start..start.checked_add(body_len as usize)?)?;
        let wire = if PROTO3 {
            wire::decode_proto3_canonical(body)?
        } else {
            wire::decode_canonical(body)?
        };
        Some(RawEntry {
            offset: pos as u64,
            ordinal: self.ordinal,
            header: Header {
                body_len,
                len: CANONICAL_HEADER_LEN,
                quirks: HeaderQuirks::default(),
            },
            body,
            wire,
        })
    }

    /// The next item by [`LogReader`], started at this frame.
    #[cold]
    #[inline(never)]
    fn slow(&mut self) -> Option<Result<RawEntry<'a>, LogError>> {
        let base = self.pos;
        let mut reader = LogReader::with_dialect(self.buf.get(base..)?, self.dialect);
        let item = match reader.next()? {
            Ok(mut e) => {
                e.offset += base as u64;
                e.ordinal = self.ordinal;
                self.ordinal += 1;
                Ok(e)
            }
            Err(mut e) => {
                e.offset += base as u64;
                e.entry = self.ordinal;
                if let DamageKind::Garbage { at, .. } = &mut e.kind {
                    *at += base as u64;
                }
                Err(e)
            }
        };
        self.pos = base + reader.position() as usize;
        Some(item)
    }

    #[inline(always)]
    fn release(&mut self) {
        if let Some(log) = self.log {
            if self.pos >= self.released + 2 * RELEASE_STEP {
                let upto = self.pos - RELEASE_STEP;
                log.release(self.released..upto);
                self.released = upto;
            }
        }
    }
}

/// How many canonical frames in a row [`boundary_after`] wants before it takes a position for a
/// frame boundary.
const BOUNDARY_RUN: u32 = 8;

/// How far past its starting point [`boundary_after`] looks.
const BOUNDARY_REACH: usize = 1 << 20;

/// A likely frame boundary at or after byte `from` of `buf` (within a MiB of it): the first
/// position where `BOUNDARY_RUN` canonical good frames follow one another, with the index and
/// term of the first. Only likely: a payload can hold bytes that look like frames. A reader that
/// read the log from its start and stops exactly there proves it (it never lands inside a
/// frame), and a frame read from a true boundary is the frame any reader finds there.
pub fn boundary_after(buf: &[u8], from: usize, dialect: Dialect) -> Option<(usize, u64, u64)> {
    let limit = from.saturating_add(BOUNDARY_REACH).min(buf.len());
    let mut nl = from.checked_add(CANONICAL_HEADER_LEN - 1)?;
    while nl < limit {
        let at = nl + 1 - CANONICAL_HEADER_LEN;
        if buf[nl] == b'\n' {
            let mut reader = Frames::resume(buf, at, 0).dialect(dialect);
            let mut first = None;
            let mut run = 0;
            reader.each_canonical_before(buf.len(), |e| {
                first.get_or_insert((e.wire.index, e.wire.term));
                run += 1;
                run < BOUNDARY_RUN
            });
            if run == BOUNDARY_RUN {
                return first.map(|(index, term)| (at, index, term));
            }
        }
        nl += 1;
    }
    None
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<RawEntry<'a>, LogError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let item = match self.fast() {
            Some(e) => {
                self.pos += CANONICAL_HEADER_LEN + e.body.len();
                self.ordinal += 1;
                Ok(e)
            }
            None => self.slow()?,
        };
        self.release();
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::log::LogWriter;
    use crate::model::Command;

    /// The reader's sample (a fresh raftd's join, nop and write) and two frames with long
    /// varints and a name other than raftd's.
    fn sample() -> Vec<u8> {
        let mut w = LogWriter::new(crate::format::log::tests::sample());
        w.append(300, 1 << 40, &Command::Nop).unwrap();
        w.append_raw(301, 1 << 62, "etcd:set", Some(b"{}")).unwrap();
        w.into_inner()
    }

    /// A SeaweedFS master's log as the seaweedfs/raft fork writes it (proto3): term 0 without
    /// a Term field, a nop without a Command, then later terms and long varints.
    fn proto3_sample() -> Vec<u8> {
        let mut w = LogWriter::with_dialect(Vec::new(), Dialect::Seaweedfs);
        w.append(
            1,
            0,
            &Command::Join {
                name: "127.0.0.1:9333".into(),
                connection_string: "http://127.0.0.1:9333".into(),
            },
        )
        .unwrap();
        w.append(2, 0, &Command::Nop).unwrap();
        w.append_raw(3, 0, "MaxVolumeId", Some(b"{\"maxVolumeId\":1}\n"))
            .unwrap();
        w.append(4, 2, &Command::Nop).unwrap();
        w.append_raw(300, 1 << 40, "MaxVolumeId", Some(b"{}"))
            .unwrap();
        w.append_raw(301, 1 << 62, "", None).unwrap();
        w.into_inner()
    }

    /// Every item and position of `Frames` and `LogReader` over `bytes`, side by side.
    fn same_as_reader(bytes: &[u8]) {
        same_as_reader_in(bytes, Dialect::Goraft);
    }

    /// [`same_as_reader`] under `dialect`.
    fn same_as_reader_in(bytes: &[u8], dialect: Dialect) {
        let mut fast = Frames::new(bytes).dialect(dialect);
        let mut slow = LogReader::with_dialect(bytes, dialect);
        loop {
            let (a, b) = (fast.next(), slow.next());
            assert_eq!(a, b, "{bytes:?}");
            assert_eq!(fast.position(), slow.position(), "{bytes:?}");
            if a.is_none() {
                break;
            }
        }
        // `each` gives the same items with the same positions after them.
        let mut slow = LogReader::with_dialect(bytes, dialect);
        let mut seen = 0;
        Frames::new(bytes).dialect(dialect).each(|item, pos| {
            seen += 1;
            assert_eq!(Some(item.cloned()), slow.next(), "{bytes:?}");
            assert_eq!(pos as u64, slow.position(), "{bytes:?}");
        });
        assert_eq!(slow.next(), None, "{bytes:?} after {seen} items");
        // `each_until` gives the same items, and stops where it is told to.
        let all: Vec<_> = LogReader::with_dialect(bytes, dialect).collect();
        for stop in [0, 1, 3, usize::MAX] {
            let mut got = Vec::new();
            let mut frames = Frames::new(bytes).dialect(dialect);
            frames.each_until(|item| {
                got.push(item.cloned());
                if got.len() > stop {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            });
            let n = all.len().min(stop.saturating_add(1));
            assert_eq!(got, all[..n], "{bytes:?} stop {stop}");
            let mut reader = LogReader::with_dialect(bytes, dialect);
            reader.by_ref().take(n).for_each(drop);
            assert_eq!(
                frames.position(),
                reader.position(),
                "{bytes:?} stop {stop}"
            );
        }
    }

    #[test]
    fn agrees_with_the_reader_on_a_clean_log_and_its_every_cut_and_flip() {
        let base = sample();
        same_as_reader(&base);
        for cut in 0..base.len() {
            same_as_reader(&base[..cut]);
        }
        for at in 0..base.len() {
            for bit in 0..8 {
                let mut b = base.clone();
                b[at] ^= 1 << bit;
                same_as_reader(&b);
            }
            for byte in [0u8, b' ', b'0', b'A', b'\n', 0x80, 0xff] {
                let mut b = base.clone();
                b[at] = byte;
                same_as_reader(&b);
            }
        }
    }

    #[test]
    fn agrees_with_the_reader_on_a_proto3_log_and_its_every_cut_and_flip() {
        let base = proto3_sample();
        let all: Vec<_> = LogReader::with_dialect(&base, Dialect::Seaweedfs).collect();
        assert_eq!(all.len(), 6);
        assert!(all
            .iter()
            .all(|e| e.as_ref().is_ok_and(RawEntry::is_canonical)));
        // The fast path reads the fork's frames itself, not through the reader.
        let mut fast = Frames::new(&base).dialect(Dialect::Seaweedfs);
        assert!(fast.fast().is_some());
        assert_eq!(fast.by_ref().count(), 6);
        for dialect in [Dialect::Seaweedfs, Dialect::Goraft] {
            same_as_reader_in(&base, dialect);
            for cut in 0..base.len() {
                same_as_reader_in(&base[..cut], dialect);
            }
            for at in 0..base.len() {
                for byte in [0u8, b' ', b'0', b'\n', 0x10, 0x22, 0x80, 0xff] {
                    let mut b = base.clone();
                    b[at] = byte;
                    same_as_reader_in(&b, dialect);
                }
            }
        }
    }

    /// `next_if_same` on `b`, given what a reader of `a` yields, against `next` on `b`.
    fn same_as_next(a: &[u8], b: &[u8]) {
        let fa = Frames::new(a);
        let mut fb = Frames::new(b);
        for item in fa {
            let Ok(e) = item else { continue };
            // Bring b's reader to a's offset, as the comparison would find them.
            while fb.position() < e.offset {
                if fb.next().is_none() {
                    return;
                }
            }
            let mut plain = fb.clone();
            let want = plain.next();
            let before = fb.position();
            match fb.next_if_same(a, &e) {
                Some(got) => {
                    assert_eq!(Some(Ok(got)), want);
                    let range = b.as_ptr_range();
                    assert!(range.contains(&got.body.as_ptr()) || got.body.is_empty());
                    assert!(got
                        .wire
                        .command
                        .is_none_or(|c| range.contains(&c.as_ptr()) || c.is_empty()));
                    assert_eq!(
                        (fb.position(), fb.ordinal),
                        (plain.position(), plain.ordinal)
                    );
                }
                None => assert_eq!(fb.position(), before),
            }
        }
    }

    #[test]
    fn a_frame_with_the_same_bytes_is_taken_over_exactly() {
        let base = sample();
        same_as_next(&base, &base.clone());
        for at in 0..base.len() {
            for byte in [0u8, b' ', b'0', b'A', b'\n', 0x80, 0xff] {
                let mut b = base.clone();
                b[at] = byte;
                same_as_next(&base, &b);
                same_as_next(&b, &base);
                same_as_next(&b, &b.clone());
            }
        }
    }

    #[test]
    fn agrees_with_the_reader_on_long_varints_and_odd_headers() {
        let mut w = LogWriter::new(Vec::new());
        w.append(u64::MAX, u64::MAX, &Command::Nop).unwrap();
        w.append(1 << 63, 1, &Command::Nop).unwrap();
        let mut b = w.into_inner();
        b.extend_from_slice(b"0000000b\n\x08\x01\x10\x00\x1a\x05write");
        b.extend_from_slice(b"b\n\x08\x02\x10\x00\x1a\x05write");
        b.extend_from_slice(b"       0\n");
        b.extend_from_slice(b"\x00\x00\x00");
        b.extend_from_slice(b"       b\n\x08\x04\x10\x00\x1a\x05write");
        same_as_reader(&b);
        // A non-minimal varint (0x81 0x00 is 1) decodes as the reader decodes it.
        let mut b = b"       c\n\x08\x81\x00\x10\x00\x1a\x05write".to_vec();
        same_as_reader(&b);
        b.extend_from_slice(b"zz");
        same_as_reader(&b);
    }

    #[test]
    fn agrees_with_the_reader_on_the_real_fixtures() {
        let logs = crate::datadir::testing::fixture_logs();
        for p in &logs {
            same_as_reader(&std::fs::read(p).unwrap());
        }
        assert!(logs.len() > 10, "{} logs", logs.len());
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_reader_on_arbitrary_and_spliced_bytes(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            at in 0usize..200,
            splice in proptest::bool::ANY,
        ) {
            same_as_reader(&noise);
            let mut b = sample();
            let at = at.min(b.len());
            if splice {
                b.splice(at..at, noise.iter().copied());
            } else {
                let n = noise.len().min(b.len() - at);
                b[at..at + n].copy_from_slice(&noise[..n]);
            }
            same_as_reader(&b);
            same_as_next(&sample(), &b);
            same_as_next(&b, &sample());
            let mut b = proto3_sample();
            let at = at.min(b.len());
            b.splice(at..at, noise.iter().copied());
            same_as_reader_in(&noise, Dialect::Seaweedfs);
            same_as_reader_in(&b, Dialect::Seaweedfs);
        }
    }
}
