//! The one-defect data dirs under `fixtures/verify/<code>/`, one per finding code of `verify`,
//! written by raftdump's own `LogWriter` (a few are cut or patched copies of a real goraft dir).
//!
//! `RAFTDUMP_BLESS=1 cargo test --test it synthetic_verify` (re)creates them, their
//! `fixtures/verify/README.md` and the trycmd cases `tests/cmd/verify/<code>.toml`; without it the
//! test checks that the committed files are byte-identical to what the generator makes.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use raftdump::check::codes::CODES;
use raftdump::check::Severity;
use raftdump::format::dialect::Dialect;
use raftdump::format::log::{LogReader, LogWriter};
use raftdump::format::{command, conf, frame, snapshot, wire};
use raftdump::model::{Command, Conf, Peer, Snapshot};

/// The synthetic node's name and address.
pub const NAME: &str = "5a1e7c0";
const URL: &str = "http://127.0.0.1:4001";

type Builder = fn(&Path) -> io::Result<()>;

/// Every fixture: `(dir name = finding code, how it was made, builder)`.
pub const FIXTURES: &[(&str, &str, Builder)] = &[
    ("log-torn-tail", "a copy of goraft/single-node/node1 with its log cut at byte 850, inside the last frame (index 15, at byte 820)", torn_tail),
    ("log-nul-hole", "a copy of goraft/single-node/node1 with 40 zero bytes inserted at byte 568, before the frame of index 11; `repair --salvage` restores the original log byte for byte", nul_hole),
    ("log-garbage", "`CORRUPT!` inserted between the frames of index 4 and 5", garbage),
    ("log-bad-entry", "a frame with an empty body (`       0\\n`) inserted between the frames of index 4 and 5", bad_entry),
    ("log-commit-index-prefix", "the July-2013 commit-index prefix `       6\\n` before the base log", commit_index_prefix),
    ("header-extra-spaces", "the nop at index 2 framed with 10 header characters (`         e\\n`)", |d| header(d, |n| format!("  {n:>8x}\n"))),
    ("header-unpadded", "the nop at index 2 framed with the 2013 header `e\\n`", |d| header(d, |n| format!("{n:x}\n"))),
    ("header-uppercase", "the nop at index 2 framed with `       E\\n`", |d| header(d, |n| format!("{n:>8X}\n"))),
    ("header-leading-zeros", "the nop at index 2 framed with `0000000e\\n`", |d| header(d, |n| format!("{n:08x}\n"))),
    ("wire-unknown-field", "the write at index 3 with field 5 (the July-2013 Position) appended", |d| body(d, |b| b.extend_from_slice(&[0x28, 0x07]))),
    ("wire-duplicate-field", "the write at index 3 with its Command field written twice", wire_duplicate),
    ("wire-out-of-order", "the write at index 3 with Term written before Index", wire_out_of_order),
    ("wire-invalid-utf8", "an entry at index 7 whose CommandName is `wr\\xffte` (also an unknown command)", wire_invalid_utf8),
    ("wire-zero-written", "a SeaweedFS master's log (proto3, by `LogWriter::with_dialect(Seaweedfs)`: join of 127.0.0.1:9333 at 1, nop at 2, MaxVolumeId 1..4 at 3..6, term 0) with conf and no name file, whose nop at index 2 has its zero Term written (`10 00`), as only a proto2 writer does", wire_zero_written),
    ("dialect-conflict", "the SeaweedFS master's log of `wire-zero-written` as the fork writes it, in a dir with a name file (raftd writes one; a master does not), holding the master's name", dialect_conflict),
    ("index-gap", "the base log without index 5", index_gap),
    ("index-duplicate", "the base log with the entry at index 6 written twice", index_duplicate),
    ("term-decrease", "a nop at index 5 in term 1, then a write at index 6 in term 0", term_decrease),
    ("log-first-index", "a log starting at index 3 and no snapshot", first_index),
    ("unknown-command", "an `etcd:set` entry at index 7", unknown_command),
    ("command-invalid", "a write at index 7 whose key is the number 1", command_invalid),
    ("command-non-canonical", "a write at index 7 whose JSON has a space after a colon", command_non_canonical),
    ("write-replacement-char", "a write at index 7 of the Latin-1 bytes `caf\\xe9`, which Go's encoder stored as `caf\\ufffd`", replacement_char),
    ("join-empty-name", "a raft:join at index 7 with the payload `null\\n` (raftd's POST /join quirk)", join_empty_name),
    ("join-duplicate", "a second raft:join of the node itself at index 7", join_duplicate),
    ("snapshot-crc", "snapshot/0_6.ss whose CRC header has its first digit changed", |d| snap(d, SnapKind::BadCrc)),
    ("snapshot-invalid", "snapshot/0_6.ss holding `not a snapshot`", |d| snap(d, SnapKind::Invalid)),
    ("snapshot-name-mismatch", "snapshot/0_5.ss whose JSON says lastIndex 6", |d| snap(d, SnapKind::NameMismatch)),
    ("snapshot-path-mismatch", "snapshot/0_6.ss whose recorded path ends in 0_9.ss", |d| snap(d, SnapKind::PathMismatch)),
    ("snapshot-path-moved", "snapshot/0_6.ss recorded at /var/lib/raftd/node1/snapshot/0_6.ss", |d| snap(d, SnapKind::Moved)),
    ("snapshot-goraft-choice", "a 10-entry log with snapshot/0_9.ss and snapshot/0_10.ss: goraft's string sort picks 0_9.ss (also an orphan)", |d| snap(d, SnapKind::Choice)),
    ("snapshot-orphan", "snapshot/0_4.ss next to the newer snapshot/0_6.ss", |d| snap(d, SnapKind::Orphan)),
    ("snapshot-stray-file", "snapshot/.DS_Store next to snapshot/0_6.ss", |d| snap(d, SnapKind::Stray)),
    ("snapshot-log-mismatch", "snapshot/1_6.ss (lastTerm 1) while the log's entry at index 6 has term 0", |d| snap(d, SnapKind::LogMismatch)),
    ("conf-invalid", "conf cut short: `{\"commitIndex\":1,\"peers\":[`", conf_invalid),
    ("conf-commit-beyond-log", "conf commitIndex 99 for a 6-entry log", conf_beyond),
    ("conf-peers-mismatch", "conf lists a peer b0b0b0b that never joined", conf_peers),
    ("name-not-joined", "name ffff000 while the log's only join is for 5a1e7c0 (no conf)", name_not_joined),
    ("name-trailing-newline", "the name file holds `5a1e7c0\\n`", |d| name_file(d, b"5a1e7c0\n")),
    ("name-invalid", "an empty name file", |d| name_file(d, b"")),
    ("state-term-beyond-log", "the base log (conf commitIndex 6) with a raftdump-state of currentTerm 2^64-1, what one forged AppendEntries left on every node", state_term_beyond),
    ("leftover-conf-tmp", "a conf.tmp next to conf", leftover_conf_tmp),
    ("leftover-log-new", "a log.new holding the last two frames", leftover_log_new),
    ("file-unreadable", "conf is a directory (holding .keep), so it cannot be read as a file", unreadable),
    ("findings-suppressed", "25 nops framed with uppercase headers: 20 header-uppercase findings are listed, the rest counted", suppressed),
];

// ---------------------------------------------------------------------------------------------
// Building blocks.

fn join_self() -> Command {
    Command::Join {
        name: NAME.into(),
        connection_string: URL.into(),
    }
}

fn write(i: u64) -> Command {
    Command::Write {
        key: format!("k{i}"),
        value: format!("v{i}"),
    }
}

/// The base log's entries: join (self) at 1, nop at 2, writes k3..kN at 3..N, all term 0.
fn entries(n: u64) -> Vec<(u64, u64, Command)> {
    let mut out = vec![(1, 0, join_self()), (2, 0, Command::Nop)];
    out.extend((3..=n).map(|i| (i, 0, write(i))));
    out
}

fn frames(entries: &[(u64, u64, Command)]) -> Vec<Vec<u8>> {
    entries
        .iter()
        .map(|(i, t, c)| {
            let mut w = LogWriter::new(Vec::new());
            w.append(*i, *t, c).expect("encodable command");
            w.into_inner()
        })
        .collect()
}

fn base_log() -> Vec<u8> {
    frames(&entries(6)).concat()
}

fn conf_bytes(commit: u64, peers: Vec<Peer>) -> Vec<u8> {
    conf::encode(&Conf {
        commit_index: commit,
        peers,
    })
}

/// A node dir: name, conf (commitIndex 1, no peers) and the given log.
fn node(dir: &Path, log: &[u8]) -> io::Result<()> {
    fs::write(dir.join("name"), NAME)?;
    fs::write(dir.join("conf"), conf_bytes(1, Vec::new()))?;
    fs::write(dir.join("log"), log)
}

fn raw_frame(header: String, body: &[u8]) -> Vec<u8> {
    let mut out = header.into_bytes();
    out.extend_from_slice(body);
    out
}

fn entry_body(index: u64, term: u64, name: &[u8], payload: Option<&[u8]>) -> Vec<u8> {
    let mut b = Vec::new();
    wire::encode_entry(index, term, name, payload, &mut b);
    b
}

fn real(file: &str) -> io::Result<Vec<u8>> {
    fs::read(
        crate::fixtures()
            .join("goraft/single-node/node1")
            .join(file),
    )
}

fn real_node(dir: &Path, log: &[u8]) -> io::Result<()> {
    fs::write(dir.join("name"), real("name")?)?;
    fs::write(dir.join("conf"), real("conf")?)?;
    fs::write(dir.join("log"), log)
}

/// The base log with `extra` inserted before the frame of index 5.
fn spliced(extra: &[u8]) -> Vec<u8> {
    let f = frames(&entries(6));
    let mut log = f[..4].concat();
    log.extend_from_slice(extra);
    log.extend_from_slice(&f[4..].concat());
    log
}

// ---------------------------------------------------------------------------------------------
// The builders.

fn torn_tail(d: &Path) -> io::Result<()> {
    real_node(d, &real("log")?[..850])
}

fn nul_hole(d: &Path) -> io::Result<()> {
    let log = real("log")?;
    let mut holed = log[..568].to_vec();
    holed.extend_from_slice(&[0; 40]);
    holed.extend_from_slice(&log[568..]);
    real_node(d, &holed)
}

fn garbage(d: &Path) -> io::Result<()> {
    node(d, &spliced(b"CORRUPT!"))
}

fn bad_entry(d: &Path) -> io::Result<()> {
    node(d, &spliced(b"       0\n"))
}

fn commit_index_prefix(d: &Path) -> io::Result<()> {
    let mut log = b"       6\n".to_vec();
    log.extend_from_slice(&base_log());
    node(d, &log)
}

/// The base log with the nop at index 2 framed by `header(body length)`.
fn header(d: &Path, header: fn(usize) -> String) -> io::Result<()> {
    let f = frames(&entries(6));
    let body = entry_body(2, 0, b"raft:nop", None);
    let mut log = f[0].clone();
    log.extend_from_slice(&raw_frame(header(body.len()), &body));
    log.extend_from_slice(&f[2..].concat());
    node(d, &log)
}

/// The base log with the write at index 3 re-encoded as `edit` makes its body.
fn body(d: &Path, edit: fn(&mut Vec<u8>)) -> io::Result<()> {
    let f = frames(&entries(6));
    let payload = command::encode_write(b"k3", b"v3");
    let mut b = entry_body(3, 0, b"write", Some(&payload));
    edit(&mut b);
    let mut log = f[..2].concat();
    let mut h = Vec::new();
    frame::write_header(b.len() as u32, &mut h);
    log.extend_from_slice(&h);
    log.extend_from_slice(&b);
    log.extend_from_slice(&f[3..].concat());
    node(d, &log)
}

fn wire_duplicate(d: &Path) -> io::Result<()> {
    body(d, |b| {
        let payload = command::encode_write(b"k3", b"v3");
        b.push(0x22);
        wire::write_varint(payload.len() as u64, b);
        b.extend_from_slice(&payload);
    })
}

fn wire_out_of_order(d: &Path) -> io::Result<()> {
    body(d, |b| {
        // 08 03 10 00 ... -> 10 00 08 03 ...
        b[..4].copy_from_slice(&[0x10, 0x00, 0x08, 0x03]);
    })
}

fn append_raw(d: &Path, index: u64, name: &str, payload: Option<&[u8]>) -> io::Result<()> {
    let mut w = LogWriter::new(base_log());
    w.append_raw(index, 0, name, payload)?;
    node(d, &w.into_inner())
}

/// A SeaweedFS master's log, as the seaweedfs/raft fork writes it (proto3, term 0).
fn master_log() -> Vec<u8> {
    let mut w = LogWriter::with_dialect(Vec::new(), Dialect::Seaweedfs);
    let join = Command::Join {
        name: "127.0.0.1:9333".into(),
        connection_string: "http://127.0.0.1:9333".into(),
    };
    w.append(1, 0, &join).unwrap();
    w.append(2, 0, &Command::Nop).unwrap();
    for i in 1..=4u64 {
        let p = format!("{{\"maxVolumeId\":{i},\"topologyId\":\"t1\"}}\n");
        w.append_raw(2 + i, 0, "MaxVolumeId", Some(p.as_bytes()))
            .unwrap();
    }
    w.into_inner()
}

fn wire_zero_written(d: &Path) -> io::Result<()> {
    let log = master_log();
    let (start, end) = frame_span(&log, 2, Dialect::Seaweedfs);
    let mut out = log[..start].to_vec();
    let body = b"\x08\x02\x10\x00\x1a\x08raft:nop";
    out.extend_from_slice(&raw_frame(format!("{:>8x}\n", body.len()), body));
    out.extend_from_slice(&log[end..]);
    fs::write(d.join("conf"), conf_bytes(1, Vec::new()))?;
    fs::write(d.join("log"), out)
}

fn dialect_conflict(d: &Path) -> io::Result<()> {
    fs::write(d.join("name"), "127.0.0.1:9333")?;
    fs::write(d.join("conf"), conf_bytes(1, Vec::new()))?;
    fs::write(d.join("log"), master_log())
}

/// The byte range of the frame of `index` in `log`.
fn frame_span(log: &[u8], index: u64, dialect: Dialect) -> (usize, usize) {
    LogReader::with_dialect(log, dialect)
        .flatten()
        .find(|e| e.index() == index)
        .map(|e| (e.offset as usize, e.end() as usize))
        .unwrap()
}

fn wire_invalid_utf8(d: &Path) -> io::Result<()> {
    let b = entry_body(7, 0, b"wr\xffte", Some(b"{}\n"));
    let mut log = base_log();
    frame::write_header(b.len() as u32, &mut log);
    log.extend_from_slice(&b);
    node(d, &log)
}

fn index_gap(d: &Path) -> io::Result<()> {
    let mut e = entries(6);
    e.remove(4);
    node(d, &frames(&e).concat())
}

fn index_duplicate(d: &Path) -> io::Result<()> {
    let mut e = entries(6);
    e.push((6, 0, write(6)));
    node(d, &frames(&e).concat())
}

fn term_decrease(d: &Path) -> io::Result<()> {
    let mut e = entries(4);
    e.push((5, 1, Command::Nop));
    e.push((6, 0, write(6)));
    node(d, &frames(&e).concat())
}

fn first_index(d: &Path) -> io::Result<()> {
    node(d, &frames(&entries(6)[2..]).concat())
}

fn unknown_command(d: &Path) -> io::Result<()> {
    append_raw(d, 7, "etcd:set", Some(b"{\"key\":\"a\"}\n"))
}

fn command_invalid(d: &Path) -> io::Result<()> {
    append_raw(d, 7, "write", Some(b"{\"key\":1,\"value\":\"v7\"}\n"))
}

fn command_non_canonical(d: &Path) -> io::Result<()> {
    append_raw(d, 7, "write", Some(b"{\"key\": \"k7\",\"value\":\"v7\"}\n"))
}

fn replacement_char(d: &Path) -> io::Result<()> {
    let payload = command::encode_write(b"k7", b"caf\xe9");
    append_raw(d, 7, "write", Some(&payload))
}

fn join_empty_name(d: &Path) -> io::Result<()> {
    append_raw(d, 7, "raft:join", Some(b"null\n"))
}

fn join_duplicate(d: &Path) -> io::Result<()> {
    let mut w = LogWriter::new(base_log());
    w.append(7, 0, &join_self())?;
    node(d, &w.into_inner())
}

enum SnapKind {
    BadCrc,
    Invalid,
    NameMismatch,
    PathMismatch,
    Moved,
    Choice,
    Orphan,
    Stray,
    LogMismatch,
}

/// The state a raftd-like state machine would save after `n` entries of the base log.
fn state(n: u64) -> Vec<u8> {
    let kv: BTreeMap<String, String> = (3..=n)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    serde_json::to_vec(&kv).expect("a map of strings")
}

fn snapshot_file(d: &Path, file: &str, index: u64, term: u64, recorded: Option<&str>) -> Vec<u8> {
    let dir_name = d
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = recorded.map_or_else(
        || format!("verify/{dir_name}/snapshot/{file}"),
        str::to_string,
    );
    snapshot::encode(&Snapshot {
        last_index: index,
        last_term: term,
        peers: Some(vec![Peer {
            name: NAME.into(),
            connection_string: URL.into(),
        }]),
        state: Some(state(index)),
        path,
    })
}

fn snap(d: &Path, kind: SnapKind) -> io::Result<()> {
    let s = d.join("snapshot");
    fs::create_dir_all(&s)?;
    let entries_n = if matches!(kind, SnapKind::Choice) {
        10
    } else {
        6
    };
    node(d, &frames(&entries(entries_n)).concat())?;
    let put = |file: &str, bytes: Vec<u8>| fs::write(s.join(file), bytes);
    match kind {
        SnapKind::BadCrc => {
            let mut b = snapshot_file(d, "0_6.ss", 6, 0, None);
            b[0] = if b[0] == b'0' { b'1' } else { b'0' };
            put("0_6.ss", b)
        }
        SnapKind::Invalid => put("0_6.ss", b"not a snapshot".to_vec()),
        SnapKind::NameMismatch => put("0_5.ss", snapshot_file(d, "0_5.ss", 6, 0, None)),
        SnapKind::PathMismatch => {
            let dir_name = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let recorded = format!("verify/{dir_name}/snapshot/0_9.ss");
            put("0_6.ss", snapshot_file(d, "0_6.ss", 6, 0, Some(&recorded)))
        }
        SnapKind::Moved => put(
            "0_6.ss",
            snapshot_file(
                d,
                "0_6.ss",
                6,
                0,
                Some("/var/lib/raftd/node1/snapshot/0_6.ss"),
            ),
        ),
        SnapKind::Choice => {
            put("0_9.ss", snapshot_file(d, "0_9.ss", 9, 0, None))?;
            put("0_10.ss", snapshot_file(d, "0_10.ss", 10, 0, None))
        }
        SnapKind::Orphan => {
            put("0_4.ss", snapshot_file(d, "0_4.ss", 4, 0, None))?;
            put("0_6.ss", snapshot_file(d, "0_6.ss", 6, 0, None))
        }
        SnapKind::Stray => {
            put(".DS_Store", b"\x00\x00\x00\x01Bud1".to_vec())?;
            put("0_6.ss", snapshot_file(d, "0_6.ss", 6, 0, None))
        }
        SnapKind::LogMismatch => put("1_6.ss", snapshot_file(d, "1_6.ss", 6, 1, None)),
    }
}

fn conf_invalid(d: &Path) -> io::Result<()> {
    node(d, &base_log())?;
    fs::write(d.join("conf"), b"{\"commitIndex\":1,\"peers\":[")
}

fn conf_beyond(d: &Path) -> io::Result<()> {
    node(d, &base_log())?;
    fs::write(d.join("conf"), conf_bytes(99, Vec::new()))
}

fn state_term_beyond(d: &Path) -> io::Result<()> {
    node(d, &base_log())?;
    fs::write(d.join("conf"), conf_bytes(6, Vec::new()))?;
    fs::write(
        d.join("raftdump-state"),
        format!("{{\"currentTerm\":{},\"votedFor\":null}}\n", u64::MAX),
    )
}

fn conf_peers(d: &Path) -> io::Result<()> {
    node(d, &base_log())?;
    let peer = Peer {
        name: "b0b0b0b".into(),
        connection_string: "http://127.0.0.1:4002".into(),
    };
    fs::write(d.join("conf"), conf_bytes(1, vec![peer]))
}

fn name_not_joined(d: &Path) -> io::Result<()> {
    fs::write(d.join("name"), "ffff000")?;
    fs::write(d.join("log"), base_log())
}

fn name_file(d: &Path, name: &[u8]) -> io::Result<()> {
    node(d, &base_log())?;
    fs::write(d.join("name"), name)
}

fn leftover_conf_tmp(d: &Path) -> io::Result<()> {
    node(d, &base_log())?;
    fs::write(d.join("conf.tmp"), conf_bytes(1, Vec::new()))
}

fn leftover_log_new(d: &Path) -> io::Result<()> {
    node(d, &base_log())?;
    fs::write(d.join("log.new"), frames(&entries(6))[4..].concat())
}

fn unreadable(d: &Path) -> io::Result<()> {
    fs::write(d.join("name"), NAME)?;
    fs::write(d.join("log"), base_log())?;
    fs::create_dir_all(d.join("conf"))?;
    fs::write(d.join("conf/.keep"), b"")
}

fn suppressed(d: &Path) -> io::Result<()> {
    let mut log = frames(&entries(2))[0].clone();
    for i in 2..=26 {
        let b = entry_body(i, 0, b"raft:nop", None);
        log.extend_from_slice(&raw_frame(format!("{:>8X}\n", b.len()), &b));
    }
    node(d, &log)
}

// ---------------------------------------------------------------------------------------------
// Generation, README, trycmd cases, and the staleness test.

fn readme() -> String {
    let mut s = String::from(
        "# One-defect fixtures for `raftdump verify` and `raftdump repair`\n\n\
         Generated by `tests/it/synthetic_verify.rs` (raftdump's own `LogWriter`, `conf::encode` and\n\
         `snapshot::encode`); do not edit by hand. Regenerate with\n\
         `RAFTDUMP_BLESS=1 cargo test --test it synthetic_verify`; the same test fails when these\n\
         files differ from what the generator makes.\n\n\
         Each directory is named after the finding code it shows. Unless said otherwise it is a\n\
         node named 5a1e7c0 whose log is the base log: raft:join of itself at index 1, raft:nop at 2,\n\
         writes k3=v3 .. k6=v6 at 3..6, all in term 0, with conf `{\"commitIndex\":1,\"peers\":[]}`.\n\
         Snapshots record their path relative to `fixtures/` (the goldens run there).\n\n\
         | directory | shows | how it was made |\n|---|---|---|\n",
    );
    for (code, how, _) in FIXTURES {
        let shows = CODES
            .iter()
            .find(|(c, _, _)| c == code)
            .map_or("", |(_, _, d)| d);
        s.push_str(&format!(
            "| `{code}` | {shows} | {} |\n",
            how.replace('|', "\\|")
        ));
    }
    s
}

fn toml(code: &str) -> String {
    let sev = CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, s, _)| *s);
    let status = if sev == Some(Severity::Error) {
        "status.code = 1\n"
    } else {
        ""
    };
    format!("bin.name = \"raftdump\"\nargs = [\"verify\", \"verify/{code}\"]\nfs.cwd = \"../../../fixtures\"\nbinary = true\n{status}")
}

/// Every file under `dir`, relative, with its bytes.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// Builds one fixture into `parent/<code>`.
pub fn build(parent: &Path, code: &str) -> PathBuf {
    let (_, _, builder) = FIXTURES
        .iter()
        .find(|(c, _, _)| *c == code)
        .expect("a fixture for the code");
    let d = parent.join(code);
    fs::create_dir_all(&d).unwrap();
    builder(&d).unwrap();
    d
}

#[test]
fn fixtures_are_generated_and_fresh() {
    let root = crate::fixtures().join("verify");
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd/verify");
    let bless = std::env::var_os("RAFTDUMP_BLESS").is_some_and(|v| v == "1");
    let tmp = tempfile::tempdir().unwrap();
    let mut stale = Vec::new();
    for (code, _, _) in FIXTURES {
        let made = tree(&build(tmp.path(), code));
        let committed = root.join(code);
        if bless {
            let _ = fs::remove_dir_all(&committed);
            for (rel, bytes) in &made {
                let p = committed.join(rel);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(p, bytes).unwrap();
            }
            fs::create_dir_all(&cases).unwrap();
            fs::write(cases.join(format!("{code}.toml")), toml(code)).unwrap();
            // trycmd keeps an expected-empty stderr in its own file.
            fs::write(cases.join(format!("{code}.stderr")), b"").unwrap();
        } else {
            if !committed.is_dir() || tree(&committed) != made {
                stale.push(format!("fixtures/verify/{code}"));
            }
            if fs::read_to_string(cases.join(format!("{code}.toml"))).ok() != Some(toml(code)) {
                stale.push(format!("tests/cmd/verify/{code}.toml"));
            }
        }
    }
    if bless {
        fs::write(root.join("README.md"), readme()).unwrap();
    } else if fs::read_to_string(root.join("README.md")).ok() != Some(readme()) {
        stale.push("fixtures/verify/README.md".into());
    }
    // No committed fixture dir without a generator.
    if !bless {
        for e in fs::read_dir(&root).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && !FIXTURES.iter().any(|(c, _, _)| *c == name) {
                stale.push(format!("fixtures/verify/{name} (no generator)"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale (run with RAFTDUMP_BLESS=1): {stale:?}"
    );
}

#[test]
fn every_node_code_has_a_fixture_that_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    for (code, _, _) in CODES {
        assert!(
            FIXTURES.iter().any(|(c, _, _)| c == code),
            "no fixture for {code}"
        );
        let d = build(tmp.path(), code);
        let dir = raftdump::datadir::open(&d).unwrap();
        let report = raftdump::check::node::check(&dir);
        assert!(
            report.findings.iter().any(|f| f.code == *code),
            "{code}: {:#?}",
            report.findings
        );
    }
}
