//! `raftdump replay`: the key-value state a node's log produces, at its end or at any index; one
//! key, a key's history, membership over time, stats; with several nodes, the committed prefix.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use super::{Format, FormatArgs, Outcome, Ui};
use crate::diff::{self, DiffOptions, Target};
use crate::render::replay::{self as render, Committed, Sections};
use crate::replay::{self, MachineChoice, ReplayOptions};

/// Replay a node's log into its state machine and show the state.
///
/// The machine is raftd's key-value map or a SeaweedFS master's max volume id and topology id,
/// chosen from the log's commands (--machine forces one); a SeaweedFS replay ends with the line
/// to keep before a migration deletes the master's files. goraft does not record the true commit index (conf commitIndex is only the last membership
/// change), so by default every entry in the log is applied, and the output says so. --at INDEX
/// chooses the point; with several nodes, --committed replays only the prefix the nodes prove
/// committed. A compacted log starts from its snapshot. A damaged log is replayed up to the first
/// damage, where goraft truncates it on start-up, and the damage is reported.
#[derive(Debug, clap::Args)]
#[command(after_help = super::exit::help("replay"))]
pub struct Args {
    /// Data dirs or log files (each replayed in turn; with --committed, compared first).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Apply entries up to and including this index (default: every entry in the log).
    #[arg(long, value_name = "INDEX", conflicts_with = "committed")]
    pub at: Option<u64>,
    /// The state machine: auto chooses from the commands and the snapshot's state (MaxVolumeId
    /// means a SeaweedFS master, write means raftd); the other machine's commands then count as
    /// unknown.
    #[arg(long, value_enum, value_name = "MACHINE", default_value_t = MachineArg::Auto)]
    pub machine: MachineArg,
    /// Show one key's value and the index that set it (a SeaweedFS master's keys are
    /// maxVolumeId and topologyId).
    #[arg(long, value_name = "K")]
    pub key: Option<String>,
    /// Show every change of a key: index, term, old value -> new value (for a SeaweedFS master,
    /// maxVolumeId or topologyId).
    #[arg(long, value_name = "K")]
    pub history: Option<String>,
    /// Show membership changes over time and the members at the end.
    #[arg(long)]
    pub membership: bool,
    /// Show counts: keys, writes, overwrites, bytes, per term.
    #[arg(long)]
    pub stats: bool,
    /// Replay only the prefix the given nodes prove committed (on a majority and agreed, or
    /// covered by a conf commitIndex or snapshot), and say up to which index that is.
    #[arg(long)]
    pub committed: bool,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Dialect of the logs.
    #[command(flatten)]
    pub dialect: super::DialectArgs,
}

/// `--machine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MachineArg {
    /// From the log's commands and the snapshot's state.
    Auto,
    /// raftd's key-value map (write commands).
    Raftd,
    /// A SeaweedFS master (MaxVolumeId commands).
    Seaweedfs,
}

impl From<MachineArg> for MachineChoice {
    fn from(m: MachineArg) -> Self {
        match m {
            MachineArg::Auto => MachineChoice::Auto,
            MachineArg::Raftd => MachineChoice::Raftd,
            MachineArg::Seaweedfs => MachineChoice::Seaweedfs,
        }
    }
}

/// Runs `replay`.
pub fn run(args: Args, ui: &mut Ui) -> anyhow::Result<Outcome> {
    if let (Some(k), Some(h)) = (&args.key, &args.history) {
        anyhow::ensure!(
            k == h,
            "--key and --history must name the same key (got {k:?} and {h:?})"
        );
    }
    let sections = Sections {
        key: args.key.clone(),
        history: args.history.is_some(),
        membership: args.membership,
        stats: args.stats,
    };
    let opts = ReplayOptions {
        at: args.at,
        history: args.history.clone().or(args.key.clone()),
        membership_only: false,
        machine: args.machine.into(),
    };
    let dirs = args
        .paths
        .iter()
        .map(|p| super::open_whole(p, args.dialect.choice()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let format = args.format.get();
    let mut emit =
        |r: &replay::Replay, c: Option<&Committed<'_>>, first: bool| -> anyhow::Result<()> {
            match format {
                Format::Json => json(&mut ui.out, r, &sections, c, super::parts::lanes)?,
                Format::Human => {
                    if !first {
                        writeln!(ui.out)?;
                    }
                    render::human(&mut ui.out, r, &sections, c)?;
                }
            }
            Ok(())
        };

    if args.committed {
        let targets: Vec<Target<'_>> = dirs.iter().map(|dir| Target { dir, at: None }).collect();
        let d = diff::compare(&targets, &DiffOptions::default())?;
        let (index, evidence, source) = d
            .committed()
            .context("the files prove no entry committed (no entry is on a majority, and no conf commitIndex or snapshot covers one)")?;
        let opts = ReplayOptions {
            at: Some(index),
            ..opts
        };
        let r = replay::replay(&dirs[source], &opts)?;
        let committed = Committed {
            index,
            evidence,
            commit: &d.commit,
            labels: dirs.iter().map(|d| d.label()).collect(),
            source,
        };
        emit(&r, Some(&committed), true)?;
        return Ok(Outcome::Clean);
    }
    for (k, dir) in dirs.iter().enumerate() {
        let r = replay::replay(dir, &opts)?;
        emit(&r, None, k == 0)?;
    }
    Ok(Outcome::Clean)
}

/// `replay --json`: [`render::json`]'s lines, the state's `kv` lines formatted in parts on
/// `lanes(parts)` lanes ([`super::parts::write_in_parts`]).
fn json(
    out: &mut dyn std::io::Write,
    r: &replay::Replay,
    sections: &Sections,
    committed: Option<&Committed<'_>>,
    lanes: impl Fn(usize) -> usize,
) -> std::io::Result<()> {
    render::json_header(out, r, committed)?;
    match render::KvParts::of(r, sections) {
        Some(kv) => {
            let lanes = lanes(kv.len());
            super::parts::write_in_parts(out, kv.len(), lanes, |i, b| kv.format(i, b), |_| {})?;
        }
        None => render::json_state(out, r, sections)?,
    }
    render::json_sections(out, r, sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::log::LogWriter;
    use crate::model::Command;

    #[test]
    fn kv_lines_are_the_same_on_one_lane_or_several() {
        let mut w = LogWriter::new(Vec::new());
        for i in 1..=45_000u64 {
            let key = format!("k{:05}", (i * 7919) % 40_000);
            let value = format!("v\u{e9}\"{i}");
            w.append(i, 1, &Command::Write { key, value }).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, w.into_inner()).unwrap();
        let dd = crate::datadir::open(&path).unwrap();
        let r = replay::replay(&dd, &ReplayOptions::default()).unwrap();
        let sections = Sections::default();
        let parts = render::KvParts::of(&r, &sections).map_or(0, |kv| kv.len());
        assert!(parts >= 4, "{parts} parts");
        let mut one = Vec::new();
        render::json(&mut one, &r, &sections, None).unwrap();
        for lanes in [1, 2, 3] {
            let mut many = Vec::new();
            json(&mut many, &r, &sections, None, |_| lanes).unwrap();
            assert!(one == many, "{lanes} lanes");
        }
        let lines = one.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(lines, 1 + 40_000);
    }
}
