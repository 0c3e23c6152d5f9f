//! Where a built image keeps its containers (DESIGN.md, "The image contract").
//!
//! ```text
//! /containers/images/HEX/            each image a container uses, stored once (HEX: its manifest digest)
//! /containers/onboot/NNN-name/       config.json, runtime.json, rootfs -> ../../images/HEX
//! /containers/onshutdown/NNN-name/   the same
//! /containers/services/name/         the same
//! /containers/volumes/name/          volumes
//! ```
//!
//! Paths here are relative to the image root (the builder's tree has no
//! leading `/`); [`absolute`] makes the form `hull-init` opens.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The directory holding everything container-related.
pub const CONTAINERS: &str = "containers";
/// Images stored once each, by manifest digest.
pub const IMAGES: &str = "containers/images";
/// Named volumes (binds whose source is a bare name).
pub const VOLUMES: &str = "containers/volumes";
/// The OCI runtime spec of a container.
pub const CONFIG_FILE: &str = "config.json";
/// What the PID1 does around a container ([`crate::Runtime`]).
pub const RUNTIME_FILE: &str = "runtime.json";
/// The symlink in a container directory to its image.
pub const ROOTFS: &str = "rootfs";
/// Where cgroup v2 is mounted on the host.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The three lists of containers a manifest has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    /// Run once each, in order, at boot.
    Onboot,
    /// Run once each, in order, at shutdown.
    Onshutdown,
    /// Supervised for the life of the system.
    Services,
}

impl Section {
    /// Every section, in the order the PID1 meets them at boot.
    pub const ALL: [Section; 3] = [Section::Onboot, Section::Onshutdown, Section::Services];

    /// The section's name in manifests, paths and `runtime.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Onboot => "onboot",
            Section::Onshutdown => "onshutdown",
            Section::Services => "services",
        }
    }

    /// True when the section's containers run one after another, each to
    /// completion, in list order (onboot, onshutdown); false for services.
    pub fn runs_in_order(self) -> bool {
        !matches!(self, Section::Services)
    }

    /// The section's directory, relative to the image root.
    pub fn dir(self) -> String {
        format!("{CONTAINERS}/{}", self.as_str())
    }

    /// The directory of the `index`th container named `name` of this
    /// section, relative to the image root: `NNN-name` for ordered sections
    /// (so order is the sort order), `name` for services.
    pub fn container_dir(self, index: usize, name: &str) -> String {
        if self.runs_in_order() {
            format!("{}/{index:03}-{name}", self.dir())
        } else {
            format!("{}/{name}", self.dir())
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The directory of the image whose manifest digest is `hex`, relative to the
/// image root.
pub fn image_dir(hex: &str) -> String {
    format!("{IMAGES}/{hex}")
}

/// The target of a container directory's [`ROOTFS`] symlink.
pub fn rootfs_target(hex: &str) -> String {
    format!("../../images/{hex}")
}

/// Where a bind's source lives on the host: absolute paths as written, bare
/// names are volumes.
pub fn bind_source(source: &str) -> String {
    if source.starts_with('/') {
        source.to_string()
    } else {
        absolute(&format!("{VOLUMES}/{source}"))
    }
}

/// A path relative to the image root as the booted system sees it.
pub fn absolute(relative: &str) -> String {
    format!("/{}", relative.trim_start_matches('/'))
}

/// The cgroup (under [`CGROUP_ROOT`]) of a container whose `config.json`
/// names none.
pub fn default_cgroups_path(name: &str) -> String {
    format!("/hull/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_sections_number_their_containers_and_services_do_not() {
        assert_eq!(
            Section::Onboot.container_dir(3, "dhcpcd"),
            "containers/onboot/003-dhcpcd"
        );
        assert_eq!(
            Section::Onshutdown.container_dir(0, "bye"),
            "containers/onshutdown/000-bye"
        );
        assert_eq!(
            Section::Services.container_dir(7, "sshd"),
            "containers/services/sshd"
        );
    }

    #[test]
    fn bind_sources_are_paths_or_volumes() {
        assert_eq!(bind_source("/var/lib"), "/var/lib");
        assert_eq!(bind_source("data"), "/containers/volumes/data");
    }

    #[test]
    fn images_and_their_links_agree() {
        assert_eq!(image_dir("ab"), "containers/images/ab");
        // From containers/SECTION/NAME, ../../images/HEX is image_dir(HEX).
        assert_eq!(rootfs_target("ab"), "../../images/ab");
        assert_eq!(absolute(&image_dir("ab")), "/containers/images/ab");
    }

    #[test]
    fn section_names_round_trip_through_serde() {
        for s in Section::ALL {
            let json = serde_json::to_string(&s).expect("serializes");
            assert_eq!(json, format!("\"{s}\""));
            let back: Section = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, s);
        }
    }
}
