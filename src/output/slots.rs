//! Two-slot disks (`--root ab`) and the update bundles that refill them.
//!
//! Owns: the disk's layout (an ESP with systemd-boot as the firmware's
//! loader and the first image's UKI in `EFI/Linux`, slot A's root and verity
//! partitions holding the image, slot B's as large and empty, then the data
//! partition) and the bundle (`NAME-update.oci.tar`: an OCI image layout
//! archive of one artifact manifest whose blobs are the UKI, the root image
//! and its verity image, with the version, arch and root hash annotated).
//! The names both follow are `hull_contract::slots`. Must not write file
//! systems or tables itself (`fat`, `gpt`) nor make the root or UKI
//! (`artifacts`).

use std::io::{self, Read, Write};

use hull_contract::slots;
use oci_spec::image::{
    DescriptorBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, PlatformBuilder,
};
use sha2::Digest as _;

use super::artifacts::{Artifacts, DiskRoot};
use super::formats::{efi_loader_path, root_types, Out, Written};
use super::{boot_file, Format, OutputError, Slots, StagedFile, SLOT_MIN};
use crate::media::gpt;
use crate::media::source::{FileSource, Source};
use hull_contract::verity;

const MIB: u64 = 1 << 20;

fn io_err(path: &std::path::Path) -> impl Fn(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// systemd-boot in the bootloader image for `arch`.
fn sd_boot_path(arch: crate::platform::Arch) -> &'static str {
    match arch {
        crate::platform::Arch::Amd64 => "efi/systemd-bootx64.efi",
        crate::platform::Arch::Arm64 => "efi/systemd-bootaa64.efi",
    }
}

/// Each root slot's size: `--slot-size`, else twice the root image and at
/// least [`SLOT_MIN`], in whole MiB; refused when the root does not fit.
fn slot_size(slots: &Slots, root: &DiskRoot) -> Result<u64, OutputError> {
    let len = root.data.len();
    let size = slots
        .slot_size
        .unwrap_or_else(|| (2 * len).max(SLOT_MIN))
        .div_ceil(MIB)
        * MIB;
    if len > size {
        return Err(OutputError::SlotTooSmall {
            root: len,
            slot: size,
        });
    }
    Ok(size)
}

/// A partition GUID for `what`, unique to this image and reproducible.
fn slot_guid(root: &DiskRoot, what: &str) -> [u8; 16] {
    let h = crate::media::content_hash(&[b"hull slot", &root.verity.root_hash, what.as_bytes()]);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// The four slot partitions: A holding `root`, B empty, each `size` bytes
/// of root and room for the hash tree of that much.
fn slot_partitions(root: &DiskRoot, size: u64, arch: crate::platform::Arch) -> Vec<gpt::Extra<'_>> {
    static EMPTY: &[u8] = &[];
    let (root_type, verity_type) = root_types(arch);
    let hash_size = verity::hash_size(size);
    let sources: [(&str, &dyn Source, u64); 4] = [
        (root_type, &root.data, size),
        (verity_type, &root.hash, hash_size),
        (root_type, &EMPTY, size),
        (verity_type, &EMPTY, hash_size),
    ];
    sources
        .into_iter()
        .zip(PARTITIONS)
        .map(|((type_guid, data, size), name)| gpt::Extra {
            type_guid,
            uuid: slot_guid(root, name),
            name,
            data,
            size,
        })
        .collect()
}

/// The slot partitions' GPT names (as `slots::root_partition` and
/// `slots::verity_partition` make them; `gpt::Extra` takes `'static` names).
const PARTITIONS: [&str; 4] = [
    "hull-root-a",
    "hull-verity-a",
    "hull-root-b",
    "hull-verity-b",
];

/// The loader the firmware starts: systemd-boot, signed when the UKI is.
fn loader(a: &Artifacts, format: Format, dest: &std::path::Path) -> Result<Loader, OutputError> {
    let bytes = boot_file(a.img, format, sd_boot_path(a.img.arch))?;
    let Some(signer) = a.img.signer else {
        return Ok(Loader::Plain(bytes.to_vec()));
    };
    let dir = dest.parent().unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".hull-sd-boot-")
        .tempfile_in(dir)
        .map_err(io_err(dest))?;
    tmp.write_all(bytes).map_err(io_err(dest))?;
    crate::media::authenticode::sign(tmp.as_file(), signer)?;
    let src = FileSource::new(tmp.path()).map_err(io_err(dest))?;
    Ok(Loader::Signed {
        _file: tmp,
        source: src,
    })
}

enum Loader {
    Plain(Vec<u8>),
    /// The signed copy: its temp file, kept while it is read, and source.
    Signed {
        _file: tempfile::NamedTempFile,
        source: FileSource,
    },
}

impl Loader {
    fn source(&self) -> &dyn Source {
        match self {
            Loader::Plain(b) => b,
            Loader::Signed { source, .. } => source,
        }
    }
}

/// A two-slot GPT disk into the staged file `raw`.
pub fn slotted_disk(
    a: &mut Artifacts,
    (mut f, fd): StagedFile,
    format: Format,
    slots: &Slots,
) -> Result<StagedFile, OutputError> {
    let arch = a.img.arch;
    let disk_size = a.img.disk_size;
    let uki = a.uki(format, &fd)?.clone();
    let loader = loader(a, format, &fd)?;
    let root = a.disk_root(&fd)?;
    let size = slot_size(slots, root)?;
    let extras = slot_partitions(root, size, arch);
    let entry = format!("{}/{}", slots::ENTRY_DIR, slots::FIRST_ENTRY).to_ascii_uppercase();
    let files: Vec<crate::media::fat::File> = vec![
        (efi_loader_path(arch), loader.source()),
        (entry.as_str(), &uki),
    ];
    // Room for the other slot's UKI beside this one, twice as large.
    let spare = 2 * uki.len();
    gpt::write_disk(f.as_file_mut(), &files, None, &extras, (disk_size, spare))?;
    Ok((f, fd))
}

/// A blob of the bundle: its media type, title and bytes.
struct Blob<'s> {
    media_type: &'static str,
    title: &'static str,
    data: &'s dyn Source,
}

/// `sha256:HEX` of a source, streamed.
fn sha256(src: &dyn Source) -> io::Result<String> {
    let digest = crate::media::source::content_hash(&[src])?;
    Ok(format!("sha256:{}", hex::encode(digest)))
}

/// NAME-update.oci.tar: the update bundle for this image's version.
pub fn update_bundle(a: &mut Artifacts, out: &Out) -> Written {
    let slots_cfg = a.img.slots.ok_or(OutputError::UpdateNeedsSlots)?;
    let (f, fd) = out.stage("-update.oci.tar")?;
    let arch = a.img.arch;
    let mtime = a.img.mtime;
    let uki = a.uki(out.format, &fd)?.clone();
    let root = a.disk_root(&fd)?;
    let blobs = [
        Blob {
            media_type: slots::UKI_TYPE,
            title: "hull.efi",
            data: &uki,
        },
        Blob {
            media_type: slots::ROOT_TYPE,
            title: "root.squashfs",
            data: &root.data,
        },
        Blob {
            media_type: slots::VERITY_TYPE,
            title: "root.verity",
            data: &root.hash,
        },
    ];
    let about = About {
        name: out.name,
        version: &slots_cfg.version,
        arch,
        root_hash: hex::encode(root.verity.root_hash),
        mtime,
    };
    let w = write_layout(&blobs, &about, io::BufWriter::new(f)).map_err(|e| match e {
        LayoutError::Io(e) => io_err(&fd)(e),
        LayoutError::Spec(m) => io_err(&fd)(io::Error::other(m)),
    })?;
    let f = w.into_inner().map_err(|e| io_err(&fd)(e.into_error()))?;
    Ok(vec![(f, fd)])
}

/// What the bundle says about itself.
struct About<'a> {
    name: &'a str,
    version: &'a str,
    arch: crate::platform::Arch,
    root_hash: String,
    mtime: u64,
}

enum LayoutError {
    Io(io::Error),
    Spec(String),
}

impl From<io::Error> for LayoutError {
    fn from(e: io::Error) -> Self {
        LayoutError::Io(e)
    }
}

fn spec_err(e: impl std::fmt::Display) -> LayoutError {
    LayoutError::Spec(e.to_string())
}

/// The artifact manifest over `layers` (descriptors of the blobs).
fn manifest(
    layers: Vec<oci_spec::image::Descriptor>,
    about: &About,
) -> Result<Vec<u8>, LayoutError> {
    let empty = DescriptorBuilder::default()
        .media_type(MediaType::EmptyJSON)
        .digest(
            EMPTY_DIGEST
                .parse::<oci_spec::image::Digest>()
                .map_err(spec_err)?,
        )
        .size(2u64)
        .build()
        .map_err(spec_err)?;
    let annotations = [
        (slots::VERSION_ANNOTATION, about.version.to_string()),
        (slots::ARCH_ANNOTATION, about.arch.to_string()),
        (slots::ROOT_HASH_ANNOTATION, about.root_hash.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<std::collections::HashMap<_, _>>();
    let m = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(slots::ARTIFACT_TYPE.to_string()))
        .config(empty)
        .layers(layers)
        .annotations(annotations)
        .build()
        .map_err(spec_err)?;
    crate::image::oci::write::to_bytes(&m).map_err(spec_err)
}

/// The digest of `{}`, the empty config every artifact manifest points at.
const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// Writes the OCI image layout archive: `oci-layout`, `index.json` naming
/// the manifest `hull-update/NAME:VERSION`, and the blobs, in a fixed order
/// with fixed times.
fn write_layout<W: Write>(blobs: &[Blob], about: &About, out: W) -> Result<W, LayoutError> {
    let mut layers = Vec::new();
    for b in blobs {
        let title = [(
            "org.opencontainers.image.title".to_string(),
            b.title.to_string(),
        )];
        layers.push(
            DescriptorBuilder::default()
                .media_type(MediaType::Other(b.media_type.to_string()))
                .digest(
                    sha256(b.data)?
                        .parse::<oci_spec::image::Digest>()
                        .map_err(spec_err)?,
                )
                .size(b.data.len())
                .annotations(
                    title
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
                .build()
                .map_err(spec_err)?,
        );
    }
    let manifest = manifest(layers.clone(), about)?;
    let manifest_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manifest)));
    let platform = PlatformBuilder::default()
        .architecture(oci_spec::image::Arch::from(about.arch.to_string().as_str()))
        .os(oci_spec::image::Os::Linux)
        .build()
        .map_err(spec_err)?;
    let reference = format!("hull-update/{}:{}", about.name, about.version);
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(
                manifest_digest
                    .parse::<oci_spec::image::Digest>()
                    .map_err(spec_err)?,
            )
            .size(manifest.len() as u64)
            .platform(platform)
            .annotations(
                [(crate::image::oci::REF_NAME.to_string(), reference)]
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .map_err(spec_err)?])
        .build()
        .map_err(spec_err)?;
    let index = crate::image::oci::write::to_bytes(&index).map_err(spec_err)?;
    let mut tar = tar::Builder::new(out);
    let mut put = |name: &str, data: &dyn Source| -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len());
        h.set_mode(0o644);
        h.set_mtime(about.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        let mut r: Box<dyn Read + '_> = data.open()?;
        tar.append_data(&mut h, name, &mut r)
    };
    put("oci-layout", &&br#"{"imageLayoutVersion":"1.0.0"}"#[..])?;
    put("index.json", &index)?;
    put(&blob_path(&manifest_digest), &manifest)?;
    put(&blob_path(EMPTY_DIGEST), &&b"{}"[..])?;
    for (b, d) in blobs.iter().zip(&layers) {
        put(&blob_path(d.digest().as_ref()), b.data)?;
    }
    Ok(tar.into_inner()?)
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_are_the_contract_s() {
        for (i, slot) in slots::SLOTS.iter().enumerate() {
            assert_eq!(PARTITIONS[2 * i], slots::root_partition(slot));
            assert_eq!(PARTITIONS[2 * i + 1], slots::verity_partition(slot));
        }
    }

    #[test]
    fn the_empty_digest_is_that_of_two_braces() {
        assert_eq!(
            EMPTY_DIGEST,
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"{}")))
        );
    }
}
