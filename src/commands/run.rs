//! `hull run qemu`: boot a built image.

use std::time::Duration;

use anyhow::Context as _;

use super::Context;
use crate::cli::RunCommand;
use crate::platform::Arch;
use crate::qemu::{self, Options};

pub fn run(cx: &Context, cmd: RunCommand) -> anyhow::Result<()> {
    let RunCommand::Qemu(args) = cmd;
    let arch = match &args.arch {
        Some(a) => a.parse().map_err(anyhow::Error::msg)?,
        None => Arch::host(),
    };
    let built = qemu::image_files(&args.prefix)?;
    // A unified kernel image is started by UEFI firmware from an ESP made
    // next to it for this run.
    let esp_tmp;
    let (boot, uefi) = match built {
        qemu::Built::Kernel {
            kernel,
            initrd,
            cmdline,
        } => (
            qemu::BootFrom::Kernel {
                kernel,
                initrd,
                cmdline,
            },
            args.uefi,
        ),
        // Disks and ISOs say themselves whether a BIOS or UEFI boots them;
        // --uefi insists on UEFI.
        qemu::Built::Disk(disk) => {
            let uefi = args.uefi || !qemu::disk_boots_bios(&disk)?;
            qemu::check_firmware(arch, uefi, &disk)?;
            (qemu::BootFrom::Disk(disk), uefi)
        }
        qemu::Built::Iso(iso) => {
            let uefi = args.uefi || qemu::iso_boots_uefi(&iso)?;
            qemu::check_firmware(arch, uefi, &iso)?;
            (qemu::BootFrom::Cdrom(iso), uefi)
        }
        qemu::Built::Efi(efi) => {
            let parent = efi.parent().filter(|p| !p.as_os_str().is_empty());
            esp_tmp = tempfile::Builder::new()
                .prefix(".hull-esp-")
                .tempdir_in(parent.unwrap_or(std::path::Path::new(".")))
                .context("cannot make a temporary EFI system partition")?;
            let dir = qemu::esp_dir(arch, &efi, esp_tmp.path())?;
            (qemu::BootFrom::Esp(dir), true)
        }
    };
    let publish = args
        .publish
        .iter()
        .map(|p| qemu::parse_publish(p))
        .collect::<Result<Vec<_>, _>>()?;
    // A fresh variable store next to the image for each UEFI boot.
    let firmware = if uefi {
        let stem = [".efi", ".img", ".qcow2", ".iso"]
            .iter()
            .find_map(|x| args.prefix.strip_suffix(x))
            .unwrap_or(&args.prefix);
        let vars = std::path::PathBuf::from(format!("{stem}-efivars.fd"));
        Some(qemu::uefi_firmware(arch, &vars)?)
    } else {
        None
    };
    let options = Options {
        firmware,
        arch,
        boot,
        mem_mb: args.mem,
        cpus: args.cpus,
        disks: args.disk,
        publish,
        qmp: args.qmp,
    };
    match &args.expect {
        None => qemu::run_attached(&options)?,
        Some(text) => {
            let mut sink: Box<dyn std::io::Write> = if cx.quiet {
                Box::new(std::io::sink())
            } else {
                Box::new(std::io::stdout())
            };
            match qemu::run_expect(
                &options,
                text,
                Duration::from_secs(args.timeout),
                args.until_exit,
                &mut *sink,
            ) {
                Ok(_) => {}
                Err(e @ (qemu::QemuError::Timeout { .. } | qemu::QemuError::NoExit { .. })) => {
                    if let qemu::QemuError::Timeout { console, .. }
                    | qemu::QemuError::NoExit { console, .. } = &e
                    {
                        let log = qemu::log_path(std::path::Path::new(&args.prefix));
                        std::fs::write(&log, console).with_context(|| {
                            format!("cannot keep the console log at {}", log.display())
                        })?;
                        eprintln!("console log kept at {}", log.display());
                    }
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
