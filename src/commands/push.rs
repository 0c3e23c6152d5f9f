//! `hull push SOURCE [TARGET]`: push a cached image or index to a registry.

use anyhow::Context as _;

use super::{parse_ref, runtime, Context};
use crate::cli::PushArgs;
use crate::image::cache::Cache;
use crate::image::registry::{push, Registry};
use crate::progress::{Mode, Progress};

/// When `source` is a file: imports it (an OCI archive naming one image, as
/// an update bundle does; every blob checked against its digest) and
/// returns the name it has in the cache.
fn archive_ref(cache: &Cache, source: &str) -> anyhow::Result<Option<String>> {
    let path = std::path::Path::new(source);
    if !path.is_file() {
        return Ok(None);
    }
    let names = crate::image::cache::archive::import(cache, path)
        .with_context(|| format!("cannot import {source}"))?;
    match names.as_slice() {
        [one] => Ok(Some(one.clone())),
        _ => anyhow::bail!(
            "{source} holds {} images ({}): push them one at a time by name after hull cache import",
            names.len(),
            names.join(", ")
        ),
    }
}

pub fn run(cx: &Context, args: PushArgs) -> anyhow::Result<()> {
    let cache = Cache::open(&cx.cache)
        .with_context(|| format!("cannot open the cache {}", cx.cache.display()))?;
    let name = match archive_ref(&cache, &args.source)? {
        Some(name) => name,
        None => args.source.clone(),
    };
    let source = parse_ref(&name)?;
    let target = parse_ref(args.target.as_deref().unwrap_or(&name))?;
    let registry = Registry::new(cx.registry.clone())?;
    let progress = Progress::new(Mode::detect(cx.quiet));
    let digest = runtime()?.block_on(push::push(
        &registry,
        &cache,
        &source.whole(),
        &target,
        &progress,
    ))?;
    if !cx.quiet {
        println!("{}\t{digest}", target.whole());
    }
    Ok(())
}
