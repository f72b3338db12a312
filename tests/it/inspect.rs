//! `inspect` against the real goraft fixtures: exact summaries, JSON that agrees with the decoder,
//! human tables that stay one table across chunks, and fixtures left byte-for-byte unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::SystemTime;

use base64::Engine as _;
use raftdump::datadir;
use raftdump::format::command;
use raftdump::format::dialect::Dialect;
use raftdump::format::log::LogWriter;
use raftdump::inspect::{summarize, InspectOptions, Progress, Summary};
use raftdump::model::Command;
use raftdump::render::inspect::{self as render, HumanStyle, View};

fn summary_of(dir: &str) -> Summary {
    let dd = datadir::open(&crate::fixtures().join("goraft").join(dir)).unwrap();
    summarize(dd.log.bytes(), dd.dialect(), Progress::none())
}

/// `(term, start index, count)` of each run, and `(name, count)` of each command.
type Shape = (Vec<(u64, u64, u64)>, Vec<(String, u64)>);

fn shape(s: &Summary) -> Shape {
    let terms = s
        .terms
        .iter()
        .map(|r| (r.term, r.start_index, r.count))
        .collect();
    let cmds = s
        .commands
        .iter()
        .map(|c| (String::from_utf8(c.name.clone()).unwrap(), c.count))
        .collect();
    (terms, cmds)
}

fn cmds(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

#[test]
fn summary_of_the_three_node_leader_kill() {
    let s = summary_of("three-node-leader-kill/node1");
    assert_eq!(
        (s.entries, s.first_index, s.last_index),
        (80, Some(1), Some(80))
    );
    assert_eq!(s.file_size, 4978);
    assert_eq!(
        shape(&s),
        (
            vec![(0, 1, 54), (1, 55, 26)],
            cmds(&[("raft:join", 3), ("raft:nop", 2), ("write", 75)])
        )
    );
    assert_eq!(s.terms[1].start_offset, 3240);
    assert_eq!(
        (s.non_canonical, s.problem_count, s.problem_bytes),
        (0, 0, 0)
    );
    assert!(!s.is_damaged());
}

#[test]
fn summary_of_other_real_logs() {
    let s = summary_of("single-node/node1");
    assert_eq!(
        (s.entries, s.first_index, s.last_index, s.file_size),
        (15, Some(1), Some(15), 889)
    );
    assert_eq!(
        shape(&s),
        (
            vec![(0, 1, 15)],
            cmds(&[("raft:join", 1), ("raft:nop", 1), ("write", 13)])
        )
    );
    let s = summary_of("odd-values-follower-kill/node1");
    assert_eq!(
        (s.entries, s.last_index, s.file_size),
        (47, Some(47), 15463)
    );
    assert_eq!(
        shape(&s),
        (
            vec![(0, 1, 47)],
            cmds(&[("raft:join", 3), ("raft:nop", 1), ("write", 43)])
        )
    );
    // Compacted by goraft's snapshot: the log starts at 804.
    let s = summary_of("snapshot/node1");
    assert_eq!(
        (s.entries, s.first_index, s.last_index),
        (200, Some(804), Some(1003))
    );
    assert_eq!(
        shape(&s),
        (
            vec![(0, 804, 199), (1, 1003, 1)],
            cmds(&[("raft:nop", 1), ("write", 199)])
        )
    );
    let s = summary_of(
        "diverged-old-leader-tail/t2-new-leader-committed-old-leader-still-stopped/node2",
    );
    assert_eq!((s.entries, s.last_index), (33, Some(33)));
    assert_eq!(
        shape(&s),
        (
            vec![(0, 1, 24), (1, 25, 9)],
            cmds(&[("raft:join", 3), ("raft:nop", 2), ("write", 28)])
        )
    );
}

#[test]
fn every_real_log_is_clean_and_canonical() {
    for log in crate::real_logs() {
        let bytes = std::fs::read(&log).unwrap();
        let s = summarize(&bytes, Dialect::Goraft, Progress::none());
        assert!(s.entries > 0, "{}", log.display());
        assert_eq!(
            (s.non_canonical, s.problem_count),
            (0, 0),
            "{}",
            log.display()
        );
        assert_eq!(s.commands.iter().map(|c| c.count).sum::<u64>(), s.entries);
        assert_eq!(s.terms.iter().map(|r| r.count).sum::<u64>(), s.entries);
    }
}

fn render_json(dir: &Path, opts: &InspectOptions, raw: bool) -> Vec<serde_json::Value> {
    let dd = datadir::open(dir).unwrap();
    let summary = summarize(dd.log.bytes(), dd.dialect(), Progress::none());
    let view = View {
        dd: &dd,
        summary: &summary,
        opts,
        raw,
        summary_only: false,
    };
    let mut out = Vec::new();
    render::json(&mut out, &view, &mut |_| {}).unwrap();
    let text = String::from_utf8(out).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The JSON `command` of an entry, built independently from the decoder's result.
fn expected_command(name: &str, payload: Option<&[u8]>) -> serde_json::Value {
    use serde_json::json;
    match command::decode(name.as_bytes(), payload) {
        Command::Write { key, value } => json!({"key": key, "value": value}),
        Command::Join {
            name,
            connection_string,
        } => json!({"name": name, "connectionString": connection_string}),
        Command::Leave { name } => json!({"name": name}),
        Command::Nop | Command::Invalid { .. } => serde_json::Value::Null,
        Command::Other { json } => json.unwrap_or(serde_json::Value::Null),
    }
}

/// The JSON writer copies goraft's own string tokens on its fast path; every entry of every real
/// log must still mean exactly what the Go-compatible decoder says, with the payload lossless.
#[test]
fn json_entries_agree_with_the_decoder_on_every_real_log() {
    let b64 = base64::engine::general_purpose::STANDARD;
    for log in crate::real_logs() {
        let dir = log.parent().unwrap();
        let lines = render_json(dir, &InspectOptions::default(), true);
        let types: Vec<&str> = lines.iter().map(|v| v["type"].as_str().unwrap()).collect();
        assert_eq!(types[0], "node");
        let entries: Vec<_> = lines.iter().filter(|v| v["type"] == "entry").collect();
        let bytes = std::fs::read(&log).unwrap();
        let summary = summarize(&bytes, Dialect::Goraft, Progress::none());
        assert_eq!(entries.len() as u64, summary.entries, "{}", log.display());
        let mut offset = 0;
        for e in entries {
            let at = format!("{} entry {}", log.display(), e["index"]);
            assert_eq!(e["offset"], offset, "{at}");
            let len = e["frame_len"].as_u64().unwrap();
            let frame = &bytes[offset as usize..(offset + len) as usize];
            let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
            let (h, b) = (
                e["header_hex"].as_str().unwrap(),
                e["body_hex"].as_str().unwrap(),
            );
            assert_eq!(format!("{h}{b}"), hex, "{at}");
            let payload = match &e["payload_base64"] {
                serde_json::Value::Null => None,
                v => Some(b64.decode(v.as_str().unwrap()).unwrap()),
            };
            if let Some(p) = &payload {
                assert!(
                    frame.ends_with(p),
                    "{at}: payload is the frame's last bytes"
                );
            }
            let name = e["command_name"].as_str().unwrap();
            assert_eq!(
                e["command"],
                expected_command(name, payload.as_deref()),
                "{at}"
            );
            assert_eq!(e["canonical"], true, "{at}");
            offset += len;
        }
        assert_eq!(offset, bytes.len() as u64);
    }
}

#[test]
fn json_filters_and_problem_objects() {
    let dir = crate::fixtures().join("goraft/three-node-leader-kill/node1");
    let opts = InspectOptions {
        term: Some(1),
        commands: vec!["write".into()],
        limit: Some(2),
        ..InspectOptions::default()
    };
    let lines = render_json(&dir, &opts, false);
    let idx: Vec<_> = lines
        .iter()
        .filter(|v| v["type"] == "entry")
        .map(|v| v["index"].clone())
        .collect();
    assert_eq!(idx, [56, 57]);
    assert!(lines.iter().all(|v| v.get("header_hex").is_none()));

    // A torn tail: every good entry, then one problem object.
    let tmp = tempfile::tempdir().unwrap();
    let log = std::fs::read(crate::fixtures().join("goraft/single-node/node1/log")).unwrap();
    std::fs::write(tmp.path().join("log"), &log[..850]).unwrap();
    let lines = render_json(tmp.path(), &InspectOptions::default(), false);
    let types: Vec<&str> = lines.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "entry").count(), 14);
    assert_eq!(types.last(), Some(&"problem"));
    let p = lines.last().unwrap();
    assert_eq!(
        (&p["offset"], &p["len"], &p["kind"], &p["last_index"]),
        (&820.into(), &30.into(), &"torn-body".into(), &14.into())
    );
}

/// More rows than one comfy-table chunk: the chunks join into one table with one header and
/// one bottom border, every line equally wide.
#[test]
fn long_logs_render_as_one_table_in_chunks() {
    let n = render::CHUNK_ROWS as u64 * 3 + 17;
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(Vec::new());
    for i in 1..=n {
        let value = "v".repeat((i % 40) as usize);
        w.append(
            i,
            i / 100,
            &Command::Write {
                key: format!("k{i}"),
                value,
            },
        )
        .unwrap();
    }
    std::fs::write(tmp.path().join("log"), w.into_inner()).unwrap();
    let dd = datadir::open(&tmp.path().join("log")).unwrap();
    let mut seen = Vec::new();
    let summary = summarize(
        dd.log.bytes(),
        dd.dialect(),
        Progress::new(&mut |p| seen.push(p)),
    );
    assert_eq!(seen.last(), Some(&(dd.log.bytes().len() as u64)));
    let opts = InspectOptions::default();
    let view = View {
        dd: &dd,
        summary: &summary,
        opts: &opts,
        raw: false,
        summary_only: false,
    };
    let mut out = Vec::new();
    let style = HumanStyle {
        width: 100,
        color: false,
    };
    render::human(&mut out, &view, &style, &mut |_| {}).unwrap();
    let text = String::from_utf8(out).unwrap();
    let table: Vec<&str> = text.lines().skip_while(|l| !l.starts_with('┌')).collect();
    assert_eq!(
        table.len() as u64,
        n + 4,
        "top, header, separator, rows, bottom"
    );
    assert_eq!(table.iter().filter(|l| l.starts_with('┌')).count(), 1);
    assert_eq!(table.iter().filter(|l| l.starts_with('╞')).count(), 1);
    assert_eq!(table.iter().filter(|l| l.starts_with('└')).count(), 1);
    assert!(table.last().unwrap().starts_with('└'));
    let width = table[0].chars().count();
    assert!(
        table.iter().all(|l| l.chars().count() == width),
        "ragged table"
    );
    assert!(width <= 100);
    let rows: Vec<&str> = table[3..table.len() - 1].to_vec();
    assert!(
        rows[0].starts_with("│     1 │    0 │      0 │ write   │ key=\"k1\" value=\"v\" "),
        "{}",
        rows[0]
    );
    assert!(rows[rows.len() - 1].contains(&format!(" {n} │")));
}

/// Every file under `fixtures/`: its bytes and modification time.
fn snapshot_tree(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.clone(),
                    (std::fs::read(&p).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    out
}

#[test]
fn inspect_leaves_every_fixture_unchanged() {
    let root = crate::fixtures();
    let before = snapshot_tree(&root);
    let mut targets: Vec<PathBuf> = crate::real_logs();
    targets.extend(
        crate::real_logs()
            .iter()
            .map(|l| l.parent().unwrap().to_path_buf()),
    );
    let bin = env!("CARGO_BIN_EXE_raftdump");
    let mut runs = 0;
    for t in &targets {
        for args in [&["inspect"][..], &["inspect", "--json", "--raw"][..]] {
            let out = Process::new(bin)
                .args(args)
                .arg(t)
                .env("RAFTDUMP_LOG", "off")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{args:?} {}", t.display());
            assert!(!out.stdout.is_empty());
            runs += 1;
        }
    }
    for ss in before
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == "ss"))
    {
        for args in [
            &["inspect", "--snapshot"][..],
            &["inspect", "--json", "--snapshot"][..],
        ] {
            let out = Process::new(bin).args(args).arg(ss).output().unwrap();
            // The real snapshots are clean; the one-defect fixtures may report theirs (exit 1).
            let real = ss.components().any(|c| c.as_os_str() == "goraft");
            let want = if real {
                0
            } else {
                out.status.code().filter(|&c| c == 1).unwrap_or(0)
            };
            assert_eq!(out.status.code(), Some(want), "{args:?} {}", ss.display());
            runs += 1;
        }
    }
    assert!(runs >= 4 * 20);
    let after = snapshot_tree(&root);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "files appeared or vanished"
    );
    for (path, (bytes, mtime)) in &before {
        let (b, m) = &after[path];
        assert!(b == bytes, "{} changed", path.display());
        assert_eq!(m, mtime, "{} was rewritten", path.display());
    }
}

fn run_inspect(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Process::new(env!("CARGO_BIN_EXE_raftdump"));
    cmd.arg("inspect")
        .args(args)
        .arg(crate::fixtures().join("goraft/single-node/node1"));
    for v in ["NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE"] {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied())
        .env("RAFTDUMP_LOG", "off")
        .env("COLUMNS", "120");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8(out.stdout).unwrap()
}

/// Color is only ever bold header keys: never in the table, never with NO_COLOR (which wins over
/// CLICOLOR_FORCE), always with --color always.
#[test]
fn color_only_in_header_keys_and_never_with_no_color() {
    let forced = run_inspect(&["--color", "always"], &[("NO_COLOR", "1")]);
    let colored: Vec<&str> = forced.lines().filter(|l| l.contains('\x1b')).collect();
    assert_eq!(colored.len(), 11, "one per header key:\n{forced}");
    assert!(colored.iter().all(|l| l.starts_with("\x1b[1m")));
    assert!(forced
        .lines()
        .filter(|l| l.starts_with(['┌', '│', '╞', '└']))
        .all(|l| !l.contains('\x1b')));
    let plain = run_inspect(&[], &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]);
    assert!(!plain.contains('\x1b'));
    assert_eq!(
        plain,
        run_inspect(&["--color", "never"], &[("CLICOLOR_FORCE", "1")])
    );
    let stripped = forced.replace("\x1b[1m", "").replace("\x1b[0m", "");
    assert_eq!(stripped, plain, "color changes nothing but the escapes");
    assert!(!run_inspect(&["--json"], &[("CLICOLOR_FORCE", "1")]).contains('\x1b'));
}

fn run_dir(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Process::new(env!("CARGO_BIN_EXE_raftdump"))
        .arg("inspect")
        .args(args)
        .arg(dir)
        .env("NO_COLOR", "1")
        .env("RAFTDUMP_LOG", "off")
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

fn frames(entries: &[(u64, Command)]) -> Vec<Vec<u8>> {
    entries
        .iter()
        .map(|(i, c)| {
            let mut w = LogWriter::new(Vec::new());
            w.append(*i, 0, c).unwrap();
            w.into_inner()
        })
        .collect()
}

/// Frames goraft reads but would not write are reported (header and JSON) and keep exit 0.
#[test]
fn non_canonical_frames_are_reported_but_clean() {
    let write = |k: &str| Command::Write {
        key: k.into(),
        value: "v".into(),
    };
    let f = frames(&[(1, Command::Nop), (2, write("a")), (3, write("b"))]);
    let mut log = f[0].clone();
    // Entry 2 with the unpadded 2013 header ("%x\n").
    let body2 = &f[1][9..];
    log.extend_from_slice(format!("{:x}\n", body2.len()).as_bytes());
    log.extend_from_slice(body2);
    // Entry 3 with an unknown field 5 after the canonical fields.
    let mut body3 = f[2][9..].to_vec();
    body3.extend_from_slice(&[0x28, 0x07]);
    log.extend_from_slice(format!("{:8x}\n", body3.len()).as_bytes());
    log.extend_from_slice(&body3);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("log"), &log).unwrap();

    let (code, human) = run_dir(tmp.path(), &[]);
    assert_eq!(code, Some(0), "{human}");
    let frames_line: Vec<&str> = human
        .lines()
        .skip_while(|l| !l.starts_with("frames"))
        .take(3)
        .collect();
    assert_eq!(
        frames_line,
        [
            "frames      2 non-canonical (goraft reads them, but would not write them): unknown-field 1, unpadded 1",
            "            byte 23, index 2: header: fewer than 8 characters (2013 \"%x\\n\" header)",
            "            byte 63, index 3: body: unknown field 5 at body offset 37",
        ]
    );
    assert!(human.contains("problems    none"));

    let (code, json) = run_dir(tmp.path(), &["--json"]);
    assert_eq!(code, Some(0));
    let v: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v[1]["non_canonical"], 2);
    let kinds: Vec<_> = v[2..]
        .iter()
        .map(|e| (e["canonical"].clone(), e["quirks"][0]["kind"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (true.into(), serde_json::Value::Null),
            (false.into(), "unpadded".into()),
            (false.into(), "unknown-field".into())
        ]
    );
    assert_eq!(
        v[4]["command"],
        serde_json::json!({"key": "b", "value": "v"})
    );
}

/// Damage in the middle: every good entry around it is shown, each stretch is a problem, exit 1.
#[test]
fn a_nul_hole_and_garbage_in_the_middle_exit_1_with_every_entry() {
    let f = frames(&[(1, Command::Nop), (2, Command::Nop), (3, Command::Nop)]);
    let mut log = f[0].clone();
    log.extend_from_slice(&[0; 40]);
    log.extend_from_slice(&f[1]);
    log.extend_from_slice(b"garbage!");
    log.extend_from_slice(&f[2]);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("log"), &log).unwrap();
    let (code, json) = run_dir(tmp.path(), &["--json"]);
    assert_eq!(code, Some(1));
    let v: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let entries: Vec<_> = v
        .iter()
        .filter(|o| o["type"] == "entry")
        .map(|o| o["offset"].clone())
        .collect();
    assert_eq!(entries, [0, 63, 94]);
    let problems: Vec<_> = v
        .iter()
        .filter(|o| o["type"] == "problem")
        .map(|o| {
            (
                o["kind"].clone(),
                o["offset"].clone(),
                o["len"].clone(),
                o["last_index"].clone(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            ("nul-run".into(), 23.into(), 40.into(), 1.into()),
            ("garbage".into(), 86.into(), 8.into(), 2.into())
        ]
    );
    let (code, human) = run_dir(tmp.path(), &[]);
    assert_eq!(code, Some(1));
    assert!(
        human.contains("problems    2 (garbage 1, nul-run 1), 48 bytes; listed after the entries")
    );
    assert!(human.ends_with(
        "problems:\n  40 zero bytes at byte 23, expected a frame header (after index 1)\n  \
         8 bytes of garbage at byte 86: byte 86 is 0x67, expected a space or a hex digit of the length header (after index 2)\n"
    ), "{human}");
}
