//! `hull run qemu`: boot a built image.

use std::time::Duration;

use anyhow::Context as _;

use super::Context;
use crate::cli::RunCommand;
use crate::platform::Arch;
use crate::qemu::{self, Options};

pub fn run(cx: &Context, cmd: RunCommand) -> anyhow::Result<()> {
    let RunCommand::Qemu(args) = cmd;
    let arch = Arch::from_flag(args.arch.as_deref()).map_err(anyhow::Error::msg)?;
    let built = qemu::image_files(&args.prefix)?;
    let choice = qemu::choose_boot(built, arch, args.uefi || args.secure_boot)?;
    let publish = args
        .publish
        .iter()
        .map(|p| qemu::parse_publish(p))
        .collect::<Result<Vec<_>, _>>()?;
    let firmware = if choice.uefi {
        Some(qemu::uefi_firmware(
            arch,
            &qemu::efivars_path(&args.prefix),
            args.secure_boot,
        )?)
    } else {
        None
    };
    let options = Options {
        firmware,
        arch,
        boot: choice.boot.clone(),
        mem_mb: args.mem,
        cpus: args.cpus,
        disks: args.disk.clone(),
        publish,
        qmp: args.qmp.clone(),
        reboot: args.reboot,
    };
    match &args.expect {
        None => Ok(qemu::run_attached(&options)?),
        Some(text) => expect(cx, &options, text, &args),
    }
}

/// Boots until `text` appears on the console; on a timeout the console log
/// is kept next to the image.
fn expect(
    cx: &Context,
    options: &Options,
    text: &str,
    args: &crate::cli::RunQemuArgs,
) -> anyhow::Result<()> {
    let mut sink: Box<dyn std::io::Write> = if cx.quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stdout())
    };
    let timeout = Duration::from_secs(args.timeout);
    match qemu::run_expect(options, text, timeout, args.until_exit, &mut *sink) {
        Ok(_) => Ok(()),
        Err(e @ (qemu::QemuError::Timeout { .. } | qemu::QemuError::NoExit { .. })) => {
            let (qemu::QemuError::Timeout { console, .. }
            | qemu::QemuError::NoExit { console, .. }) = &e
            else {
                return Err(e.into());
            };
            let log = qemu::log_path(std::path::Path::new(&args.prefix));
            std::fs::write(&log, console)
                .with_context(|| format!("cannot keep the console log at {}", log.display()))?;
            eprintln!("console log kept at {}", log.display());
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}
