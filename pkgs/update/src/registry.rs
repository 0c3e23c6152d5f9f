//! Fetching an update bundle from an OCI registry: its manifest by tag or
//! digest, and its blobs into files, resumed where a download stopped and
//! checked against their digests before anyone uses them.
//!
//! Written over `ureq` (blocking HTTP with rustls) rather than with
//! `oci-client`: that crate brings tokio, reqwest and aws-lc into a static
//! binary the device runs, for the three requests this needs (a manifest, a
//! blob with a `Range`, a bearer token). Authentication follows the
//! registry's challenge: Basic, or a Bearer token from its realm, with the
//! credentials of `--auth FILE` (`user:password`) when given.
//!
//! Owns: references, HTTP, authentication, digests. Must not touch disks or
//! the ESP (`install`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest as _;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("\"{0}\" is not a reference (HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST])")]
    Reference(String),
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{what} {digest} from {url}: its sha256 is {actual}: refused")]
    Digest {
        what: &'static str,
        digest: String,
        url: String,
        actual: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// `HOST[:PORT]/REPOSITORY` with a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub host: String,
    pub repository: String,
    /// A tag, or `sha256:HEX`.
    pub reference: String,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, RegistryError> {
        let bad = || RegistryError::Reference(text.to_string());
        let (host, rest) = text.split_once('/').ok_or_else(bad)?;
        let (repository, reference) = match rest.split_once('@') {
            Some((r, d)) if d.starts_with("sha256:") && d.len() == 71 => (r, d.to_string()),
            Some(_) => return Err(bad()),
            None => match rest.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r, t.to_string()),
                _ => (rest, "latest".to_string()),
            },
        };
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c))
        };
        if !ok(host) || !ok(repository) || !ok(&reference) {
            return Err(bad());
        }
        Ok(Reference {
            host: host.to_string(),
            repository: repository.to_string(),
            reference,
        })
    }

    /// True when pinned by digest.
    pub fn pinned(&self) -> Option<&str> {
        self.reference
            .starts_with("sha256:")
            .then_some(self.reference.as_str())
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.pinned().is_some() { '@' } else { ':' };
        write!(
            f,
            "{}/{}{sep}{}",
            self.host, self.repository, self.reference
        )
    }
}

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// PEM certificates to trust instead of the built-in web roots.
    pub ca: Option<PathBuf>,
    /// `user:password` for the registry.
    pub auth: Option<PathBuf>,
    /// Talk plain HTTP (a registry on a trusted local network only).
    pub plain_http: bool,
}

/// A registry client for one reference's repository.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    credentials: Option<(String, String)>,
    /// The `Authorization` header the last challenge asked for.
    authorization: Option<String>,
}

fn http_err(url: &str) -> impl Fn(ureq::Error) -> RegistryError + '_ {
    move |e| RegistryError::Http {
        url: url.to_string(),
        message: e.to_string(),
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The manifest media types asked for.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";

impl Client {
    pub fn new(r: &Reference, o: &Options) -> Result<Client, RegistryError> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &o.ca {
            let pem = std::fs::read(ca).map_err(io_err(ca))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(RegistryError::Config(format!(
                    "{}: no PEM certificate",
                    ca.display()
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .tls_config(tls.build())
            .build()
            .into();
        let credentials = match &o.auth {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(io_err(path))?;
                let (user, password) = text.trim().split_once(':').ok_or_else(|| {
                    RegistryError::Config(format!("{}: not USER:PASSWORD", path.display()))
                })?;
                Some((user.to_string(), password.to_string()))
            }
        };
        let scheme = if o.plain_http { "http" } else { "https" };
        Ok(Client {
            agent,
            base: format!("{scheme}://{}/v2/{}", r.host, r.repository),
            credentials,
            authorization: None,
        })
    }

    /// GET `url` with `headers`, answering one authentication challenge.
    fn get(
        &mut self,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        for _ in 0..2 {
            let mut req = self.agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            if let Some(a) = &self.authorization {
                req = req.header("Authorization", a.as_str());
            }
            let resp = req.call().map_err(http_err(url))?;
            if resp.status().as_u16() != 401 || self.authorization.is_some() {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            self.authorization = Some(self.answer(&challenge, url)?);
        }
        Err(RegistryError::Http {
            url: url.to_string(),
            message: "authentication refused".into(),
        })
    }

    /// The `Authorization` header for a challenge.
    fn answer(&self, challenge: &str, url: &str) -> Result<String, RegistryError> {
        use base64::Engine as _;
        let basic = self.credentials.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        if challenge.to_ascii_lowercase().starts_with("basic") {
            return basic.ok_or_else(|| RegistryError::Http {
                url: url.to_string(),
                message: "the registry asks for credentials: give --auth FILE".into(),
            });
        }
        let param = |name: &str| {
            challenge.split(',').find_map(|p| {
                let p = p.trim().trim_start_matches("Bearer ").trim();
                let (k, v) = p.split_once('=')?;
                (k == name).then(|| v.trim_matches('"').to_string())
            })
        };
        let realm = param("realm").ok_or_else(|| RegistryError::Http {
            url: url.to_string(),
            message: format!("an authentication challenge without a realm: {challenge}"),
        })?;
        let mut token_url = format!("{realm}?");
        for key in ["service", "scope"] {
            if let Some(v) = param(key) {
                token_url.push_str(&format!("{key}={}&", v.replace(' ', "%20")));
            }
        }
        let mut req = self.agent.get(&token_url);
        if let Some(b) = &basic {
            req = req.header("Authorization", b.as_str());
        }
        let mut resp = req.call().map_err(http_err(&token_url))?;
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(http_err(&token_url))?;
        if !resp.status().is_success() {
            return Err(RegistryError::Status {
                url: token_url,
                status: resp.status().as_u16(),
                body,
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_str(&body).map_err(|e| RegistryError::Http {
            url: token_url.clone(),
            message: format!("not a token: {e}"),
        })?;
        let token = t.token.or(t.access_token).ok_or(RegistryError::Http {
            url: token_url,
            message: "no token in the answer".into(),
        })?;
        Ok(format!("Bearer {token}"))
    }

    /// The manifest of `r` and its digest, checked against the pin.
    pub fn manifest(&mut self, r: &Reference) -> Result<(Vec<u8>, String), RegistryError> {
        let url = format!("{}/manifests/{}", self.base, r.reference);
        let mut resp = self.get(&url, &[("Accept", ACCEPT.to_string())])?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(4 << 20)
            .read_to_vec()
            .map_err(http_err(&url))?;
        if status != 200 {
            return Err(RegistryError::Status {
                url,
                status,
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        let digest = format!("sha256:{}", hex(&sha2::Sha256::digest(&body)));
        if let Some(pin) = r.pinned() {
            if pin != digest {
                return Err(RegistryError::Digest {
                    what: "manifest",
                    digest: pin.to_string(),
                    url,
                    actual: digest,
                });
            }
        }
        Ok((body, digest))
    }

    /// Downloads blob `digest` (`size` bytes) to `dest`, resuming a partial
    /// `dest.partial` left by an earlier try, and checks its digest: a blob
    /// whose bytes do not match is deleted and refused.
    pub fn blob(&mut self, digest: &str, size: u64, dest: &Path) -> Result<(), RegistryError> {
        let url = format!("{}/blobs/{digest}", self.base);
        let partial = dest.with_extension("partial");
        let mut have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have > size {
            std::fs::remove_file(&partial).map_err(io_err(&partial))?;
            have = 0;
        }
        if have < size {
            let range = [("Range", format!("bytes={have}-"))];
            let headers: &[(&str, String)] = if have > 0 { &range } else { &[] };
            let mut resp = self.get(&url, headers)?;
            let status = resp.status().as_u16();
            let append = match status {
                206 => true,
                200 => false,
                _ => {
                    let body = resp.body_mut().read_to_string().unwrap_or_default();
                    return Err(RegistryError::Status {
                        url,
                        status,
                        body: body.chars().take(300).collect(),
                    });
                }
            };
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(append)
                .write(true)
                .truncate(!append)
                .open(&partial)
                .map_err(io_err(&partial))?;
            let mut body = resp.body_mut().with_config().limit(size).reader();
            std::io::copy(&mut body, &mut out).map_err(io_err(&partial))?;
            out.sync_all().map_err(io_err(&partial))?;
        }
        let actual = file_sha256(&partial)?;
        if actual != digest {
            let _ = std::fs::remove_file(&partial);
            return Err(RegistryError::Digest {
                what: "blob",
                digest: digest.to_string(),
                url,
                actual,
            });
        }
        std::fs::rename(&partial, dest).map_err(io_err(dest))
    }
}

/// `sha256:HEX` of the file at `path`.
pub fn file_sha256(path: &Path) -> Result<String, RegistryError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.write_all(&buf[..n]).map_err(io_err(path))?;
    }
    Ok(format!("sha256:{}", hex(&h.finalize())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_have_a_host_a_repository_and_a_tag_or_digest() {
        let r = Reference::parse("10.0.2.2:5000/app/update:2").expect("valid");
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.reference.as_str()),
            ("10.0.2.2:5000", "app/update", "2")
        );
        assert_eq!(r.pinned(), None);
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("reg.example/app@{d}")).expect("valid");
        assert_eq!(r.pinned(), Some(d.as_str()));
        assert_eq!(r.to_string(), format!("reg.example/app@{d}"));
        assert_eq!(
            Reference::parse("reg.example/app")
                .expect("valid")
                .reference,
            "latest"
        );
        assert!(Reference::parse("app").is_err());
        assert!(Reference::parse("reg/app@sha256:short").is_err());
        assert!(Reference::parse("reg/app:ta g").is_err());
    }
}
