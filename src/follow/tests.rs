use super::*;
use crate::format::log::LogWriter;
use std::io::Write as _;

/// What a poll reported, in a form tests compare: `e<index>/<term>`, `p<offset>:<code>`,
/// `t<index>@<offset>-<removed>`, `replaced`, `removed`.
fn poll(f: &mut Follower, now: Instant) -> Vec<String> {
    let mut got = Vec::new();
    f.poll(now, &mut |ev| {
        got.push(match ev {
            Event::Entry(e) => format!("e{}/{}", e.index(), e.term()),
            Event::Problem { error, .. } => format!("p{}:{}", error.offset, error.kind.code()),
            Event::Truncated {
                index,
                offset,
                removed,
                ..
            } => format!("t{index}@{offset}-{removed}"),
            Event::Replaced => "replaced".into(),
            Event::Removed => "removed".into(),
        });
        Ok(())
    })
    .unwrap();
    got
}

fn frames(entries: &[(u64, u64)]) -> Vec<u8> {
    let mut w = LogWriter::new(Vec::new());
    for &(i, t) in entries {
        w.append_raw(i, t, "write", Some(b"{\"key\":\"k\",\"value\":\"v\"}\n"))
            .unwrap();
    }
    w.into_inner()
}

fn append(path: &std::path::Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn appends_halves_torn_tails_truncation_and_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    append(&log, &frames(&[(1, 1), (2, 1)]));
    let settle = Duration::from_secs(5);
    let mut f = Follower::new(log.clone(), Dialect::Goraft, settle);
    let t0 = Instant::now();
    assert_eq!(poll(&mut f, t0), ["e1/1", "e2/1"]);
    // A frame in two halves: nothing until it is whole, never damage.
    let third = frames(&[(3, 1)]);
    let (a, b) = third.split_at(12);
    append(&log, a);
    assert!(poll(&mut f, t0).is_empty());
    append(&log, b);
    assert_eq!(poll(&mut f, t0), ["e3/1"]);
    // A torn tail is reported once it has stayed for the settle time, and only once.
    let end = std::fs::metadata(&log).unwrap().len();
    append(&log, &third[..5]);
    assert!(poll(&mut f, t0).is_empty());
    assert_eq!(poll(&mut f, t0 + settle), [format!("p{end}:torn-header")]);
    assert!(poll(&mut f, t0 + 2 * settle).is_empty());
    // Cut back to entry 2 and rewritten by a new leader in term 2, between two polls.
    let two = frames(&[(1, 1), (2, 1)]);
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(two.len() as u64).unwrap();
    drop(file);
    append(&log, &frames(&[(3, 2), (4, 2), (5, 2)]));
    assert_eq!(
        poll(&mut f, t0 + 3 * settle),
        [
            format!("t3@{}-1", two.len()),
            "e3/2".into(),
            "e4/2".into(),
            "e5/2".into()
        ]
    );
    assert_eq!(f.marks().len(), 2);
    // Shrunk to nothing.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert_eq!(poll(&mut f, t0), ["t1@0-5"]);
    // Replaced by a rename, then removed.
    let new = dir.path().join("log.new");
    append(&new, &frames(&[(7, 3)]));
    std::fs::rename(&new, &log).unwrap();
    assert_eq!(poll(&mut f, t0), ["replaced", "e7/3"]);
    std::fs::remove_file(&log).unwrap();
    assert_eq!(poll(&mut f, t0), ["removed"]);
    assert!(poll(&mut f, t0).is_empty());
}

#[test]
fn damage_in_the_middle_is_reported_and_passed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut bytes = frames(&[(1, 1)]);
    let at = bytes.len();
    bytes.extend_from_slice(b"garbage!");
    bytes.extend_from_slice(&frames(&[(2, 1)]));
    append(&log, &bytes);
    let mut f = Follower::new(log, Dialect::Goraft, Duration::ZERO);
    assert_eq!(
        poll(&mut f, Instant::now()),
        ["e1/1", &format!("p{at}:garbage"), "e2/1"]
    );
}

#[test]
fn a_log_of_many_windows_reads_whole_with_few_marks() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // 460k frames of 46 bytes (21 MB): frames cut by the ends of read windows, more than a
    // damage window's worth, and more than one mark step.
    let entries: Vec<(u64, u64)> = (1..=460_000).map(|i| (i, 1)).collect();
    append(&log, &frames(&entries));
    let mut f = Follower::new(log, Dialect::Goraft, Duration::ZERO);
    let (mut n, mut other) = (0u64, Vec::new());
    f.poll(Instant::now(), &mut |ev| {
        match ev {
            Event::Entry(e) => {
                n += 1;
                assert_eq!(e.index(), n);
            }
            ev => other.push(format!("{ev:?}")),
        }
        Ok(())
    })
    .unwrap();
    assert_eq!((n, other), (460_000, Vec::<String>::new()));
    // A mark at the start and one per 4 MiB.
    assert_eq!(f.marks().len(), 6);
}
