//! The few system calls hull-init makes that need care, with their context.
//!
//! Owns: every `unsafe` block of hull-init (`unshare`, the seccomp filter,
//! the device filter's `bpf` calls, the loopback and device-mapper
//! ioctls), and error values
//! that name the path or resource involved. Must not decide policy.

use std::fmt;

/// A failed system call: what was tried, on what, and the errno.
#[derive(Debug)]
pub struct SysError {
    pub what: String,
    pub errno: rustix::io::Errno,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.errno)
    }
}

impl std::error::Error for SysError {}

/// Adds context to a rustix result.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, SysError>;
}

impl<T> Context<T> for rustix::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, SysError> {
        self.map_err(|errno| SysError {
            what: what(),
            errno,
        })
    }
}

/// Leaves the namespaces in `flags` for new ones.
///
/// Only called by the single-threaded shim and exec modes, before they start
/// any thread.
pub fn unshare(flags: rustix::thread::UnshareFlags) -> Result<(), SysError> {
    // SAFETY: unshare is unsafe in rustix because CLONE_FILES/CLONE_FS can
    // break assumptions of other threads sharing the fd table or cwd; the
    // callers are single-threaded processes (shim, exec) and never pass
    // CLONE_FILES or CLONE_FS.
    unsafe { rustix::thread::unshare_unsafe(flags) }.ctx(|| format!("unshare({flags:?})"))
}

/// Installs a seccomp BPF program for this thread and what it execs,
/// leaving `no_new_privs` as it is: without it the kernel asks for
/// CAP_SYS_ADMIN, which the caller still has (runc's order).
pub fn seccomp_filter(program: &[seccompiler::sock_filter]) -> Result<(), SysError> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| SysError {
            what: format!("seccomp filter of {} instructions", program.len()),
            errno: rustix::io::Errno::TOOBIG,
        })?,
        // seccompiler's `sock_filter` is `#[repr(C)]` with the kernel's
        // layout (u16, u8, u8, u32), the same as libc's.
        filter: program.as_ptr().cast_mut().cast::<libc::sock_filter>(),
    };
    // SAFETY: SECCOMP_SET_MODE_FILTER reads `fprog` and the `len`
    // instructions it points to (copied by the kernel before it returns);
    // both outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        let errno = std::io::Error::last_os_error().raw_os_error().map_or(
            rustix::io::Errno::INVAL,
            rustix::io::Errno::from_raw_os_error,
        );
        Err(SysError {
            what: "seccomp(SECCOMP_SET_MODE_FILTER)".into(),
            errno,
        })
    }
}

fn last_errno() -> rustix::io::Errno {
    rustix::io::Errno::from_io_error(&std::io::Error::last_os_error())
        .unwrap_or(rustix::io::Errno::INVAL)
}

/// `statfs`'s magic numbers of the filesystems PID1 looks for.
pub const TMPFS_MAGIC: i64 = 0x0102_1994;
pub const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// The filesystem type of a `statfs` result.
pub fn fs_magic(st: &rustix::fs::StatFs) -> i64 {
    // f_type's integer type differs between C libraries and arches.
    #[allow(clippy::useless_conversion)]
    i64::from(st.f_type)
}

/// `union bpf_attr` as BPF_PROG_LOAD reads it, up to the fields used.
#[repr(C)]
#[derive(Default)]
struct BpfProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` as BPF_PROG_ATTACH reads it.
#[repr(C)]
#[derive(Default)]
struct BpfProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// One BPF_PROG_LOAD of a device program, with the verifier's log in `log`
/// when there is one.
fn bpf_prog_load(program: &[crate::devfilter::Insn], log: &mut [u8]) -> libc::c_long {
    let license = b"Apache-2.0\0";
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"hull_devcg");
    let attr = BpfProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(program.len()).unwrap_or(u32::MAX),
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: u32::try_from(log.len()).unwrap_or(0),
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..BpfProgLoad::default()
    };
    // SAFETY: BPF_PROG_LOAD reads `size_of::<BpfProgLoad>()` bytes of
    // `attr` (a prefix of `union bpf_attr`, the rest zero as the kernel
    // wants), and through it the instructions (`Insn` has `struct
    // bpf_insn`'s layout) and the license string, and writes at most
    // `log.len()` bytes of log into `log`; all outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const BpfProgLoad,
            std::mem::size_of::<BpfProgLoad>(),
        )
    }
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program; returns its descriptor.
/// A program the kernel refuses is loaded once more for the verifier's
/// reason, which the error then ends with.
pub fn bpf_load_cgroup_device(
    program: &[crate::devfilter::Insn],
) -> Result<std::os::fd::OwnedFd, SysError> {
    let fd = bpf_prog_load(program, &mut []);
    if fd < 0 {
        let errno = last_errno();
        let mut log = vec![0u8; 16 << 10];
        let _ = bpf_prog_load(program, &mut log);
        let text = String::from_utf8_lossy(&log);
        let reason = text
            .trim_end_matches('\0')
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        return Err(SysError {
            what: format!(
                "bpf(BPF_PROG_LOAD) of {} instructions (verifier: {reason})",
                program.len()
            ),
            errno,
        });
    }
    let fd = i32::try_from(fd).map_err(|_| SysError {
        what: "bpf(BPF_PROG_LOAD) returned no descriptor".into(),
        errno: rustix::io::Errno::BADF,
    })?;
    // SAFETY: the kernel just returned `fd` as a new descriptor owned by
    // nobody else.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Attaches a device program to a cgroup, replacing any attached before
/// (no flags: one program per cgroup, which a new attach replaces).
pub fn bpf_attach_cgroup_device(
    cgroup: std::os::fd::BorrowedFd<'_>,
    program: std::os::fd::BorrowedFd<'_>,
) -> Result<(), SysError> {
    use std::os::fd::AsRawFd;
    let attr = BpfProgAttach {
        target_fd: u32::try_from(cgroup.as_raw_fd()).unwrap_or(u32::MAX),
        attach_bpf_fd: u32::try_from(program.as_raw_fd()).unwrap_or(u32::MAX),
        attach_type: BPF_CGROUP_DEVICE,
        ..BpfProgAttach::default()
    };
    // SAFETY: BPF_PROG_ATTACH reads `attr` (a prefix of `union bpf_attr`)
    // and writes nothing; the descriptors are borrowed for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const BpfProgAttach,
            std::mem::size_of::<BpfProgAttach>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(SysError {
            what: "bpf(BPF_PROG_ATTACH) to the cgroup".into(),
            errno: last_errno(),
        })
    }
}

/// `struct ifreq` as far as SIOCGIFFLAGS/SIOCSIFFLAGS use it.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

const SIOCGIFFLAGS: rustix::ioctl::Opcode = 0x8913;
const SIOCSIFFLAGS: rustix::ioctl::Opcode = 0x8914;
const IFF_UP: i16 = 0x1;

/// Brings the loopback interface up (no netlink library needed for one flag).
pub fn loopback_up() -> Result<(), SysError> {
    use rustix::net::{socket, AddressFamily, SocketType};
    let sock = socket(AddressFamily::INET, SocketType::DGRAM, None).ctx(|| "socket".into())?;
    let mut req = IfReq {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS reads and writes a `struct ifreq`, which `IfReq`
    // mirrors in size (40 bytes) and layout (name, then the flags union).
    unsafe {
        rustix::ioctl::ioctl(
            &sock,
            rustix::ioctl::Updater::<SIOCGIFFLAGS, IfReq>::new(&mut req),
        )
    }
    .ctx(|| "get lo flags".into())?;
    req.flags |= IFF_UP;
    // SAFETY: as above; SIOCSIFFLAGS reads the same `struct ifreq`.
    unsafe {
        rustix::ioctl::ioctl(
            &sock,
            rustix::ioctl::Updater::<SIOCSIFFLAGS, IfReq>::new(&mut req),
        )
    }
    .ctx(|| "set lo up".into())
}

/// A device-mapper ioctl (`DM_DEV_CREATE`, `DM_TABLE_LOAD`,
/// `DM_DEV_SUSPEND`, ...) on `/dev/mapper/control` with `buf`: a
/// `struct dm_ioctl` (312 bytes) and what follows it, as `dm` lays it out;
/// the kernel writes its answer back into `buf`. `what` names the step.
pub fn dm_ioctl(
    control: std::os::fd::BorrowedFd<'_>,
    cmd: u8,
    buf: &mut [u8],
    what: &str,
) -> Result<(), SysError> {
    use std::os::fd::AsRawFd;
    // _IOWR(0xfd, cmd, struct dm_ioctl): both directions, 312 bytes.
    let request: u32 = (3 << 30) | (312 << 16) | (0xfd << 8) | u32::from(cmd);
    let size = u32::try_from(buf.len()).unwrap_or(0);
    if size < 312 {
        return Err(SysError {
            what: format!("{what}: a dm_ioctl buffer of {} bytes", buf.len()),
            errno: rustix::io::Errno::INVAL,
        });
    }
    // data_size: the whole buffer, so the kernel stays inside it.
    buf[12..16].copy_from_slice(&size.to_ne_bytes());
    // SAFETY: `buf` is a live, writable buffer at least as large as the
    // struct the request names, and its `data_size` field (set just above)
    // is its length; the kernel reads and writes only within `data_size`.
    let r = unsafe {
        libc::ioctl(
            control.as_raw_fd(),
            request as libc::Ioctl,
            buf.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(SysError {
            what: what.to_string(),
            errno: last_errno(),
        });
    }
    Ok(())
}

/// `WDIOC_SETTIMEOUT` on an open watchdog: asks for `secs` and returns the
/// timeout the driver set (it may round).
pub fn watchdog_set_timeout(
    watchdog: std::os::fd::BorrowedFd<'_>,
    secs: u32,
) -> Result<u32, SysError> {
    use std::os::fd::AsRawFd;
    // _IOWR('W', 6, int).
    let request: u32 = (3 << 30) | (4 << 16) | (u32::from(b'W') << 8) | 6;
    let mut value = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: the request names an int, read and written by the kernel;
    // `value` is a live, writable int for the call's duration.
    let r = unsafe {
        libc::ioctl(
            watchdog.as_raw_fd(),
            request as libc::Ioctl,
            &mut value as *mut libc::c_int,
        )
    };
    if r < 0 {
        return Err(SysError {
            what: format!("WDIOC_SETTIMEOUT {secs} s"),
            errno: last_errno(),
        });
    }
    Ok(u32::try_from(value).unwrap_or(secs))
}
