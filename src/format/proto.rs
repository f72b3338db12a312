//! goraft's proto2 messages as hand-written prost structs, and their declarations for the
//! strict checker in `format::wire`.
//!
//! It owns the message shapes only (tags and labels as in goraft's `protobuf/*.proto`); the hot
//! log path decodes `LogEntry` without these structs (see `format::wire::decode_entry`). Every
//! `required` field is always encoded, even when zero, as Go requires.

use super::wire::{FieldSpec, Kind, Label, MessageSpec, LOG_ENTRY};

/// `message LogEntry { required uint64 Index=1; required uint64 Term=2;
/// required string CommandName=3; optional bytes Command=4; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogEntry {
    /// `required uint64 Index = 1;`
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    /// `required uint64 Term = 2;`
    #[prost(uint64, required, tag = "2")]
    pub term: u64,
    /// `required string CommandName = 3;`
    #[prost(string, required, tag = "3")]
    pub command_name: String,
    /// `optional bytes Command = 4;`
    #[prost(bytes = "vec", optional, tag = "4")]
    pub command: Option<Vec<u8>>,
}

/// `message AppendEntriesRequest { required uint64 Term=1; required uint64 PrevLogIndex=2;
/// required uint64 PrevLogTerm=3; required uint64 CommitIndex=4; required string LeaderName=5;
/// repeated LogEntry Entries=6; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendEntriesRequest {
    /// `required uint64 Term = 1;`
    #[prost(uint64, required, tag = "1")]
    pub term: u64,
    /// `required uint64 PrevLogIndex = 2;`
    #[prost(uint64, required, tag = "2")]
    pub prev_log_index: u64,
    /// `required uint64 PrevLogTerm = 3;`
    #[prost(uint64, required, tag = "3")]
    pub prev_log_term: u64,
    /// `required uint64 CommitIndex = 4;`
    #[prost(uint64, required, tag = "4")]
    pub commit_index: u64,
    /// `required string LeaderName = 5;`
    #[prost(string, required, tag = "5")]
    pub leader_name: String,
    /// `repeated LogEntry Entries = 6;`
    #[prost(message, repeated, tag = "6")]
    pub entries: Vec<LogEntry>,
}

/// `message AppendEntriesResponse { required uint64 Term=1; required uint64 Index=2;
/// required uint64 CommitIndex=3; required bool Success=4; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendEntriesResponse {
    /// `required uint64 Term = 1;`
    #[prost(uint64, required, tag = "1")]
    pub term: u64,
    /// `required uint64 Index = 2;`
    #[prost(uint64, required, tag = "2")]
    pub index: u64,
    /// `required uint64 CommitIndex = 3;`
    #[prost(uint64, required, tag = "3")]
    pub commit_index: u64,
    /// `required bool Success = 4;`
    #[prost(bool, required, tag = "4")]
    pub success: bool,
}

/// `message RequestVoteRequest { required uint64 Term=1; required uint64 LastLogIndex=2;
/// required uint64 LastLogTerm=3; required string CandidateName=4; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestVoteRequest {
    /// `required uint64 Term = 1;`
    #[prost(uint64, required, tag = "1")]
    pub term: u64,
    /// `required uint64 LastLogIndex = 2;`
    #[prost(uint64, required, tag = "2")]
    pub last_log_index: u64,
    /// `required uint64 LastLogTerm = 3;`
    #[prost(uint64, required, tag = "3")]
    pub last_log_term: u64,
    /// `required string CandidateName = 4;`
    #[prost(string, required, tag = "4")]
    pub candidate_name: String,
}

/// `message RequestVoteResponse { required uint64 Term=1; required bool VoteGranted=2; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestVoteResponse {
    /// `required uint64 Term = 1;`
    #[prost(uint64, required, tag = "1")]
    pub term: u64,
    /// `required bool VoteGranted = 2;`
    #[prost(bool, required, tag = "2")]
    pub vote_granted: bool,
}

/// `message SnapshotRequest { required string LeaderName=1; required uint64 LastIndex=2;
/// required uint64 LastTerm=3; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotRequest {
    /// `required string LeaderName = 1;`
    #[prost(string, required, tag = "1")]
    pub leader_name: String,
    /// `required uint64 LastIndex = 2;`
    #[prost(uint64, required, tag = "2")]
    pub last_index: u64,
    /// `required uint64 LastTerm = 3;`
    #[prost(uint64, required, tag = "3")]
    pub last_term: u64,
}

/// `message SnapshotResponse { required bool Success=1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotResponse {
    /// `required bool Success = 1;`
    #[prost(bool, required, tag = "1")]
    pub success: bool,
}

/// `message Peer { required string Name=1; required string ConnectionString=2; }`
/// (nested in SnapshotRecoveryRequest)
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoPeer {
    /// `required string Name = 1;`
    #[prost(string, required, tag = "1")]
    pub name: String,
    /// `required string ConnectionString = 2;`
    #[prost(string, required, tag = "2")]
    pub connection_string: String,
}

/// `message SnapshotRecoveryRequest { required string LeaderName=1; required uint64 LastIndex=2;
/// required uint64 LastTerm=3; repeated Peer Peers=4; required bytes State=5; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotRecoveryRequest {
    /// `required string LeaderName = 1;`
    #[prost(string, required, tag = "1")]
    pub leader_name: String,
    /// `required uint64 LastIndex = 2;`
    #[prost(uint64, required, tag = "2")]
    pub last_index: u64,
    /// `required uint64 LastTerm = 3;`
    #[prost(uint64, required, tag = "3")]
    pub last_term: u64,
    /// `repeated Peer Peers = 4;`
    #[prost(message, repeated, tag = "4")]
    pub peers: Vec<ProtoPeer>,
    /// `required bytes State = 5;`
    #[prost(bytes = "vec", required, tag = "5")]
    pub state: Vec<u8>,
}

/// `message SnapshotRecoveryResponse { required uint64 Term=1; required bool Success=2;
/// required uint64 CommitIndex=3; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotRecoveryResponse {
    /// `required uint64 Term = 1;`
    #[prost(uint64, required, tag = "1")]
    pub term: u64,
    /// `required bool Success = 2;`
    #[prost(bool, required, tag = "2")]
    pub success: bool,
    /// `required uint64 CommitIndex = 3;`
    #[prost(uint64, required, tag = "3")]
    pub commit_index: u64,
}

const fn req(number: u32, name: &'static str, kind: Kind) -> FieldSpec {
    FieldSpec {
        number,
        name,
        kind,
        label: Label::Required,
    }
}

/// Strict declaration of [`AppendEntriesRequest`].
pub static APPEND_ENTRIES_REQUEST: MessageSpec = MessageSpec {
    name: "AppendEntriesRequest",
    fields: &[
        req(1, "Term", Kind::Varint),
        req(2, "PrevLogIndex", Kind::Varint),
        req(3, "PrevLogTerm", Kind::Varint),
        req(4, "CommitIndex", Kind::Varint),
        req(5, "LeaderName", Kind::String),
        FieldSpec {
            number: 6,
            name: "Entries",
            kind: Kind::Message(&LOG_ENTRY),
            label: Label::Repeated,
        },
    ],
};

/// Strict declaration of [`AppendEntriesResponse`].
pub static APPEND_ENTRIES_RESPONSE: MessageSpec = MessageSpec {
    name: "AppendEntriesResponse",
    fields: &[
        req(1, "Term", Kind::Varint),
        req(2, "Index", Kind::Varint),
        req(3, "CommitIndex", Kind::Varint),
        req(4, "Success", Kind::Varint),
    ],
};

/// Strict declaration of [`RequestVoteRequest`].
pub static REQUEST_VOTE_REQUEST: MessageSpec = MessageSpec {
    name: "RequestVoteRequest",
    fields: &[
        req(1, "Term", Kind::Varint),
        req(2, "LastLogIndex", Kind::Varint),
        req(3, "LastLogTerm", Kind::Varint),
        req(4, "CandidateName", Kind::String),
    ],
};

/// Strict declaration of [`RequestVoteResponse`].
pub static REQUEST_VOTE_RESPONSE: MessageSpec = MessageSpec {
    name: "RequestVoteResponse",
    fields: &[
        req(1, "Term", Kind::Varint),
        req(2, "VoteGranted", Kind::Varint),
    ],
};

/// Strict declaration of [`SnapshotRequest`].
pub static SNAPSHOT_REQUEST: MessageSpec = MessageSpec {
    name: "SnapshotRequest",
    fields: &[
        req(1, "LeaderName", Kind::String),
        req(2, "LastIndex", Kind::Varint),
        req(3, "LastTerm", Kind::Varint),
    ],
};

/// Strict declaration of [`SnapshotResponse`].
pub static SNAPSHOT_RESPONSE: MessageSpec = MessageSpec {
    name: "SnapshotResponse",
    fields: &[req(1, "Success", Kind::Varint)],
};

static PEER: MessageSpec = MessageSpec {
    name: "Peer",
    fields: &[
        req(1, "Name", Kind::String),
        req(2, "ConnectionString", Kind::String),
    ],
};

/// Strict declaration of [`SnapshotRecoveryRequest`].
pub static SNAPSHOT_RECOVERY_REQUEST: MessageSpec = MessageSpec {
    name: "SnapshotRecoveryRequest",
    fields: &[
        req(1, "LeaderName", Kind::String),
        req(2, "LastIndex", Kind::Varint),
        req(3, "LastTerm", Kind::Varint),
        FieldSpec {
            number: 4,
            name: "Peers",
            kind: Kind::Message(&PEER),
            label: Label::Repeated,
        },
        req(5, "State", Kind::Bytes),
    ],
};

/// Strict declaration of [`SnapshotRecoveryResponse`].
pub static SNAPSHOT_RECOVERY_RESPONSE: MessageSpec = MessageSpec {
    name: "SnapshotRecoveryResponse",
    fields: &[
        req(1, "Term", Kind::Varint),
        req(2, "Success", Kind::Varint),
        req(3, "CommitIndex", Kind::Varint),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::wire::check;
    use prost::Message;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn wire_examples_as_raftd_sends_them() {
        let hb = AppendEntriesRequest {
            term: 0,
            prev_log_index: 3,
            prev_log_term: 0,
            commit_index: 3,
            leader_name: "2832bfa".into(),
            entries: vec![],
        };
        assert_eq!(
            hb.encode_to_vec(),
            hex("08 00 10 03 18 00 20 03 2a 07 32 38 33 32 62 66 61")
        );
        let nop = AppendEntriesRequest {
            term: 1,
            prev_log_index: 4,
            prev_log_term: 0,
            commit_index: 3,
            leader_name: "2832bfa".into(),
            entries: vec![LogEntry {
                index: 5,
                term: 1,
                command_name: "raft:nop".into(),
                command: None,
            }],
        };
        let bytes = nop.encode_to_vec();
        assert_eq!(
            bytes,
            hex("08 01 10 04 18 00 20 03 2a 07 32383332626661 32 0e 08 05 10 01 1a 08 72616674 3a6e6f70")
        );
        assert_eq!(check(&bytes, &APPEND_ENTRIES_REQUEST), Ok(vec![]));
        let rv = RequestVoteRequest {
            term: 1,
            last_log_index: 4,
            last_log_term: 0,
            candidate_name: "2832bfa".into(),
        };
        assert_eq!(
            rv.encode_to_vec(),
            hex("08 01 10 04 18 00 22 07 32 38 33 32 62 66 61")
        );
        let resp = AppendEntriesResponse {
            term: 2,
            index: 7,
            commit_index: 7,
            success: false,
        };
        assert_eq!(resp.encode_to_vec(), hex("08 02 10 07 18 07 20 00"));
        assert_eq!(
            RequestVoteResponse {
                term: 0,
                vote_granted: false
            }
            .encode_to_vec(),
            hex("08 00 10 00")
        );
        let sr = SnapshotRequest {
            leader_name: "2832bfa".into(),
            last_index: 252,
            last_term: 3,
        };
        assert_eq!(
            sr.encode_to_vec(),
            hex("0a 07 32383332626661 10 fc 01 18 03")
        );
        let srr = SnapshotRecoveryRequest {
            leader_name: "2832bfa".into(),
            last_index: 252,
            last_term: 3,
            peers: vec![ProtoPeer {
                name: "7bd5bdc".into(),
                connection_string: "http://h:2".into(),
            }],
            state: b"st".to_vec(),
        };
        let bytes = srr.encode_to_vec();
        assert_eq!(
            bytes,
            hex("0a 07 32383332626661 10 fc 01 18 03 22 15 0a 07 37626435626463 12 0a 687474703a2f2f683a32 2a 02 73 74")
        );
        assert_eq!(check(&bytes, &SNAPSHOT_RECOVERY_REQUEST), Ok(vec![]));
        assert_eq!(
            SnapshotRecoveryResponse {
                term: 3,
                success: true,
                commit_index: 252
            }
            .encode_to_vec(),
            hex("08 03 10 01 18 fc 01")
        );
    }

    #[test]
    fn missing_required_fields_are_errors_in_both_directions() {
        // prost accepts a missing required field silently (Success defaults to false); Go and
        // the strict checker do not.
        assert!(AppendEntriesResponse::decode(&hex("08 01 10 05 18 03")[..]).is_ok());
        assert!(check(&hex("08 01 10 05 18 03"), &APPEND_ENTRIES_RESPONSE).is_err());
        // An entry inside an AppendEntries without its CommandName is found by the strict checker.
        let bad = hex("08 01 10 04 18 00 20 03 2a 01 61 32 04 08 05 10 01");
        let err = check(&bad, &APPEND_ENTRIES_REQUEST).unwrap_err();
        assert_eq!(err.offset(), Some(13));
    }
}
