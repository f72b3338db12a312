//! Replay of the real SeaweedFS master dir in `fixtures/seaweedfs/single-12/m9333` (written by the
//! seaweedfs/raft fork's own code: proto3 entries, all in term 0, so no frame has a Term field).

use std::process::Command;

use raftdump::datadir;
use raftdump::replay::{self, Machine, ReplayOptions, Start, Stop};

use crate::fixtures;

fn dir() -> std::path::PathBuf {
    fixtures().join("seaweedfs/single-12/m9333")
}

#[test]
fn the_real_master_dir_replays_to_max_volume_id_12() {
    let d = datadir::open(&dir()).unwrap();
    let r = replay::replay(&d, &ReplayOptions::default()).unwrap();
    assert_eq!(
        (r.stop.clone(), r.start.clone()),
        (Stop::EndOfLog, Start::Empty)
    );
    assert_eq!(r.machine, Machine::Seaweedfs);
    assert_eq!(
        (r.master.max_volume_id, r.master.topology_id.as_str()),
        (12, "a1b2c3d4-topology")
    );
    assert_eq!(
        (r.last_applied(), r.last_term, r.stats.entries),
        (14, Some(0), 14)
    );
    assert_eq!(
        (
            r.stats.joins,
            r.stats.nops,
            r.stats.volume_ids,
            r.stats.invalid,
            r.stats.unknown
        ),
        (1, 1, 12, 0, 0)
    );
    assert_eq!(r.kv.members.keys().collect::<Vec<_>>(), ["127.0.0.1:9333"]);
    for at in 2..=14u64 {
        let o = ReplayOptions {
            at: Some(at),
            ..Default::default()
        };
        let r = replay::replay(&d, &o).unwrap();
        assert_eq!(
            u64::from(r.master.max_volume_id),
            at.saturating_sub(2),
            "--at {at}"
        );
    }
}

#[test]
fn the_command_line_gives_the_json_state() {
    let out = Command::new(env!("CARGO_BIN_EXE_raftdump"))
        .args(["replay", "--json"])
        .arg(dir())
        .env("RAFTDUMP_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let last = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(
        last,
        serde_json::json!({"type":"seaweedfs","max_volume_id":12,"topology_id":"a1b2c3d4-topology","index":14})
    );
}
