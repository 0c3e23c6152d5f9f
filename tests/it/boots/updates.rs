//! Two-slot disks (`--root ab`) under OVMF with systemd-boot counting
//! tries: a fresh disk boots slot A; version 2 installed into slot B as a
//! counted entry (`hull-2+3.efi`) boots, is blessed by hull-init once its
//! service has been up for the health window, and a reset boots it again
//! without counting; version 3, whose service never stays up, installed
//! into slot A, is tried three times (hull-init reboots each try at the
//! deadline) and systemd-boot falls back to version 2 by itself.
//!
//! The bundles come from `hull build -f update` and are checked with
//! `skopeo`; `install` does on the host, with the VM stopped, what the
//! on-device update service does: the bundle's root and verity blobs into
//! the slot that did not boot, its UKI under the counted name, the old
//! entry of that slot removed first.

use crate::util;

use std::path::{Path, PathBuf};
use std::time::Duration;

use util::boot::Boot;
use util::tool;

/// A manifest whose one service prints `marker` and stays up, or (`bad`)
/// prints it and exits at once, restarted for ever, never healthy.
fn manifest(dir: &Path, version: &str, bad: bool) -> PathBuf {
    let repo = util::repo();
    let repo = repo.display();
    let run = if bad {
        format!("echo HULL-V{version}-UP; exit 1")
    } else {
        format!("echo HULL-V{version}-UP; exec sleep 2147483647")
    };
    let text = format!(
        r#"kernel:
  image: "@pkg:{repo}/kernels/debian-cloud"
  cmdline: "console=ttyS0 console=ttyAMA0 hull.health=5,25"
init:
  - "@pkg:{repo}/pkgs/init"
services:
  - name: app
    image: "@pkg:{repo}/pkgs/getty"
    capabilities: []
    binds: []
    command: ["/bin/sh", "-c", "{run}"]
"#
    );
    let path = dir.join(format!("v{version}.yml"));
    std::fs::write(&path, text).expect("manifest");
    path
}

/// Builds version `version` of the manifest as `formats` into `dir/vN`.
fn build(dir: &Path, arch: &str, version: &str, bad: bool, formats: &[&str]) -> PathBuf {
    let m = manifest(dir, version, bad);
    let out = dir.join(format!("v{version}"));
    let cache = util::examples_cache();
    let mut args = vec![
        "--cache",
        cache.to_str().expect("utf-8"),
        "build",
        "-q",
        "--arch",
        arch,
        "--root",
        "ab",
        "--image-version",
        version,
        "--name",
        "app",
        "--dir",
        out.to_str().expect("utf-8"),
    ];
    for f in formats {
        args.extend(["--format", f]);
    }
    args.push(m.to_str().expect("utf-8"));
    util::hull(&args).expect_code(0);
    out
}

/// The first sector of the partition named `name` of `disk` (sgdisk).
fn partition_start(disk: &Path, name: &str) -> u64 {
    let (ok, table) = tool("sgdisk", &["-p", disk.to_str().expect("utf-8")]);
    assert!(ok, "sgdisk -p: {table}");
    let row = table
        .lines()
        .find(|l| l.split_whitespace().last() == Some(name))
        .unwrap_or_else(|| panic!("no partition {name}:\n{table}"));
    row.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a start sector")
}

/// The blob of `bundle` (an OCI archive) whose title is `title`, extracted
/// into `dir`: found through the manifest as `skopeo` reads it.
fn blob(bundle: &Path, title: &str, dir: &Path) -> PathBuf {
    let (ok, raw) = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}", bundle.display()),
        ],
    );
    assert!(ok, "skopeo inspect: {raw}");
    let m: serde_json::Value = serde_json::from_str(&raw).expect("manifest JSON");
    assert_eq!(m["artifactType"], "application/vnd.hull.update.v1", "{raw}");
    let layer = m["layers"]
        .as_array()
        .and_then(|ls| {
            ls.iter()
                .find(|l| l["annotations"]["org.opencontainers.image.title"] == title)
        })
        .unwrap_or_else(|| panic!("no {title} in {raw}"));
    let digest = layer["digest"].as_str().expect("digest");
    let member = format!("blobs/{}", digest.replacen(':', "/", 1));
    let (ok, text) = tool(
        "tar",
        &[
            "-xf",
            bundle.to_str().expect("utf-8"),
            "-C",
            dir.to_str().expect("utf-8"),
            &member,
        ],
    );
    assert!(ok, "tar: {text}");
    dir.join(member)
}

/// Installs `bundle` (version `version`) into `slot` of `disk`, as the
/// update service does: the old entries other than `keep` removed, the
/// slot's partitions written, the UKI added as `hull-VERSION+3.efi`.
fn install(disk: &Path, bundle: &Path, slot: &str, version: &str, keep: &str, work: &Path) {
    let esp = format!("{}@@1M", disk.display());
    let (ok, listing) = tool("mdir", &["-b", "-i", &esp, "::/EFI/Linux"]);
    assert!(ok, "mdir: {listing}");
    for entry in listing
        .lines()
        .filter(|l| !l.to_lowercase().ends_with(keep))
    {
        let (ok, text) = tool("mdel", &["-i", &esp, entry.trim()]);
        assert!(ok, "mdel {entry}: {text}");
    }
    for (title, part) in [("root.squashfs", "root"), ("root.verity", "verity")] {
        let file = blob(bundle, title, work);
        let start = partition_start(disk, &format!("hull-{part}-{slot}"));
        let (ok, text) = tool(
            "dd",
            &[
                &format!("if={}", file.display()),
                &format!("of={}", disk.display()),
                "bs=512",
                &format!("seek={start}"),
                "conv=notrunc",
                "status=none",
            ],
        );
        assert!(ok, "dd: {text}");
    }
    let uki = blob(bundle, "hull.efi", work);
    let (ok, text) = tool(
        "mcopy",
        &[
            "-i",
            &esp,
            uki.to_str().expect("utf-8"),
            &format!("::/EFI/Linux/hull-{version}+3.efi"),
        ],
    );
    assert!(ok, "mcopy: {text}");
}

/// The entries on `disk`'s ESP, lower case.
fn entries(disk: &Path) -> Vec<String> {
    let (ok, listing) = tool(
        "mdir",
        &[
            "-b",
            "-i",
            &format!("{}@@1M", disk.display()),
            "::/EFI/Linux",
        ],
    );
    assert!(ok, "mdir: {listing}");
    let mut names: Vec<String> = listing
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(str::to_lowercase)
        .collect();
    names.sort();
    names
}

#[test]
fn a_two_slot_disk_blesses_a_good_version_and_falls_back_from_a_bad_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let arch = "amd64";
    let v1 = build(dir, arch, "1", false, &["raw-efi"]);
    let disk = v1.join("app-efi.img");
    let v2 = build(dir, arch, "2", false, &["update"]).join("app-update.oci.tar");
    let v3 = build(dir, arch, "3", true, &["update"]).join("app-update.oci.tar");
    let (ok, text) = tool("sgdisk", &["-v", disk.to_str().expect("utf-8")]);
    assert!(
        ok && text.contains("No problems found"),
        "sgdisk -v: {text}"
    );
    let forever = Duration::from_secs(900);

    // A fresh disk: slot A, trusted.
    let disk_arg = disk.to_str().expect("utf-8");
    let mut boot = Boot::start(
        dir,
        &[
            "--arch",
            arch,
            "--uefi",
            "--expect",
            "HULL-NEVER",
            "--timeout",
            "900",
            disk_arg,
        ],
    );
    assert!(
        boot.wait_for("HULL-V1-UP", Duration::from_secs(300))
            .is_some()
            && boot
                .text()
                .contains("slot a booted, version 1, entry hull.efi: trusted"),
        "{arch}: v1 did not boot from slot A:\n{}",
        boot.text()
    );
    drop(boot);

    // Version 2 into slot B: tried, blessed, and trusted after a reset.
    install(&disk, &v2, "b", "2", "hull.efi", dir);
    let mut boot = Boot::start(
        dir,
        &[
            "--arch",
            arch,
            "--uefi",
            "--reboot",
            "--expect",
            "HULL-NEVER",
            "--timeout",
            "900",
            disk_arg,
        ],
    );
    assert!(
        boot.wait_for("blessed hull-2.efi", Duration::from_secs(300))
            .is_some()
            && boot
                .text()
                .contains("slot b booted, version 2, entry hull-2+3.efi: on trial"),
        "{arch}: v2 was not tried and blessed:\n{}",
        boot.text()
    );
    boot.qmp("system_reset");
    assert!(
        boot.wait_for(
            "slot b booted, version 2, entry hull-2.efi: trusted",
            Duration::from_secs(300)
        )
        .is_some(),
        "{arch}: v2 did not boot again as trusted:\n{}",
        boot.text()
    );
    drop(boot);
    assert_eq!(entries(&disk), ["hull-2.efi", "hull.efi"].map(String::from));

    // Version 3 into slot A: never healthy, tried three times, then v2.
    install(&disk, &v3, "a", "3", "hull-2.efi", dir);
    let mut boot = Boot::start(
        dir,
        &[
            "--arch",
            arch,
            "--uefi",
            "--reboot",
            "--expect",
            "HULL-NEVER",
            "--timeout",
            "900",
            disk_arg,
        ],
    );
    let fell_back = boot
        .wait_for(
            "slot b booted, version 2, entry hull-2.efi: trusted",
            forever,
        )
        .is_some();
    let text = boot.text();
    let tries = text.matches("slot a booted, version 3").count();
    let gave_up = text.matches("not healthy by the deadline").count();
    assert!(
        fell_back && tries == 3 && gave_up == 3 && boot.wait_for("HULL-V2-UP", Duration::from_secs(60)).is_some(),
        "{arch}: v3 was not tried three times before v2 ({tries} tries, {gave_up} given up):\n{text}"
    );
    drop(boot);
    assert_eq!(
        entries(&disk),
        ["hull-2.efi", "hull-3+0-3.efi"].map(String::from)
    );
}
