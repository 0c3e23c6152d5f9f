//! Manifests and indexes fetched as a bounded stream.
//!
//! `oci-client` reads a manifest response whole, however long it is, so a
//! registry that answers with an endless body takes all of the memory. Hull
//! fetches manifests itself: the token its login got for the repository, one GET
//! with the accepted media types, and the body read chunk by chunk up to
//! [`MAX_MANIFEST_BYTES`] (the limit containerd and distribution use), a
//! larger `Content-Length` refused before any of it is read. Errors are the
//! client's own kinds, so retrying and messages stay as for the rest of the
//! registry traffic. Owns: that request. Must not parse what it fetches:
//! that is `pull`.

use bytes::Bytes;
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;

/// The largest manifest, index or image config Hull reads (4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// How much of an error response is kept for the message.
const MAX_ERROR_BYTES: usize = 4 << 10;

/// A body longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the registry sent more than {limit} bytes (the most Hull reads for a manifest): refused")]
pub struct TooLarge {
    pub limit: usize,
}

/// Reads at most `limit` bytes of `response`'s body; `Err(TooLarge)` as
/// soon as it is longer.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Result<Bytes, TooLarge>, OciDistributionError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(Err(TooLarge { limit }));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(Err(TooLarge { limit }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Ok(Bytes::from(body)))
}

/// The start of an error response's body, as text.
async fn excerpt(response: reqwest::Response) -> String {
    let mut text = String::new();
    let mut response = response;
    while let Ok(Some(chunk)) = response.chunk().await {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.len() >= MAX_ERROR_BYTES {
            let mut end = MAX_ERROR_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            break;
        }
    }
    text.trim().to_string()
}

/// GETs the manifest at `url`, bounded, with the login's bearer `token` or
/// else `auth`'s basic credentials; the inner error when it is too large
/// (not worth another try), the outer one for everything the registry or
/// the connection does wrong.
pub async fn manifest(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    auth: &RegistryAuth,
    accept: &[&str],
) -> Result<Result<Bytes, TooLarge>, OciDistributionError> {
    let mut request = http.get(url).header("Accept", accept.join(", "));
    request = match (token, auth) {
        (Some(token), _) => request.bearer_auth(token),
        (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
        (None, _) => request,
    };
    let response = request.send().await?;
    let code = response.status().as_u16();
    match code {
        200..=299 => read_capped(response, MAX_MANIFEST_BYTES).await,
        401 | 403 => Err(OciDistributionError::UnauthorizedError {
            url: url.to_string(),
        }),
        404 => Err(OciDistributionError::ImageManifestNotFoundError(format!(
            "{url}: {}",
            excerpt(response).await
        ))),
        _ => Err(OciDistributionError::ServerError {
            code,
            url: url.to_string(),
            message: excerpt(response).await,
        }),
    }
}
