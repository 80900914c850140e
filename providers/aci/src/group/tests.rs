#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use vk_core::{RegistryCredential, VolumeFiles};

use super::*;

pub(super) fn settings() -> GroupSettings {
    GroupSettings {
        node: "aci-0".into(),
        region: "westeurope".into(),
        subnet_id: None,
        cluster_dns: vec!["10.0.0.10".into()],
        cluster_domain: "cluster.local".into(),
    }
}

pub(super) fn pod(spec: Value) -> ResolvedPod {
    pod_with(json!({}), spec)
}

fn pod_with(annotations: Value, spec: Value) -> ResolvedPod {
    ResolvedPod {
        pod: serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": "web", "uid": "uid-1", "annotations": annotations},
            "spec": spec,
        }))
        .unwrap(),
        ..Default::default()
    }
}

fn one(container: Value) -> ResolvedPod {
    pod(json!({"containers": [container]}))
}

pub(super) fn body(t: &Translation) -> Value {
    serde_json::to_value(&t.group).unwrap()
}

pub(super) fn invalid_message(p: &ResolvedPod) -> String {
    match container_group(p, &settings()) {
        Err(ProviderError::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn name_and_tags_carry_the_pod() {
    let t = container_group(&one(json!({"name": "c", "image": "nginx"})), &settings()).unwrap();
    assert!(
        t.name.starts_with("ns-web-") && t.name.len() <= 63,
        "{}",
        t.name
    );
    assert_eq!(t.name, group_name("ns", "web", "uid-1"));
    let tags = &t.group.tags;
    assert_eq!(tags["io.vk-rs.node"], "aci-0");
    assert_eq!(tags["io.vk-rs.pod-namespace"], "ns");
    assert_eq!(tags["io.vk-rs.pod-name"], "web");
    assert_eq!(tags["io.vk-rs.pod-uid"], "uid-1");
    let b = body(&t);
    assert_eq!(b["location"], "westeurope");
    assert_eq!(b["properties"]["osType"], "Linux");
    assert_eq!(b["properties"]["restartPolicy"], "Always");
    assert!(
        b["properties"].get("ipAddress").is_none(),
        "no ports, no VNet: no IP"
    );
    let long = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
    let mut long = long;
    long.pod.metadata.name = Some("x".repeat(200));
    let t = container_group(&long, &settings()).unwrap();
    assert_eq!(t.name.len(), 63);
}

#[test]
fn argv_is_command_then_args_exactly() {
    let cases: [(Value, Option<Value>); 4] = [
        (
            json!({"command": ["sh", "-c", "echo a b"]}),
            Some(json!(["sh", "-c", "echo a b"])),
        ),
        (
            json!({"command": ["app"], "args": ["--x", "a b"]}),
            Some(json!(["app", "--x", "a b"])),
        ),
        (json!({}), None),
        (json!({"args": ["only"]}), None),
    ];
    for (extra, want) in cases {
        let mut c = json!({"name": "c", "image": "busybox"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let p = one(c);
        if extra.get("args").is_some() && extra.get("command").is_none() {
            assert!(invalid_message(&p).contains("args but no command"));
            continue;
        }
        let b = body(&container_group(&p, &settings()).unwrap());
        assert_eq!(
            b["properties"]["containers"][0]["properties"]
                .get("command")
                .cloned(),
            want
        );
    }
}

#[test]
fn resources_round_up_to_aci_steps_and_fit_limits() {
    // (containers' resources, requests (cpu, GB) and limits (cpu, GB) per container)
    type Want = &'static [((f64, f64), Option<(Option<f64>, Option<f64>)>)];
    let cases: [(Value, Want); 7] = [
        (json!([{}]), &[((1.0, 1.5), None)]),
        (
            json!([{"requests": {"cpu": "250m", "memory": "512Mi"}}]),
            &[((0.25, 0.6), None)],
        ),
        (
            json!([{"requests": {"cpu": "1m", "memory": "1"}}]),
            &[((0.01, 0.1), None)],
        ),
        (
            json!([{"requests": {"cpu": "1.234", "memory": "1G"}}]),
            &[((1.24, 1.0), None)],
        ),
        (
            // A limit above the request: the group grows to hold it.
            json!([{"requests": {"cpu": "500m", "memory": "1G"}, "limits": {"cpu": "2", "memory": "4G"}}]),
            &[((2.0, 4.0), Some((Some(2.0), Some(4.0))))],
        ),
        (
            // Two containers: the shortfall goes to the one with the largest limit.
            json!([
                {"requests": {"cpu": "1", "memory": "1G"}},
                {"requests": {"cpu": "500m", "memory": "1G"}, "limits": {"cpu": "2"}}
            ]),
            &[((1.0, 1.0), None), ((1.0, 1.0), Some((Some(2.0), None)))],
        ),
        (
            // Limits within the sum: requests unchanged.
            json!([
                {"requests": {"cpu": "2", "memory": "2G"}},
                {"requests": {"cpu": "1", "memory": "1G"}, "limits": {"cpu": "3", "memory": "2G"}}
            ]),
            &[
                ((2.0, 2.0), None),
                ((1.0, 1.0), Some((Some(3.0), Some(2.0)))),
            ],
        ),
    ];
    for (resources, want) in cases {
        let containers: Vec<Value> = resources
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"name": format!("c{i}"), "image": "i", "resources": r}))
            .collect();
        let t = container_group(&pod(json!({"containers": containers})), &settings()).unwrap();
        for (c, ((cpu, mem), limits)) in t.group.properties.containers.iter().zip(want) {
            let r = &c.properties.resources;
            assert_eq!(
                (r.requests.cpu, r.requests.memory_in_gb),
                (*cpu, *mem),
                "{resources}"
            );
            let got = r.limits.as_ref().map(|l| (l.cpu, l.memory_in_gb));
            assert_eq!(got, *limits, "{resources}");
        }
        let total_cpu: f64 = t
            .group
            .properties
            .containers
            .iter()
            .map(|c| c.properties.resources.requests.cpu)
            .sum();
        for c in &t.group.properties.containers {
            if let Some(l) = c.properties.resources.limits.as_ref().and_then(|l| l.cpu) {
                assert!(l <= total_cpu + 1e-9, "limit {l} within group {total_cpu}");
            }
        }
    }
}

#[test]
fn gpus_need_a_sku() {
    let c = json!({"name": "c", "image": "i", "resources": {"limits": {"nvidia.com/gpu": "2"}}});
    assert!(invalid_message(&one(c.clone())).contains(ANNOTATION_GPU_SKU));
    let p = pod_with(
        json!({ANNOTATION_GPU_SKU: "V100"}),
        json!({"containers": [c]}),
    );
    let b = body(&container_group(&p, &settings()).unwrap());
    let r = &b["properties"]["containers"][0]["properties"]["resources"];
    assert_eq!(r["requests"]["gpu"], json!({"count": 2, "sku": "V100"}));
    assert_eq!(r["limits"]["gpu"], json!({"count": 2, "sku": "V100"}));
}

#[test]
fn secret_env_goes_as_secure_value_only() {
    let mut p = one(json!({"name": "c", "image": "i", "env": [
        {"name": "PLAIN", "value": "p"},
        {"name": "TOKEN", "value": "s3cret"},
        {"name": "EMPTY"}
    ]}));
    p.secret_env = BTreeMap::from([("c".to_string(), BTreeSet::from(["TOKEN".to_string()]))]);
    let b = body(&container_group(&p, &settings()).unwrap());
    assert_eq!(
        b["properties"]["containers"][0]["properties"]["environmentVariables"],
        json!([
            {"name": "PLAIN", "value": "p"},
            {"name": "TOKEN", "secureValue": "s3cret"},
            {"name": "EMPTY", "value": ""}
        ])
    );
}

#[test]
fn init_containers_run_first() {
    let mut p = pod(json!({
        "initContainers": [{"name": "setup", "image": "busybox", "command": ["sh", "-c", "true"], "env": [{"name": "K", "value": "v"}]}],
        "containers": [{"name": "c", "image": "i"}]
    }));
    p.secret_env = BTreeMap::from([("setup".to_string(), BTreeSet::from(["K".to_string()]))]);
    let b = body(&container_group(&p, &settings()).unwrap());
    assert_eq!(
        b["properties"]["initContainers"],
        json!([{"name": "setup", "properties": {
            "image": "busybox", "command": ["sh", "-c", "true"],
            "environmentVariables": [{"name": "K", "secureValue": "v"}]
        }}])
    );
}

#[test]
fn sidecars_run_as_containers_of_the_group_and_say_so() {
    let mut p = pod(json!({
        "restartPolicy": "Never",
        "initContainers": [
            {"name": "setup", "image": "busybox", "command": ["true"]},
            {"name": "proxy", "image": "envoy", "restartPolicy": "Always",
                "ports": [{"containerPort": 15001}],
                "resources": {"requests": {"cpu": "500m", "memory": "1G"}}},
            {"name": "migrate", "image": "busybox", "command": ["true"]}
        ],
        "containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "1", "memory": "1G"}}}]
    }));
    p.pod.metadata.name = Some("web".into());
    let t = container_group(&p, &settings()).unwrap();
    let b = body(&t);
    let names = |list: &str| -> Vec<String> {
        b["properties"][list]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("containers"), ["c", "proxy"]);
    assert_eq!(names("initContainers"), ["setup", "migrate"]);
    let proxy = &b["properties"]["containers"][1]["properties"];
    assert_eq!(proxy["image"], "envoy");
    assert_eq!(
        proxy["resources"]["requests"],
        json!({"cpu": 0.5, "memoryInGB": 1.0})
    );
    assert_eq!(
        b["properties"]["ipAddress"]["ports"],
        json!([{"port": 15001, "protocol": "TCP"}])
    );
    assert_eq!(b["tags"][TAG_SIDECARS], "proxy");
    let notes: Vec<_> = t
        .notes
        .iter()
        .filter(|n| n.reason == "SidecarRunsAsContainer")
        .collect();
    assert_eq!(notes.len(), 1, "{:?}", t.notes);
    let m = &notes[0].message;
    assert!(
        m.contains("\"proxy\"") && m.contains("ACI has no sidecars"),
        "{m}"
    );
    assert!(
        m.contains("[\"migrate\"] listed after it run without it"),
        "{m}"
    );
    assert!(m.contains("restartPolicy (Never)"), "{m}");

    // No sidecar: no tag, no note.
    let plain = container_group(&one(json!({"name": "c", "image": "i"})), &settings()).unwrap();
    assert!(!plain.group.tags.contains_key(TAG_SIDECARS));
    assert!(
        plain
            .notes
            .iter()
            .all(|n| n.reason != "SidecarRunsAsContainer")
    );
}

#[test]
fn probes_map_or_become_notes() {
    let p = one(json!({"name": "c", "image": "i",
        "ports": [{"name": "http", "containerPort": 8080}],
        "livenessProbe": {"exec": {"command": ["cat", "/ok"]}, "periodSeconds": 5},
        "readinessProbe": {"httpGet": {"port": "http", "path": "/ready", "scheme": "HTTP",
            "httpHeaders": [{"name": "X", "value": "y"}]}, "failureThreshold": 3},
        "startupProbe": {"exec": {"command": ["true"]}}
    }));
    let t = container_group(&p, &settings()).unwrap();
    let b = body(&t);
    let props = &b["properties"]["containers"][0]["properties"];
    assert_eq!(
        props["livenessProbe"],
        json!({"exec": {"command": ["cat", "/ok"]}, "periodSeconds": 5})
    );
    assert_eq!(
        props["readinessProbe"],
        json!({"httpGet": {"path": "/ready", "port": 8080, "scheme": "http",
            "httpHeaders": [{"name": "X", "value": "y"}]}, "failureThreshold": 3})
    );
    assert_eq!(t.notes.len(), 1);
    assert!(
        t.notes[0].message.contains("startup probe"),
        "{:?}",
        t.notes
    );
    assert_eq!(
        b["properties"]["ipAddress"],
        json!({"ports": [{"port": 8080, "protocol": "TCP"}], "type": "Public"})
    );

    let tcp = one(json!({"name": "c", "image": "i", "livenessProbe": {"tcpSocket": {"port": 80}}}));
    let t = container_group(&tcp, &settings()).unwrap();
    assert!(
        body(&t)["properties"]["containers"][0]["properties"]
            .get("livenessProbe")
            .is_none()
    );
    assert_eq!(t.notes[0].reason, "ProbeNotSupported");
    assert!(
        t.notes[0].message.contains("tcpSocket liveness"),
        "{:?}",
        t.notes
    );

    let bad =
        one(json!({"name": "c", "image": "i", "readinessProbe": {"httpGet": {"port": "nope"}}}));
    assert!(invalid_message(&bad).contains("no port named \"nope\""));
}

#[test]
fn volumes_become_empty_dirs_and_secret_volumes() {
    let mut p = pod(json!({
        "containers": [{"name": "c", "image": "i", "volumeMounts": [
            {"name": "scratch", "mountPath": "/tmp/s"},
            {"name": "conf", "mountPath": "/etc/conf", "readOnly": true},
            {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
        ]}],
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "conf", "configMap": {"name": "cm"}},
            {"name": "kube-api-access-x", "projected": {"sources": []}}
        ]
    }));
    p.volumes.insert(
        "conf".into(),
        VolumeFiles {
            files: BTreeMap::from([("app.yaml".into(), b"a: 1\n".to_vec())]),
            ..Default::default()
        },
    );
    p.volumes.insert(
        "kube-api-access-x".into(),
        VolumeFiles {
            files: BTreeMap::from([
                ("token".into(), b"jwt".to_vec()),
                ("namespace".into(), b"ns".to_vec()),
            ]),
            sensitive: BTreeSet::from(["token".into()]),
            ..Default::default()
        },
    );
    let b = body(&container_group(&p, &settings()).unwrap());
    assert_eq!(
        b["properties"]["volumes"],
        json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "conf", "secret": {"app.yaml": "YTogMQo="}},
            {"name": "kube-api-access-x", "secret": {"namespace": "bnM=", "token": "and0"}}
        ])
    );
    assert_eq!(
        b["properties"]["containers"][0]["properties"]["volumeMounts"][1],
        json!({"name": "conf", "mountPath": "/etc/conf", "readOnly": true})
    );

    let host = pod(json!({"containers": [{"name": "c", "image": "i"}],
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}));
    assert!(
        invalid_message(&host).contains("hostPath volume"),
        "{}",
        invalid_message(&host)
    );
    let sub = pod(json!({"containers": [{"name": "c", "image": "i",
        "volumeMounts": [{"name": "s", "mountPath": "/x", "subPath": "a"}]}],
        "volumes": [{"name": "s", "emptyDir": {}}]}));
    assert!(invalid_message(&sub).contains("subPath"));
}

#[test]
fn pull_secrets_become_registry_credentials() {
    let mut p = one(json!({"name": "c", "image": "myreg.azurecr.io/app:1"}));
    let cred = |registry: &str, user: &str, password: &str| RegistryCredential {
        registry: registry.into(),
        username: user.into(),
        password: password.into(),
        identity_token: None,
        auth: None,
    };
    p.pull_credentials = vec![
        cred("myreg.azurecr.io", "u", "p"),
        cred("https://index.docker.io/v1/", "d", "q"),
        cred("myreg.azurecr.io/team", "other", "x"),
    ];
    let b = body(&container_group(&p, &settings()).unwrap());
    assert_eq!(
        b["properties"]["imageRegistryCredentials"],
        json!([
            {"server": "myreg.azurecr.io", "username": "u", "password": "p"},
            {"server": "index.docker.io", "username": "d", "password": "q"}
        ])
    );
}

#[test]
fn policy_network_and_annotations() {
    let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app";
    let p = pod_with(
        json!({ANNOTATION_IDENTITY: id, ANNOTATION_PRIORITY: "Spot", ANNOTATION_SKU: "Confidential", ANNOTATION_CCE_POLICY: "cG9saWN5"}),
        json!({"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}],
            "dnsPolicy": "None", "dnsConfig": {"nameservers": ["10.0.0.10"], "searches": ["ns.svc.cluster.local", "svc.cluster.local"],
                "options": [{"name": "ndots", "value": "5"}]}}),
    );
    let mut s = settings();
    s.subnet_id = Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/aci".into());
    let b = body(&container_group(&p, &s).unwrap());
    let props = &b["properties"];
    assert_eq!(props["restartPolicy"], "OnFailure");
    assert_eq!(props["priority"], "Spot");
    assert_eq!(props["sku"], "Confidential");
    assert_eq!(
        props["confidentialComputeProperties"],
        json!({"ccePolicy": "cG9saWN5"})
    );
    assert_eq!(
        b["identity"],
        json!({"type": "UserAssigned", "userAssignedIdentities": {id: {}}})
    );
    assert_eq!(
        props["subnetIds"],
        json!([{"id": s.subnet_id.clone().unwrap()}])
    );
    assert_eq!(props["ipAddress"], json!({"ports": [], "type": "Private"}));
    assert_eq!(
        props["dnsConfig"],
        json!({"nameServers": ["10.0.0.10"], "searchDomains": "ns.svc.cluster.local svc.cluster.local", "options": "ndots:5"})
    );

    let cases = [
        (
            json!({ANNOTATION_PRIORITY: "Cheap"}),
            "neither Spot nor Regular",
        ),
        (json!({ANNOTATION_SKU: "Huge"}), "is not Standard"),
        (json!({ANNOTATION_CCE_POLICY: "x"}), "needs"),
        (
            json!({ANNOTATION_IDENTITY: "not-an-id"}),
            "user-assigned managed identity",
        ),
    ];
    for (annotations, want) in cases {
        let p = pod_with(
            annotations,
            json!({"containers": [{"name": "c", "image": "i"}]}),
        );
        assert!(invalid_message(&p).contains(want), "{want}");
    }
    let sctp = one(
        json!({"name": "c", "image": "i", "ports": [{"containerPort": 1, "protocol": "SCTP"}]}),
    );
    assert!(invalid_message(&sctp).contains("no SCTP ports"));
}

fn azure_file_pod(read_only: Option<bool>) -> ResolvedPod {
    let mut source = json!({"secretName": "storage", "shareName": "data"});
    if let Some(ro) = read_only {
        source["readOnly"] = json!(ro);
    }
    pod(json!({
        "containers": [{"name": "c", "image": "i",
            "volumeMounts": [{"name": "share", "mountPath": "/data"}]}],
        "volumes": [{"name": "share", "azureFile": source}]
    }))
}

fn storage_secret(entries: &[(&str, &str)]) -> AzureFileSecrets {
    AzureFileSecrets::from([(
        "storage".to_string(),
        Some(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        ),
    )])
}

#[test]
fn azure_file_takes_the_account_and_key_from_its_secret() {
    let p = azure_file_pod(Some(true));
    assert_eq!(azure_file_secret_names(&p), ["storage"]);
    let secrets = storage_secret(&[
        (AZURE_STORAGE_ACCOUNT_NAME, "acct\n"),
        (AZURE_STORAGE_ACCOUNT_KEY, "a2V5PT0="),
        ("other", "x"),
    ]);
    let t = container_group_with(&p, &settings(), &secrets).unwrap();
    let b = body(&t);
    assert_eq!(
        b["properties"]["volumes"],
        json!([{"name": "share", "azureFile": {
            "shareName": "data", "storageAccountName": "acct",
            "storageAccountKey": "a2V5PT0=", "readOnly": true
        }}])
    );
    assert_eq!(
        b["properties"]["containers"][0]["properties"]["volumeMounts"],
        json!([{"name": "share", "mountPath": "/data"}])
    );
    // Printed (a debug log of the group), the key is not there.
    let printed = format!("{t:?}");
    assert!(printed.contains("acct") && !printed.contains("a2V5PT0="));

    // readOnly false or absent: a writable share (nothing sent).
    for ro in [Some(false), None] {
        let b = body(&container_group_with(&azure_file_pod(ro), &settings(), &secrets).unwrap());
        assert!(
            b["properties"]["volumes"][0]["azureFile"]
                .get("readOnly")
                .is_none(),
            "{ro:?}"
        );
    }
}

#[test]
fn azure_file_without_its_secret_or_keys_is_refused_saying_which() {
    let p = azure_file_pod(None);
    let refused = |secrets: &AzureFileSecrets| match container_group_with(&p, &settings(), secrets)
    {
        Err(ProviderError::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    let missing = refused(&AzureFileSecrets::from([("storage".to_string(), None)]));
    assert!(
        missing.contains("\"share\"") && missing.contains("Secret \"storage\" not found"),
        "{missing}"
    );
    // Without any Secret read (container_group): the same refusal.
    assert!(invalid_message(&p).contains("not found"));
    let no_key = refused(&storage_secret(&[(AZURE_STORAGE_ACCOUNT_NAME, "acct")]));
    assert!(
        no_key.contains("no key \"azurestorageaccountkey\""),
        "{no_key}"
    );
    let no_name = refused(&storage_secret(&[(AZURE_STORAGE_ACCOUNT_KEY, "k")]));
    assert!(
        no_name.contains("no key \"azurestorageaccountname\""),
        "{no_name}"
    );
    let empty = refused(&storage_secret(&[
        (AZURE_STORAGE_ACCOUNT_NAME, "acct"),
        (AZURE_STORAGE_ACCOUNT_KEY, " \n"),
    ]));
    assert!(empty.contains("is empty"), "{empty}");
    // The refusal never quotes the key.
    let with_key = storage_secret(&[(AZURE_STORAGE_ACCOUNT_KEY, "s3cretkey")]);
    assert!(!refused(&with_key).contains("s3cretkey"));
}
