//! `process` of a container's runtime spec: command, environment, working
//! directory, identity, capabilities, rlimits, no_new_privs, OOM score.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilitiesBuilder, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType, Process, ProcessBuilder, User, UserBuilder,
};

use super::settings::{id, image_user, ImageDefaults};
use super::{from_name, SpecError};
use crate::manifest::values::Capability as Cap;
use crate::manifest::ImageConfig;

/// `PATH` when neither the entry nor the image sets one.
pub use hull_contract::DEFAULT_PATH;

/// Every capability `capabilities: [all]` grants, by name.
pub const ALL_CAPS: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];

/// The process: the entry's settings over the image's defaults.
pub fn process(
    c: &ImageConfig,
    image: &ImageDefaults,
    ids: &BTreeMap<String, u32>,
) -> Result<Process, SpecError> {
    let granted = capability_set(c.capabilities.iter().flatten())?;
    let ambient = capability_set(c.ambient.iter().flatten())?;
    let mut b = ProcessBuilder::default()
        .terminal(false)
        .user(user(c, image, ids)?)
        .args(args(c, image))
        .env(env(c, image))
        .cwd(cwd(c, image))
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(granted.clone())
                .effective(granted.clone())
                .permitted(granted)
                // Inheritable only what ambient needs (it must hold them):
                // a full inheritable set lets a file's inheritable
                // capabilities raise a program's (CVE-2022-24769).
                .inheritable(ambient.clone())
                .ambient(ambient)
                .build()?,
        )
        .rlimits(rlimits(c)?)
        .no_new_privileges(c.no_new_privileges.unwrap_or(false));
    if let Some(o) = c.oom_score_adj {
        b = b.oom_score_adj(o);
    }
    Ok(b.build()?)
}

/// The entry's `command`, or the image's entrypoint followed by its cmd.
fn args(c: &ImageConfig, image: &ImageDefaults) -> Vec<String> {
    match &c.command {
        Some(cmd) => cmd.clone(),
        None => image
            .entrypoint
            .iter()
            .flatten()
            .chain(image.cmd.iter().flatten())
            .cloned()
            .collect(),
    }
}

/// The entry's `env` or the image's, with [`DEFAULT_PATH`] first when
/// neither sets `PATH`.
fn env(c: &ImageConfig, image: &ImageDefaults) -> Vec<String> {
    let mut env: Vec<String> = match &c.env {
        Some(e) => e.iter().map(|s| s.value.clone()).collect(),
        None => image.env.clone().unwrap_or_default(),
    };
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    env
}

fn cwd(c: &ImageConfig, image: &ImageDefaults) -> String {
    c.cwd
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into())
}

/// uid and gid: the entry's, else the image's numeric `User`, else root.
fn user(
    c: &ImageConfig,
    image: &ImageDefaults,
    ids: &BTreeMap<String, u32>,
) -> Result<User, SpecError> {
    let (img_uid, img_gid) = image_user(image.user.as_deref());
    let uid = id(c.uid.as_ref().map(|s| &s.value), ids)
        .or(img_uid)
        .unwrap_or(0);
    let gid = id(c.gid.as_ref().map(|s| &s.value), ids)
        .or(img_gid)
        .unwrap_or(0);
    let additional: Vec<u32> = c
        .additional_gids
        .iter()
        .flatten()
        .filter_map(|g| id(Some(&g.value), ids))
        .collect();
    let mut b = UserBuilder::default().uid(uid).gid(gid);
    if !additional.is_empty() {
        b = b.additional_gids(additional);
    }
    Ok(b.build()?)
}

/// Capabilities by name, `all` expanded to [`ALL_CAPS`].
pub fn capability_set<'a>(
    written: impl Iterator<Item = &'a Cap>,
) -> Result<Capabilities, SpecError> {
    let mut out = Capabilities::new();
    let mut add = |name: &str| -> Result<(), SpecError> {
        out.insert(from_name::<Capability>("capabilities", "capability", name)?);
        Ok(())
    };
    for cap in written {
        if cap.0 == "all" {
            ALL_CAPS.iter().try_for_each(|name| add(name))?;
        } else {
            add(&cap.0)?;
        }
    }
    Ok(out)
}

fn rlimits(c: &ImageConfig) -> Result<Vec<PosixRlimit>, SpecError> {
    c.rlimits
        .iter()
        .flatten()
        .map(|r| {
            Ok(PosixRlimitBuilder::default()
                .typ(from_name::<PosixRlimitType>("rlimits", "rlimit", &r.name)?)
                .soft(r.soft)
                .hard(r.hard)
                .build()?)
        })
        .collect()
}
