//! Merging several manifest files into one, in command-line order.
//!
//! Owns: LinuxKit's merge rules: kernel `image`, `cmdline` and `binary` are taken
//! from the last file that sets them non-empty; `tar` and `ucode` from the last
//! file that sets them at all (so `ucode: ""` turns microcode off); Hull's
//! `bootloader`, `health` and `watchdog` from the last file that sets them; every list appends. Must not
//! check the result: `checks::check_merged` does.

use super::types::{Kernel, Manifest};

/// Appends `next` onto `base`.
pub fn append(base: &mut Manifest, next: Manifest) {
    if let Some(k) = next.kernel {
        let kernel = base.kernel.get_or_insert_with(|| Kernel {
            pos: k.pos.clone(),
            ..Kernel::default()
        });
        if k.image.is_some() {
            kernel.image = k.image;
        }
        for (into, from) in [
            (&mut kernel.cmdline, k.cmdline),
            (&mut kernel.binary, k.binary),
        ] {
            if from.as_deref().is_some_and(|s| !s.is_empty()) {
                *into = from;
            }
        }
        if k.tar.is_some() {
            kernel.tar = k.tar;
        }
        if k.ucode.is_some() {
            kernel.ucode = k.ucode;
        }
    }
    extend(&mut base.init, next.init);
    extend(&mut base.onboot, next.onboot);
    extend(&mut base.onshutdown, next.onshutdown);
    extend(&mut base.services, next.services);
    extend(&mut base.files, next.files);
    extend(&mut base.volumes, next.volumes);
    if let Some(t) = next.trust {
        let trust = base.trust.get_or_insert_with(Default::default);
        extend(&mut trust.image, t.image);
        extend(&mut trust.org, t.org);
        trust.pos = t.pos;
    }
    if next.bootloader.is_some() {
        base.bootloader = next.bootloader;
    }
    if next.health.is_some() {
        base.health = next.health;
    }
    if next.watchdog.is_some() {
        base.watchdog = next.watchdog;
    }
    if base.pos == Default::default() {
        base.pos = next.pos;
    }
}

fn extend<T>(into: &mut Option<Vec<T>>, from: Option<Vec<T>>) {
    if let Some(items) = from {
        into.get_or_insert_with(Vec::new).extend(items);
    }
}
