//! `--root verity`: examples/minimal.yml as a GPT disk whose ESP holds a UKI
//! with a small initrd, and whose root is a squashfs partition checked by
//! dm-verity against the root hash on the UKI's command line. Independent
//! tools accept every part (`sgdisk -v`, `fsck.vfat -n`, `unsquashfs`,
//! `veritysetup verify`), two builds are byte-identical, UEFI firmware boots
//! it on amd64 and arm64 with the root mounted read-only from `/dev/dm-*`,
//! using at least 30% less memory than the same manifest as kernel+initrd
//! (minimal.yml with 48 MiB of data: an appliance with its assets);
//! a flipped byte in the root, or a wrong root hash, stops the boot with
//! dm-verity's error before anything runs, and with `hull.verity=panic` the
//! flipped byte panics the kernel. The appliance example runs from a verity
//! root with its data disk.

use crate::util;

use std::path::{Path, PathBuf};
use std::time::Duration;

use util::boot::Boot;
use util::tool;

/// First and last sector of partition `n` of `disk`, as sgdisk reads them.
fn partition(disk: &Path, n: u32) -> (u64, u64) {
    let (_, info) = tool(
        "sgdisk",
        &["-i", &n.to_string(), disk.to_str().expect("utf-8")],
    );
    let sector = |key: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {info}"))
    };
    (sector("First sector:"), sector("Last sector:"))
}

/// Partition `n` of `disk` copied to `to`.
fn cut(disk: &Path, n: u32, to: &Path) -> PathBuf {
    use std::io::{Read, Seek, SeekFrom};
    let (first, last) = partition(disk, n);
    let mut f = std::fs::File::open(disk).expect("disk");
    f.seek(SeekFrom::Start(first * 512)).expect("seek");
    let mut b = vec![0u8; usize::try_from((last + 1 - first) * 512).expect("size")];
    f.read_exact(&mut b).expect("read");
    std::fs::write(to, b).expect("write");
    to.to_path_buf()
}

/// The root hash on the command line of the UKI in `disk`'s ESP.
fn root_hash(disk: &Path) -> String {
    let bytes = std::fs::read(disk).expect("disk");
    let at = bytes
        .windows(9)
        .position(|w| w == b"roothash=")
        .expect("roothash= in the UKI's command line");
    String::from_utf8_lossy(&bytes[at + 9..at + 9 + 64]).into_owned()
}

/// Every part accepted by its own tool; returns the root hash.
fn check_parts(disk: &Path, dir: &Path) -> String {
    let d = disk.to_str().expect("utf-8");
    let (ok, text) = tool("sgdisk", &["-v", d]);
    assert!(
        ok && text.contains("No problems found"),
        "sgdisk -v: {text}"
    );
    let (_, table) = tool("sgdisk", &["-p", d]);
    assert!(
        table.contains("hull-root") && table.contains("hull-root-verity"),
        "{table}"
    );
    let esp = cut(disk, 1, &dir.join("esp.img"));
    let (ok, text) = tool("fsck.vfat", &["-n", esp.to_str().expect("utf-8")]);
    assert!(ok, "fsck.vfat: {text}");
    let root = cut(disk, 2, &dir.join("root.img"));
    let hash = cut(disk, 3, &dir.join("hash.img"));
    let (ok, text) = tool("unsquashfs", &["-l", root.to_str().expect("utf-8")]);
    assert!(
        ok && text.contains("squashfs-root/init"),
        "unsquashfs: {text}"
    );
    let rh = root_hash(disk);
    let (ok, text) = tool(
        "veritysetup",
        &[
            "verify",
            root.to_str().expect("utf-8"),
            hash.to_str().expect("utf-8"),
            &rh,
        ],
    );
    assert!(ok, "veritysetup verify: {text}");
    rh
}

/// "memory in use N kB" of hull-init's boot line.
fn memory_in_use(console: &str) -> u64 {
    console
        .lines()
        .find_map(|l| l.split("memory in use ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no memory figure in:\n{console}"))
}

fn build_verity(arch: &str, out: &Path) {
    util::build_example(
        "minimal",
        arch,
        out,
        &["--root", "verity", "--format", "raw-efi"],
        &[],
    )
    .expect_code(0);
}

/// examples/minimal.yml with a 48 MiB file of data in `/opt` (an appliance
/// carries assets; without them the kernel's own memory dominates both
/// boots), written in `dir` with its packages named absolutely.
fn appliance_manifest(dir: &Path) -> PathBuf {
    use std::io::Write;
    let data = dir.join("data.bin");
    let mut f = std::fs::File::create(&data).expect("data");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..48 {
        for b in block.chunks_mut(8) {
            // xorshift: data that does not compress, as assets mostly do not.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        f.write_all(&block).expect("write");
    }
    let repo = util::repo();
    let text = std::fs::read_to_string(repo.join("examples/minimal.yml"))
        .expect("minimal.yml")
        .replace("@pkg:../", &format!("@pkg:{}/", repo.display()));
    let m = dir.join("appliance.yml");
    std::fs::write(
        &m,
        format!(
            "{text}files:\n  - path: opt/data.bin\n    source: {}\n    mode: \"0644\"\n",
            data.display()
        ),
    )
    .expect("manifest");
    m
}

fn build_manifest(manifest: &Path, arch: &str, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "build",
        "--arch",
        arch,
        "--dir",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    args.push(manifest.to_str().expect("utf-8"));
    util::hull_cached(&util::examples_cache(), &util::repo(), &args).expect_code(0);
}

#[test]
fn verity_root_boots_read_only_on_both_arches_in_less_memory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let manifest = appliance_manifest(tmp.path());
    let verity = ["--root", "verity", "--format", "raw-efi"];
    for arch in ["amd64", "arm64"] {
        let a = tmp.path().join(format!("a-{arch}"));
        let b = tmp.path().join(format!("b-{arch}"));
        build_manifest(&manifest, arch, &a, &verity);
        build_manifest(&manifest, arch, &b, &verity);
        let disk = a.join("appliance-efi.img");
        assert!(
            std::fs::read(&disk).expect("disk")
                == std::fs::read(b.join("appliance-efi.img")).expect("disk"),
            "{arch}: two builds differ"
        );
        check_parts(&disk, &a);
        let boot = Boot::to_ready(tmp.path(), arch, &disk, "the verity disk");
        let text = boot.text();
        assert!(
            text.contains("hull-init: root: /dev/dm-") && text.contains("mounted read-only"),
            "{arch}: the root is not the verity device:\n{text}"
        );
        let disk_root = memory_in_use(&text);
        drop(boot);
        let m = tmp.path().join(format!("m-{arch}"));
        build_manifest(&manifest, arch, &m, &[]);
        let boot = Boot::to_ready(tmp.path(), arch, &m.join("appliance"), "kernel+initrd");
        let in_memory = memory_in_use(&boot.text());
        println!(
            "{arch}: memory in use after boot: {disk_root} kB with the verity root, {in_memory} kB as kernel+initrd ({}%)",
            disk_root * 100 / in_memory.max(1)
        );
        assert!(
            disk_root * 10 <= in_memory * 7,
            "{arch}: {disk_root} kB is not 30% below {in_memory} kB"
        );
    }
}

/// Boots `disk`, which must not come up: the console shows `error` and
/// hull-init stopping the boot, and never the marker.
fn refused(dir: &Path, arch: &str, disk: &Path, error: &str, what: &str) {
    let (stopped, text) = Boot::until(
        dir,
        arch,
        disk,
        &[],
        "cannot boot",
        Duration::from_secs(300),
    );
    assert!(
        stopped && text.contains(error) && !text.contains("HULL-READY"),
        "{arch}: {what}: expected {error:?} and no marker:\n{text}"
    );
}

/// Flips one bit of a byte in the first block of `disk`'s root partition.
fn flip(disk: &Path) {
    use std::os::unix::fs::FileExt;
    let (first, _) = partition(disk, 2);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, first * 512 + 100).expect("read");
    f.write_all_at(&[b[0] ^ 0x01], first * 512 + 100)
        .expect("write");
}

/// examples/minimal.yml with `hull.verity=panic` on its command line,
/// written in `dir` (named minimal.yml, its packages named absolutely).
fn panic_manifest(dir: &Path) -> PathBuf {
    let repo = util::repo();
    let text = std::fs::read_to_string(repo.join("examples/minimal.yml"))
        .expect("minimal.yml")
        .replace("@pkg:../", &format!("@pkg:{}/", repo.display()))
        .replace("console=ttyAMA0\"", "console=ttyAMA0 hull.verity=panic\"");
    assert!(text.contains("hull.verity=panic"), "{text}");
    let m = dir.join("minimal.yml");
    std::fs::write(&m, text).expect("manifest");
    m
}

/// The 16 bytes of a partition GUID's text form as sgdisk takes it.
fn guid_text(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[test]
fn a_flipped_byte_or_a_wrong_root_hash_stops_the_boot() {
    let tmp = tempfile::tempdir().expect("tmp");
    for arch in ["amd64", "arm64"] {
        let out = tmp.path().join(arch);
        build_verity(arch, &out);
        let disk = out.join("minimal-efi.img");
        // One byte of the root's first block.
        let flipped = out.join("flipped.img");
        std::fs::copy(&disk, &flipped).expect("copy");
        flip(&flipped);
        refused(
            tmp.path(),
            arch,
            &flipped,
            "data block 0 is corrupted",
            "a flipped byte",
        );
        // With hull.verity=panic the same byte panics the kernel.
        let panicky = tmp.path().join(format!("panic-{arch}"));
        std::fs::create_dir_all(&panicky).expect("dir");
        let manifest = panic_manifest(&panicky);
        build_manifest(
            &manifest,
            arch,
            &panicky,
            &["--root", "verity", "--format", "raw-efi"],
        );
        let disk_p = panicky.join("minimal-efi.img");
        flip(&disk_p);
        let (panicked, text) = Boot::until(
            tmp.path(),
            arch,
            &disk_p,
            &[],
            "Kernel panic",
            Duration::from_secs(300),
        );
        assert!(
            panicked && text.contains("is corrupted") && !text.contains("HULL-READY"),
            "{arch}: hull.verity=panic did not panic on the corrupted block:\n{text}"
        );
        // Another root hash: its last digit changed on the UKI's command
        // line, and the verity partition's UUID (its second half) to match,
        // so the partitions are found and dm-verity itself refuses.
        let wrong = out.join("wrong.img");
        std::fs::copy(&disk, &wrong).expect("copy");
        let rh = root_hash(&wrong);
        let last = if rh.ends_with('0') { '1' } else { '0' };
        let other = format!("{}{last}", &rh[..63]);
        let mut bytes = std::fs::read(&wrong).expect("read");
        let at = bytes
            .windows(73)
            .position(|w| w == format!("roothash={rh}").as_bytes())
            .expect("found");
        bytes[at + 9..at + 73].copy_from_slice(other.as_bytes());
        std::fs::write(&wrong, bytes).expect("write");
        let w = wrong.to_str().expect("utf-8");
        let (ok, text) = tool(
            "sgdisk",
            &["-u", &format!("3:{}", guid_text(&other[32..])), w],
        );
        assert!(ok, "sgdisk -u: {text}");
        refused(
            tmp.path(),
            arch,
            &wrong,
            "is corrupted",
            "a wrong root hash",
        );
    }
}

#[test]
fn the_appliance_example_runs_from_a_verity_root_with_its_data_disk() {
    let tmp = tempfile::tempdir().expect("tmp");
    for arch in ["amd64", "arm64"] {
        let out = tmp.path().join(arch);
        util::build_example(
            "appliance",
            arch,
            &out,
            &["--root", "verity", "--format", "raw-efi"],
            &[],
        )
        .expect_code(0);
        let data = tmp.path().join(format!("data-{arch}.img"));
        std::fs::File::create(&data)
            .and_then(|f| f.set_len(128 << 20))
            .expect("blank disk");
        let disk = out.join("appliance-efi.img");
        let data = data.to_str().expect("utf-8");
        let (up, text) = Boot::until(
            tmp.path(),
            arch,
            &disk,
            &["--disk", data],
            "[web] APPLIANCE-BOOT-1",
            Duration::from_secs(400),
        );
        assert!(
            up && text.contains("hull-init: root: /dev/dm-")
                && text.contains("format: making ext4 labelled hull-data")
                && text.contains("[002-mount] mount: "),
            "{arch}: the appliance did not come up on its verity root with its data disk:\n{text}"
        );
    }
}
