//! Output formats: what `hull build` writes, and writing it atomically.
//!
//! Owns: the format names (as LinuxKit names them), the files each one makes
//! (`formats`: one writer per format over the build's shared artifacts in
//! `artifacts`, the initrd compressed once and the UKI assembled once), and
//! [`Staged`] outputs: temp files in the output directory renamed into place
//! only when every output of the build is complete. Must not know about
//! manifests: it takes an assembled tree, kernel and command line.

mod artifacts;
mod formats;
pub mod initrd_parts;
pub mod media;
mod slots;

use std::io;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

pub use crate::media::compress::Compression;
use crate::media::{fat, gpt, iso9660, uki};
use crate::rootfs::tree::{Content, Pack, Tree};
pub use formats::stage_all;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Format {
    /// NAME-kernel, NAME-initrd.img, NAME-cmdline
    #[value(name = "kernel+initrd")]
    KernelInitrd,
    /// NAME.tar: the root filesystem
    Tar,
    /// NAME-initrd.tar: kernel, initrd.img and cmdline in one tar
    #[value(name = "tar-kernel-initrd")]
    TarKernelInitrd,
    /// NAME.efi: a unified kernel image (systemd's EFI stub with kernel,
    /// initrd, cmdline and os-release) that UEFI firmware starts directly
    Uki,
    /// NAME-efi.img: a GPT disk whose FAT32 EFI system partition holds the
    /// unified kernel image as EFI/BOOT/BOOT{X64,AA64}.EFI
    #[value(name = "raw-efi")]
    RawEfi,
    /// NAME-efi.qcow2: raw-efi as a qcow2 image (converted by qemu-img)
    #[value(name = "qcow2-efi")]
    Qcow2Efi,
    /// NAME.iso: a hybrid ISO (CD or USB stick) booted by a PC BIOS through
    /// ISOLINUX (x86_64 only)
    #[value(name = "iso-bios")]
    IsoBios,
    /// NAME-efi.iso: a hybrid ISO (CD or USB stick) whose EFI boot image
    /// holds the unified kernel image
    #[value(name = "iso-efi")]
    IsoEfi,
    /// NAME-bios.img: a GPT disk booted by a PC BIOS through GRUB, whose
    /// ESP holds kernel, initrd and grub.cfg (x86_64 only)
    #[value(name = "raw-bios")]
    RawBios,
    /// NAME.qcow2: raw-bios as a qcow2 image (converted by qemu-img)
    #[value(name = "qcow2-bios")]
    Qcow2Bios,
    /// NAME-update.oci.tar: an update bundle for a two-slot disk (--root
    /// ab) as an OCI image layout archive (UKI, root and verity blobs),
    /// for `hull push` to send to a registry
    Update,
}

impl Format {
    /// True for formats made with files from the bootloader image.
    pub fn needs_bootloader(self) -> bool {
        !matches!(
            self,
            Format::KernelInitrd | Format::Tar | Format::TarKernelInitrd
        )
    }

    /// True for formats a PC BIOS boots: x86_64 only.
    pub fn is_bios(self) -> bool {
        matches!(self, Format::IsoBios | Format::RawBios | Format::Qcow2Bios)
    }

    /// The format's name, as `--format` takes it.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// Where the booted system's root lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RootMode {
    /// In memory: the whole system is the initramfs
    #[default]
    Memory,
    /// On the disk, read-only, checked block by block by dm-verity against
    /// the root hash in the UKI's command line (raw-efi, qcow2-efi)
    Verity,
    /// As verity, in two slots (A and B) that updates take turns at:
    /// systemd-boot starts the newest UKI, counts its tries and falls back
    /// to the other (raw-efi, qcow2-efi, update)
    Ab,
}

impl RootMode {
    /// True when the root is a verity image on disk rather than the initrd.
    pub fn on_disk(self) -> bool {
        self != RootMode::Memory
    }
}

/// The longest `--image-version`.
pub const VERSION_MAX: usize = 64;

/// Checks an image version: it names a boot entry file (`hull-V+3.efi`) and
/// is compared the way systemd-boot compares versions, so it is short and
/// made of letters, digits, `.`, `_` and `-`, and starts with a digit or
/// letter.
pub fn check_version(v: &str) -> Result<(), OutputError> {
    let ok = !v.is_empty()
        && v.len() <= VERSION_MAX
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(OutputError::BadVersion(v.to_string()))
    }
}

/// Refuses formats `arch` cannot boot, and formats that cannot hold a root
/// on disk when one is asked for, before anything is pulled or built.
pub fn check_formats(
    formats: &[Format],
    arch: crate::platform::Arch,
    root: RootMode,
    signed: bool,
) -> Result<(), OutputError> {
    let carries_uki = |f: &Format| {
        matches!(
            f,
            Format::Uki | Format::RawEfi | Format::Qcow2Efi | Format::IsoEfi | Format::Update
        )
    };
    if signed && !formats.iter().any(carries_uki) {
        return Err(OutputError::NothingToSign);
    }
    if let Some(f) = formats.iter().find(|f| f.is_bios()) {
        if arch == crate::platform::Arch::Arm64 {
            return Err(OutputError::BiosOnArm64(f.name()));
        }
    }
    let holds_root = |f: &&Format| match root {
        RootMode::Memory => **f != Format::Update,
        RootMode::Verity => matches!(f, Format::RawEfi | Format::Qcow2Efi),
        RootMode::Ab => matches!(f, Format::RawEfi | Format::Qcow2Efi | Format::Update),
    };
    if let Some(f) = formats.iter().find(|f| !holds_root(f)) {
        return Err(match (root, f) {
            (_, Format::Update) => OutputError::UpdateNeedsSlots,
            (RootMode::Ab, _) => OutputError::NoSlots(f.name()),
            _ => OutputError::NoDiskRoot(f.name()),
        });
    }
    Ok(())
}

/// Files of the bootloader image (`efi/...`, `bios/...`) the formats use.
pub struct Bootloader {
    /// The image, as the build names it (for errors).
    pub reference: String,
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

/// What the formats are made from.
pub struct Inputs<'a> {
    pub tree: &'a Tree,
    pub pack: &'a Pack,
    pub kernel: Option<&'a Content>,
    /// Uncompressed cpio(s) to put before the main initrd (CPU microcode).
    pub ucode: Option<&'a Content>,
    pub cmdline: &'a str,
    pub mtime: u64,
    pub compression: Compression,
    /// The codec's level (checked by [`Compression::check_level`]).
    pub compression_level: u32,
    /// Files from the bootloader image, for formats that need them.
    pub bootloader: Option<&'a Bootloader>,
    pub arch: crate::platform::Arch,
    /// The whole disk's size for disk formats (the rest becomes a data
    /// partition); `None`: just big enough.
    pub disk_size: Option<u64>,
    /// For a root on disk (`--root verity`), the small initrd's tree the
    /// UKI carries instead of the whole system; `tree` is then the root.
    pub disk_root_initrd: Option<&'a Tree>,
    /// Signs the UKI for Secure Boot (`--sign-key`, `--sign-cert`).
    pub signer: Option<&'a crate::media::authenticode::Signer>,
    /// Two slots for updates (`--root ab`, and the update bundle).
    pub slots: Option<&'a Slots>,
    /// Compressed initrd parts kept from earlier builds, to reuse.
    pub parts: Option<&'a initrd_parts::PartStore>,
}

/// What a two-slot disk and its update bundles are made with.
#[derive(Debug, Clone)]
pub struct Slots {
    /// `--image-version`, checked by [`check_version`]: in the UKI's
    /// os-release (IMAGE_VERSION, which systemd-boot orders entries by) and
    /// the bundle's annotations.
    pub version: String,
    /// Each root partition's size (`--slot-size`); `None`: twice the root
    /// image, at least [`SLOT_MIN`].
    pub slot_size: Option<u64>,
}

/// The smallest root slot a two-slot disk gets unless told otherwise.
pub const SLOT_MIN: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("format {0} needs a kernel, and the manifest has none")]
    NoKernel(&'static str),
    #[error("bootloader image {image} has no /{path}, which format {format} needs")]
    NoBootFile {
        format: String,
        path: String,
        image: String,
    },
    #[error("format {0} boots through a PC BIOS, which aarch64 machines do not have: use iso-efi, raw-efi, qcow2-efi or uki")]
    BiosOnArm64(String),
    #[error("format {0} cannot hold a root on disk: --root verity makes raw-efi and qcow2-efi")]
    NoDiskRoot(String),
    #[error(
        "format {0} cannot hold two root slots: --root ab makes raw-efi, qcow2-efi and update"
    )]
    NoSlots(String),
    #[error("format update is a bundle for a two-slot disk: build it with --root ab")]
    UpdateNeedsSlots,
    #[error("--image-version \"{0}\": use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    BadVersion(String),
    #[error("--root ab needs --image-version: systemd-boot starts the newest version and updates name it")]
    NoVersion,
    #[error(
        "the root image ({root} bytes) does not fit a slot of {slot} bytes: raise --slot-size"
    )]
    SlotTooSmall { root: u64, slot: u64 },
    #[error(
        "--sign-key signs the unified kernel image: ask for uki, raw-efi, qcow2-efi or iso-efi"
    )]
    NothingToSign,
    #[error("cannot sign the unified kernel image: {0}")]
    Sign(#[from] crate::media::authenticode::SignError),
    #[error("cannot make the root filesystem image: {0}")]
    Squashfs(#[from] crate::media::squashfs::SquashfsError),
    #[error(transparent)]
    Iso(#[from] iso9660::IsoError),
    #[error("cannot make the EFI boot image: {0}")]
    Fat(#[from] fat::FatError),
    #[error("cannot make the unified kernel image: {0}")]
    Uki(#[from] uki::UkiError),
    #[error(transparent)]
    Disk(#[from] gpt::DiskError),
    #[error("qemu-img could not convert {path} to qcow2: {message}")]
    Qcow2 { path: PathBuf, message: String },
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One output being written: its temp file and where it goes.
pub(crate) type StagedFile = (tempfile::NamedTempFile, PathBuf);

/// Outputs written to temp files, published together by [`Staged::commit`].
pub struct Staged {
    files: Vec<StagedFile>,
    /// What making the initrd reused from earlier builds, if one was made.
    pub initrd: Option<initrd_parts::PartStats>,
}

impl Staged {
    /// Renames every output into place; returns (path, sha256) for each.
    pub fn commit(self) -> Result<Vec<(PathBuf, String)>, OutputError> {
        let mut out = Vec::new();
        for (tmp, dest) in self.files {
            let io_err = |source| OutputError::Io {
                path: dest.clone(),
                source,
            };
            // Temp files are created 0600; outputs are for anyone to read.
            {
                use std::os::unix::fs::PermissionsExt;
                tmp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644))
                    .map_err(io_err)?;
            }
            // Hashed while the disk syncs it.
            let (synced, digest) = std::thread::scope(|s| {
                let digest = s.spawn(|| sha256_file(tmp.path()));
                let synced = tmp.as_file().sync_all();
                let digest = digest
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("the hashing thread failed")));
                (synced, digest)
            });
            synced.map_err(io_err)?;
            let digest = digest.map_err(io_err)?;
            tmp.persist(&dest).map_err(|e| OutputError::Io {
                path: dest.clone(),
                source: e.error,
            })?;
            out.push((dest, digest));
        }
        Ok(out)
    }
}

/// The sha256 of the file at `path`, in hex.
fn sha256_file(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

pub(crate) fn stage(dir: &Path, name: String) -> Result<StagedFile, OutputError> {
    let dest = dir.join(name);
    let tmp = tempfile::Builder::new()
        .prefix(".hull-")
        .tempfile_in(dir)
        .map_err(|source| OutputError::Io {
            path: dest.clone(),
            source,
        })?;
    Ok((tmp, dest))
}

/// The file at `path` in the bootloader image, which `format` needs.
pub(crate) fn boot_file<'a>(
    img: &Inputs<'a>,
    format: Format,
    path: &str,
) -> Result<&'a [u8], OutputError> {
    let missing = |image: &str| OutputError::NoBootFile {
        format: format.name(),
        path: path.to_string(),
        image: image.to_string(),
    };
    let b = img.bootloader.ok_or_else(|| missing("no image"))?;
    b.files
        .get(path)
        .map(Vec::as_slice)
        .ok_or_else(|| missing(&b.reference))
}

pub use artifacts::write_initrd;
