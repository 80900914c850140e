//! Authentication and authorization of kubelet API callers, like a real kubelet:
//! x509 client certificates (verified by TLS against the cluster's client CA) or
//! bearer tokens checked with a TokenReview; every request authorized with a
//! SubjectAccessReview on `nodes/<name>`. Decisions are cached briefly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// User name.
    pub user: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes from the TokenReview.
    pub extra: Vec<(String, Vec<String>)>,
    /// UID from the TokenReview.
    pub uid: Option<String>,
}

impl Identity {
    /// The anonymous user.
    pub fn anonymous() -> Identity {
        Identity {
            user: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            extra: vec![],
            uid: None,
        }
    }
}

/// The identity in a verified client certificate: CN is the user, O the groups.
pub fn identity_from_cert(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Identity {
        user,
        groups,
        extra: vec![],
        uid: None,
    })
}

/// The request attributes checked by authorization.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// get, create, update, patch, delete.
    pub verb: &'static str,
    /// The node name.
    pub node: String,
    /// stats, metrics, log or proxy.
    pub subresource: &'static str,
}

/// The kubelet's mapping from a request to SubjectAccessReview attributes.
pub fn attributes(method: &str, path: &str, node: &str) -> Attributes {
    let verb = match method {
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "get",
    };
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    let subresource = if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else {
        "proxy"
    };
    Attributes {
        verb,
        node: node.to_string(),
        subresource,
    }
}

const TOKEN_OK_TTL: Duration = Duration::from_secs(120);
const TOKEN_FAIL_TTL: Duration = Duration::from_secs(10);
const AUTHZ_OK_TTL: Duration = Duration::from_secs(300);
const AUTHZ_DENY_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 4096;

/// Outcome of authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied, with the reviewer's reason.
    Deny(String),
}

/// Caches of TokenReview and SubjectAccessReview answers.
pub struct Authenticator {
    client: Client,
    tokens: Mutex<HashMap<String, (Instant, Option<Identity>)>>,
    decisions: Mutex<HashMap<(Identity, Attributes), (Instant, Decision)>>,
}

impl Authenticator {
    /// Reviews through `client`.
    pub fn new(client: Client) -> Self {
        Authenticator {
            client,
            tokens: Mutex::default(),
            decisions: Mutex::default(),
        }
    }

    /// The identity behind a bearer token, `Ok(None)` when the token is not valid.
    pub async fn token(&self, token: &str) -> Result<Option<Identity>, String> {
        {
            let cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, id)) = cache.get(token) {
                let ttl = if id.is_some() {
                    TOKEN_OK_TTL
                } else {
                    TOKEN_FAIL_TTL
                };
                if at.elapsed() < ttl {
                    return Ok(id.clone());
                }
            }
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let res = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("TokenReview failed: {e}"))?;
        let status = res.status.unwrap_or_default();
        let id = if status.authenticated == Some(true) {
            status.user.map(|u| Identity {
                user: u.username.unwrap_or_default(),
                groups: u.groups.unwrap_or_default(),
                extra: u.extra.unwrap_or_default().into_iter().collect(),
                uid: u.uid,
            })
        } else {
            None
        };
        let mut cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(token.to_string(), (Instant::now(), id.clone()));
        Ok(id)
    }

    /// Authorizes `who` for `attrs` with a SubjectAccessReview.
    pub async fn authorize(&self, who: &Identity, attrs: &Attributes) -> Result<Decision, String> {
        let key = (who.clone(), attrs.clone());
        {
            let cache = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, d)) = cache.get(&key) {
                let ttl = if *d == Decision::Allow {
                    AUTHZ_OK_TTL
                } else {
                    AUTHZ_DENY_TTL
                };
                if at.elapsed() < ttl {
                    return Ok(d.clone());
                }
            }
        }
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.user.clone()),
                groups: Some(who.groups.clone()),
                uid: who.uid.clone(),
                extra: (!who.extra.is_empty()).then(|| who.extra.iter().cloned().collect()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.into()),
                    resource: Some("nodes".into()),
                    name: Some(attrs.node.clone()),
                    subresource: Some(attrs.subresource.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let res = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &sar)
            .await
            .map_err(|e| format!("SubjectAccessReview failed: {e}"))?;
        let status = res.status.unwrap_or_default();
        let decision = if status.allowed {
            Decision::Allow
        } else {
            Decision::Deny(status.reason.unwrap_or_default())
        };
        let mut cache = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), decision.clone()));
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subresource_and_verb_mapping() {
        let cases = [
            ("GET", "/stats/summary", "get", "stats"),
            ("GET", "/metrics/resource", "get", "metrics"),
            ("GET", "/metrics", "get", "metrics"),
            ("GET", "/logs/", "get", "log"),
            ("GET", "/containerLogs/ns/p/c", "get", "proxy"),
            ("POST", "/exec/ns/p/c", "create", "proxy"),
            ("GET", "/exec/ns/p/c", "get", "proxy"),
            ("POST", "/portForward/ns/p", "create", "proxy"),
            ("GET", "/pods", "get", "proxy"),
            ("GET", "/statsextra", "get", "proxy"),
            ("DELETE", "/pods", "delete", "proxy"),
        ];
        for (method, path, verb, sub) in cases {
            let a = attributes(method, path, "n");
            assert_eq!((a.verb, a.subresource), (verb, sub), "{method} {path}");
        }
    }
}
