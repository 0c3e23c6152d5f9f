//! A container's `config.json` (OCI runtime spec) and `runtime.json`.
//!
//! Owns: merging a container's settings (image config, then the image's
//! `org.mobyproject.config` label, then the manifest entry; `.add` lists
//! appended) and turning them into the runtime spec with LinuxKit's defaults:
//! no capabilities unless granted, its default mounts, the host's namespaces
//! except a new pid (and mount) namespace. Must not touch the tree.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::manifest::types::{ImageConfig, Mount};
use crate::manifest::values::{Id, Namespace};

/// What the image config says about running it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageDefaults {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Reads the `config` section of an image config blob.
pub fn image_defaults(config_json: &[u8]) -> ImageDefaults {
    #[derive(Deserialize)]
    struct Outer {
        #[serde(default)]
        config: Option<ImageDefaults>,
    }
    serde_json::from_slice::<Outer>(config_json)
        .ok()
        .and_then(|o| o.config)
        .unwrap_or_default()
}

/// The label's settings overridden by the manifest entry's, field by field;
/// `capabilities.add` and `binds.add` appended.
pub fn merge(label: &ImageConfig, entry: &ImageConfig) -> ImageConfig {
    macro_rules! pick {
        ($($f:ident),*) => { ImageConfig { $($f: entry.$f.clone().or_else(|| label.$f.clone()),)* pos: entry.pos.clone() } };
    }
    let mut out = pick!(
        capabilities,
        capabilities_add,
        ambient,
        mounts,
        binds,
        binds_add,
        tmpfs,
        devices,
        command,
        env,
        cwd,
        net,
        pid,
        ipc,
        uts,
        userns,
        hostname,
        readonly,
        masked_paths,
        readonly_paths,
        uid,
        gid,
        additional_gids,
        no_new_privileges,
        oom_score_adj,
        rootfs_propagation,
        cgroups_path,
        resources,
        sysctl,
        rlimits,
        uid_mappings,
        gid_mappings,
        annotations,
        runtime,
        restart,
        timeout,
        seccomp
    );
    for add in [&label.capabilities_add, &entry.capabilities_add]
        .into_iter()
        .flatten()
    {
        out.capabilities
            .get_or_insert_with(Vec::new)
            .extend(add.iter().cloned());
    }
    for add in [&label.binds_add, &entry.binds_add].into_iter().flatten() {
        out.binds
            .get_or_insert_with(Vec::new)
            .extend(add.iter().cloned());
    }
    out.capabilities_add = None;
    out.binds_add = None;
    out
}

const ALL_CAPS: &[&str] = &[
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

fn default_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "nodev", "noexec", "relatime"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ]
}

fn mount_json(m: &Mount) -> Value {
    let cgroup = matches!(m.mount_type.as_deref(), Some("cgroup" | "cgroup2"));
    let dest = m.destination.as_ref().map(|d| {
        if d.starts_with('/') {
            d.value.clone()
        } else {
            format!("/{}", d.value)
        }
    });
    let dest = dest.unwrap_or_else(|| {
        if cgroup {
            "/sys/fs/cgroup".into()
        } else {
            "/".into()
        }
    });
    let mut v = json!({"destination": dest});
    if let Some(t) = &m.mount_type {
        v["type"] = json!(t);
    }
    if let Some(s) = &m.source {
        v["source"] = json!(s);
    }
    if let Some(o) = &m.options {
        v["options"] = json!(o);
    }
    v
}

/// Where a bind source lives on the host: volumes under `/containers/volumes`.
fn bind_source(source: &str) -> String {
    if source.starts_with('/') {
        source.to_string()
    } else {
        format!("/containers/volumes/{source}")
    }
}

fn namespace(kind: &str, setting: Option<&Namespace>, default_new: bool) -> Option<Value> {
    match setting {
        Some(Namespace::Host) => None,
        Some(Namespace::New) => Some(json!({"type": kind})),
        Some(Namespace::Path(p)) => Some(json!({"type": kind, "path": p})),
        None if default_new => Some(json!({"type": kind})),
        None => None,
    }
}

/// Numeric ids for names: each container name used as a uid/gid gets one,
/// allocated in name order from 100 up so builds are reproducible.
pub fn allocate_ids(names: &[String]) -> BTreeMap<String, u32> {
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    sorted.dedup();
    sorted
        .into_iter()
        .zip(100u32..)
        .map(|(n, id)| (n.clone(), id))
        .collect()
}

fn id(value: Option<&Id>, ids: &BTreeMap<String, u32>) -> Option<u32> {
    match value? {
        Id::Number(n) => Some(*n),
        Id::Name(n) => ids.get(n).copied(),
    }
}

/// `uid[:gid]` from an image's `User`, when numeric.
fn image_user(user: Option<&str>) -> (Option<u32>, Option<u32>) {
    let Some(u) = user.filter(|u| !u.is_empty()) else {
        return (None, None);
    };
    let (a, b) = u.split_once(':').map_or((u, None), |(a, b)| (a, Some(b)));
    (a.parse().ok(), b.and_then(|b| b.parse().ok()))
}

/// The runtime spec for a container: its settings `c` over `image`'s defaults.
pub fn runtime_spec(
    name: &str,
    c: &ImageConfig,
    image: &ImageDefaults,
    ids: &BTreeMap<String, u32>,
) -> Result<oci_spec::runtime::Spec, serde_json::Error> {
    let args: Vec<String> = match &c.command {
        Some(cmd) => cmd.clone(),
        None => image
            .entrypoint
            .iter()
            .flatten()
            .chain(image.cmd.iter().flatten())
            .cloned()
            .collect(),
    };
    let mut env: Vec<String> = match &c.env {
        Some(e) => e.iter().map(|s| s.value.clone()).collect(),
        None => image.env.clone().unwrap_or_default(),
    };
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
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
    let caps: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for cap in c.capabilities.iter().flatten() {
            if cap.0 == "all" {
                v.extend(ALL_CAPS.iter().map(|s| s.to_string()));
            } else {
                v.push(cap.0.clone());
            }
        }
        v.sort();
        v.dedup();
        v
    };
    let ambient: Vec<String> = c.ambient.iter().flatten().map(|a| a.0.clone()).collect();
    let rlimits: Vec<Value> = c
        .rlimits
        .iter()
        .flatten()
        .map(|r| json!({"type": r.name, "soft": r.soft, "hard": r.hard}))
        .collect();

    // Mounts: defaults, replaced by destination by the entry's own.
    let mut mounts: BTreeMap<String, Value> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut add = |v: Value, order: &mut Vec<String>| {
        let d = v["destination"].as_str().unwrap_or("/").to_string();
        if !mounts.contains_key(&d) {
            order.push(d.clone());
        }
        mounts.insert(d, v);
    };
    for m in default_mounts() {
        add(m, &mut order);
    }
    for m in c.mounts.iter().flatten() {
        add(mount_json(m), &mut order);
    }
    for b in c.binds.iter().flatten() {
        let mut opts = vec!["rbind".to_string()];
        opts.extend(b.value.options.iter().cloned());
        if !opts.iter().any(|o| o == "ro" || o == "rw") {
            opts.push("rw".into());
        }
        add(
            json!({"destination": b.value.destination, "type": "bind", "source": bind_source(&b.value.source), "options": opts}),
            &mut order,
        );
    }
    for t in c.tmpfs.iter().flatten() {
        let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
        opts.extend(t.options.iter().cloned());
        add(
            json!({"destination": t.destination, "type": "tmpfs", "source": "tmpfs", "options": opts}),
            &mut order,
        );
    }
    let mounts: Vec<Value> = order
        .iter()
        .filter_map(|d| mounts.get(d).cloned())
        .collect();

    let namespaces: Vec<Value> = [
        namespace("pid", c.pid.as_ref(), true),
        namespace("network", c.net.as_ref(), false),
        namespace("ipc", c.ipc.as_ref(), false),
        namespace("uts", c.uts.as_ref(), false),
        namespace("user", c.userns.as_ref(), false),
        Some(json!({"type": "mount"})),
    ]
    .into_iter()
    .flatten()
    .collect();

    let devices: Vec<Value> = c
        .devices
        .iter()
        .flatten()
        .map(|d| {
            let mut v = json!({
                "path": d.path.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
                "type": d.device_type.as_ref().map(|t| t.value.clone()).unwrap_or_default(),
                "major": d.major.unwrap_or(0),
                "minor": d.minor.unwrap_or(0),
            });
            if let Some(m) = d.mode {
                v["fileMode"] = json!(m.0);
            }
            v
        })
        .collect();
    let mut device_rules: Vec<Value> = vec![json!({"allow": false, "access": "rwm"})];
    for d in c.devices.iter().flatten() {
        device_rules.push(json!({
            "allow": true,
            "type": d.device_type.as_ref().map(|t| t.value.clone()).unwrap_or_default(),
            "major": d.major.unwrap_or(0), "minor": d.minor.unwrap_or(0), "access": "rwm",
        }));
    }
    let mut resources = serde_json::to_value(&c.resources).unwrap_or(Value::Null);
    if resources.is_null() {
        resources = json!({});
    }
    let mut rules = resources["devices"].as_array().cloned().unwrap_or_default();
    device_rules.append(&mut rules);
    resources["devices"] = json!(device_rules);

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": c.cgroups_path.clone().unwrap_or_else(|| format!("/hull/{name}")),
    });
    if !devices.is_empty() {
        linux["devices"] = json!(devices);
    }
    if let Some(s) = &c.sysctl {
        linux["sysctl"] = json!(s);
    }
    if let Some(p) = &c.masked_paths {
        linux["maskedPaths"] = json!(p);
    }
    if let Some(p) = &c.readonly_paths {
        linux["readonlyPaths"] = json!(p);
    }
    if let Some(p) = &c.rootfs_propagation {
        linux["rootfsPropagation"] = json!(p.value);
    }
    if let Some(sc) = &c.seccomp {
        linux["seccomp"] = seccomp_json(sc);
    }
    for (key, maps) in [
        ("uidMappings", &c.uid_mappings),
        ("gidMappings", &c.gid_mappings),
    ] {
        if let Some(maps) = maps {
            linux[key] = json!(maps
                .iter()
                .map(|m| json!({"containerID": m.container_id.unwrap_or(0), "hostID": m.host_id.unwrap_or(0), "size": m.size.unwrap_or(0)}))
                .collect::<Vec<_>>());
        }
    }

    let mut process = json!({
        "terminal": false,
        "user": {"uid": uid, "gid": gid},
        "args": args,
        "env": env,
        "cwd": c.cwd.clone().or_else(|| image.working_dir.clone().filter(|w| !w.is_empty())).unwrap_or_else(|| "/".into()),
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": ambient},
        "rlimits": rlimits,
        "noNewPrivileges": c.no_new_privileges.unwrap_or(false),
    });
    if !additional.is_empty() {
        process["user"]["additionalGids"] = json!(additional);
    }
    if let Some(o) = c.oom_score_adj {
        process["oomScoreAdj"] = json!(o);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": c.readonly.unwrap_or(false)},
        "hostname": c.hostname.clone().unwrap_or_else(|| name.to_string()),
        "mounts": mounts,
        "linux": linux,
    });
    if let Some(a) = &c.annotations {
        spec["annotations"] = json!(a);
    }
    serde_json::from_value(spec)
}

/// The manifest's `seccomp` (a Hull extension) as OCI `linux.seccomp`.
fn seccomp_json(sc: &crate::manifest::types::Seccomp) -> Value {
    let mut v = json!({
        "defaultAction": sc.default_action.as_ref().map_or("SCMP_ACT_ALLOW", |a| a.as_str()),
        "syscalls": sc.syscalls.iter().flatten().map(|r| {
            let mut rule = json!({
                "names": r.names.clone().unwrap_or_default(),
                "action": r.action.as_ref().map_or("SCMP_ACT_ERRNO", |a| a.as_str()),
            });
            if let Some(e) = r.errno_ret {
                rule["errnoRet"] = json!(e);
            }
            if let Some(args) = &r.args {
                rule["args"] = json!(args.iter().map(|a| {
                    let mut arg = json!({
                        "index": a.index.as_ref().map_or(0, |i| i.value),
                        "value": a.value.unwrap_or(0),
                        "op": a.op.as_ref().map_or("SCMP_CMP_EQ", |o| o.as_str()),
                    });
                    if let Some(two) = a.value_two {
                        arg["valueTwo"] = json!(two);
                    }
                    arg
                }).collect::<Vec<_>>());
            }
            rule
        }).collect::<Vec<_>>(),
    });
    if let Some(e) = sc.default_errno_ret {
        v["defaultErrnoRet"] = json!(e);
    }
    v
}

/// `runtime.json`: what the PID1 does around the container that the runtime
/// spec cannot say (LinuxKit's `runtime:` plus Hull's extensions).
pub fn runtime_json(c: &ImageConfig, section: &str, image_dir: &str) -> Value {
    let mut v = serde_json::to_value(&c.runtime).unwrap_or(Value::Null);
    if v.is_null() {
        v = json!({});
    }
    v["hull"] = json!({
        "section": section,
        "image": image_dir,
        "readonly": c.readonly.unwrap_or(false),
        "restart": c.restart.as_ref().map_or_else(|| "on-failure".to_string(), |r| r.value.to_string()),
        "timeoutSeconds": c.timeout.as_ref().map_or(60, |t| t.value.0),
    });
    if section != "services" {
        v["hull"].as_object_mut().map(|o| o.remove("restart"));
    } else {
        v["hull"]
            .as_object_mut()
            .map(|o| o.remove("timeoutSeconds"));
    }
    v
}

/// The spec as JSON with a stable order: object keys sorted (serde_json's
/// map), and the capability sets (hash sets in `oci-spec`) sorted too.
pub fn canonical_json(spec: &oci_spec::runtime::Spec) -> Result<Vec<u8>, serde_json::Error> {
    let mut v = serde_json::to_value(spec)?;
    if let Some(caps) = v
        .get_mut("process")
        .and_then(|p| p.get_mut("capabilities"))
        .and_then(Value::as_object_mut)
    {
        for set in caps.values_mut() {
            if let Some(a) = set.as_array_mut() {
                a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            }
        }
    }
    serde_json::to_vec_pretty(&v)
}
