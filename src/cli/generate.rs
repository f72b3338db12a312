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

/// `cmd` without the "Exit status:" block in its help after the options: the page has its own
/// EXIT STATUS section, made from the same table.
fn without_exit_help(cmd: clap::Command, key: &str) -> clap::Command {
    let block = super::exit::help(key);
    let strip = |text: Option<&clap::builder::StyledStr>| {
        let text = text?.to_string().replace(&block, "");
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    };
    let (short, long) = (
        strip(cmd.get_after_help()),
        strip(cmd.get_after_long_help()),
    );
    let cmd = match short {
        Some(text) => cmd.after_help(text),
        None => cmd.after_help(None::<&'static str>),
    };
    match long {
        Some(text) => cmd.after_long_help(text),
        None => cmd.after_long_help(None::<&'static str>),
    }
}

fn render_page(cmd: clap::Command, key: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
    let cmd = without_exit_help(cmd, key);
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
    out.extend_from_slice(super::exit::roff(key).as_bytes());
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
