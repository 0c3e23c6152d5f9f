//! Every package in pkgs/ and kernels/ builds for amd64 and arm64, and every
//! ELF file in each image is for that image's architecture (checked with `file`).

use crate::util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::registry::run;

use util::repo;

fn elf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        let t = e.file_type().expect("type");
        if t.is_dir() {
            elf_files(&p, out);
        } else if t.is_file() {
            let mut magic = [0u8; 4];
            if let Ok(mut f) = std::fs::File::open(&p) {
                use std::io::Read;
                if f.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF" {
                    out.push(p);
                }
            }
        }
    }
}

#[test]
fn every_package_builds_for_both_arches_with_binaries_of_that_arch() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let mut dirs: Vec<PathBuf> = ["pkgs", "kernels"]
        .iter()
        .flat_map(|top| {
            std::fs::read_dir(repo().join(top))
                .expect("read_dir")
                .flatten()
                .map(|e| e.path())
        })
        .filter(|d| d.join("build.yml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 9, "{dirs:?}");
    let mut args: Vec<String> = vec![
        "--cache".into(),
        cache.display().to_string(),
        "pkg".into(),
        "build".into(),
    ];
    args.extend(dirs.iter().map(|d| d.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = util::hull_in(&repo(), &argv, &[]).expect_code(0);
    let refs: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .map(String::from)
        .collect();
    assert_eq!(refs.len(), dirs.len(), "{}", out.stdout);
    for reference in &refs {
        for (arch, machine) in [("amd64", "x86-64"), ("arm64", "ARM aarch64")] {
            let layout = tmp.path().join("layout");
            let _ = std::fs::remove_dir_all(&layout);
            run(Command::new("skopeo")
                .args(["copy", "--quiet", "--override-arch", arch])
                .arg(format!("oci:{}:{reference}", cache.display()))
                .arg(format!("oci:{}:x", layout.display())));
            let bundle = tmp.path().join("bundle");
            let _ = std::fs::remove_dir_all(&bundle);
            run(Command::new("umoci")
                .args(["unpack", "--image"])
                .arg(format!("{}:x", layout.display()))
                .arg(&bundle));
            let mut elves = Vec::new();
            elf_files(&bundle.join("rootfs"), &mut elves);
            // A kernel's modules are in kernel.tar.
            let modules = bundle.join("rootfs/kernel.tar");
            if modules.exists() {
                let dir = tmp.path().join("modules");
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("mkdir");
                run(Command::new("bsdtar")
                    .arg("-xf")
                    .arg(&modules)
                    .arg("-C")
                    .arg(&dir));
                elf_files(&dir, &mut elves);
                assert!(
                    elves.len() > 20,
                    "{reference} {arch}: modules in kernel.tar"
                );
            }
            for elf in &elves {
                let kind = run(Command::new("file").arg("-b").arg(elf));
                // EFI binaries are PE files, kernels are boot images: neither is ELF,
                // so every ELF here is a program, library or module.
                // Except syslinux's BIOS modules, which are 32-bit x86 whatever the target.
                let bios =
                    elf.to_string_lossy().contains("/rootfs/bios/") && kind.contains("Intel 80386");
                assert!(
                    kind.contains(machine) || bios,
                    "{reference} {arch}: {} is {kind}",
                    elf.display()
                );
            }
            println!(
                "{reference} {arch}: {} ELF files, all {machine}",
                elves.len()
            );
        }
    }
}
