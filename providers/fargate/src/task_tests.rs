#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ecs::types::ContainerDefinition;
use serde_json::json;
use vk_core::provider::VolumeFiles;

use super::*;

fn config() -> FargateConfig {
    FargateConfig::parse(
        r#"
        Region = "us-east-1"
        ClusterName = "vk"
        Subnets = ["subnet-a"]
        SecurityGroups = ["sg-a"]
        ExecutionRoleArn = "arn:aws:iam::123456789012:role/exec"
        CloudWatchLogGroupName = "vk-logs"
        [Tags]
        team = "infra"
        "#,
    )
    .unwrap()
}

fn resolved(spec: serde_json::Value, secret_env: &[(&str, &str)]) -> ResolvedPod {
    resolved_with(json!({}), spec, secret_env)
}

fn resolved_with(
    annotations: serde_json::Value,
    spec: serde_json::Value,
    secret_env: &[(&str, &str)],
) -> ResolvedPod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": "ns", "name": "web", "uid": "6f1c0e4e-0000-4000-8000-000000000001",
                     "annotations": annotations},
        "spec": spec,
    }))
    .unwrap();
    let mut secrets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (c, name) in secret_env {
        secrets
            .entry(c.to_string())
            .or_default()
            .insert(name.to_string());
    }
    ResolvedPod {
        pod,
        secret_env: secrets,
        ..Default::default()
    }
}

fn plan(r: &ResolvedPod) -> ProviderResult<TaskPlan> {
    let c = config();
    plan_task(
        r,
        TaskSettings {
            node: "fargate-0",
            config: &c,
        },
    )
}

fn by_name<'a>(defs: &'a [ContainerDefinition], name: &str) -> &'a ContainerDefinition {
    defs.iter().find(|d| d.name() == Some(name)).unwrap()
}

#[test]
fn container_fields_map_to_ecs() {
    let r = resolved(
        json!({"containers": [{
            "name": "web", "image": "nginx:1.27",
            "command": ["/bin/sh", "-c"], "args": ["echo hi"], "workingDir": "/srv",
            "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP", "hostPort": 53}],
            "env": [{"name": "PLAIN", "value": "1"}, {"name": "EMPTY", "value": ""}],
            "resources": {"requests": {"memory": "100Mi"}, "limits": {"memory": "200Mi"}},
        }]}),
        &[],
    );
    let p = plan(&r).unwrap();
    let defs = p.container_definitions(None);
    assert_eq!(defs.len(), 1);
    let d = &defs[0];
    assert_eq!(d.image(), Some("nginx:1.27"));
    assert_eq!(d.entry_point(), ["/bin/sh", "-c"]);
    assert_eq!(d.command(), ["echo hi"]);
    assert_eq!(d.working_directory(), Some("/srv"));
    assert_eq!(d.essential(), Some(true));
    let ports: Vec<(Option<i32>, Option<&str>)> = d
        .port_mappings()
        .iter()
        .map(|p| (p.container_port(), p.protocol().map(|p| p.as_str())))
        .collect();
    assert_eq!(ports, [(Some(80), Some("tcp")), (Some(53), Some("udp"))]);
    let env: Vec<(&str, &str)> = d
        .environment()
        .iter()
        .map(|e| (e.name().unwrap(), e.value().unwrap()))
        .collect();
    assert_eq!(env, [("PLAIN", "1"), ("EMPTY", "")]);
    assert_eq!((d.memory_reservation(), d.memory()), (Some(100), Some(200)));
    assert!(d.secrets().is_empty() && d.depends_on().is_empty());
    let logs = d.log_configuration().unwrap();
    assert_eq!(logs.log_driver().as_str(), "awslogs");
    let options = logs.options().unwrap();
    assert_eq!(options["awslogs-group"], "vk-logs");
    assert_eq!(options["awslogs-region"], "us-east-1");
    assert_eq!(options["awslogs-stream-prefix"], p.family);
    assert!(p.family.starts_with("ns-web-"), "{}", p.family);
    assert_eq!(
        TaskPlan::log_stream(&p.family, "web", "abc"),
        format!("{}/web/abc", p.family)
    );
}

#[test]
fn secret_env_values_go_to_the_pods_secret_never_to_environment() {
    let r = resolved(
        json!({
            "initContainers": [{"name": "init", "image": "busybox",
                "env": [{"name": "TOKEN", "value": "s3cr3t-init"}]}],
            "containers": [{"name": "app", "image": "busybox", "env": [
                {"name": "PASSWORD", "value": "hunter2"},
                {"name": "USER", "value": "admin"},
                {"name": "ODD:NAME", "value": "colon"},
            ]}],
        }),
        &[("app", "PASSWORD"), ("app", "ODD:NAME"), ("init", "TOKEN")],
    );
    let p = plan(&r).unwrap();
    assert_eq!(
        p.secret_values,
        BTreeMap::from([
            ("app.#2".to_string(), "colon".to_string()),
            ("app.PASSWORD".to_string(), "hunter2".to_string()),
            ("init.TOKEN".to_string(), "s3cr3t-init".to_string()),
        ])
    );
    assert!(p.secret_name.starts_with("vk-rs/ns-web-"));
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:vk-rs/x-AbCdEf";
    let defs = p.container_definitions(Some(arn));
    let all = format!("{defs:?}");
    for value in ["hunter2", "s3cr3t-init", "colon"] {
        assert!(!all.contains(value), "{value} in the task definition");
    }
    let app = by_name(&defs, "app");
    let env: Vec<&str> = app.environment().iter().filter_map(|e| e.name()).collect();
    assert_eq!(env, ["USER"]);
    let secrets: Vec<(&str, &str)> = app
        .secrets()
        .iter()
        .map(|s| (s.name(), s.value_from()))
        .collect();
    assert_eq!(
        secrets,
        [
            ("PASSWORD", format!("{arn}:app.PASSWORD::").as_str()),
            ("ODD:NAME", format!("{arn}:app.#2::").as_str()),
        ]
    );
    assert_eq!(
        by_name(&defs, "init").secrets()[0].value_from(),
        format!("{arn}:init.TOKEN::")
    );
    // Without secret values, no secret and no `secrets`.
    let plain = plan(&resolved(
        json!({"containers": [{"name": "a", "image": "i"}]}),
        &[],
    ))
    .unwrap();
    assert!(plain.secret_values.is_empty());
    assert!(plain.container_definitions(None)[0].secrets().is_empty());
}

#[test]
fn init_containers_run_in_order_and_sidecars_start_first() {
    let r = resolved(
        json!({
            "initContainers": [
                {"name": "migrate", "image": "i"},
                {"name": "proxy", "image": "i", "restartPolicy": "Always"},
                {"name": "warm", "image": "i"},
            ],
            "containers": [{"name": "app", "image": "i"}, {"name": "worker", "image": "i"}],
        }),
        &[],
    );
    let defs = plan(&r).unwrap().container_definitions(None);
    let deps = |name: &str| -> (Option<bool>, Vec<String>) {
        let d = by_name(&defs, name);
        let deps = d
            .depends_on()
            .iter()
            .map(|x| format!("{}:{}", x.container_name(), x.condition().as_str()))
            .collect();
        (d.essential(), deps)
    };
    let cases: [(&str, bool, &[&str]); 5] = [
        ("migrate", false, &[]),
        ("proxy", false, &["migrate:SUCCESS"]),
        ("warm", false, &["migrate:SUCCESS", "proxy:START"]),
        ("app", true, &["warm:SUCCESS", "proxy:START"]),
        ("worker", true, &["warm:SUCCESS", "proxy:START"]),
    ];
    for (name, essential, want) in cases {
        assert_eq!(
            deps(name),
            (
                Some(essential),
                want.iter().map(|s| s.to_string()).collect()
            ),
            "{name}"
        );
    }
    let order: Vec<&str> = defs.iter().filter_map(|d| d.name()).collect();
    assert_eq!(order, ["migrate", "proxy", "warm", "app", "worker"]);
}

#[test]
fn task_size_counts_init_containers_and_limits() {
    let cases = [
        (
            "requests only",
            json!({"containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "300m", "memory": "700Mi"}}}]}),
            (512, 1024),
        ),
        (
            "a bigger init container",
            json!({
                "initContainers": [{"name": "i", "image": "i", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}],
                "containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "250m"}}}],
            }),
            (2048, 4096),
        ),
        (
            "limits where set",
            json!({"containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"memory": "3Gi"}}}]}),
            (512, 3072),
        ),
        (
            "nothing",
            json!({"containers": [{"name": "a", "image": "i"}]}),
            (256, 512),
        ),
    ];
    for (what, spec, (cpu, memory)) in cases {
        let p = plan(&resolved(spec, &[])).unwrap();
        assert_eq!(
            (p.size.cpu_units, p.size.memory_mib),
            (cpu, memory),
            "{what}"
        );
        let reserved: i32 = p
            .container_definitions(None)
            .iter()
            .map(|d| d.memory_reservation().unwrap())
            .sum();
        assert!(reserved <= memory as i32, "{what}: {reserved} MiB reserved");
        assert!(
            p.container_definitions(None)
                .iter()
                .all(|d| d.memory_reservation().unwrap() >= 6)
        );
    }
    // Reservations that add up to more than the task are cut to a share.
    let p = plan(&resolved(
        json!({
            "initContainers": [{"name": "i", "image": "i", "resources": {"requests": {"memory": "2Gi"}}}],
            "containers": [{"name": "a", "image": "i", "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "2Gi"}}}],
        }),
        &[],
    ))
    .unwrap();
    assert_eq!(p.size.memory_mib, 2048);
    let defs = p.container_definitions(None);
    assert_eq!(by_name(&defs, "i").memory_reservation(), Some(1024));
    assert_eq!(by_name(&defs, "a").memory_reservation(), Some(1024));
    assert_eq!(by_name(&defs, "a").memory(), Some(2048));
}

#[test]
fn network_tags_and_identity() {
    let p = plan(&resolved(
        json!({"containers": [{"name": "a", "image": "i"}]}),
        &[],
    ))
    .unwrap();
    let vpc = p.network.awsvpc_configuration().unwrap();
    assert_eq!(vpc.subnets(), ["subnet-a"]);
    assert_eq!(vpc.security_groups(), ["sg-a"]);
    assert_eq!(vpc.assign_public_ip().map(|a| a.as_str()), Some("DISABLED"));
    assert_eq!(p.capacity, CapacityProvider::LaunchType);
    assert_eq!(p.started_by, "vk-rs/6f1c0e4e-0000-4000-8000-000000000001");
    assert_eq!(p.client_token, "6f1c0e4e-0000-4000-8000-000000000001");
    assert!(p.started_by.len() <= 128 && p.client_token.len() <= 64);
    let tags: BTreeMap<&str, &str> = p
        .tags
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags["io.vk-rs.node"], "fargate-0");
    assert_eq!(tags["io.vk-rs.pod-namespace"], "ns");
    assert_eq!(tags["io.vk-rs.pod-name"], "web");
    assert_eq!(
        tags["io.vk-rs.pod-uid"],
        "6f1c0e4e-0000-4000-8000-000000000001"
    );
    assert_eq!(tags["team"], "infra");

    let overridden = plan(&resolved_with(
        json!({
            ANNOTATION_SUBNETS: "subnet-x, subnet-y",
            ANNOTATION_SECURITY_GROUPS: "sg-x",
            ANNOTATION_PUBLIC_IP: "true",
            ANNOTATION_CAPACITY_PROVIDER: "FARGATE_SPOT",
        }),
        json!({"containers": [{"name": "a", "image": "i"}]}),
        &[],
    ))
    .unwrap();
    let vpc = overridden.network.awsvpc_configuration().unwrap();
    assert_eq!(vpc.subnets(), ["subnet-x", "subnet-y"]);
    assert_eq!(vpc.security_groups(), ["sg-x"]);
    assert_eq!(vpc.assign_public_ip().map(|a| a.as_str()), Some("ENABLED"));
    assert_eq!(overridden.capacity, CapacityProvider::FargateSpot);
}

#[test]
fn emptydir_is_a_shared_task_volume_without_a_writer() {
    let p = plan(&resolved(
        json!({
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [
                {"name": "a", "image": "i", "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
                {"name": "b", "image": "i", "volumeMounts": [{"name": "scratch", "mountPath": "/in", "readOnly": true}]},
            ],
        }),
        &[],
    ))
    .unwrap();
    assert_eq!(p.volumes.len(), 1);
    assert_eq!(p.volumes[0].name(), Some("scratch"));
    assert!(!p.needs_secret());
    let defs = p.container_definitions(None);
    assert_eq!(defs.len(), 2, "no writer without volume files");
    assert_eq!(
        mounts(&defs, "a"),
        [("scratch".into(), "/scratch".into(), false)]
    );
    assert_eq!(mounts(&defs, "b"), [("scratch".into(), "/in".into(), true)]);
    assert!(by_name(&defs, "a").depends_on().is_empty());
}

fn mounts(defs: &[ContainerDefinition], n: &str) -> Vec<(String, String, bool)> {
    by_name(defs, n)
        .mount_points()
        .iter()
        .map(|m| {
            (
                m.source_volume().unwrap().to_string(),
                m.container_path().unwrap().to_string(),
                m.read_only().unwrap(),
            )
        })
        .collect()
}

fn files(pairs: &[(&str, &str)], sensitive: bool, mode: Option<i32>) -> VolumeFiles {
    let files: BTreeMap<String, Vec<u8>> = pairs
        .iter()
        .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
        .collect();
    VolumeFiles {
        sensitive: if sensitive {
            files.keys().cloned().collect()
        } else {
            BTreeSet::new()
        },
        files,
        default_mode: mode,
    }
}

/// A pod with a configMap, a secret and the token volume, its files materialised.
fn with_file_volumes() -> ResolvedPod {
    let mut r = resolved(
        json!({
            "securityContext": {"fsGroup": 2000},
            "volumes": [
                {"name": "cfg", "configMap": {"name": "app", "defaultMode": 0o440}},
                {"name": "creds", "secret": {"secretName": "db"}},
                {"name": "kube-api-access-abcde", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                {"name": "scratch", "emptyDir": {}},
            ],
            "initContainers": [{"name": "setup", "image": "i", "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
            "containers": [{"name": "web", "image": "i", "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/app"},
                {"name": "creds", "mountPath": "/run/creds", "readOnly": true},
                {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
                {"name": "scratch", "mountPath": "/tmp"},
            ]}],
        }),
        &[],
    );
    r.volumes = BTreeMap::from([
        (
            "cfg".into(),
            files(&[("app.yaml", "level: debug")], false, Some(0o440)),
        ),
        (
            "creds".into(),
            files(&[("password", "hunter2-file")], true, None),
        ),
        (
            "kube-api-access-abcde".into(),
            files(
                &[("token", "eyJ.token"), ("ca.crt", "CA")],
                true,
                Some(0o644),
            ),
        ),
    ]);
    r
}

#[test]
fn volume_files_are_written_by_a_first_container_from_the_pods_secret() {
    let r = with_file_volumes();
    let p = plan(&r).unwrap();
    let names: Vec<&str> = p.volumes.iter().filter_map(|v| v.name()).collect();
    assert_eq!(names, ["cfg", "creds", "kube-api-access-abcde", "scratch"]);
    // Bind mounts: no host path, no EFS.
    assert!(
        p.volumes
            .iter()
            .all(|v| v.host().is_none() && v.efs_volume_configuration().is_none())
    );
    assert!(p.needs_secret());
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:vk-rs/x";
    let defs = p.container_definitions(Some(arn));
    let order: Vec<&str> = defs.iter().filter_map(|d| d.name()).collect();
    assert_eq!(
        order,
        [crate::volume_files::WRITER_CONTAINER, "setup", "web"]
    );

    let writer = &defs[0];
    assert_eq!(writer.essential(), Some(false));
    assert_eq!(
        writer.image(),
        Some(format!("vk-rs/vk-fargate:{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(writer.entry_point(), ["/vk-fargate"]);
    assert_eq!(writer.command(), ["write-volumes", "--root", "/vk-volumes"]);
    assert_eq!(writer.user(), Some("0"));
    assert!(
        writer.memory_reservation().is_some(),
        "the stand-in needs one"
    );
    assert!(writer.depends_on().is_empty());
    assert_eq!(
        mounts(&defs, crate::volume_files::WRITER_CONTAINER),
        [
            ("cfg".into(), "/vk-volumes/cfg".into(), false),
            ("creds".into(), "/vk-volumes/creds".into(), false),
            (
                "kube-api-access-abcde".into(),
                "/vk-volumes/kube-api-access-abcde".into(),
                false
            ),
        ]
    );
    let secrets: Vec<(&str, &str)> = writer
        .secrets()
        .iter()
        .map(|s| (s.name(), s.value_from()))
        .collect();
    assert_eq!(
        secrets,
        [("VK_VOLUMES", format!("{arn}:vk_volumes::").as_str())]
    );

    // Everyone else waits for its success; the files are read-only.
    for name in ["setup", "web"] {
        let deps: Vec<(&str, &str)> = by_name(&defs, name)
            .depends_on()
            .iter()
            .map(|d| (d.container_name(), d.condition().as_str()))
            .collect();
        assert_eq!(
            deps[0],
            (crate::volume_files::WRITER_CONTAINER, "SUCCESS"),
            "{name}"
        );
    }
    let web_deps = by_name(&defs, "web").depends_on();
    assert_eq!(web_deps.len(), 2, "the writer, then the init container");
    assert_eq!(
        mounts(&defs, "web"),
        [
            ("cfg".into(), "/etc/app".into(), true),
            ("creds".into(), "/run/creds".into(), true),
            (
                "kube-api-access-abcde".into(),
                "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                true
            ),
            ("scratch".into(), "/tmp".into(), false),
        ]
    );

    // The contents are in the secret only, never in the definitions or tags.
    let shown = format!("{defs:?} {:?} {:?}", p.tags, p.volumes);
    for content in ["hunter2-file", "eyJ.token", "level: debug"] {
        assert!(!shown.contains(content), "{content} leaked: {shown}");
    }
    let manifest =
        crate::volume_files::VolumeManifest::from_json(&p.secret_body()["vk_volumes"]).unwrap();
    assert_eq!(manifest.volumes.len(), 3);
    assert_eq!(manifest.volumes["cfg"].mode, Some(0o440));
    assert_eq!(manifest.volumes["cfg"].gid, Some(2000));
    assert_eq!(
        manifest.volumes["creds"].files["password"].0,
        b"hunter2-file"
    );
    assert_eq!(
        manifest.volumes["kube-api-access-abcde"].files["token"].0,
        b"eyJ.token"
    );
    // The pod's status knows nothing of the writer.
    let defined = crate::status::defined_containers(&defs);
    let names: Vec<&str> = defined.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["setup", "web"]);
}

#[test]
fn volume_files_beyond_a_secrets_64_kib_are_refused() {
    let mut r = with_file_volumes();
    let big = "x".repeat(50 * 1024);
    r.volumes
        .insert("cfg".into(), files(&[("big", big.as_str())], false, None));
    let err = plan(&r).unwrap_err();
    assert!(matches!(err, ProviderError::InvalidInput(_)), "{err:?}");
    let message = err.message();
    assert!(
        message.starts_with("pod ns/web: ") && message.contains("more than the 65536"),
        "{message}"
    );
    // 40 KiB (53 KiB once base64-encoded) still fits.
    let fits = "x".repeat(40 * 1024);
    r.volumes
        .insert("cfg".into(), files(&[("big", fits.as_str())], false, None));
    assert!(plan(&r).is_ok());
}

#[test]
fn what_cannot_be_honoured_is_invalid_input_with_a_sentence() {
    let c = |extra: serde_json::Value| {
        let mut container = json!({"name": "a", "image": "i"});
        container
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        container
    };
    let cases = [
        (
            json!({"volumes": [{"name": "data", "hostPath": {"path": "/x"}}], "containers": [c(json!({}))]}),
            json!({}),
            "volume \"data\" cannot be honoured on Fargate",
        ),
        (
            json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "x"}}], "containers": [c(json!({}))]}),
            json!({}),
            "persistentVolumeClaim volumes are not supported",
        ),
        (
            json!({"volumes": [{"name": "cfg", "configMap": {"name": "x"}}],
                   "containers": [c(json!({"volumeMounts": [{"name": "cfg", "mountPath": "/x/a.yaml", "subPath": "a.yaml"}]}))]}),
            json!({}),
            "with a subPath: ECS mounts whole volumes only",
        ),
        (
            json!({"containers": [c(json!({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}))]}),
            json!({}),
            "mounts unknown volume \"nope\"",
        ),
        (
            json!({"containers": [c(json!({"resources": {"requests": {"cpu": "32"}}}))]}),
            json!({}),
            "largest Fargate task",
        ),
        (
            json!({"containers": [c(json!({"resources": {"limits": {"nvidia.com/gpu": "1"}}}))]}),
            json!({}),
            "offer no nvidia.com/gpu",
        ),
        (
            json!({"containers": [c(json!({"ports": [{"containerPort": 80, "protocol": "SCTP"}]}))]}),
            json!({}),
            "Fargate has no SCTP ports",
        ),
        (
            json!({"containers": [c(json!({"ports": [{"containerPort": 80, "hostPort": 8080}]}))]}),
            json!({}),
            "hostPort must equal its containerPort",
        ),
        (
            json!({"containers": [{"name": "a", "image": ""}]}),
            json!({}),
            "container \"a\" has no image",
        ),
        (
            json!({"containers": [c(json!({}))]}),
            json!({ANNOTATION_PUBLIC_IP: "maybe"}),
            "must be true or false",
        ),
        (
            json!({"containers": [c(json!({}))]}),
            json!({ANNOTATION_CAPACITY_PROVIDER: "EC2"}),
            "must be FARGATE or FARGATE_SPOT",
        ),
    ];
    for (spec, annotations, want) in cases {
        let err = plan(&resolved_with(annotations, spec.clone(), &[])).unwrap_err();
        assert!(
            matches!(err, ProviderError::InvalidInput(_)),
            "{spec}: {err:?}"
        );
        let message = err.message().to_string();
        assert!(message.starts_with("pod ns/web: "), "{message}");
        assert!(message.contains(want), "{spec}: {message}");
    }
}

#[test]
fn without_a_log_group_there_is_no_log_configuration() {
    let c = FargateConfig::parse("Region = \"r\"\nSubnets = [\"s\"]").unwrap();
    let r = resolved(json!({"containers": [{"name": "a", "image": "i"}]}), &[]);
    let p = plan_task(
        &r,
        TaskSettings {
            node: "n",
            config: &c,
        },
    )
    .unwrap();
    assert!(
        p.container_definitions(None)[0]
            .log_configuration()
            .is_none()
    );
}

#[test]
fn annotations_and_restart_policy_are_tags_and_place_a_replacement_alike() {
    let annotated = resolved_with(
        json!({
            ANNOTATION_SUBNETS: "subnet-x, subnet-y",
            ANNOTATION_PUBLIC_IP: "true",
        }),
        json!({"restartPolicy": "OnFailure", "containers": [{"name": "a", "image": "i"}]}),
        &[],
    );
    let p = plan(&annotated).unwrap();
    let tags: BTreeMap<String, String> = p
        .tags
        .iter()
        .map(|t| (t.key().unwrap().into(), t.value().unwrap().into()))
        .collect();
    // ECS tag values have no commas.
    assert_eq!(tags[ANNOTATION_SUBNETS], "subnet-x subnet-y");
    assert_eq!(tags[ANNOTATION_PUBLIC_IP], "true");
    assert!(!tags.contains_key(ANNOTATION_SECURITY_GROUPS));
    assert_eq!(tags["io.vk-rs.restart-policy"], "OnFailure");
    // The pod the tags describe is placed as the pod was.
    let from_tags: Pod =
        serde_json::from_value(json!({"metadata": {"annotations": tags}})).unwrap();
    let again = placement(&from_tags, &config(), "ns/web").unwrap();
    assert_eq!(again.network, p.network);
    assert_eq!(again.capacity, p.capacity);

    let default = plan(&resolved(
        json!({"containers": [{"name": "a", "image": "i"}]}),
        &[],
    ))
    .unwrap();
    let policy = default
        .tags
        .iter()
        .find(|t| t.key() == Some("io.vk-rs.restart-policy"))
        .and_then(|t| t.value());
    assert_eq!(policy, Some("Always"));
}

#[test]
fn the_grace_period_is_the_stop_timeout_up_to_120_s() {
    let cases = [(None, 30), (Some(5), 5), (Some(0), 0), (Some(600), 120)];
    for (grace, want) in cases {
        let p = plan(&resolved(
            json!({"terminationGracePeriodSeconds": grace,
                   "initContainers": [{"name": "init", "image": "i"}],
                   "containers": [{"name": "a", "image": "i"}]}),
            &[],
        ))
        .unwrap();
        for d in p.container_definitions(None) {
            assert_eq!(d.stop_timeout(), Some(want), "{grace:?} {:?}", d.name());
        }
    }
}

fn credential(registry: &str, user: &str) -> RegistryCredential {
    RegistryCredential {
        registry: registry.into(),
        username: user.into(),
        password: format!("{user}-pw"),
        ..Default::default()
    }
}

#[test]
fn pull_credentials_go_to_the_pods_secret_as_repository_credentials() {
    let mut r = resolved(
        json!({"containers": [
            {"name": "private", "image": "registry.example.com/team/app:1"},
            {"name": "public", "image": "busybox"},
        ]}),
        &[],
    );
    r.pull_credentials = vec![credential("registry.example.com", "robot")];
    let p = plan(&r).unwrap();
    assert!(p.needs_secret());
    let body = p.secret_body();
    assert_eq!(body["username"], "robot");
    assert_eq!(body["password"], "robot-pw");
    let arn = "arn:aws:secretsmanager:us-east-1:1:secret:vk-rs/x";
    let defs = p.container_definitions(Some(arn));
    let creds = |name: &str| {
        by_name(&defs, name)
            .repository_credentials()
            .map(|c| c.credentials_parameter().to_string())
    };
    assert_eq!(creds("private").as_deref(), Some(arn));
    assert_eq!(creds("public"), None);
    // The password is nowhere in the definitions.
    assert!(!format!("{defs:?}").contains("robot-pw"));

    // No credential for the pod's images: no secret.
    let mut none = resolved(
        json!({"containers": [{"name": "a", "image": "busybox"}]}),
        &[],
    );
    none.pull_credentials = vec![credential("registry.example.com", "robot")];
    assert!(!plan(&none).unwrap().needs_secret());

    // Two registries, two credentials: refused with a sentence.
    let mut two = resolved(
        json!({"containers": [
            {"name": "a", "image": "one.example.com/a:1"},
            {"name": "b", "image": "two.example.com/b:1"},
        ]}),
        &[],
    );
    two.pull_credentials = vec![
        credential("one.example.com", "a"),
        credential("two.example.com", "b"),
    ];
    let err = plan(&two).unwrap_err();
    assert!(
        matches!(&err, ProviderError::InvalidInput(m) if m.contains("two different pull credentials")),
        "{err:?}"
    );
}

#[test]
fn without_an_execution_role_the_token_volume_is_skipped_and_other_files_refused() {
    let mut c = config();
    c.execution_role_arn = None;
    c.log_group = None;
    let plan_without = |r: &ResolvedPod| {
        plan_task(
            r,
            TaskSettings {
                node: "fargate-0",
                config: &c,
            },
        )
    };
    let mut r = resolved(
        json!({
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
            "containers": [{"name": "web", "image": "i", "volumeMounts": [
                {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
            ]}],
        }),
        &[],
    );
    r.volumes.insert(
        "kube-api-access-abcde".into(),
        files(&[("token", "eyJ.token")], true, None),
    );
    let p = plan_without(&r).unwrap();
    assert!(!p.needs_secret());
    assert!(p.volumes.is_empty());
    assert_eq!(p.skipped_volumes.len(), 1);
    assert!(
        p.skipped_volumes[0].contains("kube-api-access-abcde")
            && p.skipped_volumes[0].contains("ExecutionRoleArn"),
        "{:?}",
        p.skipped_volumes
    );
    let defs = p.container_definitions(None);
    assert_eq!(defs.len(), 1, "no writer");
    assert!(defs[0].mount_points().is_empty());
    // With the role, the same pod gets its token.
    let p = plan(&r).unwrap();
    assert!(p.skipped_volumes.is_empty());
    assert!(p.needs_secret());
}

#[test]
fn the_writers_memory_comes_off_the_task_before_the_pods_containers_share_it() {
    let mut r = with_file_volumes();
    let spec = r.pod.spec.as_mut().unwrap();
    spec.init_containers = None;
    spec.containers[0].resources =
        Some(serde_json::from_value(json!({"requests": {"memory": "512Mi"}})).unwrap());
    let p = plan(&r).unwrap();
    assert_eq!(p.size.memory_mib, 512);
    let defs = p.container_definitions(None);
    let reservations: Vec<i32> = defs.iter().filter_map(|d| d.memory_reservation()).collect();
    assert_eq!(reservations, [6, 506]);
    assert!(reservations.iter().sum::<i32>() <= 512);
}
