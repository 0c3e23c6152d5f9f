//! Every manifest in examples/ validates, and each example — its packages
//! and kernel built on first use through `@pkg:` — builds for amd64 and arm64
//! and boots under QEMU to what it is for: minimal's marker, a shell on the
//! getty console, an SSH login through a published port, the appliance's
//! page served and its data kept across two boots, the IoT telemetry with its
//! sysctl settings applied.
//!
//! The examples share one cache under Cargo's test temp directory
//! (`util::examples_cache`).

use crate::util;

use std::path::Path;
use std::time::Duration;

use util::boot::{free_port, Boot};

const ARCHES: [(&str, &str); 2] = [("amd64", "x86_64"), ("arm64", "aarch64")];
const BOOT: Duration = Duration::from_secs(300);

/// Builds `examples/NAME.yml` for `arch` into `out`; the image prefix.
fn build(name: &str, arch: &str, out: &Path, env: &[(&str, &str)]) -> String {
    util::build_example(name, arch, out, &[], env).expect_code(0);
    out.join(name).to_str().expect("utf-8").to_string()
}

#[test]
fn minimal_boots_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (arch, uname) in ARCHES {
        let prefix = build("minimal", arch, tmp.path(), &[]);
        let mut boot = Boot::start(
            tmp.path(),
            &["--arch", arch, "--expect", "HULL-READY", &prefix],
        );
        assert!(
            boot.wait_for("HULL-READY", BOOT).is_some(),
            "{arch}: no HULL-READY:\n{}",
            boot.text()
        );
        assert!(
            boot.wait_for(
                &format!("[000-hello] hello from onboot on {uname}"),
                Duration::ZERO
            )
            .is_some(),
            "{arch}:\n{}",
            boot.text()
        );
    }
}

#[test]
fn getty_gives_a_root_shell_with_hullctl_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (arch, uname) in ARCHES {
        let prefix = build("getty", arch, tmp.path(), &[]);
        let mut boot = Boot::start(tmp.path(), &["--arch", arch, "--expect", "NEVER", &prefix]);
        assert!(
            boot.wait_for("service getty: starting", BOOT).is_some(),
            "{arch}: getty never started:\n{}",
            boot.text()
        );
        // The typed line is echoed as typed; only a shell prints "SHELL 42".
        assert!(
            boot.type_until(
                "echo SHELL $((6*7)) $(uname -m); hullctl list",
                &format!("SHELL 42 {uname}"),
                Duration::from_secs(120)
            ),
            "{arch}: no shell on the console:\n{}",
            boot.text()
        );
        assert!(
            boot.wait_for("000-dhcpcd  onboot", Duration::from_secs(30))
                .is_some(),
            "{arch}: hullctl list did not answer:\n{}",
            boot.text()
        );
        assert!(
            boot.text().contains("dhcp: eth0 10.0.2.15"),
            "{arch}: no DHCP lease:\n{}",
            boot.text()
        );
    }
}

#[test]
fn sshd_takes_a_login_through_the_published_port_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    // The example takes ~/.ssh/id_ed25519.pub: give it a home with a key.
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).expect("mkdir");
    let key = home.join(".ssh/id_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(made.success());
    // Package builds run cargo, which finds its toolchain through HOME.
    let real_home = std::env::var("HOME").expect("HOME");
    let rustup = std::env::var("RUSTUP_HOME").unwrap_or(format!("{real_home}/.rustup"));
    let cargo = std::env::var("CARGO_HOME").unwrap_or(format!("{real_home}/.cargo"));
    let env = [
        ("HOME", home.to_str().expect("utf-8")),
        ("RUSTUP_HOME", rustup.as_str()),
        ("CARGO_HOME", cargo.as_str()),
    ];
    for (arch, uname) in ARCHES {
        let prefix = build("sshd", arch, tmp.path(), &env);
        let port = free_port();
        let publish = format!("{port}:22");
        let mut boot = Boot::start(
            tmp.path(),
            &[
                "--arch",
                arch,
                "--publish",
                &publish,
                "--expect",
                "NEVER",
                &prefix,
            ],
        );
        assert!(
            boot.wait_for("[sshd]", BOOT).is_some(),
            "{arch}: sshd never started:\n{}",
            boot.text()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        let mut last = String::new();
        let output = loop {
            let out = std::process::Command::new("ssh")
                .arg("-i")
                .arg(&key)
                .args([
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "ConnectTimeout=60",
                    "-p",
                    &port.to_string(),
                    "root@127.0.0.1",
                    "echo SSH-$((6*7)) $(uname -m) $(id -u)",
                ])
                .output()
                .expect("ssh runs");
            if out.status.success() {
                break String::from_utf8_lossy(&out.stdout).into_owned();
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                std::time::Instant::now() < deadline,
                "{arch}: no ssh login: {last}\n{}",
                boot.text()
            );
            std::thread::sleep(Duration::from_secs(3));
        };
        assert_eq!(
            output.trim(),
            format!("SSH-42 {uname} 0"),
            "{arch} ({last})"
        );
        assert!(
            boot.wait_for("Pubkey auth succeeded for 'root'", Duration::from_secs(10))
                .is_some(),
            "{arch}:\n{}",
            boot.text()
        );
        boot.qmp("quit");
    }
}

#[test]
fn appliance_serves_its_page_and_keeps_data_across_boots_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (arch, uname) in ARCHES {
        let prefix = build("appliance", arch, tmp.path(), &[]);
        let disk = tmp.path().join(format!("data-{arch}.img"));
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len(128 << 20))
            .expect("blank disk");
        let disk = disk.to_str().expect("utf-8");
        for n in 1..=2 {
            let port = free_port();
            let publish = format!("{port}:80");
            let mut boot = Boot::start(
                tmp.path(),
                &[
                    "--arch",
                    arch,
                    "--disk",
                    disk,
                    "--publish",
                    &publish,
                    "--expect",
                    "NEVER",
                    &prefix,
                ],
            );
            assert!(
                boot.wait_for(&format!("[web] APPLIANCE-BOOT-{n}"), BOOT)
                    .is_some(),
                "{arch}: boot {n} not counted:\n{}",
                boot.text()
            );
            let first = if n == 1 {
                "[001-format] format: making ext4 labelled hull-data on /dev/vda"
            } else {
                "[001-format] format: /dev/vda is in use (not blank): left alone"
            };
            let text = boot.text();
            assert!(text.contains(first), "{arch} boot {n}:\n{text}");
            assert!(
                text.contains("[002-mount] mount: /dev/vda on /var/lib"),
                "{arch} boot {n}:\n{text}"
            );
            let page = fetch(port, Duration::from_secs(120));
            assert_eq!(
                page.trim(),
                format!("<h1>Hull appliance on {uname}: boot {n}</h1>"),
                "{arch} boot {n}:\n{}",
                boot.text()
            );
            // A clean power off on amd64 (ACPI); arm64 has no power button
            // without UEFI, and the service synced its data already.
            if arch == "amd64" {
                boot.qmp("system_powerdown");
                let (status, text) = boot.finish(Duration::from_secs(60));
                assert!(status.is_some(), "{arch}: no power off:\n{text}");
                assert!(text.contains("hull-init: bye"), "{arch}:\n{text}");
                assert!(!text.contains("shutdown: "), "{arch}: unclean:\n{text}");
            } else {
                boot.qmp("quit");
            }
        }
        // After amd64's clean power offs the filesystem must be clean
        // (arm64's was cut off by `quit`: its journal is replayed at mount).
        if arch == "amd64" {
            let check = std::process::Command::new("fsck.ext4")
                .args(["-n", "-f", disk])
                .output()
                .expect("fsck.ext4 runs");
            assert!(
                check.status.success(),
                "{arch}: fsck.ext4 -n: {}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
}

/// GET / from 127.0.0.1:PORT, retried until it answers.
fn fetch(port: u16, timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let out = std::process::Command::new("curl")
            .args(["-s", "-f", "-m", "10", &format!("http://127.0.0.1:{port}/")])
            .output()
            .expect("curl runs");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer on port {port}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn iot_image_applies_its_sysctls_and_runs_telemetry_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (arch, uname) in ARCHES {
        let prefix = build("iot-arm64", arch, tmp.path(), &[]);
        let mut boot = Boot::start(tmp.path(), &["--arch", arch, "--expect", "NEVER", &prefix]);
        let want = format!("[telemetry] IOT-READY on {uname}, kernel.panic=10 vm.swappiness=10");
        assert!(
            boot.wait_for(&want, BOOT).is_some(),
            "{arch}: no \"{want}\":\n{}",
            boot.text()
        );
        assert!(
            boot.wait_for("[telemetry] uptime ", Duration::from_secs(30))
                .is_some(),
            "{arch}:\n{}",
            boot.text()
        );
        assert!(boot
            .text()
            .contains("[000-sysctl] sysctl: applying /etc/sysctl.d/10-iot.conf"));
    }
}
