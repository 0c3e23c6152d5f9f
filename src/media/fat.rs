//! FAT filesystem images holding a few files: EFI system partitions (FAT32
//! on disks) and El Torito EFI boot images (FAT16, sized to their files).
//!
//! Owns: the boot sector (and FAT32's FSInfo), both FATs, the root directory,
//! subdirectories and files laid out contiguously, with fixed times
//! (1980-01-01) and a given volume id, so the same files give the same bytes.
//! Written by hand rather than with the `fatfs` crate: fatfs 0.3 writes `..`
//! entries of root's subdirectories with the root's cluster instead of 0 and
//! leaves FSInfo's free count unset, which `fsck.vfat` reports as errors.
//! Names must be 8.3 (the ESP's are: `EFI/BOOT/BOOTX64.EFI`). Must not know
//! about partitions or ISO 9660: that is `disk` and `iso9660`.

use std::collections::BTreeMap;
use std::io::{self, Seek, SeekFrom, Write};

use super::source::Source;

const SECTOR: usize = 512;
/// FAT32 volumes use one sector per cluster: they need at least 65525
/// clusters, so they are at least about 33 MiB.
const FAT32_RESERVED: usize = 32;
const FAT32_MIN_CLUSTERS: usize = 65525;
/// FAT16 has 4085 to 65524 clusters and a fixed root directory.
const FAT16_RESERVED: usize = 4;
const FAT16_MIN_CLUSTERS: usize = 4085;
const FAT16_MAX_CLUSTERS: usize = 65524;
const FAT16_ROOT_ENTRIES: usize = 512;
/// 1980-01-01 in FAT's date format.
const DATE: u16 = (1 << 5) | 1;

#[derive(Debug, Clone, thiserror::Error)]
pub enum FatError {
    #[error("\"{0}\" is not an 8.3 name")]
    Name(String),
    #[error("{size} bytes is too small for FAT32 holding {payload} bytes")]
    TooSmall { size: u64, payload: u64 },
    #[error("{payload} bytes of files is too much for a FAT16 boot image")]
    TooBig { payload: u64 },
}

/// Which FAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fat16,
    Fat32,
}

/// Where everything is, in sectors.
struct Layout {
    kind: Kind,
    /// Sectors per cluster.
    spc: usize,
    reserved: usize,
    fat_sectors: usize,
    /// FAT16's fixed root directory (0 for FAT32).
    root_sectors: usize,
    clusters: usize,
    total: usize,
}

impl Layout {
    fn data_start(&self) -> usize {
        self.reserved + 2 * self.fat_sectors + self.root_sectors
    }
    fn cluster_bytes(&self) -> usize {
        self.spc * SECTOR
    }
    fn eoc(&self) -> u32 {
        match self.kind {
            Kind::Fat16 => 0xFFFF,
            Kind::Fat32 => 0x0FFF_FFFF,
        }
    }
}

/// A name as the 11 bytes of a directory entry.
fn short_name(name: &str) -> Result<[u8; 11], FatError> {
    let bad = || FatError::Name(name.to_string());
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    let valid = |s: &str, max: usize| {
        s.len() <= max
            && s.bytes().all(|c| {
                c.is_ascii_uppercase() || c.is_ascii_digit() || b"_-~!#$%&'()@^{}".contains(&c)
            })
    };
    if base.is_empty() || !valid(base, 8) || !valid(ext, 3) {
        return Err(bad());
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Ok(out)
}

fn entry(name: [u8; 11], attr: u8, cluster: u32, size: u32) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0..11].copy_from_slice(&name);
    e[11] = attr;
    e[16..18].copy_from_slice(&DATE.to_le_bytes());
    e[18..20].copy_from_slice(&DATE.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[24..26].copy_from_slice(&DATE.to_le_bytes());
    e[26..28].copy_from_slice(&((cluster & 0xffff) as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

enum Node<'a> {
    Dir(BTreeMap<String, Node<'a>>),
    File(&'a dyn Source),
}

/// A file for a volume: its path (like `EFI/BOOT/BOOTX64.EFI`) and contents.
pub type File<'a> = (&'a str, &'a dyn Source);

/// The directory tree of `files`.
fn tree<'a>(files: &[File<'a>]) -> Result<BTreeMap<String, Node<'a>>, FatError> {
    let mut root: BTreeMap<String, Node> = BTreeMap::new();
    for (path, data) in files {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((name, dirs)) = parts.split_last() else {
            continue;
        };
        let mut dir = &mut root;
        for d in dirs {
            short_name(d)?;
            let node = dir
                .entry((*d).to_string())
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            dir = match node {
                Node::Dir(children) => children,
                Node::File(_) => return Err(FatError::Name((*path).to_string())),
            };
        }
        short_name(name)?;
        dir.insert((*name).to_string(), Node::File(*data));
    }
    Ok(root)
}

/// Clusters the tree needs with clusters of `bytes` (directories included).
fn clusters_needed(dir: &BTreeMap<String, Node>, bytes: usize) -> usize {
    dir.values()
        .map(|n| match n {
            Node::File(d) => usize::try_from(d.len())
                .unwrap_or(usize::MAX)
                .div_ceil(bytes),
            Node::Dir(c) => ((c.len() + 2) * 32).div_ceil(bytes) + clusters_needed(c, bytes),
        })
        .sum()
}

/// A volume laid out: where each directory's entries and each file's
/// contents go, and the FAT, ready to be written.
pub struct Volume<'a> {
    layout: Layout,
    /// Byte offset and entries of each directory (the rest of its clusters
    /// are zeros).
    dirs: Vec<(u64, Vec<u8>)>,
    /// Byte offset and contents of each non-empty file.
    data: Vec<(u64, &'a dyn Source)>,
    /// Boot sector, and FAT32's FSInfo and backups: sector and bytes.
    sectors: Vec<(usize, [u8; SECTOR])>,
    fat: Vec<u32>,
    next: u32,
    too_small: FatError,
}

impl<'a> Volume<'a> {
    /// `n` contiguous clusters, chained in the FAT; the first.
    fn alloc(&mut self, n: usize) -> Result<u32, FatError> {
        let first = self.next;
        let end = first as usize + n;
        if end > self.fat.len() {
            return Err(self.too_small.clone());
        }
        let eoc = self.layout.eoc();
        for c in first as usize..end {
            self.fat[c] = if c + 1 == end {
                eoc
            } else {
                u32::try_from(c + 1).unwrap_or(eoc)
            };
        }
        self.next = u32::try_from(end).unwrap_or(u32::MAX);
        Ok(first)
    }

    fn offset(&self, cluster: u32) -> u64 {
        ((self.layout.data_start() + (cluster as usize - 2) * self.layout.spc) * SECTOR) as u64
    }

    fn clusters_for(&self, bytes: usize) -> usize {
        bytes.div_ceil(self.layout.cluster_bytes()).max(1)
    }

    /// Writes directory `children` at byte `at`; `own` is its cluster and
    /// `parent` the cluster for `..` (`None` for the root, which has no `.`
    /// and `..` but the volume label).
    fn write_dir(
        &mut self,
        children: &BTreeMap<String, Node<'a>>,
        at: u64,
        own: u32,
        parent: Option<u32>,
        label: Option<[u8; 11]>,
    ) -> Result<(), FatError> {
        let mut entries: Vec<[u8; 32]> = Vec::new();
        if let Some(l) = label {
            entries.push(entry(l, 0x08, 0, 0));
        }
        if let Some(p) = parent {
            entries.push(entry(*b".          ", 0x10, own, 0));
            entries.push(entry(*b"..         ", 0x10, p, 0));
        }
        let mut subdirs = Vec::new();
        for (name, node) in children {
            let short = short_name(name)?;
            match node {
                Node::File(data) => {
                    let size =
                        u32::try_from(data.len()).map_err(|_| FatError::Name(name.clone()))?;
                    let first = if data.is_empty() {
                        0
                    } else {
                        let first = self.alloc(self.clusters_for(size as usize))?;
                        self.data.push((self.offset(first), *data));
                        first
                    };
                    entries.push(entry(short, 0x20, first, size));
                }
                Node::Dir(grand) => {
                    let first = self.alloc(self.clusters_for((grand.len() + 2) * 32))?;
                    entries.push(entry(short, 0x10, first, 0));
                    subdirs.push((first, grand));
                }
            }
        }
        self.dirs.push((at, entries.concat()));
        for (first, grand) in subdirs {
            // `..` of a directory in the root is cluster 0, by the spec.
            let up = if parent.is_none() { 0 } else { own };
            let at = self.offset(first);
            self.write_dir(grand, at, first, Some(up), None)?;
        }
        Ok(())
    }
}

/// A FAT32 volume of `size` bytes (a whole number of sectors) with `files`
/// (paths like `EFI/BOOT/BOOTX64.EFI`); `hidden` is the partition's first
/// sector on its disk.
pub fn image<'a>(
    size: u64,
    files: &[File<'a>],
    volume_id: u32,
    label: &str,
    hidden: u32,
) -> Result<Volume<'a>, FatError> {
    let payload: u64 = files.iter().map(|(_, d)| d.len()).sum();
    let too_small = || FatError::TooSmall { size, payload };
    let total = usize::try_from(size).map_err(|_| too_small())? / SECTOR;
    // FAT size: enough entries for every cluster the rest could hold.
    let fat_sectors = ((total.saturating_sub(FAT32_RESERVED) + 2) * 4).div_ceil(SECTOR);
    let data_start = FAT32_RESERVED + 2 * fat_sectors;
    let clusters = total.checked_sub(data_start).ok_or_else(too_small)?;
    if clusters < FAT32_MIN_CLUSTERS {
        return Err(too_small());
    }
    let layout = Layout {
        kind: Kind::Fat32,
        spc: 1,
        reserved: FAT32_RESERVED,
        fat_sectors,
        root_sectors: 0,
        clusters,
        total,
    };
    write(layout, files, volume_id, label, hidden, too_small())
}

/// A FAT16 volume just big enough for `files`, with clusters of 512 bytes
/// or more as the payload needs: an El Torito EFI boot image.
pub fn small_image<'a>(
    files: &[File<'a>],
    volume_id: u32,
    label: &str,
) -> Result<Volume<'a>, FatError> {
    let payload: u64 = files.iter().map(|(_, d)| d.len()).sum();
    let root = tree(files)?;
    let mut spc = 1;
    let clusters = loop {
        let need = clusters_needed(&root, spc * SECTOR) + 16;
        if need <= FAT16_MAX_CLUSTERS {
            break need.max(FAT16_MIN_CLUSTERS + 11);
        }
        spc *= 2;
        if spc > 128 {
            return Err(FatError::TooBig { payload });
        }
    };
    let fat_sectors = ((clusters + 2) * 2).div_ceil(SECTOR);
    let root_sectors = FAT16_ROOT_ENTRIES * 32 / SECTOR;
    let layout = Layout {
        kind: Kind::Fat16,
        spc,
        reserved: FAT16_RESERVED,
        fat_sectors,
        root_sectors,
        clusters,
        total: FAT16_RESERVED + 2 * fat_sectors + root_sectors + clusters * spc,
    };
    write(
        layout,
        files,
        volume_id,
        label,
        0,
        FatError::TooBig { payload },
    )
}

/// A volume label as the boot sector and the root directory hold it.
fn label_bytes(label: &str) -> [u8; 11] {
    let mut out = [b' '; 11];
    for (i, b) in label.bytes().take(11).enumerate() {
        out[i] = b.to_ascii_uppercase();
    }
    out
}

impl<'a> Volume<'a> {
    /// Writes the root directory with the volume label and everything under
    /// it; returns the root's cluster (0 on FAT16, whose root has a fixed
    /// area of its own).
    fn write_root(
        &mut self,
        root: &BTreeMap<String, Node<'a>>,
        label: [u8; 11],
    ) -> Result<u32, FatError> {
        match self.layout.kind {
            Kind::Fat32 => {
                self.fat[0] = 0x0FFF_FFF8;
                self.fat[1] = self.layout.eoc();
                let c = self.alloc(self.clusters_for((root.len() + 1) * 32))?;
                let at = self.offset(c);
                self.write_dir(root, at, c, None, Some(label))?;
                Ok(c)
            }
            Kind::Fat16 => {
                if root.len() + 1 > FAT16_ROOT_ENTRIES {
                    return Err(self.too_small.clone());
                }
                self.fat[0] = 0xFFF8;
                self.fat[1] = 0xFFFF;
                let at = ((self.layout.reserved + 2 * self.layout.fat_sectors) * SECTOR) as u64;
                self.write_dir(root, at, 0, None, Some(label))?;
                Ok(0)
            }
        }
    }

    fn fits32(&self, v: usize) -> Result<u32, FatError> {
        u32::try_from(v).map_err(|_| self.too_small.clone())
    }

    fn fits16(&self, v: usize) -> Result<u16, FatError> {
        u16::try_from(v).map_err(|_| self.too_small.clone())
    }

    /// The boot sector: the BIOS parameter block both kinds share, then the
    /// extended one of this kind.
    fn boot_sector(
        &self,
        hidden: u32,
        volume_id: u32,
        label: [u8; 11],
        root_cluster: u32,
    ) -> Result<[u8; SECTOR], FatError> {
        let (layout, kind) = (&self.layout, self.layout.kind);
        let mut bs = [0u8; SECTOR];
        bs[0..3].copy_from_slice(match kind {
            Kind::Fat32 => &[0xeb, 0x58, 0x90],
            Kind::Fat16 => &[0xeb, 0x3c, 0x90],
        });
        bs[3..11].copy_from_slice(b"HULL    ");
        bs[11..13].copy_from_slice(&512u16.to_le_bytes());
        bs[13] = u8::try_from(layout.spc).map_err(|_| self.too_small.clone())?;
        bs[14..16].copy_from_slice(&self.fits16(layout.reserved)?.to_le_bytes());
        bs[16] = 2;
        bs[21] = 0xf8;
        bs[24..26].copy_from_slice(&32u16.to_le_bytes());
        bs[26..28].copy_from_slice(&64u16.to_le_bytes());
        bs[28..32].copy_from_slice(&hidden.to_le_bytes());
        let ext = match kind {
            Kind::Fat32 => {
                bs[32..36].copy_from_slice(&self.fits32(layout.total)?.to_le_bytes());
                bs[36..40].copy_from_slice(&self.fits32(layout.fat_sectors)?.to_le_bytes());
                bs[44..48].copy_from_slice(&root_cluster.to_le_bytes());
                bs[48..50].copy_from_slice(&1u16.to_le_bytes());
                bs[50..52].copy_from_slice(&6u16.to_le_bytes());
                64
            }
            Kind::Fat16 => {
                bs[17..19].copy_from_slice(&self.fits16(FAT16_ROOT_ENTRIES)?.to_le_bytes());
                match u16::try_from(layout.total) {
                    Ok(t) => bs[19..21].copy_from_slice(&t.to_le_bytes()),
                    Err(_) => bs[32..36].copy_from_slice(&self.fits32(layout.total)?.to_le_bytes()),
                }
                bs[22..24].copy_from_slice(&self.fits16(layout.fat_sectors)?.to_le_bytes());
                36
            }
        };
        bs[ext] = 0x80;
        bs[ext + 2] = 0x29;
        bs[ext + 3..ext + 7].copy_from_slice(&volume_id.to_le_bytes());
        bs[ext + 7..ext + 18].copy_from_slice(&label);
        bs[ext + 18..ext + 26].copy_from_slice(match kind {
            Kind::Fat32 => b"FAT32   ",
            Kind::Fat16 => b"FAT16   ",
        });
        bs[510] = 0x55;
        bs[511] = 0xaa;
        Ok(bs)
    }

    /// FAT32's FSInfo sector: free clusters and the next free one.
    fn fsinfo(&self) -> Result<[u8; SECTOR], FatError> {
        let used = self.next as usize - 2;
        let mut fsinfo = [0u8; SECTOR];
        fsinfo[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
        fsinfo[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
        fsinfo[488..492].copy_from_slice(&self.fits32(self.layout.clusters - used)?.to_le_bytes());
        fsinfo[492..496].copy_from_slice(&self.next.to_le_bytes());
        fsinfo[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
        Ok(fsinfo)
    }

    /// One copy of the FAT up to the last cluster in use (the rest of it
    /// is zeros), whole sectors.
    fn fat_bytes(&self) -> Vec<u8> {
        let used = &self.fat[..(self.next as usize).min(self.fat.len())];
        let width = match self.layout.kind {
            Kind::Fat32 => 4,
            Kind::Fat16 => 2,
        };
        let mut out = vec![0u8; (used.len() * width).div_ceil(SECTOR) * SECTOR];
        for (i, v) in used.iter().enumerate() {
            match self.layout.kind {
                Kind::Fat32 => out[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes()),
                Kind::Fat16 => {
                    let v = u16::try_from(*v).unwrap_or(0xFFFF);
                    out[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        out
    }

    /// The volume's size in bytes.
    pub fn len(&self) -> u64 {
        (self.layout.total * SECTOR) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.layout.total == 0
    }

    /// Writes the volume at byte `base` of `out`, which must read as zeros
    /// there (a new file or a sparse one just extended): only what is not
    /// zero is written, and file contents are streamed from their sources.
    pub fn write_to<W: Write + Seek>(&self, out: &mut W, base: u64) -> io::Result<()> {
        for (sector, bytes) in &self.sectors {
            put_sparse(out, base + (sector * SECTOR) as u64, bytes)?;
        }
        let fat = self.fat_bytes();
        for copy in 0..2 {
            let at = (self.layout.reserved + copy * self.layout.fat_sectors) * SECTOR;
            put_sparse(out, base + at as u64, &fat)?;
        }
        for (at, entries) in &self.dirs {
            put_sparse(out, base + at, entries)?;
        }
        for (at, data) in &self.data {
            out.seek(SeekFrom::Start(base + at))?;
            super::source::copy(*data, out)?;
        }
        Ok(())
    }

    /// The whole volume in memory (for tests and small images).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len()).map_err(io::Error::other)?;
        let mut c = io::Cursor::new(vec![0u8; len]);
        self.write_to(&mut c, 0)?;
        Ok(c.into_inner())
    }
}

/// Writes `bytes` at `at`, skipping 4 KiB blocks that are all zeros.
fn put_sparse<W: Write + Seek>(out: &mut W, at: u64, bytes: &[u8]) -> io::Result<()> {
    let zeros = [0u8; 4096];
    for (i, block) in bytes.chunks(4096).enumerate() {
        if block != &zeros[..block.len()] {
            out.seek(SeekFrom::Start(at + 4096 * i as u64))?;
            out.write_all(block)?;
        }
    }
    Ok(())
}

/// Lays out the volume `layout` describes.
fn write<'a>(
    layout: Layout,
    files: &[File<'a>],
    volume_id: u32,
    label: &str,
    hidden: u32,
    too_small: FatError,
) -> Result<Volume<'a>, FatError> {
    let root = tree(files)?;
    let mut v = Volume {
        dirs: Vec::new(),
        data: Vec::new(),
        sectors: Vec::new(),
        fat: vec![0u32; layout.clusters + 2],
        next: 2,
        too_small,
        layout,
    };
    let label = label_bytes(label);
    let root_cluster = v.write_root(&root, label)?;
    let bs = v.boot_sector(hidden, volume_id, label, root_cluster)?;
    v.sectors.push((0, bs));
    if v.layout.kind == Kind::Fat32 {
        // FSInfo, and backups of both at sector 6.
        let fsinfo = v.fsinfo()?;
        v.sectors.extend([(1, fsinfo), (6, bs), (7, fsinfo)]);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_8_3() {
        assert_eq!(&short_name("BOOTX64.EFI").expect("ok"), b"BOOTX64 EFI");
        assert_eq!(&short_name("EFI").expect("ok"), b"EFI        ");
        assert!(short_name("bootx64.efi").is_err());
        assert!(short_name("TOOLONGNAME.EFI").is_err());
    }

    #[test]
    fn too_small_is_an_error() {
        assert!(image(8 << 20, &[("A", b"x")], 1, "X", 0).is_err());
    }

    #[test]
    fn small_images_fit_their_files_in_fat16() {
        let big = vec![7u8; 40 << 20];
        let img = small_image(&[("EFI/BOOT/BOOTX64.EFI", &big)], 1, "X")
            .expect("fits")
            .to_vec()
            .expect("writes");
        assert_eq!(&img[54..62], b"FAT16   ");
        assert!(img.len() < (40 << 20) + (1 << 20), "{}", img.len());
        let tiny = small_image(&[("A", b"x")], 1, "X").expect("fits");
        assert!(tiny.len() < 3 << 20, "{}", tiny.len());
    }
}
