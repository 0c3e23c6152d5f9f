//! The plan: a manifest and what its pulled images say, turned into every
//! decision a build makes before anything is placed in the image tree.
//!
//! Owns: each container's section, name, directory, image (reference and
//! manifest digest) and its `config.json` and `runtime.json` as the contract's
//! types, fully defaulted (through [`spec`]); ids for the names used as uids
//! and gids, allocated once for containers and files alike; the kernel's file
//! names; volumes; and what each `files:` entry writes. Must not read images'
//! contents or write anything: `assemble` does, reading only the plan.

pub mod files;
pub mod spec;

use std::collections::BTreeMap;
use std::path::Path;

use hull_contract::{layout, Runtime, Section};
use oci_spec::runtime::Spec;

use crate::manifest::decode::Spanned;
use crate::manifest::types::{Image as Entry, Kernel, Manifest};
use crate::manifest::values::{Id, Seconds};
use crate::manifest::ImageConfig;

pub use files::{FileContent, FilePlan};
pub use spec::ImageDefaults;

/// What the plan needs to know of one pulled image.
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    /// The image's manifest digest, hex only: its directory under
    /// `/containers/images`.
    pub hex: String,
    /// What the image config says about running it.
    pub defaults: ImageDefaults,
    /// The image's `org.mobyproject.config` label.
    pub label: ImageConfig,
}

/// Everything a build decided.
#[derive(Debug)]
pub struct Plan {
    pub kernel: Option<KernelPlan>,
    /// The kernel command line.
    pub cmdline: String,
    /// Init images, merged at `/` in this order (references as written).
    pub init: Vec<String>,
    pub containers: Vec<ContainerPlan>,
    pub volumes: Vec<VolumePlan>,
    pub files: Vec<FilePlan>,
}

/// The kernel: which image, and the names of its files there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPlan {
    pub image: String,
    /// The kernel file (default `kernel`).
    pub binary: String,
    /// The modules tarball unpacked at `/`: `None` when there is none.
    pub tar: Option<ModulesTar>,
    /// A microcode cpio prepended to the initrd.
    pub ucode: Option<String>,
}

/// The kernel image's modules tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModulesTar {
    pub name: String,
    /// Written in the manifest: an image without it is an error (the
    /// default name is used only when present).
    pub required: bool,
}

/// One container, decided.
#[derive(Debug)]
pub struct ContainerPlan {
    pub section: Section,
    pub name: String,
    /// Its directory, relative to the image root.
    pub dir: String,
    /// Its image, as the manifest writes the reference.
    pub image: String,
    /// Its image's manifest digest, hex only.
    pub image_hex: String,
    pub config: Spec,
    pub runtime: Runtime,
}

/// One volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    pub name: String,
    /// Its content, or an empty directory.
    pub image: Option<String>,
}

/// Why a manifest and its images do not make a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("image {0} was not pulled")]
    NotPulled(String),
    #[error("cannot make config.json for {what}")]
    Spec {
        what: String,
        #[source]
        source: spec::SpecError,
    },
    #[error("volume {0}: format oci is not supported by hull build yet")]
    OciVolume(String),
    #[error("cannot write the manifest for files entry {path}")]
    Metadata {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The kernel command line: the manifest's, then the words hull-init reads
/// for `health:` and `watchdog:` (`hull.health=WINDOW,DEADLINE`, either
/// empty for hull-init's default; `hull.watchdog=DEVICE[,TIMEOUT]`).
fn cmdline(manifest: &Manifest) -> String {
    let mut words: Vec<String> = manifest
        .kernel
        .as_ref()
        .and_then(|k| k.cmdline.clone())
        .into_iter()
        .filter(|c| !c.trim().is_empty())
        .collect();
    let secs = |s: &Option<Spanned<Seconds>>| s.as_ref().map(|s| s.value.0.to_string());
    if let Some(h) = &manifest.health {
        words.push(format!(
            "hull.health={},{}",
            secs(&h.window).unwrap_or_default(),
            secs(&h.deadline).unwrap_or_default()
        ));
    }
    if let Some(w) = &manifest.watchdog {
        let device = w
            .device
            .as_ref()
            .map(|d| d.value.clone())
            .unwrap_or_default();
        words.push(match secs(&w.timeout) {
            Some(t) => format!("hull.watchdog={device},{t}"),
            None => format!("hull.watchdog={device}"),
        });
    }
    words.join(" ")
}

/// Plans a build of `manifest` whose images (by reference as written) are
/// described by `images`; `manifest_dir` anchors `files:` sources.
pub fn plan(
    manifest: &Manifest,
    images: &BTreeMap<String, ImageInfo>,
    manifest_dir: &Path,
) -> Result<Plan, PlanError> {
    let ids = spec::allocate_ids(&id_names(manifest));
    let mut containers = Vec::new();
    for (section, list) in sections(manifest) {
        for (index, e) in list.iter().enumerate() {
            containers.push(container(section, index, e, images, &ids)?);
        }
    }
    Ok(Plan {
        kernel: manifest.kernel.as_ref().and_then(kernel),
        cmdline: cmdline(manifest),
        init: manifest
            .init
            .iter()
            .flatten()
            .map(|i| i.value.text.clone())
            .collect(),
        containers,
        volumes: volumes(manifest)?,
        files: files::plan(manifest, manifest_dir, &ids)?,
    })
}

/// The three container lists with their sections, in boot order.
fn sections(m: &Manifest) -> [(Section, &[Entry]); 3] {
    [
        (Section::Onboot, m.onboot.as_deref().unwrap_or_default()),
        (
            Section::Onshutdown,
            m.onshutdown.as_deref().unwrap_or_default(),
        ),
        (Section::Services, m.services.as_deref().unwrap_or_default()),
    ]
}

/// Every name used as a uid or gid, by containers and files.
fn id_names(m: &Manifest) -> Vec<String> {
    let mut names = Vec::new();
    for (_, list) in sections(m) {
        for c in list.iter().map(|e| &e.config) {
            let ids = c
                .uid
                .iter()
                .chain(&c.gid)
                .chain(c.additional_gids.iter().flatten());
            names.extend(ids.filter_map(|id| match &id.value {
                Id::Name(n) => Some(n.clone()),
                Id::Number(_) => None,
            }));
        }
    }
    for f in m.files.iter().flatten() {
        names.extend(f.uid.iter().chain(&f.gid).filter_map(|id| match id {
            Id::Name(n) => Some(n.clone()),
            Id::Number(_) => None,
        }));
    }
    names
}

fn kernel(k: &Kernel) -> Option<KernelPlan> {
    let image = k.image.as_ref()?.value.text.clone();
    let tar = match &k.tar {
        Some(t) if t.is_empty() => None,
        Some(t) => Some(ModulesTar {
            name: t.clone(),
            required: true,
        }),
        None => Some(ModulesTar {
            name: "kernel.tar".into(),
            required: false,
        }),
    };
    Some(KernelPlan {
        image,
        binary: k
            .binary
            .clone()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "kernel".into()),
        tar,
        ucode: k.ucode.clone().filter(|u| !u.is_empty()),
    })
}

fn container(
    section: Section,
    index: usize,
    e: &Entry,
    images: &BTreeMap<String, ImageInfo>,
    ids: &BTreeMap<String, u32>,
) -> Result<ContainerPlan, PlanError> {
    let name = e.name.as_ref().map(|n| n.value.clone()).unwrap_or_default();
    let image = e
        .image
        .as_ref()
        .map(|i| i.value.text.clone())
        .unwrap_or_default();
    let info = images
        .get(&image)
        .ok_or_else(|| PlanError::NotPulled(image.clone()))?;
    let settings = spec::merge(&info.label, &e.config);
    let config = spec::runtime_spec(&name, &settings, &info.defaults, ids).map_err(|source| {
        PlanError::Spec {
            what: format!("{section} container {name}"),
            source,
        }
    })?;
    let image_dir = layout::absolute(&layout::image_dir(&info.hex));
    Ok(ContainerPlan {
        section,
        dir: section.container_dir(index, &name),
        runtime: spec::runtime_json(&settings, section, &image_dir),
        name,
        image,
        image_hex: info.hex.clone(),
        config,
    })
}

fn volumes(m: &Manifest) -> Result<Vec<VolumePlan>, PlanError> {
    m.volumes
        .iter()
        .flatten()
        .map(|v| {
            let name = v.name.as_ref().map(|n| n.value.clone()).unwrap_or_default();
            if v.format.as_ref().is_some_and(|f| f.as_str() == "oci") {
                return Err(PlanError::OciVolume(name));
            }
            Ok(VolumePlan {
                name,
                image: v.image.as_ref().map(|i| i.value.text.clone()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
