//! Writers of on-disk formats, each from plain inputs (a tree, bytes,
//! files): cpio and tar archives, compression, FAT volumes, ISO 9660 with
//! El Torito, GPT disks (`gpt`), and PE sections of unified kernel images
//! (`uki`). Must not know about manifests or which output uses them: that is
//! `output`.

pub mod authenticode;
pub mod compress;
pub mod cpio;
pub mod fat;
pub mod gpt;
pub mod iso9660;
pub mod pe;
pub mod pgzip;
pub mod source;
pub mod squashfs;
pub mod tar;
pub mod uki;

/// The one content hash every derived id comes from (GPT GUIDs, volume ids,
/// disk signatures): SHA-256 of `parts` one after another, so an output's
/// ids change exactly when what they name does.
pub fn content_hash(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}
