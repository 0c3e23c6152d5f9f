//! hull-init boot tests (tier 3): an image built from Hull's own packages
//! (Debian's cloud kernel, the init package, the busybox getty image) boots
//! under QEMU TCG on x86_64 and aarch64, and the console shows hull-init
//! doing its work: onboot before services (a file written by one is read by
//! the other), a service that fails twice restarted with backoff and then up,
//! a container without CAP_NET_ADMIN refused a link change, a read-only root
//! refusing a write, a new pid namespace seen from inside, and a memory limit
//! enforced by the container's cgroup.

mod util;

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hull(cache: &Path, cwd: &Path, args: &[&str]) -> util::Run {
    let mut all = vec!["--cache", cache.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    util::hull_in(cwd, &all, &[])
}

fn manifest(kernel: &str, init: &str, busybox: &str) -> String {
    format!(
        r#"kernel:
  image: {kernel}
  cmdline: "console=ttyS0 console=ttyAMA0"
init:
  - {init}
onboot:
  - name: writer
    image: {busybox}
    binds: ["/run:/run"]
    command: ["/bin/sh", "-c", "echo from-onboot > /run/order"]
  - name: sandbox
    image: {busybox}
    capabilities: []
    readonly: true
    pid: new
    binds: []
    command: ["/bin/sh", "-c", "ip link set lo mtu 1234 2>/dev/null && echo NETADMIN-ALLOWED || echo NETADMIN-DENIED; touch /x 2>/dev/null && echo RO-WRITABLE || echo RO-DENIED; echo SANDBOX-PID=$$"]
  - name: memory
    image: {busybox}
    binds: []
    resources:
      memory:
        limit: 33554432
    command: ["/bin/awk", "BEGIN {{ s = \"x\"; for (i = 0; i < 40; i++) s = s s; print \"MEM-SURVIVED\" }}"]
services:
  - name: reader
    image: {busybox}
    binds: ["/run:/run"]
    command: ["/bin/sh", "-c", "echo READ-$(cat /run/order); exec sleep 1000"]
  - name: flaky
    image: {busybox}
    binds: ["/run:/run"]
    restart: on-failure
    command: ["/bin/sh", "-c", "n=$(cat /run/flaky 2>/dev/null || echo 0); n=$((n+1)); echo $n > /run/flaky; echo FLAKY-RUN-$n; [ $n -ge 3 ] && exec sleep 1000; exit 1"]
"#
    )
}

#[test]
fn hull_init_runs_onboot_services_and_sandboxes_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let dirs = ["kernels/debian-cloud", "pkgs/init", "pkgs/getty"].map(|d| repo().join(d));
    let args: Vec<&str> = ["pkg", "build"]
        .into_iter()
        .chain(dirs.iter().map(|d| d.to_str().expect("utf-8")))
        .collect();
    let out = hull(&cache, &repo(), &args).expect_code(0);
    let refs: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    std::fs::write(
        tmp.path().join("m.yml"),
        manifest(refs[0], refs[1], refs[2]),
    )
    .expect("write");
    for arch in ["amd64", "arm64"] {
        let dir = tmp.path().join(format!("out-{arch}"));
        hull(
            &cache,
            tmp.path(),
            &[
                "build",
                "--pull",
                "never",
                "--arch",
                arch,
                "--dir",
                dir.to_str().expect("utf-8"),
                "m.yml",
            ],
        )
        .expect_code(0);
        let prefix = dir.join("m");
        let run = hull(
            &cache,
            tmp.path(),
            &[
                "run",
                "qemu",
                "--arch",
                arch,
                "--expect",
                "FLAKY-RUN-3",
                "--timeout",
                "300",
                prefix.to_str().expect("utf-8"),
            ],
        );
        let console = format!("{}{}", run.stdout, run.stderr);
        assert_eq!(
            run.code,
            Some(0),
            "{arch}: no FLAKY-RUN-3 on the console:\n{console}"
        );
        let has = |s: &str| console.contains(s);
        for want in [
            "hull-init: modules: loaded",
            "hull-init: onboot 000-writer: exited with status 0",
            "[reader] READ-from-onboot",
            "[001-sandbox] NETADMIN-DENIED",
            "[001-sandbox] RO-DENIED",
            "[001-sandbox] SANDBOX-PID=1",
            "[flaky] FLAKY-RUN-1",
            "service flaky: exited with status 1; restarting in 2 s",
            "service flaky: exited with status 1; restarting in 4 s",
        ] {
            assert!(
                has(want),
                "{arch}: \"{want}\" missing from the console:\n{console}"
            );
        }
        assert!(
            !has("MEM-SURVIVED"),
            "{arch}: the memory limit was not enforced:\n{console}"
        );
        assert!(
            has("onboot 002-memory: exited with status 137")
                || has("onboot 002-memory: exited with status 141"),
            "{arch}: the memory hog was not killed:\n{console}"
        );
        let onboot_done = console.find("hull-init: onboot done").expect("onboot done");
        let first_service = console
            .find("service reader: starting")
            .expect("reader started");
        assert!(
            onboot_done < first_service,
            "{arch}: services started before onboot finished"
        );
        println!("{arch}: hull-init booted and ran every check");
    }
}
