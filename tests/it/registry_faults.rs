//! Faults between Hull and a real registry, injected by a proxy: a connection
//! cut mid-blob, 500s, a flipped byte, a blob longer than its descriptor, a
//! manifest without end. Each ends in a successful retry or a
//! clear error naming the image, the digest and the URL, and the cache never
//! holds a bad blob (`hull cache verify`).

use crate::util;

use util::proxy::{Fault, FaultProxy};
use util::registry::{skopeo_copy, umoci_image, TestRegistry};

struct Setup {
    _reg: TestRegistry,
    proxy: FaultProxy,
    tmp: tempfile::TempDir,
    image: String,
}

fn setup(fault: Fault, times: u32) -> Setup {
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let layout = tmp.path().join("layout");
    // One layer big enough that half of it is a real partial transfer.
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    umoci_image(&layout, "t", "amd64", &[&[("data.bin", &data[..])]]);
    skopeo_copy(
        &format!("oci:{}:t", layout.display()),
        &format!("docker://{}/test/faults:1", reg.addr),
        &[],
    );
    let proxy = FaultProxy::start(&reg.addr, fault, times);
    let image = format!("{}/test/faults:1", proxy.addr);
    Setup {
        _reg: reg,
        proxy,
        tmp,
        image,
    }
}

impl Setup {
    fn hull(&self, args: &[&str]) -> util::Run {
        let cache = self.tmp.path().join("cache");
        let mut all = vec!["--cache", cache.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        util::hull_in(self.tmp.path(), &all, &[("DOCKER_CONFIG", "/nonexistent")])
    }

    fn pull(&self) -> util::Run {
        self.hull(&["cache", "pull", "--arch", "amd64", &self.image])
    }

    fn log(&self) -> Vec<String> {
        self.proxy.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn assert_cache_clean(&self) {
        let v = self.hull(&["cache", "verify"]).expect_code(0);
        assert!(v.stdout.contains("blobs verified"), "{}", v.stdout);
    }
}

#[test]
fn a_cut_connection_resumes_with_a_range_request() {
    let s = setup(Fault::Cut, 2);
    let out = s.pull().expect_code(0);
    assert!(out.stderr.contains("retrying"), "{}", out.stderr);
    let log = s.log();
    assert!(
        log.iter().any(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("range: bytes=") && !l.contains("bytes=0-")
        }),
        "no resumed range request in {log:#?}"
    );
    s.assert_cache_clean();
}

#[test]
fn server_errors_are_retried() {
    let s = setup(Fault::ServerError, 3);
    let out = s.pull().expect_code(0);
    assert!(out.stderr.contains("500"), "{}", out.stderr);
    s.assert_cache_clean();
}

#[test]
fn a_flipped_byte_is_caught_and_downloaded_again() {
    let s = setup(Fault::FlipByte, 1);
    let out = s.pull().expect_code(0);
    assert!(out.stderr.contains("digest mismatch"), "{}", out.stderr);
    s.assert_cache_clean();
}

#[test]
fn persistent_corruption_is_a_clear_error_and_leaves_no_bad_blob() {
    let s = setup(Fault::FlipByte, u32::MAX);
    let out = s.pull().expect_code(1);
    let digest_mentioned = out.stderr.contains("cannot download blob sha256:");
    let url = format!("http://{}/v2/test/faults/blobs/sha256:", s.proxy.addr);
    assert!(
        digest_mentioned && out.stderr.contains(&s.image) && out.stderr.contains(&url),
        "the error names image, digest and URL:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("digest mismatch"), "{}", out.stderr);
    s.assert_cache_clean();
    // Nothing names the image: it was not half-added.
    let ls = s.hull(&["cache", "ls"]).expect_code(0);
    assert!(ls.stdout.is_empty(), "{}", ls.stdout);
}

#[test]
fn a_blob_longer_than_its_descriptor_is_stopped_at_once_and_not_retried() {
    let s = setup(Fault::Oversized, u32::MAX);
    let started = std::time::Instant::now();
    let out = s.pull().expect_code(1);
    let took = started.elapsed();
    assert!(
        out.stderr.contains("more than the") && out.stderr.contains("bytes the descriptor gives"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("cannot download blob sha256:") && out.stderr.contains(&s.image),
        "{}",
        out.stderr
    );
    // One request per blob: not a transient fault, so not tried again.
    let gets = s.log().len();
    assert!(gets <= 2, "{gets} blob requests: {:#?}", s.log());
    assert!(
        took < std::time::Duration::from_secs(5),
        "took {took:?}:\n{}",
        out.stderr
    );
    s.assert_cache_clean();
}

#[test]
fn an_endless_manifest_is_cut_at_4_mib_and_refused_in_little_memory() {
    let s = setup(Fault::EndlessManifest, u32::MAX);
    let cache = s.tmp.path().join("cache");
    let started = std::time::Instant::now();
    let (out, peak_kib) = util::hull_peak(
        s.tmp.path(),
        &[
            "--cache",
            cache.to_str().expect("utf-8"),
            "cache",
            "pull",
            "--arch",
            "amd64",
            &s.image,
        ],
        &[("DOCKER_CONFIG", "/nonexistent")],
    );
    let took = started.elapsed();
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let url = format!("http://{}/v2/test/faults/manifests/1", s.proxy.addr);
    assert!(
        out.stderr
            .contains(&format!("cannot fetch the manifest of {}", s.image))
            && out.stderr.contains(&url)
            && out.stderr.contains("more than 4194304 bytes"),
        "{}",
        out.stderr
    );
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    assert!(peak_kib < 256 << 10, "peak RSS {peak_kib} KiB");
    println!("endless manifest refused in {took:?}, peak RSS {peak_kib} KiB");
    let ls = s.hull(&["cache", "ls"]).expect_code(0);
    assert!(ls.stdout.is_empty(), "{}", ls.stdout);
}

#[test]
fn a_connection_that_always_breaks_gives_up_with_the_url() {
    let s = setup(Fault::Cut, u32::MAX);
    let out = s.pull().expect_code(1);
    assert!(
        out.stderr.contains("after 5 attempts") && out.stderr.contains("connection broke"),
        "{}",
        out.stderr
    );
    s.assert_cache_clean();
}
