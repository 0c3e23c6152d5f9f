//! `hull pkg build` / `show-tag`: content tags, reproducible images, what skopeo
//! and umoci read from them, binaries of the right architecture, and a failing
//! build step that leaves the cache untouched.

use crate::util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::registry::run;

use util::repo;

fn hull(cache: &Path, args: &[&str]) -> util::Run {
    let mut all = vec!["--cache", cache.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    util::hull_in(&repo(), &all, &[])
}

/// Copies pkgs/getty and pkgs/lib into `dir`, as another checkout would have them.
fn copy_getty(dir: &Path) -> PathBuf {
    run(Command::new("cp")
        .arg("-r")
        .arg(repo().join("pkgs"))
        .arg(dir));
    dir.join("pkgs/getty")
}

#[test]
fn same_sources_same_tag_and_digests_in_two_caches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");
    let (ga, gb) = (copy_getty(&a), copy_getty(&b));
    let cache_a = tmp.path().join("cache-a");
    let cache_b = tmp.path().join("cache-b");
    let tag_a = hull(&cache_a, &["pkg", "show-tag", ga.to_str().expect("utf-8")])
        .expect_code(0)
        .stdout;
    let tag_b = hull(&cache_b, &["pkg", "show-tag", gb.to_str().expect("utf-8")])
        .expect_code(0)
        .stdout;
    assert_eq!(
        tag_a, tag_b,
        "the tag does not depend on where the checkout is"
    );
    assert!(tag_a.starts_with("docker.io/hull/getty:"), "{tag_a}");
    let out_a = hull(&cache_a, &["pkg", "build", ga.to_str().expect("utf-8")])
        .expect_code(0)
        .stdout;
    let out_b = hull(&cache_b, &["pkg", "build", gb.to_str().expect("utf-8")])
        .expect_code(0)
        .stdout;
    assert_eq!(out_a, out_b, "same index digest from two clean caches");

    // A changed source changes the tag.
    std::fs::write(
        ga.join("build.sh"),
        format!(
            "{}\n# changed\n",
            std::fs::read_to_string(ga.join("build.sh")).expect("read")
        ),
    )
    .expect("write");
    let tag_c = hull(&cache_a, &["pkg", "show-tag", ga.to_str().expect("utf-8")])
        .expect_code(0)
        .stdout;
    assert_ne!(tag_a, tag_c);

    // skopeo reads the index; each entry names its architecture.
    let reference = tag_b.trim();
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:{reference}", cache_b.display())));
    let index: serde_json::Value = serde_json::from_str(&raw).expect("json");
    let arches: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["platform"]["architecture"].as_str())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    for (arch, machine) in [("amd64", "x86-64"), ("arm64", "ARM aarch64")] {
        let inspect = run(Command::new("skopeo")
            .args(["inspect", "--override-arch", arch])
            .arg(format!("oci:{}:{reference}", cache_b.display())));
        assert!(
            inspect.contains(&format!("\"Architecture\": \"{arch}\"")),
            "{inspect}"
        );
        // umoci unpacks the arch's image (copied out of the index by skopeo).
        let layout = tmp.path().join(format!("layout-{arch}"));
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--override-arch", arch])
            .arg(format!("oci:{}:{reference}", cache_b.display()))
            .arg(format!("oci:{}:x", layout.display())));
        let bundle = tmp.path().join(format!("bundle-{arch}"));
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:x", layout.display()))
            .arg(&bundle));
        let kind = run(Command::new("file")
            .arg("-b")
            .arg(bundle.join("rootfs/bin/busybox")));
        assert!(kind.contains(machine), "{arch} busybox is {kind}");
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).expect("config"))
                .expect("json");
        assert_eq!(
            config["process"]["args"],
            serde_json::json!(["/bin/getty-console"])
        );
        assert!(bundle.join("rootfs/bin/getty-console").exists());
    }
}

#[test]
fn a_failing_build_step_shows_its_output_and_leaves_the_cache_alone() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let getty = copy_getty(tmp.path());
    hull(&cache, &["pkg", "build", getty.to_str().expect("utf-8")]).expect_code(0);
    let snapshot = |c: &Path| {
        let index = std::fs::read(c.join("index.json")).expect("index");
        let mut blobs: Vec<String> = std::fs::read_dir(c.join("blobs/sha256"))
            .expect("blobs")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        blobs.sort();
        (index, blobs)
    };
    let before = snapshot(&cache);
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    std::fs::write(bad.join("build.yml"), "image: hull/bad\n").expect("write");
    std::fs::write(bad.join("build.sh"), "echo making the root\nmkdir -p \"$ROOTFS/etc\"\necho 'cc: error: no such file' >&2\nexit 3\n").expect("write");
    let out = hull(&cache, &["pkg", "build", bad.to_str().expect("utf-8")]).expect_code(1);
    assert!(
        out.stderr.contains("build step build.sh failed for amd64")
            && out.stderr.contains("exit status: 3")
            && out.stderr.contains("making the root")
            && out.stderr.contains("cc: error: no such file"),
        "{}",
        out.stderr
    );
    assert!(snapshot(&cache) == before, "the cache is unchanged");

    // And build.yml mistakes are reported like manifest mistakes.
    std::fs::write(bad.join("build.yml"), "image: hull/bad\narches: [amd64, sparc]\nconfig:\n  capabilities: [CAP_NOPE]\nbuidl: x.sh\n").expect("write");
    let out = hull(&cache, &["pkg", "show-tag", bad.to_str().expect("utf-8")]).expect_code(1);
    assert!(
        out.stderr
            .contains("build.yml:4:18: capabilities: unknown capability \"CAP_NOPE\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "build.yml:5:1: unknown field \"buidl\" in build.yml, did you mean \"build\"?"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("build.yml:2:17: arches: unknown architecture \"sparc\""),
        "{}",
        out.stderr
    );
}

#[test]
fn push_sends_the_multi_arch_image_to_a_registry() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = util::registry::TestRegistry::start();
    let cache = tmp.path().join("cache");
    let getty = copy_getty(tmp.path());
    let shown = hull(
        &cache,
        &[
            "pkg",
            "show-tag",
            "--registry",
            &reg.addr,
            getty.to_str().expect("utf-8"),
        ],
    )
    .expect_code(0)
    .stdout;
    let reference = shown.trim();
    assert!(
        reference.starts_with(&format!("{}/hull/getty:", reg.addr)),
        "{reference}"
    );
    let out = hull(
        &cache,
        &[
            "pkg",
            "build",
            "--registry",
            &reg.addr,
            "--push",
            getty.to_str().expect("utf-8"),
        ],
    )
    .expect_code(0);
    let digest = out
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("digest")
        .to_string();
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")));
    use sha2::Digest as _;
    assert_eq!(
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(raw.as_bytes()))
        ),
        digest,
        "the registry serves the same index"
    );
    for arch in ["amd64", "arm64"] {
        let inspect = run(Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--override-arch", arch])
            .arg(format!("docker://{reference}")));
        assert!(
            inspect.contains(&format!("\"Architecture\": \"{arch}\"")),
            "{inspect}"
        );
    }
    // Built again: the tag is cached, nothing is rebuilt, the push finds every blob.
    let again = hull(
        &cache,
        &[
            "pkg",
            "build",
            "--registry",
            &reg.addr,
            "--push",
            getty.to_str().expect("utf-8"),
        ],
    )
    .expect_code(0);
    assert!(
        again.stderr.contains("is in the cache") && !again.stderr.contains("building"),
        "{}",
        again.stderr
    );
}

#[test]
fn a_long_build_step_says_how_long_and_what_it_is_doing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let slow = tmp.path().join("slow");
    std::fs::create_dir_all(&slow).expect("mkdir");
    std::fs::write(slow.join("build.yml"), "image: hull/slow\n").expect("write");
    std::fs::write(
        slow.join("build.sh"),
        "echo compiling part 1 of 2\nsleep 16\necho compiling part 2 of 2\nmkdir -p \"$ROOTFS/etc\"\n",
    )
    .expect("write");
    let out = hull(
        &cache,
        &[
            "pkg",
            "build",
            "--arch",
            "amd64",
            slow.to_str().expect("utf-8"),
        ],
    )
    .expect_code(0);
    let label = format!("{} for amd64", slow.display());
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains(&format!("building {label}: 1"))
                && l.ends_with(" s: compiling part 1 of 2"))
            && out.stderr.contains(&format!("built {label} in 1")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_first_use_build_makes_only_its_arch_and_the_index_grows_to_the_full_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let getty = copy_getty(tmp.path());
    let manifest = tmp.path().join("m.yml");
    std::fs::write(&manifest, "init:\n  - \"@pkg:pkgs/getty\"\n").expect("write");
    let cache = tmp.path().join("cache");
    let reference = hull(&cache, &["pkg", "show-tag", getty.to_str().expect("utf-8")])
        .expect_code(0)
        .stdout
        .trim()
        .to_string();
    let index_arches = |cache: &Path| -> (Vec<String>, String) {
        let raw = run(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:{reference}", cache.display())));
        let index: serde_json::Value = serde_json::from_str(&raw).expect("json");
        let arches = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .filter_map(|m| m["platform"]["architecture"].as_str().map(String::from))
            .collect();
        (arches, raw)
    };
    let build = |arch: &str| {
        let out = tmp.path().join(format!("out-{arch}"));
        hull(
            &cache,
            &[
                "build",
                "--arch",
                arch,
                "--format",
                "tar",
                "--dir",
                out.to_str().expect("utf-8"),
                manifest.to_str().expect("utf-8"),
            ],
        )
        .expect_code(0)
    };
    let first = build("arm64");
    assert!(
        first.stderr.contains("for arm64") && !first.stderr.contains("for amd64"),
        "only arm64 built:\n{}",
        first.stderr
    );
    assert_eq!(index_arches(&cache).0, ["arm64"]);
    let second = build("amd64");
    assert!(
        second.stderr.contains("for amd64") && !second.stderr.contains("for arm64"),
        "only amd64 built:\n{}",
        second.stderr
    );
    let (arches, grown) = index_arches(&cache);
    assert_eq!(arches, ["amd64", "arm64"], "build.yml's order");
    let again = build("arm64");
    assert!(!again.stderr.contains("building"), "{}", again.stderr);
    // The index is the one a build of both arches at once makes.
    let whole = tmp.path().join("cache-whole");
    hull(&whole, &["pkg", "build", getty.to_str().expect("utf-8")]).expect_code(0);
    assert_eq!(grown, index_arches(&whole).1);
}

/// A package's `version` command and build step get `$HULL_PKG_CACHE`, a
/// directory of the cache that lasts between runs: what the version command
/// leaves there, the build step sees.
#[test]
fn version_commands_and_build_steps_share_a_directory_kept_in_the_cache() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let pkg = tmp.path().join("memo");
    std::fs::create_dir_all(&pkg).expect("mkdir");
    std::fs::write(
        pkg.join("build.yml"),
        "image: hull/memo\nversion: bash version.sh\n",
    )
    .expect("write");
    std::fs::write(
        pkg.join("version.sh"),
        "set -e\ntest -d \"$HULL_PKG_CACHE\"\necho \"$HULL_PKG_CACHE\" > \"$HULL_PKG_CACHE/from-version\"\necho 1.0\n",
    )
    .expect("write");
    std::fs::write(
        pkg.join("build.sh"),
        "set -e\nmkdir -p \"$ROOTFS/etc\"\ncp \"$HULL_PKG_CACHE/from-version\" \"$ROOTFS/etc/seen\"\n",
    )
    .expect("write");
    let dir = pkg.to_str().expect("utf-8");
    let keep = cache.join(".hull/pkg-cache");
    let shown = hull(&cache, &["pkg", "show-tag", dir]).expect_code(0);
    assert!(shown.stdout.contains("hull/memo:1.0-"), "{}", shown.stdout);
    assert_eq!(
        std::fs::read_to_string(keep.join("from-version")).expect("left by version.sh"),
        format!("{}\n", keep.display())
    );
    std::fs::remove_file(keep.join("from-version")).expect("rm");
    hull(&cache, &["pkg", "build", "--arch", "amd64", dir]).expect_code(0);
    assert!(keep.join("from-version").is_file());
}

/// `pkgs/lib/apt.sh`: with a writable `$HULL_PKG_CACHE`, apt keeps its binary
/// package cache there and answers as it does without it (the same candidate,
/// from Debian's real package lists); with none, apt runs as configured.
#[test]
fn apt_keeps_its_package_cache_in_the_package_cache_and_answers_the_same() {
    let tmp = tempfile::tempdir().expect("tmp");
    let policy = |keep: Option<&Path>| {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(". pkgs/lib/apt.sh; echo \"${#APT_OPTS[@]}\"; apt-cache \"${APT_OPTS[@]}\" policy busybox-static | grep Candidate:")
            .current_dir(repo());
        match keep {
            Some(k) => c.env("HULL_PKG_CACHE", k),
            None => c.env_remove("HULL_PKG_CACHE"),
        };
        let out = c.output().expect("bash");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plain = policy(None);
    assert!(plain.starts_with("0\n  Candidate: "), "{plain}");
    let missing = policy(Some(&tmp.path().join("not-there")));
    assert_eq!(missing, plain, "no directory: apt as configured");
    let kept = policy(Some(tmp.path()));
    assert_eq!(kept.replacen("4\n", "0\n", 1), plain, "{kept}");
    let bin = tmp.path().join("apt-pkgcache.bin");
    let size = std::fs::metadata(&bin).expect("apt kept its cache").len();
    assert!(size > 1 << 20, "{size} bytes");
    assert_eq!(
        policy(Some(tmp.path())),
        kept,
        "answered from the kept cache"
    );
}
