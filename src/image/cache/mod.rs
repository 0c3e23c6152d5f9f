//! The image cache: an OCI image layout directory that `skopeo` and `umoci` read.
//!
//! ```text
//! CACHE/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! CACHE/index.json            one descriptor per reference, named by the
//!                             org.opencontainers.image.ref.name annotation
//! CACHE/blobs/sha256/HEX      verified content
//! CACHE/.hull/tmp/            blobs being written (same filesystem: rename is atomic)
//! CACHE/.hull/index.lock      held while index.json is rewritten
//! CACHE/.hull/gc.lock         shared by writers, exclusive for gc
//! CACHE/.hull/initrd-parts/   compressed initrd parts builds reuse (their
//!                             format is `output::initrd_parts`'s)
//! CACHE/.hull/layers/HEX/     the layer blob HEX unpacked, for builds to read
//!                             instead of decompressing it again (its format
//!                             is `rootfs::unpacked`'s); gc removes it with
//!                             the blob
//! ```
//!
//! Owns: the layout, blob storage (through `blob`), the references in
//! index.json, and gc/verify. Must not talk to registries: `registry` fills the
//! cache through this API. Several processes may use one cache at once.

pub mod archive;
pub mod blob;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::image::oci::{self, Descriptor, Parsed, REF_NAME};
use crate::platform::Arch;
use blob::{BlobError, BlobWriter, Digest};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {path}: {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cache index {path} is not valid")]
    BadIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("blob {digest} in the cache is not a manifest")]
    BadManifest {
        digest: Digest,
        #[source]
        source: oci::ParseError,
    },
    #[error("{0} is not in the cache")]
    NotCached(String),
}

impl From<crate::image::digest::DigestError> for CacheError {
    fn from(e: crate::image::digest::DigestError) -> Self {
        CacheError::Blob(BlobError::from(e))
    }
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> CacheError + 'a {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// index.json of an image layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LayoutIndex {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// One reference in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRef {
    pub name: String,
    pub descriptor: Descriptor,
}

/// An image for one architecture, all of whose blobs are in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    /// The index or manifest the reference points at.
    pub top: Descriptor,
    /// The image manifest for the architecture.
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A held lock; released on drop.
pub struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// The directory of the cache at `root` that packages' `version` commands
/// and build steps get as `$HULL_PKG_CACHE`, for what makes them faster next
/// time (e.g. apt's binary package cache) and never what decides their
/// output. Needs no open cache: a manifest's `@pkg:` tags are computed
/// before the cache is opened.
pub fn pkg_cache_dir(root: &Path) -> PathBuf {
    root.join(".hull").join("pkg-cache")
}

impl Cache {
    /// Opens the cache at `root`, creating the layout if it is not there.
    pub fn open(root: &Path) -> Result<Self, CacheError> {
        let cache = Cache {
            root: root.to_path_buf(),
        };
        for dir in [cache.blobs_dir(), cache.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(io(&dir, "cannot create directory"))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(
                &cache.tmp_dir(),
                &layout,
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
        }
        if !cache.index_path().exists() {
            let _lock = cache.index_lock()?;
            if !cache.index_path().exists() {
                cache.write_index(&LayoutIndex {
                    schema_version: 2,
                    media_type: Some(oci::OCI_INDEX.to_string()),
                    manifests: Vec::new(),
                })?;
            }
        }
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where package scripts keep what speeds them up between runs
    /// (`$HULL_PKG_CACHE`: see [`pkg_cache_dir`]).
    pub fn pkg_cache_dir(&self) -> PathBuf {
        pkg_cache_dir(&self.root)
    }

    /// Where builds keep compressed initrd parts for later builds.
    pub fn parts_dir(&self) -> PathBuf {
        self.root.join(".hull").join("initrd-parts")
    }

    /// Where layer blobs are kept unpacked, each in a directory named by
    /// the blob's digest hex.
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join(".hull").join("layers")
    }

    /// Where entries are written before they are renamed into place (the
    /// same filesystem); hold [`Cache::writer_lock`] while writing there.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(".hull").join("tmp")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Reads a (small) blob whole: manifests and configs.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, CacheError> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|source| {
            CacheError::Blob(BlobError::Read {
                digest: digest.clone(),
                path,
                source,
            })
        })
    }

    /// A writer that makes `digest` appear in the cache once verified.
    pub fn blob_writer(&self, digest: &Digest) -> Result<BlobWriter, CacheError> {
        Ok(BlobWriter::new(
            &self.tmp_dir(),
            self.blob_path(digest),
            digest.clone(),
        )?)
    }

    /// Stores what `reader` yields as a blob named by its own digest (for
    /// content whose digest is not known beforehand, like a `docker save` layer).
    pub fn put_stream(&self, reader: &mut dyn std::io::Read) -> Result<(Digest, u64), CacheError> {
        use sha2::Digest as _;
        let tmp = self.tmp_dir();
        let mut f =
            tempfile::NamedTempFile::new_in(&tmp).map_err(io(&tmp, "cannot create a temp file"))?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(io(&tmp, "cannot read the input"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            f.write_all(&buf[..n])
                .map_err(io(f.path(), "cannot write"))?;
            size += n as u64;
        }
        let digest = Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize())))?;
        f.as_file().sync_all().map_err(io(&tmp, "cannot sync"))?;
        let dest = self.blob_path(&digest);
        f.persist(&dest).map_err(|e| CacheError::Io {
            path: dest.clone(),
            action: "cannot rename into place",
            source: e.error,
        })?;
        Ok((digest, size))
    }

    /// Stores `bytes` as the blob `digest` (verified).
    pub fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), CacheError> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let mut w = self.blob_writer(digest)?;
        w.write(bytes)?;
        w.commit(Some(bytes.len() as u64))?;
        Ok(())
    }

    fn lock_file(&self, name: &str) -> Result<File, CacheError> {
        let path = self.root.join(".hull").join(name);
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path, "cannot open lock file"))
    }

    fn index_lock(&self) -> Result<Lock, CacheError> {
        let f = self.lock_file("index.lock")?;
        f.lock()
            .map_err(io(&self.root, "cannot lock the cache index"))?;
        Ok(Lock(f))
    }

    /// An exclusive lock named by `key` (e.g. a package reference), held
    /// while one process makes what others would otherwise make at the same
    /// time; they wait, then find it made.
    pub fn work_lock(&self, key: &str) -> Result<Lock, CacheError> {
        let name = format!("work-{}.lock", &Digest::of(key.as_bytes()).hex()[..16]);
        let f = self.lock_file(&name)?;
        f.lock()
            .map_err(io(&self.root, "cannot take a work lock"))?;
        Ok(Lock(f))
    }

    /// Held while blobs are written that no reference reaches yet, so that a
    /// concurrent `gc` cannot delete them.
    pub fn writer_lock(&self) -> Result<Lock, CacheError> {
        let f = self.lock_file("gc.lock")?;
        f.lock_shared()
            .map_err(io(&self.root, "cannot lock the cache"))?;
        Ok(Lock(f))
    }

    fn read_index(&self) -> Result<LayoutIndex, CacheError> {
        let path = self.index_path();
        let text = fs::read(&path).map_err(io(&path, "cannot read index.json"))?;
        serde_json::from_slice(&text).map_err(|source| CacheError::BadIndex { path, source })
    }

    fn write_index(&self, index: &LayoutIndex) -> Result<(), CacheError> {
        let path = self.index_path();
        let mut json = serde_json::to_vec_pretty(index).map_err(|source| CacheError::BadIndex {
            path: path.clone(),
            source,
        })?;
        json.push(b'\n');
        write_atomic(&self.tmp_dir(), &path, &json)
    }

    /// Every reference, sorted by name.
    pub fn refs(&self) -> Result<Vec<CachedRef>, CacheError> {
        let index = self.read_index()?;
        let mut out: Vec<CachedRef> = index
            .manifests
            .into_iter()
            .filter_map(|d| {
                let name = d.annotations.as_ref()?.get(REF_NAME)?.clone();
                Some(CachedRef {
                    name,
                    descriptor: d,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The descriptor `name` points at.
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>, CacheError> {
        Ok(self
            .refs()?
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| r.descriptor))
    }

    /// Points `name` at `descriptor` (replacing what it pointed at).
    pub fn set_ref(&self, name: &str, descriptor: &Descriptor) -> Result<(), CacheError> {
        let _lock = self.index_lock()?;
        let mut index = self.read_index()?;
        index.manifests.retain(|d| ref_name(d) != Some(name));
        let mut d = descriptor.clone();
        d.annotations
            .get_or_insert_with(Default::default)
            .insert(REF_NAME.to_string(), name.to_string());
        index.manifests.push(d);
        index
            .manifests
            .sort_by(|a, b| ref_name(a).cmp(&ref_name(b)));
        self.write_index(&index)
    }

    /// Removes the reference `name`; false if there was none. Blobs stay until `gc`.
    pub fn remove_ref(&self, name: &str) -> Result<bool, CacheError> {
        let _lock = self.index_lock()?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index.manifests.retain(|d| ref_name(d) != Some(name));
        let removed = index.manifests.len() != before;
        if removed {
            self.write_index(&index)?;
        }
        Ok(removed)
    }

    /// Parses the manifest blob `digest`.
    pub fn manifest(&self, digest: &Digest) -> Result<Parsed, CacheError> {
        let bytes = self.read_blob(digest)?;
        Parsed::parse(&bytes).map_err(|source| CacheError::BadManifest {
            digest: digest.clone(),
            source,
        })
    }

    /// The image `top` holds for `arch`, if it and all its blobs are cached.
    /// For a single-arch manifest the architecture is not checked here.
    pub fn complete_image(
        &self,
        top: &Descriptor,
        arch: Arch,
    ) -> Result<Option<CachedImage>, CacheError> {
        let top_digest = top.digest()?;
        if !self.has_blob(&top_digest) {
            return Ok(None);
        }
        let manifest = match self.manifest(&top_digest)? {
            Parsed::Index { manifests, .. } => match oci::select(&manifests, arch) {
                Some(d) => d.clone(),
                None => return Ok(None),
            },
            Parsed::Image { .. } => top.clone(),
        };
        let digest = manifest.digest()?;
        if !self.has_blob(&digest) {
            return Ok(None);
        }
        let Parsed::Image { config, layers, .. } = self.manifest(&digest)? else {
            return Ok(None);
        };
        for d in std::iter::once(&config).chain(&layers) {
            if !self.has_blob(&d.digest()?) {
                return Ok(None);
            }
        }
        Ok(Some(CachedImage {
            top: top.clone(),
            manifest,
            config,
            layers,
        }))
    }

    /// Every blob reachable from `d` that is present (manifests recursively).
    fn reachable(&self, d: &Descriptor, out: &mut BTreeSet<Digest>) -> Result<(), CacheError> {
        let digest = d.digest()?;
        if !out.insert(digest.clone()) || !self.has_blob(&digest) {
            return Ok(());
        }
        if oci::MANIFEST_TYPES.contains(&d.media_type.as_str()) || d.media_type.is_empty() {
            match self.manifest(&digest) {
                Ok(Parsed::Index { manifests, .. }) => {
                    for m in &manifests {
                        self.reachable(m, out)?;
                    }
                }
                Ok(Parsed::Image { config, layers, .. }) => {
                    for b in std::iter::once(&config).chain(&layers) {
                        out.insert(b.digest()?);
                    }
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Removes blobs no reference reaches, and stale temp files. Returns the
    /// removed digests and the bytes freed.
    pub fn gc(&self) -> Result<(Vec<Digest>, u64), CacheError> {
        let f = self.lock_file("gc.lock")?;
        f.lock().map_err(io(&self.root, "cannot lock the cache"))?;
        let _gc = Lock(f);
        let mut keep = BTreeSet::new();
        for r in self.refs()? {
            self.reachable(&r.descriptor, &mut keep)?;
        }
        let mut removed = Vec::new();
        let mut freed = 0;
        for (digest, path) in self.blob_files()? {
            if digest.as_ref().is_some_and(|d| keep.contains(d)) {
                continue;
            }
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(io(&path, "cannot remove blob"))?;
            freed += size;
            if let Some(d) = digest {
                removed.push(d);
            }
        }
        freed += self.remove_unpacked_without_blob()?;
        // No writer holds the shared lock now, so no temp file is in use.
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp)
            .map_err(io(&tmp, "cannot list"))?
            .flatten()
        {
            freed += remove_all(&entry.path());
        }
        Ok((removed, freed))
    }

    /// Removes the unpacked layers whose blob is gone; returns the bytes freed.
    fn remove_unpacked_without_blob(&self) -> Result<u64, CacheError> {
        let dir = self.layers_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(&dir, "cannot list")(e)),
        };
        let mut freed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let blob = name
                .to_str()
                .and_then(|n| Digest::parse(&format!("sha256:{n}")).ok())
                .map(|d| self.blob_path(&d));
            if !blob.is_some_and(|b| b.is_file()) {
                freed += remove_all(&entry.path());
            }
        }
        Ok(freed)
    }

    /// Files under blobs/sha256 with their digest (None: not a digest name).
    fn blob_files(&self) -> Result<Vec<(Option<Digest>, PathBuf)>, CacheError> {
        let dir = self.blobs_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io(&dir, "cannot list blobs"))? {
            let entry = entry.map_err(io(&dir, "cannot list blobs"))?;
            let name = entry.file_name();
            let digest = name
                .to_str()
                .and_then(|n| Digest::parse(&format!("sha256:{n}")).ok());
            out.push((digest, entry.path()));
        }
        out.sort();
        Ok(out)
    }

    /// Rehashes every blob; returns the bad ones with what is wrong.
    pub fn verify(&self) -> Result<(usize, Vec<(PathBuf, String)>), CacheError> {
        let mut bad = Vec::new();
        let files = self.blob_files()?;
        for (digest, path) in &files {
            match digest {
                None => bad.push((path.clone(), "not named by a sha256 digest".to_string())),
                Some(d) => match blob::hash_file(path, d) {
                    Ok((actual, _)) if &actual == d => {}
                    Ok((actual, _)) => {
                        bad.push((path.clone(), format!("{d}: content hashes to {actual}")))
                    }
                    Err(e) => bad.push((path.clone(), e.to_string())),
                },
            }
        }
        for r in self.refs()? {
            let top = r.descriptor.digest()?;
            if !self.has_blob(&top) {
                bad.push((
                    self.blob_path(&top),
                    format!("{}: its manifest {top} is missing", r.name),
                ));
            }
        }
        Ok((files.len(), bad))
    }
}

/// Removes the file or directory tree at `path` (what gc finds there is
/// its own to remove; what cannot be removed stays for the next gc);
/// returns the bytes of the files removed.
fn remove_all(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return fs::remove_file(path).map_or(0, |()| meta.len());
    }
    let mut freed = 0;
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            freed += remove_all(&entry.path());
        }
    }
    let _ = fs::remove_dir(path);
    freed
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
}

/// Writes `bytes` to `dest` through a synced temp file in `tmp_dir` and a rename.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let mut f = tempfile::NamedTempFile::new_in(tmp_dir)
        .map_err(io(tmp_dir, "cannot create a temp file"))?;
    f.write_all(bytes).map_err(io(dest, "cannot write"))?;
    f.as_file().sync_all().map_err(io(dest, "cannot sync"))?;
    f.persist(dest).map_err(|e| CacheError::Io {
        path: dest.to_path_buf(),
        action: "cannot rename into place",
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(bytes: &[u8], media_type: &str) -> Descriptor {
        Descriptor::of(media_type, bytes)
    }

    #[test]
    fn refs_gc_and_verify() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = Cache::open(dir.path()).expect("open");
        let layer = b"layer bytes".to_vec();
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::OCI_MANIFEST,
            "config": desc(&config, oci::OCI_CONFIG),
            "layers": [desc(&layer, oci::OCI_LAYER_TAR)],
        }))
        .expect("json");
        for b in [&layer, &config, &manifest] {
            cache.put_blob(&Digest::of(b), b).expect("put");
        }
        let stray = b"unreferenced".to_vec();
        cache.put_blob(&Digest::of(&stray), &stray).expect("put");
        let top = desc(&manifest, oci::OCI_MANIFEST);
        cache.set_ref("example.org/a:1", &top).expect("set");
        let img = cache
            .complete_image(&top, Arch::Amd64)
            .expect("reads")
            .expect("complete");
        assert_eq!(img.layers.len(), 1);
        assert_eq!(cache.refs().expect("refs").len(), 1);

        let (removed, freed) = cache.gc().expect("gc");
        assert_eq!(removed, vec![Digest::of(&stray)]);
        assert_eq!(freed, stray.len() as u64);
        assert!(cache
            .complete_image(&top, Arch::Amd64)
            .expect("reads")
            .is_some());

        // Corrupt a blob behind the cache's back: verify names it.
        fs::write(cache.blob_path(&Digest::of(&layer)), b"tampered").expect("write");
        let (count, bad) = cache.verify().expect("verify");
        assert_eq!(count, 3);
        assert_eq!(bad.len(), 1);
        assert!(
            bad[0].1.starts_with(&Digest::of(&layer).to_string()),
            "{bad:?}"
        );

        assert!(cache.remove_ref("example.org/a:1").expect("rm"));
        assert!(!cache.remove_ref("example.org/a:1").expect("rm"));
        let (removed, _) = cache.gc().expect("gc");
        assert_eq!(removed.len(), 3);
    }
}
