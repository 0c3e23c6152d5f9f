//! The kernel module index the PID1 loads modules with: `modules.dep` and
//! `modules.alias`, made from the modules' own `.modinfo` sections.
//!
//! Owns: finding `lib/modules/VERSION/**/*.ko` (also `.ko.gz`, `.ko.zst`) in a
//! tree, reading each module's `.modinfo` (name, depends, alias) from its ELF,
//! and writing both files in depmod's formats. Hand-written because the only
//! tool that makes them, depmod, needs the host's kmod and a writable module
//! tree; with this no host tool is needed. Must not load anything.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use object::{Object, ObjectSection};

use crate::rootfs::tree::{Entry, Kind, Pack, Tree, TreeError};

#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error("kernel module {path}: {message}")]
    Module { path: String, message: String },
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("cannot store the module index")]
    Io(#[from] std::io::Error),
}

/// What `.modinfo` says about one module.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModInfo {
    pub name: String,
    pub depends: Vec<String>,
    pub aliases: Vec<String>,
}

/// Reads `.modinfo` from a module's ELF bytes.
pub fn modinfo(elf: &[u8]) -> Result<ModInfo, String> {
    let file = object::File::parse(elf).map_err(|e| {
        let head: Vec<String> = elf.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("not an ELF object ({e}; it starts with {})", head.join(" "))
    })?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or("no .modinfo section")?;
    let data = section.data().map_err(|e| e.to_string())?;
    let mut info = ModInfo::default();
    for field in data.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(field);
        let Some((k, v)) = text.split_once('=') else {
            continue;
        };
        match k {
            // Module names are the same with `-` or `_` (the kernel and
            // depmod make them `_`); `depends` lists them as files are
            // named (`dm-mod`), so both are made `_` here.
            "name" => info.name = v.replace('-', "_"),
            "depends" => {
                info.depends = v
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(|d| d.replace('-', "_"))
                    .collect()
            }
            "alias" => info.aliases.push(v.to_string()),
            _ => {}
        }
    }
    Ok(info)
}

fn decompress(path: &str, data: Vec<u8>) -> Result<Vec<u8>, String> {
    if path.ends_with(".ko.gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&data[..])
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    } else if path.ends_with(".ko.zst") {
        zstd::decode_all(&data[..]).map_err(|e| e.to_string())
    } else {
        Ok(data)
    }
}

/// The module name a file stands for: its `.modinfo` name, else the file
/// name with `-` as `_`.
pub(crate) fn file_module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Writes `modules.dep` and `modules.alias` into every `lib/modules/VERSION`
/// of `tree` that holds modules. Returns the number of modules indexed.
pub fn index(tree: &mut Tree, pack: &mut Pack) -> Result<usize, ModulesError> {
    // VERSION -> (path relative to lib/modules/VERSION, info)
    let mut found: BTreeMap<String, Vec<(String, ModInfo)>> = BTreeMap::new();
    for (path, entry) in tree.iter() {
        let Some(rest) = path.strip_prefix("lib/modules/") else {
            continue;
        };
        let Some((version, rel)) = rest.split_once('/') else {
            continue;
        };
        if !(rel.ends_with(".ko") || rel.ends_with(".ko.gz") || rel.ends_with(".ko.zst")) {
            continue;
        }
        let Kind::File(content) = &entry.kind else {
            continue;
        };
        let err = |message: String| ModulesError::Module {
            path: path.clone(),
            message,
        };
        let data = pack.read(content)?;
        let elf = decompress(rel, data).map_err(err)?;
        let mut info = modinfo(&elf).map_err(err)?;
        if info.name.is_empty() {
            info.name = file_module_name(rel);
        }
        found
            .entry(version.to_string())
            .or_default()
            .push((rel.to_string(), info));
    }
    let mut count = 0;
    for (version, modules) in &found {
        let by_name: BTreeMap<&str, &str> = modules
            .iter()
            .map(|(rel, info)| (info.name.as_str(), rel.as_str()))
            .collect();
        let mut dep = String::new();
        let mut alias = String::from("# Aliases extracted from modules themselves.\n");
        for (rel, info) in modules {
            // Every dependency, transitively, the deepest last: load from the end.
            let mut order: Vec<&str> = Vec::new();
            let mut seen = BTreeSet::new();
            visit(&info.name, &by_name, modules, &mut seen, &mut order);
            order.retain(|n| *n != info.name);
            order.reverse();
            let deps: Vec<&str> = order
                .iter()
                .filter_map(|n| by_name.get(n).copied())
                .collect();
            if deps.is_empty() {
                dep.push_str(&format!("{rel}:\n"));
            } else {
                dep.push_str(&format!("{rel}: {}\n", deps.join(" ")));
            }
            for a in &info.aliases {
                alias.push_str(&format!("alias {a} {}\n", info.name));
            }
        }
        for (file, text) in [("modules.dep", dep), ("modules.alias", alias)] {
            let content = pack.store_bytes(text.as_bytes())?;
            tree.insert(
                &format!("lib/modules/{version}/{file}"),
                Entry::file(content, 0o644),
            )?;
        }
        count += modules.len();
    }
    Ok(count)
}

/// Depth-first: dependencies of `name` before `name` itself.
fn visit<'a>(
    name: &'a str,
    by_name: &BTreeMap<&'a str, &'a str>,
    modules: &'a [(String, ModInfo)],
    seen: &mut BTreeSet<&'a str>,
    order: &mut Vec<&'a str>,
) {
    if !seen.insert(name) {
        return;
    }
    if let Some((_, info)) = modules.iter().find(|(_, i)| i.name == name) {
        for d in &info.depends {
            if let Some((key, _)) = by_name.get_key_value(d.as_str()) {
                visit(key, by_name, modules, seen, order);
            }
        }
    }
    order.push(name);
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::rootfs::tree::Content;

    /// A relocatable ELF with a `.modinfo` section, as `modpost` makes them.
    pub fn fake_module(fields: &[&str]) -> Vec<u8> {
        use object::write::Object as W;
        let mut obj = W::new(
            object::BinaryFormat::Elf,
            object::Architecture::X86_64,
            object::Endianness::Little,
        );
        let section = obj.add_section(
            Vec::new(),
            b".modinfo".to_vec(),
            object::SectionKind::ReadOnlyData,
        );
        let mut data = Vec::new();
        for f in fields {
            data.extend_from_slice(f.as_bytes());
            data.push(0);
        }
        obj.append_section_data(section, &data, 1);
        obj.write().expect("elf")
    }

    #[test]
    fn index_from_modinfo() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut pack = Pack::new(dir.path()).expect("pack");
        let mut tree = Tree::new();
        let mut add = |path: &str, bytes: Vec<u8>| {
            let c: Content = pack.store_bytes(&bytes).expect("store");
            tree.insert(path, Entry::file(c, 0o644)).expect("insert");
        };
        let base = "lib/modules/6.1.0-test/kernel";
        add(
            &format!("{base}/drivers/virtio/virtio.ko"),
            fake_module(&["name=virtio", "depends="]),
        );
        add(
            &format!("{base}/drivers/virtio/virtio_ring.ko"),
            fake_module(&["name=virtio_ring", "depends=virtio"]),
        );
        add(
            &format!("{base}/drivers/net/virtio_net.ko"),
            fake_module(&[
                "alias=virtio:d00000001v*",
                "depends=virtio_ring,virtio",
                "name=virtio_net",
                "license=GPL",
            ]),
        );
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &fake_module(&["alias=pci:v00001AF4d*", "depends="]))
                .expect("gz");
            e.finish().expect("gz")
        };
        add(&format!("{base}/drivers/block/virtio-blk.ko.gz"), gz);
        assert_eq!(index(&mut tree, &mut pack).expect("index"), 4);
        let read = |p: &str| -> String {
            match &tree.get(p).expect("file").kind {
                Kind::File(c) => String::from_utf8(pack.read(c).expect("read")).expect("utf-8"),
                other => panic!("{other:?}"),
            }
        };
        let dep = read("lib/modules/6.1.0-test/modules.dep");
        assert!(dep.contains("kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n"), "{dep}");
        assert!(dep.contains("kernel/drivers/virtio/virtio.ko:\n"), "{dep}");
        let alias = read("lib/modules/6.1.0-test/modules.alias");
        assert!(
            alias.contains("alias virtio:d00000001v* virtio_net\n"),
            "{alias}"
        );
        assert!(
            alias.contains("alias pci:v00001AF4d* virtio_blk\n"),
            "{alias}"
        );
        assert!(modinfo(b"not an elf").is_err());
    }

    #[test]
    fn dependencies_named_with_dashes_are_found() {
        // dm-verity's .modinfo says "depends=reed_solomon,dm-mod,dm-bufio".
        let dir = tempfile::tempdir().expect("tmp");
        let mut pack = Pack::new(dir.path()).expect("pack");
        let mut tree = Tree::new();
        let base = "lib/modules/6.1/kernel/drivers/md";
        for (file, fields) in [
            ("dm-mod.ko", vec!["name=dm_mod", "depends="]),
            ("dm-bufio.ko", vec!["name=dm_bufio", "depends=dm-mod"]),
            (
                "dm-verity.ko",
                vec!["name=dm_verity", "depends=dm-mod,dm-bufio"],
            ),
        ] {
            let c = pack.store_bytes(&fake_module(&fields)).expect("store");
            tree.insert(&format!("{base}/{file}"), Entry::file(c, 0o644))
                .expect("insert");
        }
        index(&mut tree, &mut pack).expect("index");
        let Some(Kind::File(c)) = tree.get("lib/modules/6.1/modules.dep").map(|e| &e.kind) else {
            panic!("no modules.dep");
        };
        let dep = String::from_utf8(pack.read(c).expect("read")).expect("utf-8");
        assert!(
            dep.contains("kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko\n"),
            "{dep}"
        );
    }
}
