//! diff on the real cluster fixtures, and `replay --committed` against the oracles.

use std::collections::BTreeMap;
use std::process::Command;

use raftdump::datadir::{self, DataDir};
use raftdump::diff::{self, DiffOptions, Evidence, PairDiff, TailStatus, Target};

use crate::fixtures;

const T1: &str = "diverged-old-leader-tail/t1-old-leader-stopped-uncommitted-tail";
const T2: &str = "diverged-old-leader-tail/t2-new-leader-committed-old-leader-still-stopped";
const T3: &str = "diverged-old-leader-tail/t3-final-after-old-leader-rejoined";

fn open(rel: &str) -> DataDir {
    datadir::open(&fixtures().join("goraft").join(rel)).unwrap()
}

fn three(rel: &str) -> Vec<DataDir> {
    ["node1", "node2", "node3"]
        .iter()
        .map(|n| open(&format!("{rel}/{n}")))
        .collect()
}

fn compare(dirs: &[DataDir], state: bool) -> diff::Divergence {
    let targets: Vec<Target<'_>> = dirs.iter().map(|dir| Target { dir, at: None }).collect();
    let opts = DiffOptions {
        state,
        ..Default::default()
    };
    diff::compare(&targets, &opts).unwrap()
}

fn tails(d: &diff::Divergence) -> Vec<(u64, u64, u64, TailStatus)> {
    d.tails
        .iter()
        .map(|t| (t.nodes, t.from, t.to, t.status))
        .collect()
}

#[test]
fn t1_old_leader_holds_an_extra_uncommitted_tail() {
    let d = compare(&three(T1), false);
    assert_eq!(d.common, Some((1, 24)));
    let pairs: Vec<_> = d.pairs.iter().map(|p| p.diff).collect();
    assert_eq!(
        pairs,
        [
            PairDiff::Ends {
                index: 25,
                shorter: 1
            },
            PairDiff::Ends {
                index: 25,
                shorter: 2
            },
            PairDiff::Identical
        ]
    );
    assert_eq!(d.conflicting_indexes, 0);
    assert_eq!(tails(&d), [(0b001, 25, 29, TailStatus::NotOnMajority)]);
    assert_eq!(d.committed(), Some((24, Evidence::Majority, 0)));
}

#[test]
fn t2_conflict_at_25_old_term_0_tail_against_new_term_1_entries() {
    let d = compare(&three(T2), false);
    assert_eq!(d.common, Some((1, 24)));
    let pairs: Vec<_> = d.pairs.iter().map(|p| p.diff).collect();
    assert_eq!(
        pairs,
        [
            PairDiff::Conflict(25),
            PairDiff::Conflict(25),
            PairDiff::Identical
        ]
    );
    assert_eq!(d.conflicting_indexes, 5);
    assert_eq!(
        d.rows.iter().map(|r| r.index).collect::<Vec<_>>(),
        [25, 26, 27, 28, 29]
    );
    for row in &d.rows {
        let terms: Vec<_> = row
            .cells
            .iter()
            .map(|c| match c {
                diff::Cell::Entry(e, _) => e.term,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(terms, [0, 1, 1], "index {}", row.index);
    }
    assert_eq!(
        tails(&d),
        [
            (0b001, 25, 29, TailStatus::Overwritten { by_term: 1 }),
            (0b110, 25, 33, TailStatus::OnMajority)
        ]
    );
    assert_eq!(d.committed(), Some((33, Evidence::Majority, 1)));
    assert_eq!(
        (
            d.election_safety.total,
            d.log_matching.total,
            d.committed_conflicts.total
        ),
        (0, 0, 0)
    );
}

#[test]
fn t3_is_identical() {
    let d = compare(&three(T3), true);
    assert!(d.identical());
    assert_eq!(d.common, Some((1, 36)));
    assert_eq!(
        d.state.as_ref().map(|s| (s.rows.len(), s.same)),
        Some((0, 31))
    );
}

#[test]
fn copy_right_after_kill9_is_only_a_shorter_log() {
    let dirs = [
        open("three-node-leader-kill/node1-copy-right-after-kill9"),
        open("three-node-leader-kill/node2"),
    ];
    let d = compare(&dirs, false);
    assert_eq!(
        d.pairs[0].diff,
        PairDiff::Ends {
            index: 55,
            shorter: 0
        }
    );
    assert_eq!((d.common, d.conflicting_indexes), (Some((1, 54)), 0));
    assert!(!d.conf_differs && !d.snapshots_differ && !d.membership_differs);
    assert_eq!(tails(&d), [(0b10, 55, 80, TailStatus::NotOnMajority)]);
}

#[test]
fn stale_leader_tail_that_did_commit_is_not_a_conflict() {
    let base = "stale-leader-tail-committed";
    let d = compare(
        &three(&format!(
            "{base}/t2-new-leader-committed-old-leader-still-stopped"
        )),
        false,
    );
    assert_eq!(d.conflicting_indexes, 0);
    assert_eq!(d.committed(), Some((38, Evidence::Majority, 1)));
}

fn committed_kv(rel: &str) -> BTreeMap<String, String> {
    let root = fixtures().join("goraft").join(rel);
    let out = Command::new(env!("CARGO_BIN_EXE_raftdump"))
        .args(["replay", "--committed", "--json"])
        .args(["node1", "node2", "node3"].map(|n| root.join(n)))
        .env("RAFTDUMP_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut kv = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] == "kv" {
            kv.insert(
                v["key"].as_str().unwrap().to_string(),
                v["value"].as_str().unwrap().to_string(),
            );
        }
    }
    kv
}

fn oracle(rel: &str) -> BTreeMap<String, String> {
    serde_json::from_slice(&std::fs::read(fixtures().join("goraft").join(rel)).unwrap()).unwrap()
}

#[test]
fn replay_committed_matches_the_oracles() {
    let d = "diverged-old-leader-tail";
    assert_eq!(
        committed_kv(T1),
        oracle(&format!("{d}/expected-kv-committed-at-t1.json"))
    );
    assert_eq!(
        committed_kv(T2),
        oracle(&format!("{d}/expected-kv-committed-at-t2.json"))
    );
    assert_eq!(
        committed_kv(T3),
        oracle(&format!("{d}/expected-kv-final-t3.json"))
    );
    let s = "stale-leader-tail-committed";
    assert_eq!(
        committed_kv(&format!("{s}/t1-old-leader-stopped-uncommitted-tail")),
        oracle(&format!("{s}/expected-kv-committed-at-t1.json"))
    );
    assert_eq!(
        committed_kv(&format!(
            "{s}/t2-new-leader-committed-old-leader-still-stopped"
        )),
        oracle(&format!("{s}/expected-kv-committed-at-t2.json"))
    );
}

#[test]
fn replay_json_of_odd_values_is_lossless() {
    use base64::Engine as _;
    let out = Command::new(env!("CARGO_BIN_EXE_raftdump"))
        .args(["replay", "--json"])
        .arg(fixtures().join("goraft/odd-values-follower-kill/node3"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut kv = BTreeMap::new();
    let mut gets = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] == "kv" {
            let (k, val) = (v["key"].as_str().unwrap(), v["value"].as_str().unwrap());
            gets.insert(
                k.to_string(),
                base64::engine::general_purpose::STANDARD.encode(val),
            );
            kv.insert(k.to_string(), val.to_string());
        }
    }
    assert_eq!(kv, oracle("odd-values-follower-kill/expected-kv.json"));
    assert_eq!(
        gets,
        oracle("odd-values-follower-kill/expected-get-base64.json")
    );
}

#[test]
fn a_damaged_node_is_compared_up_to_where_goraft_would_truncate() {
    use raftdump::format::log::LogReader;
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for n in ["node1", "node2", "node3"] {
        let from = fixtures().join("goraft").join(T3).join(n);
        let to = tmp.path().join(n);
        std::fs::create_dir_all(&to).unwrap();
        for f in ["log", "conf", "name"] {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
        if n == "node2" {
            let log = std::fs::read(to.join("log")).unwrap();
            let at = LogReader::new(&log).nth(29).unwrap().unwrap().offset as usize;
            let mut bad = log[..at].to_vec();
            bad.extend_from_slice(b"CORRUPT!");
            bad.extend_from_slice(&log[at..]);
            std::fs::write(to.join("log"), bad).unwrap();
        }
        dirs.push(datadir::open(&to).unwrap());
    }
    let d = compare(&dirs, true);
    let b = &d.nodes[1];
    assert_eq!(
        (b.last_index, b.damage.as_ref().map(|e| e.kind.code())),
        (Some(29), Some("garbage"))
    );
    assert_eq!(
        b.replay
            .damage()
            .map(|x| (x.entries_after, x.last_index_after)),
        Some((7, Some(36)))
    );
    assert_eq!(
        d.pairs[0].diff,
        PairDiff::Ends {
            index: 30,
            shorter: 1
        }
    );
    assert_eq!(tails(&d), [(0b101, 30, 36, TailStatus::OnMajority)]);
    assert_eq!(d.committed(), Some((36, Evidence::Majority, 0)));
    // node2's state is the one goraft rebuilds: without the writes after the damage.
    let s = d.state.as_ref().unwrap();
    assert_eq!(
        s.rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["ckey024", "ckey025", "ckey026", "ckey027", "ckey028", "ckey029", "ckey030"]
    );
}
