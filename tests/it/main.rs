//! Hull's integration tests, in one binary with two tiers.
//!
//! The modules at the top run the real `hull` binary against real
//! registries, real package builds and the independent tools; `boots::`
//! boots images under QEMU (TCG) and reads the serial console.
//! `bash ci/test --fast` runs everything but `boots::`; `bash ci/test` runs all. Helpers shared by
//! both are in `util`.

mod util;

mod all_fields;
mod bad_manifests;
mod build;
mod cli;
mod examples;
mod formats_refused;
mod init_static;
mod linuxkit_corpus;
mod packages;
mod pkg;
mod registry_credentials;
mod registry_faults;
mod registry_pull;
mod registry_tls;
mod registry_token;
mod update_service;

/// Tier 3: images booted under QEMU.
mod boots {
    mod boot;
    mod disk;
    mod examples;
    mod hostile;
    mod init_boot;
    mod iso;
    mod secure_boot;
    mod stress;
    mod uki;
    mod updates;
    mod verity;
    mod watchdog;
}
