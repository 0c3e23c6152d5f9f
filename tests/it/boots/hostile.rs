//! Hostile containers (tier 3): the probe image (`tests/pkgs/probe`: block
//! nodes for the virtio disk, symlinks aimed at host paths) boots under QEMU
//! TCG on x86_64 and aarch64 with a blank disk attached, and the console
//! shows the sandbox holding: a default container (no capabilities, uid 0)
//! cannot write `core_pattern` or `sysrq-trigger`, read `/proc/kcore`, list
//! `/sys/firmware`, `mknod` the disk or open the node its image ships; with
//! CAP_MKNOD a node made where it can write opens nothing; binds onto the
//! image's symlinks land inside its root, which is a real `pivot_root` (no
//! host mounts in its mountinfo); and the host, seen afterwards, has neither
//! the files the symlinks aimed at nor a changed `core_pattern`. With the
//! host's `/dev` bound in, the device filter keeps a container from the
//! disk unless its entry allows block devices (`path: all`). A symlink a
//! container plants where PID1 keeps another's working directory stops that
//! one from starting and touches nothing of the host. An entry's `sysctl`
//! is applied in its network namespace before `/proc/sys` turns read-only.
//! The root, `/run`, `/tmp` and the writable layers have size limits. A service
//! without a grant is refused by the control socket; one granted `read`
//! lists but cannot stop.

use crate::util;

use util::boot::{build_and_boot, package_refs};

fn manifest(kernel: &str, init: &str, getty: &str, probe: &str) -> String {
    format!(
        r#"kernel:
  image: {kernel}
  cmdline: "console=ttyS0 console=ttyAMA0 hull_tmp_size=3m hull_upper_size=5m"
init:
  - {init}
onboot:
  - name: probe
    image: {probe}
    capabilities: []
    binds: []
  - name: mknod
    image: {probe}
    capabilities: [CAP_MKNOD]
    binds: ["/run:/run"]
    command: ["/bin/probe-mknod"]
  - name: links
    image: {probe}
    capabilities: []
    binds: ["/etc/resolv.conf:/etc/resolv.conf", "/run:/data/x"]
    command: ["/bin/probe-links"]
  - name: host
    image: {getty}
    capabilities: []
    binds: ["/:/host:ro"]
    command: ["/bin/sh", "-c", "[ -e /host/pwned ] && echo HOST-PWNED-EXISTS; [ -e /host/etc/x ] && echo HOST-ETC-X-EXISTS; echo HOST-CORE-PATTERN=$(cat /proc/sys/kernel/core_pattern); echo HOST-DONE"]
  - name: devbind
    image: {probe}
    capabilities: []
    binds: ["/dev:/dev"]
    command: ["/bin/probe-dev", "BIND"]
  - name: devall
    image: {probe}
    capabilities: []
    binds: ["/dev:/dev"]
    devices:
      - path: all
        type: b
    command: ["/bin/probe-dev", "ALL"]
  - name: planter
    image: {probe}
    capabilities: []
    binds: ["/run:/run"]
    command: ["/bin/sh", "-c", "mkdir -p /run/hull/containers && rm -rf /run/hull/containers/007-victim && ln -s /etc /run/hull/containers/007-victim && echo PLANTED"]
  - name: victim
    image: {probe}
    capabilities: []
    binds: []
    command: ["/bin/sh", "-c", "echo VICTIM-RAN"]
  - name: hostafter
    image: {getty}
    capabilities: []
    pid: host
    binds: ["/:/host:ro"]
    command: ["/bin/sh", "-c", "ls /host/etc/rw /host/etc/root /host/etc/upper >/dev/null 2>&1 && echo HOSTAFTER-ETC-TOUCHED; awk '$2 == \"/\" || $2 == \"/run\" || $2 == \"/tmp\" {{ print \"HOSTAFTER-MOUNT\", $2, $4 }}' /proc/1/mounts; head -c 8000000 /dev/zero > /big 2>/dev/null && echo HOSTAFTER-UPPER-UNBOUNDED || echo HOSTAFTER-UPPER-FULL; echo HOSTAFTER-DONE"]
  - name: netsysctl
    image: {probe}
    capabilities: []
    net: new
    binds: []
    sysctl:
      net.ipv4.ip_forward: "1"
    command: ["/bin/sh", "-c", "echo SYSCTL-FORWARD=$(cat /proc/sys/net/ipv4/ip_forward); echo 0 > /proc/sys/net/ipv4/ip_forward 2>/dev/null && echo SYSCTL-WRITABLE || echo SYSCTL-READ-ONLY"]
services:
  - name: nogrant
    image: {probe}
    restart: "no"
    binds: ["/run:/run", "/usr/bin/hullctl:/usr/bin/hullctl"]
    command: ["/bin/sh", "-c", "hullctl list 2>&1; echo NOGRANT-RC=$?; echo > /run/nogrant-done"]
  - name: reader
    image: {probe}
    restart: "no"
    control: read
    binds: ["/run:/run", "/usr/bin/hullctl:/usr/bin/hullctl"]
    command: ["/bin/sh", "-c", "until [ -e /run/nogrant-done ]; do sleep 1; done; hullctl list | grep -q '^nogrant ' && echo READER-LISTED; hullctl stop nogrant 2>&1; echo READER-STOP-RC=$?; echo GRANTS-DONE"]
"#
    )
}

#[test]
fn hostile_containers_reach_nothing_of_the_host_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let refs = package_refs(
        &cache,
        &[
            "kernels/debian-cloud",
            "pkgs/init",
            "pkgs/getty",
            "tests/pkgs/probe",
        ],
    );
    std::fs::write(
        tmp.path().join("h.yml"),
        manifest(&refs[0], &refs[1], &refs[2], &refs[3]),
    )
    .expect("write");
    let disk = tmp.path().join("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(16 << 20))
        .expect("blank disk");
    let disk = disk.to_str().expect("utf-8");
    for arch in ["amd64", "arm64"] {
        let run = build_and_boot(
            &cache,
            tmp.path(),
            "h",
            arch,
            "GRANTS-DONE",
            300,
            &["--disk", disk],
        );
        let console = run.text;
        assert_eq!(
            run.code,
            Some(0),
            "{arch}: no GRANTS-DONE on the console:\n{console}"
        );
        for want in [
            "[000-probe] PROBE-CORE-PATTERN-DENIED",
            "[000-probe] PROBE-SYSRQ-DENIED",
            "[000-probe] PROBE-KCORE-BYTES=0",
            "[000-probe] PROBE-FIRMWARE-ENTRIES=0",
            // The disk is there, and the probe found the node for it.
            "[000-probe] PROBE-SHIPPED-NODE-DENIED",
            "[000-probe] PROBE-MKNOD-DENIED",
            "[001-mknod] MKNOD-NODE-DENIED-IN-/tmp",
            "[001-mknod] MKNOD-NODE-DENIED-IN-/run",
            "[001-mknod] MKNOD-NODE-DENIED-IN-/dev/shm",
            "[001-mknod] MKNOD-NODE-DENIED-IN-/dev",
            "[002-links] LINKS-OUTSIDE-MOUNTS=0",
            "[002-links] LINKS-ROOT=overlay",
            "[002-links] LINKS-BIND-INSIDE",
            "[002-links] LINKS-RESOLV-INSIDE",
            "hull-init: onboot 002-links: exited with status 0",
            "[003-host] HOST-CORE-PATTERN=core",
            // The device filter: the host's /dev bound in opens no disk
            // unless the entry allows block devices.
            "[004-devbind] DEV-BIND-DISK-DENIED",
            "[004-devbind] DEV-BIND-NULL-OK",
            "[005-devall] DEV-ALL-DISK-READ",
            "[005-devall] DEV-ALL-NULL-OK",
            // A symlink planted where PID1 keeps a container's working
            // directory: that container is not started, the host untouched.
            "[006-planter] PLANTED",
            "hull-init: 007-victim: resolve /run/hull/containers/007-victim: ",
            "hull-init: onboot 007-victim: exited with status 126",
            "[008-hostafter] HOSTAFTER-DONE",
            // tmpfs sizes: /tmp and each container's writable layer as the
            // kernel command line sets them, /run and the root as default.
            "[008-hostafter] HOSTAFTER-UPPER-FULL",
            // The entry's sysctl is written (in its own network namespace)
            // before /proc/sys becomes read-only.
            "[009-netsysctl] SYSCTL-FORWARD=1",
            "[009-netsysctl] SYSCTL-READ-ONLY",
            // The control socket: refused without a grant, reading only with `read`.
            "[nogrant] hullctl: this container may not ask that of hull-init (its control access is none, list needs read",
            "[nogrant] NOGRANT-RC=1",
            "[reader] READER-LISTED",
            "[reader] hullctl: this container may not ask that of hull-init (its control access is read, stop nogrant needs full",
            "[reader] READER-STOP-RC=1",
        ] {
            assert!(
                console.contains(want),
                "{arch}: \"{want}\" missing from the console:\n{console}"
            );
        }
        for never in [
            "WRITTEN",
            "READ-IN",
            "SHIPPED-NODE-READ",
            "MKNOD-ALLOWED",
            "HOST-PWNED-EXISTS",
            "HOST-ETC-X-EXISTS",
            "DEV-BIND-DISK-READ",
            "VICTIM-RAN",
            "HOSTAFTER-ETC-TOUCHED",
        ] {
            assert!(
                !console.contains(never),
                "{arch}: \"{never}\" on the console:\n{console}"
            );
        }
        let mount = |target: &str| {
            console
                .lines()
                .filter_map(|l| l.strip_prefix("[008-hostafter] HOSTAFTER-MOUNT "))
                .find_map(|l| l.strip_prefix(&format!("{target} ")))
                .unwrap_or("")
                .to_string()
        };
        assert!(
            mount("/tmp").contains("size=3072k"),
            "{arch}: /tmp {}",
            mount("/tmp")
        );
        for target in ["/", "/run"] {
            assert!(
                mount(target).contains("size="),
                "{arch}: {target} has no size limit: {}:\n{console}",
                mount(target)
            );
        }
        println!("{arch}: the hostile containers reached nothing of the host");
    }
}
