//! Manifest values that have a grammar of their own, checked as they are decoded.
//!
//! Owns: image references, capability names, file modes, rlimits, bind specs,
//! namespace settings, uid/gid values and Hull's extension values (restart
//! policy, timeouts). Each is a newtype whose [`Decode`] impl reports a bad value
//! at its own line and column. Must not look at other fields: cross-field rules
//! live in `checks`.

use std::fmt;
use std::str::FromStr;

use oci_spec::distribution::Reference;
use serde::{Serialize, Serializer};

use super::decode::{closest, Decode, Diagnostics};
use super::yaml::{Node, NodeKind};

/// Implements `Decode` for a type read from a string by `parse`, reporting
/// `parse`'s error at the value.
macro_rules! decode_from_str {
    ($t:ty) => {
        impl Decode for $t {
            fn decode(key: &str, node: &Node, cx: &mut Diagnostics) -> Option<Self> {
                let text = String::decode(key, node, cx)?;
                match <$t>::parse(&text) {
                    Ok(v) => Some(v),
                    Err(msg) => {
                        cx.error(&node.pos, format!("{key}: {msg}"));
                        None
                    }
                }
            }
        }
    };
}

macro_rules! serialize_display {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

/// An OCI image reference as written (`alpine:3.20`, `host:5000/x@sha256:...`).
/// Kept as written for output; `reference` holds the normalized parse. An
/// `@pkg:DIR` reference is decoded with its package directory and no
/// reference; `manifest::resolve_packages` fills both in after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub text: String,
    /// The normalized parse; `None` for an `@pkg:` reference not resolved yet.
    pub reference: Option<Reference>,
    /// For `@pkg:DIR`: the package directory the reference was made from.
    pub package: Option<std::path::PathBuf>,
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("@pkg:") {
            return Err(format!(
                "\"{text}\": @pkg: references are only valid in manifest files"
            ));
        }
        if text.trim() != text || text.is_empty() {
            return Err(format!("invalid image reference \"{text}\""));
        }
        Reference::from_str(text)
            .map(|reference| ImageRef {
                text: text.to_string(),
                reference: Some(reference),
                package: None,
            })
            .map_err(|e| format!("invalid image reference \"{text}\": {e}"))
    }
}
impl Decode for ImageRef {
    /// A reference, or LinuxKit's `@pkg:DIR` (relative to the manifest): the
    /// image `hull pkg build DIR` makes, by its content tag.
    fn decode(key: &str, node: &Node, cx: &mut Diagnostics) -> Option<Self> {
        let text = String::decode(key, node, cx)?;
        let Some(path) = text.strip_prefix("@pkg:") else {
            return match ImageRef::parse(&text) {
                Ok(v) => Some(v),
                Err(msg) => {
                    cx.error(&node.pos, format!("{key}: {msg}"));
                    None
                }
            };
        };
        let Some(base) = cx.base_dir.clone() else {
            cx.error(
                &node.pos,
                format!("{key}: \"{text}\": @pkg: references are only valid in manifest files"),
            );
            return None;
        };
        Some(ImageRef {
            package: Some(base.join(path)),
            text,
            reference: None,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
serialize_display!(ImageRef);

/// A Linux capability name (`CAP_NET_ADMIN`), or `all`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Capability(pub String);

impl Capability {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("all") {
            return Ok(Capability("all".to_string()));
        }
        let upper = text.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if caps::Capability::from_str(&full).is_ok() {
            return Ok(Capability(full));
        }
        let names: Vec<String> = caps::all().iter().map(ToString::to_string).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let hint = closest(&full, &refs)
            .map(|c| format!(", did you mean \"{c}\"?"))
            .unwrap_or_default();
        Err(format!("unknown capability \"{text}\"{hint}"))
    }
}
decode_from_str!(Capability);

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serialize_display!(Capability);

/// A file mode written as an octal string (`"0644"`, `0755`, `"755"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl FileMode {
    pub fn parse(text: &str) -> Result<Self, String> {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        match u32::from_str_radix(digits, 8) {
            Ok(m) if !digits.is_empty() && m <= 0o7777 => Ok(FileMode(m)),
            _ => Err(format!(
                "invalid mode \"{text}\": expected an octal mode of at most 4 digits, like \"0644\""
            )),
        }
    }
}
decode_from_str!(FileMode);

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}
serialize_display!(FileMode);

const RLIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// An rlimit as LinuxKit writes it: `"nofile,1024,4096"` (`RLIMIT_` prefix and
/// case optional; `unlimited` for no limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// The OCI name, e.g. `RLIMIT_NOFILE`.
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

impl Rlimit {
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let [name, soft, hard] = parts.as_slice() else {
            return Err(format!(
                "invalid rlimit \"{text}\": expected \"name,soft,hard\", like \"nofile,1024,4096\""
            ));
        };
        let lower = name.to_ascii_lowercase();
        let short = lower.strip_prefix("rlimit_").unwrap_or(&lower);
        if !RLIMITS.contains(&short) {
            let hint = closest(short, RLIMITS)
                .map(|c| format!(", did you mean \"{c}\"?"))
                .unwrap_or_default();
            return Err(format!("unknown rlimit \"{name}\"{hint}"));
        }
        let value = |v: &str| -> Result<u64, String> {
            if matches!(v, "unlimited" | "infinity" | "-1") {
                Ok(u64::MAX)
            } else {
                v.parse()
                    .map_err(|_| format!("invalid rlimit value \"{v}\" in \"{text}\""))
            }
        };
        let (soft, hard) = (value(soft)?, value(hard)?);
        if soft > hard {
            return Err(format!(
                "rlimit \"{text}\": the soft limit is above the hard limit"
            ));
        }
        Ok(Rlimit {
            name: format!("RLIMIT_{}", short.to_ascii_uppercase()),
            soft,
            hard,
        })
    }
}
decode_from_str!(Rlimit);

impl fmt::Display for Rlimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = |n: u64| {
            if n == u64::MAX {
                "unlimited".to_string()
            } else {
                n.to_string()
            }
        };
        write!(f, "{},{},{}", self.name, v(self.soft), v(self.hard))
    }
}
serialize_display!(Rlimit);

/// A bind mount as LinuxKit writes it: `source:destination[:opt,opt]`. The
/// source is a host path or a volume name; the destination is absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: String,
    pub destination: String,
    pub options: Vec<String>,
}

impl Bind {
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, destination, options) = match parts.as_slice() {
            [s, d] => (*s, *d, Vec::new()),
            [s, d, o] => (*s, *d, o.split(',').map(str::to_string).collect()),
            _ => {
                return Err(format!(
                    "invalid bind \"{text}\": expected \"source:destination[:options]\""
                ))
            }
        };
        if source.is_empty() {
            return Err(format!("invalid bind \"{text}\": empty source"));
        }
        if !destination.starts_with('/') {
            return Err(format!(
                "invalid bind \"{text}\": the destination must be an absolute path"
            ));
        }
        Ok(Bind {
            source: source.to_string(),
            destination: destination.to_string(),
            options,
        })
    }
}
decode_from_str!(Bind);

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.destination)?;
        if !self.options.is_empty() {
            write!(f, ":{}", self.options.join(","))?;
        }
        Ok(())
    }
}
serialize_display!(Bind);

/// A tmpfs mount: `/destination[:opt,opt]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    pub destination: String,
    pub options: Vec<String>,
}

impl Tmpfs {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (destination, options) = match text.split_once(':') {
            Some((d, o)) => (d, o.split(',').map(str::to_string).collect()),
            None => (text, Vec::new()),
        };
        if !destination.starts_with('/') {
            return Err(format!(
                "invalid tmpfs \"{text}\": expected \"/destination[:options]\""
            ));
        }
        Ok(Tmpfs {
            destination: destination.to_string(),
            options,
        })
    }
}
decode_from_str!(Tmpfs);

impl fmt::Display for Tmpfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.destination)?;
        if !self.options.is_empty() {
            write!(f, ":{}", self.options.join(","))?;
        }
        Ok(())
    }
}
serialize_display!(Tmpfs);

/// A namespace setting: `host` (share the host's), `new`, or the absolute path
/// of a namespace file to join (e.g. `/run/netns/wg0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    Host,
    New,
    Path(String),
}

impl Namespace {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "host" => Ok(Namespace::Host),
            "new" => Ok(Namespace::New),
            p if p.starts_with('/') => Ok(Namespace::Path(p.to_string())),
            other => Err(format!(
                "invalid namespace \"{other}\": expected \"host\", \"new\" or an absolute path"
            )),
        }
    }
}
decode_from_str!(Namespace);

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Namespace::Host => f.write_str("host"),
            Namespace::New => f.write_str("new"),
            Namespace::Path(p) => f.write_str(p),
        }
    }
}
serialize_display!(Namespace);

/// A uid or gid: a number, or a name that LinuxKit resolves to an id allocated
/// for that name (shared by every container naming it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Number(u32),
    Name(String),
}

impl Decode for Id {
    fn decode(key: &str, node: &Node, cx: &mut Diagnostics) -> Option<Self> {
        if let NodeKind::Scalar { value, plain: true } = &node.kind {
            if let Some(n) = super::decode::parse_int(value) {
                return match u32::try_from(n) {
                    Ok(n) => Some(Id::Number(n)),
                    Err(_) => {
                        cx.error(&node.pos, format!("{key}: {n} is not a valid id"));
                        None
                    }
                };
            }
        }
        let name = String::decode(key, node, cx)?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            cx.error(
                &node.pos,
                format!("{key}: \"{name}\" is neither a number nor a name"),
            );
            return None;
        }
        Some(Id::Name(name))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Number(n) => s.serialize_u32(*n),
            Id::Name(n) => s.serialize_str(n),
        }
    }
}

/// Hull extension: what the PID1 does when a service exits (the contract's type).
pub use hull_contract::RestartPolicy;
decode_from_str!(RestartPolicy);

/// Hull extension: what a container may ask over the control socket.
pub use hull_contract::ControlAccess;
decode_from_str!(ControlAccess);

/// Hull extension: a duration in whole seconds, written as a number of seconds
/// or with a unit: `90`, `90s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u64);

impl Seconds {
    pub fn parse(text: &str) -> Result<Self, String> {
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let scale = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => 0,
        };
        match digits.parse::<u64>() {
            Ok(n) if scale > 0 && n > 0 => n
                .checked_mul(scale)
                .map(Seconds)
                .ok_or_else(|| format!("duration \"{text}\" is too long")),
            _ => Err(format!(
                "invalid duration \"{text}\": expected a positive number of seconds or a value like \"30s\", \"5m\", \"1h\""
            )),
        }
    }
}
decode_from_str!(Seconds);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}
serialize_display!(Seconds);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_normalize_like_docker() {
        let r = ImageRef::parse("alpine:3.20").expect("valid");
        let n = r.reference.as_ref().expect("parsed");
        assert_eq!(n.registry(), "docker.io");
        assert_eq!(n.repository(), "library/alpine");
        assert_eq!(n.tag(), Some("3.20"));
        let r = ImageRef::parse("127.0.0.1:5000/hull/init@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").expect("valid");
        let n = r.reference.as_ref().expect("parsed");
        assert_eq!(n.registry(), "127.0.0.1:5000");
        assert!(n.digest().is_some());
        assert!(ImageRef::parse("Alpine:3").is_err());
        assert!(ImageRef::parse("alpine:bad tag").is_err());
        assert!(ImageRef::parse("@pkg:../init")
            .expect_err("template")
            .contains("only valid in manifest files"));
    }

    #[test]
    fn capabilities_accept_known_names_only() {
        assert_eq!(
            Capability::parse("CAP_NET_ADMIN"),
            Ok(Capability("CAP_NET_ADMIN".into()))
        );
        assert_eq!(
            Capability::parse("sys_admin"),
            Ok(Capability("CAP_SYS_ADMIN".into()))
        );
        assert_eq!(Capability::parse("ALL"), Ok(Capability("all".into())));
        let err = Capability::parse("CAP_NET_ADMN").expect_err("typo");
        assert!(err.contains("did you mean \"CAP_NET_ADMIN\""), "{err}");
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(FileMode::parse("0644"), Ok(FileMode(0o644)));
        assert_eq!(FileMode::parse("755"), Ok(FileMode(0o755)));
        assert!(FileMode::parse("0999").is_err());
        assert!(FileMode::parse("17777").is_err());
        assert!(FileMode::parse("rw-r--r--").is_err());
    }

    #[test]
    fn rlimits_binds_and_durations() {
        let r = Rlimit::parse("nofile,1024,unlimited").expect("valid");
        assert_eq!(
            (r.name.as_str(), r.soft, r.hard),
            ("RLIMIT_NOFILE", 1024, u64::MAX)
        );
        assert!(Rlimit::parse("RLIMIT_NOFILE,10,5").is_err());
        assert!(Rlimit::parse("nofiles,1,1")
            .expect_err("typo")
            .contains("nofile"));
        let b = Bind::parse("/var:/var:rshared,rbind").expect("valid");
        assert_eq!(b.options, vec!["rshared", "rbind"]);
        assert!(Bind::parse("/var").is_err());
        assert!(Bind::parse("/var:var").is_err());
        assert_eq!(Seconds::parse("5m"), Ok(Seconds(300)));
        assert_eq!(Seconds::parse("45"), Ok(Seconds(45)));
        assert!(Seconds::parse("0").is_err());
        assert!(Seconds::parse("5 min").is_err());
    }
}
