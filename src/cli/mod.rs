//! Command-line parsing, global flags, dispatch and exit codes. The only module that knows clap.
//!
//! Each subcommand is one file here: a clap `Args` struct and `fn run(args, &mut Ui)`, which turns
//! the arguments into library options, calls the library and hands the result to `render`.
//! [`goflags`] rewrites Go-style options of `serve` (raftd's `-join`) before clap parses.
//! Exit codes: 0 clean, 1 a negative answer (damage found, differences found), 2 could not run,
//! 130 `serve` stopped by SIGINT; [`exit::TABLE`] says what each means for each command.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub mod diff;
pub mod exit;
pub mod follow;
pub mod generate;
pub mod goflags;
pub mod inspect;
pub mod parts;
pub mod repair;
pub mod replay;
pub mod serve;
pub mod verify;

/// What a subcommand concluded (errors are `anyhow::Error` and exit 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0: nothing wrong found.
    Clean,
    /// Exit 1: the answer is negative (problems found, nodes differ).
    Negative,
    /// Exit 130: stopped by SIGINT (`serve`).
    Interrupted,
}

/// Output format of data commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Tables and text for people.
    #[default]
    Human,
    /// JSON Lines: one object per line, each with a "type".
    Json,
}

/// `--format human|json` with its `--json` alias, shared by every data command.
#[derive(Debug, Clone, clap::Args)]
pub struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

impl FormatArgs {
    /// The chosen format.
    pub fn get(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.format
        }
    }
}

/// `--dialect` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DialectArg {
    /// Detect each log's dialect from its frames, command names, snapshot and data dir.
    #[default]
    Auto,
    /// goraft: gogo proto2, every required field written (raftd, etcd 0.2-0.4).
    Goraft,
    /// seaweedfs/raft (SeaweedFS masters): proto3, zero and empty fields left out.
    Seaweedfs,
}

/// `--dialect auto|goraft|seaweedfs`, shared by every data command.
#[derive(Debug, Clone, clap::Args)]
pub struct DialectArgs {
    /// How the log's entries are encoded: detected per log (auto), goraft's proto2, or the
    /// seaweedfs/raft fork's proto3.
    #[arg(long, value_enum, default_value_t = DialectArg::Auto)]
    pub dialect: DialectArg,
}

impl DialectArgs {
    /// The library's form of the choice.
    pub fn choice(&self) -> crate::format::dialect::Choice {
        use crate::format::dialect::{Choice, Dialect};
        match self.dialect {
            DialectArg::Auto => Choice::Auto,
            DialectArg::Goraft => Choice::Force(Dialect::Goraft),
            DialectArg::Seaweedfs => Choice::Force(Dialect::Seaweedfs),
        }
    }
}

/// When to color output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Color when stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always color.
    Always,
    /// Never color.
    Never,
}

/// The top-level help after the commands: exit statuses, then the promise about files.
fn after_help() -> String {
    format!(
        "{}\n\nraftdump never changes the files it reads, except `repair --apply`.",
        exit::help("raftdump")
    )
}

/// Inspect, verify, repair, diff, replay and serve goraft / raftd data directories.
#[derive(Debug, Parser)]
#[command(name = "raftdump", version, about, after_help = after_help(), propagate_version = true)]
pub struct Cli {
    /// When to use color: auto, always, never (NO_COLOR is respected with auto).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// Print nothing on stderr but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output on stderr (-v, -vv, -vvv); RAFTDUMP_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show every entry, the conf, name and snapshots of a data dir or log file.
    Inspect(inspect::Args),
    /// Replay a log into raftd's key-value state: the state, a key, its history, membership, stats.
    Replay(replay::Args),
    /// Compare nodes side by side by index: where their logs part ways, which tails are committed.
    Diff(diff::Args),
    /// Check one or more nodes: damage, invariants, and what goraft would do about them.
    Verify(verify::Args),
    /// Plan (default) or apply a safe repair of a damaged node: cut, salvage, back up first.
    Repair(repair::Args),
    /// Run a raftd-compatible node on a data dir.
    Serve(serve::Args),
    /// Generate man pages or shell completions.
    #[command(hide = true)]
    Generate(generate::Args),
}

/// The terminal and output streams a subcommand writes to.
pub struct Ui {
    /// Standard output, buffered (line-buffered on a terminal).
    pub out: Box<dyn Write>,
    /// Whether stdout is a terminal.
    pub stdout_tty: bool,
    /// Whether stderr is a terminal.
    pub stderr_tty: bool,
    /// Whether to color stdout.
    pub color: bool,
    /// `-q`.
    pub quiet: bool,
}

impl Ui {
    fn new(cli: &Cli) -> Self {
        let stdout_tty = io::stdout().is_terminal();
        let stderr_tty = io::stderr().is_terminal();
        let out: Box<dyn Write> = if stdout_tty {
            Box::new(io::LineWriter::new(io::stdout()))
        } else {
            Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout()))
        };
        let color = match cli.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                let env = |k| std::env::var_os(k).is_some_and(|v| !v.is_empty());
                if env("NO_COLOR") {
                    false
                } else if env("CLICOLOR_FORCE") {
                    true
                } else {
                    stdout_tty && std::env::var_os("CLICOLOR").is_none_or(|v| v != "0")
                }
            }
        };
        Ui {
            out,
            stdout_tty,
            stderr_tty,
            color,
            quiet: cli.quiet,
        }
    }

    /// Whether a progress bar may be drawn (stderr is a terminal and not `-q`).
    pub fn progress_allowed(&self) -> bool {
        self.stderr_tty && !self.quiet
    }

    /// Prints a warning on stderr unless `-q`.
    pub fn warn(&self, msg: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("raftdump: warning: {msg}");
        }
    }
}

/// Opens a data dir for a command that computes from all of its files (`diff`, `replay`): a file
/// that exists but cannot be read (a FIFO, one over its size cap, no permission) is an error
/// here, where `verify` lists it and `inspect` shows it, because leaving it out would change the
/// answer silently.
fn open_whole(
    path: &std::path::Path,
    dialect: crate::format::dialect::Choice,
) -> anyhow::Result<crate::datadir::DataDir> {
    let dir = crate::datadir::open_as(path, dialect)?;
    if let Some((file, e)) = dir.first_unreadable() {
        anyhow::bail!("{}: {e}", file.display());
    }
    Ok(dir)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let env = env_logger::Env::new()
        .filter_or("RAFTDUMP_LOG", default)
        .write_style_or("RAFTDUMP_LOG_STYLE", "never");
    let _ = env_logger::Builder::from_env(env).try_init();
}

/// Parses the command line, runs the subcommand and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(goflags::go_flags(std::env::args_os().collect()));
    init_logging(match &cli.command {
        Command::Serve(args) => args.verbosity(cli.verbose),
        _ => cli.verbose,
    });
    let mut ui = Ui::new(&cli);
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args, &mut ui),
        Command::Replay(args) => replay::run(args, &mut ui),
        Command::Diff(args) => diff::run(args, &mut ui),
        Command::Verify(args) => verify::run(args, &mut ui),
        Command::Repair(args) => repair::run(args, &mut ui),
        Command::Serve(args) => serve::run(args, &mut ui),
        Command::Generate(args) => generate::run(args, &mut ui),
    };
    let result = result.and_then(|o| ui.out.flush().map(|_| o).map_err(Into::into));
    match result {
        Ok(Outcome::Clean) => ExitCode::from(0),
        Ok(Outcome::Negative) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(0),
        Err(e) => {
            let _ = ui.out.flush();
            eprintln!("raftdump: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_its_row_in_the_exit_table() {
        let listed: Vec<&str> = exit::TABLE.iter().map(|(c, _)| *c).collect();
        let commands: Vec<String> = Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect();
        assert_eq!(listed[1..].len(), commands.len(), "{listed:?} {commands:?}");
        for c in &commands {
            assert!(
                listed.contains(&c.as_str()),
                "{c} is not in cli::exit::TABLE"
            );
        }
    }
}
