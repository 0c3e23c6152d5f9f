//! UEFI Secure Boot: a `--root verity` disk of examples/minimal.yml whose UKI
//! is signed (`--sign-key`, `--sign-cert`) with the snakeoil key the
//! firmware packages ship and enroll in their `*.snakeoil.fd` variable
//! stores. Two signed builds are byte-identical and `sbverify` accepts the
//! signature; `hull run qemu --secure-boot` boots it on amd64 (OVMF, SMM)
//! and arm64 (AAVMF) with Secure Boot on, the kernel locked down and
//! Debian's signed modules loading, to the marker on the verity root. The
//! same disk unsigned, or signed with another key, is refused by the
//! firmware ("Access Denied").

use crate::util;

use std::path::{Path, PathBuf};
use std::time::Duration;

use util::boot::Boot;
use util::tool;

/// The snakeoil key (decrypted into `dir`) and certificate of `arch`'s
/// firmware package.
fn snakeoil(arch: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let share = match arch {
        "amd64" => "/usr/share/ovmf",
        _ => "/usr/share/qemu-efi-aarch64",
    };
    let key = dir.join(format!("snakeoil-{arch}.key"));
    let (ok, text) = tool(
        "openssl",
        &[
            "pkey",
            "-in",
            &format!("{share}/PkKek-1-snakeoil.key"),
            "-passin",
            "pass:snakeoil",
            "-out",
            key.to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "openssl pkey: {text}");
    (key, PathBuf::from(format!("{share}/PkKek-1-snakeoil.pem")))
}

/// A key and certificate no firmware store trusts.
fn other_key(dir: &Path) -> (PathBuf, PathBuf) {
    util::registry::self_signed(dir, "other", "not in db");
    (dir.join("other.key"), dir.join("other.pem"))
}

/// The verity disk of examples/minimal.yml for `arch` in `out`, signed
/// with `key` when given.
fn build(arch: &str, out: &Path, key: Option<&(PathBuf, PathBuf)>) -> PathBuf {
    let mut args = vec!["--root", "verity", "--format", "raw-efi"];
    if let Some((k, c)) = key {
        args.extend([
            "--sign-key",
            k.to_str().expect("utf-8"),
            "--sign-cert",
            c.to_str().expect("utf-8"),
        ]);
    }
    util::build_example("minimal", arch, out, &args, &[]).expect_code(0);
    out.join("minimal-efi.img")
}

/// The UKI of `disk`'s ESP (the firmware's loader path), copied out.
fn uki_of(disk: &Path, arch: &str, to: &Path) -> PathBuf {
    let name = if arch == "amd64" {
        "BOOTX64.EFI"
    } else {
        "BOOTAA64.EFI"
    };
    esp_file(disk, &format!("/EFI/BOOT/{name}"), to)
}

/// Boots `disk` with Secure Boot on; the firmware must refuse it.
fn denied(dir: &Path, arch: &str, disk: &Path, what: &str) {
    let (refused, text) = Boot::until(
        dir,
        arch,
        disk,
        &["--secure-boot"],
        "Access Denied",
        Duration::from_secs(300),
    );
    assert!(
        refused && !text.contains("Linux version"),
        "{arch}: {what}: the firmware started it:\n{text}"
    );
}

#[test]
fn signed_verity_disks_boot_under_secure_boot_and_others_are_denied() {
    let tmp = tempfile::tempdir().expect("tmp");
    let other = other_key(tmp.path());
    for arch in ["amd64", "arm64"] {
        let key = snakeoil(arch, tmp.path());
        let a = build(arch, &tmp.path().join(format!("a-{arch}")), Some(&key));
        let b = build(arch, &tmp.path().join(format!("b-{arch}")), Some(&key));
        assert!(
            std::fs::read(&a).expect("a") == std::fs::read(&b).expect("b"),
            "{arch}: two signed builds differ"
        );
        let uki = uki_of(&a, arch, &tmp.path().join(format!("{arch}.efi")));
        let (ok, text) = tool(
            "sbverify",
            &[
                "--cert",
                key.1.to_str().expect("utf-8"),
                uki.to_str().expect("utf-8"),
            ],
        );
        assert!(
            ok && text.contains("Signature verification OK"),
            "{arch}: sbverify: {text}"
        );
        let (ready, text) = Boot::until(
            tmp.path(),
            arch,
            &a,
            &["--secure-boot"],
            "HULL-READY",
            Duration::from_secs(400),
        );
        assert!(
            ready
                && text.contains("Secure boot enabled")
                && text.contains("locked down")
                && text.contains("hull-init: root: /dev/dm-"),
            "{arch}: no Secure Boot, lockdown or verity root:\n{text}"
        );
        let unsigned = build(arch, &tmp.path().join(format!("u-{arch}")), None);
        denied(tmp.path(), arch, &unsigned, "an unsigned UKI");
        let wrong = build(arch, &tmp.path().join(format!("w-{arch}")), Some(&other));
        denied(
            tmp.path(),
            arch,
            &wrong,
            "a UKI signed with a key not in db",
        );
    }
}

/// Copies `path` off `disk`'s ESP into `to` with mtools.
fn esp_file(disk: &Path, path: &str, to: &Path) -> PathBuf {
    let (ok, text) = tool(
        "mcopy",
        &[
            "-n",
            "-i",
            &format!("{}@@1M", disk.display()),
            &format!("::{path}"),
            to.to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "mcopy {path}: {text}");
    to.to_path_buf()
}

#[test]
fn a_signed_two_slot_disk_boots_through_signed_systemd_boot_under_secure_boot() {
    let tmp = tempfile::tempdir().expect("tmp");
    let arch = "amd64";
    let key = snakeoil(arch, tmp.path());
    let out = tmp.path().join("ab");
    util::build_example(
        "minimal",
        arch,
        &out,
        &[
            "--root",
            "ab",
            "--image-version",
            "1",
            "--format",
            "raw-efi",
            "--sign-key",
            key.0.to_str().expect("utf-8"),
            "--sign-cert",
            key.1.to_str().expect("utf-8"),
        ],
        &[],
    )
    .expect_code(0);
    let disk = out.join("minimal-efi.img");
    for (path, name) in [
        ("/EFI/BOOT/BOOTX64.EFI", "sd-boot.efi"),
        ("/EFI/Linux/HULL.EFI", "uki.efi"),
    ] {
        let file = esp_file(&disk, path, &tmp.path().join(name));
        let (ok, text) = tool(
            "sbverify",
            &[
                "--cert",
                key.1.to_str().expect("utf-8"),
                file.to_str().expect("utf-8"),
            ],
        );
        assert!(
            ok && text.contains("Signature verification OK"),
            "{path}: sbverify: {text}"
        );
    }
    let (ready, text) = Boot::until(
        tmp.path(),
        arch,
        &disk,
        &["--secure-boot"],
        "HULL-READY",
        Duration::from_secs(400),
    );
    assert!(
        ready
            && text.contains("Secure boot enabled")
            && text.contains("slot a booted, version 1, entry hull.efi: trusted"),
        "{arch}: the signed two-slot disk did not boot under Secure Boot:\n{text}"
    );
}
