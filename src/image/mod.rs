//! Getting images: OCI documents (`oci`), the content-addressed cache in
//! an OCI image layout (`cache`), and registries to pull from and push to
//! (`registry`). Must not look inside layers: that is `rootfs`.

pub mod cache;
pub mod digest;
pub mod oci;
pub mod registry;
