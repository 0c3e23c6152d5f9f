//! `mounts` of a container's runtime spec: LinuxKit's default mounts, then
//! the entry's `mounts`, `binds` and `tmpfs`, each replacing an earlier mount
//! at the same destination in its place.

use oci_spec::runtime::{Mount, MountBuilder};

use super::SpecError;
use crate::manifest::types::Mount as EntryMount;
use crate::manifest::ImageConfig;

/// Every container's mounts unless it replaces them: `(destination, type,
/// source, options)`.
pub const DEFAULT_MOUNTS: &[(&str, &str, &str, &[&str])] = &[
    (
        "/proc",
        "proc",
        "proc",
        &["nosuid", "nodev", "noexec", "relatime"],
    ),
    (
        "/dev",
        "tmpfs",
        "tmpfs",
        // nodev: the nodes a container uses are binds of the host's, which
        // keep their own mount's flags; a node made here opens nothing.
        &["nosuid", "nodev", "strictatime", "mode=755", "size=65536k"],
    ),
    (
        "/dev/pts",
        "devpts",
        "devpts",
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ],
    ),
    (
        "/sys",
        "sysfs",
        "sysfs",
        &["nosuid", "noexec", "nodev", "ro"],
    ),
    (
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    ),
    (
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    ),
    (
        "/sys/fs/cgroup",
        "cgroup2",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    ),
];

/// Mounts kept in first-seen order of their destinations, a later mount at a
/// destination replacing the earlier one in its place.
#[derive(Default)]
struct Table(Vec<Mount>);

impl Table {
    fn add(&mut self, m: Mount) {
        match self
            .0
            .iter_mut()
            .find(|o| o.destination() == m.destination())
        {
            Some(slot) => *slot = m,
            None => self.0.push(m),
        }
    }
}

fn strings(options: &[&str]) -> Vec<String> {
    options.iter().map(|o| o.to_string()).collect()
}

/// The container's mounts.
pub fn mounts(c: &ImageConfig) -> Result<Vec<Mount>, SpecError> {
    let mut table = Table::default();
    for (destination, typ, source, options) in DEFAULT_MOUNTS {
        table.add(
            MountBuilder::default()
                .destination(destination)
                .typ(*typ)
                .source(source)
                .options(strings(options))
                .build()?,
        );
    }
    for m in c.mounts.iter().flatten() {
        table.add(entry_mount(m)?);
    }
    for b in c.binds.iter().flatten() {
        let mut options = vec!["rbind".to_string()];
        options.extend(b.value.options.iter().cloned());
        if !options.iter().any(|o| o == "ro" || o == "rw") {
            options.push("rw".into());
        }
        table.add(
            MountBuilder::default()
                .destination(&b.value.destination)
                .typ("bind")
                .source(hull_contract::layout::bind_source(&b.value.source))
                .options(options)
                .build()?,
        );
    }
    for t in c.tmpfs.iter().flatten() {
        let mut options = strings(&["nosuid", "nodev"]);
        options.extend(t.options.iter().cloned());
        table.add(
            MountBuilder::default()
                .destination(&t.destination)
                .typ("tmpfs")
                .source("tmpfs")
                .options(options)
                .build()?,
        );
    }
    Ok(table.0)
}

/// An entry's `mounts:` item; a relative destination is made absolute, and a
/// missing one is `/sys/fs/cgroup` for cgroup mounts and `/` otherwise.
fn entry_mount(m: &EntryMount) -> Result<Mount, SpecError> {
    let cgroup = matches!(m.mount_type.as_deref(), Some("cgroup" | "cgroup2"));
    let destination = match &m.destination {
        Some(d) if d.starts_with('/') => d.value.clone(),
        Some(d) => format!("/{}", d.value),
        None if cgroup => "/sys/fs/cgroup".into(),
        None => "/".into(),
    };
    let mut b = MountBuilder::default().destination(destination);
    if let Some(t) = &m.mount_type {
        b = b.typ(t);
    }
    if let Some(s) = &m.source {
        b = b.source(s);
    }
    if let Some(o) = &m.options {
        b = b.options(o.clone());
    }
    Ok(b.build()?)
}
