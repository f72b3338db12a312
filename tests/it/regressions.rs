//! Replays every input committed under `tests/regressions/<target>/` through the fuzz target of
//! the same name (the bodies are `fuzz/src/lib.rs`, compiled here too), plus the real fixtures
//! as a smoke corpus, so CI keeps every crash the fuzzers ever found fixed.

#[allow(dead_code, unused_imports)]
#[path = "../../fuzz/src/lib.rs"]
mod targets;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("log_stream", targets::log_stream),
    ("log_entry_pb", targets::log_entry_pb),
    ("rpc_bodies", targets::rpc_bodies),
    ("snapshot_file", targets::snapshot_file),
    ("conf_json", targets::conf_json),
    ("roundtrip_entry", targets::roundtrip_entry),
    ("http_request", targets::http_request),
    ("http_head", targets::http_head),
    ("rpc_senders", targets::rpc_senders),
];

#[test]
fn committed_fuzz_regressions_stay_fixed() {
    let root = crate::fixtures().join("../tests/regressions");
    let mut n = 0;
    for (name, target) in TARGETS {
        let Ok(rd) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        for e in rd.flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            target(&bytes);
            n += 1;
        }
    }
    eprintln!("{n} regression inputs replayed");
}

#[test]
fn fuzz_targets_accept_the_real_fixtures() {
    for path in crate::real_logs() {
        let bytes = std::fs::read(&path).unwrap();
        for (_, target) in TARGETS {
            target(&bytes[..bytes.len().min(targets::MAX_INPUT)]);
        }
    }
}

/// The hand-written `http_request` seeds do what their names say (so the fuzzer starts from
/// inputs that reach deep into the node, and the target's decoding of an input is pinned).
#[test]
fn http_request_seeds_reach_the_node() {
    let dir = crate::fixtures().join("../tests/regressions/http_request");
    let run = |name: &str| -> Vec<(u16, String)> {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        targets::http_transcript(&bytes)
            .into_iter()
            .map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
            .collect()
    };
    let s = |v: &[(u16, &str)]| -> Vec<(u16, String)> {
        v.iter().map(|(c, b)| (*c, b.to_string())).collect()
    };
    assert_eq!(
        run("seed-valid-write"),
        s(&[(200, ""), (200, "bar"), (200, "")])
    );
    // Percent-decoded keys, a query ignored, bytes stored as Go's JSON would; DELETE is not a
    // route; a path that does not decode is a 400.
    assert_eq!(
        run("seed-write-percent-key-local-read"),
        s(&[
            (200, ""),
            (200, "v\u{ff}\0\"\\"),
            (405, ""),
            (400, "400 Bad Request")
        ])
    );
    // With a token: /join without it, with a wrong one, and a percent-encoded RPC path are
    // refused before routing; writes and status need none.
    let state = "\"Name: n1, State: leader, Term: 0, CommitedIndex: 3 \"";
    assert_eq!(
        run("seed-token-gate"),
        s(&[(401, ""), (401, ""), (401, ""), (200, ""), (200, state)])
    );
    // "n2" is no member of n1's single-node cluster: its AppendEntries is refused unread
    // (403), and n1 still leads and takes writes.
    let refused = "raftdump: refused: sender \"n2\" is not a member of this cluster\n";
    assert_eq!(
        run("seed-append-entries-valid"),
        s(&[(403, refused), (200, ""), (200, "\"n1\""), (200, "")])
    );
    let state = "\"Name: n1, State: leader, Term: 0, CommitedIndex: 2 \"";
    assert_eq!(
        run("seed-append-entries-truncated"),
        s(&[(400, "\n"), (400, "\n"), (200, state)])
    );
    // Lengths declared far beyond the body: 400, no allocation; the body is cut to the input.
    assert_eq!(
        run("seed-append-entries-huge-length"),
        s(&[(400, "\n"), (400, "\n"), (200, "")])
    );
    // A join of an absent member leaves no quorum: the next write times out (503).
    assert_eq!(
        run("seed-join-then-write"),
        s(&[
            (200, ""),
            (
                503,
                "raftdump: no quorum answered in time; the write may still commit\n"
            ),
            (
                200,
                r#"{"n2":{"name":"n2","connectionString":"http://n2:4001"}}"#
            ),
            (400, "raftdump: a null join is refused\n"),
            (
                400,
                "raftdump: a join needs a non-empty name and connectionString\n"
            )
        ])
    );
    // n3's vote in term 10, n2's heartbeat, its snapshot offer and install: neither is a
    // member, so all are refused unread and n1 keeps its term and state.
    assert_eq!(
        run("seed-vote-and-snapshot"),
        s(&[
            (403, &refused.replace("n2", "n3")),
            (403, refused),
            (403, refused),
            (403, refused),
            (200, ""),
            (200, "{}"),
            (200, "\"n1\"")
        ])
    );
}
