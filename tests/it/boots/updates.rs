//! Two-slot disks (`--root ab`) updated from a real registry by the update
//! service, under OVMF/AAVMF with systemd-boot counting tries (amd64 and
//! arm64, TCG):
//!
//! - v1 boots from slot A; v2's bundle is pushed to a local
//!   `docker-registry` with one blob tampered in the registry's storage: the
//!   service refuses it before writing anything; the blob restored, the
//!   service installs v2 into slot B and reboots; v2 is tried, blessed after
//!   the health window, and a reset boots it again as trusted;
//! - v3 (whose service exits at once, never healthy) is pushed; QEMU is
//!   killed right after the service removed slot A's old entry and began
//!   writing slot A: the next boot runs v2; the service installs v3 again,
//!   it is tried three times (hull-init reboots each try at the deadline)
//!   and systemd-boot falls back to v2 by itself; `hullctl slots` reports
//!   the failed attempt and the service does not install v3 again.

use crate::util;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use util::boot::Boot;
use util::registry::TestRegistry;
use util::tool;

/// A manifest of version `version`: DHCP, the update service following
/// `REGISTRY/app/update:stable` every 5 s, a service that reports `hullctl
/// slots`, and the app, which stays up, or (`bad`) exits at once, restarted
/// for ever, never healthy.
fn manifest(dir: &Path, version: &str, bad: bool, registry: &str) -> PathBuf {
    let repo = util::repo();
    let repo = repo.display();
    let app = if bad {
        format!("echo HULL-V{version}-UP; exit 1")
    } else {
        format!("echo HULL-V{version}-UP; exec sleep 2147483647")
    };
    let text = format!(
        r#"kernel:
  image: "@pkg:{repo}/kernels/debian-cloud"
  cmdline: "console=ttyS0 console=ttyAMA0"
health:
  window: 5s
  deadline: 25s
init:
  - "@pkg:{repo}/pkgs/init"
onboot:
  - name: dhcpcd
    image: "@pkg:{repo}/pkgs/dhcpcd"
services:
  - name: app
    image: "@pkg:{repo}/pkgs/getty"
    capabilities: []
    binds: []
    command: ["/bin/sh", "-c", "{app}"]
  - name: update
    image: "@pkg:{repo}/pkgs/update"
    command: ["/usr/bin/hull-update", "watch", "{registry}/app/update:stable", "--every", "5", "--plain-http", "--reboot"]
  - name: report
    image: "@pkg:{repo}/pkgs/getty"
    capabilities: []
    control: read
    binds: ["/run/hullctl:/run/hullctl", "/usr/bin/hullctl:/usr/bin/hullctl"]
    command: ["/bin/sh", "-c", "sleep 8; hullctl slots | sed 's/^/SLOTS: /'; exec sleep 2147483647"]
"#
    );
    let path = dir.join(format!("v{version}.yml"));
    std::fs::write(&path, text).expect("manifest");
    path
}

/// Builds version `version` for `arch` as `format` into `dir/vN`; returns
/// the output.
fn build(
    dir: &Path,
    arch: &str,
    version: &str,
    bad: bool,
    registry: &str,
    format: &str,
) -> PathBuf {
    let m = manifest(dir, version, bad, registry);
    let out = dir.join(format!("v{version}"));
    let cache = util::examples_cache();
    util::hull(&[
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
        "--format",
        format,
        "--dir",
        out.to_str().expect("utf-8"),
        m.to_str().expect("utf-8"),
    ])
    .expect_code(0);
    let file = if format == "update" {
        "app-update.oci.tar"
    } else {
        "app-efi.img"
    };
    out.join(file)
}

/// The digest of the blob titled `title` in the bundle, as `skopeo` reads it.
fn blob_digest(bundle: &Path, title: &str) -> String {
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
    m["layers"]
        .as_array()
        .and_then(|ls| {
            ls.iter()
                .find(|l| l["annotations"]["org.opencontainers.image.title"] == title)
        })
        .and_then(|l| l["digest"].as_str())
        .unwrap_or_else(|| panic!("no {title} in {raw}"))
        .to_string()
}

/// Pushes `bundle` to `reg` as `app/update:TAG` with `hull push`.
fn push(bundle: &Path, reg: &TestRegistry, tag: &str, work: &Path) {
    let cache = work.join("push-cache");
    util::hull_in(
        work,
        &[
            "--cache",
            cache.to_str().expect("utf-8"),
            "push",
            bundle.to_str().expect("utf-8"),
            &format!("{}/app/update:{tag}", reg.addr),
        ],
        &[("DOCKER_CONFIG", "/nonexistent")],
    )
    .expect_code(0);
}

/// Flips the first byte of the file at `path`.
fn flip(path: &Path) {
    let mut bytes = std::fs::read(path).expect("blob");
    bytes[0] ^= 0xff;
    std::fs::write(path, bytes).expect("blob written");
}

fn wait(boot: &mut Boot, marker: &str, secs: u64, what: &str) {
    assert!(
        boot.wait_for(marker, Duration::from_secs(secs)).is_some(),
        "{what}: no \"{marker}\":\n{}",
        boot.text()
    );
}

fn start(dir: &Path, arch: &str, disk: &Path) -> Boot {
    Boot::start(
        dir,
        &[
            "--arch",
            arch,
            "--reboot",
            "--expect",
            "HULL-NEVER",
            "--timeout",
            "1500",
            disk.to_str().expect("utf-8"),
        ],
    )
}

#[test]
fn updates_come_from_a_registry_and_a_bad_one_falls_back_by_itself_amd64() {
    updates_and_fallback("amd64");
}

#[test]
fn updates_come_from_a_registry_and_a_bad_one_falls_back_by_itself_arm64() {
    updates_and_fallback("arm64");
}

/// The whole story on `arch`; prints how long each part took.
fn updates_and_fallback(arch: &str) {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let reg = TestRegistry::start();
    let port = reg.addr.rsplit(':').next().expect("a port");
    let guest_reg = format!("10.0.2.2:{port}");
    let disk = build(dir, arch, "1", false, &guest_reg, "raw-efi");
    let v2 = build(dir, arch, "2", false, &guest_reg, "update");
    let v3 = build(dir, arch, "3", true, &guest_reg, "update");
    let (ok, text) = tool("sgdisk", &["-v", disk.to_str().expect("utf-8")]);
    assert!(
        ok && text.contains("No problems found"),
        "sgdisk -v: {text}"
    );

    let mut boot = start(dir, arch, &disk);
    wait(&mut boot, "HULL-V1-UP", 300, "v1 from slot A");
    assert!(
        boot.text()
            .contains("slot a booted, version 1, entry hull.efi: trusted"),
        "v1 did not boot from slot A:\n{}",
        boot.text()
    );

    // v2 with its root blob tampered in the registry: refused, nothing written.
    push(&v2, &reg, "2", dir);
    let root = reg.stored_blob(&blob_digest(&v2, "root.squashfs"));
    flip(&root);
    push(&v2, &reg, "stable", dir);
    wait(&mut boot, "refused", 120, "a tampered blob");
    assert!(
        !boot.text().contains("removed the spare slot's entry") && !boot.text().contains("wrote "),
        "something was written for a tampered bundle:\n{}",
        boot.text()
    );
    flip(&root);
    let restored = Instant::now();
    wait(&mut boot, "installed hull-2+3.efi", 120, "v2 installed");
    let installed = Instant::now();
    wait(&mut boot, "blessed hull-2.efi", 300, "v2 tried and blessed");
    println!(
        "{arch}: v2 installed {:.1} s after its blob was restored, blessed {:.1} s later (reboot, firmware, boot, 5 s window)",
        (installed - restored).as_secs_f64(),
        installed.elapsed().as_secs_f64()
    );
    assert!(
        boot.text()
            .contains("slot b booted, version 2, entry hull-2+3.efi: on trial"),
        "v2 was not on trial in slot B:\n{}",
        boot.text()
    );
    boot.qmp("system_reset");
    wait(
        &mut boot,
        "slot b booted, version 2, entry hull-2.efi: trusted",
        300,
        "v2 again after a reset",
    );

    // v3: QEMU killed as soon as slot A is being written.
    push(&v3, &reg, "stable", dir);
    wait(
        &mut boot,
        "removed the spare slot's entry",
        120,
        "v3 being installed",
    );
    drop(boot);

    let mut boot = start(dir, arch, &disk);
    wait(
        &mut boot,
        "slot b booted, version 2, entry hull-2.efi: trusted",
        300,
        "v2 after QEMU was killed while slot A was written",
    );
    wait(
        &mut boot,
        "installed hull-3+3.efi",
        300,
        "v3 installed again",
    );
    let tried = Instant::now();
    wait(
        &mut boot,
        "not healthy by the deadline",
        300,
        "v3's first try",
    );
    let tries = |b: &Boot| b.text().matches("slot a booted, version 3").count();
    let fallback = "slot b booted, version 2, entry hull-2.efi: trusted";
    let before = boot.text().matches(fallback).count();
    let deadline = Instant::now() + Duration::from_secs(600);
    while boot.text().matches(fallback).count() == before && Instant::now() < deadline {
        boot.wait_for("HULL-NEVER", Duration::from_secs(5));
    }
    assert_eq!(
        tries(&boot),
        3,
        "v3 was not tried three times:\n{}",
        boot.text()
    );
    println!(
        "{arch}: v3 tried three times and fell back to v2 in {:.1} s",
        tried.elapsed().as_secs_f64()
    );
    wait(
        &mut boot,
        "failed: tried 3 times, given up",
        120,
        "hullctl slots after the fallback",
    );
    wait(
        &mut boot,
        "was tried and given up",
        60,
        "the service not installing v3 again",
    );
    assert!(
        boot.text().matches("not healthy by the deadline").count() == 3,
        "{}",
        boot.text()
    );
}
