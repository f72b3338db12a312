//! `raftdump inspect`: arguments to [`InspectOptions`], then the summary pass and the renderer.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Format, FormatArgs, Outcome, Ui};
use crate::datadir;
use crate::inspect::{summarize, InspectOptions, Progress};
use crate::render::inspect::{self as render, HumanStyle, SnapshotView, View};

/// The long help: exit statuses, then the JSON schema (the man page's reference).
fn after_long_help() -> String {
    format!(
        "{}

raftdump inspect only reads: it never changes a file.

{}",
        super::exit::help("inspect"),
        include_str!("../render/inspect/json-schema.txt")
    )
}

/// Logs above this size get a progress bar (on a terminal, human output, without -q).
/// Not when stdout is the same terminal: the table scrolling by is the progress then.
const PROGRESS_MIN_BYTES: usize = 64 << 20;

/// Show every entry, the conf, name and snapshots of a data dir or log file (the help text
/// comes from the `Command::Inspect` variant).
#[derive(Debug, clap::Args)]
#[command(after_help = super::exit::help("inspect"), after_long_help = after_long_help())]
pub struct Args {
    /// A goraft data dir (holding a `log` file) or a log file.
    #[arg(required_unless_present = "snapshot")]
    pub path: Option<PathBuf>,
    /// Only entries with index N or above.
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// Only entries with index N or below.
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
    /// Only entries of term T.
    #[arg(long, value_name = "T")]
    pub term: Option<u64>,
    /// Only entries with this command name, e.g. write or raft:join (repeatable: any of them).
    #[arg(long = "command", value_name = "NAME")]
    pub commands: Vec<String>,
    /// Only write entries whose key is K.
    #[arg(long, value_name = "K")]
    pub key: Option<String>,
    /// Show at most N entries (after the other filters).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Show the hex of each entry's header and body.
    #[arg(long)]
    pub raw: bool,
    /// Show the header only, no entries.
    #[arg(long, conflicts_with_all = ["raw", "from", "to", "term", "commands", "key", "limit"])]
    pub summary: bool,
    /// Show one snapshot file in detail instead of the log (looked up in PATH/snapshot/ when
    /// it is not found as given).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["raw", "summary", "from", "to", "term", "commands", "key", "limit"])]
    pub snapshot: Option<PathBuf>,
    /// Keep reading as a running node appends to the log, like `tail -f`: the entries, then
    /// each new one as it is written, damage that stays (see --settle), truncations, the file
    /// replaced or removed. Rows instead of a table; no summary. Stops on Ctrl-C (exit 0).
    #[arg(long, conflicts_with_all = ["raw", "summary", "snapshot", "limit"])]
    pub follow: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub settle: super::follow::SettleArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub format: FormatArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub dialect: super::DialectArgs,
}

/// The width tables are fitted into: `COLUMNS`, else the terminal's width, else 120.
fn table_width(ui: &Ui) -> usize {
    if let Some(n) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return n;
    }
    if ui.stdout_tty {
        if let Some((terminal_size::Width(w), _)) =
            terminal_size::terminal_size_of(std::io::stdout())
        {
            return usize::from(w);
        }
    }
    120
}

/// Runs `inspect`.
pub fn run(args: Args, ui: &mut Ui) -> anyhow::Result<Outcome> {
    let format = args.format.get();
    let style = HumanStyle {
        width: table_width(ui),
        color: ui.color,
    };
    if let Some(file) = &args.snapshot {
        let path = match &args.path {
            Some(dir) if !file.exists() => dir.join("snapshot").join(file),
            _ => file.clone(),
        };
        let (size, parsed) =
            datadir::files::read_snapshot(&path).map_err(|error| datadir::LoadError::Io {
                path: path.clone(),
                error,
            })?;
        let view = SnapshotView::new(&path, size, parsed);
        match format {
            Format::Human => render::snapshot_human(&mut ui.out, &view, &style)?,
            Format::Json => render::snapshot_json(&mut ui.out, &view)?,
        }
        return Ok(if view.is_damaged() {
            Outcome::Negative
        } else {
            Outcome::Clean
        });
    }
    let path = args.path.context("a PATH is required")?;
    let dd = datadir::open_as(&path, args.dialect.choice())?;
    let opts = InspectOptions {
        from: args.from,
        to: args.to,
        term: args.term,
        commands: args.commands,
        key: args.key,
        limit: args.limit,
    };
    if args.follow {
        return super::follow::inspect(dd, format, opts, args.settle.get(), &style, ui);
    }
    let size = dd.log.bytes().len();
    // Human output reads the log three times: summary, column widths, table (problems after).
    let bar = (ui.progress_allowed()
        && !ui.stdout_tty
        && format == Format::Human
        && !args.summary
        && size > PROGRESS_MIN_BYTES)
        .then(|| {
            let bar = indicatif::ProgressBar::new(3 * size as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {percent}% {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
    // Every pass reports its offset: move the bar and let go of the pages read so far, so that
    // the resident set stays flat however large the log is (see LogBytes::release).
    let (mut released, mut pass) = (0usize, 0u64);
    let mut progress = |pos: u64| {
        let pos = usize::try_from(pos).unwrap_or(usize::MAX);
        if pos < released {
            released = 0;
            pass += 1;
        }
        if let Some(b) = &bar {
            b.set_position((pass * size as u64 + pos as u64).min(3 * size as u64));
        }
        dd.log.release(released..pos);
        released = pos;
    };
    let summary = summarize(dd.log.bytes(), dd.dialect(), Progress::new(&mut progress));
    let view = View {
        dd: &dd,
        summary: &summary,
        opts: &opts,
        raw: args.raw,
        summary_only: args.summary,
    };
    match format {
        Format::Human => render::human(&mut ui.out, &view, &style, &mut progress)?,
        Format::Json => render::json(&mut ui.out, &view, &mut progress)?,
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(if summary.is_damaged() {
        Outcome::Negative
    } else {
        Outcome::Clean
    })
}
