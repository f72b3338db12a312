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

/// Every man page: `(file name, roff bytes)`.
pub fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let cmd = Cli::command();
    let mut pages = Vec::new();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    pages.push(("raftdump.1".to_string(), buf));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("raftdump-{}", sub.get_name());
        let sub = sub.clone().name(name.clone());
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub).render(&mut buf)?;
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
