//! Installing an update bundle into the spare slot of a two-slot disk.
//!
//! In order, so that a power cut at any point leaves a bootable system:
//! every blob downloaded and checked first (digest, UKI and verity against
//! the bundle's root hash, sizes against the slot) — a bad bundle is
//! refused before anything is written; then the spare slot's old boot
//! entries removed from the ESP (so nothing can start a half-written slot);
//! the root and verity images written to the spare slot and read back
//! against the root hash; the UKI written under a temporary name and only
//! then renamed to its boot-counted name (`hull-V+3.efi`), which is what
//! makes systemd-boot try it. The booted slot and its entry are never
//! touched, and an update while this boot is still on trial is refused (its
//! fallback is the entry an update would replace).
//!
//! Owns: the order above and the checks. Reads what hull-init prepared
//! (`hull_contract::slots`: boot.json, the spare slot's nodes, the ESP);
//! must not talk HTTP itself (`registry`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use hull_contract::slots::{self, BootInfo, Entry};
use hull_contract::verity;

use crate::registry::{self, Client, Reference, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}: not booted from a two-slot disk, or hull-init did not say (bind it into the update service)")]
    NoBootInfo(String),
    #[error("this boot (version {0}) is still on trial: update once it is blessed, or its fallback would be overwritten")]
    OnTrial(String),
    #[error("{reference}: not a Hull update bundle: {why}")]
    NotABundle { reference: String, why: String },
    #[error("{reference} is for {bundle}, this machine is {machine}")]
    Arch {
        reference: String,
        bundle: String,
        machine: String,
    },
    #[error("{reference}: {why}: refused, nothing written")]
    Refused { reference: String, why: String },
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("slot {slot} written, but it does not read back as root hash {want} (got {got}): its entry was not installed")]
    Verify {
        slot: String,
        want: String,
        got: String,
    },
}

fn io<'p>(step: &'static str, path: &'p Path) -> impl Fn(std::io::Error) -> InstallError + 'p {
    move |source| InstallError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// What an install did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The bundle's version is the one running.
    Running(String),
    /// Its entry is on the ESP already, waiting for a boot.
    Pending(String),
    /// It was tried and given up (its spent entry is still on the ESP): it
    /// is not installed again; a newer version replaces it.
    Failed(String),
    /// Written to `slot`; systemd-boot tries `entry` at the next boot.
    Installed {
        version: String,
        slot: String,
        entry: String,
    },
}

/// The bundle's manifest, as far as this reads it.
#[derive(Debug, serde::Deserialize)]
struct Manifest {
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    layers: Vec<Layer>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Layer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

/// What a bundle is: its version, root hash and three blobs.
#[derive(Debug)]
struct Bundle {
    version: String,
    root_hash: String,
    uki: Layer,
    root: Layer,
    verity: Layer,
}

/// This machine's arch as bundles name it.
pub fn machine_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn bundle(reference: &Reference, raw: &[u8]) -> Result<Bundle, InstallError> {
    let not = |why: String| InstallError::NotABundle {
        reference: reference.to_string(),
        why,
    };
    let m: Manifest = serde_json::from_slice(raw).map_err(|e| not(e.to_string()))?;
    if m.artifact_type.as_deref() != Some(slots::ARTIFACT_TYPE) {
        return Err(not(format!("artifactType {:?}", m.artifact_type)));
    }
    let annotation = |k: &str| {
        m.annotations
            .get(k)
            .cloned()
            .ok_or_else(|| not(format!("no annotation {k}")))
    };
    let arch = annotation(slots::ARCH_ANNOTATION)?;
    if arch != machine_arch() {
        return Err(InstallError::Arch {
            reference: reference.to_string(),
            bundle: arch,
            machine: machine_arch().into(),
        });
    }
    let layer = |t: &str| {
        let mut found = m.layers.iter().filter(|l| l.media_type == t);
        match (found.next(), found.next()) {
            (Some(l), None) => Ok(l.clone()),
            _ => Err(not(format!("not exactly one {t} layer"))),
        }
    };
    let root_hash = annotation(slots::ROOT_HASH_ANNOTATION)?;
    if root_hash.len() != 64 || !root_hash.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(not(format!("root hash {root_hash:?} is not 64 hex digits")));
    }
    Ok(Bundle {
        version: annotation(slots::VERSION_ANNOTATION)?,
        root_hash,
        uki: layer(slots::UKI_TYPE)?,
        root: layer(slots::ROOT_TYPE)?,
        verity: layer(slots::VERITY_TYPE)?,
    })
}

/// Where things are: hull-init's files (changed by tests only).
pub struct Paths {
    pub boot: PathBuf,
    pub esp: PathBuf,
    pub spare: PathBuf,
    /// Downloads, kept across tries (a directory on the data partition
    /// makes them survive a reboot).
    pub scratch: PathBuf,
}

impl Paths {
    pub fn system(scratch: PathBuf) -> Paths {
        Paths {
            boot: slots::BOOT_FILE.into(),
            esp: slots::ESP_MOUNT.into(),
            spare: slots::SPARE_DIR.into(),
            scratch,
        }
    }

    fn entries(&self) -> PathBuf {
        self.esp.join(slots::ENTRY_DIR)
    }
}

fn boot_info(p: &Paths) -> Result<BootInfo, InstallError> {
    let raw = std::fs::read(&p.boot)
        .map_err(|e| InstallError::NoBootInfo(format!("{}: {e}", p.boot.display())))?;
    serde_json::from_slice(&raw)
        .map_err(|e| InstallError::NoBootInfo(format!("{}: {e}", p.boot.display())))
}

/// The entries on the ESP: file name and parsed name.
fn entries(p: &Paths) -> Result<Vec<(String, Entry)>, InstallError> {
    let dir = p.entries();
    let mut out: Vec<(String, Entry)> = std::fs::read_dir(&dir)
        .map_err(io("read", &dir))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Entry::parse(&name).map(|p| (name, p))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Installs the bundle `reference` into the spare slot.
pub fn install(
    reference: &Reference,
    client: &mut Client,
    p: &Paths,
) -> Result<Outcome, InstallError> {
    let info = boot_info(p)?;
    if !info.blessed {
        return Err(InstallError::OnTrial(info.version));
    }
    let (raw, digest) = client.manifest(reference)?;
    let b = bundle(reference, &raw)?;
    say(format!(
        "{reference}: {digest}: version {} for {}",
        b.version,
        machine_arch()
    ));
    if b.version == info.version {
        return Ok(Outcome::Running(b.version));
    }
    let stem = format!("{}-{}", slots::ENTRY_PREFIX, b.version).to_ascii_lowercase();
    match entries(p)?.iter().find(|(_, e)| e.stem == stem) {
        Some((_, e)) if e.spent() => return Ok(Outcome::Failed(b.version)),
        Some(_) => return Ok(Outcome::Pending(b.version)),
        None => {}
    }
    let files = download(reference, client, &b, p)?;
    check(reference, &b, &files, p, &info)?;
    remove_spare_entries(p, &info)?;
    write_slot(&files, p)?;
    verify_slot(&b, p, &info)?;
    let entry = add_entry(&files.uki, &b.version, p)?;
    let spare = slots::other(&info.slot).unwrap_or_default().to_string();
    Ok(Outcome::Installed {
        version: b.version,
        slot: spare,
        entry,
    })
}

/// Downloads and checks the bundle `reference` into the scratch directory
/// without installing it (to stage an update, or to check a registry);
/// returns its version and the three files.
pub fn fetch(
    reference: &Reference,
    client: &mut Client,
    p: &Paths,
) -> Result<(String, [PathBuf; 3]), InstallError> {
    let (raw, digest) = client.manifest(reference)?;
    let b = bundle(reference, &raw)?;
    say(format!("{reference}: {digest}: version {}", b.version));
    let files = download(reference, client, &b, p)?;
    check_bundle(reference, &b, &files)?;
    Ok((b.version, [files.uki, files.root, files.verity]))
}

pub fn say(msg: impl AsRef<str>) {
    let _ = writeln!(std::io::stdout(), "hull-update: {}", msg.as_ref());
}

/// The three blobs in the scratch directory.
struct Files {
    uki: PathBuf,
    root: PathBuf,
    verity: PathBuf,
}

fn download(
    reference: &Reference,
    client: &mut Client,
    b: &Bundle,
    p: &Paths,
) -> Result<Files, InstallError> {
    std::fs::create_dir_all(&p.scratch).map_err(io("mkdir", &p.scratch))?;
    let mut get = |l: &Layer| -> Result<PathBuf, InstallError> {
        let path = p.scratch.join(l.digest.replace(':', "-"));
        if !path.exists() {
            say(format!(
                "{reference}: fetching {} ({} bytes)",
                l.digest, l.size
            ));
            client.blob(&l.digest, l.size, &path)?;
        } else if registry::file_sha256(&path)? != l.digest {
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
            client.blob(&l.digest, l.size, &path)?;
        }
        Ok(path)
    };
    Ok(Files {
        uki: get(&b.uki)?,
        root: get(&b.root)?,
        verity: get(&b.verity)?,
    })
}

/// The size of the file or block device at `path`.
fn size_of(path: &Path) -> Result<u64, InstallError> {
    let mut f = File::open(path).map_err(io("open", path))?;
    f.seek(SeekFrom::End(0)).map_err(io("measure", path))
}

/// What the bundle's blobs must say of each other: the UKI boots the
/// bundle's root hash and version, the verity image is that root hash's.
fn check_bundle(reference: &Reference, b: &Bundle, f: &Files) -> Result<(), InstallError> {
    let refuse = |why: String| InstallError::Refused {
        reference: reference.to_string(),
        why,
    };
    let mut uki = File::open(&f.uki).map_err(io("open", &f.uki))?;
    match hull_contract::uki::root_hash(&mut uki) {
        Some(h) if h == b.root_hash => {}
        other => {
            return Err(refuse(format!(
                "its UKI boots root hash {other:?}, the bundle says {}",
                b.root_hash
            )))
        }
    }
    if hull_contract::uki::version(&mut uki).as_deref() != Some(b.version.as_str()) {
        return Err(refuse(
            "its UKI's IMAGE_VERSION is not the bundle's version".into(),
        ));
    }
    let mut sb = vec![0u8; 512];
    File::open(&f.verity)
        .and_then(|mut v| v.read_exact(&mut sb))
        .map_err(io("read", &f.verity))?;
    if &sb[0..8] != b"verity\0\0"
        || Some(registry::hex(&sb[16..32]).as_str()) != b.root_hash.get(..32)
    {
        return Err(refuse(
            "its verity image does not name its root hash".into(),
        ));
    }
    Ok(())
}

/// Everything that can be checked before a byte is written: the bundle,
/// and that it fits the spare slot and the ESP.
fn check(
    reference: &Reference,
    b: &Bundle,
    f: &Files,
    p: &Paths,
    info: &BootInfo,
) -> Result<(), InstallError> {
    check_bundle(reference, b, f)?;
    let refuse = |why: String| InstallError::Refused {
        reference: reference.to_string(),
        why,
    };
    for (blob, part) in [(&f.root, "root"), (&f.verity, "verity")] {
        let (need, room) = (size_of(blob)?, size_of(&p.spare.join(part))?);
        if need > room {
            return Err(refuse(format!(
                "its {part} image is {need} bytes, the slot's partition {room}: rebuild the disk with a larger --slot-size"
            )));
        }
    }
    let uki = size_of(&f.uki)?;
    let free = esp_free(p, booted_stem(info))?;
    if free < uki {
        return Err(refuse(format!(
            "its UKI ({uki} bytes) does not fit the ESP ({free} bytes free once the spare slot's entries go)"
        )));
    }
    Ok(())
}

/// Free bytes on the ESP once the entries other than the booted one go.
fn esp_free(p: &Paths, booted: String) -> Result<u64, InstallError> {
    let st = rustix::fs::statvfs(&p.esp).map_err(|e| io("statvfs", &p.esp)(e.into()))?;
    let mut free = st.f_bavail * st.f_frsize;
    for (name, e) in entries(p)? {
        if e.stem != booted {
            let path = p.entries().join(name);
            free += std::fs::metadata(&path).map_err(io("stat", &path))?.len();
        }
    }
    Ok(free)
}

/// The booted entry's name without counter.
fn booted_stem(info: &BootInfo) -> String {
    info.entry
        .as_deref()
        .and_then(Entry::parse)
        .map(|e| e.stem)
        .unwrap_or_default()
}

/// Removes every entry but the booted one (the spare slot's, and failed
/// or half-written ones), so nothing can start the slot being written.
fn remove_spare_entries(p: &Paths, info: &BootInfo) -> Result<(), InstallError> {
    let booted = booted_stem(info);
    let dir = p.entries();
    for (name, e) in entries(p)? {
        if e.stem != booted {
            let path = dir.join(&name);
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
            say(format!("removed the spare slot's entry {name}"));
        }
    }
    if let Ok(d) = std::fs::read_dir(&dir) {
        for e in d.flatten() {
            if e.file_name().to_string_lossy().starts_with(".hull-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", &dir))
}

/// Copies `from` onto the device `to` and syncs it.
fn copy_to(from: &Path, to: &Path) -> Result<u64, InstallError> {
    let mut src = File::open(from).map_err(io("open", from))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .open(to)
        .map_err(io("open", to))?;
    let n = std::io::copy(&mut src, &mut dst).map_err(io("write", to))?;
    dst.sync_all().map_err(io("sync", to))?;
    Ok(n)
}

fn write_slot(f: &Files, p: &Paths) -> Result<(), InstallError> {
    for (blob, part) in [(&f.root, "root"), (&f.verity, "verity")] {
        let dev = p.spare.join(part);
        let n = copy_to(blob, &dev)?;
        say(format!(
            "wrote {n} bytes to the spare slot's {part} ({})",
            dev.display()
        ));
    }
    Ok(())
}

/// Reads the spare slot back: the hash tree of its root must be the one in
/// its verity partition and give the bundle's root hash.
fn verify_slot(b: &Bundle, p: &Paths, info: &BootInfo) -> Result<(), InstallError> {
    let (root_dev, verity_dev) = (p.spare.join("root"), p.spare.join("verity"));
    let mut sb = vec![0u8; 4096];
    File::open(&verity_dev)
        .and_then(|mut v| v.read_exact(&mut sb))
        .map_err(io("read", &verity_dev))?;
    let blocks = u64::from_le_bytes(sb[72..80].try_into().unwrap_or_default());
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&sb[88..120]);
    let len = blocks * verity::BLOCK;
    let mut data = File::open(&root_dev)
        .map_err(io("open", &root_dev))?
        .take(len);
    let mut tree = Vec::new();
    let v = verity::write(&mut data, len, salt, &mut tree).map_err(io("read", &root_dev))?;
    let mut written = vec![0u8; tree.len()];
    File::open(&verity_dev)
        .and_then(|mut f| f.read_exact(&mut written))
        .map_err(io("read", &verity_dev))?;
    let got = registry::hex(&v.root_hash);
    if got != b.root_hash || written != tree {
        let slot = slots::other(&info.slot).unwrap_or_default().to_string();
        return Err(InstallError::Verify {
            slot,
            want: b.root_hash.clone(),
            got,
        });
    }
    say(format!("the spare slot reads back as root hash {got}"));
    Ok(())
}

/// Writes the UKI under a temporary name, then renames it to its counted
/// entry name; returns that name.
fn add_entry(uki: &Path, version: &str, p: &Paths) -> Result<String, InstallError> {
    let dir = p.entries();
    let tmp = dir.join(".hull-new.tmp");
    let entry = slots::counted_entry(version);
    let dest = dir.join(&entry);
    std::fs::copy(uki, &tmp).map_err(io("copy", &tmp))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &tmp))?;
    std::fs::rename(&tmp, &dest).map_err(io("rename", &dest))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", &dir))?;
    say(format!(
        "installed {entry}: systemd-boot tries it at the next boot"
    ));
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PE image with `sections` (name, bytes), as a UKI has them.
    fn pe(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; 0x400];
        out[0x3c] = 0x40;
        out[0x40..0x44].copy_from_slice(b"PE\0\0");
        out[0x46] = u8::try_from(sections.len()).expect("few");
        for (i, (name, data)) in sections.iter().enumerate() {
            let s = 0x40 + 24 + 40 * i;
            out[s..s + name.len()].copy_from_slice(name.as_bytes());
            let len = u32::try_from(data.len()).expect("small");
            let at = u32::try_from(out.len()).expect("small");
            out[s + 8..s + 12].copy_from_slice(&len.to_le_bytes());
            out[s + 16..s + 20].copy_from_slice(&len.to_le_bytes());
            out[s + 20..s + 24].copy_from_slice(&at.to_le_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    /// A root image of `blocks` 4 KiB blocks and its verity image.
    fn root_and_verity(blocks: usize) -> (Vec<u8>, Vec<u8>, String) {
        let data: Vec<u8> = (0..blocks * 4096)
            .map(|i| u8::try_from(i % 251).unwrap_or(0))
            .collect();
        let mut tree = Vec::new();
        let v =
            verity::write(&mut &data[..], data.len() as u64, [7; 32], &mut tree).expect("a tree");
        (data, tree, registry::hex(&v.root_hash))
    }

    struct Disk {
        _dir: tempfile::TempDir,
        paths: Paths,
        files: Files,
        bundle: Bundle,
        info: BootInfo,
    }

    /// A fake machine booted from slot a (`hull.efi`), with a stale spent
    /// entry, spare partitions of `room` bytes, and a bundle of version 2.
    fn disk(room: u64) -> Disk {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let paths = Paths {
            boot: d.join("boot.json"),
            esp: d.join("esp"),
            spare: d.join("spare"),
            scratch: d.join("scratch"),
        };
        std::fs::create_dir_all(paths.entries()).expect("esp");
        std::fs::create_dir_all(&paths.spare).expect("spare");
        std::fs::create_dir_all(&paths.scratch).expect("scratch");
        std::fs::write(paths.entries().join("hull.efi"), b"booted").expect("entry");
        std::fs::write(paths.entries().join("hull-1+0-3.efi"), b"spent").expect("entry");
        for part in ["root", "verity"] {
            let f = File::create(paths.spare.join(part)).expect("part");
            f.set_len(room).expect("size");
        }
        let (data, tree, root_hash) = root_and_verity(40);
        let files = Files {
            uki: paths.scratch.join("uki"),
            root: paths.scratch.join("root"),
            verity: paths.scratch.join("verity"),
        };
        let cmdline = format!("console=ttyS0 roothash={root_hash}");
        let uki = pe(&[
            (".osrel", b"ID=hull\nIMAGE_VERSION=2\n"),
            (".cmdline", cmdline.as_bytes()),
        ]);
        std::fs::write(&files.uki, uki).expect("uki");
        std::fs::write(&files.root, data).expect("root");
        std::fs::write(&files.verity, tree).expect("verity");
        let layer = |t: &str| Layer {
            media_type: t.into(),
            digest: String::new(),
            size: 0,
        };
        let bundle = Bundle {
            version: "2".into(),
            root_hash,
            uki: layer(slots::UKI_TYPE),
            root: layer(slots::ROOT_TYPE),
            verity: layer(slots::VERITY_TYPE),
        };
        let info = BootInfo {
            slot: "a".into(),
            version: "1".into(),
            root_hash: String::new(),
            entry: Some("hull.efi".into()),
            count_path: None,
            blessed: true,
        };
        Disk {
            _dir: dir,
            paths,
            files,
            bundle,
            info,
        }
    }

    fn reference() -> Reference {
        Reference::parse("reg.example/app/update:2").expect("valid")
    }

    #[test]
    fn a_bundle_is_read_from_its_manifest_and_anything_else_is_refused() {
        let manifest = |artifact: &str, arch: &str, ukis: usize| {
            let uki = format!(
                r#"{{"mediaType":"{}","digest":"sha256:u","size":1}}"#,
                slots::UKI_TYPE
            );
            let layers = std::iter::repeat_n(uki, ukis)
                .chain([
                    format!(
                        r#"{{"mediaType":"{}","digest":"sha256:r","size":2}}"#,
                        slots::ROOT_TYPE
                    ),
                    format!(
                        r#"{{"mediaType":"{}","digest":"sha256:v","size":3}}"#,
                        slots::VERITY_TYPE
                    ),
                ])
                .collect::<Vec<_>>()
                .join(",");
            format!(
                r#"{{"artifactType":"{artifact}","layers":[{layers}],"annotations":{{"{}":"2","{}":"{arch}","{}":"{}"}}}}"#,
                slots::VERSION_ANNOTATION,
                slots::ARCH_ANNOTATION,
                slots::ROOT_HASH_ANNOTATION,
                "ab".repeat(32)
            )
        };
        let r = reference();
        let b = bundle(
            &r,
            manifest(slots::ARTIFACT_TYPE, machine_arch(), 1).as_bytes(),
        )
        .expect("a bundle");
        assert_eq!((b.version.as_str(), b.root.size), ("2", 2));
        let short =
            manifest(slots::ARTIFACT_TYPE, machine_arch(), 1).replace(&"ab".repeat(32), "ab");
        assert!(matches!(
            bundle(&r, short.as_bytes()),
            Err(InstallError::NotABundle { why, .. }) if why.contains("64 hex digits")
        ));
        assert!(matches!(
            bundle(
                &r,
                manifest("application/other", machine_arch(), 1).as_bytes()
            ),
            Err(InstallError::NotABundle { .. })
        ));
        assert!(matches!(
            bundle(&r, manifest(slots::ARTIFACT_TYPE, "riscv64", 1).as_bytes()),
            Err(InstallError::Arch { .. })
        ));
        assert!(bundle(
            &r,
            manifest(slots::ARTIFACT_TYPE, machine_arch(), 2).as_bytes()
        )
        .is_err());
    }

    #[test]
    fn a_good_bundle_is_written_read_back_and_its_entry_added_last() {
        let d = disk(1 << 20);
        check(&reference(), &d.bundle, &d.files, &d.paths, &d.info).expect("passes its checks");
        remove_spare_entries(&d.paths, &d.info).expect("removed");
        assert_eq!(
            entries(&d.paths)
                .expect("listed")
                .into_iter()
                .map(|e| e.0)
                .collect::<Vec<_>>(),
            ["hull.efi"]
        );
        write_slot(&d.files, &d.paths).expect("written");
        verify_slot(&d.bundle, &d.paths, &d.info).expect("reads back");
        assert_eq!(
            add_entry(&d.files.uki, "2", &d.paths).expect("added"),
            "hull-2+3.efi"
        );
        let names: Vec<String> = entries(&d.paths)
            .expect("listed")
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names, ["hull-2+3.efi", "hull.efi"]);
        assert!(!d.paths.entries().join(".hull-new.tmp").exists());
    }

    #[test]
    fn a_bundle_that_does_not_hold_together_is_refused_before_writing() {
        let d = disk(1 << 20);
        let mut other = Bundle {
            root_hash: "00".repeat(32),
            ..d.bundle
        };
        let refused = check(&reference(), &other, &d.files, &d.paths, &d.info);
        assert!(
            matches!(&refused, Err(InstallError::Refused { why, .. }) if why.contains("root hash")),
            "{refused:?}"
        );
        other.root_hash = root_and_verity(40).2;
        let small = disk(4096);
        let refused = check(
            &reference(),
            &small.bundle,
            &small.files,
            &small.paths,
            &small.info,
        );
        assert!(
            matches!(&refused, Err(InstallError::Refused { why, .. }) if why.contains("--slot-size")),
            "{refused:?}"
        );
        // Nothing was written: the spare partitions are still zeros.
        let root = std::fs::read(small.paths.spare.join("root")).expect("read");
        assert!(root.iter().all(|&b| b == 0));
    }

    #[test]
    fn a_slot_that_reads_back_wrong_gets_no_entry() {
        let d = disk(1 << 20);
        write_slot(&d.files, &d.paths).expect("written");
        let dev = d.paths.spare.join("root");
        let mut bytes = std::fs::read(&dev).expect("read");
        bytes[5000] ^= 1;
        std::fs::write(&dev, bytes).expect("corrupted");
        assert!(matches!(
            verify_slot(&d.bundle, &d.paths, &d.info),
            Err(InstallError::Verify { .. })
        ));
    }

    #[test]
    fn an_update_on_trial_or_without_boot_info_is_refused_before_asking_the_registry() {
        let d = disk(1 << 20);
        // Nothing listens on port 1: reaching the registry would be an HTTP error.
        let r = Reference::parse("127.0.0.1:1/app/update:2").expect("valid");
        let options = registry::Options {
            plain_http: true,
            ..Default::default()
        };
        let mut client = Client::new(&r, &options).expect("a client");
        let no_info = install(&r, &mut client, &d.paths);
        assert!(
            matches!(no_info, Err(InstallError::NoBootInfo(_))),
            "{no_info:?}"
        );
        let trial = BootInfo {
            blessed: false,
            ..d.info.clone()
        };
        std::fs::write(&d.paths.boot, serde_json::to_vec(&trial).expect("json"))
            .expect("boot.json");
        let on_trial = install(&r, &mut client, &d.paths);
        assert!(
            matches!(on_trial, Err(InstallError::OnTrial(_))),
            "{on_trial:?}"
        );
        std::fs::write(&d.paths.boot, serde_json::to_vec(&d.info).expect("json"))
            .expect("boot.json");
        let unreachable = install(&r, &mut client, &d.paths);
        assert!(
            matches!(unreachable, Err(InstallError::Registry(_))),
            "{unreachable:?}"
        );
        assert_eq!(
            entries(&d.paths).expect("listed").len(),
            2,
            "nothing was removed"
        );
    }
}
