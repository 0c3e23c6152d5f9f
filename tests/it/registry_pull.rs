//! Pulling from and pushing to a real registry (Debian's docker-registry),
//! seeded with umoci-made images copied in by skopeo; the cache read back by
//! skopeo and umoci.

use crate::util;

use std::path::Path;
use std::process::Command;

use util::registry::{oci_index, run, skopeo_copy, umoci_image, TestRegistry};

struct Env {
    reg: TestRegistry,
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            reg: TestRegistry::start(),
            tmp: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn cache(&self) -> String {
        self.tmp.path().join("cache").display().to_string()
    }

    fn hull(&self, args: &[&str]) -> util::Run {
        let cache = self.cache();
        let mut all = vec!["--cache", cache.as_str()];
        all.extend_from_slice(args);
        util::hull_in(self.tmp.path(), &all, &[("DOCKER_CONFIG", "/nonexistent")])
    }

    /// Seeds `repo:tag` with an index over an amd64 and an arm64 image; returns
    /// the full reference.
    fn seed_multi(&self, repo_tag: &str) -> String {
        let layout = self.tmp.path().join("multi");
        if !layout.exists() {
            umoci_image(&layout, "amd", "amd64", &[&[("etc/arch", b"amd64\n")]]);
            umoci_image(&layout, "arm", "arm64", &[&[("etc/arch", b"arm64\n")]]);
            oci_index(&layout, "multi", &[("amd", "amd64"), ("arm", "arm64")]);
        }
        let image = format!("{}/{repo_tag}", self.reg.addr);
        skopeo_copy(
            &format!("oci:{}:multi", layout.display()),
            &format!("docker://{image}"),
            &["--all"],
        );
        image
    }

    /// Seeds `repo:tag` with a two-layer image for `arch`; returns its layout.
    fn seed(&self, repo_tag: &str, arch: &str) -> std::path::PathBuf {
        let layout = self.tmp.path().join(format!("layout-{arch}"));
        let tag = repo_tag.replace(['/', ':'], "-");
        umoci_image(
            &layout,
            &tag,
            arch,
            &[
                &[("etc/hello", format!("hello from {arch}\n").as_bytes())],
                &[("usr/share/data", &vec![7u8; 100_000][..])],
            ],
        );
        skopeo_copy(
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{}/{repo_tag}", self.reg.addr),
            &[],
        );
        layout
    }
}

/// The pull kept both layers unpacked; one byte changed in the pack of the
/// layer holding usr/share/data is found by `hull cache verify`, which names
/// the file; removed, the rest verifies.
fn damaged_unpacked_layer_is_reported(env: &Env) {
    let layers = std::path::Path::new(&env.cache()).join(".hull/layers");
    let packs: Vec<_> = std::fs::read_dir(&layers)
        .expect("unpacked layers")
        .map(|e| e.expect("entry").path().join("pack"))
        .collect();
    assert_eq!(packs.len(), 2, "{packs:?}");
    let data = packs
        .iter()
        .find(|p| std::fs::metadata(p).expect("pack").len() == 100_000)
        .expect("the pack holding usr/share/data");
    let mut bytes = std::fs::read(data).expect("read");
    bytes[5] ^= 0xff;
    std::fs::write(data, &bytes).expect("damage");
    let bad = env.hull(&["cache", "verify"]).expect_code(1);
    assert!(
        bad.stderr.contains("bad unpacked layer") && bad.stderr.contains("usr/share/data"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains("1 of 2 unpacked layers"),
        "{}",
        bad.stderr
    );
    std::fs::remove_dir_all(data.parent().expect("layer dir")).expect("rm");
    let ok = env.hull(&["cache", "verify"]).expect_code(0);
    assert!(
        ok.stdout.contains("1 unpacked layers verified"),
        "{}",
        ok.stdout
    );
}

fn digest_of(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in {text:?}"))
        .to_string()
}

#[test]
fn pull_verify_ls_export_and_read_back_with_skopeo_and_umoci() {
    let env = Env::new();
    env.seed("test/hello:1", "amd64");
    let image = format!("{}/test/hello:1", env.reg.addr);
    let out = env
        .hull(&["cache", "pull", "--arch", "amd64", &image])
        .expect_code(0);
    let digest = digest_of(&out.stdout);
    // Non-terminal stderr: one plain line per step.
    assert!(
        out.stderr.contains(&format!("pulling {image} (amd64)")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("done ("), "{}", out.stderr);

    let ls = env.hull(&["cache", "ls"]).expect_code(0);
    assert!(
        ls.stdout.contains(&format!("{image}\t{digest}\timage")),
        "{}",
        ls.stdout
    );
    let verify = env.hull(&["cache", "verify"]).expect_code(0);
    assert!(
        verify
            .stdout
            .contains("4 blobs verified, 2 unpacked layers verified"),
        "{}",
        verify.stdout
    );
    damaged_unpacked_layer_is_reported(&env);

    // The cache is an OCI layout skopeo and umoci read.
    let inspect = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{image}", env.cache())));
    assert!(inspect.contains(&digest), "{inspect}");
    let ls = run(Command::new("umoci").args(["ls", "--layout", &env.cache()]));
    assert!(ls.contains(&image), "{ls}");

    // Exported, it is an OCI archive skopeo reads.
    let archive = env.tmp.path().join("out/hello.tar");
    std::fs::create_dir_all(archive.parent().expect("parent")).expect("mkdir");
    env.hull(&[
        "cache",
        "export",
        &image,
        "-o",
        archive.to_str().expect("utf-8"),
    ])
    .expect_code(0);
    let inspect = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", archive.display())));
    assert!(
        inspect.contains(&digest) && inspect.contains("\"Architecture\": \"amd64\""),
        "{inspect}"
    );
    // Export is deterministic.
    let again = env.tmp.path().join("out/again.tar");
    env.hull(&[
        "cache",
        "export",
        &image,
        "-o",
        again.to_str().expect("utf-8"),
    ])
    .expect_code(0);
    assert_eq!(
        std::fs::read(&archive).expect("read"),
        std::fs::read(&again).expect("read")
    );

    // Import into a fresh cache gives the same image.
    let other = env.tmp.path().join("cache2");
    let run2 = util::hull_in(
        env.tmp.path(),
        &[
            "--cache",
            other.to_str().expect("utf-8"),
            "cache",
            "import",
            archive.to_str().expect("utf-8"),
        ],
        &[],
    )
    .expect_code(0);
    assert!(run2.stdout.contains(&image), "{}", run2.stdout);

    // rm + gc empties the cache; verify still passes.
    env.hull(&["cache", "rm", &image]).expect_code(0);
    let gc = env.hull(&["cache", "gc"]).expect_code(0);
    assert!(gc.stdout.contains("removed 4 blobs"), "{}", gc.stdout);
    let missing = env.hull(&["cache", "rm", &image]).expect_code(1);
    assert!(
        missing.stderr.contains("is not in the cache"),
        "{}",
        missing.stderr
    );
}

#[test]
fn multi_arch_index_pulls_each_arch_and_pull_policies() {
    let env = Env::new();
    let image = env.seed_multi("test/multi:1");

    // --pull=never before anything is cached: a clear error.
    let never = env
        .hull(&[
            "cache", "pull", "--pull", "never", "--arch", "arm64", &image,
        ])
        .expect_code(1);
    assert!(
        never
            .stderr
            .contains("is not in the cache and --pull=never"),
        "{}",
        never.stderr
    );

    let amd = digest_of(
        &env.hull(&["cache", "pull", "--arch", "amd64", &image])
            .expect_code(0)
            .stdout,
    );
    let arm = digest_of(
        &env.hull(&["cache", "pull", "--arch", "arm64", &image])
            .expect_code(0)
            .stdout,
    );
    assert_ne!(amd, arm);
    // Each digest is the one the registry serves for that platform.
    let inspect = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    let index: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    for (arch, digest) in [("amd64", &amd), ("arm64", &arm)] {
        let entry = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .expect("platform entry");
        assert_eq!(entry["digest"], digest.as_str());
    }
    // Both cached now: --pull=never works offline for both.
    for arch in ["amd64", "arm64"] {
        env.hull(&["cache", "pull", "--pull", "never", "--arch", arch, &image])
            .expect_code(0);
    }
    let ls = env.hull(&["cache", "ls"]).expect_code(0);
    assert!(ls.stdout.contains("\tindex"), "{}", ls.stdout);

    // An arch the index lacks.
    let layout1 = env.seed("test/amdonly:1", "amd64");
    drop(layout1);
    let only = format!("{}/test/amdonly:1", env.reg.addr);
    let wrong = env
        .hull(&["cache", "pull", "--arch", "arm64", &only])
        .expect_code(1);
    assert!(
        wrong.stderr.contains("is built for amd64, not arm64"),
        "{}",
        wrong.stderr
    );
}

#[test]
fn digest_pinned_pulls_and_unknown_images() {
    let env = Env::new();
    env.seed("test/pinned:1", "amd64");
    let image = format!("{}/test/pinned:1", env.reg.addr);
    let digest = digest_of(
        &env.hull(&["cache", "pull", "--arch", "amd64", &image])
            .expect_code(0)
            .stdout,
    );
    let pinned = format!("{}/test/pinned@{digest}", env.reg.addr);
    let out = env
        .hull(&["cache", "pull", "--arch", "amd64", &pinned])
        .expect_code(0);
    assert_eq!(digest_of(&out.stdout), digest);
    // tag@digest: the digest wins.
    let both = format!("{}/test/pinned:whatever@{digest}", env.reg.addr);
    env.hull(&["cache", "pull", "--arch", "amd64", &both])
        .expect_code(0);

    let bad = format!("{}/test/pinned@sha256:{}", env.reg.addr, "0".repeat(64));
    let err = env
        .hull(&["cache", "pull", "--arch", "amd64", &bad])
        .expect_code(1);
    assert!(
        err.stderr.contains("cannot fetch the manifest of")
            && err.stderr.contains(&format!(
                "http://{}/v2/test/pinned/manifests/sha256:",
                env.reg.addr
            )),
        "{}",
        err.stderr
    );
    let unknown = format!("{}/test/nothere:1", env.reg.addr);
    let err = env.hull(&["cache", "pull", &unknown]).expect_code(1);
    assert!(err.stderr.contains(&unknown), "{}", err.stderr);
    let malformed = env.hull(&["cache", "pull", "Not/A:Ref:"]).expect_code(1);
    assert!(
        malformed.stderr.contains("invalid image reference"),
        "{}",
        malformed.stderr
    );
}

#[test]
fn push_round_trip_with_mounts_and_index() {
    let env = Env::new();
    let src = env.seed_multi("src/multi:1");
    env.hull(&["cache", "pull", "--arch", "amd64", &src])
        .expect_code(0);

    // Only amd64 is cached; arm64's manifest is on the same registry but not in
    // the target repository: pushing the index must say so.
    let dst = format!("{}/dst/multi:2", env.reg.addr);
    let err = env.hull(&["push", &src, &dst]).expect_code(1);
    assert!(
        err.stderr.contains("linux/arm64") && err.stderr.contains("pull it for that architecture"),
        "{}",
        err.stderr
    );

    env.hull(&["cache", "pull", "--arch", "arm64", &src])
        .expect_code(0);
    let out = env.hull(&["push", &src, &dst]).expect_code(0);
    assert!(
        out.stderr.contains("mounted"),
        "blobs are mounted from src/multi: {}",
        out.stderr
    );
    let raw_src = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{src}"),
    ]));
    let raw_dst = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{dst}"),
    ]));
    assert_eq!(raw_src, raw_dst, "the index arrives byte for byte");

    // A second push uploads nothing (HEAD finds every blob).
    let again = env.hull(&["push", &src, &dst]).expect_code(0);
    assert!(
        !again.stderr.contains("mounted") && !again.stderr.contains("pushed ("),
        "{}",
        again.stderr
    );

    // Pulled back into a fresh cache, the pushed image is complete.
    let fresh = env.tmp.path().join("fresh");
    let back = util::hull_in(
        Path::new("/"),
        &[
            "--cache",
            fresh.to_str().expect("utf-8"),
            "cache",
            "pull",
            "--arch",
            "arm64",
            &dst,
        ],
        &[],
    )
    .expect_code(0);
    assert!(back.stdout.contains("sha256:"));
}

#[test]
fn import_a_docker_save_tarball_made_by_skopeo() {
    let env = Env::new();
    let layout = env.tmp.path().join("layout");
    umoci_image(
        &layout,
        "t",
        "amd64",
        &[&[("etc/a", b"a\n")], &[("etc/b", b"b\n")]],
    );
    let tarball = env.tmp.path().join("saved.tar");
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci:{}:t", layout.display()),
        &format!(
            "docker-archive:{}:example.org/saved/app:1.0",
            tarball.display()
        ),
    ]));
    let out = env
        .hull(&["cache", "import", tarball.to_str().expect("utf-8")])
        .expect_code(0);
    assert_eq!(out.stdout.trim(), "example.org/saved/app:1.0");
    env.hull(&[
        "cache",
        "pull",
        "--pull",
        "never",
        "--arch",
        "amd64",
        "example.org/saved/app:1.0",
    ])
    .expect_code(0);
    env.hull(&["cache", "verify"]).expect_code(0);
    // skopeo reads the converted image from the cache.
    let inspect = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:example.org/saved/app:1.0", env.cache())));
    assert!(inspect.contains("\"Layers\""), "{inspect}");

    let junk = env.tmp.path().join("junk.tar");
    util::registry::layer_tar(&junk, &[("hello", b"x")]);
    let err = env
        .hull(&["cache", "import", junk.to_str().expect("utf-8")])
        .expect_code(1);
    assert!(
        err.stderr.contains("neither an OCI archive"),
        "{}",
        err.stderr
    );
}

/// An OCI archive of `layout` whose index.json has only `entries`
/// (reference name, manifest descriptor).
fn archive_with_names(layout: &Path, out: &Path, entries: &[(String, serde_json::Value)]) {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(name, d)| {
            let mut d = d.clone();
            d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
            d
        })
        .collect();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("write index");
    run(Command::new("tar")
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(layout)
        .args(["oci-layout", "index.json", "blobs"]));
}

#[test]
fn a_name_pinned_by_digest_resolves_only_to_that_digest() {
    let env = Env::new();
    let layout = env.tmp.path().join("pin");
    umoci_image(&layout, "one", "amd64", &[&[("etc/which", b"one\n")]]);
    umoci_image(&layout, "two", "amd64", &[&[("etc/which", b"two\n")]]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    let descriptor = |tag: &str| {
        let mut d = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .expect("tag")
            .clone();
        d.as_object_mut().expect("object").remove("annotations");
        d
    };
    let (one, two) = (descriptor("one"), descriptor("two"));
    let one_digest = one["digest"].as_str().expect("digest").to_string();
    let pinned = format!("example.org/pin/app@{one_digest}");
    // An archive that names one's digest but points at two: refused.
    let lying = env.tmp.path().join("lying.tar");
    archive_with_names(&layout, &lying, &[(pinned.clone(), two.clone())]);
    let out = env
        .hull(&["cache", "import", lying.to_str().expect("utf-8")])
        .expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("{pinned} is pinned to {one_digest}"))
            && out.stderr.contains(two["digest"].as_str().expect("digest")),
        "{}",
        out.stderr
    );
    let ls = env.hull(&["cache", "ls"]).expect_code(0);
    assert!(!ls.stdout.contains("example.org/pin/app"), "{}", ls.stdout);
    // Its blobs are stored (each by its own digest), and the pinned
    // reference resolves to one's manifest, never to two's.
    let out = env
        .hull(&[
            "cache", "pull", "--pull", "never", "--arch", "amd64", &pinned,
        ])
        .expect_code(0);
    let two_digest = two["digest"].as_str().expect("digest");
    assert!(
        out.stdout.contains(&one_digest) && !out.stdout.contains(two_digest),
        "{}",
        out.stdout
    );
    // An honest archive: the pinned name imports, and resolves to its content.
    let honest = env.tmp.path().join("honest.tar");
    archive_with_names(&layout, &honest, &[(pinned.clone(), one.clone())]);
    env.hull(&["cache", "import", honest.to_str().expect("utf-8")])
        .expect_code(0);
    let out = env
        .hull(&[
            "cache", "pull", "--pull", "never", "--arch", "amd64", &pinned,
        ])
        .expect_code(0);
    assert!(out.stdout.contains(&one_digest), "{}", out.stdout);
}

#[test]
fn two_processes_share_one_cache() {
    let env = Env::new();
    env.seed("test/shared:1", "amd64");
    let image = format!("{}/test/shared:1", env.reg.addr);
    let cache = env.cache();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_hull"))
            .args([
                "--cache", &cache, "cache", "pull", "--arch", "amd64", &image,
            ])
            .output()
            .expect("hull runs")
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().expect("thread"), b.join().expect("thread"))
    });
    assert!(a.status.success() && b.status.success());
    env.hull(&["cache", "verify"]).expect_code(0);
    let ls = env.hull(&["cache", "ls"]).expect_code(0);
    assert_eq!(ls.stdout.lines().count(), 1);
}
