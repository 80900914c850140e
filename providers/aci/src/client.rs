//! The ARM client of the provider: container groups created, read, listed and
//! deleted in one resource group, through azure_core's pipeline.
//!
//! - **Transport** ([`crate::transport`]): reqwest with rustls on ring; the
//!   system's roots plus the `--extra-ca-file` certificates (a private
//!   cloud's CA, the tests' CA).
//! - **Auth**: an azure_identity credential (workload identity, client
//!   secret or managed identity) through azure_core's bearer token policy,
//!   scope `<arm endpoint>/.default`. The policy refuses non-https URLs,
//!   and so does [`crate::config`]. A cache in front of the credential
//!   ([`crate::token_cache`]) keeps a short-lived token from being fetched
//!   again for every call.
//! - **Retries**: azure_core's retry policy retries 408, 429, 500, 502, 503
//!   and 504 and transport errors, waiting the longer of its back-off and
//!   the server's `Retry-After` / `x-ms-retry-after-ms` / `retry-after-ms`.
//!   What is still failing after that becomes
//!   [`ProviderError::Unavailable`] carrying the server's `Retry-After`.
//! - **Long-running operations**: azure_core 1.x has none for ARM, so
//!   [`ArmClient::put_group`] and [`ArmClient::delete_group`] poll
//!   `Azure-AsyncOperation` (else `Location`) themselves, each wait the
//!   server's `Retry-After` (1 s when absent, at most 30 s); the caller's
//!   timeout (the core's provider call timeout) bounds the whole.

use std::sync::Arc;
use std::time::Duration;

use azure_core::http::headers::HeaderName;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    Context, Method, Pipeline, PipelineSendOptions, RawResponse, Request, StatusCode, Url,
};
use serde::de::DeserializeOwned;
use vk_core::{ProviderError, ProviderResult};

use crate::config::AciConfig;
use crate::models::{
    API_VERSION, AsyncOperation, CloudError, ContainerExecRequest, ContainerGroup,
    ContainerGroupList, Logs, StreamSession,
};
use crate::token_cache::RenewingCredential;
use crate::transport::{client_options, credential, transport, websocket_tls};

/// api-version of `Microsoft.Resources/resourceGroups` (the health check).
const RESOURCE_GROUPS_API_VERSION: &str = "2021-04-01";
/// Wait between polls of an operation when the server names none.
const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// The longest wait between polls, whatever the server says.
const MAX_POLL: Duration = Duration::from_secs(30);

const AZURE_ASYNC_OPERATION: HeaderName = HeaderName::from_static("azure-asyncoperation");
const LOCATION: HeaderName = HeaderName::from_static("location");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");

/// A client for the container groups of one resource group.
#[derive(Clone, Debug)]
pub struct ArmClient {
    pipeline: Pipeline,
    /// TLS of the exec and attach WebSockets (same roots as the pipeline).
    websocket_tls: Arc<rustls::ClientConfig>,
    endpoint: Url,
    subscription: String,
    resource_group: String,
}

/// An error with its sources: azure_core's own text for a failed token
/// request is only "non-transport error occurred which will not be
/// retried"; Entra ID's answer (`AADSTS...`) is in its sources.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The server's `x-ms-retry-after-ms` or `Retry-After` (seconds), if any.
fn retry_after(response: &RawResponse) -> Option<Duration> {
    let headers = response.headers();
    if let Some(ms) = headers
        .get_optional_str(&RETRY_AFTER_MS)
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_millis(ms));
    }
    headers
        .get_optional_str(&RETRY_AFTER)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The ARM error of a response that is not a success.
fn arm_error(what: &str, response: &RawResponse) -> ProviderError {
    let status = u16::from(response.status());
    let body: &[u8] = response.body().as_ref();
    let detail = serde_json::from_slice::<CloudError>(body)
        .ok()
        .and_then(|e| e.error)
        .map(|e| {
            format!(
                "{}: {}",
                e.code.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
    let message = format!("{what}: ARM answered {status} {detail}");
    match status {
        404 => ProviderError::NotFound(message),
        400 | 422 => ProviderError::InvalidInput(message),
        _ => {
            let error = ProviderError::unavailable(message);
            match retry_after(response) {
                Some(after) => error.retry_after(after),
                None => error,
            }
        }
    }
}

fn parse<T: DeserializeOwned>(what: &str, response: &RawResponse) -> ProviderResult<T> {
    serde_json::from_slice(response.body().as_ref())
        .map_err(|e| ProviderError::unavailable(format!("{what}: unreadable ARM response: {e}")))
}

impl ArmClient {
    /// A client for the settings' subscription and resource group.
    pub fn new(config: &AciConfig) -> anyhow::Result<ArmClient> {
        let transport = transport(config)?;
        // Short-lived tokens renewed once per half-life, not once per call.
        let credential: Arc<dyn azure_core::credentials::TokenCredential> =
            Arc::new(RenewingCredential::new(credential(config, &transport)?));
        let scope = format!(
            "{}/.default",
            config.arm_endpoint.as_str().trim_end_matches('/')
        );
        let auth: Arc<dyn Policy> =
            Arc::new(BearerTokenAuthorizationPolicy::new(credential, [scope]));
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            client_options(&transport, config),
            Vec::new(),
            vec![auth],
            None,
        );
        Ok(ArmClient {
            pipeline,
            websocket_tls: websocket_tls(config)?,
            endpoint: config.arm_endpoint.clone(),
            subscription: config.subscription_id.clone(),
            resource_group: config.resource_group.clone(),
        })
    }

    fn url(&self, path: &str, api_version: &str) -> ProviderResult<Url> {
        let mut url = self
            .endpoint
            .join(path)
            .map_err(|e| ProviderError::InvalidInput(format!("bad ARM path {path}: {e}")))?;
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    fn groups_path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerInstance/containerGroups",
            self.subscription, self.resource_group
        )
    }

    fn group_url(&self, name: &str) -> ProviderResult<Url> {
        self.url(&format!("{}/{name}", self.groups_path()), API_VERSION)
    }

    /// One request through the pipeline (auth, retries); any status comes back.
    async fn send(
        &self,
        what: &str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> ProviderResult<RawResponse> {
        let mut request = Request::new(url, method);
        if let Some(body) = body {
            request.insert_header("content-type", "application/json");
            request.set_body(body);
        }
        let ctx = Context::new();
        self.pipeline
            .send(
                &ctx,
                &mut request,
                Some(PipelineSendOptions {
                    skip_checks: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| ProviderError::unavailable(format!("{what}: {}", error_chain(&e))))
    }

    /// Waits for the long-running operation a response started, if any.
    async fn wait_operation(&self, what: &str, first: &RawResponse) -> ProviderResult<()> {
        let headers = first.headers();
        let (url, via_status) = match (
            headers.get_optional_str(&AZURE_ASYNC_OPERATION),
            headers.get_optional_str(&LOCATION),
        ) {
            (Some(op), _) => (op.to_string(), true),
            (None, Some(location)) if first.status() == StatusCode::Accepted => {
                (location.to_string(), false)
            }
            _ => return Ok(()),
        };
        let url = Url::parse(&url)
            .map_err(|e| ProviderError::unavailable(format!("{what}: bad operation URL: {e}")))?;
        let mut wait = retry_after(first).unwrap_or(DEFAULT_POLL);
        loop {
            tokio::time::sleep(wait.min(MAX_POLL)).await;
            let response = self.send(what, Method::Get, url.clone(), None).await?;
            wait = retry_after(&response).unwrap_or(DEFAULT_POLL);
            let status = u16::from(response.status());
            if via_status {
                if !(200..300).contains(&status) {
                    return Err(arm_error(what, &response));
                }
                let op: AsyncOperation = parse(what, &response)?;
                match op.status.as_str() {
                    "Succeeded" => return Ok(()),
                    "Failed" | "Canceled" => {
                        let detail = op
                            .error
                            .map(|e| {
                                format!(
                                    "{}: {}",
                                    e.code.unwrap_or_default(),
                                    e.message.unwrap_or_default()
                                )
                            })
                            .unwrap_or_default();
                        return Err(ProviderError::unavailable(format!(
                            "{what}: operation {}: {detail}",
                            op.status
                        )));
                    }
                    _ => continue,
                }
            }
            match status {
                202 => continue,
                200..=299 | 404 => return Ok(()),
                _ => return Err(arm_error(what, &response)),
            }
        }
    }

    /// Creates or updates a group and waits until ARM has provisioned it
    /// (or failed to: then the group, with its failure, is returned, and its
    /// status says Failed).
    pub async fn put_group(
        &self,
        name: &str,
        group: &ContainerGroup,
    ) -> ProviderResult<ContainerGroup> {
        let what = format!("create container group {name}");
        let body = serde_json::to_vec(group)
            .map_err(|e| ProviderError::InvalidInput(format!("{what}: {e}")))?;
        let response = self
            .send(&what, Method::Put, self.group_url(name)?, Some(body))
            .await?;
        if !response.status().is_success() {
            return Err(arm_error(&what, &response));
        }
        let waited = self.wait_operation(&what, &response).await;
        let group = self.get_group(name).await?;
        match (waited, group) {
            (Ok(()), Some(g)) => Ok(g),
            // A group ARM failed to provision (an image it cannot pull, a
            // quota): the pod fails with the group's reason, not retried.
            (Err(_), Some(g)) if g.properties.provisioning_state.as_deref() == Some("Failed") => {
                Ok(g)
            }
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(ProviderError::unavailable(format!(
                "{what}: gone right after creation"
            ))),
        }
    }

    /// A group, `None` when it does not exist.
    pub async fn get_group(&self, name: &str) -> ProviderResult<Option<ContainerGroup>> {
        let what = format!("get container group {name}");
        let response = self
            .send(&what, Method::Get, self.group_url(name)?, None)
            .await?;
        match u16::from(response.status()) {
            404 => Ok(None),
            200 => parse(&what, &response).map(Some),
            _ => Err(arm_error(&what, &response)),
        }
    }

    /// Deletes a group and waits until it is gone; `false` when there was none.
    pub async fn delete_group(&self, name: &str) -> ProviderResult<bool> {
        let what = format!("delete container group {name}");
        let response = self
            .send(&what, Method::Delete, self.group_url(name)?, None)
            .await?;
        match u16::from(response.status()) {
            204 | 404 => Ok(false),
            200 | 202 => {
                self.wait_operation(&what, &response).await?;
                Ok(true)
            }
            _ => Err(arm_error(&what, &response)),
        }
    }

    /// Every group of the resource group (all pages): one call per page.
    pub async fn list_groups(&self) -> ProviderResult<Vec<ContainerGroup>> {
        let what = "list container groups";
        let mut url = self.url(&self.groups_path(), API_VERSION)?;
        let mut groups = Vec::new();
        loop {
            let response = self.send(what, Method::Get, url, None).await?;
            if u16::from(response.status()) != 200 {
                return Err(arm_error(what, &response));
            }
            let page: ContainerGroupList = parse(what, &response)?;
            groups.extend(page.value);
            match page.next_link {
                Some(next) if !next.is_empty() => {
                    url = Url::parse(&next).map_err(|e| {
                        ProviderError::unavailable(format!("{what}: bad nextLink: {e}"))
                    })?;
                }
                _ => return Ok(groups),
            }
        }
    }

    /// A container's log, each line prefixed with its time (ACI keeps the
    /// current instance's output only, up to 4 MB); the last `tail` lines
    /// when given.
    pub async fn logs(
        &self,
        group: &str,
        container: &str,
        tail: Option<u64>,
    ) -> ProviderResult<String> {
        let what = format!("logs of container {container} of group {group}");
        let mut url = self.url(
            &format!("{}/{group}/containers/{container}/logs", self.groups_path()),
            API_VERSION,
        )?;
        url.query_pairs_mut().append_pair("timestamps", "true");
        if let Some(tail) = tail {
            url.query_pairs_mut().append_pair("tail", &tail.to_string());
        }
        let response = self.send(&what, Method::Get, url, None).await?;
        if u16::from(response.status()) != 200 {
            return Err(arm_error(&what, &response));
        }
        let logs: Logs = parse(&what, &response)?;
        Ok(logs.content.unwrap_or_default())
    }

    /// Starts `request.command` in a container: the WebSocket to dial and
    /// its password.
    pub async fn exec(
        &self,
        group: &str,
        container: &str,
        request: &ContainerExecRequest,
    ) -> ProviderResult<StreamSession> {
        let what = format!("exec in container {container} of group {group}");
        let body = serde_json::to_vec(request)
            .map_err(|e| ProviderError::InvalidInput(format!("{what}: {e}")))?;
        self.stream_session(&what, group, container, "exec", Some(body))
            .await
    }

    /// Attaches to a container's output: the WebSocket to dial and its
    /// password.
    pub async fn attach(&self, group: &str, container: &str) -> ProviderResult<StreamSession> {
        let what = format!("attach to container {container} of group {group}");
        self.stream_session(&what, group, container, "attach", None)
            .await
    }

    async fn stream_session(
        &self,
        what: &str,
        group: &str,
        container: &str,
        verb: &str,
        body: Option<Vec<u8>>,
    ) -> ProviderResult<StreamSession> {
        let url = self.url(
            &format!(
                "{}/{group}/containers/{container}/{verb}",
                self.groups_path()
            ),
            API_VERSION,
        )?;
        let response = self.send(what, Method::Post, url, body).await?;
        if u16::from(response.status()) != 200 {
            return Err(arm_error(what, &response));
        }
        parse(what, &response)
    }

    /// TLS of the exec and attach WebSockets.
    pub fn websocket_tls(&self) -> Arc<rustls::ClientConfig> {
        self.websocket_tls.clone()
    }

    /// Whether the resource group answers (the node's health).
    pub async fn check_resource_group(&self) -> ProviderResult<()> {
        let what = format!("resource group {}", self.resource_group);
        let url = self.url(
            &format!(
                "/subscriptions/{}/resourceGroups/{}",
                self.subscription, self.resource_group
            ),
            RESOURCE_GROUPS_API_VERSION,
        )?;
        let response = self.send(&what, Method::Get, url, None).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(arm_error(&what, &response))
        }
    }
}
