//! Many pods at once: a Deployment scheduled to the ACI node, fifty pods
//! through injected ARM faults, a SIGKILLed `vk-aci` coming back to ten
//! running pods, and short-lived tokens.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use vk_test_support::{FakeArmOptions, is_ready, phase, wait_for, wait_node_ready, wait_pods};

use super::rig::{RUNNING_WITHIN, Rig, group_of};

/// Pods by name → the name of their group.
fn groups_by_pod(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .map(|p| (p.metadata.name.clone().unwrap(), group_of(p)))
        .collect()
}

/// How many groups each pod name had created (by the group's tags).
fn creations_per_pod(rig: &Rig) -> BTreeMap<String, usize> {
    let mut per_pod = BTreeMap::new();
    for (_, tags) in rig.arm.created_groups() {
        let name = tags["io.vk-rs.pod-name"].as_str().unwrap_or("").to_string();
        *per_pod.entry(name).or_default() += 1;
    }
    per_pod
}

/// Waits until the fake holds no group at all.
async fn wait_no_group(rig: &Rig, within: Duration) {
    wait_for("every group deleted", within, || async {
        let left = rig.arm.group_names();
        if left.is_empty() {
            Ok(Some(()))
        } else {
            anyhow::bail!("{} groups left: {left:?}", left.len())
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_deployment_of_3_runs_as_3_container_groups_with_their_ips() {
    let rig = Rig::start("aci-deploy").await;
    wait_node_ready(&rig.client, &rig.node.name, Duration::from_secs(40)).await;
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": rig.node.name},
                    "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                    "containers": [{"name": "web", "image": "nginx:1.27",
                        "ports": [{"containerPort": 80}]}]
                }
            }
        }
    });
    Api::<Deployment>::namespaced(rig.client.clone(), rig.ns())
        .create(
            &PostParams::default(),
            &serde_json::from_value(deploy).unwrap(),
        )
        .await
        .unwrap();
    let pods = wait_pods(
        &rig.client,
        rig.ns(),
        &ListParams::default().labels("app=web"),
        Duration::from_secs(60),
        "3 pods Running and Ready",
        |l| l.len() == 3 && l.iter().all(|p| phase(p) == "Running" && is_ready(p)),
    )
    .await;
    let groups = groups_by_pod(&pods);
    let mut names = rig.arm.group_names();
    names.sort();
    let mut want: Vec<String> = groups.values().cloned().collect();
    want.sort();
    assert_eq!(names, want, "one group per replica, and nothing else");
    for p in &pods {
        let group = &groups[p.metadata.name.as_ref().unwrap()];
        let ip = rig.arm.group_ip(group).unwrap();
        assert_eq!(
            p.status.as_ref().unwrap().pod_ip.as_deref(),
            Some(ip.as_str()),
            "{group}"
        );
        assert_eq!(
            p.spec.as_ref().unwrap().node_name.as_deref(),
            Some(rig.node.name.as_str())
        );
    }
    let mut ips: Vec<_> = names.iter().filter_map(|g| rig.arm.group_ip(g)).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "distinct IPs: {ips:?}");
    // Every body was checked: the three PUTs among them.
    let requests = rig.arm.requests();
    let puts: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.body.is_some())
        .collect();
    assert_eq!(puts.len(), 3, "one PUT per replica");
    assert!(puts.iter().all(|r| r.status == 201));
    rig.finish().await;
}

/// 20 % of ARM calls fail (429 before the call is served, 500 after it,
/// the answer lost): every pod still runs, each pod name had exactly one
/// group created (a retried PUT of an existing group is an update), and
/// deleting the pods leaves no group behind.
#[tokio::test]
async fn fifty_pods_converge_through_20_percent_faults_with_no_duplicate_group() {
    const PODS: usize = 50;
    let rig = Rig::start("aci-faults").await;
    wait_node_ready(&rig.client, &rig.node.name, Duration::from_secs(40)).await;
    let first_faulted = rig.arm.requests().len();
    rig.arm.fault_share(0.2, 1);
    for i in 0..PODS {
        // A port: the group gets an IP (one with none has no address).
        rig.pod(
            &format!("p{i:02}"),
            json!({"containers": [{"name": "main", "image": "nginx:1.27",
                "ports": [{"containerPort": 80}]}]}),
        )
        .await;
    }
    let pods = wait_pods(
        &rig.client,
        rig.ns(),
        &ListParams::default(),
        Duration::from_secs(240),
        "50 pods Running",
        |l| l.len() == PODS && l.iter().all(|p| phase(p) == "Running"),
    )
    .await;
    for p in &pods {
        let group = group_of(p);
        let ip = rig.arm.group_ip(&group).expect("the pod's group exists");
        assert_eq!(
            p.status.as_ref().unwrap().pod_ip.as_deref(),
            Some(ip.as_str())
        );
    }
    let per_pod = creations_per_pod(&rig);
    assert_eq!(per_pod.len(), PODS, "{per_pod:?}");
    let duplicated: Vec<_> = per_pod.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        duplicated.is_empty(),
        "groups created twice: {duplicated:?}"
    );
    assert_eq!(rig.arm.group_names().len(), PODS);

    // The faults were real: about a fifth of the calls, both kinds.
    let faulted = rig.arm.requests()[first_faulted..].to_vec();
    let (n429, n500) = (
        faulted.iter().filter(|r| r.status == 429).count(),
        faulted.iter().filter(|r| r.status == 500).count(),
    );
    assert!(
        n429 >= 10 && n500 >= 10 && (n429 + n500) * 10 >= faulted.len(),
        "{n429} 429s and {n500} 500s in {} calls",
        faulted.len()
    );

    Api::<Pod>::namespaced(rig.client.clone(), rig.ns())
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    wait_no_group(&rig, Duration::from_secs(240)).await;
    wait_pods(
        &rig.client,
        rig.ns(),
        &ListParams::default(),
        Duration::from_secs(60),
        "every pod gone",
        |l| l.is_empty(),
    )
    .await;
    assert_eq!(
        rig.arm.created_groups().len(),
        PODS,
        "no group created while deleting"
    );
    // The harsh case was met: a write served whose answer was lost.
    let lost_writes = rig.arm.requests()[first_faulted..]
        .iter()
        .filter(|r| r.status == 500 && (r.method == "PUT" || r.method == "DELETE"))
        .count();
    assert!(lost_writes > 0, "no PUT or DELETE answered 500");
    rig.arm.fault_share(0.0, 0);
    rig.finish().await;
}

/// SIGKILL with ten pods running; while it is away one pod is
/// force-deleted and one deleted gracefully. Back, it recreates nothing,
/// deletes both groups, and the gracefully deleted pod leaves the API.
#[tokio::test]
async fn a_sigkilled_vk_aci_adopts_its_ten_groups_and_deletes_what_was_deleted_meanwhile() {
    let mut rig = Rig::start("aci-adopt").await;
    let mut groups = BTreeMap::new();
    for i in 0..10 {
        let name = format!("s{i}");
        groups.insert(name.clone(), group_of(&rig.sleeper(&name).await));
    }
    wait_pods(
        &rig.client,
        rig.ns(),
        &ListParams::default(),
        RUNNING_WITHIN,
        "10 pods Running",
        |l| l.len() == 10 && l.iter().all(|p| phase(p) == "Running"),
    )
    .await;
    rig.node.process.kill();
    let pods = Api::<Pod>::namespaced(rig.client.clone(), rig.ns());
    // Force-deleted: gone from the API, its group an orphan.
    pods.delete(
        "s8",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Deleted gracefully: it waits, terminating, for its kubelet.
    pods.delete("s9", &DeleteParams::default()).await.unwrap();
    let puts_before = rig.puts();
    let created_before = rig.arm.created_groups().len();
    assert_eq!(created_before, 10);
    rig.node.process.restart().unwrap();
    for gone in ["s8", "s9"] {
        rig.wait_group_gone(&groups[gone], Duration::from_secs(40))
            .await;
    }
    wait_pods(
        &rig.client,
        rig.ns(),
        &ListParams::default(),
        Duration::from_secs(40),
        "s9 gone from the API, 8 pods Running",
        |l| l.len() == 8 && l.iter().all(|p| phase(p) == "Running"),
    )
    .await;
    // A few more status polls: still nothing recreated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let live = rig.arm.group_names();
    for i in 0..8 {
        assert!(live.contains(&groups[&format!("s{i}")]), "s{i}: {live:?}");
    }
    assert_eq!(live.len(), 8, "{live:?}");
    assert_eq!(rig.puts(), puts_before, "no PUT after the restart");
    assert_eq!(rig.arm.created_groups().len(), created_before);
    rig.finish().await;
}

/// Tokens that live 2 minutes. Left to azure_core, such a token would be
/// fetched again for every ARM call (its bearer policy and azure_identity's
/// cache renew within 5 minutes of expiry); `vk-aci`'s cache renews it at
/// half-life. So the test runs just past one half-life (about a minute,
/// the shortest wait that shows a renewal) with a pod created before the
/// renewal and deleted after it, and the fake refuses expired tokens
/// (401 `ExpiredAuthenticationToken`): a call made with a stale token
/// would show.
#[tokio::test]
async fn tokens_that_expire_every_2_minutes_are_renewed_with_no_failed_call() {
    let rig = Rig::start_with(
        "aci-tokens",
        FakeArmOptions {
            token_lifetime: Duration::from_secs(120),
            ..Default::default()
        },
        "s3cret",
    )
    .await;
    let token_requests = |rig: &Rig| {
        rig.arm
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
            .collect::<Vec<_>>()
    };
    let created = rig.sleeper("app").await;
    rig.wait_running("app").await;
    assert_eq!(token_requests(&rig).len(), 1, "one token before half-life");
    wait_for("a second token", Duration::from_secs(90), || async {
        let n = token_requests(&rig).len();
        if n >= 2 {
            Ok(Some(()))
        } else {
            anyhow::bail!("{n} token requests")
        }
    })
    .await
    .unwrap();
    Api::<Pod>::namespaced(rig.client.clone(), rig.ns())
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    rig.wait_group_gone(&group_of(&created), Duration::from_secs(30))
        .await;

    let tokens = token_requests(&rig);
    assert!(
        tokens.iter().all(|r| r.status == 200),
        "token requests: {:?}",
        tokens.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(
        tokens
            .iter()
            .all(|r| r.response.as_ref().unwrap()["expires_in"] == 120)
    );
    // Renewed at half-life: the second token about a minute after the first.
    let gap = tokens[1].at - tokens[0].at;
    assert!(
        gap >= Duration::from_secs(55) && gap <= Duration::from_secs(75),
        "renewed after {gap:?}"
    );
    assert_eq!(tokens.len(), 2, "no token fetched per call");
    let requests = rig.arm.requests();
    let arm_calls: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/subscriptions/"))
        .collect();
    let after_renewal = arm_calls.iter().filter(|r| r.at > tokens[1].at).count();
    assert!(
        arm_calls.len() > 30 && after_renewal > 3,
        "{} ARM calls, {after_renewal} after the renewal",
        arm_calls.len()
    );
    let refused: Vec<_> = arm_calls
        .iter()
        .filter(|r| r.status == 401)
        .map(|r| (&r.method, &r.path, &r.response))
        .collect();
    assert!(refused.is_empty(), "calls refused: {refused:?}");
    rig.finish().await;
}
