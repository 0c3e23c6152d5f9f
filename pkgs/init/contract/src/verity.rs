//! dm-verity hash trees: what lets the kernel check every block of a
//! read-only root against one root hash carried in the signed UKI.
//!
//! Owns: the hash tree of a data image (format 1, SHA-256, 4 KiB data and
//! hash blocks, a salt), laid out as `veritysetup format` lays it out (a
//! superblock, then the levels, the top one first), and the root hash. Byte
//! for byte what cryptsetup writes for the same salt and UUID (its
//! `veritysetup verify` checks them in the tests). The builder writes root
//! images with it; the update service checks a slot it wrote against the
//! root hash with it. Written by hand: the crates that exist only verify
//! (`verity-hash`) or need libcryptsetup; the format is a few lines over
//! `sha2`. Must not know partitions or what the data is.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

/// Data and hash block size.
pub const BLOCK: u64 = 4096;
/// The same, for buffers and the superblock.
const BLOCK_BYTES: usize = 4096;
const BLOCK_U32: u32 = 4096;
/// Digests per hash block.
const PER_BLOCK: usize = BLOCK_BYTES / 32;

/// What the kernel needs besides the two devices: the dm-verity table's
/// numbers and strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verity {
    pub root_hash: [u8; 32],
    pub salt: [u8; 32],
    pub uuid: [u8; 16],
    pub data_blocks: u64,
    /// Size of the hash image (superblock and tree).
    pub hash_bytes: u64,
}

fn salted(salt: &[u8], block: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// The digests of a level packed into hash blocks, each zero-padded.
fn pack(digests: &[[u8; 32]]) -> Vec<u8> {
    let blocks = digests.len().div_ceil(PER_BLOCK).max(1);
    let mut out = vec![0u8; blocks * BLOCK_BYTES];
    for (i, d) in digests.iter().enumerate() {
        out[i * 32..i * 32 + 32].copy_from_slice(d);
    }
    out
}

/// The superblock `veritysetup format` writes (512 bytes used of a block).
fn superblock(salt: &[u8; 32], uuid: &[u8; 16], data_blocks: u64) -> Vec<u8> {
    let mut sb = vec![0u8; BLOCK_BYTES];
    sb[0..8].copy_from_slice(b"verity\0\0");
    sb[8..12].copy_from_slice(&1u32.to_le_bytes());
    sb[12..16].copy_from_slice(&1u32.to_le_bytes());
    sb[16..32].copy_from_slice(uuid);
    sb[32..38].copy_from_slice(b"sha256");
    sb[64..68].copy_from_slice(&BLOCK_U32.to_le_bytes());
    sb[68..72].copy_from_slice(&BLOCK_U32.to_le_bytes());
    sb[72..80].copy_from_slice(&data_blocks.to_le_bytes());
    sb[80..82].copy_from_slice(&32u16.to_le_bytes());
    sb[88..120].copy_from_slice(salt);
    sb
}

/// The size of the hash image (superblock and tree) of `len` bytes of data.
pub fn hash_size(len: u64) -> u64 {
    let per = PER_BLOCK as u64;
    let mut blocks = len.div_ceil(BLOCK).div_ceil(per).max(1);
    let mut total = 1 + blocks;
    while blocks > 1 {
        blocks = blocks.div_ceil(per);
        total += blocks;
    }
    total * BLOCK
}

/// Reads `data` (a whole number of blocks, `len` bytes) and writes its
/// hash image to `out`: the superblock, then the tree's levels, top first.
/// The superblock's UUID is the root hash's first half: whoever holds the
/// root hash finds the hash image by it (hull-init does, among slots).
pub fn write(
    data: &mut dyn Read,
    len: u64,
    salt: [u8; 32],
    out: &mut dyn Write,
) -> io::Result<Verity> {
    if len == 0 || !len.is_multiple_of(BLOCK) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("verity data of {len} bytes is not a whole number of {BLOCK}-byte blocks"),
        ));
    }
    let data_blocks = len / BLOCK;
    let mut block = vec![0u8; BLOCK_BYTES];
    let mut digests = Vec::with_capacity(usize::try_from(data_blocks).unwrap_or(0));
    for _ in 0..data_blocks {
        data.read_exact(&mut block)?;
        digests.push(salted(&salt, &block));
    }
    // Levels from the leaves up, until one block holds a level.
    let mut levels = vec![pack(&digests)];
    while levels.last().map_or(0, Vec::len) > BLOCK_BYTES {
        let below = levels.last().map(Vec::as_slice).unwrap_or_default();
        let up: Vec<[u8; 32]> = below
            .chunks(BLOCK_BYTES)
            .map(|b| salted(&salt, b))
            .collect();
        levels.push(pack(&up));
    }
    let top = levels.last().map(Vec::as_slice).unwrap_or_default();
    let root_hash = salted(&salt, top);
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&root_hash[..16]);
    out.write_all(&superblock(&salt, &uuid, data_blocks))?;
    let mut hash_bytes = BLOCK;
    for level in levels.iter().rev() {
        out.write_all(level)?;
        hash_bytes += level.len() as u64;
    }
    Ok(Verity {
        root_hash,
        salt,
        uuid,
        data_blocks,
        hash_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_has_a_one_block_tree() {
        let data = vec![1u8; BLOCK_BYTES];
        let mut out = Vec::new();
        let v = write(&mut &data[..], BLOCK, [2; 32], &mut out).expect("writes");
        assert_eq!(v.hash_bytes, 2 * BLOCK);
        assert_eq!(hash_size(BLOCK), v.hash_bytes);
        assert_eq!(&out[16..32], &v.root_hash[..16]);
        assert_eq!(out.len() as u64, v.hash_bytes);
        let leaf = salted(&[2; 32], &data);
        assert_eq!(&out[BLOCK_BYTES..BLOCK_BYTES + 32], &leaf);
        assert_eq!(v.root_hash, salted(&[2; 32], &out[BLOCK_BYTES..]));
        assert_eq!(&out[0..8], b"verity\0\0");
    }

    #[test]
    fn levels_are_written_top_first() {
        // 129 blocks: two leaf blocks, one block above them.
        let len = 129 * BLOCK;
        let data = vec![5u8; 129 * BLOCK_BYTES];
        let mut out = Vec::new();
        let v = write(&mut &data[..], len, [0; 32], &mut out).expect("writes");
        assert_eq!(v.hash_bytes, 4 * BLOCK);
        assert_eq!(hash_size(len), v.hash_bytes);
        assert_eq!(hash_size(128 * 128 * BLOCK + 1), (1 + 129 + 2 + 1) * BLOCK);
        let b = BLOCK_BYTES;
        let top = &out[b..2 * b];
        assert_eq!(&top[..32], &salted(&[0; 32], &out[2 * b..3 * b]));
        assert_eq!(&top[32..64], &salted(&[0; 32], &out[3 * b..4 * b]));
        assert!(top[64..].iter().all(|&x| x == 0));
        assert_eq!(v.root_hash, salted(&[0; 32], top));
    }

    #[test]
    fn partial_blocks_are_refused() {
        let e = write(&mut &[0u8; 100][..], 100, [0; 32], &mut Vec::new());
        assert!(e.is_err());
    }
}
