//! The disk formats: examples/minimal.yml as a GPT disk with a FAT32 EFI
//! system partition holding the unified kernel image (`raw-efi`,
//! `qcow2-efi`), or kernel, initrd and grub.cfg with GRUB in the MBR and a
//! BIOS boot partition (`raw-bios`, `qcow2-bios`). Independent tools accept
//! each output (`sgdisk -v`, `fsck.vfat -n` on the ESP, `mdir` finding the
//! files, `qemu-img check`, `file`), two builds are byte-identical, UEFI
//! firmware boots x86_64 raw and qcow2 and aarch64 raw to the marker, and
//! SeaBIOS boots x86_64 raw-bios. (Requests refused before anything boots:
//! `formats_refused`.)

use crate::util;

use std::path::Path;

use util::boot::Boot;
use util::tool;

fn build(arch: &str, out: &Path, extra: &[&str]) -> util::Run {
    util::build_example("minimal", arch, out, extra, &[])
}

/// sgdisk and fsck.vfat (on the ESP cut out with dd) accept the disk, and
/// the ESP's directory `dir` lists `names`.
fn check_disk(disk: &Path, dir: &str, names: &[&str]) {
    let d = disk.to_str().expect("utf-8");
    let (ok, text) = tool("sgdisk", &["-v", d]);
    assert!(
        ok && text.contains("No problems found"),
        "sgdisk -v: {text}"
    );
    let (_, info) = tool("sgdisk", &["-i", "1", d]);
    assert!(info.contains("EFI system partition"), "{info}");
    let sector = |key: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {info}"))
    };
    let (first, last) = (sector("First sector:"), sector("Last sector:"));
    let esp = disk.with_extension("esp");
    let (ok, text) = tool(
        "dd",
        &[
            &format!("if={d}"),
            &format!("of={}", esp.display()),
            "bs=512",
            &format!("skip={first}"),
            &format!("count={}", last - first + 1),
            "status=none",
        ],
    );
    assert!(ok, "dd: {text}");
    let e = esp.to_str().expect("utf-8");
    let (ok, text) = tool("fsck.vfat", &["-n", e]);
    assert!(ok, "fsck.vfat -n: {text}");
    let (ok, text) = tool("mdir", &["-i", e, dir]);
    assert!(ok, "mdir: {text}");
    for n in names {
        assert!(text.contains(n), "mdir {dir}: no {n} in {text}");
    }
}

#[test]
fn efi_disks_pass_the_tools_build_reproducibly_and_boot() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (arch, loader) in [("amd64", "BOOTX64  EFI"), ("arm64", "BOOTAA64 EFI")] {
        let a = tmp.path().join(format!("a-{arch}"));
        let b = tmp.path().join(format!("b-{arch}"));
        let formats = [
            "--format",
            "raw-efi",
            "--format",
            "qcow2-efi",
            "--disk-size",
            "256M",
        ];
        build(arch, &a, &formats).expect_code(0);
        build(arch, &b, &formats).expect_code(0);
        let raw = a.join("minimal-efi.img");
        let qcow2 = a.join("minimal-efi.qcow2");
        for f in [&raw, &qcow2] {
            let name = f.file_name().expect("name");
            assert!(
                std::fs::read(f).expect("output") == std::fs::read(b.join(name)).expect("again"),
                "{arch}: {} differs between two builds",
                f.display()
            );
        }
        assert_eq!(
            std::fs::metadata(&raw).expect("raw").len(),
            256 << 20,
            "{arch}: --disk-size"
        );
        check_disk(&raw, "::/EFI/BOOT", &[loader]);
        let (ok, text) = tool("qemu-img", &["check", qcow2.to_str().expect("utf-8")]);
        assert!(ok && text.contains("No errors were found"), "{text}");
        let (_, text) = tool("file", &["-b", raw.to_str().expect("utf-8")]);
        assert!(
            text.contains("DOS/MBR boot sector") && text.contains("ID=0xee"),
            "{text}"
        );
        // Boots: amd64 from both, arm64 from the raw disk.
        let boots: &[&Path] = if arch == "amd64" {
            &[&raw, &qcow2]
        } else {
            &[&raw]
        };
        for disk in boots {
            Boot::to_ready(tmp.path(), arch, disk, &disk.display().to_string());
        }
    }
}

#[test]
fn bios_disks_pass_the_tools_build_reproducibly_and_boot() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let formats = [
        "--format",
        "raw-bios",
        "--format",
        "qcow2-bios",
        "--disk-size",
        "256M",
    ];
    build("amd64", &a, &formats).expect_code(0);
    build("amd64", &b, &formats).expect_code(0);
    let raw = a.join("minimal-bios.img");
    let qcow2 = a.join("minimal.qcow2");
    for f in [&raw, &qcow2] {
        let name = f.file_name().expect("name");
        assert!(
            std::fs::read(f).expect("output") == std::fs::read(b.join(name)).expect("again"),
            "{} differs between two builds",
            f.display()
        );
    }
    check_disk(&raw, "::/BOOT", &["KERNEL", "INITRD   IMG", "GRUB"]);
    let (ok, text) = tool(
        "mdir",
        &[
            "-i",
            raw.with_extension("esp").to_str().expect("utf-8"),
            "::/BOOT/GRUB",
        ],
    );
    assert!(ok && text.contains("GRUB     CFG"), "mdir: {text}");
    let (_, info) = tool("sgdisk", &["-i", "2", raw.to_str().expect("utf-8")]);
    assert!(info.contains("BIOS boot partition"), "{info}");
    let (ok, text) = tool("qemu-img", &["check", qcow2.to_str().expect("utf-8")]);
    assert!(ok && text.contains("No errors were found"), "{text}");
    let (_, text) = tool("file", &["-b", raw.to_str().expect("utf-8")]);
    assert!(text.contains("DOS/MBR boot sector"), "{text}");
    Boot::to_ready(tmp.path(), "amd64", &raw, "raw-bios");
}
