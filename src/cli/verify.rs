//! `raftdump verify`: check one node or several against goraft's formats and Raft's invariants.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Format, FormatArgs, Outcome, Ui};
use crate::check::{cluster, codes, Report};
use crate::datadir;
use crate::render::report::{self, Verdict};

/// The long help: exit status, then every finding code (the man page's reference).
pub fn long_help() -> String {
    format!(
        "{}\n\n\
         With -q the human report is not printed (the exit status still tells); --format json is\n\
         always written.\n\n{}",
        super::exit::help("verify"),
        codes::help_text()
    )
}

/// Check data dirs (or log files) of one or more nodes: framing, entries, snapshots, conf and
/// name of each, and the Raft invariants across them. Says what goraft would do with each problem.
#[derive(Debug, clap::Args)]
#[command(after_long_help = long_help())]
pub struct Args {
    /// Data dirs (or bare log files) of the nodes of one cluster.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Dialect of the logs.
    #[command(flatten)]
    pub dialect: super::DialectArgs,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    pub strict: bool,
    /// Keep checking as the logs grow, printing each new finding once (a finding is new when
    /// its code, node, file, offset and index were not printed before). Stops on Ctrl-C (exit 0).
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub settle: super::follow::SettleArgs,
}

/// Runs `verify`.
pub fn run(args: Args, ui: &mut Ui) -> anyhow::Result<Outcome> {
    if args.follow {
        let (choice, format) = (args.dialect.choice(), args.format.get());
        return super::follow::verify(&args.dirs, choice, format, args.settle.get(), ui);
    }
    let nodes = args
        .dirs
        .iter()
        .map(|p| {
            datadir::open_as(p, args.dialect.choice())
                .with_context(|| format!("cannot verify {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (reports, across) = cluster::check_all(&nodes);
    let mut all = Report::default();
    for r in &reports {
        all.findings.extend(r.findings.iter().cloned());
    }
    all.findings.extend(across);
    let verdict = Verdict {
        strict: args.strict,
    };
    match args.format.get() {
        Format::Json => report::json(&mut ui.out, &reports, &all, verdict)?,
        Format::Human if ui.quiet => {}
        Format::Human => report::human(&mut ui.out, &reports, &all, verdict, ui.color)?,
    }
    Ok(if all.fails(args.strict) {
        Outcome::Negative
    } else {
        Outcome::Clean
    })
}
