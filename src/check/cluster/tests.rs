use super::*;
use crate::datadir::testing::{join, log_of};
use crate::model::Command;
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> DataDir {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/goraft")
        .join(rel);
    crate::datadir::open(&p).unwrap()
}

fn codes(f: &[Finding]) -> Vec<(&'static str, Option<u64>)> {
    f.iter().map(|f| (f.code, f.index)).collect()
}

fn three(rel: &str) -> Vec<DataDir> {
    ["node1", "node2", "node3"]
        .iter()
        .map(|n| fixture(&format!("{rel}/{n}")))
        .collect()
}

/// What `check_all` must give: each node checked on its own, then the cluster.
fn separately(nodes: &[DataDir]) -> (Vec<NodeReport>, Vec<Finding>) {
    (
        nodes.iter().map(crate::check::node::check).collect(),
        check(nodes),
    )
}

#[test]
fn the_single_pass_gives_what_the_separate_passes_give() {
    let dirs = crate::datadir::testing::fixture_dirs();
    assert!(dirs.len() > 60, "{} fixture dirs", dirs.len());
    let open = |d: &DataDir| crate::datadir::open(&d.path).unwrap();
    // Each fixture alone, next to a clean node, and twice (the same dir given twice).
    let clean = fixture("three-node-leader-kill/node1");
    for d in &dirs {
        let at = d.path.display();
        let one = [open(d)];
        assert_eq!(check_all(&one), separately(&one), "{at}");
        let two = [open(d), open(&clean)];
        assert_eq!(check_all(&two), separately(&two), "{at}");
        assert_eq!(check_all_in_one_pass(&two), separately(&two), "{at}");
        let twice = [open(d), open(d)];
        assert_eq!(check_all_in_one_pass(&twice), separately(&twice), "{at}");
        assert_eq!(check_all_on(&twice, 2), separately(&twice), "{at}");
        assert_eq!(check_all_on(&twice, 1), separately(&twice), "{at}");
    }
    // Every group of sibling node dirs (the cluster fixtures).
    let mut groups: BTreeMap<PathBuf, Vec<&DataDir>> = BTreeMap::new();
    for d in &dirs {
        if let Some(parent) = d.path.parent() {
            groups.entry(parent.to_path_buf()).or_default().push(d);
        }
    }
    let mut clusters = 0;
    for (parent, members) in groups.iter().filter(|(_, m)| m.len() > 1) {
        let nodes: Vec<DataDir> = members.iter().map(|d| open(d)).collect();
        let want = separately(&nodes);
        assert_eq!(check_all_in_one_pass(&nodes), want, "{}", parent.display());
        assert_eq!(check_all(&nodes), want, "{}", parent.display());
        clusters += 1;
    }
    assert!(clusters >= 10, "{clusters} clusters");
}

/// Long logs that share megabytes and then part, inside a frame or between two, with
/// findings before the parting (which the followers' passes take over under their own
/// names), damage before it (no fork then) or after it, and a context that differs (no
/// shared pass): each node's report is what its own check gives.
#[test]
fn shared_passes_give_what_the_separate_passes_give() {
    use crate::format::log::LogWriter;
    use crate::model::Command;
    let tmp = tempfile::tempdir().unwrap();
    let mut lw = LogWriter::new(Vec::new());
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let join = Command::Join {
            name: (*name).into(),
            connection_string: format!("http://127.0.0.1:{}", 4001 + i),
        };
        lw.append(i as u64 + 1, 0, &join).unwrap();
    }
    for i in 4..12_000u64 {
        let w = Command::Write {
            key: format!("k{}", i % 977),
            value: if i == 1_000 {
                "lost \u{fffd}".into()
            } else {
                format!("v{i}")
            },
        };
        if i == 1_500 {
            lw.append_raw(i, i / 3_000, "etcd:set", Some(b"{}"))
                .unwrap();
        } else {
            lw.append(i, i / 3_000, &w).unwrap();
        }
    }
    let bytes = lw.into_inner();
    let frame_at = |index: u64| crate::datadir::testing::frame_span(&bytes, index);
    let make = |name: &str, f: &dyn Fn(&mut Vec<u8>), conf: Option<&str>| {
        let mut b = bytes.clone();
        f(&mut b);
        crate::datadir::testing::write_node(tmp.path(), name, &b, conf)
    };
    // The first frame from index 2,000 on whose length has a hex letter.
    let upper = (2_000..)
        .map(|i| frame_at(i).0)
        .find(|&at| bytes[at..at + 8].iter().any(u8::is_ascii_lowercase))
        .unwrap();
    let odd = move |b: &mut Vec<u8>| {
        let h = std::str::from_utf8(&b[upper..upper + 8])
            .unwrap()
            .to_uppercase();
        b[upper..upper + 8].copy_from_slice(h.as_bytes());
    };
    let (mid, mid_end) = frame_at(6_000);
    let (hole, hole_end) = frame_at(3_000);
    let conf = r#"{"commitIndex":3,"peers":[]}"#;
    let dirs = [
        make("a", &odd, None),
        make("b", &odd, None),
        make(
            "inside",
            &|b| {
                odd(b);
                b[mid_end - 4] = b'X';
            },
            None,
        ),
        make(
            "torn",
            &|b| {
                odd(b);
                b.truncate(mid + 20);
            },
            None,
        ),
        make(
            "shorter",
            &|b| {
                odd(b);
                b.truncate(mid);
            },
            None,
        ),
        make(
            "hole",
            &|b| {
                odd(b);
                b[hole..hole_end].fill(0);
            },
            None,
        ),
        make("conf", &odd, Some(conf)),
        make(
            "longer",
            &|b| {
                odd(b);
                let more = b[mid..mid_end].to_vec();
                b.extend_from_slice(&more);
            },
            None,
        ),
    ];
    let open = |names: &[&str]| -> Vec<DataDir> {
        names
            .iter()
            .map(|n| {
                let d = dirs.iter().find(|d| d.ends_with(n)).unwrap();
                crate::datadir::open(d).unwrap()
            })
            .collect()
    };
    let sets: [&[&str]; 8] = [
        &["a", "b"],
        &["a", "b", "inside"],
        &["torn", "a", "shorter"],
        &["shorter", "a", "longer"],
        &["a", "hole", "b"],
        &["hole", "a"],
        &["a", "conf", "b"],
        &["inside", "torn", "shorter", "hole", "a", "longer"],
    ];
    for set in sets {
        let nodes = open(set);
        let want = separately(&nodes);
        // The findings made before the parting are there, under each node's name.
        assert!(want
            .0
            .iter()
            .all(|r| r.findings.iter().any(|f| f.code == "header-uppercase")));
        assert_eq!(check_all_on(&nodes, 2), want, "{set:?}");
        assert_eq!(check_all_on(&nodes, 3), want, "{set:?}");
    }
}

#[test]
fn codes_are_unique_and_prefixed() {
    let mut seen = BTreeSet::new();
    for (code, _, what) in CODES {
        assert!(code.starts_with("cluster-") && !what.is_empty());
        assert!(seen.insert(*code), "{code}");
    }
}

#[test]
fn clean_clusters_have_only_the_committed_prefix() {
    let f = check(&three("three-node-leader-kill"));
    assert_eq!(codes(&f), [("cluster-committed-prefix", Some(80))]);
    assert_eq!(
            f[0].message,
            format!(
                "entries up to index 80 are proven committed: entry 80 (term 1) is on 3 of 3 nodes ({}), and by Log Matching so is every entry before it; no two nodes hold different entries that are both proven committed",
                ["node1 (1fd2a74)", "node2 (b61c9ea)", "node3 (611fff3)"]
                    .map(|n| format!("{}/fixtures/goraft/three-node-leader-kill/{n}", env!("CARGO_MANIFEST_DIR")))
                    .join(", ")
            )
        );
    let f = check(&three(
        "diverged-old-leader-tail/t3-final-after-old-leader-rejoined",
    ));
    assert_eq!(codes(&f), [("cluster-committed-prefix", Some(36))]);
}

#[test]
fn t1_old_leader_tail_may_still_commit() {
    let f = check(&three(
        "diverged-old-leader-tail/t1-old-leader-stopped-uncommitted-tail",
    ));
    assert_eq!(
        codes(&f),
        [
            ("cluster-committed-prefix", Some(24)),
            ("cluster-uncommitted-tail", Some(25))
        ]
    );
    let t = &f[1];
    assert_eq!(t.severity, Severity::Info);
    assert!(t
        .node
        .as_deref()
        .unwrap()
        .ends_with("t1-old-leader-stopped-uncommitted-tail/node1 (2dabb76)"));
    assert_eq!(t.offset, Some(1570), "node1's first 1570 bytes are shared");
    assert!(
            t.message.ends_with(
                "node1 (2dabb76) holds entries 25..29 (term 0) that are not on a majority (1 of 3 nodes) and not contradicted by one: they may still be committed, or be overwritten"
            ),
            "{}",
            t.message
        );
}

#[test]
fn t2_old_leader_tail_is_uncommitted_without_a_safety_violation() {
    let f = check(&three(
        "diverged-old-leader-tail/t2-new-leader-committed-old-leader-still-stopped",
    ));
    assert_eq!(
        codes(&f),
        [
            ("cluster-committed-prefix", Some(33)),
            ("cluster-uncommitted-tail", Some(25))
        ]
    );
    assert!(f.iter().all(|f| f.severity == Severity::Info));
    let t2 = format!(
            "{}/fixtures/goraft/diverged-old-leader-tail/t2-new-leader-committed-old-leader-still-stopped",
            env!("CARGO_MANIFEST_DIR")
        );
    assert_eq!(
            f[1].message,
            format!("{t2}/node1 (2dabb76) holds entries 25..29 (term 0) that must be uncommitted: other entries hold these indexes on a majority, in the later term 1: {t2}/node2 (4560135), {t2}/node3 (6209dd4) hold entries 25..33 (term 1)")
        );
    assert!(f[1].node.as_deref().unwrap().ends_with("node1 (2dabb76)"));
}

/// Writes the node dir `root/name` with a log of `entries` and a name file.
fn write_node(root: &Path, name: &str, entries: &[(u64, u64, Command)]) -> PathBuf {
    crate::datadir::testing::write_node(root, name, &log_of(entries), None)
}

#[test]
fn synthetic_election_safety_violation() {
    let tmp = tempfile::tempdir().unwrap();
    let w = |v: &str| Command::Write {
        key: "k".into(),
        value: v.into(),
    };
    let prefix = vec![
        (1, 0, join("aa")),
        (2, 0, Command::Nop),
        (3, 0, join("bb")),
        (4, 0, join("cc")),
    ];
    let mut a = prefix.clone();
    a.extend([(5, 1, Command::Nop), (6, 1, w("from-a"))]);
    let mut b = prefix.clone();
    b.extend([(5, 1, Command::Nop), (6, 1, w("from-b"))]);
    let dirs: Vec<DataDir> = [("aa", &a), ("bb", &b), ("cc", &prefix)]
        .iter()
        .map(|(n, e)| crate::datadir::open(&write_node(tmp.path(), n, e)).unwrap())
        .collect();
    let f = check(&dirs);
    let es: Vec<_> = f
        .iter()
        .filter(|f| f.code == "cluster-election-safety")
        .collect();
    assert_eq!(es.len(), 1);
    assert_eq!((es[0].severity, es[0].index), (Severity::Error, Some(6)));
    let a_offset = crate::format::log::LogReader::new(dirs[0].log.bytes())
        .nth(5)
        .unwrap()
        .unwrap()
        .offset;
    assert_eq!(es[0].offset, Some(a_offset));
    assert!(es[0]
        .message
        .contains("hold different entries at index 6 in the same term 1"));
    // Both entries at 6 are on 1 of 3 nodes: no commit evidence, so no safety finding.
    assert!(f.iter().all(|f| f.code != "cluster-committed-conflict"));
}

fn conf(dir: &Path, commit_index: u64, peers: &[&str]) {
    let c = crate::model::Conf {
        commit_index,
        peers: peers
            .iter()
            .map(|n| crate::model::Peer {
                name: (*n).into(),
                connection_string: format!("http://{n}"),
            })
            .collect(),
    };
    std::fs::write(dir.join("conf"), crate::format::conf::encode(&c)).unwrap();
}

/// cc was down while dd joined (goraft commits a join with a quorum of the old members: aa,
/// bb); its log and its conf stop at index 4. A follower that is behind is not a membership
/// or conf disagreement: at index 4 every log makes the same members.
#[test]
fn a_follower_behind_a_join_disagrees_on_neither_membership_nor_conf() {
    let tmp = tempfile::tempdir().unwrap();
    let before = vec![
        (1, 0, join("aa")),
        (2, 0, Command::Nop),
        (3, 0, join("bb")),
        (4, 0, join("cc")),
    ];
    let mut after = before.clone();
    after.push((5, 0, join("dd")));
    let mut dirs = Vec::new();
    for (name, log) in [
        ("aa", &after),
        ("bb", &after),
        ("cc", &before),
        ("dd", &after),
    ] {
        let p = write_node(tmp.path(), name, log);
        let (commit, members): (u64, &[&str]) = if name == "cc" {
            (4, &["aa", "bb", "cc"])
        } else {
            (5, &["aa", "bb", "cc", "dd"])
        };
        let peers: Vec<&str> = members.iter().copied().filter(|m| *m != name).collect();
        conf(&p, commit, &peers);
        let dir = crate::datadir::open(&p).unwrap();
        assert_eq!(crate::check::node::check(&dir).findings, [], "{name}");
        dirs.push(dir);
    }
    let f = check(&dirs);
    assert_eq!(codes(&f), [("cluster-committed-prefix", Some(5))]);
    assert!(
        f[0].message.contains("is on 3 of 4 nodes"),
        "{}",
        f[0].message
    );
}

/// The same membership history, but aa's snapshot at index 4 forgets cc: at index 4 the
/// logs make different members, and two confs with the same commitIndex list different ones.
#[test]
fn memberships_and_confs_that_differ_at_the_same_index_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let log = vec![
        (1, 0, join("aa")),
        (2, 0, Command::Nop),
        (3, 0, join("bb")),
        (4, 0, join("cc")),
    ];
    let mut paths = Vec::new();
    for name in ["aa", "bb", "cc"] {
        let p = write_node(tmp.path(), name, &log);
        let peers: Vec<&str> = ["aa", "bb", "cc"]
            .into_iter()
            .filter(|m| *m != name)
            .collect();
        conf(&p, 4, &peers);
        paths.push(p);
    }
    conf(&paths[0], 4, &["bb"]);
    std::fs::create_dir_all(paths[0].join("snapshot")).unwrap();
    let peer = |n: &str| crate::model::Peer {
        name: n.into(),
        connection_string: format!("http://{n}"),
    };
    let snap = crate::model::Snapshot {
        last_index: 4,
        last_term: 0,
        peers: Some(vec![peer("aa"), peer("bb")]),
        state: Some(b"{}".to_vec()),
        path: String::new(),
    };
    std::fs::write(
        paths[0].join("snapshot/0_4.ss"),
        crate::format::snapshot::encode(&snap),
    )
    .unwrap();
    let dirs: Vec<DataDir> = paths
        .iter()
        .map(|p| crate::datadir::open(p).unwrap())
        .collect();
    let f = check(&dirs);
    let got: Vec<_> = f
        .iter()
        .filter(|f| f.code != "cluster-committed-prefix")
        .map(|f| f.code)
        .collect();
    assert_eq!(got, ["cluster-conf-peers", "cluster-membership"]);
    let m = f.iter().find(|f| f.code == "cluster-membership").unwrap();
    assert!(
        m.message
            .starts_with("the membership replayed from the logs differs: at index 4, ")
            && m.message.contains("/aa (aa) has {aa, bb} and ")
            && m.message
                .ends_with("/bb (bb) has {aa, bb, cc} (1 more pair of nodes differs)"),
        "{}",
        m.message
    );
    let c = f.iter().find(|f| f.code == "cluster-conf-peers").unwrap();
    assert!(
        c.message.starts_with(
            "the conf files with commitIndex 4 disagree on the members (peers plus self): "
        ),
        "{}",
        c.message
    );
}

/// A data dir without a name file: its conf lists the other members, but without the name
/// the comparison cannot add the node itself; that is no disagreement.
#[test]
fn a_conf_without_a_name_is_not_compared() {
    let tmp = tempfile::tempdir().unwrap();
    let log = vec![(1, 0, join("aa")), (2, 0, Command::Nop), (3, 0, join("bb"))];
    let a = write_node(tmp.path(), "aa", &log);
    conf(&a, 3, &["bb"]);
    let b = write_node(tmp.path(), "bb", &log);
    conf(&b, 3, &["aa"]);
    std::fs::remove_file(b.join("name")).unwrap();
    let dirs: Vec<DataDir> = [a, b]
        .iter()
        .map(|p| crate::datadir::open(p).unwrap())
        .collect();
    assert_eq!(
        codes(&check(&dirs)),
        [("cluster-committed-prefix", Some(3))]
    );
}

#[test]
fn names_duplicate_and_not_member() {
    let tmp = tempfile::tempdir().unwrap();
    let log = vec![(1, 0, join("aa")), (2, 0, Command::Nop), (3, 0, join("bb"))];
    let a = write_node(tmp.path(), "aa", &log);
    let b = write_node(tmp.path(), "bb", &log);
    let c = write_node(tmp.path(), "cc", &log);
    std::fs::write(c.join("name"), "aa").unwrap();
    let d = write_node(tmp.path(), "dd", &log);
    let dirs: Vec<DataDir> = [a, b, c, d]
        .iter()
        .map(|p| crate::datadir::open(p).unwrap())
        .collect();
    let f = check(&dirs);
    let got: Vec<_> = f
        .iter()
        .filter(|f| f.code.contains("name"))
        .map(|f| (f.code, f.severity))
        .collect();
    assert_eq!(
        got,
        [
            ("cluster-duplicate-name", Severity::Error),
            ("cluster-name-not-member", Severity::Warning)
        ]
    );
}
