//! Mounting: the system's early mounts and a container's mounts from its spec.
//!
//! Owns: translating mount option strings (`nosuid`, `ro`, `mode=755`, ...)
//! into flags and data, bind mounts (whose remount never loosens the flags
//! they came with), read-only remounts, and the early boot mounts; targets
//! on the host or inside a container root (see `inroot`). Must not know about containers' lifecycles.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags};

use crate::inroot::{Make, Opened, Root};
use crate::sys::{Context, SysError};

/// Flags and the remaining data string for mount(2).
pub fn parse_options(options: &[String]) -> (MountFlags, String, bool, bool) {
    let mut flags = MountFlags::empty();
    let mut data = Vec::new();
    let (mut bind, mut recursive) = (false, false);
    for o in options {
        match o.as_str() {
            "ro" => flags |= MountFlags::RDONLY,
            "rw" => {}
            "nosuid" => flags |= MountFlags::NOSUID,
            "nodev" => flags |= MountFlags::NODEV,
            "noexec" => flags |= MountFlags::NOEXEC,
            "relatime" => flags |= MountFlags::RELATIME,
            "noatime" => flags |= MountFlags::NOATIME,
            "strictatime" => flags |= MountFlags::STRICTATIME,
            "sync" => flags |= MountFlags::SYNCHRONOUS,
            "bind" => bind = true,
            "rbind" => {
                bind = true;
                recursive = true;
            }
            // Propagation is a separate step: see `propagation`.
            o if propagation(o).is_some() => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data.join(","), bind, recursive)
}

/// The flags a bind mount gets by a remount of its own (a bind ignores
/// them at first): `ro`, `nosuid`, `nodev`, `noexec` and the atime ones, each
/// as written, not only together with `ro`. `None` when there are none.
pub fn bind_remount_flags(flags: MountFlags) -> Option<MountFlags> {
    let per_mount = MountFlags::RDONLY
        | MountFlags::NOSUID
        | MountFlags::NODEV
        | MountFlags::NOEXEC
        | MountFlags::RELATIME
        | MountFlags::NOATIME
        | MountFlags::STRICTATIME;
    flags
        .intersects(per_mount)
        .then_some(MountFlags::BIND | (flags & per_mount))
}

/// Where a mount goes: a path as PID1 sees it, or a path inside a
/// container's root, resolved inside it afresh each time it is used.
pub enum Target<'a> {
    Host(&'a Path),
    InRoot(&'a Root, &'a Path, Make),
}

/// A target opened for one step: the path to give the kernel, and what
/// keeps it valid.
struct Reached {
    path: PathBuf,
    _held: Option<Opened>,
}

impl Target<'_> {
    fn reach(&self, make: bool) -> Result<Reached, SysError> {
        match self {
            Target::Host(p) => Ok(Reached {
                path: p.to_path_buf(),
                _held: None,
            }),
            Target::InRoot(root, p, m) => {
                let opened = root.open_at(p, if make { *m } else { Make::Nothing })?;
                Ok(Reached {
                    path: opened.path(),
                    _held: Some(opened),
                })
            }
        }
    }

    /// The target as errors show it.
    pub fn show(&self) -> String {
        match self {
            Target::Host(p) => p.display().to_string(),
            Target::InRoot(root, p, _) => root.show(p),
        }
    }
}

/// The per-mount flags a mount has now (`statvfs`), which a remount of a
/// bind keeps: a remount never loosens what the source mount had.
fn current_flags(path: &Path) -> MountFlags {
    use rustix::fs::StatVfsMountFlags as S;
    let Ok(st) = rustix::fs::statvfs(path) else {
        return MountFlags::empty();
    };
    let mut flags = MountFlags::empty();
    for (have, keep) in [
        (S::RDONLY, MountFlags::RDONLY),
        (S::NOSUID, MountFlags::NOSUID),
        (S::NODEV, MountFlags::NODEV),
        (S::NOEXEC, MountFlags::NOEXEC),
    ] {
        if st.f_flag.contains(have) {
            flags |= keep;
        }
    }
    flags
}

/// Mounts `fstype` from `source` at `target` with `options`.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    options: &[String],
) -> Result<(), SysError> {
    mount_at(source, &Target::Host(target), fstype, options)
}

/// Mounts `fstype` from `source` at `target` with `options`; a bind gets
/// its options by a remount that keeps the flags it came with.
pub fn mount_at(
    source: &str,
    target: &Target<'_>,
    fstype: &str,
    options: &[String],
) -> Result<(), SysError> {
    let (flags, data, bind, recursive) = parse_options(options);
    let what = || format!("mount {source} ({fstype}) on {}", target.show());
    let at = target.reach(true)?;
    if bind || fstype == "bind" {
        if recursive {
            rustix::mount::mount_bind_recursive(source, &at.path).ctx(what)?;
        } else {
            rustix::mount::mount_bind(source, &at.path).ctx(what)?;
        }
        if let Some(remount) = bind_remount_flags(flags) {
            // The new mount, not the directory under it.
            let new = target.reach(false)?;
            let remount = remount | current_flags(&new.path);
            rustix::mount::mount_remount(&new.path, remount, "")
                .ctx(|| format!("remount {} with {remount:?}", target.show()))?;
        }
        return Ok(());
    }
    let data = CString::new(data).unwrap_or_default();
    match rustix::mount::mount(source, &at.path, fstype, flags, data.as_c_str()) {
        // The filesystem may be a module nobody has loaded yet.
        Err(rustix::io::Errno::NODEV) if crate::modules::load_named(fstype) => {
            rustix::mount::mount(source, &at.path, fstype, flags, data.as_c_str()).ctx(what)
        }
        other => other.ctx(what),
    }
}

/// The propagation named by a mount option (`shared`, `rslave`, ...).
pub fn propagation(option: &str) -> Option<MountPropagationFlags> {
    let (rec, kind) = match option.strip_prefix('r') {
        Some(k @ ("shared" | "slave" | "private" | "unbindable")) => (true, k),
        _ => (false, option),
    };
    let flag = match kind {
        "shared" => MountPropagationFlags::SHARED,
        "slave" => MountPropagationFlags::DOWNSTREAM,
        "private" => MountPropagationFlags::PRIVATE,
        "unbindable" => MountPropagationFlags::UNBINDABLE,
        _ => return None,
    };
    Some(if rec {
        flag | MountPropagationFlags::REC
    } else {
        flag
    })
}

/// Changes the propagation of the mount at `target`.
pub fn set_propagation(target: &Path, flags: MountPropagationFlags) -> Result<(), SysError> {
    set_propagation_at(&Target::Host(target), flags)
}

/// Changes the propagation of the mount at `target` (the mount on top).
pub fn set_propagation_at(
    target: &Target<'_>,
    flags: MountPropagationFlags,
) -> Result<(), SysError> {
    let at = target.reach(false)?;
    rustix::mount::mount_change(&at.path, flags)
        .ctx(|| format!("set propagation {flags:?} on {}", target.show()))
}

/// The system's mounts, made once by PID1 (`/run` and `/tmp` as big as
/// `sizes` says). A mount that is already there is fine.
pub fn early() -> Vec<SysError> {
    let table: &[(&str, &str, &str, &[&str])] = &[
        (
            "proc",
            "/proc",
            "proc",
            &["nosuid", "nodev", "noexec", "relatime"],
        ),
        (
            "sysfs",
            "/sys",
            "sysfs",
            &["nosuid", "nodev", "noexec", "relatime"],
        ),
        ("devtmpfs", "/dev", "devtmpfs", &["nosuid", "mode=0755"]),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            &["nosuid", "noexec", "gid=5", "mode=0620", "ptmxmode=0666"],
        ),
        (
            "shm",
            "/dev/shm",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777"],
        ),
        ("tmpfs", "/run", "tmpfs", &["nosuid", "nodev", "mode=0755"]),
        ("tmpfs", "/tmp", "tmpfs", &["nosuid", "nodev", "mode=1777"]),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            &["nosuid", "nodev", "noexec", "relatime", "nsdelegate"],
        ),
    ];
    let mut errors = Vec::new();
    for (source, target, fstype, opts) in table {
        let _ = std::fs::create_dir_all(target);
        let mut opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        let sized = match *target {
            "/run" => Some(crate::sizes::Tmpfs::Run),
            "/tmp" => Some(crate::sizes::Tmpfs::Tmp),
            _ => None,
        };
        if let Some(t) = sized {
            let (size, note) = t.option();
            opts.push(size);
            if let Some(note) = note {
                println!("hull-init: {note}");
            }
        }
        if let Err(e) = mount(source, Path::new(target), fstype, &opts) {
            if e.errno != rustix::io::Errno::BUSY {
                errors.push(e);
            }
        }
    }
    // /var becomes a mount of its own and the whole tree shared, so that a
    // container with shared propagation (the mount package) can mount a disk
    // on /var/lib for everybody, as LinuxKit's init allows.
    if let Err(e) = var_mount() {
        errors.push(e);
    }
    if let Err(e) = set_propagation(
        Path::new("/"),
        MountPropagationFlags::REC | MountPropagationFlags::SHARED,
    ) {
        errors.push(e);
    }
    errors
}

/// /var as a mount of its own: a bind of itself, or on a read-only root (a
/// verity root on disk) a tmpfs, the one writable place besides /run and
/// /tmp.
fn var_mount() -> Result<(), SysError> {
    let _ = std::fs::create_dir_all("/var");
    if root_read_only() {
        let (size, _) = crate::sizes::Tmpfs::Root.option();
        mount(
            "tmpfs",
            Path::new("/var"),
            "tmpfs",
            &["mode=0755".into(), size],
        )
    } else {
        rustix::mount::mount_bind_recursive("/var", "/var").ctx(|| "bind /var".into())
    }
}

/// True when `/` is mounted read-only.
fn root_read_only() -> bool {
    rustix::fs::statvfs("/").is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Unmounts what containers mounted from disks, newest first, before power
/// off; what stays busy is remounted read-only so nothing is left dirty.
pub fn unmount_disks() -> Vec<SysError> {
    let table = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut errors = Vec::new();
    for line in table.lines().rev() {
        let mut fields = line.split_whitespace();
        let (Some(source), Some(target)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !source.starts_with("/dev/") || target == "/" {
            continue;
        }
        // /proc/self/mounts escapes spaces and the like as octal.
        let target = target.replace("\\040", " ");
        if rustix::mount::unmount(target.as_str(), rustix::mount::UnmountFlags::empty()).is_err() {
            if let Err(e) = rustix::mount::mount_remount(target.as_str(), MountFlags::RDONLY, "")
                .ctx(|| format!("{target} is busy and cannot be remounted read-only"))
            {
                errors.push(e);
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_options_are_applied_as_written_not_only_with_ro() {
        let flags = |o: &[&str]| {
            let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
            bind_remount_flags(parse_options(&o).0)
        };
        assert_eq!(
            flags(&["rbind", "nosuid", "nodev", "rw"]),
            Some(MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV)
        );
        assert_eq!(
            flags(&["rbind", "ro"]),
            Some(MountFlags::BIND | MountFlags::RDONLY)
        );
        assert_eq!(flags(&["rbind", "rw", "rshared"]), None);
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let o: Vec<String> = ["nosuid", "ro", "mode=755", "size=64k", "rbind"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data, bind, rec) = parse_options(&o);
        assert!(flags.contains(MountFlags::NOSUID) && flags.contains(MountFlags::RDONLY));
        assert_eq!(data, "mode=755,size=64k");
        assert!(bind && rec);
    }
}
