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
//! Owns: flattening images (through `layers`), placing them, the `files:`
//! entries and the per-container configs (through `spec`). Must not fetch
//! images or write output files.

pub mod spec;

use std::collections::BTreeMap;
use std::path::Path;

use hull_contract::{layout, Section};

use crate::cache::{Cache, CachedImage};
use crate::layers::{self, LayerError};
use crate::manifest::types::{Image as Entry_, Manifest};
use crate::manifest::values::Id;
use crate::manifest::ImageConfig;
use crate::tree::{self, Content, Entry, Kind, Pack, Tree, TreeError};

/// An image pulled and flattened.
pub struct Flat {
    pub name: String,
    pub cached: CachedImage,
    pub defaults: spec::ImageDefaults,
    pub label: ImageConfig,
    pub tree: Tree,
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
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
    #[error("volume {0}: format oci is not supported by hull build yet")]
    OciVolume(String),
    #[error(transparent)]
    Modules(#[from] crate::modules::ModulesError),
    #[error("cannot make config.json for {0}")]
    Spec(String, #[source] spec::SpecError),
    #[error("cannot write config.json or runtime.json for {0}")]
    Json(String, #[source] serde_json::Error),
}

/// Applies every layer of `cached` to a new tree.
pub fn flatten(
    cache: &Cache,
    pack: &mut Pack,
    name: &str,
    cached: CachedImage,
) -> Result<Flat, AssembleError> {
    let mut tree = Tree::new();
    for layer in &cached.layers {
        let digest = layer.digest().map_err(crate::cache::CacheError::from)?;
        layers::apply(
            &mut tree,
            pack,
            &cache.blob_path(&digest),
            name,
            &layer.digest,
        )?;
    }
    let config = cache.read_blob(
        &cached
            .config
            .digest()
            .map_err(crate::cache::CacheError::from)?,
    )?;
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
        defaults,
        label,
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

fn tree_err(what: impl Into<String>) -> impl FnOnce(TreeError) -> AssembleError {
    let what = what.into();
    move |source| AssembleError::Tree { what, source }
}

fn file_in(flat: &Flat, name: &str) -> Option<Content> {
    match flat.tree.get(&tree::normalize(name).ok()?)?.kind.clone() {
        Kind::File(c) => Some(c),
        Kind::Hardlink(t) => match &flat.tree.get(&t)?.kind {
            Kind::File(c) => Some(c.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Builds the image tree. `images` maps each reference as written in the
/// manifest to its flattened image; `manifest_dir` anchors `files:` sources.
pub fn assemble(
    manifest: &Manifest,
    images: &BTreeMap<String, Flat>,
    pack: &mut Pack,
    manifest_dir: &Path,
) -> Result<Assembled, AssembleError> {
    let mut out = Tree::new();
    let get = |r: &str| {
        images
            .get(r)
            .ok_or_else(|| AssembleError::Files(format!("image {r} was not pulled")))
    };

    // Kernel.
    let mut kernel = None;
    let mut ucode = None;
    let mut cmdline = String::new();
    if let Some(k) = &manifest.kernel {
        cmdline = k.cmdline.clone().unwrap_or_default();
        if let Some(image) = &k.image {
            let flat = get(&image.value.text)?;
            let binary = k
                .binary
                .clone()
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| "kernel".into());
            kernel = Some(
                file_in(flat, &binary).ok_or_else(|| AssembleError::NoKernelFile {
                    image: flat.name.clone(),
                    file: binary.clone(),
                })?,
            );
            let tar = k.tar.clone().unwrap_or_else(|| "kernel.tar".into());
            if !tar.is_empty() {
                if let Some(c) = file_in(flat, &tar) {
                    let tmp =
                        tempfile::NamedTempFile::new().map_err(|source| AssembleError::Io {
                            what: tar.clone(),
                            source,
                        })?;
                    let mut f = tmp.reopen().map_err(|source| AssembleError::Io {
                        what: tar.clone(),
                        source,
                    })?;
                    pack.copy_to(&c, &mut f)
                        .map_err(|source| AssembleError::Io {
                            what: tar.clone(),
                            source,
                        })?;
                    layers::apply(&mut out, pack, tmp.path(), &flat.name, &tar)?;
                } else if k.tar.is_some() {
                    return Err(AssembleError::NoKernelFile {
                        image: flat.name.clone(),
                        file: tar,
                    });
                }
            }
            if let Some(u) = k.ucode.clone().filter(|u| !u.is_empty()) {
                ucode = Some(
                    file_in(flat, &u).ok_or_else(|| AssembleError::NoKernelFile {
                        image: flat.name.clone(),
                        file: u.clone(),
                    })?,
                );
            }
        }
    }

    // Init images at /.
    for init in manifest.init.iter().flatten() {
        let flat = get(&init.value.text)?;
        out.graft("", &flat.tree, "")
            .map_err(tree_err(format!("init image {}", flat.name)))?;
    }

    // Ids for names used as uid/gid.
    let mut id_names = Vec::new();
    let sections = [
        (Section::Onboot, &manifest.onboot),
        (Section::Onshutdown, &manifest.onshutdown),
        (Section::Services, &manifest.services),
    ];
    for (_, list) in &sections {
        for e in list.iter().flatten() {
            let c = &e.config;
            for id in c
                .uid
                .iter()
                .chain(&c.gid)
                .chain(c.additional_gids.iter().flatten())
            {
                if let Id::Name(n) = &id.value {
                    id_names.push(n.clone());
                }
            }
        }
    }
    for f in manifest.files.iter().flatten() {
        for id in f.uid.iter().chain(&f.gid) {
            if let Id::Name(n) = id {
                id_names.push(n.clone());
            }
        }
    }
    let ids = spec::allocate_ids(&id_names);

    // Containers.
    for (section, list) in &sections {
        for (i, e) in list.iter().flatten().enumerate() {
            place_container(&mut out, pack, images, *section, i, e, &ids)?;
        }
    }

    // Volumes.
    for v in manifest.volumes.iter().flatten() {
        let name = v.name.as_ref().map(|n| n.value.clone()).unwrap_or_default();
        let dir = format!("{}/{name}", layout::VOLUMES);
        if v.format.as_ref().is_some_and(|f| f.as_str() == "oci") {
            return Err(AssembleError::OciVolume(name));
        }
        match &v.image {
            Some(img) => {
                let flat = get(&img.value.text)?;
                out.graft(&dir, &flat.tree, "")
                    .map_err(tree_err(format!("volume {name}")))?;
            }
            None => out
                .insert(&dir, Entry::dir(0o755))
                .map_err(tree_err(format!("volume {name}")))?,
        }
    }

    // Files.
    for f in manifest.files.iter().flatten() {
        add_file(&mut out, pack, manifest, f, manifest_dir, &ids)?;
    }
    crate::modules::index(&mut out, pack)?;
    Ok(Assembled {
        tree: out,
        kernel,
        ucode,
        cmdline,
    })
}

fn place_container(
    out: &mut Tree,
    pack: &mut Pack,
    images: &BTreeMap<String, Flat>,
    section: Section,
    index: usize,
    e: &Entry_,
    ids: &BTreeMap<String, u32>,
) -> Result<(), AssembleError> {
    let name = e.name.as_ref().map(|n| n.value.clone()).unwrap_or_default();
    let image = e
        .image
        .as_ref()
        .map(|i| i.value.text.clone())
        .unwrap_or_default();
    let flat = images
        .get(&image)
        .ok_or_else(|| AssembleError::Files(format!("image {image} was not pulled")))?;
    let hex = flat
        .cached
        .manifest
        .digest()
        .map_err(crate::cache::CacheError::from)?
        .hex()
        .to_string();
    let image_dir = layout::image_dir(&hex);
    if out.get(&image_dir).is_none() {
        out.graft(&image_dir, &flat.tree, "")
            .map_err(tree_err(format!("image {}", flat.name)))?;
    }
    let dir = section.container_dir(index, &name);
    let what = format!("{section} container {name}");
    let settings = spec::merge(&flat.label, &e.config);
    let spec = spec::runtime_spec(&name, &settings, &flat.defaults, ids)
        .map_err(|e| AssembleError::Spec(what.clone(), e))?;
    let config = spec::canonical_json(&spec).map_err(|e| AssembleError::Json(what.clone(), e))?;
    let runtime = spec::runtime_json(&settings, section, &layout::absolute(&image_dir))
        .to_json()
        .map_err(|e| AssembleError::Json(what.clone(), e))?;
    out.insert(&dir, Entry::dir(0o755))
        .map_err(tree_err(what.clone()))?;
    for (file, bytes) in [
        (layout::CONFIG_FILE, config),
        (layout::RUNTIME_FILE, runtime),
    ] {
        let content = pack
            .store_bytes(&bytes)
            .map_err(|source| AssembleError::Io {
                what: what.clone(),
                source,
            })?;
        out.insert(&format!("{dir}/{file}"), Entry::file(content, 0o644))
            .map_err(tree_err(what.clone()))?;
    }
    out.insert(
        &format!("{dir}/{}", layout::ROOTFS),
        Entry::symlink(&layout::rootfs_target(&hex)),
    )
    .map_err(tree_err(what))?;
    Ok(())
}

fn add_file(
    out: &mut Tree,
    pack: &mut Pack,
    manifest: &Manifest,
    f: &crate::manifest::File,
    manifest_dir: &Path,
    ids: &BTreeMap<String, u32>,
) -> Result<(), AssembleError> {
    let path = f
        .path
        .as_ref()
        .map(|p| p.value.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let what = format!("files entry {path}");
    let io_err = |source| AssembleError::Io {
        what: what.clone(),
        source,
    };
    let id = |v: &Option<Id>| match v {
        Some(Id::Number(n)) => *n,
        Some(Id::Name(n)) => ids.get(n).copied().unwrap_or(0),
        None => 0,
    };
    let (uid, gid) = (id(&f.uid), id(&f.gid));
    let mode = f.mode.map(|m| m.0);
    let entry = if f.directory == Some(true) {
        Entry::dir(mode.unwrap_or(0o755))
    } else if let Some(target) = &f.symlink {
        Entry::symlink(target)
    } else if let Some(contents) = &f.contents {
        Entry::file(
            pack.store_bytes(contents.as_bytes()).map_err(io_err)?,
            mode.unwrap_or(0o600),
        )
    } else if let Some(m) = &f.metadata {
        // YAML is written as JSON, which every YAML reader accepts.
        let _ = m;
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| AssembleError::Files(format!("{what}: {e}")))?;
        Entry::file(
            pack.store_bytes(&json).map_err(io_err)?,
            mode.unwrap_or(0o644),
        )
    } else if let Some(source) = &f.source {
        let p = crate::manifest::checks::resolve_source(&source.value, manifest_dir);
        match std::fs::File::open(&p) {
            Ok(mut file) => {
                // The host file's mode is not used: it would make the output
                // depend on the machine's umask. LinuxKit's default is 0600.
                let meta = file.metadata().map_err(io_err)?;
                let c = pack.store(&mut file, meta.len()).map_err(io_err)?;
                Entry::file(c, mode.unwrap_or(0o600))
            }
            Err(_) if f.optional == Some(true) => return Ok(()),
            Err(source) => {
                return Err(AssembleError::Io {
                    what: format!("{what}: {}", p.display()),
                    source,
                })
            }
        }
    } else {
        return Err(AssembleError::Files(format!("{what}: nothing to write")));
    };
    out.insert(&path, entry.owned(uid, gid))
        .map_err(tree_err(what))
}
