//! Running one container: the shim (namespaces, cgroup) and the exec step
//! (root filesystem, mounts, identity, capabilities, then the program).
//!
//! A runtime of Hull's own over rustix and caps rather than youki's
//! libcontainer: it needs only what LinuxKit-style containers use, keeps
//! hull-init one small static binary, and builds with Debian's aarch64
//! toolchain without extra C libraries. Owns: applying `config.json` and
//! `runtime.json`. Must not supervise: that is `supervisor`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};
use rustix::mount::MountPropagationFlags;
use rustix::thread::UnshareFlags;

use hull_contract::layout;

use crate::inroot::{Make, Opened, Root};
use crate::mounts::Target;
use crate::runtime::HostSide;
use crate::sys::{self, Context, SysError};
use crate::{mounts, runtime, seccomp};

/// What went wrong setting a container up.
#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<SysError> for SetupError {
    fn from(e: SysError) -> Self {
        SetupError(e.to_string())
    }
}

fn err(msg: impl Into<String>) -> SetupError {
    SetupError(msg.into())
}

/// Reads a container's config.json.
pub fn spec(dir: &Path) -> Result<Spec, SetupError> {
    Spec::load(dir.join(layout::CONFIG_FILE))
        .map_err(|e| err(format!("{}/{}: {e}", dir.display(), layout::CONFIG_FILE)))
}

/// The container's cgroup directory under /sys/fs/cgroup; a `cgroupsPath`
/// that climbs out of it (`..`) is refused.
pub fn cgroup_dir(spec: &Spec, name: &str) -> Result<PathBuf, SetupError> {
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .unwrap_or_else(|| PathBuf::from(layout::default_cgroups_path(name)));
    let inside = path.components().all(|c| {
        matches!(
            c,
            std::path::Component::RootDir
                | std::path::Component::CurDir
                | std::path::Component::Normal(_)
        )
    });
    if !inside {
        return Err(err(format!(
            "cgroupsPath {} leaves {}: not started",
            path.display(),
            layout::CGROUP_ROOT
        )));
    }
    Ok(Path::new(layout::CGROUP_ROOT).join(path.strip_prefix("/").unwrap_or(&path)))
}

fn write(path: &Path, value: &str) -> Result<(), SetupError> {
    std::fs::write(path, value)
        .map_err(|e| err(format!("write {value:?} to {}: {e}", path.display())))
}

/// `pids.max` for a spec's limit, as runc: none for 0, `max` when negative.
fn pids_max(limit: i64) -> Option<String> {
    match limit {
        0 => None,
        l if l < 0 => Some("max".into()),
        l => Some(l.to_string()),
    }
}

/// Enables the memory, pids, cpu and io controllers on the way down to
/// `dir`, each where its parent offers it: one that cannot be enabled stops
/// the container (its limits, the default pids limit among them, would not
/// hold). A controller the kernel lacks is not offered; a limit asked of it
/// then fails at its own file.
fn enable_controllers(dir: &Path) -> Result<(), SetupError> {
    let root = Path::new(layout::CGROUP_ROOT);
    let mut p = root.to_path_buf();
    for part in dir.strip_prefix(root).unwrap_or(dir).components() {
        let offered = std::fs::read_to_string(p.join("cgroup.controllers")).unwrap_or_default();
        for c in ["memory", "pids", "cpu", "io"] {
            if offered.split_whitespace().any(|o| o == c) {
                write(&p.join("cgroup.subtree_control"), &format!("+{c}"))?;
            }
        }
        p.push(part);
    }
    Ok(())
}

/// Creates the cgroup, attaches its device filter, applies limits, and
/// moves this process into it.
fn enter_cgroup(spec: &Spec, name: &str) -> Result<(), SetupError> {
    let dir = cgroup_dir(spec, name)?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| err(format!("create cgroup {}: {e}", dir.display())))?;
    enable_controllers(&dir)?;
    // The device filter: the spec's rules, or none allowed when it has none.
    let rules = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    crate::devfilter::attach(&dir, &rules).map_err(|e| err(format!("{e}: not started")))?;
    if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        if let Some(limit) = r.memory().as_ref().and_then(|m| m.limit()) {
            write(&dir.join("memory.max"), &limit.to_string())?;
            // No swap beyond the limit; the file exists only with swap accounting.
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0")?;
            }
        }
        if let Some(max) = r.pids().as_ref().and_then(|p| pids_max(p.limit())) {
            write(&dir.join("pids.max"), &max)?;
        }
        if let Some(cpu) = r.cpu().as_ref() {
            if let Some(q) = cpu.quota() {
                write(
                    &dir.join("cpu.max"),
                    &format!("{q} {}", cpu.period().unwrap_or(100_000)),
                )?;
            }
        }
    }
    write(&dir.join("cgroup.procs"), &std::process::id().to_string())
}

/// Fails closed on what hull-init cannot apply yet (user namespaces),
/// rather than run a container with less isolation than its config asks for.
fn refuse_unsupported(spec: &Spec) -> Result<(), SetupError> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let user_ns = linux
        .namespaces()
        .as_ref()
        .is_some_and(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    if user_ns {
        return Err(err(
            "config.json asks for a user namespace, which hull-init does not set up yet: not started",
        ));
    }
    Ok(())
}

/// The namespaces to unshare: every new one the spec asks for but the
/// mount namespace (made last, see [`shim`]); namespaces given by path are
/// joined here.
fn join_or_collect_namespaces(spec: &Spec) -> Result<UnshareFlags, SetupError> {
    let mut flags = UnshareFlags::empty();
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        let flag = match ns.typ() {
            LinuxNamespaceType::Pid => UnshareFlags::NEWPID,
            LinuxNamespaceType::Network => UnshareFlags::NEWNET,
            LinuxNamespaceType::Ipc => UnshareFlags::NEWIPC,
            LinuxNamespaceType::Uts => UnshareFlags::NEWUTS,
            LinuxNamespaceType::Mount => UnshareFlags::NEWNS,
            LinuxNamespaceType::Cgroup => UnshareFlags::NEWCGROUP,
            _ => continue,
        };
        match ns.path() {
            None if flag == UnshareFlags::NEWNS => {}
            None => flags |= flag,
            Some(path) => {
                let f = std::fs::File::open(path)
                    .map_err(|e| err(format!("open namespace {}: {e}", path.display())))?;
                rustix::thread::move_into_link_name_space(std::os::fd::AsFd::as_fd(&f), None)
                    .ctx(|| format!("join namespace {}", path.display()))?;
            }
        }
    }
    Ok(flags)
}

/// Passes SIGTERM and SIGINT on to the process whose pid is stored in the
/// returned cell (0: none yet). The thread starts before unshare: a process
/// cannot start threads after unsharing its pid namespace.
fn forward_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicI32>, SetupError> {
    use std::sync::atomic::{AtomicI32, Ordering};
    let target = std::sync::Arc::new(AtomicI32::new(0));
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| err(format!("signals: {e}")))?;
    let forward = target.clone();
    std::thread::Builder::new()
        .spawn(move || {
            for s in signals.forever() {
                let raw = forward.load(Ordering::SeqCst);
                if let Some(p) = rustix::process::Pid::from_raw(raw) {
                    let sig = if s == signal_hook::consts::SIGINT {
                        rustix::process::Signal::INT
                    } else {
                        rustix::process::Signal::TERM
                    };
                    let _ = rustix::process::kill_process(p, sig);
                }
            }
        })
        .map_err(|e| err(format!("signal thread: {e}")))?;
    Ok(target)
}

/// Unshares `flags` and does what runtime.json asks inside them while this
/// process still sees the host's mounts: interfaces moved or made in the new
/// network namespace, namespaces bound at host paths (bindNS).
fn unshare_with_host_side(
    runtime: &runtime::Runtime,
    flags: UnshareFlags,
    name: &str,
) -> Result<(), SetupError> {
    let mut host_network = match runtime.host_network() {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            eprintln!("hull-init: {name}: interfaces: {e}");
            None
        }
    };
    sys::unshare(flags)?;
    if let Some(h) = host_network.as_mut() {
        for e in runtime.set_up_interfaces(h) {
            eprintln!("hull-init: {name}: {e}");
        }
    }
    for e in runtime.bind_namespaces() {
        eprintln!("hull-init: {name}: {e}");
    }
    Ok(())
}

/// The shim: cgroup, namespaces, then the exec step as a child (pid 1 of a
/// new pid namespace when there is one); exits with the child's status.
pub fn shim(dir: &Path, name: &str) -> Result<i32, SetupError> {
    let spec = spec(dir)?;
    refuse_unsupported(&spec)?;
    // A runtime.json that cannot be read is not run with less than it asks.
    let runtime = runtime::load(dir).map_err(|e| err(format!("{e}: not started")))?;
    // The host side it asks for (directories, cgroups, mounts) or nothing.
    let failed = runtime.prepare();
    if !failed.is_empty() {
        return Err(err(format!(
            "runtime.json: {}: not started",
            failed.join("; ")
        )));
    }
    enter_cgroup(&spec, name)?;
    let flags = join_or_collect_namespaces(&spec)?;
    let target = forward_signals()?;
    // The other namespaces first, so that they can be bound at host paths
    // (runtime bindNS) while this process still sees the host's mounts;
    // every container gets a new mount namespace, last.
    unshare_with_host_side(&runtime, flags, name)?;
    sys::unshare(UnshareFlags::NEWNS)?;
    let mut child = Command::new("/proc/self/exe")
        .arg0("hull-init")
        .args(["exec", &dir.to_string_lossy(), name])
        .spawn()
        .map_err(|e| err(format!("start {name}: {e}")))?;
    target.store(
        i32::try_from(child.id()).unwrap_or(0),
        std::sync::atomic::Ordering::SeqCst,
    );
    let status = child
        .wait()
        .map_err(|e| err(format!("wait for {name}: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// What a bind from `source` needs to be mounted on: a file for a file or
/// device node, a directory for anything else.
fn make_for(source: &Path) -> Make {
    if std::fs::metadata(source).is_ok_and(|m| !m.is_dir()) {
        Make::File
    } else {
        Make::Dir
    }
}

/// True when the opened target already is the device node `source` (a bound /dev).
fn same_node(source: &Path, target: &Opened) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(a) = std::fs::metadata(source) else {
        return false;
    };
    let Ok(b) = rustix::fs::fstat(target.fd()) else {
        return false;
    };
    let dev = a.file_type().is_char_device() || a.file_type().is_block_device();
    let kind = rustix::fs::FileType::from_raw_mode(b.st_mode);
    let b_dev = matches!(
        kind,
        rustix::fs::FileType::CharacterDevice | rustix::fs::FileType::BlockDevice
    );
    dev && b_dev && a.rdev() == b.st_rdev
}

/// Nothing mounted in the container reaches the host (rslave, runc's
/// default) unless it asks for shared propagation: then only / and /run
/// (where its root is put together) are made private, and binds of other
/// mounts (/var) stay peers of the host's, so a disk it mounts there is seen
/// by all. Returns whether the container is shared.
fn set_root_propagation(spec: &Spec) -> Result<bool, SetupError> {
    let shared = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .is_some_and(|p| p == "shared" || p == "rshared");
    if shared {
        for m in ["/", "/run"] {
            mounts::set_propagation(Path::new(m), MountPropagationFlags::PRIVATE)?;
        }
    } else {
        mounts::set_propagation(
            Path::new("/"),
            MountPropagationFlags::REC | MountPropagationFlags::DOWNSTREAM,
        )?;
    }
    Ok(shared)
}

/// The container's working directory, `/run/hull/containers/NAME`, made
/// without following a symlink (a container that binds `/run` may have put
/// one there) and covered by a tmpfs of this mount namespace alone; an open
/// descriptor of that tmpfs, through which everything else is reached; as
/// big as `sizes` says. A directory swapped in between the mount and the
/// open is refused.
fn work_dir(name: &str) -> Result<OwnedFd, SetupError> {
    let host = Root::open_no_symlinks(Path::new("/"))?;
    let parent = Path::new("/run/hull/containers");
    let path = parent.join(name);
    let parent_dev = rustix::fs::fstat(host.open_at(parent, Make::Dir)?.fd())
        .ctx(|| format!("stat {}", parent.display()))?
        .st_dev;
    // Device nodes made in the container open nothing: the nodes a
    // container may use are binds from the host's /dev.
    let (size, note) = crate::sizes::Tmpfs::Upper.option();
    if let Some(note) = note {
        eprintln!("hull-init: {name}: {note}");
    }
    mounts::mount_at(
        "tmpfs",
        &Target::InRoot(&host, &path, Make::Dir),
        "tmpfs",
        &["nosuid".into(), "nodev".into(), "mode=0700".into(), size],
    )?;
    let work = host.open_at(&path, Make::Nothing)?.into_fd();
    let ours = rustix::fs::fstat(&work).is_ok_and(|st| st.st_dev != parent_dev)
        && rustix::fs::fstatfs(&work).is_ok_and(|st| sys::fs_magic(&st) == sys::TMPFS_MAGIC);
    if !ours {
        return Err(err(format!(
            "{} was replaced while being set up: not started",
            path.display()
        )));
    }
    Ok(work)
}

/// The container's root, an overlay mounted in its working directory,
/// reached through that directory's descriptor.
struct OverlayRoot {
    _work: OwnedFd,
    path: PathBuf,
}

/// The container's root: always an overlay (the image below, a tmpfs
/// above), so mount points can be made; `nodev`, so a block node shipped in
/// an image opens nothing (not `nosuid`: set-uid programs of images work as
/// under Docker; `noNewPrivileges` is the switch against them). A read-only
/// container's root is remounted read-only once its mounts are in place.
fn overlay_root(dir: &Path, name: &str) -> Result<OverlayRoot, SetupError> {
    let image = std::fs::canonicalize(dir.join(layout::ROOTFS))
        .map_err(|e| err(format!("{}/{}: {e}", dir.display(), layout::ROOTFS)))?;
    let work = work_dir(name)?;
    for d in ["upper", "work", "root"] {
        rustix::fs::mkdirat(&work, d, rustix::fs::Mode::from_raw_mode(0o755))
            .ctx(|| format!("mkdir {d} in the working directory of {name}"))?;
    }
    let base = PathBuf::from(format!("/proc/self/fd/{}", work.as_raw_fd()));
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        image.display(),
        base.join("upper").display(),
        base.join("work").display()
    );
    let path = base.join("root");
    mounts::mount("overlay", &path, "overlay", &["nodev".into(), data])?;
    Ok(OverlayRoot { _work: work, path })
}

/// One mount of the spec, inside the new root (its target resolved there,
/// see `inroot`), with the propagation it asks for (in a shared container
/// only binds marked shared stay the host's peers; others become slaves, so
/// mounts on them, devpts on a bound /dev, stay in the container).
fn spec_mount(root: &Root, m: &oci_spec::runtime::Mount, shared: bool) -> Result<(), SysError> {
    let typ = m.typ().clone().unwrap_or_else(|| "bind".into());
    let source = m
        .source()
        .clone()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| typ.clone());
    let options = m.options().clone().unwrap_or_default();
    let bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
    let make = if bind {
        make_for(Path::new(&source))
    } else {
        Make::Dir
    };
    let target = Target::InRoot(root, m.destination(), make);
    let fstype = if typ == "cgroup" { "cgroup2" } else { &typ };
    mounts::mount_at(&source, &target, fstype, &options)?;
    let mut asked: Vec<_> = options
        .iter()
        .filter_map(|o| mounts::propagation(o))
        .collect();
    if asked.is_empty() && bind && shared {
        asked.push(MountPropagationFlags::REC | MountPropagationFlags::DOWNSTREAM);
    }
    for flags in asked {
        mounts::set_propagation_at(&target, flags)?;
    }
    Ok(())
}

/// The usual device nodes, from the host's /dev, and the spec's devices,
/// bound on files made inside the root.
fn device_nodes(spec: &Spec, root: &Root) -> Result<(), SetupError> {
    let usual = ["null", "zero", "full", "random", "urandom", "tty"]
        .map(|d| PathBuf::from(format!("/dev/{d}")));
    let asked = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.path().clone());
    for source in usual.into_iter().chain(asked) {
        let fail = |e: SysError| err(format!("device {}: {e}", source.display()));
        // With the host's /dev bound in, the node is already there.
        let opened = root.open_at(&source, Make::File).map_err(fail)?;
        if same_node(&source, &opened) {
            continue;
        }
        drop(opened);
        let target = Target::InRoot(root, &source, Make::File);
        mounts::mount_at(&source.to_string_lossy(), &target, "bind", &["bind".into()])
            .map_err(fail)?;
    }
    Ok(())
}

/// The spec's masked and read-only paths (see `masked`).
fn masked_and_readonly_paths(spec: &Spec) -> Result<(), SetupError> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    crate::masked::apply(
        &mut crate::masked::Linux,
        &linux.masked_paths().clone().unwrap_or_default(),
        &linux.readonly_paths().clone().unwrap_or_default(),
    )
    .map_err(err)
}

/// The hostname, in a new UTS namespace only.
fn set_hostname(spec: &Spec) -> Result<(), SetupError> {
    let new_uts = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Uts && n.path().is_none());
    match spec.hostname() {
        Some(h) if new_uts => {
            rustix::system::sethostname(h.as_bytes()).ctx(|| format!("sethostname {h}"))?;
        }
        _ => {}
    }
    Ok(())
}

/// The kernel's resource for an OCI rlimit: every kind the spec knows.
fn rlimit_resource(typ: PosixRlimitType) -> rustix::process::Resource {
    use rustix::process::Resource as R;
    match typ {
        PosixRlimitType::RlimitCpu => R::Cpu,
        PosixRlimitType::RlimitFsize => R::Fsize,
        PosixRlimitType::RlimitData => R::Data,
        PosixRlimitType::RlimitStack => R::Stack,
        PosixRlimitType::RlimitCore => R::Core,
        PosixRlimitType::RlimitRss => R::Rss,
        PosixRlimitType::RlimitNproc => R::Nproc,
        PosixRlimitType::RlimitNofile => R::Nofile,
        PosixRlimitType::RlimitMemlock => R::Memlock,
        PosixRlimitType::RlimitAs => R::As,
        PosixRlimitType::RlimitLocks => R::Locks,
        PosixRlimitType::RlimitSigpending => R::Sigpending,
        PosixRlimitType::RlimitMsgqueue => R::Msgqueue,
        PosixRlimitType::RlimitNice => R::Nice,
        PosixRlimitType::RlimitRtprio => R::Rtprio,
        PosixRlimitType::RlimitRttime => R::Rttime,
    }
}

/// The spec's sysctls, through the container's /proc (so those of a new
/// network namespace are its own), before /proc/sys becomes read-only; the
/// first that cannot be written stops the container.
fn apply_sysctls(spec: &Spec) -> Result<(), SetupError> {
    let mut sysctl: Vec<_> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    sysctl.sort();
    for (k, v) in sysctl {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, &v).map_err(|e| err(format!("sysctl {k}={v} ({path}): {e}")))?;
    }
    Ok(())
}

/// Rlimits and the OOM score; the first that cannot be applied stops the
/// container, naming it.
fn apply_limits(process: &oci_spec::runtime::Process) -> Result<(), SetupError> {
    for r in process.rlimits().clone().unwrap_or_default() {
        let v = |n: u64| (n != u64::MAX).then_some(n);
        let limit = rustix::process::Rlimit {
            current: v(r.soft()),
            maximum: v(r.hard()),
        };
        rustix::process::setrlimit(rlimit_resource(r.typ()), limit)
            .ctx(|| format!("rlimit {} {}:{}", r.typ(), r.soft(), r.hard()))?;
    }
    if let Some(o) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", o.to_string())
            .map_err(|e| err(format!("oomScoreAdj {o}: {e}")))?;
    }
    Ok(())
}

/// Installs a seccomp profile, reporting syscalls this arch does not have.
fn install_seccomp(
    profile: &oci_spec::runtime::LinuxSeccomp,
    name: &str,
) -> Result<(), SetupError> {
    let skipped = seccomp::install(profile).map_err(err)?;
    if !skipped.is_empty() {
        eprintln!(
            "hull-init: {name}: seccomp: no such syscall on this arch, skipped: {}",
            skipped.join(" ")
        );
    }
    Ok(())
}

/// Replaces this process with the container's program; returns only on error.
fn exec_program(process: &oci_spec::runtime::Process) -> SetupError {
    let args = process.args().clone().unwrap_or_default();
    let Some((program, rest)) = args.split_first() else {
        return err("config.json has no process.args");
    };
    let mut cmd = Command::new(program);
    cmd.args(rest).env_clear();
    for e in process.env().clone().unwrap_or_default() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    let e = cmd.exec();
    err(format!("exec {program}: {e}"))
}

/// The exec step: runs inside the new namespaces; never returns on success.
pub fn exec(dir: &Path, name: &str) -> Result<(), SetupError> {
    let spec = spec(dir)?;
    let process = spec
        .process()
        .clone()
        .ok_or_else(|| err("config.json has no process"))?;
    let shared = set_root_propagation(&spec)?;
    let overlay = overlay_root(dir, name)?;
    let root_dir = overlay.path.clone();
    let root = Root::open(&root_dir)?;
    for m in spec.mounts().clone().unwrap_or_default() {
        spec_mount(&root, &m, shared)
            .map_err(|e| err(format!("mount {}: {e}", m.destination().display())))?;
    }
    device_nodes(&spec, &root)?;
    drop(root);
    enter_root(&root_dir, name)?;
    apply_sysctls(&spec)?;
    masked_and_readonly_paths(&spec)?;
    let readonly = spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly().unwrap_or(false));
    if readonly {
        rustix::mount::mount_remount(
            "/",
            rustix::mount::MountFlags::BIND
                | rustix::mount::MountFlags::RDONLY
                | rustix::mount::MountFlags::NODEV,
            "",
        )
        .ctx(|| "remount / read-only".into())?;
    }
    std::env::set_current_dir(process.cwd())
        .map_err(|e| err(format!("cwd {}: {e}", process.cwd().display())))?;
    set_hostname(&spec)?;
    apply_limits(&process)?;
    // Seccomp: with no_new_privs, last (after it is set); without, while
    // CAP_SYS_ADMIN is still effective, before the identity change (as runc).
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if let (Some(profile), false) = (&seccomp, no_new_privs) {
        install_seccomp(profile, name)?;
    }
    crate::identity::become_user(&mut crate::identity::Linux, &process)?;
    if no_new_privs {
        rustix::thread::set_no_new_privs(true).ctx(|| "no_new_privs".into())?;
        if let Some(profile) = &seccomp {
            install_seccomp(profile, name)?;
        }
    }
    Err(exec_program(&process))
}

/// True when the mount namespace's root is the kernel's `rootfs` (the
/// initramfs PID1 could not leave), which `pivot_root` cannot move.
fn root_is_initramfs() -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table.lines().any(|l| {
        let mut fields = l.split(' ');
        let mount_point = fields.nth(4);
        let fstype = l.split(" - ").nth(1).and_then(|t| t.split(' ').next());
        mount_point == Some("/") && fstype == Some("rootfs")
    })
}

/// Makes `root` the container's `/` with `pivot_root(".", ".")`, nothing
/// named inside the image: the old root, stacked on the new one, is made a
/// slave (so letting it go unmounts nothing of the host's) and detached.
/// A failure stops the container; `chroot` only where the system still
/// runs from the initramfs, which no `pivot_root` can leave.
fn enter_root(root: &Path, name: &str) -> Result<(), SetupError> {
    let old = rustix::fs::open(
        "/",
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ctx(|| "open the old root".into())?;
    std::env::set_current_dir(root).map_err(|e| err(format!("cd {}: {e}", root.display())))?;
    match rustix::process::pivot_root(".", ".") {
        Ok(()) => {
            rustix::process::fchdir(&old).ctx(|| "cd to the old root".into())?;
            mounts::set_propagation(
                Path::new("."),
                MountPropagationFlags::REC | MountPropagationFlags::DOWNSTREAM,
            )?;
            rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
                .ctx(|| "detach the old root".into())?;
        }
        Err(e) if root_is_initramfs() => {
            eprintln!(
                "hull-init: {name}: pivot_root: {e}: the system runs from the initramfs; using chroot"
            );
            rustix::process::chroot(".").ctx(|| format!("chroot {}", root.display()))?;
        }
        Err(e) => {
            return Err(err(format!(
                "pivot_root into {}: {e}: not started",
                root.display()
            )))
        }
    }
    std::env::set_current_dir("/").map_err(|e| err(format!("cd /: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cgroups_path(p: &str) -> Spec {
        let mut spec = Spec::default();
        if let Some(l) = spec.linux_mut().as_mut() {
            l.set_cgroups_path(Some(PathBuf::from(p)));
        }
        spec
    }

    #[test]
    fn every_rlimit_kind_maps_to_its_own_resource() {
        let kinds = [
            "RLIMIT_CPU",
            "RLIMIT_FSIZE",
            "RLIMIT_DATA",
            "RLIMIT_STACK",
            "RLIMIT_CORE",
            "RLIMIT_RSS",
            "RLIMIT_NPROC",
            "RLIMIT_NOFILE",
            "RLIMIT_MEMLOCK",
            "RLIMIT_AS",
            "RLIMIT_LOCKS",
            "RLIMIT_SIGPENDING",
            "RLIMIT_MSGQUEUE",
            "RLIMIT_NICE",
            "RLIMIT_RTPRIO",
            "RLIMIT_RTTIME",
        ];
        let mut seen = std::collections::HashSet::new();
        for k in kinds {
            let typ: PosixRlimitType =
                serde_json::from_value(serde_json::Value::String(k.into())).expect(k);
            assert!(
                seen.insert(rlimit_resource(typ) as i32),
                "{k} maps to a resource already used"
            );
        }
        assert_eq!(seen.len(), 16);
    }

    #[test]
    fn pids_limits_are_written_as_runc_writes_them() {
        assert_eq!(pids_max(1024).as_deref(), Some("1024"));
        assert_eq!(pids_max(-1).as_deref(), Some("max"));
        assert_eq!(pids_max(0), None);
    }

    #[test]
    fn cgroups_paths_stay_under_the_cgroup_root() {
        let ok = cgroup_dir(&with_cgroups_path("/hull/web"), "web").expect("inside");
        assert_eq!(ok, Path::new("/sys/fs/cgroup/hull/web"));
        for bad in ["/hull/../../etc", "../x", "/a/.."] {
            let e = cgroup_dir(&with_cgroups_path(bad), "web").expect_err(bad);
            assert!(e.0.contains("leaves /sys/fs/cgroup"), "{}", e.0);
        }
        let default = cgroup_dir(&Spec::default(), "s").expect("default");
        assert_eq!(default, Path::new("/sys/fs/cgroup/hull/s"));
    }
}
