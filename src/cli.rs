//! The command-line interface definition: arguments, flags and help text.
//!
//! Owns: the clap types, shared by `main` (parsing) and by `hull completions` /
//! `hull man` (generation). Must not do any work: `commands` does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build minimal, immutable, bootable Linux images from OCI container images.
#[derive(Debug, Parser)]
#[command(
    name = "hull",
    version,
    about,
    after_help = "Examples:\n  hull validate examples/minimal.yml\n  hull validate base.yml extra.yml --json\n  hull completions bash > /etc/bash_completion.d/hull\n  hull man > hull.1"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Image cache directory [default: $XDG_CACHE_HOME/hull, or ~/.cache/hull]
    #[arg(long, global = true, value_name = "DIR", env = "HULL_CACHE")]
    pub cache: Option<PathBuf>,
    /// Say more about what is happening (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print nothing but errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Registry reached over plain HTTP when it does not speak TLS (repeatable;
    /// loopback registries always are)
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Extra CA certificate (PEM) to trust for registries (repeatable)
    #[arg(long = "registry-ca", global = true, value_name = "FILE")]
    pub registry_ca: Vec<PathBuf>,
    /// Blobs transferred at once
    #[arg(long, global = true, default_value_t = 4, value_name = "N")]
    pub jobs: usize,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests and print the merged result
    #[command(
        after_help = "Several files are merged in order, as LinuxKit does: kernel fields from the last\nfile that sets them, lists appended. Every error is printed as FILE:LINE:COL.\n\nExamples:\n  hull validate examples/minimal.yml\n  hull validate base.yml debug.yml --json | jq .services"
    )]
    Validate(ValidateArgs),
    /// Build image outputs from manifests
    #[command(
        after_help = "Images come from the cache, pulled when missing (--pull). Outputs appear only when\nthe whole build succeeds; their sha256 is printed. SOURCE_DATE_EPOCH sets file times.\n\nExamples:\n  hull build examples/minimal.yml\n  hull build --arch arm64 --format kernel+initrd --format tar --dir out minimal.yml\n  hull build --format uki examples/minimal.yml && hull run qemu minimal.efi\n  hull build --write-lock minimal.lock minimal.yml && hull build --lock minimal.lock minimal.yml"
    )]
    Build(BuildArgs),
    /// Boot a built image
    #[command(subcommand)]
    Run(RunCommand),
    /// Build packages into OCI images
    #[command(subcommand)]
    Pkg(PkgCommand),
    /// Manage the image cache (an OCI image layout)
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Push a cached image or index to a registry
    #[command(
        after_help = "Blobs the registry has are skipped; blobs in another repository of the same\nregistry are mounted instead of uploaded.\n\nExamples:\n  hull push 127.0.0.1:5000/hull/init:0.1.0\n  hull push docker.io/library/alpine:3.20 registry.example.org/mirror/alpine:3.20"
    )]
    Push(PushArgs),
    /// Print a shell completion script
    #[command(
        after_help = "Example:\n  hull completions bash > ~/.local/share/bash-completion/completions/hull"
    )]
    Completions(CompletionsArgs),
    /// Print the man page (roff)
    #[command(after_help = "Example:\n  hull man | man -l -")]
    Man,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Manifest files, merged in order ("-" reads standard input)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print the merged manifest as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the cached references
    #[command(after_help = "Example:\n  hull cache ls")]
    Ls,
    /// Pull images into the cache
    #[command(
        after_help = "Examples:\n  hull cache pull alpine:3.20\n  hull cache pull --arch arm64 127.0.0.1:5000/hull/init:0.1.0\n  hull cache pull --pull missing alpine@sha256:..."
    )]
    Pull(CachePullArgs),
    /// Remove references (their blobs go at the next gc)
    #[command(after_help = "Example:\n  hull cache rm alpine:3.20 && hull cache gc")]
    Rm(CacheRefsArgs),
    /// Remove blobs no reference reaches, and initrd parts no build used
    /// for a week
    #[command(after_help = "Example:\n  hull cache gc")]
    Gc,
    /// Rehash every blob and report the bad ones
    #[command(after_help = "Example:\n  hull cache verify")]
    Verify,
    /// Write references to an OCI archive file
    #[command(
        after_help = "The file is what `skopeo copy ... oci-archive:FILE` writes.\n\nExample:\n  hull cache export alpine:3.20 -o alpine.tar && skopeo inspect oci-archive:alpine.tar"
    )]
    Export(CacheExportArgs),
    /// Import OCI archives or `docker save` tarballs
    #[command(
        after_help = "Examples:\n  hull cache import alpine.tar\n  docker save alpine:3.20 > a.tar && hull cache import a.tar"
    )]
    Import(CacheImportArgs),
}

#[derive(Debug, Args)]
pub struct CachePullArgs {
    /// Image references
    #[arg(required = true, value_name = "REF")]
    pub refs: Vec<String>,
    /// Architecture to pull for
    #[arg(long, default_value = "host", value_name = "amd64|arm64")]
    pub arch: String,
    /// When to ask the registry
    #[arg(long, value_enum, default_value_t = crate::image::registry::pull::PullPolicy::Always)]
    pub pull: crate::image::registry::pull::PullPolicy,
}

#[derive(Debug, Args)]
pub struct CacheRefsArgs {
    /// Image references
    #[arg(required = true, value_name = "REF")]
    pub refs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CacheExportArgs {
    /// Image references
    #[arg(required = true, value_name = "REF")]
    pub refs: Vec<String>,
    /// The archive to write
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct CacheImportArgs {
    /// OCI archives or docker save tarballs
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The cached image to push, or an OCI archive file (an update bundle
    /// of `hull build -f update`), imported into the cache first
    #[arg(value_name = "REF|FILE")]
    pub source: String,
    /// Where to push it [default: the image's own name]
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Manifest files, merged in order
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output formats (repeatable) [default: kernel+initrd]
    #[arg(short, long = "format", value_enum, value_name = "FORMAT")]
    pub formats: Vec<crate::output::Format>,
    /// Target architecture [default: the host's]
    #[arg(long, value_name = "amd64|arm64")]
    pub arch: Option<String>,
    /// Directory for the outputs
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Base name of the outputs [default: the first manifest's file name without .yml]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Initrd compression
    #[arg(long, value_enum, default_value_t = crate::output::Compression::Gzip)]
    pub compression: crate::output::Compression,
    /// Compression level [default: gzip 6, zstd 3; gzip takes 1-9, zstd 1-19]
    #[arg(long, value_name = "N")]
    pub compression_level: Option<u32>,
    /// When to ask registries
    #[arg(long, value_enum, default_value_t = crate::image::registry::pull::PullPolicy::Missing)]
    pub pull: crate::image::registry::pull::PullPolicy,
    /// Pin every image to the digest recorded in this lock file
    #[arg(long, value_name = "FILE", conflicts_with = "write_lock")]
    pub lock: Option<PathBuf>,
    /// Write the resolved digest of every image to this lock file
    #[arg(long, value_name = "FILE")]
    pub write_lock: Option<PathBuf>,
    /// Image with the EFI stub and boot loaders for uki (an image reference
    /// or @pkg:DIR) [default: @pkg: of pkgs/bootloader in Hull's source tree]
    #[arg(long, value_name = "REF")]
    pub bootloader: Option<String>,
    /// Size of the whole disk for raw-efi/qcow2-efi (bytes, or with K, M, G);
    /// what the boot partition leaves becomes a blank "hull-data" partition
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub disk_size: Option<u64>,
    /// The most file content one layer may unpack to (bytes, or with K, M,
    /// G) [default: 16G]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_layer_size: Option<u64>,
    /// The most entries one layer may hold [default: 4194304]
    #[arg(long, value_name = "N")]
    pub max_layer_entries: Option<u64>,
    /// Where the booted system's root lives
    #[arg(long, value_enum, default_value_t = crate::output::RootMode::Memory)]
    pub root: crate::output::RootMode,
    /// The version of this image (--root ab): systemd-boot starts the
    /// newest, and update bundles carry it (letters, digits, '.', '_', '-')
    #[arg(long, value_name = "VERSION")]
    pub image_version: Option<String>,
    /// Size of each root slot of a two-slot disk (bytes, or with K, M, G)
    /// [default: twice the root image, at least 64M]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub slot_size: Option<u64>,
    /// Sign the unified kernel image for UEFI Secure Boot with this RSA key
    /// (PEM, not encrypted)
    #[arg(long, value_name = "KEY", requires = "sign_cert")]
    pub sign_key: Option<PathBuf>,
    /// The X.509 certificate (PEM) of --sign-key, as the firmware's db holds
    /// it or a certificate it signed
    #[arg(long, value_name = "CERT", requires = "sign_key")]
    pub sign_cert: Option<PathBuf>,
}

/// "512M", "2G", "1048576": a size in bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("\"{text}\" is not a size (e.g. 512M, 2G)"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("\"{text}\": unknown unit (use K, M or G)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

#[derive(Debug, Subcommand)]
pub enum PkgCommand {
    /// Build packages into multi-arch images in the cache (and push them)
    #[command(
        after_help = "A package directory holds build.yml and a build step (build.sh) that fills $ROOTFS\nfor $TARGETARCH. The tag comes from the package's content.\n\nExamples:\n  hull pkg build pkgs/getty\n  hull pkg build --arch arm64 --registry 127.0.0.1:5000 --push pkgs/*"
    )]
    Build(PkgBuildArgs),
    /// Print the image reference a package builds to
    #[command(after_help = "Example:\n  hull pkg show-tag pkgs/getty")]
    ShowTag(PkgShowTagArgs),
}

#[derive(Debug, Args)]
pub struct PkgBuildArgs {
    /// Package directories
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Architectures to build (comma-separated) [default: those in build.yml]
    #[arg(long, value_delimiter = ',', value_name = "amd64,arm64")]
    pub arch: Vec<String>,
    /// Registry to name the images under (default: docker.io)
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: Option<String>,
    /// Tag to use instead of the content tag
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Push the images after building them
    #[arg(long)]
    pub push: bool,
    /// Build even when the tag is already in the cache
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PkgShowTagArgs {
    /// Package directory
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Registry to name the image under (default: docker.io)
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Boot PREFIX-kernel, PREFIX-initrd.img and PREFIX-cmdline under QEMU
    #[command(
        after_help = "The serial console is the terminal (ctrl-a x quits). With --expect, hull waits for a\nline with TEXT on the console and exits 0, or exits 1 with the console after --timeout;\ninput piped to it is typed on the console.\nKVM is used when it works, TCG otherwise (HULL_QEMU_ACCEL=tcg: always; QEMU dying of\nKVM itself boots again with TCG); networking is QEMU's user mode. UKIs, EFI\ndisks and EFI ISOs boot through UEFI firmware (OVMF, AAVMF), BIOS disks and ISOs\nthrough SeaBIOS (ISOs from a CD-ROM); --uefi insists on UEFI, also for kernel+initrd.\n\nExamples:\n  hull run qemu minimal\n  hull run qemu --arch arm64 --expect 'HULL-READY' --timeout 120 out/minimal\n  hull run qemu --publish 2222:22 --disk data.qcow2 sshd\n  hull run qemu --arch arm64 out/minimal.efi      # a UKI, through UEFI\n  hull run qemu out/minimal-efi.img               # an EFI disk, through UEFI\n  hull run qemu out/minimal.iso                   # a BIOS ISO, from a CD-ROM"
    )]
    Qemu(RunQemuArgs),
}

#[derive(Debug, Args)]
pub struct RunQemuArgs {
    /// What hull build made: its prefix (DIR/NAME: kernel+initrd, else NAME.efi,
    /// else NAME-efi.img or NAME-efi.qcow2), or one of those files
    #[arg(value_name = "PREFIX")]
    pub prefix: String,
    /// Architecture of the image [default: the host's]
    #[arg(long, value_name = "amd64|arm64")]
    pub arch: Option<String>,
    /// Memory in MiB
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    pub mem: u32,
    /// CPUs
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub cpus: u32,
    /// Extra disk (raw, or qcow2 by extension), repeatable
    #[arg(long, value_name = "FILE")]
    pub disk: Vec<PathBuf>,
    /// Forward a TCP port from 127.0.0.1 to the guest, repeatable
    #[arg(long, value_name = "HOST:GUEST")]
    pub publish: Vec<String>,
    /// Exit 0 once a console line contains TEXT
    #[arg(long, value_name = "TEXT")]
    pub expect: Option<String>,
    /// Seconds to wait for --expect
    #[arg(long, default_value_t = 300, value_name = "S")]
    pub timeout: u64,
    /// With --expect: succeed only once QEMU has also exited by itself (a poweroff)
    #[arg(long, requires = "expect")]
    pub until_exit: bool,
    /// Boot through UEFI firmware (OVMF on x86_64, AAVMF on aarch64); on
    /// aarch64 this gives ACPI, and with it the power button
    #[arg(long)]
    pub uefi: bool,
    /// Boot with UEFI Secure Boot on: the firmware's Secure Boot build and a
    /// variable store with the firmware package's snakeoil key in db (sign
    /// with it: see docs/secure-boot.md). Implies --uefi
    #[arg(long)]
    pub secure_boot: bool,
    /// Serve QMP on this unix socket (e.g. to send system_powerdown)
    #[arg(long, value_name = "SOCKET")]
    pub qmp: Option<PathBuf>,
    /// Let the guest reboot instead of exiting QEMU when it does (two-slot
    /// disks try updates and fall back across reboots)
    #[arg(long)]
    pub reboot: bool,
}
