//! Where Hull keeps things on the host by default.
//!
//! Owns: the default cache directory. Must not create anything: commands that
//! write create what they need.

use std::path::PathBuf;

/// The cache directory: `--cache`, else `$XDG_CACHE_HOME/hull`, else
/// `$HOME/.cache/hull`, else `.hull-cache` in the working directory.
pub fn cache_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = flag {
        return dir;
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(xdg) = env("XDG_CACHE_HOME") {
        return xdg.join("hull");
    }
    if let Some(home) = env("HOME") {
        return home.join(".cache").join("hull");
    }
    PathBuf::from(".hull-cache")
}
