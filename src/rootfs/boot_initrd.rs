//! The small initrd of an image whose root is on disk: hull-init and the
//! kernel modules that reach the root (disk drivers, device-mapper and
//! dm-verity, squashfs), with their module index. Debian's kernels have all
//! of these only as modules and no `dm-mod.create=`, so hull-init loads them
//! and sets up the verity device itself before it switches to the root.
//!
//! Owns: choosing those entries from the assembled tree. Must not write any
//! format (that is `media`) nor decide which outputs have a disk root.

use std::collections::BTreeSet;

use crate::rootfs::modules::{self, ModulesError};
use crate::rootfs::tree::{Entry, Kind, Pack, Tree, TreeError};

/// The modules hull-init needs before the root is mounted, by name; those
/// the kernel has built in (or its package lacks) are skipped. Disk drivers
/// for QEMU and common machines, then what the verity root needs.
pub const ROOT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_mmio",
    "virtio_blk",
    "virtio_scsi",
    "sd_mod",
    "nvme",
    "ahci",
    "dm_verity",
    "squashfs",
];

/// hull-init's paths in the init image.
const INIT: &[&str] = &["init", "etc/os-release"];

#[derive(Debug, thiserror::Error)]
pub enum BootInitrdError {
    #[error("the image has no /init (the init package puts hull-init there)")]
    NoInit,
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Modules(#[from] ModulesError),
}

/// The module name a path under `lib/modules/VERSION/` stands for, if it
/// is a module.
fn module_name(rel: &str) -> Option<String> {
    rel.contains(".ko").then(|| modules::file_module_name(rel))
}

/// Paths of `tree`'s modules.dep lines whose module is in the closure of
/// `wanted`: `lib/modules/VERSION/REL` for each module and dependency.
fn closure(tree: &Tree, pack: &Pack, wanted: &[&str]) -> Result<BTreeSet<String>, ModulesError> {
    let mut out = BTreeSet::new();
    for (path, entry) in tree.iter() {
        let Some(version) = path
            .strip_prefix("lib/modules/")
            .and_then(|r| r.strip_suffix("/modules.dep"))
        else {
            continue;
        };
        let Kind::File(c) = &entry.kind else {
            continue;
        };
        let text = String::from_utf8_lossy(&pack.read(c)?).into_owned();
        for line in text.lines() {
            let Some((rel, deps)) = line.split_once(':') else {
                continue;
            };
            let Some(name) = module_name(rel) else {
                continue;
            };
            if wanted.contains(&name.as_str()) {
                for r in std::iter::once(rel).chain(deps.split_whitespace()) {
                    out.insert(format!("lib/modules/{version}/{r}"));
                }
            }
        }
    }
    Ok(out)
}

/// Copies `path` of `from` into `to`, with its parent directories as they
/// are in `from`.
fn copy_entry(from: &Tree, to: &mut Tree, path: &str) -> Result<(), TreeError> {
    let mut at = String::new();
    for part in path.split('/') {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(part);
        if to.get(&at).is_some() {
            continue;
        }
        let entry = match from.get(&at) {
            Some(e) if at == path || e.kind == Kind::Dir => e.clone(),
            _ => Entry::dir(0o755),
        };
        to.insert(&at, entry)?;
    }
    Ok(())
}

/// Where hull-init mounts when the root is read-only: each must be there.
const MOUNT_POINTS: &[&str] = &["dev", "proc", "sys", "run", "tmp", "var"];

/// Adds the directories a read-only root needs as mount points, where the
/// images did not bring them.
pub fn add_mount_points(root: &mut Tree) -> Result<(), TreeError> {
    for d in MOUNT_POINTS {
        if root.get(d).is_none() {
            root.insert(d, Entry::dir(0o755))?;
        }
    }
    Ok(())
}

/// The initrd tree: `/init`, the root modules and their dependencies, a
/// module index over just those, and the directories hull-init mounts on.
pub fn tree(assembled: &Tree, pack: &mut Pack) -> Result<Tree, BootInitrdError> {
    if !matches!(assembled.get("init").map(|e| &e.kind), Some(Kind::File(_))) {
        return Err(BootInitrdError::NoInit);
    }
    let mut out = Tree::new();
    for p in INIT {
        if assembled.get(p).is_some() {
            copy_entry(assembled, &mut out, p)?;
        }
    }
    for p in closure(assembled, pack, ROOT_MODULES)? {
        if assembled.get(&p).is_some() {
            copy_entry(assembled, &mut out, &p)?;
        }
    }
    for d in ["dev", "proc", "sys", "sysroot"] {
        out.insert(d, Entry::dir(0o755))?;
    }
    modules::index(&mut out, pack)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_come_from_file_names() {
        assert_eq!(
            module_name("kernel/drivers/md/dm-verity.ko").as_deref(),
            Some("dm_verity")
        );
        assert_eq!(
            module_name("a/squashfs.ko.zst").as_deref(),
            Some("squashfs")
        );
        assert_eq!(module_name("modules.dep"), None);
    }

    #[test]
    fn the_initrd_holds_init_and_the_closure_of_the_root_modules() {
        let dir = tempfile::tempdir().expect("dir");
        let mut pack = Pack::new(dir.path()).expect("pack");
        let mut t = Tree::new();
        let file =
            |pack: &mut Pack, b: &[u8]| Entry::file(pack.store_bytes(b).expect("store"), 0o644);
        t.insert("init", file(&mut pack, b"\x7fELF")).expect("init");
        let dep = "kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko\n\
                   kernel/drivers/md/dm-bufio.ko:\nkernel/drivers/md/dm-mod.ko:\nkernel/net/veth.ko:\n";
        t.insert(
            "lib/modules/6.1/modules.dep",
            file(&mut pack, dep.as_bytes()),
        )
        .expect("dep");
        let want = closure(&t, &pack, ROOT_MODULES).expect("closure");
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_eq!(
            want,
            [
                "lib/modules/6.1/kernel/drivers/md/dm-bufio.ko",
                "lib/modules/6.1/kernel/drivers/md/dm-mod.ko",
                "lib/modules/6.1/kernel/drivers/md/dm-verity.ko",
            ]
        );
        let out = tree(&t, &mut pack).expect("tree");
        assert!(out.get("init").is_some() && out.get("sysroot").is_some());
        assert!(out.get("lib/modules/6.1/kernel/net/veth.ko").is_none());
    }
}
