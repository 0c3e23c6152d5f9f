//! Writing a tree as a cpio "newc" archive, the format the kernel unpacks as
//! an initramfs.
//!
//! Owns: entry order (the tree's, parents first), the archive's parts (runs
//! of entries whose bytes do not depend on the rest: [`parts`]), inode
//! numbers (1, 2, ... in a part, on the part's own device number), hard
//! links (one inode, data with the last link, as the kernel expects), and
//! fixed times. Headers come from the `cpio` crate. Must not compress.

use std::collections::BTreeMap;
use std::io::{self, Write};

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
    fn new(entries: impl Iterator<Item = (&'t String, &'t Entry)>) -> Self {
        let mut ino: BTreeMap<&str, u32> = BTreeMap::new();
        let mut links: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut next = 1u32;
        for (path, entry) in entries {
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

/// Which part a path belongs to: each image a container uses and each
/// volume (`containers/{images,volumes}/NAME`) has its own, as has the rest
/// of `containers/` (the containers' small files), apart from the system
/// around it; these are the units a rebuild most often keeps while
/// something else changes.
fn part_of(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("containers") else {
        return "";
    };
    let Some(rest) = rest.strip_prefix('/') else {
        return if rest.is_empty() { "containers" } else { "" };
    };
    let Some((group, rest)) = rest.split_once('/') else {
        return "containers";
    };
    if group != "images" && group != "volumes" {
        return "containers";
    }
    let name_len = rest.find('/').unwrap_or(rest.len());
    &path[..path.len() - rest.len() + name_len]
}

/// A run of consecutive entries written as one unit. Its inode numbers
/// count from 1 on a device number of its own, so its bytes depend only on
/// its entries and a build can reuse them (compressed) when they recur.
pub struct Part<'t> {
    entries: Vec<(&'t String, &'t Entry)>,
    /// The cpio `devminor` of its entries (unique in the archive).
    dev: u32,
}

impl<'t> Part<'t> {
    /// Its entries, in archive order.
    pub fn entries(&self) -> impl Iterator<Item = (&'t String, &'t Entry)> + '_ {
        self.entries.iter().copied()
    }
}

/// Device numbers are 20 bits.
const DEV_BITS: u32 = 20;

/// A device number from `first`, the part's first path: the same part gets
/// the same number in every archive, unless another part of this one took
/// it, then the next free one.
fn dev_for(first: &str, taken: &mut std::collections::BTreeSet<u32>) -> u32 {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(first.as_bytes());
    let mut dev = u32::from_le_bytes([digest[0], digest[1], digest[2], 0]) & ((1 << DEV_BITS) - 1);
    while dev == 0 || !taken.insert(dev) {
        dev = (dev + 1) & ((1 << DEV_BITS) - 1);
    }
    dev
}

/// Splits `tree` (without its root entry) into parts: one per image and
/// volume under `containers/`, one for each run of entries between them.
/// Parts joined by a hard link become one.
pub fn parts(tree: &Tree) -> Vec<Part<'_>> {
    let entries: Vec<(&String, &Entry)> = tree.iter().filter(|(p, _)| !p.is_empty()).collect();
    let mut starts = vec![0usize];
    for i in 1..entries.len() {
        if part_of(entries[i].0) != part_of(entries[i - 1].0) {
            starts.push(i);
        }
    }
    let part_index = |i: usize| starts.partition_point(|&s| s <= i) - 1;
    let index: BTreeMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.as_str(), i))
        .collect();
    // reach[k]: the last part part k must be joined with.
    let mut reach: Vec<usize> = (0..starts.len()).collect();
    for (i, (_, entry)) in entries.iter().enumerate() {
        if let Kind::Hardlink(target) = &entry.kind {
            if let Some(&j) = index.get(target.as_str()) {
                let (a, b) = (
                    part_index(i).min(part_index(j)),
                    part_index(i).max(part_index(j)),
                );
                reach[a] = reach[a].max(b);
            }
        }
    }
    let mut cuts = Vec::new();
    let mut end = 0;
    for (k, &r) in reach.iter().enumerate() {
        if k > end || k == 0 {
            cuts.push(starts[k]);
        }
        end = end.max(r);
    }
    cuts.push(entries.len());
    let mut taken = std::collections::BTreeSet::new();
    cuts.windows(2)
        .filter(|w| w[0] < w[1])
        .map(|w| Part {
            entries: entries[w[0]..w[1]].to_vec(),
            dev: dev_for(entries[w[0]].0, &mut taken),
        })
        .collect()
}

/// Writes `part`'s entries (no trailer) to `out`.
pub fn write_part(
    tree: &Tree,
    pack: &Pack,
    part: &Part,
    mtime: u32,
    out: &mut dyn Write,
) -> io::Result<()> {
    write_entries(tree, part, mtime, FileData::Bytes(pack), out)
}

/// Writes what identifies `part`'s bytes, for keys: each entry's header as
/// [`write_part`] writes it, then instead of a file's data its
/// [`Content::write_identity`] (symlink targets as they are). Two parts with
/// the same identity write the same bytes; computing it reads no file data.
pub fn write_part_identity(
    tree: &Tree,
    part: &Part,
    mtime: u32,
    out: &mut dyn Write,
) -> io::Result<()> {
    write_entries(tree, part, mtime, FileData::Identities, out)
}

/// What a file's data is written as.
#[derive(Clone, Copy)]
enum FileData<'p> {
    /// Its bytes, from the pack: the archive.
    Bytes(&'p Pack),
    /// After its header, its [`Content::write_identity`]: a key.
    Identities,
}

/// Writes each entry's header and data, files' data as `file_data` says.
fn write_entries(
    tree: &Tree,
    part: &Part,
    mtime: u32,
    file_data: FileData,
    out: &mut dyn Write,
) -> io::Result<()> {
    let inodes = Inodes::new(part.entries.iter().copied());
    for &(path, entry) in &part.entries {
        let r = record(tree, &inodes, path, entry);
        let size = match &r.data {
            Some(DataRef::Content(c)) => u32::try_from(c.len()).map_err(|_| too_big(path))?,
            Some(DataRef::Bytes(b)) => u32::try_from(b.len()).map_err(|_| too_big(path))?,
            None => 0,
        };
        let builder = cpio::newc::Builder::new(path)
            .ino(r.inode)
            .dev_minor(part.dev)
            .mode(r.mode)
            .uid(r.uid)
            .gid(r.gid)
            .nlink(r.nlink)
            .mtime(mtime)
            .rdev_major(r.rdev.0)
            .rdev_minor(r.rdev.1);
        let mut w = builder.write(&mut *out, size);
        match (r.data, file_data) {
            (Some(DataRef::Content(c)), FileData::Bytes(pack)) => pack.copy_to(c, &mut w)?,
            (Some(DataRef::Content(c)), FileData::Identities) => {
                // The header alone (no padding: no data went through `w`),
                // then the identity.
                c.write_identity(w.finish()?)?;
                continue;
            }
            (Some(DataRef::Bytes(b)), _) => w.write_all(b)?,
            (None, _) => {}
        }
        w.finish()?;
    }
    Ok(())
}

/// Writes the archive's end.
pub fn write_trailer(out: &mut dyn Write) -> io::Result<()> {
    cpio::newc::trailer(out).map(|_| ())
}

/// Writes `tree` (without its root entry) and the trailer.
pub fn write(tree: &Tree, pack: &Pack, mtime: u32, out: &mut dyn Write) -> io::Result<()> {
    for part in parts(tree) {
        write_part(tree, pack, &part, mtime, out)?;
    }
    write_trailer(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree like an assembled one: root files around two container images.
    fn tree(pack: &mut Pack, app: &[u8]) -> Tree {
        let mut t = Tree::new();
        let file = |t: &mut Tree, path: &str, data: &[u8]| {
            let c = pack.store_bytes(data).expect("store");
            t.insert(path, Entry::file(c, 0o644)).expect("insert");
        };
        file(&mut t, "bin/sh", b"shell");
        file(&mut t, "containers/images/aaa/rootfs/app", app);
        file(&mut t, "containers/images/bbb/rootfs/db", b"database");
        file(&mut t, "containers/services/web/config.json", b"{}");
        file(&mut t, "etc/motd", b"hello");
        t
    }

    fn firsts(parts: &[Part]) -> Vec<String> {
        parts
            .iter()
            .map(|p| {
                p.entries()
                    .next()
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    fn bytes(tree: &Tree, pack: &Pack, part: &Part) -> Vec<u8> {
        let mut out = Vec::new();
        write_part(tree, pack, part, 0, &mut out).expect("write");
        out
    }

    #[test]
    fn each_image_is_a_part_whose_bytes_do_not_depend_on_the_others() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut pack = Pack::new(dir.path()).expect("pack");
        let (one, two) = (
            tree(&mut pack, b"app v1"),
            tree(&mut pack, b"app version 2"),
        );
        let (p1, p2) = (parts(&one), parts(&two));
        assert_eq!(
            firsts(&p1),
            [
                "bin",
                "containers",
                "containers/images/aaa",
                "containers/images/bbb",
                "containers/services",
                "etc",
            ]
            .map(String::from)
        );
        let devs: std::collections::BTreeSet<u32> = p1.iter().map(|p| p.dev).collect();
        assert_eq!(devs.len(), p1.len(), "a device number per part");
        // Only the changed image's part differs, though later inodes moved.
        for (i, (a, b)) in p1.iter().zip(&p2).enumerate() {
            let same = bytes(&one, &pack, a) == bytes(&two, &pack, b);
            assert_eq!(same, i != 2, "part {i}");
        }
        // The parts and a trailer are the archive, which cpio reads whole.
        let mut whole = Vec::new();
        write(&one, &pack, 0, &mut whole).expect("write");
        let mut joined: Vec<u8> = p1.iter().flat_map(|p| bytes(&one, &pack, p)).collect();
        write_trailer(&mut joined).expect("trailer");
        assert_eq!(whole, joined);
        let mut names = Vec::new();
        let mut rest = &whole[..];
        loop {
            let r = cpio::newc::Reader::new(rest).expect("entry");
            if r.entry().is_trailer() {
                break;
            }
            names.push(r.entry().name().to_string());
            rest = r.finish().expect("next");
        }
        assert_eq!(names.len(), one.iter().count() - 1);
    }

    fn identity(tree: &Tree, part: &Part) -> Vec<u8> {
        let mut out = Vec::new();
        write_part_identity(tree, part, 0, &mut out).expect("identity");
        out
    }

    /// Parts with the same identity have the same bytes, and the other way
    /// round, whether their files are inline or packed, wherever in the
    /// pack they are, and whatever in a header differs.
    #[test]
    fn a_part_identity_changes_exactly_when_its_bytes_do() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut pack = Pack::new(dir.path()).expect("pack");
        let big = vec![5u8; 100_000];
        let mut bigger = big.clone();
        bigger[50_000] = 6;
        let trees = [
            tree(&mut pack, &big),
            tree(&mut pack, &big),
            tree(&mut pack, &bigger),
            tree(&mut pack, b"small"),
            tree(&mut pack, b"smalL"),
            {
                let mut t = tree(&mut pack, &big);
                let e = t
                    .get("containers/images/aaa/rootfs/app")
                    .expect("app")
                    .clone();
                t.insert(
                    "containers/images/aaa/rootfs/app",
                    Entry { mode: 0o755, ..e },
                )
                .expect("insert");
                t
            },
        ];
        fn app(t: &Tree) -> Part<'_> {
            parts(t).swap_remove(2)
        }
        for (i, a) in trees.iter().enumerate() {
            for (j, b) in trees.iter().enumerate() {
                let same_bytes = bytes(a, &pack, &app(a)) == bytes(b, &pack, &app(b));
                let same_identity = identity(a, &app(a)) == identity(b, &app(b));
                assert_eq!(same_bytes, same_identity, "trees {i} and {j}");
                assert_eq!(same_bytes, i == j || i + j == 1, "trees {i} and {j}");
            }
        }
    }

    #[test]
    fn a_hard_link_across_parts_joins_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut pack = Pack::new(dir.path()).expect("pack");
        let mut t = tree(&mut pack, b"app");
        let link = Entry {
            kind: Kind::Hardlink("bin/sh".into()),
            ..Entry::dir(0o755)
        };
        t.insert("containers/images/bbb/rootfs/sh", link)
            .expect("link");
        let p = parts(&t);
        assert_eq!(
            firsts(&p),
            ["bin", "containers/services", "etc"].map(String::from),
            "bin/sh's part runs to the link's"
        );
        // Both names share the inode; the data goes with the last.
        let first = &p[0];
        let inodes = Inodes::new(first.entries());
        let sh = record(&t, &inodes, "bin/sh", t.get("bin/sh").expect("sh"));
        let lk = t.get("containers/images/bbb/rootfs/sh").expect("link");
        let lr = record(&t, &inodes, "containers/images/bbb/rootfs/sh", lk);
        assert_eq!((sh.inode, sh.nlink), (lr.inode, 2));
        assert!(sh.data.is_none() && lr.data.is_some());
    }
}
