//! [`EntryBatch`]: log entries kept in their wire form, goraft's canonical `LogEntry` bodies in
//! one buffer, read as borrowed [`EntryRef`] views.
//!
//! It owns the batch's memory layout and its invariant: every body in the buffer is exactly
//! what goraft's writer writes (fields 1-4 once each, in order, minimal varints) and its
//! CommandName is valid UTF-8. A received AppendEntries body becomes a batch without a copy
//! (`format::rpc::decode_append_request` moves the body in and rewrites the rare
//! non-canonical entry in place); a store writes each body as the frame's bytes. Pure; no I/O.

use std::fmt;

use crate::format::wire;
use crate::model::{Entry, Index, Term};

/// Entries in one buffer, each located by one `u32`.
///
/// # Memory
/// The buffer plus 4 bytes per entry. In a received body every entry takes at least 8 bytes
/// (its tag, its length and the three required fields), so the locations never cost more than
/// half of the body: the decoded request holds at most 1.5 times the body's bytes, in the
/// body's own allocation and one more.
#[derive(Clone, Default)]
pub struct EntryBatch {
    /// Length-prefixed canonical `LogEntry` bodies (and, in a received body, the rest of the
    /// message around them, which nothing reads).
    buf: Vec<u8>,
    /// For each entry, the offset in `buf` of its body's length varint.
    at: Vec<u32>,
}

/// One entry of an [`EntryBatch`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Log index.
    pub index: Index,
    /// Term.
    pub term: Term,
    /// Command name.
    pub name: &'a str,
    /// Command payload, `None` when field 4 is absent.
    pub payload: Option<&'a [u8]>,
    /// The entry's `LogEntry` body, exactly as goraft writes it.
    pub body: &'a [u8],
}

impl EntryRef<'_> {
    /// An owned copy.
    pub fn to_entry(&self) -> Entry {
        Entry {
            index: self.index,
            term: self.term,
            name: self.name.to_string(),
            payload: self.payload.map(<[u8]>::to_vec),
        }
    }
}

/// The length of goraft's encoding of a `LogEntry`.
pub fn canonical_len(index: Index, term: Term, name: &[u8], payload: Option<&[u8]>) -> usize {
    let field = |len: usize| 1 + wire::varint_len(len as u64) + len;
    2 + wire::varint_len(index)
        + wire::varint_len(term)
        + field(name.len())
        + payload.map_or(0, |p| field(p.len()))
}

/// A batch offset: the bodies of a batch stay under 4 GiB (RPC bodies are capped far below).
fn offset(at: usize) -> u32 {
    u32::try_from(at).expect("an entry batch holds under 4 GiB")
}

impl EntryBatch {
    /// An empty batch.
    pub fn new() -> EntryBatch {
        EntryBatch::default()
    }

    /// A batch over a received body whose entries are at `at` (see the type's invariant; the
    /// caller, `format::rpc`, has checked every body and name).
    pub(crate) fn from_parts(buf: Vec<u8>, at: Vec<u32>) -> EntryBatch {
        EntryBatch { buf, at }
    }

    /// The entries encoded as goraft does.
    pub fn from_entries(entries: &[Entry]) -> EntryBatch {
        let mut b = EntryBatch::new();
        for e in entries {
            b.push(e.index, e.term, &e.name, e.payload.as_deref());
        }
        b
    }

    /// Appends one entry.
    pub fn push(&mut self, index: Index, term: Term, name: &str, payload: Option<&[u8]>) {
        let len = canonical_len(index, term, name.as_bytes(), payload);
        self.buf.reserve(wire::varint_len(len as u64) + len);
        self.at.push(offset(self.buf.len()));
        wire::write_varint(len as u64, &mut self.buf);
        wire::encode_entry(index, term, name.as_bytes(), payload, &mut self.buf);
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Entry `k` (panics when `k >= len`).
    pub fn get(&self, k: usize) -> EntryRef<'_> {
        view(&self.buf, self.at[k])
    }

    /// The first entry.
    pub fn first(&self) -> Option<EntryRef<'_>> {
        self.at.first().map(|&a| view(&self.buf, a))
    }

    /// The last entry.
    pub fn last(&self) -> Option<EntryRef<'_>> {
        self.at.last().map(|&a| view(&self.buf, a))
    }

    /// The entries in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EntryRef<'_>> + DoubleEndedIterator + '_ {
        self.at.iter().map(|&a| view(&self.buf, a))
    }

    /// Drops the first `k` entries (all when `k >= len`); the buffer stays as it is.
    pub fn drop_front(&mut self, k: usize) {
        self.at.drain(..k.min(self.at.len()));
    }

    /// Owned copies of every entry.
    pub fn to_entries(&self) -> Vec<Entry> {
        self.iter().map(|e| e.to_entry()).collect()
    }
}

/// The entry whose length-prefixed body is at `at`.
fn view(buf: &[u8], at: u32) -> EntryRef<'_> {
    let mut pos = at as usize;
    let len = wire::read_varint(buf, &mut pos).expect("a batch entry's length") as usize;
    let body = &buf[pos..pos + len];
    let e = wire::decode_canonical(body).expect("a batch holds canonical entries");
    EntryRef {
        index: e.index,
        term: e.term,
        name: std::str::from_utf8(e.name).expect("a batch holds UTF-8 names"),
        payload: e.command,
        body,
    }
}

impl fmt::Debug for EntryBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Batches are equal when their entries are (wherever their bytes sit).
impl PartialEq for EntryBatch {
    fn eq(&self, other: &EntryBatch) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for EntryBatch {}

impl From<Vec<Entry>> for EntryBatch {
    fn from(entries: Vec<Entry>) -> EntryBatch {
        EntryBatch::from_entries(&entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: Index, name: &str, payload: Option<&[u8]>) -> Entry {
        Entry {
            index,
            term: 3,
            name: name.into(),
            payload: payload.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn entries_round_trip_as_goraft_bytes() {
        let es = vec![
            entry(1, "raft:nop", None),
            entry(2, "write", Some(b"{}")),
            entry(300, "", Some(b"")),
        ];
        let mut b = EntryBatch::from_entries(&es);
        assert_eq!(b.len(), 3);
        assert_eq!(b.to_entries(), es);
        for (r, e) in b.iter().zip(&es) {
            let mut want = Vec::new();
            wire::encode_entry(
                e.index,
                e.term,
                e.name.as_bytes(),
                e.payload.as_deref(),
                &mut want,
            );
            assert_eq!(r.body, want);
            assert_eq!(
                r.body.len(),
                canonical_len(e.index, e.term, e.name.as_bytes(), e.payload.as_deref())
            );
        }
        assert_eq!(b.last().map(|e| e.index), Some(300));
        b.drop_front(2);
        assert_eq!(b.to_entries(), es[2..]);
        assert_eq!(b.first().map(|e| e.index), Some(300));
        b.drop_front(5);
        assert!(b.is_empty());
    }
}
