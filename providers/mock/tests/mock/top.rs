//! `kubectl top` through a real metrics-server scraping a mock node.
//!
//! metrics-server (built from its pinned Go module by `cargo xtask
//! metrics-server-path`) runs inside a test host of its own (a network
//! namespace, see `support/test_host.rs`), as the aggregated API
//! `v1beta1.metrics.k8s.io`: the apiserver refuses loopback endpoints for an
//! APIService's Service, so metrics-server listens on the namespace's address.
//! Inside the namespace two forwarders lead back to loopback on the host: the
//! node's InternalIP and kubelet port to the mock's kubelet API, and
//! `127.0.0.1:<apiserver port>` to the apiserver. metrics-server runs with a
//! ServiceAccount of its own and the upstream RBAC, verifies the kubelet's
//! serving certificate against the cluster CA, and scrapes only this test's
//! node (`--node-selector`).
//!
//! Cluster-scoped objects (the APIService, the ClusterRole and its bindings,
//! the RoleBinding in kube-system, the node) are deleted when the test ends,
//! failed or not.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::test_host::{TestHost, not_root};
use crate::support::*;
use serde_json::json;

/// Bound of each wait on metrics-server.
const WAIT: Duration = Duration::from_secs(90);

/// The APIService metrics-server serves (cluster-wide, one at a time).
const APISERVICE: &str = "v1beta1.metrics.k8s.io";

#[tokio::test]
async fn kubectl_top_shows_mock_pods_through_metrics_server() {
    if not_root() {
        eprintln!("SKIPPED: the test host (a network namespace) needs root");
        return;
    }
    eprintln!("top: building or finding metrics-server (cargo xtask metrics-server-path)");
    let metrics_server = tokio::task::spawn_blocking(|| {
        let out = vk_test_support::xtask(["metrics-server-path"])
            .expect("cargo xtask metrics-server-path");
        PathBuf::from(
            out.last_line()
                .expect("metrics-server-path printed nothing"),
        )
    })
    .await
    .unwrap();
    eprintln!("top: metrics-server at {}", metrics_server.display());

    let host = TestHost::create("top").expect("network namespace and veth pair (iproute2, root)");
    let (cluster, ns) = cluster_and_namespace("top").await;
    let name = unique_name("top");
    // Declared before the node: it drops after the node's process has
    // stopped, so the node object it deletes stays deleted.
    let work = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup {
        vkcp: cluster.vkcp().to_path_buf(),
        kubeconfig: cluster.kubeconfig().to_path_buf(),
        objects: vec![format!("node/{name}")],
        metrics_server: None,
        log: work.path().join("metrics-server.log"),
    };
    let node_label = format!("vk-test.io/top={name}");
    let (_node, _kubelet) = host
        .start_node(&cluster, &name, &["--node-label", &node_label])
        .await;
    let api_port = cluster
        .apiserver_port()
        .expect("apiserver port in the kubeconfig");
    let _apiserver = host.forward("127.0.0.1", api_port, api_port).await;
    run_app(&cluster, ns.name(), &name).await;

    let role = format!("{}-metrics-server", ns.name());
    let sa = "metrics-server";
    cleanup.objects.extend([
        format!("clusterrole/{role}"),
        format!("clusterrolebinding/{role}"),
        format!("clusterrolebinding/{role}-auth-delegator"),
        format!("-n kube-system rolebinding/{role}-auth-reader"),
    ]);
    let ms_port = free_port().expect("free port");
    let manifests = rbac_and_service(ns.name(), sa, &role, &host.ip, ms_port);
    apply(&cluster, work.path(), "rbac.json", &manifests).await;

    // Its own kubeconfig: the cluster from the admin kubeconfig, the
    // ServiceAccount's token as the user.
    let token = cluster
        .kubectl(["create", "token", sa, "-n", ns.name(), "--duration", "1h"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let ms_kubeconfig = work.path().join("kubeconfig");
    cluster
        .write_token_kubeconfig(token.trim(), &ms_kubeconfig)
        .unwrap();

    let log = std::fs::File::create(&cleanup.log).unwrap();
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &host.netns])
        .arg(&metrics_server)
        .arg(format!("--kubeconfig={}", ms_kubeconfig.display()))
        .arg(format!(
            "--authentication-kubeconfig={}",
            ms_kubeconfig.display()
        ))
        .arg(format!(
            "--authorization-kubeconfig={}",
            ms_kubeconfig.display()
        ))
        .arg(format!("--bind-address={}", host.ip))
        .arg(format!("--secure-port={ms_port}"))
        .arg(format!(
            "--cert-dir={}",
            work.path().join("certs").display()
        ))
        .arg("--kubelet-preferred-address-types=InternalIP")
        .arg("--kubelet-use-node-status-port")
        .arg(format!(
            "--kubelet-certificate-authority={}",
            cluster.ca_cert_path().display()
        ))
        .arg(format!("--node-selector={node_label}"))
        .arg("--metric-resolution=10s")
        .arg("--kubelet-request-timeout=5s")
        .arg("-v=2")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start metrics-server");
    cleanup.metrics_server = Some(child);
    eprintln!(
        "top: metrics-server on {}:{ms_port} (log {})",
        host.ip,
        cleanup.log.display()
    );

    // Registered only once metrics-server listens: while an APIService is
    // unavailable, discovery of its group fails cluster-wide (namespace
    // deletion of other tests stalls on it).
    let addr = format!("{}:{ms_port}", host.ip);
    let listening = wait_for("metrics-server listens", WAIT, || {
        if let Some(status) = cleanup.exited() {
            panic!(
                "metrics-server exited ({status}):\n{}",
                cleanup.log_tail(30)
            );
        }
        let addr = addr.clone();
        async move {
            let connected = tokio::net::TcpStream::connect(addr.as_str()).await.is_ok();
            Ok(connected.then_some(()))
        }
    })
    .await;
    cleanup.check(listening, "metrics-server listens");

    cleanup
        .objects
        .insert(0, format!("apiservice/{APISERVICE}"));
    let apiservice = json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": { "name": APISERVICE },
        "spec": {
            "service": { "namespace": ns.name(), "name": "metrics-server", "port": 443 },
            "group": "metrics.k8s.io",
            "version": "v1beta1",
            "insecureSkipTLSVerify": true,
            "groupPriorityMinimum": 100,
            "versionPriority": 100
        }
    });
    apply(&cluster, work.path(), "apiservice.json", &apiservice).await;

    let started = Instant::now();
    let available = wait_for("the APIService Available", WAIT, || async {
        let out = cluster
            .kubectl(["get", "apiservice", APISERVICE, "-o", "json"])
            .await?
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let available = v["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Available" && c["status"] == "True")
        });
        Ok(available.then_some(()))
    })
    .await;
    cleanup.check(available, "the APIService becomes Available");
    eprintln!("top: {APISERVICE} Available after {:?}", started.elapsed());

    // Two scrapes make a CPU rate: about two metric resolutions.
    let top_pod = wait_for("`kubectl top pod` to list app", WAIT, || async {
        let out = cluster
            .kubectl(["top", "pod", "-n", ns.name(), "--no-headers"])
            .await?;
        let line = out
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some("app"))
            .map(str::to_string);
        Ok(line.filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() >= 3 && nonzero(cols[1], "m") && nonzero(cols[2], "Mi")
        }))
    })
    .await;
    let top_pod = cleanup.check(top_pod, "`kubectl top pod` lists app with usage");
    eprintln!(
        "top: kubectl top pod after {:?}: {top_pod}",
        started.elapsed()
    );
    let cols: Vec<&str> = top_pod.split_whitespace().collect();
    let memory_mi: u64 = cols[2].trim_end_matches("Mi").parse().unwrap();
    assert!(
        (8..=64).contains(&memory_mi),
        "the mock reports about 16 MiB: {top_pod}"
    );

    let top_node = wait_for("`kubectl top node` to show the node", WAIT, || async {
        let out = cluster
            .kubectl(["top", "node", name.as_str(), "--no-headers"])
            .await?;
        let line = out
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .map(str::to_string);
        Ok(line.filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() >= 4 && nonzero(cols[1], "m") && nonzero(cols[3], "Mi")
        }))
    })
    .await;
    let top_node = cleanup.check(top_node, "`kubectl top node` shows the node's usage");
    eprintln!("top: kubectl top node: {top_node}");

    // The locals drop in reverse: the forwarders, the node's process, then
    // `cleanup` (APIService, metrics-server, RBAC, node object), the
    // namespace and the test host.
}

/// Whether a `kubectl top` figure like `10m` or `16Mi` is a positive number
/// in `unit`.
fn nonzero(figure: &str, unit: &str) -> bool {
    figure
        .strip_suffix(unit)
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// `kubectl apply` of a JSON manifest (a List for several objects).
async fn apply(cluster: &TestCluster, dir: &Path, file: &str, manifest: &serde_json::Value) {
    let path = dir.join(file);
    std::fs::write(&path, manifest.to_string()).unwrap();
    let out = cluster
        .kubectl(["apply", "-f", path.to_str().unwrap()])
        .await
        .unwrap();
    assert!(out.success(), "{}: {}", out.command, out.stderr);
}

/// The upstream manifests' RBAC for a ServiceAccount in `ns`, and a
/// selector-less Service whose endpoints are metrics-server at `ip:port`.
fn rbac_and_service(ns: &str, sa: &str, role: &str, ip: &str, port: u16) -> serde_json::Value {
    let subject = json!([{ "kind": "ServiceAccount", "name": sa, "namespace": ns }]);
    let items = json!([
        { "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": sa, "namespace": ns } },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": role },
            "rules": [
                { "apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"] },
                { "apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"] }
            ]
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": role },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
            "subjects": subject
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": format!("{role}-auth-delegator") },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator" },
            "subjects": subject
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": format!("{role}-auth-reader"), "namespace": "kube-system" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "extension-apiserver-authentication-reader" },
            "subjects": subject
        },
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "metrics-server", "namespace": ns },
            "spec": { "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": port }] }
        },
        {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": "metrics-server-1", "namespace": ns,
                "labels": { "kubernetes.io/service-name": "metrics-server" }
            },
            "addressType": "IPv4",
            "endpoints": [{ "addresses": [ip], "conditions": { "ready": true } }],
            "ports": [{ "name": "https", "port": port, "protocol": "TCP" }]
        },
        {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {
                "name": "metrics-server", "namespace": ns,
                "labels": { "endpointslice.kubernetes.io/skip-mirror": "true" }
            },
            "subsets": [{ "addresses": [{ "ip": ip }], "ports": [{ "name": "https", "port": port, "protocol": "TCP" }] }]
        }
    ]);
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

/// metrics-server and the cluster-scoped objects of the test: killed and
/// deleted on drop, failed or not (the APIService first, so the apiserver
/// never serves discovery of an unreachable group for long).
struct Cleanup {
    vkcp: PathBuf,
    kubeconfig: PathBuf,
    /// `kind/name` for `kubectl delete`, `-n NS kind/name` when namespaced.
    objects: Vec<String>,
    metrics_server: Option<std::process::Child>,
    log: PathBuf,
}

impl Cleanup {
    /// The value of a wait that succeeded; else panics with `what`, the
    /// wait's error and metrics-server's log.
    fn check<T>(&self, waited: anyhow::Result<T>, what: &str) -> T {
        waited.unwrap_or_else(|err| {
            panic!(
                "{what}: {err:#}\n---- metrics-server log (last 60 lines) ----\n{}",
                self.log_tail(60)
            )
        })
    }

    /// metrics-server's exit status, if it has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.metrics_server
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn log_tail(&self, n: usize) -> String {
        vk_test_support::log_tail(&self.log, n)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for object in &self.objects {
            let args: Vec<&str> = object.split_whitespace().collect();
            let _ = vk_test_support::kubectl_blocking(
                &self.vkcp,
                &self.kubeconfig,
                ["delete", "--ignore-not-found", "--wait=false"]
                    .into_iter()
                    .chain(args),
            );
        }
        if let Some(mut child) = self.metrics_server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
