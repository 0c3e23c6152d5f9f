//! Loading kernel modules for the devices present ("coldplug").
//!
//! Owns: reading the `modules.alias` and `modules.dep` Hull wrote into the
//! image, matching every `/sys/devices/**/modalias` against the aliases
//! (fnmatch patterns), and loading each matching module after its
//! dependencies with `finit_module`. Must not mount anything.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// fnmatch-style matching of `*`, `?` and `[...]`, as modules.alias uses.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some(p);
                    mark = t;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(&pattern[p..], text[t]) {
                        if matched {
                            p += next;
                            t += 1;
                            continue;
                        }
                    }
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some(s) => {
                p = s + 1;
                mark += 1;
                t = mark;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Matches `c` against the class at the start of `pat`; returns (matched, length).
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let end = pat.iter().skip(1).position(|b| *b == b']')? + 1;
    let body = &pat[1..end];
    let (negate, body) = match body.first() {
        Some(b'!') | Some(b'^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut i = 0;
    let mut hit = false;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == b'-' {
            hit |= body[i] <= c && c <= body[i + 2];
            i += 3;
        } else {
            hit |= body[i] == c;
            i += 1;
        }
    }
    Some((hit != negate, end + 1))
}

/// The module index of the running kernel.
pub struct Index {
    dir: PathBuf,
    aliases: Vec<(String, String)>,
    /// module name -> (path relative to dir, dependency paths)
    deps: BTreeMap<String, (String, Vec<String>)>,
}

fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

impl Index {
    pub fn load(dir: &Path) -> std::io::Result<Index> {
        let alias_text = std::fs::read_to_string(dir.join("modules.alias"))?;
        let dep_text = std::fs::read_to_string(dir.join("modules.dep"))?;
        let aliases = alias_text
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("alias"), Some(a), Some(m)) => Some((a.to_string(), m.replace('-', "_"))),
                    _ => None,
                }
            })
            .collect();
        let deps = dep_text
            .lines()
            .filter_map(|l| {
                let (path, rest) = l.split_once(':')?;
                let deps = rest.split_whitespace().map(String::from).collect();
                Some((name_of(path), (path.to_string(), deps)))
            })
            .collect();
        Ok(Index {
            dir: dir.to_path_buf(),
            aliases,
            deps,
        })
    }

    /// Modules whose alias matches `modalias`.
    pub fn matching(&self, modalias: &str) -> BTreeSet<String> {
        self.aliases
            .iter()
            .filter(|(a, _)| glob(a.as_bytes(), modalias.as_bytes()))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Files to load for `module`, dependencies first.
    pub fn load_order(&self, module: &str) -> Vec<PathBuf> {
        let Some((path, deps)) = self.deps.get(module) else {
            return Vec::new();
        };
        // modules.dep lists dependencies so that they load from the end.
        let mut out: Vec<PathBuf> = deps.iter().rev().map(|d| self.dir.join(d)).collect();
        out.push(self.dir.join(path));
        out
    }
}

/// Every modalias under /sys/devices.
pub fn modaliases(root: &Path) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() && !t.is_symlink() {
                stack.push(e.path());
            } else if e.file_name() == "modalias" {
                if let Ok(s) = std::fs::read_to_string(e.path()) {
                    let s = s.trim();
                    if !s.is_empty() {
                        out.insert(s.to_string());
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Loads the modules the present devices need. Returns (loaded, failures).
pub fn coldplug(index: &Index) -> (Vec<String>, Vec<String>) {
    let mut done: BTreeSet<PathBuf> = BTreeSet::new();
    let (mut loaded, mut failed) = (Vec::new(), Vec::new());
    // A bus driver brings new devices (virtio_pci the virtio NIC and disks):
    // scan again until a pass loads nothing new.
    for _pass in 0..4 {
        let mut wanted = BTreeSet::new();
        for alias in modaliases(Path::new("/sys/devices")) {
            wanted.extend(index.matching(&alias));
        }
        let before = done.len();
        for module in wanted {
            for file in index.load_order(&module) {
                if !done.insert(file.clone()) {
                    continue;
                }
                match load(&file) {
                    Ok(()) => loaded.push(name_of(&file.to_string_lossy())),
                    Err(e) if e == rustix::io::Errno::EXIST => {}
                    Err(e) => failed.push(format!("{}: {e}", file.display())),
                }
            }
        }
        if done.len() == before {
            break;
        }
    }
    (loaded, failed)
}

/// Loads the module `name` (and what it needs) from the running kernel's
/// index, for filesystems that are modules (overlay, ext4, ...). True when it
/// is loaded now or was already.
pub fn load_named(name: &str) -> bool {
    let Some(index) = running() else {
        return false;
    };
    load_all(index, &name.replace('-', "_"))
}

/// The running kernel's index, read once per process.
pub fn running() -> Option<&'static Index> {
    static RUNNING: std::sync::OnceLock<Option<Index>> = std::sync::OnceLock::new();
    RUNNING
        .get_or_init(|| {
            let release = rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned();
            Index::load(Path::new(&format!("/lib/modules/{release}"))).ok()
        })
        .as_ref()
}

/// Loads the modules whose aliases match `alias` (e.g. `rtnl-link-veth`,
/// what the kernel would ask modprobe for). True when any was loaded or was
/// already there.
pub fn load_alias(alias: &str) -> bool {
    let Some(index) = running() else {
        return false;
    };
    let mut any = false;
    for m in index.matching(alias) {
        any |= load_all(index, &m);
    }
    any
}

fn load_all(index: &Index, module: &str) -> bool {
    let files = index.load_order(module);
    !files.is_empty()
        && files
            .iter()
            .all(|f| matches!(load(f), Ok(()) | Err(rustix::io::Errno::EXIST)))
}

fn load(file: &Path) -> Result<(), rustix::io::Errno> {
    let f = std::fs::File::open(file)
        .map_err(|e| rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::NOENT))?;
    let params = CString::default();
    rustix::system::finit_module(&f, &params, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_like_fnmatch() {
        assert!(glob(b"virtio:d00000001v*", b"virtio:d00000001v00001AF4"));
        assert!(!glob(b"virtio:d00000002v*", b"virtio:d00000001v00001AF4"));
        assert!(glob(
            b"pci:v00001AF4d*sv*sd*bc*sc*i*",
            b"pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00"
        ));
        assert!(glob(b"a?c", b"abc") && !glob(b"a?c", b"abbc"));
        assert!(glob(b"x[0-9]y", b"x5y") && !glob(b"x[!0-9]y", b"x5y"));
        assert!(glob(b"*", b"") && glob(b"", b"") && !glob(b"", b"a"));
    }

    #[test]
    fn load_order_puts_dependencies_first() {
        let dir = std::env::temp_dir().join(format!("hull-init-mod-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("modules.alias"),
            "alias virtio:d00000001v* virtio_net\n",
        )
        .expect("write");
        std::fs::write(
            dir.join("modules.dep"),
            "kernel/virtio_net.ko: kernel/net_failover.ko kernel/failover.ko\nkernel/failover.ko:\nkernel/net_failover.ko: kernel/failover.ko\n",
        )
        .expect("write");
        let idx = Index::load(&dir).expect("load");
        assert_eq!(
            idx.matching("virtio:d00000001v00001AF4")
                .into_iter()
                .collect::<Vec<_>>(),
            ["virtio_net"]
        );
        let order: Vec<String> = idx
            .load_order("virtio_net")
            .iter()
            .map(|p| name_of(&p.to_string_lossy()))
            .collect();
        assert_eq!(order, ["failover", "net_failover", "virtio_net"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
