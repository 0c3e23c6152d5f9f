//! Moving images in and out of the cache as files.
//!
//! Owns: exporting references as an OCI archive (a tar of an image layout, as
//! `skopeo copy ... oci-archive:FILE` writes), and importing OCI archives and
//! `docker save` tarballs. Must not talk to registries.
//!
//! Export is deterministic: sorted entries, zero times and owners. Output files
//! appear only when complete (temp file beside them, renamed).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::blob::Digest;
use super::{Cache, CacheError, CachedRef};
use crate::image::oci::{self, Descriptor, Parsed, REF_NAME};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot {action} {path}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(path: &Path, message: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn io<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Writes `refs` and every cached blob they reach to `out` as an OCI archive.
pub fn export(cache: &Cache, refs: &[CachedRef], out: &Path) -> Result<(), ArchiveError> {
    let mut blobs = BTreeSet::new();
    for r in refs {
        cache.reachable(&r.descriptor, &mut blobs)?;
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir, "create a temp file in"))?;
    let mut tar = tar::Builder::new(tmp);
    let append = |tar: &mut tar::Builder<tempfile::NamedTempFile>,
                  name: &str,
                  size: u64,
                  data: &mut dyn Read|
     -> Result<(), ArchiveError> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, data)
            .map_err(io(out, "write"))
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append(
        &mut tar,
        "oci-layout",
        layout.len() as u64,
        &mut &layout[..],
    )?;
    let descriptors: Vec<Descriptor> = refs.iter().map(|r| r.descriptor.clone()).collect();
    let index = oci::write::image_index(&descriptors)
        .and_then(|i| oci::write::to_bytes(&i))
        .map_err(|e| invalid(out, e.to_string()))?;
    append(&mut tar, "index.json", index.len() as u64, &mut &index[..])?;
    for digest in blobs.iter().filter(|d| cache.has_blob(d)) {
        let path = cache.blob_path(digest);
        let mut f = File::open(&path).map_err(io(&path, "open"))?;
        let size = f.metadata().map_err(io(&path, "stat"))?.len();
        append(
            &mut tar,
            &format!("blobs/sha256/{}", digest.hex()),
            size,
            &mut f,
        )?;
    }
    let tmp = tar.into_inner().map_err(io(out, "write"))?;
    tmp.as_file().sync_all().map_err(io(out, "sync"))?;
    tmp.persist(out).map_err(|e| ArchiveError::Io {
        path: out.to_path_buf(),
        action: "rename into place",
        source: e.error,
    })?;
    Ok(())
}

/// What a `docker save` manifest.json lists.
#[derive(Debug, Deserialize)]
struct DockerSaveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Imports an OCI archive or a `docker save` tarball; returns the references
/// added. Blobs are verified as they are copied in.
pub fn import(cache: &Cache, file: &Path) -> Result<Vec<String>, ArchiveError> {
    let _writer = cache.writer_lock()?;
    let names = entry_names(file)?;
    if names.contains("index.json") && names.contains("oci-layout") {
        import_oci(cache, file)
    } else if names.contains("manifest.json") {
        import_docker(cache, file)
    } else {
        Err(invalid(
            file,
            "neither an OCI archive (oci-layout, index.json) nor a docker save tarball (manifest.json)",
        ))
    }
}

fn open_tar(file: &Path) -> Result<tar::Archive<File>, ArchiveError> {
    Ok(tar::Archive::new(
        File::open(file).map_err(io(file, "open"))?,
    ))
}

fn clean(name: &Path) -> String {
    name.to_string_lossy().trim_start_matches("./").to_string()
}

fn entry_names(file: &Path) -> Result<BTreeSet<String>, ArchiveError> {
    let mut out = BTreeSet::new();
    let mut tar = open_tar(file)?;
    for entry in tar.entries().map_err(io(file, "read"))? {
        let entry = entry.map_err(io(file, "read"))?;
        out.insert(clean(&entry.path().map_err(io(file, "read"))?));
    }
    Ok(out)
}

/// Reads the named entries' contents whole (small JSON files).
fn read_entries(
    file: &Path,
    wanted: &BTreeSet<String>,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, ArchiveError> {
    let mut out = std::collections::BTreeMap::new();
    let mut tar = open_tar(file)?;
    for entry in tar.entries().map_err(io(file, "read"))? {
        let mut entry = entry.map_err(io(file, "read"))?;
        let name = clean(&entry.path().map_err(io(file, "read"))?);
        if wanted.contains(&name) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io(file, "read"))?;
            out.insert(name, bytes);
        }
    }
    Ok(out)
}

fn import_oci(cache: &Cache, file: &Path) -> Result<Vec<String>, ArchiveError> {
    let mut tar = open_tar(file)?;
    let mut index = None;
    for entry in tar.entries().map_err(io(file, "read"))? {
        let mut entry = entry.map_err(io(file, "read"))?;
        // Directories (as `tar` of a layout has them) hold nothing to store.
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let name = clean(&entry.path().map_err(io(file, "read"))?);
        if name == "index.json" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io(file, "read"))?;
            index = Some(bytes);
        } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let digest = Digest::parse(&format!("sha256:{hex}"))
                .map_err(|e| invalid(file, format!("entry {name}: {e}")))?;
            if cache.has_blob(&digest) {
                continue;
            }
            let mut w = cache.blob_writer(&digest)?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = entry.read(&mut buf).map_err(io(file, "read"))?;
                if n == 0 {
                    break;
                }
                w.write(&buf[..n]).map_err(CacheError::from)?;
            }
            w.commit(None)
                .map_err(|e| invalid(file, format!("entry {name}: {e}")))?;
        }
    }
    #[derive(Deserialize)]
    struct Index {
        manifests: Vec<Descriptor>,
    }
    let index: Index = serde_json::from_slice(&index.unwrap_or_default())
        .map_err(|e| invalid(file, format!("index.json: {e}")))?;
    let mut added = Vec::new();
    for d in index.manifests {
        let Some(name) = d.annotations.as_ref().and_then(|a| a.get(REF_NAME)) else {
            continue;
        };
        let name = normalize(name).map_err(|m| invalid(file, m))?;
        check_pinned(&name, &d).map_err(|m| invalid(file, m))?;
        let digest = d.digest().map_err(CacheError::from)?;
        if !cache.has_blob(&digest) {
            return Err(invalid(
                file,
                format!("{name}: manifest {digest} is not in the archive"),
            ));
        }
        cache.set_ref(&name, &d)?;
        added.push(name);
    }
    if added.is_empty() {
        return Err(invalid(
            file,
            format!("index.json names no image (no {REF_NAME} annotation)"),
        ));
    }
    Ok(added)
}

fn import_docker(cache: &Cache, file: &Path) -> Result<Vec<String>, ArchiveError> {
    let want: BTreeSet<String> = ["manifest.json".to_string()].into();
    let manifest = read_entries(file, &want)?;
    let entries: Vec<DockerSaveEntry> =
        serde_json::from_slice(manifest.get("manifest.json").map_or(&[][..], |v| v))
            .map_err(|e| invalid(file, format!("manifest.json: {e}")))?;
    // Store every file the entries name, by its own digest.
    let mut wanted = BTreeSet::new();
    for e in &entries {
        wanted.insert(e.config.clone());
        wanted.extend(e.layers.iter().cloned());
    }
    let mut stored = std::collections::BTreeMap::new();
    let mut tar = open_tar(file)?;
    for entry in tar.entries().map_err(io(file, "read"))? {
        let mut entry = entry.map_err(io(file, "read"))?;
        let name = clean(&entry.path().map_err(io(file, "read"))?);
        if wanted.contains(&name) && !stored.contains_key(&name) {
            stored.insert(name, cache.put_stream(&mut entry)?);
        }
    }
    let mut added = Vec::new();
    for e in &entries {
        let get = |n: &str| {
            stored.get(n).cloned().ok_or_else(|| {
                invalid(
                    file,
                    format!("manifest.json names {n}, which is not in the file"),
                )
            })
        };
        let (config_digest, config_size) = get(&e.config)?;
        let config = cache.read_blob(&config_digest)?;
        let diff_ids =
            diff_ids(&config).map_err(|m| invalid(file, format!("{}: {m}", e.config)))?;
        let mut layers = Vec::new();
        for (i, l) in e.layers.iter().enumerate() {
            let (digest, size) = get(l)?;
            if diff_ids.get(i) != Some(&digest.to_string()) {
                return Err(invalid(
                    file,
                    format!(
                        "layer {l} hashes to {digest}, but the image config lists {:?}",
                        diff_ids.get(i)
                    ),
                ));
            }
            layers.push(Descriptor::new(oci::OCI_LAYER_TAR, &digest, size));
        }
        let config = Descriptor::new(oci::OCI_CONFIG, &config_digest, config_size);
        let manifest = oci::write::image_manifest(&config, &layers)
            .and_then(|m| oci::write::to_bytes(&m))
            .map_err(|e| invalid(file, e.to_string()))?;
        let digest = Digest::of(&manifest);
        cache.put_blob(&digest, &manifest)?;
        debug_assert!(matches!(Parsed::parse(&manifest), Ok(Parsed::Image { .. })));
        let descriptor = Descriptor {
            media_type: oci::OCI_MANIFEST.to_string(),
            digest: digest.to_string(),
            size: manifest.len() as u64,
            platform: None,
            annotations: None,
        };
        for tag in e.repo_tags.iter().flatten() {
            let name = normalize(tag).map_err(|m| invalid(file, m))?;
            check_pinned(&name, &descriptor).map_err(|m| invalid(file, m))?;
            cache.set_ref(&name, &descriptor)?;
            added.push(name);
        }
    }
    if added.is_empty() {
        return Err(invalid(
            file,
            "manifest.json has no RepoTags to name the images by",
        ));
    }
    Ok(added)
}

fn diff_ids(config: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    serde_json::from_slice::<Config>(config)
        .map(|c| c.rootfs.diff_ids)
        .map_err(|e| format!("not an image config: {e}"))
}

/// The cache's name for a reference: fully qualified (`docker.io/library/x:tag`).
/// Refuses a name pinned by digest (`REPO@sha256:...`) that an archive
/// points at another manifest: content addressing is the only trust.
fn check_pinned(name: &str, descriptor: &Descriptor) -> Result<(), String> {
    match name.rsplit_once('@') {
        Some((_, pinned)) if pinned != descriptor.digest => Err(format!(
            "{name} is pinned to {pinned}, but the archive points it at {}: refused",
            descriptor.digest
        )),
        _ => Ok(()),
    }
}

pub fn normalize(name: &str) -> Result<String, String> {
    name.parse::<oci_client::Reference>()
        .map(|r| r.whole())
        .map_err(|e| format!("invalid image reference \"{name}\": {e}"))
}
