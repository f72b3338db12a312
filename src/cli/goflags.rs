//! raftd's command lines as they are: Go's flag package takes long options with one dash
//! (`-join ADDR`, `-debug`), `-flag=value`, and `--flag` as well; clap wants two dashes for a long
//! option. [`go_flags`] rewrites the arguments of `serve` before clap parses them, so that
//! `raftdump serve -p 4002 -join localhost:4001 DIR` (the raftd tutorial's line) works.

use std::ffi::OsString;

use clap::CommandFactory;

/// An option as the rewrite needs it: its names and whether it takes a value.
struct Opt {
    short: Option<char>,
    long: Option<String>,
    /// It takes a value: the next argument, or after `=`.
    takes_value: bool,
    /// It takes a value after `=` only (`--strict-reconfig-check[=BOOL]`).
    optional_value: bool,
}

/// The options of `serve`, the global ones included, read from the clap definition.
fn serve_options() -> Vec<Opt> {
    let mut cmd = super::Cli::command();
    cmd.build();
    let Some(serve) = cmd.find_subcommand("serve") else {
        return Vec::new();
    };
    serve
        .get_arguments()
        .filter(|a| !a.is_positional())
        .map(|a| Opt {
            short: a.get_short(),
            long: a.get_long().map(str::to_string),
            takes_value: a.get_action().takes_values()
                && a.get_num_args().is_none_or(|n| n.min_values() > 0),
            optional_value: a.get_action().takes_values()
                && a.get_num_args().is_some_and(|n| n.min_values() == 0),
        })
        .collect()
}

/// Rewrites Go-style long options of the `serve` subcommand to clap's form: `-join X` and
/// `-join=X` become `--join X` and `--join=X`; a boolean `-debug=true` becomes `--debug` and
/// `-debug=false` is dropped (Go's bool syntax); short options (`-p 4001`, `-h HOST`, `-p4001`),
/// the value after an option that takes one (even if it starts with '-'), everything after
/// `--`, and every other command's arguments are left as they are.
pub fn go_flags(args: Vec<OsString>) -> Vec<OsString> {
    let Some(at) = serve_position(&args) else {
        return args;
    };
    let opts = serve_options();
    let mut out: Vec<OsString> = args[..=at].to_vec();
    let mut rest = args.into_iter().skip(at + 1);
    while let Some(arg) = rest.next() {
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            out.push(arg);
            out.extend(rest.by_ref());
            break;
        }
        let (rewritten, value_follows) = rewrite_one(s, &opts);
        out.extend(rewritten.map(OsString::from));
        if value_follows {
            out.extend(rest.next());
        }
    }
    out
}

/// Where `serve` is among `args` (after the program name and global options), if it is the
/// subcommand.
fn serve_position(args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        match a {
            "serve" => return Some(i),
            // The one global option that takes a value.
            "--color" => i += 2,
            _ if a.starts_with('-') => i += 1,
            _ => return None,
        }
    }
    None
}

/// One argument of `serve`: what it becomes (none, when a `-flag=false` is dropped) and
/// whether the next argument is this option's value.
fn rewrite_one(s: &str, opts: &[Opt]) -> (Option<String>, bool) {
    let Some(body) = s.strip_prefix('-') else {
        return (Some(s.to_string()), false);
    };
    let long_form = body.strip_prefix('-');
    let body = long_form.unwrap_or(body);
    let (name, value) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    };
    let long = opts.iter().find(|o| o.long.as_deref() == Some(name));
    if long_form.is_none() && name.chars().count() <= 1 || long.is_none() {
        // A short option (`-p`, `-h`, `-p4001`), `-`, or an unknown one: clap's to judge.
        let mut chars = body.chars();
        let short = chars
            .next()
            .and_then(|c| opts.iter().find(|o| o.short == Some(c)));
        let takes = long_form.is_none() && short.is_some_and(|o| o.takes_value);
        return (Some(s.to_string()), takes && chars.next().is_none());
    }
    let opt = long.expect("checked above");
    match value {
        None => (Some(format!("--{name}")), opt.takes_value),
        Some(v) if opt.takes_value || opt.optional_value => (Some(format!("--{name}={v}")), false),
        Some(v) => match go_bool(v) {
            Some(true) => (Some(format!("--{name}")), false),
            Some(false) => (None, false),
            // Not a Go bool: clap says what is wrong with it.
            None => (Some(format!("--{name}={v}")), false),
        },
    }
}

/// A value Go's `strconv.ParseBool` accepts.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        go_flags(args)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_options_get_two_dashes() {
        assert_eq!(
            go(&[
                "raftdump",
                "serve",
                "-p",
                "4002",
                "-join",
                "localhost:4001",
                "d"
            ]),
            [
                "raftdump",
                "serve",
                "-p",
                "4002",
                "--join",
                "localhost:4001",
                "d"
            ]
        );
        assert_eq!(
            go(&["raftdump", "serve", "-join=x:1", "-debug", "-trace", "d"]),
            ["raftdump", "serve", "--join=x:1", "--debug", "--trace", "d"]
        );
        assert_eq!(
            go(&[
                "raftdump",
                "serve",
                "--join",
                "x:1",
                "-read-mode=local",
                "d"
            ]),
            [
                "raftdump",
                "serve",
                "--join",
                "x:1",
                "--read-mode=local",
                "d"
            ]
        );
        // The global options are options of serve too.
        assert_eq!(
            go(&["raftdump", "-quiet", "serve", "-quiet", "-color", "never", "d"]),
            ["raftdump", "-quiet", "serve", "--quiet", "--color", "never", "d"]
        );
    }

    #[test]
    fn short_options_and_values_are_left_alone() {
        assert_eq!(
            go(&["raftdump", "serve", "-h", "-join", "-p4001", "-v", "d"]),
            ["raftdump", "serve", "-h", "-join", "-p4001", "-v", "d"]
        );
        // A value that starts with '-' after an option that takes one.
        assert_eq!(
            go(&[
                "raftdump",
                "serve",
                "-join",
                "-debug",
                "-token-file",
                "-x",
                "d"
            ]),
            [
                "raftdump",
                "serve",
                "--join",
                "-debug",
                "--token-file",
                "-x",
                "d"
            ]
        );
        // `--` ends the options; unknown options are clap's to refuse.
        assert_eq!(
            go(&["raftdump", "serve", "-nope", "-", "--", "-join", "x"]),
            ["raftdump", "serve", "-nope", "-", "--", "-join", "x"]
        );
    }

    #[test]
    fn an_optional_value_is_given_with_equals_only() {
        assert_eq!(
            go(&[
                "raftdump",
                "serve",
                "-strict-reconfig-check",
                "-join",
                "x",
                "d"
            ]),
            [
                "raftdump",
                "serve",
                "--strict-reconfig-check",
                "--join",
                "x",
                "d"
            ]
        );
        assert_eq!(
            go(&["raftdump", "serve", "-strict-reconfig-check=false", "d"]),
            ["raftdump", "serve", "--strict-reconfig-check=false", "d"]
        );
    }

    #[test]
    fn go_booleans() {
        assert_eq!(
            go(&[
                "raftdump",
                "serve",
                "-debug=true",
                "-trace=false",
                "-forward=1",
                "d"
            ]),
            ["raftdump", "serve", "--debug", "--forward", "d"]
        );
        assert_eq!(
            go(&["raftdump", "serve", "-debug=yes", "d"]),
            ["raftdump", "serve", "--debug=yes", "d"]
        );
    }

    #[test]
    fn other_commands_are_untouched() {
        let args = ["raftdump", "verify", "-join", "d"];
        assert_eq!(go(&args), args);
        let args = ["raftdump", "--color", "serve", "replay", "-at", "3"];
        assert_eq!(go(&args), args);
        assert_eq!(go(&["raftdump"]), ["raftdump"]);
    }

    #[test]
    fn the_rewritten_tutorial_line_parses() {
        let args = go(&[
            "raftdump",
            "serve",
            "-p",
            "4002",
            "-join",
            "localhost:4001",
            "-debug",
            "dir",
        ]);
        let cli = <super::super::Cli as clap::Parser>::try_parse_from(args).unwrap();
        let super::super::Command::Serve(a) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(a.join.as_deref(), Some("localhost:4001"));
        assert_eq!(a.port, 4002);
    }
}
