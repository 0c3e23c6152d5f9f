//! Writers of on-disk formats, each from plain inputs (a tree, bytes,
//! files): cpio and tar archives, compression, FAT volumes, ISO 9660 with
//! El Torito, GPT disks (`gpt`), and PE sections of unified kernel images
//! (`uki`). Must not know about manifests or which output uses them: that is
//! `output`.

pub mod compress;
pub mod cpio;
pub mod fat;
pub mod gpt;
pub mod iso9660;
pub mod tar;
pub mod uki;
