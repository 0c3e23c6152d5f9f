//! The image's file tree: the in-memory model every writer consumes
//! (`tree`), layers applied to it (`layers`) and kept unpacked in the cache
//! (`unpacked`), the kernel modules index
//! (`modules`), the plan placed in it (`assemble`), and the small initrd of
//! a root on disk (`boot_initrd`). Must not fetch images or write output
//! files.

pub mod assemble;
pub mod boot_initrd;
pub mod layers;
pub mod modules;
mod read_ahead;
pub mod tree;
pub mod unpacked;
