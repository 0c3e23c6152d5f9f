//! The few system calls hull-init makes that need care, with their context.
//!
//! Owns: every `unsafe` block of hull-init (one: `unshare`), and error values
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
