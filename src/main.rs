//! The `wmx` command line: parses arguments, hands them to one verb's `exec` in
//! `cli/`, prints errors with `{:#}`, and maps outcomes to exit codes: 0 ok,
//! 1 failed, 2 bad input, 130 interrupted.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    wmx::backend::reuse_freed_memory();
    let args = cli::Cli::parse();
    args.init_logging();
    match cli::exec(args.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(cli::exit_code(&err))
        }
    }
}
