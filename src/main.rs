//! The `hull` binary: parse arguments, run the command, print the error chain.

use std::process::ExitCode;

use clap::Parser;

use hull::cli::Cli;
use hull::commands::{self, Context};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cx = Context::new(cli.global);
    match commands::run(&cx, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
