//! The SeaweedFS master dirs under `fixtures/seaweedfs/` that raftdump writes itself (every one
//! but `single-12`, which the seaweedfs/raft fork wrote), with `LogWriter::with_dialect(Seaweedfs)`
//! (proto3 frames: a zero Term and an empty Command left out, as the fork writes them),
//! `conf::encode` and `snapshot::encode`.
//!
//! `RAFTDUMP_BLESS=1 cargo test --test it synthetic_seaweedfs` (re)creates them; without it the
//! test checks that the committed files are byte-identical to what the generator makes. The
//! other tests here check what every command says about them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use raftdump::datadir;
use raftdump::format::dialect::Dialect;
use raftdump::format::log::{LogReader, LogWriter};
use raftdump::format::{conf, snapshot};
use raftdump::model::{Command, Conf, Peer, Snapshot};

use crate::synthetic_verify::tree;

type Builder = fn(&Path) -> io::Result<()>;

/// Every generated master dir (relative to `fixtures/seaweedfs/`) and its builder.
const DIRS: &[(&str, Builder)] = &[
    ("mixed-terms/m9333", mixed_terms),
    ("compacted/m9333", compacted),
    ("torn-body/m9333", torn_body),
    ("torn-header/m9333", torn_header),
    ("cluster-diverged/m9333", |d| cluster(d, 0)),
    ("cluster-diverged/m9334", |d| cluster(d, 1)),
    ("cluster-diverged/m9335", |d| cluster(d, 2)),
];

const TOPOLOGY: &str = "a1b2c3d4-topology";

fn master(port: u16) -> Peer {
    Peer {
        name: format!("127.0.0.1:{port}"),
        connection_string: format!("http://127.0.0.1:{port}"),
    }
}

fn join(port: u16) -> Command {
    let p = master(port);
    Command::Join {
        name: p.name,
        connection_string: p.connection_string,
    }
}

/// SeaweedFS's payload (Go's JSON encoder, with its newline); `None` for the older form
/// without a topology id.
fn max_volume_id(n: u64, topology: Option<&str>) -> Vec<u8> {
    match topology {
        Some(t) => format!("{{\"maxVolumeId\":{n},\"topologyId\":\"{t}\"}}\n").into_bytes(),
        None => format!("{{\"maxVolumeId\":{n}}}\n").into_bytes(),
    }
}

fn writer() -> LogWriter<Vec<u8>> {
    LogWriter::with_dialect(Vec::new(), Dialect::Seaweedfs)
}

fn write_conf(d: &Path, commit_index: u64, peers: Vec<Peer>) -> io::Result<()> {
    fs::write(
        d.join("conf"),
        conf::encode(&Conf {
            commit_index,
            peers,
        }),
    )
}

/// A master that restarted twice: term 0 (bootstrap, no Term field), then terms 1 and 2, each
/// opened by the new leader's nop; the last command in the older payload form.
fn mixed_terms(d: &Path) -> io::Result<()> {
    let mut w = writer();
    w.append(1, 0, &join(9333))?;
    w.append(2, 0, &Command::Nop)?;
    let mut index = 3;
    for (term, volumes) in [(0, 1..=4), (1, 5..=7), (2, 8..=9)] {
        if term > 0 {
            w.append(index, term, &Command::Nop)?;
            index += 1;
        }
        for v in volumes {
            w.append_raw(
                index,
                term,
                "MaxVolumeId",
                Some(&max_volume_id(v, Some(TOPOLOGY))),
            )?;
            index += 1;
        }
    }
    w.append_raw(index, 2, "MaxVolumeId", Some(&max_volume_id(10, None)))?;
    write_conf(d, 1, Vec::new())?;
    fs::write(d.join("log"), w.into_inner())
}

/// What the fork leaves after 900 entries on one master: a snapshot at the commit index each
/// time more than 400 entries were in memory (401, 602, 803), every older `.ss` file still in
/// `snapshot/`, and the log compacted to keep 200 entries before the last snapshot (604..900).
fn compacted(d: &Path) -> io::Result<()> {
    let mut w = writer();
    for i in 604..=900 {
        w.append_raw(
            i,
            0,
            "MaxVolumeId",
            Some(&max_volume_id(i - 2, Some(TOPOLOGY))),
        )?;
    }
    fs::create_dir_all(d.join("snapshot"))?;
    for last in [401u64, 602, 803] {
        let file = format!("0_{last}.ss");
        let state = format!(
            "{{\"maxVolumeId\":{},\"topologyId\":\"{TOPOLOGY}\"}}",
            last - 2
        );
        let bytes = snapshot::encode(&Snapshot {
            last_index: last,
            last_term: 0,
            peers: Some(vec![master(9333)]),
            state: Some(state.into_bytes()),
            path: format!("seaweedfs/compacted/m9333/snapshot/{file}"),
        });
        fs::write(d.join("snapshot").join(file), bytes)?;
    }
    write_conf(d, 1, Vec::new())?;
    fs::write(d.join("log"), w.into_inner())
}

fn single_12() -> io::Result<(Vec<u8>, Vec<u8>)> {
    let d = crate::fixtures().join("seaweedfs/single-12/m9333");
    Ok((fs::read(d.join("log"))?, fs::read(d.join("conf"))?))
}

/// The real single-12 master, then the frame of MaxVolumeId 13 cut 20 bytes into its body (a
/// kill -9 mid-append).
fn torn_body(d: &Path) -> io::Result<()> {
    let (mut log, conf) = single_12()?;
    let mut w = writer();
    w.append_raw(
        15,
        0,
        "MaxVolumeId",
        Some(&max_volume_id(13, Some(TOPOLOGY))),
    )?;
    let frame = w.into_inner();
    log.extend_from_slice(&frame[..9 + 20]);
    fs::write(d.join("conf"), conf)?;
    fs::write(d.join("log"), log)
}

/// The real single-12 master, then 4 spaces: a length header torn in its padding.
fn torn_header(d: &Path) -> io::Result<()> {
    let (mut log, conf) = single_12()?;
    log.extend_from_slice(b"    ");
    fs::write(d.join("conf"), conf)?;
    fs::write(d.join("log"), log)
}

/// Three masters. All hold 1..6 (term 0: the joins of the three and MaxVolumeId 1, 2, all
/// committed); then 127.0.0.1:9333, the leader, wrote MaxVolumeId 3 at index 7 alone and was
/// killed; 127.0.0.1:9334 won term 1 and wrote its nop and MaxVolumeId 3, 4 at 7..9 on itself
/// and 127.0.0.1:9335. The first master's tail (index 7, term 0) is uncommitted.
fn cluster(d: &Path, node: usize) -> io::Result<()> {
    let ports = [9333u16, 9334, 9335];
    let mut w = writer();
    w.append(1, 0, &join(9333))?;
    w.append(2, 0, &Command::Nop)?;
    w.append(3, 0, &join(9334))?;
    w.append(4, 0, &join(9335))?;
    for (index, v) in [(5, 1), (6, 2)] {
        w.append_raw(
            index,
            0,
            "MaxVolumeId",
            Some(&max_volume_id(v, Some(TOPOLOGY))),
        )?;
    }
    if node == 0 {
        w.append_raw(7, 0, "MaxVolumeId", Some(&max_volume_id(3, Some(TOPOLOGY))))?;
    } else {
        w.append(7, 1, &Command::Nop)?;
        for (index, v) in [(8, 3), (9, 4)] {
            w.append_raw(
                index,
                1,
                "MaxVolumeId",
                Some(&max_volume_id(v, Some(TOPOLOGY))),
            )?;
        }
    }
    let peers = ports
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != node)
        .map(|(_, &p)| master(p))
        .collect();
    write_conf(d, 4, peers)?;
    fs::write(d.join("log"), w.into_inner())
}

fn build(parent: &Path, rel: &str, builder: Builder) -> PathBuf {
    let d = parent.join(rel);
    fs::create_dir_all(&d).unwrap();
    builder(&d).unwrap();
    d
}

#[test]
fn fixtures_are_generated_and_fresh() {
    let root = crate::fixtures().join("seaweedfs");
    let bless = std::env::var_os("RAFTDUMP_BLESS").is_some_and(|v| v == "1");
    let tmp = tempfile::tempdir().unwrap();
    let mut stale = Vec::new();
    for (rel, builder) in DIRS {
        let made = tree(&build(tmp.path(), rel, *builder));
        let committed = root.join(rel);
        if bless {
            let _ = fs::remove_dir_all(&committed);
            for (p, bytes) in &made {
                let p = committed.join(p);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(p, bytes).unwrap();
            }
        } else if !committed.is_dir() || tree(&committed) != made {
            stale.push(format!("fixtures/seaweedfs/{rel}"));
        }
    }
    assert!(
        stale.is_empty(),
        "stale (run with RAFTDUMP_BLESS=1): {stale:?}"
    );
}

fn open(rel: &str) -> datadir::DataDir {
    datadir::open(&crate::fixtures().join("seaweedfs").join(rel)).unwrap()
}

#[test]
fn every_master_dir_is_detected_as_seaweedfs_without_conflict() {
    let mut dirs: Vec<&str> = DIRS.iter().map(|(rel, _)| *rel).collect();
    dirs.push("single-12/m9333");
    for rel in dirs {
        let d = open(rel);
        assert_eq!(d.dialect(), Dialect::Seaweedfs, "{rel}: {:?}", d.dialect);
        assert!(!d.dialect.conflicts(), "{rel}: {:?}", d.dialect);
    }
}

#[test]
fn healthy_masters_verify_clean_without_errors_or_warnings() {
    for rel in ["single-12/m9333", "mixed-terms/m9333", "compacted/m9333"] {
        let report = raftdump::check::node::check(&open(rel));
        let bad: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity != raftdump::check::Severity::Info)
            .collect();
        assert!(bad.is_empty(), "{rel}: {bad:#?}");
        // Several snapshots and a compacted log are the fork's normal state: not even an info.
        assert!(
            report.findings.iter().all(|f| f.code != "snapshot-orphan"),
            "{rel}: {:#?}",
            report.findings
        );
    }
    // Read as goraft's proto2, the same bytes are damage from the first frame.
    let d = datadir::open_as(
        &crate::fixtures().join("seaweedfs/single-12/m9333"),
        raftdump::format::dialect::Choice::Force(Dialect::Goraft),
    )
    .unwrap();
    let report = raftdump::check::node::check(&d);
    assert_eq!(report.log.first_damage, Some(0));
}

#[test]
fn torn_tails_are_cut_at_their_frame_and_healthy_frames_are_kept() {
    let (real, _) = single_12().unwrap();
    for rel in ["torn-body/m9333", "torn-header/m9333"] {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("m9333");
        fs::create_dir(&d).unwrap();
        for (p, bytes) in tree(&crate::fixtures().join("seaweedfs").join(rel)) {
            fs::write(d.join(p), bytes).unwrap();
        }
        let report = raftdump::check::node::check(&datadir::open(&d).unwrap());
        let torn: Vec<_> = report.findings.iter().map(|f| f.code).collect();
        assert_eq!(torn, ["log-torn-tail"], "{rel}");
        let plan = raftdump::repair::plan(&d, Default::default()).unwrap();
        assert!(plan.blockers.is_empty(), "{rel}: {:#?}", plan.blockers);
        assert_eq!(
            plan.cut.as_ref().map(|c| c.offset),
            Some(real.len() as u64),
            "{rel}"
        );
        raftdump::repair::apply(&plan, 1_700_000_000).unwrap();
        assert_eq!(fs::read(d.join("log")).unwrap(), real, "{rel}");
        let after = datadir::open(&d).unwrap();
        assert_eq!(after.dialect(), Dialect::Seaweedfs);
        assert!(raftdump::check::node::check(&after).findings.is_empty());
    }
    // A healthy master has nothing to repair: no proto3 frame is ever cut.
    let plan = raftdump::repair::plan(
        &crate::fixtures().join("seaweedfs/single-12/m9333"),
        Default::default(),
    )
    .unwrap();
    assert!(plan.is_empty() && plan.cut.is_none(), "{plan:#?}");
}

#[test]
fn replay_reads_every_entry_of_a_master() {
    let d = open("single-12/m9333");
    let r = raftdump::replay::replay(&d, &Default::default()).unwrap();
    assert_eq!(r.last_applied(), 14);
    assert!(r.damage().is_none());
    let entries: Vec<_> = LogReader::with_dialect(d.log.bytes(), d.dialect())
        .map(Result::unwrap)
        .collect();
    assert_eq!(entries.len(), 14);
    assert_eq!(
        entries[13].payload(),
        Some(&max_volume_id(12, Some(TOPOLOGY))[..])
    );
}

#[test]
fn serve_refuses_a_master_dir_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m9333");
    fs::create_dir(&d).unwrap();
    let src = crate::fixtures().join("seaweedfs/single-12/m9333");
    for (p, bytes) in tree(&src) {
        fs::write(d.join(p), bytes).unwrap();
    }
    let before = tree(&d);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raftdump"))
        .args(["serve", "-p", "0"])
        .arg(&d)
        .env("RAFTDUMP_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SeaweedFS master") && err.contains("dialect seaweedfs"),
        "{err}"
    );
    assert_eq!(tree(&d), before, "serve changed the dir");
}

#[test]
fn a_cut_at_every_byte_of_a_master_log_is_a_torn_tail_at_its_frame() {
    use raftdump::check::node::{check_log, LogContext};
    let (log, _) = single_12().unwrap();
    let starts: Vec<u64> = LogReader::with_dialect(&log, Dialect::Seaweedfs)
        .map(|e| e.unwrap().offset)
        .collect();
    assert_eq!(starts.len(), 14);
    let ctx = LogContext {
        dialect: Dialect::Seaweedfs,
        ..LogContext::default()
    };
    for n in 0..=log.len() {
        let (out, findings) = check_log(&log[..n], &ctx);
        let before = starts.iter().filter(|&&s| s < n as u64).count() as u64;
        if n == log.len() || starts.contains(&(n as u64)) {
            assert_eq!(findings, [], "cut at {n} is a frame boundary");
            assert_eq!(out.entries, before, "cut at {n}");
            continue;
        }
        // The frame the cut falls in: every frame before it is kept, whole.
        let frame = *starts.iter().rfind(|&&s| s < n as u64).unwrap();
        let codes: Vec<_> = findings.iter().map(|f| (f.code, f.offset)).collect();
        assert_eq!(codes, [("log-torn-tail", Some(frame))], "cut at {n}");
        assert_eq!(out.goraft_truncate_at, Some(frame), "cut at {n}");
        assert_eq!(out.kept_entries, before - 1, "cut at {n}");
    }
}
