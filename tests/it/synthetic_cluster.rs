//! The cluster fixtures of `verify`: one per cross-node finding code (`check::cluster::CODES`).
//! Where a real goraft fixture already shows a code, that fixture is used as it is; the others
//! are one-defect clusters under `fixtures/verify-cluster/<code>/node1..nodeN/`, written by
//! raftdump's own `LogWriter`, `conf::encode` and `snapshot::encode`.
//!
//! `RAFTDUMP_BLESS=1 cargo test --test it synthetic_cluster` (re)creates them, their
//! `fixtures/verify-cluster/README.md` and the trycmd cases `tests/cmd/verify/<code>.toml`;
//! without it the test checks that the committed files are byte-identical to what the generator
//! makes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use raftdump::check::cluster::CODES;
use raftdump::check::Severity;
use raftdump::format::log::LogWriter;
use raftdump::format::{command, conf, frame, snapshot, wire};
use raftdump::model::{Command, Conf, Peer, Snapshot};

use crate::synthetic_verify::tree;

/// The names of the synthetic cluster's three members, node1..node3.
pub const NAMES: [&str; 3] = ["aaa0001", "bbb0002", "ccc0003"];

/// Builds the node dirs of one fixture into the given dir.
type Builder = fn(&Path) -> io::Result<()>;

/// Where a fixture comes from.
pub enum Source {
    /// Real goraft data dirs, relative to `fixtures/`.
    Real(&'static [&'static str]),
    /// Built into `fixtures/verify-cluster/<code>/`; every `node*` dir it makes is one argument of
    /// `verify`, and the list is given `times` times over.
    Made(Builder, usize),
}

/// Every fixture: `(finding code, how it was made, source)`.
pub const FIXTURES: &[(&str, &str, Source)] = &[
    ("cluster-election-safety", "node1 and node2 both led term 1 (goraft persists neither its term nor its vote): each appended the same raft:nop at 7 and then its own write at 8; node3 took node1's. node2's write at 8 is also an uncommitted tail", Source::Made(election_safety, 1)),
    ("cluster-log-matching", "node2 and node3 hold the term-2 raft:nop at 7 and a term-2 write at 8; node1 holds the same write at 8 on top of a term-1 write at 7. Reported for both pairs; node1's entry 7 is also an uncommitted tail", Source::Made(log_matching, 1)),
    ("cluster-entry-bytes", "node2's write at index 6 encodes its term 0 as the two-byte varint `80 00` (Go decodes the same entry; goraft writes one byte)", Source::Made(entry_bytes, 1)),
    ("cluster-committed-conflict", "node1 wrote index 7 in term 1 and snapshotted it (snapshot/1_7.ss); node2 and node3 hold another index 7, of term 2", Source::Made(committed_conflict, 1)),
    ("cluster-committed-prefix", "clean: the three logs are byte-identical (36 entries, index 1..36)", Source::Real(&[
        "goraft/diverged-old-leader-tail/t3-final-after-old-leader-rejoined/node1",
        "goraft/diverged-old-leader-tail/t3-final-after-old-leader-rejoined/node2",
        "goraft/diverged-old-leader-tail/t3-final-after-old-leader-rejoined/node3",
    ])),
    ("cluster-uncommitted-tail", "the stopped old leader node1 holds 25..29 (term 0), which node2 and node3 (1..24) never received", Source::Real(&[
        "goraft/diverged-old-leader-tail/t1-old-leader-stopped-uncommitted-tail/node1",
        "goraft/diverged-old-leader-tail/t1-old-leader-stopped-uncommitted-tail/node2",
        "goraft/diverged-old-leader-tail/t1-old-leader-stopped-uncommitted-tail/node3",
    ])),
    ("cluster-conf-peers", "node3's conf (commitIndex 4, like the others') lists ddd0004, which never joined, instead of bbb0002; its own node check reports it too (conf-peers-mismatch)", Source::Made(conf_peers, 1)),
    ("cluster-membership", "node1's snapshot/0_6.ss lists only aaa0001 and bbb0002 as peers although the log it covers joins ccc0003 at index 4 (its conf, commitIndex 6, agrees with the snapshot): at index 6 node1 replays other members than node2 and node3", Source::Made(membership, 1)),
    ("cluster-duplicate-name", "node3's name file says bbb0002, node2's name (its conf lists aaa0001 and ccc0003, the others from bbb0002's side)", Source::Made(duplicate_name, 1)),
    ("cluster-name-not-member", "a fourth node ddd0004 with an empty log and no conf: raftd ignores the answer to its join, so a join sent to a follower leaves it idle, named but never a member", Source::Made(name_not_member, 1)),
    ("cluster-not-compared", "one clean node, given 65 times: more nodes than the comparison takes (64)", Source::Made(one_node, 65)),
];

// ---------------------------------------------------------------------------------------------
// Building blocks.

fn url(k: usize) -> String {
    format!("http://127.0.0.1:2400{}", k + 1)
}

fn join(k: usize) -> Command {
    Command::Join {
        name: NAMES[k].into(),
        connection_string: url(k),
    }
}

fn write(key: &str, value: &str) -> Command {
    Command::Write {
        key: key.into(),
        value: value.into(),
    }
}

/// The log all three nodes share: join of node1 at 1, raft:nop at 2, joins of node2 and node3
/// at 3 and 4, writes k5=v5 and k6=v6 at 5 and 6, all in term 0 (how raftd starts a cluster).
fn base() -> Vec<(u64, u64, Command)> {
    vec![
        (1, 0, join(0)),
        (2, 0, Command::Nop),
        (3, 0, join(1)),
        (4, 0, join(2)),
        (5, 0, write("k5", "v5")),
        (6, 0, write("k6", "v6")),
    ]
}

fn with(more: &[(u64, u64, Command)]) -> Vec<(u64, u64, Command)> {
    let mut v = base();
    v.extend(more.iter().cloned());
    v
}

fn log(entries: &[(u64, u64, Command)]) -> Vec<u8> {
    let mut w = LogWriter::new(Vec::new());
    for (i, t, c) in entries {
        w.append(*i, *t, c).expect("encodable command");
    }
    w.into_inner()
}

fn peer(k: usize) -> Peer {
    Peer {
        name: NAMES[k].into(),
        connection_string: url(k),
    }
}

/// goraft's conf of node `k`: the commitIndex and the other members.
fn conf_of(k: usize, commit_index: u64, members: &[usize]) -> Vec<u8> {
    conf::encode(&Conf {
        commit_index,
        peers: members
            .iter()
            .filter(|&&m| m != k)
            .map(|&m| peer(m))
            .collect(),
    })
}

/// `dir/node{k+1}` with name, conf (commitIndex 4, the two other members) and `log`.
fn node(dir: &Path, k: usize, log: &[u8]) -> io::Result<PathBuf> {
    let d = dir.join(format!("node{}", k + 1));
    fs::create_dir_all(&d)?;
    fs::write(d.join("name"), NAMES[k])?;
    fs::write(d.join("conf"), conf_of(k, 4, &[0, 1, 2]))?;
    fs::write(d.join("log"), log)?;
    Ok(d)
}

fn snapshot_file(d: &Path, index: u64, term: u64, peers: &[usize], state: &str) -> io::Result<()> {
    let file = format!("{term}_{index}.ss");
    // The goldens run inside fixtures/: the recorded path is where the file is from there.
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let path = format!(
        "verify-cluster/{}/{}/snapshot/{file}",
        name(d.parent()),
        name(Some(d))
    );
    let s = Snapshot {
        last_index: index,
        last_term: term,
        peers: Some(peers.iter().map(|&k| peer(k)).collect()),
        state: Some(state.as_bytes().to_vec()),
        path,
    };
    fs::create_dir_all(d.join("snapshot"))?;
    fs::write(d.join("snapshot").join(file), snapshot::encode(&s))
}

// ---------------------------------------------------------------------------------------------
// The builders.

fn election_safety(dir: &Path) -> io::Result<()> {
    let a = with(&[(7, 1, Command::Nop), (8, 1, write("k8", "from-node1"))]);
    let b = with(&[(7, 1, Command::Nop), (8, 1, write("k8", "from-node2"))]);
    node(dir, 0, &log(&a))?;
    node(dir, 1, &log(&b))?;
    node(dir, 2, &log(&a))?;
    Ok(())
}

fn log_matching(dir: &Path) -> io::Result<()> {
    let stale = with(&[(7, 1, write("k7", "term-1")), (8, 2, write("k8", "v8"))]);
    let good = with(&[(7, 2, Command::Nop), (8, 2, write("k8", "v8"))]);
    node(dir, 0, &log(&stale))?;
    node(dir, 1, &log(&good))?;
    node(dir, 2, &log(&good))?;
    Ok(())
}

fn entry_bytes(dir: &Path) -> io::Result<()> {
    let entries = base();
    let mut odd = log(&entries[..5]);
    let payload = command::encode_write(b"k6", b"v6");
    // Index 6, term 0 as `80 00`, then CommandName and Command as goraft writes them.
    let mut body = vec![0x08, 0x06, 0x10, 0x80, 0x00, 0x1a, 0x05];
    body.extend_from_slice(b"write");
    body.push(0x22);
    wire::write_varint(payload.len() as u64, &mut body);
    body.extend_from_slice(&payload);
    frame::write_header(body.len() as u32, &mut odd);
    odd.extend_from_slice(&body);
    node(dir, 0, &log(&entries))?;
    node(dir, 1, &odd)?;
    node(dir, 2, &log(&entries))?;
    Ok(())
}

fn committed_conflict(dir: &Path) -> io::Result<()> {
    let old = with(&[(7, 1, write("k7", "from-term-1"))]);
    let new = with(&[(7, 2, write("k7", "from-term-2"))]);
    let d = node(dir, 0, &log(&old))?;
    snapshot_file(
        &d,
        7,
        1,
        &[0, 1, 2],
        r#"{"k5":"v5","k6":"v6","k7":"from-term-1"}"#,
    )?;
    node(dir, 1, &log(&new))?;
    node(dir, 2, &log(&new))?;
    Ok(())
}

fn conf_peers(dir: &Path) -> io::Result<()> {
    let l = log(&base());
    node(dir, 0, &l)?;
    node(dir, 1, &l)?;
    let d = node(dir, 2, &l)?;
    let stranger = Peer {
        name: "ddd0004".into(),
        connection_string: "http://127.0.0.1:24004".into(),
    };
    let c = Conf {
        commit_index: 4,
        peers: vec![peer(0), stranger],
    };
    fs::write(d.join("conf"), conf::encode(&c))
}

fn membership(dir: &Path) -> io::Result<()> {
    let l = log(&base());
    let d = node(dir, 0, &l)?;
    snapshot_file(&d, 6, 0, &[0, 1], r#"{"k5":"v5","k6":"v6"}"#)?;
    fs::write(d.join("conf"), conf_of(0, 6, &[0, 1]))?;
    node(dir, 1, &l)?;
    node(dir, 2, &l)?;
    Ok(())
}

fn duplicate_name(dir: &Path) -> io::Result<()> {
    let l = log(&base());
    node(dir, 0, &l)?;
    node(dir, 1, &l)?;
    let d = node(dir, 2, &l)?;
    fs::write(d.join("name"), NAMES[1])?;
    fs::write(d.join("conf"), conf_of(1, 4, &[0, 1, 2]))
}

fn name_not_member(dir: &Path) -> io::Result<()> {
    let l = log(&base());
    for k in 0..3 {
        node(dir, k, &l)?;
    }
    let d = dir.join("node4");
    fs::create_dir_all(&d)?;
    fs::write(d.join("name"), "ddd0004")?;
    fs::write(d.join("log"), b"")
}

fn one_node(dir: &Path) -> io::Result<()> {
    node(dir, 0, &log(&base()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generation, README, trycmd cases, and the staleness test.

fn severity(code: &str) -> Option<Severity> {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, s, _)| *s)
}

/// The `verify` arguments of a fixture, relative to `fixtures/`; `made` is the fixture's dir.
fn args(code: &str, source: &Source, made: Option<&Path>) -> Vec<String> {
    match source {
        Source::Real(dirs) => dirs.iter().map(|d| (*d).to_string()).collect(),
        Source::Made(_, times) => {
            let mut nodes: Vec<String> = made
                .map(|m| {
                    fs::read_dir(m)
                        .unwrap()
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with("node"))
                        .collect()
                })
                .unwrap_or_default();
            nodes.sort();
            let once: Vec<String> = nodes
                .iter()
                .map(|n| format!("verify-cluster/{code}/{n}"))
                .collect();
            (0..*times).flat_map(|_| once.iter().cloned()).collect()
        }
    }
}

fn toml(code: &str, args: &[String]) -> String {
    let status = if severity(code) == Some(Severity::Error) {
        "status.code = 1\n"
    } else {
        ""
    };
    let args: Vec<String> = std::iter::once("verify".to_string())
        .chain(args.iter().cloned())
        .map(|a| format!("{a:?}"))
        .collect();
    format!(
        "bin.name = \"raftdump\"\nargs = [{}]\nfs.cwd = \"../../../fixtures\"\nbinary = true\n{status}",
        args.join(", ")
    )
}

/// The parent dir of a real fixture's nodes.
fn real_parent(dirs: &[&str]) -> String {
    Path::new(dirs[0])
        .parent()
        .map_or(String::new(), |p| p.display().to_string())
}

/// `- code: dir` for each code shown by a real fixture.
fn real_list() -> String {
    FIXTURES
        .iter()
        .filter_map(|(code, _, source)| match source {
            Source::Real(dirs) => Some(format!("- `{code}`: `fixtures/{}`\n", real_parent(dirs))),
            Source::Made(..) => None,
        })
        .collect()
}

fn readme() -> String {
    let mut s = format!(
        "# Cluster fixtures for `raftdump verify`\n\n\
         One per cross-node finding code. Generated by `tests/it/synthetic_cluster.rs` (raftdump's own\n\
         `LogWriter`, `conf::encode` and `snapshot::encode`); do not edit by hand. Regenerate with\n\
         `RAFTDUMP_BLESS=1 cargo test --test it synthetic_cluster`; the same test fails when these\n\
         files differ from what the generator makes. The golden case of each code is\n\
         `tests/cmd/verify/<code>.toml`, run inside `fixtures/`.\n\n\
         Where a real goraft fixture already shows a code it is used instead of a copy:\n\n\
         {}\n\
         `tests/cmd/verify/real-diverged-t2-conflicting-tail.toml` shows the other kind of uncommitted\n\
         tail (one that a majority has overwritten) on the same real cluster at t2.\n\n\
         Every other directory is a cluster of three nodes, `node1`..`node3`, named {}, {} and {},\n\
         with URLs http://127.0.0.1:24001..24003. Unless said otherwise each holds the base log (raft:join\n\
         of node1 at 1, raft:nop at 2, joins of node2 and node3 at 3 and 4, writes k5=v5 and k6=v6\n\
         at 5 and 6, all in term 0) and the conf goraft writes when it applies the join at 4:\n\
         commitIndex 4 and the two other members. Snapshots record their path relative to\n\
         `fixtures/`. Besides its code, every run but `cluster-not-compared` reports\n\
         `cluster-committed-prefix` (info).\n\n\
         | code | shows | how it was made |\n|---|---|---|\n",
        real_list(),
        NAMES[0],
        NAMES[1],
        NAMES[2]
    );
    for (code, how, source) in FIXTURES {
        let shows = CODES
            .iter()
            .find(|(c, _, _)| c == code)
            .map_or("", |(_, _, d)| d);
        let how = match source {
            Source::Real(dirs) => {
                let parent = Path::new(dirs[0])
                    .parent()
                    .map_or(PathBuf::new(), Path::to_path_buf);
                format!("`fixtures/{}`: {how}", parent.display())
            }
            Source::Made(..) => how.to_string(),
        };
        s.push_str(&format!(
            "| `{code}` | {shows} | {} |\n",
            how.replace('|', "\\|")
        ));
    }
    s
}

/// Builds one synthetic fixture into `parent/<code>`; `None` for a real one.
pub fn build(parent: &Path, code: &str) -> Option<PathBuf> {
    let (_, _, source) = FIXTURES
        .iter()
        .find(|(c, _, _)| *c == code)
        .expect("a fixture for the code");
    let Source::Made(builder, _) = source else {
        return None;
    };
    let d = parent.join(code);
    fs::create_dir_all(&d).unwrap();
    builder(&d).unwrap();
    Some(d)
}

#[test]
fn fixtures_are_generated_and_fresh() {
    let root = crate::fixtures().join("verify-cluster");
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd/verify");
    let bless = std::env::var_os("RAFTDUMP_BLESS").is_some_and(|v| v == "1");
    let tmp = tempfile::tempdir().unwrap();
    let mut stale = Vec::new();
    for (code, _, source) in FIXTURES {
        let made = build(tmp.path(), code);
        let toml = toml(code, &args(code, source, made.as_deref()));
        let committed = root.join(code);
        if bless {
            if let Some(made) = &made {
                let _ = fs::remove_dir_all(&committed);
                for (rel, bytes) in tree(made) {
                    let p = committed.join(rel);
                    fs::create_dir_all(p.parent().unwrap()).unwrap();
                    fs::write(p, bytes).unwrap();
                }
            }
            fs::write(cases.join(format!("{code}.toml")), &toml).unwrap();
            // trycmd keeps an expected-empty stderr in its own file.
            fs::write(cases.join(format!("{code}.stderr")), b"").unwrap();
        } else {
            if let Some(made) = &made {
                if !committed.is_dir() || tree(&committed) != tree(made) {
                    stale.push(format!("fixtures/verify-cluster/{code}"));
                }
            }
            if fs::read_to_string(cases.join(format!("{code}.toml"))).ok() != Some(toml) {
                stale.push(format!("tests/cmd/verify/{code}.toml"));
            }
        }
    }
    if bless {
        fs::write(root.join("README.md"), readme()).unwrap();
    } else {
        if fs::read_to_string(root.join("README.md")).ok() != Some(readme()) {
            stale.push("fixtures/verify-cluster/README.md".into());
        }
        // No committed fixture dir without a generator.
        for e in fs::read_dir(&root).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let made = FIXTURES
                .iter()
                .any(|(c, _, s)| *c == name && matches!(s, Source::Made(..)));
            if e.path().is_dir() && !made {
                stale.push(format!("fixtures/verify-cluster/{name} (no generator)"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale (run with RAFTDUMP_BLESS=1): {stale:?}"
    );
}

/// Every cluster code has a fixture; on it, the nodes' own checks find no error (the defect is
/// between the nodes) and the cluster check reports the code.
#[test]
fn every_cluster_code_has_a_fixture_that_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    for (code, _, _) in CODES {
        let (_, _, source) = FIXTURES
            .iter()
            .find(|(c, _, _)| c == code)
            .unwrap_or_else(|| panic!("no fixture for {code}"));
        let made = build(tmp.path(), code);
        let dirs: Vec<PathBuf> = args(code, source, made.as_deref())
            .iter()
            .map(
                |a| match a.strip_prefix(&format!("verify-cluster/{code}/")) {
                    Some(n) => made.as_ref().unwrap().join(n),
                    None => crate::fixtures().join(a),
                },
            )
            .collect();
        let nodes: Vec<_> = dirs
            .iter()
            .map(|d| raftdump::datadir::open(d).unwrap())
            .collect();
        for n in &nodes {
            let report = raftdump::check::node::check(n);
            assert!(
                report
                    .findings
                    .iter()
                    .all(|f| f.severity != Severity::Error),
                "{code}: {:#?}",
                report.findings
            );
        }
        let findings = raftdump::check::cluster::check(&nodes);
        assert!(
            findings.iter().any(|f| f.code == *code),
            "{code}: {findings:#?}"
        );
    }
}
