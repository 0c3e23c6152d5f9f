//! Raw disk images: a GPT disk (protective MBR, primary and backup headers)
//! with an EFI system partition holding a unified kernel image as the
//! removable-media boot loader (UEFI) or a kernel, initrd and GRUB config
//! (BIOS: GRUB's MBR code and core image, which the BIOS boot partition
//! holds, patched as grub-install would), then any partitions given with
//! their contents (a root filesystem and its verity hash tree), and
//! optionally a blank data partition.
//!
//! Owns: the partition layout. The GPT is written by hand (a few fixed
//! structures and two CRC32s; no crate writes GPT without a device); the
//! FAT32 filesystem comes from `fat`. Identifiers
//! (disk and partition GUIDs, FAT volume id) come from a hash of the content
//! and file times are fixed, so the same input gives the same bytes. Must
//! not know how the UKI is made.

use std::io::{self, Seek, SeekFrom, Write};

use super::fat;
use super::source::Source;

const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
/// The ESP starts at 1 MiB, the usual alignment.
const ESP_START: u64 = MIB;
/// FAT32 with 512-byte clusters needs at least 65525 of them (~33 MiB).
const ESP_MIN: u64 = 40 * MIB;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
/// Sectors for the partition entry array (128 entries of 128 bytes).
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;
/// The same sizes for buffers.
const SECTOR_BYTES: usize = 512;
const ENTRY_BYTES: usize = 128;
const TABLE_BYTES: usize = 128 * ENTRY_BYTES;

const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const BIOS_BOOT_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";
const LINUX_DATA_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(
        "--disk-size {asked} bytes is too small: the boot partition alone needs {needed} bytes"
    )]
    TooSmall { asked: u64, needed: u64 },
    #[error("GRUB's core image is too big for its block list")]
    CoreTooBig,
    #[error("cannot make the EFI system partition: {0}")]
    Fat(#[from] fat::FatError),
    #[error("cannot write the disk image")]
    Io(#[source] io::Error),
}

/// A GUID in its on-disk (mixed-endian) byte order.
fn guid_bytes(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .collect::<Vec<u8>>()
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap_or("00"), 16).unwrap_or(0))
        .collect();
    let mut b = [0u8; 16];
    for (i, v) in hex.iter().take(16).enumerate() {
        b[i] = *v;
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// A GUID given as the 16 bytes of its text form (as systemd derives
/// partition UUIDs from a root hash), in on-disk byte order.
fn uuid_bytes(uuid: &[u8; 16]) -> [u8; 16] {
    let mut b = *uuid;
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// A partition after the ESP and its contents.
pub struct Extra<'a> {
    /// The type GUID as text (`4F68BCE3-...`).
    pub type_guid: &'static str,
    /// The partition's own GUID: the 16 bytes of its text form.
    pub uuid: [u8; 16],
    pub name: &'static str,
    pub data: &'a dyn Source,
    /// The partition's size: at least the data's (rounded up to whole MiB);
    /// 0 for just the data.
    pub size: u64,
}

/// A version-4-shaped GUID derived from `seed` and `what`.
fn derived_guid(seed: &[u8], what: &str) -> [u8; 16] {
    let h = super::content_hash(&[seed, what.as_bytes()]);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[7] = (b[7] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// The ESP size for `payload` bytes of files: room for them plus slack,
/// at least the FAT32 minimum, in whole MiB.
fn esp_size(payload: u64) -> u64 {
    (payload + payload / 20 + 4 * MIB)
        .max(ESP_MIN)
        .div_ceil(MIB)
        * MIB
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

struct Partition {
    type_guid: [u8; 16],
    guid: [u8; 16],
    first: u64,
    last: u64,
    name: &'static str,
}

/// Whole MiB holding `bytes`, at least one.
fn whole_mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB).max(1) * MIB
}

fn entries(parts: &[Partition]) -> Vec<u8> {
    let mut out = vec![0u8; TABLE_BYTES];
    for (i, p) in parts.iter().enumerate() {
        let e = &mut out[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES];
        e[0..16].copy_from_slice(&p.type_guid);
        e[16..32].copy_from_slice(&p.guid);
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&p.last.to_le_bytes());
        for (j, unit) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    out
}

fn header(
    disk_guid: &[u8; 16],
    me: u64,
    other: u64,
    entries_lba: u64,
    total: u64,
    entries_crc: u32,
) -> Vec<u8> {
    let mut h = vec![0u8; SECTOR_BYTES];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&me.to_le_bytes());
    h[32..40].copy_from_slice(&other.to_le_bytes());
    h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
    h[48..56].copy_from_slice(&(total - 2 - ENTRY_SECTORS).to_le_bytes());
    h[56..72].copy_from_slice(disk_guid);
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&128u32.to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32(&h[0..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// GRUB for PC BIOS boot: its MBR code and its core image (from the
/// bootloader image; the core image finds the ESP by its label).
pub struct BiosBoot<'a> {
    /// `boot.img`: 512 bytes, of which the first 440 are kept.
    pub boot_img: &'a [u8],
    /// `core.img`: written to a BIOS boot partition.
    pub core_img: &'a [u8],
}

/// Offsets GRUB's `boot.img` and the first sector of `core.img` (diskboot)
/// are patched at, as grub-install does: the core image's first sector, the
/// jump that distrusts the BIOS drive number (made two NOPs, for disks),
/// and diskboot's block list (the rest of the core image).
const GRUB_KERNEL_SECTOR: usize = 0x5c;
const GRUB_DRIVE_CHECK: usize = 0x66;
const GRUB_BLOCKLIST_START: usize = 0x1f4;
const GRUB_BLOCKLIST_LEN: usize = 0x1fc;

/// Where a disk's parts go, in bytes and sectors.
struct Geometry {
    /// The ESP's size and first byte.
    esp: u64,
    esp_start: u64,
    esp_first: u64,
    esp_last: u64,
    /// The BIOS boot partition's first sector (right after the GPT).
    core_first: u64,
    /// First and last sector of each extra partition, after the ESP.
    extras: Vec<(u64, u64)>,
    total_bytes: u64,
    /// The disk's size in sectors.
    total: u64,
    last_usable: u64,
}

impl Geometry {
    /// The layout for `payload` bytes of ESP files, GRUB's core image (whole
    /// MiB before the ESP) when booting through a BIOS, and the size asked.
    fn new(
        payload: u64,
        bios: Option<&BiosBoot>,
        extras: &[Extra],
        disk_size: Option<u64>,
    ) -> Result<Self, DiskError> {
        let esp = esp_size(payload);
        let core_bytes = bios.map_or(0, |b| (b.core_img.len() as u64).div_ceil(MIB) * MIB);
        let esp_start = ESP_START + core_bytes;
        let mut next = esp_start + esp;
        let mut placed = Vec::new();
        for x in extras {
            let size = whole_mib(x.data.len().max(x.size));
            placed.push((next / SECTOR, (next + size) / SECTOR - 1));
            next += size;
        }
        // GPT backup (entries + header) after the last partition, then align.
        let minimum = (next + (ENTRY_SECTORS + 1) * SECTOR).div_ceil(MIB) * MIB;
        let total_bytes = match disk_size {
            None => minimum,
            Some(asked) if asked < minimum => {
                return Err(DiskError::TooSmall {
                    asked,
                    needed: minimum,
                })
            }
            Some(asked) => asked / SECTOR * SECTOR,
        };
        let total = total_bytes / SECTOR;
        let esp_first = esp_start / SECTOR;
        Ok(Geometry {
            esp,
            esp_start,
            esp_first,
            esp_last: esp_first + esp / SECTOR - 1,
            core_first: ESP_START / SECTOR,
            extras: placed,
            total_bytes,
            total,
            last_usable: total - 2 - ENTRY_SECTORS,
        })
    }
}

/// A hash of the ESP's files that every GUID and the volume id derive from.
fn content_seed(files: &[fat::File]) -> std::io::Result<[u8; 32]> {
    let parts: Vec<&dyn Source> = files
        .iter()
        .flat_map(|(p, d)| [p as &dyn Source, *d])
        .collect();
    super::source::content_hash(&parts)
}

/// The partitions: the ESP, the BIOS boot partition when there is one, and
/// a data partition ("hull-data") on whole MiB when at least 1 MiB is left.
fn partitions(g: &Geometry, seed: &[u8], bios: bool, extras: &[Extra]) -> Vec<Partition> {
    let mut parts = vec![Partition {
        type_guid: guid_bytes(ESP_TYPE),
        guid: derived_guid(seed, "esp"),
        first: g.esp_first,
        last: g.esp_last,
        name: "EFI system partition",
    }];
    if bios {
        parts.push(Partition {
            type_guid: guid_bytes(BIOS_BOOT_TYPE),
            guid: derived_guid(seed, "bios"),
            first: g.core_first,
            last: g.esp_first - 1,
            name: "BIOS boot partition",
        });
    }
    for (x, (first, last)) in extras.iter().zip(&g.extras) {
        parts.push(Partition {
            type_guid: guid_bytes(x.type_guid),
            guid: uuid_bytes(&x.uuid),
            first: *first,
            last: *last,
            name: x.name,
        });
    }
    let mib = MIB / SECTOR;
    let used_last = g.extras.last().map_or(g.esp_last, |(_, last)| *last);
    let data_first = (used_last + 1).div_ceil(mib) * mib;
    let data_end = (g.last_usable + 1) / mib * mib;
    if data_end >= data_first + mib {
        parts.push(Partition {
            type_guid: guid_bytes(LINUX_DATA_TYPE),
            guid: derived_guid(seed, "data"),
            first: data_first,
            last: data_end - 1,
            name: "hull-data",
        });
    }
    parts
}

/// The protective MBR: one partition of type 0xEE over the whole disk; with
/// GRUB's boot.img before it for BIOS boot (patched with the core image's
/// sector, the drive check off, and the entry marked active, as some PC
/// BIOSes want before they run an MBR).
fn protective_mbr(g: &Geometry, bios: Option<&BiosBoot>) -> Vec<u8> {
    let mut mbr = vec![0u8; SECTOR_BYTES];
    if let Some(b) = bios {
        let n = b.boot_img.len().min(440);
        mbr[..n].copy_from_slice(&b.boot_img[..n]);
        mbr[GRUB_KERNEL_SECTOR..GRUB_KERNEL_SECTOR + 8]
            .copy_from_slice(&g.core_first.to_le_bytes());
        mbr[GRUB_DRIVE_CHECK..GRUB_DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
        mbr[446] = 0x80;
    }
    let p = &mut mbr[446..462];
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    p[4] = 0xee;
    p[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(g.total - 1).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    mbr
}

/// GRUB's core image with diskboot's block list pointing at the rest of it.
fn core_image(g: &Geometry, b: &BiosBoot) -> Result<Vec<u8>, DiskError> {
    let mut core = b.core_img.to_vec();
    let sectors = (core.len() as u64).div_ceil(SECTOR);
    if core.len() >= SECTOR_BYTES {
        core[GRUB_BLOCKLIST_START..GRUB_BLOCKLIST_START + 8]
            .copy_from_slice(&(g.core_first + 1).to_le_bytes());
        let rest = u16::try_from(sectors - 1).map_err(|_| DiskError::CoreTooBig)?;
        core[GRUB_BLOCKLIST_LEN..GRUB_BLOCKLIST_LEN + 2].copy_from_slice(&rest.to_le_bytes());
    }
    Ok(core)
}

/// Writes a GPT disk to `out` (a fresh, empty file): an ESP with `files`,
/// with `bios` a BIOS boot partition holding GRUB's core image before it
/// and GRUB's code in the MBR, then, if `disk_size` leaves room, a blank
/// Linux data partition ("hull-data") filling the rest. The ESP has room
/// for `esp_spare` more bytes of files. Returns the disk size.
pub fn write_disk(
    out: &mut std::fs::File,
    files: &[fat::File],
    bios: Option<&BiosBoot>,
    extras: &[Extra],
    (disk_size, esp_spare): (Option<u64>, u64),
) -> Result<u64, DiskError> {
    let payload: u64 = files.iter().map(|(_, d)| d.len()).sum::<u64>() + esp_spare;
    let seed = content_seed(files).map_err(DiskError::Io)?;
    let g = Geometry::new(payload, bios, extras, disk_size)?;
    let table = entries(&partitions(&g, &seed, bios.is_some(), extras));
    let table_crc = crc32(&table);
    let disk_guid = derived_guid(&seed, "disk");
    let volume_id = u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]);
    let hidden = u32::try_from(g.esp_first).unwrap_or(u32::MAX);
    let fat = fat::image(g.esp, files, volume_id, "HULL-ESP", hidden)?;
    let io = DiskError::Io;
    out.set_len(g.total_bytes).map_err(io)?;
    let put = |out: &mut std::fs::File, at: u64, bytes: &[u8]| -> Result<(), DiskError> {
        out.seek(SeekFrom::Start(at)).map_err(io)?;
        out.write_all(bytes).map_err(io)
    };
    let total = g.total;
    put(out, 0, &protective_mbr(&g, bios))?;
    let primary = header(&disk_guid, 1, total - 1, 2, total, table_crc);
    put(out, SECTOR, &primary)?;
    put(out, 2 * SECTOR, &table)?;
    if let Some(b) = bios {
        put(out, g.core_first * SECTOR, &core_image(&g, b)?)?;
    }
    // The ESP's metadata blocks that are not zero and its files: the rest
    // of the file stays sparse.
    fat.write_to(out, g.esp_start).map_err(DiskError::Io)?;
    for (x, (first, _)) in extras.iter().zip(&g.extras) {
        out.seek(SeekFrom::Start(first * SECTOR)).map_err(io)?;
        let mut w = io::BufWriter::with_capacity(1 << 16, &mut *out);
        super::source::copy(x.data, &mut w).map_err(io)?;
        w.flush().map_err(io)?;
    }
    let backup_entries = total - 1 - ENTRY_SECTORS;
    put(out, backup_entries * SECTOR, &table)?;
    let backup = header(&disk_guid, total - 1, 1, backup_entries, total, table_crc);
    put(out, (total - 1) * SECTOR, &backup)?;
    Ok(g.total_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_mixed_endian_and_derived_ones_are_version_4() {
        let esp = guid_bytes(ESP_TYPE);
        assert_eq!(&esp[..4], &[0x28, 0x73, 0x2a, 0xc1]);
        assert_eq!(&esp[8..10], &[0xba, 0x4b]);
        let g = derived_guid(b"x", "disk");
        assert_eq!(g[7] >> 4, 4);
        assert_eq!(g[8] >> 6, 2);
        assert_ne!(g, derived_guid(b"x", "esp"));
    }

    #[test]
    fn esp_is_at_least_the_fat32_minimum() {
        assert_eq!(esp_size(0), ESP_MIN);
        assert_eq!(esp_size(100 * MIB) % MIB, 0);
        assert!(esp_size(100 * MIB) > 100 * MIB);
    }
}
