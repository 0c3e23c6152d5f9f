//! `hull build`: manifests to outputs.

use anyhow::Context as _;

use super::Context;
use crate::build::{self, Request};
use crate::cli::BuildArgs;
use crate::image::cache::Cache;
use crate::image::registry::Registry;
use crate::media::authenticode::Signer;
use crate::output::Format;
use crate::platform::Arch;
use crate::progress::{Mode, Progress};
use crate::rootfs::layers::Limits;

pub fn run(cx: &Context, args: BuildArgs) -> anyhow::Result<()> {
    let loaded = super::load_manifests(cx, &args.files)?;
    let arch = Arch::from_flag(args.arch.as_deref()).map_err(anyhow::Error::msg)?;
    let compression_level = match args.compression_level {
        None => args.compression.default_level(),
        Some(level) => args
            .compression
            .check_level(level)
            .map_err(anyhow::Error::msg)?,
    };
    let formats = if args.formats.is_empty() {
        vec![Format::KernelInitrd]
    } else {
        args.formats.clone()
    };
    let first = &args.files[0];
    let name = args.name.clone().unwrap_or_else(|| {
        first
            .file_stem()
            .map_or_else(|| "hull".to_string(), |s| s.to_string_lossy().into_owned())
    });
    let manifest_dir = first
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v} is not a number of seconds"))?,
        Err(_) => 0,
    };
    let lock = args.lock.as_deref().map(build::read_lock).transpose()?;
    let cache = Cache::open(&cx.cache)
        .with_context(|| format!("cannot open the cache {}", cx.cache.display()))?;
    let registry = Registry::new(cx.registry.clone())?;
    let progress = Progress::new(Mode::detect(cx.quiet));
    let req = Request {
        manifest: &loaded.manifest,
        manifest_dir,
        arch,
        formats: &formats,
        dir: &args.dir,
        name: &name,
        compression: args.compression,
        compression_level,
        pull: args.pull,
        lock,
        mtime,
        bootloader: args.bootloader.clone(),
        disk_size: args.disk_size,
        layer_limits: Limits::or_defaults(args.max_layer_size, args.max_layer_entries),
        root: args.root,
        signer: signer(&args)?,
        slots: slots(&args)?,
    };
    let (outputs, pins) = build::build(&req, &cache, &registry, &progress)?;
    if let Some(path) = &args.write_lock {
        build::write_lock(path, &pins)?;
    }
    if !cx.quiet {
        for (path, sha) in outputs {
            println!("{sha}  {}", path.display());
        }
    }
    Ok(())
}

/// The slots of `--root ab`: the version it needs, and `--slot-size`.
fn slots(args: &BuildArgs) -> anyhow::Result<Option<crate::output::Slots>> {
    if args.root != crate::output::RootMode::Ab {
        if args.image_version.is_some() || args.slot_size.is_some() {
            anyhow::bail!("--image-version and --slot-size are for two-slot disks: add --root ab");
        }
        return Ok(None);
    }
    let version = args
        .image_version
        .clone()
        .ok_or(crate::output::OutputError::NoVersion)?;
    crate::output::check_version(&version)?;
    Ok(Some(crate::output::Slots {
        version,
        slot_size: args.slot_size,
    }))
}

/// The signer `--sign-key` and `--sign-cert` name, read now so that a bad
/// key fails before anything is pulled.
fn signer(args: &BuildArgs) -> anyhow::Result<Option<Signer>> {
    let (Some(key), Some(cert)) = (&args.sign_key, &args.sign_cert) else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let signer = Signer::from_pem(&read(key)?, &read(cert)?)
        .with_context(|| format!("{} and {}", key.display(), cert.display()))?;
    Ok(Some(signer))
}
