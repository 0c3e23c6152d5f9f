//! A package's `build.yml`.
//!
//! Owns: its schema, read with the manifest decoder (so mistakes are reported
//! as FILE:LINE:COL, all at once), and the label it carries. Must not build.

use std::path::{Path, PathBuf};

use crate::manifest::decode::{manifest_struct, Decode, Diagnostics};
use crate::manifest::{checks, yaml, ImageConfig, LoadError};

manifest_struct! {
    /// `build.yml`: what the package's image is called and how it runs.
    pub struct PkgSpec ("build.yml") {
        /// Repository name, e.g. `hull/getty` (no registry, no tag).
        image: String => "image",
        /// Architectures to build, default both (`amd64`, `arm64`).
        arches: Vec<crate::manifest::decode::Spanned<String>> => "arches",
        entrypoint: Vec<String> => "entrypoint",
        cmd: Vec<String> => "cmd",
        env: Vec<String> => "env",
        workdir: String => "workdir",
        user: String => "user",
        /// The `org.mobyproject.config` label: container defaults, the manifest fields.
        config: ImageConfig => "config",
        /// The build step, run with TARGETARCH and ROOTFS set (default `build.sh`).
        build: String => "build",
        /// A command whose output starts the tag (e.g. a kernel's version).
        version: String => "version",
        /// Files outside the package directory that its build reads (for the tag).
        inputs: Vec<String> => "inputs",
    }
}

/// A loaded package.
#[derive(Debug, Clone)]
pub struct Package {
    pub dir: PathBuf,
    pub spec: PkgSpec,
    pub image: String,
    pub arches: Vec<crate::platform::Arch>,
}

/// Reads and checks `DIR/build.yml`.
pub fn load(dir: &Path) -> Result<Package, LoadError> {
    let path = dir.join("build.yml");
    let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Read {
        path: path.clone(),
        source,
    })?;
    let name = path.display().to_string();
    let mut cx = Diagnostics::default();
    let spec = match yaml::parse(&name, &text) {
        Ok(root) => PkgSpec::decode("build.yml", &root, &mut cx),
        Err(e) => {
            cx.error(&e.pos, format!("invalid YAML: {}", e.message));
            None
        }
    };
    let mut arches = Vec::new();
    let mut image = String::new();
    if let Some(spec) = &spec {
        match &spec.image {
            Some(i) if crate::manifest::values::ImageRef::parse(i).is_ok() && !i.contains(':') => {
                image = i.clone();
            }
            Some(i) => cx.error(
                &spec.pos,
                format!("image: \"{i}\" must be a repository name without a tag, like hull/getty"),
            ),
            None => cx.error(&spec.pos, "build.yml: \"image\" is required"),
        }
        match &spec.arches {
            None => arches = vec![crate::platform::Arch::Amd64, crate::platform::Arch::Arm64],
            Some(names) => {
                for a in names {
                    match a.value.parse() {
                        Ok(arch) => arches.push(arch),
                        Err(e) => cx.error(&a.pos, format!("arches: {e}")),
                    }
                }
            }
        }
        arches.sort();
        arches.dedup();
        if let Some(c) = &spec.config {
            checks::check_config(c, &mut cx);
        }
    }
    if !cx.errors.is_empty() {
        cx.errors.sort();
        return Err(LoadError::Invalid {
            errors: cx.errors,
            warnings: cx.warnings,
        });
    }
    Ok(Package {
        dir: dir.to_path_buf(),
        spec: spec.unwrap_or_default(),
        image,
        arches,
    })
}
