//! goraft's RPC bodies (AppendEntries, RequestVote, Snapshot, SnapshotRecovery): the messages
//! and their codec.
//!
//! The codec writes raw proto2 bodies with every required field, zeros included (docs/format.md,
//! 'RPCs'), and decodes strictly: a body goes through [`wire::check`] (missing, mistyped or
//! truncated fields are errors, as in Go) before prost reads it. An AppendEntriesRequest is
//! read without prost and without copying its entries ([`decode_append_request`]), to the same
//! verdict and the same fields.

use std::ops::Range;

use prost::Message;

use crate::format::batch::{canonical_len, EntryBatch};
use crate::format::proto::{self, ProtoPeer};
use crate::format::wire::{self, MessageSpec, WireError, WireValue};
use crate::model::{Entry, Index, Peer, Term};

/// goraft's AppendEntriesRequest as a leader sends it, with owned entries.
///
/// The sending side keeps owned entries: a leader gets them from its store as values (its cache
/// of recent entries, or a read of the file) and encodes them once into the body, so a batch in
/// wire form there would add a copy, not save one. What a node receives is a
/// [`ReceivedAppend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// Leader's term.
    pub term: Term,
    /// Index before the first entry.
    pub prev_index: Index,
    /// Its term.
    pub prev_term: Term,
    /// Leader's commit index.
    pub commit: Index,
    /// Leader's name.
    pub leader: String,
    /// The entries.
    pub entries: Vec<Entry>,
}

/// goraft's AppendEntriesRequest as a node receives it: the entries stay in the body's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAppend {
    /// Leader's term.
    pub term: Term,
    /// Index before the first entry.
    pub prev_index: Index,
    /// Its term.
    pub prev_term: Term,
    /// Leader's commit index.
    pub commit: Index,
    /// Leader's name.
    pub leader: String,
    /// The entries, canonical whatever their encoding on the wire.
    pub entries: EntryBatch,
}

/// In-process delivery (the simulator, tests): the entries as they would arrive.
impl From<AppendRequest> for ReceivedAppend {
    fn from(r: AppendRequest) -> ReceivedAppend {
        ReceivedAppend {
            term: r.term,
            prev_index: r.prev_index,
            prev_term: r.prev_term,
            commit: r.commit,
            leader: r.leader,
            entries: EntryBatch::from_entries(&r.entries),
        }
    }
}

/// goraft's AppendEntriesResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResponse {
    /// Responder's term.
    pub term: Term,
    /// On success the last index known to match the leader; on failure the last log index.
    pub index: Index,
    /// Responder's commit index.
    pub commit: Index,
    /// Whether the entries were accepted.
    pub success: bool,
}

/// goraft's RequestVoteRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRequest {
    /// Candidate's term.
    pub term: Term,
    /// Candidate's last log index.
    pub last_index: Index,
    /// Candidate's last log term.
    pub last_term: Term,
    /// Candidate's name.
    pub candidate: String,
}

/// goraft's RequestVoteResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteResponse {
    /// Responder's term.
    pub term: Term,
    /// Whether the vote was granted.
    pub granted: bool,
}

/// goraft's SnapshotRecoveryRequest, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInstall {
    /// Sender.
    pub leader: String,
    /// Snapshot point.
    pub last_index: Index,
    /// Its term.
    pub last_term: Term,
    /// Every member, the leader included.
    pub peers: Vec<Peer>,
    /// State machine bytes.
    pub state: Vec<u8>,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Go's decoder would refuse it too.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// prost refused it (e.g. a string that is not UTF-8).
    #[error("{0}")]
    Prost(String),
    /// A string field that is not UTF-8 (prost refuses it: goraft's Go structs hold strings).
    #[error("string field {field} at body offset {offset} is not valid UTF-8")]
    NotUtf8 {
        /// Offset of the field's bytes in the body.
        offset: usize,
        /// Field name.
        field: &'static str,
    },
    /// A body of 4 GiB or more (an entry batch locates its entries with 32 bits).
    #[error("a body of {0} bytes is over the 4 GiB an AppendEntries may have")]
    TooLarge(usize),
}

fn strict<M: Message + Default>(body: &[u8], spec: &'static MessageSpec) -> Result<M, DecodeError> {
    if body.is_empty() {
        return Err(WireError::Empty.into());
    }
    wire::check(body, spec)?;
    M::decode(body).map_err(|e| DecodeError::Prost(e.to_string()))
}

fn put_varint_field(tag: u8, v: u64, out: &mut Vec<u8>) {
    out.push(tag);
    wire::write_varint(v, out);
}

fn put_bytes_field(tag: u8, b: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    wire::write_varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// Encodes an AppendEntriesRequest (entries embedded as bare `LogEntry` bodies).
pub fn encode_append_request(req: &AppendRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + req.entries.len() * 64);
    encode_append_request_into(req, &mut out);
    out
}

/// [`encode_append_request`], appending to `out`.
pub fn encode_append_request_into(req: &AppendRequest, out: &mut Vec<u8>) {
    put_varint_field(0x08, req.term, out);
    put_varint_field(0x10, req.prev_index, out);
    put_varint_field(0x18, req.prev_term, out);
    put_varint_field(0x20, req.commit, out);
    put_bytes_field(0x2a, req.leader.as_bytes(), out);
    for e in &req.entries {
        // The embedded LogEntry's length first, then the entry written in place.
        let field = |len: usize| 1 + wire::varint_len(len as u64) + len;
        let len = 1
            + wire::varint_len(e.index)
            + 1
            + wire::varint_len(e.term)
            + field(e.name.len())
            + e.payload.as_ref().map_or(0, |p| field(p.len()));
        out.push(0x32);
        wire::write_varint(len as u64, out);
        wire::encode_entry(
            e.index,
            e.term,
            e.name.as_bytes(),
            e.payload.as_deref(),
            out,
        );
    }
}

/// Decodes an AppendEntriesRequest strictly, taking the body: its entries stay in it.
///
/// The verdict and the fields are prost's after [`wire::check`] (tied by a property test):
/// top-level fields and entry fields by their last occurrence, every occurrence of a string
/// field checked for UTF-8. No per-entry allocation: each entry costs one `u32` beside the body.
/// An entry written otherwise than goraft writes it (fields out of order, repeated or unknown,
/// over-long varints) is re-encoded canonically in place, over its own bytes (the canonical
/// form is never longer), so whatever stores the batch writes goraft's bytes.
pub fn decode_append_request(mut body: Vec<u8>) -> Result<ReceivedAppend, DecodeError> {
    if body.is_empty() {
        return Err(WireError::Empty.into());
    }
    if u32::try_from(body.len()).is_err() {
        return Err(DecodeError::TooLarge(body.len()));
    }
    wire::validate(&body, &proto::APPEND_ENTRIES_REQUEST)?;
    let mut head = [0u64; 4];
    let mut leader = 0..0;
    // Every entry takes at least 8 bytes of the body: this is never grown (pages not written
    // are not resident).
    let mut at = Vec::with_capacity(body.len() / 8);
    let mut scratch = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let f = wire::read_field(&body, &mut pos)?;
        let tag_at = f.offset;
        match (f.number, f.value) {
            (n @ 1..=4, WireValue::Varint(v)) => head[n as usize - 1] = v,
            (5, WireValue::Bytes(b)) => {
                leader = range_in(&body, b);
                utf8(b, leader.start, "LeaderName")?;
            }
            (6, WireValue::Bytes(b)) => {
                let r = range_in(&body, b);
                at.push(place_entry(&mut body, tag_at, r, &mut scratch)?);
            }
            _ => {}
        }
    }
    let leader = std::str::from_utf8(&body[leader])
        .unwrap_or_default()
        .to_string();
    let [term, prev_index, prev_term, commit] = head;
    Ok(ReceivedAppend {
        term,
        prev_index,
        prev_term,
        commit,
        leader,
        entries: EntryBatch::from_parts(body, at),
    })
}

/// Where `part` (a slice of `whole`) lies in it.
fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

fn utf8(b: &[u8], offset: usize, field: &'static str) -> Result<(), DecodeError> {
    match std::str::from_utf8(b) {
        Ok(_) => Ok(()),
        Err(_) => Err(DecodeError::NotUtf8 { offset, field }),
    }
}

/// Checks the embedded `LogEntry` at `body[r]` (its field's tag at `tag_at`) and returns where
/// its length-prefixed canonical body is: in place when the bytes are goraft's, else written
/// over the field's own bytes (tag, length and body: at least one byte more than needed).
fn place_entry(
    body: &mut [u8],
    tag_at: usize,
    r: Range<usize>,
    scratch: &mut Vec<u8>,
) -> Result<u32, DecodeError> {
    let bytes = &body[r.clone()];
    let e = wire::decode_entry(bytes)?;
    if e.canonical {
        utf8(e.name, r.start, "CommandName")?;
    } else {
        // prost checks every occurrence of a string field, not only the one it keeps.
        for f in wire::Fields::new(bytes) {
            let f = f?;
            if let (3, WireValue::Bytes(n)) = (f.number, f.value) {
                utf8(n, r.start + f.offset, "CommandName")?;
            }
        }
    }
    let len = canonical_len(e.index, e.term, e.name, e.command);
    if e.canonical && r.len() == len && r.start == tag_at + 1 + wire::varint_len(len as u64) {
        return Ok((tag_at + 1) as u32);
    }
    scratch.clear();
    wire::write_varint(len as u64, scratch);
    wire::encode_entry(e.index, e.term, e.name, e.command, scratch);
    body[tag_at..tag_at + scratch.len()].copy_from_slice(scratch);
    Ok(tag_at as u32)
}

/// Encodes an AppendEntriesResponse.
pub fn encode_append_response(r: &AppendResponse) -> Vec<u8> {
    proto::AppendEntriesResponse {
        term: r.term,
        index: r.index,
        commit_index: r.commit,
        success: r.success,
    }
    .encode_to_vec()
}

/// Decodes an AppendEntriesResponse strictly.
pub fn decode_append_response(body: &[u8]) -> Result<AppendResponse, DecodeError> {
    let m: proto::AppendEntriesResponse = strict(body, &proto::APPEND_ENTRIES_RESPONSE)?;
    Ok(AppendResponse {
        term: m.term,
        index: m.index,
        commit: m.commit_index,
        success: m.success,
    })
}

/// Encodes a RequestVoteRequest.
pub fn encode_vote_request(r: &VoteRequest) -> Vec<u8> {
    proto::RequestVoteRequest {
        term: r.term,
        last_log_index: r.last_index,
        last_log_term: r.last_term,
        candidate_name: r.candidate.clone(),
    }
    .encode_to_vec()
}

/// Decodes a RequestVoteRequest strictly.
pub fn decode_vote_request(body: &[u8]) -> Result<VoteRequest, DecodeError> {
    let m: proto::RequestVoteRequest = strict(body, &proto::REQUEST_VOTE_REQUEST)?;
    Ok(VoteRequest {
        term: m.term,
        last_index: m.last_log_index,
        last_term: m.last_log_term,
        candidate: m.candidate_name,
    })
}

/// Encodes a RequestVoteResponse.
pub fn encode_vote_response(r: &VoteResponse) -> Vec<u8> {
    proto::RequestVoteResponse {
        term: r.term,
        vote_granted: r.granted,
    }
    .encode_to_vec()
}

/// Decodes a RequestVoteResponse strictly.
pub fn decode_vote_response(body: &[u8]) -> Result<VoteResponse, DecodeError> {
    let m: proto::RequestVoteResponse = strict(body, &proto::REQUEST_VOTE_RESPONSE)?;
    Ok(VoteResponse {
        term: m.term,
        granted: m.vote_granted,
    })
}

/// Decodes a SnapshotRequest strictly: `(leader, last index, last term)`.
pub fn decode_snapshot_request(body: &[u8]) -> Result<(String, Index, Term), DecodeError> {
    let m: proto::SnapshotRequest = strict(body, &proto::SNAPSHOT_REQUEST)?;
    Ok((m.leader_name, m.last_index, m.last_term))
}

/// Decodes a SnapshotRecoveryRequest strictly.
pub fn decode_snapshot_install(body: &[u8]) -> Result<SnapshotInstall, DecodeError> {
    let m: proto::SnapshotRecoveryRequest = strict(body, &proto::SNAPSHOT_RECOVERY_REQUEST)?;
    Ok(SnapshotInstall {
        leader: m.leader_name,
        last_index: m.last_index,
        last_term: m.last_term,
        peers: m
            .peers
            .into_iter()
            .map(|p| Peer {
                name: p.name,
                connection_string: p.connection_string,
            })
            .collect(),
        state: m.state,
    })
}

/// Encodes a SnapshotResponse.
pub fn encode_snapshot_response(success: bool) -> Vec<u8> {
    proto::SnapshotResponse { success }.encode_to_vec()
}

/// Encodes a SnapshotRecoveryResponse.
pub fn encode_snapshot_install_response(term: Term, success: bool, commit: Index) -> Vec<u8> {
    proto::SnapshotRecoveryResponse {
        term,
        success,
        commit_index: commit,
    }
    .encode_to_vec()
}

/// Encodes a SnapshotRequest: the offer of `s`'s snapshot point.
pub fn encode_snapshot_request(s: &SnapshotInstall) -> Vec<u8> {
    proto::SnapshotRequest {
        leader_name: s.leader.clone(),
        last_index: s.last_index,
        last_term: s.last_term,
    }
    .encode_to_vec()
}

/// Decodes a SnapshotResponse strictly: its `success`.
pub fn decode_snapshot_response(body: &[u8]) -> Result<bool, DecodeError> {
    strict::<proto::SnapshotResponse>(body, &proto::SNAPSHOT_RESPONSE).map(|r| r.success)
}

/// Encodes a SnapshotRecoveryRequest.
pub fn encode_snapshot_install(s: &SnapshotInstall) -> Vec<u8> {
    proto::SnapshotRecoveryRequest {
        leader_name: s.leader.clone(),
        last_index: s.last_index,
        last_term: s.last_term,
        peers: s
            .peers
            .iter()
            .map(|p| ProtoPeer {
                name: p.name.clone(),
                connection_string: p.connection_string.clone(),
            })
            .collect(),
        state: s.state.clone(),
    }
    .encode_to_vec()
}

/// Decodes a SnapshotRecoveryResponse strictly: its `success`.
pub fn decode_snapshot_install_response(body: &[u8]) -> Result<bool, DecodeError> {
    strict::<proto::SnapshotRecoveryResponse>(body, &proto::SNAPSHOT_RECOVERY_RESPONSE)
        .map(|r| r.success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::proto::APPEND_ENTRIES_REQUEST;

    #[test]
    fn append_request_round_trips_and_matches_the_spec_bytes() {
        // The new leader's nop as raftd sends it (33 bytes).
        let req = AppendRequest {
            term: 1,
            prev_index: 4,
            prev_term: 0,
            commit: 3,
            leader: "2832bfa".into(),
            entries: vec![Entry {
                index: 5,
                term: 1,
                name: "raft:nop".into(),
                payload: None,
            }],
        };
        let bytes = encode_append_request(&req);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "08011004180020032a0732383332626661320e080510011a08726166743a6e6f70"
        );
        assert_eq!(wire::check(&bytes, &APPEND_ENTRIES_REQUEST), Ok(vec![]));
        assert_eq!(decode_append_request(bytes), Ok(req.into()));
    }

    #[test]
    fn strict_decoding_refuses_what_go_refuses() {
        assert!(decode_append_request(Vec::new()).is_err());
        // A heartbeat without LeaderName.
        assert!(decode_append_request(vec![0x08, 0, 0x10, 3, 0x18, 0, 0x20, 3]).is_err());
        // AE response without Success (prost alone would accept it).
        assert!(decode_append_response(&[0x08, 1, 0x10, 5, 0x18, 3]).is_err());
        assert_eq!(
            decode_vote_response(&[0x08, 0, 0x10, 0]),
            Ok(VoteResponse {
                term: 0,
                granted: false
            })
        );
    }

    #[test]
    fn encoding_in_place_matches_the_entry_bodies() {
        let req = AppendRequest {
            term: 300,
            prev_index: 1 << 20,
            prev_term: 299,
            commit: 5,
            leader: "n".into(),
            entries: vec![
                Entry {
                    index: (1 << 20) + 1,
                    term: 300,
                    name: "write".into(),
                    payload: Some(vec![b'x'; 200]),
                },
                Entry {
                    index: (1 << 20) + 2,
                    term: 300,
                    name: "raft:nop".into(),
                    payload: None,
                },
            ],
        };
        let bytes = encode_append_request(&req);
        assert_eq!(wire::check(&bytes, &APPEND_ENTRIES_REQUEST), Ok(vec![]));
        assert_eq!(decode_append_request(bytes), Ok(req.into()));
    }

    /// What prost reads after [`wire::check`]: the decoder [`decode_append_request`] replaced.
    type Fields = (Term, Index, Term, Index, String, Vec<Entry>);

    fn by_prost(body: &[u8]) -> Option<Fields> {
        let m: proto::AppendEntriesRequest = strict(body, &APPEND_ENTRIES_REQUEST).ok()?;
        let entries = m.entries.into_iter().map(|e| Entry {
            index: e.index,
            term: e.term,
            name: e.command_name,
            payload: e.command,
        });
        let head = (m.term, m.prev_log_index, m.prev_log_term, m.commit_index);
        Some((
            head.0,
            head.1,
            head.2,
            head.3,
            m.leader_name,
            entries.collect(),
        ))
    }

    fn by_batch(body: &[u8]) -> Option<Fields> {
        let r = decode_append_request(body.to_vec()).ok()?;
        for e in r.entries.iter() {
            // What a store writes is goraft's encoding.
            let mut want = Vec::new();
            let name = e.name.as_bytes();
            wire::encode_entry(e.index, e.term, name, e.payload, &mut want);
            assert_eq!(e.body, want);
        }
        let es = r.entries.to_entries();
        Some((r.term, r.prev_index, r.prev_term, r.commit, r.leader, es))
    }

    /// One generated field: (kind, field choice, varint value, bytes, flag).
    type Tok = (u8, u8, u64, Vec<u8>, bool);

    fn varint_field(number: u8, v: u64, long: bool, out: &mut Vec<u8>) {
        out.push(number << 3);
        let at = out.len();
        wire::write_varint(v, out);
        if long && out.len() - at < 10 {
            // The same value with one more byte: Go and prost read it, goraft never writes it.
            *out.last_mut().unwrap() |= 0x80;
            out.push(0);
        }
    }

    fn bytes_field(number: u8, b: &[u8], out: &mut Vec<u8>) {
        out.push(number << 3 | 2);
        wire::write_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn other_field(t: &Tok, numbers: &[u8], out: &mut Vec<u8>) {
        let number = numbers[t.1 as usize % numbers.len()];
        match t.0 % 3 {
            0 => {
                out.push(number << 3 | 5);
                out.extend_from_slice(&(t.2 as u32).to_le_bytes());
            }
            1 => {
                out.push(number << 3 | 1);
                out.extend_from_slice(&t.2.to_le_bytes());
            }
            _ => out.extend_from_slice(&t.3),
        }
    }

    /// An entry's fields: with `whole`, goraft's three required fields come first (so that most
    /// generated entries decode), then the tokens' fields.
    fn entry_bytes(whole: bool, toks: &[Tok]) -> Vec<u8> {
        let mut out = Vec::new();
        if whole {
            out.extend_from_slice(&[0x08, 7, 0x10, 1, 0x1a, 1, b'w']);
        }
        for t in toks {
            match t.0 % 6 {
                0 | 1 => varint_field([1, 2, 9, 1, 2, 9, 3][t.1 as usize % 7], t.2, t.4, &mut out),
                2 | 3 => bytes_field([3, 4, 3, 4, 9, 1][t.1 as usize % 6], &t.3, &mut out),
                _ => other_field(t, &[9, 9, 9, 3], &mut out),
            }
        }
        out
    }

    fn body_bytes(head: bool, toks: &[(Tok, Vec<Tok>)]) -> Vec<u8> {
        let mut out = Vec::new();
        if head {
            out.extend_from_slice(&[0x08, 2, 0x10, 0, 0x18, 0, 0x20, 0, 0x2a, 1, b'n']);
        }
        for (t, inner) in toks {
            match t.0 % 8 {
                0 => varint_field([1, 2, 3, 4, 9, 9, 5][t.1 as usize % 7], t.2, t.4, &mut out),
                1 => bytes_field([5, 5, 7, 7, 1][t.1 as usize % 5], &t.3, &mut out),
                2..=4 => bytes_field(6, &entry_bytes(t.4, inner), &mut out),
                5 | 6 => {
                    let mut e = Vec::new();
                    let payload = t.4.then_some(&t.3[..]);
                    wire::encode_entry(t.2, t.2 % 5, b"write", payload, &mut e);
                    bytes_field(6, &e, &mut out);
                }
                _ => other_field(t, &[9, 9, 9, 6], &mut out),
            }
        }
        out
    }

    fn tok() -> impl proptest::strategy::Strategy<Value = Tok> {
        use proptest::prelude::*;
        let value = prop_oneof![Just(0u64), 0u64..300, Just(u64::MAX), any::<u64>()];
        let bytes = prop_oneof![
            Just(b"write".to_vec()),
            Just(Vec::new()),
            Just(vec![0xff]),
            Just(vec![0xc3, 0xa9]),
            proptest::collection::vec(any::<u8>(), 0..6),
        ];
        (any::<u8>(), any::<u8>(), value, bytes, any::<bool>())
    }

    #[test]
    fn non_canonical_entries_are_stored_canonically() {
        // Command before name, an unknown field, Index twice (the last wins), a long varint.
        let mut e = Vec::new();
        varint_field(2, 1, true, &mut e);
        bytes_field(4, b"{}", &mut e);
        varint_field(1, 9, false, &mut e);
        bytes_field(9, b"x", &mut e);
        bytes_field(3, b"write", &mut e);
        varint_field(1, 5, false, &mut e);
        let mut body = vec![0x08, 1, 0x10, 4, 0x18, 1, 0x20, 0, 0x2a, 1, b'n'];
        bytes_field(6, &e, &mut body);
        let r = decode_append_request(body.clone()).unwrap();
        let want = Entry {
            index: 5,
            term: 1,
            name: "write".into(),
            payload: Some(b"{}".to_vec()),
        };
        assert_eq!(r.entries.to_entries(), [want]);
        let mut canonical = Vec::new();
        wire::encode_entry(5, 1, b"write", Some(b"{}"), &mut canonical);
        assert_eq!(r.entries.get(0).body, canonical);
        assert_eq!(by_batch(&body), by_prost(&body));
        // A name that is not UTF-8 in an occurrence prost overwrites is still refused.
        let mut e = Vec::new();
        varint_field(1, 5, false, &mut e);
        varint_field(2, 1, false, &mut e);
        bytes_field(3, &[0xff], &mut e);
        bytes_field(3, b"write", &mut e);
        let mut body = vec![0x08, 1, 0x10, 4, 0x18, 1, 0x20, 0, 0x2a, 1, b'n'];
        bytes_field(6, &e, &mut body);
        assert!(matches!(
            decode_append_request(body.clone()),
            Err(DecodeError::NotUtf8 {
                field: "CommandName",
                ..
            })
        ));
        assert_eq!(by_prost(&body), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The batch decoder and prost (after `wire::check`) agree on every body: the same
        /// verdict, the same fields and entries.
        #[test]
        fn the_batch_decoder_agrees_with_prost(
            head in proptest::bool::weighted(0.8),
            toks in proptest::collection::vec(
                (tok(), proptest::collection::vec(tok(), 0..6)),
                0..8,
            ),
            cut in proptest::option::weighted(0.1, 0usize..200),
            flip in proptest::option::weighted(0.1, (0usize..200, proptest::prelude::any::<u8>())),
        ) {
            let mut body = body_bytes(head, &toks);
            if let Some(c) = cut {
                body.truncate(c);
            }
            if let Some((at, b)) = flip {
                if let Some(x) = body.get_mut(at) {
                    *x ^= b;
                }
            }
            proptest::prop_assert_eq!(by_batch(&body), by_prost(&body));
        }
    }
}
