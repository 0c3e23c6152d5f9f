//! PID1's life: early boot, onboot containers in order, services supervised,
//! onshutdown containers, and powering off.
//!
//! Owns: the container lifecycle (start through the shim, logs to the console
//! and /var/log/NAME.log, onboot timeouts, restart policies with backoff),
//! reaping every child, and reacting to signals: SIGTERM/SIGUSR2/SIGPWR power
//! off, SIGINT (ctrl-alt-del) reboots. Must never panic: every failure is
//! reported on the console and boot goes on.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{container, modules, mounts};

const LOG_MAX: u64 = 1 << 20;

fn say(msg: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "hull-init: {}", msg.as_ref());
}

/// A container's `runtime.json` "hull" section.
#[derive(Debug, Clone)]
struct Settings {
    restart: String,
    timeout: Duration,
}

fn settings(dir: &Path) -> Settings {
    let v: serde_json::Value = std::fs::read(dir.join("runtime.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    Settings {
        restart: v["hull"]["restart"]
            .as_str()
            .unwrap_or("on-failure")
            .to_string(),
        timeout: Duration::from_secs(v["hull"]["timeoutSeconds"].as_u64().unwrap_or(60)),
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
fn start(dir: &Path, name: &str) -> Option<Child> {
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
fn kill_all(dir: &Path, name: &str) {
    if let Ok(spec) = container::spec(dir) {
        let _ = std::fs::write(container::cgroup_dir(&spec, name).join("cgroup.kill"), "1");
    }
}

fn list(section: &str) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(format!("/containers/{section}"))
        .map(|d| {
            d.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs containers one after another, each killed after its timeout.
fn run_in_order(section: &str) {
    for (name, dir) in list(section) {
        let s = settings(&dir);
        say(format!("{section} {name}: starting"));
        let Some(mut child) = start(&dir, &name) else {
            continue;
        };
        let deadline = Instant::now() + s.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() >= deadline => {
                    say(format!(
                        "{section} {name}: still running after {} s: killed",
                        s.timeout.as_secs()
                    ));
                    kill_all(&dir, &name);
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    say(format!("{section} {name}: {e}"));
                    break None;
                }
            }
        };
        if let Some(st) = status {
            say(format!(
                "{section} {name}: exited with status {}",
                st.code().unwrap_or(-1)
            ));
        }
    }
}

struct Service {
    dir: PathBuf,
    settings: Settings,
    child: Option<Child>,
    failures: u32,
    restart_at: Option<Instant>,
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.min(6)).min(60))
}

/// PID1's main.
pub fn run() -> ! {
    for e in mounts::early() {
        say(format!("mount: {e}"));
    }
    let _ = std::fs::create_dir_all("/var/log");
    // /etc/resolv.conf points into /run, which is new: give binds of it a file.
    if !Path::new("/etc/resolv.conf").exists()
        && std::fs::symlink_metadata("/etc/resolv.conf").is_ok()
    {
        let _ = std::fs::write("/run/resolv.conf", b"");
    }
    let hostname = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "hull".into());
    if let Err(e) = rustix::system::sethostname(hostname.as_bytes()) {
        say(format!("hostname: {e}"));
    }
    if let Err(e) = crate::sys::loopback_up() {
        say(format!("loopback: {e}"));
    }
    // Ctrl-alt-del comes to us as SIGINT instead of an immediate reboot.
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    match modules::Index::load(Path::new(&format!("/lib/modules/{release}"))) {
        Ok(index) => {
            let (loaded, failed) = modules::coldplug(&index);
            say(format!(
                "modules: loaded {}",
                if loaded.is_empty() {
                    "none".to_string()
                } else {
                    loaded.join(" ")
                }
            ));
            for f in failed {
                say(format!("module {f}"));
            }
        }
        Err(e) => say(format!("modules: no index for {release}: {e}")),
    }

    let term = Arc::new(AtomicUsize::new(0));
    for (sig, code) in [
        (signal_hook::consts::SIGTERM, 1),
        (signal_hook::consts::SIGUSR2, 1),
        (rustix::process::Signal::POWER.as_raw(), 1),
        (signal_hook::consts::SIGINT, 2),
    ] {
        if let Err(e) = signal_hook::flag::register_usize(sig, term.clone(), code) {
            say(format!("signal {sig}: {e}"));
        }
    }

    power_button(term.clone());

    run_in_order("onboot");
    say("onboot done");

    let mut services: BTreeMap<String, Service> = list("services")
        .into_iter()
        .map(|(name, dir)| {
            let settings = settings(&dir);
            (
                name,
                Service {
                    dir,
                    settings,
                    child: None,
                    failures: 0,
                    restart_at: Some(Instant::now()),
                },
            )
        })
        .collect();
    let mut announced = false;
    loop {
        let now = Instant::now();
        for (name, s) in services.iter_mut() {
            if s.child.is_none() && s.restart_at.is_some_and(|t| t <= now) {
                s.restart_at = None;
                say(format!("service {name}: starting"));
                s.child = start(&s.dir, name);
            }
            if let Some(c) = s.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    let code = st.code().unwrap_or(-1);
                    s.child = None;
                    let again = match s.settings.restart.as_str() {
                        "always" => true,
                        "on-failure" => code != 0,
                        _ => false,
                    };
                    if code != 0 {
                        s.failures += 1;
                    }
                    if again {
                        let wait = backoff(s.failures);
                        say(format!(
                            "service {name}: exited with status {code}; restarting in {} s",
                            wait.as_secs()
                        ));
                        s.restart_at = Some(now + wait);
                    } else {
                        say(format!("service {name}: exited with status {code}"));
                    }
                }
            }
        }
        if !announced {
            say(format!(
                "services started: {}",
                services.keys().cloned().collect::<Vec<_>>().join(" ")
            ));
            announced = true;
        }
        // Reap orphans.
        while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
        match term.load(Ordering::SeqCst) {
            0 => std::thread::sleep(Duration::from_millis(100)),
            how => shutdown(&mut services, how == 2),
        }
    }
}

/// Watches the power button (ACPI on x86_64, as QEMU's `system_powerdown`
/// presses it) through evdev and asks for a poweroff when it is pressed.
fn power_button(term: Arc<AtomicUsize>) {
    // evdev has no modalias: load it by name (it may be built in).
    let _ = modules::load_named("evdev");
    let spawned = std::thread::Builder::new().spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let device = loop {
            let found = std::fs::read_dir("/sys/class/input").ok().and_then(|d| {
                d.flatten().find_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let label =
                        std::fs::read_to_string(e.path().join("device/name")).unwrap_or_default();
                    (name.starts_with("event") && label.contains("Power Button"))
                        .then(|| format!("/dev/input/{name}"))
                })
            });
            match found {
                Some(d) => break d,
                None if Instant::now() > deadline => return,
                None => std::thread::sleep(Duration::from_millis(500)),
            }
        };
        let Ok(mut f) = std::fs::File::open(&device) else {
            return;
        };
        say(format!("power button: {device}"));
        // struct input_event on 64-bit: 16 bytes of time, u16 type, u16 code, i32 value.
        let mut ev = [0u8; 24];
        while std::io::Read::read_exact(&mut f, &mut ev).is_ok() {
            let kind = u16::from_ne_bytes([ev[16], ev[17]]);
            let code = u16::from_ne_bytes([ev[18], ev[19]]);
            let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
            if kind == 1 && code == 116 && value == 1 {
                say("power button pressed");
                term.store(1, Ordering::SeqCst);
            }
        }
    });
    if let Err(e) = spawned {
        say(format!("power button: {e}"));
    }
}

fn shutdown(services: &mut BTreeMap<String, Service>, reboot: bool) -> ! {
    say(if reboot { "rebooting" } else { "powering off" });
    for (name, s) in services.iter_mut() {
        if let Some(c) = s.child.as_ref() {
            if let Some(p) = rustix::process::Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            }
            say(format!("service {name}: stopping"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && services.values_mut().any(|s| {
            s.child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
        })
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (name, s) in services.iter_mut() {
        if let Some(c) = s.child.as_mut() {
            kill_all(&s.dir, name);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    run_in_order("onshutdown");
    rustix::fs::sync();
    say("bye");
    let cmd = if reboot {
        rustix::system::RebootCommand::Restart
    } else {
        rustix::system::RebootCommand::PowerOff
    };
    loop {
        let _ = rustix::system::reboot(cmd);
        std::thread::sleep(Duration::from_secs(1));
    }
}
