//! Starting one container process and collecting what it prints.
//!
//! Owns: running `hull-init shim DIR NAME` for a container directory (never
//! waiting for it: that is `reaper`), reading
//! its `runtime.json` "hull" settings, copying its output to the console and
//! /var/log/NAME.log (capped, one old file kept), and killing a container's
//! whole cgroup. Must not decide when containers run: the supervisor and the
//! service table do.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use hull_contract::{layout, Hull, Section};

use crate::control::Grants;
use crate::reaper::Proc;
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

/// Longest line kept whole; a longer one is passed on in pieces of this
/// size, so a service printing without newlines costs PID1 no more memory.
pub const LINE_MAX: usize = 16 << 10;

/// A container's log file, rotated at [`LOG_MAX`] (one old file kept); one
/// per container, shared by its stdout and stderr pumps so that only one
/// writer rotates it.
pub struct Log {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Log {
    pub fn open(path: PathBuf) -> Log {
        let file = Log::append(&path);
        Log { path, file }
    }

    fn append(path: &Path) -> Option<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    }

    /// Appends bytes of a line, and its newline when `end`; rotates when
    /// the file has grown past [`LOG_MAX`].
    pub fn write(&mut self, bytes: &[u8], end: bool) {
        let Some(f) = self.file.as_mut() else { return };
        let _ = f.write_all(bytes);
        if end {
            let _ = f.write_all(b"\n");
        }
        if f.metadata().map(|m| m.len()).unwrap_or(0) > LOG_MAX {
            let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
            self.file = Log::append(&self.path);
        }
    }
}

/// What one read of a capped line gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// The rest of a line, up to its newline (not kept).
    End,
    /// `max` bytes of a line that goes on.
    Piece,
    /// The stream is over.
    Eof,
}

/// Reads at most `max` bytes of a line into `buf` (without its newline).
pub fn read_line_capped(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Chunk> {
    buf.clear();
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(if buf.is_empty() {
                Chunk::Eof
            } else {
                Chunk::End
            });
        }
        let room = max - buf.len();
        let take = avail.len().min(room);
        match avail[..take].iter().position(|&b| b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&avail[..i]);
                r.consume(i + 1);
                return Ok(Chunk::End);
            }
            None => {
                buf.extend_from_slice(&avail[..take]);
                r.consume(take);
                if buf.len() >= max {
                    return Ok(Chunk::Piece);
                }
            }
        }
    }
}

/// Copies a container's output to the console (prefixed) and its log, as
/// bytes: a line that is not UTF-8 is shown with replacement characters,
/// never the end of the copying (which would leave the service writing to a
/// closed pipe). A line longer than [`LINE_MAX`] goes whole to the log, in
/// pieces, and to the console only its first piece and its length, so a
/// service printing without newlines floods neither PID1's memory nor the
/// console.
fn pump(name: String, stream: impl std::io::Read + Send + 'static, log: Arc<Mutex<Log>>) {
    // A thread that cannot start loses this container's log, not the boot.
    let _ = std::thread::Builder::new().spawn(move || {
        let mut r = BufReader::new(stream);
        let mut buf = Vec::with_capacity(1024);
        // Bytes of the current line so far, when it is longer than a piece.
        let mut long: usize = 0;
        loop {
            let chunk = match read_line_capped(&mut r, &mut buf, LINE_MAX) {
                Ok(Chunk::Eof) | Err(_) => break,
                Ok(c) => c,
            };
            if let Ok(mut log) = log.lock() {
                log.write(&buf, chunk == Chunk::End);
            }
            let console = match (chunk, long) {
                (Chunk::End, 0) => Some(String::from_utf8_lossy(&buf).into_owned()),
                (Chunk::Piece, 0) => Some(format!("{} [...]", String::from_utf8_lossy(&buf))),
                (Chunk::End, n) => Some(format!(
                    "[...] (a line of {} bytes, cut to {LINE_MAX} here)",
                    n + buf.len()
                )),
                _ => None,
            };
            long = if chunk == Chunk::Piece {
                long + buf.len()
            } else {
                0
            };
            if let Some(line) = console {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "[{name}] {line}");
            }
        }
    });
}

/// Starts the container in `dir` as `name`; its exit comes through
/// `reaper::reap`.
pub fn start(dir: &Path, name: &str) -> Option<Proc> {
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
            let log = Arc::new(Mutex::new(Log::open(PathBuf::from(format!(
                "/var/log/{name}.log"
            )))));
            if let Some(o) = c.stdout.take() {
                pump(name.to_string(), o, log.clone());
            }
            if let Some(e) = c.stderr.take() {
                pump(name.to_string(), e, log);
            }
            Proc::from_child(c)
        }
        Err(e) => {
            say(format!("{name}: cannot start: {e}"));
            None
        }
    }
}

/// Kills every process of a container (its cgroup); says so when it cannot.
pub fn kill_all(dir: &Path, name: &str) {
    let killed = container::spec(dir)
        .and_then(|spec| container::cgroup_dir(&spec, name))
        .map_err(|e| e.to_string())
        .and_then(|cgroup| {
            let file = cgroup.join("cgroup.kill");
            std::fs::write(&file, "1").map_err(|e| format!("write 1 to {}: {e}", file.display()))
        });
    if let Err(e) = killed {
        say(format!("{name}: cannot kill its processes: {e}"));
    }
}

/// Every container's cgroup (under the cgroup root) and its control
/// access, from its config.json and runtime.json, for the control socket.
pub fn control_grants() -> Grants {
    let mut known = Vec::new();
    for section in Section::ALL {
        for (name, dir) in list(section) {
            let Ok(spec) = container::spec(&dir) else {
                continue;
            };
            let Ok(path) = container::cgroup_dir(&spec, &name) else {
                continue;
            };
            let rel = path
                .strip_prefix(layout::CGROUP_ROOT)
                .map(|p| format!("/{}", p.display()))
                .unwrap_or_default();
            let access = runtime::load(&dir)
                .map(|r| r.hull.control)
                .unwrap_or_default();
            known.push((rel, access));
        }
    }
    Grants(known)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut r = BufReader::with_capacity(7, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_line_capped(&mut r, &mut buf, max).expect("reads") {
                Chunk::Eof => return out,
                c => out.push((buf.clone(), c == Chunk::End)),
            }
        }
    }

    #[test]
    fn lines_are_bytes_cut_at_the_cap_and_invalid_utf8_goes_on() {
        let mut input = b"\xffabc\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 25));
        input.extend_from_slice(b"\nend");
        let got = lines(&input, 10);
        assert_eq!(got[0], (b"\xffabc".to_vec(), true));
        assert_eq!(
            got[1..4],
            [
                (vec![b'x'; 10], false),
                (vec![b'x'; 10], false),
                (vec![b'x'; 5], true)
            ]
        );
        assert_eq!(got[4], (b"end".to_vec(), true));
        assert_eq!(got.len(), 5);
        assert_eq!(String::from_utf8_lossy(&got[0].0), "\u{fffd}abc");
    }

    #[test]
    fn one_log_rotates_once_past_the_cap() {
        let dir = std::env::temp_dir().join(format!("hull-init-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("svc.log");
        let mut log = Log::open(path.clone());
        let line = "y".repeat(1023);
        for _ in 0..(LOG_MAX / 1024 + 2) {
            log.write(line.as_bytes(), true);
        }
        let old = std::fs::metadata(dir.join("svc.log.1"))
            .expect("rotated")
            .len();
        let new = std::fs::metadata(&path).expect("current").len();
        assert!(old > LOG_MAX && new < LOG_MAX, "{old} {new}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
