//! Starting one container process and collecting what it prints.
//!
//! Owns: running `hull-init shim DIR NAME` for a container directory, reading
//! its `runtime.json` "hull" settings, copying its output to the console and
//! /var/log/NAME.log (capped, one old file kept), and killing a container's
//! whole cgroup. Must not decide when containers run: the supervisor and the
//! service table do.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hull_contract::{layout, Hull, Section};

use crate::supervisor::say;
use crate::{container, runtime};

/// Size at which a log file is rotated.
pub const LOG_MAX: u64 = 1 << 20;

/// The "hull" section of the container in `dir`'s `runtime.json`; when the
/// file cannot be read, the error is reported and defaults are used (the
/// shim then refuses to start the container, naming the file).
pub fn settings(dir: &Path) -> Hull {
    match runtime::load(dir) {
        Ok(r) => r.hull,
        Err(e) => {
            say(e);
            Hull::default()
        }
    }
}

/// Copies a container's output to the console (prefixed) and its log file.
fn pump(name: String, stream: impl std::io::Read + Send + 'static) {
    // A thread that cannot start loses this container's log, not the boot.
    let _ = std::thread::Builder::new().spawn(move || {
        let log_path = PathBuf::from(format!("/var/log/{name}.log"));
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .ok();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "[{name}] {line}");
            }
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{line}");
                if f.metadata().map(|m| m.len()).unwrap_or(0) > LOG_MAX {
                    let _ = std::fs::rename(&log_path, log_path.with_extension("log.1"));
                    log = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log_path)
                        .ok();
                }
            }
        }
    });
}

/// Starts the container in `dir` as `name`.
pub fn start(dir: &Path, name: &str) -> Option<Child> {
    let child = Command::new("/proc/self/exe")
        .arg("shim")
        .arg(dir)
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    match child {
        Ok(mut c) => {
            if let Some(o) = c.stdout.take() {
                pump(name.to_string(), o);
            }
            if let Some(e) = c.stderr.take() {
                pump(name.to_string(), e);
            }
            Some(c)
        }
        Err(e) => {
            say(format!("{name}: cannot start: {e}"));
            None
        }
    }
}

/// Kills every process of a container (its cgroup).
pub fn kill_all(dir: &Path, name: &str) {
    if let Ok(spec) = container::spec(dir) {
        let _ = std::fs::write(container::cgroup_dir(&spec, name).join("cgroup.kill"), "1");
    }
}

/// The containers of a section, sorted by name.
pub fn list(section: Section) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(layout::absolute(&section.dir()))
        .map(|d| {
            d.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
