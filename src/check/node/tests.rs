use super::*;
use crate::format::log::LogWriter;

fn log(entries: &[(u64, u64, Command)]) -> Vec<u8> {
    let mut w = LogWriter::new(Vec::new());
    for (i, t, c) in entries {
        w.append(*i, *t, c).unwrap();
    }
    w.into_inner()
}

fn join(name: &str) -> Command {
    Command::Join {
        name: name.into(),
        connection_string: format!("http://127.0.0.1:{}", name.len()),
    }
}

fn write(k: &str, v: &str) -> Command {
    Command::Write {
        key: k.into(),
        value: v.into(),
    }
}

fn codes(bytes: &[u8]) -> Vec<(&'static str, Option<u64>, Option<u64>)> {
    check_log(bytes, &LogContext::default())
        .1
        .iter()
        .map(|f| (f.code, f.offset, f.index))
        .collect()
}

/// [`check_log`] with the pass run in `parts` parts, and how many parts were taken over.
fn split_check(
    bytes: &[u8],
    ctx: &LogContext,
    parts: usize,
) -> ((LogOutcome, Vec<Finding>), usize) {
    let mut pass = LogPass::new(bytes, ctx);
    let taken = pass.run_split(parts, &|_| {});
    let (out, mut findings, sink) = pass.finish();
    findings.extend(sink.suppressed(ctx.node.as_deref()));
    ((out, findings), taken)
}

/// Puts another entry in place of the write at an index (see [`writes`]), or returns false.
type Plant = Box<dyn Fn(&mut LogWriter<Vec<u8>>, u64) -> bool>;

/// A log of writes `1..n` in term 1 where `f(i)` may put another command at index `i`.
fn writes(n: u64, mut f: impl FnMut(&mut LogWriter<Vec<u8>>, u64) -> bool) -> Vec<u8> {
    let mut w = LogWriter::new(Vec::new());
    for i in 1..=n {
        if !f(&mut w, i) {
            w.append(i, 1, &write(&format!("k{i}"), "value")).unwrap();
        }
    }
    w.into_inner()
}

/// A pass in parts finds what one pass finds: on every fixture log, and on a long log
/// with odd payloads, findings over the per-code limit, a hole, garbage and a torn tail,
/// with and without the commit-index prefix and a context, in 2 to 4 parts.
#[test]
fn a_pass_in_parts_finds_the_same() {
    let logs = crate::datadir::testing::fixture_logs();
    for path in &logs {
        let bytes = std::fs::read(path).unwrap();
        let ctx = LogContext::default();
        assert_eq!(
            split_check(&bytes, &ctx, 2).0,
            check_log(&bytes, &ctx),
            "{}",
            path.display()
        );
    }
    assert!(logs.len() > 40, "{} fixture logs", logs.len());
    let mut w = LogWriter::new(Vec::new());
    w.append(1, 0, &join("a")).unwrap();
    for i in 2..20_000u64 {
        match i % 997 {
            5 => w
                .append_raw(i, 1, "write", Some(b"{\"value\":\"v\",\"key\":\"k\"}"))
                .unwrap(),
            6 => w.append(i, 1, &write("k", "lost \u{fffd}")).unwrap(),
            7 => w.append_raw(i, 1, "etcd:set", Some(b"{}")).unwrap(),
            8 => w.append_raw(i, 1, "write", Some(b"{not json")).unwrap(),
            9 => w.append(i, 0, &Command::Nop).unwrap(),
            _ => w.append(i, 1, &write(&format!("k{i}"), "v")).unwrap(),
        }
    }
    let long = w.into_inner();
    let mut damaged = long.clone();
    damaged[500_000..501_000].fill(0);
    damaged[900_000..900_050].fill(b'x');
    damaged.truncate(damaged.len() - 7);
    let mut prefixed = b"      2a\n".to_vec();
    prefixed.extend_from_slice(&long);
    let ctx = LogContext {
        node: Some("n1".into()),
        file: PathBuf::from("n1/log"),
        conf_commit: 3_000,
        watch: vec![10, 15_000],
        ..LogContext::default()
    };
    for bytes in [&long, &damaged, &prefixed] {
        for ctx in [&LogContext::default(), &ctx] {
            let want = check_log(bytes, ctx);
            assert!(want.1.len() > 10, "{:?}", want.1);
            for parts in 2..=4 {
                assert_eq!(split_check(bytes, ctx, parts).0, want, "{parts} parts");
            }
        }
    }
}

/// The parts of a clean log are taken over (the work is shared), and so are those of a
/// log whose findings all lie in the first part; with watched indexes in every part.
#[test]
fn clean_parts_are_taken_over() {
    let ctx = LogContext {
        watch: vec![3, 2_500, 7_000, 9_999],
        ..LogContext::default()
    };
    let clean = writes(10_000, |_, _| false);
    let want = check_log(&clean, &ctx);
    assert_eq!(want.1, []);
    assert_eq!(want.0.watched.len(), 4);
    for parts in 2..=4 {
        assert_eq!(split_check(&clean, &ctx, parts), (want.clone(), parts - 1));
    }
    let early = writes(10_000, |w, i| {
        (i == 10)
            .then(|| w.append(i, 0, &Command::Nop).unwrap())
            .is_some()
    });
    let want = check_log(&early, &ctx);
    assert_eq!(want.1.len(), 1, "{:?}", want.1);
    assert_eq!(split_check(&early, &ctx, 2), (want, 1));
}

/// A part is read again when what it found depends on the entries before it: a term that
/// decreases or an index that jumps at (or next to) a part's first frame, a membership
/// entry inside a part, a finding or damage inside a part; the answer is always that of
/// one pass.
#[test]
fn parts_that_depend_on_what_came_before_are_read_again() {
    let n = 10_000u64;
    let base = writes(n, |_, _| false);
    // The entry at the middle of the log is where a part of two starts.
    let (at, mid, _) =
        crate::format::log::boundary_after(&base, base.len() / 2, Dialect::Goraft).unwrap();
    assert!(at > 0 && mid > 1);
    for j in [mid - 1, mid, mid + 1, mid + 2] {
        let cases: [Plant; 5] = [
            Box::new(move |w, i| {
                (i == j)
                    .then(|| w.append(i, 0, &write("k", "v")).unwrap())
                    .is_some()
            }),
            Box::new(move |w, i| {
                (i == j)
                    .then(|| w.append(i + 5, 1, &write("k", "v")).unwrap())
                    .is_some()
            }),
            Box::new(move |w, i| {
                (i == j)
                    .then(|| w.append(i, 1, &join("b")).unwrap())
                    .is_some()
            }),
            Box::new(move |w, i| {
                (i == j)
                    .then(|| w.append_raw(i, 1, "etcd:set", Some(b"{}")).unwrap())
                    .is_some()
            }),
            Box::new(move |w, i| {
                (i == j)
                    .then(|| w.append(i, 1, &write("k", "\u{fffd}")).unwrap())
                    .is_some()
            }),
        ];
        for (c, f) in cases.iter().enumerate() {
            let bytes = writes(n, f);
            let ctx = LogContext {
                base_members: Some(Vec::new()),
                ..LogContext::default()
            };
            let want = check_log(&bytes, &ctx);
            assert!(!want.1.is_empty() || c == 2, "case {c} at index {j}");
            let (got, taken) = split_check(&bytes, &ctx, 2);
            assert_eq!(got, want, "case {c} at index {j}");
            // Where this log's second part starts (the entries before it changed size), as
            // the number of frames before it; the changed entry is frame `j - 1`.
            let (at, _, _) =
                crate::format::log::boundary_after(&bytes, bytes.len() / 2, Dialect::Goraft)
                    .unwrap();
            let mut cut = 0;
            crate::format::log::Frames::new(&bytes).each_before(at, |_, _| cut += 1);
            // An entry before the cut leaves the part after it plain, unless it is an index
            // the part's first frame does not follow.
            let plain = j - 1 < cut && !(c == 1 && j == cut);
            assert_eq!(
                taken,
                usize::from(plain),
                "case {c} at index {j}, cut before frame {cut}"
            );
        }
    }
    let mut torn = base.clone();
    torn.truncate(torn.len() - 3);
    let mut holed = base.clone();
    holed[base.len() * 3 / 4..base.len() * 3 / 4 + 100].fill(0);
    for bytes in [torn, holed] {
        let want = check_log(&bytes, &LogContext::default());
        assert_eq!(split_check(&bytes, &LogContext::default(), 2), (want, 0));
    }
}

/// A cut at a false boundary (frames inside a payload) is not trusted: the reader of the
/// first part does not stop there, so the part is read again. Here the false frames go on
/// with the indexes after the payload's entry and the true frames after them, so the part
/// looks plain and follows on: only the reader's position tells.
#[test]
fn a_false_boundary_is_not_trusted() {
    let (half, k) = (2_000u64, 200u64);
    let mut fake = LogWriter::new(Vec::new());
    for i in half + 1..=half + k {
        fake.append(i, 1, &write(&format!("k{i}"), "value"))
            .unwrap();
    }
    let fake = fake.into_inner();
    // Logs with more and more entries after the blob, until the middle of one falls just
    // before the blob's first false frame.
    let log = |after: u64| {
        let mut w = LogWriter::new(Vec::new());
        for i in (1..=half + k + after).filter(|i| !(half + 1..=half + k).contains(i)) {
            if i == half {
                w.append_raw(i, 1, "blob", Some(&fake)).unwrap();
            } else {
                w.append(i, 1, &write(&format!("k{i}"), "value")).unwrap();
            }
        }
        w.into_inner()
    };
    let bytes = (1_700..2 * half)
        .map(log)
        .find(|b| {
            crate::format::log::boundary_after(b, b.len() / 2, Dialect::Goraft)
                .is_some_and(|c| c.1 == half + 1)
        })
        .unwrap();
    let want = check_log(&bytes, &LogContext::default());
    assert!(want.1.iter().any(|f| f.code == "index-gap"), "{:?}", want.1);
    assert_eq!(split_check(&bytes, &LogContext::default(), 2), (want, 0));
}

/// The spec's 161-byte sample (section 2.4.2): join@1, nop@2, write@3, term 0.
fn sample() -> Vec<u8> {
    let join = Command::Join {
        name: "2832bfa".into(),
        connection_string: "http://localhost:4001".into(),
    };
    let l = log(&[
        (1, 0, join),
        (2, 0, Command::Nop),
        (3, 0, write("foo", "bar")),
    ]);
    assert_eq!(l.len(), 161);
    l
}

#[test]
fn clean_log_has_no_findings() {
    let (out, f) = check_log(&sample(), &LogContext::default());
    assert_eq!(f, []);
    assert_eq!(
        (
            out.entries,
            out.first_index,
            out.last_index,
            out.kept_entries
        ),
        (3, Some(1), Some(3), 3)
    );
    assert_eq!(out.first_damage, None);
    assert_eq!(
        out.membership.members.keys().collect::<Vec<_>>(),
        ["2832bfa"]
    );
}

#[test]
fn torn_tails_say_what_goraft_does() {
    let base = sample();
    let mut cut = base.clone();
    cut.truncate(base.len() - 10);
    let (out, f) = check_log(&cut, &LogContext::default());
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].code, f[0].offset, out.goraft_truncate_at),
        ("log-torn-tail", Some(111), Some(111))
    );
    assert!(
        f[0].goraft
            .as_deref()
            .unwrap()
            .contains("truncates the log to 111 bytes"),
        "{f:?}"
    );
    let mut stale = base.clone();
    stale.extend_from_slice(b"      29");
    let f = check_log(&stale, &LogContext::default()).1;
    assert!(
        f[0].goraft
            .as_deref()
            .unwrap()
            .contains("keeps the 8 stale bytes"),
        "{f:?}"
    );
    let mut spaces = base;
    spaces.extend_from_slice(b"   ");
    assert_eq!(codes(&spaces), [("log-torn-tail", Some(161), None)]);
}

#[test]
fn nul_hole_lists_the_frames_after_it() {
    let base = sample();
    let mut holed = base[..88].to_vec();
    holed.extend_from_slice(&[0; 30]);
    holed.extend_from_slice(&base[88..]);
    let (out, f) = check_log(&holed, &LogContext::default());
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].code, f[0].offset), ("log-nul-hole", Some(88)));
    assert!(
        f[0].message
            .contains("2 good frames follow it (index 2 to 3)"),
        "{}",
        f[0].message
    );
    assert!(f[0]
        .goraft
        .as_deref()
        .unwrap()
        .contains("truncates the log to 88 bytes"));
    assert_eq!(
        (out.kept_entries, out.kept_last_index, out.entries),
        (1, Some(1), 3)
    );
}

#[test]
fn index_and_term_order() {
    let l = log(&[
        (1, 1, Command::Nop),
        (2, 1, Command::Nop),
        (4, 1, Command::Nop),
        (4, 0, Command::Nop),
    ]);
    assert_eq!(
        codes(&l),
        [
            ("index-gap", Some(46), Some(4)),
            ("index-duplicate", Some(69), Some(4)),
            ("term-decrease", Some(69), Some(4))
        ]
    );
    let l = log(&[(5, 0, Command::Nop)]);
    assert_eq!(codes(&l), [("log-first-index", Some(0), Some(5))]);
    let ctx = LogContext {
        snapshot_last_index: Some(4),
        ..LogContext::default()
    };
    assert_eq!(check_log(&l, &ctx).1, []);
}

#[test]
fn commands() {
    let mut w = LogWriter::new(Vec::new());
    w.append(1, 0, &join("a")).unwrap();
    w.append_raw(2, 0, "etcd:set", Some(b"{}")).unwrap();
    w.append_raw(3, 0, "write", Some(b"{\"key\":1}\n")).unwrap();
    w.append_raw(4, 0, "write", Some(b"{\"value\":\"v\",\"key\":\"k\"}\n"))
        .unwrap();
    w.append(
        5,
        0,
        &Command::Write {
            key: "k".into(),
            value: "a\u{fffd}".into(),
        },
    )
    .unwrap();
    w.append_raw(6, 0, "raft:join", Some(b"null\n")).unwrap();
    w.append(7, 0, &join("a")).unwrap();
    w.append_raw(8, 0, "etcd:set", Some(b"{}")).unwrap();
    let got: Vec<_> = codes(&w.into_inner())
        .into_iter()
        .map(|(c, _, i)| (c, i))
        .collect();
    assert_eq!(
        got,
        [
            ("unknown-command", Some(2)),
            ("command-invalid", Some(3)),
            ("command-non-canonical", Some(4)),
            ("write-replacement-char", Some(5)),
            ("join-empty-name", Some(6)),
            ("join-duplicate", Some(7)),
        ]
    );
}

#[test]
fn findings_are_capped_per_code() {
    let mut w = LogWriter::new(Vec::new());
    for i in 1..=30 {
        w.append_raw(i, 0, "write", Some(b"{\"key\":1}\n")).unwrap();
    }
    let f = check_log(&w.into_inner(), &LogContext::default()).1;
    assert_eq!(f.len(), LIMIT as usize + 1);
    assert_eq!(f.last().unwrap().code, "findings-suppressed");
    assert!(f
        .last()
        .unwrap()
        .message
        .starts_with("10 more command-invalid findings"));
}

#[test]
fn commit_index_prefix_is_recognised() {
    let mut l = b"      10\n".to_vec();
    l.extend_from_slice(&sample());
    let (out, f) = check_log(&l, &LogContext::default());
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].code, f[0].offset),
        ("log-commit-index-prefix", Some(0))
    );
    assert_eq!(
        (out.entries, out.kept_entries, out.first_damage),
        (3, 0, Some(0))
    );
}

#[test]
fn a_proto3_log_checked_in_parts_gives_what_one_pass_gives() {
    // A master's log: term 0 (no Term field) then term 2; then with an unknown command and
    // a zero byte in the middle.
    let master = |other: Option<u64>| {
        let mut w = LogWriter::with_dialect(Vec::new(), Dialect::Seaweedfs);
        for i in 1..=400u64 {
            let term = if i < 200 { 0 } else { 2 };
            let payload = format!("{{\"maxVolumeId\":{i}}}\n");
            let name = if Some(i) == other {
                "Other"
            } else {
                "MaxVolumeId"
            };
            w.append_raw(i, term, name, Some(payload.as_bytes()))
                .unwrap();
        }
        w.into_inner()
    };
    let ctx = LogContext {
        dialect: Dialect::Seaweedfs,
        ..LogContext::default()
    };
    // Clean, its parts are read on their own threads and taken over.
    let log = master(None);
    let whole = check_log(&log, &ctx);
    assert_eq!((whole.0.entries, whole.1.len()), (400, 0));
    for parts in 2..=4 {
        assert_eq!(split_check(&log, &ctx, parts), (whole.clone(), parts - 1));
    }
    let mut log = master(Some(300));
    let (at, _) = crate::datadir::testing::frame_span_as(&log, 250, Dialect::Seaweedfs);
    log.insert(at, 0);
    let whole = check_log(&log, &ctx);
    assert_eq!(whole.0.entries, 400);
    let codes: Vec<_> = whole.1.iter().map(|f| f.code).collect();
    assert_eq!(codes, ["log-nul-hole", "unknown-command"]);
    for parts in 2..=4 {
        assert_eq!(split_check(&log, &ctx, parts).0, whole, "{parts} parts");
    }
}

proptest::proptest! {
    #[test]
    fn never_panics_and_reports_in_file_order(
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        at in 0usize..161,
        splice in proptest::bool::ANY,
    ) {
        // Arbitrary bytes on their own, and spliced into goraft's 161-byte sample log.
        let mut spliced = sample();
        if splice {
            spliced.splice(at..at, noise.iter().copied());
        } else {
            let n = noise.len().min(161 - at);
            spliced[at..at + n].copy_from_slice(&noise[..n]);
        }
        // The same under the seaweedfs dialect (proto3 reads more bodies as entries).
        let proto3 = LogContext {
            dialect: Dialect::Seaweedfs,
            ..LogContext::default()
        };
        for (bytes, ctx) in [&noise[..], &spliced[..]]
            .into_iter()
            .flat_map(|b| [(b, LogContext::default()), (b, proto3.clone())])
        {
            let (out, f) = check_log(bytes, &ctx);
            for parts in 2..=3 {
                proptest::prop_assert_eq!(split_check(bytes, &ctx, parts).0, (out.clone(), f.clone()));
            }
            let offsets: Vec<u64> = f.iter().filter_map(|f| f.offset).collect();
            proptest::prop_assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
            proptest::prop_assert!(out.kept_entries <= out.entries);
            proptest::prop_assert_eq!(out.first_damage.is_some(), out.goraft_truncate_at.is_some());
        }
    }
}
