//! A container's `runtime.json` (LinuxKit's `runtime:`): what is done on the
//! host around the container, in the shim.
//!
//! Owns: `mkdir` (directories made on the host first), `cgroups` (made
//! under /sys/fs/cgroup), `mounts` (mounted on the host before the
//! container starts) and `bindNS` (the container's new namespaces bound at
//! host paths for others to join, e.g. `net: /run/netns/wg0`) and
//! `interfaces` (links created or moved into the container's network
//! namespace, through `netlink`). Must not touch the container's own
//! mounts: that is `container`.

use std::path::Path;

use serde::Deserialize;

use crate::netlink::Netlink;
use crate::{modules, mounts};

/// The host's network namespace and a netlink socket in it.
pub struct HostNetwork {
    ns: std::fs::File,
    netlink: Netlink,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Runtime {
    mkdir: Vec<String>,
    cgroups: Vec<String>,
    mounts: Vec<Mount>,
    interfaces: Vec<Interface>,
    #[serde(rename = "bindNS")]
    bind_ns: BindNs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Mount {
    destination: String,
    #[serde(rename = "type")]
    mount_type: Option<String>,
    source: Option<String>,
    options: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Interface {
    name: String,
    add: Option<String>,
    peer: Option<String>,
    #[serde(rename = "createInRoot")]
    create_in_root: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BindNs {
    cgroup: Option<String>,
    ipc: Option<String>,
    mnt: Option<String>,
    net: Option<String>,
    pid: Option<String>,
    uts: Option<String>,
    user: Option<String>,
}

/// Reads `DIR/runtime.json` (an absent or empty file is no runtime).
pub fn load(dir: &Path) -> Result<Runtime, String> {
    match std::fs::read(dir.join("runtime.json")) {
        Err(_) => Ok(Runtime::default()),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}/runtime.json: {e}", dir.display())),
    }
}

impl Runtime {
    /// Before the namespaces: directories, cgroups, host mounts. Every
    /// failure is returned; the container starts anyway, as with LinuxKit.
    pub fn prepare(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for d in &self.mkdir {
            if let Err(e) = std::fs::create_dir_all(d) {
                errors.push(format!("mkdir {d}: {e}"));
            }
        }
        for c in &self.cgroups {
            let p = Path::new("/sys/fs/cgroup").join(c.trim_start_matches('/'));
            if let Err(e) = std::fs::create_dir_all(&p) {
                errors.push(format!("cgroup {}: {e}", p.display()));
            }
        }
        for m in &self.mounts {
            let target = Path::new(&m.destination);
            let _ = std::fs::create_dir_all(target);
            let fstype = m.mount_type.clone().unwrap_or_else(|| "bind".into());
            let source = m.source.clone().unwrap_or_else(|| fstype.clone());
            if let Err(e) = mounts::mount(&source, target, &fstype, &m.options) {
                errors.push(e.to_string());
            }
        }
        errors
    }

    /// What `interfaces` needs from the host's network namespace, taken
    /// before the container's is made: the namespace itself and a netlink
    /// socket in it. `None` when there are no interfaces.
    pub fn host_network(&self) -> Option<std::io::Result<HostNetwork>> {
        if self.interfaces.is_empty() {
            return None;
        }
        Some((|| {
            Ok(HostNetwork {
                ns: std::fs::File::open("/proc/self/ns/net")?,
                netlink: Netlink::open()?,
            })
        })())
    }

    /// After the container's network namespace exists (this process is in
    /// it): creates or moves each interface into it; a veth's peer stays on
    /// the host.
    pub fn set_up_interfaces(&self, host: &mut HostNetwork) -> Vec<String> {
        let mut errors = Vec::new();
        let here = match std::fs::File::open("/proc/self/ns/net") {
            Ok(f) => f,
            Err(e) => return vec![format!("interfaces: own network namespace: {e}")],
        };
        for i in &self.interfaces {
            let result = match &i.add {
                None => host.netlink.move_to(&i.name, &here),
                Some(kind) => {
                    // Link kinds are modules found by their rtnl-link alias.
                    modules::load_alias(&format!("rtnl-link-{kind}"));
                    if i.create_in_root {
                        host.netlink
                            .create(&i.name, kind, i.peer.as_deref(), None::<&std::fs::File>)
                            .and_then(|()| host.netlink.move_to(&i.name, &here))
                    } else {
                        Netlink::open().and_then(|mut local| {
                            local.create(&i.name, kind, i.peer.as_deref(), Some(&host.ns))
                        })
                    }
                }
            };
            if let Err(e) = result {
                errors.push(format!("interface {}: {e}", i.name));
            }
        }
        errors
    }

    /// After the new namespaces exist and before the mount namespace is
    /// left: binds this process's namespaces at the asked paths.
    pub fn bind_namespaces(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let b = &self.bind_ns;
        for (ns, path) in [
            ("cgroup", &b.cgroup),
            ("ipc", &b.ipc),
            ("net", &b.net),
            ("pid_for_children", &b.pid),
            ("uts", &b.uts),
        ] {
            let Some(path) = path else { continue };
            let target = Path::new(path);
            if let Some(parent) = target.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            if !target.exists() {
                if let Err(e) = std::fs::write(target, b"") {
                    errors.push(format!("bindNS {ns}: {path}: {e}"));
                    continue;
                }
            }
            let source = format!("/proc/self/ns/{ns}");
            if let Err(e) = mounts::mount(&source, target, "bind", &["bind".into()]) {
                errors.push(format!("bindNS {ns}: {e}"));
            }
        }
        for (ns, path) in [("mnt", &b.mnt), ("user", &b.user)] {
            if path.is_some() {
                errors.push(format!("bindNS {ns} is not supported by hull-init"));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_json_reads_linuxkit_fields_and_ignores_hull_section() {
        let r: Runtime = serde_json::from_str(
            r#"{"mkdir":["/var/lib/x"],"bindNS":{"net":"/run/netns/wg0"},
                "mounts":[{"destination":"/mnt","type":"tmpfs","options":["size=1m"]}],
                "hull":{"section":"services","restart":"always"}}"#,
        )
        .expect("parses");
        assert_eq!(r.mkdir, ["/var/lib/x"]);
        assert_eq!(r.bind_ns.net.as_deref(), Some("/run/netns/wg0"));
        assert_eq!(r.mounts[0].mount_type.as_deref(), Some("tmpfs"));
        assert!(r.interfaces.is_empty());
    }
}
