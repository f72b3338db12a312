//! goraft's RPC bodies (AppendEntries, RequestVote, Snapshot, SnapshotRecovery): the messages
//! and their codec.
//!
//! The codec writes raw proto2 bodies with every required field, zeros included (docs/format.md,
//! 'RPCs'), and decodes strictly: a body goes through [`wire::check`] (missing, mistyped or
//! truncated fields are errors, as in Go) before prost reads it.

use prost::Message;

use crate::format::proto::{self, ProtoPeer};
use crate::format::wire::{self, MessageSpec, WireError};
use crate::model::{Entry, Index, Peer, Term};

/// goraft's AppendEntriesRequest, with owned entries.
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

/// Decodes an AppendEntriesRequest strictly.
pub fn decode_append_request(body: &[u8]) -> Result<AppendRequest, DecodeError> {
    let m: proto::AppendEntriesRequest = strict(body, &proto::APPEND_ENTRIES_REQUEST)?;
    Ok(AppendRequest {
        term: m.term,
        prev_index: m.prev_log_index,
        prev_term: m.prev_log_term,
        commit: m.commit_index,
        leader: m.leader_name,
        entries: m
            .entries
            .into_iter()
            .map(|e| Entry {
                index: e.index,
                term: e.term,
                name: e.command_name,
                payload: e.command,
            })
            .collect(),
    })
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
        assert_eq!(decode_append_request(&bytes), Ok(req));
    }

    #[test]
    fn strict_decoding_refuses_what_go_refuses() {
        assert!(decode_append_request(b"").is_err());
        // A heartbeat without LeaderName.
        assert!(decode_append_request(&[0x08, 0, 0x10, 3, 0x18, 0, 0x20, 3]).is_err());
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
        assert_eq!(decode_append_request(&bytes), Ok(req));
    }
}
