//! Boot tests (tier 3): Hull builds a kernel+initrd from its own packages —
//! Debian's cloud kernel and the busybox getty package, both built by `hull pkg
//! build` — for x86_64 and aarch64, and QEMU (TCG) boots each to a marker
//! printed by a tiny /init, read from the serial console. This checks the
//! initrd format (cpio in gzip members, ucode-less) against real kernels and
//! that the module index comes from real modules. hull-init's own boot tests
//! come with its issue.

use crate::util;

use std::process::Command;

use util::registry::run;

use util::repo;

use util::boot::build_with_and_boot;
use util::hull_cached as hull;

const INIT: &str = r#"#!/bin/sh
/bin/busybox mkdir -p /proc
/bin/busybox mount -t proc proc /proc
echo "HULL-SMOKE arch=$(/bin/busybox uname -m) images=$(/bin/busybox ls /containers/images | /bin/busybox wc -l) modules=$(/bin/busybox wc -l < /lib/modules/$(/bin/busybox uname -r)/modules.dep)"
/bin/busybox poweroff -f
"#;

#[test]
fn debian_kernels_boot_hull_initrds_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let kernel_pkg = repo().join("kernels/debian-cloud");
    let getty_pkg = repo().join("pkgs/getty");
    let out = hull(
        &cache,
        &repo(),
        &[
            "pkg",
            "build",
            kernel_pkg.to_str().expect("utf-8"),
            getty_pkg.to_str().expect("utf-8"),
        ],
    )
    .expect_code(0);
    let refs: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    let (kernel, getty) = (refs[0], refs[1]);

    // The kernel package: LinuxKit's layout, the module subset with its dependencies.
    for (arch, magic) in [
        ("amd64", "x86 boot executable"),
        ("arm64", "ARM64 boot executable"),
    ] {
        let layout = tmp.path().join(format!("k-{arch}"));
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--override-arch", arch])
            .arg(format!("oci:{}:{kernel}", cache.display()))
            .arg(format!("oci:{}:k", layout.display())));
        let bundle = tmp.path().join(format!("kb-{arch}"));
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:k", layout.display()))
            .arg(&bundle));
        let root = bundle.join("rootfs");
        let kind = run(Command::new("file").arg("-b").arg(root.join("kernel")));
        assert!(kind.contains(magic), "{arch} kernel: {kind}");
        for f in ["config", "System.map", "kernel.tar"] {
            assert!(root.join(f).exists(), "{arch}: {f} missing");
        }
        let list = run(Command::new("bsdtar")
            .arg("-tf")
            .arg(root.join("kernel.tar")));
        for m in [
            "virtio_net.ko",
            "net_failover.ko",
            "failover.ko",
            "virtio_blk.ko",
        ] {
            assert!(
                list.lines().any(|l| l.ends_with(&format!("/{m}"))),
                "{arch}: {m} not in kernel.tar:\n{list}"
            );
        }
        assert!(
            !list.contains("/sound/"),
            "{arch}: only the module subset is kept"
        );
    }

    std::fs::write(tmp.path().join("init"), INIT).expect("write init");
    let manifest = tmp.path().join("smoke.yml");
    std::fs::write(
        &manifest,
        format!(
            "kernel:\n  image: {kernel}\n  cmdline: \"console=ttyS0 console=ttyAMA0 panic=-1\"\ninit:\n  - {getty}\nonboot:\n  - name: idle\n    image: {getty}\nfiles:\n  - path: init\n    source: init\n    mode: \"0755\"\n"
        ),
    )
    .expect("write manifest");
    // The initrd is in parts (the system before containers/, the container's
    // image, the containers' files, the system after, with the modules): gzip
    // members on amd64, zstd frames on arm64; the kernel unpacks them all.
    for (arch, uname, codec) in [("amd64", "x86_64", "gzip"), ("arm64", "aarch64", "zstd")] {
        // hull run qemu boots it and waits for the marker line.
        let build = ("smoke", &["--compression", codec][..]);
        let run = build_with_and_boot(&cache, tmp.path(), build, arch, "HULL-SMOKE", 240, &[]);
        if run.code != Some(0) {
            panic!("{arch} did not boot to the marker:\n{}", run.text);
        }
        let line = run
            .text
            .lines()
            .find(|l| l.contains("HULL-SMOKE"))
            .unwrap_or_default();
        assert!(
            line.contains(&format!("arch={uname} images=1 ")),
            "{arch} ({codec}): {line}"
        );
        let modules: usize = line
            .rsplit("modules=")
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            modules > 20,
            "{arch}: modules.dep has {modules} lines: {line}"
        );
        println!("{arch}: {line}");
        if arch == "amd64" {
            // A marker that never comes: exit 1, the console's end in the error, the whole log kept.
            let prefix = tmp.path().join(format!("out-{arch}")).join("smoke");
            let miss = hull(
                &cache,
                tmp.path(),
                &[
                    "run",
                    "qemu",
                    "--arch",
                    arch,
                    "--expect",
                    "NEVER-PRINTED",
                    "--timeout",
                    "20",
                    "-q",
                    prefix.to_str().expect("utf-8"),
                ],
            )
            .expect_code(1);
            assert!(
                miss.stderr
                    .contains("\"NEVER-PRINTED\" did not appear on the console within 20 s"),
                "{}",
                miss.stderr
            );
            let log = std::fs::read_to_string(format!("{}-console.log", prefix.display()))
                .expect("console log kept");
            assert!(log.contains("HULL-SMOKE"), "the log holds the console");
        }
    }
}
