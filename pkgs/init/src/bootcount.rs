//! Boot counting on two-slot disks: which slot booted, blessing a tried
//! boot once the system is healthy, and giving up on one that is not.
//!
//! systemd-boot renames a counted entry (`hull-2+3.efi`) before starting it
//! (`hull-2+2-1.efi`) and says where it put it in the `LoaderBootCountPath`
//! EFI variable. Once every service has stayed up for the health window and
//! every onboot container succeeded, this renames the entry to its blessed
//! name (`hull-2.efi`): systemd-boot then starts it without counting. A boot
//! that is not healthy by the deadline reboots, so a bad version uses up its
//! tries and systemd-boot falls back to the other slot; a panic or a
//! watchdog reset does the same without this. `hull.health=WINDOW,DEADLINE`
//! (seconds, either empty for the default) on the kernel command line, which
//! the builder writes from the manifest's `health:`, changes the defaults.
//!
//! Also writes `/run/hull/boot.json` (`hull_contract::slots::BootInfo`),
//! mounts the ESP at `/run/hull/esp` and makes the device nodes of the slot
//! that did not boot in `/dev/hull/spare`, for `hullctl` and the update
//! service. Owns none of the services' states (`services`) and never
//! touches the booted slot.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hull_contract::slots::{self, BootInfo, Entry};

use crate::supervisor::say;

/// How long every service must stay up before a tried boot is blessed.
pub const WINDOW: Duration = Duration::from_secs(30);
/// How long a tried boot has to become healthy before it reboots.
pub const DEADLINE: Duration = Duration::from_secs(300);

/// The environment `diskroot` hands the root's PID1: the slot it set up,
/// the ESP and the other slot's root and verity partitions (`ROOT,VERITY`).
pub const SLOT_ENV: &str = "HULL_SLOT";
pub const ESP_ENV: &str = "HULL_ESP";
pub const SPARE_ENV: &str = "HULL_SPARE";

/// systemd-boot's vendor GUID for its variables.
const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
const EFIVARS: &str = "/sys/firmware/efi/efivars";

/// `hull.health=WINDOW[,DEADLINE]` of a command line, or the defaults.
pub fn health_settings(cmdline: &str) -> (Duration, Duration) {
    let asked = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("hull.health="));
    let Some(asked) = asked else {
        return (WINDOW, DEADLINE);
    };
    let mut parts = asked.split(',').map(|p| p.parse::<u64>().ok());
    let window = parts.next().flatten().map_or(WINDOW, Duration::from_secs);
    let deadline = parts
        .next()
        .flatten()
        .map_or(DEADLINE.max(window * 2), Duration::from_secs);
    (window, deadline.max(window))
}

/// An EFI variable's text (UTF-16LE after 4 attribute bytes, NUL-ended).
pub fn efi_text(raw: &[u8]) -> Option<String> {
    let units: Vec<u16> = raw
        .get(4..)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).ok().filter(|s| !s.is_empty())
}

fn loader_var(name: &str) -> Option<String> {
    efi_text(&std::fs::read(format!("{EFIVARS}/{name}-{LOADER_GUID}")).ok()?)
}

/// A loader path (`\EFI\Linux\x.efi`) as a path under the ESP's mount.
pub fn on_esp(loader_path: &str) -> PathBuf {
    let rel = loader_path.trim_start_matches('\\').replace('\\', "/");
    Path::new(slots::ESP_MOUNT).join(rel)
}

/// The version of the UKI at `path` (its headers and `.osrel` read).
fn version_of(path: &Path) -> Option<String> {
    hull_contract::uki::version(&mut std::fs::File::open(path).ok()?)
}

/// What PID1 does about boot counting from here on.
pub struct Tracker {
    window: Duration,
    deadline: Instant,
    /// The tried entry's path on the ESP; `None` when there is nothing to
    /// bless (an entry without a counter, or already blessed).
    counted: Option<PathBuf>,
    info: BootInfo,
}

/// What the supervisor should do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Reboot,
}

/// Sets up after a boot from a two-slot disk (the environment `diskroot`
/// left says so); `None` otherwise. Failures are reported: a boot that
/// cannot be blessed is given up at the deadline, as a bad one is.
pub fn start(cmdline: &str, booted_at: Instant) -> Option<Tracker> {
    let slot = std::env::var(SLOT_ENV).ok()?;
    let (window, deadline) = health_settings(cmdline);
    for m in [
        "efivarfs",
        "vfat",
        "nls_cp437",
        "nls_ascii",
        "nls_iso8859_1",
    ] {
        crate::modules::load_named(m);
    }
    if let Err(e) = mount_efivars() {
        say(format!("boot counting: {e}"));
    }
    if let Err(e) = mount_esp() {
        say(format!("boot counting: {e}"));
    }
    let count_path = loader_var("LoaderBootCountPath");
    let entry = loader_var("LoaderEntrySelected");
    let counted = count_path.as_deref().map(on_esp);
    let uki = counted.clone().or_else(|| {
        entry
            .as_deref()
            .map(|e| Path::new(slots::ESP_MOUNT).join(slots::ENTRY_DIR).join(e))
    });
    let info = BootInfo {
        slot,
        version: uki.as_deref().and_then(version_of).unwrap_or_default(),
        root_hash: crate::diskroot::parse_cmdline(cmdline)
            .and_then(Result::ok)
            .map(|r| r.root_hash.iter().map(|b| format!("{b:02x}")).collect())
            .unwrap_or_default(),
        entry,
        count_path,
        blessed: counted.is_none(),
    };
    make_spare_nodes();
    if let Err(e) = std::fs::create_dir_all(
        Path::new(UPDATE_REQUEST)
            .parent()
            .unwrap_or(Path::new("/run/hull")),
    ) {
        say(format!("boot counting: /run/hull/update: {e}"));
    }
    let t = Tracker {
        window,
        deadline: booted_at + deadline,
        counted,
        info,
    };
    t.write_info();
    say(t.describe());
    Some(t)
}

impl Tracker {
    fn describe(&self) -> String {
        let i = &self.info;
        let state = match &self.counted {
            Some(p) => format!(
                "on trial ({}): blessed after {} s of health, rebooted if not healthy by {} s",
                p.display(),
                self.window.as_secs(),
                self.deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs()
            ),
            None => "trusted".to_string(),
        };
        format!(
            "slot {} booted, version {}, entry {}: {state}",
            i.slot,
            if i.version.is_empty() {
                "?"
            } else {
                &i.version
            },
            i.entry.as_deref().unwrap_or("?"),
        )
    }

    fn write_info(&self) {
        let written = serde_json::to_vec(&self.info)
            .map_err(std::io::Error::other)
            .and_then(|b| {
                std::fs::create_dir_all("/run/hull")?;
                std::fs::write(slots::BOOT_FILE, b)
            });
        if let Err(e) = written {
            say(format!("boot counting: {}: {e}", slots::BOOT_FILE));
        }
    }

    /// Blesses the entry once the system has been healthy since
    /// `healthy_since` for the window; asks for a reboot past the deadline.
    pub fn tick(&mut self, healthy_since: Option<Instant>, now: Instant) -> Action {
        let Some(counted) = self.counted.clone() else {
            return Action::Nothing;
        };
        if healthy_since.is_some_and(|t| now.saturating_duration_since(t) >= self.window) {
            match bless(&counted) {
                Ok(name) => {
                    say(format!(
                        "boot counting: healthy for {} s: blessed {name}",
                        self.window.as_secs()
                    ));
                    self.counted = None;
                    self.info.blessed = true;
                    self.write_info();
                }
                Err(e) => say(format!(
                    "boot counting: cannot bless {}: {e}",
                    counted.display()
                )),
            }
            return Action::Nothing;
        }
        if now >= self.deadline {
            say("boot counting: not healthy by the deadline: rebooting (systemd-boot tries again or falls back)");
            self.counted = None;
            return Action::Reboot;
        }
        Action::Nothing
    }
}

/// Where `hullctl update REF` leaves REF for the update service.
pub const UPDATE_REQUEST: &str = "/run/hull/update/request";

/// `hullctl update REF`: hands REF to the update service (which watches
/// for it) and says so.
pub fn request_update(reference: &str) -> crate::control::Reply {
    use crate::control::Reply;
    if !Path::new(slots::BOOT_FILE).exists() {
        return Reply::error("not booted from a two-slot disk: nothing to update\n");
    }
    let tmp = format!("{UPDATE_REQUEST}.new");
    match std::fs::write(&tmp, format!("{reference}\n"))
        .and_then(|()| std::fs::rename(&tmp, UPDATE_REQUEST))
    {
        Ok(()) => Reply::ok(format!(
            "update to {reference} asked of the update service (its log: hullctl logs NAME)\n"
        )),
        Err(e) => Reply::error(format!("{UPDATE_REQUEST}: {e}\n")),
    }
}

/// What `hullctl slots` prints: the boot, then every entry on the ESP in
/// name order with its version and what systemd-boot makes of its counter.
pub fn report() -> crate::control::Reply {
    use crate::control::Reply;
    let Ok(raw) = std::fs::read(slots::BOOT_FILE) else {
        return Reply::error("not booted from a two-slot disk (no /run/hull/boot.json)\n");
    };
    let Ok(info) = serde_json::from_slice::<BootInfo>(&raw) else {
        return Reply::error(format!("{} is not readable\n", slots::BOOT_FILE));
    };
    let mut out = format!(
        "booted: slot {}, version {}, entry {} ({})\nentries in {}:\n",
        info.slot,
        info.version,
        info.entry.as_deref().unwrap_or("?"),
        if info.blessed { "good" } else { "on trial" },
        slots::ENTRY_DIR
    );
    let dir = Path::new(slots::ESP_MOUNT).join(slots::ENTRY_DIR);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in names {
        let Some(entry) = Entry::parse(&name) else {
            continue;
        };
        let version = version_of(&dir.join(&name)).unwrap_or_else(|| "?".into());
        out.push_str(&format!(
            "  {name}\tversion {version}\t{}\n",
            entry_state(&entry)
        ));
    }
    Reply::ok(out)
}

/// An entry's state as systemd-boot sees it.
fn entry_state(e: &Entry) -> String {
    match e.counter {
        None => "good".into(),
        Some((0, done)) => format!("failed: tried {done} times, given up"),
        Some((0.., 0)) => "new: not tried yet".into(),
        Some((left, done)) => format!("on trial: tried {done} times, {left} left"),
    }
}

/// Renames the counted entry to its blessed name and makes it durable.
fn bless(counted: &Path) -> std::io::Result<String> {
    let file = counted
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entry = Entry::parse(&file)
        .filter(|e| e.counter.is_some())
        .ok_or_else(|| std::io::Error::other(format!("{file} has no boot counter")))?;
    let blessed = counted.with_file_name(entry.blessed());
    std::fs::rename(counted, &blessed)?;
    if let Some(dir) = blessed.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    rustix::fs::sync();
    Ok(entry.blessed())
}

fn mount_efivars() -> Result<(), String> {
    // Mounted already (built in and mounted by someone): it lists variables.
    if std::fs::read_dir(EFIVARS).is_ok_and(|mut d| d.next().is_some()) {
        return Ok(());
    }
    rustix::mount::mount(
        "efivarfs",
        EFIVARS,
        "efivarfs",
        rustix::mount::MountFlags::NOSUID
            | rustix::mount::MountFlags::NOEXEC
            | rustix::mount::MountFlags::NODEV,
        c"",
    )
    .map_err(|e| format!("mount efivarfs on {EFIVARS}: {e}"))
}

fn mount_esp() -> Result<(), String> {
    let dev = std::env::var(ESP_ENV).map_err(|_| format!("{ESP_ENV} is not set"))?;
    std::fs::create_dir_all(slots::ESP_MOUNT)
        .map_err(|e| format!("mkdir {}: {e}", slots::ESP_MOUNT))?;
    use rustix::mount::MountFlags;
    rustix::mount::mount(
        dev.as_str(),
        slots::ESP_MOUNT,
        "vfat",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"umask=0077,shortname=mixed,flush",
    )
    .map_err(|e| format!("mount {dev} (vfat) on {}: {e}", slots::ESP_MOUNT))
}

/// Block device nodes in `/dev/hull/spare` for the slot that did not boot.
fn make_spare_nodes() {
    let Ok(spare) = std::env::var(SPARE_ENV) else {
        return;
    };
    let dir = Path::new(slots::SPARE_DIR);
    for (name, dev) in ["root", "verity"].iter().zip(spare.split(',')) {
        let made = std::fs::create_dir_all(dir)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                let st = rustix::fs::stat(dev).map_err(|e| format!("stat {dev}: {e}"))?;
                let path = dir.join(name);
                let _ = std::fs::remove_file(&path);
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &path,
                    rustix::fs::FileType::BlockDevice,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    st.st_rdev,
                )
                .map_err(|e| format!("mknod {}: {e}", path.display()))
            });
        if let Err(e) = made {
            say(format!("boot counting: the other slot's {name}: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_reported_as_systemd_boot_sees_them() {
        let state = |n: &str| entry_state(&Entry::parse(n).expect("a UKI"));
        assert_eq!(state("hull-2.efi"), "good");
        assert_eq!(state("hull-3+3.efi"), "new: not tried yet");
        assert_eq!(state("hull-3+1-2.efi"), "on trial: tried 2 times, 1 left");
        assert_eq!(state("hull-3+0-3.efi"), "failed: tried 3 times, given up");
    }

    #[test]
    fn health_settings_come_from_the_command_line() {
        assert_eq!(health_settings("console=ttyS0"), (WINDOW, DEADLINE));
        assert_eq!(
            health_settings("hull.health=5,20"),
            (Duration::from_secs(5), Duration::from_secs(20))
        );
        let (w, d) = health_settings("hull.health=600");
        assert_eq!(w, Duration::from_secs(600));
        assert_eq!(d, Duration::from_secs(1200));
    }

    #[test]
    fn efi_variables_are_utf16_after_their_attributes() {
        let mut raw = vec![7, 0, 0, 0];
        for u in "\\EFI\\Linux\\hull-2+2-1.efi".encode_utf16().chain([0]) {
            raw.extend_from_slice(&u.to_le_bytes());
        }
        let text = efi_text(&raw).expect("text");
        assert_eq!(text, "\\EFI\\Linux\\hull-2+2-1.efi");
        assert_eq!(
            on_esp(&text),
            Path::new("/run/hull/esp/EFI/Linux/hull-2+2-1.efi")
        );
        assert!(efi_text(&[7, 0, 0, 0, 0, 0]).is_none());
    }
}
