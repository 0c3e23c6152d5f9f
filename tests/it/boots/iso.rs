//! The ISO formats: examples/minimal.yml as `iso-bios` (ISOLINUX with a
//! boot info table, isohybrid MBR) and `iso-efi` (a FAT EFI boot image
//! holding the unified kernel image, an 0xEF MBR partition over it).
//! xorriso reads each El Torito catalog, fsck.vfat accepts the EFI image,
//! two builds are byte-identical, and each boots to the marker: x86_64
//! iso-bios under SeaBIOS and iso-efi under OVMF, from a CD-ROM and, being
//! hybrid, from a disk (as if written to a USB stick); aarch64 iso-efi under
//! AAVMF from a CD-ROM. A BIOS ISO run on aarch64 is a clear error.

use crate::util;

use std::path::Path;

use util::boot::Boot;

use util::tool;

/// Builds twice into `tmp/a-ARCH` and `tmp/b-ARCH`; checks the outputs are
/// identical and returns the first build's directory.
fn build_twice(tmp: &Path, arch: &str, formats: &[&str]) -> std::path::PathBuf {
    let a = tmp.join(format!("a-{arch}"));
    let b = tmp.join(format!("b-{arch}"));
    let args: Vec<&str> = formats.iter().flat_map(|f| ["--format", f]).collect();
    util::build_example("minimal", arch, &a, &args, &[]).expect_code(0);
    util::build_example("minimal", arch, &b, &args, &[]).expect_code(0);
    for entry in std::fs::read_dir(&a).expect("outputs").flatten() {
        let name = entry.file_name();
        assert!(
            std::fs::read(entry.path()).expect("output")
                == std::fs::read(b.join(&name)).expect("again"),
            "{arch}: {name:?} differs between two builds"
        );
    }
    a
}

/// xorriso's El Torito report for `iso`.
fn el_torito(iso: &Path) -> String {
    let (ok, text) = tool(
        "xorriso",
        &[
            "-indev",
            iso.to_str().expect("utf-8"),
            "-report_el_torito",
            "plain",
            "-report_system_area",
            "plain",
        ],
    );
    assert!(ok, "xorriso: {text}");
    text
}

#[test]
fn x86_64_isos_pass_xorriso_build_reproducibly_and_boot_from_cd_and_disk() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = build_twice(tmp.path(), "amd64", &["iso-bios", "iso-efi"]);
    let bios = out.join("minimal.iso");
    let efi = out.join("minimal-efi.iso");

    let report = el_torito(&bios);
    for want in [
        "El Torito boot img :   1  BIOS  y   none  0x0000  0x00      4",
        "/ISOLINUX/ISOLINUX.BIN",
        "boot-info-table isohybrid-suitable",
        "MBR isohybrid",
    ] {
        assert!(report.contains(want), "iso-bios: no {want:?} in\n{report}");
    }
    let report = el_torito(&efi);
    for want in [
        "El Torito boot img :   1  UEFI  y   none",
        "/BOOT/EFI.IMG",
        "MBR partition      :   1   0x00  0xef",
    ] {
        assert!(report.contains(want), "iso-efi: no {want:?} in\n{report}");
    }
    for iso in [&bios, &efi] {
        let (_, text) = tool("file", &["-b", iso.to_str().expect("utf-8")]);
        assert!(
            text.contains("ISO 9660 CD-ROM filesystem data") && text.contains("bootable"),
            "file: {text}"
        );
    }
    // The EFI boot image: a FAT filesystem with the UKI as the loader.
    let img = tmp.path().join("efi.img");
    let (ok, text) = tool(
        "xorriso",
        &[
            "-osirrox",
            "on",
            "-indev",
            efi.to_str().expect("utf-8"),
            "-extract",
            "/BOOT/EFI.IMG",
            img.to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "xorriso -extract: {text}");
    let i = img.to_str().expect("utf-8");
    let (ok, text) = tool("fsck.vfat", &["-n", i]);
    assert!(ok, "fsck.vfat -n: {text}");
    let (ok, text) = tool("mdir", &["-i", i, "::/EFI/BOOT"]);
    assert!(ok && text.contains("BOOTX64  EFI"), "mdir: {text}");

    Boot::to_ready(
        tmp.path(),
        "amd64",
        &bios,
        "iso-bios from a CD-ROM (SeaBIOS)",
    );
    Boot::to_ready(tmp.path(), "amd64", &efi, "iso-efi from a CD-ROM (OVMF)");
    // Hybrid: the same bytes as a disk.
    for (iso, name) in [(&bios, "usb-bios.img"), (&efi, "usb-efi.img")] {
        let stick = tmp.path().join(name);
        std::fs::copy(iso, &stick).expect("copy");
        Boot::to_ready(
            tmp.path(),
            "amd64",
            &stick,
            &format!("{name} (hybrid) from a disk"),
        );
    }
}

#[test]
fn aarch64_iso_efi_passes_xorriso_builds_reproducibly_and_boots() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = build_twice(tmp.path(), "arm64", &["iso-efi"]);
    let efi = out.join("minimal-efi.iso");
    let report = el_torito(&efi);
    assert!(
        report.contains("El Torito boot img :   1  UEFI  y   none"),
        "{report}"
    );
    Boot::to_ready(tmp.path(), "arm64", &efi, "iso-efi from a CD-ROM (AAVMF)");
}
