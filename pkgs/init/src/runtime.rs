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

use hull_contract::layout;
pub use hull_contract::Runtime;

use crate::netlink::Netlink;
use crate::{modules, mounts};

/// The host's network namespace and a netlink socket in it.
pub struct HostNetwork {
    ns: std::fs::File,
    netlink: Netlink,
}

/// Reads `DIR/runtime.json`, the one reader of it in hull-init (an absent
/// file is all defaults; an unreadable or invalid one is an error).
pub fn load(dir: &Path) -> Result<Runtime, String> {
    let path = dir.join(layout::RUNTIME_FILE);
    match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Runtime::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
        Ok(bytes) => Runtime::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display())),
    }
}

/// What the shim does on the host around a container, from its `runtime.json`.
pub trait HostSide {
    fn prepare(&self) -> Vec<String>;
    fn host_network(&self) -> Option<std::io::Result<HostNetwork>>;
    fn set_up_interfaces(&self, host: &mut HostNetwork) -> Vec<String>;
    fn bind_namespaces(&self) -> Vec<String>;
}

impl HostSide for Runtime {
    /// Before the namespaces: directories, cgroups, host mounts. Every
    /// failure is returned, naming the step and the path; the shim then does
    /// not start the container (a cgroup or mount it asked for is missing).
    fn prepare(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for d in &self.mkdir {
            if let Err(e) = std::fs::create_dir_all(d) {
                errors.push(format!("mkdir {d}: {e}"));
            }
        }
        for c in &self.cgroups {
            let p = Path::new(layout::CGROUP_ROOT).join(c.trim_start_matches('/'));
            if let Err(e) = std::fs::create_dir_all(&p) {
                errors.push(format!("cgroup {}: {e}", p.display()));
            }
        }
        for m in &self.mounts {
            let target = Path::new(&m.destination);
            if let Err(e) = std::fs::create_dir_all(target) {
                errors.push(format!("mount target {}: mkdir: {e}", target.display()));
                continue;
            }
            if let Err(e) = mounts::mount(m.source_or_type(), target, m.fstype(), &m.options) {
                errors.push(e.to_string());
            }
        }
        errors
    }

    /// What `interfaces` needs from the host's network namespace, taken
    /// before the container's is made: the namespace itself and a netlink
    /// socket in it. `None` when there are no interfaces.
    fn host_network(&self) -> Option<std::io::Result<HostNetwork>> {
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
    fn set_up_interfaces(&self, host: &mut HostNetwork) -> Vec<String> {
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
    fn bind_namespaces(&self) -> Vec<String> {
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
                if let Err(e) = std::fs::create_dir_all(parent) {
                    errors.push(format!("bindNS {ns}: mkdir {}: {e}", parent.display()));
                    continue;
                }
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
    fn a_mount_target_that_cannot_be_made_is_an_error_naming_it() {
        // /proc takes no new directories: the mount is not tried.
        let r = Runtime::from_json(
            br#"{"mounts":[{"destination":"/proc/hull-none/x","type":"tmpfs","options":[]}]}"#,
        )
        .expect("valid");
        let errors = r.prepare();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("mount target /proc/hull-none/x: mkdir:"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_absent_file_is_defaults_and_a_bad_one_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("hull-init-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        assert_eq!(load(&dir), Ok(Runtime::default()));
        std::fs::write(dir.join("runtime.json"), br#"{"mkdri":[]}"#).expect("write");
        let e = load(&dir).expect_err("refused");
        assert!(e.contains("runtime.json") && e.contains("mkdri"), "{e}");
        std::fs::write(
            dir.join("runtime.json"),
            br#"{"mkdir":["/var/lib/x"],"bindNS":{"net":"/run/netns/wg0"},
                "mounts":[{"destination":"/mnt","type":"tmpfs","options":["size=1m"]}],
                "hull":{"section":"services","restart":"always"}}"#,
        )
        .expect("write");
        let r = load(&dir).expect("reads");
        assert_eq!(r.mkdir, ["/var/lib/x"]);
        assert_eq!(r.bind_ns.net.as_deref(), Some("/run/netns/wg0"));
        assert_eq!(r.mounts[0].fstype(), "tmpfs");
        assert_eq!(
            r.hull.restart_policy(),
            hull_contract::RestartPolicy::Always
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
