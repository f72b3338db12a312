//! Writing a report's long run of lines (`inspect --json`'s entries, `replay --json`'s state)
//! formatted in parts on every core: the renderer formats one part on one thread, this module
//! runs the parts on lanes ([`crate::par::in_order`]) and writes them in order.

use std::io::{self, Write};
use std::sync::Mutex;

/// At most this many lanes format parts: the writing is one thread's, and more lanes than it
/// can keep up with only hold more finished parts in memory.
const MAX_LANES: usize = 4;

/// The lanes for a run of `parts` parts: one a core up to `MAX_LANES`, and one alone when
/// there are fewer than two parts a lane (a small output is not worth a thread).
pub fn lanes(parts: usize) -> usize {
    let lanes = crate::par::cores().min(MAX_LANES);
    if parts >= 2 * lanes {
        lanes
    } else {
        1
    }
}

/// Writes parts `0..parts` to `out` in order, each formatted by `format(i, buf)` into an empty
/// buffer on one of `lanes` lanes, and calls `written(i)` once part `i` is written. Each lane
/// has at most one finished part waiting, so memory stays bounded (a part's buffer a lane)
/// however many parts there are; written buffers go back to a pool to be reused.
///
/// # Errors
/// The first failed write; the lanes stop after the part they are on.
pub fn write_in_parts(
    out: &mut dyn Write,
    parts: usize,
    lanes: usize,
    format: impl Fn(usize, &mut Vec<u8>) + Sync,
    mut written: impl FnMut(usize),
) -> io::Result<()> {
    let pool = Mutex::new(Vec::<Vec<u8>>::new());
    let work = |i: usize| {
        let reused = pool.lock().ok().and_then(|mut p| p.pop());
        let mut buf = reused.unwrap_or_default();
        format(i, &mut buf);
        buf
    };
    crate::par::in_order(parts, lanes, work, |i, mut buf| {
        out.write_all(&buf)?;
        written(i);
        buf.clear();
        if let Ok(mut p) = pool.lock() {
            p.push(buf);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(i: usize, buf: &mut Vec<u8>) {
        for j in 0..(i % 7) * 100 {
            writeln!(buf, "part {i} line {j}").unwrap();
        }
    }

    #[test]
    fn parts_are_written_in_order_on_any_lanes() {
        let mut want = Vec::new();
        for i in 0..50 {
            part(i, &mut want);
        }
        for lanes in 1..5 {
            let (mut got, mut written) = (Vec::new(), Vec::new());
            write_in_parts(&mut got, 50, lanes, part, |i| written.push(i)).unwrap();
            assert!(got == want, "{lanes} lanes");
            assert_eq!(written, (0..50).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_failed_write_stops_the_lanes_and_is_returned() {
        /// Takes `room` bytes, then fails.
        struct Closed(usize);
        impl Write for Closed {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if b.len() > self.0 {
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"));
                }
                self.0 -= b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        // More parts than the lanes hold finished: a lane left blocked on a full hand-over
        // would keep the call from returning.
        for room in [0, 20_000] {
            let mut written = 0;
            let err = write_in_parts(&mut Closed(room), 1000, 3, part, |_| written += 1);
            assert_eq!(err.map_err(|e| e.kind()), Err(io::ErrorKind::BrokenPipe));
            assert!(written < 10, "{written} parts written into {room} bytes");
        }
    }
}
