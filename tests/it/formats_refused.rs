//! Format requests refused before anything is built or booted: BIOS formats
//! for aarch64, a disk too small for its content, a UKI without a usable
//! bootloader image. Each fails with a clear error and writes nothing.

use std::path::Path;

use crate::util;

fn build(arch: &str, out: &Path, extra: &[&str]) -> util::Run {
    util::build_example("minimal", arch, out, extra, &[])
}

fn build_uki(arch: &str, out: &Path, extra: &[&str]) -> util::Run {
    let args = [&["--format", "uki"][..], extra].concat();
    util::build_example("minimal", arch, out, &args, &[])
}

#[test]
fn bios_formats_for_aarch64_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    for format in ["raw-bios", "qcow2-bios", "iso-bios"] {
        let run = build("arm64", &out, &["--format", format]);
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("format {format} boots through a PC BIOS"))
                && run.stderr.contains("aarch64"),
            "{}",
            run.stderr
        );
    }
    assert!(!out.exists(), "the output directory was made");
}

#[test]
fn a_disk_too_small_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    let run = build(
        "amd64",
        &out,
        &["--format", "raw-efi", "--disk-size", "10M"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--disk-size 10485760 bytes is too small"),
        "{}",
        run.stderr
    );
    util::nothing_written(&out, "a refused build");
}

#[test]
fn uki_without_a_usable_bootloader_fails_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    let missing = tmp.path().join("no-such-package");
    let run = build_uki(
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
    let run = build_uki(
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
    util::nothing_written(&out, "a refused build");
    let bootloader = format!("@pkg:{}", util::repo().join("pkgs/bootloader").display());
    let a = args(&["--bootloader", &bootloader]);
    util::hull(&a.iter().map(String::as_str).collect::<Vec<_>>()).expect_code(0);
    assert!(out.join("minimal.efi").is_file(), "--bootloader wins");
}

#[test]
fn a_compression_level_the_codec_does_not_take_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    for (codec, level, says) in [
        ("gzip", "12", "gzip takes levels 1 to 9"),
        ("zstd", "20", "zstd takes levels 1 to 19"),
        ("none", "3", "none takes levels 0 to 0"),
    ] {
        let run = build(
            "amd64",
            &out,
            &["--compression", codec, "--compression-level", level],
        );
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("--compression-level {level}: {says}")),
            "{}",
            run.stderr
        );
    }
    assert!(!out.exists(), "the output directory was made");
}

#[test]
fn verity_roots_and_signing_need_formats_that_hold_them_and_a_real_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    let run = build("amd64", &out, &["--root", "verity", "--format", "iso-efi"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("format iso-efi cannot hold a root on disk"),
        "{}",
        run.stderr
    );
    let key = tmp.path().join("key.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let cert = "/usr/share/ovmf/PkKek-1-snakeoil.pem";
    let k = key.to_str().expect("utf-8");
    util::registry::self_signed(tmp.path(), "good", "t");
    let (good_key, good_cert) = (tmp.path().join("good.key"), tmp.path().join("good.pem"));
    let run = build(
        "amd64",
        &out,
        &[
            "--sign-key",
            good_key.to_str().expect("utf-8"),
            "--sign-cert",
            good_cert.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--sign-key signs the unified kernel image"),
        "{}",
        run.stderr
    );
    let run = build(
        "amd64",
        &out,
        &["--format", "uki", "--sign-key", k, "--sign-cert", cert],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(k) && run.stderr.contains("no RSA private key in PEM"),
        "{}",
        run.stderr
    );
    let run = build("amd64", &out, &["--format", "uki", "--sign-key", k]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--sign-cert"), "{}", run.stderr);
    assert!(!out.exists(), "the output directory was made");
}

#[test]
fn two_slot_disks_need_a_version_formats_that_hold_slots_and_a_root_that_fits() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    for (flags, says) in [
        (
            &["--root", "ab", "--format", "raw-efi"][..],
            "--root ab needs --image-version",
        ),
        (
            &[
                "--root",
                "ab",
                "--image-version",
                "1/2",
                "--format",
                "raw-efi",
            ][..],
            "--image-version \"1/2\": use 1 to 64 letters",
        ),
        (
            &["--root", "ab", "--image-version", "1", "--format", "uki"][..],
            "format uki cannot hold two root slots",
        ),
        (
            &["--root", "verity", "--format", "update"][..],
            "format update is a bundle for a two-slot disk: build it with --root ab",
        ),
        (
            &["--image-version", "1", "--format", "raw-efi"][..],
            "--image-version and --slot-size are for two-slot disks",
        ),
    ] {
        let run = build("amd64", &out, flags);
        assert_eq!(run.code, Some(1), "{flags:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{flags:?}: {}", run.stderr);
    }
    assert!(!out.exists(), "the output directory was made");
    // A slot smaller than the root: found once the root is made; nothing kept.
    let run = build(
        "amd64",
        &out,
        &[
            "--root",
            "ab",
            "--image-version",
            "1",
            "--slot-size",
            "1M",
            "--format",
            "raw-efi",
        ],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("does not fit a slot of 1048576 bytes: raise --slot-size"),
        "{}",
        run.stderr
    );
    util::nothing_written(&out, "a refused build");
}
