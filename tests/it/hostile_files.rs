//! Files that are not what they should be, on real files and the real binary: a FIFO where
//! `log`, `conf`, `name` or a snapshot belongs is an error naming it for every command (never a
//! hang); a huge sparse snapshot or `name` file costs no memory, nor does repairing a large
//! log; an OS error is printed once; a
//! `log` symlink loop is named as one; two repairs in a row never collide on a backup name.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::dir_lock::run_bounded;
use crate::repair::copy_dir;

const BIN: &str = env!("CARGO_BIN_EXE_raftdump");

/// A copy of a real node (log, conf, name, a snapshot dir) at `root/name`.
fn node(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    copy_dir(&crate::fixtures().join("goraft/snapshot/node1"), &d);
    assert!(d.join("conf").is_file() && d.join("name").is_file());
    d
}

fn mkfifo(p: &Path) {
    let _ = fs::remove_file(p);
    let made = Command::new("mkfifo").arg(p).status().expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", p.display());
}

fn raftdump(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg(dir)
        .env("NO_COLOR", "1")
        .env("RAFTDUMP_LOG", "off")
        .env("COLUMNS", "120");
    cmd
}

/// Every command, with the arguments that come before the data dir.
const COMMANDS: &[&[&str]] = &[
    &["inspect"],
    &["inspect", "--summary"],
    &["verify"],
    &["replay"],
    &["repair"],
    &["repair", "--apply"],
    &["serve", "-p", "0"],
    &["serve", "-p", "0", "--read-only"],
];

#[test]
fn a_fifo_in_a_data_dir_is_an_error_naming_it_for_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = node(tmp.path(), "clean");
    let snapshot = fs::read_dir(clean.join("snapshot"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .max()
        .expect("the fixture has a snapshot");
    for file in ["log", "conf", "name", &format!("snapshot/{snapshot}")] {
        let dir = node(tmp.path(), "n");
        mkfifo(&dir.join(file));
        let mut runs: Vec<Command> = COMMANDS.iter().map(|a| raftdump(a, &dir)).collect();
        let mut diff = raftdump(&["diff"], &dir);
        diff.arg(&clean);
        runs.push(diff);
        for mut cmd in runs {
            let (code, out, err) = run_bounded(&mut cmd, 60);
            let said = format!("{out}{err}");
            // inspect shows the file among the dir's unreadable ones and goes on; every other
            // command fails (verify with a finding, the rest with exit 2).
            let shows_only = cmd.get_args().next().is_some_and(|a| a == "inspect") && file != "log";
            assert!(
                shows_only || code.is_some_and(|c| c != 0),
                "{cmd:?} with a FIFO as {file}: exit {code:?}\n{said}"
            );
            let leaf = Path::new(file).file_name().unwrap().to_str().unwrap();
            assert!(
                said.contains(leaf)
                    && said.contains("is a FIFO (named pipe), expected a regular file"),
                "{cmd:?} with a FIFO as {file} does not name it:\n{said}"
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// Runs `cmd` to its end (300 s at most: it may read gigabytes on a busy machine) under GNU time and returns its exit code and peak
/// resident set in bytes. Measured by a small parent: a child's `ru_maxrss` starts from what its
/// parent held when it forked, and this test process holds far more than the bound.
fn peak_rss(cmd: &Command) -> (Option<i32>, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("rss");
    // GNU time from PATH (`time` is a shell keyword only inside a shell).
    let mut timed = Command::new("time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(&report)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            timed.env(k, v);
        }
    }
    assert!(
        Command::new("time")
            .args(["-f", "%M", "true"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "GNU time is needed to measure peak memory (apt-get install time; .ci/run installs it)"
    );
    let (code, _, _) = run_bounded(&mut timed, 300);
    let text = fs::read_to_string(&report).unwrap();
    // GNU time adds "Command exited with non-zero status N" before the figure.
    let kb: u64 = text.lines().last().unwrap().trim().parse().unwrap();
    (code, kb * 1024)
}

const RSS_BOUND: u64 = 200 << 20;

#[test]
fn a_huge_sparse_snapshot_or_name_file_costs_no_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = node(tmp.path(), "n");
    let other = node(tmp.path(), "other");
    // A valid header and the start of a snapshot, then 3 GB of holes: the JSON string never
    // ends, and every byte is still read for the CRC.
    let ss = dir.join("snapshot/9_999.ss");
    fs::write(
        &ss,
        b"00000000\n{\"lastIndex\":999,\"lastTerm\":9,\"peers\":[],\"state\":\"",
    )
    .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&ss)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    for args in [&["inspect", "--summary"][..], &["verify"]] {
        let (code, rss) = peak_rss(&raftdump(args, &dir));
        assert!(code.is_some(), "{args:?} did not exit");
        assert!(
            rss < RSS_BOUND,
            "{args:?} with a 3 GB snapshot: peak RSS {rss} bytes"
        );
    }
    let (code, rss) = peak_rss(raftdump(&["inspect", "--snapshot"], &ss).arg("--json"));
    assert_eq!(code, Some(1), "a damaged snapshot is a negative answer");
    assert!(
        rss < RSS_BOUND,
        "inspect --snapshot of 3 GB: peak RSS {rss} bytes"
    );
    fs::remove_file(&ss).unwrap();

    fs::write(dir.join("name"), vec![b'a'; 100 << 20]).unwrap();
    let (code, rss) = peak_rss(raftdump(&["diff"], &dir).arg(&other));
    assert!(code.is_some());
    assert!(
        rss < RSS_BOUND,
        "diff with a 100 MB name file: peak RSS {rss} bytes"
    );
    let (code, out, _) = run_bounded(&mut raftdump(&["verify"], &dir), 60);
    assert_eq!(code, Some(1));
    assert!(
        out.contains(&format!(
            "error[file-unreadable]: {}\n  cannot read it: is 104857600 bytes, more than the 4096 \
             bytes a `name` file may hold",
            dir.join("name").display()
        )),
        "{out}"
    );
}

/// Whether this process runs as root (who ignores permission bits): `/proc/self` belongs to
/// the process's effective user.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").unwrap().uid() == 0
}

#[test]
fn an_unreadable_log_is_reported_once_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let dir = node(tmp.path(), "n");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(dir.join("log"), fs::Permissions::from_mode(0o000)).unwrap();
    let as_other = |cmd: &mut Command| {
        // Root reads anything: run the binary as `nobody`, to whom the bits apply.
        if is_root() {
            cmd.uid(65534).gid(65534);
        }
    };
    let d = dir.display();
    let mut verify = raftdump(&["verify"], &dir);
    as_other(&mut verify);
    let (code, out, err) = run_bounded(&mut verify, 60);
    assert_eq!((code, out.as_str()), (Some(2), ""));
    assert_eq!(
        err,
        format!("raftdump: error: cannot verify {d}: {d}/log: Permission denied (os error 13)\n")
    );
    let mut inspect = raftdump(&["inspect"], &dir);
    as_other(&mut inspect);
    let (code, _, err) = run_bounded(&mut inspect, 60);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        format!("raftdump: error: {d}/log: Permission denied (os error 13)\n")
    );
}

#[test]
fn a_log_symlink_loop_is_named_as_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = node(tmp.path(), "n");
    fs::remove_file(dir.join("log")).unwrap();
    std::os::unix::fs::symlink("log", dir.join("log")).unwrap();
    let d = dir.display();
    let (code, _, err) = run_bounded(&mut raftdump(&["verify"], &dir), 60);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        format!(
            "raftdump: error: cannot verify {d}: {d}/log: Too many levels of symbolic links \
             (os error 40)\n"
        )
    );
}

#[test]
fn two_repairs_in_a_row_both_back_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    copy_dir(&crate::fixtures().join("verify/log-torn-tail"), &dir);
    let torn = fs::read(dir.join("log")).unwrap();
    let (code, _, err) = run_bounded(&mut raftdump(&["repair", "--apply"], &dir), 60);
    assert_eq!(code, Some(0), "{err}");
    // The same damage again at once: the second backup must not take the first one's name.
    fs::write(dir.join("log"), &torn).unwrap();
    let (code, _, err) = run_bounded(&mut raftdump(&["repair", "--apply"], &dir), 60);
    assert_eq!(code, Some(0), "{err}");
    let backups: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("log.raftdump-backup-")
        })
        .map(|e| fs::read(e.path()).unwrap())
        .collect();
    assert_eq!(backups, vec![torn.clone(), torn]);
}

#[test]
fn repair_apply_backs_up_a_large_log_in_bounded_memory() {
    // Six 50 MB entries of a command raftdump passes through, then a torn frame: the backup of
    // the 300 MB log is copied a chunk at a time, not read whole.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    fs::create_dir_all(&dir).unwrap();
    let payload = vec![b'a'; 50 << 20];
    let mut log = Vec::with_capacity(310 << 20);
    for i in 1..=6 {
        raftdump::format::log::encode_frame(i, 1, b"blob:put", Some(&payload), &mut log);
    }
    let whole = log.len();
    log.extend_from_slice(b"0000ffff\n\x08\x07");
    fs::write(dir.join("log"), &log).unwrap();
    fs::write(dir.join("name"), "n").unwrap();
    let (code, rss) = peak_rss(&raftdump(&["repair", "--apply"], &dir));
    assert_eq!(code, Some(0));
    assert!(
        rss < RSS_BOUND,
        "repair --apply of a {} MB log: peak RSS {rss} bytes",
        log.len() >> 20
    );
    assert_eq!(fs::metadata(dir.join("log")).unwrap().len(), whole as u64);
    let backup = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("log.raftdump-backup-")
        })
        .expect("a backup");
    assert_eq!(fs::read(backup.path()).unwrap(), log);
}
