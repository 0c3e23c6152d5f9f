//! The manifest language: LinuxKit's YAML schema with Hull's extensions.
//!
//! Owns: reading manifest files, decoding them with positions, checking them,
//! merging several in order, and parsing an image's `org.mobyproject.config`
//! label with the same rules. Must not fetch images or know output formats:
//! everything after this module takes [`Manifest`], never YAML.

pub mod checks;
pub mod decode;
pub mod merge;
pub mod packages;
pub mod types;
pub mod values;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use decode::{Diagnostic, Diagnostics};
pub use packages::resolve_packages;
pub use types::{File, Image, ImageConfig, Kernel, Manifest, Volume};

use decode::Decode;

/// A manifest that could not be loaded: every problem found, in file order.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read manifest {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(errors))]
    Invalid {
        errors: Vec<Diagnostic>,
        warnings: Vec<Diagnostic>,
    },
}

fn render(errors: &[Diagnostic]) -> String {
    let mut out = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let n = errors.len();
    out.push_str(&format!(
        "\n{n} error{} in the manifest",
        if n == 1 { "" } else { "s" }
    ));
    out
}

impl Manifest {
    /// One line saying what the manifest holds.
    pub fn summary(&self) -> String {
        fn count<T>(v: &Option<Vec<T>>) -> usize {
            v.as_ref().map_or(0, Vec::len)
        }
        let kernel = self
            .kernel
            .as_ref()
            .and_then(|k| k.image.as_ref())
            .map_or_else(|| "none".to_string(), |i| i.value.to_string());
        format!(
            "kernel {kernel}, {} init, {} onboot, {} onshutdown, {} services, {} files, {} volumes",
            count(&self.init),
            count(&self.onboot),
            count(&self.onshutdown),
            count(&self.services),
            count(&self.files),
            count(&self.volumes),
        )
    }
}

/// A loaded, checked and merged manifest, with the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub manifest: Manifest,
    pub warnings: Vec<Diagnostic>,
}

/// The text of a manifest file; bytes that are not UTF-8 are an error at
/// the line and column of the first of them.
fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, LoadError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let before = &bytes[..valid];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let col = std::str::from_utf8(&before[line_start..]).map_or(1, |s| s.chars().count() + 1);
        let pos = yaml::Pos {
            file: std::sync::Arc::from(path.display().to_string()),
            line: before.iter().filter(|&&b| b == b'\n').count() + 1,
            col,
        };
        let mut cx = Diagnostics::default();
        cx.error(
            &pos,
            format!(
                "byte {:#04x} is not UTF-8: a manifest is UTF-8 text",
                bytes.get(valid).copied().unwrap_or(0)
            ),
        );
        LoadError::Invalid {
            errors: cx.errors,
            warnings: cx.warnings,
        }
    })
}

/// Reads, checks and merges manifest files in order, as LinuxKit does with
/// several files on one command line. `-` reads standard input.
pub fn load_files(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes = if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(|_| bytes)
        } else {
            std::fs::read(path)
        }
        .map_err(|source| LoadError::Read {
            path: path.clone(),
            source,
        })?;
        let text = utf8(path, bytes)?;
        sources.push((path.clone(), text));
    }
    let borrowed: Vec<(&Path, &str)> = sources
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect();
    load_texts(&borrowed)
}

/// As [`load_files`], for texts already in memory; each path names its text in
/// errors and anchors its relative `source:` paths.
pub fn load_texts(sources: &[(&Path, &str)]) -> Result<Loaded, LoadError> {
    let mut cx = Diagnostics::default();
    let mut merged = Manifest::default();
    for (path, text) in sources {
        let name = path.display().to_string();
        let dir = if path.as_os_str() == "-" {
            Path::new(".")
        } else {
            path.parent().unwrap_or(Path::new("."))
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Some(m) = parse_one(&name, text, dir, &mut cx) {
            merge::append(&mut merged, m);
        }
    }
    if cx.errors.is_empty() {
        checks::check_merged(&merged, &mut cx);
    }
    finish(merged, cx)
}

/// Decodes and checks one manifest text; `None` when it is not even a mapping.
fn parse_one(name: &str, text: &str, dir: &Path, cx: &mut Diagnostics) -> Option<Manifest> {
    let root = match yaml::parse(name, text) {
        Ok(root) => root,
        Err(e) => {
            cx.error(&e.pos, format!("invalid YAML: {}", e.message));
            return None;
        }
    };
    if root.is_null() {
        return Some(Manifest {
            pos: root.pos,
            ..Manifest::default()
        });
    }
    cx.base_dir = Some(dir.to_path_buf());
    let manifest = Manifest::decode("manifest", &root, cx);
    cx.base_dir = None;
    let manifest = manifest?;
    checks::check_file(&manifest, dir, cx);
    Some(manifest)
}

/// Parses an image's `org.mobyproject.config` label (JSON) into its settings.
/// `image` names the image in errors, which read `... label of IMAGE:LINE:COL`.
pub fn parse_label(image: &str, json: &str) -> Result<ImageConfig, LoadError> {
    let mut cx = Diagnostics::default();
    let name = format!("org.mobyproject.config label of {image}");
    let config = match yaml::parse(&name, json) {
        Ok(root) if root.is_null() => Some(ImageConfig::default()),
        Ok(root) => ImageConfig::decode("label", &root, &mut cx),
        Err(e) => {
            cx.error(&e.pos, format!("invalid JSON: {}", e.message));
            None
        }
    };
    if let Some(config) = &config {
        checks::check_config(config, &mut cx);
    }
    finish(Manifest::default(), cx)?;
    Ok(config.unwrap_or_default())
}

fn finish(manifest: Manifest, mut cx: Diagnostics) -> Result<Loaded, LoadError> {
    // Keep files in the order they were given, and each file's errors by position.
    let mut files: Vec<std::sync::Arc<str>> = Vec::new();
    for e in &cx.errors {
        if !files.contains(&e.pos.file) {
            files.push(e.pos.file.clone());
        }
    }
    cx.errors.sort_by_key(|e| {
        let file = files.iter().position(|f| *f == e.pos.file);
        (file, e.pos.line, e.pos.col, e.message.clone())
    });
    cx.errors.dedup();
    if cx.errors.is_empty() {
        Ok(Loaded {
            manifest,
            warnings: cx.warnings,
        })
    } else {
        Err(LoadError::Invalid {
            errors: cx.errors,
            warnings: cx.warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_with_nested_aliases_is_refused_naming_the_image() {
        // A label is YAML-parsed (JSON is YAML), so aliases work in it too.
        let mut text = String::from("{a0: &a0 [x, x, x, x, x, x, x, x, x, x],\n");
        for i in 1..8 {
            let p = i - 1;
            let refs = vec![format!("*a{p}"); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}],\n"));
        }
        text.push('}');
        let started = std::time::Instant::now();
        let e = parse_label("example.org/bomb:1", &text).expect_err("refused");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let shown = e.to_string();
        assert!(
            shown.contains("org.mobyproject.config label of example.org/bomb:1:")
                && shown.contains("more than 100000 nodes"),
            "{shown}"
        );
    }

    #[test]
    fn a_label_takes_the_container_fields_with_positions_in_the_label() {
        let json = r#"{"capabilities":["CAP_NET_ADMIN"],"binds":["/etc/resolv.conf:/etc/resolv.conf"],"net":"host","restart":"always"}"#;
        let config = parse_label("example.org/dhcpcd:1", json).expect("valid label");
        assert_eq!(config.net, Some(values::Namespace::Host));
        assert_eq!(config.binds.as_ref().map(Vec::len), Some(1));

        let bad = r#"{"capabilities":["CAP_NET_ADMN"],"image":"x"}"#;
        let Err(LoadError::Invalid { errors, .. }) = parse_label("example.org/dhcpcd:1", bad)
        else {
            panic!("bad label accepted")
        };
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "org.mobyproject.config label of example.org/dhcpcd:1:1:18: capabilities: unknown capability \"CAP_NET_ADMN\", did you mean \"CAP_NET_ADMIN\"?",
                "org.mobyproject.config label of example.org/dhcpcd:1:1:34: unknown field \"image\" in a container entry (known fields: capabilities, capabilities.add, ambient, mounts, binds, binds.add, tmpfs, devices, command, env, cwd, net, pid, ipc, uts, userns, hostname, readonly, maskedPaths, readonlyPaths, uid, gid, additionalGids, noNewPrivileges, oomScoreAdj, rootfsPropagation, cgroupsPath, resources, sysctl, rlimits, uidMappings, gidMappings, annotations, runtime, restart, timeout, seccomp, control)",
            ]
        );
    }

    #[test]
    fn an_empty_manifest_is_valid_and_empty() {
        let loaded = load_texts(&[(Path::new("e.yml"), "")]).expect("valid");
        assert_eq!(
            loaded.manifest.summary(),
            "kernel none, 0 init, 0 onboot, 0 onshutdown, 0 services, 0 files, 0 volumes"
        );
    }
}
