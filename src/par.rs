//! Running a pass over a log in parts on several cores, the results handed back in file order.
//!
//! Every parallel pass over one log goes through [`in_order`]: `verify` checks a large log in
//! parts (`check::node`), and `inspect --json` renders its entry lines a stretch at a time. The
//! caller cuts the log into parts at frame boundaries; `in_order` computes each part's result
//! on one of its lanes and gives the results to the caller's thread one by one, part 0 first,
//! so whatever the caller builds from them is what a single pass in file order would build.
//!
//! Plain scoped threads, not a pool: a pass starts a handful of threads once, and the results
//! are taken in order as they come with at most one finished result waiting per lane, which
//! keeps memory bounded however many parts there are.

use std::sync::mpsc;

/// The cores this process may use (1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Computes `work(i)` for every part `i` in `0..parts` on `lanes` lanes and hands the results to
/// `take(i, result)` on the calling thread in the order `0, 1, 2, …`.
///
/// Lane 0 is the calling thread itself, which also takes every result; lane `l` (a scoped
/// thread) computes parts `l, l + lanes, …`. Each lane runs at most one part ahead of what was
/// taken. When `take` fails, the lanes stop after the part they are computing and the error is
/// returned. A lane that could not be started leaves its parts to the calling thread; a panic
/// on a lane surfaces as that panic here.
///
/// # Errors
/// The first error of `take`.
pub fn in_order<R, E>(
    parts: usize,
    lanes: usize,
    work: impl Fn(usize) -> R + Sync,
    mut take: impl FnMut(usize, R) -> Result<(), E>,
) -> Result<(), E>
where
    R: Send,
{
    let lanes = lanes.clamp(1, parts.max(1));
    if lanes == 1 {
        return (0..parts).try_for_each(|i| take(i, work(i)));
    }
    let work = &work;
    std::thread::scope(|s| {
        // Owned by this closure: returning early drops the receivers, which stops every lane at
        // its next send before the scope waits for it.
        let mut from: Vec<_> = (1..lanes)
            .map(|lane| {
                let (done, results) = mpsc::sync_channel::<R>(1);
                let thread = std::thread::Builder::new().spawn_scoped(s, move || {
                    for i in (lane..parts).step_by(lanes) {
                        if done.send(work(i)).is_err() {
                            return; // the caller stopped taking
                        }
                    }
                });
                thread.ok().map(|t| (results, Some(t)))
            })
            .collect();
        for i in 0..parts {
            let lane = i % lanes;
            let result = match from.get_mut(lane.wrapping_sub(1)) {
                Some(Some((results, thread))) => match results.recv() {
                    Ok(r) => r,
                    // The lane stopped without sending: it panicked (a bug); surface its panic.
                    Err(_) => match thread.take().map(|t| t.join()) {
                        Some(Err(panic)) => std::panic::resume_unwind(panic),
                        _ => unreachable!("a lane of in_order stopped without its results"),
                    },
                },
                _ => work(i),
            };
            take(i, result)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_order_whatever_the_lanes() {
        for lanes in 1..6 {
            for parts in [0, 1, 2, 5, 17] {
                let mut got = Vec::new();
                let r: Result<(), ()> = in_order(
                    parts,
                    lanes,
                    |i| i * 10,
                    |i, v| {
                        got.push((i, v));
                        Ok(())
                    },
                );
                assert_eq!(r, Ok(()));
                let want: Vec<_> = (0..parts).map(|i| (i, i * 10)).collect();
                assert_eq!(got, want, "{parts} parts on {lanes} lanes");
            }
        }
    }

    #[test]
    fn a_failed_take_stops_the_lanes_and_is_returned() {
        let computed = std::sync::atomic::AtomicUsize::new(0);
        let r = in_order(
            1000,
            3,
            |i| {
                computed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i
            },
            |i, _| if i == 4 { Err(i) } else { Ok(()) },
        );
        assert_eq!(r, Err(4));
        // Each lane runs at most one part ahead of what was taken, plus the one it was on.
        let n = computed.load(std::sync::atomic::Ordering::Relaxed);
        assert!(n <= 5 + 2 * 3, "{n} parts computed");
    }

    #[test]
    fn a_panic_on_a_lane_surfaces_in_the_caller() {
        let r = std::panic::catch_unwind(|| {
            let _ = in_order::<usize, ()>(
                6,
                2,
                |i| if i == 3 { panic!("part 3") } else { i },
                |_, _| Ok(()),
            );
        });
        let panic = r.expect_err("the lane's panic comes through");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"part 3"));
    }
}
