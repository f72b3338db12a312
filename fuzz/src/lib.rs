//! The bodies of raftdump's fuzz targets, parse-only and allocation-capped.
//!
//! Each function panics only when an invariant of the format layer is broken. The same file is
//! compiled into the integration tests (`tests/it/regressions.rs`), which replay every input
//! committed under `tests/regressions/<target>/`, so a crash found once stays fixed without a
//! fuzzer in CI's test step.

use prost::Message as _;
use raftdump::format::{conf, frame, log, proto, snapshot, wire};

/// Inputs larger than this are ignored (the format layer is linear; big inputs only slow fuzzing).
pub const MAX_INPUT: usize = 1 << 16;

/// A whole log file: framing, entries, commands; every byte accounted for exactly once.
pub fn log_stream(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut pos = 0u64;
    let mut good = 0u64;
    for r in log::LogReader::new(data) {
        match r {
            Ok(e) => {
                assert_eq!(e.offset, pos);
                assert_eq!(e.ordinal, good);
                pos = e.end();
                good += 1;
                let _ = e.command();
                // The strict checker agrees with the fast decoder on every good body.
                assert!(wire::check(e.body, &wire::LOG_ENTRY).is_ok());
            }
            Err(err) => {
                assert_eq!(err.offset, pos);
                assert_eq!(err.entry, good);
                assert!(err.len > 0);
                pos += err.len;
                let _ = err.to_string();
            }
        }
    }
    assert_eq!(pos, data.len() as u64);
}

/// One `LogEntry` body: the fast decoder, the strict checker and prost agree.
pub fn log_entry_pb(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let fast = wire::decode_entry(data);
    let strict = wire::check(data, &wire::LOG_ENTRY);
    assert_eq!(fast.is_ok(), strict.is_ok(), "{fast:?} vs {strict:?}");
    if let (Ok(e), Ok(quirks)) = (fast, &strict) {
        // prost rejects a string field with invalid UTF-8 in any occurrence, even one a later
        // duplicate replaces; Go's proto2 decoder never checks. Compare only where no occurrence
        // is invalid (found by the fuzzer: tests/regressions/log_entry_pb/).
        let utf8_ok = !quirks
            .iter()
            .any(|q| matches!(q, wire::WireQuirk::InvalidUtf8 { .. }));
        if utf8_ok {
            let p = proto::LogEntry::decode(data).expect("prost accepts what Go accepts");
            assert_eq!(
                (p.index, p.term, p.command_name.as_bytes()),
                (e.index, e.term, e.name)
            );
            assert_eq!(p.command.as_deref(), e.command);
        }
    }
    let _ = frame::parse_header(data);
}

/// Every RPC body: the first byte picks the message, the rest is the HTTP body.
pub fn rpc_bodies(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    if body.len() > MAX_INPUT {
        return;
    }
    macro_rules! one {
        ($ty:ty, $spec:expr) => {{
            let strict = wire::check(body, &$spec);
            let prost = <$ty>::decode(body);
            if let Ok(quirks) = &strict {
                let utf8_ok = !quirks
                    .iter()
                    .any(|q| matches!(q, wire::WireQuirk::InvalidUtf8 { .. }));
                if utf8_ok {
                    let m = prost.expect("prost accepts what the strict checker accepts");
                    // Re-encoding what was decoded decodes again to the same message.
                    let again =
                        <$ty>::decode(&m.encode_to_vec()[..]).expect("re-encoded message decodes");
                    assert!(again == m);
                }
            }
        }};
    }
    match which % 8 {
        0 => one!(proto::AppendEntriesRequest, proto::APPEND_ENTRIES_REQUEST),
        1 => one!(proto::AppendEntriesResponse, proto::APPEND_ENTRIES_RESPONSE),
        2 => one!(proto::RequestVoteRequest, proto::REQUEST_VOTE_REQUEST),
        3 => one!(proto::RequestVoteResponse, proto::REQUEST_VOTE_RESPONSE),
        4 => one!(proto::SnapshotRequest, proto::SNAPSHOT_REQUEST),
        5 => one!(proto::SnapshotResponse, proto::SNAPSHOT_RESPONSE),
        6 => one!(
            proto::SnapshotRecoveryRequest,
            proto::SNAPSHOT_RECOVERY_REQUEST
        ),
        _ => one!(
            proto::SnapshotRecoveryResponse,
            proto::SNAPSHOT_RECOVERY_RESPONSE
        ),
    }
}

/// A snapshot file (and its name): what parses re-encodes to something that parses the same.
pub fn snapshot_file(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    if let Ok(name) = std::str::from_utf8(&data[..data.len().min(24)]) {
        let _ = snapshot::parse_file_name(name);
    }
    if let Ok(p) = snapshot::parse(data) {
        if let Ok(s) = p.snapshot {
            let bytes = snapshot::encode(&s);
            let again = snapshot::parse(&bytes).expect("encoded snapshot parses");
            assert!(again.crc_ok());
            assert_eq!(again.snapshot.as_ref().ok(), Some(&s));
        }
    }
}

/// A conf file: what parses re-encodes to something that parses the same.
pub fn conf_json(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    if let Ok(c) = conf::parse(data) {
        let again = conf::parse(&conf::encode(&c)).expect("encoded conf parses");
        assert_eq!(again, c);
    }
}

/// Arbitrary fields -> a frame -> the same fields back, canonical.
pub fn roundtrip_entry(data: &[u8]) {
    if data.len() < 17 || data.len() > MAX_INPUT {
        return;
    }
    let index = u64::from_le_bytes(data[0..8].try_into().unwrap_or_default());
    let term = u64::from_le_bytes(data[8..16].try_into().unwrap_or_default());
    let split = (data[16] as usize).min(data.len() - 17);
    let (name, rest) = data[17..].split_at(split);
    let payload = (rest.first().is_some_and(|b| b & 1 == 1)).then(|| &rest[1.min(rest.len())..]);
    let mut out = Vec::new();
    log::encode_frame(index, term, name, payload, &mut out);
    let mut r = log::LogReader::new(&out);
    let e = r.next().expect("one frame").expect("frame decodes");
    assert!(r.next().is_none());
    assert!(e.is_canonical());
    assert_eq!(
        (e.index(), e.term(), e.wire.name, e.payload()),
        (index, term, name, payload)
    );
}
