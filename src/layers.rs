//! Applying image layers (tar, gzip or zstd) to a tree, as a container
//! runtime's overlay would see them.
//!
//! Owns: decompressing a layer by its magic bytes, reading its tar entries
//! (PAX and GNU long names, hard links, symlinks, devices, fifos, modes, owners,
//! `SCHILY.xattr.*`), whiteouts (`.wh.NAME`) and opaque directories
//! (`.wh..wh..opq`), and refusing entries that would land outside the tree.
//! Must not know about manifests or containers.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::tree::{normalize, Entry, Kind, Pack, Tree, TreeError};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// A layer that cannot be applied (boxed: the details are large).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct LayerError(Box<LayerFault>);

impl From<LayerFault> for LayerError {
    fn from(f: LayerFault) -> Self {
        LayerError(Box::new(f))
    }
}

impl LayerError {
    pub fn fault(&self) -> &LayerFault {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LayerFault {
    #[error("layer {layer} of {image}: entry \"{path}\": {source}")]
    Entry {
        image: String,
        layer: String,
        path: String,
        #[source]
        source: TreeError,
    },
    #[error("layer {layer} of {image}: entry \"{path}\": {message}")]
    Unsupported {
        image: String,
        layer: String,
        path: String,
        message: String,
    },
    #[error("layer {layer} of {image}: cannot read {}", path.as_deref().map(|p| format!("entry \"{p}\"")).unwrap_or_else(|| "the archive".to_string()))]
    Read {
        image: String,
        layer: String,
        path: Option<String>,
        #[source]
        source: std::io::Error,
    },
}

/// Opens a layer blob, decompressing gzip or zstd by magic bytes.
pub fn open_layer(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut f = BufReader::with_capacity(1 << 16, File::open(path)?);
    let mut magic = [0u8; 4];
    let n = {
        use std::io::BufRead;
        let buf = f.fill_buf()?;
        let n = buf.len().min(4);
        magic[..n].copy_from_slice(&buf[..n]);
        n
    };
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::with_buffer(f)?)
    } else {
        Box::new(f)
    })
}

/// Applies the layer at `path` (named `layer`, of `image`, in errors) to `tree`.
pub fn apply(
    tree: &mut Tree,
    pack: &mut Pack,
    path: &Path,
    image: &str,
    layer: &str,
) -> Result<(), LayerError> {
    let read_err = |p: Option<String>| {
        let (image, layer) = (image.to_string(), layer.to_string());
        move |source| LayerFault::Read {
            image,
            layer,
            path: p,
            source,
        }
    };
    let reader = open_layer(path).map_err(read_err(None))?;
    let mut archive = tar::Archive::new(reader);
    let mut added: HashSet<String> = HashSet::new();
    for entry in archive.entries().map_err(read_err(None))? {
        let mut entry = entry.map_err(read_err(None))?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let tree_err = |source| LayerFault::Entry {
            image: image.to_string(),
            layer: layer.to_string(),
            path: raw_path.clone(),
            source,
        };
        let path = normalize(&raw_path).map_err(tree_err)?;
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (String::new(), path.clone()),
        };
        if name == OPAQUE {
            tree.clear_dir(&dir, &|p| added.contains(p));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            let target = crate::tree::join(&dir, hidden);
            if !added.contains(&target) {
                tree.remove(&target);
            }
            continue;
        }
        let header = entry.header().clone();
        let mode = header.mode().map_err(read_err(Some(raw_path.clone())))? & 0o7777;
        let uid =
            u32::try_from(header.uid().map_err(read_err(Some(raw_path.clone())))?).unwrap_or(0);
        let gid =
            u32::try_from(header.gid().map_err(read_err(Some(raw_path.clone())))?).unwrap_or(0);
        let mut xattrs = std::collections::BTreeMap::new();
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(read_err(Some(raw_path.clone())))?
        {
            for ext in exts {
                let ext = ext.map_err(read_err(Some(raw_path.clone())))?;
                if let Ok(key) = ext.key() {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
                    }
                }
            }
        }
        let link = || -> Result<String, LayerError> {
            entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .ok_or_else(|| {
                    LayerError::from(LayerFault::Unsupported {
                        image: image.to_string(),
                        layer: layer.to_string(),
                        path: raw_path.clone(),
                        message: "link without a target".to_string(),
                    })
                })
        };
        let dev = || {
            (
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0),
            )
        };
        let kind = match header.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                let content = pack
                    .store(&mut entry, size)
                    .map_err(read_err(Some(raw_path.clone())))?;
                Kind::File(content)
            }
            tar::EntryType::Symlink => Kind::Symlink(link()?),
            tar::EntryType::Link => {
                let target = link()?;
                Kind::Hardlink(normalize(&target).map_err(tree_err)?)
            }
            tar::EntryType::Char => {
                let (a, b) = dev();
                Kind::Char(a, b)
            }
            tar::EntryType::Block => {
                let (a, b) = dev();
                Kind::Block(a, b)
            }
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::GNUSparse => {
                return Err(LayerFault::Unsupported {
                    image: image.to_string(),
                    layer: layer.to_string(),
                    path: raw_path,
                    message: format!(
                        "GNU sparse file of {} bytes: sparse files are not supported in images",
                        entry.size()
                    ),
                }
                .into())
            }
            other => {
                return Err(LayerFault::Unsupported {
                    image: image.to_string(),
                    layer: layer.to_string(),
                    path: raw_path,
                    message: format!("unsupported tar entry type {other:?}"),
                }
                .into())
            }
        };
        if path.is_empty() {
            // The layer's own root ("./"): take its mode, keep the tree.
            if let (Kind::Dir, Some(root)) = (&kind, tree.get_mut("")) {
                root.mode = mode;
            }
            continue;
        }
        let new = Entry {
            kind,
            mode,
            uid,
            gid,
            xattrs,
        };
        tree.insert(&path, new).map_err(tree_err)?;
        added.insert(path);
    }
    Ok(())
}
