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

mod flatten;
mod place;

use crate::image::cache::CachedImage;
use crate::plan::ImageInfo;
use crate::rootfs::layers::LayerError;
use crate::rootfs::tree::{self, Content, Kind, Tree, TreeError};

pub use flatten::{flatten_all, unpack_all};
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
