//! In-process crash simulation of [`FileStore`]: random appends, truncations, writes out (no
//! fsync, as the runtime does before its fsync thread runs), syncs and term/vote saves, then a crash at a random point that keeps only what was fsynced (the log
//! as of the last `sync`, plus nothing, a torn prefix of the unsynced bytes, or that prefix
//! followed by a run of NULs, as a file system may leave it). Each crash image must load,
//! keep every acknowledged (synced) entry and the last saved term and vote, and `verify`'s
//! node checks must find nothing worse than the torn tail the loader then repairs.
//!
//! `RAFTDUMP_CRASH_POINTS=N` (default 200) crash points; `RAFTDUMP_CRASH_SEED=N` another seed.

use std::fs;
use std::path::Path;

use raftdump::check::Severity;
use raftdump::format::command;
use raftdump::model::{Conf, Entry};
use raftdump::node::core::{EntryBatch, HardState, XorShift};
use raftdump::node::storage::{ensure_name, FileStore, Storage, STATE_FILE};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |s| {
        s.parse().unwrap_or_else(|_| panic!("{name}: {s:?}"))
    })
}

/// Findings of severity error from `verify`'s node checks, except `allowed` codes.
fn errors(dir: &Path, allowed: &[&str]) -> Vec<String> {
    let d = raftdump::datadir::open(dir).expect("the crash image opens");
    raftdump::check::node::check(&d)
        .findings
        .into_iter()
        .filter(|f| f.severity == Severity::Error && !allowed.contains(&f.code))
        .map(|f| format!("{}: {}", f.code, f.message))
        .collect()
}

fn all_entries(store: &mut FileStore) -> Vec<Entry> {
    let last = store.terms().last_index();
    if last == 0 {
        Vec::new()
    } else {
        store.entries(1, last).expect("entries of a loaded log")
    }
}

#[test]
fn file_store_survives_crashes_at_random_points() {
    let points = env("RAFTDUMP_CRASH_POINTS", 200);
    let seed = env("RAFTDUMP_CRASH_SEED", 1);
    let mut rng = XorShift::new(seed);
    let base = tempfile::tempdir().unwrap();
    let mut dir = base.path().join("n0");
    fs::create_dir(&dir).unwrap();
    ensure_name(&dir, seed).unwrap();
    let (mut store, _) = FileStore::open(&dir).unwrap();
    store
        .write_conf(&Conf {
            commit_index: 0,
            peers: Vec::new(),
        })
        .unwrap();
    let mut model: Vec<Entry> = Vec::new(); // the log as the store holds it now
    let mut acked: Vec<Entry> = Vec::new(); // the log as of the last sync
    let mut hs = HardState::default();
    let mut synced = fs::read(dir.join("log")).unwrap();
    let mut term = 1;
    let (mut acked_checked, mut torn, mut unsynced_kept) = (0u64, 0u64, 0u64);
    for point in 1..=points {
        for _ in 0..rng.range(1, 25) {
            match rng.range(0, 12) {
                0..=5 => {
                    let es: Vec<Entry> = (0..rng.range(1, 6))
                        .map(|k| {
                            let index = model.len() as u64 + 1 + k;
                            let value = "v".repeat(rng.range(0, 3000) as usize);
                            Entry {
                                index,
                                term,
                                name: "write".into(),
                                payload: Some(command::encode_write(
                                    format!("k{index}").as_bytes(),
                                    value.as_bytes(),
                                )),
                            }
                        })
                        .collect();
                    store.append(&EntryBatch::from_entries(&es)).unwrap();
                    model.extend(es);
                }
                6 if !model.is_empty() => {
                    // A follower drops a conflicting tail; the next leader's entries come in a
                    // later term.
                    let keep = rng.range(0, model.len() as u64 + 1);
                    store.truncate_after(keep).unwrap();
                    model.truncate(keep as usize);
                    term += 1;
                }
                7 | 8 => {
                    assert_eq!(store.sync().unwrap(), model.len() as u64);
                    acked.clone_from(&model);
                    synced = fs::read(dir.join("log")).unwrap();
                }
                9 | 10 => {
                    // The runtime writes a batch out, then fsyncs it on another thread.
                    store.write_out().unwrap();
                }
                _ => {
                    hs = HardState {
                        term: term + rng.range(0, 2),
                        voted_for: Some(format!("n{}", rng.range(0, 3))),
                    };
                    store.save_hard_state(&hs).unwrap();
                }
            }
        }
        // The crash: the log as of the last sync, and maybe part of what followed.
        let current = fs::read(dir.join("log")).unwrap();
        let mut image = synced.clone();
        let mut torn_kept = false;
        let mut zeroed = false;
        if current.starts_with(&synced) && current.len() > synced.len() {
            let extra = &current[synced.len()..];
            match rng.range(0, 3) {
                0 => {}
                1 => {
                    image
                        .extend_from_slice(&extra[..rng.range(0, extra.len() as u64 + 1) as usize]);
                    torn_kept = true;
                }
                _ => {
                    image
                        .extend_from_slice(&extra[..rng.range(0, extra.len() as u64 + 1) as usize]);
                    image.resize(image.len() + rng.range(1, 4097) as usize, 0);
                    torn_kept = true;
                    zeroed = true;
                }
            }
        }
        std::mem::forget(store); // a crash: no clean-stop flush into the old dir
        let next = base.path().join(format!("n{point}"));
        fs::create_dir(&next).unwrap();
        for f in ["name", "conf", STATE_FILE] {
            if dir.join(f).exists() {
                fs::copy(dir.join(f), next.join(f)).unwrap();
            }
        }
        fs::write(next.join("log"), &image).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        dir = next;

        // A zero-filled tail may cover the end of the last frame: verify then reports its
        // payload as invalid and the NULs after it; the loader drops both.
        let tail = ["log-torn-tail", "log-nul-hole", "command-invalid"];
        let bad = errors(&dir, if zeroed { &tail[..] } else { &tail[..1] });
        assert!(bad.is_empty(), "seed {seed}, crash point {point}: {bad:?}");
        let (mut reopened, report) = FileStore::open(&dir)
            .unwrap_or_else(|e| panic!("seed {seed}, crash point {point}: does not load: {e}"));
        torn += u64::from(report.truncated_tail.is_some());
        let loaded = all_entries(&mut reopened);
        assert!(
            loaded.len() >= acked.len() && loaded[..acked.len()] == acked[..],
            "seed {seed}, crash point {point}: {} acknowledged entries, {} loaded; \
             acknowledged entries lost or changed",
            acked.len(),
            loaded.len()
        );
        // Beyond the synced entries only a prefix of what followed them may survive (an
        // unsynced truncation is undone by the crash: the synced entries come back).
        if torn_kept {
            assert!(
                loaded.len() <= model.len() && loaded[..] == model[..loaded.len()],
                "seed {seed}, crash point {point}: the survivors are not a prefix of the log"
            );
        } else {
            assert_eq!(
                loaded.len(),
                acked.len(),
                "seed {seed}, crash point {point}"
            );
        }
        assert_eq!(
            reopened.hard_state(),
            hs,
            "seed {seed}, crash point {point}"
        );
        acked_checked += acked.len() as u64;
        unsynced_kept += (loaded.len() - acked.len()) as u64;
        // Repaired: nothing left for verify to flag.
        let bad = errors(&dir, &[]);
        assert!(
            bad.is_empty(),
            "seed {seed}, after reopening at {point}: {bad:?}"
        );
        model = loaded;
        acked.clone_from(&model);
        synced = fs::read(dir.join("log")).unwrap();
        store = reopened;
    }
    eprintln!(
        "store_crash: {points} crash points, {acked_checked} acknowledged entries checked, \
         {torn} torn tails repaired, {unsynced_kept} unsynced entries that survived"
    );
    assert!(torn > 0 && acked_checked > 0);
}
