//! A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution)
//! on a free 127.0.0.1 port with its own temp storage, and images made with
//! umoci and copied in with skopeo (tools independent of Hull).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry, killed on drop.
pub struct TestRegistry {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// TLS material and credentials for a locked-down registry.
pub struct Secure {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub htpasswd: PathBuf,
}

impl TestRegistry {
    /// The file the registry keeps blob `digest` in (to tamper with it).
    pub fn stored_blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(hex.get(..2).unwrap_or_default())
            .join(hex)
            .join("data")
    }

    pub fn start() -> Self {
        Self::start_with(None)
    }

    pub fn start_with(secure: Option<&Secure>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some(s) = secure {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: hull-test\n    path: {}\n",
                s.cert.display(),
                s.key.display(),
                s.htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts (installed by ci/setup)");
        let reg = TestRegistry { child, addr, dir };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        panic!(
            "docker-registry did not listen on {} in 20 s:\n{log}",
            self.addr
        );
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a tar of `files` (path, contents) to `out`.
pub fn layer_tar(out: &Path, files: &[(&str, &[u8])]) {
    let mut b = tar::Builder::new(std::fs::File::create(out).expect("create tar"));
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, *data).expect("append");
    }
    b.finish().expect("finish tar");
}

/// Makes the image `layout:tag` for `arch` with umoci: one layer per file set.
pub fn umoci_image(layout: &Path, tag: &str, arch: &str, layers: &[&[(&str, &[u8])]]) {
    if !layout.join("index.json").exists() {
        run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    }
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    for (i, files) in layers.iter().enumerate() {
        let tar = layout.with_extension(format!("{tag}-{i}.tar"));
        layer_tar(&tar, files);
        run(Command::new("umoci")
            .args(["raw", "add-layer", "--image", &image])
            .arg(&tar));
    }
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--architecture",
        arch,
        "--os",
        "linux",
        "--config.entrypoint",
        "/bin/true",
    ]));
}

/// Adds to `layout` an image index tagged `tag` over the existing tags
/// `(tag, arch)`, written by hand as the OCI image spec describes it.
pub fn oci_index(layout: &Path, tag: &str, members: &[(&str, &str)]) {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).expect("read index")).expect("json");
    let entries = index["manifests"].as_array().expect("manifests").clone();
    let mut manifests = Vec::new();
    for (member, arch) in members {
        let mut d = entries
            .iter()
            .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == *member)
            .unwrap_or_else(|| panic!("no tag {member} in {}", layout.display()))
            .clone();
        d.as_object_mut().expect("object").remove("annotations");
        d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
        manifests.push(d);
    }
    let blob = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .expect("json");
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(&blob));
    std::fs::write(layout.join("blobs/sha256").join(&hex), &blob).expect("write blob");
    index["manifests"]
        .as_array_mut()
        .expect("array")
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": blob.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).expect("json")).expect("write index");
}

/// Copies with skopeo (TLS verification off for the plain-HTTP test registry).
pub fn skopeo_copy(src: &str, dst: &str, extra: &[&str]) {
    run(Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--src-tls-verify=false",
        ])
        .args(extra)
        .args([src, dst]));
}

/// A self-signed RSA certificate made with openssl: `dir/NAME.key`, `dir/NAME.pem`.
pub fn self_signed(dir: &Path, name: &str, cn: &str) {
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={cn}"),
        "-keyout",
        &format!("{name}.key"),
        "-out",
        &format!("{name}.pem"),
    ]));
}
