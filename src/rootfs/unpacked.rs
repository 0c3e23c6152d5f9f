//! Layers kept unpacked in the cache: a layer blob is decompressed and
//! checked once, its files stored in a pack of its own, and later builds
//! (and `hull cache pull`, which unpacks what it pulls) read that pack
//! instead of decompressing the blob again.
//!
//! ```text
//! CACHE/.hull/layers/HEX/index   FORMAT, then the layer's entries (Layer::encode)
//! CACHE/.hull/layers/HEX/pack    the contents of its files (a pack's file)
//! ```
//!
//! An unpacked layer appears whole or not at all: both files are written
//! and synced in a temp directory renamed into place. One that cannot be
//! read back (another format, truncated) is unpacked again; `verify`
//! rehashes every file against the BLAKE3 hash its index records. The
//! directory is the cache's ([`Cache::layers_dir`]); gc removes an unpacked
//! layer with its blob.
//!
//! Owns: that format, writing and reading it. Must not know images or
//! manifests: callers give a blob and its digest.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::image::cache::Cache;
use crate::rootfs::layers::{self, Layer, LayerError, LayerFault, Limits};
use crate::rootfs::tree::{Content, Pack};

/// The first bytes of an index. Another Hull's index is not used (the layer
/// is unpacked again), so what a newer Hull checks in a layer is checked
/// for layers an older one unpacked.
const FORMAT: &[u8] = concat!("hull unpacked layer 1 ", env!("CARGO_PKG_VERSION"), "\n").as_bytes();
const INDEX: &str = "index";
const PACK: &str = "pack";

/// The layer blob at `blob` (digest hex `hex`; `layer` of `image` in
/// errors) read within `limits`, its pack attached to `pack`: from its
/// unpacked form when the cache has one, else unpacked now and kept.
pub fn read(
    cache: &Cache,
    pack: &Pack,
    blob: &Path,
    hex: &str,
    names: (&str, &str),
    limits: Limits,
) -> Result<Layer, LayerError> {
    let dir = cache.layers_dir().join(hex);
    let (file, mut layer) = match load(&dir, names) {
        Some((file, layer)) if layer.within(limits) => (file, layer),
        // Beyond this build's limits: reading the blob says where.
        Some(_) => return layers::read(pack, blob, names, limits),
        None => unpack(cache, &dir, blob, names, limits)?,
    };
    let n = pack.attach(file);
    layer.in_file(n);
    Ok(layer)
}

/// The unpacked layer in `dir`: its pack and entries, or None when there is
/// none or it cannot be used (another format, an index that does not
/// decode, a pack shorter than its index says).
fn load(dir: &Path, names: (&str, &str)) -> Option<(File, Layer)> {
    let layer = read_index(dir, names).ok()?;
    let file = File::open(dir.join(PACK)).ok()?;
    let len = file.metadata().ok()?.len();
    let end = layer
        .contents()
        .map(|(_, c)| match c {
            Content::Packed { offset, len, .. } => offset.saturating_add(*len),
            Content::Inline(_) => 0,
        })
        .max()
        .unwrap_or(0);
    (end <= len).then_some((file, layer))
}

/// The entries the index in `dir` records (`layer` of `image` in errors),
/// or what keeps them from being read: missing, another format, not decoding.
fn read_index(dir: &Path, names: (&str, &str)) -> Result<Layer, String> {
    let index = fs::read(dir.join(INDEX)).map_err(|e| format!("{INDEX}: {e}"))?;
    let encoded = index
        .strip_prefix(FORMAT)
        .ok_or_else(|| format!("{INDEX}: not an index Hull writes"))?;
    Layer::decode(encoded, names).map_err(|e| format!("{INDEX}: {e}"))
}

/// Reads the blob into a pack of its own and keeps both in `dir`.
fn unpack(
    cache: &Cache,
    dir: &Path,
    blob: &Path,
    (image, layer_name): (&str, &str),
    limits: Limits,
) -> Result<(File, Layer), LayerError> {
    let keep = |path: &Path| {
        let path = path.to_path_buf();
        move |source| -> LayerError {
            LayerFault::Keep {
                image: image.to_string(),
                layer: layer_name.to_string(),
                path: path.clone(),
                source,
            }
            .into()
        }
    };
    let _writing = cache
        .writer_lock()
        .map_err(|e| keep(dir)(std::io::Error::other(e)))?;
    let tmp = tempfile::Builder::new()
        .prefix("layer-")
        .tempdir_in(cache.tmp_dir())
        .map_err(keep(&cache.tmp_dir()))?;
    let pack_path = tmp.path().join(PACK);
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&pack_path)
        .map_err(keep(&pack_path))?;
    let pack = Pack::over(file).map_err(keep(&pack_path))?;
    let layer = layers::read(&pack, blob, (image, layer_name), limits)?;
    let (file, _) = pack.into_file();
    let encoded = layer
        .encode()
        .map_err(|e| keep(dir)(std::io::Error::other(e)))?;
    let index_path = tmp.path().join(INDEX);
    write_synced(&index_path, &[FORMAT, &encoded].concat()).map_err(keep(&index_path))?;
    file.sync_all().map_err(keep(&pack_path))?;
    publish(tmp, dir).map_err(keep(dir))?;
    Ok((file, layer))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Renames the temp directory `tmp` to `dir`, replacing an unusable one.
/// When another process put a layer there first, its copy stays.
fn publish(tmp: tempfile::TempDir, dir: &Path) -> std::io::Result<()> {
    let parent = dir.parent().unwrap_or(dir);
    fs::create_dir_all(parent)?;
    if dir.exists() {
        // Only reached when `load` refused it: unpacked again, replaced.
        fs::remove_dir_all(dir)?;
    }
    match fs::rename(tmp.path(), dir) {
        Ok(()) => {
            // Renamed away: nothing for the guard to remove.
            let _kept = tmp.keep();
            File::open(parent)?.sync_all()
        }
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Checks every unpacked layer of the cache: its index reads back and each
/// file's bytes in its pack hash to what the index records. Returns how
/// many were checked and the bad ones with what is wrong.
pub fn verify(cache: &Cache) -> std::io::Result<(usize, Vec<(PathBuf, String)>)> {
    let root = cache.layers_dir();
    let mut dirs: Vec<PathBuf> = match fs::read_dir(&root) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    dirs.sort();
    let bad = dirs
        .iter()
        .filter_map(|dir| check(dir).err().map(|what| (dir.clone(), what)))
        .collect();
    Ok((dirs.len(), bad))
}

/// What is wrong with the unpacked layer in `dir`, if anything.
fn check(dir: &Path) -> Result<(), String> {
    let layer = read_index(dir, ("", ""))?;
    let file = File::open(dir.join(PACK)).map_err(|e| format!("{PACK}: {e}"))?;
    let pack = Pack::over(file).map_err(|e| format!("{PACK}: {e}"))?;
    for (path, content) in layer.contents() {
        let mut actual = blake3::Hasher::new();
        pack.copy_to(content, &mut actual)
            .map_err(|e| format!("{PACK}: file \"{path}\": {e}"))?;
        if let Content::Packed { hash, .. } = content {
            if actual.finalize().as_bytes() != hash {
                return Err(format!(
                    "{PACK}: file \"{path}\" does not hash to what the index records"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::tree::Tree;

    /// A gzip layer blob in `cache`: a directory, a small and a large file,
    /// a symlink and a whiteout. Returns its path and digest hex.
    fn layer_blob(cache: &Cache) -> (PathBuf, String) {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(if kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            if let Some(l) = link {
                h.set_link_name(l).expect("link");
            }
            b.append_data(&mut h, path, data).expect("append");
        };
        add("etc/", tar::EntryType::Directory, b"", None);
        add("etc/small", tar::EntryType::Regular, b"hello", None);
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        add("etc/big", tar::EntryType::Regular, &big, None);
        add("etc/link", tar::EntryType::Symlink, b"", Some("big"));
        add("etc/.wh.gone", tar::EntryType::Regular, b"", None);
        let tar = b.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let blob = gz.finish().expect("gzip");
        let (digest, _) = cache.put_stream(&mut &blob[..]).expect("put");
        (cache.blob_path(&digest), digest.hex().to_string())
    }

    /// The layer applied to an empty tree: each path with its entry and,
    /// for files, their bytes.
    fn flattened(layer: Layer, pack: &Pack) -> Flattened {
        let mut tree = Tree::new();
        layer.apply(&mut tree).expect("apply");
        tree.iter()
            .map(|(path, e)| {
                let bytes = match &e.kind {
                    crate::rootfs::tree::Kind::File(c) => pack.read(c).expect("read"),
                    _ => Vec::new(),
                };
                (
                    path.to_string(),
                    format!("{:?} {:o}", std::mem::discriminant(&e.kind), e.mode),
                    bytes,
                )
            })
            .collect()
    }

    const NAMES: (&str, &str) = ("test-image", "sha256:test");

    type Flattened = Vec<(String, String, Vec<u8>)>;

    /// A cache holding the test layer, read (so unpacked) once: the temp
    /// directory, the cache, the blob's path and hex, the layer flattened.
    fn unpacked_once() -> (tempfile::TempDir, Cache, PathBuf, String, Flattened) {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = Cache::open(dir.path()).expect("cache");
        let (blob, hex) = layer_blob(&cache);
        let pack = Pack::new(dir.path()).expect("pack");
        let layer = read(&cache, &pack, &blob, &hex, NAMES, Limits::default()).expect("read");
        let flat = flattened(layer, &pack);
        (dir, cache, blob, hex, flat)
    }

    #[test]
    fn a_layer_read_again_comes_from_its_unpacked_form_and_is_the_same() {
        let (dir, cache, blob, hex, first) = unpacked_once();
        assert!(cache.layers_dir().join(&hex).join(INDEX).is_file());
        assert_eq!(verify(&cache).expect("verify"), (1, Vec::new()));
        // The blob gone: only the unpacked form can give the layer now.
        let kept_blob = fs::read(&blob).expect("blob");
        fs::remove_file(&blob).expect("rm");
        let again_pack = Pack::new(dir.path()).expect("pack");
        let again = read(&cache, &again_pack, &blob, &hex, NAMES, Limits::default()).expect("read");
        assert_eq!(flattened(again, &again_pack), first);
        assert!(first
            .iter()
            .any(|(p, _, b)| p == "etc/big" && b.len() == 200_000));
        // gc removes the unpacked layer with its blob, not before.
        fs::write(&blob, kept_blob).expect("restore");
        cache.gc().expect("gc");
        assert!(!blob.exists(), "no reference reaches the test blob");
        assert!(!cache.layers_dir().join(&hex).exists());
    }

    #[test]
    fn a_damaged_unpacked_layer_is_found_and_a_truncated_one_unpacked_again() {
        let (dir, cache, blob, hex, good) = unpacked_once();
        let pack_path = cache.layers_dir().join(&hex).join(PACK);
        let mut bytes = fs::read(&pack_path).expect("pack");
        bytes[1000] ^= 1;
        fs::write(&pack_path, &bytes).expect("damage");
        let (count, bad) = verify(&cache).expect("verify");
        assert_eq!(count, 1);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].1.contains("etc/big"), "{bad:?}");
        // Truncated (as a crash mid-write could not leave it, but a full
        // disk copying caches could): not used, unpacked from the blob again.
        fs::write(&pack_path, &bytes[..100]).expect("truncate");
        let pack = Pack::new(dir.path()).expect("pack");
        let again = read(&cache, &pack, &blob, &hex, NAMES, Limits::default()).expect("read");
        assert_eq!(flattened(again, &pack), good);
        assert_eq!(verify(&cache).expect("verify"), (1, Vec::new()));
        // An index of another format: the same.
        fs::write(
            cache.layers_dir().join(&hex).join(INDEX),
            b"hull unpacked layer 0\n",
        )
        .expect("index");
        let pack = Pack::new(dir.path()).expect("pack");
        let again = read(&cache, &pack, &blob, &hex, NAMES, Limits::default()).expect("read");
        assert_eq!(flattened(again, &pack), good);
    }

    #[test]
    fn an_unpacked_layer_is_held_to_the_limits_of_the_build_reading_it() {
        let (dir, cache, blob, hex, _) = unpacked_once();
        let pack = Pack::new(dir.path()).expect("pack");
        let tight = Limits {
            bytes: 1000,
            entries: 100,
        };
        let from_unpacked = read(&cache, &pack, &blob, &hex, NAMES, tight).expect_err("limit");
        let from_blob = layers::read(&pack, &blob, NAMES, tight).expect_err("limit");
        assert_eq!(from_unpacked.to_string(), from_blob.to_string());
        assert!(
            from_unpacked.to_string().contains("etc/big"),
            "{from_unpacked}"
        );
    }

    #[test]
    fn a_layer_hull_cannot_use_is_not_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = Cache::open(dir.path()).expect("cache");
        let empty_file = || {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            h
        };
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut empty_file(), "ok", &b""[..])
            .expect("append");
        // A path climbing out of the tree (which tar::Builder refuses to write).
        let mut raw = b.into_inner().expect("tar");
        let mut evil = empty_file();
        evil.as_gnu_mut().expect("gnu").name[..9].copy_from_slice(b"../escape");
        evil.set_cksum();
        raw.splice(512..512, evil.as_bytes().iter().copied());
        let (digest, _) = cache.put_stream(&mut &raw[..]).expect("put");
        let pack = Pack::new(dir.path()).expect("pack");
        let hex = digest.hex().to_string();
        let err = read(
            &cache,
            &pack,
            &cache.blob_path(&digest),
            &hex,
            NAMES,
            Limits::default(),
        )
        .expect_err("escape");
        assert!(err.to_string().contains("../escape"), "{err}");
        assert!(!cache.layers_dir().join(&hex).exists());
        let tmp_left = fs::read_dir(cache.tmp_dir()).expect("tmp").count();
        assert_eq!(
            tmp_left, 0,
            "the temp directory of the failed unpack is gone"
        );
    }
}
