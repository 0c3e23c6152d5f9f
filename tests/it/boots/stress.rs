//! Supervision under stress (tier 3): one image, amd64 and arm64 (TCG), with
//! a crash-looping service, twenty quiet ones, one printing a byte that is
//! not UTF-8 and then a 64 MiB line without a newline, and a fork bomb. The
//! console shows the crash loop restarted with backoff while the twenty
//! start, the noisy service alive after its line (cut on the console) with
//! PID1's RSS under 16 MiB, and the fork bomb held by the default pids limit
//! while `hullctl` answers from another container and stops it.

use crate::util;

use util::boot::{build_and_boot, package_refs};

fn manifest(kernel: &str, init: &str, busybox: &str) -> String {
    let mut quiet = String::new();
    for i in 1..=20 {
        quiet.push_str(&format!(
            "  - name: quiet{i:02}\n    image: {busybox}\n    capabilities: []\n    binds: []\n    command: [\"/bin/sh\", \"-c\", \"echo UP-{i:02}; exec sleep 2147483647\"]\n"
        ));
    }
    format!(
        r#"kernel:
  image: {kernel}
  cmdline: "console=ttyS0 console=ttyAMA0"
init:
  - {init}
services:
  - name: crashloop
    image: {busybox}
    capabilities: []
    binds: ["/run:/run"]
    restart: always
    command: ["/bin/sh", "-c", "echo run >> /run/crash-runs; echo CRASH-RUN; exit 1"]
  - name: noisy
    image: {busybox}
    capabilities: []
    binds: ["/run:/run"]
    command: ["/bin/sh", "-c", "printf 'BAD-BYTE-\\377-HERE\\n'; yes xxxxxxxxxxxxxxx | tr -d '\\n' | head -c 67108864; printf '\\nNOISY-ALIVE\\n'; touch /run/noisy-done; exec sleep 2147483647"]
  - name: bomb
    image: {busybox}
    capabilities: []
    binds: ["/run:/run"]
    command: ["/bin/sh", "-c", "touch /run/bomb-started; b() {{ b | b & }}; b; exec sleep 2147483647"]
  - name: ctl
    image: {busybox}
    capabilities: []
    pid: host
    restart: "no"
    binds: ["/run:/run", "/usr/bin/hullctl:/usr/bin/hullctl"]
    command: ["/bin/sh", "-c", "until [ -e /run/noisy-done ] && [ -e /run/bomb-started ] && [ $(grep -c run /run/crash-runs) -ge 3 ]; do sleep 1; done; sleep 5; echo CTL-RUNNING=$(hullctl list | grep -cE ' service +running '); echo CTL-BOMB-PIDS=$(cat /sys/fs/cgroup/hull/bomb/pids.current 2>/dev/null || echo unknown); hullctl stop bomb; echo CTL-PID1-RSS-KB=$(awk '/^VmRSS/ {{ print $2 }}' /proc/1/status); echo CTL-DONE"]
{quiet}"#
    )
}

#[test]
fn supervision_holds_under_crash_loops_floods_and_a_fork_bomb_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let refs = package_refs(&cache, &["kernels/debian-cloud", "pkgs/init", "pkgs/getty"]);
    std::fs::write(
        tmp.path().join("s.yml"),
        manifest(&refs[0], &refs[1], &refs[2]),
    )
    .expect("write");
    for arch in ["amd64", "arm64"] {
        let run = build_and_boot(
            &cache,
            tmp.path(),
            "s",
            arch,
            "CTL-DONE",
            420,
            &["--mem", "1024"],
        );
        let console = run.text;
        assert_eq!(
            run.code,
            Some(0),
            "{arch}: no CTL-DONE on the console:\n{}",
            tail(&console)
        );
        let figures = check(arch, &console);
        println!("{arch}: supervision held: {figures}");
    }
}

/// The end of a long console, for failure messages.
fn tail(console: &str) -> &str {
    let start = console.len().saturating_sub(20_000);
    let start = (start..console.len())
        .find(|&i| console.is_char_boundary(i))
        .unwrap_or(0);
    &console[start..]
}

/// Checks the console; returns the figures measured, for the test output.
fn check(arch: &str, console: &str) -> String {
    let has = |s: &str| console.contains(s);
    for i in 1..=20 {
        let want = format!("[quiet{i:02}] UP-{i:02}");
        assert!(has(&want), "{arch}: \"{want}\" missing:\n{}", tail(console));
    }
    for want in [
        "service crashloop: exited with status 1; restarting in 2 s",
        "service crashloop: exited with status 1; restarting in 4 s",
        // The byte that is not UTF-8 shown as a replacement character, and
        // the service still printing after its 64 MiB line.
        "[noisy] BAD-BYTE-\u{fffd}-HERE",
        "[noisy] [...] (a line of 67108864 bytes, cut to 16384 here)",
        "[noisy] NOISY-ALIVE",
        // Twenty quiet services and the noisy one (the bomb's own pid 1 may
        // have been starved of a fork, but it runs).
        "[ctl] CTL-RUNNING=",
        "[ctl] bomb: stopped (status",
    ] {
        assert!(has(want), "{arch}: \"{want}\" missing:\n{}", tail(console));
    }
    assert!(
        console.matches("[crashloop] CRASH-RUN").count() >= 3,
        "{arch}: the crash loop was not restarted:\n{}",
        tail(console)
    );
    let value = |key: &str| -> Option<u64> {
        console
            .lines()
            .find_map(|l| l.strip_prefix(&format!("[ctl] {key}=")))
            .and_then(|v| v.trim().parse().ok())
    };
    let running = value("CTL-RUNNING").unwrap_or(0);
    assert!(
        running >= 22,
        "{arch}: only {running} services running:\n{}",
        tail(console)
    );
    let pids = value("CTL-BOMB-PIDS");
    assert!(
        pids.is_some_and(|p| p <= 1024),
        "{arch}: the bomb's cgroup holds {pids:?} tasks"
    );
    let rss = value("CTL-PID1-RSS-KB");
    assert!(
        rss.is_some_and(|kb| kb < 16 * 1024),
        "{arch}: PID1's RSS is {rss:?} kB:\n{}",
        tail(console)
    );
    format!(
        "{running} services running, the bomb's cgroup at {} tasks, PID1's RSS {} kB",
        pids.unwrap_or(0),
        rss.unwrap_or(0)
    )
}
