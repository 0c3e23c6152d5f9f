//! What several formats of one build share, made once on first use, each in
//! a file: the initrd (microcode, then the compressed cpio) and the unified
//! kernel image. A `kernel+initrd` build's own initrd output is that file, and
//! a `uki` build's own `.efi` output the UKI's, so nothing is made twice; the
//! formats read them back as [`Source`]s, so none is held in memory.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::initrd_parts::{self, PartStats};
use super::{boot_file, Format, Inputs, OutputError};
use crate::media::source::{FileSource, Source};
use crate::media::{squashfs, uki};
use crate::rootfs::tree::{Content, Pack, Tree};
use hull_contract::verity::{self, Verity};

/// The build's shared artifacts.
pub struct Artifacts<'i, 'a> {
    pub img: &'i Inputs<'a>,
    /// Where temp files go (the output directory: same filesystem).
    dir: PathBuf,
    /// The initrd once made, and what making it reused.
    initrd: Option<(Shared, PartStats)>,
    uki: Option<Shared>,
    disk_root: Option<DiskRoot>,
}

/// A root on disk: the root filesystem image, its verity hash image, and
/// what the kernel needs to check one against the other.
pub struct DiskRoot {
    _data_file: tempfile::NamedTempFile,
    pub data: FileSource,
    _hash_file: tempfile::NamedTempFile,
    pub hash: FileSource,
    pub verity: Verity,
}

/// An artifact's file: an output being staged, or a temp file of its own.
enum Shared {
    Output(FileSource),
    /// The temp file is kept (and removed when dropped) with its source.
    Temp {
        _file: tempfile::NamedTempFile,
        src: FileSource,
    },
}

impl Shared {
    /// The staged output at `path`.
    fn output(path: &Path) -> Result<Self, OutputError> {
        Ok(Shared::Output(FileSource::new(path).map_err(io_err(path))?))
    }

    /// A temp file of its own (errors name `dest`, the output asking for it).
    fn temp(file: tempfile::NamedTempFile, dest: &Path) -> Result<Self, OutputError> {
        let src = FileSource::new(file.path()).map_err(io_err(dest))?;
        Ok(Shared::Temp { _file: file, src })
    }

    fn source(&self) -> &FileSource {
        match self {
            Shared::Output(src) | Shared::Temp { src, .. } => src,
        }
    }
}

/// A file's contents in the build's pack, as a media writer reads them.
pub struct Packed<'a> {
    pub pack: &'a Pack,
    pub content: &'a Content,
}

impl Source for Packed<'_> {
    fn len(&self) -> u64 {
        self.content.len()
    }
    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(self.pack.reader(self.content))
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the initrd (microcode first, then the compressed cpio of the
/// system, or of the small initrd tree for a root on disk) to `file`
/// through a buffer; returns the file and what was reused.
pub fn write_initrd<W: io::Write>(img: &Inputs, file: W) -> io::Result<(W, PartStats)> {
    let mut out = io::BufWriter::with_capacity(1 << 16, file);
    if let Some(u) = img.ucode {
        img.pack.copy_to(u, &mut out)?;
    }
    let tree: &Tree = img.disk_root_initrd.unwrap_or(img.tree);
    let stats = initrd_parts::write(
        tree,
        img.pack,
        u32::try_from(img.mtime).unwrap_or(u32::MAX),
        img.compression,
        img.compression_level,
        img.parts,
        &mut out,
    )?;
    Ok((out.into_inner().map_err(|e| e.into_error())?, stats))
}

/// A new temp file in `dir` for the output at `dest`.
fn temp_in(dir: &Path, prefix: &str, dest: &Path) -> Result<tempfile::NamedTempFile, OutputError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(dir)
        .map_err(io_err(dest))
}

impl<'i, 'a> Artifacts<'i, 'a> {
    pub fn new(img: &'i Inputs<'a>, dir: &Path) -> Self {
        Artifacts {
            img,
            dir: dir.to_path_buf(),
            initrd: None,
            uki: None,
            disk_root: None,
        }
    }

    /// The root filesystem image and its verity hash image, written now if
    /// no format has made them yet.
    pub fn disk_root(&mut self, dest: &Path) -> Result<&DiskRoot, OutputError> {
        if self.disk_root.is_none() {
            self.disk_root = Some(make_disk_root(self.img, &self.dir, dest)?);
        }
        self.disk_root
            .as_ref()
            .ok_or_else(|| io_err(dest)(io::Error::other("no disk root")))
    }

    /// The kernel command line the UKI carries: the manifest's, and for a
    /// root on disk the root hash (which this signed line is the only
    /// source of).
    fn uki_cmdline(&mut self, dest: &Path) -> Result<String, OutputError> {
        let cmdline = self.img.cmdline.to_string();
        if self.img.disk_root_initrd.is_none() {
            return Ok(cmdline);
        }
        let root = hex::encode(self.disk_root(dest)?.verity.root_hash);
        Ok(disk_root_cmdline(&cmdline, &root, self.img.slots.is_some()))
    }

    /// Records that the staged output at `path` holds the initrd, written
    /// with `stats`.
    pub fn initrd_written_to(&mut self, path: &Path, stats: PartStats) -> Result<(), OutputError> {
        if self.initrd.is_none() {
            self.initrd = Some((Shared::output(path)?, stats));
        }
        Ok(())
    }

    /// What making the initrd reused, if a format made it.
    pub fn initrd_stats(&self) -> Option<PartStats> {
        self.initrd.as_ref().map(|(_, stats)| *stats)
    }

    /// The initrd, compressed now if no format has made it yet (errors name
    /// `dest`, the output asking for it).
    pub fn initrd(&mut self, dest: &Path) -> Result<&FileSource, OutputError> {
        if self.initrd.is_none() {
            let tmp = temp_in(&self.dir, ".hull-initrd-", dest)?;
            let (w, stats) = write_initrd(self.img, tmp).map_err(io_err(dest))?;
            self.initrd = Some((Shared::temp(w, dest)?, stats));
        }
        self.initrd
            .as_ref()
            .map(|(shared, _)| shared.source())
            .ok_or_else(|| io_err(dest)(io::Error::other("no initrd")))
    }

    /// Writes the unified kernel image to `out` (a staged output, at `dest`)
    /// and records it there for other formats.
    pub fn write_uki(
        &mut self,
        format: Format,
        out: &mut std::fs::File,
        dest: &Path,
    ) -> Result<(), OutputError> {
        let initrd = self.initrd(dest)?.clone();
        let cmdline = self.uki_cmdline(dest)?;
        let mut w = io::BufWriter::with_capacity(1 << 16, out);
        let parts = UkiParts {
            format,
            initrd: &initrd,
            cmdline: &cmdline,
        };
        write_uki(self.img, &parts, &self.dir, dest, &mut w)?;
        let out = w.into_inner().map_err(|e| io_err(dest)(e.into_error()))?;
        if let Some(signer) = self.img.signer {
            crate::media::authenticode::sign(out, signer)?;
        }
        Ok(())
    }

    /// Records that the staged output at `path` holds the UKI.
    pub fn uki_written_to(&mut self, path: &Path) -> Result<(), OutputError> {
        if self.uki.is_none() {
            self.uki = Some(Shared::output(path)?);
        }
        Ok(())
    }

    /// The unified kernel image, assembled now if no format has made it yet.
    pub fn uki(&mut self, format: Format, dest: &Path) -> Result<&FileSource, OutputError> {
        if self.uki.is_none() {
            let mut tmp = temp_in(&self.dir, ".hull-uki-", dest)?;
            self.write_uki(format, tmp.as_file_mut(), dest)?;
            self.uki = Some(Shared::temp(tmp, dest)?);
        }
        self.uki
            .as_ref()
            .map(Shared::source)
            .ok_or_else(|| io_err(dest)(io::Error::other("no UKI")))
    }
}

/// How long a kernel of a two-slot disk waits after a panic before it
/// reboots (`panic=`), unless the manifest's command line says.
pub const PANIC_REBOOT_SECS: u32 = 10;

/// The command line of a root on disk: the manifest's, then the root hash;
/// on a two-slot disk also `panic=` unless given, so that a panicking
/// version uses up its tries and systemd-boot falls back (Debian's kernels
/// otherwise wait for ever).
fn disk_root_cmdline(cmdline: &str, root_hash: &str, slots: bool) -> String {
    let mut words = vec![cmdline.trim().to_string()];
    if slots && !cmdline.split_whitespace().any(|w| w.starts_with("panic=")) {
        words.push(format!("panic={PANIC_REBOOT_SECS}"));
    }
    words.push(format!("roothash={root_hash}"));
    words.retain(|w| !w.is_empty());
    words.join(" ")
}

/// The EFI stub file of the bootloader image for `arch`.
fn efi_stub_path(arch: crate::platform::Arch) -> &'static str {
    match arch {
        crate::platform::Arch::Amd64 => "efi/linuxx64.efi.stub",
        crate::platform::Arch::Arm64 => "efi/linuxaa64.efi.stub",
    }
}

/// What a UKI is made of besides the kernel and os-release.
struct UkiParts<'p> {
    format: Format,
    initrd: &'p FileSource,
    cmdline: &'p str,
}

/// Writes the unified kernel image of `img` with `parts` (for the output at
/// `dest`; temp files in `dir`).
fn write_uki(
    img: &Inputs,
    parts: &UkiParts,
    dir: &Path,
    dest: &Path,
    out: &mut dyn io::Write,
) -> Result<(), OutputError> {
    let kernel = img.kernel.ok_or(OutputError::NoKernel("uki"))?;
    let stub = boot_file(img, parts.format, efi_stub_path(img.arch))?;
    let packed = Packed {
        pack: img.pack,
        content: kernel,
    };
    let unpacked = efi_kernel(&packed, dir).map_err(io_err(dest))?;
    let kernel: &dyn Source = match &unpacked {
        Some((_, src)) => src,
        None => &packed,
    };
    let osrel = os_release(img);
    let sections = [
        uki::Section {
            name: ".osrel",
            data: &osrel,
        },
        uki::Section {
            name: ".cmdline",
            data: &parts.cmdline,
        },
        uki::Section {
            name: ".initrd",
            data: parts.initrd,
        },
        uki::Section {
            name: ".linux",
            data: kernel,
        },
    ];
    uki::write(stub, &sections, out)?;
    Ok(())
}

/// Writes the tree as a squashfs image and its verity hash image into temp
/// files in `dir`. The salt derives from the image, so the same tree gives
/// the same bytes and root hash.
fn make_disk_root(img: &Inputs, dir: &Path, dest: &Path) -> Result<DiskRoot, OutputError> {
    let e = io_err(dest);
    let mut data_file = temp_in(dir, ".hull-root-", dest)?;
    let mtime = u32::try_from(img.mtime).unwrap_or(u32::MAX);
    let mut w = io::BufWriter::with_capacity(1 << 16, data_file.as_file_mut());
    squashfs::write(img.tree, img.pack, mtime, &mut w)?;
    io::Write::flush(&mut w).map_err(&e)?;
    drop(w);
    // Whole verity blocks (backhand pads to 4 KiB already).
    let len = data_file.as_file().metadata().map_err(&e)?.len();
    data_file
        .as_file()
        .set_len(len.div_ceil(verity::BLOCK) * verity::BLOCK)
        .map_err(&e)?;
    let data = FileSource::new(data_file.path()).map_err(&e)?;
    let salt = crate::media::source::content_hash(&[&"hull verity salt", &data]).map_err(&e)?;
    let mut hash_file = temp_in(dir, ".hull-verity-", dest)?;
    let mut w = io::BufWriter::with_capacity(1 << 16, hash_file.as_file_mut());
    let verity =
        verity::write(&mut data.open().map_err(&e)?, data.len(), salt, &mut w).map_err(&e)?;
    io::Write::flush(&mut w).map_err(&e)?;
    drop(w);
    let hash = FileSource::new(hash_file.path()).map_err(&e)?;
    Ok(DiskRoot {
        _data_file: data_file,
        data,
        _hash_file: hash_file,
        hash,
        verity,
    })
}

/// The kernel as an EFI stub can start it: a gzip-compressed arm64 `Image`
/// (Debian's vmlinuz) is decompressed into a temp file in `dir`; anything
/// else is used as it is (`None`).
fn efi_kernel(
    kernel: &Packed,
    dir: &Path,
) -> io::Result<Option<(tempfile::NamedTempFile, FileSource)>> {
    if crate::media::source::head(kernel, 2)? != [0x1f, 0x8b] {
        return Ok(None);
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".hull-kernel-")
        .tempfile_in(dir)?;
    let mut gz = flate2::read::GzDecoder::new(kernel.open()?);
    let mut w = io::BufWriter::new(tmp.as_file_mut());
    io::copy(&mut gz, &mut w)?;
    io::Write::flush(&mut w)?;
    drop(w);
    let src = FileSource::new(tmp.path())?;
    Ok(Some((tmp, src)))
}

/// The image's /etc/os-release (the init package writes one), or a minimal
/// one; with slots, its IMAGE_VERSION, which systemd-boot orders entries by.
fn os_release(img: &Inputs) -> Vec<u8> {
    let found = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| match img.tree.get(p).map(|e| &e.kind) {
            Some(crate::rootfs::tree::Kind::File(c)) => img.pack.read(c).ok(),
            _ => None,
        });
    let mut osrel = found.unwrap_or_else(|| b"NAME=Hull\nID=hull\n".to_vec());
    if let Some(slots) = img.slots {
        if !osrel.ends_with(b"\n") && !osrel.is_empty() {
            osrel.push(b'\n');
        }
        osrel.extend_from_slice(format!("IMAGE_VERSION={}\n", slots.version).as_bytes());
    }
    osrel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_root_s_command_line_ends_with_its_root_hash_and_slots_reboot_on_panic() {
        assert_eq!(
            disk_root_cmdline("console=ttyS0", "ab", false),
            "console=ttyS0 roothash=ab"
        );
        assert_eq!(disk_root_cmdline("", "ab", false), "roothash=ab");
        assert_eq!(
            disk_root_cmdline("console=ttyS0", "ab", true),
            "console=ttyS0 panic=10 roothash=ab"
        );
        assert_eq!(
            disk_root_cmdline("panic=30 console=ttyS0", "ab", true),
            "panic=30 console=ttyS0 roothash=ab"
        );
    }
}
