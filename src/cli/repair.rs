//! `raftdump repair`: plan (dry run, the default) or apply the safe repair of one node.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use super::{Format, FormatArgs, Outcome, Ui};
use crate::render;
use crate::repair::{self, RepairError, RepairOptions};

const LONG_HELP: &str = "\
What repair does, with --apply (without it, it only prints the plan):
  1. writes a byte-identical backup of every file it changes or removes, next to it, as
     <file>.raftdump-backup-<unix-seconds>, or <file>.raftdump-backup-<unix-seconds>-<n> when
     that name is taken (never overwriting a file; it stops if it cannot);
  2. cuts the log at its first damaged byte (a torn tail, trailing padding, a NUL hole, garbage or
     an undecodable entry): exactly where goraft would lose everything after it anyway;
  3. with --salvage, re-appends the good frames found after the damage when they continue the
     index sequence (index + 1, terms not decreasing), with canonical headers;
  4. removes leftover conf.tmp and log.new;
  5. fsyncs the files and the directory, and verifies the result.

It refuses, and changes nothing, when a cut is not safe: frames after the damage that conflict
with entries that stay, index gaps, duplicates or decreasing terms in the part that stays, a
snapshot or conf it cannot trust, or conf commitIndex above what the repaired log would hold.
With --apply it also refuses while another raftdump process (a node serving the dir) holds
DIR/raftdump.lock, naming its pid; it holds that lock itself until it is done.";

/// The long help: what repair does, then the exit statuses.
fn long_help() -> String {
    format!("{LONG_HELP}\n\n{}", super::exit::help("repair"))
}

/// Plan (default) or apply the repair of a node's data dir: cut a torn tail or a NUL hole,
/// optionally salvage the frames after it, remove leftover temporary files.
#[derive(Debug, clap::Args)]
#[command(after_help = super::exit::help("repair"), after_long_help = long_help())]
pub struct Args {
    /// The node's data dir (or a bare log file).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Make the changes (after backing up every file changed); without it nothing is written.
    #[arg(long)]
    pub apply: bool,
    /// Re-append the good frames found after the damage when they continue the index sequence.
    #[arg(long)]
    pub salvage: bool,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Dialect of the logs.
    #[command(flatten)]
    pub dialect: super::DialectArgs,
}

/// Runs `repair`.
pub fn run(args: Args, ui: &mut Ui) -> anyhow::Result<Outcome> {
    let opts = RepairOptions {
        salvage: args.salvage,
        dialect: args.dialect.choice(),
    };
    let plan = repair::plan(&args.dir, opts)
        .with_context(|| format!("cannot repair {}", args.dir.display()))?;
    if !plan.blockers.is_empty() {
        let mut msg = format!(
            "refusing to repair {}: {} that a cut cannot fix safely; nothing was changed",
            args.dir.display(),
            if plan.blockers.len() == 1 {
                "1 problem".to_string()
            } else {
                format!("{} problems", plan.blockers.len())
            }
        );
        for b in &plan.blockers {
            msg.push_str("\n  ");
            msg.push_str(&render::escape_terminal(&repair::blocker_line(b)));
        }
        anyhow::bail!(msg);
    }
    let json = args.format.get() == Format::Json;
    if plan.is_empty() {
        if json {
            render::repair::json(&mut ui.out, &plan, None)?;
        } else {
            writeln!(
                ui.out,
                "nothing to repair in {}",
                render::escape_terminal(&plan.node)
            )?;
        }
        return Ok(Outcome::Clean);
    }
    if !args.apply {
        if json {
            render::repair::json(&mut ui.out, &plan, None)?;
        } else {
            render::repair::plan_human(&mut ui.out, &plan)?;
            writeln!(
                ui.out,
                "dry run: nothing was changed; run again with --apply to do it"
            )?;
        }
        return Ok(Outcome::Negative);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let applied = match repair::apply(&plan, now) {
        Ok(a) => a,
        Err(e @ RepairError::Io { .. }) => {
            return Err(e).context("repair failed half-way; restore from the backups")
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        render::repair::json(&mut ui.out, &plan, Some(&applied))?;
    } else {
        render::repair::plan_human(&mut ui.out, &plan)?;
        render::repair::applied_human(&mut ui.out, &applied)?;
    }
    let errors = applied
        .after
        .findings
        .iter()
        .any(|f| f.severity == crate::check::Severity::Error);
    Ok(if errors {
        Outcome::Negative
    } else {
        Outcome::Clean
    })
}
