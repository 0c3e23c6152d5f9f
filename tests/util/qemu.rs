//! Booting a kernel and initrd under QEMU (TCG) and reading the serial console.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Whether `marker` is on the console with its line complete.
fn has_line(console: &[u8], marker: &str) -> bool {
    let text = String::from_utf8_lossy(console);
    text.find(marker).is_some_and(|i| text[i..].contains('\n'))
}

/// Boots and waits for a line with `marker` on the console. Ok(console) when it shows up;
/// Err(console) on timeout or exit without it.
pub fn boot(
    arch: &str,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    marker: &str,
    timeout: Duration,
) -> Result<String, String> {
    let mut cmd = match arch {
        "amd64" => {
            let mut c = Command::new("qemu-system-x86_64");
            c.args(["-M", "q35", "-cpu", "max"]);
            c
        }
        _ => {
            let mut c = Command::new("qemu-system-aarch64");
            c.args(["-M", "virt", "-cpu", "max"]);
            c
        }
    };
    cmd.args([
        "-m",
        "512",
        "-smp",
        "1",
        "-nographic",
        "-no-reboot",
        "-accel",
        "tcg",
    ])
    .arg("-kernel")
    .arg(kernel)
    .arg("-initrd")
    .arg(initrd)
    .args(["-append", cmdline])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Err(format!("cannot start QEMU for {arch}: {e}")),
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut out = child.stdout.take();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Some(o) = out.as_mut() {
            match o.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut console = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(chunk) => {
                console.extend_from_slice(&chunk);
                if has_line(&console, marker) {
                    break true;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(_)) = child.try_wait() {
                    break has_line(&console, marker);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break has_line(&console, marker),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&console).into_owned();
    if found {
        Ok(text)
    } else {
        Err(text)
    }
}
