//! Reading OCI and Docker image manifests and indexes.
//!
//! Owns: the media types Hull accepts, parsing a manifest blob into either an
//! index (entries with platforms) or an image manifest (config and layers), and
//! choosing an index entry for an architecture. Must not fetch or store anything.

use serde::{Deserialize, Serialize};

use crate::image::digest::{Digest, DigestError};
use crate::platform::Arch;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Media types a registry may answer a manifest request with.
pub const MANIFEST_TYPES: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// The OCI annotation naming a reference in an image layout's index.json.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

impl Descriptor {
    /// A descriptor of `size` bytes with `digest`, no platform or annotations.
    pub fn new(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size,
            platform: None,
            annotations: None,
        }
    }

    /// The descriptor of `bytes`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, &Digest::of(bytes), bytes.len() as u64)
    }

    /// The digest, checked.
    pub fn digest(&self) -> Result<Digest, DigestError> {
        Digest::parse(&self.digest)
    }
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// A parsed manifest blob.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Index {
        media_type: String,
        manifests: Vec<Descriptor>,
    },
    Image {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a manifest: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported manifest (schema version {0:?}, media type {1:?}): Hull reads OCI and Docker schema 2 manifests")]
    Unsupported(Option<u32>, Option<String>),
}

impl Parsed {
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let raw: Raw = serde_json::from_slice(bytes)?;
        if raw.schema_version != Some(2) {
            return Err(ParseError::Unsupported(raw.schema_version, raw.media_type));
        }
        match (raw.manifests, raw.config, raw.layers) {
            (Some(manifests), None, _) => Ok(Parsed::Index {
                media_type: raw.media_type.unwrap_or_else(|| OCI_INDEX.to_string()),
                manifests,
            }),
            (None, Some(config), layers) => Ok(Parsed::Image {
                media_type: raw.media_type.unwrap_or_else(|| OCI_MANIFEST.to_string()),
                config,
                layers: layers.unwrap_or_default(),
            }),
            _ => Err(ParseError::Unsupported(raw.schema_version, raw.media_type)),
        }
    }

    /// The media type declared by (or inferred for) this manifest.
    pub fn media_type(&self) -> &str {
        match self {
            Parsed::Index { media_type, .. } | Parsed::Image { media_type, .. } => media_type,
        }
    }
}

/// The index entry for `arch`, if any.
pub fn select(manifests: &[Descriptor], arch: Arch) -> Option<&Descriptor> {
    manifests.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| arch.matches(&p.os, &p.architecture, p.variant.as_deref()))
    })
}

/// The platforms an index offers, for error messages.
pub fn platforms(manifests: &[Descriptor]) -> String {
    let v: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// The architecture an image config declares.
pub fn config_arch(config: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct C {
        architecture: Option<String>,
    }
    serde_json::from_slice::<C>(config).ok()?.architecture
}

/// Writing OCI documents: image configs, manifests and indexes as
/// `oci_spec::image` types, serialized with sorted keys and no spaces so
/// that their digests depend only on their content.
pub mod write {
    use std::collections::HashMap;

    use oci_spec::image::{
        self as spec, Arch as SpecArch, DescriptorBuilder, ImageIndex, ImageIndexBuilder,
        ImageManifest, ImageManifestBuilder, MediaType, Os, PlatformBuilder,
    };
    use oci_spec::OciSpecError;
    use serde::Serialize;

    use super::Descriptor;

    /// Why a document cannot be written.
    #[derive(Debug, thiserror::Error)]
    pub enum WriteError {
        #[error("invalid OCI document: {0}")]
        Spec(#[from] OciSpecError),
        #[error("cannot serialize an OCI document")]
        Json(#[from] serde_json::Error),
    }

    /// A document's bytes: compact JSON with object keys in sorted order.
    pub fn to_bytes<T: Serialize>(doc: &T) -> Result<Vec<u8>, WriteError> {
        Ok(serde_json::to_vec(&serde_json::to_value(doc)?)?)
    }

    /// Hull's descriptor as the spec's.
    pub fn descriptor(d: &Descriptor) -> Result<spec::Descriptor, WriteError> {
        let mut b = DescriptorBuilder::default()
            .media_type(MediaType::from(d.media_type.as_str()))
            .digest(d.digest.parse::<spec::Digest>()?)
            .size(d.size);
        if let Some(p) = &d.platform {
            let mut pb = PlatformBuilder::default()
                .architecture(SpecArch::from(p.architecture.as_str()))
                .os(Os::from(p.os.as_str()));
            if let Some(v) = &p.variant {
                pb = pb.variant(v.clone());
            }
            b = b.platform(pb.build()?);
        }
        if let Some(a) = &d.annotations {
            b = b.annotations(a.clone().into_iter().collect::<HashMap<_, _>>());
        }
        Ok(b.build()?)
    }

    /// An OCI image manifest of `config` and `layers`.
    pub fn image_manifest(
        config: &Descriptor,
        layers: &[Descriptor],
    ) -> Result<ImageManifest, WriteError> {
        Ok(ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(config)?)
            .layers(
                layers
                    .iter()
                    .map(descriptor)
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .build()?)
    }

    /// An OCI image index of `manifests`.
    pub fn image_index(manifests: &[Descriptor]) -> Result<ImageIndex, WriteError> {
        Ok(ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(
                manifests
                    .iter()
                    .map(descriptor)
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn indexes_and_manifests_parse_and_select() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D}","size":1,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}},
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D}","size":2,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#
        );
        let Parsed::Index { manifests, .. } = Parsed::parse(index.as_bytes()).expect("parses")
        else {
            panic!("not an index")
        };
        assert_eq!(select(&manifests, Arch::Arm64).map(|d| d.size), Some(2));
        assert!(select(&manifests, Arch::Amd64).is_none());
        assert_eq!(platforms(&manifests), "linux/arm/v7, linux/arm64/v8");

        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D}","size":3}},"layers":[]}}"#
        );
        assert!(matches!(
            Parsed::parse(image.as_bytes()),
            Ok(Parsed::Image { .. })
        ));
        assert!(Parsed::parse(br#"{"schemaVersion":1,"fsLayers":[]}"#).is_err());
        assert!(Parsed::parse(b"not json").is_err());
    }
}
