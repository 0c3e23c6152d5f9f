//! Hull: builds minimal, immutable, bootable Linux images from OCI images.
//!
//! The library holds every stage of the pipeline; the `hull` binary only parses
//! arguments and calls [`commands`].

pub mod assemble;
pub mod build;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod layers;
pub mod manifest;
pub mod modules;
pub mod oci;
pub mod output;
pub mod paths;
pub mod pkg;
pub mod plan;
pub mod platform;
pub mod progress;
pub mod qemu;
pub mod registry;
pub mod tree;
