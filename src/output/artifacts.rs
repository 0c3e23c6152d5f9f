//! What several formats of one build share, made once on first use: the
//! initrd (microcode, then the compressed cpio) as a file, and the unified
//! kernel image. A `kernel+initrd` build's own initrd output is that file, so
//! nothing is compressed twice.

use std::io;
use std::path::{Path, PathBuf};

use super::{boot_file, Format, Inputs, OutputError};
use crate::media::{compress, cpio, uki};

/// The build's shared artifacts.
pub struct Artifacts<'i, 'a> {
    pub img: &'i Inputs<'a>,
    /// Where temp files go (the output directory: same filesystem).
    dir: PathBuf,
    initrd: Option<Initrd>,
    uki: Option<Vec<u8>>,
}

/// The compressed initrd: an output being staged, or a temp file of its own.
enum Initrd {
    Output(PathBuf),
    Temp(tempfile::NamedTempFile),
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the initrd (microcode first, then the compressed cpio) to `out`.
pub fn write_initrd<W: io::Write>(img: &Inputs, mut out: W) -> io::Result<W> {
    if let Some(u) = img.ucode {
        img.pack.copy_to(u, &mut out)?;
    }
    let mut c = compress::Compressor::new(out, img.compression, img.compression_level)?;
    cpio::write(
        img.tree,
        img.pack,
        u32::try_from(img.mtime).unwrap_or(u32::MAX),
        &mut c,
    )?;
    c.finish()
}

impl<'i, 'a> Artifacts<'i, 'a> {
    pub fn new(img: &'i Inputs<'a>, dir: &Path) -> Self {
        Artifacts {
            img,
            dir: dir.to_path_buf(),
            initrd: None,
            uki: None,
        }
    }

    /// Records that the staged output at `path` holds the initrd.
    pub fn initrd_written_to(&mut self, path: &Path) {
        if self.initrd.is_none() {
            self.initrd = Some(Initrd::Output(path.to_path_buf()));
        }
    }

    /// The initrd's file, compressed now if no format has made it yet
    /// (errors name `dest`, the output asking for it).
    pub fn initrd_path(&mut self, dest: &Path) -> Result<&Path, OutputError> {
        if self.initrd.is_none() {
            let tmp = tempfile::Builder::new()
                .prefix(".hull-initrd-")
                .tempfile_in(&self.dir)
                .map_err(io_err(dest))?;
            let w = write_initrd(self.img, io::BufWriter::new(tmp))
                .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                .map_err(io_err(dest))?;
            self.initrd = Some(Initrd::Temp(w));
        }
        Ok(match &self.initrd {
            Some(Initrd::Output(p)) => p,
            Some(Initrd::Temp(t)) => t.path(),
            None => Path::new(""),
        })
    }

    /// The initrd's bytes, for writers that take them whole.
    pub fn initrd_bytes(&mut self, dest: &Path) -> Result<Vec<u8>, OutputError> {
        let path = self.initrd_path(dest)?.to_path_buf();
        std::fs::read(&path).map_err(io_err(dest))
    }

    /// The unified kernel image, assembled now if no format has made it yet.
    pub fn uki(&mut self, format: Format, dest: &Path) -> Result<&[u8], OutputError> {
        if self.uki.is_none() {
            let initrd = self.initrd_bytes(dest)?;
            self.uki = Some(uki_bytes(self.img, format, &initrd, dest)?);
        }
        Ok(self.uki.as_deref().unwrap_or_default())
    }
}

/// The EFI stub file of the bootloader image for `arch`.
fn efi_stub_path(arch: crate::platform::Arch) -> &'static str {
    match arch {
        crate::platform::Arch::Amd64 => "efi/linuxx64.efi.stub",
        crate::platform::Arch::Arm64 => "efi/linuxaa64.efi.stub",
    }
}

/// The unified kernel image of `img` with `initrd`, for `format` (for the
/// output at `dest`).
fn uki_bytes(
    img: &Inputs,
    format: Format,
    initrd: &[u8],
    dest: &Path,
) -> Result<Vec<u8>, OutputError> {
    let kernel = img.kernel.ok_or(OutputError::NoKernel("uki"))?;
    let stub = boot_file(img, format, efi_stub_path(img.arch))?;
    let kernel = efi_kernel(img.pack.read(kernel).map_err(io_err(dest))?).map_err(io_err(dest))?;
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
fn os_release(img: &Inputs) -> Vec<u8> {
    let found = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| match img.tree.get(p).map(|e| &e.kind) {
            Some(crate::rootfs::tree::Kind::File(c)) => img.pack.read(c).ok(),
            _ => None,
        });
    found.unwrap_or_else(|| b"NAME=Hull\nID=hull\n".to_vec())
}
