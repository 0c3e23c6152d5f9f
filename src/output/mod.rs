//! Output formats: what `hull build` writes, and writing it atomically.
//!
//! Owns: the format names (as LinuxKit names them), the files each one makes,
//! and [`Staged`] outputs: temp files in the output directory renamed into
//! place only when every output of the build is complete. Must not know about
//! manifests: it takes an assembled tree, kernel and command line.

pub mod compress;
pub mod cpio;
pub mod disk;
pub mod fat;
pub mod iso9660;
pub mod media;
pub mod tar;
pub mod uki;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::tree::{Content, Pack, Tree};
pub use compress::Compression;

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

/// Refuses formats `arch` cannot boot, before anything is pulled or built.
pub fn check_formats(formats: &[Format], arch: crate::platform::Arch) -> Result<(), OutputError> {
    match formats.iter().find(|f| f.is_bios()) {
        Some(f) if arch == crate::platform::Arch::Arm64 => Err(OutputError::BiosOnArm64(f.name())),
        _ => Ok(()),
    }
}

/// Files of the bootloader image (`efi/...`, `bios/...`) the formats use.
pub struct Bootloader {
    /// The image, as the build names it (for errors).
    pub reference: String,
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

/// What the formats are made from.
pub struct Image<'a> {
    pub tree: &'a Tree,
    pub pack: &'a Pack,
    pub kernel: Option<&'a Content>,
    /// Uncompressed cpio(s) to put before the main initrd (CPU microcode).
    pub ucode: Option<&'a Content>,
    pub cmdline: &'a str,
    pub mtime: u64,
    pub compression: Compression,
    /// Files from the bootloader image, for formats that need them.
    pub bootloader: Option<&'a Bootloader>,
    pub arch: crate::platform::Arch,
    /// The whole disk's size for disk formats (the rest becomes a data
    /// partition); `None`: just big enough.
    pub disk_size: Option<u64>,
}

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
    #[error(transparent)]
    Iso(#[from] iso9660::IsoError),
    #[error("cannot make the EFI boot image: {0}")]
    Fat(#[from] fat::FatError),
    #[error("cannot make the unified kernel image: {0}")]
    Uki(#[from] uki::UkiError),
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    #[error("qemu-img could not convert {path} to qcow2: {message}")]
    Qcow2 { path: PathBuf, message: String },
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Outputs written to temp files, published together by [`Staged::commit`].
pub struct Staged {
    files: Vec<(tempfile::NamedTempFile, PathBuf)>,
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
            tmp.as_file().sync_all().map_err(io_err)?;
            let mut f = std::fs::File::open(tmp.path()).map_err(io_err)?;
            let mut h = sha2::Sha256::new();
            io::copy(&mut f, &mut h).map_err(io_err)?;
            tmp.persist(&dest).map_err(|e| OutputError::Io {
                path: dest.clone(),
                source: e.error,
            })?;
            out.push((dest, hex::encode(h.finalize())));
        }
        Ok(out)
    }
}

fn stage(dir: &Path, name: String) -> Result<(tempfile::NamedTempFile, PathBuf), OutputError> {
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

/// Writes the initrd (microcode first, then the compressed cpio) to `out`.
pub fn write_initrd<W: Write>(img: &Image, mut out: W) -> io::Result<W> {
    if let Some(u) = img.ucode {
        img.pack.copy_to(u, &mut out)?;
    }
    let mut c = compress::Compressor::new(out, img.compression)?;
    cpio::write(
        img.tree,
        img.pack,
        u32::try_from(img.mtime).unwrap_or(u32::MAX),
        &mut c,
    )?;
    c.finish()
}

/// The file at `path` in the bootloader image, which `format` needs.
fn boot_file<'a>(img: &Image<'a>, format: Format, path: &str) -> Result<&'a [u8], OutputError> {
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

/// The EFI stub file of the bootloader image for `arch`.
fn efi_stub_path(arch: crate::platform::Arch) -> &'static str {
    match arch {
        crate::platform::Arch::Amd64 => "efi/linuxx64.efi.stub",
        crate::platform::Arch::Arm64 => "efi/linuxaa64.efi.stub",
    }
}

/// Where removable media keep their UEFI boot loader.
fn efi_loader_path(arch: crate::platform::Arch) -> &'static str {
    match arch {
        crate::platform::Arch::Amd64 => "EFI/BOOT/BOOTX64.EFI",
        crate::platform::Arch::Arm64 => "EFI/BOOT/BOOTAA64.EFI",
    }
}

/// The unified kernel image of `img` with `initrd`, for `format` (for the
/// output at `dest`).
fn uki_bytes(
    img: &Image,
    format: Format,
    initrd: &[u8],
    dest: &Path,
) -> Result<Vec<u8>, OutputError> {
    let kernel = img.kernel.ok_or(OutputError::NoKernel("uki"))?;
    let stub = boot_file(img, format, efi_stub_path(img.arch))?;
    let e = |source| OutputError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let kernel = efi_kernel(img.pack.read(kernel).map_err(e)?).map_err(e)?;
    let osrel = os_release(img);
    let sections = [
        uki::Section {
            name: ".osrel",
            data: &osrel,
        },
        uki::Section {
            name: ".cmdline",
            data: img.cmdline.as_bytes(),
        },
        uki::Section {
            name: ".initrd",
            data: initrd,
        },
        uki::Section {
            name: ".linux",
            data: &kernel,
        },
    ];
    Ok(uki::build(stub, &sections)?)
}

/// What several formats of one build hold: made on first use, kept for
/// the rest (the initrd is compressed once, the UKI assembled once).
#[derive(Default)]
struct Shared {
    initrd: Option<Vec<u8>>,
    uki: Option<Vec<u8>>,
}

impl Shared {
    fn initrd(&mut self, img: &Image, dest: &Path) -> Result<&[u8], OutputError> {
        if self.initrd.is_none() {
            let initrd = write_initrd(img, Vec::new()).map_err(|source| OutputError::Io {
                path: dest.to_path_buf(),
                source,
            })?;
            self.initrd = Some(initrd);
        }
        Ok(self.initrd.as_deref().unwrap_or_default())
    }

    fn uki(&mut self, img: &Image, format: Format, dest: &Path) -> Result<&[u8], OutputError> {
        if self.uki.is_none() {
            self.initrd(img, dest)?;
            let initrd = self.initrd.as_deref().unwrap_or_default();
            self.uki = Some(uki_bytes(img, format, initrd, dest)?);
        }
        Ok(self.uki.as_deref().unwrap_or_default())
    }
}

/// qcow2 by QEMU's own `qemu-img`: the format's reference writer (and the
/// tool that boots it), already needed for `hull run qemu`; its output
/// depends only on the input, so builds stay reproducible.
fn to_qcow2(raw: &Path, qcow2: &Path, dest: &Path) -> Result<(), OutputError> {
    let out = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(qcow2)
        .output()
        .map_err(|e| OutputError::Qcow2 {
            path: dest.to_path_buf(),
            message: format!("cannot run qemu-img (install qemu-utils: ci/setup): {e}"),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(OutputError::Qcow2 {
            path: dest.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The kernel as an EFI stub can start it: a gzip-compressed arm64 `Image`
/// (Debian's vmlinuz) is decompressed; anything else is used as it is.
fn efi_kernel(kernel: Vec<u8>) -> io::Result<Vec<u8>> {
    if kernel.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&kernel[..]), &mut out)?;
        Ok(out)
    } else {
        Ok(kernel)
    }
}

/// The image's /etc/os-release (the init package writes one), or a minimal one.
fn os_release(img: &Image) -> Vec<u8> {
    let found = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| match img.tree.get(p).map(|e| &e.kind) {
            Some(crate::tree::Kind::File(c)) => img.pack.read(c).ok(),
            _ => None,
        });
    found.unwrap_or_else(|| b"NAME=Hull\nID=hull\n".to_vec())
}

/// Writes `formats` of `img` as `dir/name...` temp files.
pub fn stage_all(
    img: &Image,
    formats: &[Format],
    dir: &Path,
    name: &str,
) -> Result<Staged, OutputError> {
    let mut files = Vec::new();
    let mut shared = Shared::default();
    for format in formats {
        match format {
            Format::KernelInitrd => {
                let kernel = img.kernel.ok_or(OutputError::NoKernel("kernel+initrd"))?;
                let (mut k, kd) = stage(dir, format!("{name}-kernel"))?;
                let err = |p: &Path| {
                    let p = p.to_path_buf();
                    move |source| OutputError::Io { path: p, source }
                };
                img.pack
                    .copy_to(kernel, k.as_file_mut())
                    .map_err(err(&kd))?;
                let (i, id) = stage(dir, format!("{name}-initrd.img"))?;
                let i = write_initrd(img, io::BufWriter::new(i))
                    .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                    .map_err(err(&id))?;
                let (mut c, cd) = stage(dir, format!("{name}-cmdline"))?;
                c.write_all(img.cmdline.as_bytes()).map_err(err(&cd))?;
                files.extend([(k, kd), (i, id), (c, cd)]);
            }
            Format::Uki => {
                let (mut f, fd) = stage(dir, format!("{name}.efi"))?;
                let bytes = shared.uki(img, *format, &fd)?;
                f.write_all(bytes).map_err(|source| OutputError::Io {
                    path: fd.clone(),
                    source,
                })?;
                files.push((f, fd));
            }
            Format::RawEfi | Format::Qcow2Efi => {
                let raw_name = format!("{name}-efi.img");
                let (mut f, fd) = stage(dir, raw_name)?;
                let bytes = shared.uki(img, *format, &fd)?;
                let loader = efi_loader_path(img.arch);
                disk::write_disk(f.as_file_mut(), &[(loader, bytes)], None, img.disk_size)?;
                if *format == Format::RawEfi {
                    files.push((f, fd));
                } else {
                    let (q, qd) = stage(dir, format!("{name}-efi.qcow2"))?;
                    to_qcow2(f.path(), q.path(), &qd)?;
                    files.push((q, qd));
                }
            }
            Format::IsoEfi => {
                let (f, fd) = stage(dir, format!("{name}-efi.iso"))?;
                let bytes = shared.uki(img, *format, &fd)?;
                let digest = sha2::Sha256::digest(bytes);
                let volume_id = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
                let loader = efi_loader_path(img.arch);
                let esp = fat::small_image(&[(loader, bytes)], volume_id, "HULL-ESP")?;
                let mut w = io::BufWriter::new(f);
                media::iso_efi(&esp, &digest, &mut w)?;
                let f = w.into_inner().map_err(|err| OutputError::Io {
                    path: fd.clone(),
                    source: err.into_error(),
                })?;
                files.push((f, fd));
            }
            Format::IsoBios => {
                let kernel = img.kernel.ok_or(OutputError::NoKernel("iso-bios"))?;
                let isolinux = boot_file(img, *format, media::ISOLINUX)?;
                let ldlinux = boot_file(img, *format, media::LDLINUX)?;
                let mbr = boot_file(img, *format, media::ISOHYBRID_MBR)?;
                let (f, fd) = stage(dir, format!("{name}.iso"))?;
                let e = |source| OutputError::Io {
                    path: fd.clone(),
                    source,
                };
                let kernel = img.pack.read(kernel).map_err(e)?;
                let initrd = write_initrd(img, Vec::new()).map_err(e)?;
                let mut w = io::BufWriter::new(f);
                media::iso_bios(
                    &kernel,
                    &initrd,
                    img.cmdline,
                    isolinux,
                    ldlinux,
                    mbr,
                    &mut w,
                )?;
                let f = w.into_inner().map_err(|err| e(err.into_error()))?;
                files.push((f, fd));
            }
            Format::RawBios | Format::Qcow2Bios => {
                let kernel = img.kernel.ok_or(OutputError::NoKernel("raw-bios"))?;
                let bios = disk::BiosBoot {
                    boot_img: boot_file(img, *format, media::GRUB_BOOT)?,
                    core_img: boot_file(img, *format, media::GRUB_CORE)?,
                };
                let (mut f, fd) = stage(dir, format!("{name}-bios.img"))?;
                let e = |source| OutputError::Io {
                    path: fd.clone(),
                    source,
                };
                let kernel = img.pack.read(kernel).map_err(e)?;
                let initrd = shared.initrd(img, &fd)?;
                let cfg = media::grub_cfg(img.cmdline);
                let esp = media::bios_disk_files(&kernel, initrd, cfg.as_bytes());
                disk::write_disk(f.as_file_mut(), &esp, Some(&bios), img.disk_size)?;
                if *format == Format::RawBios {
                    files.push((f, fd));
                } else {
                    let (q, qd) = stage(dir, format!("{name}.qcow2"))?;
                    to_qcow2(f.path(), q.path(), &qd)?;
                    files.push((q, qd));
                }
            }
            Format::Tar => {
                let (t, td) = stage(dir, format!("{name}.tar"))?;
                let t = tar::write(img.tree, img.pack, img.mtime, io::BufWriter::new(t))
                    .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                    .map_err(|source| OutputError::Io {
                        path: td.clone(),
                        source,
                    })?;
                files.push((t, td));
            }
            Format::TarKernelInitrd => {
                let kernel = img
                    .kernel
                    .ok_or(OutputError::NoKernel("tar-kernel-initrd"))?;
                let (t, td) = stage(dir, format!("{name}-initrd.tar"))?;
                let e = |source| OutputError::Io {
                    path: td.clone(),
                    source,
                };
                let mut initrd = tempfile::tempfile_in(dir).map_err(e)?;
                write_initrd(img, &mut initrd).map_err(e)?;
                let mut b = ::tar::Builder::new(io::BufWriter::new(t));
                b.mode(::tar::HeaderMode::Deterministic);
                let mut add = |name: &str, size: u64, data: &mut dyn io::Read| {
                    let mut h = ::tar::Header::new_gnu();
                    h.set_size(size);
                    h.set_mode(0o644);
                    h.set_mtime(img.mtime);
                    b.append_data(&mut h, name, data)
                };
                add("kernel", kernel.len(), &mut img.pack.reader(kernel)).map_err(e)?;
                let size = initrd.metadata().map_err(e)?.len();
                io::Seek::rewind(&mut initrd).map_err(e)?;
                add("initrd.img", size, &mut initrd).map_err(e)?;
                add(
                    "cmdline",
                    img.cmdline.len() as u64,
                    &mut img.cmdline.as_bytes(),
                )
                .map_err(e)?;
                let t = b
                    .into_inner()
                    .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                    .map_err(e)?;
                files.push((t, td));
            }
        }
    }
    Ok(Staged { files })
}
