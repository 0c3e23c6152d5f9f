//! Rules that span several fields or entries of a decoded manifest.
//!
//! Owns: required fields, one-of rules for `files`, safe names, where Hull's
//! extension fields may appear, and the rules that need the whole merged
//! manifest (unique names, uid/gid names, bind volumes). Must not decode YAML or
//! look at images: single values are checked in `values` as they are decoded.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use super::decode::{Diagnostics, Spanned};
use super::types::{Device, File, Image, ImageConfig, Manifest, Volume};
use super::values::{Bind, Id};
use super::yaml::Pos;

/// The section an entry is in; decides which extension fields it may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Onboot,
    Onshutdown,
    Services,
}

impl Section {
    pub fn key(self) -> &'static str {
        match self {
            Section::Onboot => "onboot",
            Section::Onshutdown => "onshutdown",
            Section::Services => "services",
        }
    }
}

/// Checks one decoded file; `dir` is the directory `source:` paths are relative to.
pub fn check_file(m: &Manifest, dir: &Path, cx: &mut Diagnostics) {
    for (section, list) in [
        (Section::Onboot, &m.onboot),
        (Section::Onshutdown, &m.onshutdown),
        (Section::Services, &m.services),
    ] {
        for image in list.iter().flatten() {
            check_image(section, image, cx);
        }
    }
    for file in m.files.iter().flatten() {
        check_files_entry(file, dir, cx);
    }
    for volume in m.volumes.iter().flatten() {
        check_volume(volume, cx);
    }
    if let Some(w) = &m.watchdog {
        check_watchdog(w, cx);
    }
    if let Some(h) = &m.health {
        check_health(h, cx);
    }
    if let Some(trust) = &m.trust {
        cx.warning(
            &trust.pos,
            "trust: ignored (content trust is not used; pin images by digest instead)",
        );
    }
}

/// The longest watchdog timeout hull-init sets.
pub const WATCHDOG_MAX: u64 = 3600;

fn check_watchdog(w: &crate::manifest::types::Watchdog, cx: &mut Diagnostics) {
    match &w.device {
        Some(d) if d.value == "softdog" || (d.starts_with("/dev/") && !d.contains([' ', ','])) => {}
        Some(d) => cx.error(
            &d.pos,
            format!(
                "device: \"{}\" is not a device under /dev/ (e.g. /dev/watchdog0) or \"softdog\"",
                d.value
            ),
        ),
        None => cx.error(&w.pos, "watchdog: \"device\" is required"),
    }
    if let Some(t) = w.timeout.as_ref().filter(|t| t.value.0 > WATCHDOG_MAX) {
        cx.error(
            &t.pos,
            format!(
                "timeout: {} is longer than the {WATCHDOG_MAX} s a watchdog may be set to",
                t.value
            ),
        );
    }
}

fn check_health(h: &crate::manifest::types::Health, cx: &mut Diagnostics) {
    if let (Some(w), Some(d)) = (&h.window, &h.deadline) {
        if d.value.0 <= w.value.0 {
            cx.error(
                &d.pos,
                format!(
                    "deadline: {} is not longer than the window ({}): no tried version could be blessed",
                    d.value, w.value
                ),
            );
        }
    }
}

/// A name usable as a directory, log file and hullctl argument.
pub fn is_safe_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.len() <= 64
}

fn check_image(section: Section, image: &Image, cx: &mut Diagnostics) {
    let what = section.key();
    match &image.name {
        None if image.keys.iter().any(|k| k == "name") => {}
        None => cx.error(&image.pos, format!("{what} entry: \"name\" is required")),
        Some(name) if !is_safe_name(name) => cx.error(
            &name.pos,
            format!(
                "name: \"{}\" is not a valid container name (letters, digits, '-', '_', '.'; \
                 starting with a letter or digit; at most 64 characters)",
                name.value
            ),
        ),
        Some(_) => {}
    }
    if image.image.is_none() && !image.keys.iter().any(|k| k == "image") {
        cx.error(&image.pos, format!("{what} entry: \"image\" is required"));
    }
    check_config(&image.config, cx);
    if let Some(restart) = &image.config.restart {
        if section != Section::Services {
            cx.error(
                &restart.pos,
                format!("restart: only services restart; remove it from this {what} entry"),
            );
        }
    }
    if let Some(timeout) = &image.config.timeout {
        if section == Section::Services {
            cx.error(
                &timeout.pos,
                "timeout: applies to onboot and onshutdown entries, not services",
            );
        }
    }
}

const PROPAGATIONS: &[&str] = &[
    "shared",
    "slave",
    "private",
    "rshared",
    "rslave",
    "rprivate",
    "unbindable",
    "runbindable",
];

/// Checks the settings of a container entry or of an image label.
/// The seccomp actions hull-init applies (OCI names).
const SECCOMP_ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_LOG",
];
const SECCOMP_OPS: &[&str] = &[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

fn check_seccomp(sc: &crate::manifest::types::Seccomp, cx: &mut Diagnostics) {
    fn one_of(cx: &mut Diagnostics, what: &str, v: &Spanned<String>, allowed: &[&str]) {
        if !allowed.contains(&v.as_str()) {
            cx.error(
                &v.pos,
                format!(
                    "seccomp {what}: \"{}\" is not one of {}",
                    v.value,
                    allowed.join(", ")
                ),
            );
        }
    }
    if let Some(a) = &sc.default_action {
        one_of(cx, "defaultAction", a, SECCOMP_ACTIONS);
    }
    for rule in sc.syscalls.iter().flatten() {
        if let Some(a) = &rule.action {
            one_of(cx, "action", a, SECCOMP_ACTIONS);
        }
        for arg in rule.args.iter().flatten() {
            if let Some(op) = &arg.op {
                one_of(cx, "op", op, SECCOMP_OPS);
            }
            if let Some(i) = arg.index.as_ref().filter(|i| i.value > 5) {
                cx.error(
                    &i.pos,
                    format!("seccomp args: index {} is out of range (0 to 5)", i.value),
                );
            }
        }
    }
}

pub fn check_config(c: &ImageConfig, cx: &mut Diagnostics) {
    for env in c.env.iter().flatten() {
        match env.split_once('=') {
            Some((k, _)) if !k.is_empty() => {}
            _ => cx.error(
                &env.pos,
                format!("env: \"{}\" is not of the form NAME=value", env.value),
            ),
        }
    }
    if let Some(sc) = &c.seccomp {
        check_seccomp(sc, cx);
    }
    if let Some(p) = &c.cgroups_path {
        if Path::new(p).components().any(|x| x == Component::ParentDir) {
            cx.error(
                &c.pos,
                format!("cgroupsPath: \"{p}\" climbs out of /sys/fs/cgroup (\"..\")"),
            );
        }
    }
    if let Some(p) = &c.rootfs_propagation {
        if !PROPAGATIONS.contains(&p.as_str()) {
            cx.error(
                &p.pos,
                format!(
                    "rootfsPropagation: \"{}\" is not one of {}",
                    p.value,
                    PROPAGATIONS.join(", ")
                ),
            );
        }
    }
    let mounts = c
        .mounts
        .iter()
        .flatten()
        .chain(c.runtime.iter().flat_map(|r| r.mounts.iter().flatten()));
    for mount in mounts {
        let cgroup = matches!(mount.mount_type.as_deref(), Some("cgroup" | "cgroup2"));
        match &mount.destination {
            // LinuxKit mounts a cgroup mount without a destination at /sys/fs/cgroup.
            None if cgroup => {}
            None => cx.error(&mount.pos, "mount: \"destination\" is required"),
            Some(d) if !d.starts_with('/') => cx.warning(
                &d.pos,
                format!(
                    "destination: \"{}\" is relative; it is taken as /{} inside the container",
                    d.value, d.value
                ),
            ),
            Some(_) => {}
        }
    }
    for device in c.devices.iter().flatten() {
        check_device(device, cx);
    }
    if let Some(runtime) = &c.runtime {
        for dir in runtime.mkdir.iter().flatten() {
            if !dir.starts_with('/') {
                cx.error(
                    &runtime.pos,
                    format!("runtime.mkdir: \"{dir}\" must be an absolute path"),
                );
            }
        }
        for iface in runtime.interfaces.iter().flatten() {
            if iface.name.is_none() {
                cx.error(&iface.pos, "interface: \"name\" is required");
            }
        }
    }
}

/// One `devices:` entry: a path under /dev/ (or LinuxKit's `all`) and a
/// type that fits it.
fn check_device(device: &Device, cx: &mut Diagnostics) {
    // LinuxKit's `path: all`: every device of the type, no node.
    let all = device.path.as_ref().is_some_and(|p| p.value == "all");
    match &device.path {
        Some(p) if all || p.starts_with("/dev/") => {}
        Some(p) => cx.error(
            &p.pos,
            format!(
                "path: device \"{}\" must be under /dev/ (or \"all\": every device of the type)",
                p.value
            ),
        ),
        None => cx.error(&device.pos, "device: \"path\" is required"),
    }
    let types: &[&str] = if all {
        &["a", "b", "c"]
    } else {
        &["c", "b", "u", "p"]
    };
    match &device.device_type {
        Some(t) if types.contains(&t.as_str()) => {}
        Some(t) => cx.error(
            &t.pos,
            format!(
                "type: device type \"{}\" is not one of {}{}",
                t.value,
                types.join(", "),
                if all { " (for path: all)" } else { "" }
            ),
        ),
        None => cx.error(&device.pos, "device: \"type\" is required"),
    }
}

fn check_files_entry(file: &File, dir: &Path, cx: &mut Diagnostics) {
    match &file.path {
        None => cx.error(&file.pos, "files entry: \"path\" is required"),
        Some(p) => {
            let rel = p.trim_start_matches('/');
            if rel.is_empty()
                || Path::new(rel)
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_)))
            {
                cx.error(
                    &p.pos,
                    format!(
                        "path: \"{}\" must name a file inside the image (no \"..\" or \".\" parts)",
                        p.value
                    ),
                );
            }
        }
    }
    let given: Vec<&str> = [
        ("contents", file.contents.is_some()),
        ("source", file.source.is_some()),
        ("directory", file.directory == Some(true)),
        ("symlink", file.symlink.is_some()),
        ("metadata", file.metadata.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    match given.len() {
        0 => cx.error(
            &file.pos,
            "files entry: give one of contents, source, directory, symlink or metadata",
        ),
        1 => {}
        _ => cx.error(
            &file.pos,
            format!(
                "files entry: give only one of contents, source, directory, symlink or metadata (found {})",
                given.join(", ")
            ),
        ),
    }
    if let Some(m) = &file.metadata {
        if !matches!(m.as_str(), "yaml" | "json") {
            cx.error(
                &m.pos,
                format!("metadata: \"{}\" is not \"yaml\" or \"json\"", m.value),
            );
        }
    }
    if let Some(source) = &file.source {
        let path = resolve_source(&source.value, dir);
        if file.optional != Some(true) && !path.exists() {
            cx.error(
                &source.pos,
                format!(
                    "source: {} does not exist (set \"optional: true\" to allow that)",
                    path.display()
                ),
            );
        }
    }
}

/// Where a `files:` source is read from: `~/` is the home directory, a relative
/// path is relative to the manifest's directory.
pub fn resolve_source(source: &str, manifest_dir: &Path) -> PathBuf {
    if let Some(rest) = source.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let mut path = manifest_dir.to_path_buf();
    for part in Path::new(source).components() {
        match part {
            Component::CurDir => {}
            other => path.push(other),
        }
    }
    path
}

fn check_volume(v: &Volume, cx: &mut Diagnostics) {
    match &v.name {
        None => cx.error(&v.pos, "volumes entry: \"name\" is required"),
        Some(n) if !is_safe_name(n) => cx.error(
            &n.pos,
            format!("name: \"{}\" is not a valid volume name", n.value),
        ),
        Some(_) => {}
    }
    let format = v.format.as_ref().map(|f| f.as_str());
    if let Some(f) = &v.format {
        if !matches!(f.as_str(), "oci" | "filesystem") {
            cx.error(
                &f.pos,
                format!("format: \"{}\" is not \"oci\" or \"filesystem\"", f.value),
            );
        }
    }
    for p in v.platforms.iter().flatten() {
        let ok = matches!(
            p.as_str(),
            "linux/amd64" | "linux/arm64" | "linux/arm64/v8" | "linux/x86_64" | "linux/aarch64"
        );
        if !ok {
            cx.error(
                &p.pos,
                format!(
                    "platforms: \"{}\" is not a supported platform (linux/amd64, linux/arm64)",
                    p.value
                ),
            );
        } else if format != Some("oci") {
            cx.error(
                &p.pos,
                "platforms: only volumes with \"format: oci\" take platforms",
            );
        }
    }
    if v.image.is_none() && v.platforms.is_some() {
        cx.error(&v.pos, "volumes entry: \"platforms\" needs an \"image\"");
    }
}

/// Rules over the merged manifest: unique names per section and for volumes,
/// uid/gid names that refer to containers, binds that name volumes.
pub fn check_merged(m: &Manifest, cx: &mut Diagnostics) {
    check_kernel_has_an_image(m, cx);
    let containers = container_names(m, cx);
    let volumes = volume_names(m, cx);
    let images = m
        .onboot
        .iter()
        .chain(&m.onshutdown)
        .chain(&m.services)
        .flatten();
    for image in images {
        let c = &image.config;
        check_named_ids(c, &containers, cx);
        for bind in c.binds.iter().chain(&c.binds_add).flatten() {
            check_bind_source(bind, &volumes, cx);
        }
    }
}

/// A `kernel:` with settings but, in all the files, no `image`: the image
/// would have no kernel, and the settings would go nowhere.
fn check_kernel_has_an_image(m: &Manifest, cx: &mut Diagnostics) {
    let Some(k) = &m.kernel else { return };
    if k.image.is_some() {
        return;
    }
    let set: Vec<&str> = [
        ("cmdline", &k.cmdline),
        ("binary", &k.binary),
        ("tar", &k.tar),
        ("ucode", &k.ucode),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_some())
    .map(|(name, _)| name)
    .collect();
    if !set.is_empty() {
        cx.error(
            &k.pos,
            format!(
                "kernel: sets {} but no file gives the kernel an image: add `image:` or leave `kernel:` out",
                set.join(", ")
            ),
        );
    }
}

/// Every container name; a service name used twice is an error. Onboot and
/// onshutdown entries live in numbered directories, so LinuxKit lets a name
/// repeat there (run `mount` twice).
fn container_names<'m>(m: &'m Manifest, cx: &mut Diagnostics) -> BTreeSet<&'m str> {
    let mut containers = BTreeSet::new();
    for (section, list) in [
        (Section::Onboot, &m.onboot),
        (Section::Onshutdown, &m.onshutdown),
        (Section::Services, &m.services),
    ] {
        let mut seen: HashMap<&str, &Pos> = HashMap::new();
        for image in list.iter().flatten() {
            let Some(name) = &image.name else { continue };
            containers.insert(name.as_str());
            if section != Section::Services {
                continue;
            }
            if let Some(first) = seen.get(name.as_str()) {
                cx.error(
                    &name.pos,
                    format!(
                        "name: duplicate {} name \"{}\" (first used at {first})",
                        section.key(),
                        name.value
                    ),
                );
            } else {
                seen.insert(name.as_str(), &name.pos);
            }
        }
    }
    containers
}

/// Every volume name with where it is first written; a name used twice is
/// an error.
fn volume_names<'m>(m: &'m Manifest, cx: &mut Diagnostics) -> HashMap<&'m str, &'m Pos> {
    let mut volumes: HashMap<&str, &Pos> = HashMap::new();
    for v in m.volumes.iter().flatten() {
        let Some(name) = &v.name else { continue };
        if let Some(first) = volumes.get(name.as_str()) {
            cx.error(
                &name.pos,
                format!(
                    "name: duplicate volume name \"{}\" (first used at {first})",
                    name.value
                ),
            );
        } else {
            volumes.insert(name.as_str(), &name.pos);
        }
    }
    volumes
}

/// A uid, gid or additional gid given as a name must name a container.
fn check_named_ids(c: &ImageConfig, containers: &BTreeSet<&str>, cx: &mut Diagnostics) {
    let ids = c
        .uid
        .iter()
        .map(|id| ("uid", id))
        .chain(c.gid.iter().map(|id| ("gid", id)))
        .chain(
            c.additional_gids
                .iter()
                .flatten()
                .map(|id| ("additionalGids", id)),
        );
    for (key, id) in ids {
        if let Id::Name(name) = &id.value {
            if !containers.contains(name.as_str()) {
                cx.error(
                    &id.pos,
                    format!(
                        "{key}: \"{name}\" is neither a number nor the name of a container in this manifest"
                    ),
                );
            }
        }
    }
}

fn check_bind_source(bind: &Spanned<Bind>, volumes: &HashMap<&str, &Pos>, cx: &mut Diagnostics) {
    if bind.value.source.starts_with('/') || volumes.contains_key(bind.value.source.as_str()) {
        return;
    }
    cx.error(
        &bind.pos,
        format!(
            "binds: source \"{}\" of \"{}\" is neither an absolute path nor a volume in this manifest",
            bind.value.source, bind.value
        ),
    );
}
