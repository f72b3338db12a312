use super::*;
use crate::format::log::LogWriter;
use crate::model::{Command, Peer};

fn w(k: &str, v: &str) -> Command {
    Command::Write {
        key: k.into(),
        value: v.into(),
    }
}

fn log(entries: &[(Index, Term, Command)]) -> Vec<u8> {
    let mut lw = LogWriter::new(Vec::new());
    for (i, t, c) in entries {
        lw.append(*i, *t, c).unwrap();
    }
    lw.into_inner()
}

fn run(bytes: &[u8], opts: &ReplayOptions, snap: Option<&Snapshot>) -> Replay {
    let mut r = replayer(opts, snap);
    feed_all(&mut r, bytes);
    r.finish()
}

/// A replayer of `opts`, started from `snap`.
fn replayer(opts: &ReplayOptions, snap: Option<&Snapshot>) -> Replayer {
    let mut r = Replayer::new(PathBuf::from("mem"), None, opts);
    if let Some(s) = snap {
        r.load_snapshot("1_3.ss", s);
    }
    r
}

/// Feeds `r` the log `bytes` as `replay` does.
fn feed_all(r: &mut Replayer, bytes: &[u8]) {
    for item in LogReader::new(bytes) {
        match item {
            Ok(e) => {
                if r.feed(&e) == Fed::Done && r.r.damage().is_none() {
                    break;
                }
            }
            Err(err) => r.feed_damage(&err, bytes.len() as u64),
        }
    }
}

fn join(n: &str) -> Command {
    Command::Join {
        name: n.into(),
        connection_string: format!("http://{n}"),
    }
}

fn sample() -> Vec<u8> {
    log(&[
        (1, 0, join("a")),
        (2, 0, Command::Nop),
        (3, 0, w("k", "1")),
        (4, 0, w("j", "x")),
        (5, 1, Command::Nop),
        (6, 1, w("k", "2")),
        (7, 1, Command::Leave { name: "a".into() }),
        (8, 2, w("k", "3")),
    ])
}

#[test]
fn history_stats_and_membership() {
    let opts = ReplayOptions {
        history: Some("k".into()),
        ..Default::default()
    };
    let r = run(&sample(), &opts, None);
    assert_eq!(r.stop, Stop::EndOfLog);
    assert_eq!(
        (r.last_applied(), r.first_applied, r.last_term),
        (8, Some(1), Some(2))
    );
    assert_eq!(r.kv.get("k"), Some("3"));
    let h: Vec<_> = r
        .history
        .unwrap()
        .changes
        .into_iter()
        .map(|c| (c.index, c.term, c.old, c.new))
        .collect();
    assert_eq!(
        h,
        [
            (3, 0, None, "1".to_string()),
            (6, 1, Some("1".to_string()), "2".to_string()),
            (8, 2, Some("2".to_string()), "3".to_string())
        ]
    );
    let s = &r.stats;
    assert_eq!(
        (s.entries, s.writes, s.overwrites, s.joins, s.leaves, s.nops),
        (8, 4, 2, 1, 1, 2)
    );
    let terms: Vec<_> = s
        .per_term
        .iter()
        .map(|t| (t.term, t.entries, t.writes, t.first_index, t.last_index))
        .collect();
    assert_eq!(terms, [(0, 4, 2, 1, 4), (1, 3, 1, 5, 7), (2, 1, 1, 8, 8)]);
    let m: Vec<_> = r
        .membership
        .iter()
        .map(|m| (m.index, m.kind, m.name.as_str(), m.effective, m.members))
        .collect();
    assert_eq!(
        m,
        [
            (1, MemberChangeKind::Join, "a", true, 1),
            (7, MemberChangeKind::Leave, "a", true, 0)
        ]
    );
}

#[test]
fn at_stops_after_the_index() {
    let opts = ReplayOptions {
        at: Some(6),
        ..Default::default()
    };
    let r = run(&sample(), &opts, None);
    assert_eq!(
        (r.stop.clone(), r.last_applied(), r.kv.get("k")),
        (Stop::At, 6, Some("2"))
    );
}

#[test]
fn damage_stops_the_replay_and_counts_what_goraft_discards() {
    let mut bytes = sample();
    let cut = {
        let e: Vec<_> = LogReader::new(&bytes).map(Result::unwrap).collect();
        e[5].offset as usize
    };
    // A NUL hole where entry 6 starts: entries 6..8 survive after it but goraft drops them.
    let mut damaged = bytes[..cut].to_vec();
    damaged.extend_from_slice(&[0; 10]);
    damaged.extend_from_slice(&bytes[cut..]);
    let r = run(&damaged, &ReplayOptions::default(), None);
    let d = r.damage().unwrap();
    assert_eq!(
        (d.error.offset, d.error.kind.code()),
        (cut as u64, "nul-run")
    );
    assert_eq!(
        (d.entries_after, d.last_index_after, d.more_damage),
        (3, Some(8), 0)
    );
    assert_eq!(d.bytes_after, (damaged.len() - cut) as u64);
    assert_eq!((r.last_applied(), r.kv.get("k")), (5, Some("1")));
    // A torn tail.
    bytes.extend_from_slice(b"      29\n\x08");
    let r = run(&bytes, &ReplayOptions::default(), None);
    assert_eq!(r.damage().map(|d| d.error.kind.code()), Some("torn-body"));
    assert_eq!(r.last_applied(), 8);
}

#[test]
fn snapshot_start_skips_covered_entries() {
    let snap = Snapshot {
        last_index: 3,
        last_term: 0,
        peers: Some(vec![Peer {
            name: "a".into(),
            connection_string: "http://a".into(),
        }]),
        state: Some(br#"{"k":"from-snap","z":"\u003c"}"#.to_vec()),
        path: String::new(),
    };
    let opts = ReplayOptions {
        history: Some("k".into()),
        ..Default::default()
    };
    let r = run(&sample(), &opts, Some(&snap));
    assert_eq!(r.skipped, 3);
    assert_eq!(r.first_applied, Some(4));
    assert_eq!(r.kv.get("z"), Some("<"));
    let h = r.history.unwrap();
    assert_eq!(
        (
            h.changes[0].from_snapshot,
            h.changes[0].new.as_str(),
            h.changes[1].old.as_deref()
        ),
        (true, "from-snap", Some("from-snap"))
    );
    assert!(matches!(
        r.start,
        Start::Snapshot(SnapshotStart {
            state: SnapshotState::Loaded { keys: 2 },
            ..
        })
    ));
    // An opaque state: membership still known, key state unknown unless written later.
    let opaque = Snapshot {
        state: Some(b"\x00binary".to_vec()),
        ..snap
    };
    let r = run(&sample(), &ReplayOptions::default(), Some(&opaque));
    assert!(r.opaque());
    assert_eq!(r.get("k"), KeyState::Value("3"));
    assert_eq!(r.get("nope"), KeyState::Unknown);
    assert_eq!(r.kv.members.len(), 0, "a left at index 7");
    assert_eq!(r.membership[0].kind, MemberChangeKind::Snapshot);
}

#[test]
fn irregular_indexes_are_reported_and_applied_in_file_order() {
    let bytes = log(&[
        (1, 0, w("k", "1")),
        (3, 0, w("k", "2")),
        (2, 0, w("k", "3")),
    ]);
    let r = run(&bytes, &ReplayOptions::default(), None);
    assert_eq!(r.irregular_count, 2);
    assert_eq!((r.irregular[0].expected, r.irregular[0].found), (2, 3));
    assert_eq!(r.kv.get("k"), Some("3"));
}

#[test]
fn bad_payloads_and_unknown_names_are_counted() {
    let mut lw = LogWriter::new(Vec::new());
    lw.append_raw(1, 0, "write", Some(b"{\"key\":1}\n"))
        .unwrap();
    lw.append_raw(2, 0, "etcd:set", Some(b"{}")).unwrap();
    lw.append_raw(3, 0, "raft:join", Some(b"[]\n")).unwrap();
    let bytes = lw.into_inner();
    let r = run(&bytes, &ReplayOptions::default(), None);
    assert_eq!(
        (r.stats.invalid, r.stats.unknown, r.kv.invalid, r.kv.unknown),
        (2, 1, 2, 1)
    );
    assert_eq!(r.last_applied(), 3);
}

/// `run` with the batch size of the write pipeline set to `limit`, and its worker thread
/// allowed or not (as when spawning it fails).
fn run_batched(bytes: &[u8], opts: &ReplayOptions, limit: usize, thread: bool) -> (Replay, bool) {
    run_bulk(bytes, opts, None, (limit, thread, runs::LONGEST))
}

/// `run_batched` from `snap`, with the longest key or value the runs take set to `longest`.
fn run_bulk(
    bytes: &[u8],
    opts: &ReplayOptions,
    snap: Option<&Snapshot>,
    (limit, thread, longest): (usize, bool, usize),
) -> (Replay, bool) {
    let mut r = replayer(opts, snap);
    r.pipe.limit = limit;
    r.pipe.no_worker = !thread;
    r.pipe.longest = longest;
    feed_all(&mut r, bytes);
    let threaded = r.pipe.worker.is_some();
    (r.finish(), threaded)
}

#[test]
fn pipelined_writes_give_the_state_of_one_by_one_writes() {
    let mut lw = LogWriter::new(Vec::new());
    let mut index = 0;
    let mut next = || {
        index += 1;
        index
    };
    for i in 0..500u64 {
        let k = format!("k{}", i % 37);
        lw.append(next(), i / 100, &w(&k, &format!("v{i}")))
            .unwrap();
        if i % 7 == 0 {
            lw.append(next(), i / 100, &Command::Nop).unwrap();
        }
        if i % 11 == 0 {
            // An escaped key and value (the general decoder), then an undecodable write.
            let p = format!(
                "{{\"key\":\"k\\u00{:02x}\",\"value\":\"\\n{i}\"}}\n",
                i % 5 + 0x61
            );
            lw.append_raw(next(), i / 100, "write", Some(p.as_bytes()))
                .unwrap();
            lw.append_raw(next(), i / 100, "write", Some(b"{\"key\":1}\n"))
                .unwrap();
        }
        if i % 50 == 0 {
            lw.append(next(), i / 100, &join(&format!("n{i}"))).unwrap();
        }
    }
    let bytes = lw.into_inner();
    // A tracked key takes the one-by-one path (put_str): the reference.
    let slow_opts = ReplayOptions {
        history: Some("not-a-key".into()),
        ..Default::default()
    };
    let slow = run(&bytes, &slow_opts, None);
    assert_eq!(slow.kv.get("ka"), Some("\n495"));
    assert_eq!(slow.kv.data.len(), 37 + 5);
    for at in [None, Some(1), Some(333)] {
        let slow = run(
            &bytes,
            &ReplayOptions {
                at,
                ..slow_opts.clone()
            },
            None,
        );
        for (limit, thread) in [1, 3, 64, kv::BATCH]
            .into_iter()
            .flat_map(|l| [(l, true), (l, false)])
        {
            let opts = ReplayOptions {
                at,
                ..Default::default()
            };
            let (fast, threaded) = run_batched(&bytes, &opts, limit, thread);
            assert_eq!(
                threaded,
                thread && fast.stats.writes >= limit as u64,
                "limit {limit} at {at:?}"
            );
            assert_eq!(
                fast.kv.to_btree(),
                slow.kv.to_btree(),
                "limit {limit} at {at:?}"
            );
            assert_eq!(fast.stats, slow.stats, "limit {limit} at {at:?}");
            assert_eq!(
                (fast.kv.applied, fast.kv.invalid, &fast.kv.members),
                (slow.kv.applied, slow.kv.invalid, &slow.kv.members)
            );
        }
    }
    assert_eq!((slow.stats.writes, slow.stats.overwrites), (546, 504));
}

#[test]
fn a_pair_too_long_for_the_runs_keeps_the_bulk_path_off() {
    let snap = Snapshot {
        last_index: 0,
        last_term: 0,
        peers: None,
        state: Some(br#"{"snap":"0123456789","a":"0"}"#.to_vec()),
        path: String::new(),
    };
    let mut lw = LogWriter::new(Vec::new());
    for i in 1..=10u64 {
        let p = crate::format::command::encode_write(b"a", i.to_string().as_bytes());
        lw.append_raw(i, 0, "write", Some(&p)).unwrap();
    }
    let bytes = lw.into_inner();
    for thread in [false, true] {
        let (r, _) = run_bulk(
            &bytes,
            &ReplayOptions::default(),
            Some(&snap),
            (2, thread, 5),
        );
        assert!(r.kv.data.is_sorted());
        assert_eq!(
            r.kv.sorted(),
            [("a", "10"), ("snap", "0123456789")],
            "the snapshot's long pair is kept"
        );
        assert_eq!((r.stats.writes, r.stats.overwrites), (10, 10));
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// The bulk write path (batches of any size, the reader's and the worker's shares of
    /// the partitions moving between them, or no worker) leaves the state, counts and
    /// overwrites that applying the writes one by one leaves: keys written many times in one
    /// batch, escaped and non-ASCII keys and values (through the general decoder), invalid
    /// UTF-8 (mangled as Go does), undecodable payloads, and entries that are not writes.
    #[test]
    fn bulk_writes_give_the_state_of_one_by_one_writes(
        writes in proptest::collection::vec(
            (0usize..6, 0u8..40, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6)),
            0..400),
        limit in proptest::prop_oneof![1usize..8, 8usize..300],
        thread: bool,
        longest in proptest::prop_oneof![proptest::strategy::Just(runs::LONGEST), 0usize..6],
        snap_value in proptest::option::of("[a-z]{0,8}"),
    ) {
        const KEYS: [&[u8]; 6] = [b"k", b"k\"q\"", "\u{e9}t\u{2028}".as_bytes(), b"", b"x\n", b"\xffbad"];
        let mut lw = LogWriter::new(Vec::new());
        for (i, (k, kind, v)) in writes.iter().enumerate() {
            let index = i as u64 + 1;
            match kind {
                0 => lw.append_raw(index, 0, "write", Some(b"{\"key\":1}\n")).unwrap(),
                1 => lw.append(index, 0, &Command::Nop).unwrap(),
                // An escape the encoder would not write: the general decoder's path.
                2 => {
                    let p = format!("{{\"key\":\"\\u006b{k}\",\"value\":\"\\t\"}}\n");
                    lw.append_raw(index, 0, "write", Some(p.as_bytes())).unwrap()
                }
                _ => {
                    let p = crate::format::command::encode_write(KEYS[*k], v);
                    lw.append_raw(index, 0, "write", Some(&p)).unwrap()
                }
            }
        }
        let bytes = lw.into_inner();
        // A snapshot at index 0 (every entry is applied after it), its state a pair no
        // write touches, which may be too long for the runs.
        let snap = snap_value.map(|v| Snapshot {
            last_index: 0,
            last_term: 0,
            peers: None,
            state: Some(serde_json::to_vec(&BTreeMap::from([("snap", v)])).unwrap()),
            path: String::new(),
        });
        let slow_opts = ReplayOptions {
            history: Some("not-a-key".into()),
            ..Default::default()
        };
        let slow = run(&bytes, &slow_opts, snap.as_ref());
        // Writes longer than `longest` turn the runs off midway (or from the start).
        let (fast, _) = run_bulk(
            &bytes,
            &ReplayOptions::default(),
            snap.as_ref(),
            (limit, thread, longest),
        );
        proptest::prop_assert_eq!(fast.kv.to_btree(), slow.kv.to_btree());
        proptest::prop_assert_eq!(&fast.stats, &slow.stats);
        proptest::prop_assert_eq!(
            (fast.kv.applied, fast.kv.invalid, fast.kv.data.is_sorted()),
            (slow.kv.applied, slow.kv.invalid, true)
        );
    }
}

#[test]
fn membership_only_counts_writes_without_applying_them() {
    let opts = ReplayOptions {
        membership_only: true,
        ..Default::default()
    };
    let r = run(&sample(), &opts, None);
    assert!(r.kv.data.is_empty());
    assert_eq!((r.stats.writes, r.last_applied()), (4, 8));
}
