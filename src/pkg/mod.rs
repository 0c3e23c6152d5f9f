//! `hull pkg`: building packages into OCI images without Docker.
//!
//! Owns: a package's content tag (same sources, same tag, on any machine),
//! running its build step once per architecture into an empty root, packing
//! that root into a one-layer image (sorted tar, fixed times, numeric owners,
//! gzip without names or times, in parallel blocks, streamed to a temp file),
//! and a multi-arch index over the images, stored in the cache only when
//! every architecture built. Must not push by itself: `registry::push` does.

pub mod spec;

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::image::{
    ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder, Os, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};

use crate::image::cache::blob::Digest;
use crate::image::cache::Cache;
use crate::image::oci::{self, Descriptor, Platform};
use crate::platform::Arch;
use crate::rootfs::tree::{Entry, Kind, Pack, Tree};
pub use spec::{load, Package};

#[derive(Debug, thiserror::Error)]
pub enum PkgError {
    #[error("cannot read {path} for the package tag")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("package {dir}: version command `{command}` failed: {output}")]
    Version {
        dir: PathBuf,
        command: String,
        output: String,
    },
    #[error(
        "package {dir}: build step {step} failed for {arch} ({status}); its output ends:\n{output}"
    )]
    Step {
        dir: PathBuf,
        step: String,
        arch: Arch,
        status: String,
        output: String,
    },
    #[error("package {dir}: cannot run the build step")]
    Spawn {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("package {dir}: cannot pack the root filesystem at {path}")]
    Pack {
        dir: PathBuf,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("package {dir}: {message}")]
    Tree { dir: PathBuf, message: String },
    #[error("cannot read back the package layer {digest} from its temp file")]
    Layer {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("the package layer {expected} changed in its temp file before it reached the cache (read back as {found})")]
    LayerChanged { expected: Digest, found: Digest },
    #[error(transparent)]
    Cache(#[from] crate::image::cache::CacheError),
}

/// Files under `dir` (sorted, relative), skipping `target` and dot-directories.
fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The package's tag: `[VERSION-]HASH`, HASH from its files (paths, executable
/// bits, contents), its `inputs`, and its version (its `version` command run
/// with `$HULL_PKG_CACHE` set to `keep`).
pub fn tag(pkg: &Package, keep: &Path) -> Result<String, PkgError> {
    let mut h = Sha256::new();
    h.update(b"hull-pkg-v1\0");
    // (name in the hash, file): package files by their path inside the
    // package, inputs by the name build.yml gives them, so the tag does not
    // depend on where the checkout is.
    let mut paths: Vec<(String, PathBuf)> = files(&pkg.dir)
        .map_err(|source| PkgError::Read {
            path: pkg.dir.clone(),
            source,
        })?
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&pkg.dir)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            (rel, p)
        })
        .collect();
    for extra in pkg.spec.inputs.iter().flatten() {
        paths.push((format!("input:{extra}"), pkg.dir.join(extra)));
    }
    for (name, p) in &paths {
        let read = |source| PkgError::Read {
            path: p.clone(),
            source,
        };
        let meta = std::fs::symlink_metadata(p).map_err(read)?;
        h.update(name.as_bytes());
        h.update([0]);
        if meta.file_type().is_symlink() {
            h.update(b"L");
            h.update(
                std::fs::read_link(p)
                    .map_err(read)?
                    .to_string_lossy()
                    .as_bytes(),
            );
        } else if meta.is_dir() {
            // An input directory: every file in it.
            h.update(b"D");
            for f in files(p).map_err(read)? {
                h.update(f.strip_prefix(p).unwrap_or(&f).to_string_lossy().as_bytes());
                h.update([0]);
                h.update(std::fs::read(&f).map_err(read)?);
            }
        } else {
            h.update(if meta.mode() & 0o111 != 0 { b"X" } else { b"F" });
            h.update(std::fs::read(p).map_err(read)?);
        }
        h.update([0]);
    }
    let version = version(pkg, keep)?;
    h.update(version.as_bytes());
    let hash = hex::encode(h.finalize());
    Ok(if version.is_empty() {
        hash[..16].to_string()
    } else {
        format!("{version}-{}", &hash[..12])
    })
}

fn version(pkg: &Package, keep: &Path) -> Result<String, PkgError> {
    let Some(cmd) = &pkg.spec.version else {
        return Ok(String::new());
    };
    make_keep_dir(keep);
    let out = Command::new("bash")
        .args(["-c", cmd])
        .current_dir(&pkg.dir)
        .env(PKG_CACHE_ENV, keep)
        .output()
        .map_err(|source| PkgError::Spawn {
            dir: pkg.dir.clone(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let ok = out.status.success()
        && !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        return Err(PkgError::Version {
            dir: pkg.dir.clone(),
            command: cmd.clone(),
            output: format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(text)
}

/// The cache name of a package's image: `REGISTRY/IMAGE:TAG` (docker.io by default).
pub fn reference(pkg: &Package, registry: Option<&str>, tag: &str) -> String {
    let name = match registry {
        Some(r) => format!("{r}/{}:{tag}", pkg.image),
        None => format!("{}:{tag}", pkg.image),
    };
    crate::image::cache::archive::normalize(&name).unwrap_or(name)
}

/// The image reference of the package in `dir` (for `@pkg:` in manifests);
/// `keep` as for [`tag`].
pub fn resolve(dir: &Path, keep: &Path) -> Result<String, String> {
    if !dir.join("build.yml").is_file() {
        return Err(format!("no package at {} (no build.yml)", dir.display()));
    }
    let p = load(dir).map_err(|e| e.to_string())?;
    let t = tag(&p, keep).map_err(|e| e.to_string())?;
    Ok(reference(&p, None, &t))
}

/// The variable naming the directory where a package's `version` command
/// and build step may keep what speeds them up
/// ([`crate::image::cache::pkg_cache_dir`]); Hull creates it.
pub const PKG_CACHE_ENV: &str = "HULL_PKG_CACHE";

/// Where a build step runs: its scratch directory, and the one it may keep
/// things in between runs (`$HULL_PKG_CACHE`).
#[derive(Clone, Copy)]
struct StepDirs<'a> {
    work: &'a Path,
    keep: &'a Path,
}

/// Creates the `$HULL_PKG_CACHE` directory. It only saves scripts time: when
/// it cannot be made they run without it (the scripts check that it is
/// writable), so the error is not the build's.
fn make_keep_dir(keep: &Path) {
    // Ignored on purpose: see above.
    std::fs::create_dir_all(keep).ok();
}

/// How often a long build step says what it is doing.
const STEP_REPORT: std::time::Duration = std::time::Duration::from_secs(15);
/// Lines of a failed step's output kept for the error.
const STEP_TAIL: usize = 40;

/// Runs the build step for `arch` into a fresh root under `work`; while it
/// runs long, says every [`STEP_REPORT`] how long and its last line; at the
/// end, how long it took.
fn run_step(
    pkg: &Package,
    arch: Arch,
    StepDirs { work, keep }: StepDirs,
    mtime: u64,
    progress: &crate::progress::Progress,
) -> Result<PathBuf, PkgError> {
    let root = work.join(format!("rootfs-{arch}"));
    make_keep_dir(keep);
    std::fs::create_dir_all(&root).map_err(|source| PkgError::Pack {
        dir: pkg.dir.clone(),
        path: root.clone(),
        source,
    })?;
    let step = pkg.spec.build.clone().unwrap_or_else(|| "build.sh".into());
    let spawn = |source| PkgError::Spawn {
        dir: pkg.dir.clone(),
        source,
    };
    let mut child = Command::new("bash")
        .arg(&step)
        .current_dir(&pkg.dir)
        .env("TARGETARCH", arch.oci())
        .env("TARGETKARCH", arch.kernel())
        .env("ROOTFS", &root)
        .env("HULL_PKG_DIR", &pkg.dir)
        .env(PKG_CACHE_ENV, keep)
        .env("SOURCE_DATE_EPOCH", mtime.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    let label = format!("{} for {arch}", pkg.dir.display());
    let started = std::time::Instant::now();
    let tail = watch_step(&mut child, &label, progress);
    let status = child.wait().map_err(spawn)?;
    if !status.success() {
        return Err(PkgError::Step {
            dir: pkg.dir.clone(),
            step,
            arch,
            status: status.to_string(),
            output: tail.into_iter().collect::<Vec<_>>().join("\n"),
        });
    }
    progress.step(format!(
        "  built {label} in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(root)
}

/// Reads the step's stdout and stderr as lines until both end; reports a
/// long step's elapsed time and last line; returns the last lines.
fn watch_step(
    child: &mut std::process::Child,
    label: &str,
    progress: &crate::progress::Progress,
) -> std::collections::VecDeque<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let streams: Vec<Box<dyn std::io::Read + Send>> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for s in streams {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(s).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let started = std::time::Instant::now();
    let mut next_report = started + STEP_REPORT;
    let mut tail = std::collections::VecDeque::with_capacity(STEP_TAIL);
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(500)) {
            Ok(line) => {
                if tail.len() == STEP_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if std::time::Instant::now() >= next_report {
            let last = tail.back().map(String::as_str).unwrap_or("(no output yet)");
            progress.step(format!(
                "  building {label}: {} s: {last}",
                started.elapsed().as_secs()
            ));
            next_report += STEP_REPORT;
        }
    }
    tail
}

/// Reads a directory into a tree: owners and modes as they are, hard links
/// kept, device nodes and fifos kept.
pub fn tree_from_dir(root: &Path, pack: &mut Pack) -> std::io::Result<Tree> {
    let mut tree = Tree::new();
    let mut seen: std::collections::HashMap<(u64, u64), String> = Default::default();
    let mut stack = vec![root.to_path_buf()];
    let mut all = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p.clone());
            }
            all.push(p);
        }
    }
    all.sort();
    for p in all {
        let rel = p
            .strip_prefix(root)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        let m = std::fs::symlink_metadata(&p)?;
        let t = m.file_type();
        let rdev = m.rdev();
        let (maj, min) = (
            u32::try_from(((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)).unwrap_or(0),
            u32::try_from((rdev & 0xff) | ((rdev >> 12) & !0xff)).unwrap_or(0),
        );
        let kind = if t.is_dir() {
            Kind::Dir
        } else if t.is_symlink() {
            Kind::Symlink(std::fs::read_link(&p)?.to_string_lossy().into_owned())
        } else if t.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = seen.get(&(m.dev(), m.ino())) {
                    Kind::Hardlink(first.clone())
                } else {
                    seen.insert((m.dev(), m.ino()), rel.clone());
                    Kind::File(pack.store(&mut std::fs::File::open(&p)?, m.len())?)
                }
            } else {
                Kind::File(pack.store(&mut std::fs::File::open(&p)?, m.len())?)
            }
        } else if t.is_char_device() {
            Kind::Char(maj, min)
        } else if t.is_block_device() {
            Kind::Block(maj, min)
        } else if t.is_fifo() {
            Kind::Fifo
        } else {
            continue; // sockets are not content
        };
        let entry = Entry {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            xattrs: Default::default(),
        };
        tree.insert(&rel, entry)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(tree)
}

/// One built architecture, not yet in the cache.
struct ArchImage {
    arch: Arch,
    layer: Layer,
    /// The config and the manifest.
    blobs: Vec<(Digest, Vec<u8>)>,
    manifest: Descriptor,
}

/// A package's one layer: its tree as a sorted tar, gzipped at gzip's
/// default level in parallel blocks (`media::compress`: the same bytes on any
/// number of cores),
/// streamed to an anonymous temp file so that no copy of a large package is
/// held in memory.
struct Layer {
    file: std::fs::File,
    digest: Digest,
    size: u64,
    /// The digest of the uncompressed tar.
    diff_id: Digest,
}

impl Layer {
    fn write(tree: &Tree, pack: &Pack, mtime: u64) -> std::io::Result<Self> {
        use crate::image::digest::DigestWriter;
        use crate::media::compress::{Compression, Compressor};
        let file = std::io::BufWriter::new(tempfile::tempfile()?);
        let gzip = Compression::Gzip;
        let gz = Compressor::new(DigestWriter::new(file), gzip, gzip.default_level())?;
        let tar = crate::media::tar::write(tree, pack, mtime, DigestWriter::new(gz))?;
        let (gz, diff_id, _) = tar.finish();
        let (file, digest, size) = gz.finish()?.finish();
        let file = file.into_inner().map_err(|e| e.into_error())?;
        Ok(Layer {
            file,
            digest,
            size,
            diff_id,
        })
    }

    /// Copies the layer into the cache, checking that it is still the
    /// blob it was written as.
    fn store(&mut self, cache: &Cache) -> Result<(), PkgError> {
        use std::io::Seek;
        if cache.has_blob(&self.digest) {
            return Ok(());
        }
        self.file.rewind().map_err(|source| PkgError::Layer {
            digest: self.digest.clone(),
            source,
        })?;
        let (stored, _) = cache.put_stream(&mut self.file)?;
        if stored != self.digest {
            return Err(PkgError::LayerChanged {
                expected: self.digest.clone(),
                found: stored,
            });
        }
        Ok(())
    }
}

/// The image config of a package for `arch`: its build.yml's settings and
/// label, and the one layer whose uncompressed digest is `diff_id`.
fn image_config(
    s: &spec::PkgSpec,
    arch: Arch,
    diff_id: &Digest,
) -> Result<ImageConfiguration, oci::write::WriteError> {
    let mut c = ConfigBuilder::default().env(
        s.env
            .clone()
            .unwrap_or_else(|| vec![hull_contract::DEFAULT_PATH.to_string()]),
    );
    if let Some(v) = &s.entrypoint {
        c = c.entrypoint(v.clone());
    }
    if let Some(v) = &s.cmd {
        c = c.cmd(v.clone());
    }
    if let Some(v) = &s.workdir {
        c = c.working_dir(v.clone());
    }
    if let Some(v) = &s.user {
        c = c.user(v.clone());
    }
    if let Some(label) = &s.config {
        let text = serde_json::to_string(label)?;
        c = c.labels(HashMap::from([(
            "org.mobyproject.config".to_string(),
            text,
        )]));
    }
    Ok(ImageConfigurationBuilder::default()
        .architecture(oci_spec::image::Arch::from(arch.oci()))
        .os(Os::Linux)
        .config(c.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id.to_string()])
                .build()?,
        )
        .build()?)
}

fn image_for(pkg: &Package, arch: Arch, root: &Path, mtime: u64) -> Result<ArchImage, PkgError> {
    let pack_err = |source| PkgError::Pack {
        dir: pkg.dir.clone(),
        path: root.to_path_buf(),
        source,
    };
    let mut pack = Pack::new(&std::env::temp_dir()).map_err(pack_err)?;
    let tree = tree_from_dir(root, &mut pack).map_err(pack_err)?;
    let layer = Layer::write(&tree, &pack, mtime).map_err(pack_err)?;
    let write_err = |e: oci::write::WriteError| PkgError::Tree {
        dir: pkg.dir.clone(),
        message: e.to_string(),
    };
    let config_blob =
        oci::write::to_bytes(&image_config(&pkg.spec, arch, &layer.diff_id).map_err(write_err)?)
            .map_err(write_err)?;
    let config_desc = Descriptor::of(oci::OCI_CONFIG, &config_blob);
    let layer_desc = Descriptor::new(oci::OCI_LAYER_GZIP, &layer.digest, layer.size);
    let manifest_blob = oci::write::image_manifest(&config_desc, &[layer_desc])
        .and_then(|m| oci::write::to_bytes(&m))
        .map_err(write_err)?;
    let mut manifest = Descriptor::of(oci::OCI_MANIFEST, &manifest_blob);
    manifest.platform = Some(Platform {
        architecture: arch.oci().to_string(),
        os: "linux".into(),
        variant: (arch == Arch::Arm64).then(|| "v8".to_string()),
    });
    Ok(ArchImage {
        arch,
        layer,
        blobs: vec![
            (Digest::of(&config_blob), config_blob),
            (Digest::of(&manifest_blob), manifest_blob),
        ],
        manifest,
    })
}

/// The images of other architectures than `rebuilt` in the index the cache
/// names `reference` now, whose manifests the cache holds: built earlier from
/// the same sources (the tag is their hash), so they stay in the new index.
fn earlier_arches(
    cache: &Cache,
    reference: &str,
    pkg: &Package,
    rebuilt: &[Arch],
) -> Vec<(Arch, Descriptor)> {
    let Some(Ok(digest)) = cache.resolve(reference).ok().flatten().map(|d| d.digest()) else {
        return Vec::new();
    };
    let Ok(oci::Parsed::Index { manifests, .. }) = cache.manifest(&digest) else {
        return Vec::new();
    };
    manifests
        .into_iter()
        .filter_map(|m| {
            let os_arch = m.platform.as_ref()?.architecture.clone();
            let arch = *pkg.arches.iter().find(|a| a.oci() == os_arch)?;
            let there = m.digest().is_ok_and(|d| cache.has_blob(&d));
            (!rebuilt.contains(&arch) && there).then_some((arch, m))
        })
        .collect()
}

/// Builds `pkg` for its architectures (or `only`), and names the index in the
/// cache as `reference`: the arches built now, and with `only` those the
/// index named before, in build.yml's order (so the index of every arch is
/// the same whichever were built first). Nothing reaches the cache unless
/// every step succeeds. Returns the index digest.
pub fn build(
    pkg: &Package,
    cache: &Cache,
    reference: &str,
    only: Option<&[Arch]>,
    mtime: u64,
    progress: &crate::progress::Progress,
) -> Result<String, PkgError> {
    let work = tempfile::tempdir().map_err(|source| PkgError::Pack {
        dir: pkg.dir.clone(),
        path: std::env::temp_dir(),
        source,
    })?;
    let arches: Vec<Arch> = pkg
        .arches
        .iter()
        .copied()
        .filter(|a| only.is_none_or(|o| o.contains(a)))
        .collect();
    if arches.is_empty() {
        return Err(PkgError::Tree {
            dir: pkg.dir.clone(),
            message: "none of the requested architectures is in its build.yml".into(),
        });
    }
    let mut built = Vec::new();
    for &arch in &arches {
        progress.step(format!("building {} for {arch}", pkg.dir.display()));
        let dirs = StepDirs {
            work: work.path(),
            keep: &cache.pkg_cache_dir(),
        };
        let root = run_step(pkg, arch, dirs, mtime, progress)?;
        built.push(image_for(pkg, arch, &root, mtime)?);
    }
    let mut by_arch: Vec<(Arch, Descriptor)> =
        built.iter().map(|b| (b.arch, b.manifest.clone())).collect();
    if only.is_some() {
        by_arch.extend(earlier_arches(cache, reference, pkg, &arches));
    }
    by_arch.sort_by_key(|(a, _)| pkg.arches.iter().position(|p| p == a));
    let manifests: Vec<Descriptor> = by_arch.into_iter().map(|(_, d)| d).collect();
    let index_blob = oci::write::image_index(&manifests)
        .and_then(|i| oci::write::to_bytes(&i))
        .map_err(|e| PkgError::Tree {
            dir: pkg.dir.clone(),
            message: e.to_string(),
        })?;
    let _writing = cache.writer_lock()?;
    for b in &mut built {
        b.layer.store(cache)?;
        for (d, bytes) in &b.blobs {
            cache.put_blob(d, bytes)?;
        }
        progress.step(format!("  {} {}", b.arch, b.manifest.digest));
    }
    let index = Descriptor::of(oci::OCI_INDEX, &index_blob);
    cache.put_blob(&Digest::of(&index_blob), &index_blob)?;
    cache.set_ref(reference, &index)?;
    Ok(index.digest)
}
