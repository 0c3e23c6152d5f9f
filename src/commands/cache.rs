//! `hull cache ...`: list, pull, remove, gc, verify, export and import.

use anyhow::{bail, Context as _};

use super::{parse_ref, runtime, Context};
use crate::cli::{CacheCommand, CacheExportArgs, CachePullArgs};
use crate::image::cache::{archive, Cache};
use crate::image::registry::{pull, Registry};
use crate::output::initrd_parts::{PartStore, PARTS_KEPT_FOR};
use crate::platform::Arch;
use crate::progress::{Mode, Progress};
use crate::rootfs::assemble;
use crate::rootfs::layers::Limits;
use crate::rootfs::unpacked;

pub fn run(cx: &Context, cmd: CacheCommand) -> anyhow::Result<()> {
    let cache = Cache::open(&cx.cache)
        .with_context(|| format!("cannot open the cache {}", cx.cache.display()))?;
    match cmd {
        CacheCommand::Ls => ls(&cache),
        CacheCommand::Pull(args) => pull(cx, &cache, &args),
        CacheCommand::Rm(args) => {
            for r in &args.refs {
                let name = parse_ref(r)?.whole();
                if !cache.remove_ref(&name)? {
                    bail!("{name} is not in the cache");
                }
            }
            Ok(())
        }
        CacheCommand::Gc => {
            let (removed, freed) = cache.gc()?;
            let parts = PartStore::new(&cache.parts_dir());
            let parts_freed = parts
                .prune(PARTS_KEPT_FOR)
                .with_context(|| format!("cannot prune {}", cache.parts_dir().display()))?;
            if !cx.quiet {
                let freed = indicatif::HumanBytes(freed + parts_freed);
                println!("removed {} blobs, {freed} freed", removed.len());
            }
            Ok(())
        }
        CacheCommand::Verify => verify(cx, &cache),
        CacheCommand::Export(args) => export(&cache, &args),
        CacheCommand::Import(args) => {
            for f in &args.files {
                let names = archive::import(&cache, f)
                    .with_context(|| format!("cannot import {}", f.display()))?;
                if !cx.quiet {
                    names.iter().for_each(|n| println!("{n}"));
                }
            }
            Ok(())
        }
    }
}

fn ls(cache: &Cache) -> anyhow::Result<()> {
    for r in cache.refs()? {
        let t = &r.descriptor.media_type;
        let kind = if t.contains("index") || t.contains("list") {
            "index"
        } else {
            "image"
        };
        println!("{}\t{}\t{kind}", r.name, r.descriptor.digest);
    }
    Ok(())
}

fn pull(cx: &Context, cache: &Cache, args: &CachePullArgs) -> anyhow::Result<()> {
    let arch = Arch::from_flag(Some(&args.arch)).map_err(anyhow::Error::msg)?;
    let registry = Registry::new(cx.registry.clone())?;
    let progress = Progress::new(Mode::detect(cx.quiet));
    let refs = args
        .refs
        .iter()
        .map(|r| parse_ref(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pulled = runtime()?.block_on(async {
        let mut pulled = Vec::new();
        for r in &refs {
            let img = pull::ensure(&registry, cache, r, arch, args.pull, &progress).await?;
            if !cx.quiet {
                println!("{}\t{}", r.whole(), img.manifest.digest);
            }
            pulled.push((r.whole(), img));
        }
        anyhow::Ok(pulled)
    })?;
    // Builds find the layers unpacked. One Hull cannot use is not an error
    // of the pull: the build that uses it says what is wrong.
    if let Err(e) = assemble::unpack_all(cache, &pulled, Limits::default()) {
        if !cx.quiet {
            eprintln!("note: not unpacked: {:#}", anyhow::Error::from(e));
        }
    }
    Ok(())
}

fn verify(cx: &Context, cache: &Cache) -> anyhow::Result<()> {
    let (count, bad) = cache.verify()?;
    for (path, what) in &bad {
        eprintln!("bad blob {}: {what}", path.display());
    }
    let layers_dir = cache.layers_dir();
    let (layers, bad_layers) =
        unpacked::verify(cache).with_context(|| format!("cannot list {}", layers_dir.display()))?;
    for (path, what) in &bad_layers {
        eprintln!(
            "bad unpacked layer {}: {what} (remove it: the next build unpacks the layer again)",
            path.display()
        );
    }
    if !bad.is_empty() || !bad_layers.is_empty() {
        let dir = cx.cache.display();
        bail!(
            "{} of {count} blobs and {} of {layers} unpacked layers in {dir} are bad",
            bad.len(),
            bad_layers.len()
        );
    }
    if !cx.quiet {
        println!("{count} blobs verified, {layers} unpacked layers verified");
    }
    Ok(())
}

fn export(cache: &Cache, args: &CacheExportArgs) -> anyhow::Result<()> {
    let mut refs = Vec::new();
    for r in &args.refs {
        let name = parse_ref(r)?.whole();
        let Some(descriptor) = cache.resolve(&name)? else {
            bail!("{name} is not in the cache");
        };
        refs.push(crate::image::cache::CachedRef { name, descriptor });
    }
    archive::export(cache, &refs, &args.output)
        .with_context(|| format!("cannot export to {}", args.output.display()))
}
