//! Volume files: configMap, secret, downwardAPI and the service-account
//! token written by the task's first container from the pod's secret, and
//! volume kinds Fargate cannot honour failing the pod.
//!
//! moto runs no container, so the test checks the task definition's shape
//! and the secret's content, then runs `vk-fargate write-volumes` itself on
//! that content, as the writer container would.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use aws_sdk_ecs::types::TaskDefinitionField;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;
use vk_fargate::volume_files::{VolumeManifest, WRITER_CONTAINER};

use crate::support::*;

#[tokio::test]
async fn volume_files_are_written_by_a_first_container_from_the_pods_secret_only() {
    let (cluster, ns, node) = FargateNode::ready("volumes").await;
    let client = cluster.client();
    let config_text = format!("level: {}", unique_name("debug"));
    let password = format!("hunter2-{}", unique_name("v"));
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "data": {"app.yaml": config_text},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "stringData": {"password": password},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut spec = pod(
        "files",
        &node.name,
        json!({"volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "creds", "mountPath": "/run/creds"},
            {"name": "info", "mountPath": "/etc/podinfo"},
        ]}),
    );
    spec["metadata"]["labels"] = json!({"tier": "web"});
    spec["spec"]["volumes"] = json!([
        {"name": "cfg", "configMap": {"name": "app", "defaultMode": 0o440}},
        {"name": "creds", "secret": {"secretName": "db"}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        ]}},
    ]);
    let created = create_pod(&client, ns.name(), spec).await;
    let running = wait_running(&client, ns.name(), "files", RUNNING_WITHIN).await;
    // The writer is not one of the pod's containers.
    let status = running.status.unwrap();
    assert!(
        status.init_container_statuses.is_none(),
        "{:?}",
        status.init_container_statuses
    );
    assert_eq!(status.container_statuses.unwrap().len(), 1);

    let task = node.task_of(created.metadata.uid.as_deref().unwrap()).await;
    let described = node
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(task.task_definition_arn().unwrap())
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let definition = described.task_definition().unwrap();
    let defs = definition.container_definitions();
    let names: Vec<&str> = defs.iter().filter_map(|d| d.name()).collect();
    assert_eq!(names, [WRITER_CONTAINER, "main"]);
    let writer = &defs[0];
    assert_eq!(writer.essential(), Some(false));
    assert_eq!(
        writer.image(),
        Some(format!("vk-rs/vk-fargate:{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(writer.command(), ["write-volumes", "--root", "/vk-volumes"]);
    let main = &defs[1];
    let deps: Vec<(&str, &str)> = main
        .depends_on()
        .iter()
        .map(|d| (d.container_name(), d.condition().as_str()))
        .collect();
    assert_eq!(deps, [(WRITER_CONTAINER, "SUCCESS")]);
    // The service-account token volume the apiserver added is there too.
    let token_volume = definition
        .volumes()
        .iter()
        .filter_map(|v| v.name())
        .find(|n| n.starts_with("kube-api-access-"))
        .expect("the token volume")
        .to_string();
    let volumes: Vec<&str> = definition
        .volumes()
        .iter()
        .filter_map(|v| v.name())
        .collect();
    for v in ["cfg", "creds", "info"] {
        assert!(volumes.contains(&v), "{volumes:?}");
    }
    let mounts: BTreeMap<&str, (&str, bool)> = main
        .mount_points()
        .iter()
        .map(|m| {
            (
                m.source_volume().unwrap(),
                (m.container_path().unwrap(), m.read_only().unwrap()),
            )
        })
        .collect();
    assert_eq!(mounts["cfg"], ("/etc/app", true));
    assert_eq!(mounts["creds"], ("/run/creds", true));
    assert_eq!(mounts["info"], ("/etc/podinfo", true));
    assert_eq!(
        mounts[token_volume.as_str()],
        ("/var/run/secrets/kubernetes.io/serviceaccount", true)
    );
    let writer_mounts: Vec<&str> = writer
        .mount_points()
        .iter()
        .filter_map(|m| m.container_path())
        .collect();
    assert!(
        writer_mounts.contains(&"/vk-volumes/cfg"),
        "{writer_mounts:?}"
    );

    // The content: in the pod's secret, through the writer's ECS secret.
    let value_from = writer.secrets()[0].value_from();
    assert_eq!(writer.secrets()[0].name(), "VK_VOLUMES");
    let (secret_arn, key) = value_from.trim_end_matches("::").rsplit_once(':').unwrap();
    assert_eq!(key, "vk_volumes");
    let stored = node
        .clients
        .secrets
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(stored.secret_string().unwrap()).unwrap();
    let manifest_text = stored[key].as_str().unwrap().to_string();
    let manifest = VolumeManifest::from_json(&manifest_text).unwrap();
    let file =
        |v: &str, p: &str| String::from_utf8(manifest.volumes[v].files[p].0.clone()).unwrap();
    assert_eq!(file("cfg", "app.yaml"), config_text);
    assert_eq!(file("creds", "password"), password);
    // (The apiserver may add the node's topology labels to the pod.)
    let labels = file("info", "labels");
    assert!(labels.lines().any(|l| l == "tier=\"web\""), "{labels}");
    let token = file(&token_volume, "token");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert!(file(&token_volume, "ca.crt").contains("BEGIN CERTIFICATE"));

    // Nowhere in the task definition, its tags or the task's tags.
    let shown = format!("{described:?} {:?}", task.tags());
    for content in [&config_text, &password, &token] {
        assert!(
            !shown.contains(content.as_str()),
            "{content} leaked: {shown}"
        );
    }

    // What the writer container does with it.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vk-fargate"))
        .args(["write-volumes", "--root"])
        .arg(dir.path())
        .env("VK_VOLUMES", &manifest_text)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let root = dir.path();
    assert_eq!(
        std::fs::read_to_string(root.join("cfg/app.yaml")).unwrap(),
        config_text
    );
    let mode = std::fs::metadata(root.join("cfg/app.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o440);
    assert_eq!(
        std::fs::read_to_string(root.join("creds/password")).unwrap(),
        password
    );
    assert_eq!(
        std::fs::read_to_string(root.join(&token_volume).join("token")).unwrap(),
        token
    );
}

#[tokio::test]
async fn a_volume_fargate_cannot_honour_fails_the_pod_with_a_reason_and_an_event() {
    let (cluster, ns, node) = FargateNode::ready("hostpath").await;
    let client = cluster.client();
    let mut spec = pod(
        "host",
        &node.name,
        json!({"volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
    );
    spec["spec"]["volumes"] = json!([{"name": "data", "hostPath": {"path": "/var/data"}}]);
    let created = create_pod(&client, ns.name(), spec).await;
    let failed = wait_pod(&client, ns.name(), "host", RUNNING_WITHIN, "Failed", |p| {
        phase(p) == "Failed"
    })
    .await;
    let status = failed.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("ProviderFailed"));
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("volume \"data\" cannot be honoured on Fargate")
            && message.contains("hostPath volumes are not supported"),
        "{message}"
    );
    wait_until("a ProviderCreateFailed event", RUNNING_WITHIN, || {
        let client = client.clone();
        let ns = ns.name().to_string();
        async move {
            events(&client, &ns)
                .await
                .iter()
                .any(|(reason, name)| reason == "ProviderCreateFailed" && name == "host")
        }
    })
    .await;
    assert!(
        node.tasks_of(created.metadata.uid.as_deref().unwrap())
            .await
            .is_empty(),
        "no task for a refused pod"
    );
}

#[test]
fn write_volumes_refuses_what_it_cannot_write_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let traversal = r#"{"volumes": {"cfg": {"files": {"../../etc/passwd": "eA=="}}}}"#;
    let cases: [(&[&str], Option<&str>, i32, &str); 4] = [
        (
            &[],
            Some(traversal),
            1,
            "refusing path \"../../etc/passwd\"",
        ),
        (&[], None, 1, "VK_VOLUMES is not set"),
        (
            &[],
            Some("{\"volumes\": 3}"),
            1,
            "volume manifest is not valid",
        ),
        (
            &["--bogus"],
            Some("{}"),
            2,
            "usage: vk-fargate write-volumes",
        ),
    ];
    for (extra, manifest, code, want) in cases {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vk-fargate"));
        command
            .args(["write-volumes", "--root"])
            .arg(dir.path())
            .args(extra)
            .env_remove("VK_VOLUMES");
        if let Some(m) = manifest {
            command.env("VK_VOLUMES", m);
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{want}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("vk-fargate write-volumes: ") && stderr.contains(want),
            "{stderr}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}
