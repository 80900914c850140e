//! The `kubernetes` Service as a pod sees it, for pods the edge provider runs
//! in the rig's podman: the local cluster has no kube-proxy, and its
//! apiserver listens on 127.0.0.1 only. [`KubernetesService::start`] puts
//! the Service's ClusterIP on the host's loopback interface and forwards its
//! port to the apiserver, as kube-proxy would. A container on podman's bridge
//! reaches it through its default route (the host), and the apiserver's
//! serving certificate names that IP, so in-cluster clients (the pod's
//! `KUBERNETES_SERVICE_HOST` and the projected `ca.crt`) work unchanged.
//! Nothing leaves the machine. Needs root (`ip address add`).

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use kube::Api;

use crate::TestCluster;

/// The forwarder; removes the address it added when dropped.
pub struct KubernetesService {
    ip: IpAddr,
    port: u16,
    added: bool,
    task: tokio::task::JoinHandle<()>,
}

impl KubernetesService {
    /// Starts forwarding `default/kubernetes` (its ClusterIP and port) to
    /// the cluster's apiserver.
    pub async fn start(cluster: &TestCluster) -> Result<KubernetesService> {
        let svc = Api::<Service>::namespaced(cluster.client(), "default")
            .get("kubernetes")
            .await
            .context("reading the default/kubernetes Service")?;
        let spec = svc.spec.unwrap_or_default();
        let ip: IpAddr = spec
            .cluster_ip
            .as_deref()
            .context("the kubernetes Service has no ClusterIP")?
            .parse()
            .context("the kubernetes Service's ClusterIP")?;
        let port = spec
            .ports
            .unwrap_or_default()
            .first()
            .map(|p| p.port)
            .context("the kubernetes Service has no port")?;
        let port = u16::try_from(port).context("the kubernetes Service's port")?;
        let upstream = SocketAddr::from(([127, 0, 0, 1], cluster.apiserver_port()?));

        let out = Command::new("ip")
            .args(["address", "add", &format!("{ip}/32"), "dev", "lo"])
            .output()
            .context("running ip address add")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let added = out.status.success();
        if !added && !stderr.contains("File exists") {
            bail!("ip address add {ip}/32 dev lo: {}", stderr.trim());
        }
        let listener = match tokio::net::TcpListener::bind((ip, port)).await {
            Ok(l) => l,
            Err(e) => {
                if added {
                    remove_address(ip);
                }
                bail!("listening on {ip}:{port}: {e}");
            }
        };
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                    }
                });
            }
        });
        Ok(KubernetesService {
            ip,
            port,
            added,
            task,
        })
    }

    /// The apiserver's URL as a pod reaches it (`https://<ClusterIP>:<port>`).
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.ip, self.port)
    }
}

fn remove_address(ip: IpAddr) {
    let _ = Command::new("ip")
        .args(["address", "del", &format!("{ip}/32"), "dev", "lo"])
        .output();
}

impl Drop for KubernetesService {
    fn drop(&mut self) {
        self.task.abort();
        if self.added {
            remove_address(self.ip);
        }
    }
}
