//! Placing a plan in the image tree, one step per part: the kernel's files,
//! init images at `/`, containers, volumes, `files:` entries, then the module
//! index.

use std::collections::BTreeMap;

use hull_contract::layout;

use super::{file_in, tree_err, AssembleError, Assembled, Flat};
use crate::plan::{ContainerPlan, FileContent, FilePlan, KernelPlan, Plan};
use crate::rootfs::layers;
use crate::rootfs::tree::{Content, Entry, Pack, Tree};

/// Builds the image tree for `plan`; `images` maps each reference as written
/// in the manifest to its flattened image; the kernel's modules tarball is
/// unpacked within `limits`, as a layer is.
pub fn assemble(
    plan: &Plan,
    images: &BTreeMap<String, Flat>,
    pack: &mut Pack,
    limits: layers::Limits,
) -> Result<Assembled, AssembleError> {
    let get = |r: &str| {
        images
            .get(r)
            .ok_or_else(|| AssembleError::Files(format!("image {r} was not pulled")))
    };
    let mut out = Tree::new();
    let (kernel, ucode) = match &plan.kernel {
        Some(k) => place_kernel(&mut out, pack, (k, get(&k.image)?), limits)?,
        None => (None, None),
    };
    for init in &plan.init {
        let flat = get(init)?;
        out.graft("", &flat.tree, "")
            .map_err(tree_err(format!("init image {}", flat.name)))?;
    }
    for c in &plan.containers {
        place_container(&mut out, pack, get(&c.image)?, c)?;
    }
    for v in &plan.volumes {
        let dir = format!("{}/{}", layout::VOLUMES, v.name);
        let what = format!("volume {}", v.name);
        match &v.image {
            Some(image) => out.graft(&dir, &get(image)?.tree, ""),
            None => out.insert(&dir, Entry::dir(0o755)),
        }
        .map_err(tree_err(what))?;
    }
    for f in &plan.files {
        place_file(&mut out, pack, f)?;
    }
    crate::rootfs::modules::index(&mut out, pack)?;
    Ok(Assembled {
        tree: out,
        kernel,
        ucode,
        cmdline: plan.cmdline.clone(),
    })
}

/// The kernel file and microcode of the kernel image; its modules tarball
/// unpacked into `out`.
fn place_kernel(
    out: &mut Tree,
    pack: &mut Pack,
    (k, flat): (&KernelPlan, &Flat),
    limits: layers::Limits,
) -> Result<(Option<Content>, Option<Content>), AssembleError> {
    let missing = |file: &str| AssembleError::NoKernelFile {
        image: flat.name.clone(),
        file: file.to_string(),
    };
    let kernel = file_in(flat, &k.binary).ok_or_else(|| missing(&k.binary))?;
    if let Some(tar) = &k.tar {
        match file_in(flat, &tar.name) {
            Some(c) => unpack_modules(out, pack, (flat, &tar.name, &c), limits)?,
            None if tar.required => return Err(missing(&tar.name)),
            None => {}
        }
    }
    let ucode = match &k.ucode {
        Some(u) => Some(file_in(flat, u).ok_or_else(|| missing(u))?),
        None => None,
    };
    Ok((Some(kernel), ucode))
}

/// Applies the modules tarball `c` (named `tar` in `flat`) to `out`.
fn unpack_modules(
    out: &mut Tree,
    pack: &mut Pack,
    (flat, tar, c): (&Flat, &str, &Content),
    limits: layers::Limits,
) -> Result<(), AssembleError> {
    let io = |source| AssembleError::Io {
        what: tar.to_string(),
        source,
    };
    let tmp = tempfile::NamedTempFile::new().map_err(io)?;
    let mut f = tmp.reopen().map_err(io)?;
    pack.copy_to(c, &mut f).map_err(io)?;
    layers::apply(out, pack, tmp.path(), (&flat.name, tar), limits)?;
    Ok(())
}

/// A container's image (once per image), its directory with `config.json`,
/// `runtime.json` and the `rootfs` link to the image.
fn place_container(
    out: &mut Tree,
    pack: &mut Pack,
    flat: &Flat,
    c: &ContainerPlan,
) -> Result<(), AssembleError> {
    let image_dir = layout::image_dir(&c.image_hex);
    if out.get(&image_dir).is_none() {
        out.graft(&image_dir, &flat.tree, "")
            .map_err(tree_err(format!("image {}", flat.name)))?;
    }
    let what = format!("{} container {}", c.section, c.name);
    let json = |e| AssembleError::Json(what.clone(), e);
    let config = crate::plan::spec::canonical_json(&c.config).map_err(json)?;
    let runtime = c.runtime.to_json().map_err(json)?;
    out.insert(&c.dir, Entry::dir(0o755))
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
        out.insert(&format!("{}/{file}", c.dir), Entry::file(content, 0o644))
            .map_err(tree_err(what.clone()))?;
    }
    out.insert(
        &format!("{}/{}", c.dir, layout::ROOTFS),
        Entry::symlink(&layout::rootfs_target(&c.image_hex)),
    )
    .map_err(tree_err(what))
}

/// One `files:` entry; an optional source that is missing is skipped.
fn place_file(out: &mut Tree, pack: &mut Pack, f: &FilePlan) -> Result<(), AssembleError> {
    let what = format!("files entry {}", f.path);
    let io_err = |source| AssembleError::Io {
        what: what.clone(),
        source,
    };
    let entry = match &f.content {
        FileContent::Directory => Entry::dir(f.mode),
        FileContent::Symlink(target) => Entry::symlink(target),
        FileContent::Bytes(data) => Entry::file(pack.store_bytes(data).map_err(io_err)?, f.mode),
        FileContent::Source { path, optional } => match std::fs::File::open(path) {
            Ok(mut file) => {
                let meta = file.metadata().map_err(io_err)?;
                let c = pack.store(&mut file, meta.len()).map_err(io_err)?;
                Entry::file(c, f.mode)
            }
            Err(_) if *optional => return Ok(()),
            Err(source) => {
                return Err(AssembleError::Io {
                    what: format!("{what}: {}", path.display()),
                    source,
                })
            }
        },
        FileContent::Nothing => {
            return Err(AssembleError::Files(format!("{what}: nothing to write")))
        }
    };
    out.insert(&f.path, entry.owned(f.uid, f.gid))
        .map_err(tree_err(what))
}
