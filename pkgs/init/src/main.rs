//! `hull-init`: the PID1 of Hull images, and its container runtime.
//!
//! One static binary, four roles: `hullctl` when called by that name (the
//! client of the running PID1), and by its arguments PID1 (no arguments,
//! pid 1), `shim DIR NAME` (a container's namespaces and cgroup), and
//! `exec DIR NAME` (the container's root, identity and program). It never
//! panics on purpose: every failure is reported and the system goes on.

mod bootcount;
mod container;
mod control;
mod devfilter;
mod diskroot;
mod dm;
mod identity;
mod inroot;
mod launch;
mod masked;
mod modules;
mod mounts;
mod netlink;
mod newroot;
mod reaper;
mod runtime;
mod seccomp;
mod services;
mod sizes;
mod supervisor;
mod sys;
mod watchdog;

use std::io::Write;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let called = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    if called.as_deref() == Some("hullctl") {
        std::process::exit(control::client(args.get(1..).unwrap_or_default()));
    }
    match args.get(1).map(String::as_str) {
        Some("shim") if args.len() == 4 => {
            let code = match container::shim(Path::new(&args[2]), &args[3]) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("hull-init: {}: {e}", args[3]);
                    125
                }
            };
            std::process::exit(code);
        }
        Some("exec") if args.len() == 4 => {
            if let Err(e) = container::exec(Path::new(&args[2]), &args[3]) {
                eprintln!("hull-init: {}: {e}", args[3]);
            }
            std::process::exit(126);
        }
        _ if std::process::id() == 1 => {
            let started = supervisor::boot_ms();
            if std::env::var_os(newroot::STARTED).is_none() {
                // Single-threaded still: nobody else reads the environment.
                std::env::set_var(newroot::STARTED, started.to_string());
            }
            if diskroot::wanted() {
                let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
                if let Err(e) = diskroot::switch(&args, started) {
                    // No root may be used unchecked: stop here (the kernel
                    // panics when PID1 exits; `panic=N` reboots).
                    let _ = writeln!(std::io::stdout(), "hull-init: root: {e}: cannot boot");
                    std::process::exit(1);
                }
            }
            if newroot::needed() {
                let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
                let e = newroot::switch(&args, started);
                let _ = writeln!(
                    std::io::stdout(),
                    "hull-init: new root: {e}; going on in the initramfs"
                );
            }
            supervisor::run()
        }
        _ => {
            let mut out = std::io::stdout().lock();
            // Nothing to do if the console is gone: PID1 must not panic on a write error.
            let _ = writeln!(
                out,
                "hull-init {} ({}, pid {}): the PID1 of Hull images; run by the kernel as /init",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH,
                std::process::id()
            );
        }
    }
}
