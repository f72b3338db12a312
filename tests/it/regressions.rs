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
