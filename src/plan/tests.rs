//! The plan of `tests/fixtures/all-fields.yml` and of small manifests, made
//! in memory from image facts written here (no registry, no tree).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hull_contract::{RestartPolicy, Section};

use super::*;
use crate::manifest::Manifest;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn manifest(text: &str) -> Manifest {
    crate::manifest::load_texts(&[(Path::new("m.yml"), text)])
        .expect("manifest loads")
        .manifest
}

/// Facts for every reference a manifest uses, each image its own digest.
fn infos(m: &Manifest) -> BTreeMap<String, ImageInfo> {
    crate::build::references(m)
        .into_iter()
        .enumerate()
        .map(|(i, (text, _))| {
            let info = ImageInfo {
                hex: format!("{i:064x}"),
                ..ImageInfo::default()
            };
            (text, info)
        })
        .collect()
}

#[test]
fn all_fields_plans_every_part() {
    let m = crate::manifest::load_files(&[fixtures().join("all-fields.yml")])
        .expect("loads")
        .manifest;
    // The oci volume is refused, naming it.
    let e = plan(&m, &infos(&m), &fixtures()).expect_err("oci volume");
    assert!(matches!(&e, PlanError::OciVolume(n) if n == "tools"), "{e}");
    let mut m = m;
    if let Some(v) = m.volumes.as_mut() {
        v.retain(|v| v.format.is_none());
    }
    let p = plan(&m, &infos(&m), &fixtures()).expect("plans");

    let k = p.kernel.as_ref().expect("kernel");
    assert_eq!(k.binary, "bzImage");
    assert_eq!(k.ucode.as_deref(), Some("intel-ucode.cpio"));
    assert!(k
        .tar
        .as_ref()
        .is_some_and(|t| t.required && t.name == "kernel.tar"));
    // health: and watchdog: become the words hull-init reads.
    assert_eq!(
        p.cmdline,
        "console=ttyS0 quiet hull.health=30,300 hull.watchdog=/dev/watchdog0,20"
    );
    assert_eq!(p.init.len(), 2);

    let dirs: Vec<(&Section, &str)> = p
        .containers
        .iter()
        .map(|c| (&c.section, c.dir.as_str()))
        .collect();
    assert_eq!(
        dirs,
        [
            (&Section::Onboot, "containers/onboot/000-sysctl"),
            (&Section::Onshutdown, "containers/onshutdown/000-goodbye"),
            (&Section::Services, "containers/services/web"),
        ]
    );
    let web = &p.containers[2];
    assert_eq!(web.runtime.hull.restart, Some(RestartPolicy::Always));
    assert_eq!(
        web.runtime.hull.image,
        format!("/containers/images/{}", web.image_hex)
    );
    assert_eq!(p.containers[0].runtime.hull.timeout_seconds, Some(120));
    assert_eq!(p.containers[1].runtime.hull.timeout_seconds, Some(15));

    // One id per name, shared by containers and files: "web" is the uid of
    // the service and the owner of var/lib/web.
    let uid = web.config.process().as_ref().expect("process").user().uid();
    let dir = p
        .files
        .iter()
        .find(|f| f.path == "var/lib/web")
        .expect("dir");
    assert_eq!(
        (dir.uid, dir.mode, &dir.content),
        (uid, 0o750, &FileContent::Directory)
    );
    assert!(uid >= 100, "{uid}");

    let motd = p.files.iter().find(|f| f.path == "etc/motd").expect("motd");
    assert_eq!(
        motd.content,
        FileContent::Bytes(b"Welcome to Hull.\n".to_vec())
    );
    assert_eq!(motd.mode, 0o644);
    let conf = p
        .files
        .iter()
        .find(|f| f.path == "etc/app.conf")
        .expect("conf");
    assert_eq!(conf.mode, files::DEFAULT_FILE_MODE);
    assert!(
        matches!(&conf.content, FileContent::Source { path, optional: false } if path.ends_with("app.conf"))
    );
    let meta = p
        .files
        .iter()
        .find(|f| f.path == "etc/hull-manifest.json")
        .expect("meta");
    assert_eq!(meta.mode, files::DEFAULT_METADATA_MODE);
    assert_eq!(
        p.volumes,
        [VolumePlan {
            name: "webdata".into(),
            image: None
        }]
    );
}

#[test]
fn defaults_apply_when_the_manifest_says_nothing() {
    let m = manifest(
        "kernel:\n  image: k:1\nonboot:\n  - name: a\n    image: i:1\nservices:\n  - name: s\n    image: i:1\n",
    );
    let p = plan(&m, &infos(&m), Path::new(".")).expect("plans");
    let k = p.kernel.expect("kernel");
    assert_eq!(k.binary, "kernel");
    assert_eq!(
        k.tar,
        Some(ModulesTar {
            name: "kernel.tar".into(),
            required: false
        })
    );
    assert_eq!(p.cmdline, "");
    let only_deadline = manifest("kernel:\n  image: k:1\nhealth:\n  deadline: 10m\n");
    assert_eq!(
        plan(&only_deadline, &infos(&only_deadline), Path::new("."))
            .expect("plans")
            .cmdline,
        "hull.health=,600"
    );
    assert_eq!(p.containers[0].runtime.hull.timeout_seconds, Some(60));
    assert_eq!(
        p.containers[1].runtime.hull.restart,
        Some(RestartPolicy::OnFailure)
    );
    // The same image twice: one image directory.
    assert_eq!(p.containers[0].image_hex, p.containers[1].image_hex);
}

#[test]
fn an_image_missing_from_the_facts_is_an_error_naming_it() {
    let m = manifest("services:\n  - name: s\n    image: i:1\n");
    let e = plan(&m, &BTreeMap::new(), Path::new(".")).expect_err("not pulled");
    assert!(e.to_string().contains("image i:1 was not pulled"), "{e}");
}

#[test]
fn masked_and_readonly_paths_are_runcs_unless_the_entry_lists_its_own() {
    use crate::plan::spec::linux::{DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
    let m = manifest(
        "onboot:\n  - name: bare\n    image: i:1\n  - name: none\n    image: i:1\n    maskedPaths: []\n    readonlyPaths: []\n  - name: own\n    image: i:1\n    readonlyPaths: [/proc/sysrq-trigger]\n",
    );
    let p = plan(&m, &infos(&m), Path::new(".")).expect("plans");
    let paths = |i: usize| {
        let linux = p.containers[i].config.linux().clone().expect("linux");
        (
            linux.masked_paths().clone().expect("masked paths written"),
            linux
                .readonly_paths()
                .clone()
                .expect("read-only paths written"),
        )
    };
    let (masked, readonly) = paths(0);
    assert_eq!(masked, DEFAULT_MASKED_PATHS);
    assert_eq!(readonly, DEFAULT_READONLY_PATHS);
    for must in ["/proc/kcore", "/sys/firmware", "/proc/keys"] {
        assert!(masked.iter().any(|p| p == must), "{must} not masked");
    }
    for must in ["/proc/sys", "/proc/sysrq-trigger"] {
        assert!(readonly.iter().any(|p| p == must), "{must} not read-only");
    }
    assert_eq!(paths(1), (vec![], vec![]));
    let (masked, readonly) = paths(2);
    assert_eq!(masked, DEFAULT_MASKED_PATHS);
    assert_eq!(readonly, ["/proc/sysrq-trigger"]);
}

#[test]
fn every_container_gets_a_pids_limit_unless_it_sets_its_own() {
    use crate::plan::spec::linux::DEFAULT_PIDS_LIMIT;
    let m = manifest(
        "services:\n  - name: a\n    image: i:1\n  - name: b\n    image: i:1\n    resources:\n      pids:\n        limit: 50000\n",
    );
    let p = plan(&m, &infos(&m), Path::new(".")).expect("plans");
    let limit = |i: usize| {
        let linux = p.containers[i].config.linux().clone().expect("linux");
        let r = linux.resources().clone().expect("resources");
        r.pids().as_ref().map(|p| p.limit())
    };
    assert_eq!(limit(0), Some(DEFAULT_PIDS_LIMIT));
    assert_eq!(limit(1), Some(50000));
}

/// A device rule as (allow, type, major, minor, access).
type Shown = (
    bool,
    Option<oci_spec::runtime::LinuxDeviceType>,
    Option<i64>,
    Option<i64>,
    String,
);

#[test]
fn device_rules_deny_all_but_the_default_list_and_what_the_entry_names() {
    use crate::plan::spec::linux::DEFAULT_ALLOWED_DEVICES;
    use oci_spec::runtime::LinuxDeviceType;
    let m = manifest(
        "onboot:\n  - name: f\n    image: i:1\n    devices:\n      - path: all\n        type: b\n      - path: /dev/console\n        type: c\n        major: 5\n        minor: 1\n",
    );
    let p = plan(&m, &infos(&m), Path::new(".")).expect("plans");
    let linux = p.containers[0].config.linux().clone().expect("linux");
    let rules = linux
        .resources()
        .clone()
        .and_then(|r| r.devices().clone())
        .expect("device rules");
    let shown: Vec<Shown> = rules
        .iter()
        .map(|r| {
            (
                r.allow(),
                r.typ(),
                r.major(),
                r.minor(),
                r.access().clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(shown[0], (false, None, None, None, "rwm".into()));
    assert_eq!(shown.len(), 1 + DEFAULT_ALLOWED_DEVICES.len() + 2);
    assert!(shown.contains(&(
        true,
        Some(LinuxDeviceType::C),
        Some(1),
        Some(3),
        "rwm".into()
    )));
    // `path: all`: every block device, and no node made.
    assert_eq!(
        shown[shown.len() - 2],
        (true, Some(LinuxDeviceType::B), None, None, "rwm".into())
    );
    assert_eq!(
        shown[shown.len() - 1],
        (
            true,
            Some(LinuxDeviceType::C),
            Some(5),
            Some(1),
            "rwm".into()
        )
    );
    let nodes: Vec<_> = linux
        .devices()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|d| d.path().clone())
        .collect();
    assert_eq!(nodes, [PathBuf::from("/dev/console")]);
}
