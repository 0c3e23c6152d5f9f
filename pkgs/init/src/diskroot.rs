//! Booting from a root on disk: from the UKI's small initrd, find the root
//! and verity partitions, set up the dm-verity device, mount it read-only
//! and switch to it; hull-init then starts again there and boots as always.
//!
//! The root hash comes only from the kernel command line (`roothash=HEX`),
//! which the signed UKI carries; the partitions are the GPT entries whose
//! UUIDs are its two halves (systemd's convention, which `hull build --root
//! verity` follows), or on a two-slot disk (`--root ab`) the slot whose
//! verity superblock's UUID is its first half (its PID1 learns the slot,
//! the ESP and the other slot's partitions from the environment); the salt and block count come from the verity
//! superblock, which the root hash covers. `hull.verity=panic` makes a
//! corrupted block a kernel panic (`panic_on_corruption`) instead of an I/O
//! error. Any failure here stops the boot (PID1 exits, the kernel panics):
//! there is no other root to fall back on, and none may be used unchecked.
//!
//! Owns: the command line's verity settings, reading GPT entries and the
//! verity superblock, the table, the mount and the switch. Must not boot
//! anything itself (that is `supervisor`, from the new root).

use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::sys::{Context, SysError};

/// Where the initrd mounts the root before switching to it.
const SYSROOT: &str = "/sysroot";
/// The device-mapper name of the verity device.
const DM_NAME: &str = "hull-root";
/// How long to wait for the disk to appear.
const WAIT_SECS: u64 = 30;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub root_hash: [u8; 32],
    /// `hull.verity=panic`: a corrupted block panics the kernel.
    pub panic: bool,
}

/// The verity settings on a kernel command line: `None` without
/// `roothash=`, an error when it is not 64 hex digits.
pub fn parse_cmdline(cmdline: &str) -> Option<Result<Request, String>> {
    let mut hash = None;
    let mut panic = false;
    for word in cmdline.split_whitespace() {
        if let Some(v) = word.strip_prefix("roothash=") {
            hash = Some(v);
        } else if let Some(v) = word.strip_prefix("hull.verity=") {
            panic = v == "panic";
        }
    }
    let text = hash?;
    let parsed = (|| {
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    })();
    Some(match parsed {
        Some(root_hash) => Ok(Request { root_hash, panic }),
        None => Err(format!("roothash={text} is not 64 hex digits")),
    })
}

/// A partition UUID as its GPT entry stores it, from the 16 bytes of its
/// text form (the first three fields little-endian).
pub fn uuid_on_disk(text_bytes: &[u8]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b.copy_from_slice(&text_bytes[..16]);
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// A GPT entry: its unique GUID, type GUID (both as stored) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    pub guid: [u8; 16],
    pub type_guid: [u8; 16],
    pub name: String,
}

/// The ESP's type GUID as a GPT entry stores it.
const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];

/// A GPT's entries, by index, read through `read_at` (`sector` bytes a
/// sector).
pub fn gpt_entries(
    read_at: &dyn Fn(u64, &mut [u8]) -> std::io::Result<()>,
    sector: u64,
) -> Option<Vec<GptEntry>> {
    let mut h = vec![0u8; 92];
    read_at(sector, &mut h).ok()?;
    if &h[0..8] != b"EFI PART" {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or_default());
    let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap_or_default());
    let (lba, count, size) = (u64_at(72), u32_at(80).min(1024), u32_at(84));
    if !(128..=4096).contains(&size) {
        return None;
    }
    let mut entries = vec![0u8; count as usize * size as usize];
    read_at(lba * sector, &mut entries).ok()?;
    Some(
        entries
            .chunks(size as usize)
            .map(|e| {
                let mut guid = [0u8; 16];
                guid.copy_from_slice(&e[16..32]);
                let mut type_guid = [0u8; 16];
                type_guid.copy_from_slice(&e[0..16]);
                let units: Vec<u16> = e[56..128]
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                GptEntry {
                    guid,
                    type_guid,
                    name: String::from_utf16_lossy(&units),
                }
            })
            .collect(),
    )
}

/// The salt and number of data blocks of a verity superblock, checked to
/// be what Hull writes (format 1, sha256, 4 KiB blocks).
pub fn superblock(b: &[u8]) -> Result<(Vec<u8>, u64), String> {
    if b.len() < 512 || &b[0..8] != b"verity\0\0" {
        return Err("no verity superblock".into());
    }
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
    let name_end = b[32..64].iter().position(|&c| c == 0).unwrap_or(32);
    if u32_at(8) != 1 || u32_at(12) != 1 || &b[32..32 + name_end] != b"sha256" {
        return Err("a verity superblock of another version, type or hash".into());
    }
    if u32_at(64) != 4096 || u32_at(68) != 4096 {
        return Err("verity blocks other than 4096 bytes".into());
    }
    let blocks = u64::from_le_bytes(b[72..80].try_into().unwrap_or_default());
    let salt_len = usize::from(u16::from_le_bytes([b[80], b[81]])).min(256);
    Ok((b[88..88 + salt_len].to_vec(), blocks))
}

/// The dm-verity target's parameters (the hash tree after the superblock).
pub fn verity_params(data: &str, hash: &str, blocks: u64, req: &Request, salt: &[u8]) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut p = format!(
        "1 {data} {hash} 4096 4096 {blocks} 1 sha256 {} {}",
        hex(&req.root_hash),
        if salt.is_empty() {
            "-".into()
        } else {
            hex(salt)
        }
    );
    if req.panic {
        p.push_str(" 1 panic_on_corruption");
    }
    p
}

/// True in an initrd made for a root on disk (it has `/sysroot`), before
/// the switch.
pub fn wanted() -> bool {
    crate::newroot::needed() && Path::new(SYSROOT).is_dir()
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> SysError {
    move |e| SysError {
        errno: rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
        what: format!("{what}: {e}"),
    }
}

fn fail(what: String) -> SysError {
    SysError {
        what,
        errno: rustix::io::Errno::INVAL,
    }
}

/// Mounts /proc, /sys and /dev for the initrd's work.
fn early_mounts() -> Result<(), SysError> {
    use rustix::mount::{mount, MountFlags};
    for (src, target, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        let _ = std::fs::create_dir_all(target);
        mount(src, target, fstype, MountFlags::empty(), c"")
            .ctx(|| format!("mount {fstype} on {target}"))?;
    }
    Ok(())
}

/// Sets up the root from the command line and switches to it; returns
/// `Ok(false)` when the command line has no `roothash=` (the initrd is then
/// the whole system), and never returns otherwise but with an error.
pub fn switch(args: &[std::ffi::OsString], started: u64) -> Result<bool, SysError> {
    early_mounts()?;
    let cmdline =
        std::fs::read_to_string("/proc/cmdline").map_err(io("read /proc/cmdline".into()))?;
    let req = match parse_cmdline(&cmdline) {
        None => return Ok(false),
        Some(r) => r.map_err(fail)?,
    };
    load_modules();
    let found = find_partitions(&req)?;
    let (data, hash) = (found.data.clone(), found.hash.clone());
    let sb = read_start(&hash, 4096)?;
    let (salt, blocks) = superblock(&sb).map_err(|e| fail(format!("{}: {e}", hash.display())))?;
    let params = verity_params(
        &data.to_string_lossy(),
        &hash.to_string_lossy(),
        blocks,
        &req,
        &salt,
    );
    let target = crate::dm::Target {
        length: blocks * 8,
        kind: "verity",
        params: &params,
    };
    let (major, minor) = crate::dm::create_read_only(DM_NAME, &target)?;
    let dev = device_node(major, minor)?;
    rustix::mount::mount(
        dev.as_path(),
        SYSROOT,
        "squashfs",
        rustix::mount::MountFlags::RDONLY,
        c"",
    )
    .ctx(|| format!("mount {} (squashfs, read-only) on {SYSROOT}", dev.display()))?;
    println!(
        "hull-init: root: {} (dm-verity over {} and {}, root hash {}) mounted read-only",
        dev.display(),
        data.display(),
        hash.display(),
        &params.split(' ').nth(8).unwrap_or_default()
    );
    enter(args, started, &found)
}

/// Loads the disk drivers the machine's devices ask for, then dm-verity and
/// squashfs (those built in are there already).
fn load_modules() {
    if let Some(index) = crate::modules::running() {
        let (_, failed) = crate::modules::coldplug(index);
        for f in failed {
            println!("hull-init: module {f}");
        }
    }
    for m in ["dm_verity", "squashfs"] {
        crate::modules::load_named(m);
    }
}

/// The first `n` bytes of the device at `path`.
fn read_start(path: &Path, n: usize) -> Result<Vec<u8>, SysError> {
    let f = std::fs::File::open(path).map_err(io(format!("open {}", path.display())))?;
    let mut b = vec![0u8; n];
    f.read_exact_at(&mut b, 0)
        .map_err(io(format!("read {}", path.display())))?;
    Ok(b)
}

/// The partitions a root on disk was found on.
#[derive(Debug, Clone)]
pub struct Found {
    pub data: PathBuf,
    pub hash: PathBuf,
    /// On a two-slot disk: the slot, the ESP, and the other slot's root and
    /// verity partitions.
    pub slot: Option<(String, PathBuf, PathBuf, PathBuf)>,
}

/// The data and hash partitions' device nodes, waiting for the disk.
fn find_partitions(req: &Request) -> Result<Found, SysError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(WAIT_SECS);
    loop {
        if let Some(found) = scan_disks(&req.root_hash) {
            return Ok(found);
        }
        if std::time::Instant::now() > deadline {
            return Err(fail(format!(
                "no disk has partitions with the UUIDs of roothash=, nor a slot whose verity superblock names it, after {WAIT_SECS} s"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Looks through every disk's GPT for the partitions of `root_hash`: the
/// two whose UUIDs are its halves, or a slot's verity partition whose
/// superblock UUID is its first half, with that slot's root partition.
fn scan_disks(root_hash: &[u8; 32]) -> Option<Found> {
    let want = [
        uuid_on_disk(&root_hash[..16]),
        uuid_on_disk(&root_hash[16..]),
    ];
    for disk in std::fs::read_dir("/sys/block").ok()?.flatten() {
        let name = disk.file_name().to_string_lossy().into_owned();
        let Ok(f) = std::fs::File::open(format!("/dev/{name}")) else {
            continue;
        };
        let read = |at: u64, buf: &mut [u8]| f.read_exact_at(buf, at);
        let entries = [512, 4096].iter().find_map(|s| gpt_entries(&read, *s));
        let Some(entries) = entries else { continue };
        let sys = disk.path();
        let index = |w: &[u8; 16]| entries.iter().position(|e| &e.guid == w);
        if let (Some(d), Some(h)) = (index(&want[0]), index(&want[1])) {
            return Some(Found {
                data: partition(&sys, d + 1)?,
                hash: partition(&sys, h + 1)?,
                slot: None,
            });
        }
        if let Some(found) = find_slot(&sys, &entries, root_hash) {
            return Some(found);
        }
    }
    None
}

/// The slot of a two-slot disk whose verity superblock names `root_hash`.
fn find_slot(sys: &Path, entries: &[GptEntry], root_hash: &[u8; 32]) -> Option<Found> {
    use hull_contract::slots;
    let by_name = |n: &str| {
        let i = entries.iter().position(|e| e.name == n)?;
        partition(sys, i + 1)
    };
    let slot = slots::SLOTS.iter().find(|slot| {
        by_name(&slots::verity_partition(slot))
            .and_then(|p| read_start(&p, 4096).ok())
            .is_some_and(|sb| sb.get(16..32) == Some(&root_hash[..16]))
    })?;
    let other = slots::other(slot)?;
    let esp = entries.iter().position(|e| e.type_guid == ESP_TYPE)?;
    Some(Found {
        data: by_name(&slots::root_partition(slot))?,
        hash: by_name(&slots::verity_partition(slot))?,
        slot: Some((
            slot.to_string(),
            partition(sys, esp + 1)?,
            by_name(&slots::root_partition(other))?,
            by_name(&slots::verity_partition(other))?,
        )),
    })
}

/// The device node of partition `number` of the disk at `sys` (its
/// `/sys/block/NAME` directory).
fn partition(sys: &Path, number: usize) -> Option<PathBuf> {
    std::fs::read_dir(sys).ok()?.flatten().find_map(|e| {
        let n = std::fs::read_to_string(e.path().join("partition")).ok()?;
        (n.trim() == number.to_string()).then(|| Path::new("/dev").join(e.file_name()))
    })
}

/// `/dev/NAME` of the block device `major:minor`.
fn device_node(major: u32, minor: u32) -> Result<PathBuf, SysError> {
    let uevent = format!("/sys/dev/block/{major}:{minor}/uevent");
    let text = std::fs::read_to_string(&uevent).map_err(io(format!("read {uevent}")))?;
    text.lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(|n| Path::new("/dev").join(n))
        .ok_or_else(|| fail(format!("{uevent} names no device")))
}

/// Frees the initrd's files, leaves the early mounts, makes the root `/`
/// and runs `/init` there.
fn enter(args: &[std::ffi::OsString], started: u64, found: &Found) -> Result<bool, SysError> {
    for e in std::fs::read_dir("/")
        .map_err(io("read /".into()))?
        .flatten()
    {
        let p = e.path();
        if ["/sysroot", "/dev", "/proc", "/sys"]
            .iter()
            .any(|k| p == Path::new(k))
        {
            continue;
        }
        let _ = if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
    for m in ["/proc", "/sys", "/dev"] {
        rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH)
            .ctx(|| format!("unmount {m}"))?;
    }
    std::env::set_current_dir(SYSROOT).map_err(io(format!("cd {SYSROOT}")))?;
    rustix::mount::mount_move(".", "/").ctx(|| format!("move {SYSROOT} onto /"))?;
    rustix::process::chroot(".").ctx(|| "chroot into the root".into())?;
    std::env::set_current_dir("/").map_err(io("cd /".into()))?;
    let program = args.first().cloned().unwrap_or_else(|| "/init".into());
    let mut init = std::process::Command::new("/init");
    init.arg0(program)
        .args(args.get(1..).unwrap_or_default())
        .env(crate::newroot::MOVED, "1")
        .env(crate::newroot::STARTED, started.to_string());
    if let Some((slot, esp, root, verity)) = &found.slot {
        use crate::bootcount::{ESP_ENV, SLOT_ENV, SPARE_ENV};
        init.env(SLOT_ENV, slot).env(ESP_ENV, esp).env(
            SPARE_ENV,
            format!("{},{}", root.display(), verity.display()),
        );
    }
    let e = init.exec();
    Err(io("exec /init in the root".into())(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_gives_the_root_hash_and_the_corruption_policy() {
        let h = "19b6eda8d01af2a412c6d9e0c1df00b57505d7897ca9ae3cc1a9073a611d9bf7";
        let r = parse_cmdline(&format!("console=ttyS0 roothash={h}"))
            .expect("asked")
            .expect("valid");
        assert_eq!(r.root_hash[0], 0x19);
        assert_eq!(r.root_hash[31], 0xf7);
        assert!(!r.panic);
        let r = parse_cmdline(&format!("roothash={h} hull.verity=panic"))
            .expect("asked")
            .expect("valid");
        assert!(r.panic);
        assert!(parse_cmdline("console=ttyS0").is_none());
        assert!(parse_cmdline("roothash=xyz").expect("asked").is_err());
    }

    #[test]
    fn gpt_entries_are_read_with_their_guids() {
        let mut disk = vec![0u8; 64 * 512];
        disk[512..520].copy_from_slice(b"EFI PART");
        disk[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        disk[512 + 80..512 + 84].copy_from_slice(&4u32.to_le_bytes());
        disk[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let g = uuid_on_disk(&[7u8; 16]);
        disk[1024 + 128 + 16..1024 + 128 + 32].copy_from_slice(&g);
        for (i, u) in "hull-verity-b".encode_utf16().enumerate() {
            disk[1024 + 128 + 56 + 2 * i..1024 + 128 + 58 + 2 * i]
                .copy_from_slice(&u.to_le_bytes());
        }
        let read = |at: u64, buf: &mut [u8]| {
            let at = usize::try_from(at).unwrap_or(usize::MAX);
            buf.copy_from_slice(&disk[at..at + buf.len()]);
            Ok(())
        };
        let entries = gpt_entries(&read, 512).expect("a GPT");
        assert_eq!(entries.len(), 4);
        assert_eq!(entries.iter().position(|x| x.guid == g), Some(1));
        assert_eq!(entries[1].name, "hull-verity-b");
        assert!(gpt_entries(&read, 4096).is_none());
    }

    #[test]
    fn the_superblock_gives_salt_and_blocks_and_the_table_uses_them() {
        let mut sb = vec![0u8; 4096];
        sb[0..8].copy_from_slice(b"verity\0\0");
        sb[8..12].copy_from_slice(&1u32.to_le_bytes());
        sb[12..16].copy_from_slice(&1u32.to_le_bytes());
        sb[32..38].copy_from_slice(b"sha256");
        sb[64..68].copy_from_slice(&4096u32.to_le_bytes());
        sb[68..72].copy_from_slice(&4096u32.to_le_bytes());
        sb[72..80].copy_from_slice(&1101u64.to_le_bytes());
        sb[80..82].copy_from_slice(&2u16.to_le_bytes());
        sb[88..90].copy_from_slice(&[0xab, 0xcd]);
        let (salt, blocks) = superblock(&sb).expect("valid");
        assert_eq!((salt.as_slice(), blocks), (&[0xab, 0xcd][..], 1101));
        let req = Request {
            root_hash: [0x11; 32],
            panic: true,
        };
        let p = verity_params("/dev/vda2", "/dev/vda3", blocks, &req, &salt);
        assert_eq!(
            p,
            format!(
                "1 /dev/vda2 /dev/vda3 4096 4096 1101 1 sha256 {} abcd 1 panic_on_corruption",
                "11".repeat(32)
            )
        );
        sb[12] = 0;
        assert!(superblock(&sb).is_err());
    }
}
