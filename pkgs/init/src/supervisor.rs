//! PID1's life: early boot, onboot containers in order, services supervised,
//! onshutdown containers, and powering off.
//!
//! Owns: the order of things (early mounts, hostname, loopback, module
//! coldplug, onboot with timeouts, services, hullctl requests, shutdown),
//! handing reaped exits on, and reacting to signals: SIGTERM/SIGUSR2/SIGPWR and the
//! power button power off, SIGINT (ctrl-alt-del) reboots. Every exit is
//! reaped in one place (`reaper`) and handed on by pid. Must never panic:
//! every failure is reported on the console and boot goes on. Services' own
//! states live in `services`; starting a container in `launch`.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hull_contract::Section;

use crate::control::{self, Reply, Verb};
use crate::launch;
use crate::reaper::{self, Proc};
use crate::services::{Finished, Table};
use crate::watchdog::Watchdog;
use crate::{modules, mounts};

/// Prints a line of PID1's own on the console.
pub fn say(msg: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "hull-init: {}", msg.as_ref());
}

/// Waits for `proc` to exit, reaping orphans meanwhile; after `timeout`
/// kills its cgroup and it. `None` when it had to be killed.
fn wait_or_kill(proc: Proc, timeout: Duration, kill: impl Fn()) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    let mut killed = false;
    loop {
        if let Some(e) = reaper::reap().into_iter().find(|e| e.pid == proc.pid()) {
            return (!killed).then_some(e.code);
        }
        if !killed && Instant::now() >= deadline {
            kill();
            proc.signal(rustix::process::Signal::KILL);
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs containers one after another, each killed after its timeout.
fn run_in_order(section: Section) -> Vec<Finished> {
    let mut done = Vec::new();
    for (name, dir) in launch::list(section) {
        let s = launch::settings(&dir);
        say(format!("{section} {name}: starting"));
        let Some(proc) = launch::start(&dir, &name) else {
            done.push(Finished { name, status: None });
            continue;
        };
        let status = wait_or_kill(proc, s.timeout(), || {
            say(format!(
                "{section} {name}: still running after {} s: killed",
                s.timeout().as_secs()
            ));
            launch::kill_all(&dir, &name);
        });
        if let Some(code) = status {
            say(format!("{section} {name}: exited with status {code}"));
        }
        done.push(Finished { name, status });
    }
    done
}

/// Early boot: mounts, /var/log, a file for binds of /etc/resolv.conf,
/// hostname, loopback, ctrl-alt-del as a signal, module coldplug.
fn early_boot() {
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
    // The same index serves coldplug now and modules by name later.
    match modules::running() {
        Some(index) => {
            let (loaded, failed) = modules::coldplug(index);
            let loaded = if loaded.is_empty() {
                "none".to_string()
            } else {
                loaded.join(" ")
            };
            say(format!("modules: loaded {loaded}"));
            for f in failed {
                say(format!("module {f}"));
            }
        }
        None => say("modules: no index for the running kernel in /lib/modules"),
    }
}

/// What a signal or the power button asks: 0 nothing yet, 1 power off, 2
/// reboot.
fn shutdown_requests() -> Arc<AtomicUsize> {
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
    term
}

/// One hullctl request: power verbs set `term`, the rest go to the table.
fn answer(
    req: control::Request,
    services: &mut Table,
    term: &AtomicUsize,
    watchdog: &mut Option<Watchdog>,
) {
    match req.verb {
        Verb::Poweroff | Verb::Reboot => {
            let reboot = req.verb == Verb::Reboot;
            let _ = req.reply.send(Reply::ok(if reboot {
                "rebooting\n"
            } else {
                "powering off\n"
            }));
            term.store(if reboot { 2 } else { 1 }, Ordering::SeqCst);
        }
        Verb::Slots => {
            let _ = req.reply.send(crate::bootcount::report());
        }
        Verb::Update(reference) => {
            let _ = req.reply.send(crate::bootcount::request_update(&reference));
        }
        Verb::Hang => {
            let reply = match watchdog.as_mut() {
                Some(w) => {
                    w.starved = true;
                    say("watchdog: no longer fed (hullctl debug hang)");
                    Reply::ok("the watchdog is no longer fed: the machine resets at its timeout\n")
                }
                None => Reply::error("no watchdog is armed\n"),
            };
            let _ = req.reply.send(reply);
        }
        verb => services.handle(verb, req.reply, Instant::now()),
    }
}

/// PID1's main.
pub fn run() -> ! {
    early_boot();
    let term = shutdown_requests();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut tried = crate::bootcount::start(&cmdline, Instant::now());
    let mut watchdog = Watchdog::open(&cmdline);
    let onboot = run_in_order(Section::Onboot);
    say("onboot done");
    let requests = match control::serve(launch::control_grants()) {
        Ok(rx) => Some(rx),
        Err(e) => {
            say(format!("hullctl: {e}"));
            None
        }
    };
    let mut services = Table::load(onboot);
    services.tick(Instant::now());
    say(format!("services started: {}", services.names().join(" ")));
    say(timing());
    loop {
        while let Some(req) = requests.as_ref().and_then(|rx| rx.try_recv().ok()) {
            answer(req, &mut services, &term, &mut watchdog);
        }
        // Every exit: a service's goes to the table, an orphan's is done.
        let now = Instant::now();
        for exit in reaper::reap() {
            services.exited(exit, now);
        }
        if let Some(t) = tried.as_mut() {
            if t.tick(services.healthy_since(), now) == crate::bootcount::Action::Reboot {
                term.store(2, Ordering::SeqCst);
            }
        }
        if let Some(w) = watchdog.as_mut() {
            w.feed(now);
        }
        match term.load(Ordering::SeqCst) {
            0 => std::thread::sleep(Duration::from_millis(100)),
            how => shutdown(&mut services, how == 2, watchdog.take()),
        }
        services.tick(Instant::now());
    }
}

/// Milliseconds since boot on CLOCK_BOOTTIME.
pub fn boot_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000_000
}

/// "boot: init started at X ms, services at Y ms (Z ms in init), RSS N kB":
/// what the boot benchmark reads from the console.
fn timing() -> String {
    let began = std::env::var(crate::newroot::STARTED)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let now = boot_ms();
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let in_use = memory_in_use_kib().map_or_else(|| "?".into(), |k| k.to_string());
    format!(
        "boot: init started at {began} ms, last service started at {now} ms ({} ms in init), RSS {rss}, memory in use {in_use} kB",
        now.saturating_sub(began)
    )
}

/// Memory the system holds and cannot give back (`MemTotal` less
/// `MemAvailable`): an initramfs root counts in full, a root on disk only
/// for what it keeps in memory.
fn memory_in_use_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(field("MemTotal:")?.saturating_sub(field("MemAvailable:")?))
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

fn shutdown(services: &mut Table, reboot: bool, watchdog: Option<Watchdog>) -> ! {
    say(if reboot { "rebooting" } else { "powering off" });
    if let Some(w) = watchdog {
        w.disarm();
    }
    services.stop_all();
    run_in_order(Section::Onshutdown);
    rustix::fs::sync();
    for e in mounts::unmount_disks() {
        say(format!("shutdown: {e}"));
    }
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
