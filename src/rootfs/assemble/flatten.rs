//! Flattening pulled images: each image's layers applied in order to a tree
//! of its own, the layers of all images read on every core at once (from
//! the cache's unpacked layers, each unpacked first if it is not yet).
//!
//! Owns: [`flatten_all`], [`unpack_all`] and what an image's config tells
//! the plan ([`ImageInfo`]). Must not place anything in the system tree.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{AssembleError, Flat};
use crate::image::cache::{Cache, CacheError, CachedImage};
use crate::manifest::ImageConfig;
use crate::plan::{spec, ImageInfo};
use crate::rootfs::layers::{self, Layer, LayerError};
use crate::rootfs::tree::{Pack, Tree};
use crate::rootfs::unpacked;

/// One layer to read: which image it belongs to, its blob, its digest.
struct Job {
    image: usize,
    name: String,
    path: PathBuf,
    digest: String,
    hex: String,
}

/// The layers of `images` (the image's name for errors, the cached image),
/// in order.
fn jobs<'a>(
    cache: &Cache,
    images: impl Iterator<Item = (&'a String, &'a CachedImage)>,
) -> Result<Vec<Job>, CacheError> {
    let mut jobs = Vec::new();
    for (image, (name, cached)) in images.enumerate() {
        for layer in &cached.layers {
            let digest = layer.digest()?;
            jobs.push(Job {
                image,
                name: name.clone(),
                path: cache.blob_path(&digest),
                digest: layer.digest.clone(),
                hex: digest.hex().to_string(),
            });
        }
    }
    Ok(jobs)
}

/// Unpacks every layer of `images` (the image's name for errors, the cached
/// image) the cache does not hold unpacked yet, within `limits`, on all
/// cores: what `hull cache pull` does so that builds find them unpacked.
pub fn unpack_all(
    cache: &Cache,
    images: &[(String, CachedImage)],
    limits: layers::Limits,
) -> Result<(), AssembleError> {
    let jobs = jobs(cache, images.iter().map(|(n, c)| (n, c)))?;
    let pack = Pack::new(&cache.tmp_dir()).map_err(|source| AssembleError::Io {
        what: format!("a temp file in {}", cache.tmp_dir().display()),
        source,
    })?;
    read_all(cache, &pack, &jobs, limits)?;
    Ok(())
}

/// Flattens every image of `images` (a key, the image's name for errors,
/// the cached image); the layers of all are read in parallel and each
/// image's applied in order, so errors are the ones a layer-by-layer
/// flattening would give first.
pub fn flatten_all<K>(
    cache: &Cache,
    pack: &Pack,
    images: Vec<(K, String, CachedImage)>,
    limits: layers::Limits,
) -> Result<Vec<(K, Flat)>, AssembleError> {
    let jobs = jobs(cache, images.iter().map(|(_, n, c)| (n, c)))?;
    let read = read_all(cache, pack, &jobs, limits)?;
    let mut trees: Vec<Tree> = images.iter().map(|_| Tree::new()).collect();
    for (job, layer) in jobs.iter().zip(read) {
        if let Some(tree) = trees.get_mut(job.image) {
            layer.apply(tree)?;
        }
    }
    images
        .into_iter()
        .zip(trees)
        .map(|((key, name, cached), tree)| Ok((key, finish(cache, &name, cached, tree)?)))
        .collect()
}

/// Reads every layer of `jobs` on all cores; returns them in order, or the
/// first failure in order. Jobs are taken in order, so every job before a
/// failed one was read.
fn read_all(
    cache: &Cache,
    pack: &Pack,
    jobs: &[Job],
    limits: layers::Limits,
) -> Result<Vec<Layer>, LayerError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<Layer, LayerError>>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    let workers = crate::media::compress::threads().min(jobs.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { return };
                    let names = (job.name.as_str(), job.digest.as_str());
                    let result = unpacked::read(cache, pack, &job.path, &job.hex, names, limits);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if let Some(Ok(mut slot)) = slots.get(i).map(Mutex::lock) {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    let mut out = Vec::with_capacity(jobs.len());
    for (slot, job) in slots.into_iter().zip(jobs) {
        match slot.into_inner().ok().flatten() {
            Some(Ok(layer)) => out.push(layer),
            Some(Err(e)) => return Err(e),
            None => return Err(layers::not_read(&job.name, &job.digest)),
        }
    }
    Ok(out)
}

/// The flattened image: its tree and what its config says.
fn finish(
    cache: &Cache,
    name: &str,
    cached: CachedImage,
    tree: Tree,
) -> Result<Flat, AssembleError> {
    let config = cache.read_blob(&cached.config.digest().map_err(CacheError::from)?)?;
    let hex = cached
        .manifest
        .digest()
        .map_err(CacheError::from)?
        .hex()
        .to_string();
    let defaults = spec::image_defaults(&config);
    let label = match defaults
        .labels
        .as_ref()
        .and_then(|l| l.get("org.mobyproject.config"))
    {
        Some(json) => crate::manifest::parse_label(name, json)
            .map_err(|e| AssembleError::Label(e.to_string()))?,
        None => ImageConfig::default(),
    };
    Ok(Flat {
        name: name.to_string(),
        cached,
        info: ImageInfo {
            hex,
            defaults,
            label,
        },
        tree,
    })
}
