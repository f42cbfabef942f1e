//! The `gastown` binary: parses arguments, starts logging, and hands over to [`gastown::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = gastown::Cli::parse();
    gastown::init_logging(cli.default_log_filter());
    gastown::main_with(cli)
}
