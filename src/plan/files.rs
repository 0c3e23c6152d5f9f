//! What each `files:` entry of a manifest writes: its path, owner, mode and
//! content, with LinuxKit's defaults (0600 for files, 0755 for directories,
//! 0644 for the manifest's own JSON). Sources are resolved against the
//! manifest's directory here and read by `assemble`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::spec::settings::id;
use super::PlanError;
use crate::manifest::checks::resolve_source;
use crate::manifest::{File, Manifest};

/// One `files:` entry, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    /// Relative to the image root.
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    /// Its mode; for symlinks unused.
    pub mode: u32,
    pub content: FileContent,
}

/// What a `files:` entry puts at its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    Directory,
    Symlink(String),
    Bytes(Vec<u8>),
    /// A host file; when `optional`, a missing one is skipped.
    Source {
        path: PathBuf,
        optional: bool,
    },
    /// An entry with nothing to write (refused by `assemble`).
    Nothing,
}

/// The mode of a file whose entry gives none (LinuxKit's default: the host
/// file's mode is not used, it would make outputs depend on the umask).
pub const DEFAULT_FILE_MODE: u32 = 0o600;
/// The mode of a directory whose entry gives none.
pub const DEFAULT_DIR_MODE: u32 = 0o755;
/// The mode of the manifest written by `metadata:`.
pub const DEFAULT_METADATA_MODE: u32 = 0o644;

/// Every `files:` entry of `manifest`.
pub fn plan(
    manifest: &Manifest,
    manifest_dir: &Path,
    ids: &BTreeMap<String, u32>,
) -> Result<Vec<FilePlan>, PlanError> {
    manifest
        .files
        .iter()
        .flatten()
        .map(|f| file(manifest, f, manifest_dir, ids))
        .collect()
}

fn file(
    manifest: &Manifest,
    f: &File,
    manifest_dir: &Path,
    ids: &BTreeMap<String, u32>,
) -> Result<FilePlan, PlanError> {
    let path = f
        .path
        .as_ref()
        .map(|p| p.value.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let (content, default_mode) = if f.directory == Some(true) {
        (FileContent::Directory, DEFAULT_DIR_MODE)
    } else if let Some(target) = &f.symlink {
        (FileContent::Symlink(target.clone()), DEFAULT_FILE_MODE)
    } else if let Some(contents) = &f.contents {
        (
            FileContent::Bytes(contents.as_bytes().to_vec()),
            DEFAULT_FILE_MODE,
        )
    } else if f.metadata.is_some() {
        // YAML is written as JSON, which every YAML reader accepts.
        let json = serde_json::to_vec_pretty(manifest).map_err(|source| PlanError::Metadata {
            path: path.clone(),
            source,
        })?;
        (FileContent::Bytes(json), DEFAULT_METADATA_MODE)
    } else if let Some(source) = &f.source {
        let content = FileContent::Source {
            path: resolve_source(&source.value, manifest_dir),
            optional: f.optional == Some(true),
        };
        (content, DEFAULT_FILE_MODE)
    } else {
        (FileContent::Nothing, DEFAULT_FILE_MODE)
    };
    Ok(FilePlan {
        path,
        uid: id(f.uid.as_ref(), ids).unwrap_or(0),
        gid: id(f.gid.as_ref(), ids).unwrap_or(0),
        mode: f.mode.map_or(default_mode, |m| m.0),
        content,
    })
}
