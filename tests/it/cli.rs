//! CLI golden cases: every `tests/cmd/<subcommand>/<case>.toml` (trycmd), run inside `fixtures/`,
//! with a pinned environment. Bless with `TRYCMD=overwrite` and review the diff.

#[test]
fn cli_goldens() {
    trycmd::TestCases::new()
        .register_bin("raftdump", trycmd::cargo::cargo_bin!("raftdump"))
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .env("RAFTDUMP_LOG", "off")
        .env("TZ", "UTC")
        .case("tests/cmd/*/*.toml")
        .case("README.md");
}
