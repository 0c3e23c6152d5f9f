//! Paths inside a container's root, resolved by the kernel without leaving it.
//!
//! Every mount target of a container is opened with `openat2(2)` and
//! `RESOLVE_IN_ROOT` from a descriptor of the root: `..` and symlinks,
//! absolute or relative, stay inside it as if it were `/`, so nothing an
//! image ships (`etc/resolv.conf -> /pwned`, `data -> /etc`) can turn a
//! mount into one on a host path. Missing directories on the way, and the
//! target itself, are made through descriptors the same way. A mount then
//! goes onto `/proc/self/fd/N`, and anything done to the new mount afterwards
//! (a remount, its propagation) opens the path again, since the old
//! descriptor still names what lies under it. Owns: that resolution. Must not
//! mount: that is `mounts`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::sys::{Context, SysError};

/// What to make at a target that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Make {
    /// Nothing: the target must exist.
    Nothing,
    /// A directory (a mount of a filesystem or of a directory).
    Dir,
    /// An empty file (a bind of a file or device node).
    File,
}

/// An open descriptor of a path inside a root, and the path that reaches
/// it through `/proc/self/fd`; the descriptor lives as long as this value.
#[derive(Debug)]
pub struct Opened {
    fd: OwnedFd,
}

impl Opened {
    /// The path the kernel follows to exactly this file.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

/// A container's root, open: paths are resolved inside it.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    shown: PathBuf,
    resolve: ResolveFlags,
}

/// `path` made relative (`/etc/x` → `etc/x`); `.` for the root itself.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

impl Root {
    /// Opens the directory `dir` as a root.
    pub fn open(dir: &Path) -> Result<Self, SysError> {
        Root::open_with(dir, RESOLVE)
    }

    /// Opens `dir` as a root in which no symlink is followed at all: for
    /// PID1's own state in directories a container may write (a bound `/run`).
    pub fn open_no_symlinks(dir: &Path) -> Result<Self, SysError> {
        Root::open_with(dir, RESOLVE | ResolveFlags::NO_SYMLINKS)
    }

    fn open_with(dir: &Path, resolve: ResolveFlags) -> Result<Self, SysError> {
        let fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open the root {}", dir.display()))?;
        Ok(Root {
            fd,
            shown: dir.to_path_buf(),
            resolve,
        })
    }

    /// How `path` inside this root is shown in errors.
    pub fn show(&self, path: &Path) -> String {
        let base = self.shown.to_string_lossy();
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            relative(path).display()
        )
    }

    fn resolve(&self, path: &Path, flags: OFlags) -> rustix::io::Result<OwnedFd> {
        rustix::fs::openat2(
            &self.fd,
            relative(path),
            flags | OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            self.resolve,
        )
    }

    /// Opens `path` (a path in the container, `/` being this root), making
    /// the directories on the way and, as `make` says, the target itself. A
    /// symlink that leads nowhere yet is followed inside the root, and what
    /// it names made there (as `runc` does), never on the host.
    pub fn open_at(&self, path: &Path, make: Make) -> Result<Opened, SysError> {
        let mut path = relative(path);
        for _ in 0..MAX_LINKS {
            match self.make_missing(&path, make)? {
                Step::Done => {
                    let fd = self
                        .resolve(&path, OFlags::empty())
                        .ctx(|| format!("resolve {}", self.show(&path)))?;
                    return Ok(Opened { fd });
                }
                Step::Follow(next) => path = next,
            }
        }
        Err(Errno::LOOP).ctx(|| format!("resolve {}", self.show(&path)))
    }

    /// Makes what is missing on the way to `rel`; when a dangling symlink
    /// is in the way, the path with that link replaced by its target.
    fn make_missing(&self, rel: &Path, make: Make) -> Result<Step, SysError> {
        let mut prefix = PathBuf::new();
        let mut parts = rel.components().peekable();
        while let Some(part) = parts.next() {
            let parent = if prefix.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                prefix.clone()
            };
            prefix.push(part);
            let wanted = if parts.peek().is_none() {
                make
            } else {
                Make::Dir
            };
            if wanted == Make::Nothing || !matches!(part, Component::Normal(_)) {
                continue;
            }
            match self.resolve(&prefix, OFlags::empty()) {
                Ok(_) => continue,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(e).ctx(|| format!("resolve {}", self.show(&prefix))),
            }
            let dir = self
                .resolve(&parent, OFlags::DIRECTORY)
                .ctx(|| format!("resolve {}", self.show(&parent)))?;
            let name = part.as_os_str();
            match make_one(&dir, name, wanted) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    // A symlink to nowhere (or made meanwhile: then go on);
                    // never followed in a root without symlinks.
                    let follow = !self.resolve.contains(ResolveFlags::NO_SYMLINKS);
                    if let Some(link) = follow
                        .then(|| rustix::fs::readlinkat(&dir, name, Vec::new()).ok())
                        .flatten()
                    {
                        let link = PathBuf::from(std::ffi::OsStr::from_bytes(link.as_bytes()));
                        let mut next = if link.is_absolute() {
                            relative(&link)
                        } else {
                            parent.join(link)
                        };
                        next.extend(parts);
                        return Ok(Step::Follow(next));
                    }
                }
                Err(e) => return Err(e).ctx(|| format!("make {}", self.show(&prefix))),
            }
        }
        Ok(Step::Done)
    }
}

/// How many dangling symlinks one path may pass, as the kernel's limit.
const MAX_LINKS: usize = 40;

enum Step {
    Done,
    Follow(PathBuf),
}

/// Makes the file or directory `name` in `dir`, never through a symlink.
fn make_one(dir: &OwnedFd, name: &std::ffi::OsStr, make: Make) -> rustix::io::Result<()> {
    match make {
        Make::File => rustix::fs::openat(
            dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map(drop),
        _ => rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "hull-inroot-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("tmp");
        dir
    }

    /// Where the kernel says an open descriptor is.
    fn real(o: &Opened) -> PathBuf {
        std::fs::read_link(o.path()).expect("readlink")
    }

    #[test]
    fn symlinks_in_the_image_resolve_inside_the_root() {
        let base = tmp();
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        // An absolute symlink, a relative one climbing out, and a directory
        // link pointing at a host path.
        std::os::unix::fs::symlink(&outside, root.join("etc/resolv.conf")).expect("ln");
        std::os::unix::fs::symlink("../../../outside", root.join("up")).expect("ln");
        std::os::unix::fs::symlink("/etc", root.join("data")).expect("ln");
        let r = Root::open(&root).expect("root");
        let conf = r
            .open_at(Path::new("/etc/resolv.conf"), Make::File)
            .expect("conf");
        // The link's target made inside the root, not the host's directory used.
        assert_eq!(
            real(&conf),
            root.join(outside.strip_prefix("/").expect("abs"))
        );
        let up = r.open_at(Path::new("/up/x"), Make::Dir).expect("up");
        assert_eq!(real(&up), root.join("outside/x"));
        let data = r.open_at(Path::new("/data/x"), Make::Dir).expect("data");
        assert_eq!(real(&data), root.join("etc/x"));
        assert!(!outside.join("x").exists(), "made outside the root");
        std::fs::remove_dir_all(&base).expect("clean");
    }

    #[test]
    fn a_root_without_symlinks_refuses_every_link() {
        let base = tmp();
        std::fs::create_dir_all(base.join("run")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", base.join("run/hull")).expect("ln");
        let r = Root::open_no_symlinks(&base).expect("root");
        let e = r
            .open_at(Path::new("/run/hull/containers/x"), Make::Dir)
            .expect_err("through a symlink");
        assert_eq!(e.errno, Errno::LOOP, "{e}");
        assert!(!base.join("etc").exists());
        r.open_at(Path::new("/run/other/x"), Make::Dir)
            .expect("plain dirs");
        assert!(base.join("run/other/x").is_dir());
        std::fs::remove_dir_all(&base).expect("clean");
    }

    #[test]
    fn a_missing_target_is_made_as_asked_or_refused() {
        let base = tmp();
        let r = Root::open(&base).expect("root");
        let file = r.open_at(Path::new("a/b/file"), Make::File).expect("file");
        assert!(base.join("a/b/file").is_file());
        assert_eq!(real(&file), base.join("a/b/file"));
        r.open_at(Path::new("/c/d"), Make::Dir).expect("dir");
        assert!(base.join("c/d").is_dir());
        let e = r
            .open_at(Path::new("/none"), Make::Nothing)
            .expect_err("missing");
        assert_eq!(e.errno, Errno::NOENT);
        assert!(e.what.contains("/none"), "{e}");
        assert_eq!(
            real(&r.open_at(Path::new("/"), Make::Dir).expect("root")),
            base
        );
        // Links that lead to each other end in an error, not a loop.
        std::os::unix::fs::symlink("/l2", base.join("l1")).expect("ln");
        std::os::unix::fs::symlink("l1", base.join("l2")).expect("ln");
        let e = r.open_at(Path::new("/l1/x"), Make::File).expect_err("loop");
        assert!(matches!(e.errno, Errno::LOOP), "{e}");
        std::fs::remove_dir_all(&base).expect("clean");
    }
}
