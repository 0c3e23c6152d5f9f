//! A running `hull run qemu`: its console line by line as it comes, typing
//! on the console, QMP commands, and QEMU stopped when the test is done.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

pub struct Boot {
    child: Child,
    input: Option<ChildStdin>,
    lines: Receiver<(Instant, String)>,
    pub console: Vec<String>,
    pub qmp: PathBuf,
}

impl Boot {
    /// Boots `image` (a prefix, UKI, disk or ISO) for `arch` in `dir` and
    /// waits up to 400 s for HULL-READY; panics with the console, naming
    /// `what`, if it does not come. Returns the running boot.
    pub fn to_ready(dir: &Path, arch: &str, image: &Path, what: &str) -> Boot {
        let image = image.to_str().expect("utf-8 image path");
        let args = [
            "--arch",
            arch,
            "--expect",
            "HULL-READY",
            "--timeout",
            "400",
            image,
        ];
        let mut boot = Boot::start(dir, &args);
        assert!(
            boot.wait_for("HULL-READY", Duration::from_secs(400))
                .is_some(),
            "{arch}: {what} did not boot:\n{}",
            boot.text()
        );
        boot
    }

    /// Boots `image` for `arch` with `extra` arguments (`--expect` a marker
    /// that never comes, so QEMU runs until `marker` shows or `timeout`
    /// passes); whether `marker` came, and the console so far.
    pub fn until(
        dir: &Path,
        arch: &str,
        image: &Path,
        extra: &[&str],
        marker: &str,
        timeout: Duration,
    ) -> (bool, String) {
        let secs = timeout.as_secs().to_string();
        let mut args = vec!["--arch", arch, "--expect", "HULL-NEVER", "--timeout", &secs];
        args.extend_from_slice(extra);
        args.push(image.to_str().expect("utf-8 image path"));
        let mut boot = Boot::start(dir, &args);
        let came = boot.wait_for(marker, timeout).is_some();
        (came, boot.text())
    }

    /// Starts `hull run qemu --qmp SOCK ARGS` in `dir` (the socket in `dir`).
    pub fn start(dir: &Path, args: &[&str]) -> Boot {
        let qmp = dir.join(format!("qmp-{}.sock", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_hull"))
            .current_dir(dir)
            .args(["run", "qemu", "--qmp"])
            .arg(&qmp)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so QEMU goes with hull when the test ends.
            .process_group(0)
            .spawn()
            .expect("hull run qemu starts");
        let (tx, lines) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            });
        }
        let input = child.stdin.take();
        Boot {
            child,
            input,
            lines,
            console: Vec::new(),
            qmp,
        }
    }

    /// Waits for a console line containing `marker`; when it came.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        if self.console.iter().any(|l| l.contains(marker)) {
            return Some(Instant::now());
        }
        while let Ok((at, line)) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let hit = line.contains(marker);
            self.console.push(line);
            if hit {
                return Some(at);
            }
        }
        None
    }

    /// Types `text` and a newline on the serial console, again every few
    /// seconds until `marker` shows (a shell may not be reading yet).
    pub fn type_until(&mut self, text: &str, marker: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(i) = self.input.as_mut() {
                let _ = i.write_all(format!("{text}\n").as_bytes());
                let _ = i.flush();
            }
            if self.wait_for(marker, Duration::from_secs(5)).is_some() {
                return true;
            }
        }
        false
    }

    /// Sends one QMP command (e.g. `system_powerdown`, `quit`).
    pub fn qmp(&self, command: &str) {
        let mut s = std::os::unix::net::UnixStream::connect(&self.qmp).expect("QMP socket");
        let mut replies = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        replies.read_line(&mut line).expect("QMP greeting");
        s.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
            .expect("qmp");
        line.clear();
        replies.read_line(&mut line).expect("qmp reply");
        s.write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())
            .expect("qmp command");
        line.clear();
        let _ = replies.read_line(&mut line);
    }

    /// Waits for hull to exit; its status and the whole console.
    pub fn finish(mut self, timeout: Duration) -> (Option<ExitStatus>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => break None,
            }
        };
        std::thread::sleep(Duration::from_millis(200));
        while let Ok((_, l)) = self.lines.try_recv() {
            self.console.push(l);
        }
        (status, self.text())
    }

    pub fn text(&self) -> String {
        self.console.join("\n")
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (for --publish).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Builds the packages in `dirs` (paths in the checkout) into `cache`;
/// their references, in the same order.
pub fn package_refs(cache: &Path, dirs: &[&str]) -> Vec<String> {
    let repo = super::repo();
    let dirs: Vec<PathBuf> = dirs.iter().map(|d| repo.join(d)).collect();
    let args: Vec<&str> = ["pkg", "build"]
        .into_iter()
        .chain(dirs.iter().map(|d| d.to_str().expect("utf-8")))
        .collect();
    let out = super::hull_cached(cache, &repo, &args).expect_code(0);
    out.stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .map(str::to_string)
        .collect()
}

/// What one boot showed: `hull run qemu`'s exit code and the console.
pub struct Console {
    pub code: Option<i32>,
    pub text: String,
}

/// In `dir`: `hull build --pull never` of `NAME.yml` for `arch` into
/// `out-ARCH`, then `hull run qemu` of it (with `extra` options) until a
/// console line holds `marker`, for at most `timeout` seconds.
pub fn build_and_boot(
    cache: &Path,
    dir: &Path,
    name: &str,
    arch: &str,
    marker: &str,
    timeout: u32,
    extra: &[&str],
) -> Console {
    build_with_and_boot(cache, dir, (name, &[]), arch, marker, timeout, extra)
}

/// [`build_and_boot`] with more `hull build` options.
pub fn build_with_and_boot(
    cache: &Path,
    dir: &Path,
    (name, build_extra): (&str, &[&str]),
    arch: &str,
    marker: &str,
    timeout: u32,
    extra: &[&str],
) -> Console {
    let out = dir.join(format!("out-{arch}"));
    let manifest = format!("{name}.yml");
    let mut build = vec![
        "build",
        "--pull",
        "never",
        "--arch",
        arch,
        "--dir",
        out.to_str().expect("utf-8"),
    ];
    build.extend_from_slice(build_extra);
    build.push(&manifest);
    super::hull_cached(cache, dir, &build).expect_code(0);
    let prefix = out.join(name);
    let timeout = timeout.to_string();
    let mut args = vec![
        "run",
        "qemu",
        "--arch",
        arch,
        "--expect",
        marker,
        "--timeout",
        &timeout,
    ];
    args.extend_from_slice(extra);
    args.push(prefix.to_str().expect("utf-8"));
    let run = super::hull_cached(cache, dir, &args);
    Console {
        code: run.code,
        text: format!("{}{}", run.stdout, run.stderr),
    }
}
