//! `raftdump generate`: man pages and shell completions (hidden; used to refresh `man/`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory;

use super::{Cli, Outcome, Ui};

/// Generate man pages or completions.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Write raftdump.1 and raftdump-<sub>.1 into DIR.
    Man {
        /// Output directory.
        dir: PathBuf,
    },
    /// Print a completion script for SHELL on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// What each exit status means for a command (house style: documented in `--help` and in the
/// man page's EXIT STATUS section).
fn exit_status(command: &str) -> &'static str {
    match command {
        "inspect" => "0: the log is clean (non-canonical but valid frames included). 1: the log has damage; every good entry was still printed, then the problems. 2: could not run (missing path, no log in the directory, permission, bad usage).",
        "verify" => "0: no error found (warnings and infos allowed). 1: at least one error, or with --strict at least one warning. 2: could not run.",
        "repair" => "0: nothing to repair, or --apply repaired the node and verify found it clean. 1: a dry run found something to repair. 2: could not run, or the repair was refused as unsafe (nothing was changed then).",
        "replay" => "0: the log was replayed. 1: the log has damage; the state goraft would keep was replayed and the damage reported. 2: could not run.",
        "diff" => "0: the nodes are identical. 1: they differ. 2: could not run.",
        "serve" => "0: stopped by SIGTERM. 130: stopped by SIGINT. 2: could not start (bad usage, the port is taken, the data dir cannot be read or written).",
        _ => "0: clean: nothing wrong found. 1: a negative answer (damage or invariant violations found, nodes differ). 2: could not run (bad usage, missing path, I/O error).",
    }
}

fn render_page(cmd: clap::Command, key: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
    let has_args = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_subs = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let has_extra = cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some();
    let has_version = cmd.get_version().or(cmd.get_long_version()).is_some();
    let man = clap_mangen::Man::new(cmd);
    let start = out.len();
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if has_args {
        man.render_options_section(out)?;
    }
    if has_subs {
        man.render_subcommands_section(out)?;
    }
    out.extend_from_slice(b".SH \"EXIT STATUS\"\n");
    for sentence in exit_status(key).split(". ") {
        out.extend_from_slice(b".PP\n");
        out.extend_from_slice(
            sentence
                .trim_end_matches('.')
                .replace('-', "\\-")
                .as_bytes(),
        );
        out.extend_from_slice(b".\n");
    }
    if has_extra {
        man.render_extra_section(out)?;
    }
    if has_version {
        man.render_version_section(out)?;
    }
    // Each section clap_mangen renders on its own repeats the roff preamble; keep the first.
    const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let page = String::from_utf8_lossy(&out[start..]).into_owned();
    let mut parts = page.split(PREAMBLE);
    let mut cleaned = parts.next().unwrap_or_default().to_owned();
    if let Some(first) = parts.next() {
        cleaned.push_str(PREAMBLE);
        cleaned.push_str(first);
    }
    parts.for_each(|p| cleaned.push_str(p));
    out.truncate(start);
    out.extend_from_slice(cleaned.as_bytes());
    Ok(())
}

/// Every man page: `(file name, roff bytes)`.
pub fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let cmd = Cli::command();
    let mut pages = Vec::new();
    let mut buf = Vec::new();
    render_page(cmd.clone(), "raftdump", &mut buf)?;
    pages.push(("raftdump.1".to_string(), buf));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let key = sub.get_name().to_string();
        let name = format!("raftdump-{key}");
        let sub = sub.clone().name(name.clone());
        let mut buf = Vec::new();
        render_page(sub, &key, &mut buf)?;
        pages.push((format!("{name}.1"), buf));
    }
    Ok(pages)
}

/// Runs `generate`.
pub fn run(args: Args, ui: &mut Ui) -> anyhow::Result<Outcome> {
    match args.what {
        What::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, bytes) in man_pages()? {
                let p = dir.join(name);
                std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
            }
        }
        What::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "raftdump", &mut ui.out);
        }
    }
    Ok(Outcome::Clean)
}
