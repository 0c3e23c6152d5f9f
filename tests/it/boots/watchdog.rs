//! The watchdog: the manifest's `watchdog: {device: softdog, timeout: 5s}` arms it at
//! boot and PID1 feeds it; when PID1 stops feeding (`hullctl debug hang`
//! from a service with full control access) the machine resets within the
//! timeout; a clean poweroff disarms it and the machine stays off.
//! softdog, because Debian's cloud kernels have no i6300esb or iTCO driver
//! (docs/updates.md): the reset path is the kernel's, the feeding PID1's.

use crate::util;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use util::boot::Boot;

/// A kernel+initrd image with the watchdog armed; its service hangs PID1
/// when `hang`.
fn build(dir: &Path, arch: &str, hang: bool) -> PathBuf {
    let repo = util::repo();
    let repo = repo.display();
    let then = if hang {
        "sleep 3; hullctl debug hang; "
    } else {
        ""
    };
    let text = format!(
        r#"kernel:
  image: "@pkg:{repo}/kernels/debian-cloud"
  cmdline: "console=ttyS0 console=ttyAMA0"
watchdog:
  device: softdog
  timeout: 5s
init:
  - "@pkg:{repo}/pkgs/init"
services:
  - name: app
    image: "@pkg:{repo}/pkgs/getty"
    capabilities: []
    control: full
    binds: ["/run:/run", "/usr/bin/hullctl:/usr/bin/hullctl"]
    command: ["/bin/sh", "-c", "echo HULL-APP-UP; {then}exec sleep 2147483647"]
"#
    );
    let name = if hang { "hang" } else { "calm" };
    let manifest = dir.join(format!("{name}.yml"));
    std::fs::write(&manifest, text).expect("manifest");
    let out = dir.join(name);
    let cache = util::examples_cache();
    util::hull(&[
        "--cache",
        cache.to_str().expect("utf-8"),
        "build",
        "-q",
        "--arch",
        arch,
        "--dir",
        out.to_str().expect("utf-8"),
        manifest.to_str().expect("utf-8"),
    ])
    .expect_code(0);
    out.join(name)
}

/// When the kernel starts a second time (its banner again), within `timeout`.
fn second_boot(boot: &mut Boot, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if boot.text().matches("Linux version").count() >= 2 {
            return Some(Instant::now());
        }
        boot.wait_for("HULL-NEVER", Duration::from_millis(200));
    }
    None
}

#[test]
fn a_hung_pid1_is_reset_by_the_watchdog_and_a_clean_poweroff_is_not() {
    let tmp = tempfile::tempdir().expect("tmp");
    let arch = "amd64";
    let hang = build(tmp.path(), arch, true);
    let hang = hang.to_str().expect("utf-8");
    let mut boot = Boot::start(
        tmp.path(),
        &[
            "--arch",
            arch,
            "--reboot",
            "--expect",
            "HULL-NEVER",
            "--timeout",
            "600",
            hang,
        ],
    );
    let stopped = boot.wait_for("watchdog: no longer fed", Duration::from_secs(300));
    let armed = boot.text().contains("watchdog: /dev/watchdog0 armed, 5 s");
    let again = second_boot(&mut boot, Duration::from_secs(60));
    let took = stopped
        .zip(again)
        .map(|(a, b)| b.saturating_duration_since(a));
    assert!(
        armed && took.is_some_and(|t| t < Duration::from_secs(20)),
        "{arch}: the watchdog did not reset the hung machine in time ({took:?}):\n{}",
        boot.text()
    );
    println!(
        "{arch}: reset {:.1} s after PID1 stopped feeding a 5 s watchdog",
        took.map_or(0.0, |t| t.as_secs_f64())
    );
    drop(boot);

    let calm = build(tmp.path(), arch, false);
    let mut boot = Boot::start(
        tmp.path(),
        &[
            "--arch",
            arch,
            "--reboot",
            "--expect",
            "HULL-NEVER",
            "--timeout",
            "600",
            calm.to_str().expect("utf-8"),
        ],
    );
    assert!(
        boot.wait_for("HULL-APP-UP", Duration::from_secs(300))
            .is_some(),
        "{arch}: did not boot:\n{}",
        boot.text()
    );
    // Longer than the timeout: fed, it must not fire.
    std::thread::sleep(Duration::from_secs(12));
    boot.qmp("system_powerdown");
    let began = Instant::now();
    let (status, text) = boot.finish(Duration::from_secs(120));
    assert!(
        status.is_some()
            && text.contains("watchdog: disarmed")
            && text.matches("Linux version").count() == 1,
        "{arch}: a clean poweroff was not clean ({:?} after {:?}):\n{text}",
        status,
        began.elapsed()
    );
}
