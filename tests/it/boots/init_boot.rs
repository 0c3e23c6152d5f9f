//! hull-init boot tests (tier 3): an image built from Hull's own packages
//! (Debian's cloud kernel, the init package, the busybox getty image) boots
//! under QEMU TCG on x86_64 and aarch64, and the console shows hull-init
//! doing its work: onboot before services (a file written by one is read by
//! the other), a service that fails twice restarted with backoff and then up,
//! a container without CAP_NET_ADMIN refused a link change, a read-only root
//! refusing a write, a new pid namespace seen from inside, and a memory limit
//! enforced by the container's cgroup; runtime.json's interfaces (a veth
//! pair, one end in the container), bindNS (a service joins that network
//! namespace by path) and mkdir; seccomp filters (Hull's `seccomp:` extension)
//! with and without no_new_privs; a non-root container with one capability
//! (bounding set 0x400, nothing inheritable); hullctl list/logs/restart/stop.

use crate::util;

use util::repo;

use util::boot::{build_and_boot, package_refs};
use util::hull_cached as hull;

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
  - name: netns
    image: {busybox}
    net: new
    binds: []
    runtime:
      mkdir: ["/run/made-by-runtime"]
      interfaces:
        - name: hullc0
          add: veth
          peer: hullh0
      bindNS:
        net: /run/netns/demo
    command: ["/bin/sh", "-c", "ip link show hullc0 >/dev/null && echo IFACE-IN-CONTAINER; ip link show hullh0 >/dev/null 2>&1 || echo PEER-NOT-HERE"]
  - name: seccomp
    image: {busybox}
    binds: []
    seccomp:
      defaultAction: SCMP_ACT_ALLOW
      syscalls:
        - names: [mkdir, mkdirat]
          action: SCMP_ACT_ERRNO
          errnoRet: 1
    command: ["/bin/sh", "-c", "mkdir /tmp/x 2>/dev/null && echo SECCOMP-MKDIR-ALLOWED || echo SECCOMP-MKDIR-DENIED; echo SECCOMP-ALIVE"]
  - name: seccompnnp
    image: {busybox}
    binds: []
    noNewPrivileges: true
    seccomp:
      defaultAction: SCMP_ACT_ALLOW
      syscalls:
        - names: [mkdir, mkdirat]
          action: SCMP_ACT_ERRNO
          errnoRet: 13
    command: ["/bin/sh", "-c", "mkdir /tmp/y 2>&1; echo NNP-ALIVE"]
  - name: nonroot
    image: {busybox}
    uid: 1000
    gid: 1000
    capabilities: [CAP_NET_BIND_SERVICE]
    binds: ["/var/log:/mnt/log:nosuid,nodev"]
    command: ["/bin/sh", "-c", "awk '/^Cap(Bnd|Inh)/ {{ print \"NONROOT-\" $1 $2 }}' /proc/self/status; awk '$5 == \"/mnt/log\" {{ print \"NONROOT-BIND=\" $6 }}' /proc/self/mountinfo; echo NONROOT-UID=$(id -u)"]
services:
  - name: joiner
    image: {busybox}
    net: /run/netns/demo
    binds: ["/run:/run"]
    restart: "no"
    command: ["/bin/sh", "-c", "ip link show hullc0 >/dev/null && echo JOINED-NETNS; [ -d /run/made-by-runtime ] && echo MKDIR-DONE"]
  - name: reader
    image: {busybox}
    binds: ["/run:/run"]
    command: ["/bin/sh", "-c", "echo READ-$(cat /run/order); echo run >> /run/reader-runs; exec sleep 1000"]
  - name: flaky
    image: {busybox}
    binds: ["/run:/run"]
    restart: on-failure
    command: ["/bin/sh", "-c", "n=$(cat /run/flaky 2>/dev/null || echo 0); n=$((n+1)); echo $n > /run/flaky; echo FLAKY-RUN-$n; [ $n -ge 3 ] && exec sleep 1000; exit 1"]
  - name: ctl
    image: {busybox}
    binds: ["/run:/run", "/usr/bin/hullctl:/usr/bin/hullctl"]
    restart: "no"
    command: ["/bin/sh", "-c", "until [ \"$(cat /run/flaky 2>/dev/null)\" = 3 ]; do sleep 1; done; sleep 2; hullctl list; hullctl logs flaky; hullctl restart reader; until [ \"$(grep -c run /run/reader-runs)\" = 2 ]; do sleep 1; done; hullctl stop reader; hullctl list | grep ^reader; hullctl restart nosuch; echo CTL-RC=$?; ip link show hullh0 >/dev/null && echo PEER-ON-HOST; echo CTL-DONE"]
"#
    )
}

#[test]
fn hull_init_runs_onboot_services_and_sandboxes_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let refs = package_refs(&cache, &["kernels/debian-cloud", "pkgs/init", "pkgs/getty"]);
    std::fs::write(
        tmp.path().join("m.yml"),
        manifest(&refs[0], &refs[1], &refs[2]),
    )
    .expect("write");
    for arch in ["amd64", "arm64"] {
        let run = build_and_boot(&cache, tmp.path(), "m", arch, "CTL-DONE", 300, &[]);
        let console = run.text;
        assert_eq!(
            run.code,
            Some(0),
            "{arch}: no CTL-DONE on the console:\n{console}"
        );
        let has = |s: &str| console.contains(s);
        for want in [
            "hull-init: modules: loaded",
            "hull-init: onboot 000-writer: exited with status 0",
            "[reader] READ-from-onboot",
            "[001-sandbox] NETADMIN-DENIED",
            "[001-sandbox] RO-DENIED",
            "[001-sandbox] SANDBOX-PID=1",
            // A non-root container with one capability starts (the
            // bounding set is lowered before the uid change), with nothing
            // inheritable.
            "hull-init: onboot 006-nonroot: exited with status 0",
            "[006-nonroot] NONROOT-CapBnd:0000000000000400",
            "[006-nonroot] NONROOT-CapInh:0000000000000000",
            "[006-nonroot] NONROOT-UID=1000",
            // Its bind with nosuid,nodev (and no ro) is mounted so.
            "[006-nonroot] NONROOT-BIND=rw,nosuid,nodev",
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
        // hullctl, from inside a container: the flaky service was restarted
        // twice after failing and is up now; logs, restart and stop work.
        // A row is a container's line in the last `hullctl list` that shows it.
        let row = |name: &str| -> Vec<String> {
            console
                .lines()
                .filter_map(|l| l.strip_prefix("[ctl] "))
                .rfind(|l| l.split_whitespace().next() == Some(name))
                .map(|l| l.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let flaky = row("flaky");
        assert!(
            flaky.len() == 6
                && flaky[1..3] == ["service", "running"]
                && flaky[3].parse::<u32>().is_ok()
                && flaky[4..] == ["2", "1"],
            "{arch}: hullctl list shows flaky as {flaky:?}:\n{console}"
        );
        assert_eq!(row("000-writer")[1..], ["onboot", "exited", "-", "-", "0"]);
        for want in [
            "[ctl] FLAKY-RUN-2",
            "[ctl] reader: started (pid",
            "[ctl] reader: stopped (status 143)",
            "[ctl] hullctl: no service \"nosuch\"",
            "[ctl] CTL-RC=1",
            "[004-seccomp] SECCOMP-MKDIR-DENIED",
            "[004-seccomp] SECCOMP-ALIVE",
            "[005-seccompnnp] mkdir: can't create directory '/tmp/y': Permission denied",
            "[005-seccompnnp] NNP-ALIVE",
            "[003-netns] IFACE-IN-CONTAINER",
            "[003-netns] PEER-NOT-HERE",
            "[joiner] JOINED-NETNS",
            "[joiner] MKDIR-DONE",
            "[ctl] PEER-ON-HOST",
        ] {
            assert!(has(want), "{arch}: \"{want}\" missing:\n{console}");
        }
        assert_eq!(
            console.matches("[reader] READ-from-onboot").count(),
            2,
            "{arch}: reader did not run twice:\n{console}"
        );
        let reader = row("reader");
        assert_eq!(reader[1..3], ["service", "stopped"], "{arch}: {reader:?}");
        println!("{arch}: hull-init booted and ran every check");
    }
}

/// QEMU's `system_powerdown` (the ACPI power button): hull-init stops the
/// services, runs the onshutdown container, powers off, and QEMU exits within
/// 10 s of the onshutdown container's output. On x86_64 with the default
/// firmware; on aarch64 booted through UEFI (`--uefi`, AAVMF), which gives
/// the kernel ACPI and so a power button.
#[test]
fn power_button_runs_onshutdown_and_powers_off() {
    use std::time::{Duration, Instant};
    use util::boot::Boot;

    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let r = repo();
    let text = format!(
        "kernel:\n  image: \"@pkg:{k}\"\n  cmdline: \"console=ttyS0 console=ttyAMA0\"\ninit:\n  - \"@pkg:{i}\"\n\
         onshutdown:\n  - name: goodbye\n    image: \"@pkg:{g}\"\n    capabilities: []\n    binds: []\n    command: [\"/bin/sh\", \"-c\", \"echo HULL-ONSHUTDOWN-RAN\"]\n\
         services:\n  - name: ready\n    image: \"@pkg:{g}\"\n    capabilities: []\n    binds: []\n    command: [\"/bin/sh\", \"-c\", \"echo HULL-READY; exec sleep 2147483647\"]\n",
        k = r.join("kernels/debian-cloud").display(),
        i = r.join("pkgs/init").display(),
        g = r.join("pkgs/getty").display(),
    );
    std::fs::write(tmp.path().join("pd.yml"), text).expect("write");
    for (arch, firmware) in [("amd64", None), ("arm64", Some("--uefi"))] {
        let dir = tmp.path().join(arch);
        let out = dir.to_str().expect("utf-8");
        hull(
            &cache,
            tmp.path(),
            &["build", "--arch", arch, "--dir", out, "pd.yml"],
        )
        .expect_code(0);
        let prefix = dir.join("pd");
        let mut args = vec![
            "--arch",
            arch,
            "--expect",
            "HULL-ONSHUTDOWN-RAN",
            "--until-exit",
            "--timeout",
            "400",
        ];
        args.extend(firmware);
        args.push(prefix.to_str().expect("utf-8"));
        let mut boot = Boot::start(tmp.path(), &args);
        assert!(
            boot.wait_for("HULL-READY", Duration::from_secs(300))
                .is_some(),
            "{arch}: never ready:\n{}",
            boot.text()
        );
        // The power button is found early in the boot, before the services.
        assert!(
            boot.text().contains("hull-init: power button:"),
            "{arch}: no power button:\n{}",
            boot.text()
        );
        boot.qmp("system_powerdown");
        let ran = boot
            .wait_for("HULL-ONSHUTDOWN-RAN", Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{arch}: onshutdown never ran:\n{}", boot.text()));
        let (status, all) = boot.finish(Duration::from_secs(30));
        let exited = Instant::now();
        assert!(
            status.is_some_and(|s| s.success()),
            "{arch}: QEMU did not power off by itself:\n{all}"
        );
        assert!(
            exited.duration_since(ran) < Duration::from_secs(10),
            "{arch}: QEMU took {:?} after onshutdown",
            exited.duration_since(ran)
        );
        for want in [
            "hull-init: power button pressed",
            "service ready: stopping",
            "hull-init: bye",
        ] {
            assert!(all.contains(want), "{arch}: \"{want}\" missing:\n{all}");
        }
    }
}
