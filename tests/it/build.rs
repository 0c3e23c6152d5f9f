//! `hull build` against a real registry: images made with umoci (layers written
//! by the tar crate, with whiteouts, links, devices and xattrs), outputs checked
//! with cpio, bsdtar and gzip, reproducibility across directories and caches,
//! both architectures from one host, and hostile layers refused.

use crate::util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::registry::{oci_index, run, skopeo_copy, TestRegistry};

/// A tar layer written entry by entry.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }
    fn file(mut self, path: &str, data: &[u8], mode: u32, owner: (u64, u64)) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, data.len() as u64, mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        self.0.append_data(&mut h, path, data).expect("append");
        self
    }
    fn dir(mut self, path: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, 0, 0o755);
        self.0.append_data(&mut h, path, &[][..]).expect("append");
        self
    }
    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
        let mut h = Self::header(kind, 0, 0o777);
        self.0.append_link(&mut h, path, target).expect("append");
        self
    }
    fn chardev(mut self, path: &str, major: u32, minor: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Char, 0, 0o666);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.0.append_data(&mut h, path, &[][..]).expect("append");
        self
    }
    fn xattr_file(mut self, path: &str, data: &[u8], key: &str, value: &[u8]) -> Self {
        self.0
            .append_pax_extensions([(format!("SCHILY.xattr.{key}").as_str(), value)])
            .expect("pax");
        self.file(path, data, 0o755, (0, 0))
    }
    /// An entry whose raw name is written as is (no path checks). A sparse
    /// entry claims `size` bytes of real size with an empty sparse map.
    fn raw(mut self, name: &[u8], kind: tar::EntryType, size: u64, data: &[u8]) -> Self {
        let mut h = Self::header(kind, size, 0o644);
        if kind == tar::EntryType::GNUSparse {
            h.set_size(0);
            if let Some(gnu) = h.as_gnu_mut() {
                gnu.set_real_size(size);
            }
        }
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.0.append(&h, data).expect("append");
        self
    }
    fn write(self, path: &Path) {
        std::fs::write(path, self.0.into_inner().expect("tar")).expect("write layer");
    }
}

/// A relocatable ELF with a `.modinfo` section, like a kernel module.
fn elf_module(fields: &[String]) -> Vec<u8> {
    let mut obj = object::write::Object::new(
        object::BinaryFormat::Elf,
        object::Architecture::X86_64,
        object::Endianness::Little,
    );
    let section = obj.add_section(
        Vec::new(),
        b".modinfo".to_vec(),
        object::SectionKind::ReadOnlyData,
    );
    let mut data = Vec::new();
    for f in fields {
        data.extend_from_slice(f.as_bytes());
        data.push(0);
    }
    obj.append_section_data(section, &data, 1);
    obj.write().expect("elf")
}

struct Env {
    reg: TestRegistry,
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            reg: TestRegistry::start(),
            tmp: tempfile::tempdir().expect("tmp"),
        }
    }

    /// Makes `layout:tag` for `arch` from layer tars, with an optional label.
    fn image(&self, layout: &Path, tag: &str, arch: &str, layers: Vec<Layer>, label: Option<&str>) {
        if !layout.join("index.json").exists() {
            run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
        }
        let image = format!("{}:{tag}", layout.display());
        run(Command::new("umoci").args(["new", "--image", &image]));
        for (i, l) in layers.into_iter().enumerate() {
            let p = self.tmp.path().join(format!("{tag}-{arch}-{i}.tar"));
            l.write(&p);
            run(Command::new("umoci")
                .args(["raw", "add-layer", "--image", &image])
                .arg(&p));
        }
        let mut cfg = Command::new("umoci");
        cfg.args([
            "config",
            "--image",
            &image,
            "--architecture",
            arch,
            "--os",
            "linux",
        ])
        .args([
            "--config.entrypoint",
            "/bin/app",
            "--config.cmd",
            "--serve",
            "--config.env",
            "APP=1",
        ]);
        if let Some(l) = label {
            cfg.arg(format!("--config.label=org.mobyproject.config={l}"));
        }
        run(&mut cfg);
    }

    /// Pushes a two-arch index `repo:1` whose images `make(arch)` builds.
    fn publish(
        &self,
        repo: &str,
        make: &dyn Fn(&str) -> Vec<Layer>,
        label: Option<&str>,
    ) -> String {
        let layout = self
            .tmp
            .path()
            .join(format!("layout-{}", repo.replace('/', "-")));
        for arch in ["amd64", "arm64"] {
            self.image(&layout, arch, arch, make(arch), label);
        }
        oci_index(&layout, "multi", &[("amd64", "amd64"), ("arm64", "arm64")]);
        let image = format!("{}/{repo}:1", self.reg.addr);
        skopeo_copy(
            &format!("oci:{}:multi", layout.display()),
            &format!("docker://{image}"),
            &["--all"],
        );
        image
    }

    fn standard_images(&self) -> (String, String, String) {
        let kernel = self.publish(
            "test/kernel",
            &|arch| {
                let mut modules = tar::Builder::new(Vec::new());
                for (path, fields) in [
                    (
                        "virtio.ko",
                        vec!["name=virtio".to_string(), "depends=".into()],
                    ),
                    (
                        "virtio_net.ko",
                        vec![
                            "name=virtio_net".into(),
                            "depends=virtio".into(),
                            format!("alias=virtio:d00000001v*-{arch}"),
                        ],
                    ),
                ] {
                    let ko = elf_module(&fields);
                    let mut h = tar::Header::new_gnu();
                    h.set_size(ko.len() as u64);
                    h.set_mode(0o644);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_mtime(0);
                    modules
                        .append_data(
                            &mut h,
                            format!("lib/modules/6.1.0-test/kernel/drivers/{path}"),
                            &ko[..],
                        )
                        .expect("append");
                }
                let modules = modules.into_inner().expect("tar");
                vec![Layer::new()
                    .file("kernel", format!("KERNEL-{arch}").as_bytes(), 0o644, (0, 0))
                    .file("kernel.tar", &modules, 0o644, (0, 0))
                    .file(
                        "intel-ucode.cpio",
                        b"070701-not-really-a-cpio",
                        0o644,
                        (0, 0),
                    )]
            },
            None,
        );
        let init = self.publish(
            "test/init",
            &|arch| {
                vec![
                    Layer::new()
                        .dir("bin")
                        .file(
                            "bin/init",
                            format!("init for {arch}").as_bytes(),
                            0o755,
                            (0, 0),
                        )
                        .file(
                            "etc/arch",
                            format!("init for {arch}").as_bytes(),
                            0o644,
                            (0, 0),
                        )
                        .link(tar::EntryType::Link, "bin/init-again", "bin/init")
                        .link(tar::EntryType::Symlink, "sbin", "bin")
                        .chardev("dev/console", 5, 1)
                        .xattr_file(
                            "bin/ping",
                            b"ping",
                            "security.capability",
                            b"\x01\x00\x00\x02",
                        )
                        .file("etc/old", b"gone after layer 2", 0o644, (0, 0))
                        .file("var/cache/a", b"hidden by opaque", 0o644, (0, 0))
                        .file("home/user/.profile", b"owned", 0o640, (1000, 1000)),
                    Layer::new()
                        .file("etc/.wh.old", b"", 0o644, (0, 0))
                        .file("var/cache/.wh..wh..opq", b"", 0o644, (0, 0))
                        .file("var/cache/b", b"from layer 2", 0o644, (0, 0)),
                ]
            },
            None,
        );
        let svc = self.publish(
            "test/svc",
            &|arch| vec![Layer::new().file("bin/app", format!("app for {arch}").as_bytes(), 0o755, (0, 0))],
            Some(r#"{"capabilities":["CAP_NET_BIND_SERVICE"],"binds":["/etc/resolv.conf:/etc/resolv.conf"]}"#),
        );
        (kernel, init, svc)
    }

    fn manifest(&self, name: &str, kernel: &str, init: &str, svc: &str) -> PathBuf {
        let text = format!(
            "kernel:\n  image: {kernel}\n  cmdline: console=ttyS0\n  ucode: intel-ucode.cpio\n\
             init:\n  - {init}\n\
             onboot:\n  - name: setup\n    image: {svc}\n    command: [/bin/app, --once]\n    capabilities: [CAP_SYS_ADMIN]\n    net: host\n    timeout: 30s\n\
             onshutdown:\n  - name: bye\n    image: {svc}\n    command: [/bin/app, --bye]\n\
             services:\n  - name: web\n    image: {svc}\n    readonly: true\n    capabilities.add: [CAP_CHOWN]\n    binds.add: [/var/lib/web:/data]\n    uid: web\n    restart: always\n\
             \x20   tmpfs: [/run/web:size=1m]\n    rlimits: [\"nofile,1024,4096\"]\n    sysctl: {{net.core.somaxconn: 1024}}\n\
             \x20   maskedPaths: [/proc/kcore]\n    noNewPrivileges: true\n    oomScoreAdj: -100\n    hostname: webhost\n\
             \x20   resources: {{memory: {{limit: 67108864}}, pids: {{limit: 32}}}}\n\
             \x20   devices: [{{path: /dev/fuse, type: c, major: 10, minor: 229, mode: \"0666\"}}]\n\
             \x20   runtime: {{mkdir: [/var/lib/web], bindNS: {{net: /run/netns/web}}}}\n\
             \x20 - name: worker\n    image: {svc}\n    env: [MODE=worker]\n    net: new\n    binds: [cache:/cache]\n\
             volumes:\n  - name: cache\n\
             files:\n  - path: etc/motd\n    contents: hello\n    mode: \"0644\"\n    uid: 1000\n\
             \x20 - path: var/lib/web\n    directory: true\n\
             \x20 - path: etc/app.conf\n    source: app.conf\n    mode: \"0600\"\n\
             \x20 - path: etc/missing.conf\n    source: nowhere.conf\n    optional: true\n\
             \x20 - path: etc/localtime\n    symlink: /usr/share/zoneinfo/UTC\n\
             \x20 - path: etc/hull.json\n    metadata: json\n"
        );
        let p = self.tmp.path().join(name);
        std::fs::write(&p, text).expect("write manifest");
        std::fs::write(self.tmp.path().join("app.conf"), "port = 80\n").expect("write source");
        p
    }

    /// Pushes a one-layer amd64 image as `REGISTRY/REPO:1`; returns that.
    fn push_one(&self, repo: &str, layer: Layer, label: Option<&str>) -> String {
        let layout = self
            .tmp
            .path()
            .join(format!("one-{}", repo.replace('/', "-")));
        self.image(&layout, "t", "amd64", vec![layer], label);
        let image = format!("{}/{repo}:1", self.reg.addr);
        skopeo_copy(
            &format!("oci:{}:t", layout.display()),
            &format!("docker://{image}"),
            &[],
        );
        image
    }

    /// Writes the manifest `NAME.yml` in the temp dir.
    fn manifest_text(&self, name: &str, text: &str) -> PathBuf {
        let m = self.tmp.path().join(format!("{name}.yml"));
        std::fs::write(&m, text).expect("write the manifest");
        m
    }

    fn hull(&self, cache: &str, args: &[&str]) -> util::Run {
        let mut all = vec!["--cache", cache];
        all.extend_from_slice(args);
        util::hull_in(self.tmp.path(), &all, &[("DOCKER_CONFIG", "/nonexistent")])
    }
}

fn sh(cmd: &str) -> String {
    run(Command::new("sh").args(["-c", cmd]))
}

#[test]
fn kernel_initrd_and_tar_hold_the_contract_and_are_reproducible() {
    let env = Env::new();
    let (kernel, init, svc) = env.standard_images();
    let manifest = env.manifest("m.yml", &kernel, &init, &svc);
    let out1 = env.tmp.path().join("out1");
    let cache1 = env.tmp.path().join("cache1");
    let run1 = env
        .hull(
            cache1.to_str().expect("utf-8"),
            &[
                "build",
                "--arch",
                "amd64",
                "--format",
                "kernel+initrd",
                "--format",
                "tar",
                "--format",
                "tar-kernel-initrd",
                "--dir",
                out1.to_str().expect("utf-8"),
                manifest.to_str().expect("utf-8"),
            ],
        )
        .expect_code(0);
    for f in [
        "m-kernel",
        "m-initrd.img",
        "m-cmdline",
        "m.tar",
        "m-initrd.tar",
    ] {
        assert!(
            run1.stdout.contains(&format!("{}", out1.join(f).display())),
            "{f} listed: {}",
            run1.stdout
        );
    }
    assert_eq!(
        std::fs::read(out1.join("m-kernel")).expect("kernel"),
        b"KERNEL-amd64"
    );
    assert_eq!(
        std::fs::read_to_string(out1.join("m-cmdline")).expect("cmdline"),
        "console=ttyS0"
    );

    // The initrd: the microcode first (uncompressed), then gzip members of a cpio.
    let initrd = std::fs::read(out1.join("m-initrd.img")).expect("initrd");
    assert!(initrd.starts_with(b"070701-not-really-a-cpio"));
    let gz = env.tmp.path().join("main.cpio.gz");
    std::fs::write(&gz, &initrd[b"070701-not-really-a-cpio".len()..]).expect("write");
    let listing = sh(&format!(
        "gzip -dc {} | cpio -itv --quiet --numeric-uid-gid",
        gz.display()
    ));
    let names = sh(&format!("gzip -dc {} | cpio -it --quiet", gz.display()));
    let has = |p: &str| names.lines().any(|l| l == p);
    for p in [
        "bin/init",
        "bin/init-again",
        "sbin",
        "dev/console",
        "bin/ping",
        "var/cache/b",
        "lib/modules/6.1.0-test/kernel/drivers/virtio.ko",
        "lib/modules/6.1.0-test/modules.dep",
        "lib/modules/6.1.0-test/modules.alias",
        "etc/motd",
        "var/lib/web",
        "containers/onboot/000-setup/config.json",
        "containers/onboot/000-setup/runtime.json",
        "containers/onboot/000-setup/rootfs",
        "containers/services/web/config.json",
        "containers/services/worker/config.json",
    ] {
        assert!(has(p), "{p} missing from the initrd:\n{names}");
    }
    assert!(!has("etc/old"), "whiteout honoured");
    let dep = sh(&format!(
        "gzip -dc {} | cpio -i --quiet --to-stdout lib/modules/6.1.0-test/modules.dep",
        gz.display()
    ));
    assert_eq!(
        dep,
        "kernel/drivers/virtio.ko:\nkernel/drivers/virtio_net.ko: kernel/drivers/virtio.ko\n"
    );
    let alias = sh(&format!(
        "gzip -dc {} | cpio -i --quiet --to-stdout lib/modules/6.1.0-test/modules.alias",
        gz.display()
    ));
    assert!(
        alias.contains("alias virtio:d00000001v*-amd64 virtio_net\n"),
        "{alias}"
    );
    assert!(!has("var/cache/a"), "opaque directory honoured");
    // One image directory for the three containers of the same image.
    let image_dirs: Vec<&str> = names
        .lines()
        .filter(|l| l.starts_with("containers/images/") && l.matches('/').count() == 2)
        .collect();
    assert_eq!(image_dirs.len(), 1, "{image_dirs:?}");
    assert!(has(&format!("{}/bin/app", image_dirs[0])));
    let line = |p: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {p}")) || l.contains(&format!(" {p} -> ")))
            .unwrap_or_else(|| panic!("{p} not in {listing}"))
            .to_string()
    };
    assert!(
        line("dev/console").starts_with("crw-rw-rw-"),
        "{}",
        line("dev/console")
    );
    assert!(
        line("sbin").starts_with("lrwxrwxrwx") && line("sbin").contains("sbin -> bin"),
        "{}",
        line("sbin")
    );
    assert!(
        line("bin/init").starts_with("-rwxr-xr-x   2 "),
        "hard link count: {}",
        line("bin/init")
    );
    assert!(
        line("etc/motd").contains(" 1000 "),
        "owner: {}",
        line("etc/motd")
    );

    // The tar: owners, modes, links, xattrs as bsdtar reads them.
    let tar = out1.join("m.tar");
    let tv = sh(&format!("bsdtar -tvf {} --numeric-owner", tar.display()));
    let tline = |p: &str| {
        tv.lines()
            .find(|l| l.contains(&format!(" {p}")))
            .unwrap_or_else(|| panic!("{p} not in {tv}"))
            .to_string()
    };
    assert!(
        tline("home/user/.profile").starts_with("-rw-r-----")
            && tline("home/user/.profile").contains("1000"),
        "{}",
        tline("home/user/.profile")
    );
    assert!(
        tline("bin/init-again").contains("link to bin/init"),
        "{}",
        tline("bin/init-again")
    );
    let raw = std::fs::read(&tar).expect("tar");
    assert!(
        raw.windows(37)
            .any(|w| w == b"SCHILY.xattr.security.capability=\x01\x00\x00\x02"),
        "the xattr is kept in the tar"
    );

    // config.json: image config, then label, then the manifest entry.
    let config: serde_json::Value = serde_json::from_str(&sh(&format!(
        "bsdtar -xOf {} containers/services/web/config.json",
        tar.display()
    )))
    .expect("config.json is JSON");
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["/bin/app", "--serve"])
    );
    assert_eq!(config["root"]["readonly"], true);
    let caps = config["process"]["capabilities"]["bounding"]
        .as_array()
        .expect("caps");
    assert!(
        caps.contains(&"CAP_NET_BIND_SERVICE".into())
            && caps.contains(&"CAP_CHOWN".into())
            && caps.len() == 2,
        "{caps:?}"
    );
    assert_eq!(
        config["process"]["user"]["uid"], 100,
        "name allocated an id"
    );
    let mounts = config["mounts"].as_array().expect("mounts");
    for dest in ["/proc", "/dev", "/sys", "/etc/resolv.conf", "/data"] {
        assert!(
            mounts.iter().any(|m| m["destination"] == dest),
            "{dest} in {mounts:?}"
        );
    }
    let ns: Vec<&str> = config["linux"]["namespaces"]
        .as_array()
        .expect("ns")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert!(ns.contains(&"pid") && !ns.contains(&"network"), "{ns:?}");
    let worker: serde_json::Value = serde_json::from_str(&sh(&format!(
        "bsdtar -xOf {} containers/services/worker/config.json",
        tar.display()
    )))
    .expect("json");
    assert_eq!(
        worker["process"]["env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "MODE=worker"
        ])
    );
    assert!(worker["linux"]["namespaces"]
        .as_array()
        .expect("ns")
        .iter()
        .any(|n| n["type"] == "network"));
    assert_eq!(config["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
    assert_eq!(config["process"]["noNewPrivileges"], true);
    assert_eq!(config["process"]["oomScoreAdj"], -100);
    assert_eq!(config["hostname"], "webhost");
    assert_eq!(config["linux"]["sysctl"]["net.core.somaxconn"], "1024");
    assert_eq!(
        config["linux"]["maskedPaths"],
        serde_json::json!(["/proc/kcore"])
    );
    assert_eq!(config["linux"]["resources"]["memory"]["limit"], 67108864);
    assert_eq!(config["linux"]["resources"]["pids"]["limit"], 32);
    assert!(config["linux"]["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .any(|d| d["path"] == "/dev/fuse" && d["major"] == 10));
    assert!(mounts
        .iter()
        .any(|m| m["destination"] == "/run/web" && m["type"] == "tmpfs"));
    let wm = worker["mounts"].as_array().expect("mounts");
    assert!(
        wm.iter()
            .any(|m| m["destination"] == "/cache" && m["source"] == "/containers/volumes/cache"),
        "{wm:?}"
    );
    let runtime: serde_json::Value = serde_json::from_str(&sh(&format!(
        "bsdtar -xOf {} containers/services/web/runtime.json",
        tar.display()
    )))
    .expect("json");
    assert_eq!(runtime["hull"]["restart"], "always");
    assert_eq!(runtime["mkdir"], serde_json::json!(["/var/lib/web"]));
    assert_eq!(runtime["bindNS"]["net"], "/run/netns/web");
    // files: source (mode from the entry), symlink, metadata; an optional missing source skipped.
    assert_eq!(
        sh(&format!("bsdtar -xOf {} etc/app.conf", tar.display())),
        "port = 80\n"
    );
    assert!(
        tline("etc/app.conf").starts_with("-rw-------"),
        "{}",
        tline("etc/app.conf")
    );
    assert!(
        tline("etc/localtime").contains("-> /usr/share/zoneinfo/UTC"),
        "{}",
        tline("etc/localtime")
    );
    assert!(!tv.contains("etc/missing.conf"));
    let meta: serde_json::Value =
        serde_json::from_str(&sh(&format!("bsdtar -xOf {} etc/hull.json", tar.display())))
            .expect("metadata is JSON");
    assert_eq!(meta["services"][0]["name"], "web");
    assert!(
        tv.contains("containers/onshutdown/000-bye/config.json"),
        "{tv}"
    );
    assert!(tv.contains("containers/volumes/cache"), "{tv}");
    let onboot: serde_json::Value = serde_json::from_str(&sh(&format!(
        "bsdtar -xOf {} containers/onboot/000-setup/runtime.json",
        tar.display()
    )))
    .expect("json");
    assert_eq!(onboot["hull"]["timeoutSeconds"], 30);

    // tar-kernel-initrd holds the same three things.
    let inner = sh(&format!(
        "bsdtar -tf {}",
        out1.join("m-initrd.tar").display()
    ));
    assert_eq!(
        inner.lines().collect::<Vec<_>>(),
        ["kernel", "initrd.img", "cmdline"]
    );

    // Another directory, another cache, a copy of the manifest elsewhere: the same bytes.
    let elsewhere = env.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::fs::copy(&manifest, elsewhere.join("m.yml")).expect("copy");
    std::fs::copy(env.tmp.path().join("app.conf"), elsewhere.join("app.conf")).expect("copy");
    let out2 = env.tmp.path().join("out2");
    env.hull(
        env.tmp.path().join("cache2").to_str().expect("utf-8"),
        &[
            "build",
            "--arch",
            "amd64",
            "--format",
            "kernel+initrd",
            "--format",
            "tar",
            "--format",
            "tar-kernel-initrd",
            "--dir",
            out2.to_str().expect("utf-8"),
            elsewhere.join("m.yml").to_str().expect("utf-8"),
        ],
    )
    .expect_code(0);
    for f in [
        "m-kernel",
        "m-initrd.img",
        "m-cmdline",
        "m.tar",
        "m-initrd.tar",
    ] {
        if std::env::var_os("HULL_DEBUG_REPRO").is_some() {
            let _ = std::fs::remove_dir_all("/tmp/repro");
            let _ = sh(&format!(
                "mkdir -p /tmp/repro && cp -r {} {} /tmp/repro/",
                out1.display(),
                out2.display()
            ));
        }
        assert!(
            std::fs::read(out1.join(f)).expect("read")
                == std::fs::read(out2.join(f)).expect("read"),
            "{f} differs between two builds"
        );
    }

    // The same manifest for arm64, from this host.
    let out3 = env.tmp.path().join("out3");
    env.hull(
        cache1.to_str().expect("utf-8"),
        &[
            "build",
            "--arch",
            "arm64",
            "--dir",
            out3.to_str().expect("utf-8"),
            "--compression",
            "zstd",
            manifest.to_str().expect("utf-8"),
        ],
    )
    .expect_code(0);
    assert_eq!(
        std::fs::read(out3.join("m-kernel")).expect("kernel"),
        b"KERNEL-arm64"
    );
    let z = env.tmp.path().join("arm.zst");
    let initrd = std::fs::read(out3.join("m-initrd.img")).expect("initrd");
    std::fs::write(&z, &initrd[b"070701-not-really-a-cpio".len()..]).expect("write");
    let arm_init = sh(&format!(
        "zstd -dc {} | cpio -i --quiet --to-stdout etc/arch",
        z.display()
    ));
    assert_eq!(arm_init, "init for arm64");
}

#[test]
fn lock_files_pin_every_image() {
    let env = Env::new();
    let (kernel, init, svc) = env.standard_images();
    let manifest = env.manifest("m.yml", &kernel, &init, &svc);
    let cache = env.tmp.path().join("cache");
    let lock = env.tmp.path().join("m.lock");
    let out = env.tmp.path().join("out");
    env.hull(
        cache.to_str().expect("utf-8"),
        &[
            "build",
            "--arch",
            "amd64",
            "--dir",
            out.to_str().expect("utf-8"),
            "--write-lock",
            lock.to_str().expect("utf-8"),
            manifest.to_str().expect("utf-8"),
        ],
    )
    .expect_code(0);
    let pins: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock).expect("lock")).expect("json");
    for r in [&kernel, &init, &svc] {
        assert!(
            pins["images"][r.as_str()]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:")),
            "{r} pinned: {pins}"
        );
    }
    // Move a tag: the locked build still gets the pinned image.
    let moved = env.publish(
        "test/init",
        &|_| vec![Layer::new().file("bin/init", b"moved", 0o755, (0, 0))],
        None,
    );
    assert_eq!(moved, init);
    let out2 = env.tmp.path().join("out2");
    env.hull(
        env.tmp.path().join("fresh").to_str().expect("utf-8"),
        &[
            "build",
            "--arch",
            "amd64",
            "--dir",
            out2.to_str().expect("utf-8"),
            "--lock",
            lock.to_str().expect("utf-8"),
            manifest.to_str().expect("utf-8"),
        ],
    )
    .expect_code(0);
    // SOURCE_DATE_EPOCH sets every time in the output.
    let out3 = env.tmp.path().join("out3");
    util::hull_in(
        env.tmp.path(),
        &[
            "--cache",
            cache.to_str().expect("utf-8"),
            "build",
            "--arch",
            "amd64",
            "--format",
            "tar",
            "--dir",
            out3.to_str().expect("utf-8"),
            manifest.to_str().expect("utf-8"),
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    )
    .expect_code(0);
    let tv = sh(&format!(
        "TZ=UTC bsdtar -tvf {}",
        out3.join("m.tar").display()
    ));
    assert!(tv.lines().all(|l| l.contains("Nov 14  2023")), "{tv}");
    let (a, b) = (out.join("m-initrd.img"), out2.join("m-initrd.img"));
    let listing = |p: &Path| {
        sh(&format!(
            "tail -c +25 {} | gzip -dc | cpio -i --quiet --to-stdout etc/arch",
            p.display()
        ))
    };
    assert_eq!(listing(&a), "init for amd64");
    assert_eq!(
        listing(&b),
        "init for amd64",
        "the lock pins the old init image"
    );
    assert!(
        std::fs::read(&a).expect("read") == std::fs::read(&b).expect("read"),
        "same bytes"
    );
}

#[test]
fn hostile_layers_are_refused_and_nothing_is_written() {
    let env = Env::new();
    let (kernel, _, _) = env.standard_images();
    let cases: Vec<(&str, Layer, &str)> = vec![
        (
            "escape",
            Layer::new().raw(b"../../etc/evil", tar::EntryType::Regular, 4, b"evil"),
            "leaves the tree",
        ),
        (
            "absolute",
            Layer::new().raw(b"/etc/evil", tar::EntryType::Regular, 4, b"evil"),
            "leaves the tree",
        ),
        (
            "symlink",
            Layer::new()
                .link(tar::EntryType::Symlink, "etc", "/etc")
                .file("etc/passwd", b"x", 0o644, (0, 0)),
            "goes through the symlink \"etc\"",
        ),
        (
            "sparse",
            Layer::new().raw(b"huge.img", tar::EntryType::GNUSparse, 10 << 30, b""),
            "sparse",
        ),
        (
            "short",
            Layer::new().raw(b"huge.bin", tar::EntryType::Regular, 10 << 30, b""),
            "huge.bin",
        ),
        (
            // A file claiming 17 GiB: past the layer limit before any is read.
            "bomb",
            Layer::new().raw(b"zeros.bin", tar::EntryType::Regular, 17 << 30, b""),
            "bytes of files: refused",
        ),
        (
            // One file 10,000 directories deep (a GNU long name).
            "deep",
            Layer::new().file(
                &format!("{}/f", vec!["d"; 10_000].join("/")),
                b"x",
                0o644,
                (0, 0),
            ),
            "more than the 4096 a path may have",
        ),
    ];
    for (name, layer, expect) in cases {
        let image = env.push_one(&format!("hostile/{name}"), layer, None);
        let m = env.manifest_text(
            name,
            &format!("kernel:\n  image: {kernel}\ninit:\n  - {image}\n"),
        );
        let out = env.tmp.path().join(format!("out-{name}"));
        let run = env
            .hull(
                env.tmp.path().join("cache").to_str().expect("utf-8"),
                &[
                    "build",
                    "--arch",
                    "amd64",
                    "--dir",
                    out.to_str().expect("utf-8"),
                    m.to_str().expect("utf-8"),
                ],
            )
            .expect_code(1);
        assert!(
            run.stderr.contains(&image)
                && run.stderr.contains("layer sha256:")
                && run.stderr.contains(expect)
                && !run.stderr.contains("panicked"),
            "{name}: the error names image, layer and path:\n{}",
            run.stderr
        );
        util::nothing_written(&out, name);
    }
}

#[test]
fn a_label_with_nested_aliases_fails_the_build_quickly_in_little_memory() {
    let env = Env::new();
    let (kernel, _, _) = env.standard_images();
    // Eight levels of ten aliases (10^8 nodes if expanded) in 700 bytes.
    let mut label = String::from("{a0: &a0 [x, x, x, x, x, x, x, x, x, x],\n");
    for i in 1..8 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        label.push_str(&format!("a{i}: &a{i} [{refs}],\n"));
    }
    label.push('}');
    let layer = Layer::new().file("bin/app", b"x", 0o755, (0, 0));
    let image = env.push_one("hostile/label-bomb", layer, Some(&label));
    let m = env.manifest_text(
        "label-bomb",
        &format!("kernel:\n  image: {kernel}\nonboot:\n  - name: app\n    image: {image}\n"),
    );
    let out = env.tmp.path().join("out-label-bomb");
    let cache = env.tmp.path().join("cache");
    let args = [
        "--cache",
        cache.to_str().expect("utf-8"),
        "build",
        "--arch",
        "amd64",
        "--dir",
        out.to_str().expect("utf-8"),
        m.to_str().expect("utf-8"),
    ];
    let started = std::time::Instant::now();
    let (run, peak) = util::hull_peak(env.tmp.path(), &args, &[("DOCKER_CONFIG", "/nonexistent")]);
    let took = started.elapsed();
    let run = run.expect_code(1);
    println!(
        "label bomb: refused in {took:?}, peak RSS {} MiB",
        peak >> 10
    );
    assert!(
        run.stderr
            .contains(&format!("org.mobyproject.config label of {image}"))
            && run.stderr.contains("more than 100000 nodes")
            && !run.stderr.contains("panicked"),
        "the error names the image and the label:\n{}",
        run.stderr
    );
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert!(peak < 256 << 10, "peak RSS {peak} KiB");
    util::nothing_written(&out, "label bomb");
}

#[test]
fn layer_limits_are_flags() {
    let env = Env::new();
    let (kernel, _, _) = env.standard_images();
    let mut layer = Layer::new();
    for i in 0..10 {
        layer = layer.file(&format!("data/f{i}"), &[7u8; 2048], 0o644, (0, 0));
    }
    let image = env.push_one("limits/ten-files", layer, None);
    let m = env.manifest_text(
        "limits",
        &format!("kernel:\n  image: {kernel}\ninit:\n  - {image}\n"),
    );
    let cache = env.tmp.path().join("cache");
    let build = |name: &str, extra: &[&str]| {
        let out = env.tmp.path().join(format!("out-{name}"));
        let mut args = vec![
            "build",
            "--arch",
            "amd64",
            "--dir",
            out.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        args.push(m.to_str().expect("utf-8"));
        (env.hull(cache.to_str().expect("utf-8"), &args), out)
    };
    for (name, extra, says) in [
        (
            "entries",
            ["--max-layer-entries", "5"],
            "more than 5 entries",
        ),
        ("size", ["--max-layer-size", "8K"], "8192 bytes of files"),
    ] {
        let (run, out) = build(name, &extra);
        let run = run.expect_code(1);
        assert!(
            run.stderr.contains(&image) && run.stderr.contains(says),
            "{name}: the error names the image and the limit:\n{}",
            run.stderr
        );
        assert!(
            !out.join("limits-initrd.img").exists(),
            "{name}: nothing written"
        );
    }
    let (run, out) = build(
        "raised",
        &["--max-layer-entries", "11", "--max-layer-size", "20K"],
    );
    run.expect_code(0);
    assert!(out.join("limits-initrd.img").exists());
}

/// `len` bytes that compress little, different for each `seed`.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn a_rebuild_after_one_service_changed_compresses_only_it_and_equals_a_build_from_nothing() {
    let env = Env::new();
    let (kernel, init, _) = env.standard_images();
    let big = |repo: &str, path: &str, seed: u32| {
        let layer = Layer::new().file(path, &noise(2 << 20, seed), 0o755, (0, 0));
        env.push_one(repo, layer, None)
    };
    let base = big("test/base", "usr/lib/data", 1);
    let db = big("test/db", "bin/db", 2);
    let (app1, app2) = (
        big("test/app1", "bin/app", 3),
        big("test/app2", "bin/app", 4),
    );
    let manifest = |name: &str, app: &str| {
        env.manifest_text(
            name,
            &format!(
                "kernel:\n  image: {kernel}\n  cmdline: console=ttyS0\n\
                 init:\n  - {init}\n  - {base}\n\
                 services:\n  - name: app\n    image: {app}\n    command: [/bin/app]\n\
                 \x20 - name: db\n    image: {db}\n    command: [/bin/db]\n"
            ),
        )
    };
    let (m1, m2) = (manifest("m1", &app1), manifest("m2", &app2));
    let kept = |cache: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(cache.join(".hull/initrd-parts"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    for (codec, decompress) in [("gzip", "gzip -dc"), ("zstd", "zstd -dc")] {
        let cache = env.tmp.path().join(format!("cache-{codec}"));
        let build = |cache: &Path, m: &Path, out: &str| {
            let dir = env.tmp.path().join(format!("{out}-{codec}"));
            let run = env
                .hull(
                    cache.to_str().expect("utf-8"),
                    &[
                        "build",
                        "--arch",
                        "amd64",
                        "--compression",
                        codec,
                        "--dir",
                        dir.to_str().expect("utf-8"),
                        m.to_str().expect("utf-8"),
                    ],
                )
                .expect_code(0);
            let initrd = std::fs::read(dir.join(format!(
                "{}-initrd.img",
                m.file_stem().expect("stem").to_string_lossy()
            )))
            .expect("initrd");
            (initrd, run.stderr)
        };
        let (_, said) = build(&cache, &m1, "first");
        assert!(said.contains("initrd: 6 parts, 0 reused"), "{said}");
        let after_first = kept(&cache);
        assert_eq!(
            after_first.len(),
            3,
            "base, app1 and db kept: {after_first:?}"
        );
        let (rebuilt, said) = build(&cache, &m2, "rebuilt");
        assert!(said.contains("initrd: 6 parts, 2 reused"), "{said}");
        let after_second = kept(&cache);
        let new: Vec<&String> = after_second
            .iter()
            .filter(|k| !after_first.contains(k))
            .collect();
        assert_eq!(new.len(), 1, "only app2's part is new: {after_second:?}");
        let (scratch, _) = build(
            &env.tmp.path().join(format!("fresh-{codec}")),
            &m2,
            "scratch",
        );
        assert!(
            rebuilt == scratch,
            "{codec}: the rebuild differs from a build from nothing"
        );
        // From nothing again, on one core: the bytes depend neither on how
        // many compression workers ran nor on how the threads were scheduled.
        let one_core = env.tmp.path().join(format!("one-core-{codec}"));
        let out = Command::new("taskset")
            .args(["-c", "0", env!("CARGO_BIN_EXE_hull"), "--quiet", "--cache"])
            .arg(env.tmp.path().join(format!("one-core-cache-{codec}")))
            .args(["build", "--arch", "amd64", "--compression", codec, "--dir"])
            .arg(&one_core)
            .arg(&m2)
            .env("DOCKER_CONFIG", "/nonexistent")
            .output()
            .expect("taskset runs hull");
        assert!(out.status.success(), "{codec} on one core: {out:?}");
        assert!(
            std::fs::read(one_core.join("m2-initrd.img")).expect("initrd") == scratch,
            "{codec}: a build on one core differs from one on every core"
        );
        // Whole, as an independent tool reads it.
        let path = env.tmp.path().join(format!("rebuilt-{codec}.img"));
        std::fs::write(&path, &rebuilt).expect("write");
        let names = sh(&format!(
            "{decompress} {} | cpio -it --quiet",
            path.display()
        ));
        for p in [
            "usr/lib/data",
            "bin/init",
            "containers/services/app/config.json",
        ] {
            assert!(
                names.lines().any(|l| l == p),
                "{codec}: {p} missing:\n{names}"
            );
        }
        let app = names
            .lines()
            .find(|l| l.starts_with("containers/images/") && l.ends_with("/bin/app"))
            .unwrap_or_else(|| panic!("no bin/app:\n{names}"));
        let data = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{decompress} {} | cpio -i --quiet --to-stdout {app}",
                path.display()
            ))
            .output()
            .expect("cpio");
        assert!(data.stdout == noise(2 << 20, 4), "{codec}: app2's bytes");
    }
}
