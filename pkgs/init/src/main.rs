//! `hull-init`: the PID1 of Hull images.
//!
//! This is the foundation stage: a static binary for x86_64 and aarch64 that
//! reports what it is. Mounting, module loading, the container lifecycle and the
//! sandbox come with the hull-init issue; until then an image booted with this
//! binary stops after the banner (the kernel reports that init exited).

use std::io::Write;

/// The architecture this binary was compiled for.
const ARCH: &str = std::env::consts::ARCH;

fn main() {
    let mut out = std::io::stdout().lock();
    // Nothing to do if the console is gone: PID1 must not panic on a write error.
    let _ = writeln!(
        out,
        "hull-init {} ({ARCH}, pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
}
