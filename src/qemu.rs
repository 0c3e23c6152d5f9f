//! Booting built images under QEMU.
//!
//! Owns: the QEMU command line for an arch (binary, machine, CPU, console,
//! acceleration: KVM when it works, TCG otherwise), user-mode networking with
//! published ports, extra disks, and running it either attached to the
//! terminal or watching the serial console for an expected text with a
//! timeout. Must not build images.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::platform::Arch;

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub arch: Arch,
    pub boot: BootFrom,
    pub mem_mb: u32,
    pub cpus: u32,
    pub disks: Vec<PathBuf>,
    /// (host port, guest port), TCP, host side on 127.0.0.1.
    pub publish: Vec<(u16, u16)>,
    /// A QMP socket to control the machine (e.g. `system_powerdown`).
    pub qmp: Option<PathBuf>,
    /// UEFI firmware (code, writable variable store) instead of the
    /// machine's default boot (SeaBIOS on x86_64, none on aarch64).
    pub firmware: Option<Firmware>,
    /// Let the guest reboot (two-slot disks: updates and fallbacks) instead
    /// of QEMU exiting when it does.
    pub reboot: bool,
}

/// What the machine starts.
#[derive(Debug, Clone)]
pub enum BootFrom {
    /// QEMU loads the kernel and initrd itself (`-kernel`, `-initrd`, `-append`).
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
    /// UEFI firmware starts `EFI/BOOT/BOOT*.EFI` from this directory, served
    /// as a read-only FAT disk.
    Esp(PathBuf),
    /// The firmware boots this disk image (raw, or qcow2 by extension).
    Disk(PathBuf),
    /// The firmware boots this ISO image from a CD-ROM drive.
    Cdrom(PathBuf),
}

/// UEFI firmware files for a boot.
#[derive(Debug, Clone)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars: PathBuf,
    /// Secure Boot on: the firmware starts only images its db trusts (on
    /// x86_64 this needs SMM, so the machine gets it).
    pub secure_boot: bool,
}

/// Debian's UEFI firmware for `arch` (packages `ovmf`, `qemu-efi-aarch64`):
/// the code image and the pristine variable store to copy. With
/// `secure_boot`, the Secure Boot build and the store with the packages'
/// snakeoil key enrolled as PK, KEK and db (its key and certificate are
/// `PkKek-1-snakeoil.key/.pem` beside them, the key's password `snakeoil`).
pub fn uefi_files(arch: Arch, secure_boot: bool) -> (PathBuf, PathBuf) {
    let (code, vars) = match (arch, secure_boot) {
        (Arch::Amd64, false) => ("OVMF/OVMF_CODE_4M.fd", "OVMF/OVMF_VARS_4M.fd"),
        (Arch::Amd64, true) => (
            "OVMF/OVMF_CODE_4M.secboot.fd",
            "OVMF/OVMF_VARS_4M.snakeoil.fd",
        ),
        (Arch::Arm64, false) => ("AAVMF/AAVMF_CODE.fd", "AAVMF/AAVMF_VARS.fd"),
        (Arch::Arm64, true) => ("AAVMF/AAVMF_CODE.fd", "AAVMF/AAVMF_VARS.snakeoil.fd"),
    };
    let share = Path::new("/usr/share");
    (share.join(code), share.join(vars))
}

/// Makes a fresh copy of the variable store at `vars` for a UEFI boot.
pub fn uefi_firmware(arch: Arch, vars: &Path, secure_boot: bool) -> Result<Firmware, QemuError> {
    let (code, template) = uefi_files(arch, secure_boot);
    for p in [&code, &template] {
        if !p.exists() {
            return Err(QemuError::NoFirmware(p.clone()));
        }
    }
    std::fs::copy(&template, vars).map_err(|source| QemuError::Vars {
        path: vars.to_path_buf(),
        source,
    })?;
    Ok(Firmware {
        code,
        vars: vars.to_path_buf(),
        secure_boot,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("cannot start {program} (install QEMU: ci/setup)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is missing: build the image first (hull build)")]
    Missing(PathBuf),
    #[error("invalid --publish \"{0}\": expected HOSTPORT:GUESTPORT")]
    Publish(String),
    #[error("\"{expected}\" did not appear on the console within {seconds} s{}; the console ends:\n{}", if *.exited { " (QEMU exited)" } else { "" }, tail(console, 40))]
    Timeout {
        expected: String,
        seconds: u64,
        exited: bool,
        console: String,
    },
    #[error(
        "QEMU did not exit by itself within {seconds} s; the console ends:\n{}",
        tail(console, 40)
    )]
    NoExit { seconds: u64, console: String },
    #[error("QEMU failed: {0}")]
    Failed(String),
    #[error("cannot lay out the EFI system partition at {path}")]
    Esp {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("UEFI firmware {0} is missing (install ovmf / qemu-efi-aarch64: ci/setup)")]
    NoFirmware(PathBuf),
    #[error("cannot write the UEFI variable store {path}")]
    Vars {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot tell how {path} boots: {message}")]
    Inspect { path: PathBuf, message: String },
    #[error("{0} boots through a PC BIOS, which aarch64 machines do not have (build iso-efi, raw-efi or uki for arm64)")]
    BiosOnArm64(PathBuf),
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Parses `H:G`.
pub fn parse_publish(text: &str) -> Result<(u16, u16), QemuError> {
    let bad = || QemuError::Publish(text.to_string());
    let (h, g) = text.split_once(':').ok_or_else(bad)?;
    Ok((h.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?))
}

/// Whether KVM works for `arch` on this host. /dev/kvm can exist and open yet
/// fail when QEMU sets up a vCPU (seen in nested VMs), so QEMU itself is tried:
/// a paused KVM machine that is still alive after a moment means KVM works.
pub fn kvm_usable(arch: Arch) -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if arch != Arch::host() {
        return false;
    }
    *ANSWER.get_or_init(|| {
        let opens = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        if !opens {
            return false;
        }
        let (program, machine) = match arch {
            Arch::Amd64 => ("qemu-system-x86_64", "q35"),
            Arch::Arm64 => ("qemu-system-aarch64", "virt"),
        };
        let child = Command::new(program)
            .args([
                "-accel", "kvm", "-cpu", "max", "-M", machine, "-m", "64", "-S",
            ])
            .args([
                "-display",
                "none",
                "-nodefaults",
                "-monitor",
                "none",
                "-serial",
                "none",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            return false;
        };
        std::thread::sleep(Duration::from_millis(1500));
        let alive = matches!(child.try_wait(), Ok(None));
        let _ = child.kill();
        let _ = child.wait();
        alive
    })
}

/// QEMU's format name for a disk image: qcow2 by extension, raw otherwise.
fn drive_format(path: &Path) -> &'static str {
    if path.extension().is_some_and(|e| e == "qcow2") {
        "qcow2"
    } else {
        "raw"
    }
}

/// Whether to ask for KVM: when it works for `arch`, unless
/// `HULL_QEMU_ACCEL=tcg` says not to.
fn use_kvm(arch: Arch) -> bool {
    std::env::var("HULL_QEMU_ACCEL").map_or(true, |v| v != "tcg") && kvm_usable(arch)
}

/// True if QEMU's output says it died of KVM, not of the guest: nested KVM
/// on some hosts refuses MSR values QEMU sets when the firmware resets the
/// machine (seen with OVMF), and QEMU aborts.
fn died_of_kvm(console: &str) -> bool {
    [
        "kvm_buf_set_msrs",
        "failed to set MSR",
        "KVM internal error",
        "kvm run failed",
        "KVM: entry failed",
    ]
    .iter()
    .any(|m| console.contains(m))
}

/// The QEMU program and arguments for `o`.
pub fn command_line(o: &Options) -> (String, Vec<String>) {
    command_line_with(o, use_kvm(o.arch))
}

/// The QEMU program and arguments for `o`, with KVM or TCG alone.
fn command_line_with(o: &Options, kvm: bool) -> (String, Vec<String>) {
    let (program, machine) = match o.arch {
        Arch::Amd64 => ("qemu-system-x86_64", "q35"),
        Arch::Arm64 => ("qemu-system-aarch64", "virt"),
    };
    let secure = o.firmware.as_ref().is_some_and(|f| f.secure_boot);
    // OVMF's Secure Boot build keeps its variables in SMM, out of the OS's reach.
    let machine = if secure && o.arch == Arch::Amd64 {
        format!("{machine},smm=on")
    } else {
        machine.to_string()
    };
    let mut args: Vec<String> = vec!["-M".into(), machine];
    if secure && o.arch == Arch::Amd64 {
        args.extend(["-global", "driver=cfi.pflash01,property=secure,value=on"].map(String::from));
    }
    // KVM first where it may work; QEMU falls back to TCG when it cannot.
    if kvm {
        args.extend(["-accel", "kvm"].map(String::from));
    }
    args.extend(["-accel", "tcg", "-cpu", "max"].map(String::from));
    if let Some(f) = &o.firmware {
        args.extend([
            "-drive".to_string(),
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                f.code.display()
            ),
            "-drive".to_string(),
            format!("if=pflash,format=raw,unit=1,file={}", f.vars.display()),
        ]);
    }
    args.extend([
        "-m".to_string(),
        o.mem_mb.to_string(),
        "-smp".to_string(),
        o.cpus.to_string(),
        "-nographic".to_string(),
    ]);
    if !o.reboot {
        args.push("-no-reboot".to_string());
    }
    if let BootFrom::Kernel {
        kernel,
        initrd,
        cmdline,
    } = &o.boot
    {
        args.extend([
            "-kernel".to_string(),
            kernel.display().to_string(),
            "-initrd".to_string(),
            initrd.display().to_string(),
            "-append".to_string(),
            cmdline.clone(),
        ]);
    }
    args.extend(devices(o));
    // Boot disks come after the --disk ones.
    args.extend(boot_drive(o));
    (program.to_string(), args)
}

/// The network (with `--publish` forwards), the RNG, QMP and `--disk` drives.
fn devices(o: &Options) -> Vec<String> {
    let mut netdev = "user,id=net0".to_string();
    for (h, g) in &o.publish {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"));
    }
    let mut args = vec![
        "-netdev".to_string(),
        netdev,
        "-device".to_string(),
        "virtio-net-pci,netdev=net0".to_string(),
        "-device".to_string(),
        "virtio-rng-pci".to_string(),
    ];
    if let Some(q) = &o.qmp {
        args.extend([
            "-qmp".to_string(),
            format!("unix:{},server=on,wait=off", q.display()),
        ]);
    }
    for (i, d) in o.disks.iter().enumerate() {
        let format = drive_format(d);
        args.extend([
            "-drive".to_string(),
            format!("file={},format={format},if=virtio,index={i}", d.display()),
        ]);
    }
    args
}

/// The drive to boot from, first in the firmware's boot order: an ESP
/// directory as a FAT drive, a disk image, or a CD-ROM on virtio-scsi
/// (SeaBIOS, OVMF and AAVMF all boot from it, and aarch64's virt machine has
/// no IDE). Nothing for a direct kernel boot.
fn boot_drive(o: &Options) -> Vec<String> {
    match &o.boot {
        BootFrom::Esp(dir) => vec![
            "-drive".to_string(),
            format!(
                "if=virtio,index={},format=raw,readonly=on,file=fat:{}",
                o.disks.len(),
                dir.display()
            ),
        ],
        BootFrom::Disk(path) => vec![
            "-drive".to_string(),
            format!(
                "if=none,id=boot,format={},file={}",
                drive_format(path),
                path.display()
            ),
            "-device".to_string(),
            "virtio-blk-pci,drive=boot,bootindex=0".to_string(),
        ],
        BootFrom::Cdrom(path) => vec![
            "-drive".to_string(),
            format!(
                "if=none,id=cd,media=cdrom,readonly=on,format=raw,file={}",
                path.display()
            ),
            "-device".to_string(),
            "virtio-scsi-pci,id=scsi".to_string(),
            "-device".to_string(),
            "scsi-cd,drive=cd,bootindex=0".to_string(),
        ],
        BootFrom::Kernel { .. } => Vec::new(),
    }
}

/// What `hull build` made under `prefix`: `PREFIX-kernel`, `PREFIX-initrd.img`
/// and `PREFIX-cmdline`; or a unified kernel image, `PREFIX.efi` (or PREFIX
/// itself ending in `.efi`), which needs UEFI; or a disk or ISO image.
pub enum ImageFiles {
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
    Efi(PathBuf),
    /// A disk image (`PREFIX-efi.img`, `PREFIX-efi.qcow2`, `PREFIX-bios.img`,
    /// `PREFIX.qcow2`, or PREFIX itself ending in `.img` or `.qcow2`).
    Disk(PathBuf),
    /// An ISO image (`PREFIX.iso`, `PREFIX-efi.iso`, or PREFIX itself).
    Iso(PathBuf),
}

/// Finds what `hull build` made under `prefix`.
pub fn image_files(prefix: &str) -> Result<ImageFiles, QemuError> {
    if Path::new(prefix).is_file() {
        if prefix.ends_with(".iso") {
            return Ok(ImageFiles::Iso(PathBuf::from(prefix)));
        }
        if prefix.ends_with(".img") || prefix.ends_with(".qcow2") {
            return Ok(ImageFiles::Disk(PathBuf::from(prefix)));
        }
    }
    let efi = if prefix.ends_with(".efi") {
        PathBuf::from(prefix)
    } else {
        PathBuf::from(format!("{prefix}.efi"))
    };
    let k = PathBuf::from(format!("{prefix}-kernel"));
    if efi.is_file() && !k.exists() {
        return Ok(ImageFiles::Efi(efi));
    }
    if !k.exists() {
        for disk in [
            format!("{prefix}-efi.img"),
            format!("{prefix}-efi.qcow2"),
            format!("{prefix}-bios.img"),
            format!("{prefix}.qcow2"),
        ] {
            if Path::new(&disk).is_file() {
                return Ok(ImageFiles::Disk(PathBuf::from(disk)));
            }
        }
        for iso in [format!("{prefix}-efi.iso"), format!("{prefix}.iso")] {
            if Path::new(&iso).is_file() {
                return Ok(ImageFiles::Iso(PathBuf::from(iso)));
            }
        }
    }
    let i = PathBuf::from(format!("{prefix}-initrd.img"));
    let c = PathBuf::from(format!("{prefix}-cmdline"));
    for p in [&k, &i, &c] {
        if !p.exists() {
            return Err(QemuError::Missing(p.clone()));
        }
    }
    let cmdline = std::fs::read_to_string(&c).map_err(|_| QemuError::Missing(c.clone()))?;
    Ok(ImageFiles::Kernel {
        kernel: k,
        initrd: i,
        cmdline: cmdline.trim().to_string(),
    })
}

/// True if the disk image at `path` boots through a PC BIOS: its MBR holds
/// boot code (GRUB's, or ISOLINUX's isohybrid code); UEFI disks have none.
pub fn disk_boots_bios(path: &Path) -> Result<bool, QemuError> {
    let sector = if drive_format(path) == "qcow2" {
        // The first sector of a qcow2 image, read by qemu-img itself.
        let tmp = tempfile::NamedTempFile::new().map_err(|e| QemuError::Inspect {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let out = Command::new("qemu-img")
            .args(["dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1"])
            .arg(format!("if={}", path.display()))
            .arg(format!("of={}", tmp.path().display()))
            .output()
            .map_err(|e| QemuError::Inspect {
                path: path.to_path_buf(),
                message: format!("cannot run qemu-img: {e}"),
            })?;
        if !out.status.success() {
            return Err(QemuError::Inspect {
                path: path.to_path_buf(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        std::fs::read(tmp.path()).unwrap_or_default()
    } else {
        let mut buf = vec![0u8; 512];
        let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut buf));
        read.map_err(|e| QemuError::Inspect {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        buf
    };
    Ok(sector.len() >= 512
        && sector[510..512] == [0x55, 0xaa]
        && sector[..440].iter().any(|&b| b != 0))
}

/// Refuses an image that needs a PC BIOS on aarch64, which has none.
pub fn check_firmware(arch: Arch, uefi: bool, path: &Path) -> Result<(), QemuError> {
    if arch == Arch::Arm64 && !uefi {
        return Err(QemuError::BiosOnArm64(path.to_path_buf()));
    }
    Ok(())
}

/// True if the ISO image at `path` boots through UEFI: its El Torito
/// catalog's first entry is for the EFI platform.
pub fn iso_boots_uefi(path: &Path) -> Result<bool, QemuError> {
    let bad = |message: String| QemuError::Inspect {
        path: path.to_path_buf(),
        message,
    };
    let mut f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut block = vec![0u8; 2048];
    let mut read_block = |lba: u64, buf: &mut [u8]| {
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(lba * 2048))
            .and_then(|_| f.read_exact(buf))
            .map_err(|e| bad(e.to_string()))
    };
    read_block(17, &mut block)?;
    if &block[1..6] != b"CD001" || &block[7..30] != b"EL TORITO SPECIFICATION" {
        return Err(bad(
            "not a bootable ISO 9660 image (no El Torito boot record)".into(),
        ));
    }
    let catalog = u32::from_le_bytes([block[71], block[72], block[73], block[74]]);
    read_block(u64::from(catalog), &mut block)?;
    Ok(block[1] == 0xef)
}

/// Lays out an EFI system partition directory under `dir` with `efi` as the
/// removable-media boot loader for `arch`; returns the directory.
pub fn esp_dir(arch: Arch, efi: &Path, dir: &Path) -> Result<PathBuf, QemuError> {
    let boot = dir.join("EFI/BOOT");
    let name = match arch {
        Arch::Amd64 => "BOOTX64.EFI",
        Arch::Arm64 => "BOOTAA64.EFI",
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| QemuError::Esp { path, source }
    };
    std::fs::create_dir_all(&boot).map_err(io(&boot))?;
    let target = boot.join(name);
    std::fs::hard_link(efi, &target)
        .or_else(|_| std::fs::copy(efi, &target).map(|_| ()))
        .map_err(io(&target))?;
    Ok(dir.to_path_buf())
}

/// How a built image boots: what QEMU is given, and whether UEFI firmware
/// starts it. Keeps the temporary ESP a unified kernel image boots from.
pub struct BootChoice {
    pub boot: BootFrom,
    pub uefi: bool,
    _esp: Option<tempfile::TempDir>,
}

/// Chooses how `built` boots on `arch`: a kernel directly (through UEFI only
/// when `want_uefi`); disks and ISOs as they say themselves (a BIOS or UEFI;
/// `want_uefi` insists on UEFI); a unified kernel image from an ESP made next
/// to it for this run, always through UEFI.
pub fn choose_boot(
    built: ImageFiles,
    arch: Arch,
    want_uefi: bool,
) -> Result<BootChoice, QemuError> {
    let choice = |boot, uefi| BootChoice {
        boot,
        uefi,
        _esp: None,
    };
    Ok(match built {
        ImageFiles::Kernel {
            kernel,
            initrd,
            cmdline,
        } => choice(
            BootFrom::Kernel {
                kernel,
                initrd,
                cmdline,
            },
            want_uefi,
        ),
        ImageFiles::Disk(disk) => {
            let uefi = want_uefi || !disk_boots_bios(&disk)?;
            check_firmware(arch, uefi, &disk)?;
            choice(BootFrom::Disk(disk), uefi)
        }
        ImageFiles::Iso(iso) => {
            let uefi = want_uefi || iso_boots_uefi(&iso)?;
            check_firmware(arch, uefi, &iso)?;
            choice(BootFrom::Cdrom(iso), uefi)
        }
        ImageFiles::Efi(efi) => {
            let parent = efi
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::Builder::new()
                .prefix(".hull-esp-")
                .tempdir_in(parent)
                .map_err(|source| QemuError::Esp {
                    path: parent.to_path_buf(),
                    source,
                })?;
            let dir = esp_dir(arch, &efi, tmp.path())?;
            BootChoice {
                boot: BootFrom::Esp(dir),
                uefi: true,
                _esp: Some(tmp),
            }
        }
    })
}

/// The UEFI variable store made fresh for each boot, next to the image.
pub fn efivars_path(prefix: &str) -> PathBuf {
    let stem = [".efi", ".img", ".qcow2", ".iso"]
        .iter()
        .find_map(|x| prefix.strip_suffix(x))
        .unwrap_or(prefix);
    PathBuf::from(format!("{stem}-efivars.fd"))
}

/// Runs attached to the terminal until QEMU exits.
pub fn run_attached(o: &Options) -> Result<(), QemuError> {
    let kvm = use_kvm(o.arch);
    let run = |kvm: bool| {
        let (program, args) = command_line_with(o, kvm);
        Command::new(&program)
            .args(&args)
            .status()
            .map_err(|source| QemuError::Spawn { program, source })
    };
    let mut status = run(kvm)?;
    // QEMU aborting (SIGABRT) under KVM: its own failure, not the guest's.
    if kvm && std::os::unix::process::ExitStatusExt::signal(&status) == Some(6) {
        eprintln!("hull: QEMU aborted under KVM; booting again with TCG");
        status = run(false)?;
    }
    if status.success() {
        Ok(())
    } else {
        Err(QemuError::Failed(status.to_string()))
    }
}

fn line_done(console: &[u8], text: &str) -> bool {
    let s = String::from_utf8_lossy(console);
    s.find(text).is_some_and(|i| s[i..].contains('\n'))
}

/// Boots, copies the console to `echo`, and returns once a whole line with
/// `expected` was printed (QEMU is then stopped); a timeout is an error with
/// the console so far. If QEMU dies of KVM (not of the guest), the machine
/// boots again with TCG within what is left of the timeout.
pub fn run_expect(
    o: &Options,
    expected: &str,
    timeout: Duration,
    until_exit: bool,
    echo: &mut dyn Write,
) -> Result<String, QemuError> {
    let kvm = use_kvm(o.arch);
    let deadline = Instant::now() + timeout;
    match expect_once(o, kvm, expected, deadline, timeout, until_exit, echo) {
        Err(QemuError::Timeout {
            exited: true,
            console,
            ..
        }) if kvm && died_of_kvm(&console) => {
            eprintln!("hull: QEMU failed under KVM; booting again with TCG");
            expect_once(o, false, expected, deadline, timeout, until_exit, echo)
        }
        other => other,
    }
}

/// Starts QEMU with its output piped; input piped to hull is typed on the
/// serial console (a terminal is not: QEMU would take it over).
fn spawn(program: &str, args: &[String]) -> Result<std::process::Child, QemuError> {
    let input = if std::io::stdin().is_terminal() {
        Stdio::null()
    } else {
        Stdio::inherit()
    };
    Command::new(program)
        .args(args)
        .stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| QemuError::Spawn {
            program: program.to_string(),
            source,
        })
}

/// The child's stdout and stderr as chunks on one channel, which closes
/// when both streams end (QEMU exited).
fn console_chunks(child: &mut std::process::Child) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let streams = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for mut stream in streams.into_iter().flatten() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    rx
}

/// What a boot printed, whether the marker came, and whether QEMU exited.
struct Watched {
    console: Vec<u8>,
    found: bool,
    exited: bool,
}

/// Reads the console until the marker's line is complete (unless
/// `until_exit`), QEMU exits, or `deadline` passes; echoes it as it comes.
fn watch(
    rx: &mpsc::Receiver<Vec<u8>>,
    expected: &str,
    deadline: Instant,
    until_exit: bool,
    echo: &mut dyn Write,
) -> Watched {
    let mut console = Vec::new();
    let mut exited = false;
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(chunk) => {
                let _ = echo.write_all(&chunk);
                console.extend_from_slice(&chunk);
                if !until_exit && line_done(&console, expected) {
                    break true;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                exited = true;
                break line_done(&console, expected);
            }
        }
    };
    let _ = echo.flush();
    Watched {
        console,
        found,
        exited,
    }
}

/// One boot for [`run_expect`], ending by `deadline`.
fn expect_once(
    o: &Options,
    kvm: bool,
    expected: &str,
    deadline: Instant,
    timeout: Duration,
    until_exit: bool,
    echo: &mut dyn Write,
) -> Result<String, QemuError> {
    let (program, args) = command_line_with(o, kvm);
    let mut child = spawn(&program, &args)?;
    let rx = console_chunks(&mut child);
    let w = watch(&rx, expected, deadline, until_exit, echo);
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&w.console).into_owned();
    if until_exit && !w.exited {
        return Err(QemuError::NoExit {
            seconds: timeout.as_secs(),
            console: text,
        });
    }
    if w.found {
        Ok(text)
    } else {
        Err(QemuError::Timeout {
            expected: expected.to_string(),
            seconds: timeout.as_secs(),
            exited: w.exited,
            console: text,
        })
    }
}

/// The console log file next to an image prefix, for keeping on failure.
pub fn log_path(prefix: &Path) -> PathBuf {
    PathBuf::from(format!("{}-console.log", prefix.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_per_arch() {
        let o = Options {
            arch: Arch::Arm64,
            boot: BootFrom::Kernel {
                kernel: "k".into(),
                initrd: "i".into(),
                cmdline: "console=ttyAMA0".into(),
            },
            mem_mb: 256,
            cpus: 2,
            disks: vec!["data.qcow2".into()],
            publish: vec![(2222, 22)],
            qmp: None,
            reboot: false,
            firmware: None,
        };
        let (program, args) = command_line(&o);
        assert_eq!(program, "qemu-system-aarch64");
        let joined = args.join(" ");
        assert!(joined.contains("-M virt"), "{joined}");
        assert!(joined.contains("-accel tcg"), "{joined}");
        assert!(
            joined.contains("hostfwd=tcp:127.0.0.1:2222-:22"),
            "{joined}"
        );
        assert!(
            joined.contains("file=data.qcow2,format=qcow2,if=virtio"),
            "{joined}"
        );
        assert!(joined.contains("-append console=ttyAMA0"), "{joined}");
        let uefi = Options {
            firmware: Some(Firmware {
                code: "code.fd".into(),
                vars: "vars.fd".into(),
                secure_boot: false,
            }),
            ..o
        };
        let joined = command_line(&uefi).1.join(" ");
        assert!(
            joined.contains("if=pflash,format=raw,unit=0,readonly=on,file=code.fd")
                && joined.contains("if=pflash,format=raw,unit=1,file=vars.fd"),
            "{joined}"
        );
        assert!(command_line_with(&uefi, false)
            .1
            .join(" ")
            .contains("-accel tcg -cpu max"));
        assert!(command_line_with(&uefi, true)
            .1
            .join(" ")
            .contains("-accel kvm -accel tcg"));
        assert!(died_of_kvm(
            "qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069"
        ));
        assert!(!died_of_kvm("Kernel panic - not syncing"));
        assert_eq!(parse_publish("8080:80").expect("ok"), (8080, 80));
        assert!(parse_publish("80").is_err());
        let cd = Options {
            boot: BootFrom::Cdrom("x.iso".into()),
            firmware: None,
            ..uefi
        };
        let joined = command_line(&cd).1.join(" ");
        assert!(
            joined.contains("media=cdrom,readonly=on,format=raw,file=x.iso")
                && joined.contains("scsi-cd,drive=cd,bootindex=0"),
            "{joined}"
        );
    }

    #[test]
    fn bios_disks_have_mbr_code_and_uefi_disks_none() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut sector = vec![0u8; 512];
        sector[510] = 0x55;
        sector[511] = 0xaa;
        let efi = dir.path().join("efi.img");
        std::fs::write(&efi, &sector).expect("write");
        assert!(!disk_boots_bios(&efi).expect("reads"));
        sector[0] = 0xeb;
        let bios = dir.path().join("bios.img");
        std::fs::write(&bios, &sector).expect("write");
        assert!(disk_boots_bios(&bios).expect("reads"));
        let iso = dir.path().join("x.iso");
        std::fs::write(&iso, &sector).expect("write");
        assert!(iso_boots_uefi(&iso).is_err(), "not an ISO");
        assert!(check_firmware(Arch::Arm64, false, &bios).is_err());
        assert!(check_firmware(Arch::Arm64, true, &efi).is_ok());
        assert!(check_firmware(Arch::Amd64, false, &bios).is_ok());
    }
}
