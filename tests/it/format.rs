//! The format layer against the real goraft files.

use raftdump::format::command;
use raftdump::format::log::{LogReader, LogWriter};

#[test]
fn every_real_log_decodes_cleanly_and_re_encodes_to_identical_bytes() {
    for path in crate::real_logs() {
        let bytes = std::fs::read(&path).unwrap();
        let mut raw = LogWriter::new(Vec::new());
        let mut n = 0;
        for r in LogReader::new(&bytes) {
            let e = r.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                e.is_canonical(),
                "{}: entry {} not canonical",
                path.display(),
                e.index()
            );
            assert_eq!(e.ordinal, n);
            raw.append_entry(&e.to_entry()).unwrap();
            // Through the decoded command, the payload comes back identical too, except where Go
            // had already replaced invalid UTF-8 by `\ufffd`: decoding yields a real U+FFFD, which
            // Go (and raftdump) then write raw. That loss happened when the entry was written.
            let cmd = e.command();
            if let Some((name, payload)) = command::encode(&cmd) {
                assert_eq!(name.as_bytes(), e.wire.name);
                let original = e.payload().unwrap_or_default();
                let lossy = original.windows(6).any(|w| w == b"\\ufffd");
                if !lossy {
                    assert_eq!(
                        payload.as_deref().unwrap_or_default(),
                        original,
                        "{}: {}",
                        path.display(),
                        e.index()
                    );
                }
            }
            n += 1;
        }
        assert!(n > 0);
        assert!(
            raw.into_inner() == bytes,
            "{}: re-encoding differs",
            path.display()
        );
    }
}

use proptest::prelude::*;
use raftdump::format::log::{DamageKind, LogError, RawEntry};
use raftdump::model::Command;

/// Splits a log into its good entries and its damage, checking that together they cover every
/// byte exactly once, in order (the reader neither skips nor double-counts anything).
fn read_all(bytes: &[u8]) -> (Vec<RawEntry<'_>>, Vec<LogError>) {
    let (mut good, mut bad, mut pos) = (Vec::new(), Vec::new(), 0u64);
    for r in LogReader::new(bytes) {
        match r {
            Ok(e) => {
                assert_eq!(e.offset, pos, "entry at unexpected offset");
                assert_eq!(e.ordinal, good.len() as u64);
                pos = e.end();
                good.push(e);
            }
            Err(e) => {
                assert_eq!(e.offset, pos, "damage at unexpected offset");
                assert_eq!(e.entry, good.len() as u64);
                assert!(e.len > 0);
                pos += e.len;
                bad.push(e);
            }
        }
    }
    assert_eq!(pos, bytes.len() as u64, "bytes left unaccounted");
    (good, bad)
}

#[test]
fn every_truncation_of_every_real_log_is_the_prefix_plus_one_torn_tail() {
    let mut cases = 0u64;
    for path in crate::real_logs() {
        let bytes = std::fs::read(&path).unwrap();
        let (full, _) = read_all(&bytes);
        let ends: Vec<u64> = full.iter().map(RawEntry::end).collect();
        for cut in 0..bytes.len() {
            let (good, bad) = read_all(&bytes[..cut]);
            let before = ends.iter().filter(|&&e| e <= cut as u64).count();
            assert_eq!(good.len(), before, "{} cut at {cut}", path.display());
            for (g, f) in good.iter().zip(&full) {
                assert_eq!((g.offset, g.body), (f.offset, f.body));
            }
            if before > 0 && ends[before - 1] == cut as u64 || cut == 0 {
                assert!(
                    bad.is_empty(),
                    "{} cut at frame boundary {cut}: {bad:?}",
                    path.display()
                );
            } else {
                assert_eq!(bad.len(), 1, "{} cut at {cut}: {bad:?}", path.display());
                assert!(
                    bad[0].kind.is_torn_tail(),
                    "{} cut at {cut}: {}",
                    path.display(),
                    bad[0]
                );
                let start = if before == 0 { 0 } else { ends[before - 1] };
                assert_eq!(bad[0].offset, start);
            }
            cases += 1;
        }
    }
    assert!(cases > 100_000, "{cases}");
}

/// The synthetic one-defect dirs, read by the format layer alone: (dir, good entries, damage).
#[test]
fn synthetic_defects_are_classified_with_their_offsets() {
    let base: Vec<u64> = crate::synthetic::base_frames()
        .iter()
        .map(|f| f.len() as u64)
        .collect();
    let at = |n: usize| base[..n].iter().sum::<u64>();
    type Damage = (u64, u64, &'static str);
    let expect: &[(&str, usize, &[Damage])] = &[
        ("clean", 9, &[]),
        ("torn-body", 8, &[(at(8), base[8] / 2, "torn-body")]),
        ("torn-header", 9, &[(at(9), 7, "torn-header")]),
        ("nul-hole", 9, &[(at(5), 50, "nul-run")]),
        ("garbage", 9, &[(at(6), 8, "garbage")]),
        ("missing-required-field", 8, &[(at(4), 13, "bad-entry")]),
        ("unknown-field", 9, &[]),
        ("unpadded-header", 9, &[]),
    ];
    for (name, n_good, damage) in expect {
        let bytes =
            std::fs::read(crate::fixtures().join("synthetic").join(name).join("log")).unwrap();
        let (good, bad) = read_all(&bytes);
        assert_eq!(good.len(), *n_good, "{name}");
        let got: Vec<_> = bad
            .iter()
            .map(|e| (e.offset, e.len, e.kind.code()))
            .collect();
        assert_eq!(&got, damage, "{name}");
        // Entries after the damage keep their indexes.
        assert_eq!(
            good.last().map(|e| e.index()),
            Some(if *name == "torn-body" { 8 } else { 9 }),
            "{name}"
        );
    }
    let bytes = std::fs::read(crate::fixtures().join("synthetic/unknown-field/log")).unwrap();
    let (good, _) = read_all(&bytes);
    assert!(!good[4].is_canonical() && good.iter().filter(|e| !e.is_canonical()).count() == 1);
    let bytes =
        std::fs::read(crate::fixtures().join("synthetic/missing-required-field/log")).unwrap();
    let (_, bad) = read_all(&bytes);
    assert!(
        matches!(&bad[0].kind, DamageKind::BadEntry { error, .. } if error.to_string().contains("CommandName"))
    );
}

fn arb_command() -> impl Strategy<Value = Command> {
    let s = || proptest::string::string_regex("(.|\u{2028}|<|&|\"|\\\\){0,12}").unwrap();
    prop_oneof![
        (s(), s()).prop_map(|(name, connection_string)| Command::Join {
            name,
            connection_string
        }),
        s().prop_map(|name| Command::Leave { name }),
        Just(Command::Nop),
        (s(), s()).prop_map(|(key, value)| Command::Write { key, value }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn write_then_read_round_trips(entries in proptest::collection::vec((any::<u64>(), any::<u64>(), arb_command()), 0..40)) {
        let mut w = LogWriter::new(Vec::new());
        for (i, t, c) in &entries {
            w.append(*i, *t, c).unwrap();
        }
        let bytes = w.into_inner();
        let (good, bad) = read_all(&bytes);
        prop_assert!(bad.is_empty());
        prop_assert_eq!(good.len(), entries.len());
        for (g, (i, t, c)) in good.iter().zip(&entries) {
            prop_assert_eq!((g.index(), g.term()), (*i, *t));
            prop_assert_eq!(&g.command(), c);
            prop_assert!(g.is_canonical());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_are_fully_accounted(bytes in proptest::collection::vec(
        prop_oneof![Just(b' '), Just(b'\n'), Just(0u8), Just(8u8), Just(b'1'), Just(b'e'), any::<u8>()], 0..300)) {
        // read_all checks each piece starts where the last ended; together they are the file.
        let (good, bad) = read_all(&bytes);
        let good_bytes: u64 = good.iter().map(|g| g.end() - g.offset).sum();
        let bad_bytes: u64 = bad.iter().map(|b| b.len).sum();
        prop_assert_eq!(good_bytes + bad_bytes, bytes.len() as u64);
        prop_assert!(bad.is_empty() || bad_bytes > 0);
        for g in good {
            // Every good entry's command decodes without a panic (an unknown one is data too).
            let _ = g.command();
        }
    }

    #[test]
    fn damage_spliced_into_a_real_log_is_found_where_it_is(at in 0usize..889, junk in proptest::collection::vec(any::<u8>(), 1..40)) {
        let clean = std::fs::read(crate::fixtures().join("goraft/single-node/node1/log")).unwrap();
        let mut bytes = clean[..at].to_vec();
        bytes.extend_from_slice(&junk);
        bytes.extend_from_slice(&clean[at..]);
        let (good, bad) = read_all(&bytes);
        // Entries wholly before the splice are intact; no damage is reported before it.
        let (clean_entries, _) = read_all(&clean);
        let intact = clean_entries.iter().filter(|e| e.end() <= at as u64).count();
        prop_assert!(good.len() >= intact);
        for (g, c) in good.iter().zip(&clean_entries).take(intact) {
            prop_assert_eq!(g.body, c.body);
        }
        if let Some(first) = bad.first() {
            let frame_start = clean_entries.iter().map(|e| e.offset).filter(|&o| o <= at as u64).max().unwrap_or(0);
            prop_assert!(first.offset >= frame_start, "{} < {}", first.offset, frame_start);
        }
    }
}
