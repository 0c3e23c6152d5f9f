//! The service table: every service's state, its restart policy with
//! backoff, and what `hullctl` asks of it.
//!
//! Owns: starting services when due, noticing exits, restart decisions
//! (`no` | `on-failure` | `always`, backoff 2^n s capped at 60 s), stops with
//! a grace period then SIGKILL of the whole cgroup, answering list / logs /
//! start / stop / restart, and stopping everything at shutdown. Must not
//! handle signals or power: that is `supervisor`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::control::{Reply, Verb};
use hull_contract::{Hull, Section};

use crate::launch;
use crate::reaper::{Exit, Proc};
use crate::supervisor::say;

/// How long a stopped service has between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(10);

/// What the operator wants of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Run,
    Stop,
    Restart,
}

struct Service {
    dir: PathBuf,
    settings: Hull,
    child: Option<Proc>,
    /// Exits with a non-zero status since the last manual (re)start.
    failures: u32,
    /// Starts after the first one.
    restarts: u32,
    last_exit: Option<i32>,
    restart_at: Option<Instant>,
    want: Want,
    kill_at: Option<Instant>,
    waiters: Vec<Sender<Reply>>,
    /// When the running child was started.
    started_at: Option<Instant>,
}

/// An onboot container's outcome: its exit status, or `None` when it could
/// not start or was killed at its timeout.
pub struct Finished {
    pub name: String,
    pub status: Option<i32>,
}

/// All services of the image, and the onboot containers' outcomes for `list`.
pub struct Table {
    services: BTreeMap<String, Service>,
    onboot: Vec<Finished>,
    /// When the services were loaded (healthy since then, if none).
    loaded_at: Instant,
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.min(6)).min(60))
}

impl Service {
    fn start(&mut self, name: &str) {
        self.restart_at = None;
        self.kill_at = None;
        say(format!("service {name}: starting"));
        self.child = launch::start(&self.dir, name);
        self.started_at = self.child.map(|_| Instant::now());
        if self.child.is_none() {
            self.retry_after_failed_start(name, Instant::now());
        }
        let reply = match &self.child {
            Some(c) => Reply::ok(format!("{name}: started (pid {})\n", c.pid())),
            None => Reply::error(format!("{name}: cannot start (see the console)\n")),
        };
        for w in self.waiters.drain(..) {
            let _ = w.send(Reply {
                ok: reply.ok,
                text: reply.text.clone(),
            });
        }
    }

    /// A start that failed (the shim could not even be spawned, e.g. EAGAIN
    /// while something fork-bombs) counts as a failure and is tried again
    /// after the backoff, unless the operator stopped the service.
    fn retry_after_failed_start(&mut self, name: &str, now: Instant) {
        if self.want == Want::Stop {
            return;
        }
        self.failures += 1;
        let wait = backoff(self.failures);
        say(format!(
            "service {name}: could not start; trying again in {} s",
            wait.as_secs()
        ));
        self.restart_at = Some(now + wait);
    }

    /// SIGTERM now, SIGKILL of the cgroup after the grace period.
    fn begin_stop(&mut self, name: &str, want: Want, now: Instant) {
        self.want = want;
        self.restart_at = None;
        if let Some(c) = self.child {
            say(format!("service {name}: stopping"));
            c.signal(rustix::process::Signal::TERM);
            self.kill_at.get_or_insert(now + GRACE);
        }
    }

    fn state(&self) -> &'static str {
        match (&self.child, self.want, self.restart_at) {
            (Some(_), Want::Run, _) => "running",
            (Some(_), _, _) => "stopping",
            (None, _, Some(_)) => "waiting",
            (None, Want::Stop, None) => "stopped",
            (None, _, None) => "exited",
        }
    }
}

impl Table {
    /// Every container under /containers/services, each due to start now.
    pub fn load(onboot: Vec<Finished>) -> Table {
        let now = Instant::now();
        let services = launch::list(Section::Services)
            .into_iter()
            .map(|(name, dir)| {
                let settings = launch::settings(&dir);
                let s = Service {
                    dir,
                    settings,
                    child: None,
                    failures: 0,
                    restarts: 0,
                    last_exit: None,
                    restart_at: Some(now),
                    want: Want::Run,
                    kill_at: None,
                    waiters: Vec::new(),
                    started_at: None,
                };
                (name, s)
            })
            .collect();
        Table {
            services,
            onboot,
            loaded_at: now,
        }
    }

    /// Since when the system has been healthy: every onboot container
    /// succeeded and every service runs (the latest start among them);
    /// `None` when it is not healthy now.
    pub fn healthy_since(&self) -> Option<Instant> {
        if self.onboot.iter().any(|f| f.status != Some(0)) {
            return None;
        }
        self.services
            .values()
            .map(|s| match (&s.child, s.want) {
                (Some(_), Want::Run) => s.started_at,
                _ => None,
            })
            .try_fold(self.loaded_at, |latest, t| t.map(|t| t.max(latest)))
    }

    pub fn names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// Starts what is due and enforces stop deadlines.
    pub fn tick(&mut self, now: Instant) {
        for (name, s) in self.services.iter_mut() {
            if s.child.is_none() && s.restart_at.is_some_and(|t| t <= now) {
                if s.last_exit.is_some() {
                    s.restarts += 1;
                }
                s.start(name);
            }
            if s.kill_at.is_some_and(|t| t <= now) {
                say(format!(
                    "service {name}: still running after {} s: killed",
                    GRACE.as_secs()
                ));
                launch::kill_all(&s.dir, name);
                if let Some(c) = s.child {
                    c.signal(rustix::process::Signal::KILL);
                }
                s.kill_at = None;
            }
        }
    }

    /// A reaped exit: when it is a service's, its restart policy applies.
    /// Returns whether it was one.
    pub fn exited(&mut self, exit: Exit, now: Instant) -> bool {
        let Some((name, s)) = self
            .services
            .iter_mut()
            .find(|(_, s)| s.child.is_some_and(|c| c.pid() == exit.pid))
        else {
            return false;
        };
        let code = exit.code;
        s.child = None;
        s.kill_at = None;
        s.last_exit = Some(code);
        match s.want {
            Want::Stop => {
                say(format!("service {name}: stopped (status {code})"));
                for w in s.waiters.drain(..) {
                    let _ = w.send(Reply::ok(format!("{name}: stopped (status {code})\n")));
                }
            }
            Want::Restart => {
                s.want = Want::Run;
                s.failures = 0;
                s.restart_at = Some(now);
            }
            Want::Run => {
                if code != 0 {
                    s.failures += 1;
                }
                if s.settings.restart_policy().restarts_after(code) {
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
        true
    }

    /// Answers a hullctl request now, or keeps the way back to answer once
    /// the service has stopped or started.
    pub fn handle(&mut self, verb: Verb, reply: Sender<Reply>, now: Instant) {
        let answer = match verb {
            Verb::List => Some(Reply::ok(self.list())),
            Verb::Logs(name) => Some(self.logs(&name)),
            Verb::Start(name) | Verb::Stop(name) | Verb::Restart(name)
                if !self.services.contains_key(&name) =>
            {
                Some(Reply::error(format!(
                    "no service {name:?} (services: {})\n",
                    self.names().join(" ")
                )))
            }
            Verb::Start(name) => self.services.get_mut(&name).and_then(|s| {
                if s.child.is_some() {
                    return Some(Reply::error(format!("{name}: already running\n")));
                }
                s.want = Want::Run;
                s.failures = 0;
                s.restart_at = Some(now);
                s.waiters.push(reply.clone());
                None
            }),
            Verb::Stop(name) => self.services.get_mut(&name).and_then(|s| {
                if s.child.is_none() {
                    s.want = Want::Stop;
                    s.restart_at = None;
                    return Some(Reply::ok(format!("{name}: not running\n")));
                }
                s.begin_stop(&name, Want::Stop, now);
                s.waiters.push(reply.clone());
                None
            }),
            Verb::Restart(name) => self.services.get_mut(&name).and_then(|s| {
                s.waiters.push(reply.clone());
                if s.child.is_some() {
                    s.begin_stop(&name, Want::Restart, now);
                } else {
                    s.want = Want::Run;
                    s.failures = 0;
                    s.restart_at = Some(now);
                }
                None
            }),
            Verb::Poweroff | Verb::Reboot | Verb::Slots | Verb::Hang | Verb::Update(_) => {
                Some(Reply::error("handled by the supervisor\n"))
            }
        };
        if let Some(a) = answer {
            let _ = reply.send(a);
        }
    }

    fn list(&self) -> String {
        let mut rows = vec![[
            "NAME".to_string(),
            "KIND".into(),
            "STATE".into(),
            "PID".into(),
            "RESTARTS".into(),
            "LAST-EXIT".into(),
        ]];
        for f in &self.onboot {
            rows.push([
                f.name.clone(),
                "onboot".into(),
                if f.status.is_some() {
                    "exited"
                } else {
                    "failed"
                }
                .into(),
                "-".into(),
                "-".into(),
                f.status.map_or("-".into(), |c| c.to_string()),
            ]);
        }
        for (name, s) in &self.services {
            rows.push([
                name.clone(),
                "service".into(),
                s.state().into(),
                s.child.as_ref().map_or("-".into(), |c| c.pid().to_string()),
                s.restarts.to_string(),
                s.last_exit.map_or("-".into(), |c| c.to_string()),
            ]);
        }
        let mut widths = [0usize; 6];
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.len());
            }
        }
        let mut out = String::new();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }

    /// The log of a service or onboot container (`writer` finds `000-writer`).
    fn logs(&self, name: &str) -> Reply {
        let known = self.services.contains_key(name) || self.onboot.iter().any(|f| f.name == name);
        let full = if known {
            Some(name.to_string())
        } else {
            self.onboot
                .iter()
                .find(|f| {
                    f.name
                        .split_once('-')
                        .is_some_and(|(_, short)| short == name)
                })
                .map(|f| f.name.clone())
        };
        let Some(full) = full else {
            return Reply::error(format!("no container {name:?}\n"));
        };
        let path = PathBuf::from(format!("/var/log/{full}.log"));
        let mut text = std::fs::read_to_string(path.with_extension("log.1")).unwrap_or_default();
        match std::fs::read_to_string(&path) {
            Ok(t) => text.push_str(&t),
            Err(e) if text.is_empty() => {
                return Reply::error(format!("{}: {e}\n", path.display()));
            }
            Err(_) => {}
        }
        Reply::ok(text)
    }

    /// Stops every service: SIGTERM, up to [`GRACE`] to exit, then SIGKILL.
    pub fn stop_all(&mut self) {
        let now = Instant::now();
        for (name, s) in self.services.iter_mut() {
            s.begin_stop(name, Want::Stop, now);
            for w in s.waiters.drain(..) {
                let _ = w.send(Reply::error("the system is shutting down\n"));
            }
        }
        let deadline = now + GRACE;
        while Instant::now() < deadline && self.any_running() {
            self.collect_exits();
            std::thread::sleep(Duration::from_millis(100));
        }
        for (name, s) in self.services.iter_mut() {
            if let Some(c) = s.child {
                launch::kill_all(&s.dir, name);
                c.signal(rustix::process::Signal::KILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && self.any_running() {
            self.collect_exits();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn any_running(&self) -> bool {
        self.services.values().any(|s| s.child.is_some())
    }

    fn collect_exits(&mut self) {
        let now = Instant::now();
        for e in crate::reaper::reap() {
            self.exited(e, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        Service {
            dir: PathBuf::from("/nonexistent"),
            settings: Hull::default(),
            child: None,
            failures: 0,
            restarts: 0,
            last_exit: None,
            restart_at: None,
            want: Want::Run,
            kill_at: None,
            waiters: Vec::new(),
            started_at: None,
        }
    }

    #[test]
    fn a_failed_start_is_tried_again_with_growing_backoff() {
        let now = Instant::now();
        let mut s = service();
        s.retry_after_failed_start("web", now);
        assert_eq!(s.restart_at, Some(now + Duration::from_secs(2)));
        s.retry_after_failed_start("web", now);
        assert_eq!(s.restart_at, Some(now + Duration::from_secs(4)));
        let mut stopped = service();
        stopped.want = Want::Stop;
        stopped.retry_after_failed_start("web", now);
        assert_eq!(stopped.restart_at, None);
    }

    #[test]
    fn each_reaped_exit_goes_to_the_service_with_that_pid() {
        let now = Instant::now();
        let mut table = Table {
            services: BTreeMap::new(),
            onboot: Vec::new(),
            loaded_at: now,
        };
        for (name, pid) in [("a", 4001), ("b", 4002)] {
            let mut s = service();
            s.child = Proc::with_pid(pid);
            table.services.insert(name.into(), s);
        }
        // An orphan's exit is nobody's.
        assert!(!table.exited(Exit { pid: 999, code: 0 }, now));
        assert!(table.exited(Exit { pid: 4002, code: 1 }, now));
        let (a, b) = (&table.services["a"], &table.services["b"]);
        assert_eq!(a.child.map(Proc::pid), Some(4001));
        assert_eq!(a.last_exit, None);
        // b failed: no process, its restart due after the backoff.
        assert_eq!(b.child, None);
        assert_eq!(b.last_exit, Some(1));
        assert_eq!(b.failures, 1);
        assert_eq!(b.restart_at, Some(now + Duration::from_secs(2)));
        assert_eq!(b.state(), "waiting");
        // The same pid again (reused later by someone else) is not b's.
        assert!(!table.exited(Exit { pid: 4002, code: 0 }, now));
    }

    #[test]
    fn healthy_since_the_last_start_while_everything_runs() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let mut table = Table {
            services: BTreeMap::new(),
            onboot: vec![Finished {
                name: "format".into(),
                status: Some(0),
            }],
            loaded_at: now,
        };
        assert_eq!(table.healthy_since(), Some(now));
        for (name, pid, at) in [("a", 4001, now), ("b", 4002, later)] {
            let mut s = service();
            s.child = Proc::with_pid(pid);
            s.started_at = Some(at);
            table.services.insert(name.into(), s);
        }
        assert_eq!(table.healthy_since(), Some(later));
        // A service that exited (and waits to restart) is not healthy.
        table.exited(Exit { pid: 4001, code: 1 }, later);
        assert_eq!(table.healthy_since(), None);
        // Nor is a system whose onboot container failed.
        table.services.clear();
        table.onboot[0].status = Some(1);
        assert_eq!(table.healthy_since(), None);
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let s: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
