//! Registry credentials from Docker's `config.json`.
//!
//! Owns: finding the credentials for a registry host in `$DOCKER_CONFIG/config.json`
//! (or `~/.docker/config.json`): `auths` entries (`auth` base64 or
//! `username`/`password`, `identitytoken`), per-host `credHelpers` and the default
//! `credsStore`, run as `docker-credential-NAME get`. Must not make HTTP requests:
//! the client does the token exchange.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the Docker config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Docker config {path} is not valid JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: the auth entry for {host} is not base64 of user:password")]
    BadAuth { path: PathBuf, host: String },
    #[error("credential helper docker-credential-{helper} failed for {host}: {message}")]
    Helper {
        helper: String,
        host: String,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(rename = "identitytoken", default)]
    identity_token: Option<String>,
}

/// The realm of a `Bearer` challenge (`WWW-Authenticate: Bearer
/// realm="https://auth.example/token",service="..."`).
pub fn bearer_realm(challenge: &str) -> Option<String> {
    let rest = challenge.trim().strip_prefix("Bearer")?.trim_start();
    rest.split(',').find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("realm")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// The Docker config file Hull reads.
pub fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The names a registry host goes by in config.json.
fn host_keys(host: &str) -> Vec<String> {
    let mut keys = vec![host.to_string()];
    if matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        keys.extend(
            [
                "https://index.docker.io/v1/",
                "index.docker.io",
                "docker.io",
                "registry-1.docker.io",
            ]
            .map(String::from),
        );
    }
    keys
}

/// Strips a scheme and path: `https://host:5000/v1/` → `host:5000`.
fn bare(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// The credentials for `host` (as written in image references), anonymous if none.
pub fn credentials(host: &str) -> Result<RegistryAuth, AuthError> {
    match config_path() {
        Some(path) if path.exists() => credentials_from(&path, host),
        _ => Ok(RegistryAuth::Anonymous),
    }
}

/// As [`credentials`], from a given config file.
pub fn credentials_from(path: &Path, host: &str) -> Result<RegistryAuth, AuthError> {
    lookup(path, host, &|name| PathBuf::from(name))
}

/// `program` maps a helper's program name to what is run (tests point it at a dir).
fn lookup(
    path: &Path,
    host: &str,
    program: &dyn Fn(&str) -> PathBuf,
) -> Result<RegistryAuth, AuthError> {
    let text = std::fs::read(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config: DockerConfig =
        serde_json::from_slice(&text).map_err(|source| AuthError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    let keys = host_keys(host);
    let helper = keys
        .iter()
        .find_map(|k| config.cred_helpers.get(k))
        .or(config.creds_store.as_ref());
    let entry = config
        .auths
        .iter()
        .find(|(k, _)| keys.iter().any(|h| h == *k || h == bare(k)))
        .map(|(_, e)| e);
    if let Some(e) = entry {
        if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            return match decoded.as_deref().and_then(|s| s.split_once(':')) {
                Some((u, p)) => Ok(RegistryAuth::Basic(u.to_string(), p.to_string())),
                None => Err(AuthError::BadAuth {
                    path: path.to_path_buf(),
                    host: host.to_string(),
                }),
            };
        }
        if let (Some(u), Some(p)) = (&e.username, &e.password) {
            return Ok(RegistryAuth::Basic(u.clone(), p.clone()));
        }
        if let Some(t) = &e.identity_token {
            return Ok(RegistryAuth::Bearer(t.clone()));
        }
    }
    match helper {
        Some(h) => run_helper(&program(&format!("docker-credential-{h}")), h, host),
        None => Ok(RegistryAuth::Anonymous),
    }
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Runs `docker-credential-HELPER get` with the host on stdin.
fn run_helper(program: &Path, helper: &str, host: &str) -> Result<RegistryAuth, AuthError> {
    let fail = |message: String| AuthError::Helper {
        helper: helper.to_string(),
        host: host.to_string(),
        message,
    };
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(host.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // Helpers say this when they hold nothing for the host: go anonymous.
        if text.contains("credentials not found") {
            return Ok(RegistryAuth::Anonymous);
        }
        return Err(fail(format!("{}: {text}", out.status)));
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("bad answer: {e}")))?;
    if answer.username == "<token>" {
        Ok(RegistryAuth::Bearer(answer.secret))
    } else {
        Ok(RegistryAuth::Basic(answer.username, answer.secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, json).expect("write");
        p
    }

    #[test]
    fn bearer_realms_are_read_from_challenges() {
        assert_eq!(
            bearer_realm(r#"Bearer realm="https://auth.example/token",service="reg""#).as_deref(),
            Some("https://auth.example/token")
        );
        assert_eq!(
            bearer_realm(r#"Bearer service="reg", realm="http://10.0.0.9/t""#).as_deref(),
            Some("http://10.0.0.9/t")
        );
        assert_eq!(bearer_realm(r#"Basic realm="Registry""#), None);
    }

    #[test]
    fn auths_entries_in_their_forms() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = write(
            dir.path(),
            r#"{"auths":{
                "127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"},
                "https://index.docker.io/v1/":{"username":"hub","password":"secret"},
                "https://reg.example.org/v2/":{"identitytoken":"tok"}}}"#,
        );
        assert!(matches!(credentials_from(&p, "127.0.0.1:5000"),
            Ok(RegistryAuth::Basic(u, pw)) if u == "user" && pw == "pass"));
        assert!(matches!(credentials_from(&p, "docker.io"),
            Ok(RegistryAuth::Basic(u, _)) if u == "hub"));
        assert!(matches!(credentials_from(&p, "reg.example.org"),
            Ok(RegistryAuth::Bearer(t)) if t == "tok"));
        assert!(matches!(
            credentials_from(&p, "other.example.org"),
            Ok(RegistryAuth::Anonymous)
        ));
    }

    #[test]
    fn credential_helpers_are_run() {
        let dir = tempfile::tempdir().expect("tmp");
        let helper = dir.path().join("docker-credential-hulltest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread host\n[ \"$1\" = get ] || exit 3\n\
             if [ \"$host\" = reg.example.org ]; then echo '{\"ServerURL\":\"x\",\"Username\":\"u\",\"Secret\":\"s\"}'; \
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .expect("write helper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let p = write(
            dir.path(),
            r#"{"credHelpers":{"reg.example.org":"hulltest"},"credsStore":"hulltest"}"#,
        );
        let in_dir = |name: &str| dir.path().join(name);
        let found = lookup(&p, "reg.example.org", &in_dir);
        let missing = lookup(&p, "other.example.org", &in_dir);
        assert!(matches!(found, Ok(RegistryAuth::Basic(u, s)) if u == "u" && s == "s"));
        assert!(matches!(missing, Ok(RegistryAuth::Anonymous)));
    }
}
