//! A whole build: manifest → images → tree → outputs.
//!
//! Owns: the order of the stages, the lock file (reference → digest pins), and
//! reproducibility inputs (SOURCE_DATE_EPOCH). Must not parse YAML, talk HTTP
//! or write formats itself: it calls `manifest`, `registry`, `assemble` (to
//! flatten), `plan`, `assemble` (to place) and `output`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use oci_client::Reference;

use crate::image::cache::Cache;
use crate::image::registry::pull::{self, PullPolicy};
use crate::image::registry::Registry;
use crate::manifest::Manifest;
use crate::output::{self, Compression, Format};
use crate::platform::Arch;
use crate::progress::Progress;
use crate::rootfs::assemble::{self, Flat};
use crate::rootfs::tree::Pack;

/// What to build.
pub struct Request<'a> {
    pub manifest: &'a Manifest,
    pub manifest_dir: &'a Path,
    pub arch: Arch,
    pub formats: &'a [Format],
    pub dir: &'a Path,
    pub name: &'a str,
    pub compression: Compression,
    /// Its level, checked.
    pub compression_level: u32,
    pub pull: PullPolicy,
    pub lock: Option<BTreeMap<String, String>>,
    pub mtime: u64,
    /// The bootloader image (reference or `@pkg:DIR`) for formats that need one.
    pub bootloader: Option<String>,
    /// The whole disk's size for disk formats.
    pub disk_size: Option<u64>,
    /// What one layer may unpack to.
    pub layer_limits: crate::rootfs::layers::Limits,
    /// Where the booted system's root lives.
    pub root: output::RootMode,
    /// Signs the UKI for Secure Boot.
    pub signer: Option<crate::media::authenticode::Signer>,
    /// The version and slot size of a two-slot disk (`--root ab`).
    pub slots: Option<output::Slots>,
}

/// The bootloader image a build uses: `--bootloader` (a reference or
/// `@pkg:DIR`), else the `pkgs/bootloader` package of Hull's source tree;
/// `keep`: the cache's [`crate::image::cache::pkg_cache_dir`].
pub fn bootloader_ref(
    flag: Option<&str>,
    keep: &Path,
) -> anyhow::Result<(String, Option<PathBuf>)> {
    let dir = match flag {
        Some(text) => match text.strip_prefix("@pkg:") {
            None => return Ok((text.to_string(), None)),
            Some(d) => PathBuf::from(d),
        },
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("pkgs/bootloader"),
    };
    let reference = crate::pkg::resolve(&dir, keep)
        .map_err(anyhow::Error::msg)
        .context("no bootloader image: give one with --bootloader REF or @pkg:DIR")?;
    Ok((reference, Some(dir)))
}

/// The files under /efi and /bios of the bootloader image `reference`.
fn bootloader_files(
    flat: &Flat,
    pack: &Pack,
    reference: String,
) -> anyhow::Result<output::Bootloader> {
    let mut files = BTreeMap::new();
    for (path, entry) in flat.tree.iter() {
        if !(path.starts_with("efi/") || path.starts_with("bios/")) {
            continue;
        }
        if let crate::rootfs::tree::Kind::File(c) = &entry.kind {
            let data = pack
                .read(c)
                .with_context(|| format!("cannot read /{path} of {reference}"))?;
            files.insert(path.to_string(), data);
        }
    }
    Ok(output::Bootloader { reference, files })
}

/// Every image reference a manifest uses, as written (an `@pkg:` one as
/// resolved), in first-use order, with the package it comes from, if any.
pub fn references(m: &Manifest) -> Vec<(String, Option<PathBuf>)> {
    let mut out: Vec<(String, Option<PathBuf>)> = Vec::new();
    let mut push = |r: &crate::manifest::values::ImageRef| {
        if !out.iter().any(|(o, _)| *o == r.text) {
            out.push((r.text.clone(), r.package.clone()));
        }
    };
    if let Some(i) = m.kernel.as_ref().and_then(|k| k.image.as_ref()) {
        push(&i.value);
    }
    for i in m.init.iter().flatten() {
        push(&i.value);
    }
    for list in [&m.onboot, &m.onshutdown, &m.services] {
        for e in list.iter().flatten() {
            if let Some(i) = &e.image {
                push(&i.value);
            }
        }
    }
    for v in m.volumes.iter().flatten() {
        if let Some(i) = &v.image {
            push(&i.value);
        }
    }
    out
}

/// A lock file: `{"images": {"REF": "sha256:..."}}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct LockFile {
    images: BTreeMap<String, String>,
}

/// Reads a lock file.
pub fn read_lock(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read(path).with_context(|| format!("cannot read lock file {}", path.display()))?;
    let lock: LockFile = serde_json::from_slice(&text).with_context(|| {
        format!(
            "lock file {} is not JSON with an \"images\" map",
            path.display()
        )
    })?;
    Ok(lock.images)
}

/// Writes a lock file atomically.
pub fn write_lock(path: &Path, pins: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut json = serde_json::to_vec_pretty(&LockFile {
        images: pins.clone(),
    })?;
    json.push(b'\n');
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    std::io::Write::write_all(&mut tmp, &json)?;
    tmp.persist(path)
        .with_context(|| format!("cannot write lock file {}", path.display()))?;
    Ok(())
}

/// The outputs with their sha256, and the digest each reference resolved to.
pub type BuildResult = (Vec<(PathBuf, String)>, BTreeMap<String, String>);

/// Builds; returns the outputs with their sha256, and the pins used.
pub fn build(
    req: &Request,
    cache: &Cache,
    registry: &Registry,
    progress: &Progress,
) -> anyhow::Result<BuildResult> {
    output::check_formats(req.formats, req.arch, req.root, req.signer.is_some())?;
    if req.root == output::RootMode::Ab && req.slots.is_none() {
        return Err(output::OutputError::NoVersion.into());
    }
    let mut refs = references(req.manifest);
    let bootloader = bootloader_for(req, &cache.pkg_cache_dir())?.map(|(text, dir)| {
        refs.push((text.clone(), dir));
        text
    });
    let (cached, pins) = fetch(req, &refs, cache, registry, progress)?;
    let mut pack = Pack::new(&std::env::temp_dir()).context("cannot create a temp file")?;
    let images: BTreeMap<String, Flat> =
        assemble::flatten_all(cache, &pack, cached, req.layer_limits)?
            .into_iter()
            .collect();
    let bootloader = match bootloader {
        None => None,
        Some(text) => {
            let flat = images
                .get(&text)
                .with_context(|| format!("bootloader image {text} was not pulled"))?;
            Some(bootloader_files(flat, &pack, text)?)
        }
    };
    let infos = images
        .iter()
        .map(|(text, flat)| (text.clone(), flat.info.clone()))
        .collect();
    let plan = crate::plan::plan(req.manifest, &infos, req.manifest_dir)?;
    let mut assembled = assemble::assemble(&plan, &images, &mut pack, req.layer_limits)?;
    let disk_root_initrd = if req.root.on_disk() {
        crate::rootfs::boot_initrd::add_mount_points(&mut assembled.tree)?;
        Some(crate::rootfs::boot_initrd::tree(
            &assembled.tree,
            &mut pack,
        )?)
    } else {
        None
    };
    std::fs::create_dir_all(req.dir)
        .with_context(|| format!("cannot create {}", req.dir.display()))?;
    let parts = output::initrd_parts::PartStore::new(&cache.parts_dir());
    let img = output::Inputs {
        tree: &assembled.tree,
        pack: &pack,
        kernel: assembled.kernel.as_ref(),
        ucode: assembled.ucode.as_ref(),
        cmdline: &assembled.cmdline,
        mtime: req.mtime,
        compression: req.compression,
        compression_level: req.compression_level,
        bootloader: bootloader.as_ref(),
        arch: req.arch,
        disk_size: req.disk_size,
        disk_root_initrd: disk_root_initrd.as_ref(),
        signer: req.signer.as_ref(),
        slots: req.slots.as_ref(),
        parts: Some(&parts),
    };
    let formats: Vec<String> = req.formats.iter().map(|f| f.name()).collect();
    progress.step(format!(
        "writing {} (initrd: {} level {})",
        formats.join(", "),
        req.compression.name(),
        req.compression_level
    ));
    let staged = output::stage_all(&img, req.formats, req.dir, req.name)?;
    if let Some(s) = staged.initrd {
        progress.step(s.to_string());
    }
    Ok((staged.commit()?, pins))
}

/// The bootloader image when a format needs one: `--bootloader`, else the
/// manifest's `bootloader:`, else Hull's own package.
fn bootloader_for(req: &Request, keep: &Path) -> anyhow::Result<Option<(String, Option<PathBuf>)>> {
    if !req.formats.iter().any(|f| f.needs_bootloader()) {
        return Ok(None);
    }
    Ok(Some(match (&req.bootloader, &req.manifest.bootloader) {
        (None, Some(r)) => (r.value.text.clone(), r.value.package.clone()),
        (flag, _) => bootloader_ref(flag.as_deref(), keep)?,
    }))
}

/// Images in the cache: (reference as written, whole reference, image).
type Fetched = Vec<(String, String, crate::image::cache::CachedImage)>;

/// Every reference into the cache for the build's arch: `@pkg:` packages
/// built on first use, references pinned by the lock file, pulled per the
/// pull policy. Returns the images and the digest each reference resolved to.
fn fetch(
    req: &Request,
    refs: &[(String, Option<PathBuf>)],
    cache: &Cache,
    registry: &Registry,
    progress: &Progress,
) -> anyhow::Result<(Fetched, BTreeMap<String, String>)> {
    let runtime = crate::image::registry::runtime().context("cannot start the async runtime")?;
    let mut pins = BTreeMap::new();
    let mut cached = Vec::new();
    for (text, package) in refs {
        let mut reference: Reference = text
            .parse()
            .with_context(|| format!("invalid image reference {text}"))?;
        if let Some(dir) = package {
            build_package(cache, &reference, text, dir, req.arch, progress)?;
        }
        if let Some(lock) = &req.lock {
            let digest = lock
                .get(text)
                .with_context(|| format!("{text} is not in the lock file"))?;
            reference = reference.clone_with_digest(digest.clone());
        }
        let img = runtime.block_on(pull::ensure(
            registry, cache, &reference, req.arch, req.pull, progress,
        ))?;
        pins.insert(text.clone(), img.top.digest.clone());
        cached.push((text.clone(), reference.whole(), img));
    }
    Ok((cached, pins))
}

/// Builds the `@pkg:` package at `dir` for `arch` unless the cache has it
/// for `arch`: only the arch the build needs (a first build is one arch's
/// work, not every arch's); the cached index keeps the arches built before,
/// so once every arch was built it is the one `hull pkg build` makes.
fn build_package(
    cache: &Cache,
    reference: &Reference,
    text: &str,
    dir: &Path,
    arch: Arch,
    progress: &Progress,
) -> anyhow::Result<()> {
    if pull::lookup(cache, reference, arch)?.is_some() {
        return Ok(());
    }
    // Another hull may be building it right now: wait, look again.
    let _building = cache.work_lock(text)?;
    if pull::lookup(cache, reference, arch)?.is_none() {
        let p = crate::pkg::load(dir)?;
        crate::pkg::build(&p, cache, text, Some(&[arch]), 0, progress)?;
    }
    Ok(())
}
