//! The image contract between Hull's builder and `hull-init`.
//!
//! Owns: where things live in a built image ([`layout`]), the typed
//! `runtime.json` every container directory holds ([`runtime`]), the names
//! two-slot disks and update bundles use ([`slots`]), and every
//! default the two sides share (restart policy, timeout, cgroup path). The
//! builder writes only these types and `hull-init` reads only these types, so
//! a field misspelt on one side is a compile error, not a silently dropped key.
//! `config.json` is the OCI runtime spec, `oci_spec::runtime::Spec`, on both
//! sides.
//!
//! Must not open files or know about manifests, registries or syscalls: it
//! is serde types, constants and pure functions (the verity hash tree reads
//! and writes the streams it is given), built into the host builder, the
//! static PID1 and the update service.

pub mod layout;
pub mod runtime;
pub mod slots;
pub mod uki;
pub mod verity;

pub use layout::Section;

/// `PATH` for a container (and a package image) whose settings give none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub use runtime::{
    BindNs, ControlAccess, Hull, IdMapping, Interface, Mount, RestartPolicy, Runtime,
};
