//! Hull: builds minimal, immutable, bootable Linux images from OCI images.
//!
//! The library holds every stage of the pipeline; the `hull` binary only parses
//! arguments and calls [`commands`].

pub mod cli;
pub mod commands;
pub mod manifest;
pub mod paths;
