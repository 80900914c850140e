//! The ACI [`Provider`]: the pod lifecycle as container group calls.
//!
//! Poll-only: ARM pushes nothing, so the core lists the groups every
//! [`Provider::status_poll_interval`], one LIST call for every pod of the
//! node (filtered by the node's tag), never a GET per pod. The notifier is
//! kept only for pod events: what ACI cannot express of a pod, and the
//! events ACI reports in its instance views, each recorded once (events
//! older than the process are left out: its predecessor recorded them).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container as KubeContainer, Pod, PodSpec, PodStatus};
use vk_core::provider::{ByteStream, CallRateLimit, ExecIo, LogOptions, PodUsage};
use vk_core::toolkit::log_lines::log_stream;
use vk_core::{
    BackendPod, NodeCapacity, PodKey, Provider, ProviderError, ProviderResult, ResolvedPod,
    StatusNotifier,
};

use crate::client::ArmClient;
use crate::exec;
use crate::group::{GroupSettings, container_group_with, group_name};
use crate::logs::AciLogSource;
use crate::models::ContainerGroup;
use crate::secrets::{SecretSource, azure_file_secrets};
use crate::status::{group_events, pod_key, pod_status};

/// Why stats are not offered (the kubelet API adds "is not supported by
/// this provider").
pub const STATS_NOT_OFFERED: &str = "stats (ACI's container group API reports no CPU or memory usage of containers; that is in Azure Monitor, which vk-aci does not read)";

/// How often a followed log is read again.
const LOG_POLL: Duration = Duration::from_secs(2);

/// The provider of one node.
pub struct AciProvider {
    client: ArmClient,
    settings: GroupSettings,
    capacity: NodeCapacity,
    poll_interval: Duration,
    notifier: Mutex<Option<StatusNotifier>>,
    started: jiff::Timestamp,
    /// Ids of the ACI events recorded, by pod.
    seen_events: Mutex<HashMap<PodKey, HashSet<String>>>,
    /// Where the Secrets of azureFile volumes are read (none: such a pod
    /// is refused, its Secret "not found").
    secrets: Option<Arc<dyn SecretSource>>,
}

impl AciProvider {
    /// The provider of `settings.node`, with the node's capacity.
    pub fn new(
        client: ArmClient,
        settings: GroupSettings,
        capacity: NodeCapacity,
        poll_interval: Duration,
    ) -> AciProvider {
        AciProvider {
            client,
            settings,
            capacity,
            poll_interval,
            notifier: Mutex::new(None),
            started: jiff::Timestamp::now(),
            seen_events: Mutex::new(HashMap::new()),
            secrets: None,
        }
    }

    /// The same provider, reading the Secrets of azureFile volumes from `source`.
    pub fn with_secrets(self, source: Arc<dyn SecretSource>) -> AciProvider {
        AciProvider {
            secrets: Some(source),
            ..self
        }
    }

    /// Records the group's new ACI events on its pod.
    fn report_events(&self, key: &PodKey, group: &ContainerGroup) {
        let fresh: Vec<_> = {
            let Ok(mut seen) = self.seen_events.lock() else {
                return;
            };
            let seen = seen.entry(key.clone()).or_default();
            group_events(group)
                .into_iter()
                .filter(|e| e.last.is_none_or(|t| t >= self.started))
                .filter(|e| seen.insert(e.id.clone()))
                .collect()
        };
        let notifier = self.notifier.lock().ok().and_then(|n| n.clone());
        if let Some(n) = notifier {
            for e in fresh {
                n.pod_event(key.clone(), e.warning, &e.reason, e.message);
            }
        }
    }

    /// Forgets the pods that are gone from the backend.
    fn forget_events_except(&self, live: &HashSet<&PodKey>) {
        if let Ok(mut seen) = self.seen_events.lock() {
            seen.retain(|k, _| live.contains(k));
        }
    }

    fn event(&self, key: &PodKey, reason: &str, message: String) {
        let notifier = self.notifier.lock().ok().and_then(|n| n.clone());
        if let Some(n) = notifier {
            n.pod_event(key.clone(), true, reason, message);
        }
    }

    /// This node's groups, with their pods' keys; their new events recorded.
    async fn groups(&self) -> ProviderResult<Vec<(PodKey, ContainerGroup)>> {
        let groups: Vec<(PodKey, ContainerGroup)> = self
            .client
            .list_groups()
            .await?
            .into_iter()
            .filter_map(|g| Some((pod_key(&g, &self.settings.node)?, g)))
            .collect();
        for (key, g) in &groups {
            self.report_events(key, g);
        }
        self.forget_events_except(&groups.iter().map(|(k, _)| k).collect());
        Ok(groups)
    }

    async fn put(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        let key = pod
            .key()
            .ok_or_else(|| ProviderError::InvalidInput("the pod has no UID".into()))?;
        let azure_files = match &self.secrets {
            Some(source) => azure_file_secrets(source.as_ref(), pod).await?,
            None => Default::default(),
        };
        let translation = container_group_with(pod, &self.settings, &azure_files)?;
        for note in translation.notes {
            self.event(&key, note.reason, note.message);
        }
        let group = self
            .client
            .put_group(&translation.name, &translation.group)
            .await?;
        tracing::debug!(pod = %key, group = %translation.name, state = ?group.properties.provisioning_state, "container group put");
        Ok(())
    }
}

/// The pod a group stands for, as `/runningpods/` shows it: identity,
/// containers and images (the group does not keep the rest).
fn pod_of(key: &PodKey, group: &ContainerGroup) -> Pod {
    Pod {
        metadata: key.metadata(),
        spec: Some(PodSpec {
            containers: group
                .properties
                .containers
                .iter()
                .map(|c| KubeContainer {
                    name: c.name.clone(),
                    image: Some(c.properties.image.clone()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        status: None,
    }
}

#[async_trait::async_trait]
impl Provider for AciProvider {
    fn name(&self) -> &str {
        "azure-aci"
    }

    async fn node_capacity(&self) -> NodeCapacity {
        self.capacity.clone()
    }

    async fn ping(&self) -> ProviderResult<()> {
        self.client.check_resource_group().await
    }

    async fn create_pod(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        self.put(pod).await
    }

    async fn update_pod(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        self.put(pod).await
    }

    async fn delete_pod(&self, key: &PodKey, _grace: Duration) -> ProviderResult<()> {
        let name = group_name(&key.namespace, &key.name, &key.uid);
        if self.client.delete_group(&name).await? {
            Ok(())
        } else {
            Err(ProviderError::NotFound(format!(
                "container group {name} of {key}"
            )))
        }
    }

    async fn get_pod_status(&self, key: &PodKey) -> ProviderResult<Arc<PodStatus>> {
        let name = group_name(&key.namespace, &key.name, &key.uid);
        match self.client.get_group(&name).await? {
            Some(g) if pod_key(&g, &self.settings.node).as_ref() == Some(key) => {
                self.report_events(key, &g);
                Ok(Arc::new(pod_status(&g)))
            }
            _ => Err(ProviderError::NotFound(format!(
                "container group {name} of {key}"
            ))),
        }
    }

    async fn list_pods(&self) -> ProviderResult<Vec<BackendPod>> {
        Ok(self
            .groups()
            .await?
            .into_iter()
            .map(|(key, g)| BackendPod {
                pod: pod_of(&key, &g),
                status: pod_status(&g),
                key,
            })
            .collect())
    }

    async fn list_statuses(&self) -> ProviderResult<Vec<(PodKey, PodStatus)>> {
        Ok(self
            .groups()
            .await?
            .into_iter()
            .map(|(key, g)| (key, pod_status(&g)))
            .collect())
    }

    /// ACI keeps the current instance's output only: `previous` is not
    /// offered. Following polls the log every 2 s (what `az container logs
    /// --follow` does).
    async fn container_logs(
        &self,
        key: &PodKey,
        container: &str,
        opts: &LogOptions,
    ) -> ProviderResult<ByteStream> {
        if opts.previous {
            return Err(ProviderError::NotImplemented(
                "logs of a previous container instance (ACI keeps the current one only)",
            ));
        }
        let name = group_name(&key.namespace, &key.name, &key.uid);
        let group =
            self.client.get_group(&name).await?.ok_or_else(|| {
                ProviderError::NotFound(format!("container group {name} of {key}"))
            })?;
        if !group
            .properties
            .containers
            .iter()
            .any(|c| c.name == container)
        {
            return Err(ProviderError::NotFound(format!(
                "container {container} in group {name}"
            )));
        }
        let first_tail = opts.tail_lines.filter(|_| opts.since.is_none());
        let source =
            AciLogSource::new(self.client.clone(), name, container.to_string(), first_tail);
        Ok(log_stream(source, opts, LOG_POLL))
    }

    /// The argv is quoted into ACI's one command string; ACI sends one
    /// output stream and no exit code: 0 means the session closed normally
    /// (see [`crate::exec`]).
    async fn exec(
        &self,
        key: &PodKey,
        container: &str,
        command: Vec<String>,
        mut io: ExecIo,
    ) -> ProviderResult<i32> {
        if command.is_empty() {
            return Err(ProviderError::InvalidInput("exec needs a command".into()));
        }
        let name = group_name(&key.namespace, &key.name, &key.uid);
        let size = exec::first_size(&mut io).await;
        let session = self
            .client
            .exec(&name, container, &exec::exec_request(&command, size))
            .await?;
        exec::run_exec(self.client.websocket_tls(), &session, io).await
    }

    /// ACI's attach is output only: stdin is not carried.
    async fn attach(&self, key: &PodKey, container: &str, io: ExecIo) -> ProviderResult<i32> {
        let name = group_name(&key.namespace, &key.name, &key.uid);
        let session = self.client.attach(&name, container).await?;
        exec::run_attach(self.client.websocket_tls(), &session, io).await
    }

    /// Not offered: the contract (api-version 2026-05-01) has no endpoint
    /// for a container's CPU or memory usage (the group's instance view
    /// carries states and events only). Usage lives in Azure Monitor, a
    /// different API that vk-aci does not call: `/stats/summary` and
    /// `/metrics/resource` answer 501 saying so.
    async fn usage(&self) -> ProviderResult<Vec<PodUsage>> {
        Err(ProviderError::NotImplemented(STATS_NOT_OFFERED))
    }

    fn notify_status(&self, notifier: StatusNotifier) -> bool {
        if let Ok(mut n) = self.notifier.lock() {
            *n = Some(notifier);
        }
        false
    }

    fn status_poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// ARM's write budget is about 1,200 per hour per subscription and
    /// principal; reads are ten times that. Bursts wait in the core's queue.
    fn call_rate_limit(&self) -> Option<CallRateLimit> {
        Some(CallRateLimit {
            qps: 5.0,
            burst: 20,
        })
    }
}
