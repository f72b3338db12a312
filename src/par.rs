//! Running work on several cores: the one module of raftdump, outside `serve`'s node, that starts
//! threads. Each shape of parallel work has one helper here:
//!
//! - [`in_order`]: a pass over a log in parts, the results handed back in file order. `verify`
//!   checks a large log in parts (`check::node`); `inspect --json` and `replay --json` write
//!   their long runs of lines in parts (`cli::write_in_parts`), each part formatted by the
//!   renderer on one thread.
//! - [`join`]: one piece of work split in two (`replay`'s sorts and run merges).
//! - [`queue`]: tasks of unequal size, some found while others run, on as many lanes as there
//!   are cores (`verify` of several nodes: a node's pass that finds where another node's log
//!   parts from its own queues the rest of that node's pass).
//! - [`Beside`]: a lane beside a streaming caller, given jobs one at a time and answering each
//!   in turn while the caller goes on (`replay`'s writes applied while the next batch is read).
//!
//! Renderers never start threads: the command layer runs their parts on lanes.
//!
//! Plain threads, not a pool: a pass starts a handful of threads once, and [`in_order`] takes the
//! results in order as they come with at most one finished result waiting per lane, which keeps
//! memory bounded however many parts there are. A thread that cannot be started leaves its work
//! to the calling thread; a panic on a lane surfaces in the caller as that panic.
//!
//! Why not rayon (measured in ARCHITECTURE.md, 'Parallelism'): it held the figures, but the
//! in-order hand-back with bounded memory, a lane count chosen by the caller (or a test), the
//! fallback when a thread cannot start and a lane that outlives a call are not its shapes, and
//! `join` alone does not pay for four more crates.

use std::collections::VecDeque;
use std::sync::{mpsc, Condvar, Mutex, MutexGuard};

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

/// Runs `a` on a second thread and `b` on this one, and returns both answers.
///
/// When no thread can be started, `a` runs here after `b`; a panic in `a` surfaces here as that
/// panic.
pub fn join<A, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B)
where
    A: Send,
{
    // The thread takes `a` from here; when it could not start, `a` is still here.
    let slot = Mutex::new(Some(a));
    let (here, there) = std::thread::scope(|s| {
        let thread = std::thread::Builder::new().spawn_scoped(s, || {
            let a = lock(&slot).take();
            a.map(|a| a())
        });
        let here = b();
        let there = match thread.map(|t| t.join()) {
            Ok(Ok(there)) => there,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => None,
        };
        (here, there)
    });
    let there = there.unwrap_or_else(|| match lock(&slot).take() {
        Some(a) => a(),
        None => unreachable!("join's second thread took its work and gave no answer"),
    });
    (there, here)
}

/// Runs every task on `lanes` lanes (the calling thread and `lanes - 1` scoped threads), each
/// lane taking the next task when it is done with one; a running task may add tasks with
/// [`Tasks::push`]. Returns when no task is left and none is running. Tasks start in the order
/// they were added.
///
/// For work in pieces of unequal size, some of them found while others run. A panic in a task
/// surfaces here as that panic, once the other lanes have run out of tasks.
pub fn queue<T: Send>(
    lanes: usize,
    tasks: impl IntoIterator<Item = T>,
    run: impl Fn(T, &Tasks<T>) + Sync,
) {
    let queue = Tasks {
        state: Mutex::new((tasks.into_iter().collect(), 0)),
        wake: Condvar::new(),
    };
    let lane = || {
        while let Some(task) = queue.pop() {
            // Counted as done even when it panics, so that no lane waits for it.
            let _done = Done(&queue);
            run(task, &queue);
        }
    };
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..lanes)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(s, lane).ok())
            .collect();
        lane();
        for h in helpers {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
    });
}

/// The tasks of a [`queue`], and how many are running: a lane waits while none is left but a
/// running one may still add one, and stops when neither is left.
pub struct Tasks<T> {
    state: Mutex<(VecDeque<T>, usize)>,
    wake: Condvar,
}

impl<T> Tasks<T> {
    /// Adds a task, run after those already waiting.
    pub fn push(&self, task: T) {
        lock(&self.state).0.push_back(task);
        self.wake.notify_one();
    }

    fn pop(&self) -> Option<T> {
        let mut s = lock(&self.state);
        loop {
            if let Some(t) = s.0.pop_front() {
                s.1 += 1;
                return Some(t);
            }
            if s.1 == 0 {
                return None;
            }
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Marks a task of a [`queue`] as done when dropped.
struct Done<'q, T>(&'q Tasks<T>);

impl<T> Drop for Done<'_, T> {
    fn drop(&mut self) {
        lock(&self.0.state).1 -= 1;
        self.0.wake.notify_all();
    }
}

/// A lane beside a streaming caller: a thread of its own that runs the jobs it is sent, one at a
/// time in the order sent, and sends back each one's answer, while the caller goes on with its
/// pass. Unlike the other helpers it outlives a call: the caller keeps it between the steps of
/// its pass, and it ends when dropped (after the job it is on).
#[derive(Debug)]
pub struct Beside<J, R> {
    to: mpsc::Sender<J>,
    from: mpsc::Receiver<R>,
    thread: std::thread::JoinHandle<()>,
}

impl<J: Send + 'static, R: Send + 'static> Beside<J, R> {
    /// Starts the lane, named `name`, running `f` on each job; `None` when no thread can be
    /// started (then the caller does the work itself).
    pub fn start(name: &str, mut f: impl FnMut(J) -> R + Send + 'static) -> Option<Self> {
        let (to, jobs) = mpsc::channel::<J>();
        let (done, from) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for job in jobs {
                    if done.send(f(job)).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Beside { to, from, thread })
    }

    /// Sends a job; gives it back when the lane has stopped.
    ///
    /// # Errors
    /// The job, when the lane is gone.
    pub fn send(&self, job: J) -> Result<(), J> {
        self.to.send(job).map_err(|e| e.0)
    }

    /// The answer to the oldest job not answered yet, waiting for it, and whether it had to
    /// wait; `None` when the lane stopped without answering (it panicked: [`Beside::end`] says
    /// why).
    pub fn answer(&self) -> Option<(R, bool)> {
        match self.from.try_recv() {
            Ok(r) => Some((r, false)),
            Err(mpsc::TryRecvError::Empty) => self.from.recv().ok().map(|r| (r, true)),
            Err(mpsc::TryRecvError::Disconnected) => None,
        }
    }

    /// Ends the lane once it is done with the job it is on; a panic on the lane surfaces here
    /// as that panic.
    pub fn end(self) {
        let Beside { to, from, thread } = self;
        drop((to, from));
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// The lock, also after a panic elsewhere (which the helpers pass on).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

    /// A panic's message.
    fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> Option<&str> {
        let owned = panic.downcast_ref::<String>().map(String::as_str);
        owned.or_else(|| panic.downcast_ref::<&str>().copied())
    }

    #[test]
    fn join_gives_both_answers_in_place() {
        let (mut low, mut high) = (vec![3, 1, 2], vec![9, 7, 8]);
        let (a, b) = join(
            || {
                high.sort_unstable();
                high.len()
            },
            || {
                low.sort_unstable();
                "here"
            },
        );
        assert_eq!((a, b), (3, "here"));
        assert_eq!((low, high), (vec![1, 2, 3], vec![7, 8, 9]));
        let panic = std::panic::catch_unwind(|| join(|| panic!("there"), || 1))
            .expect_err("the second thread's panic comes through");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"there"));
    }

    #[test]
    fn queue_runs_every_task_once_with_those_added_while_running() {
        for lanes in 1..5 {
            let done = Mutex::new(Vec::new());
            // Task n > 0 adds task n - 1 twice over: 2^(n+1) - 1 tasks in all from one task n.
            queue(lanes, [4u32, 2], |n, more| {
                if n > 0 {
                    more.push(n - 1);
                    more.push(n - 1);
                }
                lock(&done).push(n);
            });
            let mut done = done.into_inner().unwrap();
            done.sort_unstable();
            let mut want = Vec::new();
            for top in [4u32, 2] {
                for n in 0..=top {
                    want.extend(std::iter::repeat_n(n, 1 << (top - n)));
                }
            }
            want.sort_unstable();
            assert_eq!(done, want, "{lanes} lanes");
        }
        let panic = std::panic::catch_unwind(|| {
            queue(2, 0..10, |n, _| assert!(n != 7, "task 7"));
        })
        .expect_err("a task's panic comes through");
        assert_eq!(panic_text(&panic), Some("task 7"));
    }

    #[test]
    fn beside_answers_each_job_in_turn_and_ends_with_its_panic() {
        let lane = Beside::start("test-lane", |n: u64| {
            assert!(n != 99, "job 99");
            n * 2
        })
        .expect("a thread starts");
        for n in 0..20 {
            lane.send(n).unwrap();
            if n % 3 == 0 {
                lane.send(n + 1000).unwrap();
                assert_eq!(lane.answer().map(|a| a.0), Some(2 * n));
                assert_eq!(lane.answer().map(|a| a.0), Some(2 * (n + 1000)));
            } else {
                assert_eq!(lane.answer().map(|a| a.0), Some(2 * n));
            }
        }
        lane.send(99).unwrap();
        assert_eq!(lane.answer(), None, "the lane stopped on job 99");
        assert_eq!(lane.send(5), Err(5), "a stopped lane gives the job back");
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lane.end()))
            .expect_err("the lane's panic comes through");
        assert_eq!(panic_text(&panic), Some("job 99"));
    }

    /// The rule of the module docs: outside `serve`'s node (and test files), threads are
    /// started here only.
    #[test]
    fn only_par_and_the_node_start_threads() {
        fn walk(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    walk(&path, files);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    files.push(path);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        let mut starts = Vec::new();
        for path in &files {
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if rel == "par.rs" || rel.starts_with("node/") || rel.ends_with("tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let starts_one = [
                    "thread::spawn",
                    "spawn_scoped",
                    "thread::scope",
                    "thread::Builder",
                ]
                .iter()
                .any(|s| code.contains(s));
                if starts_one {
                    starts.push(format!("src/{rel}:{}", n + 1));
                }
            }
        }
        assert!(
            files.len() > 50,
            "{} files under {}",
            files.len(),
            src.display()
        );
        assert_eq!(starts, Vec::<String>::new(), "threads started outside par");
    }
}
