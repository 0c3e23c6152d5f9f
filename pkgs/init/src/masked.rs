//! Masked and read-only paths: what a container may not read (`/proc/kcore`,
//! `/sys/firmware`, ...) and may not write (`/proc/sys`, `/proc/sysrq-trigger`,
//! ...), applied once the container's root is `/`, so each path resolves as
//! the container would resolve it.
//!
//! A masked directory gets an empty read-only tmpfs over it, a masked file
//! `/dev/null`; a read-only path is bound onto itself and remounted
//! read-only (keeping `nosuid`, `nodev`, `noexec`). Paths the container does
//! not have are skipped; the first mount that fails stops the container with
//! an error naming the path. The system calls go through [`Ops`], so unit
//! tests check the steps over a recording fake. Owns: those steps. Must not
//! decide which paths: the builder writes them into `config.json`.

use std::path::Path;

use crate::mounts;
use crate::sys::SysError;

/// What a path in the container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Missing,
    Dir,
    /// A file, device node or anything else that is not a directory.
    Other,
}

/// The system calls the steps need.
pub trait Ops {
    /// What `path` is, symlinks followed as the container would.
    fn find(&self, path: &Path) -> Found;
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        options: &[String],
    ) -> Result<(), SysError>;
}

/// The real system.
pub struct Linux;

impl Ops for Linux {
    fn find(&self, path: &Path) -> Found {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Found::Dir,
            Ok(_) => Found::Other,
            Err(_) => Found::Missing,
        }
    }

    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        options: &[String],
    ) -> Result<(), SysError> {
        mounts::mount(source, target, fstype, options)
    }
}

/// Masks `masked` and makes `readonly` read-only, in that order.
pub fn apply(ops: &mut impl Ops, masked: &[String], readonly: &[String]) -> Result<(), String> {
    for p in masked {
        let t = Path::new(p);
        let done = match ops.find(t) {
            Found::Dir => ops.mount("tmpfs", t, "tmpfs", &["ro".into()]),
            Found::Other => ops.mount("/dev/null", t, "bind", &["bind".into()]),
            Found::Missing => Ok(()),
        };
        done.map_err(|e| format!("masked path {p}: {e}"))?;
    }
    for p in readonly {
        let t = Path::new(p);
        if ops.find(t) != Found::Missing {
            ops.mount(p, t, "bind", &["rbind".into(), "ro".into()])
                .map_err(|e| format!("read-only path {p}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// A system of known paths that records mounts and fails the one asked.
    #[derive(Default)]
    struct Fake {
        paths: BTreeMap<PathBuf, Found>,
        fail_at: Option<PathBuf>,
        mounts: Vec<String>,
    }

    impl Ops for Fake {
        fn find(&self, path: &Path) -> Found {
            self.paths.get(path).copied().unwrap_or(Found::Missing)
        }

        fn mount(
            &mut self,
            source: &str,
            target: &Path,
            fstype: &str,
            options: &[String],
        ) -> Result<(), SysError> {
            if self.fail_at.as_deref() == Some(target) {
                return Err(SysError {
                    what: format!("mount {source} on {}", target.display()),
                    errno: rustix::io::Errno::PERM,
                });
            }
            self.mounts.push(format!(
                "{fstype} {source} -> {} [{}]",
                target.display(),
                options.join(",")
            ));
            Ok(())
        }
    }

    fn fake(paths: &[(&str, Found)]) -> Fake {
        Fake {
            paths: paths.iter().map(|(p, f)| (PathBuf::from(p), *f)).collect(),
            ..Fake::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn directories_get_a_read_only_tmpfs_files_dev_null_and_missing_paths_nothing() {
        let mut ops = fake(&[
            ("/proc/kcore", Found::Other),
            ("/sys/firmware", Found::Dir),
            ("/proc/sys", Found::Dir),
            ("/proc/sysrq-trigger", Found::Other),
        ]);
        apply(
            &mut ops,
            &strings(&["/proc/kcore", "/sys/firmware", "/proc/acpi"]),
            &strings(&["/proc/sys", "/proc/sysrq-trigger", "/proc/bus"]),
        )
        .expect("applies");
        assert_eq!(
            ops.mounts,
            [
                "bind /dev/null -> /proc/kcore [bind]",
                "tmpfs tmpfs -> /sys/firmware [ro]",
                "bind /proc/sys -> /proc/sys [rbind,ro]",
                "bind /proc/sysrq-trigger -> /proc/sysrq-trigger [rbind,ro]",
            ]
        );
    }

    #[test]
    fn the_first_failure_stops_with_its_path_and_nothing_after_it() {
        let mut ops = fake(&[
            ("/proc/kcore", Found::Other),
            ("/proc/keys", Found::Other),
            ("/proc/sys", Found::Dir),
        ]);
        ops.fail_at = Some(PathBuf::from("/proc/keys"));
        let e = apply(
            &mut ops,
            &strings(&["/proc/kcore", "/proc/keys"]),
            &strings(&["/proc/sys"]),
        )
        .expect_err("fails closed");
        assert!(e.starts_with("masked path /proc/keys: "), "{e}");
        assert_eq!(ops.mounts, ["bind /dev/null -> /proc/kcore [bind]"]);
        // A read-only path that cannot be made so: the same.
        let mut ops = fake(&[("/proc/sys", Found::Dir)]);
        ops.fail_at = Some(PathBuf::from("/proc/sys"));
        let e = apply(&mut ops, &[], &strings(&["/proc/sys"])).expect_err("fails closed");
        assert!(e.starts_with("read-only path /proc/sys: "), "{e}");
    }
}
