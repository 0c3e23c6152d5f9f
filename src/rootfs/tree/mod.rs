//! The filesystem model every output writer consumes.
//!
//! Owns: a sorted map of normalized relative paths to entries (directories,
//! files, symlinks, hardlinks, device nodes, fifos) with modes, owners and
//! xattrs, and the rules for changing it safely: no path with `..`, no write
//! through a symlink, parents created as needed. File contents live in a
//! [`pack::Pack`] temp file, not in memory. Must not know about images,
//! manifests or formats.

pub mod pack;

use std::collections::BTreeMap;

pub use pack::{Content, Pack};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Dir,
    File(Content),
    Symlink(String),
    /// A hard link to the file at this (normalized) path.
    Hardlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits, with setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    pub fn dir(mode: u32) -> Self {
        Entry {
            kind: Kind::Dir,
            mode,
            uid: 0,
            gid: 0,
            xattrs: BTreeMap::new(),
        }
    }

    pub fn file(content: Content, mode: u32) -> Self {
        Entry {
            kind: Kind::File(content),
            ..Entry::dir(mode)
        }
    }

    pub fn symlink(target: &str) -> Self {
        Entry {
            kind: Kind::Symlink(target.to_string()),
            ..Entry::dir(0o777)
        }
    }

    pub fn owned(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

/// The longest path the tree takes, in bytes: Linux's `PATH_MAX`, which
/// no program in the image could open a longer path with anyway.
pub const MAX_PATH_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("path \"{0}\" leaves the tree (\"..\" or an absolute path)")]
    Escapes(String),
    #[error(
        "path \"{start}...\" is {len} bytes long, more than the {MAX_PATH_BYTES} a path may have"
    )]
    TooLong { start: String, len: usize },
    #[error("path \"{path}\" goes through the symlink \"{link}\"")]
    ThroughSymlink { path: String, link: String },
    #[error("path \"{path}\": its parent \"{parent}\" is not a directory")]
    ParentNotDir { path: String, parent: String },
    #[error(
        "hard link \"{path}\" points at \"{target}\", which is not a regular file in the tree"
    )]
    BadHardlink { path: String, target: String },
}

/// Normalizes a relative path: drops `.` parts and a leading `./`, joins with `/`.
/// `..` parts and absolute paths are errors. The root is `""`.
pub fn normalize(path: &str) -> Result<String, TreeError> {
    if path.len() > MAX_PATH_BYTES {
        let mut end = 64;
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        return Err(TreeError::TooLong {
            start: path[..end].to_string(),
            len: path.len(),
        });
    }
    if path.starts_with('/') {
        return Err(TreeError::Escapes(path.to_string()));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(TreeError::Escapes(path.to_string())),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn parent_of(path: &str) -> Option<&str> {
    if path.is_empty() {
        None
    } else {
        Some(path.rsplit_once('/').map_or("", |(p, _)| p))
    }
}

/// The filesystem.
#[derive(Debug, Default)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    pub fn new() -> Self {
        let mut entries = BTreeMap::new();
        entries.insert(String::new(), Entry::dir(0o755));
        Tree { entries }
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn get_mut(&mut self, path: &str) -> Option<&mut Entry> {
        self.entries.get_mut(path)
    }

    /// All entries in path order (parents before children), the root first.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() <= 1
    }

    /// Checks that every ancestor of `path` is a directory (creating missing
    /// ones with mode 0755) and none is a symlink. Walks up only to the
    /// nearest ancestor the tree has: every entry's ancestors are already
    /// directories, so the work is the missing part of the path, not its
    /// whole depth (a deep tree stays linear to build).
    fn prepare_parents(&mut self, path: &str) -> Result<(), TreeError> {
        let mut missing = Vec::new();
        let mut p = parent_of(path);
        while let Some(a) = p {
            if a.is_empty() {
                break;
            }
            match self.entries.get(a).map(|e| &e.kind) {
                None => missing.push(a),
                Some(Kind::Dir) => break,
                Some(Kind::Symlink(_)) => {
                    return Err(TreeError::ThroughSymlink {
                        path: path.to_string(),
                        link: a.to_string(),
                    })
                }
                Some(_) => {
                    return Err(TreeError::ParentNotDir {
                        path: path.to_string(),
                        parent: a.to_string(),
                    })
                }
            }
            p = parent_of(a);
        }
        for a in missing.into_iter().rev() {
            self.entries.insert(a.to_string(), Entry::dir(0o755));
        }
        Ok(())
    }

    /// Puts `entry` at `path` (normalized), replacing what was there. A
    /// directory over a directory keeps the children; anything else over a
    /// directory removes them.
    pub fn insert(&mut self, path: &str, entry: Entry) -> Result<(), TreeError> {
        let path = normalize(path)?;
        if path.is_empty() {
            if let Kind::Dir = entry.kind {
                self.entries.insert(path, entry);
            }
            return Ok(());
        }
        self.prepare_parents(&path)?;
        if let Kind::Hardlink(target) = &entry.kind {
            let target = normalize(target)?;
            let resolved = self.link_source(&target);
            match resolved {
                Some(t) if t != path => {
                    let mut e = entry.clone();
                    e.kind = Kind::Hardlink(t);
                    self.remove(&path);
                    self.entries.insert(path, e);
                    return Ok(());
                }
                _ => return Err(TreeError::BadHardlink { path, target }),
            }
        }
        let keep_children = matches!(entry.kind, Kind::Dir)
            && matches!(self.entries.get(&path).map(|e| &e.kind), Some(Kind::Dir));
        if !keep_children {
            self.remove(&path);
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    /// The regular file a hard link to `target` should point at.
    fn link_source(&self, target: &str) -> Option<String> {
        match self.entries.get(target).map(|e| &e.kind) {
            Some(Kind::File(_)) => Some(target.to_string()),
            Some(Kind::Hardlink(t)) => Some(t.clone()),
            _ => None,
        }
    }

    /// Removes `path` and everything under it. Hard links to a removed file
    /// keep its content: the first of them becomes the file.
    pub fn remove(&mut self, path: &str) {
        let removed: Vec<String> = self.subtree(path);
        for p in &removed {
            if let Some(entry) = self.entries.remove(p) {
                if let Kind::File(_) = entry.kind {
                    self.promote_links(p, &entry);
                }
            }
        }
    }

    /// Paths of `path` and its descendants.
    fn subtree(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.entries.contains_key(path) {
            out.push(path.to_string());
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        out.extend(
            self.entries
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, _)| k.clone()),
        );
        out
    }

    /// Removes the children of the directory `path` (an opaque whiteout),
    /// except those `keep` says to keep.
    pub fn clear_dir(&mut self, path: &str, keep: &dyn Fn(&str) -> bool) {
        let children: Vec<String> = self
            .subtree(path)
            .into_iter()
            .filter(|p| p != path)
            .collect();
        for c in children {
            if !keep(&c) && self.entries.contains_key(&c) {
                self.remove(&c);
            }
        }
    }

    fn promote_links(&mut self, removed: &str, entry: &Entry) {
        let links: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(&e.kind, Kind::Hardlink(t) if t == removed))
            .map(|(k, _)| k.clone())
            .collect();
        if let Some((first, rest)) = links.split_first() {
            if let Some(e) = self.entries.get_mut(first) {
                e.kind = entry.kind.clone();
            }
            for l in rest {
                if let Some(e) = self.entries.get_mut(l) {
                    e.kind = Kind::Hardlink(first.clone());
                }
            }
        }
    }

    /// Copies the subtree at `from` in `other` to `to` in this tree.
    pub fn graft(&mut self, to: &str, other: &Tree, from: &str) -> Result<(), TreeError> {
        let to = normalize(to)?;
        let from = normalize(from)?;
        for (path, entry) in other.entries.iter() {
            let rel = if from.is_empty() {
                path.as_str()
            } else if path == &from {
                ""
            } else if let Some(r) = path.strip_prefix(&format!("{from}/")) {
                r
            } else {
                continue;
            };
            let dest = join(&to, rel);
            let mut e = entry.clone();
            if let Kind::Hardlink(t) = &entry.kind {
                let t_rel = if from.is_empty() {
                    t.as_str()
                } else {
                    t.strip_prefix(&format!("{from}/")).unwrap_or(t)
                };
                e.kind = Kind::Hardlink(join(&to, t_rel));
            }
            if !dest.is_empty() {
                self.prepare_parents(&dest)?;
                // A directory replaced by anything else takes its children
                // along, as in `insert`: every entry's parent is a directory.
                let over_dir = matches!(self.entries.get(&dest).map(|e| &e.kind), Some(Kind::Dir));
                if over_dir && !matches!(e.kind, Kind::Dir) {
                    self.remove(&dest);
                }
            }
            self.entries.insert(dest, e);
        }
        Ok(())
    }
}

/// `a/b` from `a` and `b`, either possibly empty.
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: u8) -> Entry {
        Entry::file(Content::Inline(vec![n]), 0o644)
    }

    #[test]
    fn paths_are_normalized_and_escapes_refused() {
        assert_eq!(normalize("./a//b/./c"), Ok("a/b/c".to_string()));
        assert_eq!(normalize("./"), Ok(String::new()));
        assert!(normalize("a/../../etc").is_err());
        assert!(normalize("/etc/passwd").is_err());
    }

    #[test]
    fn a_deep_tree_builds_in_linear_time_and_too_long_paths_are_refused() {
        // The deepest tree the path limit allows, entry by entry as a layer
        // lists it: each insert checks one parent, not the whole chain.
        let depth = MAX_PATH_BYTES / 2;
        let started = std::time::Instant::now();
        let mut t = Tree::new();
        let mut path = String::from("a");
        for _ in 1..depth {
            t.insert(&path, Entry::dir(0o755)).expect("insert");
            path.push_str("/a");
        }
        t.insert(&path, file(1)).expect("deepest file");
        assert_eq!(t.len(), depth + 1);
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(1),
            "{depth} levels took {took:?}"
        );
        // 10,000 levels: refused at once, naming the start of the path.
        let deep = vec!["d"; 10_000].join("/");
        let started = std::time::Instant::now();
        let e = t.insert(&deep, file(2)).expect_err("too long");
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        assert!(matches!(e, TreeError::TooLong { len: 19_999, .. }), "{e}");
        assert!(e.to_string().starts_with("path \"d/d/d/"), "{e}");
    }

    #[test]
    fn parents_are_made_and_symlinks_not_followed() {
        let mut t = Tree::new();
        t.insert("a/b/c", file(1)).expect("insert");
        assert_eq!(t.get("a/b").map(|e| &e.kind), Some(&Kind::Dir));
        t.insert("link", Entry::symlink("/etc")).expect("insert");
        assert!(matches!(
            t.insert("link/passwd", file(2)),
            Err(TreeError::ThroughSymlink { .. })
        ));
        assert!(matches!(
            t.insert("a/b/c/d", file(3)),
            Err(TreeError::ParentNotDir { .. })
        ));
    }

    #[test]
    fn replacing_and_removing() {
        let mut t = Tree::new();
        t.insert("d/x", file(1)).expect("insert");
        t.insert("d", Entry::dir(0o700)).expect("insert");
        assert!(t.get("d/x").is_some(), "dir over dir keeps children");
        assert_eq!(t.get("d").map(|e| e.mode), Some(0o700));
        t.insert("d", file(2)).expect("insert");
        assert!(t.get("d/x").is_none(), "file over dir drops children");
        t.insert("e/1", file(1)).expect("insert");
        t.insert("e/2", file(2)).expect("insert");
        t.insert("e-f", file(3)).expect("insert");
        t.clear_dir("e", &|p| p == "e/2");
        assert!(t.get("e/1").is_none() && t.get("e/2").is_some() && t.get("e-f").is_some());
    }

    #[test]
    fn hard_links_survive_their_target() {
        let mut t = Tree::new();
        t.insert("bin/a", file(7)).expect("insert");
        t.insert(
            "bin/b",
            Entry {
                kind: Kind::Hardlink("bin/a".into()),
                ..file(0)
            },
        )
        .expect("insert");
        t.insert(
            "bin/c",
            Entry {
                kind: Kind::Hardlink("bin/b".into()),
                ..file(0)
            },
        )
        .expect("insert");
        assert_eq!(
            t.get("bin/c").map(|e| &e.kind),
            Some(&Kind::Hardlink("bin/a".into()))
        );
        t.remove("bin/a");
        assert_eq!(
            t.get("bin/b").map(|e| &e.kind),
            Some(&Kind::File(Content::Inline(vec![7])))
        );
        assert_eq!(
            t.get("bin/c").map(|e| &e.kind),
            Some(&Kind::Hardlink("bin/b".into()))
        );
        assert!(t
            .insert(
                "x",
                Entry {
                    kind: Kind::Hardlink("nope".into()),
                    ..file(0)
                }
            )
            .is_err());
    }

    #[test]
    fn graft_copies_a_subtree_under_a_prefix() {
        let mut img = Tree::new();
        img.insert("bin/sh", file(1)).expect("insert");
        img.insert(
            "bin/ash",
            Entry {
                kind: Kind::Hardlink("bin/sh".into()),
                ..file(0)
            },
        )
        .expect("insert");
        let mut out = Tree::new();
        out.graft("containers/x/rootfs", &img, "").expect("graft");
        assert!(out.get("containers/x/rootfs/bin/sh").is_some());
        assert_eq!(
            out.get("containers/x/rootfs/bin/ash").map(|e| &e.kind),
            Some(&Kind::Hardlink("containers/x/rootfs/bin/sh".into()))
        );
    }
}
