//! The `uki` format: examples/minimal.yml as one EFI executable (systemd's
//! stub from the bootloader package, with kernel, initrd, cmdline and
//! os-release sections) for amd64 and arm64. `file` reads each as an EFI
//! application of its arch, two builds are byte-identical, and UEFI firmware
//! (OVMF, AAVMF) boots each to the HULL-READY marker; aarch64 then has ACPI
//! and hull-init finds its power button. (Bad requests: `formats_refused`.)

use crate::util;

use std::path::Path;

use util::boot::Boot;

fn build(arch: &str, out: &Path, extra: &[&str]) -> util::Run {
    let args = [&["--format", "uki"][..], extra].concat();
    util::build_example("minimal", arch, out, &args, &[])
}

#[test]
fn uki_builds_reproducibly_and_boots_through_uefi_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (arch, file_arch) in [("amd64", "x86-64"), ("arm64", "Aarch64")] {
        let a = tmp.path().join(format!("a-{arch}"));
        let b = tmp.path().join(format!("b-{arch}"));
        build(arch, &a, &[]).expect_code(0);
        build(arch, &b, &[]).expect_code(0);
        let efi = a.join("minimal.efi");
        let bytes = std::fs::read(&efi).expect("minimal.efi");
        assert!(
            bytes == std::fs::read(b.join("minimal.efi")).expect("second build"),
            "{arch}: two builds differ"
        );
        let described = std::process::Command::new("file")
            .arg("-b")
            .arg(&efi)
            .output()
            .expect("file runs");
        let described = String::from_utf8_lossy(&described.stdout).into_owned();
        assert!(
            described.contains("PE32+ executable (EFI application)")
                && described.contains(file_arch),
            "{arch}: file says {described}"
        );
        let boot = Boot::to_ready(tmp.path(), arch, &efi, "the UKI");
        let text = boot.text();
        assert!(
            text.contains("EFI stub: Loaded initrd"),
            "{arch}: not started by the EFI stub:\n{text}"
        );
        assert!(
            text.contains("hull-init: power button:"),
            "{arch}: no ACPI power button:\n{text}"
        );
    }
}
