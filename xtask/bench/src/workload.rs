//! The pods the benchmark runs: created directly with `spec.nodeName` set
//! (`direct`), or as one Deployment that the controller-manager and the
//! scheduler turn into pods (`deployment`); and their deletion.
//!
//! A pod is as small as a real one gets: one container, the toleration of
//! the virtual-kubelet taint, no service-account token (the token request
//! would be a cost of the pod, not of the kubelet's pod lifecycle).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, Namespace, Pod, PodSpec, PodTemplateSpec, ServiceAccount, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, PropagationPolicy};

use crate::observe::Observer;

/// The namespace of the benchmark's pods.
pub const NAMESPACE: &str = "bench";
/// The label every benchmark pod carries.
pub const LABEL: (&str, &str) = ("app", "vk-bench");
const DEPLOYMENT: &str = "bench";

/// How pods come to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Created by the benchmark with `spec.nodeName` set: no scheduler.
    Direct,
    /// One Deployment; the ReplicaSet controller creates and the scheduler binds them.
    Deployment,
}

impl Mode {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Deployment => "deployment",
        }
    }
}

/// Creates the namespace and waits for its `default` ServiceAccount (the
/// ServiceAccount admission plugin rejects pods until it exists).
pub async fn prepare_namespace(admin: &Client) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e).context("creating the benchmark namespace"),
    }
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), NAMESPACE);
    let started = Instant::now();
    while sas.get_opt("default").await?.is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("namespace {NAMESPACE} has no default ServiceAccount after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn pod_spec(node: Option<&str>) -> PodSpec {
    PodSpec {
        node_name: node.map(str::to_string),
        node_selector: node
            .is_none()
            .then(|| BTreeMap::from([("type".to_string(), "virtual-kubelet".to_string())])),
        containers: vec![Container {
            name: "app".into(),
            image: Some("registry.invalid/bench:1".into()),
            ..Default::default()
        }],
        automount_service_account_token: Some(false),
        tolerations: Some(vec![Toleration {
            key: Some("virtual-kubelet.io/provider".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL.0.to_string(), LABEL.1.to_string())])
}

/// The name of pod `i`.
pub fn pod_name(i: usize) -> String {
    format!("bench-{i:05}")
}

/// Creates `count` pods spread round-robin over `nodes`, `concurrency` at a
/// time, telling `observer` when each create is accepted.
pub async fn create_pods(
    admin: &Client,
    count: usize,
    nodes: &[String],
    concurrency: usize,
    observer: &Observer,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    let results = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let node = nodes.get(i % nodes.len().max(1)).cloned();
            async move {
                let name = pod_name(i);
                let pod = Pod {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(labels()),
                        ..Default::default()
                    },
                    spec: Some(pod_spec(node.as_deref())),
                    status: None,
                };
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match api.create(&PostParams::default(), &pod).await {
                        Ok(_) => {
                            observer.accepted(&name);
                            return Ok(());
                        }
                        Err(e) if attempt < 5 => {
                            eprintln!("bench: creating {name} (attempt {attempt}): {e}");
                            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                        }
                        Err(e) => return Err(e).with_context(|| format!("creating pod {name}")),
                    }
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<Result<()>>>()
        .await;
    results.into_iter().collect()
}

/// Creates one Deployment of `replicas` pods.
pub async fn create_deployment(admin: &Client, replicas: usize) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(admin.clone(), NAMESPACE);
    let replicas = i32::try_from(replicas).context("too many replicas")?;
    let deployment = Deployment {
        metadata: ObjectMeta {
            name: Some(DEPLOYMENT.into()),
            labels: Some(labels()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..Default::default()
                }),
                spec: Some(pod_spec(None)),
            },
            ..Default::default()
        }),
        status: None,
    };
    api.create(&PostParams::default(), &deployment)
        .await
        .context("creating the benchmark Deployment")?;
    Ok(())
}

/// Starts the deletion of every benchmark pod: each pod with its default grace
/// period (`direct`; the kubelet then finishes it), or the Deployment with
/// background propagation (the garbage collector deletes the pods).
pub async fn delete_all(
    admin: &Client,
    mode: Mode,
    count: usize,
    concurrency: usize,
) -> Result<()> {
    match mode {
        Mode::Deployment => {
            let api: Api<Deployment> = Api::namespaced(admin.clone(), NAMESPACE);
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            api.delete(DEPLOYMENT, &dp)
                .await
                .context("deleting the benchmark Deployment")?;
            Ok(())
        }
        Mode::Direct => {
            let api: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
            let results = futures::stream::iter(0..count)
                .map(|i| {
                    let api = api.clone();
                    async move {
                        let name = pod_name(i);
                        match api.delete(&name, &DeleteParams::default()).await {
                            Ok(_) => Ok(()),
                            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                            Err(e) => Err(e).with_context(|| format!("deleting pod {name}")),
                        }
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .collect::<Vec<Result<()>>>()
                .await;
            results.into_iter().collect()
        }
    }
}
