//! One writer per format, each staging its files over the build's shared
//! artifacts; [`stage_all`] is the table from format to writer.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::artifacts::{write_initrd, Artifacts, DiskRoot, Packed};
use super::{boot_file, media, stage, Format, Inputs, OutputError, Staged, StagedFile};
use crate::media::source::{FileSource, Source};
use crate::media::{fat, gpt, tar};

pub(super) type Written = Result<Vec<StagedFile>, OutputError>;

/// Writes `formats` of `img` as `dir/name...` temp files.
pub fn stage_all(
    img: &Inputs,
    formats: &[Format],
    dir: &Path,
    name: &str,
) -> Result<Staged, OutputError> {
    let mut a = Artifacts::new(img, dir);
    let mut files = Vec::new();
    for &format in formats {
        let out = Out { dir, name, format };
        files.extend(match format {
            Format::KernelInitrd => kernel_initrd(&mut a, &out)?,
            Format::Tar => root_tar(&mut a, &out)?,
            Format::TarKernelInitrd => tar_kernel_initrd(&mut a, &out)?,
            Format::Uki => uki(&mut a, &out)?,
            Format::RawEfi | Format::Qcow2Efi => efi_disk(&mut a, &out)?,
            Format::IsoEfi => iso_efi(&mut a, &out)?,
            Format::IsoBios => iso_bios(&mut a, &out)?,
            Format::RawBios | Format::Qcow2Bios => bios_disk(&mut a, &out)?,
            Format::Update => super::slots::update_bundle(&mut a, &out)?,
        });
    }
    Ok(Staged {
        files,
        initrd: a.initrd_stats(),
    })
}

/// Where a format's files go.
pub(super) struct Out<'o> {
    pub dir: &'o Path,
    pub name: &'o str,
    pub format: Format,
}

impl Out<'_> {
    /// A staged file named `NAME{suffix}`.
    pub fn stage(&self, suffix: &str) -> Result<StagedFile, OutputError> {
        stage(self.dir, format!("{}{suffix}", self.name))
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn kernel_of<'a>(
    img: &Inputs<'a>,
    format: Format,
) -> Result<&'a crate::rootfs::tree::Content, OutputError> {
    img.kernel.ok_or(OutputError::NoKernel(match format {
        Format::KernelInitrd => "kernel+initrd",
        Format::TarKernelInitrd => "tar-kernel-initrd",
        Format::IsoBios => "iso-bios",
        Format::RawBios | Format::Qcow2Bios => "raw-bios",
        _ => "uki",
    }))
}

/// Where removable media keep their UEFI boot loader.
pub(super) fn efi_loader_path(arch: crate::platform::Arch) -> &'static str {
    match arch {
        crate::platform::Arch::Amd64 => "EFI/BOOT/BOOTX64.EFI",
        crate::platform::Arch::Arm64 => "EFI/BOOT/BOOTAA64.EFI",
    }
}

/// NAME-kernel, NAME-initrd.img (the build's shared initrd), NAME-cmdline.
fn kernel_initrd(a: &mut Artifacts, out: &Out) -> Written {
    let kernel = kernel_of(a.img, out.format)?;
    let (mut k, kd) = out.stage("-kernel")?;
    a.img
        .pack
        .copy_to(kernel, k.as_file_mut())
        .map_err(io_err(&kd))?;
    let (i, id) = out.stage("-initrd.img")?;
    let (i, stats) = write_initrd(a.img, i).map_err(io_err(&id))?;
    a.initrd_written_to(i.path(), stats)?;
    let (mut c, cd) = out.stage("-cmdline")?;
    c.write_all(a.img.cmdline.as_bytes()).map_err(io_err(&cd))?;
    Ok(vec![(k, kd), (i, id), (c, cd)])
}

/// NAME.tar: the root filesystem.
fn root_tar(a: &mut Artifacts, out: &Out) -> Written {
    let (t, td) = out.stage(".tar")?;
    let t = tar::write(a.img.tree, a.img.pack, a.img.mtime, io::BufWriter::new(t))
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(io_err(&td))?;
    Ok(vec![(t, td)])
}

/// NAME-initrd.tar: kernel, initrd.img and cmdline in one tar.
fn tar_kernel_initrd(a: &mut Artifacts, out: &Out) -> Written {
    let kernel = kernel_of(a.img, out.format)?;
    let (t, td) = out.stage("-initrd.tar")?;
    let e = io_err(&td);
    let dest = td.clone();
    let img = a.img;
    let initrd = a.initrd(&td)?;
    let mut b = ::tar::Builder::new(io::BufWriter::new(t));
    b.mode(::tar::HeaderMode::Deterministic);
    let mut add = |name: &str, size: u64, data: &mut dyn io::Read| {
        let mut h = ::tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(img.mtime);
        b.append_data(&mut h, name, data)
    };
    add("kernel", kernel.len(), &mut img.pack.reader(kernel)).map_err(&e)?;
    add("initrd.img", initrd.len(), &mut initrd.open().map_err(&e)?).map_err(&e)?;
    let cmdline = img.cmdline.as_bytes();
    add("cmdline", cmdline.len() as u64, &mut &cmdline[..]).map_err(&e)?;
    let t = b
        .into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(&e)?;
    Ok(vec![(t, dest)])
}

/// NAME.efi: the unified kernel image.
fn uki(a: &mut Artifacts, out: &Out) -> Written {
    let (mut f, fd) = out.stage(".efi")?;
    a.write_uki(out.format, f.as_file_mut(), &fd)?;
    a.uki_written_to(f.path())?;
    Ok(vec![(f, fd)])
}

/// A raw disk staged as `raw`, or converted to qcow2 as `qcow2` when the
/// format asks for qcow2.
fn raw_or_qcow2(out: &Out, raw: StagedFile, qcow2: &str) -> Written {
    if matches!(out.format, Format::RawEfi | Format::RawBios) {
        return Ok(vec![raw]);
    }
    let (q, qd) = out.stage(qcow2)?;
    to_qcow2(raw.0.path(), q.path(), &qd)?;
    Ok(vec![(q, qd)])
}

/// NAME-efi.img (or NAME-efi.qcow2): a GPT disk whose ESP holds the UKI;
/// for a root on disk, with the root and its verity partitions after it.
fn efi_disk(a: &mut Artifacts, out: &Out) -> Written {
    let (mut f, fd) = out.stage("-efi.img")?;
    let loader = efi_loader_path(a.img.arch);
    let disk_size = a.img.disk_size;
    let arch = a.img.arch;
    if let Some(slots) = a.img.slots {
        let raw = super::slots::slotted_disk(a, (f, fd), out.format, slots)?;
        return raw_or_qcow2(out, raw, "-efi.qcow2");
    }
    let verity = a.img.disk_root_initrd.is_some();
    let uki = a.uki(out.format, &fd)?.clone();
    let root = if verity {
        Some(a.disk_root(&fd)?)
    } else {
        None
    };
    let extras = root.map(|r| root_partitions(r, arch)).unwrap_or_default();
    gpt::write_disk(
        f.as_file_mut(),
        &[(loader, &uki)],
        None,
        &extras,
        (disk_size, 0),
    )?;
    raw_or_qcow2(out, (f, fd), "-efi.qcow2")
}

/// The Discoverable Partitions type GUIDs of a root and its verity hash
/// partition for `arch`.
pub(super) fn root_types(arch: crate::platform::Arch) -> (&'static str, &'static str) {
    match arch {
        crate::platform::Arch::Amd64 => (
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
        ),
        crate::platform::Arch::Arm64 => (
            "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
            "DF3300CE-D69F-4C92-978C-9BFB0F38D820",
        ),
    }
}

/// The root and verity partitions: their UUIDs are the halves of the root
/// hash, as systemd names them, which is how hull-init finds them.
fn root_partitions(root: &DiskRoot, arch: crate::platform::Arch) -> Vec<gpt::Extra<'_>> {
    let (root_type, verity_type) = root_types(arch);
    let hash = root.verity.root_hash;
    let half = |i: usize| {
        let mut u = [0u8; 16];
        u.copy_from_slice(&hash[16 * i..16 * i + 16]);
        u
    };
    vec![
        gpt::Extra {
            type_guid: root_type,
            uuid: half(0),
            name: "hull-root",
            data: &root.data,
            size: 0,
        },
        gpt::Extra {
            type_guid: verity_type,
            uuid: half(1),
            name: "hull-root-verity",
            data: &root.hash,
            size: 0,
        },
    ]
}

/// NAME-efi.iso: a hybrid ISO whose EFI boot image holds the UKI.
fn iso_efi(a: &mut Artifacts, out: &Out) -> Written {
    let (f, fd) = out.stage("-efi.iso")?;
    let loader = efi_loader_path(a.img.arch);
    let uki = a.uki(out.format, &fd)?;
    let digest = crate::media::source::content_hash(&[uki]).map_err(io_err(&fd))?;
    let volume_id = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let esp = fat::small_image(&[(loader, uki)], volume_id, "HULL-ESP")?;
    let (_esp_file, esp) = volume_file(&esp, out.dir).map_err(io_err(&fd))?;
    let mut w = io::BufWriter::new(f);
    media::iso_efi(&esp, &digest, &mut w)?;
    let f = w.into_inner().map_err(|e| io_err(&fd)(e.into_error()))?;
    Ok(vec![(f, fd)])
}

/// A FAT volume written to a temp file in `dir` (kept while the file is).
fn volume_file(
    volume: &fat::Volume,
    dir: &Path,
) -> io::Result<(tempfile::NamedTempFile, FileSource)> {
    let mut file = tempfile::Builder::new()
        .prefix(".hull-esp-")
        .tempfile_in(dir)?;
    file.as_file().set_len(volume.len())?;
    volume.write_to(file.as_file_mut(), 0)?;
    let src = FileSource::new(file.path())?;
    Ok((file, src))
}

/// NAME.iso: a hybrid ISO booted through ISOLINUX.
fn iso_bios(a: &mut Artifacts, out: &Out) -> Written {
    let kernel = kernel_of(a.img, out.format)?;
    let isolinux = boot_file(a.img, out.format, media::ISOLINUX)?;
    let ldlinux = boot_file(a.img, out.format, media::LDLINUX)?;
    let mbr = boot_file(a.img, out.format, media::ISOHYBRID_MBR)?;
    let (f, fd) = out.stage(".iso")?;
    let kernel = Packed {
        pack: a.img.pack,
        content: kernel,
    };
    let cmdline = a.img.cmdline;
    let initrd = a.initrd(&fd)?;
    let mut w = io::BufWriter::new(f);
    let boot = media::IsolinuxFiles {
        isolinux,
        ldlinux,
        mbr,
    };
    media::iso_bios(&kernel, initrd, cmdline, &boot, &mut w)?;
    let f = w.into_inner().map_err(|e| io_err(&fd)(e.into_error()))?;
    Ok(vec![(f, fd)])
}

/// NAME-bios.img (or NAME.qcow2): a GPT disk booted through GRUB.
fn bios_disk(a: &mut Artifacts, out: &Out) -> Written {
    let kernel = kernel_of(a.img, out.format)?;
    let bios = gpt::BiosBoot {
        boot_img: boot_file(a.img, out.format, media::GRUB_BOOT)?,
        core_img: boot_file(a.img, out.format, media::GRUB_CORE)?,
    };
    let (mut f, fd) = out.stage("-bios.img")?;
    let kernel = Packed {
        pack: a.img.pack,
        content: kernel,
    };
    let cfg = media::grub_cfg(a.img.cmdline);
    let disk_size = a.img.disk_size;
    let initrd = a.initrd(&fd)?;
    let esp = media::bios_disk_files(&kernel, initrd, &cfg);
    gpt::write_disk(f.as_file_mut(), &esp, Some(&bios), &[], (disk_size, 0))?;
    raw_or_qcow2(out, (f, fd), ".qcow2")
}

/// qcow2 by QEMU's own `qemu-img`: the format's reference writer (and the
/// tool that boots it), already needed for `hull run qemu`; its output
/// depends only on the input, so builds stay reproducible.
fn to_qcow2(raw: &Path, qcow2: &Path, dest: &Path) -> Result<(), OutputError> {
    let fail = |message: String| OutputError::Qcow2 {
        path: PathBuf::from(dest),
        message,
    };
    let out = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(qcow2)
        .output()
        .map_err(|e| {
            fail(format!(
                "cannot run qemu-img (install qemu-utils: ci/setup): {e}"
            ))
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}
