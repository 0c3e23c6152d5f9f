//! A TLS registry with htpasswd auth and a CA made in the test: Hull trusts it
//! only with `--registry-ca`, and logs in with credentials from Docker's
//! config.json (a plain `auths` entry).

use crate::util;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use util::registry::{run, self_signed, umoci_image, Secure, TestRegistry};

pub(crate) fn make_pki(dir: &Path) -> (std::path::PathBuf, Secure) {
    let ossl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    self_signed(dir, "ca", "hull test CA");
    ossl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write");
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    let htpasswd = run(Command::new("htpasswd").args(["-Bbn", "hull", "s3cret"]));
    std::fs::write(dir.join("htpasswd"), htpasswd).expect("write");
    (
        dir.join("ca.pem"),
        Secure {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            htpasswd: dir.join("htpasswd"),
        },
    )
}

pub(crate) fn docker_config(dir: &Path, host: &str, user: &str, pass: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .expect("write config.json");
}

#[test]
fn tls_registry_with_htpasswd_and_a_private_ca() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (ca, secure) = make_pki(tmp.path());
    let reg = TestRegistry::start_with(Some(&secure));
    let layout = tmp.path().join("layout");
    umoci_image(&layout, "t", "amd64", &[&[("etc/secret", b"x\n")]]);
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--dest-creds",
        "hull:s3cret",
        &format!(
            "--dest-cert-dir={}",
            tmp.path().join("certs-none").display()
        ),
        "--dest-tls-verify=false",
        &format!("oci:{}:t", layout.display()),
        &format!("docker://{}/private/app:1", reg.addr),
    ]));
    let image = format!("{}/private/app:1", reg.addr);
    let cache = tmp.path().join("cache");
    let cache = cache.to_str().expect("utf-8");
    let good = tmp.path().join("good");
    let bad = tmp.path().join("bad");
    docker_config(&good, &reg.addr, "hull", "s3cret");
    docker_config(&bad, &reg.addr, "hull", "wrong");
    let ca = ca.to_str().expect("utf-8");
    let hull = |args: &[&str], config: &Path| {
        let mut all = vec!["--cache", cache];
        all.extend_from_slice(args);
        util::hull_in(
            tmp.path(),
            &all,
            &[("DOCKER_CONFIG", config.to_str().expect("utf-8"))],
        )
    };

    // Without the CA: the certificate is not trusted, and the error says so.
    let out = hull(&["cache", "pull", "--arch", "amd64", &image], &good).expect_code(1);
    assert!(
        out.stderr.contains(&format!("https://{}/v2/", reg.addr))
            && out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );
    let pull_with_ca = |config: &Path| {
        hull(
            &[
                "--registry-ca",
                ca,
                "cache",
                "pull",
                "--arch",
                "amd64",
                &image,
            ],
            config,
        )
    };
    // With the CA but the wrong password: an authentication error.
    let out = pull_with_ca(&bad).expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("cannot fetch the manifest of {image}"))
            && out.stderr.contains("Not authorized"),
        "{}",
        out.stderr
    );
    // With the CA and the right password: pulled over TLS.
    let out = pull_with_ca(&good).expect_code(0);
    assert!(out.stdout.contains("sha256:"), "{}", out.stdout);
    // And pushed back under another name.
    let dst = format!("{}/private/copy:2", reg.addr);
    hull(&["--registry-ca", ca, "push", &image, &dst], &good).expect_code(0);
    let inspect = run(Command::new("skopeo").args([
        "inspect",
        "--creds",
        "hull:s3cret",
        &format!("--cert-dir={}", tmp.path().join("certs-none").display()),
        "--tls-verify=false",
        &format!("docker://{dst}"),
    ]));
    assert!(inspect.contains("\"Architecture\": \"amd64\""), "{inspect}");
}
