//! ISO 9660 images with El Torito boot entries, hybrid so the same file
//! boots from a CD and from a disk (a USB stick).
//!
//! Owns: the volume layout (system area, primary volume descriptor, El
//! Torito boot record, terminator, boot catalog, both path tables,
//! directories, file extents), the boot info table patched into a BIOS boot
//! file, and the hybrid MBR in the system area. Names are ISO 9660 level 1
//! (8.3, upper case), dates fixed (1980-01-01), and the volume id is the
//! caller's, so the same files give the same bytes. Written by hand: no
//! maintained crate writes El Torito images, and the structures are a few
//! fixed-size records. Must not know what the files are (that is
//! `output`'s formats) nor how FAT images are made (`fat`).

use super::source::Source;
use std::collections::BTreeMap;
use std::io::{self, Write};

const BLOCK: usize = 2048;
/// The system area: 16 blocks before the volume descriptors.
const SYSTEM_AREA: usize = 16;
/// 1980-01-01 00:00:00 UTC as a directory record date.
const RECORD_DATE: [u8; 7] = [80, 1, 1, 0, 0, 0, 0];
/// The same as a volume descriptor date.
const VOLUME_DATE: &[u8; 17] = b"1980010100000000\0";
/// No date, in a volume descriptor.
const NO_DATE: &[u8; 17] = b"0000000000000000\0";

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("\"{0}\" is not an ISO 9660 level 1 name (8.3, A-Z 0-9 _)")]
    Name(String),
    #[error("\"{0}\" is in the image twice")]
    Clash(String),
    #[error("boot file {0} is not in the image")]
    NoBootFile(String),
    #[error("the image is too big for ISO 9660 ({0} bytes)")]
    TooBig(u64),
    #[error("cannot write the ISO image")]
    Io(#[from] io::Error),
}

/// A boot entry of the El Torito catalog.
#[derive(Debug, Clone, Copy)]
pub enum Boot<'a> {
    /// A PC BIOS no-emulation boot file (ISOLINUX) loaded at 0x7C00: four
    /// 512-byte sectors of it, the rest read by itself using the boot info
    /// table patched in at offset 8.
    Bios(&'a str),
    /// A UEFI FAT image holding `EFI/BOOT/BOOT*.EFI`.
    Efi(&'a str),
}

/// What the system area holds, so the image also boots as a disk.
#[derive(Debug, Clone, Copy)]
pub enum Hybrid<'a> {
    /// Nothing: a CD only.
    None,
    /// ISOLINUX's isohybrid MBR code (`isohdpfx.bin`), told where the BIOS
    /// boot file is, with one active partition over the whole image.
    BiosMbr { code: &'a [u8], loader: &'a str },
    /// An MBR whose one partition (type 0xEF) is this FAT image: UEFI
    /// firmware takes it for an EFI system partition.
    EfiPartition(&'a str),
}

/// An image to write.
pub struct Spec<'a> {
    /// Files by path (`BOOT/KERNEL`), written in this order: put a large
    /// EFI image last, where firmware that ignores its size still finds it.
    pub files: Vec<(&'a str, &'a dyn Source)>,
    pub boot: Vec<Boot<'a>>,
    pub hybrid: Hybrid<'a>,
    /// Up to 32 of A-Z 0-9 _.
    pub volume_id: String,
}

fn d_chars(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

/// The identifier of a file (`NAME.EXT;1`) or directory (`NAME`).
fn identifier(name: &str, dir: bool) -> Result<String, IsoError> {
    let bad = || IsoError::Name(name.to_string());
    if dir {
        if name.is_empty() || name.len() > 8 || !d_chars(name) {
            return Err(bad());
        }
        return Ok(name.to_string());
    }
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || !d_chars(base) || !d_chars(ext) {
        return Err(bad());
    }
    Ok(format!("{base}.{ext};1"))
}

fn both16(v: u16) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&v.to_le_bytes());
    b[2..].copy_from_slice(&v.to_be_bytes());
    b
}

fn both32(v: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

/// A directory record.
fn record(id: &[u8], lba: u32, size: u32, dir: bool) -> Vec<u8> {
    let len = 33 + id.len() + (id.len() + 1) % 2;
    let mut r = vec![0u8; len];
    r[0] = u8::try_from(len).unwrap_or(u8::MAX);
    r[2..10].copy_from_slice(&both32(lba));
    r[10..18].copy_from_slice(&both32(size));
    r[18..25].copy_from_slice(&RECORD_DATE);
    r[25] = if dir { 0x02 } else { 0x00 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = u8::try_from(id.len()).unwrap_or(u8::MAX);
    r[33..33 + id.len()].copy_from_slice(id);
    r
}

/// One directory of the tree: children by identifier.
#[derive(Default)]
struct Dir {
    /// Subdirectory identifier → index in the directory list.
    dirs: BTreeMap<String, usize>,
    /// File identifier → index in `Spec::files`.
    files: BTreeMap<String, usize>,
    parent: usize,
    name: String,
    lba: u32,
    size: u32,
}

/// Packs records into blocks: none may cross a block boundary.
fn pack_records(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for r in records {
        let used = out.len() % BLOCK;
        if used + r.len() > BLOCK {
            out.resize(out.len() + BLOCK - used, 0);
        }
        out.extend_from_slice(r);
    }
    let rem = out.len() % BLOCK;
    if rem != 0 || out.is_empty() {
        out.resize(out.len() + BLOCK - rem, 0);
    }
    out
}

fn blocks(bytes: usize) -> usize {
    bytes.div_ceil(BLOCK)
}

/// The CHS address of 512-byte sector `lba` for 64 heads and 32 sectors a
/// track, as a partition entry holds it (saturated past cylinder 1023).
fn chs(lba: u64) -> [u8; 3] {
    let cyl = lba / (64 * 32);
    if cyl > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let head = (lba / 32) % 64;
    let sector = lba % 32 + 1;
    let cyl = u16::try_from(cyl).unwrap_or(1023);
    [
        u8::try_from(head).unwrap_or(0),
        u8::try_from(sector).unwrap_or(1) | ((cyl >> 2) & 0xc0) as u8,
        (cyl & 0xff) as u8,
    ]
}

fn partition_entry(active: bool, kind: u8, first: u64, sectors: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = if active { 0x80 } else { 0 };
    p[1..4].copy_from_slice(&chs(first));
    p[4] = kind;
    p[5..8].copy_from_slice(&chs(first + sectors.saturating_sub(1)));
    p[8..12].copy_from_slice(&u32::try_from(first).unwrap_or(u32::MAX).to_le_bytes());
    p[12..16].copy_from_slice(&u32::try_from(sectors).unwrap_or(u32::MAX).to_le_bytes());
    p
}

/// The boot info table ISOLINUX reads from its own offset 8: the primary
/// volume descriptor's block, its own block and length, and a checksum of
/// its 32-bit words from offset 64.
fn patch_boot_info(data: &mut [u8], lba: u32) {
    if data.len() < 64 {
        return;
    }
    let mut sum = 0u32;
    for w in data[64..].chunks(4) {
        let mut b = [0u8; 4];
        b[..w.len()].copy_from_slice(w);
        sum = sum.wrapping_add(u32::from_le_bytes(b));
    }
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    data[8..12].copy_from_slice(&16u32.to_le_bytes());
    data[12..16].copy_from_slice(&lba.to_le_bytes());
    data[16..20].copy_from_slice(&len.to_le_bytes());
    data[20..24].copy_from_slice(&sum.to_le_bytes());
    data[24..64].fill(0);
}

/// The directory tree of `spec`'s files; directories are numbered in path
/// table order by [`Layout`].
fn directory_tree(spec: &Spec) -> Result<Vec<Dir>, IsoError> {
    let mut dirs: Vec<Dir> = vec![Dir::default()];
    for (i, (path, _)) in spec.files.iter().enumerate() {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((name, parents)) = parts.split_last() else {
            return Err(IsoError::Name((*path).to_string()));
        };
        let mut at = 0;
        for p in parents {
            let id = identifier(p, true)?;
            at = match dirs[at].dirs.get(&id) {
                Some(&d) => d,
                None => {
                    dirs.push(Dir {
                        parent: at,
                        name: id.clone(),
                        ..Dir::default()
                    });
                    let d = dirs.len() - 1;
                    dirs[at].dirs.insert(id, d);
                    d
                }
            };
        }
        let id = identifier(name, false)?;
        if dirs[at].files.insert(id, i).is_some() {
            return Err(IsoError::Clash((*path).to_string()));
        }
    }
    Ok(dirs)
}

/// Where everything of an image goes, in blocks: descriptors, the boot
/// catalog, the path tables, directories, then files.
struct Layout {
    dirs: Vec<Dir>,
    /// Directories in path table order: breadth first, children by identifier.
    order: Vec<usize>,
    /// Directory index → its number in the path table (from 1).
    number: BTreeMap<usize, u16>,
    boots: bool,
    catalog_lba: usize,
    path_table_size: usize,
    l_table: usize,
    m_table: usize,
    file_lba: Vec<u32>,
    total_blocks: usize,
}

/// A file's length, which must fit the address space for the layout.
fn len_usize(data: &dyn Source) -> Result<usize, IsoError> {
    usize::try_from(data.len()).map_err(|_| IsoError::TooBig(data.len()))
}

fn lba32(n: usize) -> Result<u32, IsoError> {
    u32::try_from(n).map_err(|_| IsoError::TooBig((n * BLOCK) as u64))
}

impl Layout {
    fn new(spec: &Spec) -> Result<Layout, IsoError> {
        let mut dirs = directory_tree(spec)?;
        let mut order = vec![0usize];
        let mut i = 0;
        while i < order.len() {
            let children: Vec<usize> = dirs[order[i]].dirs.values().copied().collect();
            order.extend(children);
            i += 1;
        }
        let number = order
            .iter()
            .enumerate()
            .map(|(n, d)| (*d, u16::try_from(n + 1).unwrap_or(u16::MAX)))
            .collect();
        let boots = !spec.boot.is_empty();
        let term_lba = SYSTEM_AREA + if boots { 2 } else { 1 };
        let catalog_lba = term_lba + 1;
        let path_table_size: usize = order
            .iter()
            .map(|d| {
                let len = if *d == 0 { 1 } else { dirs[*d].name.len() };
                8 + len + len % 2
            })
            .sum();
        let l_table = catalog_lba + usize::from(boots);
        let m_table = l_table + blocks(path_table_size);
        let mut next = m_table + blocks(path_table_size);
        // Directory sizes depend only on names.
        for d in &order {
            let mut recs = vec![vec![0u8; 34], vec![0u8; 34]];
            for id in dirs[*d].dirs.keys().chain(dirs[*d].files.keys()) {
                recs.push(record(id.as_bytes(), 0, 0, false));
            }
            let size = pack_records(&recs).len();
            dirs[*d].lba = lba32(next)?;
            dirs[*d].size = lba32(size)?;
            next += blocks(size);
        }
        let mut file_lba = vec![0u32; spec.files.len()];
        for (i, (_, data)) in spec.files.iter().enumerate() {
            file_lba[i] = lba32(next)?;
            next += blocks(len_usize(*data)?).max(1);
        }
        Ok(Layout {
            dirs,
            order,
            number,
            boots,
            catalog_lba,
            path_table_size,
            l_table,
            m_table,
            file_lba,
            total_blocks: next,
        })
    }

    /// The block and length of the file at `path`.
    fn file(&self, spec: &Spec, path: &str) -> Result<(u32, usize), IsoError> {
        spec.files
            .iter()
            .position(|(p, _)| *p == path)
            .ok_or_else(|| IsoError::NoBootFile(path.to_string()))
            .and_then(|i| Ok((self.file_lba[i], len_usize(spec.files[i].1)?)))
    }
}

/// The system area: zeros, or a hybrid MBR.
fn system_area(spec: &Spec, l: &Layout) -> Result<Vec<u8>, IsoError> {
    let mut system = vec![0u8; SYSTEM_AREA * BLOCK];
    let sectors_512 = (l.total_blocks * 4) as u64;
    match spec.hybrid {
        Hybrid::None => return Ok(system),
        Hybrid::BiosMbr { code, loader } => {
            let (lba, _) = l.file(spec, loader)?;
            let n = code.len().min(432);
            system[..n].copy_from_slice(&code[..n]);
            system[432..436].copy_from_slice(&lba.saturating_mul(4).to_le_bytes());
            system[446..462].copy_from_slice(&partition_entry(true, 0x17, 0, sectors_512));
        }
        Hybrid::EfiPartition(path) => {
            let (lba, len) = l.file(spec, path)?;
            let sectors = (len as u64).div_ceil(512);
            let first = u64::from(lba) * 4;
            system[446..462].copy_from_slice(&partition_entry(false, 0xef, first, sectors));
        }
    }
    system[440..444].copy_from_slice(&disk_signature(&spec.volume_id));
    system[510] = 0x55;
    system[511] = 0xaa;
    Ok(system)
}

/// The primary volume descriptor.
fn primary_descriptor(spec: &Spec, l: &Layout) -> Result<Vec<u8>, IsoError> {
    let root = &l.dirs[0];
    let mut pvd = vec![0u8; BLOCK];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pvd[8..40].fill(b' ');
    pvd[40..72].fill(b' ');
    let vid = spec.volume_id.as_bytes();
    if vid.len() > 32 || !d_chars(&spec.volume_id) {
        return Err(IsoError::Name(spec.volume_id.clone()));
    }
    pvd[40..40 + vid.len()].copy_from_slice(vid);
    pvd[80..88].copy_from_slice(&both32(lba32(l.total_blocks)?));
    pvd[120..124].copy_from_slice(&both16(1));
    pvd[124..128].copy_from_slice(&both16(1));
    pvd[128..132].copy_from_slice(&both16(2048));
    pvd[132..140].copy_from_slice(&both32(lba32(l.path_table_size)?));
    pvd[140..144].copy_from_slice(&lba32(l.l_table)?.to_le_bytes());
    pvd[148..152].copy_from_slice(&lba32(l.m_table)?.to_be_bytes());
    pvd[156..190].copy_from_slice(&record(&[0], root.lba, root.size, true));
    pvd[190..813].fill(b' ');
    pvd[574..578].copy_from_slice(b"HULL");
    pvd[813..830].copy_from_slice(VOLUME_DATE);
    pvd[830..847].copy_from_slice(VOLUME_DATE);
    pvd[847..864].copy_from_slice(NO_DATE);
    pvd[864..881].copy_from_slice(NO_DATE);
    pvd[881] = 1;
    Ok(pvd)
}

/// The El Torito boot record volume descriptor.
fn boot_record(l: &Layout) -> Result<Vec<u8>, IsoError> {
    let mut br = vec![0u8; BLOCK];
    br[1..6].copy_from_slice(b"CD001");
    br[6] = 1;
    br[7..30].copy_from_slice(b"EL TORITO SPECIFICATION");
    br[71..75].copy_from_slice(&lba32(l.catalog_lba)?.to_le_bytes());
    Ok(br)
}

/// One boot catalog entry: a bootable no-emulation image.
fn catalog_entry(spec: &Spec, l: &Layout, b: &Boot) -> Result<[u8; 32], IsoError> {
    let mut e = [0u8; 32];
    e[0] = 0x88;
    let (path, count) = match b {
        Boot::Bios(p) => (*p, 4u16),
        Boot::Efi(p) => {
            let (_, len) = l.file(spec, p)?;
            (*p, u16::try_from(len.div_ceil(512)).unwrap_or(u16::MAX))
        }
    };
    let (lba, _) = l.file(spec, path)?;
    e[6..8].copy_from_slice(&count.to_le_bytes());
    e[8..12].copy_from_slice(&lba.to_le_bytes());
    Ok(e)
}

fn platform_id(b: &Boot) -> u8 {
    match b {
        Boot::Bios(_) => 0x00,
        Boot::Efi(_) => 0xef,
    }
}

/// The El Torito boot catalog: a validation entry, the first boot entry,
/// then every further entry in a section of its own (the last final).
fn boot_catalog(spec: &Spec, l: &Layout) -> Result<Vec<u8>, IsoError> {
    let mut catalog = vec![0u8; BLOCK];
    let Some(first) = spec.boot.first() else {
        return Ok(catalog);
    };
    // Validation entry: its 16-bit words sum to zero.
    catalog[0] = 1;
    catalog[1] = platform_id(first);
    catalog[4..8].copy_from_slice(b"HULL");
    catalog[30] = 0x55;
    catalog[31] = 0xaa;
    let sum = catalog[..32].chunks(2).fold(0u16, |s, w| {
        s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    catalog[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    catalog[32..64].copy_from_slice(&catalog_entry(spec, l, first)?);
    let rest = &spec.boot[1..];
    for (i, b) in rest.iter().enumerate() {
        let at = 64 + 64 * i;
        if at + 64 > BLOCK {
            break;
        }
        catalog[at] = if i + 1 == rest.len() { 0x91 } else { 0x90 };
        catalog[at + 1] = platform_id(b);
        catalog[at + 2..at + 4].copy_from_slice(&1u16.to_le_bytes());
        catalog[at + 32..at + 64].copy_from_slice(&catalog_entry(spec, l, b)?);
    }
    Ok(catalog)
}

/// The volume descriptor set terminator.
fn terminator() -> Vec<u8> {
    let mut term = vec![0u8; BLOCK];
    term[0] = 255;
    term[1..6].copy_from_slice(b"CD001");
    term[6] = 1;
    term
}

/// A path table, little- or big-endian, padded to whole blocks.
fn path_table(l: &Layout, big: bool) -> Vec<u8> {
    let mut t = Vec::with_capacity(blocks(l.path_table_size) * BLOCK);
    for d in &l.order {
        let dir = &l.dirs[*d];
        let id: &[u8] = if *d == 0 { &[0] } else { dir.name.as_bytes() };
        t.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        t.push(0);
        let parent = l.number.get(&dir.parent).copied().unwrap_or(1);
        if big {
            t.extend_from_slice(&dir.lba.to_be_bytes());
            t.extend_from_slice(&parent.to_be_bytes());
        } else {
            t.extend_from_slice(&dir.lba.to_le_bytes());
            t.extend_from_slice(&parent.to_le_bytes());
        }
        t.extend_from_slice(id);
        if id.len() % 2 == 1 {
            t.push(0);
        }
    }
    t.resize(blocks(l.path_table_size) * BLOCK, 0);
    t
}

/// The records of directory `d`: itself, its parent, then subdirectories
/// and files together by identifier.
fn directory(spec: &Spec, l: &Layout, d: usize) -> Result<Vec<u8>, IsoError> {
    let dir = &l.dirs[d];
    let parent = &l.dirs[dir.parent];
    let mut recs = vec![
        record(&[0], dir.lba, dir.size, true),
        record(&[1], parent.lba, parent.size, true),
    ];
    let mut children: Vec<(&String, Vec<u8>)> = Vec::new();
    for (id, c) in &dir.dirs {
        let sub = &l.dirs[*c];
        children.push((id, record(id.as_bytes(), sub.lba, sub.size, true)));
    }
    for (id, f) in &dir.files {
        let len = lba32(len_usize(spec.files[*f].1)?)?;
        children.push((id, record(id.as_bytes(), l.file_lba[*f], len, false)));
    }
    children.sort_by(|a, b| a.0.cmp(b.0));
    recs.extend(children.into_iter().map(|(_, r)| r));
    Ok(pack_records(&recs))
}

/// File data, each padded to a whole block; BIOS boot images get their boot
/// info table.
fn file_data(spec: &Spec, l: &Layout, out: &mut dyn Write) -> Result<(), IsoError> {
    let bios: Vec<&str> = spec
        .boot
        .iter()
        .filter_map(|b| match b {
            Boot::Bios(p) => Some(*p),
            Boot::Efi(_) => None,
        })
        .collect();
    let zeros = [0u8; BLOCK];
    for (i, (path, data)) in spec.files.iter().enumerate() {
        let len = len_usize(*data)?;
        if bios.contains(path) {
            // A boot file is small (ISOLINUX's is 40 KiB): patched in memory.
            let mut patched = super::source::head(*data, len)?;
            patch_boot_info(&mut patched, l.file_lba[i]);
            out.write_all(&patched)?;
        } else {
            super::source::copy(*data, out)?;
        }
        let pad = (BLOCK - len % BLOCK) % BLOCK;
        let pad = if data.is_empty() { BLOCK } else { pad };
        out.write_all(&zeros[..pad])?;
    }
    Ok(())
}

/// Writes the image of `spec` to `out`; returns its size in bytes.
pub fn write<W: Write>(spec: &Spec, mut out: W) -> Result<u64, IsoError> {
    let l = Layout::new(spec)?;
    out.write_all(&system_area(spec, &l)?)?;
    out.write_all(&primary_descriptor(spec, &l)?)?;
    if l.boots {
        out.write_all(&boot_record(&l)?)?;
    }
    out.write_all(&terminator())?;
    if l.boots {
        out.write_all(&boot_catalog(spec, &l)?)?;
    }
    for big in [false, true] {
        out.write_all(&path_table(&l, big))?;
    }
    for d in &l.order {
        out.write_all(&directory(spec, &l, *d)?)?;
    }
    file_data(spec, &l, &mut out)?;
    out.flush()?;
    Ok((l.total_blocks * BLOCK) as u64)
}

/// An MBR disk signature from the volume id (itself derived from content).
fn disk_signature(volume_id: &str) -> [u8; 4] {
    let h = super::content_hash(&[volume_id.as_bytes()]);
    [h[0], h[1], h[2], h[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_level_1() {
        assert_eq!(identifier("KERNEL", false).expect("ok"), "KERNEL.;1");
        assert_eq!(identifier("INITRD.IMG", false).expect("ok"), "INITRD.IMG;1");
        assert_eq!(identifier("BOOT", true).expect("ok"), "BOOT");
        assert!(identifier("kernel", false).is_err());
        assert!(identifier("LONGERTHAN8", false).is_err());
    }

    #[test]
    fn boot_info_table_checksums_from_offset_64() {
        let mut data = vec![0u8; 72];
        data[64] = 1;
        data[68] = 2;
        patch_boot_info(&mut data, 33);
        assert_eq!(&data[8..12], &16u32.to_le_bytes());
        assert_eq!(&data[12..16], &33u32.to_le_bytes());
        assert_eq!(&data[16..20], &72u32.to_le_bytes());
        assert_eq!(&data[20..24], &3u32.to_le_bytes());
    }

    #[test]
    fn layout_has_descriptors_and_a_valid_catalog() {
        let spec = Spec {
            files: vec![("BOOT/KERNEL", b"k"), ("EFI.IMG", &[1u8; 5000])],
            boot: vec![Boot::Efi("EFI.IMG")],
            hybrid: Hybrid::EfiPartition("EFI.IMG"),
            volume_id: "HULL_TEST".to_string(),
        };
        let mut img = Vec::new();
        let size = write(&spec, &mut img).expect("writes");
        assert_eq!(size, img.len() as u64);
        assert_eq!(&img[16 * BLOCK + 1..16 * BLOCK + 6], b"CD001");
        assert_eq!(
            &img[17 * BLOCK + 7..17 * BLOCK + 30],
            b"EL TORITO SPECIFICATION"
        );
        assert_eq!(img[18 * BLOCK], 255);
        let cat = &img[19 * BLOCK..20 * BLOCK];
        let sum = cat[..32].chunks(2).fold(0u16, |s, w| {
            s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
        });
        assert_eq!(sum, 0);
        assert_eq!(cat[1], 0xef);
        assert_eq!(cat[32], 0x88);
        assert_eq!(&img[510..512], &[0x55, 0xaa]);
        assert_eq!(img[446 + 4], 0xef);
    }
}
