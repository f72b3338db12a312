//! `inspect --follow` and `verify --follow`: the polling loops, stopped by SIGINT or SIGTERM
//! (exit status 0).
//!
//! `inspect --follow` polls the log every [`POLL`] (a `stat`, and a `pread` of what was
//! appended; see [`crate::follow`]). `verify --follow` stats the nodes' files every [`POLL`] and
//! runs the whole check again when they changed, at most once per `--settle`: its cost is one
//! `verify` per settle time while the log grows (about 0.3 s of CPU a run on a 73 MB log). A
//! finding is printed once, when two runs at least `--settle` apart both find it (or one run
//! and the files unchanged for `--settle` since), so that an append in progress is not
//! reported as a torn tail; its identity is its code, node, file, offset and index. Each check
//! maps the logs as `verify` does (see `datadir::LogBytes`): a truncation during a check can
//! raise SIGBUS. `inspect --follow` reads with `pread` only (the data dir is opened, and its log
//! mapped, just for the header).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{Format, Outcome, Ui};
use crate::check::{cluster, Finding};
use crate::datadir::{self, DataDir};
use crate::follow::Follower;
use crate::inspect::InspectOptions;
use crate::render::follow::FollowRender;
use crate::render::inspect::HumanStyle;
use crate::render::report;

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_millis(10);

/// `--settle MS`, shared by `inspect --follow` and `verify --follow`.
#[derive(Debug, Clone, clap::Args)]
pub struct SettleArgs {
    /// With --follow: how long damage at the end of the log must stay before it is reported
    /// (an append in progress leaves a frame incomplete for a moment), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "follow")]
    pub settle: u64,
}

impl SettleArgs {
    /// The settle time.
    pub fn get(&self) -> Duration {
        Duration::from_millis(self.settle)
    }
}

/// A flag set by SIGINT or SIGTERM.
fn stop_flag() -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    Ok(stop)
}

/// Runs `inspect --follow` on an opened data dir until a signal.
pub fn inspect(
    dd: DataDir,
    format: Format,
    opts: InspectOptions,
    settle: Duration,
    style: &HumanStyle,
    ui: &mut Ui,
) -> anyhow::Result<Outcome> {
    let stop = stop_flag()?;
    let mut render = FollowRender::new(format, &dd, opts);
    render.header(&mut ui.out, &dd, style)?;
    ui.out.flush()?;
    let mut follower = Follower::new(dd.log_path.clone(), dd.dialect(), settle);
    drop(dd);
    while !stop.load(Ordering::SeqCst) {
        let out = &mut ui.out;
        follower.poll(Instant::now(), &mut |ev| render.event(out, &ev))?;
        ui.out.flush()?;
        std::thread::sleep(POLL);
    }
    Ok(Outcome::Clean)
}

/// What a file looks like from outside: size, modification time, inode.
type Look = Option<(u64, SystemTime, u64)>;

fn look(p: &Path) -> Look {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(p).ok()?;
    Some((m.len(), m.modified().ok()?, m.ino()))
}

/// The files whose change calls for a new check: each path, its log, conf and snapshot dir.
fn looks(dirs: &[PathBuf]) -> Vec<Look> {
    dirs.iter()
        .flat_map(|d| {
            [d.clone(), d.join("log"), d.join("conf"), d.join("snapshot")]
                .into_iter()
                .map(|p| look(&p))
        })
        .collect()
}

/// A finding's identity: code, node, file, offset and index.
type Identity = (
    &'static str,
    Option<String>,
    Option<PathBuf>,
    Option<u64>,
    Option<u64>,
);

fn identity(f: &Finding) -> Identity {
    (f.code, f.node.clone(), f.file.clone(), f.offset, f.index)
}

/// Every finding of one check of the nodes.
fn check(
    dirs: &[PathBuf],
    dialect: crate::format::dialect::Choice,
) -> anyhow::Result<Vec<Finding>> {
    let nodes = dirs
        .iter()
        .map(|p| datadir::open_as(p, dialect))
        .collect::<Result<Vec<_>, _>>()?;
    let (reports, across) = cluster::check_all(&nodes);
    let mut all: Vec<Finding> = reports.into_iter().flat_map(|r| r.findings).collect();
    all.extend(across);
    Ok(all)
}

/// Runs `verify --follow` until a signal; see the module docs.
pub fn verify(
    dirs: &[PathBuf],
    dialect: crate::format::dialect::Choice,
    format: Format,
    settle: Duration,
    ui: &mut Ui,
) -> anyhow::Result<Outcome> {
    let stop = stop_flag()?;
    let mut printed: HashSet<Identity> = HashSet::new();
    let mut candidates: Vec<Finding> = Vec::new();
    let (mut seen, mut last_run): (Option<Vec<Look>>, Option<Instant>) = (None, None);
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let due = last_run.is_none_or(|t| now.duration_since(t) >= settle);
        let state = looks(dirs);
        if due && seen.as_ref() != Some(&state) {
            // Files still changing: check again, and print what the last check found too.
            let found = match check(dirs, dialect) {
                Ok(f) => f,
                // A file replaced under the check (a rename, a compaction): try again.
                Err(e) if seen.is_some() => {
                    log::debug!("verify --follow: {e:#}");
                    std::thread::sleep(POLL);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let before: HashSet<Identity> = candidates.iter().map(identity).collect();
            for f in found.iter().filter(|f| before.contains(&identity(f))) {
                print_new(f, &mut printed, format, ui)?;
            }
            (candidates, seen, last_run) = (found, Some(state), Some(now));
        } else if due && !candidates.is_empty() {
            // Unchanged for the settle time: the last check's findings stand.
            for f in std::mem::take(&mut candidates) {
                print_new(&f, &mut printed, format, ui)?;
            }
        }
        ui.out.flush()?;
        std::thread::sleep(POLL);
    }
    Ok(Outcome::Clean)
}

fn print_new(
    f: &Finding,
    printed: &mut HashSet<Identity>,
    format: Format,
    ui: &mut Ui,
) -> std::io::Result<()> {
    if !printed.insert(identity(f)) {
        return Ok(());
    }
    match format {
        Format::Json => report::finding_json(&mut ui.out, f),
        Format::Human => report::finding_human(&mut ui.out, f, ui.color),
    }
}
