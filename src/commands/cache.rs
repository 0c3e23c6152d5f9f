//! `hull cache ...`: list, pull, remove, gc, verify, export and import.

use anyhow::{bail, Context as _};

use super::{parse_ref, runtime, Context};
use crate::cache::{archive, Cache};
use crate::cli::CacheCommand;
use crate::platform::Arch;
use crate::progress::{Mode, Progress};
use crate::registry::{pull, Registry};

pub fn run(cx: &Context, cmd: CacheCommand) -> anyhow::Result<()> {
    let cache = Cache::open(&cx.cache)
        .with_context(|| format!("cannot open the cache {}", cx.cache.display()))?;
    match cmd {
        CacheCommand::Ls => {
            for r in cache.refs()? {
                let kind = if r.descriptor.media_type.contains("index")
                    || r.descriptor.media_type.contains("list")
                {
                    "index"
                } else {
                    "image"
                };
                println!("{}\t{}\t{kind}", r.name, r.descriptor.digest);
            }
        }
        CacheCommand::Pull(args) => {
            let arch = if args.arch == "host" {
                Arch::host()
            } else {
                args.arch.parse().map_err(anyhow::Error::msg)?
            };
            let registry = Registry::new(cx.registry.clone())?;
            let progress = Progress::new(Mode::detect(cx.quiet));
            let refs = args
                .refs
                .iter()
                .map(|r| parse_ref(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            runtime()?.block_on(async {
                for r in &refs {
                    let img =
                        pull::ensure(&registry, &cache, r, arch, args.pull, &progress).await?;
                    if !cx.quiet {
                        println!("{}\t{}", r.whole(), img.manifest.digest);
                    }
                }
                anyhow::Ok(())
            })?;
        }
        CacheCommand::Rm(args) => {
            for r in &args.refs {
                let name = parse_ref(r)?.whole();
                if !cache.remove_ref(&name)? {
                    bail!("{name} is not in the cache");
                }
            }
        }
        CacheCommand::Gc => {
            let (removed, freed) = cache.gc()?;
            if !cx.quiet {
                println!(
                    "removed {} blobs, {} freed",
                    removed.len(),
                    indicatif::HumanBytes(freed)
                );
            }
        }
        CacheCommand::Verify => {
            let (count, bad) = cache.verify()?;
            for (path, what) in &bad {
                eprintln!("bad blob {}: {what}", path.display());
            }
            if !bad.is_empty() {
                bail!(
                    "{} of {count} blobs in {} are bad",
                    bad.len(),
                    cx.cache.display()
                );
            }
            if !cx.quiet {
                println!("{count} blobs verified");
            }
        }
        CacheCommand::Export(args) => {
            let mut refs = Vec::new();
            for r in &args.refs {
                let name = parse_ref(r)?.whole();
                let Some(descriptor) = cache.resolve(&name)? else {
                    bail!("{name} is not in the cache");
                };
                refs.push(crate::cache::CachedRef { name, descriptor });
            }
            archive::export(&cache, &refs, &args.output)
                .with_context(|| format!("cannot export to {}", args.output.display()))?;
        }
        CacheCommand::Import(args) => {
            for f in &args.files {
                let names = archive::import(&cache, f)
                    .with_context(|| format!("cannot import {}", f.display()))?;
                if !cx.quiet {
                    for n in names {
                        println!("{n}");
                    }
                }
            }
        }
    }
    Ok(())
}
