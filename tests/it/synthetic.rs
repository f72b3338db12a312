//! Synthetic one-defect data dirs under `fixtures/synthetic/`, written by raftdump's own
//! `LogWriter` (synthetic fixtures come from test code, not from checked-in files).
//!
//! `RAFTDUMP_BLESS=1 cargo test --test it synthetic` rewrites them; otherwise the test checks that
//! the committed files are byte-identical to what this code makes, so they can never drift.

use std::collections::BTreeMap;
use std::path::Path;

use raftdump::format::{conf, log::LogWriter, snapshot, wire};
use raftdump::model::{Command, Conf, Peer, Snapshot};

/// One directory's files: relative path -> bytes.
pub type Files = BTreeMap<&'static str, Vec<u8>>;

const NAME: &str = "2832bfa";

fn write(key: &str, value: &str) -> Command {
    Command::Write {
        key: key.into(),
        value: value.into(),
    }
}

/// The clean base log, one frame per element: join@1, nop@2, writes k1..k5 at 3..7 (term 0),
/// nop@8 and a write at 9 in term 1 - what a raftd node that restarted once writes.
pub fn base_frames() -> Vec<Vec<u8>> {
    let cmds: Vec<(u64, Command)> = vec![
        (
            0,
            Command::Join {
                name: NAME.into(),
                connection_string: "http://127.0.0.1:4001".into(),
            },
        ),
        (0, Command::Nop),
        (0, write("k1", "v1")),
        (0, write("k2", "v2")),
        (0, write("k3", "v3")),
        (0, write("k4", "v4")),
        (0, write("k5", "v5")),
        (1, Command::Nop),
        (1, write("k1", "v1-after-restart")),
    ];
    cmds.iter()
        .enumerate()
        .map(|(i, (term, c))| {
            let mut w = LogWriter::new(Vec::new());
            w.append(i as u64 + 1, *term, c).unwrap();
            w.into_inner()
        })
        .collect()
}

fn dir(log: Vec<u8>) -> Files {
    let mut f = Files::new();
    f.insert("log", log);
    f.insert("name", NAME.as_bytes().to_vec());
    f.insert(
        "conf",
        conf::encode(&Conf {
            commit_index: 1,
            peers: vec![],
        }),
    );
    f
}

fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// Every synthetic fixture: (directory name, what it shows, files).
pub fn all() -> Vec<(&'static str, &'static str, Files)> {
    let fr = base_frames();
    let clean = concat(&fr);
    let mut out = Vec::new();

    out.push((
        "clean",
        "the base: 9 entries, terms 0 and 1, nothing wrong",
        dir(clean.clone()),
    ));

    let mut torn_body = clean[..clean.len() - fr[8].len()].to_vec();
    torn_body.extend_from_slice(&fr[8][..fr[8].len() / 2]);
    out.push((
        "torn-body",
        "the last frame (index 9) cut in the middle of its body: a write cut short by a crash",
        dir(torn_body),
    ));

    let mut torn_header = clean.clone();
    torn_header.extend_from_slice(b"      2");
    out.push((
        "torn-header",
        "7 header bytes (\"      2\", no newline) after the last frame: goraft keeps them as a clean end",
        dir(torn_header),
    ));

    let mut hole = concat(&fr[..5]);
    hole.extend_from_slice(&[0u8; 50]);
    hole.extend_from_slice(&concat(&fr[5..]));
    out.push((
        "nul-hole",
        "50 zero bytes after index 5, then frames 6..9: goraft's truncate-then-append hole",
        dir(hole),
    ));

    let mut garbage = concat(&fr[..6]);
    garbage.extend_from_slice(b"CORRUPT!");
    garbage.extend_from_slice(&concat(&fr[6..]));
    out.push((
        "garbage",
        "\"CORRUPT!\" after index 6, then frames 7..9",
        dir(garbage),
    ));

    // A frame whose body has Index and Term but no CommandName.
    let mut missing = concat(&fr[..4]);
    let mut body = Vec::new();
    body.extend_from_slice(&[0x08, 0x05, 0x10, 0x00]);
    raftdump::format::frame::write_header(body.len() as u32, &mut missing);
    missing.extend_from_slice(&body);
    missing.extend_from_slice(&concat(&fr[5..]));
    out.push((
        "missing-required-field",
        "index 5's body lacks the required CommandName (field 3); frames 6..9 follow",
        dir(missing),
    ));

    // Index 5 with an extra field 5 (the July-2013 `Position`): Go accepts and keeps it.
    let mut unknown = concat(&fr[..4]);
    let mut body = Vec::new();
    let payload = raftdump::format::command::encode_write(b"k3", b"v3");
    wire::encode_entry(5, 0, b"write", Some(&payload), &mut body);
    body.extend_from_slice(&[0x28, 0x96, 0x01]);
    raftdump::format::frame::write_header(body.len() as u32, &mut unknown);
    unknown.extend_from_slice(&body);
    unknown.extend_from_slice(&concat(&fr[5..]));
    out.push((
        "unknown-field",
        "index 5 carries an unknown field 5 (varint 150): valid, but not what goraft writes",
        dir(unknown),
    ));

    // The July-2013 "%x\n" header on every frame.
    let mut unpadded = Vec::new();
    for f in &fr {
        let body = &f[9..];
        unpadded.extend_from_slice(format!("{:x}\n", body.len()).as_bytes());
        unpadded.extend_from_slice(body);
    }
    out.push((
        "unpadded-header",
        "every frame with the unpadded July-2013 \"%x\\n\" header (e.g. \"29\\n\")",
        dir(unpadded),
    ));

    let mut bad_crc = dir(clean.clone());
    let mut ss = snapshot::encode(&Snapshot {
        last_index: 9,
        last_term: 1,
        peers: Some(vec![Peer {
            name: NAME.into(),
            connection_string: "http://127.0.0.1:4001".into(),
        }]),
        state: Some(
            br#"{"k1":"v1-after-restart","k2":"v2","k3":"v3","k4":"v4","k5":"v5"}"#.to_vec(),
        ),
        path: "/var/lib/raftd/node1/snapshot/1_9.ss".into(),
    });
    ss[..8].copy_from_slice(b"deadbeef");
    bad_crc.insert("snapshot/1_9.ss", ss);
    out.push((
        "bad-snapshot-crc",
        "snapshot/1_9.ss whose \"%08x\" header is deadbeef, not the CRC-32 of its JSON",
        bad_crc,
    ));

    let mut beyond = dir(clean);
    beyond.insert(
        "conf",
        conf::encode(&Conf {
            commit_index: 42,
            peers: vec![],
        }),
    );
    out.push((
        "conf-commit-beyond-log",
        "conf commitIndex 42 while the log ends at index 9 (goraft's commitInfo panics)",
        beyond,
    ));
    out
}

fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn synthetic_fixtures_are_up_to_date() {
    let root = crate::fixtures().join("synthetic");
    let bless = std::env::var_os("RAFTDUMP_BLESS").is_some();
    let mut readme = String::from(
        "# Synthetic one-defect fixtures\n\nWritten by raftdump's own LogWriter in `tests/it/synthetic.rs`; \
         regenerate with `RAFTDUMP_BLESS=1 cargo test --test it synthetic` (a test fails when they drift).\n\
         Each directory is the clean 9-entry base (join@1, nop@2, writes k1..k5 at 3..7 in term 0, nop@8 and a \
         write at 9 in term 1; name 2832bfa; conf commitIndex 1) with exactly one defect:\n\n",
    );
    for (name, what, files) in all() {
        readme.push_str(&format!("- `{name}/`: {what}\n"));
        let d = root.join(name);
        let want: BTreeMap<String, Vec<u8>> =
            files.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if bless {
            let _ = std::fs::remove_dir_all(&d);
            for (rel, bytes) in &want {
                let p = d.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, bytes).unwrap();
            }
        }
        let have = read_tree(&d);
        assert!(
            have == want,
            "fixtures/synthetic/{name} is stale: rerun with RAFTDUMP_BLESS=1"
        );
    }
    let readme_path = root.join("README.md");
    if bless {
        std::fs::write(&readme_path, &readme).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&readme_path).unwrap(), readme);
}
