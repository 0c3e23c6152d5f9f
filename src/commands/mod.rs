//! One module per subcommand: each loads its inputs, calls the library, and adds
//! context to errors. No pipeline logic lives here.

pub mod build;
pub mod cache;
pub mod completions;
pub mod man;
pub mod pkg;
pub mod push;
pub mod run;
pub mod validate;

use std::path::PathBuf;

use crate::cli::{Command, GlobalArgs};

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub struct Context {
    pub cache: PathBuf,
    pub verbose: u8,
    pub quiet: bool,
    pub registry: crate::image::registry::Options,
}

impl Context {
    pub fn new(global: GlobalArgs) -> Self {
        Context {
            cache: crate::paths::cache_dir(global.cache),
            verbose: global.verbose,
            quiet: global.quiet,
            registry: crate::image::registry::Options {
                insecure: global.insecure_registry,
                ca_certs: global.registry_ca,
                jobs: global.jobs,
                ..crate::image::registry::Options::default()
            },
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
        Command::Build(args) => build::run(cx, args),
        Command::Cache(cmd) => cache::run(cx, cmd),
        Command::Pkg(cmd) => pkg::run(cx, cmd),
        Command::Run(cmd) => run::run(cx, cmd),
        Command::Push(args) => push::run(cx, args),
        Command::Completions(args) => completions::run(args),
        Command::Man => man::run(),
    }
}

/// The registry runtime for the commands that talk to registries.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(crate::image::registry::runtime()?)
}

/// Parses a reference given on the command line.
pub fn parse_ref(text: &str) -> anyhow::Result<oci_client::Reference> {
    text.parse()
        .map_err(|e| anyhow::anyhow!("invalid image reference \"{text}\": {e}"))
}

/// Loads manifests, printing their warnings (also when they have errors).
pub fn load_manifests(
    cx: &Context,
    files: &[std::path::PathBuf],
) -> anyhow::Result<crate::manifest::Loaded> {
    use crate::manifest::LoadError;
    let warn = |ws: &[crate::manifest::Diagnostic]| {
        for w in ws {
            cx.warn(format!("{}: warning: {}", w.pos, w.message));
        }
    };
    let keep = crate::image::cache::pkg_cache_dir(&cx.cache);
    let loaded = crate::manifest::load_files(files)
        .and_then(|l| crate::manifest::resolve_packages(l, |dir| crate::pkg::resolve(dir, &keep)));
    match loaded {
        Ok(loaded) => {
            warn(&loaded.warnings);
            Ok(loaded)
        }
        Err(LoadError::Invalid { errors, warnings }) => {
            warn(&warnings);
            Err(LoadError::Invalid {
                errors,
                warnings: Vec::new(),
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}
