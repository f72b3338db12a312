//! The exit statuses of every command, in one table: `--help` (after the options), the man
//! pages (EXIT STATUS) and README.md's table are all made from [`TABLE`], and tests hold each
//! command's real exit codes to it.

/// Each command with its exit statuses and what they mean; `raftdump` is the top-level help.
pub const TABLE: &[(&str, &[(u8, &str)])] = &[
    (
        "raftdump",
        &[
            (0, "clean: nothing wrong found"),
            (
                1,
                "a negative answer: damage or invariant violations found, or nodes differ",
            ),
            (2, "could not run: bad usage, missing path, I/O error"),
        ],
    ),
    (
        "inspect",
        &[
            (
                0,
                "the log (or --snapshot file) is clean (non-canonical frames do not count); --follow: stopped by a signal",
            ),
            (
                1,
                "damage found: every good entry is printed, then the problems",
            ),
            (
                2,
                "could not run: missing path, no log in the directory, permission denied",
            ),
        ],
    ),
    (
        "replay",
        &[
            (
                0,
                "replayed, a damaged log too: the state goraft would keep, the damage reported",
            ),
            (
                2,
                "could not run: bad usage, missing path, unreadable file, --committed proves nothing",
            ),
        ],
    ),
    (
        "diff",
        &[
            (0, "the nodes are identical"),
            (1, "the nodes differ"),
            (2, "could not run: bad usage, missing path, I/O error"),
        ],
    ),
    (
        "verify",
        &[
            (
                0,
                "no error found (warnings and infos allowed); --follow: stopped by a signal",
            ),
            (1, "an error found (or a warning, with --strict)"),
            (2, "could not run: bad usage, missing path, I/O error"),
        ],
    ),
    (
        "repair",
        &[
            (
                0,
                "nothing to repair, or the repair was applied and the result has no errors",
            ),
            (
                1,
                "dry run: there is something to repair (or errors remain after --apply)",
            ),
            (
                2,
                "refused, or could not run (bad usage, missing path, I/O error, backup impossible)",
            ),
        ],
    ),
    (
        "serve",
        &[
            (0, "stopped by SIGTERM"),
            (
                2,
                "could not start (bad usage, port taken, a start-up check failed) or failed (fsync, write)",
            ),
            (130, "stopped by SIGINT"),
        ],
    ),
];

/// The exit statuses of `command` (`raftdump` for the top level; an unknown name gets those).
pub fn statuses(command: &str) -> &'static [(u8, &'static str)] {
    TABLE
        .iter()
        .find(|(c, _)| *c == command)
        .unwrap_or(&TABLE[0])
        .1
}

/// The "Exit status:" block of `command`'s `--help`.
pub fn help(command: &str) -> String {
    let rows = statuses(command);
    let width = rows.iter().map(|(c, _)| c.to_string().len()).max();
    let mut text = String::from("Exit status:");
    for (code, meaning) in rows {
        text.push_str(&format!(
            "\n  {code:<w$}  {meaning}",
            w = width.unwrap_or(1)
        ));
    }
    text
}

/// The EXIT STATUS section of `command`'s man page (roff).
pub fn roff(command: &str) -> String {
    let mut text = String::from(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in statuses(command) {
        text.push_str(&format!(
            ".TP\n\\fB{code}\\fR\n{}\n",
            meaning.replace('-', "\\-")
        ));
    }
    text
}

/// README.md's table: one row per command and status.
pub fn markdown() -> String {
    let mut text = String::from("| command | status | meaning |\n|---|---|---|\n");
    for (command, rows) in TABLE.iter().skip(1) {
        for (code, meaning) in *rows {
            text.push_str(&format!("| `{command}` | `{code}` | {meaning} |\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_0_and_2_and_each_status_once() {
        for (command, rows) in TABLE {
            let mut codes: Vec<u8> = rows.iter().map(|(c, _)| *c).collect();
            assert!(codes.contains(&0) && codes.contains(&2), "{command}");
            codes.sort_unstable();
            codes.dedup();
            assert_eq!(codes.len(), rows.len(), "{command}: a status twice");
        }
    }

    #[test]
    fn help_aligns_a_three_digit_status() {
        assert_eq!(
            help("serve").lines().nth(3).unwrap(),
            "  130  stopped by SIGINT"
        );
        assert_eq!(
            help("diff").lines().nth(2).unwrap(),
            "  1  the nodes differ"
        );
    }
}
