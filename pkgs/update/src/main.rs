//! `hull-update`: Hull's update service. Pulls an update bundle (`hull
//! build -f update`, pushed with `hull push`) from an OCI registry into the
//! spare slot of a two-slot disk and installs its boot entry; systemd-boot
//! tries it at the next boot and hull-init blesses it or gives it up.
//!
//! ```text
//! hull-update install REF [OPTIONS]        once
//! hull-update fetch REF [OPTIONS]          download and check it only
//! hull-update watch [REF] [OPTIONS]        for ever: REF every --every
//!                                          seconds, and what `hullctl
//!                                          update REF` asks
//! OPTIONS: --ca FILE --auth FILE --plain-http --scratch DIR --every SECONDS --reboot
//! ```
//!
//! Runs as a service in its own sandbox, granted only what hull-init made
//! for it: `/run/hull/boot.json`, the spare slot's device nodes
//! (`/dev/hull/spare`, as `devices:`), the ESP (`/run/hull/esp`), the request directory
//! (`/run/hull/update`) and, to reboot, the control socket. Arguments are
//! parsed by hand: eight flags do not need a parser crate in a binary every
//! device carries. Owns the loop and the reboot; the work is `install`, the
//! registry `registry`.

mod install;
mod registry;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use install::{Outcome, Paths};
use registry::{Client, Reference};

/// Where `hullctl update REF` leaves its request (written by hull-init).
const REQUEST: &str = "/run/hull/update/request";
/// The control socket, to ask hull-init for a reboot.
const CONTROL: &str = "/run/hullctl/control.sock";

const USAGE: &str = "usage: hull-update install REF | fetch REF | watch [REF] [--every SECONDS]\n  [--ca FILE] [--auth FILE] [--plain-http] [--scratch DIR] [--reboot]";

/// What to do.
#[derive(Debug, Default, PartialEq, Eq)]
enum Command {
    #[default]
    Install,
    Fetch,
    Watch,
}

#[derive(Debug, Default)]
struct Args {
    command: Command,
    reference: Option<String>,
    every: Option<u64>,
    options: registry::Options,
    scratch: Option<PathBuf>,
    reboot: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.iter();
    a.command = match it.next().map(String::as_str) {
        Some("install") => Command::Install,
        Some("fetch") => Command::Fetch,
        Some("watch") => Command::Watch,
        _ => return Err(USAGE.into()),
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--ca" => a.options.ca = Some(value("--ca")?.into()),
            "--auth" => a.options.auth = Some(value("--auth")?.into()),
            "--plain-http" => a.options.plain_http = true,
            "--scratch" => a.scratch = Some(value("--scratch")?.into()),
            "--reboot" => a.reboot = true,
            "--every" => {
                let v = value("--every")?;
                a.every = Some(v.parse().map_err(|_| format!("--every {v}: not seconds"))?);
            }
            r if !r.starts_with('-') && a.reference.is_none() => a.reference = Some(r.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if a.command != Command::Watch && a.reference.is_none() {
        return Err(format!("{} needs a reference\n{USAGE}", args[0]));
    }
    Ok(a)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hull-update: {e}");
            std::process::exit(2);
        }
    };
    let paths = Paths::system(
        a.scratch
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/hull-update")),
    );
    let r = a.reference.clone().unwrap_or_default();
    let done = match a.command {
        Command::Watch => watch(&a, &paths),
        Command::Install => once(&r, &a, &paths).map(|_| ()),
        Command::Fetch => fetch(&r, &a, &paths),
    };
    if let Err(e) = done {
        eprintln!("hull-update: {e}");
        std::process::exit(1);
    }
}

/// Downloads and checks `reference` into the scratch directory.
fn fetch(reference: &str, a: &Args, paths: &Paths) -> Result<(), String> {
    let r = Reference::parse(reference).map_err(|e| e.to_string())?;
    let mut client = Client::new(&r, &a.options).map_err(|e| e.to_string())?;
    let (version, files) = install::fetch(&r, &mut client, paths).map_err(|e| e.to_string())?;
    install::say(format!("{r}: version {version} fetched and checked:"));
    for f in files {
        install::say(format!("  {}", f.display()));
    }
    Ok(())
}

/// Installs `reference`; reboots after an install when asked to.
fn once(reference: &str, a: &Args, paths: &Paths) -> Result<Outcome, String> {
    let r = Reference::parse(reference).map_err(|e| e.to_string())?;
    let mut client = Client::new(&r, &a.options).map_err(|e| e.to_string())?;
    let outcome = install::install(&r, &mut client, paths).map_err(|e| e.to_string())?;
    match &outcome {
        Outcome::Running(v) => install::say(format!("{r}: version {v} is running: nothing to do")),
        Outcome::Pending(v) => install::say(format!(
            "{r}: version {v} is installed and waits for a boot"
        )),
        Outcome::Failed(v) => install::say(format!(
            "{r}: version {v} was tried and given up (hullctl slots): not installing it again"
        )),
        Outcome::Installed {
            version,
            slot,
            entry,
        } => {
            install::say(format!(
                "{r}: version {version} installed in slot {slot} as {entry}"
            ));
            if a.reboot {
                reboot();
            }
        }
    }
    Ok(outcome)
}

/// For ever: what `hullctl update` asks at once, `REF` every `--every`.
fn watch(a: &Args, paths: &Paths) -> ! {
    let every = Duration::from_secs(a.every.unwrap_or(3600).max(1));
    let mut next = Instant::now();
    install::say(format!(
        "watching{} and {REQUEST}",
        a.reference
            .as_deref()
            .map_or_else(String::new, |r| format!(" {r} every {} s", every.as_secs()))
    ));
    loop {
        if let Ok(r) = std::fs::read_to_string(REQUEST) {
            let _ = std::fs::remove_file(REQUEST);
            if let Err(e) = once(r.trim(), a, paths) {
                install::say(format!("{}: {e}", r.trim()));
            }
        }
        if let Some(r) = a.reference.as_deref() {
            if Instant::now() >= next {
                next = Instant::now() + every;
                if let Err(e) = once(r, a, paths) {
                    install::say(format!("{r}: {e}"));
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Asks hull-init to reboot through its control socket.
fn reboot() {
    use std::io::Read;
    let asked = std::os::unix::net::UnixStream::connect(CONTROL).and_then(|mut s| {
        s.write_all(b"reboot\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    });
    match asked {
        Ok(a) if a.starts_with("ok") => install::say("rebooting into the new version"),
        Ok(a) => install::say(format!("hull-init refused the reboot: {}", a.trim())),
        Err(e) => install::say(format!("cannot ask hull-init to reboot ({CONTROL}): {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &str) -> Result<Args, String> {
        parse(
            &words
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn arguments_parse_into_the_command_and_its_options() {
        let a = args("install reg/app:2 --plain-http --reboot --scratch /data/u").expect("valid");
        assert!(a.command == Command::Install && a.reboot && a.options.plain_http);
        assert_eq!(a.reference.as_deref(), Some("reg/app:2"));
        assert_eq!(a.scratch, Some(PathBuf::from("/data/u")));
        let w = args("watch reg/app:stable --every 600 --ca /etc/ca.pem").expect("valid");
        assert!(w.command == Command::Watch && w.every == Some(600));
        assert_eq!(
            args("fetch reg/app:2").expect("valid").command,
            Command::Fetch
        );
        assert!(args("fetch").is_err());
        assert!(args("watch")
            .expect("a bare watch waits for hullctl")
            .reference
            .is_none());
        assert!(args("install").is_err());
        assert!(args("install a b").is_err());
        assert!(args("watch --every soon").is_err());
        assert!(args("frobnicate").is_err());
    }
}
