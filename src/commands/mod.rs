//! One module per subcommand: each loads its inputs, calls the library, and adds
//! context to errors. No pipeline logic lives here.

pub mod completions;
pub mod man;
pub mod validate;

use std::path::PathBuf;

use crate::cli::{Command, GlobalArgs};

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub struct Context {
    pub cache: PathBuf,
    pub verbose: u8,
    pub quiet: bool,
}

impl Context {
    pub fn new(global: GlobalArgs) -> Self {
        Context {
            cache: crate::paths::cache_dir(global.cache),
            verbose: global.verbose,
            quiet: global.quiet,
        }
    }

    /// A warning on stderr, unless `--quiet`.
    pub fn warn(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }
}

/// Runs a parsed command.
pub fn run(cx: &Context, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Validate(args) => validate::run(cx, args),
        Command::Completions(args) => completions::run(args),
        Command::Man => man::run(),
    }
}
