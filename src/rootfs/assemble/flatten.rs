//! Flattening pulled images: each image's layers applied in order to a tree
//! of its own, the layers of all images read (decompressed, checked, their
//! files stored in the pack) on every core at once.
//!
//! Owns: [`flatten_all`] and what an image's config tells
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

/// One layer to read: which image it belongs to, its blob, its digest.
struct Job {
    image: usize,
    name: String,
    path: PathBuf,
    digest: String,
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
    let mut jobs = Vec::new();
    for (image, (_, name, cached)) in images.iter().enumerate() {
        for layer in &cached.layers {
            let digest = layer.digest().map_err(CacheError::from)?;
            jobs.push(Job {
                image,
                name: name.clone(),
                path: cache.blob_path(&digest),
                digest: layer.digest.clone(),
            });
        }
    }
    let read = read_all(pack, &jobs, limits)?;
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
fn read_all(pack: &Pack, jobs: &[Job], limits: layers::Limits) -> Result<Vec<Layer>, LayerError> {
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
                    let result = layers::read(pack, &job.path, (&job.name, &job.digest), limits);
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
