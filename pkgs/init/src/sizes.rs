//! How big each tmpfs PID1 mounts may grow: the root, `/run`, `/tmp` and
//! every container's writable layer. The kernel's default (half of memory
//! each) lets two of them take all of it; these limits are documented, and
//! each is overridden on the kernel command line (`hull_root_size=2G`,
//! `hull_run_size=64m`, `hull_tmp_size=30%`, `hull_upper_size=...`: names
//! without a dot, which the kernel hands to init as environment variables).
//! Owns: the defaults and reading an override. Must not mount: `mounts`,
//! `newroot` and `container` do.

/// One tmpfs whose size can be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tmpfs {
    /// The root filesystem: the whole system, images included, and `/var`.
    Root,
    /// `/run`.
    Run,
    /// `/tmp`.
    Tmp,
    /// Each container's writable layer (above its read-only image).
    Upper,
}

impl Tmpfs {
    /// The kernel command line parameter that overrides the size.
    pub fn parameter(self) -> &'static str {
        match self {
            Tmpfs::Root => "hull_root_size",
            Tmpfs::Run => "hull_run_size",
            Tmpfs::Tmp => "hull_tmp_size",
            Tmpfs::Upper => "hull_upper_size",
        }
    }

    /// The size unless overridden, as tmpfs takes it.
    pub fn default_size(self) -> &'static str {
        match self {
            Tmpfs::Root => "75%",
            Tmpfs::Run => "20%",
            Tmpfs::Tmp => "25%",
            Tmpfs::Upper => "25%",
        }
    }

    /// The `size=` mount option: the override when it is a size tmpfs
    /// takes (a number with `k`, `m`, `g` or `%`), else the default (and
    /// the reason, for the console).
    pub fn option(self) -> (String, Option<String>) {
        let given = std::env::var(self.parameter()).ok();
        size_option(self, given.as_deref())
    }
}

/// Whether `text` is a size tmpfs takes: digits, then at most one of
/// `k`, `m`, `g` (any case) or `%`.
fn valid(text: &str) -> bool {
    let digits = text.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
    let suffix = text.len() - digits.len();
    !digits.is_empty() && suffix <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

fn size_option(t: Tmpfs, given: Option<&str>) -> (String, Option<String>) {
    match given {
        Some(v) if valid(v) => (format!("size={v}"), None),
        Some(v) => (
            format!("size={}", t.default_size()),
            Some(format!(
                "{}={v} is no size (e.g. 512m, 2G, 30%): using {}",
                t.parameter(),
                t.default_size()
            )),
        ),
        None => (format!("size={}", t.default_size()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_taken_when_they_are_sizes() {
        assert_eq!(size_option(Tmpfs::Run, None), ("size=20%".into(), None));
        assert_eq!(
            size_option(Tmpfs::Tmp, Some("3m")),
            ("size=3m".into(), None)
        );
        assert_eq!(
            size_option(Tmpfs::Root, Some("90%")),
            ("size=90%".into(), None)
        );
        for bad in ["", "m", "3mb", "-1", "1,nr_inodes=1", "12 %"] {
            let (opt, why) = size_option(Tmpfs::Upper, Some(bad));
            assert_eq!(opt, "size=25%", "{bad:?}");
            assert!(
                why.is_some_and(|w| w.contains("hull_upper_size")),
                "{bad:?}"
            );
        }
    }
}
