//! The `raftdump` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    raftdump::cli::main()
}
