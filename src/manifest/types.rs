//! The manifest as written: LinuxKit's schema plus Hull's extensions.
//!
//! Owns: the raw types mirroring the YAML keys one for one, each decoded with
//! positions kept for errors. Must not resolve images, apply defaults or know
//! about output formats: later stages take these types, never YAML.

use std::collections::BTreeMap;

use serde::Serialize;

use super::decode::{manifest_struct, Decode, Diagnostics, Spanned};
use super::values::{
    Bind, Capability, ControlAccess, FileMode, Id, ImageRef, Namespace, RestartPolicy, Rlimit,
    Seconds, Tmpfs,
};
use super::yaml::{Node, Pos};

manifest_struct! {
    /// A whole manifest file.
    pub struct Manifest ("the manifest") {
        kernel: Kernel => "kernel",
        init: Vec<Spanned<ImageRef>> => "init",
        onboot: Vec<Image> => "onboot",
        onshutdown: Vec<Image> => "onshutdown",
        services: Vec<Image> => "services",
        files: Vec<File> => "files",
        volumes: Vec<Volume> => "volumes",
        trust: Trust => "trust",
        /// Hull: the bootloader image the disk, ISO and UKI formats take
        /// firmware-side files from (`--bootloader` overrides it).
        bootloader: Spanned<ImageRef> => "bootloader",
        /// Hull: when a version tried on a two-slot disk is blessed or
        /// given up (`docs/updates.md`).
        health: Health => "health",
        /// Hull: the hardware watchdog PID1 arms and feeds.
        watchdog: Watchdog => "watchdog",
    }
}

manifest_struct! {
    /// `health:` how long every service must stay up before a tried version
    /// is blessed (`window`), and by when it must be, or the machine reboots
    /// (`deadline`).
    pub struct Health ("health") {
        window: Spanned<Seconds> => "window",
        deadline: Spanned<Seconds> => "deadline",
    }
}

manifest_struct! {
    /// `watchdog:` the device (or `softdog`) and its timeout.
    pub struct Watchdog ("watchdog") {
        device: Spanned<String> => "device",
        timeout: Spanned<Seconds> => "timeout",
    }
}

manifest_struct! {
    /// `kernel:` the kernel image and how to boot it.
    pub struct Kernel ("kernel") {
        image: Spanned<ImageRef> => "image",
        cmdline: String => "cmdline",
        /// Name of the kernel file in the image (default `kernel`).
        binary: String => "binary",
        /// Name of the modules tarball in the image (default `kernel.tar`; empty: none).
        tar: String => "tar",
        /// Name of a microcode cpio to prepend to the initrd (empty: none).
        ucode: String => "ucode",
    }
}

manifest_struct! {
    /// `trust:` accepted for compatibility and ignored, as LinuxKit does.
    pub struct Trust ("trust") {
        image: Vec<String> => "image",
        org: Vec<String> => "org",
    }
}

manifest_struct! {
    /// One `files:` entry.
    pub struct File ("a files entry") {
        path: Spanned<String> => "path",
        directory: bool => "directory",
        symlink: String => "symlink",
        contents: String => "contents",
        source: Spanned<String> => "source",
        metadata: Spanned<String> => "metadata",
        optional: bool => "optional",
        mode: FileMode => "mode",
        uid: Id => "uid",
        gid: Id => "gid",
    }
}

manifest_struct! {
    /// One `volumes:` entry.
    pub struct Volume ("a volumes entry") {
        name: Spanned<String> => "name",
        image: Spanned<ImageRef> => "image",
        readonly: bool => "readonly",
        format: Spanned<String> => "format",
        platforms: Vec<Spanned<String>> => "platforms",
    }
}

manifest_struct! {
    /// A container's settings: the fields of an `onboot`/`onshutdown`/`services`
    /// entry other than `name` and `image`, and the whole of an image's
    /// `org.mobyproject.config` label.
    pub struct ImageConfig ("a container entry") {
        capabilities: Vec<Capability> => "capabilities",
        capabilities_add: Vec<Capability> => "capabilities.add",
        ambient: Vec<Capability> => "ambient",
        mounts: Vec<Mount> => "mounts",
        binds: Vec<Spanned<Bind>> => "binds",
        binds_add: Vec<Spanned<Bind>> => "binds.add",
        tmpfs: Vec<Tmpfs> => "tmpfs",
        devices: Vec<Device> => "devices",
        command: Vec<String> => "command",
        env: Vec<Spanned<String>> => "env",
        cwd: String => "cwd",
        net: Namespace => "net",
        pid: Namespace => "pid",
        ipc: Namespace => "ipc",
        uts: Namespace => "uts",
        userns: Namespace => "userns",
        hostname: String => "hostname",
        readonly: bool => "readonly",
        masked_paths: Vec<String> => "maskedPaths",
        readonly_paths: Vec<String> => "readonlyPaths",
        uid: Spanned<Id> => "uid",
        gid: Spanned<Id> => "gid",
        additional_gids: Vec<Spanned<Id>> => "additionalGids",
        no_new_privileges: bool => "noNewPrivileges",
        oom_score_adj: i32 => "oomScoreAdj",
        rootfs_propagation: Spanned<String> => "rootfsPropagation",
        cgroups_path: String => "cgroupsPath",
        resources: Resources => "resources",
        sysctl: BTreeMap<String, String> => "sysctl",
        rlimits: Vec<Rlimit> => "rlimits",
        uid_mappings: Vec<IdMapping> => "uidMappings",
        gid_mappings: Vec<IdMapping> => "gidMappings",
        annotations: BTreeMap<String, String> => "annotations",
        runtime: Runtime => "runtime",
        /// Hull extension (services): restart policy, default `on-failure`.
        restart: Spanned<RestartPolicy> => "restart",
        /// Hull extension (onboot, onshutdown): kill the container after this long, default 60s.
        timeout: Spanned<Seconds> => "timeout",
        /// Hull extension: a seccomp filter, OCI runtime-spec `linux.seccomp` fields.
        seccomp: Seccomp => "seccomp",
        /// Hull extension: what it may ask over the control socket, default `none`.
        control: Spanned<ControlAccess> => "control",
    }
}

manifest_struct! {
    /// Hull extension: OCI runtime-spec `linux.seccomp`, applied by hull-init.
    pub struct Seccomp ("seccomp") {
        default_action: Spanned<String> => "defaultAction",
        default_errno_ret: u32 => "defaultErrnoRet",
        syscalls: Vec<SeccompSyscall> => "syscalls",
    }
}

manifest_struct! {
    /// One `seccomp.syscalls` rule.
    pub struct SeccompSyscall ("a seccomp syscalls entry") {
        names: Vec<String> => "names",
        action: Spanned<String> => "action",
        errno_ret: u32 => "errnoRet",
        args: Vec<SeccompArg> => "args",
    }
}

manifest_struct! {
    /// A syscall argument condition.
    pub struct SeccompArg ("a seccomp args entry") {
        index: Spanned<u32> => "index",
        value: u64 => "value",
        value_two: u64 => "valueTwo",
        op: Spanned<String> => "op",
    }
}

/// One `onboot`, `onshutdown` or `services` entry: a name, an image, and settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Image {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Spanned<ImageRef>>,
    #[serde(flatten)]
    pub config: ImageConfig,
    #[serde(skip)]
    pub pos: Pos,
    /// Keys written in the entry, even those whose value was invalid, so a bad
    /// value is not reported a second time as a missing field.
    #[serde(skip)]
    pub keys: Vec<String>,
}

impl Decode for Image {
    fn decode(key: &str, node: &Node, cx: &mut Diagnostics) -> Option<Self> {
        let entries = cx.mapping(node, key, "a mapping (a container entry)")?;
        let mut out = Image {
            pos: node.pos.clone(),
            ..Image::default()
        };
        out.config.pos = node.pos.clone();
        for (name, key_node, value) in entries {
            out.keys.push(name.clone());
            match name.as_str() {
                "name" => out.name = cx.field("name", value),
                "image" => out.image = cx.field("image", value),
                other => {
                    if !out.config.set_field(other, value, cx) {
                        let mut known = vec!["name", "image"];
                        known.extend_from_slice(ImageConfig::KEYS);
                        cx.unknown_field(key_node, other, &known, "a container entry");
                    }
                }
            }
        }
        Some(out)
    }
}

manifest_struct! {
    /// An OCI runtime-spec mount.
    pub struct Mount ("a mount") {
        destination: Spanned<String> => "destination",
        mount_type: String => "type",
        source: String => "source",
        options: Vec<String> => "options",
        uid_mappings: Vec<IdMapping> => "uidMappings",
        gid_mappings: Vec<IdMapping> => "gidMappings",
    }
}

manifest_struct! {
    /// A device node to create in the container (and allow in its cgroup).
    pub struct Device ("a device") {
        path: Spanned<String> => "path",
        device_type: Spanned<String> => "type",
        major: i64 => "major",
        minor: i64 => "minor",
        mode: FileMode => "mode",
    }
}

manifest_struct! {
    /// A user-namespace id mapping.
    pub struct IdMapping ("an id mapping") {
        container_id: u32 => "containerID",
        host_id: u32 => "hostID",
        size: u32 => "size",
    }
}

manifest_struct! {
    /// LinuxKit's `runtime:` section: what the PID1 does around the container.
    pub struct Runtime ("runtime") {
        cgroups: Vec<String> => "cgroups",
        mounts: Vec<Mount> => "mounts",
        mkdir: Vec<String> => "mkdir",
        interfaces: Vec<Interface> => "interfaces",
        bind_ns: BindNs => "bindNS",
        namespace: String => "namespace",
    }
}

manifest_struct! {
    /// A network interface to create or move into the container's namespace.
    pub struct Interface ("an interface") {
        name: Spanned<String> => "name",
        add: String => "add",
        peer: String => "peer",
        create_in_root: bool => "createInRoot",
    }
}

manifest_struct! {
    /// Paths at which to bind-mount the container's namespaces for others to join.
    pub struct BindNs ("bindNS") {
        cgroup: String => "cgroup",
        ipc: String => "ipc",
        mnt: String => "mnt",
        net: String => "net",
        pid: String => "pid",
        user: String => "user",
        uts: String => "uts",
    }
}

manifest_struct! {
    /// OCI runtime-spec `linux.resources`.
    pub struct Resources ("resources") {
        devices: Vec<DeviceRule> => "devices",
        memory: Memory => "memory",
        cpu: Cpu => "cpu",
        pids: Pids => "pids",
        block_io: BlockIo => "blockIO",
        hugepage_limits: Vec<HugepageLimit> => "hugepageLimits",
        network: Network => "network",
        rdma: BTreeMap<String, Rdma> => "rdma",
        unified: BTreeMap<String, String> => "unified",
    }
}

manifest_struct! {
    /// A device cgroup rule.
    pub struct DeviceRule ("a device rule") {
        allow: bool => "allow",
        device_type: String => "type",
        major: i64 => "major",
        minor: i64 => "minor",
        access: String => "access",
    }
}

manifest_struct! {
    /// Memory limits, in bytes.
    pub struct Memory ("memory") {
        limit: i64 => "limit",
        reservation: i64 => "reservation",
        swap: i64 => "swap",
        kernel: i64 => "kernel",
        kernel_tcp: i64 => "kernelTCP",
        swappiness: u64 => "swappiness",
        disable_oom_killer: bool => "disableOOMKiller",
        use_hierarchy: bool => "useHierarchy",
        check_before_update: bool => "checkBeforeUpdate",
    }
}

manifest_struct! {
    /// CPU shares, quota and placement.
    pub struct Cpu ("cpu") {
        shares: u64 => "shares",
        quota: i64 => "quota",
        burst: u64 => "burst",
        period: u64 => "period",
        realtime_runtime: i64 => "realtimeRuntime",
        realtime_period: u64 => "realtimePeriod",
        cpus: String => "cpus",
        mems: String => "mems",
        idle: i64 => "idle",
    }
}

manifest_struct! {
    /// The process count limit.
    pub struct Pids ("pids") {
        limit: i64 => "limit",
    }
}

manifest_struct! {
    /// Block IO weights and throttles.
    pub struct BlockIo ("blockIO") {
        weight: u16 => "weight",
        leaf_weight: u16 => "leafWeight",
        weight_device: Vec<WeightDevice> => "weightDevice",
        throttle_read_bps_device: Vec<ThrottleDevice> => "throttleReadBpsDevice",
        throttle_write_bps_device: Vec<ThrottleDevice> => "throttleWriteBpsDevice",
        throttle_read_iops_device: Vec<ThrottleDevice> => "throttleReadIOPSDevice",
        throttle_write_iops_device: Vec<ThrottleDevice> => "throttleWriteIOPSDevice",
    }
}

manifest_struct! {
    /// A per-device block IO weight.
    pub struct WeightDevice ("a weight device") {
        major: i64 => "major",
        minor: i64 => "minor",
        weight: u16 => "weight",
        leaf_weight: u16 => "leafWeight",
    }
}

manifest_struct! {
    /// A per-device block IO rate limit.
    pub struct ThrottleDevice ("a throttle device") {
        major: i64 => "major",
        minor: i64 => "minor",
        rate: u64 => "rate",
    }
}

manifest_struct! {
    /// A hugepage limit.
    pub struct HugepageLimit ("a hugepage limit") {
        page_size: String => "pageSize",
        limit: u64 => "limit",
    }
}

manifest_struct! {
    /// Network class and priorities.
    pub struct Network ("network") {
        class_id: u32 => "classID",
        priorities: Vec<NetPriority> => "priorities",
    }
}

manifest_struct! {
    /// A network interface priority.
    pub struct NetPriority ("a network priority") {
        name: String => "name",
        priority: u32 => "priority",
    }
}

manifest_struct! {
    /// RDMA limits for one device.
    pub struct Rdma ("an rdma limit") {
        hca_handles: u32 => "hcaHandles",
        hca_objects: u32 => "hcaObjects",
    }
}
