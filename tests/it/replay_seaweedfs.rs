//! Replay of SeaweedFS masters: the `MaxVolumeId` state machine over whole data dirs written with
//! the format layer (a compacted log after a snapshot, the snapshot alone, a malformed command),
//! through the library and the command line.

use std::path::{Path, PathBuf};
use std::process::Command;

use raftdump::datadir;
use raftdump::format::log::LogWriter;
use raftdump::format::snapshot;
use raftdump::model::{Command as Cmd, Peer, Snapshot};
use raftdump::replay::{self, Machine, MachineChoice, ReplayOptions, SnapshotState, Start};

const BIN: &str = env!("CARGO_BIN_EXE_raftdump");
const NAME: &str = "127.0.0.1:9333";

fn vid(n: u32) -> String {
    format!("{{\"maxVolumeId\":{n},\"topologyId\":\"t-1\"}}\n")
}

/// A master dir `<tmp>/m9333` (no `name` file, as SeaweedFS writes none): the join and nop in
/// term 1, then `MaxVolumeId` 1..=n from index 3 in term 2, the entries from `first` on kept
/// in the log; with `snapshot_at`, a snapshot of the state at that index.
fn master_dir(tmp: &Path, n: u32, first: u64, snapshot_at: Option<u64>) -> PathBuf {
    let dir = tmp.join("m9333");
    std::fs::create_dir_all(dir.join("snapshot")).unwrap();
    let mut w = LogWriter::new(Vec::new());
    let join = Cmd::Join {
        name: NAME.into(),
        connection_string: format!("http://{NAME}"),
    };
    let mut entries: Vec<(u64, u64, &str, Option<Vec<u8>>)> =
        vec![(1, 1, "raft:join", None), (2, 1, "raft:nop", None)];
    for i in 1..=n {
        entries.push((
            2 + u64::from(i),
            2,
            "MaxVolumeId",
            Some(vid(i).into_bytes()),
        ));
    }
    for (index, term, name, payload) in entries.into_iter().filter(|e| e.0 >= first) {
        match name {
            "raft:join" => w.append(index, term, &join).unwrap(),
            "raft:nop" => w.append(index, term, &Cmd::Nop).unwrap(),
            _ => w.append_raw(index, term, name, payload.as_deref()).unwrap(),
        }
    }
    std::fs::write(dir.join("log"), w.into_inner()).unwrap();
    std::fs::write(dir.join("conf"), "{\"commitIndex\":1,\"peers\":[]}").unwrap();
    if let Some(at) = snapshot_at {
        let s = Snapshot {
            last_index: at,
            last_term: 2,
            peers: Some(vec![Peer {
                name: NAME.into(),
                connection_string: format!("http://{NAME}"),
            }]),
            state: Some(
                format!("{{\"maxVolumeId\":{},\"topologyId\":\"t-1\"}}", at - 2).into_bytes(),
            ),
            path: dir
                .join(format!("snapshot/2_{at}.ss"))
                .display()
                .to_string(),
        };
        std::fs::write(
            dir.join(format!("snapshot/2_{at}.ss")),
            snapshot::encode(&s),
        )
        .unwrap();
    }
    dir
}

fn replay(dir: &Path, opts: &ReplayOptions) -> replay::Replay {
    replay::replay(&datadir::open(dir).unwrap(), opts).unwrap()
}

#[test]
fn a_compacted_master_log_replays_from_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    // 500 volumes: a snapshot at index 402 (maxVolumeId 400), the log compacted to keep 200
    // entries before it, as the fork does by itself.
    let dir = master_dir(tmp.path(), 500, 203, Some(402));
    let r = replay(&dir, &ReplayOptions::default());
    assert_eq!(r.machine, Machine::Seaweedfs);
    assert!(matches!(
        &r.start,
        Start::Snapshot(s) if s.state == SnapshotState::Master { max_volume_id: 400, topology_id: "t-1".into() }
    ));
    assert_eq!(
        (r.master.max_volume_id, r.master.topology_id.as_str()),
        (500, "t-1")
    );
    assert_eq!(
        (r.skipped, r.stats.volume_ids, r.last_applied()),
        (200, 100, 502)
    );
    // Any index the files still hold.
    let at = |i| {
        replay(
            &dir,
            &ReplayOptions {
                at: Some(i),
                ..Default::default()
            },
        )
    };
    assert_eq!(at(450).master.max_volume_id, 448);
    assert_eq!(at(402).master.max_volume_id, 400);
    // Before the snapshot, the log no longer starts at index 1: refused, with the reason.
    let err = replay::replay(
        &datadir::open(&dir).unwrap(),
        &ReplayOptions {
            at: Some(300),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot replay to index 300"),
        "{err}"
    );
}

#[test]
fn forced_to_raftd_a_master_log_has_only_unknown_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = master_dir(tmp.path(), 3, 1, None);
    let opts = ReplayOptions {
        machine: MachineChoice::Raftd,
        ..Default::default()
    };
    let r = replay(&dir, &opts);
    assert_eq!(
        (r.machine, r.stats.unknown, r.master.max_volume_id),
        (Machine::Raftd, 3, 0)
    );
}

fn run(args: &[&str], dir: &Path) -> (String, i32) {
    let out = Command::new(BIN)
        .args(args)
        .arg(dir)
        .env("NO_COLOR", "1")
        .env("RAFTDUMP_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn the_command_line_shows_the_state_its_history_and_the_line_to_keep() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = master_dir(tmp.path(), 12, 1, None);
    let (out, code) = run(&["replay"], &dir);
    assert_eq!(code, 0);
    let tail: Vec<&str> = out.lines().skip(4).collect();
    assert_eq!(
        tail,
        [
            "",
            "SeaweedFS master state",
            "  maxVolumeId  12",
            "  topologyId   t-1",
            "",
            "keep: maxVolumeId 12, topologyId t-1 (the state at index 14): a master started without these files learns volume ids only from the volumes its volume servers report, so it can hand out ids up to 12 again, and it generates a new topologyId",
        ]
    );
    let (out, _) = run(&["replay", "--json", "--at", "9"], &dir);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["machine"], "seaweedfs");
    assert_eq!(
        lines[1],
        serde_json::json!({"type":"seaweedfs","max_volume_id":7,"topology_id":"t-1","index":9})
    );
    let (out, _) = run(&["replay", "--json", "--history", "maxVolumeId"], &dir);
    let news: Vec<String> = out
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["new"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(news, (1..=12).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn a_malformed_command_is_counted_and_an_unknown_machine_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = LogWriter::new(Vec::new());
    w.append_raw(1, 1, "MaxVolumeId", Some(b"{\"maxVolumeId\":3}\n"))
        .unwrap();
    w.append_raw(2, 1, "MaxVolumeId", Some(b"{\"maxVolumeId\":1e9}\n"))
        .unwrap();
    w.append_raw(3, 1, "MaxVolumeId", Some(b"{\"maxVolumeId\""))
        .unwrap();
    std::fs::write(dir.join("log"), w.into_inner()).unwrap();
    let (out, code) = run(&["replay", "--json", "--stats"], &dir);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        (stats["invalid"].as_u64(), stats["volume_ids"].as_u64()),
        (Some(2), Some(3))
    );
    let (out, _) = run(&["replay", "--json"], &dir);
    assert!(out.contains("\"max_volume_id\":3,"), "{out}");

    let mut w = LogWriter::new(Vec::new());
    w.append(1, 1, &Cmd::Nop).unwrap();
    w.append_raw(2, 1, "etcd:set", Some(b"{}")).unwrap();
    std::fs::write(dir.join("log"), w.into_inner()).unwrap();
    let (out, _) = run(&["replay"], &dir);
    assert!(
        out.contains("state unknown: its 1 application commands are neither raftd's write nor SeaweedFS's MaxVolumeId; membership and command counts are complete"),
        "{out}"
    );
    assert!(!out.contains("keep:"), "{out}");
}
