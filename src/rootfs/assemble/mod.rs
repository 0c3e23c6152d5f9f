//! Turning a manifest and its pulled images into the image tree, the kernel and
//! the command line, per the image contract in DESIGN.md.
//!
//! ```text
//! /                                  init images merged in order, kernel.tar's modules
//! /containers/images/HEX/            each image a container uses, stored once (HEX: its manifest digest)
//! /containers/onboot/NNN-name/       config.json, runtime.json, rootfs -> ../../images/HEX
//! /containers/onshutdown/NNN-name/   the same
//! /containers/services/name/         the same
//! /containers/volumes/name/          volumes (filesystem format)
//! ```
//!
//! Owns: flattening images (through `layers`) and placing what the plan
//! decided: the kernel's files, init images, each container's image (once)
//! and its `config.json`, `runtime.json` and `rootfs` link, volumes, the
//! `files:` entries and the module index. Reads only the plan (`plan`), never
//! the manifest. Must not fetch images or write output files.

mod place;

use crate::image::cache::{Cache, CachedImage};
use crate::manifest::ImageConfig;
use crate::plan::{spec, ImageInfo};
use crate::rootfs::layers::{self, LayerError};
use crate::rootfs::tree::{self, Content, Kind, Pack, Tree, TreeError};

pub use place::assemble;

/// An image pulled and flattened.
pub struct Flat {
    pub name: String,
    pub cached: CachedImage,
    /// What the plan needs to know of it.
    pub info: ImageInfo,
    pub tree: Tree,
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Cache(#[from] crate::image::cache::CacheError),
    #[error("{0}")]
    Label(String),
    #[error("{what}: {source}")]
    Tree {
        what: String,
        #[source]
        source: TreeError,
    },
    #[error("kernel image {image} has no file \"{file}\"")]
    NoKernelFile { image: String, file: String },
    #[error("{0}")]
    Files(String),
    #[error("cannot store data for {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Modules(#[from] crate::rootfs::modules::ModulesError),
    #[error("cannot write config.json or runtime.json for {0}")]
    Json(String, #[source] serde_json::Error),
}

/// Applies every layer of `cached` to a new tree, each within `limits`.
pub fn flatten(
    cache: &Cache,
    pack: &mut Pack,
    name: &str,
    cached: CachedImage,
    limits: layers::Limits,
) -> Result<Flat, AssembleError> {
    let mut tree = Tree::new();
    for layer in &cached.layers {
        let digest = layer
            .digest()
            .map_err(crate::image::cache::CacheError::from)?;
        layers::apply(
            &mut tree,
            pack,
            &cache.blob_path(&digest),
            (name, &layer.digest),
            limits,
        )?;
    }
    let config = cache.read_blob(
        &cached
            .config
            .digest()
            .map_err(crate::image::cache::CacheError::from)?,
    )?;
    let hex = cached
        .manifest
        .digest()
        .map_err(crate::image::cache::CacheError::from)?
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

/// What the outputs are made from.
pub struct Assembled {
    pub tree: Tree,
    pub kernel: Option<Content>,
    pub ucode: Option<Content>,
    pub cmdline: String,
}

pub(crate) fn tree_err(what: impl Into<String>) -> impl FnOnce(TreeError) -> AssembleError {
    let what = what.into();
    move |source| AssembleError::Tree { what, source }
}

pub(crate) fn file_in(flat: &Flat, name: &str) -> Option<Content> {
    match flat.tree.get(&tree::normalize(name).ok()?)?.kind.clone() {
        Kind::File(c) => Some(c),
        Kind::Hardlink(t) => match &flat.tree.get(&t)?.kind {
            Kind::File(c) => Some(c.clone()),
            _ => None,
        },
        _ => None,
    }
}
