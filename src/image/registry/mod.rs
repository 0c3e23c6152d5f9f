//! Talking to OCI registries: pull into the cache, push from it.
//!
//! Owns: one `oci-client` client per registry host (HTTPS, or plain HTTP for
//! loopback and `--insecure-registry` hosts that do not speak TLS), credentials,
//! extra CA certificates, and retrying with backoff. Must not write the cache
//! layout itself: it goes through `cache`.

pub mod auth;
pub mod fetch;
pub mod pull;
pub mod push;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::sync::Mutex;

/// The async runtime registry operations run on (network I/O and hashing
/// overlap on four workers). Made once per command.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
}

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts (`host[:port]`) reached over plain HTTP when they do not speak TLS.
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM files) to trust.
    pub ca_certs: Vec<PathBuf>,
    /// Blobs transferred at once.
    pub jobs: usize,
    /// Attempts for each request before giving up.
    pub attempts: u32,
    /// First retry delay; doubles each time.
    pub backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: Vec::new(),
            ca_certs: Vec::new(),
            jobs: 4,
            attempts: 5,
            backoff: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read CA certificate {path}")]
    Ca {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("cannot set up HTTP: {0}")]
    Http(String),
    #[error("{reference}: the registry's token service {realm} is plain HTTP on another machine: credentials are not sent there (use HTTPS, or name its host with --insecure-registry)")]
    PlainTokenRealm { reference: String, realm: String },
    #[error("{what} {reference}: {url}")]
    Request {
        what: &'static str,
        reference: String,
        url: String,
        #[source]
        source: OciDistributionError,
    },
}

/// What a login is for: host, repository, and whether to push.
fn token_key(reference: &Reference, op: RegistryOperation) -> (String, String, bool) {
    (
        reference.resolve_registry().to_string(),
        reference.repository().to_string(),
        matches!(op, RegistryOperation::Push),
    )
}

/// Whether `host[:port]` is this machine (plain HTTP is allowed there).
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Connections to registries for one command.
pub struct Registry {
    options: Options,
    certs: Vec<Certificate>,
    /// For the requests Hull makes itself (bounded manifest fetches).
    http: reqwest::Client,
    clients: Mutex<HashMap<String, (Arc<Client>, &'static str)>>,
    /// Per (host, repository, push): logged in, with the bearer token the
    /// registry's token service gave, if any.
    tokens: Mutex<HashMap<(String, String, bool), Option<String>>>,
}

impl Registry {
    pub fn new(options: Options) -> Result<Self, RegistryError> {
        let mut certs = Vec::new();
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60));
        for path in &options.ca_certs {
            let ca = |source| RegistryError::Ca {
                path: path.clone(),
                source,
            };
            let data = std::fs::read(path).map_err(ca)?;
            let cert =
                reqwest::Certificate::from_pem(&data).map_err(|e| ca(std::io::Error::other(e)))?;
            http = http.add_root_certificate(cert);
            certs.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let http = http
            .build()
            .map_err(|e| RegistryError::Http(e.to_string()))?;
        Ok(Registry {
            options,
            certs,
            http,
            clients: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The HTTP client for Hull's own requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn config(&self, protocol: ClientProtocol) -> ClientConfig {
        ClientConfig {
            protocol,
            extra_root_certificates: self.certs.clone(),
            max_concurrent_download: self.options.jobs.max(1),
            max_concurrent_upload: self.options.jobs.max(1),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            ..ClientConfig::default()
        }
    }

    /// The client for the registry of `reference`, and its scheme.
    pub async fn client(&self, reference: &Reference) -> (Arc<Client>, &'static str) {
        let host = reference.resolve_registry().to_string();
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&host) {
            return c.clone();
        }
        let plain_ok = is_loopback(&host) || self.options.insecure.iter().any(|h| h == &host);
        let scheme = if plain_ok && !self.speaks_tls(&host).await {
            "http"
        } else {
            "https"
        };
        let protocol = if scheme == "http" {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let client = (Arc::new(Client::new(self.config(protocol))), scheme);
        clients.insert(host, client.clone());
        client
    }

    /// Whether `host` speaks TLS at all (any HTTP status counts). The probe
    /// accepts any certificate: it only chooses the scheme, and the real client
    /// then verifies the certificate and says so if it is not trusted.
    async fn speaks_tls(&self, host: &str) -> bool {
        let builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .danger_accept_invalid_certs(true);
        match builder.build() {
            Ok(client) => client
                .get(format!("https://{host}/v2/"))
                .send()
                .await
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Refuses credentials for a registry whose token service (the realm of
    /// its `Bearer` challenge) is plain HTTP on another machine: they would
    /// cross the network in clear. Loopback realms and hosts named with
    /// `--insecure-registry` are allowed, as for registries.
    async fn check_token_realm(
        &self,
        url: &str,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        // A registry that cannot be reached fails in the login itself.
        let Ok(response) = self.http.get(url).send().await else {
            return Ok(());
        };
        let realm = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(auth::bearer_realm);
        let Some(realm) = realm else { return Ok(()) };
        let Ok(parsed) = reqwest::Url::parse(&realm) else {
            return Ok(());
        };
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => String::new(),
        };
        let allowed = is_loopback(&host) || self.options.insecure.iter().any(|h| h == &host);
        if parsed.scheme() == "http" && !allowed {
            return Err(RegistryError::PlainTokenRealm {
                reference: reference.whole(),
                realm,
            });
        }
        Ok(())
    }

    /// Authenticates for `op` on the repository of `reference`, once per command.
    pub async fn login(
        &self,
        reference: &Reference,
        op: RegistryOperation,
    ) -> Result<RegistryAuth, RegistryError> {
        let auth = auth::credentials(reference.registry())?;
        let key = token_key(reference, op);
        if self.tokens.lock().await.contains_key(&key) {
            return Ok(auth);
        }
        let host = &key.0;
        let (client, scheme) = self.client(reference).await;
        let url = format!("{scheme}://{host}/v2/");
        if !matches!(auth, RegistryAuth::Anonymous) {
            self.check_token_realm(&url, reference).await?;
        }
        let token = self
            .retry(|| client.auth(reference, &auth, op))
            .await
            .map_err(|source| RegistryError::Request {
                what: "cannot log in to the registry for",
                reference: reference.whole(),
                url,
                source,
            })?;
        self.tokens.lock().await.insert(key, token);
        Ok(auth)
    }

    /// The bearer token `login` got for `op` on the repository of
    /// `reference`, if the registry gave one.
    pub async fn token(&self, reference: &Reference, op: RegistryOperation) -> Option<String> {
        self.tokens
            .lock()
            .await
            .get(&token_key(reference, op))
            .cloned()
            .flatten()
    }

    /// Runs `f` until it succeeds, it fails in a way retrying cannot fix, or
    /// the attempts run out; waits `backoff`, doubling, between attempts.
    pub async fn retry<T, F, Fut>(&self, mut f: F) -> Result<T, OciDistributionError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        let mut backoff = Backoff::new(&self.options);
        loop {
            backoff.attempt += 1;
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if !backoff.exhausted() && retryable(&e) => backoff.pause().await,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Attempts counted against `Options::attempts`, with waits between them
/// starting at `Options::backoff` and doubling up to 10 s: the one retry
/// schedule of every registry request and blob download.
pub struct Backoff {
    /// Attempts made so far.
    pub attempt: u32,
    attempts: u32,
    delay: Duration,
}

impl Backoff {
    pub fn new(o: &Options) -> Self {
        Backoff {
            attempt: 0,
            attempts: o.attempts.max(1),
            delay: o.backoff,
        }
    }

    /// True when no attempt is left after the current one.
    pub fn exhausted(&self) -> bool {
        self.attempt >= self.attempts
    }

    /// Waits before the next attempt.
    pub async fn pause(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(10));
    }
}

/// Connection trouble, server errors and rate limits are worth another try;
/// a registry's considered "no" (unknown manifest, unauthorized) is not.
pub fn retryable(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::DigestError(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "example.org:443",
            "[2001:db8::1]:5000",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
