//! A FAT32 filesystem image holding a few files: what an EFI system
//! partition needs.
//!
//! Owns: the boot sector, FSInfo, both FATs, directories and files laid out
//! contiguously, with fixed times (1980-01-01) and a given volume id, so the
//! same files give the same bytes. Written by hand rather than with the
//! `fatfs` crate: fatfs 0.3 writes `..` entries of root's subdirectories with
//! the root's cluster instead of 0 and leaves FSInfo's free count unset, which
//! `fsck.vfat` reports as errors. Names must be 8.3 (the ESP's are:
//! `EFI/BOOT/BOOTX64.EFI`). Must not know about partitions: that is `disk`.

use std::collections::BTreeMap;

const SECTOR: usize = 512;
/// One sector per cluster: FAT32 needs at least 65525 clusters, so the
/// volume must be at least about 33 MiB.
const CLUSTER: usize = SECTOR;
const RESERVED: usize = 32;
const MIN_CLUSTERS: usize = 65525;
const EOC: u32 = 0x0FFF_FFFF;
/// 1980-01-01 in FAT's date format.
const DATE: u16 = (1 << 5) | 1;

#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("\"{0}\" is not an 8.3 name")]
    Name(String),
    #[error("{size} bytes is too small for FAT32 holding {payload} bytes")]
    TooSmall { size: u64, payload: u64 },
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
    File(&'a [u8]),
}

struct Volume {
    img: Vec<u8>,
    fat: Vec<u32>,
    next: u32,
    data_start: usize,
    too_small: (u64, u64),
}

impl Volume {
    /// `n` contiguous clusters, chained in the FAT; the first.
    fn alloc(&mut self, n: usize) -> Result<u32, FatError> {
        let first = self.next;
        let end = first as usize + n;
        if end > self.fat.len() {
            return Err(FatError::TooSmall {
                size: self.too_small.0,
                payload: self.too_small.1,
            });
        }
        for c in first as usize..end {
            self.fat[c] = if c + 1 == end {
                EOC
            } else {
                u32::try_from(c + 1).unwrap_or(EOC)
            };
        }
        self.next = u32::try_from(end).unwrap_or(u32::MAX);
        Ok(first)
    }

    fn offset(&self, cluster: u32) -> usize {
        (self.data_start + (cluster as usize - 2) * (CLUSTER / SECTOR)) * SECTOR
    }

    /// Writes directory `children` at cluster `own`; `parent` is the cluster
    /// for `..` (`None` for the root, which has no `.` and `..`).
    fn write_dir(
        &mut self,
        children: &BTreeMap<String, Node>,
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
                        let first = self.alloc(clusters_for(data.len()))?;
                        let at = self.offset(first);
                        self.img[at..at + data.len()].copy_from_slice(data);
                        first
                    };
                    entries.push(entry(short, 0x20, first, size));
                }
                Node::Dir(grand) => {
                    let first = self.alloc(clusters_for((grand.len() + 2) * 32))?;
                    entries.push(entry(short, 0x10, first, 0));
                    subdirs.push((first, grand));
                }
            }
        }
        let at = self.offset(own);
        for (i, e) in entries.iter().enumerate() {
            self.img[at + 32 * i..at + 32 * (i + 1)].copy_from_slice(e);
        }
        for (first, grand) in subdirs {
            // `..` of a directory in the root is cluster 0, by the spec.
            let up = if parent.is_none() { 0 } else { own };
            self.write_dir(grand, first, Some(up), None)?;
        }
        Ok(())
    }
}

fn clusters_for(bytes: usize) -> usize {
    bytes.div_ceil(CLUSTER).max(1)
}

/// A FAT32 volume of `size` bytes (a whole number of sectors) with `files`
/// (paths like `EFI/BOOT/BOOTX64.EFI`); `hidden` is the partition's first
/// sector on its disk.
pub fn image(
    size: u64,
    files: &[(&str, &[u8])],
    volume_id: u32,
    label: &str,
    hidden: u32,
) -> Result<Vec<u8>, FatError> {
    let payload: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    let too_small = FatError::TooSmall { size, payload };
    let total = usize::try_from(size).map_err(|_| FatError::TooSmall { size, payload })? / SECTOR;
    // FAT size: enough entries for every cluster the rest could hold.
    let fat_sectors =
        ((total.saturating_sub(RESERVED) / (CLUSTER / SECTOR) + 2) * 4).div_ceil(SECTOR);
    let data_start = RESERVED + 2 * fat_sectors;
    let clusters = total.checked_sub(data_start).ok_or(too_small)? / (CLUSTER / SECTOR);
    if clusters < MIN_CLUSTERS {
        return Err(FatError::TooSmall { size, payload });
    }
    // The tree of directories and files.
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
        dir.insert((*name).to_string(), Node::File(data));
    }
    let mut v = Volume {
        img: vec![0u8; total * SECTOR],
        fat: vec![0u32; clusters + 2],
        next: 2,
        data_start,
        too_small: (size, payload),
    };
    v.fat[0] = 0x0FFF_FFF8;
    v.fat[1] = EOC;
    let root_cluster = v.alloc(clusters_for((root.len() + 1) * 32))?;
    let mut label_bytes = [b' '; 11];
    for (i, b) in label.bytes().take(11).enumerate() {
        label_bytes[i] = b.to_ascii_uppercase();
    }
    v.write_dir(&root, root_cluster, None, Some(label_bytes))?;
    let Volume {
        mut img, fat, next, ..
    } = v;
    let used = next as usize - 2;
    // Boot sector.
    let mut bs = [0u8; SECTOR];
    bs[0..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
    bs[3..11].copy_from_slice(b"HULL    ");
    bs[11..13].copy_from_slice(&512u16.to_le_bytes());
    // One sector per cluster (CLUSTER == SECTOR), 32 reserved sectors.
    bs[13] = 1;
    bs[14..16].copy_from_slice(&32u16.to_le_bytes());
    bs[16] = 2;
    bs[21] = 0xf8;
    bs[24..26].copy_from_slice(&32u16.to_le_bytes());
    bs[26..28].copy_from_slice(&64u16.to_le_bytes());
    bs[28..32].copy_from_slice(&hidden.to_le_bytes());
    let fits = |v: usize| u32::try_from(v).map_err(|_| FatError::TooSmall { size, payload });
    bs[32..36].copy_from_slice(&fits(total)?.to_le_bytes());
    bs[36..40].copy_from_slice(&fits(fat_sectors)?.to_le_bytes());
    bs[44..48].copy_from_slice(&root_cluster.to_le_bytes());
    bs[48..50].copy_from_slice(&1u16.to_le_bytes());
    bs[50..52].copy_from_slice(&6u16.to_le_bytes());
    bs[64] = 0x80;
    bs[66] = 0x29;
    bs[67..71].copy_from_slice(&volume_id.to_le_bytes());
    bs[71..82].copy_from_slice(&label_bytes);
    bs[82..90].copy_from_slice(b"FAT32   ");
    bs[510] = 0x55;
    bs[511] = 0xaa;
    // FSInfo.
    let mut fsinfo = [0u8; SECTOR];
    fsinfo[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    fsinfo[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    fsinfo[488..492].copy_from_slice(&fits(clusters - used)?.to_le_bytes());
    fsinfo[492..496].copy_from_slice(&next.to_le_bytes());
    fsinfo[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    for (sector, bytes) in [(0, &bs), (1, &fsinfo), (6, &bs), (7, &fsinfo)] {
        img[sector * SECTOR..(sector + 1) * SECTOR].copy_from_slice(bytes);
    }
    // Both FATs.
    for copy in 0..2 {
        let at = (RESERVED + copy * fat_sectors) * SECTOR;
        for (i, v) in fat.iter().enumerate() {
            img[at + 4 * i..at + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    Ok(img)
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
}
