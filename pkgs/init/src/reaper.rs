//! The one place PID1 collects exited children.
//!
//! PID1 is every orphan's parent, so a `wait` for "any child" also collects
//! the containers' shims; when a second, per-child wait exists beside it,
//! whichever runs first takes the exit and the other never sees it (a
//! service then shows running forever and is never restarted). So nothing
//! else waits: [`reap`] collects every exit, and the caller hands each to the
//! one that started that pid, or drops it as an orphan's. Owns: waiting and
//! the exit code of a status. Must not decide what an exit means: the
//! supervisor and the service table do.

use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};

/// A started process, known by its pid until its exit has been reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc(Pid);

impl Proc {
    /// The process `child` is, from now on waited for only by [`reap`].
    pub fn from_child(child: std::process::Child) -> Option<Proc> {
        let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw)?;
        // Dropping a `Child` neither waits nor kills.
        drop(child);
        Some(Proc(pid))
    }

    /// A process known only by its pid (tests of the exit handling).
    #[cfg(test)]
    pub fn with_pid(pid: i32) -> Option<Proc> {
        Pid::from_raw(pid).map(Proc)
    }

    pub fn pid(self) -> i32 {
        self.0.as_raw_nonzero().get()
    }

    /// Sends `sig`; the pid is still this process's, since its exit has not
    /// been reaped yet (the holder drops it when it has).
    pub fn signal(self, sig: Signal) {
        let _ = rustix::process::kill_process(self.0, sig);
    }
}

/// One reaped exit: the pid and its code (the exit status, or 128 plus the
/// signal that ended it, as shells report it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    pub code: i32,
}

/// The exit code of a wait status.
pub fn code(status: WaitStatus) -> i32 {
    status
        .exit_status()
        .or_else(|| status.terminating_signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Every child that has exited since the last call, without blocking.
pub fn reap() -> Vec<Exit> {
    let mut exits = Vec::new();
    while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
        exits.push(Exit {
            pid: pid.as_raw_nonzero().get(),
            code: code(status),
        });
    }
    exits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_collected_once_and_carry_their_codes() {
        let spawn = |script: &str| {
            let c = std::process::Command::new("/bin/sh")
                .args(["-c", script])
                .spawn()
                .expect("spawn");
            Proc::from_child(c).expect("pid")
        };
        let three = spawn("exit 3");
        let killed = spawn("kill -9 $$");
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.len() < 2 && std::time::Instant::now() < deadline {
            // The only test with children; keep ours only all the same.
            seen.extend(
                reap()
                    .into_iter()
                    .filter(|e| e.pid == three.pid() || e.pid == killed.pid()),
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        seen.sort_by_key(|e| e.pid != three.pid());
        assert_eq!(
            seen,
            [
                Exit {
                    pid: three.pid(),
                    code: 3
                },
                Exit {
                    pid: killed.pid(),
                    code: 137
                }
            ]
        );
    }
}
