//! Exhaustive damage sweeps over real fixture logs, in-process: each 512-byte block zeroed and
//! every bit of the first 4 KiB flipped (the cut at every offset is in `format.rs`). For every
//! case: no panic, every byte accounted for, every entry before the damaged frame intact, and the
//! first problem reported at the damaged frame or after it, never before.

use raftdump::format::log::{DamageKind, LogReader};

const LOGS: &[&str] = &[
    "goraft/single-node/node1/log",
    "goraft/three-node-leader-kill/node1/log",
    "goraft/odd-values-follower-kill/node1/log",
    "goraft/snapshot/node1/log",
];

struct Outcome {
    entries: Vec<(u64, Vec<u8>)>,
    first_damage: Option<(u64, DamageKind)>,
    non_canonical_headers: usize,
}

fn read(bytes: &[u8]) -> Outcome {
    let mut entries = Vec::new();
    let mut first_damage = None;
    let mut non_canonical_headers = 0;
    let mut pos = 0;
    for r in LogReader::new(bytes) {
        match r {
            Ok(e) => {
                assert_eq!(e.offset, pos);
                pos = e.end();
                entries.push((e.offset, e.body.to_vec()));
                non_canonical_headers += usize::from(!e.header.quirks.is_canonical());
                let _ = e.command();
            }
            Err(e) => {
                assert_eq!(e.offset, pos);
                pos += e.len;
                first_damage.get_or_insert((e.offset, e.kind));
            }
        }
    }
    assert_eq!(pos, bytes.len() as u64);
    Outcome {
        entries,
        first_damage,
        non_canonical_headers,
    }
}

/// Checks one damaged copy against the clean original; `changed` is the first byte that differs.
/// Returns whether the change is visible: reported as damage or as a non-canonical header.
fn check_case(clean: &Outcome, damaged: &[u8], changed: usize, what: &str) -> bool {
    let got = read(damaged);
    let visible = got.first_damage.is_some() || got.non_canonical_headers > 0;
    let frame = clean
        .entries
        .iter()
        .map(|(o, _)| *o)
        .filter(|&o| o <= changed as u64)
        .max()
        .unwrap_or(0);
    let intact = clean.entries.iter().take_while(|(o, _)| *o < frame).count();
    assert!(got.entries.len() >= intact.min(got.entries.len()), "{what}");
    assert_eq!(
        &got.entries[..intact.min(got.entries.len())],
        &clean.entries[..intact.min(got.entries.len())],
        "{what}: entries before the damaged frame changed"
    );
    match &got.first_damage {
        None => {
            // Still a valid log: the change landed inside a payload or kept the frame decodable.
            assert!(got.entries.len() >= intact, "{what}");
        }
        Some((offset, kind)) => {
            assert!(
                *offset >= frame,
                "{what}: problem at {offset} before the damaged frame at {frame}"
            );
            if matches!(kind, DamageKind::NulRun) {
                assert_eq!(damaged[*offset as usize], 0, "{what}");
            }
        }
    }
    visible
}

#[test]
fn zeroed_blocks_and_flipped_bits_are_found_at_or_after_the_damaged_frame() {
    // One log a thread: the cases are independent, and a debug build is slow at 100,000 reads.
    let counts: Vec<(u64, u64)> = std::thread::scope(|s| {
        let sweeps: Vec<_> = LOGS.iter().map(|rel| s.spawn(|| sweep(rel))).collect();
        sweeps.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let cases: u64 = counts.iter().map(|c| c.0).sum();
    let detected: u64 = counts.iter().map(|c| c.1).sum();
    eprintln!("{cases} damage cases, {detected} visible, the rest still decode (payload bytes)");
    assert!(cases > 100_000, "{cases}");
}

/// Every zeroed block and every flipped bit of the first 4 KiB of one log: (cases, visible).
fn sweep(rel: &str) -> (u64, u64) {
    let (mut cases, mut detected) = (0u64, 0u64);
    {
        let bytes = std::fs::read(crate::fixtures().join(rel)).unwrap();
        let clean = read(&bytes);
        assert!(clean.first_damage.is_none());
        for start in (0..bytes.len()).step_by(512) {
            let end = (start + 512).min(bytes.len());
            let Some(changed) = (start..end).find(|&i| bytes[i] != 0) else {
                continue;
            };
            let mut d = bytes.clone();
            d[start..end].fill(0);
            detected += u64::from(check_case(
                &clean,
                &d,
                changed,
                &format!("{rel}: block {start} zeroed"),
            ));
            cases += 1;
        }
        let headers: Vec<u64> = clean.entries.iter().map(|(o, _)| *o).collect();
        for bit in 0..bytes.len().min(4096) * 8 {
            let mut d = bytes.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            let visible = check_case(&clean, &d, bit / 8, &format!("{rel}: bit {bit} flipped"));
            // goraft has no checksum, so a flip inside a payload can stay invisible; a flip in a
            // length header never may: it is damage or at least a non-canonical header.
            let in_header = headers
                .iter()
                .any(|&h| (h..h + 9).contains(&(bit as u64 / 8)));
            assert!(
                !in_header || visible,
                "{rel}: header bit {bit} flipped silently"
            );
            detected += u64::from(visible);
            cases += 1;
        }
    }
    (cases, detected)
}
