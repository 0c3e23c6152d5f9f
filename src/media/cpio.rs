//! Writing a tree as a cpio "newc" archive, the format the kernel unpacks as
//! an initramfs.
//!
//! Owns: entry order (the tree's, parents first), inode numbers (1, 2, ... in
//! that order), hard links (one inode, data with the last link, as the kernel
//! expects), and fixed times. Headers come from the `cpio` crate. Must not
//! compress: it writes to a [`Compressor`] and marks entry boundaries.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::compress::Compressor;
use crate::rootfs::tree::{Content, Entry, Kind, Pack, Tree};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

fn too_big(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{path} is larger than the 4 GiB a cpio newc entry can hold"),
    )
}

/// Inodes in path order; every hard link shares its file's inode, and the
/// file's data goes with whichever of them comes last.
struct Inodes<'t> {
    ino: BTreeMap<&'t str, u32>,
    /// File → the hard links to it.
    links: BTreeMap<&'t str, Vec<&'t str>>,
    /// File → the path (itself or a link) that carries its data.
    carrier: BTreeMap<&'t str, &'t str>,
}

impl<'t> Inodes<'t> {
    fn new(tree: &'t Tree) -> Self {
        let mut ino: BTreeMap<&str, u32> = BTreeMap::new();
        let mut links: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut next = 1u32;
        for (path, entry) in tree.iter().filter(|(p, _)| !p.is_empty()) {
            if let Kind::Hardlink(target) = &entry.kind {
                links
                    .entry(target.as_str())
                    .or_default()
                    .push(path.as_str());
            } else {
                ino.insert(path.as_str(), next);
                next += 1;
            }
        }
        let carrier = links
            .iter()
            .map(|(target, group)| {
                let last = group
                    .iter()
                    .copied()
                    .chain(std::iter::once(*target))
                    .max()
                    .unwrap_or(target);
                (*target, last)
            })
            .collect();
        Inodes {
            ino,
            links,
            carrier,
        }
    }
}

/// An entry's cpio header fields and data.
struct Record<'a> {
    inode: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    rdev: (u32, u32),
    data: Option<DataRef<'a>>,
}

/// What `path` is written as: a hard link as its file (sharing the inode,
/// data only with the last link).
fn record<'a>(tree: &'a Tree, inodes: &Inodes, path: &str, entry: &'a Entry) -> Record<'a> {
    let (file, inode_of) = match &entry.kind {
        Kind::Hardlink(t) => (tree.get(t), t.as_str()),
        _ => (Some(entry), path),
    };
    let links = inodes.links.get(inode_of).map_or(1, |g| g.len() + 1);
    let carries_data = inodes.carrier.get(inode_of).is_none_or(|c| *c == path);
    let source: &Entry = file.unwrap_or(entry);
    let (kind_bits, data): (u32, Option<DataRef>) = match &source.kind {
        Kind::Dir => (S_IFDIR, None),
        Kind::File(c) => (S_IFREG, carries_data.then_some(DataRef::Content(c))),
        Kind::Symlink(t) => (S_IFLNK, Some(DataRef::Bytes(t.as_bytes()))),
        Kind::Char(..) => (S_IFCHR, None),
        Kind::Block(..) => (S_IFBLK, None),
        Kind::Fifo => (S_IFIFO, None),
        Kind::Hardlink(_) => (S_IFREG, None),
    };
    let rdev = match source.kind {
        Kind::Char(a, b) | Kind::Block(a, b) => (a, b),
        _ => (0, 0),
    };
    let perm = match source.kind {
        Kind::Symlink(_) => 0o777,
        _ => source.mode & 0o7777,
    };
    let nlink = match source.kind {
        Kind::Dir => 2,
        _ => u32::try_from(links).unwrap_or(1),
    };
    Record {
        inode: inodes.ino.get(inode_of).copied().unwrap_or(0),
        mode: kind_bits | perm,
        uid: source.uid,
        gid: source.gid,
        nlink,
        rdev,
        data,
    }
}

/// Writes `tree` (without its root entry) and the trailer.
pub fn write<W: Write>(
    tree: &Tree,
    pack: &Pack,
    mtime: u32,
    out: &mut Compressor<W>,
) -> io::Result<()> {
    let inodes = Inodes::new(tree);
    for (path, entry) in tree.iter().filter(|(p, _)| !p.is_empty()) {
        let r = record(tree, &inodes, path, entry);
        let size = match &r.data {
            Some(DataRef::Content(c)) => u32::try_from(c.len()).map_err(|_| too_big(path))?,
            Some(DataRef::Bytes(b)) => u32::try_from(b.len()).map_err(|_| too_big(path))?,
            None => 0,
        };
        let builder = cpio::newc::Builder::new(path)
            .ino(r.inode)
            .mode(r.mode)
            .uid(r.uid)
            .gid(r.gid)
            .nlink(r.nlink)
            .mtime(mtime)
            .rdev_major(r.rdev.0)
            .rdev_minor(r.rdev.1);
        let mut w = builder.write(&mut *out, size);
        match r.data {
            Some(DataRef::Content(c)) => pack.copy_to(c, &mut w)?,
            Some(DataRef::Bytes(b)) => w.write_all(b)?,
            None => {}
        }
        w.finish()?;
        out.boundary()?;
    }
    cpio::newc::trailer(&mut *out)?;
    Ok(())
}

enum DataRef<'a> {
    Content(&'a Content),
    Bytes(&'a [u8]),
}

/// A cpio of a single file (e.g. `kernel/x86/microcode/GenuineIntel.bin` is
/// already a cpio; this is for files Hull adds uncompressed before the main one).
pub fn single_file(name: &str, data: &[u8], mtime: u32) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = cpio::newc::Builder::new(name)
        .ino(1)
        .mode(S_IFREG | 0o644)
        .nlink(1)
        .mtime(mtime)
        .write(
            &mut out,
            u32::try_from(data.len()).map_err(|_| too_big(name))?,
        );
    w.write_all(data)?;
    w.finish()?;
    cpio::newc::trailer(&mut out)?;
    Ok(out)
}
