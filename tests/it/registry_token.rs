//! Bearer-token auth against a real registry: docker-registry configured for
//! token auth, and a small token service in the test that checks basic
//! credentials and issues RS256 JWTs (signed with openssl, the certificate
//! in the JWT's x5c header, trusted by the registry's rootcertbundle).

use crate::util;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use util::registry::{free_port, run, self_signed, umoci_image};

const SERVICE: &str = "hull-test-registry";
const ISSUER: &str = "hull-test-issuer";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Answers `GET /token?...scope=...` with a JWT when the basic credentials are right.
fn token_service(dir: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let mut buf = vec![0u8; 16384];
            let n = conn.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let good = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("hull:tokenpass")
            );
            let authorized = req
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("authorization:") && l.contains(&good));
            let response = if authorized {
                let body = format!(r#"{{"token":"{}","expires_in":300}}"#, jwt(&dir, &req));
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = conn.write_all(response.as_bytes());
        }
    });
    addr
}

fn jwt(dir: &Path, request: &str) -> String {
    let target = request.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut access = Vec::new();
    for pair in query.split('&') {
        if let Some(scope) = pair.strip_prefix("scope=") {
            let scope = scope
                .replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%2C", ",");
            let parts: Vec<&str> = scope.split(':').collect();
            if let [kind, name, actions] = parts.as_slice() {
                access.push(serde_json::json!({
                    "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>(),
                }));
            }
        }
    }
    let der = std::fs::read(dir.join("token.der")).expect("cert der");
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [base64::engine::general_purpose::STANDARD.encode(der)]});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "hull", "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let input = dir.join(format!("input-{}", std::process::id()));
    std::fs::write(&input, &signing_input).expect("write");
    let sig = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("token.key"))
        .arg(&input)
        .output()
        .expect("openssl signs");
    format!("{signing_input}.{}", b64url(&sig.stdout))
}

#[test]
fn bearer_tokens_from_a_token_service() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_path_buf();
    self_signed(&dir, "token", "hull token signer");
    run(Command::new("openssl").current_dir(&dir).args([
        "x509",
        "-in",
        "token.pem",
        "-outform",
        "DER",
        "-out",
        "token.der",
    ]));
    let token_addr = token_service(dir.clone());

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\nauth:\n  token:\n    realm: http://{token_addr}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        dir.join("data").display(),
        dir.join("token.pem").display()
    );
    std::fs::write(dir.join("registry.yml"), config).expect("write");
    let mut registry = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("registry.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("registry.log")).expect("log"))
        .spawn()
        .expect("docker-registry starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let layout = dir.join("layout");
    umoci_image(&layout, "t", "amd64", &[&[("etc/token", b"x\n")]]);
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--dest-creds",
        "hull:tokenpass",
        &format!("oci:{}:t", layout.display()),
        &format!("docker://{addr}/private/app:1"),
    ]));

    let image = format!("{addr}/private/app:1");
    let cache = dir.join("cache");
    let good = dir.join("good");
    std::fs::create_dir_all(&good).expect("mkdir");
    std::fs::write(
        good.join("config.json"),
        format!(
            r#"{{"auths":{{"{addr}":{{"auth":"{}"}}}}}}"#,
            base64::engine::general_purpose::STANDARD.encode("hull:tokenpass")
        ),
    )
    .expect("write");
    let hull = |args: &[&str], config: &str| {
        let mut all = vec!["--cache", cache.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        util::hull_in(&dir, &all, &[("DOCKER_CONFIG", config)])
    };

    // Anonymous: the token service refuses, and the error names the image.
    let out = hull(
        &["cache", "pull", "--arch", "amd64", &image],
        "/nonexistent",
    )
    .expect_code(1);
    assert!(out.stderr.contains(&image), "{}", out.stderr);
    // With credentials: a token is fetched and used for pull and push.
    let out = hull(
        &["cache", "pull", "--arch", "amd64", &image],
        good.to_str().expect("utf-8"),
    )
    .expect_code(0);
    assert!(out.stdout.contains("sha256:"), "{}", out.stdout);
    let dst = format!("{addr}/private/copy:1");
    hull(&["push", &image, &dst], good.to_str().expect("utf-8")).expect_code(0);
    let inspect = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--creds",
        "hull:tokenpass",
        &format!("docker://{dst}"),
    ]));
    assert!(inspect.contains("\"Architecture\": \"amd64\""), "{inspect}");
    let _ = registry.kill();
    let _ = registry.wait();
}
