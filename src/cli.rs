//! The command-line interface definition: arguments, flags and help text.
//!
//! Owns: the clap types, shared by `main` (parsing) and by `hull completions` /
//! `hull man` (generation). Must not do any work: `commands` does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build minimal, immutable, bootable Linux images from OCI container images.
#[derive(Debug, Parser)]
#[command(
    name = "hull",
    version,
    about,
    after_help = "Examples:\n  hull validate examples/minimal.yml\n  hull validate base.yml extra.yml --json\n  hull completions bash > /etc/bash_completion.d/hull\n  hull man > hull.1"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Image cache directory [default: $XDG_CACHE_HOME/hull, or ~/.cache/hull]
    #[arg(long, global = true, value_name = "DIR", env = "HULL_CACHE")]
    pub cache: Option<PathBuf>,
    /// Say more about what is happening (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print nothing but errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests and print the merged result
    #[command(
        after_help = "Several files are merged in order, as LinuxKit does: kernel fields from the last\nfile that sets them, lists appended. Every error is printed as FILE:LINE:COL.\n\nExamples:\n  hull validate examples/minimal.yml\n  hull validate base.yml debug.yml --json | jq .services"
    )]
    Validate(ValidateArgs),
    /// Print a shell completion script
    #[command(
        after_help = "Example:\n  hull completions bash > ~/.local/share/bash-completion/completions/hull"
    )]
    Completions(CompletionsArgs),
    /// Print the man page (roff)
    #[command(after_help = "Example:\n  hull man | man -l -")]
    Man,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Manifest files, merged in order ("-" reads standard input)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print the merged manifest as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
