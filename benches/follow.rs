//! `inspect --follow` latency: how long after a frame is written its entry line comes out.
//!
//! ```text
//! cargo bench --bench follow [-- RATE SECONDS]     default 10000 appends/s for 10 s
//! ```
//!
//! It starts `raftdump inspect --follow --json` on a log in a temporary dir, appends one write
//! frame at a time (one `write(2)` each, paced to RATE per second) whose value is the wall-clock
//! time of the write in nanoseconds, and reads the follower's stdout line by line: the delay of
//! an entry is the time its line is read minus the time in its value. Prints p50, p99 and max,
//! and the rate reached. Figures: benches/README.md.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raftdump::format::log::{encode_frame, LogWriter};

const BIN: &str = env!("CARGO_BIN_EXE_raftdump");

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rate: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let total = rate * secs;
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let mut w = LogWriter::new(Vec::new());
    w.append_raw(1, 1, "raft:nop", None).unwrap();
    std::fs::write(&log, w.into_inner()).unwrap();
    let mut child = Command::new(BIN)
        .args(["inspect", "--follow", "--json"])
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut delays = Vec::with_capacity(total as usize);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let at = now_ns();
            let Some(i) = line.find("\"value\":\"") else {
                continue;
            };
            let rest = &line[i + 9..];
            let Some(sent) = rest.split('"').next().and_then(|v| v.parse::<u64>().ok()) else {
                continue;
            };
            delays.push(at.saturating_sub(sent));
            if delays.len() as u64 == total {
                break;
            }
        }
        delays
    });
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let mut frame = Vec::with_capacity(128);
    let start = Instant::now();
    for n in 0..total {
        let due = start + Duration::from_nanos(n * 1_000_000_000 / rate);
        while let Some(left) = due.checked_duration_since(Instant::now()) {
            if left > Duration::from_micros(200) {
                std::thread::sleep(left - Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
        }
        let payload = format!("{{\"key\":\"k{n}\",\"value\":\"{}\"}}\n", now_ns());
        frame.clear();
        encode_frame(n + 2, 1, b"write", Some(payload.as_bytes()), &mut frame);
        file.write_all(&frame).unwrap();
    }
    let wrote = start.elapsed();
    let mut delays = reader.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(delays.len() as u64, total, "every entry printed");
    delays.sort_unstable();
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p) as usize] as f64 / 1e6;
    println!(
        "inspect --follow: {total} appends in {:.2} s ({:.0}/s): delay p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        wrote.as_secs_f64(),
        total as f64 / wrote.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}
