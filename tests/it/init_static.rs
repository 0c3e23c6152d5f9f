//! `hull-init` builds as a static binary for x86_64 and aarch64 (with the
//! toolchains ci/setup installs), checked with `file`, and runs: natively on
//! x86_64, under qemu-aarch64-static on aarch64.

use std::path::Path;
use std::process::Command;

fn build(arch: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("ci/build-init"))
        .arg(arch)
        .output()
        .expect("bash runs ci/build-init");
    assert!(
        out.status.success(),
        "ci/build-init {arch} failed (run ci/setup first):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn file_type(path: &str) -> String {
    let out = Command::new("file")
        .arg("-b")
        .arg(path)
        .output()
        .expect("`file` is installed (ci/setup)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(arch: &str, machine: &str, runner: &[&str]) {
    let bin = build(arch);
    let kind = file_type(&bin);
    assert!(kind.contains(machine), "{bin} is not {machine}: {kind}");
    assert!(
        kind.contains("statically linked") || kind.contains("static-pie linked"),
        "{bin} is not static: {kind}"
    );
    let size = std::fs::metadata(&bin).expect("binary exists").len();
    println!("hull-init {arch}: {size} bytes, {}", kind.trim());
    let (prog, args) = match runner {
        [] => (bin.as_str(), Vec::new()),
        [first, rest @ ..] => {
            let mut a: Vec<&str> = rest.to_vec();
            a.push(&bin);
            (*first, a)
        }
    };
    let out = Command::new(prog)
        .args(args)
        .output()
        .expect("hull-init runs");
    let banner = String::from_utf8_lossy(&out.stdout);
    let want_arch = if arch == "amd64" { "x86_64" } else { "aarch64" };
    assert!(
        banner.starts_with("hull-init ") && banner.contains(want_arch),
        "unexpected banner from the {arch} binary: {banner:?}"
    );
}

#[test]
fn hull_init_is_static_on_x86_64() {
    check("amd64", "x86-64", &[]);
}

#[test]
fn hull_init_is_static_on_aarch64() {
    check("arm64", "ARM aarch64", &["qemu-aarch64-static"]);
}
