//! `hull push SOURCE [TARGET]`: push a cached image or index to a registry.

use anyhow::Context as _;

use super::{parse_ref, runtime, Context};
use crate::cli::PushArgs;
use crate::image::cache::Cache;
use crate::image::registry::{push, Registry};
use crate::progress::{Mode, Progress};

pub fn run(cx: &Context, args: PushArgs) -> anyhow::Result<()> {
    let cache = Cache::open(&cx.cache)
        .with_context(|| format!("cannot open the cache {}", cx.cache.display()))?;
    let source = parse_ref(&args.source)?;
    let target = parse_ref(args.target.as_deref().unwrap_or(&args.source))?;
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
