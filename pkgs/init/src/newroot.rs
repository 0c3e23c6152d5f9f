//! Moving the system out of the initramfs into a tmpfs root, first thing.
//!
//! The kernel unpacks the initramfs into `rootfs`, the root of the mount
//! tree, which `pivot_root(2)` cannot leave: containers could then only be
//! `chroot`ed, and a chroot is no wall for a process with CAP_SYS_CHROOT. So
//! PID1 copies every file into a fresh tmpfs (deleting each original as it
//! goes, so memory use does not double), moves that tmpfs onto `/`, and
//! execs itself again there. Owns: that copy and the re-exec. Must not mount
//! anything else: that is `mounts`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use rustix::fs::{FileType, Mode, Timespec, Timestamps, CWD};

use crate::sys::{Context, SysError};

/// Set in the environment of the re-executed PID1.
pub const MOVED: &str = "HULL_ROOT_MOVED";
/// When the kernel started init (ms on CLOCK_BOOTTIME), kept across the re-exec.
pub const STARTED: &str = "HULL_INIT_STARTED";

const NEW: &str = "/.hull-root";

/// True when `/` is the initramfs (ramfs or tmpfs) and not yet moved.
pub fn needed() -> bool {
    if std::env::var_os(MOVED).is_some() {
        return false;
    }
    rustix::fs::statfs("/").is_ok_and(|s| {
        let t = crate::sys::fs_magic(&s);
        t == crate::sys::RAMFS_MAGIC || t == crate::sys::TMPFS_MAGIC
    })
}

/// Copies the system into a tmpfs, makes it `/`, and execs `/init` again.
/// Returns only on failure (the system is then still whole, or as much of
/// it as was not yet moved is, and boot goes on from the old root).
pub fn switch(args: &[OsString], started: u64) -> SysError {
    match copy_into_tmpfs() {
        Err(e) => e,
        Ok(()) => {
            let program = args.first().cloned().unwrap_or_else(|| "/init".into());
            let e = std::process::Command::new("/init")
                .arg0(program)
                .args(args.get(1..).unwrap_or_default())
                .env(MOVED, "1")
                .env(STARTED, started.to_string())
                .exec();
            SysError {
                what: format!("exec /init in the new root: {e}"),
                errno: rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::NOEXEC),
            }
        }
    }
}

fn copy_into_tmpfs() -> Result<(), SysError> {
    rustix::fs::mkdir(NEW, Mode::from_raw_mode(0o755)).ctx(|| format!("mkdir {NEW}"))?;
    let (size, note) = crate::sizes::Tmpfs::Root.option();
    if let Some(note) = note {
        println!("hull-init: {note}");
    }
    let data = std::ffi::CString::new(format!("mode=0755,{size}")).unwrap_or_default();
    rustix::mount::mount(
        "tmpfs",
        NEW,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        data.as_c_str(),
    )
    .ctx(|| format!("mount a tmpfs ({size}) on {NEW}"))?;
    let root_dev = rustix::fs::stat("/").ctx(|| "stat /".into())?.st_dev;
    let mut links = HashMap::new();
    let entries = std::fs::read_dir("/").map_err(|e| io("read /", &e))?;
    for entry in entries.flatten() {
        let from = entry.path();
        if from == Path::new(NEW) {
            continue;
        }
        let to = Path::new(NEW).join(entry.file_name());
        move_tree(&from, &to, root_dev, &mut links)?;
    }
    std::env::set_current_dir(NEW).map_err(|e| io(&format!("cd {NEW}"), &e))?;
    rustix::mount::mount_move(".", "/").ctx(|| format!("move {NEW} onto /"))?;
    rustix::process::chroot(".").ctx(|| "chroot into the new root".into())?;
    std::env::set_current_dir("/").map_err(|e| io("cd /", &e))?;
    Ok(())
}

fn io(what: &str, e: &std::io::Error) -> SysError {
    SysError {
        what: format!("{what}: {e}"),
        errno: rustix::io::Errno::from_io_error(e).unwrap_or(rustix::io::Errno::IO),
    }
}

/// Copies `from` (a file, link, node or whole directory) to `to` with owner,
/// mode and times, hard links kept, then removes `from`. Other filesystems
/// mounted below are left where they are.
fn move_tree(
    from: &Path,
    to: &Path,
    root_dev: u64,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> Result<(), SysError> {
    let meta = std::fs::symlink_metadata(from).map_err(|e| io(&from.display().to_string(), &e))?;
    if meta.dev() != root_dev {
        return Ok(());
    }
    let what = || format!("copy {}", from.display());
    let kind = FileType::from_raw_mode(meta.mode());
    let mode = Mode::from_raw_mode(meta.mode() & 0o7777);
    match kind {
        FileType::Directory => {
            rustix::fs::mkdir(to, mode).ctx(what)?;
            let entries = std::fs::read_dir(from).map_err(|e| io(&what(), &e))?;
            for entry in entries.flatten() {
                move_tree(&entry.path(), &to.join(entry.file_name()), root_dev, links)?;
            }
        }
        FileType::Symlink => {
            let target = std::fs::read_link(from).map_err(|e| io(&what(), &e))?;
            rustix::fs::symlink(target.as_os_str().as_bytes(), to).ctx(what)?;
        }
        FileType::RegularFile => {
            // A hard link to a file already copied is linked again (the
            // count drops as originals go, so the first copy is looked up).
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                rustix::fs::link(first, to).ctx(what)?;
            } else {
                std::fs::copy(from, to).map_err(|e| io(&what(), &e))?;
                if meta.nlink() > 1 {
                    links.insert((meta.dev(), meta.ino()), to.to_path_buf());
                }
            }
        }
        other => {
            rustix::fs::mknodat(CWD, to, other, mode, meta.rdev()).ctx(what)?;
        }
    }
    let owner = (
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
    );
    rustix::fs::chownat(
        CWD,
        to,
        owner.0,
        owner.1,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .ctx(what)?;
    if kind != FileType::Symlink {
        // chown clears set-id bits: put the mode back.
        rustix::fs::chmod(to, mode).ctx(what)?;
    }
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    };
    let _ = rustix::fs::utimensat(CWD, to, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
    // The original goes now, so the initramfs gives its memory back as we copy.
    let removed = if kind == FileType::Directory {
        std::fs::remove_dir(from)
    } else {
        std::fs::remove_file(from)
    };
    // Mount points below keep a directory busy; that is fine.
    let _ = removed;
    Ok(())
}
