//! The few system calls hull-init makes that need care, with their context.
//!
//! Owns: every `unsafe` block of hull-init (`unshare`, the seccomp filter,
//! the loopback ioctls), and error values
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
