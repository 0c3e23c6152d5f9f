//! Credentials go only where they belong: a registry served by the test (a
//! few lines of HTTP: `/v2/`, one manifest, its blobs) with credentials in
//! `DOCKER_CONFIG`. A token service on plain HTTP on another machine gets
//! nothing (the pull is refused, naming it); blobs redirected to another
//! host are fetched there without the registry's credentials.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha2::Digest as _;

use crate::util;

/// Requests a server saw: the request line and whether it carried credentials.
type Seen = Arc<Mutex<Vec<(String, bool)>>>;

fn read_request(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn respond(conn: &mut TcpStream, status: &str, headers: &[String], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}

/// Serves `route(path, has_credentials)` on `addr`, noting each request.
fn serve(
    addr: &str,
    route: impl Fn(&str, bool) -> (String, Vec<String>, Vec<u8>) + Send + 'static,
) -> (String, Seen) {
    let listener = TcpListener::bind(addr).expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let req = read_request(&mut conn);
            // Hull asks whether a registry speaks TLS: a plain server hangs up.
            if req.as_bytes().first() == Some(&0x16) || req.is_empty() {
                continue;
            }
            let line = req.lines().next().unwrap_or("").to_string();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let creds = req
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("authorization:"));
            if let Ok(mut s) = log.lock() {
                s.push((line, creds));
            }
            let (status, headers, body) = route(&path, creds);
            respond(&mut conn, &status, &headers, &body);
        }
    });
    (addr, seen)
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A docker config giving `host` the credentials hull:secret.
fn docker_config(dir: &std::path::Path, host: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("hull:secret");
    let config = serde_json::json!({"auths": {host: {"auth": auth}}});
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
    dir.display().to_string()
}

/// `hull cache pull` of `REGISTRY/test/app:1` in `dir`, with credentials
/// for the registry in a docker config there.
fn pull_with_credentials(dir: &std::path::Path, registry: &str) -> util::Run {
    let config = docker_config(dir, registry);
    let cache = dir.join("cache");
    let image = format!("{registry}/test/app:1");
    util::hull_in(
        dir,
        &[
            "--cache",
            cache.to_str().expect("utf-8"),
            "cache",
            "pull",
            "--arch",
            "amd64",
            &image,
        ],
        &[("DOCKER_CONFIG", &config)],
    )
}

/// An address of this machine that is not loopback, if it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks the route.
    socket.connect("10.255.255.254:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn credentials_never_go_to_a_plain_http_token_service_on_another_machine() {
    let Some(ip) = non_loopback_ip() else {
        println!(
            "skipped: this machine has no address but loopback to put a remote token service on"
        );
        return;
    };
    let (token_addr, token_seen) = serve(&format!("{ip}:0"), |_, _| {
        ("200 OK".into(), vec![], br#"{"token":"t"}"#.to_vec())
    });
    let realm = format!("http://{token_addr}/token");
    let challenge = format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"reg\"");
    let (reg_addr, _) = serve("127.0.0.1:0", move |_, _| {
        ("401 Unauthorized".into(), vec![challenge.clone()], vec![])
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let out = pull_with_credentials(tmp.path(), &reg_addr);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&realm) && out.stderr.contains("plain HTTP on another machine"),
        "{}",
        out.stderr
    );
    let seen = token_seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        seen.iter().all(|(_, creds)| !creds),
        "the token service got credentials: {seen:?}"
    );
}

#[test]
fn blobs_redirected_to_another_host_are_fetched_without_credentials() {
    let layer = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, "etc/x", &b"x\n"[..]).expect("append");
        b.into_inner().expect("tar")
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]},
        "config": {}
    }))
    .expect("json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&layer), "size": layer.len()}],
    }))
    .expect("json");
    let blobs = [(sha(&config), config.clone()), (sha(&layer), layer.clone())];
    // The other host: serves the blobs, to anybody.
    let served = blobs.clone();
    let (cdn_addr, cdn_seen) = serve("127.0.0.1:0", move |path, _| {
        match served.iter().find(|(d, _)| path.ends_with(d.as_str())) {
            Some((_, b)) => ("200 OK".into(), vec![], b.clone()),
            None => ("404 Not Found".into(), vec![], vec![]),
        }
    });
    // The registry: basic auth, the manifest, and blobs redirected away.
    let (reg_addr, reg_seen) = serve("127.0.0.1:0", move |path, creds| {
        if !creds {
            return (
                "401 Unauthorized".into(),
                vec!["WWW-Authenticate: Basic realm=\"reg\"".into()],
                vec![],
            );
        }
        if path == "/v2/" {
            ("200 OK".into(), vec![], b"{}".to_vec())
        } else if path.contains("/manifests/") {
            (
                "200 OK".into(),
                vec!["Content-Type: application/vnd.oci.image.manifest.v1+json".into()],
                manifest.clone(),
            )
        } else if let Some(digest) = path.split("/blobs/").nth(1) {
            (
                "307 Temporary Redirect".into(),
                vec![format!("Location: http://{cdn_addr}/cdn/{digest}")],
                vec![],
            )
        } else {
            ("404 Not Found".into(), vec![], vec![])
        }
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let out = pull_with_credentials(tmp.path(), &reg_addr);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let reg = reg_seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        reg.iter()
            .any(|(l, creds)| l.contains("/manifests/") && *creds),
        "the registry itself got the credentials: {reg:?}"
    );
    let cdn = cdn_seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(cdn.len(), 2, "both blobs from the other host: {cdn:?}");
    assert!(
        cdn.iter().all(|(_, creds)| !creds),
        "credentials followed the redirect: {cdn:?}"
    );
}
