//! The compressed initrd, part by part, and the parts kept between builds.
//!
//! The cpio archive is cut into parts (`media::cpio::parts`: each image a
//! container uses, each volume, the runs between); each part is compressed
//! on its own (a gzip member, a zstd frame: both concatenate, and Linux
//! unpacks concatenated compressed archives). A part of at least
//! [`KEEP_MIN`] bytes is kept in the [`PartStore`] under the BLAKE3 hash of its
//! identity (its cpio headers and the BLAKE3 hashes of its files' bytes,
//! taken as they were stored: see `cpio::write_part_identity`), the codec,
//! the level and Hull's version, so a rebuild
//! in which only one service changed copies every other part instead of
//! compressing it again, and its output is byte-identical to a build from
//! nothing (the same bytes compress to the same bytes). A kept part carries
//! the BLAKE3 hash of its compressed bytes and is checked on every use: a damaged
//! one is compressed again and replaced.
//!
//! Owns: the store's files (`KEY`, written atomically) and the order of
//! parts in the stream. Must not know what the parts contain.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::media::compress::{Compression, Compressor};
use crate::media::cpio;
use crate::rootfs::tree::{Kind, Pack, Tree};

/// Parts smaller than this (uncompressed) are compressed every time.
pub const KEEP_MIN: u64 = 1 << 20;

/// How long `hull cache gc` keeps a part no build used.
pub const PARTS_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 86400);

/// What changes the compressed bytes of the same input: the part format
/// (bump when `media::cpio` or a codec's framing changes: 3 since a flush no
/// longer ends a zstd block, see `media::compress`) and Hull's version.
const KEY_PREFIX: &str = concat!("hull initrd part 3 ", env!("CARGO_PKG_VERSION"));

/// Where kept parts live (a directory of the image cache).
#[derive(Debug, Clone)]
pub struct PartStore {
    dir: PathBuf,
}

/// What writing the initrd did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PartStats {
    pub parts: usize,
    /// Parts copied from the store, and their uncompressed bytes.
    pub reused: usize,
    pub reused_bytes: u64,
    /// Parts compressed now, and their uncompressed bytes.
    pub compressed_bytes: u64,
}

impl std::fmt::Display for PartStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        write!(
            f,
            "initrd: {} parts, {} reused from earlier builds ({:.1} MiB), {:.1} MiB compressed",
            self.parts,
            self.reused,
            mib(self.reused_bytes),
            mib(self.compressed_bytes)
        )
    }
}

impl PartStore {
    /// A store in `dir` (created on first write).
    pub fn new(dir: &Path) -> Self {
        PartStore {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Copies the kept part `key` to `out` if it is there and whole; false
    /// when it is not (a damaged or unreadable one is removed).
    fn copy_kept(&self, key: &str, out: &mut dyn Write) -> io::Result<bool> {
        let path = self.path(key);
        let Ok(mut file) = File::open(&path) else {
            return Ok(false);
        };
        let mut buf = vec![0u8; COPY_BUF];
        // Checked whole before a byte of it is written, then copied.
        let Ok(Some(body)) = whole_len(&mut file, &mut buf) else {
            let _ = std::fs::remove_file(&path);
            return Ok(false);
        };
        file.seek(io::SeekFrom::Start(0))?;
        each_chunk(&mut file, body, &mut buf, |chunk| out.write_all(chunk))?;
        // Used now: gc keeps recently used parts.
        let _ = File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Ok(true)
    }

    /// Removes parts not used for `age`, and temp files left by builds that
    /// died. Returns the bytes freed.
    pub fn prune(&self, age: std::time::Duration) -> io::Result<u64> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        let now = std::time::SystemTime::now();
        let mut freed = 0;
        for entry in entries.flatten() {
            let meta = entry.metadata()?;
            let old = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|d| d >= age);
            if old {
                std::fs::remove_file(entry.path())?;
                freed += meta.len();
            }
        }
        Ok(freed)
    }
}

/// The length of a kept part's compressed bytes if its stored hash (the
/// last 32 bytes) matches them, else `None`.
fn whole_len(file: &mut File, buf: &mut [u8]) -> io::Result<Option<u64>> {
    let Some(body) = file.metadata()?.len().checked_sub(32) else {
        return Ok(None);
    };
    let mut hash = blake3::Hasher::new();
    each_chunk(file, body, buf, |chunk| {
        hash.update(chunk);
        Ok(())
    })?;
    let mut stored = [0u8; 32];
    file.read_exact(&mut stored)?;
    Ok((hash.finalize().as_bytes()[..] == stored[..]).then_some(body))
}

/// Bytes read at a time from a kept part.
const COPY_BUF: usize = 1 << 20;

/// Calls `f` on each chunk of the next `len` bytes of `file`.
fn each_chunk(
    file: &mut File,
    len: u64,
    buf: &mut [u8],
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        file.read_exact(&mut buf[..want])?;
        f(&buf[..want])?;
        left -= want as u64;
    }
    Ok(())
}

/// Writes the whole compressed archive of `tree` to `out`.
pub fn write(
    tree: &Tree,
    pack: &Pack,
    mtime: u32,
    codec: Compression,
    level: u32,
    store: Option<&PartStore>,
    out: &mut dyn Write,
) -> io::Result<PartStats> {
    let mut stats = PartStats::default();
    let parts = cpio::parts(tree);
    stats.parts = parts.len();
    for part in &parts {
        let size = part_size(part);
        let keep = store.filter(|_| size >= KEEP_MIN && codec != Compression::None);
        let make = |w: &mut dyn Write| cpio::write_part(tree, pack, part, mtime, w);
        let Some(store) = keep else {
            let mut c = Compressor::new(&mut *out, codec, level)?;
            make(&mut c)?;
            c.finish()?;
            stats.compressed_bytes += size;
            continue;
        };
        let key = part_key(tree, part, mtime, codec, level)?;
        if store.copy_kept(&key, out)? {
            stats.reused += 1;
            stats.reused_bytes += size;
            continue;
        }
        compress_and_keep(store, &key, out, codec, level, make)?;
        stats.compressed_bytes += size;
    }
    let mut c = Compressor::new(&mut *out, codec, level)?;
    cpio::write_trailer(&mut c)?;
    c.finish()?;
    Ok(stats)
}

/// The data bytes of a part (headers left out): what decides whether it is
/// worth keeping.
fn part_size(part: &cpio::Part) -> u64 {
    part.entries()
        .map(|(_, e)| match &e.kind {
            Kind::File(c) => c.len(),
            _ => 0,
        })
        .sum()
}

/// The store key of a part: the BLAKE3 hash of the key prefix, codec, level
/// and the part's identity (`cpio::write_part_identity`: its headers and
/// the hashes of its files, taken when they were stored; no file is read).
fn part_key(
    tree: &Tree,
    part: &cpio::Part,
    mtime: u32,
    codec: Compression,
    level: u32,
) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update(format!("{KEY_PREFIX}\n{} {level}\n", codec.name()).as_bytes());
    cpio::write_part_identity(tree, part, mtime, &mut h)?;
    Ok(h.finalize().to_hex().to_string())
}

/// Compresses what `make` writes into `out` and into a new kept part `key`.
/// The store is a cache: when it cannot take the part (no room, no
/// permission) the output is still written and the part is not kept.
fn compress_and_keep(
    store: &PartStore,
    key: &str,
    out: &mut dyn Write,
    codec: Compression,
    level: u32,
    make: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let kept = std::fs::create_dir_all(&store.dir).and_then(|()| {
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&store.dir)
    });
    let mut tee = Tee {
        out,
        kept: kept.ok().map(io::BufWriter::new),
        hash: blake3::Hasher::new(),
    };
    let mut c = Compressor::new(&mut tee, codec, level)?;
    make(&mut c)?;
    c.finish()?;
    if let Some(mut kept) = tee.kept {
        let digest = tee.hash.finalize();
        // A part that cannot be kept whole is dropped with its temp file.
        let _ = kept
            .write_all(digest.as_bytes())
            .and_then(|()| kept.into_inner().map_err(|e| e.into_error()))
            .and_then(|tmp| tmp.persist(store.path(key)).map_err(|e| e.error));
    }
    Ok(())
}

/// Writes to the output and, while it can, to a kept part, hashing what it
/// keeps; a failed write to the kept part only drops it.
struct Tee<'a> {
    out: &'a mut dyn Write,
    kept: Option<io::BufWriter<tempfile::NamedTempFile>>,
    hash: blake3::Hasher,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write_all(buf)?;
        if let Some(kept) = &mut self.kept {
            if kept.write_all(buf).is_err() {
                self.kept = None;
            } else {
                self.hash.update(buf);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::tree::Entry;

    /// Two container images of 2 MiB each around a small system.
    fn tree(pack: &mut Pack, app_version: u8) -> Tree {
        let mut t = Tree::new();
        let file = |t: &mut Tree, path: &str, data: Vec<u8>| {
            let c = pack.store_bytes(&data).expect("store");
            t.insert(path, Entry::file(c, 0o644)).expect("insert");
        };
        let big = |seed: u8| -> Vec<u8> {
            (0..2u32 << 20)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0] ^ seed)
                .collect()
        };
        file(&mut t, "bin/init", b"init".to_vec());
        file(&mut t, "containers/images/aaa/rootfs/app", big(app_version));
        file(&mut t, "containers/images/bbb/rootfs/db", big(200));
        file(
            &mut t,
            "containers/services/app/config.json",
            vec![app_version],
        );
        file(&mut t, "usr/lib/big", big(100));
        t
    }

    fn build(
        tree: &Tree,
        pack: &Pack,
        codec: Compression,
        store: Option<&PartStore>,
    ) -> (Vec<u8>, PartStats) {
        let mut out = Vec::new();
        let stats =
            write(tree, pack, 0, codec, codec.default_level(), store, &mut out).expect("write");
        (out, stats)
    }

    fn uncompressed(tree: &Tree, pack: &Pack) -> Vec<u8> {
        let mut out = Vec::new();
        cpio::write(tree, pack, 0, &mut out).expect("cpio");
        out
    }

    fn decode(codec: Compression, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match codec {
            Compression::Gzip => {
                flate2::read::MultiGzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .expect("gunzip");
            }
            Compression::Zstd => out = zstd::decode_all(bytes).expect("unzstd"),
            Compression::None => out = bytes.to_vec(),
        }
        out
    }

    #[test]
    fn a_rebuild_reuses_unchanged_parts_and_equals_a_build_from_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut pack = Pack::new(dir.path()).expect("pack");
        let (v1, v2) = (tree(&mut pack, 1), tree(&mut pack, 2));
        for codec in [Compression::Gzip, Compression::Zstd] {
            let store = PartStore::new(&dir.path().join(codec.name()));
            let (first, s1) = build(&v1, &pack, codec, Some(&store));
            assert_eq!((s1.parts, s1.reused), (6, 0), "{codec:?}");
            assert_eq!(decode(codec, &first), uncompressed(&v1, &pack));
            let (again, s2) = build(&v1, &pack, codec, Some(&store));
            assert_eq!(again, first, "{codec:?}: the same build again");
            assert_eq!(s2.reused, 3, "{codec:?}: the three big parts");
            // The app changed: its image part and the small parts are new.
            let (changed, s3) = build(&v2, &pack, codec, Some(&store));
            assert_eq!((s3.reused, s3.reused_bytes), (2, 4 << 20), "{codec:?}");
            let (scratch, _) = build(&v2, &pack, codec, None);
            assert_eq!(changed, scratch, "{codec:?}: equal to a build from nothing");
            assert_eq!(decode(codec, &changed), uncompressed(&v2, &pack));
        }
    }

    #[test]
    fn a_damaged_kept_part_is_compressed_again_and_replaced() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut pack = Pack::new(dir.path()).expect("pack");
        let t = tree(&mut pack, 1);
        let store = PartStore::new(&dir.path().join("parts"));
        let (first, _) = build(&t, &pack, Compression::Gzip, Some(&store));
        let kept: Vec<PathBuf> = std::fs::read_dir(dir.path().join("parts"))
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(kept.len(), 3, "{kept:?}");
        let mut bytes = std::fs::read(&kept[0]).expect("read");
        bytes[100] ^= 1;
        std::fs::write(&kept[0], &bytes).expect("damage");
        std::fs::write(&kept[1], b"short").expect("truncate");
        let (again, stats) = build(&t, &pack, Compression::Gzip, Some(&store));
        assert_eq!(again, first);
        assert_eq!(stats.reused, 1, "only the whole one");
        let (third, stats) = build(&t, &pack, Compression::Gzip, Some(&store));
        assert_eq!((third, stats.reused), (first, 3), "both replaced");
    }

    #[test]
    fn prune_removes_parts_unused_for_the_age() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut pack = Pack::new(dir.path()).expect("pack");
        let t = tree(&mut pack, 1);
        let store = PartStore::new(&dir.path().join("parts"));
        build(&t, &pack, Compression::Zstd, Some(&store));
        assert_eq!(
            store
                .prune(std::time::Duration::from_secs(3600))
                .expect("prune"),
            0
        );
        let freed = store.prune(std::time::Duration::ZERO).expect("prune");
        assert!(freed > 0, "{freed}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("parts"))
                .expect("dir")
                .count(),
            0
        );
    }

    #[test]
    fn a_store_that_cannot_keep_parts_still_gives_the_whole_output() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut pack = Pack::new(dir.path()).expect("pack");
        let t = tree(&mut pack, 1);
        // A file where the store's directory should be: nothing can be kept.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"not a directory").expect("write");
        let store = PartStore::new(&blocked.join("parts"));
        let (out, stats) = build(&t, &pack, Compression::Gzip, Some(&store));
        assert_eq!(stats.reused, 0);
        assert_eq!(out, build(&t, &pack, Compression::Gzip, None).0);
    }
}
