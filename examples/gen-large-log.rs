//! Writes a data dir of the large-1m shape (fixtures/goraft/large-1m/README.txt) with raftdump's
//! own LogWriter, for benchmarks: join@1, nop@2 (term 0), then N writes where write i sets
//! key "mkey" + 7-digit (i mod N/4) to "v" + 7-digit i + "-" padded with "x" to 16 bytes.
//!
//! With `seaweedfs` after WRITES it writes a SeaweedFS master's dir instead, in the seaweedfs/raft
//! dialect (proto3 frames, all in term 0 as a single master writes them, so no Term field): join
//! of 127.0.0.1:9333@1, nop@2, then N MaxVolumeId commands `{"maxVolumeId":i,"topologyId":"..."}`,
//! a conf and no name file.
//!
//! Usage: cargo run --release --example gen-large-log -- DIR [WRITES] [seaweedfs]   (default 1,000,000)

use std::io::Write as _;

use raftdump::model::Command;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: gen-large-log DIR [WRITES]"));
    let writes: u64 = args
        .next()
        .map_or(1_000_000, |s| s.parse().expect("WRITES is a number"));
    if args.next().as_deref() == Some("seaweedfs") {
        return master(&dir, writes);
    }
    let keys = (writes / 4).max(1);
    std::fs::create_dir_all(dir.join("snapshot"))?;
    std::fs::write(dir.join("name"), "9a53ec2")?;
    std::fs::write(dir.join("conf"), "{\"commitIndex\":1,\"peers\":[]}")?;
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join("log"))?);
    let mut w = raftdump::format::log::LogWriter::new(file);
    w.append(
        1,
        0,
        &Command::Join {
            name: "9a53ec2".into(),
            connection_string: "http://127.0.0.1:24001".into(),
        },
    )?;
    w.append(2, 0, &Command::Nop)?;
    for i in 0..writes {
        let key = format!("mkey{:07}", i % keys);
        let mut value = format!("v{i:07}-");
        while value.len() < 16 {
            value.push('x');
        }
        w.append(i + 3, 0, &Command::Write { key, value })?;
    }
    let bytes = w.bytes_written();
    w.into_inner().flush()?;
    eprintln!("{}: {} entries, {bytes} bytes", dir.display(), writes + 2);
    Ok(())
}

/// A SeaweedFS master's dir (see the module docs).
fn master(dir: &std::path::Path, commands: u64) -> std::io::Result<()> {
    use raftdump::format::dialect::Dialect;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("conf"), "{\"commitIndex\":1,\"peers\":[]}")?;
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join("log"))?);
    let mut w = raftdump::format::log::LogWriter::with_dialect(file, Dialect::Seaweedfs);
    w.append(
        1,
        0,
        &Command::Join {
            name: "127.0.0.1:9333".into(),
            connection_string: "http://127.0.0.1:9333".into(),
        },
    )?;
    w.append(2, 0, &Command::Nop)?;
    for i in 0..commands {
        let payload = format!(
            "{{\"maxVolumeId\":{},\"topologyId\":\"a1b2c3d4-topology\"}}\n",
            i + 1
        );
        w.append_raw(i + 3, 0, "MaxVolumeId", Some(payload.as_bytes()))?;
    }
    let bytes = w.bytes_written();
    w.into_inner().flush()?;
    eprintln!("{}: {} entries, {bytes} bytes", dir.display(), commands + 2);
    Ok(())
}
