//! Applying image layers (tar, gzip or zstd) to a tree, as a container
//! runtime's overlay would see them.
//!
//! Owns: decompressing a layer by its magic bytes, reading its tar entries
//! (PAX and GNU long names, hard links, symlinks, devices, fifos, modes, owners,
//! `SCHILY.xattr.*`), whiteouts (`.wh.NAME`) and opaque directories
//! (`.wh..wh..opq`), and refusing entries that would land outside the tree
//! and layers past their [`Limits`].
//! Must not know about manifests or containers.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::rootfs::tree::{normalize, Content, Entry, Kind, Pack, Tree, TreeError};

/// The most a layer may unpack to by default, in bytes of file content
/// (16 GiB): far beyond any image booted from memory, and what keeps a small
/// compressed layer from filling the disk with its temp files.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 16 << 30;
/// The most entries a layer may hold by default (4 million).
pub const DEFAULT_MAX_LAYER_ENTRIES: u64 = 4 << 20;

/// What one layer may unpack to (`hull build --max-layer-size`,
/// `--max-layer-entries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of file content.
    pub bytes: u64,
    /// Entries of any kind.
    pub entries: u64,
}

impl Limits {
    /// The limits asked for, each defaulted when not given.
    pub fn or_defaults(bytes: Option<u64>, entries: Option<u64>) -> Self {
        let d = Limits::default();
        Limits {
            bytes: bytes.unwrap_or(d.bytes),
            entries: entries.unwrap_or(d.entries),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bytes: DEFAULT_MAX_LAYER_BYTES,
            entries: DEFAULT_MAX_LAYER_ENTRIES,
        }
    }
}

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
    #[error("layer {layer} of {image}: cannot keep it unpacked in {path}")]
    Keep {
        image: String,
        layer: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Opens a layer blob, decompressing gzip or zstd by magic bytes (on
/// another thread, ahead of the caller).
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
    let decoder: Box<dyn Read + Send> = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::with_buffer(f)?)
    } else {
        return Ok(Box::new(f));
    };
    Ok(Box::new(super::read_ahead::ReadAhead::new(decoder)))
}

/// The layer being applied, for errors.
#[derive(Clone, Copy)]
struct Source<'a> {
    image: &'a str,
    layer: &'a str,
}

impl<'a> Source<'a> {
    fn read(self, path: Option<&str>) -> impl Fn(std::io::Error) -> LayerFault + 'a {
        let path = path.map(str::to_string);
        move |source| LayerFault::Read {
            image: self.image.to_string(),
            layer: self.layer.to_string(),
            path: path.clone(),
            source,
        }
    }

    fn entry(self, path: &str) -> impl Fn(TreeError) -> LayerFault + 'a {
        let path = path.to_string();
        move |source| LayerFault::Entry {
            image: self.image.to_string(),
            layer: self.layer.to_string(),
            path: path.clone(),
            source,
        }
    }

    fn unsupported(self, path: &str, message: String) -> LayerError {
        LayerFault::Unsupported {
            image: self.image.to_string(),
            layer: self.layer.to_string(),
            path: path.to_string(),
            message,
        }
        .into()
    }
}

/// Applies the layer blob at `path` (named `layer`, of `image`, in errors)
/// to `tree` within `limits`, its files' contents going into `pack`:
/// [`read`], then [`Layer::apply`].
pub fn apply(
    tree: &mut Tree,
    pack: &Pack,
    path: &Path,
    (image, layer): (&str, &str),
    limits: Limits,
) -> Result<(), LayerError> {
    read(pack, path, (image, layer), limits)?.apply(tree)
}

/// The error for a layer a reading thread never returned.
pub fn not_read(image: &str, layer: &str) -> LayerError {
    Source { image, layer }.read(None)(std::io::Error::other("its reading thread failed")).into()
}

/// What one tar entry does to the tree below it.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Op {
    /// An opaque marker: the directory's lower contents go.
    Opaque { dir: String },
    /// A whiteout: the path goes.
    Whiteout { target: String },
    /// The layer's own root ("./"): its mode, if it is a directory.
    Root { mode: Option<u32> },
    /// An entry put in the tree.
    Put {
        raw_path: String,
        path: String,
        entry: Entry,
    },
}

/// A layer read: its entries in order, their files' contents in the pack.
/// Layers can be read on several threads at once and applied in order.
#[derive(Debug, PartialEq)]
pub struct Layer {
    image: String,
    layer: String,
    ops: Vec<Op>,
    /// Entries of any kind, and bytes of file content, as [`Limits`] counts.
    entries: u64,
    bytes: u64,
}

/// What [`Layer::encode`] writes: the entries and their totals.
type Encoded = (Vec<Op>, u64, u64);

/// Reads the layer blob at `path`: checks every entry and its limits, and
/// stores its files' contents in `pack`.
pub fn read(
    pack: &Pack,
    path: &Path,
    (image, layer): (&str, &str),
    limits: Limits,
) -> Result<Layer, LayerError> {
    let src = Source { image, layer };
    let reader = open_layer(path).map_err(src.read(None))?;
    let mut archive = tar::Archive::new(reader);
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut ops = Vec::new();
    for entry in archive.entries().map_err(src.read(None))? {
        let mut entry = entry.map_err(src.read(None))?;
        entries += 1;
        bytes = bytes.saturating_add(entry.size());
        if entries > limits.entries || bytes > limits.bytes {
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let message = format!(
                "the layer holds more than {} entries or {} bytes of files: refused (raise with --max-layer-entries or --max-layer-size)",
                limits.entries, limits.bytes
            );
            return Err(src.unsupported(&path, message));
        }
        ops.push(read_entry(pack, &mut entry, src)?);
    }
    Ok(Layer::named((image, layer), (ops, entries, bytes)))
}

impl Layer {
    /// The layer `layer` of `image` (for errors) with these entries and totals.
    fn named((image, layer): (&str, &str), (ops, entries, bytes): Encoded) -> Self {
        Layer {
            image: image.to_string(),
            layer: layer.to_string(),
            ops,
            entries,
            bytes,
        }
    }

    /// Whether the layer is within `limits` (it was within those it was
    /// read with).
    pub fn within(&self, limits: Limits) -> bool {
        self.entries <= limits.entries && self.bytes <= limits.bytes
    }

    /// The layer's entries as bytes [`Layer::decode`] reads back; packed
    /// contents refer to the pack they were stored in.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(&(&self.ops, self.entries, self.bytes))
    }

    /// A layer [`Layer::encode`] wrote, named `layer` of `image` in errors.
    pub fn decode(bytes: &[u8], names: (&str, &str)) -> Result<Self, postcard::Error> {
        Ok(Layer::named(names, postcard::from_bytes(bytes)?))
    }

    /// Every packed content of the layer, now found in the pack's file
    /// number `file` (the layer's own pack attached to the build's).
    pub fn in_file(&mut self, file: u32) {
        for op in &mut self.ops {
            if let Op::Put { entry, .. } = op {
                if let Kind::File(content) = &mut entry.kind {
                    content.in_file(file);
                }
            }
        }
    }

    /// Each packed content of the layer (to check them against their hashes).
    pub fn contents(&self) -> impl Iterator<Item = (&str, &Content)> {
        self.ops.iter().filter_map(|op| match op {
            Op::Put {
                raw_path,
                entry:
                    Entry {
                        kind: Kind::File(c @ Content::Packed { .. }),
                        ..
                    },
                ..
            } => Some((raw_path.as_str(), c)),
            _ => None,
        })
    }

    /// Applies the layer to `tree`, as an overlay would show it on top.
    pub fn apply(self, tree: &mut Tree) -> Result<(), LayerError> {
        let src = Source {
            image: &self.image,
            layer: &self.layer,
        };
        // Paths this layer added: its whiteouts never hide them.
        let mut added: HashSet<String> = HashSet::new();
        for op in self.ops {
            match op {
                Op::Opaque { dir } => tree.clear_dir(&dir, &|p| added.contains(p)),
                Op::Whiteout { target } => {
                    if !added.contains(&target) {
                        tree.remove(&target);
                    }
                }
                Op::Root { mode } => {
                    if let (Some(mode), Some(root)) = (mode, tree.get_mut("")) {
                        root.mode = mode;
                    }
                }
                Op::Put {
                    raw_path,
                    path,
                    entry,
                } => {
                    tree.insert(&path, entry).map_err(src.entry(&raw_path))?;
                    added.insert(path);
                }
            }
        }
        Ok(())
    }
}

/// One tar entry: a whiteout, an opaque marker, the layer's own root, or an
/// entry to put in the tree (a file's content stored in `pack` now).
fn read_entry<R: Read>(
    pack: &Pack,
    entry: &mut tar::Entry<'_, R>,
    src: Source,
) -> Result<Op, LayerError> {
    let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let path = normalize(&raw_path).map_err(src.entry(&raw_path))?;
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
    if name == OPAQUE {
        return Ok(Op::Opaque {
            dir: dir.to_string(),
        });
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT) {
        return Ok(Op::Whiteout {
            target: crate::rootfs::tree::join(dir, hidden),
        });
    }
    let header = entry.header().clone();
    let read = src.read(Some(&raw_path));
    let mode = header.mode().map_err(&read)? & 0o7777;
    let uid = u32::try_from(header.uid().map_err(&read)?).unwrap_or(0);
    let gid = u32::try_from(header.gid().map_err(&read)?).unwrap_or(0);
    let xattrs = xattrs(entry).map_err(&read)?;
    let kind = entry_kind(entry, &header, pack, src, &raw_path)?;
    if path.is_empty() {
        // The layer's own root ("./"): take its mode, keep the tree.
        return Ok(Op::Root {
            mode: matches!(kind, Kind::Dir).then_some(mode),
        });
    }
    Ok(Op::Put {
        raw_path,
        path,
        entry: Entry {
            kind,
            mode,
            uid,
            gid,
            xattrs,
        },
    })
}

/// The entry's `SCHILY.xattr.*` PAX records.
fn xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> std::io::Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Ok(key) = ext.key() {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    out.insert(name.to_string(), ext.value_bytes().to_vec());
                }
            }
        }
    }
    Ok(out)
}

/// What the entry is; a regular file's content goes into `pack`.
fn entry_kind<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    header: &tar::Header,
    pack: &Pack,
    src: Source,
    raw_path: &str,
) -> Result<Kind, LayerError> {
    let link = |entry: &tar::Entry<'_, R>| -> Result<String, LayerError> {
        entry
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or_else(|| src.unsupported(raw_path, "link without a target".to_string()))
    };
    let dev = || {
        (
            header.device_major().ok().flatten().unwrap_or(0),
            header.device_minor().ok().flatten().unwrap_or(0),
        )
    };
    Ok(match header.entry_type() {
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let size = entry.size();
            let content = pack.store(entry, size).map_err(src.read(Some(raw_path)))?;
            Kind::File(content)
        }
        tar::EntryType::Symlink => Kind::Symlink(link(entry)?),
        tar::EntryType::Link => {
            let target = link(entry)?;
            Kind::Hardlink(normalize(&target).map_err(src.entry(raw_path))?)
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
            let message = format!(
                "GNU sparse file of {} bytes: sparse files are not supported in images",
                entry.size()
            );
            return Err(src.unsupported(raw_path, message));
        }
        other => {
            let message = format!("unsupported tar entry type {other:?}");
            return Err(src.unsupported(raw_path, message));
        }
    })
}
