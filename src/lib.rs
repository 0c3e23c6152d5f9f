//! Hull: builds minimal, immutable, bootable Linux images from OCI images.
//!
//! The library holds every stage of the pipeline; the `hull` binary only parses
//! arguments and calls [`commands`].

pub mod build;
pub mod cli;
pub mod commands;
pub mod image;
pub mod manifest;
pub mod media;
pub mod output;
pub mod paths;
pub mod pkg;
pub mod plan;
pub mod platform;
pub mod progress;
pub mod qemu;
pub mod rootfs;

#[cfg(test)]
mod fuzz;
