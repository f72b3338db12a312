//! `raftdump inspect`: to be written (foundation issue).

use super::{Outcome, Ui};

/// Show every entry of a data dir or log file.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A goraft data dir or a log file.
    pub path: std::path::PathBuf,
}

/// Runs `inspect`.
pub fn run(_args: Args, _ui: &mut Ui) -> anyhow::Result<Outcome> {
    anyhow::bail!("inspect is not written yet")
}
