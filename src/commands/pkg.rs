//! `hull pkg build` and `hull pkg show-tag`.

use anyhow::Context as _;

use super::{parse_ref, runtime, Context};
use crate::cli::PkgCommand;
use crate::image::cache::{pkg_cache_dir, Cache};
use crate::image::registry::{push, Registry};
use crate::pkg;
use crate::platform::Arch;
use crate::progress::{Mode, Progress};

pub fn run(cx: &Context, cmd: PkgCommand) -> anyhow::Result<()> {
    match cmd {
        PkgCommand::ShowTag(args) => {
            let p = pkg::load(&args.dir)?;
            let tag = pkg::tag(&p, &pkg_cache_dir(&cx.cache))?;
            println!("{}", pkg::reference(&p, args.registry.as_deref(), &tag));
        }
        PkgCommand::Build(args) => {
            let cache = Cache::open(&cx.cache)
                .with_context(|| format!("cannot open the cache {}", cx.cache.display()))?;
            let progress = Progress::new(Mode::detect(cx.quiet));
            let only: Vec<Arch> = args
                .arch
                .iter()
                .map(|a| a.parse().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?;
            // Package images carry no build time: one tag, one digest.
            let mtime = 0;
            for dir in &args.dirs {
                let p = pkg::load(dir)?;
                let tag = match &args.tag {
                    Some(t) => t.clone(),
                    None => pkg::tag(&p, &cache.pkg_cache_dir())?,
                };
                let reference = pkg::reference(&p, args.registry.as_deref(), &tag);
                let cached = cache.resolve(&reference)?;
                let digest = match cached {
                    Some(d) if !args.force && only.is_empty() => {
                        progress.step(format!("{reference} is in the cache"));
                        d.digest
                    }
                    _ => pkg::build(
                        &p,
                        &cache,
                        &reference,
                        (!only.is_empty()).then_some(&only[..]),
                        mtime,
                        &progress,
                    )?,
                };
                if args.push {
                    let registry = Registry::new(cx.registry.clone())?;
                    let target = parse_ref(&reference)?;
                    runtime()?.block_on(push::push(
                        &registry, &cache, &reference, &target, &progress,
                    ))?;
                }
                if !cx.quiet {
                    println!("{reference}\t{digest}");
                }
            }
        }
    }
    Ok(())
}
