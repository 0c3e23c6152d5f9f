//! Property tests over what strangers write: manifests, image labels, OCI
//! manifests and configs, and layers. Each target draws its inputs from a
//! grammar close to the real thing (fields Hull knows, paths with `..`,
//! links and whiteouts) and checks what must hold for every input: no panic,
//! every error at a position inside the text, no tree entry outside the
//! root. On stable Rust with `proptest`.
//!
//! `HULL_FUZZ_CASES` sets the cases per target (default 10,000, what
//! `bash ci/test` runs, from a fixed seed; `HULL_FUZZ_SEED` sets another);
//! `bash ci/fuzz` runs them at length from a new seed, which it prints. A failure
//! prints the smallest input proptest found: add it to the tests of the
//! module it breaks.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::manifest::{self, LoadError};

/// Cases per target.
fn cases() -> u32 {
    std::env::var("HULL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// The seed: `HULL_FUZZ_SEED`, or a fixed one, so that `ci/test` tries the
/// same cases every run (`ci/fuzz` draws a new seed and prints it).
fn seed() -> u64 {
    std::env::var("HULL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x4855_4c4c)
}

fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed()),
        ..Config::default()
    }
}

/// Keys a manifest or label may have, and some it may not.
const KEYS: &[&str] = &[
    "kernel",
    "image",
    "cmdline",
    "init",
    "onboot",
    "onshutdown",
    "services",
    "files",
    "volumes",
    "name",
    "capabilities",
    "binds",
    "command",
    "env",
    "net",
    "pid",
    "uid",
    "gid",
    "readonly",
    "maskedPaths",
    "resources",
    "memory",
    "limit",
    "devices",
    "path",
    "type",
    "major",
    "minor",
    "sysctl",
    "rlimits",
    "runtime",
    "mkdir",
    "restart",
    "timeout",
    "seccomp",
    "control",
    "contents",
    "mode",
    "source",
    "tmpfs",
    "unknownField",
    "<<",
];

/// Scalars of every kind the decoder meets.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_string()),
        Just("~".to_string()),
        Just("0o644".to_string()),
        Just("\"quoted: \\\"x\\\"\"".to_string()),
        Just("'single'".to_string()),
        Just("docker.io/library/alpine:3.20".to_string()),
        Just("/dev/vda".to_string()),
        Just("all".to_string()),
        Just("CAP_NET_ADMIN".to_string()),
        Just("*anchor".to_string()),
        Just("&anchor x".to_string()),
        Just("[a, b, *anchor]".to_string()),
        Just("{k: v}".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ]
}

/// A YAML-shaped text: nested keys, lists and scalars with arbitrary
/// indentation, now and then a tab or a stray character.
fn yamlish() -> impl Strategy<Value = String> {
    let line = (
        0usize..8,
        prop::sample::select(KEYS),
        prop::bool::ANY,
        scalar(),
        prop::option::of(prop_oneof![
            Just("\t"),
            Just(":"),
            Just("- "),
            Just("#"),
            Just("\""),
            Just("&a "),
            Just("*a"),
            Just("\u{feff}"),
        ]),
    )
        .prop_map(|(indent, key, item, value, junk)| {
            let dash = if item { "- " } else { "" };
            format!(
                "{}{dash}{key}: {value}{}",
                " ".repeat(indent),
                junk.unwrap_or("")
            )
        });
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

/// Every error of a failed load must lie in the text: a line that exists
/// (or the one past the end), a column from 1.
fn check_positions(e: &LoadError, text: &str) -> Result<(), TestCaseError> {
    let LoadError::Invalid { errors, .. } = e else {
        return Ok(());
    };
    prop_assert!(!errors.is_empty());
    let lines = text.lines().count().max(1) + 1;
    for d in errors {
        prop_assert!(
            d.pos.line >= 1 && d.pos.line <= lines && d.pos.col >= 1,
            "error outside the text: {d} in {lines} lines"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifests_never_panic_and_every_error_has_a_position(text in yamlish()) {
        if let Err(e) = manifest::load_texts(&[(Path::new("f.yml"), &text)]) {
            check_positions(&e, &text)?;
        }
    }

    #[test]
    fn labels_never_panic_and_every_error_has_a_position(text in yamlish()) {
        let json = format!("{{{}}}", text.replace('\n', ", "));
        for t in [&text, &json] {
            if let Err(e) = manifest::parse_label("example.org/fuzz:1", t) {
                check_positions(&e, t)?;
            }
        }
    }
}

/// JSON values shaped like OCI manifests, indexes and configs, with wrong
/// types and odd values mixed in.
fn oci_json() -> impl Strategy<Value = serde_json::Value> {
    let digest = prop_oneof![
        Just(format!("sha256:{}", "a".repeat(64))),
        Just("sha256:short".to_string()),
        Just("md5:x".to_string()),
        "[ -~]{0,70}",
    ];
    let size = prop_oneof![Just(0i64), Just(-1), Just(i64::MAX), any::<i64>()];
    let media = prop::sample::select(vec![
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "text/plain",
    ]);
    let descriptor = (
        media.clone(),
        digest,
        size,
        prop::option::of("[a-z0-9]{0,8}"),
    )
        .prop_map(|(m, d, s, arch)| {
            let mut v = serde_json::json!({"mediaType": m, "digest": d, "size": s});
            if let Some(a) = arch {
                v["platform"] = serde_json::json!({"architecture": a, "os": "linux"});
            }
            v
        });
    let list = prop::collection::vec(descriptor.clone(), 0..4);
    (
        prop::option::of(prop_oneof![Just(2i64), any::<i64>()]),
        media,
        prop::option::of(descriptor),
        prop::option::of(list.clone()),
        prop::option::of(list),
        prop::option::of("[a-z0-9]{0,8}"),
    )
        .prop_map(|(version, media, config, layers, manifests, arch)| {
            let mut v = serde_json::json!({"mediaType": media});
            if let Some(n) = version {
                v["schemaVersion"] = n.into();
            }
            if let Some(c) = config {
                v["config"] = c;
            }
            if let Some(l) = layers {
                v["layers"] = l.into();
            }
            if let Some(m) = manifests {
                v["manifests"] = m.into();
            }
            if let Some(a) = arch {
                v["architecture"] = a.into();
            }
            v
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn oci_documents_never_panic(value in oci_json(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let text = serde_json::to_vec(&value).unwrap_or_default();
        for b in [&text, &bytes] {
            if let Ok(crate::image::oci::Parsed::Index { manifests, .. }) =
                crate::image::oci::Parsed::parse(b)
            {
                let _ = crate::image::oci::select(&manifests, crate::platform::Arch::Amd64);
                let _ = crate::image::oci::platforms(&manifests);
            }
            let _ = crate::image::oci::config_arch(b);
            let _ = crate::plan::spec::settings::image_defaults(b);
        }
    }
}

/// One tar entry as a hostile layer could hold it.
#[derive(Debug, Clone)]
enum Item {
    File(String, u8),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
}

/// Paths built from a few names, `.`, `..`, whiteouts and slashes.
fn layer_path() -> impl Strategy<Value = String> {
    let part = prop::sample::select(vec![
        "a",
        "b",
        "etc",
        ".",
        "..",
        ".wh.a",
        ".wh..wh..opq",
        "",
        "/",
        "c d",
        "é",
    ]);
    prop::collection::vec(part, 1..6).prop_map(|p| p.join("/"))
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        (layer_path(), any::<u8>()).prop_map(|(p, b)| Item::File(p, b)),
        layer_path().prop_map(Item::Dir),
        (layer_path(), layer_path()).prop_map(|(p, t)| Item::Symlink(p, t)),
        (layer_path(), layer_path()).prop_map(|(p, t)| Item::Hardlink(p, t)),
    ]
}

/// The tar bytes of `items`, names written raw (the tar crate's own path
/// checks would refuse the hostile ones a real attacker writes anyway).
fn layer_tar(items: &[Item]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(0);
        let (name, data, link): (&str, Vec<u8>, Option<&str>) = match item {
            Item::File(p, byte) => {
                h.set_entry_type(tar::EntryType::Regular);
                (p, vec![*byte; usize::from(*byte % 4)], None)
            }
            Item::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                (p, Vec::new(), None)
            }
            Item::Symlink(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                (p, Vec::new(), Some(t))
            }
            Item::Hardlink(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                (p, Vec::new(), Some(t))
            }
        };
        let bytes = name.as_bytes();
        let n = bytes.len().min(99);
        h.as_old_mut().name[..n].copy_from_slice(&bytes[..n]);
        if let Some(t) = link {
            let t = t.as_bytes();
            let m = t.len().min(99);
            h.as_old_mut().linkname[..m].copy_from_slice(&t[..m]);
        }
        h.set_size(data.len() as u64);
        h.set_cksum();
        let _ = b.append(&h, &data[..]);
    }
    b.into_inner().unwrap_or_default()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn layers_never_panic_or_put_anything_outside_the_root(
        layers in prop::collection::vec(prop::collection::vec(item(), 0..12), 1..3)
    ) {
        let dir = scratch_dir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let pack = crate::rootfs::tree::Pack::new(dir.path())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut tree = crate::rootfs::tree::Tree::new();
        for (i, items) in layers.iter().enumerate() {
            let path = dir.path().join(format!("layer{i}.tar"));
            std::fs::write(&path, layer_tar(items)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            // An error is a fine answer to a hostile layer; a panic is not.
            let _ = crate::rootfs::layers::apply(&mut tree, &pack, &path, ("fuzz", "layer"), Default::default());
        }
        for (path, entry) in tree.iter() {
            prop_assert!(!path.starts_with('/'), "absolute {path:?}");
            prop_assert!(
                !path.split('/').any(|p| p == ".." || p == "." || (p.is_empty() && !path.is_empty())),
                "not normalized: {path:?}"
            );
            if let crate::rootfs::tree::Kind::Hardlink(t) = &entry.kind {
                prop_assert!(
                    matches!(tree.get(t).map(|e| &e.kind), Some(crate::rootfs::tree::Kind::File(_))),
                    "hard link {path:?} to {t:?}, which is no file"
                );
            }
            if !path.is_empty() {
                let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                prop_assert!(
                    matches!(tree.get(parent).map(|e| &e.kind), Some(crate::rootfs::tree::Kind::Dir)),
                    "{path:?} has no directory for a parent"
                );
            }
        }
    }
}

/// What an archive says of one path: kind and content (file data, link
/// target), as read back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

/// What the tree says, in the same terms (hard links read as their file).
fn expected(
    tree: &crate::rootfs::tree::Tree,
    pack: &crate::rootfs::tree::Pack,
) -> Vec<(String, Seen)> {
    use crate::rootfs::tree::Kind;
    let data = |c| {
        let mut v = Vec::new();
        let _ = pack.copy_to(c, &mut v);
        v
    };
    tree.iter()
        .filter(|(p, _)| !p.is_empty())
        .filter_map(|(p, e)| {
            let seen = match &e.kind {
                Kind::Dir => Seen::Dir,
                Kind::File(c) => Seen::File(data(c)),
                Kind::Hardlink(t) => match tree.get(t).map(|e| &e.kind) {
                    Some(Kind::File(c)) => Seen::File(data(c)),
                    _ => return None,
                },
                Kind::Symlink(t) => Seen::Symlink(t.clone()),
                _ => return None,
            };
            Some((p.clone(), seen))
        })
        .collect()
}

/// A cpio archive read back with the `cpio` crate's reader.
fn read_cpio(bytes: &[u8]) -> std::io::Result<Vec<(String, Seen)>> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut rest: &[u8] = bytes;
    // Hard links: the data comes with the last link of an inode.
    let mut by_inode: std::collections::BTreeMap<u32, (Vec<String>, Vec<u8>)> = Default::default();
    loop {
        let mut r = cpio::NewcReader::new(rest)?;
        if r.entry().is_trailer() {
            break;
        }
        let name = r.entry().name().to_string();
        let (mode, ino) = (r.entry().mode(), r.entry().ino());
        let mut data = Vec::new();
        r.read_to_end(&mut data)?;
        rest = r.finish()?;
        match mode & 0o170000 {
            0o040000 => out.push((name, Seen::Dir)),
            0o120000 => out.push((
                name,
                Seen::Symlink(String::from_utf8_lossy(&data).into_owned()),
            )),
            0o100000 => {
                let slot = by_inode.entry(ino).or_default();
                slot.0.push(name);
                if !data.is_empty() {
                    slot.1 = data;
                }
            }
            _ => {}
        }
    }
    for (names, data) in by_inode.into_values() {
        out.extend(names.into_iter().map(|n| (n, Seen::File(data.clone()))));
    }
    Ok(out)
}

/// A tar archive read back with the `tar` crate's reader.
fn read_tar(bytes: &[u8]) -> std::io::Result<Vec<(String, Seen)>> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut files: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut links = Vec::new();
    for entry in tar::Archive::new(bytes).entries()? {
        let mut e = entry?;
        let name = String::from_utf8_lossy(&e.path_bytes())
            .trim_end_matches('/')
            .to_string();
        let link = e
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        match e.header().entry_type() {
            tar::EntryType::Directory => out.push((name, Seen::Dir)),
            tar::EntryType::Symlink => out.push((name, Seen::Symlink(link.unwrap_or_default()))),
            tar::EntryType::Link => links.push((name, link.unwrap_or_default())),
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                e.read_to_end(&mut data)?;
                files.insert(name.clone(), data.clone());
                out.push((name, Seen::File(data)));
            }
            _ => {}
        }
    }
    for (name, target) in links {
        let data = files.get(&target).cloned().unwrap_or_default();
        out.push((name, Seen::File(data)));
    }
    Ok(out)
}

/// What a tree holds by path, and its cpio and tar bytes.
type Written = (Vec<(String, Seen)>, Vec<u8>, Vec<u8>);

/// The cpio and tar bytes of a tree built from `layers`.
fn archives(layers: &[Vec<Item>]) -> Result<Written, TestCaseError> {
    let fail = |e: std::io::Error| TestCaseError::fail(e.to_string());
    let dir = scratch_dir().map_err(fail)?;
    let pack = crate::rootfs::tree::Pack::new(dir.path()).map_err(fail)?;
    let mut tree = crate::rootfs::tree::Tree::new();
    for (i, items) in layers.iter().enumerate() {
        let path = dir.path().join(format!("layer{i}.tar"));
        std::fs::write(&path, layer_tar(items)).map_err(fail)?;
        let _ = crate::rootfs::layers::apply(
            &mut tree,
            &pack,
            &path,
            ("fuzz", "layer"),
            Default::default(),
        );
    }
    let mut cpio = Vec::new();
    crate::media::cpio::write(&tree, &pack, 0, &mut cpio).map_err(fail)?;
    let tar = crate::media::tar::write(&tree, &pack, 0, Vec::new()).map_err(fail)?;
    Ok((expected(&tree, &pack), cpio, tar))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cpio_and_tar_hold_the_tree_they_were_written_from(
        layers in prop::collection::vec(prop::collection::vec(item(), 0..10), 1..3)
    ) {
        let (mut want, cpio, tar) = archives(&layers)?;
        want.sort();
        let mut got = read_cpio(&cpio).map_err(|e| TestCaseError::fail(format!("cpio: {e}")))?;
        got.sort();
        prop_assert_eq!(&got, &want, "cpio");
        let mut got = read_tar(&tar).map_err(|e| TestCaseError::fail(format!("tar: {e}")))?;
        got.sort();
        prop_assert_eq!(&got, &want, "tar");
    }
}

/// A temp dir for a case's files: in memory (`/dev/shm`) where there is
/// one, which makes the targets that write images and run tools on them
/// three times faster than on a disk.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
}

/// Cases per target that runs independent tools for every case (each a few
/// process starts, 6 to 11 ms a case): `HULL_FUZZ_TOOL_CASES`, default
/// 10,000 as for the other targets.
fn tool_cases() -> u32 {
    std::env::var("HULL_FUZZ_TOOL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Files for a FAT volume: 8.3 names one to three directories deep, of
/// sizes around cluster boundaries.
fn fat_files() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = "[A-Z0-9_]{1,8}(\\.[A-Z0-9]{1,3})?";
    let path = prop::collection::vec(name, 1..4).prop_map(|p| p.join("/"));
    let size = prop_oneof![0usize..8, 500usize..530, 1020usize..1030, 4000usize..9000];
    let file = (path, size, any::<u8>()).prop_map(|(p, n, b)| {
        let data: Vec<u8> = (0..n)
            .map(|i| b.wrapping_add(u8::try_from(i % 251).unwrap_or(0)))
            .collect();
        (p, data)
    });
    prop::collection::vec(file, 1..8).prop_map(without_clashes)
}

/// The files with a path that is another's directory, or is there twice,
/// left out (the first kept).
fn without_clashes(files: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
    for (p, d) in files {
        let clash = kept.iter().any(|(k, _)| {
            k == &p || k.starts_with(&format!("{p}/")) || p.starts_with(&format!("{k}/"))
        });
        if !clash {
            kept.push((p, d));
        }
    }
    kept
}

fn run_tool(program: &str, args: &[&str]) -> Result<String, TestCaseError> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| TestCaseError::fail(format!("{program}: {e}")))?;
    if !out.status.success() {
        return Err(TestCaseError::fail(format!(
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

proptest! {
    #![proptest_config(Config { cases: tool_cases(), ..config() })]

    #[test]
    fn fat_volumes_pass_fsck_and_mtools_reads_every_file_back(files in fat_files()) {
        let fail = |e: std::io::Error| TestCaseError::fail(e.to_string());
        let refs: Vec<crate::media::fat::File> = files.iter().map(|(p, d)| (p.as_str(), d as &dyn crate::media::source::Source)).collect();
        let image = crate::media::fat::small_image(&refs, 0x1234_5678, "FUZZ")
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let dir = scratch_dir().map_err(fail)?;
        let img = dir.path().join("fat.img");
        let mut file = std::fs::File::create(&img).map_err(fail)?;
        file.set_len(image.len()).map_err(fail)?;
        image.write_to(&mut file, 0).map_err(fail)?;
        drop(file);
        let img = img.to_str().unwrap_or_default().to_string();
        run_tool("fsck.vfat", &["-n", &img])?;
        let out = dir.path().join("out");
        std::fs::create_dir(&out).map_err(fail)?;
        let out_s = out.to_str().unwrap_or_default().to_string();
        run_tool("mcopy", &["-s", "-n", "-i", &img, "::/*", &out_s])?;
        for (path, data) in &files {
            let got = std::fs::read(out.join(path)).map_err(|e| TestCaseError::fail(format!("{path}: {e}")))?;
            prop_assert_eq!(&got, data, "{}", path);
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: tool_cases(), ..config() })]

    #[test]
    fn gpt_disks_pass_sgdisk_and_their_esp_reads_back(files in fat_files(), data in prop::option::of(1u64..64)) {
        let fail = |e: std::io::Error| TestCaseError::fail(e.to_string());
        let refs: Vec<crate::media::fat::File> = files.iter().map(|(p, d)| (p.as_str(), d as &dyn crate::media::source::Source)).collect();
        let dir = scratch_dir().map_err(fail)?;
        let path = dir.path().join("disk.img");
        let mut out = std::fs::File::create(&path).map_err(fail)?;
        // Sometimes a data partition after the ESP (which needs 42 MiB and
        // the files): a disk size in MiB.
        let size = data.map(|mib| (mib + 64) << 20);
        let written = crate::media::gpt::write_disk(&mut out, &refs, None, &[], (size, 0))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        drop(out);
        let disk = path.to_str().unwrap_or_default().to_string();
        // One sgdisk: the check, then the ESP (partition 1) as the table says.
        let info = run_tool("sgdisk", &["-v", "-i", "1", &disk])?;
        prop_assert!(info.contains("No problems found"), "{}", info);
        prop_assert_eq!(std::fs::metadata(&path).map_err(fail)?.len(), written);
        let sector = |key: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        };
        let (first, last) = match (sector("First sector: "), sector("Last sector: ")) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err(TestCaseError::fail(format!("no ESP in {info}"))),
        };
        // mtools reads the ESP where the table puts it.
        let got = dir.path().join("out");
        std::fs::create_dir(&got).map_err(fail)?;
        let at = format!("{disk}@@{}", first * 512);
        run_tool("mcopy", &["-s", "-n", "-i", &at, "::/*", got.to_str().unwrap_or_default()])?;
        for (p, d) in &files {
            let read = std::fs::read(got.join(p)).map_err(|e| TestCaseError::fail(format!("{p}: {e}")))?;
            prop_assert_eq!(&read, d, "{}", p);
        }
        // fsck.vfat takes no offset: every 16th case copies the ESP out for it
        // (the FAT target runs it on every volume).
        if GPT_CASE
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(16)
        {
            let esp_path = dir.path().join("esp.img");
            copy_sparse(&path, first * 512, (last + 1 - first) * 512, &esp_path).map_err(fail)?;
            run_tool("fsck.vfat", &["-n", esp_path.to_str().unwrap_or_default()])?;
        }
    }
}

/// Copies `len` bytes at `at` of `from` to a new file `to`, skipping 4 KiB
/// blocks of zeros (left as holes: a 42 MiB ESP is mostly empty).
fn copy_sparse(
    from: &std::path::Path,
    at: u64,
    len: u64,
    to: &std::path::Path,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let src = std::fs::File::open(from)?;
    let dst = std::fs::File::create(to)?;
    dst.set_len(len)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(0);
        src.read_exact_at(&mut buf[..n], at + done)?;
        let zeros = [0u8; 4096];
        for (i, block) in buf[..n].chunks(4096).enumerate() {
            // A slice compare (memcmp): fast in a debug build too.
            if block != &zeros[..block.len()] {
                dst.write_all_at(block, done + 4096 * i as u64)?;
            }
        }
        done += n as u64;
    }
    Ok(())
}

/// Cases of the GPT target so far (it checks every 16th with fsck.vfat).
static GPT_CASE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Files for an ISO 9660 level 1 image: `NAME.EXT` files in directories of
/// up to 8 characters, at most three levels deep.
fn iso_files() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let dirs = prop::collection::vec("[A-Z0-9_]{1,8}", 0..3);
    let file = (
        dirs,
        "[A-Z0-9_]{1,8}\\.[A-Z0-9]{1,3}",
        0usize..5000,
        any::<u8>(),
    )
        .prop_map(|(mut dirs, name, n, b)| {
            dirs.push(name);
            let data: Vec<u8> = (0..n)
                .map(|i| b.wrapping_add(u8::try_from(i % 253).unwrap_or(0)))
                .collect();
            (dirs.join("/"), data)
        });
    prop::collection::vec(file, 1..8).prop_map(without_clashes)
}

proptest! {
    #![proptest_config(Config { cases: tool_cases(), ..config() })]

    #[test]
    fn iso_images_read_back_with_xorriso(files in iso_files(), efi in prop::bool::ANY) {
        let fail = |e: std::io::Error| TestCaseError::fail(e.to_string());
        let refs: Vec<crate::media::fat::File> = files.iter().map(|(p, d)| (p.as_str(), d as &dyn crate::media::source::Source)).collect();
        // Now and then the first file is an El Torito EFI image and the
        // hybrid MBR's partition (its content need not be FAT for this).
        let first = files[0].0.clone();
        let spec = crate::media::iso9660::Spec {
            files: refs,
            boot: if efi { vec![crate::media::iso9660::Boot::Efi(&first)] } else { vec![] },
            hybrid: if efi {
                crate::media::iso9660::Hybrid::EfiPartition(&first)
            } else {
                crate::media::iso9660::Hybrid::None
            },
            volume_id: "HULL_FUZZ".into(),
        };
        let dir = scratch_dir().map_err(fail)?;
        let path = dir.path().join("image.iso");
        let file = std::fs::File::create(&path).map_err(fail)?;
        crate::media::iso9660::write(&spec, std::io::BufWriter::new(file))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let iso = path.to_str().unwrap_or_default().to_string();
        let out = dir.path().join("out");
        let out_s = out.to_str().unwrap_or_default().to_string();
        // One xorriso: extract everything, then report the boot catalog.
        let report = run_tool(
            "xorriso",
            &["-osirrox", "on", "-indev", &format!("stdio:{iso}"), "-extract", "/", &out_s, "-report_el_torito", "plain"],
        )?;
        for (p, d) in &files {
            let got = std::fs::read(out.join(p)).map_err(|e| TestCaseError::fail(format!("{p}: {e}")))?;
            prop_assert_eq!(&got, d, "{}", p);
        }
        prop_assert_eq!(report.contains("UEFI"), efi, "{}", report);
    }
}
