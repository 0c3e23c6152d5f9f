//! The hardware watchdog: armed at boot when asked, fed from the
//! supervisor's loop while PID1 is alive, disarmed on a clean shutdown.
//!
//! `hull.watchdog=DEVICE[,SECONDS]` on the kernel command line (which the
//! builder writes from the manifest's `watchdog:`) asks for it: e.g.
//! `/dev/watchdog0,20`
//! (default timeout [`TIMEOUT`]). Opening the device arms it; PID1 feeds it
//! every quarter of the timeout; if PID1 hangs (or `hullctl debug hang`
//! says to act so) the machine resets when the timeout passes. A poweroff
//! or reboot by PID1 disarms it with the magic close (`V`), so a clean
//! shutdown is never cut short. The drivers come by coldplug (i6300esb,
//! iTCO_wdt); Debian's cloud kernels lack both, use softdog there
//! (`modules` loads it for `DEVICE` `softdog`) or the generic kernels.
//!
//! Owns: the watchdog device. Must not decide when the system is healthy
//! (that is `bootcount`): a watchdog catches a hung PID1 or kernel, not a
//! failing service.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::supervisor::say;

/// The timeout asked for when the command line gives none.
pub const TIMEOUT: u32 = 30;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Settings {
    pub device: String,
    /// Seconds.
    pub timeout: u32,
    /// `softdog`: the kernel's software watchdog, loaded by name.
    pub softdog: bool,
}

/// The watchdog the command line asks for, if any.
pub fn settings(cmdline: &str) -> Option<Settings> {
    let asked = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("hull.watchdog="))?;
    let (device, secs) = match asked.split_once(',') {
        Some((d, s)) => (d, s.parse().ok()?),
        None => (asked, TIMEOUT),
    };
    let softdog = device == "softdog";
    Some(Settings {
        device: if softdog { "/dev/watchdog0" } else { device }.to_string(),
        timeout: secs.clamp(1, 3600),
        softdog,
    })
}

/// An armed watchdog.
pub struct Watchdog {
    file: std::fs::File,
    every: Duration,
    fed: Instant,
    /// Set by `hullctl debug hang`: PID1 stops feeding, as if hung.
    pub starved: bool,
}

impl Watchdog {
    /// Opens and arms the watchdog the command line asks for; `None` when
    /// it asks for none. A watchdog asked for and missing is reported on
    /// the console (the boot goes on: there is nothing to fall back to).
    pub fn open(cmdline: &str) -> Option<Watchdog> {
        let Settings {
            device,
            timeout: secs,
            softdog,
        } = settings(cmdline)?;
        if softdog {
            crate::modules::load_named("softdog");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let file = loop {
            match std::fs::OpenOptions::new().write(true).open(&device) {
                Ok(f) => break f,
                Err(e) if Instant::now() >= deadline => {
                    say(format!("watchdog: {device}: {e}: NOT ARMED"));
                    return None;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        let set = match crate::sys::watchdog_set_timeout(file.as_fd(), secs) {
            Ok(set) => set,
            Err(e) => {
                say(format!(
                    "watchdog: {device}: {e}: keeping the driver's timeout"
                ));
                secs
            }
        };
        say(format!("watchdog: {device} armed, {set} s"));
        Some(Watchdog {
            file,
            every: Duration::from_secs(u64::from(set)) / 4,
            fed: Instant::now(),
            starved: false,
        })
    }

    /// Feeds it when a quarter of the timeout has passed since the last time.
    pub fn feed(&mut self, now: Instant) {
        if self.starved || now.saturating_duration_since(self.fed) < self.every {
            return;
        }
        if let Err(e) = self.file.write_all(b"k") {
            say(format!("watchdog: feeding: {e}"));
        }
        self.fed = now;
    }

    /// Disarms it (magic close) before a clean poweroff or reboot.
    pub fn disarm(mut self) {
        match self.file.write_all(b"V") {
            Ok(()) => say("watchdog: disarmed"),
            Err(e) => say(format!("watchdog: disarming: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_names_device_and_timeout() {
        assert_eq!(settings("console=ttyS0"), None);
        let s = |device: &str, timeout, softdog| {
            Some(Settings {
                device: device.into(),
                timeout,
                softdog,
            })
        };
        assert_eq!(
            settings("hull.watchdog=/dev/watchdog1,20"),
            s("/dev/watchdog1", 20, false)
        );
        assert_eq!(
            settings("hull.watchdog=/dev/watchdog0"),
            s("/dev/watchdog0", TIMEOUT, false)
        );
        assert_eq!(
            settings("hull.watchdog=softdog,5"),
            s("/dev/watchdog0", 5, true)
        );
        assert_eq!(settings("hull.watchdog=/dev/watchdog0,x"), None);
    }
}
