//! Two-slot disks (`hull build --root ab`) and their update bundles: the
//! names and numbers the builder, `hull-init` and the update service agree on.
//!
//! A two-slot disk holds an ESP (systemd-boot, and in [`ENTRY_DIR`] one UKI
//! per slot), then for each slot a root partition and its verity partition
//! ([`root_partition`], [`verity_partition`]), then the data partition. A UKI
//! finds its slot by its root hash: the verity superblock's UUID is the root
//! hash's first half. An update writes the slot that did not boot and
//! installs its UKI under a boot-counted name ([`counted_entry`]); systemd-boot
//! counts the tries down and `hull-init` blesses the entry (drops the counter)
//! once the system is healthy.

/// The slots' names.
pub const SLOTS: [&str; 2] = ["a", "b"];

/// The slot that is not `slot`.
pub fn other(slot: &str) -> Option<&'static str> {
    SLOTS
        .contains(&slot)
        .then(|| SLOTS.into_iter().find(|s| *s != slot))?
}

/// The GPT name of a slot's root partition.
pub fn root_partition(slot: &str) -> String {
    format!("hull-root-{slot}")
}

/// The GPT name of a slot's verity hash partition.
pub fn verity_partition(slot: &str) -> String {
    format!("hull-verity-{slot}")
}

/// The slot a GPT partition name is the verity partition of.
pub fn slot_of_verity(name: &str) -> Option<&str> {
    name.strip_prefix("hull-verity-")
        .filter(|s| SLOTS.contains(s))
}

/// Where systemd-boot finds UKIs on the ESP (type #2 entries).
pub const ENTRY_DIR: &str = "EFI/Linux";

/// The first image's entry, as the builder writes it (an 8.3 name, no
/// counter: a freshly written disk is trusted).
pub const FIRST_ENTRY: &str = "HULL.EFI";

/// Every entry Hull installs starts with this (lower case, as systemd-boot
/// names entries).
pub const ENTRY_PREFIX: &str = "hull";

/// How many times systemd-boot tries a new entry before it falls back.
pub const TRIES: u32 = 3;

/// The file name an update installs version `version` under: counted, so
/// that a version that never becomes healthy is given up.
pub fn counted_entry(version: &str) -> String {
    format!("{ENTRY_PREFIX}-{version}+{TRIES}.efi")
}

/// An entry's file name split as systemd-boot reads it: `NAME+LEFT[-DONE].efi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name without counter and `.efi`.
    pub stem: String,
    /// Tries left and tries done, when the name has a counter.
    pub counter: Option<(u32, u32)>,
}

impl Entry {
    /// Parses an entry's file name (any case); `None` when it is not a UKI
    /// name (`.efi`).
    pub fn parse(file: &str) -> Option<Entry> {
        let lower = file.to_ascii_lowercase();
        let base = lower.strip_suffix(".efi")?;
        let Some((stem, counter)) = base.rsplit_once('+') else {
            return Some(Entry {
                stem: base.to_string(),
                counter: None,
            });
        };
        let (left, done) = match counter.split_once('-') {
            Some((l, d)) => (l.parse().ok(), d.parse().ok()),
            None => (counter.parse().ok(), Some(0)),
        };
        Some(Entry {
            stem: stem.to_string(),
            counter: left.zip(done),
        })
    }

    /// The name it is blessed to: the counter dropped.
    pub fn blessed(&self) -> String {
        format!("{}.efi", self.stem)
    }

    /// True when systemd-boot will not start it again (no tries left).
    pub fn spent(&self) -> bool {
        matches!(self.counter, Some((0, _)))
    }
}

/// The OCI artifact type of an update bundle's manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.hull.update.v1";
/// The media types of its three blobs.
pub const UKI_TYPE: &str = "application/vnd.hull.uki.v1";
pub const ROOT_TYPE: &str = "application/vnd.hull.root.squashfs.v1";
pub const VERITY_TYPE: &str = "application/vnd.hull.root.verity.v1";
/// The manifest's annotations: version, target arch (`amd64`, `arm64`)
/// and root hash (hex).
pub const VERSION_ANNOTATION: &str = "org.opencontainers.image.version";
pub const ARCH_ANNOTATION: &str = "io.hull.arch";
pub const ROOT_HASH_ANNOTATION: &str = "io.hull.root-hash";

/// What `hull-init` writes about the boot for `hullctl` and the update
/// service: the slot it booted, its entry and the other slot's partitions.
pub const BOOT_FILE: &str = "/run/hull/boot.json";
/// Where `hull-init` mounts the ESP of a two-slot disk.
pub const ESP_MOUNT: &str = "/run/hull/esp";
/// The device nodes of the slot that did not boot, made by `hull-init` for
/// the update service (`root`, `verity`): the only disk it may write. In
/// `/dev` (devtmpfs): nodes on `/run` (a `nodev` mount) cannot be opened.
pub const SPARE_DIR: &str = "/dev/hull/spare";

/// What [`BOOT_FILE`] holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BootInfo {
    /// The slot booted (`a` or `b`).
    pub slot: String,
    /// The booted image's version (its UKI's IMAGE_VERSION).
    pub version: String,
    /// The root hash booted, hex.
    pub root_hash: String,
    /// The entry systemd-boot started (file name as on the ESP before its
    /// counter was updated, lower case), when it said.
    pub entry: Option<String>,
    /// The counted entry's path on the ESP, when this boot is being tried.
    pub count_path: Option<String>,
    /// Whether this boot has been blessed.
    pub blessed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_parse_as_systemd_boot_reads_them() {
        let e = Entry::parse("hull-2+3.efi").expect("a UKI");
        assert_eq!(e.stem, "hull-2");
        assert_eq!(e.counter, Some((3, 0)));
        let e = Entry::parse("HULL-2+1-2.EFI").expect("a UKI");
        assert_eq!(e.counter, Some((1, 2)));
        assert_eq!(e.blessed(), "hull-2.efi");
        assert!(!e.spent());
        assert!(Entry::parse("hull-2+0-3.efi").expect("a UKI").spent());
        assert_eq!(Entry::parse("HULL.EFI").expect("a UKI").counter, None);
        assert!(Entry::parse("loader.conf").is_none());
        assert_eq!(counted_entry("1.2"), "hull-1.2+3.efi");
        assert_eq!(slot_of_verity("hull-verity-b"), Some("b"));
        assert_eq!(slot_of_verity("hull-verity-c"), None);
        assert_eq!(
            (other("a"), other("b"), other("c")),
            (Some("b"), Some("a"), None)
        );
    }
}
