//! `raftdump inspect`: arguments to [`InspectOptions`], then the summary pass and the renderer.

use std::io::{self, Write};
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
        Format::Json => json(&mut ui.out, &view, super::parts::lanes, &mut progress)?,
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

/// `inspect --json`: [`render::json`]'s report, its entry lines formatted in parts on
/// `lanes(parts)` lanes ([`super::parts::write_in_parts`]) when they come in parts.
fn json(
    out: &mut dyn Write,
    view: &View<'_>,
    lanes: impl Fn(usize) -> usize,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    render::json_head(out, view)?;
    match render::EntryParts::of(view) {
        Some(parts) => super::parts::write_in_parts(
            out,
            parts.len(),
            lanes(parts.len()),
            |i, buf| parts.format(i, buf),
            |i| progress(parts.end(i)),
        )?,
        None => render::json_entries(out, view, progress)?,
    }
    render::json_problems(out, view, progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::log::LogWriter;
    use crate::model::Command;

    /// A log of several resume steps with damage, non-canonical frames and several commands.
    fn big_log() -> Vec<u8> {
        let mut w = LogWriter::new(Vec::new());
        let mut log = Vec::new();
        for i in 1..=80_000u64 {
            let cmd = match i % 7 {
                0 => Command::Nop,
                1 => Command::Join {
                    name: format!("n{i}"),
                    connection_string: "http://127.0.0.1:1".into(),
                },
                _ => Command::Write {
                    key: format!("k{}", i % 97),
                    value: format!("v\u{e9}\"{i}"),
                },
            };
            w.append(i, i / 5000, &cmd).unwrap();
            if i % 9_000 == 0 {
                log.extend_from_slice(
                    &std::mem::replace(&mut w, LogWriter::new(Vec::new())).into_inner(),
                );
                log.extend_from_slice(&[0; 300]); // a hole of zero bytes
            }
            if i % 11_000 == 0 {
                log.extend_from_slice(
                    &std::mem::replace(&mut w, LogWriter::new(Vec::new())).into_inner(),
                );
                log.extend_from_slice(b"garbage!"); // damage the reader resynchronises after
            }
        }
        log.extend_from_slice(&w.into_inner());
        log.extend_from_slice(b"0000002a\n\x08"); // a torn tail
        log
    }

    #[test]
    fn entry_lines_are_the_same_on_one_lane_or_several() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, big_log()).unwrap();
        let dd = crate::datadir::open(&path).unwrap();
        let summary = summarize(dd.log.bytes(), dd.dialect(), Progress::none());
        assert!(
            summary.resume_points.len() > 8,
            "{}",
            summary.resume_points.len()
        );
        assert!(summary.problem_count >= 5, "{}", summary.problem_count);
        let filters = [
            InspectOptions::default(),
            InspectOptions {
                from: Some(12_345),
                to: Some(31_000),
                ..InspectOptions::default()
            },
            InspectOptions {
                commands: vec!["raft:join".into()],
                ..InspectOptions::default()
            },
        ];
        for (f, opts) in filters.iter().enumerate() {
            for raw in [false, true] {
                let view = View {
                    dd: &dd,
                    summary: &summary,
                    opts,
                    raw,
                    summary_only: false,
                };
                let (mut one, mut one_reached) = (Vec::new(), Vec::new());
                render::json(&mut one, &view, &mut |p| one_reached.push(p)).unwrap();
                for lanes in [1, 2, 3] {
                    let (mut many, mut reached) = (Vec::new(), Vec::new());
                    json(&mut many, &view, |_| lanes, &mut |p| reached.push(p)).unwrap();
                    assert!(one == many, "filter {f}, raw {raw}, {lanes} lanes");
                    // The entry pass reports the end of the log (then the problems pass runs).
                    let len = dd.log.bytes().len() as u64;
                    assert!(reached.contains(&len), "{reached:?}");
                    assert_eq!(reached.last(), one_reached.last());
                }
                let lines = one.iter().filter(|&&b| b == b'\n').count();
                assert!(lines > 4 + 100 * usize::from(f == 0), "filter {f}: {lines}");
            }
        }
    }
}
