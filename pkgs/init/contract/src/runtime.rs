//! `runtime.json`: what `hull-init` does on the host around a container, which
//! the OCI runtime spec cannot say. LinuxKit's `runtime:` section (cgroups,
//! mounts, mkdir, interfaces, bindNS, namespace) and Hull's own `hull`
//! section (which list the container is in, its image, restart policy,
//! timeout, access to the control socket), with the defaults both sides use.
//!
//! Unknown keys are refused, so a `runtime.json` written by a newer builder
//! fails clearly in an older `hull-init` instead of losing a setting.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::layout::Section;

/// A container's `runtime.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// cgroups made under `/sys/fs/cgroup` before the container starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<String>,
    /// Mounts made on the host before the container starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Directories made on the host before the container starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mkdir: Vec<String>,
    /// Links created in, or moved into, the container's network namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Host paths to bind the container's new namespaces at.
    #[serde(rename = "bindNS", default, skip_serializing_if = "BindNs::is_empty")]
    pub bind_ns: BindNs,
    /// LinuxKit's `runtime.namespace` (a containerd namespace), kept as
    /// written; `hull-init` has no use for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Hull's own settings.
    #[serde(default)]
    pub hull: Hull,
}

/// A mount made on the host (an OCI runtime-spec mount).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub destination: String,
    /// Filesystem type; none means a bind mount.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub mount_type: Option<String>,
    /// Source; none means the type's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(rename = "uidMappings", default, skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(rename = "gidMappings", default, skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
}

impl Mount {
    /// The filesystem type, `bind` when none is written.
    pub fn fstype(&self) -> &str {
        self.mount_type.as_deref().unwrap_or("bind")
    }

    /// The source, the filesystem type's name when none is written.
    pub fn source_or_type(&self) -> &str {
        self.source.as_deref().unwrap_or_else(|| self.fstype())
    }
}

/// A user-namespace id mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdMapping {
    #[serde(rename = "containerID", default)]
    pub container_id: u32,
    #[serde(rename = "hostID", default)]
    pub host_id: u32,
    #[serde(default)]
    pub size: u32,
}

/// A network interface for the container's network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: String,
    /// Create a link of this kind (`veth`, `wireguard`, ...); none moves the
    /// existing link `name` in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<String>,
    /// A veth's other end, left on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Create the link on the host and then move it in (for kinds whose
    /// socket must be made in the host's namespace).
    #[serde(rename = "createInRoot", default, skip_serializing_if = "is_false")]
    pub create_in_root: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Host paths at which the container's namespaces are bound for others to join.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindNs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mnt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
}

impl BindNs {
    /// True when no namespace is to be bound.
    pub fn is_empty(&self) -> bool {
        *self == BindNs::default()
    }
}

/// Hull's section of `runtime.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hull {
    /// Which list the container is in.
    pub section: Section,
    /// The container's image directory as the booted system sees it.
    #[serde(default)]
    pub image: String,
    /// The container's root is mounted read-only.
    #[serde(default)]
    pub readonly: bool,
    /// Services: what to do when it exits (written only for services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    /// Onboot and onshutdown: seconds before it is killed (written only for them).
    #[serde(
        rename = "timeoutSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_seconds: Option<u64>,
    /// What the container may ask of PID1 over the control socket.
    #[serde(default, skip_serializing_if = "ControlAccess::is_none")]
    pub control: ControlAccess,
}

/// What a container may ask of PID1 over the control socket (Hull extension
/// `control:`); the host's own processes may ask anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlAccess {
    /// Nothing: the socket refuses it (the default).
    #[default]
    None,
    /// `list` and `logs`.
    Read,
    /// Everything `hullctl` does: also start, stop, restart, poweroff, reboot.
    Full,
}

impl ControlAccess {
    fn is_none(&self) -> bool {
        *self == ControlAccess::None
    }

    /// The access written as in a manifest.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(ControlAccess::None),
            "read" => Ok(ControlAccess::Read),
            "full" => Ok(ControlAccess::Full),
            other => Err(format!(
                "invalid control access \"{other}\": expected \"none\", \"read\" or \"full\""
            )),
        }
    }
}

impl FromStr for ControlAccess {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ControlAccess::parse(s)
    }
}

impl fmt::Display for ControlAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ControlAccess::None => "none",
            ControlAccess::Read => "read",
            ControlAccess::Full => "full",
        })
    }
}

impl Default for Hull {
    fn default() -> Self {
        Hull::new(Section::Services, String::new(), false, None, None)
    }
}

impl Hull {
    /// The settings of a container in `section`: a restart policy only for
    /// services and a timeout only for the ordered sections, each defaulted
    /// when not given.
    pub fn new(
        section: Section,
        image: String,
        readonly: bool,
        restart: Option<RestartPolicy>,
        timeout_seconds: Option<u64>,
    ) -> Hull {
        let ordered = section.runs_in_order();
        Hull {
            section,
            image,
            readonly,
            restart: (!ordered).then(|| restart.unwrap_or_default()),
            timeout_seconds: ordered.then(|| timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS)),
            control: ControlAccess::None,
        }
    }

    /// The restart policy, its default when none is written.
    pub fn restart_policy(&self) -> RestartPolicy {
        self.restart.unwrap_or_default()
    }

    /// How long an onboot or onshutdown container may run.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }
}

/// Seconds an onboot or onshutdown container may run before it is killed.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 60;

/// What the PID1 does when a service exits (Hull extension `restart:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restarted.
    No,
    /// Restarted when it exits with a non-zero status or a signal (the default).
    #[default]
    OnFailure,
    /// Restarted whenever it exits.
    Always,
}

impl RestartPolicy {
    /// Whether a service that exited with `status` is started again.
    pub fn restarts_after(self, status: i32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure => status != 0,
            RestartPolicy::Always => true,
        }
    }

    /// The policy written as in a manifest (`false` is LinuxKit's `no`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "no" | "false" => Ok(RestartPolicy::No),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "always" => Ok(RestartPolicy::Always),
            other => Err(format!(
                "invalid restart policy \"{other}\": expected \"no\", \"on-failure\" or \"always\""
            )),
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RestartPolicy::parse(s)
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        })
    }
}

impl Runtime {
    /// The file's bytes: pretty JSON with keys in sorted order, so that a
    /// build is byte-reproducible whatever the field order here.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec_pretty(&serde_json::to_value(self)?)
    }

    /// Reads a file's bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Runtime, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_get_a_restart_policy_and_ordered_sections_a_timeout() {
        let s = Hull::new(Section::Services, "/i".into(), false, None, Some(5));
        assert_eq!(s.restart, Some(RestartPolicy::OnFailure));
        assert_eq!(s.timeout_seconds, None);
        let o = Hull::new(
            Section::Onboot,
            "/i".into(),
            false,
            Some(RestartPolicy::Always),
            None,
        );
        assert_eq!(o.restart, None);
        assert_eq!(o.timeout_seconds, Some(DEFAULT_TIMEOUT_SECONDS));
        assert_eq!(o.timeout(), Duration::from_secs(60));
    }

    #[test]
    fn restart_policies_decide_on_the_exit_status() {
        assert!(!RestartPolicy::No.restarts_after(1));
        assert!(RestartPolicy::OnFailure.restarts_after(1));
        assert!(!RestartPolicy::OnFailure.restarts_after(0));
        assert!(RestartPolicy::Always.restarts_after(0));
        assert_eq!(RestartPolicy::parse("false"), Ok(RestartPolicy::No));
        assert!(RestartPolicy::parse("sometimes").is_err());
    }

    #[test]
    fn written_with_sorted_keys_and_read_back() {
        let r = Runtime {
            mkdir: vec!["/var/lib/x".into()],
            bind_ns: BindNs {
                net: Some("/run/netns/x".into()),
                ..BindNs::default()
            },
            hull: Hull::new(
                Section::Services,
                "/containers/images/ab".into(),
                true,
                None,
                None,
            ),
            ..Runtime::default()
        };
        let text = String::from_utf8(r.to_json().expect("writes")).expect("utf-8");
        let keys: Vec<usize> = ["\"bindNS\"", "\"hull\"", "\"mkdir\""]
            .iter()
            .map(|k| text.find(k).expect("key present"))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.contains("\"restart\": \"on-failure\""), "{text}");
        assert_eq!(Runtime::from_json(text.as_bytes()).expect("reads"), r);
    }

    #[test]
    fn control_access_is_none_unless_granted_and_ordered() {
        assert_eq!(Hull::default().control, ControlAccess::None);
        assert_eq!(ControlAccess::parse("read"), Ok(ControlAccess::Read));
        assert!(ControlAccess::parse("all").is_err());
        assert!(ControlAccess::None < ControlAccess::Read);
        assert!(ControlAccess::Read < ControlAccess::Full);
        let granted = Runtime {
            hull: Hull {
                control: ControlAccess::Full,
                ..Hull::default()
            },
            ..Runtime::default()
        };
        let text = String::from_utf8(granted.to_json().expect("writes")).expect("utf-8");
        assert!(text.contains("\"control\": \"full\""), "{text}");
        let none = String::from_utf8(Runtime::default().to_json().expect("writes")).expect("utf-8");
        assert!(!none.contains("control"), "{none}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Runtime::from_json(br#"{"mkdirs":["/x"]}"#).expect_err("refused");
        assert!(e.to_string().contains("mkdirs"), "{e}");
        let e = Runtime::from_json(br#"{"hull":{"section":"services","restrat":"no"}}"#)
            .expect_err("refused");
        assert!(e.to_string().contains("restrat"), "{e}");
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        let r = Runtime::from_json(b"{}").expect("reads");
        assert_eq!(r.hull.restart_policy(), RestartPolicy::OnFailure);
        assert!(r.bind_ns.is_empty() && r.mounts.is_empty());
    }
}
