//! Target architectures, as runtime data: one `hull` binary builds for both.
//!
//! Owns: the names an architecture goes by (`amd64`/`x86_64`, `arm64`/`aarch64`)
//! and matching OCI platform entries. Must not hold per-arch build logic.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The architecture this `hull` runs on (amd64 when it is neither).
    pub fn host() -> Self {
        match std::env::consts::ARCH {
            "aarch64" => Arch::Arm64,
            _ => Arch::Amd64,
        }
    }

    /// An `--arch` value: an architecture's name, or none (or `host`) for
    /// this machine's.
    pub fn from_flag(flag: Option<&str>) -> Result<Self, String> {
        match flag {
            None | Some("host") => Ok(Arch::host()),
            Some(name) => name.parse(),
        }
    }

    /// The OCI / Go name: `amd64`, `arm64`.
    pub fn oci(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The kernel / Rust name: `x86_64`, `aarch64`.
    pub fn kernel(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// Whether an OCI platform (`os`, `architecture`, `variant`) runs here.
    pub fn matches(self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        os == "linux"
            && architecture == self.oci()
            && match self {
                Arch::Arm64 => matches!(variant, None | Some("" | "v8")),
                Arch::Amd64 => true,
            }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.oci())
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "amd64" | "x86_64" | "linux/amd64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" | "linux/arm64" | "linux/arm64/v8" => Ok(Arch::Arm64),
            other => Err(format!("unknown architecture \"{other}\" (amd64 or arm64)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_platform_matching() {
        assert_eq!("x86_64".parse(), Ok(Arch::Amd64));
        assert_eq!("aarch64".parse(), Ok(Arch::Arm64));
        assert!("riscv64".parse::<Arch>().is_err());
        assert!(Arch::Arm64.matches("linux", "arm64", Some("v8")));
        assert!(Arch::Arm64.matches("linux", "arm64", None));
        assert!(!Arch::Arm64.matches("linux", "arm", Some("v7")));
        assert!(!Arch::Amd64.matches("windows", "amd64", None));
    }
}
