//! The `uki` format: examples/minimal.yml as one EFI executable (systemd's
//! stub from the bootloader package, with kernel, initrd, cmdline and
//! os-release sections) for amd64 and arm64. `file` reads each as an EFI
//! application of its arch, two builds are byte-identical, and UEFI firmware
//! (OVMF, AAVMF) boots each to the HULL-READY marker; aarch64 then has ACPI
//! and hull-init finds its power button. Bad requests fail clearly and write
//! nothing.

mod util;

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

#[test]
fn uki_without_a_usable_bootloader_fails_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    let missing = tmp.path().join("no-such-package");
    let run = build(
        "amd64",
        &out,
        &["--bootloader", &format!("@pkg:{}", missing.display())],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("no bootloader image") && run.stderr.contains("no build.yml"),
        "{}",
        run.stderr
    );
    // An image without the stub: the getty package.
    let getty = util::repo().join("pkgs/getty");
    let run = build(
        "amd64",
        &out,
        &["--bootloader", &format!("@pkg:{}", getty.display())],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("has no /efi/linuxx64.efi.stub"),
        "{}",
        run.stderr
    );
    // The same from the manifest's `bootloader:` (a second manifest file,
    // merged), and --bootloader still wins over it.
    let extra = tmp.path().join("bootloader.yml");
    std::fs::write(
        &extra,
        format!("bootloader: \"@pkg:{}\"\n", getty.display()),
    )
    .expect("write");
    let manifest = util::repo().join("examples/minimal.yml");
    let cache = util::examples_cache();
    let args = |flag: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--cache",
            cache.to_str().expect("utf-8"),
            "build",
            "--format",
            "uki",
            "--dir",
            out.to_str().expect("utf-8"),
        ]
        .map(String::from)
        .to_vec();
        a.extend(flag.iter().map(|s| s.to_string()));
        a.push(manifest.display().to_string());
        a.push(extra.display().to_string());
        a
    };
    let a = args(&[]);
    let run = util::hull(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("has no /efi/linuxx64.efi.stub") && run.stderr.contains("getty"),
        "{}",
        run.stderr
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files left behind: {left:?}");
    let bootloader = format!("@pkg:{}", util::repo().join("pkgs/bootloader").display());
    let a = args(&["--bootloader", &bootloader]);
    util::hull(&a.iter().map(String::as_str).collect::<Vec<_>>()).expect_code(0);
    assert!(out.join("minimal.efi").is_file(), "--bootloader wins");
}
