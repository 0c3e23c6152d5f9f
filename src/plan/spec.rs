//! A container's `config.json` (OCI runtime spec) and `runtime.json`.
//!
//! Owns: merging a container's settings ([`settings`]: image config, then the
//! image's `org.mobyproject.config` label, then the manifest entry) and
//! turning them into the runtime spec with LinuxKit's defaults, one part per
//! module: [`process`] (command, identity, capabilities, limits), [`mounts`]
//! (its default mounts, the entry's mounts, binds and tmpfs) and [`linux`]
//! (the host's namespaces except a new pid and mount namespace, devices,
//! resources, seccomp), all through `oci_spec` builders; and
//! [`runtime`], the typed `runtime.json` of `hull_contract`. Must not touch
//! the tree.

pub mod linux;
pub mod mounts;
pub mod process;
pub mod runtime;
pub mod settings;

#[cfg(test)]
mod golden;

use std::collections::BTreeMap;

use oci_spec::runtime::{RootBuilder, Spec, SpecBuilder};
use serde::de::{value::StrDeserializer, DeserializeOwned, IntoDeserializer};
use serde_json::Value;

use crate::manifest::ImageConfig;

pub use runtime::runtime_json;
pub use settings::{allocate_ids, image_defaults, merge, ImageDefaults};

/// The OCI runtime-spec version `config.json` declares.
pub const OCI_VERSION: &str = "1.0.2";

/// Why a container's settings do not make a runtime spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{field}: \"{value}\" is not a valid {what}")]
    Name {
        field: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("{0}")]
    Build(#[from] oci_spec::OciSpecError),
    #[error("{field}: {source}")]
    Convert {
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// An `oci_spec` enum from its name in the runtime spec (`CAP_CHOWN`,
/// `RLIMIT_NOFILE`, `SCMP_ACT_ERRNO`, `c`), as `config.json` readers parse it.
pub(crate) fn from_name<T: DeserializeOwned>(
    field: &'static str,
    what: &'static str,
    value: &str,
) -> Result<T, SpecError> {
    let de: StrDeserializer<'_, serde::de::value::Error> = value.into_deserializer();
    T::deserialize(de).map_err(|_| SpecError::Name {
        field,
        value: value.to_string(),
        what,
    })
}

/// The runtime spec for the container `name`: its settings `c` over `image`'s
/// defaults; `ids` numbers the names used as uids and gids.
pub fn runtime_spec(
    name: &str,
    c: &ImageConfig,
    image: &ImageDefaults,
    ids: &BTreeMap<String, u32>,
) -> Result<Spec, SpecError> {
    let mut spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .process(process::process(c, image, ids)?)
        .root(
            RootBuilder::default()
                .path(hull_contract::layout::ROOTFS)
                .readonly(c.readonly.unwrap_or(false))
                .build()?,
        )
        .hostname(c.hostname.clone().unwrap_or_else(|| name.to_string()))
        .mounts(mounts::mounts(c)?)
        .linux(linux::linux(name, c)?)
        .build()?;
    spec.set_annotations(
        c.annotations
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
    );
    Ok(spec)
}

/// The spec as JSON with a stable order: object keys sorted (serde_json's
/// map), and the capability sets (hash sets in `oci-spec`) sorted too.
pub fn canonical_json(spec: &Spec) -> Result<Vec<u8>, serde_json::Error> {
    let mut v = serde_json::to_value(spec)?;
    if let Some(caps) = v
        .get_mut("process")
        .and_then(|p| p.get_mut("capabilities"))
        .and_then(Value::as_object_mut)
    {
        for set in caps.values_mut() {
            if let Some(a) = set.as_array_mut() {
                a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            }
        }
    }
    serde_json::to_vec_pretty(&v)
}
