//! `repair` on tempdir copies: what it cuts and salvages, its backups, its refusals (which change
//! nothing), the dry run (which changes nothing), and that a second `--apply` does nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use raftdump::check::Severity;
use raftdump::format::log::LogWriter;
use raftdump::model::Command;
use raftdump::repair::{self, RepairError, RepairOptions};

use crate::synthetic_verify::tree;

const NOW: u64 = 1_700_000_000;

/// Copies the tree `src` to `dst`.
pub(crate) fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), to).unwrap();
        }
    }
}

/// A tempdir holding a copy of `fixtures/<rel>` as `node`.
fn copy_of(rel: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("node");
    copy_dir(&crate::fixtures().join(rel), &d);
    (tmp, d)
}

fn opts(salvage: bool) -> RepairOptions {
    RepairOptions {
        salvage,
        ..RepairOptions::default()
    }
}

fn real_log() -> Vec<u8> {
    fs::read(crate::fixtures().join("goraft/single-node/node1/log")).unwrap()
}

/// Applies the repair of `d` and checks what every repair must guarantee; returns the new log.
fn apply_and_check(d: &Path, salvage: bool) -> Vec<u8> {
    let before = tree(d);
    let plan = repair::plan(d, opts(salvage)).unwrap();
    assert!(plan.blockers.is_empty(), "{:#?}", plan.blockers);
    assert!(!plan.is_empty());
    let applied = repair::apply(&plan, NOW).unwrap();
    // The result verifies without errors or warnings.
    let left: Vec<_> = applied
        .after
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .collect();
    assert!(left.is_empty(), "{left:#?}");
    // Every changed or removed file has a byte-identical backup next to it.
    assert!(!applied.backups.is_empty());
    for (orig, backup) in &applied.backups {
        assert_eq!(backup.parent(), orig.parent());
        assert!(backup
            .to_string_lossy()
            .ends_with(&format!(".raftdump-backup-{NOW}")));
        let rel = orig.strip_prefix(d).unwrap();
        assert_eq!(
            fs::read(backup).unwrap(),
            before[rel],
            "{}",
            backup.display()
        );
    }
    // Nothing else changed: every file is as before, except the log and the removed leftovers.
    let after = tree(d);
    for (rel, bytes) in &before {
        let removed = plan.remove.iter().any(|p| p.ends_with(rel));
        if rel == Path::new("log") {
            continue;
        }
        assert_eq!(
            after.get(rel),
            if removed { None } else { Some(bytes) },
            "{}",
            rel.display()
        );
    }
    // A second repair has nothing to do.
    let again = repair::plan(d, opts(salvage)).unwrap();
    assert!(again.is_empty() && again.blockers.is_empty(), "{again:#?}");
    after[Path::new("log")].clone()
}

#[test]
fn torn_tail_is_cut_at_its_frame() {
    let (_t, d) = copy_of("verify/log-torn-tail");
    assert_eq!(apply_and_check(&d, false), real_log()[..820]);
}

#[test]
fn trailing_padding_is_cut() {
    let (_t, d) = copy_of("goraft/single-node/node1");
    let mut log = real_log();
    log.extend_from_slice(b"    ");
    fs::write(d.join("log"), &log).unwrap();
    assert_eq!(apply_and_check(&d, false), real_log());
}

#[test]
fn nul_hole_is_cut_and_salvage_restores_the_original() {
    let (_t, d) = copy_of("verify/log-nul-hole");
    assert_eq!(apply_and_check(&d, false), real_log()[..568]);
    let (_t, d) = copy_of("verify/log-nul-hole");
    let plan = repair::plan(&d, opts(true)).unwrap();
    assert_eq!(
        (plan.salvage.len(), plan.salvageable, plan.dropped.frames),
        (5, 5, 0)
    );
    assert_eq!(apply_and_check(&d, true), real_log());
}

#[test]
fn garbage_and_bad_entries_are_cut_out_with_salvage() {
    for (fixture, junk) in [("verify/log-garbage", 8), ("verify/log-bad-entry", 9)] {
        let (_t, d) = copy_of(fixture);
        let log = fs::read(d.join("log")).unwrap();
        let mut expected = log[..207].to_vec();
        expected.extend_from_slice(&log[207 + junk..]);
        assert_eq!(apply_and_check(&d, true), expected, "{fixture}");
    }
}

#[test]
fn leftovers_are_backed_up_and_removed() {
    for (fixture, file) in [
        ("verify/leftover-conf-tmp", "conf.tmp"),
        ("verify/leftover-log-new", "log.new"),
    ] {
        let (_t, d) = copy_of(fixture);
        let log = fs::read(d.join("log")).unwrap();
        assert_eq!(apply_and_check(&d, false), log, "{fixture}");
        assert!(!d.join(file).exists());
        assert!(d.join(format!("{file}.raftdump-backup-{NOW}")).exists());
    }
}

#[test]
fn refusals_change_nothing() {
    for (fixture, code) in [
        ("verify/index-gap", "index-gap"),
        ("verify/index-duplicate", "index-duplicate"),
        ("verify/term-decrease", "term-decrease"),
        ("verify/log-first-index", "log-first-index"),
        ("verify/log-commit-index-prefix", "log-commit-index-prefix"),
        ("verify/snapshot-crc", "snapshot-crc"),
        ("verify/snapshot-invalid", "snapshot-invalid"),
        ("verify/snapshot-log-mismatch", "snapshot-log-mismatch"),
        ("verify/snapshot-goraft-choice", "snapshot-goraft-choice"),
        ("verify/conf-invalid", "conf-invalid"),
        ("verify/conf-commit-beyond-log", "conf-commit-beyond-log"),
        ("verify/file-unreadable", "file-unreadable"),
    ] {
        let (_t, d) = copy_of(fixture);
        let before = tree(&d);
        let plan = repair::plan(&d, opts(true)).unwrap();
        assert!(
            plan.blockers.iter().any(|f| f.code == code),
            "{fixture}: {:#?}",
            plan.blockers
        );
        assert!(
            matches!(repair::apply(&plan, NOW), Err(RepairError::Refused { .. })),
            "{fixture}"
        );
        assert_eq!(tree(&d), before, "{fixture}");
    }
}

fn write_log(d: &Path, entries: &[(u64, u64, Command)], hole_before: usize) {
    let mut log = Vec::new();
    for (n, (i, t, c)) in entries.iter().enumerate() {
        if n == hole_before {
            log.extend_from_slice(&[0; 23]);
        }
        let mut w = LogWriter::new(Vec::new());
        w.append(*i, *t, c).unwrap();
        log.extend_from_slice(&w.into_inner());
    }
    fs::write(d.join("log"), log).unwrap();
}

fn kv(i: u64, v: &str) -> Command {
    Command::Write {
        key: format!("k{i}"),
        value: v.into(),
    }
}

#[test]
fn a_conflicting_middle_section_is_refused() {
    // The compaction position bug (docs/format.md, 'Compaction'): the stale entries stay before the zeros,
    // the leader's new entry 3 (term 2) lands after them. Which one was committed is unknown.
    let (_t, d) = copy_of("verify/log-torn-tail");
    let join = Command::Join {
        name: "2c80db6".into(),
        connection_string: "http://127.0.0.1:24001".into(),
    };
    let entries = [
        (1, 0, join),
        (2, 1, Command::Nop),
        (3, 1, kv(3, "stale")),
        (4, 1, kv(4, "stale")),
        (3, 2, kv(3, "new")),
    ];
    write_log(&d, &entries, 4);
    let before = tree(&d);
    for salvage in [false, true] {
        let plan = repair::plan(&d, opts(salvage)).unwrap();
        assert_eq!(plan.blockers.len(), 1, "{:#?}", plan.blockers);
        assert!(
            plan.blockers[0]
                .message
                .starts_with("conflicting middle section"),
            "{}",
            plan.blockers[0].message
        );
        assert!(repair::apply(&plan, NOW).is_err());
    }
    assert_eq!(tree(&d), before);
}

#[test]
fn exact_copies_after_a_hole_are_dropped_and_the_rest_salvaged() {
    let (_t, d) = copy_of("verify/log-torn-tail");
    let join = Command::Join {
        name: "2c80db6".into(),
        connection_string: "http://127.0.0.1:24001".into(),
    };
    let entries = [
        (1, 0, join),
        (2, 0, Command::Nop),
        (3, 0, kv(3, "a")),
        (2, 0, Command::Nop),
        (3, 0, kv(3, "a")),
        (4, 1, kv(4, "b")),
    ];
    write_log(&d, &entries, 3);
    let plan = repair::plan(&d, opts(true)).unwrap();
    assert_eq!(
        (plan.duplicates, plan.salvage.len(), plan.keep.frames),
        (2, 1, 3)
    );
    let log = apply_and_check(&d, true);
    let mut expected = LogWriter::new(Vec::new());
    for (i, t, c) in [
        entries[0].clone(),
        entries[1].clone(),
        entries[2].clone(),
        entries[5].clone(),
    ] {
        expected.append(i, t, &c).unwrap();
    }
    assert_eq!(log, expected.into_inner());
}

#[test]
fn committed_entries_are_never_cut_away() {
    // conf says index 15 was committed; only --salvage keeps the log up to it.
    let (_t, d) = copy_of("verify/log-nul-hole");
    fs::write(d.join("conf"), b"{\"commitIndex\":15,\"peers\":[]}").unwrap();
    let plan = repair::plan(&d, opts(false)).unwrap();
    assert_eq!(plan.blockers.len(), 1);
    assert!(
        plan.blockers[0]
            .message
            .ends_with("(--salvage would keep them)"),
        "{}",
        plan.blockers[0].message
    );
    assert_eq!(apply_and_check(&d, true), real_log());
}

#[test]
fn an_existing_backup_is_never_overwritten() {
    let (_t, d) = copy_of("verify/log-torn-tail");
    let taken = [
        d.join(format!("log.raftdump-backup-{NOW}")),
        d.join(format!("log.raftdump-backup-{NOW}-1")),
    ];
    for p in &taken {
        fs::write(p, b"older backup").unwrap();
    }
    let original = fs::read(d.join("log")).unwrap();
    let plan = repair::plan(&d, opts(false)).unwrap();
    let applied = repair::apply(&plan, NOW).unwrap();
    let made = d.join(format!("log.raftdump-backup-{NOW}-2"));
    assert_eq!(applied.backups, vec![(d.join("log"), made.clone())]);
    assert_eq!(fs::read(&made).unwrap(), original);
    for p in &taken {
        assert_eq!(fs::read(p).unwrap(), b"older backup");
    }
}

#[test]
fn a_log_changed_after_planning_is_left_alone() {
    let (_t, d) = copy_of("verify/log-torn-tail");
    let plan = repair::plan(&d, opts(false)).unwrap();
    let mut log = fs::read(d.join("log")).unwrap();
    log.push(b' ');
    fs::write(d.join("log"), &log).unwrap();
    let before = tree(&d);
    assert!(matches!(
        repair::apply(&plan, NOW),
        Err(RepairError::Changed(_))
    ));
    // Only the lock file (taken before the log is read again) is new.
    let mut after = tree(&d);
    assert!(after.remove(Path::new("raftdump.lock")).is_some());
    assert_eq!(after, before);
}

#[test]
fn a_cut_at_every_byte_repairs_to_the_frames_before_it() {
    let log = real_log();
    let mut starts: Vec<usize> = raftdump::format::log::LogReader::new(&log)
        .map(|r| r.unwrap().offset as usize)
        .collect();
    starts.push(log.len());
    let tmp = tempfile::tempdir().unwrap();
    for n in 0..=log.len() {
        let d = tmp.path().join(format!("cut-{n}"));
        copy_dir(&crate::fixtures().join("goraft/single-node/node1"), &d);
        fs::write(d.join("log"), &log[..n]).unwrap();
        let frame = starts.iter().rev().copied().find(|&s| s <= n).unwrap_or(0);
        let plan = repair::plan(&d, opts(false)).unwrap();
        if n < starts[1] {
            // The join at index 1 is committed (conf commitIndex 1): never cut it away.
            assert!(
                plan.blockers
                    .iter()
                    .any(|f| f.code == "conf-commit-beyond-log"),
                "cut at {n}: {plan:#?}"
            );
            continue;
        }
        if frame == n {
            assert!(plan.is_empty() && plan.blockers.is_empty(), "cut at {n}");
            continue;
        }
        assert_eq!(
            plan.cut.as_ref().map(|c| c.offset),
            Some(frame as u64),
            "cut at {n}"
        );
        // Apply (with its fsyncs) for a sample of the offsets; the plan is checked for all.
        if n % 7 == 0 {
            assert_eq!(apply_and_check(&d, false), log[..frame], "cut at {n}");
        }
    }
}

fn raftdump(args: &[&str]) -> (i32, String, String) {
    let out = Process::new(env!("CARGO_BIN_EXE_raftdump"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("RAFTDUMP_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_cli_dry_run_changes_nothing_and_apply_twice_repairs_once() {
    let (_t, d) = copy_of("verify/log-nul-hole");
    let path = d.to_str().unwrap();
    let before = tree(&d);
    let (code, out, err) = raftdump(&["repair", "--salvage", path]);
    assert_eq!((code, err.as_str()), (1, ""));
    assert!(
        out.ends_with("dry run: nothing was changed; run again with --apply to do it\n"),
        "{out}"
    );
    assert_eq!(tree(&d), before);

    let (code, out, err) = raftdump(&["repair", "--salvage", "--apply", path]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(out.contains("re-appended 5 frames (321 bytes)"), "{out}");
    assert!(
        out.ends_with("verify after repair: 0 errors, 0 warnings, 0 infos\n"),
        "{out}"
    );
    assert_eq!(fs::read(d.join("log")).unwrap(), real_log());
    let repaired = tree(&d);
    // The backup and the lock file (left in place: see datadir::lock).
    assert_eq!(repaired.len(), before.len() + 2);
    assert!(repaired.contains_key(Path::new("raftdump.lock")));

    let (code, out, _) = raftdump(&["repair", "--salvage", "--apply", path]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("nothing to repair in {path} (2c80db6)\n"));
    assert_eq!(tree(&d), repaired);
    let (code, _, _) = raftdump(&["verify", path]);
    assert_eq!(code, 0);
}

#[test]
fn the_cli_refusal_exits_2_and_changes_nothing() {
    let (_t, d) = copy_of("verify/index-gap");
    let before = tree(&d);
    let (code, out, err) = raftdump(&["repair", "--apply", d.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(
        err.starts_with("raftdump: error: refusing to repair "),
        "{err}"
    );
    assert!(err.contains("index-gap at "), "{err}");
    assert_eq!(tree(&d), before);
}
