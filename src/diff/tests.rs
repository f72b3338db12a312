use super::*;
use crate::datadir::testing::{join, log_of};
use crate::model::Command;

fn w(k: &str, v: &str) -> Command {
    Command::Write {
        key: k.into(),
        value: v.into(),
    }
}

/// Writes a node dir with a log and a name into `root/<name>`.
fn node(root: &Path, name: &str, entries: &[(Index, Term, Command)]) -> DataDir {
    let dir = crate::datadir::testing::write_node(root, name, &log_of(entries), None);
    crate::datadir::open(&dir).unwrap()
}

fn base() -> Vec<(Index, Term, Command)> {
    vec![
        (1, 0, join("a")),
        (2, 0, Command::Nop),
        (3, 0, join("b")),
        (4, 0, join("c")),
        (5, 0, w("k", "1")),
    ]
}

fn with(
    mut v: Vec<(Index, Term, Command)>,
    more: &[(Index, Term, Command)],
) -> Vec<(Index, Term, Command)> {
    v.extend(more.iter().cloned());
    v
}

fn targets(dirs: &[DataDir]) -> Vec<Target<'_>> {
    dirs.iter().map(|dir| Target { dir, at: None }).collect()
}

/// Every group of sibling data dirs under `fixtures/` (dirs holding a `log` that open).
fn fixture_groups() -> Vec<Vec<DataDir>> {
    let mut groups: std::collections::BTreeMap<PathBuf, Vec<DataDir>> = Default::default();
    for dir in crate::datadir::testing::fixture_dirs() {
        if let Some(parent) = dir.path.parent() {
            groups.entry(parent.to_path_buf()).or_default().push(dir);
        }
    }
    groups.into_values().collect()
}

/// Records what an observer is shown.
#[derive(Default)]
struct Seen(Vec<Result<(u64, u64), (u64, u64)>>);

impl Observer for Seen {
    fn entry(&mut self, e: &RawEntry<'_>) {
        self.0.push(Ok((e.offset, e.index())));
    }
    fn damage(&mut self, e: &LogError) {
        self.0.push(Err((e.offset, e.len)));
    }
}

#[test]
fn the_unanimous_shortcut_and_the_observers_change_nothing() {
    let mut compared = 0;
    for group in fixture_groups() {
        // The group, and each dir next to the first (so that single dirs are compared too).
        let mut sets: Vec<Vec<&DataDir>> = vec![group.iter().collect()];
        sets.extend(group.iter().map(|d| vec![&group[0], d]));
        for set in sets {
            for at in [None, Some(3)] {
                same_both_ways(&set, at);
                compared += 1;
            }
        }
    }
    assert!(compared > 100, "{compared}");
}

/// The comparison of `set` (each cut at `at`) is the same with and without the shortcuts,
/// and with observers, which see every log whole, in file order, as a reader does.
fn same_both_ways(set: &[&DataDir], at: Option<Index>) {
    let t: Vec<Target<'_>> = set.iter().map(|&dir| Target { dir, at }).collect();
    let opts = DiffOptions::default();
    let general = compare_impl(&t, &opts, &mut [], false).map(|d| format!("{d:?}"));
    let short = compare_impl(&t, &opts, &mut [], true).map(|d| format!("{d:?}"));
    assert_eq!(
        short,
        general,
        "{:?}",
        set.iter().map(|d| &d.path).collect::<Vec<_>>()
    );
    let mut seen: Vec<Seen> = set.iter().map(|_| Seen::default()).collect();
    let mut obs: Vec<Option<&mut dyn Observer>> = seen
        .iter_mut()
        .map(|s| Some(s as &mut dyn Observer))
        .collect();
    let observed = compare_observed(&t, &opts, &mut obs).map(|d| format!("{d:?}"));
    assert_eq!(observed, general);
    for (s, dir) in seen.iter().zip(set) {
        let want: Vec<_> = match &observed {
            Ok(_) => crate::format::log::LogReader::with_dialect(dir.log.bytes(), dir.dialect())
                .map(|i| match i {
                    Ok(e) => Ok((e.offset, e.index())),
                    Err(e) => Err((e.offset, e.len)),
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        assert_eq!(s.0, want, "{}", dir.path.display());
    }
}

/// Long logs that share megabytes of bytes and then part, inside a frame or between two,
/// with frames the bulk path through the common prefix must leave to the general one
/// (non-canonical headers, an index out of order, a NUL hole, a torn tail): the comparison
/// is the same with and without it.
#[test]
fn the_bulk_path_through_the_common_prefix_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut entries = vec![(1, 0, join("a")), (2, 0, join("b")), (3, 0, join("c"))];
    for i in 4..12_000u64 {
        entries.push((
            i,
            i / 3_000,
            w(&format!("k{}", i % 977), &format!("value {i}")),
        ));
    }
    let clean = node(tmp.path(), "clean", &entries);
    let bytes = clean.log.bytes().to_vec();
    let frame_at = |index: u64| crate::datadir::testing::frame_span(&bytes, index);
    let variant = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        f(&mut b);
        let dir = crate::datadir::testing::write_node(tmp.path(), name, &b, None);
        crate::datadir::open(&dir).unwrap()
    };
    let (mid, mid_end) = frame_at(6_000);
    // A value changed inside a frame; a frame cut short; the log cut between two frames.
    let inside = variant("inside", &|b| b[mid_end - 4] = b'X');
    let torn = variant("torn", &|b| b.truncate(mid + 20));
    let shorter = variant("shorter", &|b| b.truncate(mid));
    // Shared by every copy below: an upper-case header, an index repeated, a NUL hole.
    let odd = |b: &mut Vec<u8>| {
        let (at, _) = frame_at(2_000);
        let header = std::str::from_utf8(&b[at..at + 8]).unwrap().to_uppercase();
        b[at..at + 8].copy_from_slice(header.as_bytes());
        let (from, to) = frame_at(4_000);
        let (again, _) = frame_at(4_001);
        let copy = b[from..to].to_vec();
        b.splice(again..again, copy);
        let (hole, hole_end) = frame_at(8_000);
        let shift = to - from;
        b[hole + shift..hole_end + shift].fill(0);
    };
    let odd_a = variant("odd-a", &odd);
    let odd_b = variant("odd-b", &odd);
    let odd_c = variant("odd-c", &|b| {
        odd(b);
        let last = b.len() - 30;
        b[last] ^= 0x55;
    });
    let sets: Vec<Vec<&DataDir>> = vec![
        vec![&clean, &inside],
        vec![&clean, &clean, &clean],
        vec![&clean, &inside, &torn],
        vec![&torn, &clean, &shorter],
        vec![&shorter, &clean],
        vec![&odd_a, &odd_b, &odd_c],
        vec![&odd_a, &clean],
    ];
    for set in &sets {
        for at in [None, Some(7_000)] {
            same_both_ways(set, at);
        }
    }
    // What the comparisons say, besides being the same both ways.
    let common = |set: &[&DataDir]| {
        let t: Vec<Target<'_>> = set.iter().map(|&dir| Target { dir, at: None }).collect();
        compare(&t, &DiffOptions::default()).unwrap().common
    };
    assert_eq!(common(&[&clean, &clean, &clean]), Some((1, 11_999)));
    assert_eq!(common(&[&clean, &inside]), Some((1, 5_999)));
    // goraft keeps nothing after the hole: the comparison stops there.
    assert_eq!(common(&[&odd_a, &odd_b]), Some((1, 7_999)));
}

#[test]
fn divergent_tail_overwritten_in_a_later_term() {
    let tmp = tempfile::tempdir().unwrap();
    let old = with(base(), &[(6, 0, w("k", "old")), (7, 0, w("x", "old"))]);
    let new = with(
        base(),
        &[
            (6, 1, Command::Nop),
            (7, 1, w("k", "new")),
            (8, 1, w("y", "new")),
        ],
    );
    let dirs = [
        node(tmp.path(), "a", &old),
        node(tmp.path(), "b", &new),
        node(tmp.path(), "c", &new),
    ];
    let d = compare(&targets(&dirs), &DiffOptions::default()).unwrap();
    assert_eq!(d.common, Some((1, 5)));
    let pairs: Vec<_> = d.pairs.iter().map(|p| (p.a, p.b, p.diff)).collect();
    assert_eq!(
        pairs,
        [
            (0, 1, PairDiff::Conflict(6)),
            (0, 2, PairDiff::Conflict(6)),
            (1, 2, PairDiff::Identical)
        ]
    );
    assert_eq!(d.rows.iter().map(|r| r.index).collect::<Vec<_>>(), [6, 7]);
    let Cell::Entry(e, offset) = &d.rows[0].cells[2] else {
        panic!("{:?}", d.rows[0])
    };
    assert_eq!(
        (e.index, e.term, e.name.as_str(), e.payload.as_deref()),
        (6, 1, "raft:nop", None)
    );
    let expected_offset = crate::format::log::LogReader::new(dirs[2].log.bytes())
        .nth(5)
        .unwrap()
        .unwrap()
        .offset;
    assert_eq!(*offset, expected_offset);
    let tails: Vec<_> = d
        .tails
        .iter()
        .map(|t| (t.nodes, t.from, t.to, t.status))
        .collect();
    assert_eq!(d.tails[1].offsets.len(), 2);
    assert_eq!(
        tails,
        [
            (0b001, 6, 7, TailStatus::Overwritten { by_term: 1 }),
            (0b110, 6, 8, TailStatus::OnMajority)
        ]
    );
    assert_eq!(d.committed(), Some((8, Evidence::Majority, 1)));
    assert_eq!(d.commit.cluster_size, 3);
    assert_eq!(
        (
            d.election_safety.total,
            d.log_matching.total,
            d.committed_conflicts.total
        ),
        (0, 0, 0)
    );
    assert!(!d.identical());
}

#[test]
fn election_safety_and_log_matching() {
    let tmp = tempfile::tempdir().unwrap();
    // Two leaders in term 1 wrote different entries at index 6; then both logs hold the
    // same (7, 1) entry on different prefixes.
    let a = with(base(), &[(6, 1, w("k", "a")), (7, 1, w("z", "same"))]);
    let b = with(base(), &[(6, 1, w("k", "b")), (7, 1, w("z", "same"))]);
    let dirs = [node(tmp.path(), "a", &a), node(tmp.path(), "b", &b)];
    let d = compare(&targets(&dirs), &DiffOptions::default()).unwrap();
    let es: Vec<_> = d
        .election_safety
        .items
        .iter()
        .map(|e| (e.index, e.term, e.a, e.b))
        .collect();
    assert_eq!(es, [(6, 1, 0, 1)]);
    let lm: Vec<_> = d
        .log_matching
        .items
        .iter()
        .map(|e| (e.index, e.term, e.prefix_differs_at))
        .collect();
    assert_eq!(lm, [(7, 1, Some(6))]);
}

#[test]
fn committed_conflict_needs_evidence_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let a = with(base(), &[(6, 1, w("k", "a"))]);
    let b = with(base(), &[(6, 2, w("k", "b"))]);
    let dirs = [node(tmp.path(), "a", &a), node(tmp.path(), "b", &b)];
    let d = compare(&targets(&dirs), &DiffOptions::default()).unwrap();
    assert_eq!(
        d.committed_conflicts.total, 0,
        "no evidence: an ordinary divergence"
    );
    // Both confs claim index 6 committed.
    for n in ["a", "b"] {
        std::fs::write(
            tmp.path().join(n).join("conf"),
            br#"{"commitIndex":6,"peers":[]}"#,
        )
        .unwrap();
    }
    let dirs = [
        crate::datadir::open(&tmp.path().join("a")).unwrap(),
        crate::datadir::open(&tmp.path().join("b")).unwrap(),
    ];
    let d = compare(&targets(&dirs), &DiffOptions::default()).unwrap();
    let c = &d.committed_conflicts.items[0];
    assert_eq!((c.index, c.versions.len()), (6, 2));
    assert_eq!(
        c.versions[1].claims,
        [Claim::ConfCommitIndex {
            node: 1,
            commit_index: 6
        }]
    );
    assert!(d.conf_differs, "peers plus self differ: {{a}} vs {{b}}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Damaged, cut or garbage logs never make the comparison (or the state replays) panic,
    /// and what it reports stays within what the logs hold.
    #[test]
    fn never_panics_on_damaged_logs(
        flips in proptest::collection::vec((0usize..2000, proptest::prelude::any::<u8>()), 0..6),
        cut in 0usize..2000,
        at in proptest::option::of(0u64..12),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let log = with(base(), &[(6, 1, Command::Nop), (7, 1, w("k", "2")), (8, 1, w("j", "3"))]);
        let a = node(tmp.path(), "a", &log);
        let b = node(tmp.path(), "b", &log);
        let mut bytes = b.log.bytes().to_vec();
        let len = bytes.len().max(1);
        for (pos, x) in &flips {
            if let Some(byte) = bytes.get_mut(*pos % len) {
                *byte ^= x;
            }
        }
        bytes.truncate(cut.min(bytes.len()));
        std::fs::write(tmp.path().join("b/log"), &bytes).unwrap();
        let b = crate::datadir::open(&tmp.path().join("b")).unwrap();
        let t = [Target { dir: &a, at }, Target { dir: &b, at: None }];
        let opts = DiffOptions { state: true, ..Default::default() };
        let d = compare(&t, &opts).unwrap();
        if let Some((_, to)) = d.common {
            proptest::prop_assert!(to <= d.nodes[0].last_index.unwrap_or(0));
        }
        proptest::prop_assert!(d.rows.len() as u64 <= d.conflicting_indexes);
    }
}

#[test]
fn a_snapshot_vouches_for_its_last_term() {
    let tmp = tempfile::tempdir().unwrap();
    let log = with(base(), &[(6, 2, w("k", "b"))]);
    let b = node(tmp.path(), "b", &log);
    let c = node(tmp.path(), "c", &log);
    // Node a compacted everything into a snapshot that says entry 6 had term 1.
    let a_dir = tmp.path().join("a");
    std::fs::create_dir_all(a_dir.join("snapshot")).unwrap();
    std::fs::write(a_dir.join("log"), b"").unwrap();
    std::fs::write(a_dir.join("name"), "a").unwrap();
    let snap = crate::model::Snapshot {
        last_index: 6,
        last_term: 1,
        peers: None,
        state: Some(br#"{"k":"a"}"#.to_vec()),
        path: String::new(),
    };
    std::fs::write(
        a_dir.join("snapshot/1_6.ss"),
        crate::format::snapshot::encode(&snap),
    )
    .unwrap();
    let dirs = [crate::datadir::open(&a_dir).unwrap(), b, c];
    let d = compare(&targets(&dirs), &DiffOptions::default()).unwrap();
    let c = &d.committed_conflicts.items;
    assert_eq!(c.len(), 1, "{c:?}");
    let v: Vec<_> = c[0]
        .versions
        .iter()
        .map(|v| (v.term, v.nodes, v.offset.is_some()))
        .collect();
    assert_eq!(
        (c[0].index, v),
        (6, vec![(2, 0b110, true), (1, 0b001, false)])
    );
    assert_eq!(
        c[0].versions[1].claims,
        [Claim::Snapshot {
            node: 0,
            last_index: 6
        }]
    );
    let pairs: Vec<_> = d.pairs.iter().map(|p| p.diff).collect();
    assert_eq!(
        pairs,
        [
            PairDiff::Identical,
            PairDiff::Identical,
            PairDiff::Identical
        ]
    );
}

#[test]
fn two_points_of_one_node_and_state() {
    let tmp = tempfile::tempdir().unwrap();
    let log = with(base(), &[(6, 0, w("k", "2")), (7, 0, w("j", "1"))]);
    let dirs = [node(tmp.path(), "a", &log)];
    let t = [
        Target {
            dir: &dirs[0],
            at: Some(5),
        },
        Target {
            dir: &dirs[0],
            at: None,
        },
    ];
    let opts = DiffOptions {
        state: true,
        ..Default::default()
    };
    let d = compare(&t, &opts).unwrap();
    assert_eq!(
        d.pairs[0].diff,
        PairDiff::Ends {
            index: 6,
            shorter: 0
        }
    );
    assert_eq!(d.nodes[1].identity, 0);
    let s = d.state.as_ref().unwrap();
    let rows: Vec<_> = s
        .rows
        .iter()
        .map(|r| (r.key.as_str(), r.values.clone()))
        .collect();
    assert_eq!(
        rows,
        [
            ("j", vec![None, Some("1".to_string())]),
            ("k", vec![Some("1".to_string()), Some("2".to_string())])
        ]
    );
    assert_eq!(s.same, 0);
    assert!(!d.identical());
    // The same point twice is identical.
    let t = [
        Target {
            dir: &dirs[0],
            at: Some(5),
        },
        Target {
            dir: &dirs[0],
            at: Some(5),
        },
    ];
    assert!(compare(&t, &opts).unwrap().identical());
}
