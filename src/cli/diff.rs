//! `raftdump diff`: compare nodes (or points of one node) side by side by index.

use std::path::{Path, PathBuf};

use super::{Format, FormatArgs, Outcome, Ui};
use crate::check::{cluster, Severity};
use crate::diff::{self, DiffOptions, Target};
use crate::render::diff as render;

/// Compare the logs of several nodes side by side, index by index.
///
/// Shows the common prefix, for each pair the first index where they differ, the conflicting
/// entries side by side, which node holds which tail and whether it can still be committed (on a
/// majority) or must be uncommitted (overwritten on a majority), what the files prove committed
/// and by which evidence, broken Raft invariants, and differences in conf, snapshots and
/// membership. Each argument is a data dir or log file, optionally cut at an index: DIR@INDEX
/// (`diff node1@100 node1@200` compares two points of one node).
#[derive(Debug, clap::Args)]
#[command(after_help = super::exit::help("diff"))]
pub struct Args {
    /// Data dirs or log files, each optionally DIR@INDEX.
    #[arg(required = true, num_args = 2.., value_name = "DIR[@INDEX]")]
    pub nodes: Vec<String>,
    /// Also replay each node's key-value state (at its end, or at @INDEX) and compare key by key.
    #[arg(long)]
    pub state: bool,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Dialect of the logs.
    #[command(flatten)]
    pub dialect: super::DialectArgs,
}

/// Splits `DIR@INDEX`; a path that exists as given is taken whole, even with an `@` in it.
pub fn parse_target(arg: &str) -> anyhow::Result<(PathBuf, Option<u64>)> {
    if Path::new(arg).exists() {
        return Ok((PathBuf::from(arg), None));
    }
    match arg.rsplit_once('@') {
        Some((dir, index)) if !dir.is_empty() => {
            let index = index.parse::<u64>().map_err(|_| {
                anyhow::anyhow!(
                    "{arg}: expected DIR@INDEX with a decimal index after '@', found {index:?}"
                )
            })?;
            Ok((PathBuf::from(dir), Some(index)))
        }
        _ => Ok((PathBuf::from(arg), None)),
    }
}

/// Runs `diff`.
pub fn run(args: Args, ui: &mut Ui) -> anyhow::Result<Outcome> {
    let parsed = args
        .nodes
        .iter()
        .map(|a| parse_target(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let dirs = parsed
        .iter()
        .map(|(p, _)| super::open_whole(p, args.dialect.choice()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let targets: Vec<Target<'_>> = dirs
        .iter()
        .zip(&parsed)
        .map(|(dir, (_, at))| Target { dir, at: *at })
        .collect();
    let format = args.format.get();
    let opts = DiffOptions {
        state: args.state,
        // A terminal page of conflicting rows; JSON keeps the library's default.
        max_rows: if format == Format::Human {
            50
        } else {
            DiffOptions::default().max_rows
        },
        ..DiffOptions::default()
    };
    let d = diff::compare(&targets, &opts)?;
    let findings: Vec<_> = cluster::findings(&dirs, &d)
        .into_iter()
        .filter(|f| f.severity >= Severity::Warning)
        .collect();
    match format {
        Format::Json => render::json(&mut ui.out, &d, &findings)?,
        Format::Human => render::human(&mut ui.out, &d, &findings, ui.color)?,
    }
    Ok(if d.identical() {
        Outcome::Clean
    } else {
        Outcome::Negative
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("no/such@12").unwrap(),
            (PathBuf::from("no/such"), Some(12))
        );
        assert_eq!(
            parse_target("no/such").unwrap(),
            (PathBuf::from("no/such"), None)
        );
        assert!(parse_target("no/such@x").is_err());
        let existing = env!("CARGO_MANIFEST_DIR");
        assert_eq!(
            parse_target(existing).unwrap(),
            (PathBuf::from(existing), None)
        );
    }
}
