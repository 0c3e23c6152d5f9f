//! Pulling an image for one architecture into the cache.
//!
//! Owns: resolving a reference to a manifest (through an index for the
//! architecture asked for), downloading the config and layers in parallel,
//! streamed to disk and verified, resuming a cut download with a range request
//! or starting it over, and naming the result in the cache. Also `ensure`, the
//! `--pull=missing|always|never` policy. Must not parse layer contents.

use std::fmt;
use std::str::FromStr;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::BlobResponse;
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};

use super::{Registry, RegistryError};
use crate::image::cache::blob::Digest;
use crate::image::cache::{Cache, CacheError, CachedImage};
use crate::image::oci::{self, Descriptor, Parsed};
use crate::platform::Arch;
use crate::progress::Progress;

/// When to ask the registry (LinuxKit's `--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Use the cache; pull what it lacks.
    Missing,
    /// Always ask the registry (tags may have moved).
    Always,
    /// Never ask: what is not cached is an error.
    Never,
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
        })
    }
}

impl FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            o => Err(format!(
                "unknown pull policy \"{o}\" (missing, always, never)"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(
        "the config {digest} of {image} is {size} bytes, more than the {} Hull reads",
        super::fetch::MAX_MANIFEST_BYTES
    )]
    ConfigTooLarge {
        image: String,
        digest: String,
        size: u64,
    },
    #[error("cannot fetch the manifest of {image} from {url}")]
    ManifestTooLarge {
        image: String,
        url: String,
        #[source]
        source: super::fetch::TooLarge,
    },
    #[error("cannot fetch the manifest of {image} from {url}")]
    Manifest {
        image: String,
        url: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("manifest {digest} of {image} from {url} is not usable")]
    BadManifest {
        image: String,
        digest: String,
        url: String,
        #[source]
        source: oci::ParseError,
    },
    #[error("manifest of {image} from {url} hashes to {actual}, not the {expected} asked for")]
    ManifestDigest {
        image: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{image} has no linux/{arch} image (it has: {available})")]
    NoPlatform {
        image: String,
        arch: Arch,
        available: String,
    },
    #[error("{image} is built for {found}, not {arch}")]
    WrongArch {
        image: String,
        arch: Arch,
        found: String,
    },
    #[error("cannot download blob {digest} of {image} from {url} (after {attempts} attempts)")]
    Blob {
        image: String,
        digest: String,
        url: String,
        attempts: u32,
        #[source]
        source: BlobFault,
    },
    #[error("{image} ({arch}) is not in the cache and --pull=never forbids pulling it")]
    NotCached { image: String, arch: Arch },
}

/// Why one blob download failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobFault {
    #[error(transparent)]
    Registry(#[from] OciDistributionError),
    #[error("the connection broke after {0} bytes")]
    Stream(u64, #[source] std::io::Error),
    #[error(transparent)]
    Verify(#[from] crate::image::cache::blob::BlobError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// More bytes than the descriptor says: stopped at the first one past
    /// it, and not tried again (a registry that does this is not flaky).
    #[error("the registry sent more than the {declared} bytes the descriptor gives: stopped")]
    Oversized { declared: u64 },
}

impl From<crate::image::digest::DigestError> for BlobFault {
    fn from(e: crate::image::digest::DigestError) -> Self {
        BlobFault::Verify(e.into())
    }
}

/// The cache's name for a reference.
pub fn cache_name(reference: &Reference) -> String {
    reference.whole()
}

/// The image for `arch` from the cache, if complete there. A reference
/// pinned by digest is looked up by that digest alone, whatever a name in
/// the cache points at.
pub fn lookup(
    cache: &Cache,
    reference: &Reference,
    arch: Arch,
) -> Result<Option<CachedImage>, CacheError> {
    if reference.digest().is_none() {
        if let Some(top) = cache.resolve(&cache_name(reference))? {
            if let Some(img) = cache.complete_image(&top, arch)? {
                return Ok(Some(img));
            }
        }
    }
    if let Some(d) = reference.digest().and_then(|d| Digest::parse(d).ok()) {
        if cache.has_blob(&d) {
            let bytes = cache.read_blob(&d)?;
            let media_type = Parsed::parse(&bytes)
                .map(|p| p.media_type().to_string())
                .unwrap_or_default();
            let top = Descriptor {
                media_type,
                digest: d.to_string(),
                size: bytes.len() as u64,
                platform: None,
                annotations: None,
            };
            return cache.complete_image(&top, arch);
        }
    }
    Ok(None)
}

/// The image for `arch`, from the cache or the registry as `policy` says.
pub async fn ensure(
    registry: &Registry,
    cache: &Cache,
    reference: &Reference,
    arch: Arch,
    policy: PullPolicy,
    progress: &Progress,
) -> Result<CachedImage, PullError> {
    if policy != PullPolicy::Always {
        if let Some(img) = lookup(cache, reference, arch)? {
            return Ok(img);
        }
        if policy == PullPolicy::Never {
            return Err(PullError::NotCached {
                image: reference.whole(),
                arch,
            });
        }
    }
    pull(registry, cache, reference, arch, progress).await
}

/// Pulls `reference` for `arch` into the cache and names it there.
pub async fn pull(
    registry: &Registry,
    cache: &Cache,
    reference: &Reference,
    arch: Arch,
    progress: &Progress,
) -> Result<CachedImage, PullError> {
    let _writing = cache.writer_lock()?;
    let image = reference.whole();
    progress.step(format!("pulling {image} ({arch})"));
    let auth = registry.login(reference, RegistryOperation::Pull).await?;
    let (_, scheme) = registry.client(reference).await;
    let fetch = |r: Reference| fetch_manifest(registry, cache, scheme, &auth, &image, r);

    let (top, parsed) = fetch(reference.clone()).await?;
    let (manifest, config, layers, from_index) = match parsed {
        Parsed::Index { manifests, .. } => {
            let Some(entry) = oci::select(&manifests, arch) else {
                return Err(PullError::NoPlatform {
                    image,
                    arch,
                    available: oci::platforms(&manifests),
                });
            };
            let child = reference.clone_with_digest(entry.digest.clone());
            let (mut desc, parsed) = fetch(child).await?;
            desc.platform = entry.platform.clone();
            match parsed {
                Parsed::Image { config, layers, .. } => (desc, config, layers, true),
                Parsed::Index { .. } => {
                    return Err(PullError::NoPlatform {
                        image,
                        arch,
                        available: "a nested index, which Hull does not follow".to_string(),
                    })
                }
            }
        }
        Parsed::Image { config, layers, .. } => (top.clone(), config, layers, false),
    };

    // A config is read whole: as a manifest, at most 4 MiB.
    if config.size > super::fetch::MAX_MANIFEST_BYTES as u64 {
        return Err(PullError::ConfigTooLarge {
            image,
            digest: config.digest.clone(),
            size: config.size,
        });
    }
    let blobs: Vec<&Descriptor> = std::iter::once(&config).chain(&layers).collect();
    download_missing(registry, cache, reference, scheme, &auth, &blobs, progress).await?;

    if !from_index {
        let bytes = cache.read_blob(&config.digest().map_err(CacheError::from)?)?;
        if let Some(found) = oci::config_arch(&bytes) {
            if found != arch.oci() {
                return Err(PullError::WrongArch { image, arch, found });
            }
        }
    }
    cache.set_ref(&cache_name(reference), &top)?;
    progress.step(format!("pulled {image} ({arch}) {}", manifest.digest));
    Ok(CachedImage {
        top,
        manifest,
        config,
        layers,
    })
}

/// Downloads the blobs the cache does not have yet, `--jobs` at a time.
async fn download_missing(
    registry: &Registry,
    cache: &Cache,
    reference: &Reference,
    scheme: &str,
    auth: &oci_client::secrets::RegistryAuth,
    blobs: &[&Descriptor],
    progress: &Progress,
) -> Result<(), PullError> {
    let missing: Vec<&Descriptor> = blobs
        .iter()
        .copied()
        .filter(|d| d.digest().map(|d| !cache.has_blob(&d)).unwrap_or(true))
        .collect();
    progress.start_total(missing.iter().map(|d| d.size).sum());
    let results: Vec<Result<(), PullError>> = futures_util::stream::iter(missing)
        .map(|d| download(registry, cache, reference, scheme, auth, d, progress))
        .buffer_unordered(registry.options().jobs.max(1))
        .collect()
        .await;
    progress.finish();
    results.into_iter().collect()
}

/// Fetches, checks and stores one manifest (or index).
async fn fetch_manifest(
    registry: &Registry,
    cache: &Cache,
    scheme: &str,
    auth: &oci_client::secrets::RegistryAuth,
    image: &str,
    r: Reference,
) -> Result<(Descriptor, Parsed), PullError> {
    let tag_or_digest = r.digest().or(r.tag()).unwrap_or("latest");
    let url = format!(
        "{scheme}://{}/v2/{}/manifests/{tag_or_digest}",
        r.resolve_registry(),
        r.repository()
    );
    let token = registry.token(&r, RegistryOperation::Pull).await;
    let bytes = registry
        .retry(|| {
            super::fetch::manifest(
                registry.http(),
                &url,
                token.as_deref(),
                auth,
                oci::MANIFEST_TYPES,
            )
        })
        .await
        .map_err(|source| PullError::Manifest {
            image: image.to_string(),
            url: url.clone(),
            source,
        })?
        .map_err(|source| PullError::ManifestTooLarge {
            image: image.to_string(),
            url: url.clone(),
            source,
        })?;
    let actual = Digest::of(&bytes);
    if let Some(expected) = r.digest() {
        if actual.as_str() != expected {
            return Err(PullError::ManifestDigest {
                image: image.to_string(),
                url,
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    let parsed = Parsed::parse(&bytes).map_err(|source| PullError::BadManifest {
        image: image.to_string(),
        digest: actual.to_string(),
        url,
        source,
    })?;
    cache.put_blob(&actual, &bytes)?;
    let descriptor = Descriptor {
        media_type: parsed.media_type().to_string(),
        digest: actual.to_string(),
        size: bytes.len() as u64,
        platform: None,
        annotations: None,
    };
    Ok((descriptor, parsed))
}

/// One attempt at a blob: from what `writer` already holds (a range
/// request), or from the start when the registry ignores the range.
async fn stream_into(
    client: &oci_client::Client,
    reference: &Reference,
    d: &Descriptor,
    writer: &mut crate::image::cache::blob::BlobWriter,
    task: &crate::progress::Task,
    progress: &Progress,
) -> Result<(), BlobFault> {
    let offset = writer.written();
    let response = client
        .pull_blob_stream_partial(reference, d.digest.as_str(), offset, None)
        .await?;
    let mut stream = match response {
        BlobResponse::Full(s) => {
            if offset > 0 {
                writer.reset()?;
                task.reset();
            }
            s.stream
        }
        BlobResponse::Partial(s) => s.stream,
    };
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| BlobFault::Stream(writer.written(), e))?
    {
        if writer.written() + chunk.len() as u64 > d.size {
            return Err(BlobFault::Oversized { declared: d.size });
        }
        writer.write(&chunk)?;
        task.advance(chunk.len() as u64);
        progress.advance_total(chunk.len() as u64);
    }
    Ok(())
}

/// Downloads one blob into the cache: streamed, verified, resumed with a
/// range request after a cut connection, restarted after a bad digest.
async fn download(
    registry: &Registry,
    cache: &Cache,
    reference: &Reference,
    scheme: &str,
    auth: &oci_client::secrets::RegistryAuth,
    d: &Descriptor,
    progress: &Progress,
) -> Result<(), PullError> {
    let image = reference.whole();
    let url = format!(
        "{scheme}://{}/v2/{}/blobs/{}",
        reference.resolve_registry(),
        reference.repository(),
        d.digest
    );
    let fail = |attempts, source: BlobFault| PullError::Blob {
        image: image.clone(),
        digest: d.digest.clone(),
        url: url.clone(),
        attempts,
        source,
    };
    let digest = d.digest().map_err(|e| fail(0, e.into()))?;
    let (client, _) = registry.client(reference).await;
    let _ = auth;
    let short = &digest.hex()[..12];
    let task = progress.task(short.to_string(), Some(d.size));
    let mut backoff = super::Backoff::new(registry.options());
    let mut writer = cache.blob_writer(&digest).map_err(|e| fail(0, e.into()))?;
    loop {
        backoff.attempt += 1;
        let attempt = backoff.attempt;
        let result = stream_into(&client, reference, d, &mut writer, &task, progress).await;
        let retry_ok = match &result {
            Ok(()) => {
                // Complete: verify and publish, or start over on a bad digest.
                match writer.commit(Some(d.size)) {
                    Ok(()) => {
                        task.done("done");
                        return Ok(());
                    }
                    Err(e) => {
                        if backoff.exhausted() {
                            return Err(fail(attempt, e.into()));
                        }
                        task.note(&format!("{e}; downloading again"));
                        writer = cache
                            .blob_writer(&digest)
                            .map_err(|e| fail(attempt, e.into()))?;
                        task.reset();
                        true
                    }
                }
            }
            Err(BlobFault::Registry(e)) => super::retryable(e),
            Err(BlobFault::Stream(..)) => true,
            Err(_) => false,
        };
        match result {
            Ok(()) => {}
            Err(e) if !retry_ok || backoff.exhausted() => return Err(fail(attempt, e)),
            Err(e) => task.note(&format!("{e}; retrying")),
        }
        backoff.pause().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::oci;

    /// Puts a one-layer amd64 image in the cache; returns its manifest's descriptor.
    fn image(cache: &Cache, content: &[u8]) -> Descriptor {
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::OCI_MANIFEST,
            "config": Descriptor::of(oci::OCI_CONFIG, &config),
            "layers": [Descriptor::of(oci::OCI_LAYER_TAR, content)],
        }))
        .expect("json");
        for b in [content, &config[..], &manifest[..]] {
            cache.put_blob(&Digest::of(b), b).expect("put");
        }
        Descriptor::of(oci::OCI_MANIFEST, &manifest)
    }

    #[test]
    fn a_pinned_reference_is_looked_up_by_its_digest_not_by_its_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = Cache::open(dir.path()).expect("open");
        let one = image(&cache, b"one");
        let two = image(&cache, b"two");
        // A cache (an older Hull's, or one edited by hand) whose pinned
        // name points at other content.
        let pinned = format!("example.org/pin/app@{}", one.digest);
        cache.set_ref(&pinned, &two).expect("set");
        let reference: Reference = pinned.parse().expect("reference");
        let found = lookup(&cache, &reference, Arch::Amd64)
            .expect("reads")
            .expect("found by digest");
        assert_eq!(found.manifest.digest, one.digest);
        // A tag is looked up by name.
        cache.set_ref("example.org/pin/app:t", &two).expect("set");
        let tagged: Reference = "example.org/pin/app:t".parse().expect("reference");
        let found = lookup(&cache, &tagged, Arch::Amd64)
            .expect("reads")
            .expect("found by name");
        assert_eq!(found.manifest.digest, two.digest);
    }
}
