//! `linux` of a container's runtime spec: namespaces (the host's, except a
//! new pid and mount namespace, unless the entry says otherwise), the cgroup
//! and its resources with a device allowlist and a default pids limit, device nodes, sysctls, masked
//! and read-only paths (runc's unless the entry lists its own), propagation,
//! seccomp and id mappings.

use std::collections::HashMap;

use oci_spec::runtime::{
    Linux, LinuxBuilder, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxIdMapping, LinuxIdMappingBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResources,
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

use super::{from_name, SpecError};
use crate::manifest::types::{Device, IdMapping, Seccomp, SeccompArg, SeccompSyscall};
use crate::manifest::values::Namespace;
use crate::manifest::ImageConfig;

/// Paths hidden from every container that does not list its own
/// `maskedPaths` (runc's and containerd's defaults): a directory gets a
/// read-only tmpfs over it, a file `/dev/null`.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Paths read-only in every container that does not list its own
/// `readonlyPaths` (runc's defaults); sysctls are written before.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The most processes (and threads) a container's cgroup may hold unless
/// its `resources.pids.limit` says otherwise: enough for any service, and
/// what keeps a fork bomb from taking the device down.
pub const DEFAULT_PIDS_LIMIT: i64 = 1024;

fn listed_or(written: Option<&Vec<String>>, default: &[&str]) -> Vec<String> {
    written
        .cloned()
        .unwrap_or_else(|| default.iter().map(|p| p.to_string()).collect())
}

/// The seccomp action for a profile that names none.
pub const DEFAULT_SECCOMP_ACTION: &str = "SCMP_ACT_ALLOW";
/// The action of a seccomp rule that names none.
pub const DEFAULT_SYSCALL_ACTION: &str = "SCMP_ACT_ERRNO";
/// The comparison of a syscall argument condition that names none.
pub const DEFAULT_ARG_OP: &str = "SCMP_CMP_EQ";

/// The `linux` section for the container `name`.
pub fn linux(name: &str, c: &ImageConfig) -> Result<Linux, SpecError> {
    let devices = devices(c)?;
    let mut b = LinuxBuilder::default()
        .namespaces(namespaces(c)?)
        .resources(resources(c)?)
        .cgroups_path(
            c.cgroups_path
                .clone()
                .unwrap_or_else(|| hull_contract::layout::default_cgroups_path(name)),
        );
    if !devices.is_empty() {
        b = b.devices(devices);
    }
    if let Some(p) = &c.rootfs_propagation {
        b = b.rootfs_propagation(p.value.clone());
    }
    if let Some(sc) = &c.seccomp {
        b = b.seccomp(seccomp(sc)?);
    }
    if let Some(maps) = &c.uid_mappings {
        b = b.uid_mappings(id_mappings(maps)?);
    }
    if let Some(maps) = &c.gid_mappings {
        b = b.gid_mappings(id_mappings(maps)?);
    }
    let mut linux = b.build()?;
    // The defaults unless the entry lists its own (an empty list: none).
    linux.set_masked_paths(Some(listed_or(
        c.masked_paths.as_ref(),
        DEFAULT_MASKED_PATHS,
    )));
    linux.set_readonly_paths(Some(listed_or(
        c.readonly_paths.as_ref(),
        DEFAULT_READONLY_PATHS,
    )));
    linux.set_sysctl(c.sysctl.as_ref().map(|s| {
        s.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>()
    }));
    Ok(linux)
}

/// One namespace: none (the host's), a new one, or the one at a path.
fn namespace(
    typ: LinuxNamespaceType,
    setting: Option<&Namespace>,
    default_new: bool,
) -> Result<Option<LinuxNamespace>, SpecError> {
    let b = LinuxNamespaceBuilder::default().typ(typ);
    Ok(match setting {
        Some(Namespace::Host) => None,
        Some(Namespace::New) => Some(b.build()?),
        Some(Namespace::Path(p)) => Some(b.path(p).build()?),
        None if default_new => Some(b.build()?),
        None => None,
    })
}

fn namespaces(c: &ImageConfig) -> Result<Vec<LinuxNamespace>, SpecError> {
    let asked = [
        (LinuxNamespaceType::Pid, c.pid.as_ref(), true),
        (LinuxNamespaceType::Network, c.net.as_ref(), false),
        (LinuxNamespaceType::Ipc, c.ipc.as_ref(), false),
        (LinuxNamespaceType::Uts, c.uts.as_ref(), false),
        (LinuxNamespaceType::User, c.userns.as_ref(), false),
    ];
    let mut out = Vec::new();
    for (typ, setting, default_new) in asked {
        out.extend(namespace(typ, setting, default_new)?);
    }
    out.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()?,
    );
    Ok(out)
}

fn device_type(d: &Device) -> Result<LinuxDeviceType, SpecError> {
    let written = d.device_type.as_ref().map_or("", |t| t.value.as_str());
    from_name("devices", "device type", written)
}

/// LinuxKit's `path: all`: no node, every device of the entry's type allowed.
const ALL_DEVICES: &str = "all";

fn is_all(d: &Device) -> bool {
    d.path.as_ref().is_some_and(|p| p.value == ALL_DEVICES)
}

/// Device nodes made in the container (not for `path: all`).
fn devices(c: &ImageConfig) -> Result<Vec<LinuxDevice>, SpecError> {
    c.devices
        .iter()
        .flatten()
        .filter(|d| !is_all(d))
        .map(|d| {
            let mut b = LinuxDeviceBuilder::default()
                .path(d.path.as_ref().map(|p| p.value.clone()).unwrap_or_default())
                .typ(device_type(d)?)
                .major(d.major.unwrap_or(0))
                .minor(d.minor.unwrap_or(0));
            if let Some(m) = d.mode {
                b = b.file_mode(m.0);
            }
            Ok(b.build()?)
        })
        .collect()
}

/// The devices every container may use (runc's default allowlist): making
/// any node (opening it is another matter), `/dev/null`, `zero`, `full`,
/// `random`, `urandom`, `tty`, `ptmx` and the pseudo-terminals:
/// `(type, major, minor, access)`, `None` for any.
pub const DEFAULT_ALLOWED_DEVICES: &[(LinuxDeviceType, Option<i64>, Option<i64>, &str)] = &[
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"),
    (LinuxDeviceType::C, Some(136), None, "rwm"),
];

fn allow_rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup, SpecError> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    Ok(b.build()?)
}

/// The device cgroup rules: everything denied, the default allowlist, then
/// each of the entry's devices allowed (all of a type for `path: all`), then
/// the entry's own `resources.devices` rules, a later rule overriding an
/// earlier one.
fn device_rules(
    c: &ImageConfig,
    own: Vec<LinuxDeviceCgroup>,
) -> Result<Vec<LinuxDeviceCgroup>, SpecError> {
    let mut rules = vec![LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?];
    for (typ, major, minor, access) in DEFAULT_ALLOWED_DEVICES {
        rules.push(allow_rule(*typ, *major, *minor, access)?);
    }
    for d in c.devices.iter().flatten() {
        let rule = if is_all(d) {
            allow_rule(device_type(d)?, None, None, "rwm")?
        } else {
            allow_rule(
                device_type(d)?,
                Some(d.major.unwrap_or(0)),
                Some(d.minor.unwrap_or(0)),
                "rwm",
            )?
        };
        rules.push(rule);
    }
    rules.extend(own);
    Ok(rules)
}

/// `resources` as written (the manifest's type mirrors the runtime spec's
/// field for field, so serde carries it over) with the device rules, and
/// the default pids limit unless it has one.
fn resources(c: &ImageConfig) -> Result<LinuxResources, SpecError> {
    let mut r: LinuxResources = match &c.resources {
        None => LinuxResources::default(),
        Some(written) => serde_json::to_value(written)
            .and_then(serde_json::from_value)
            .map_err(|source| SpecError::Convert {
                field: "resources",
                source,
            })?,
    };
    let own = r.devices().clone().unwrap_or_default();
    r.set_devices(Some(device_rules(c, own)?));
    if r.pids().is_none() {
        r.set_pids(Some(
            LinuxPidsBuilder::default()
                .limit(DEFAULT_PIDS_LIMIT)
                .build()?,
        ));
    }
    Ok(r)
}

fn id_mappings(maps: &[IdMapping]) -> Result<Vec<LinuxIdMapping>, SpecError> {
    maps.iter()
        .map(|m| {
            Ok(LinuxIdMappingBuilder::default()
                .container_id(m.container_id.unwrap_or(0))
                .host_id(m.host_id.unwrap_or(0))
                .size(m.size.unwrap_or(0))
                .build()?)
        })
        .collect()
}

/// The manifest's `seccomp` (a Hull extension) as OCI `linux.seccomp`.
fn seccomp(sc: &Seccomp) -> Result<LinuxSeccomp, SpecError> {
    let action = sc
        .default_action
        .as_ref()
        .map_or(DEFAULT_SECCOMP_ACTION, |a| a.as_str());
    let mut b = LinuxSeccompBuilder::default()
        .default_action(from_name::<LinuxSeccompAction>(
            "seccomp.defaultAction",
            "seccomp action",
            action,
        )?)
        .syscalls(
            sc.syscalls
                .iter()
                .flatten()
                .map(syscall)
                .collect::<Result<Vec<_>, _>>()?,
        );
    if let Some(e) = sc.default_errno_ret {
        b = b.default_errno_ret(e);
    }
    Ok(b.build()?)
}

fn syscall(r: &SeccompSyscall) -> Result<LinuxSyscall, SpecError> {
    let action = r
        .action
        .as_ref()
        .map_or(DEFAULT_SYSCALL_ACTION, |a| a.as_str());
    let mut b = LinuxSyscallBuilder::default()
        .names(r.names.clone().unwrap_or_default())
        .action(from_name::<LinuxSeccompAction>(
            "seccomp.syscalls.action",
            "seccomp action",
            action,
        )?);
    if let Some(e) = r.errno_ret {
        b = b.errno_ret(e);
    }
    if let Some(args) = &r.args {
        b = b.args(args.iter().map(arg).collect::<Result<Vec<_>, _>>()?);
    }
    Ok(b.build()?)
}

fn arg(a: &SeccompArg) -> Result<oci_spec::runtime::LinuxSeccompArg, SpecError> {
    let op = a.op.as_ref().map_or(DEFAULT_ARG_OP, |o| o.as_str());
    let mut b = LinuxSeccompArgBuilder::default()
        .index(usize::try_from(a.index.as_ref().map_or(0, |i| i.value)).unwrap_or(usize::MAX))
        .value(a.value.unwrap_or(0))
        .op(from_name::<LinuxSeccompOperator>(
            "seccomp.syscalls.args.op",
            "seccomp operator",
            op,
        )?);
    if let Some(two) = a.value_two {
        b = b.value_two(two);
    }
    Ok(b.build()?)
}
