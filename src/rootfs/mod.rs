//! The image's file tree: the in-memory model every writer consumes
//! (`tree`), layers applied to it (`layers`), the kernel modules index
//! (`modules`), and the plan placed in it (`assemble`). Must not fetch
//! images or write output files.

pub mod assemble;
pub mod layers;
pub mod modules;
pub mod tree;
