//! Image registry credentials handed to providers: parsed from the Secrets a pod
//! names in `spec.imagePullSecrets`, and matched to image references.
//!
//! Pure: no API access here. The pod controller reads the Secrets (through the
//! cached object source) and calls [`RegistryCredential::from_secret`]; a
//! provider that pulls images calls [`RegistryCredential::for_image`].

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;

/// Secret type of a `~/.docker/config.json`-style pull secret.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Data key of a [`DOCKER_CONFIG_JSON_TYPE`] Secret.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// Secret type of a legacy `~/.dockercfg`-style pull secret.
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
/// Data key of a [`DOCKERCFG_TYPE`] Secret.
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// The registry host an image without one is pulled from.
const DOCKER_HUB: &str = "docker.io";
/// Hosts that all mean Docker Hub in a registry key.
const DOCKER_HUB_ALIASES: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// Credentials for one registry, from one entry of a pod's image pull secret.
///
/// `Debug` prints the registry and username only: a [`crate::ResolvedPod`] is
/// logged at debug level and must not leak passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryCredential {
    /// The registry as written in the config's key: `127.0.0.1:35000`,
    /// `registry.example.com/team`, `https://index.docker.io/v1/`. Compare with
    /// [`RegistryCredential::for_image`] rather than by string.
    pub registry: String,
    /// User name: from `username`, or decoded from `auth` when that is set
    /// (`auth` wins, as with the kubelet and the Docker CLI).
    pub username: String,
    /// Password: from `password`, or decoded from `auth`.
    pub password: String,
    /// `identitytoken`: an OAuth refresh token some registries (ACR, Docker
    /// Hub's access tokens) hand out instead of a password, when present.
    pub identity_token: Option<String>,
    /// The raw `auth` field (base64 of `username:password`) as written, for
    /// backends that take it verbatim (Docker Engine's `X-Registry-Auth`).
    pub auth: Option<String>,
}

impl fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One entry of a docker config, as written (every field optional).
#[derive(serde::Deserialize)]
struct ConfigEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

/// `.dockerconfigjson`: `{"auths": {registry: entry}}`.
#[derive(serde::Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, ConfigEntry>,
}

impl RegistryCredential {
    /// The credentials in an image pull Secret: one per registry, ordered by
    /// registry key. Accepts `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`)
    /// and legacy `kubernetes.io/dockercfg` (`.dockercfg`) Secrets. An error
    /// (wrong type, missing key, not JSON, bad `auth`) names what is wrong, for
    /// the pod's `FailedToRetrieveImagePullSecret` event.
    pub fn from_secret(secret: &Secret) -> Result<Vec<RegistryCredential>, String> {
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let type_ = secret.type_.as_deref().unwrap_or("Opaque");
        let key = match type_ {
            DOCKER_CONFIG_JSON_TYPE => DOCKER_CONFIG_JSON_KEY,
            DOCKERCFG_TYPE => DOCKERCFG_KEY,
            other => {
                return Err(format!(
                    "secret {name} has type {other}, not {DOCKER_CONFIG_JSON_TYPE} or {DOCKERCFG_TYPE}"
                ));
            }
        };
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| format!("secret {name} has no {key} key"))?;
        let entries = if key == DOCKER_CONFIG_JSON_KEY {
            serde_json::from_slice::<DockerConfigJson>(&bytes).map(|c| c.auths)
        } else {
            serde_json::from_slice::<BTreeMap<String, ConfigEntry>>(&bytes)
        }
        .map_err(|e| format!("secret {name}: {key} is not a docker config: {e}"))?;
        entries
            .into_iter()
            .map(|(registry, entry)| {
                credential(registry, entry).map_err(|e| format!("secret {name}: {e}"))
            })
            .collect()
    }

    /// The credential for pulling `image`, if any matches its registry.
    ///
    /// The registry of an image is its first path component when that looks
    /// like a host (`localhost`, or it contains `.` or `:`); otherwise Docker
    /// Hub, which the keys `docker.io`, `index.docker.io`,
    /// `https://index.docker.io/v1/` and `registry-1.docker.io` all name.
    /// Keys may carry a scheme (ignored) and a path: `registry.example.com/team`
    /// matches only images under `team/` (an API path like `/v1/` or `/v2/` is
    /// ignored, and so are paths on Docker Hub keys). When several keys match,
    /// the one with the longest path wins; hosts compare case-insensitively.
    pub fn for_image<'a>(
        creds: &'a [RegistryCredential],
        image: &str,
    ) -> Option<&'a RegistryCredential> {
        let (host, repo) = image_host_and_repository(image);
        creds
            .iter()
            .filter_map(|c| {
                let (key_host, key_path) = registry_key(&c.registry);
                let path_ok = key_path.is_empty()
                    || repo == key_path
                    || repo
                        .strip_prefix(key_path.as_str())
                        .is_some_and(|rest| rest.starts_with('/'));
                (key_host == host && path_ok).then_some((key_path.len(), c))
            })
            // The first of the longest: `max_by_key` would keep the last.
            .fold(
                None,
                |best: Option<(usize, &RegistryCredential)>, cand| match best {
                    Some(b) if b.0 >= cand.0 => Some(b),
                    _ => Some(cand),
                },
            )
            .map(|(_, c)| c)
    }
}

fn credential(registry: String, entry: ConfigEntry) -> Result<RegistryCredential, String> {
    let mut cred = RegistryCredential {
        username: entry.username.unwrap_or_default(),
        password: entry.password.unwrap_or_default(),
        identity_token: entry.identity_token.filter(|t| !t.is_empty()),
        auth: None,
        registry,
    };
    if let Some(auth) = entry.auth.filter(|a| !a.trim().is_empty()) {
        let (user, pass) = decode_auth(auth.trim())
            .map_err(|e| format!("registry {}: auth {e}", cred.registry))?;
        cred.username = user;
        cred.password = pass;
        cred.auth = Some(auth);
    }
    Ok(cred)
}

/// `base64(user:pass)` → (user, pass). Padding is optional, as Docker writes it either way.
fn decode_auth(auth: &str) -> Result<(String, String), String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes = engine
        .decode(auth)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth))
        .map_err(|e| format!("is not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
    let (user, pass) = text
        .split_once(':')
        .ok_or_else(|| "is not base64 of username:password".to_string())?;
    Ok((user.to_string(), pass.to_string()))
}

/// A registry key → (lowercase host, repository path prefix without slashes).
fn registry_key(key: &str) -> (String, String) {
    let rest = key
        .trim()
        .strip_prefix("https://")
        .or_else(|| key.trim().strip_prefix("http://"))
        .unwrap_or(key.trim());
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        return (DOCKER_HUB.to_string(), String::new());
    }
    let path = path.trim_matches('/');
    let path = if path == "v1" || path == "v2" {
        ""
    } else {
        path
    };
    (host, path.to_string())
}

/// An image reference → (lowercase registry host, repository path without tag or digest).
/// Docker Hub images come back as `docker.io` whatever alias they were written with.
fn image_host_and_repository(image: &str) -> (String, &str) {
    let image = image.trim();
    let name = image.split_once('@').map_or(image, |(n, _)| n);
    // A tag is a `:` after the last `/` (a `:` before it is a registry port).
    let name = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    match name.split_once('/') {
        Some((first, rest)) if first == "localhost" || first.contains(['.', ':']) => {
            let host = first.to_ascii_lowercase();
            if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
                (DOCKER_HUB.to_string(), rest)
            } else {
                (host, rest)
            }
        }
        _ => (DOCKER_HUB.to_string(), name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(type_: &str, key: &str, body: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("pull".into()),
                ..Default::default()
            },
            type_: Some(type_.into()),
            data: Some([(key.to_string(), ByteString(body.as_bytes().to_vec()))].into()),
            ..Default::default()
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn cred(registry: &str) -> RegistryCredential {
        RegistryCredential {
            registry: registry.into(),
            username: registry.into(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_pull_secrets() {
        let auth = b64("alice:s3cr:et");
        let unpadded = b64("u:p1").trim_end_matches('=').to_string();
        let json = |entry: String| format!(r#"{{"auths": {{"127.0.0.1:35000": {entry}}}}}"#);
        // Expected (username, password, auth), or a fragment of the error.
        type Want<'a> = Result<(&'a str, &'a str, Option<&'a str>), &'a str>;
        // (case, type, key, body, want)
        let cases: Vec<(&str, &str, &str, String, Want)> = vec![
            (
                "auth only",
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                json(format!(r#"{{"auth": "{auth}"}}"#)),
                Ok(("alice", "s3cr:et", Some(auth.as_str()))),
            ),
            (
                "username and password only",
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                json(r#"{"username": "bob", "password": "pw"}"#.into()),
                Ok(("bob", "pw", None)),
            ),
            (
                "both: auth wins",
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                json(format!(
                    r#"{{"username": "bob", "password": "pw", "auth": "{auth}", "email": "a@b"}}"#
                )),
                Ok(("alice", "s3cr:et", Some(auth.as_str()))),
            ),
            (
                "auth without padding",
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                json(format!(r#"{{"auth": "{unpadded}"}}"#)),
                Ok(("u", "p1", Some(unpadded.as_str()))),
            ),
            (
                "legacy dockercfg",
                DOCKERCFG_TYPE,
                DOCKERCFG_KEY,
                format!(r#"{{"127.0.0.1:35000": {{"auth": "{auth}"}}}}"#),
                Ok(("alice", "s3cr:et", Some(auth.as_str()))),
            ),
            (
                "bad base64",
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                json(r#"{"auth": "%%%not base64"}"#.into()),
                Err("not base64"),
            ),
            (
                "base64 without a colon",
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                json(format!(r#"{{"auth": "{}"}}"#, b64("nocolon"))),
                Err("username:password"),
            ),
            (
                "not JSON",
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                "registry=127.0.0.1".into(),
                Err("not a docker config"),
            ),
            (
                "wrong type",
                "Opaque",
                DOCKER_CONFIG_JSON_KEY,
                json(format!(r#"{{"auth": "{auth}"}}"#)),
                Err("has type Opaque"),
            ),
            (
                "type without its key",
                DOCKER_CONFIG_JSON_TYPE,
                DOCKERCFG_KEY,
                "{}".into(),
                Err("no .dockerconfigjson key"),
            ),
        ];
        for (case, type_, key, body, want) in cases {
            let got = RegistryCredential::from_secret(&secret(type_, key, &body));
            match (got, want) {
                (Ok(creds), Ok((user, pass, auth))) => {
                    assert_eq!(creds.len(), 1, "{case}");
                    let c = &creds[0];
                    assert_eq!(c.registry, "127.0.0.1:35000", "{case}");
                    assert_eq!(
                        (c.username.as_str(), c.password.as_str(), c.auth.as_deref()),
                        (user, pass, auth),
                        "{case}"
                    );
                }
                (Err(e), Err(fragment)) => {
                    assert!(e.contains(fragment), "{case}: {e}");
                    assert!(e.contains("pull"), "{case} names the secret: {e}");
                }
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn several_registries_and_identity_token() {
        let body = r#"{"auths": {
            "https://index.docker.io/v1/": {"username": "hub", "password": "x"},
            "myregistry.azurecr.io": {"username": "00000000-0000-0000-0000-000000000000", "identitytoken": "refresh"}
        }}"#;
        let creds = RegistryCredential::from_secret(&secret(
            DOCKER_CONFIG_JSON_TYPE,
            DOCKER_CONFIG_JSON_KEY,
            body,
        ))
        .unwrap();
        assert_eq!(creds.len(), 2);
        assert_eq!(creds[0].registry, "https://index.docker.io/v1/");
        assert_eq!(creds[1].identity_token.as_deref(), Some("refresh"));
        let debug = format!("{creds:?}");
        assert!(
            !debug.contains("refresh") && !debug.contains("\"x\""),
            "{debug}"
        );
    }

    #[test]
    fn image_registry_hosts() {
        let cases = [
            ("busybox", "docker.io", "busybox"),
            ("busybox:1.36", "docker.io", "busybox"),
            ("library/x", "docker.io", "library/x"),
            ("docker.io/library/x:1", "docker.io", "library/x"),
            ("index.docker.io/me/app", "docker.io", "me/app"),
            ("127.0.0.1:35000/x/y:1", "127.0.0.1:35000", "x/y"),
            ("localhost/app", "localhost", "app"),
            ("localhost:5000/app@sha256:abc", "localhost:5000", "app"),
            (
                "Registry.Example.com/team/app:v2",
                "registry.example.com",
                "team/app",
            ),
            ("user/app:latest", "docker.io", "user/app"),
        ];
        for (image, host, repo) in cases {
            assert_eq!(
                image_host_and_repository(image),
                (host.to_string(), repo),
                "{image}"
            );
        }
    }

    #[test]
    fn picks_the_credential_for_an_image() {
        let creds = vec![
            cred("127.0.0.1:35000"),
            cred("https://index.docker.io/v1/"),
            cred("registry.example.com"),
            cred("https://registry.example.com/team"),
            cred("http://other.example.com:8443/v2/"),
        ];
        let pick =
            |image: &str| RegistryCredential::for_image(&creds, image).map(|c| c.registry.as_str());
        assert_eq!(pick("127.0.0.1:35000/x/y:1"), Some("127.0.0.1:35000"));
        assert_eq!(pick("127.0.0.1:35001/x/y:1"), None, "another port");
        assert_eq!(pick("busybox"), Some("https://index.docker.io/v1/"));
        assert_eq!(pick("library/x"), Some("https://index.docker.io/v1/"));
        assert_eq!(
            pick("docker.io/library/x"),
            Some("https://index.docker.io/v1/")
        );
        assert_eq!(
            pick("registry.example.com/team/app:1"),
            Some("https://registry.example.com/team"),
            "the longest matching path wins"
        );
        assert_eq!(
            pick("registry.example.com/teamster/app"),
            Some("registry.example.com"),
            "a path matches whole components"
        );
        assert_eq!(
            pick("other.example.com:8443/app"),
            Some("http://other.example.com:8443/v2/"),
            "an API path on the key is not a repository path"
        );
        assert_eq!(pick("localhost/app"), None);
        assert_eq!(pick("quay.io/app"), None);

        for hub in [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
        ] {
            let only = [cred(hub)];
            for image in ["busybox", "library/x", "docker.io/me/app:1"] {
                assert_eq!(
                    RegistryCredential::for_image(&only, image).map(|c| c.registry.as_str()),
                    Some(hub),
                    "{image} with key {hub}"
                );
            }
            assert!(RegistryCredential::for_image(&only, "127.0.0.1:35000/x").is_none());
        }
        assert!(RegistryCredential::for_image(&[], "busybox").is_none());
    }
}
