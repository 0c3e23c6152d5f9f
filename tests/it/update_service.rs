//! `hull-update` (the update service, built for this machine) fetching an
//! update bundle from a TLS registry with htpasswd auth and a CA made in
//! the test: trusted only with `--ca`, logged in only with `--auth`; a
//! partial download resumes where it stopped (proved by a registry whose
//! stored blob is wrong only before the resume point); a blob tampered in
//! the registry's storage is refused and nothing of it is kept.

use crate::util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::registry::TestRegistry;

/// `ci/build-init amd64 hull-update`: the static binary for this machine.
fn hull_update() -> PathBuf {
    let out = Command::new("bash")
        .current_dir(util::repo())
        .args(["ci/build-init", "amd64", "hull-update"])
        .output()
        .expect("ci/build-init runs");
    assert!(
        out.status.success(),
        "ci/build-init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs `hull-update fetch REF ARGS`; (exit code, stdout + stderr).
fn fetch(bin: &Path, reference: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin)
        .arg("fetch")
        .arg(reference)
        .args(args)
        .output()
        .expect("hull-update runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The layers of the bundle at `bundle`: (title, digest, bytes).
fn layers(bundle: &Path, work: &Path) -> Vec<(String, String, Vec<u8>)> {
    let dir = work.join("unpacked");
    std::fs::create_dir_all(&dir).expect("mkdir");
    util::registry::run(Command::new("tar").args([
        "-xf",
        bundle.to_str().expect("utf-8"),
        "-C",
        dir.to_str().expect("utf-8"),
    ]));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index"))
            .expect("json");
    let blob =
        |d: &str| std::fs::read(dir.join("blobs").join(d.replacen(':', "/", 1))).expect("blob");
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&digest)).expect("json");
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            let d = l["digest"].as_str().expect("digest").to_string();
            let title = l["annotations"]["org.opencontainers.image.title"]
                .as_str()
                .expect("title")
                .to_string();
            let bytes = blob(&d);
            (title, d, bytes)
        })
        .collect()
}

#[test]
fn the_update_service_fetches_over_tls_resumes_and_refuses_a_tampered_blob() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let (ca, secure) = crate::registry_tls::make_pki(dir);
    let reg = TestRegistry::start_with(Some(&secure));
    let out = dir.join("out");
    util::build_example(
        "minimal",
        "amd64",
        &out,
        &[
            "-q",
            "--root",
            "ab",
            "--image-version",
            "7",
            "--format",
            "update",
        ],
        &[],
    )
    .expect_code(0);
    let bundle = out.join("minimal-update.oci.tar");
    let config = dir.join("docker");
    crate::registry_tls::docker_config(&config, &reg.addr, "hull", "s3cret");
    let reference = format!("{}/app/update:7", reg.addr);
    let cache = dir.join("cache");
    util::hull_in(
        dir,
        &[
            "--cache",
            cache.to_str().expect("utf-8"),
            "--registry-ca",
            ca.to_str().expect("utf-8"),
            "push",
            bundle.to_str().expect("utf-8"),
            &reference,
        ],
        &[("DOCKER_CONFIG", config.to_str().expect("utf-8"))],
    )
    .expect_code(0);
    let bin = hull_update();
    let (good, bad) = (dir.join("auth"), dir.join("wrong-auth"));
    std::fs::write(&good, "hull:s3cret\n").expect("auth");
    std::fs::write(&bad, "hull:wrong\n").expect("auth");
    let (ca, good, bad) = (
        ca.to_str().expect("utf-8"),
        good.to_str().expect("utf-8"),
        bad.to_str().expect("utf-8"),
    );
    let scratch = |n: &str| dir.join(n).to_str().expect("utf-8").to_string();

    let (code, text) = fetch(
        &bin,
        &reference,
        &["--auth", good, "--scratch", &scratch("s0")],
    );
    assert!(
        code == 1 && text.to_lowercase().contains("certificate"),
        "no CA: {text}"
    );
    let (code, text) = fetch(&bin, &reference, &["--ca", ca, "--scratch", &scratch("s0")]);
    assert!(
        code == 1 && text.contains("give --auth FILE"),
        "no credentials: {text}"
    );
    let (code, text) = fetch(
        &bin,
        &reference,
        &["--ca", ca, "--auth", bad, "--scratch", &scratch("s0")],
    );
    assert!(
        code == 1 && text.contains("401"),
        "wrong credentials: {text}"
    );

    let (code, text) = fetch(
        &bin,
        &reference,
        &["--ca", ca, "--auth", good, "--scratch", &scratch("s1")],
    );
    assert!(
        code == 0 && text.contains("version 7 fetched and checked"),
        "{text}"
    );
    let layers = layers(&bundle, dir);
    for (title, digest, bytes) in &layers {
        let got = std::fs::read(dir.join("s1").join(digest.replace(':', "-"))).expect("fetched");
        assert!(got == *bytes, "{title} differs from the bundle's");
    }

    // The root blob's first byte wrong in the registry: a download that
    // resumes after it (the first half already here) gets only right bytes.
    let (_, root_digest, root) = layers
        .iter()
        .find(|(t, _, _)| t == "root.squashfs")
        .expect("a root")
        .clone();
    let path = reg.stored_blob(&root_digest);
    let mut tampered = root.clone();
    tampered[0] ^= 0xff;
    std::fs::write(&path, &tampered).expect("tamper");
    std::fs::create_dir_all(dir.join("s2")).expect("mkdir");
    let partial = dir
        .join("s2")
        .join(format!("{}.partial", root_digest.replace(':', "-")));
    std::fs::write(&partial, &root[..root.len() / 2]).expect("partial");
    let (code, text) = fetch(
        &bin,
        &reference,
        &["--ca", ca, "--auth", good, "--scratch", &scratch("s2")],
    );
    assert!(code == 0, "the partial download did not resume: {text}");

    // From nothing, the tampered blob is refused and not kept.
    let (code, text) = fetch(
        &bin,
        &reference,
        &["--ca", ca, "--auth", good, "--scratch", &scratch("s3")],
    );
    assert!(
        code == 1 && text.contains("refused") && text.contains(&root_digest),
        "a tampered blob: {text}"
    );
    let kept: Vec<_> = std::fs::read_dir(dir.join("s3"))
        .expect("s3")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&root_digest.replace(':', "-")))
        .collect();
    assert!(kept.is_empty(), "kept {kept:?}");
}
