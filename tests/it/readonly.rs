//! raftdump never changes what it reads, and works on data it may not write:
//! verify, diff, replay and inspect on a copy of real fixtures whose files and directories have
//! no write permission give exactly the output they give on a writable copy, and every file's
//! bytes and mtime stay the same; `repair --apply` refuses with exit 2, names the path and
//! changes nothing.
//!
//! Root ignores permission bits, so where they are ignored the commands run inside a new mount namespace (a
//! user namespace first, then plain `unshare -m`) where the copy is bind-mounted read-only; when
//! neither is allowed the test fails and says why. Other users get the permission bits alone.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

const BIN: &str = env!("CARGO_BIN_EXE_raftdump");

/// What a run printed and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// How the read-only copy is made read-only for the commands.
#[derive(Debug, Clone, Copy)]
enum Guard {
    /// Not root: the permission bits suffice.
    Bits,
    /// Root: `unshare` with these flags, and a read-only bind mount of the copy inside.
    Mount(&'static [&'static str]),
}

/// Mounts `$1` read-only over itself, enters it and runs the rest (inside `unshare`). The
/// probe file must not be creatable, or it exits 97.
const MOUNT_RO: &str = r#"d=$1; shift
mount --bind "$d" "$d" && mount -o remount,ro,bind "$d" || exit 96
cd "$d" || exit 96
if (: >"$d/.raftdump-probe") 2>/dev/null; then exit 97; fi
exec "$@""#;

/// Whether this process writes where permission bits forbid it (root, or CAP_DAC_OVERRIDE):
/// tried on a 0555 directory.
fn bits_ignored(scratch: &Path) -> bool {
    let d = scratch.join("bits-probe");
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o555)).unwrap();
    let ignored = fs::write(d.join("x"), b"").is_ok();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    ignored
}

/// The guard to use, or why none is possible.
fn guard(scratch: &Path, probe_dir: &Path) -> Result<Guard, String> {
    if !bits_ignored(scratch) {
        return Ok(Guard::Bits);
    }
    let mut why = Vec::new();
    for flags in [&["-r", "-m"][..], &["-m"][..]] {
        let out = Command::new("unshare")
            .args(flags)
            .args(["sh", "-c", MOUNT_RO, "sh"])
            .arg(probe_dir)
            .arg("true")
            .output();
        match out {
            Ok(o) if o.status.success() => {
                return Ok(Guard::Mount(if flags.len() == 2 {
                    &["-r", "-m"]
                } else {
                    &["-m"]
                }))
            }
            Ok(o) => why.push(format!(
                "unshare {} -> {:?}: {}",
                flags.join(" "),
                o.status.code(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => why.push(format!("unshare {}: {e}", flags.join(" "))),
        }
    }
    Err(why.join("; "))
}

fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Directories 0555, files 0444 (children before their directory).
fn make_read_only(dir: &Path) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            make_read_only(&e.path());
        } else {
            fs::set_permissions(e.path(), fs::Permissions::from_mode(0o444)).unwrap();
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
}

/// Gives write permission back so the tempdir can be removed.
fn make_writable(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    for e in fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            make_writable(&e.path());
        } else {
            fs::set_permissions(e.path(), fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// Every entry under `dir` (directories too): bytes (files), mtime and mode.
type Tree = BTreeMap<PathBuf, (Option<Vec<u8>>, SystemTime, u32)>;

fn tree(dir: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = fs::metadata(&d).unwrap();
        out.insert(
            d.strip_prefix(dir).unwrap().to_path_buf(),
            (None, m.modified().unwrap(), m.permissions().mode()),
        );
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let m = fs::metadata(&p).unwrap();
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    (
                        Some(fs::read(&p).unwrap()),
                        m.modified().unwrap(),
                        m.permissions().mode(),
                    ),
                );
            }
        }
    }
    out
}

fn raftdump(cwd: &Path, guard: Option<Guard>, args: &[&str]) -> Run {
    let mut cmd = match guard {
        None | Some(Guard::Bits) => Command::new(BIN),
        Some(Guard::Mount(flags)) => {
            let mut c = Command::new("unshare");
            c.args(flags)
                .args(["sh", "-c", MOUNT_RO, "sh"])
                .arg(cwd)
                .arg(BIN);
            c
        }
    };
    cmd.args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .env("RAFTDUMP_LOG", "off")
        .output()
        .unwrap()
        .into()
}

/// The commands that only read, with the exit code each must give on these fixtures.
const READS: &[(&[&str], i32)] = &[
    (&["verify", "three-node-leader-kill/node1"], 0),
    (&["verify", "--json", "snapshot/node1"], 0),
    (&["verify", "log-torn-tail"], 1),
    (&["inspect", "three-node-leader-kill/node1"], 0),
    (&["inspect", "--summary", "--json", "snapshot/node1"], 0),
    (
        &[
            "inspect",
            "--snapshot",
            "snapshot-small/node1/snapshot/1_16.ss",
        ],
        0,
    ),
    (
        &[
            "diff",
            "three-node-leader-kill/node1",
            "three-node-leader-kill/node2",
            "three-node-leader-kill/node3",
        ],
        0,
    ),
    (
        &[
            "diff",
            "three-node-leader-kill/node1-copy-right-after-kill9",
            "three-node-leader-kill/node2",
        ],
        1,
    ),
    (&["replay", "three-node-leader-kill/node1"], 0),
    (&["replay", "--json", "snapshot/node1"], 0),
    (&["repair", "log-torn-tail"], 1),
    (&["repair", "three-node-leader-kill/node1"], 0),
];

#[test]
fn reading_commands_work_on_read_only_data_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (rw, ro) = (tmp.path().join("rw"), tmp.path().join("ro"));
    for root in [&rw, &ro] {
        for name in ["three-node-leader-kill", "snapshot", "snapshot-small"] {
            copy_tree(
                &crate::fixtures().join("goraft").join(name),
                &root.join(name),
            );
        }
        copy_tree(
            &crate::fixtures().join("verify/log-torn-tail"),
            &root.join("log-torn-tail"),
        );
    }
    let guard = match guard(tmp.path(), &ro) {
        Ok(g) => g,
        Err(why) => panic!(
            "running as root, which ignores permission bits, and no read-only bind mount is \
             possible here ({why}): run it as another user, or as root where mount works"
        ),
    };
    eprintln!("read-only by {guard:?}");
    make_read_only(&ro);
    let before = tree(&ro);
    for (args, code) in READS {
        let want = raftdump(&rw, None, args);
        assert_eq!(
            want.code,
            Some(*code),
            "{args:?} on the writable copy: {want:?}"
        );
        assert!(!want.stdout.is_empty(), "{args:?} printed nothing");
        let got = raftdump(&ro, Some(guard), args);
        assert_eq!(got, want, "{args:?} on the read-only copy");
    }
    // repair --apply must write: it refuses, names the path, and leaves everything as it was.
    let got = raftdump(&ro, Some(guard), &["repair", "--apply", "log-torn-tail"]);
    assert_eq!(got.code, Some(2), "{got:?}");
    assert_eq!(got.stdout, "");
    assert!(
        got.stderr.starts_with("raftdump: error: ")
            && got.stderr.contains("log-torn-tail/log is not writable: ")
            && got.stderr.ends_with(" (nothing was changed)\n")
            && got.stderr.lines().count() == 1,
        "{:?}",
        got.stderr
    );
    match guard {
        Guard::Bits => assert!(got.stderr.contains("Permission denied"), "{}", got.stderr),
        Guard::Mount(_) => assert!(
            got.stderr.contains("Read-only file system"),
            "{}",
            got.stderr
        ),
    }
    let after = tree(&ro);
    assert_eq!(before.len(), after.len(), "files appeared or vanished");
    for (path, b) in &before {
        assert!(after.get(path) == Some(b), "{} changed", path.display());
    }
    // The writable copies are untouched too (none of the commands above writes).
    let pristine = tree(&rw);
    for (path, (bytes, _, _)) in &pristine {
        assert_eq!(
            &after[path].0,
            bytes,
            "{}: read-only copy differs from the writable one",
            path.display()
        );
    }
    make_writable(&ro);
}
