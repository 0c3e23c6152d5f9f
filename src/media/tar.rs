//! Writing a tree as a tar archive (PAX, with `SCHILY.xattr.*` for xattrs).
//!
//! Owns: deterministic headers (the tree's order, fixed times, numeric owners).
//! Must not know about formats beyond tar.

use std::io::{self, Write};

use crate::rootfs::tree::{Kind, Pack, Tree};

/// Writes `tree` (without its root entry) to `out`.
pub fn write<W: Write>(tree: &Tree, pack: &Pack, mtime: u64, out: W) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    for (path, entry) in tree.iter().filter(|(p, _)| !p.is_empty()) {
        if !entry.xattrs.is_empty() {
            let pax: Vec<(String, &[u8])> = entry
                .xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                .collect();
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(u64::from(entry.uid));
        h.set_gid(u64::from(entry.gid));
        h.set_mode(entry.mode & 0o7777);
        match &entry.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), io::empty())?;
            }
            Kind::File(c) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(c.len());
                b.append_data(&mut h, path, pack.reader(c))?;
            }
            Kind::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, t)?;
            }
            Kind::Hardlink(t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, path, t)?;
            }
            Kind::Char(maj, min) | Kind::Block(maj, min) => {
                h.set_entry_type(if matches!(entry.kind, Kind::Char(..)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(*maj)?;
                h.set_device_minor(*min)?;
                h.set_size(0);
                b.append_data(&mut h, path, io::empty())?;
            }
            Kind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_size(0);
                b.append_data(&mut h, path, io::empty())?;
            }
        }
    }
    b.into_inner()
}
