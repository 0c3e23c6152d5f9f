//! Helpers shared by the integration tests: run the real `hull` binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The result of one `hull` run.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `hull ARGS` in `dir` with `env` added.
pub fn hull_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hull"));
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("the hull binary runs"))
}

/// Runs `hull ARGS` in `dir` with `env` added, watching its memory: the
/// run and its peak resident set (VmHWM, read every few milliseconds until
/// it exits) in KiB.
pub fn hull_peak(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Run, u64) {
    use std::io::Read;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hull"));
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the hull binary runs");
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let read = |s: &mut Option<std::process::ChildStdout>| {
        let mut text = String::new();
        if let Some(s) = s.as_mut() {
            let _ = s.read_to_string(&mut text);
        }
        text
    };
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut text);
        }
        text
    });
    let status_path = format!("/proc/{}/status", child.id());
    let watcher = std::thread::spawn(move || {
        let mut peak = 0u64;
        while let Ok(status) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak = peak.max(kb);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        peak
    });
    let stdout = read(&mut out);
    let status = child.wait().expect("wait for hull");
    let run = Run {
        code: status.code(),
        stdout,
        stderr: err_reader.join().unwrap_or_default(),
    };
    (run, watcher.join().unwrap_or(0))
}

/// The checkout's root.
pub fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `hull --cache CACHE ARGS` in `dir`.
pub fn hull_cached(cache: &Path, dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--cache", cache.to_str().expect("utf-8 cache path")];
    all.extend_from_slice(args);
    hull_in(dir, &all, &[])
}

/// The cache the tests built on examples/ share: their packages are built
/// once per target directory (package tags come from content, so an entry
/// can never be stale).
pub fn examples_cache() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("examples-cache")
}

/// `hull build --arch ARCH --dir OUT EXTRA... examples/NAME.yml` in the
/// checkout, with the shared examples cache and `env` added.
pub fn build_example(
    name: &str,
    arch: &str,
    out: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let cache = examples_cache();
    let manifest = format!("examples/{name}.yml");
    let mut args = vec![
        "--cache",
        cache.to_str().expect("utf-8 cache path"),
        "build",
        "--arch",
        arch,
        "--dir",
        out.to_str().expect("utf-8 output path"),
    ];
    args.extend_from_slice(extra);
    args.push(&manifest);
    hull_in(&repo(), &args, env)
}

/// Runs `hull ARGS` in the crate root.
pub fn hull(args: &[&str]) -> Run {
    hull_in(Path::new(env!("CARGO_MANIFEST_DIR")), args, &[])
}

/// Runs `hull ARGS` with `input` on standard input.
pub fn hull_stdin(args: &[&str], input: &str, dir: &Path) -> Run {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hull"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hull binary starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("stdin takes the input");
    Run::from(child.wait_with_output().expect("the hull binary runs"))
}

pub mod boot;
pub mod proxy;
pub mod registry;

/// Runs an independent tool (sgdisk, xorriso, fsck.vfat, ...): whether it
/// succeeded, and its stdout and stderr together.
pub fn tool(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Fails unless the output directory `out` is empty or absent.
pub fn nothing_written(out: &Path, what: &str) {
    let left: Vec<_> = std::fs::read_dir(out)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{what}: nothing written, found {left:?}");
}
