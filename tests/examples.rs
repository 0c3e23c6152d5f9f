//! Every manifest in examples/ validates, and examples/minimal.yml — its
//! packages and kernel built on first use through `@pkg:` — builds for amd64
//! and arm64 and boots under QEMU to its HULL-READY marker.

mod util;

use std::path::PathBuf;

use util::repo;

#[test]
fn examples_validate_and_minimal_boots_on_both_arches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let cache = cache.to_str().expect("utf-8");
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    examples.sort();
    assert!(!examples.is_empty());
    for e in &examples {
        util::hull_in(&repo(), &["validate", e.to_str().expect("utf-8")], &[]).expect_code(0);
    }
    for (arch, uname) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let out = tmp.path().join(format!("out-{arch}"));
        let built = util::hull_in(
            &repo(),
            &[
                "--cache",
                cache,
                "build",
                "--arch",
                arch,
                "--dir",
                out.to_str().expect("utf-8"),
                "examples/minimal.yml",
            ],
            &[],
        )
        .expect_code(0);
        assert!(
            built.stdout.contains("minimal-initrd.img"),
            "{}",
            built.stdout
        );
        let run = util::hull_in(
            &repo(),
            &[
                "run",
                "qemu",
                "--arch",
                arch,
                "--expect",
                "HULL-READY",
                "--timeout",
                "300",
                out.join("minimal").to_str().expect("utf-8"),
            ],
            &[],
        );
        assert_eq!(
            run.code,
            Some(0),
            "{arch}: no HULL-READY:\n{}\n{}",
            run.stdout,
            run.stderr
        );
        assert!(
            run.stdout
                .contains(&format!("[000-hello] hello from onboot on {uname}")),
            "{arch}:\n{}",
            run.stdout
        );
    }
}
