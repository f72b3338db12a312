//! In-process throughput of the format layer on large logs, against counting newlines (what
//! `wc -l` does) over the same bytes in the same run.
//!
//! Logs: a 1,000,002-entry log of the large-1m shape written by LogWriter in memory (73 MB), and
//! the real large-200k log when `RAFTDUMP_LARGE_200K` names its dir (the one holding `node1/`; see
//! fixtures/goraft/large-200k/README.txt).
//! Run: `cargo bench --bench decode`. See benches/README.md for whole-process figures.

use std::sync::LazyLock;

use divan::counter::BytesCount;
use divan::Bencher;
use raftdump::format::log::{LogReader, LogWriter};
use raftdump::model::Command;

fn main() {
    divan::main();
}

static LOG_1M: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut w = LogWriter::new(Vec::with_capacity(73_000_000));
    let join = Command::Join {
        name: "9a53ec2".into(),
        connection_string: "http://127.0.0.1:24001".into(),
    };
    w.append(1, 0, &join).unwrap();
    w.append(2, 0, &Command::Nop).unwrap();
    for i in 0..1_000_000u64 {
        let key = format!("mkey{:07}", i % 250_000);
        let value = format!("v{i:07}-xxxxxxx");
        w.append(i + 3, 0, &Command::Write { key, value }).unwrap();
    }
    w.into_inner()
});

static LOG_200K: LazyLock<Vec<u8>> = LazyLock::new(|| {
    std::env::var_os("RAFTDUMP_LARGE_200K")
        .map(|d| std::path::PathBuf::from(d).join("node1/log"))
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default()
});

fn logs() -> [(&'static str, &'static [u8]); 2] {
    [("large-1m-shape", &LOG_1M), ("large-200k", &LOG_200K)]
}

/// Framing + protobuf + command name, for every entry: what every subcommand pays at least.
fn decode_all(bytes: &[u8]) -> (u64, u64) {
    let (mut entries, mut writes) = (0u64, 0u64);
    for r in LogReader::new(bytes) {
        let e = r.expect("clean log");
        entries += 1;
        writes += u64::from(e.wire.name == b"write");
    }
    (entries, writes)
}

#[divan::bench(args = ["large-1m-shape", "large-200k"])]
fn decode_entries(b: Bencher, which: &str) {
    let bytes = logs().into_iter().find(|(n, _)| *n == which).unwrap().1;
    if bytes.is_empty() {
        return;
    }
    b.counter(BytesCount::of_slice(bytes))
        .bench(|| divan::black_box(decode_all(divan::black_box(bytes))));
}

/// The reference: count newline bytes over the same memory, as `wc -l` does.
#[divan::bench(args = ["large-1m-shape", "large-200k"])]
fn count_newlines(b: Bencher, which: &str) {
    let bytes = logs().into_iter().find(|(n, _)| *n == which).unwrap().1;
    if bytes.is_empty() {
        return;
    }
    b.counter(BytesCount::of_slice(bytes)).bench(|| {
        divan::black_box(bytes)
            .iter()
            .filter(|&&c| c == b'\n')
            .count()
    });
}

/// Decoding plus the command payload (JSON) of every entry: what replay and inspect pay.
#[divan::bench(args = ["large-1m-shape"])]
fn decode_entries_and_commands(b: Bencher, which: &str) {
    let bytes = logs().into_iter().find(|(n, _)| *n == which).unwrap().1;
    b.counter(BytesCount::of_slice(bytes)).bench(|| {
        let mut n = 0usize;
        for e in LogReader::new(bytes).flatten() {
            if let Command::Write { key, .. } = e.command() {
                n += key.len();
            }
        }
        divan::black_box(n)
    });
}
