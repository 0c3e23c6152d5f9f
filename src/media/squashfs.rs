//! Read-only root filesystems: the assembled tree as a squashfs image, the
//! data a dm-verity root checks block by block.
//!
//! Owns: turning tree entries (directories, files, symlinks, hard links,
//! devices, fifos, with modes and owners) into a squashfs 4.0 image with zstd
//! blocks, every time the build's fixed mtime, so the same tree gives the
//! same bytes (checked by `unsquashfs` in the tests). Squashfs rather than
//! erofs: Debian 6.1 kernels read only lz4 erofs, while their squashfs
//! module reads zstd; and `backhand` (pure Rust, kept up) writes it from
//! the tree in memory with any owner, where `mkfs.erofs` and `mksquashfs`
//! need the tree unpacked on a disk with its real owners (root to build).
//! Hard links become files of their own whose data is stored once (squashfs
//! deduplicates), and extended attributes are dropped, as the initramfs
//! drops them. Must not know about partitions or verity.

use std::io::{Seek, Write};

use backhand::compression::{CompressionOptions, Compressor, Zstd};
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader};

use crate::rootfs::tree::{Kind, Pack, Tree};

/// The zstd level of the image's blocks: fast, and the kernel reads every
/// level at the same speed.
const ZSTD_LEVEL: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    #[error("cannot put {path} in the root filesystem image: {message}")]
    Entry { path: String, message: String },
    #[error("cannot write the root filesystem image: {0}")]
    Write(String),
}

/// A device number as squashfs stores it (the kernel's `new_encode_dev`).
fn device_number(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Writes `tree` (contents in `pack`) as a squashfs image to `out`, every
/// entry with time `mtime`; returns the image's size (a whole number of
/// 4 KiB blocks).
pub fn write<W: Write + Seek>(
    tree: &Tree,
    pack: &Pack,
    mtime: u32,
    out: W,
) -> Result<u64, SquashfsError> {
    let mut fs = FilesystemWriter::default();
    fs.set_time(mtime);
    fs.set_root_mode(0o755);
    let mut zstd = FilesystemCompressor::new(Compressor::Zstd, None)
        .map_err(|e| SquashfsError::Write(e.to_string()))?;
    zstd.options(CompressionOptions::Zstd(Zstd {
        compression_level: ZSTD_LEVEL,
    }))
    .map_err(|e| SquashfsError::Write(e.to_string()))?;
    fs.set_compressor(zstd);
    for (path, e) in tree.iter() {
        if path.is_empty() {
            continue;
        }
        let fail = |err: backhand::BackhandError| SquashfsError::Entry {
            path: path.clone(),
            message: err.to_string(),
        };
        let mode = u16::try_from(e.mode & 0o7777).unwrap_or(0o755);
        let header = NodeHeader::new(mode, e.uid, e.gid, mtime);
        let at = format!("/{path}");
        match &e.kind {
            Kind::Dir => fs.push_dir(&at, header),
            Kind::File(c) => fs.push_file(pack.reader(c), &at, header),
            Kind::Hardlink(target) => match tree.get(target).map(|t| &t.kind) {
                Some(Kind::File(c)) => fs.push_file(pack.reader(c), &at, header),
                _ => {
                    return Err(SquashfsError::Entry {
                        path: path.clone(),
                        message: format!("a hard link to {target}, which is no file"),
                    })
                }
            },
            Kind::Symlink(target) => fs.push_symlink(target, &at, header),
            Kind::Char(ma, mi) => fs.push_char_device(device_number(*ma, *mi), &at, header),
            Kind::Block(ma, mi) => fs.push_block_device(device_number(*ma, *mi), &at, header),
            Kind::Fifo => fs.push_fifo(&at, header),
        }
        .map_err(fail)?;
    }
    let (_, size) = fs
        .write(out)
        .map_err(|e| SquashfsError::Write(e.to_string()))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_encode_as_the_kernel_decodes() {
        assert_eq!(device_number(1, 3), 0x103);
        assert_eq!(
            device_number(254, 0x1234),
            0x34 | (254 << 8) | (0x1200 << 12)
        );
    }
}
