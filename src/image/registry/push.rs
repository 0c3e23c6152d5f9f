//! Pushing a cached image or index to a registry.
//!
//! Owns: uploading what the registry lacks — each blob checked with HEAD
//! first, mounted from the source repository when both live on the same
//! registry, streamed from the cache otherwise — then the manifests, children
//! before the index. Must not change the cache.

use futures_util::StreamExt;
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};

use super::{Registry, RegistryError};
use crate::image::cache::blob::Digest;
use crate::image::cache::{Cache, CacheError};
use crate::image::oci::{Descriptor, Parsed};
use crate::progress::Progress;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{0} is not in the cache (hull cache pull it first)")]
    NotCached(String),
    #[error("cannot push {image}: manifest {digest} ({platform}) is in neither the cache nor {target}; pull it for that architecture first")]
    Incomplete {
        image: String,
        digest: String,
        platform: String,
        target: String,
    },
    #[error("cannot push {what} {digest} to {url}")]
    Upload {
        what: &'static str,
        digest: String,
        url: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("cannot read blob {digest} from the cache")]
    Read {
        digest: String,
        #[source]
        source: std::io::Error,
    },
}

/// Pushes the cached image `source` (a cache name) to `target`. Returns the
/// digest of the pushed top-level manifest or index.
pub async fn push(
    registry: &Registry,
    cache: &Cache,
    source: &str,
    target: &Reference,
    progress: &Progress,
) -> Result<String, PushError> {
    let top = cache
        .resolve(source)?
        .ok_or_else(|| PushError::NotCached(source.to_string()))?;
    let from: Option<Reference> = source.parse().ok();
    registry.login(target, RegistryOperation::Push).await?;
    let (client, scheme) = registry.client(target).await;
    let base = format!(
        "{scheme}://{}/v2/{}",
        target.resolve_registry(),
        target.repository()
    );
    progress.step(format!("pushing {source} to {}", target.whole()));

    let top_digest = top.digest().map_err(CacheError::from)?;
    let manifests = manifests_to_push(registry, cache, &client, source, &top, target).await?;
    for m in &manifests {
        let digest = m.digest().map_err(CacheError::from)?;
        let Parsed::Image { config, layers, .. } = cache.manifest(&digest)? else {
            continue;
        };
        let blobs: Vec<Descriptor> = std::iter::once(config).chain(layers).collect();
        let results: Vec<Result<(), PushError>> = futures_util::stream::iter(blobs)
            .map(|b| upload_blob(registry, cache, target, from.as_ref(), &base, b, progress))
            .buffer_unordered(registry.options().jobs.max(1))
            .collect()
            .await;
        for r in results {
            r?;
        }
        if m.digest != top.digest {
            let bytes = cache.read_blob(&digest)?;
            push_manifest(registry, target, &m.digest, &m.media_type, bytes, &base).await?;
        }
    }
    let bytes = cache.read_blob(&top_digest)?;
    let tag_or_digest = target
        .tag()
        .map(str::to_string)
        .unwrap_or(top.digest.clone());
    push_manifest(
        registry,
        target,
        &tag_or_digest,
        &top.media_type,
        bytes,
        &base,
    )
    .await?;
    progress.step(format!("pushed {} {}", target.whole(), top.digest));
    Ok(top.digest)
}

/// The image manifests to push: the top one, or the index's children. A
/// child the cache lacks must already be in the target repository.
async fn manifests_to_push(
    registry: &Registry,
    cache: &Cache,
    client: &oci_client::Client,
    source: &str,
    top: &Descriptor,
    target: &Reference,
) -> Result<Vec<Descriptor>, PushError> {
    let top_digest = top.digest().map_err(CacheError::from)?;
    let Parsed::Index {
        manifests: children,
        ..
    } = cache.manifest(&top_digest)?
    else {
        return Ok(vec![top.clone()]);
    };
    let mut manifests = Vec::new();
    for child in children {
        let d = child.digest().map_err(CacheError::from)?;
        if cache.has_blob(&d) {
            manifests.push(child);
            continue;
        }
        let probe = target.clone_with_digest(child.digest.clone());
        let auth = registry_auth(registry, target).await?;
        if client.fetch_manifest_digest(&probe, &auth).await.is_err() {
            let platform = child.platform.as_ref().map_or_else(
                || "no platform".to_string(),
                |p| format!("{}/{}", p.os, p.architecture),
            );
            return Err(PushError::Incomplete {
                image: source.to_string(),
                digest: child.digest,
                platform,
                target: target.whole(),
            });
        }
    }
    Ok(manifests)
}

async fn registry_auth(
    registry: &Registry,
    target: &Reference,
) -> Result<oci_client::secrets::RegistryAuth, PushError> {
    Ok(registry.login(target, RegistryOperation::Push).await?)
}

async fn push_manifest(
    registry: &Registry,
    target: &Reference,
    tag_or_digest: &str,
    media_type: &str,
    bytes: Vec<u8>,
    base: &str,
) -> Result<(), PushError> {
    let (client, _) = registry.client(target).await;
    let dest = if tag_or_digest.starts_with("sha256:") {
        target.clone_with_digest(tag_or_digest.to_string())
    } else {
        Reference::with_tag(
            target.registry().to_string(),
            target.repository().to_string(),
            tag_or_digest.to_string(),
        )
    };
    let content_type = reqwest::header::HeaderValue::from_str(media_type).unwrap_or_else(|_| {
        reqwest::header::HeaderValue::from_static(crate::image::oci::OCI_MANIFEST)
    });
    let body = bytes::Bytes::from(bytes);
    registry
        .retry(|| client.push_manifest_raw(&dest, body.clone(), content_type.clone()))
        .await
        .map_err(|source| PushError::Upload {
            what: "manifest",
            digest: tag_or_digest.to_string(),
            url: format!("{base}/manifests/{tag_or_digest}"),
            source,
        })?;
    Ok(())
}

async fn upload_blob(
    registry: &Registry,
    cache: &Cache,
    target: &Reference,
    from: Option<&Reference>,
    base: &str,
    blob: Descriptor,
    progress: &Progress,
) -> Result<(), PushError> {
    let (client, _) = registry.client(target).await;
    let digest: Digest = blob.digest().map_err(CacheError::from)?;
    let url = format!("{base}/blobs/{digest}");
    let err = |source| PushError::Upload {
        what: "blob",
        digest: digest.to_string(),
        url: url.clone(),
        source,
    };
    if registry
        .retry(|| client.blob_exists(target, digest.as_str()))
        .await
        .map_err(err)?
    {
        return Ok(());
    }
    if let Some(src) = from {
        let same_registry = src.resolve_registry() == target.resolve_registry()
            && src.repository() != target.repository();
        if same_registry
            && client
                .mount_blob(target, src, digest.as_str())
                .await
                .is_ok()
            && client
                .blob_exists(target, digest.as_str())
                .await
                .unwrap_or(false)
        {
            progress.step(format!(
                "  mounted {} from {}",
                &digest.hex()[..12],
                src.repository()
            ));
            return Ok(());
        }
    }
    let task = progress.task(digest.hex()[..12].to_string(), Some(blob.size));
    let path = cache.blob_path(&digest);
    registry
        .retry(|| async {
            let file = tokio::fs::File::open(&path).await?;
            let stream = tokio_util_stream(file);
            client
                .push_blob_stream(target, stream, digest.as_str(), Some(blob.size))
                .await
        })
        .await
        .map_err(err)?;
    task.done("pushed");
    Ok(())
}

/// A file as a stream of chunks, for streaming uploads.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e.into()), None)),
        }
    })
}
