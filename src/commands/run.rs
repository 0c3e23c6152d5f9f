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
    let (kernel, initrd, cmdline) = qemu::image_files(&args.prefix)?;
    let publish = args
        .publish
        .iter()
        .map(|p| qemu::parse_publish(p))
        .collect::<Result<Vec<_>, _>>()?;
    // A fresh variable store next to the image for each UEFI boot.
    let firmware = if args.uefi {
        let vars = std::path::PathBuf::from(format!("{}-efivars.fd", args.prefix));
        Some(qemu::uefi_firmware(arch, &vars)?)
    } else {
        None
    };
    let options = Options {
        firmware,
        arch,
        kernel,
        initrd,
        cmdline,
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
