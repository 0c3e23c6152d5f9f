//! `hullctl`: talking to the running PID1 over a unix socket.
//!
//! Owns: the socket at [`SOCKET`], the one-line request / status-line reply
//! protocol, the server thread inside PID1 (it checks who asks, by the
//! peer's cgroup, against the grants, and only carries requests to the
//! supervisor's loop and the answers back) and the `hullctl` client (this
//! binary run under that name). Must not act on containers itself: the
//! supervisor does.
//!
//! Protocol (hand-written: a line each way needs no crate): the client sends
//! one line `VERB [NAME]\n`; the server answers `ok\n` or `error\n`, then the
//! text to print, then closes the connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use hull_contract::ControlAccess;

/// Where PID1 listens. Containers that should use `hullctl` bind its directory.
pub const SOCKET: &str = "/run/hullctl/control.sock";

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    List,
    Logs(String),
    Start(String),
    Stop(String),
    Restart(String),
    Poweroff,
    Reboot,
    /// The slots of a two-slot disk: which booted, the boot entries.
    Slots,
    /// `update REF`: asks the update service to install the bundle REF.
    Update(String),
    /// `debug hang`: PID1 stops feeding the watchdog, as if it hung (to
    /// test that the watchdog resets the machine).
    Hang,
}

impl Verb {
    /// Parses a request line (or hullctl's arguments joined by a space).
    pub fn parse(line: &str) -> Result<Verb, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let named = |make: fn(String) -> Verb| match words.as_slice() {
            [_, name] => Ok(make((*name).to_string())),
            _ => Err(format!("{} needs one container name", words[0])),
        };
        match words.first().copied() {
            Some("list") | Some("ls") if words.len() == 1 => Ok(Verb::List),
            Some("logs") => named(Verb::Logs),
            Some("start") => named(Verb::Start),
            Some("stop") => named(Verb::Stop),
            Some("restart") => named(Verb::Restart),
            Some("poweroff") if words.len() == 1 => Ok(Verb::Poweroff),
            Some("reboot") if words.len() == 1 => Ok(Verb::Reboot),
            Some("slots") if words.len() == 1 => Ok(Verb::Slots),
            Some("update") => match words.as_slice() {
                [_, r] => Ok(Verb::Update((*r).to_string())),
                _ => Err("update needs one bundle reference (HOST/REPO:TAG or @sha256:...)".into()),
            },
            Some("debug") if words.get(1..) == Some(&["hang"][..]) => Ok(Verb::Hang),
            Some(other) => Err(format!("unknown request {other:?}\n{USAGE}")),
            None => Err(USAGE.to_string()),
        }
    }
}

impl Verb {
    /// The access a container needs to ask this.
    pub fn needs(&self) -> ControlAccess {
        match self {
            Verb::List | Verb::Logs(_) | Verb::Slots => ControlAccess::Read,
            _ => ControlAccess::Full,
        }
    }
}

/// Who may ask what: each container's cgroup (as `/proc/PID/cgroup` shows
/// it, e.g. `/hull/getty`) and its access, read once at boot. The host's
/// own processes (the root cgroup) get [`ControlAccess::Full`] without asking.
#[derive(Debug, Default)]
pub struct Grants(pub Vec<(String, ControlAccess)>);

impl Grants {
    /// The access of the container that holds `cgroup` (its own or one
    /// below it); none for a cgroup no container has.
    pub fn access(&self, cgroup: &str) -> ControlAccess {
        self.0
            .iter()
            .find(|(path, _)| {
                !path.is_empty()
                    && (cgroup == path
                        || cgroup
                            .strip_prefix(path.as_str())
                            .is_some_and(|rest| rest.starts_with('/')))
            })
            .map(|(_, access)| *access)
            .unwrap_or_default()
    }
}

/// The cgroup v2 path of process `pid`.
fn cgroup_of(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// The access of the process at the other end of `conn`, from its
/// credentials as the kernel gives them (SO_PEERCRED) and its cgroup.
fn access_of(conn: &UnixStream, grants: &Grants) -> ControlAccess {
    let Ok(cred) = rustix::net::sockopt::socket_peercred(conn) else {
        return ControlAccess::None;
    };
    match cgroup_of(cred.pid.as_raw_nonzero().get()) {
        Some(cgroup) if cgroup == "/" => ControlAccess::Full,
        Some(cgroup) => grants.access(&cgroup),
        None => ControlAccess::None,
    }
}

/// A request from a client, with the way back to it.
pub struct Request {
    pub verb: Verb,
    pub reply: Sender<Reply>,
}

/// The supervisor's answer: success and the text for the user.
pub struct Reply {
    pub ok: bool,
    pub text: String,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            text: text.into(),
        }
    }
}

const USAGE: &str =
    "usage: hullctl list | logs NAME | start NAME | stop NAME | restart NAME | slots | update REF | poweroff | reboot | debug hang";

/// Starts listening; requests arrive on the returned channel. A failure
/// leaves the system without hullctl, nothing more.
pub fn serve(grants: Grants) -> Result<Receiver<Request>, String> {
    let grants = std::sync::Arc::new(grants);
    let dir = Path::new(SOCKET).parent().unwrap_or(Path::new("/run"));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(SOCKET);
    let listener = UnixListener::bind(SOCKET).map_err(|e| format!("{SOCKET}: {e}"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let (tx, grants) = (tx.clone(), grants.clone());
                // One thread a connection: a slow client holds up nobody.
                let _ = std::thread::Builder::new().spawn(move || answer(conn, &tx, &grants));
            }
        })
        .map_err(|e| format!("control thread: {e}"))?;
    Ok(rx)
}

fn answer(conn: UnixStream, requests: &Sender<Request>, grants: &Grants) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let access = access_of(&conn, grants);
    let mut line = String::new();
    let Ok(mut write) = conn.try_clone() else {
        return;
    };
    let reply = match BufReader::new(conn.take(4096)).read_line(&mut line) {
        Err(e) => Reply::error(format!("reading the request: {e}")),
        Ok(_) => match Verb::parse(&line) {
            Err(e) => Reply::error(e),
            Ok(verb) if access < verb.needs() => Reply::error(format!(
                "this container may not ask that of hull-init (its control access is {access}, \
                 {} needs {}; see `control:` in the manifest)\n",
                line.trim(),
                verb.needs()
            )),
            Ok(verb) => {
                let (tx, rx) = mpsc::channel();
                if requests.send(Request { verb, reply: tx }).is_err() {
                    Reply::error("the supervisor is gone")
                } else {
                    // Stopping a service waits out its grace period.
                    rx.recv_timeout(Duration::from_secs(60))
                        .unwrap_or_else(|_| Reply::error("no answer from the supervisor"))
                }
            }
        },
    };
    let status = if reply.ok { "ok" } else { "error" };
    let _ = write!(write, "{status}\n{}", reply.text);
}

/// `hullctl ARGS...`: sends the request, prints the answer; returns the exit code.
pub fn client(args: &[String]) -> i32 {
    let line = args.join(" ");
    if line.is_empty() {
        eprintln!("{USAGE}");
        return 2;
    }
    if matches!(line.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}\n\nTalks to hull-init over {SOCKET} (or $HULLCTL_SOCKET).");
        return 0;
    }
    if let Err(e) = Verb::parse(&line) {
        eprintln!("hullctl: {e}");
        return 2;
    }
    let socket = std::env::var("HULLCTL_SOCKET").unwrap_or_else(|_| SOCKET.to_string());
    let mut conn = match UnixStream::connect(&socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hullctl: cannot reach hull-init at {socket}: {e}");
            return 1;
        }
    };
    if let Err(e) = writeln!(conn, "{line}") {
        eprintln!("hullctl: {socket}: {e}");
        return 1;
    }
    let mut answer = String::new();
    if let Err(e) = conn.read_to_string(&mut answer) {
        eprintln!("hullctl: {socket}: {e}");
        return 1;
    }
    let (status, text) = answer.split_once('\n').unwrap_or((answer.as_str(), ""));
    if status == "ok" {
        print!("{text}");
        0
    } else {
        eprint!("hullctl: {text}");
        if !text.ends_with('\n') {
            eprintln!();
        }
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(Verb::parse("list\n"), Ok(Verb::List));
        assert_eq!(Verb::parse("logs web"), Ok(Verb::Logs("web".into())));
        assert_eq!(
            Verb::parse("restart  web \n"),
            Ok(Verb::Restart("web".into()))
        );
        assert!(Verb::parse("restart").is_err());
        assert!(Verb::parse("stop a b").is_err());
        assert!(Verb::parse("list x").is_err());
        assert_eq!(Verb::parse("slots"), Ok(Verb::Slots));
        assert_eq!(
            Verb::parse("update reg.example/app:2"),
            Ok(Verb::Update("reg.example/app:2".into()))
        );
        assert!(Verb::parse("update").is_err());
        assert_eq!(Verb::parse("debug hang"), Ok(Verb::Hang));
        assert!(Verb::parse("debug").is_err());
        assert_eq!(Verb::Slots.needs(), ControlAccess::Read);
        assert_eq!(Verb::Update("r".into()).needs(), ControlAccess::Full);
        assert_eq!(Verb::Hang.needs(), ControlAccess::Full);
        assert!(Verb::parse("frobnicate").is_err());
        assert!(Verb::parse("").is_err());
    }

    #[test]
    fn a_peer_gets_the_access_of_the_container_holding_its_cgroup() {
        let grants = Grants(vec![
            ("/hull/getty".to_string(), ControlAccess::Full),
            ("/hull/web".to_string(), ControlAccess::None),
            ("/hull/mon".to_string(), ControlAccess::Read),
        ]);
        assert_eq!(grants.access("/hull/getty"), ControlAccess::Full);
        assert_eq!(grants.access("/hull/getty/sub"), ControlAccess::Full);
        assert_eq!(grants.access("/hull/mon"), ControlAccess::Read);
        assert_eq!(grants.access("/hull/web"), ControlAccess::None);
        // A prefix of a name is another container.
        assert_eq!(grants.access("/hull/gettyx"), ControlAccess::None);
        assert_eq!(grants.access("/elsewhere"), ControlAccess::None);
    }

    #[test]
    fn reading_needs_read_access_and_the_rest_full() {
        assert_eq!(Verb::List.needs(), ControlAccess::Read);
        assert_eq!(Verb::Logs("a".into()).needs(), ControlAccess::Read);
        for v in [
            Verb::Start("a".into()),
            Verb::Stop("a".into()),
            Verb::Restart("a".into()),
            Verb::Poweroff,
            Verb::Reboot,
        ] {
            assert_eq!(v.needs(), ControlAccess::Full, "{v:?}");
        }
    }
}
