use super::*;
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVarSource, ObjectFieldSelector,
    PodSpec, ResourceFieldSelector, ResourceRequirements, SecretKeySelector, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn pod_with(env: Vec<EnvVar>, env_from: Vec<EnvFromSource>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some("ns1".into()),
            uid: Some("uid-1".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("vk-0".into()),
            containers: vec![Container {
                name: "main".into(),
                env: Some(env),
                env_from: Some(env_from),
                resources: Some(ResourceRequirements {
                    limits: Some([("memory".to_string(), Quantity("128Mi".into()))].into()),
                    requests: Some([("cpu".to_string(), Quantity("250m".into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn lit(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn from(name: &str, src: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(src),
    }
}

fn field(path: &str) -> EnvVarSource {
    EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            api_version: None,
        }),
        ..Default::default()
    }
}

fn resolved(pod: &Pod) -> Vec<(String, String)> {
    pod.spec.as_ref().unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn value(pod: &Pod, name: &str) -> Option<String> {
    resolved(pod)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

fn sources() -> EnvSources {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("cfg".into()),
            ..Default::default()
        },
        data: Some(
            [
                ("LEVEL".to_string(), "debug".to_string()),
                ("MODE".to_string(), "fast".to_string()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    EnvSources {
        config_maps: [("cfg".to_string(), Some(cm)), ("gone".to_string(), None)].into(),
        secrets: [("missing".to_string(), None)].into(),
        host_ip: "10.0.0.5".into(),
        pod_ip: Some("10.244.0.9".into()),
        node_allocatable: [("cpu".to_string(), "20".to_string())].into(),
        ..Default::default()
    }
}

#[test]
fn field_refs_including_status_ips() {
    let mut pod = pod_with(
        vec![
            from("NAME", field("metadata.name")),
            from("NS", field("metadata.namespace")),
            from("APP", field("metadata.labels['app']")),
            from("NODE", field("spec.nodeName")),
            from("POD_IP", field("status.podIP")),
            from("HOST_IP", field("status.hostIP")),
        ],
        vec![],
    );
    let events = resolve_pod_env(&mut pod, &sources()).unwrap().events;
    assert!(events.is_empty());
    let want = [
        ("NAME", "web-1"),
        ("NS", "ns1"),
        ("APP", "web"),
        ("NODE", "vk-0"),
        ("POD_IP", "10.244.0.9"),
        ("HOST_IP", "10.0.0.5"),
    ];
    for (k, v) in want {
        assert_eq!(value(&pod, k).as_deref(), Some(v), "{k}");
    }
    assert!(pod.spec.as_ref().unwrap().containers[0].env_from.is_none());
}

#[test]
fn resource_field_refs_with_divisor_and_fallback() {
    let rf = |res: &str, div: Option<&str>| EnvVarSource {
        resource_field_ref: Some(ResourceFieldSelector {
            resource: res.into(),
            divisor: div.map(|d| Quantity(d.into())),
            container_name: None,
        }),
        ..Default::default()
    };
    let mut pod = pod_with(
        vec![
            from("MEM_MI", rf("limits.memory", Some("1Mi"))),
            from("CPU_REQ_M", rf("requests.cpu", Some("1m"))),
            from("CPU_REQ", rf("requests.cpu", None)),
            from("CPU_REQ_ZERO_DIV", rf("requests.cpu", Some("0"))),
            from("CPU_LIMIT", rf("limits.cpu", None)),
        ],
        vec![],
    );
    resolve_pod_env(&mut pod, &sources()).unwrap();
    assert_eq!(value(&pod, "MEM_MI").as_deref(), Some("128"));
    assert_eq!(value(&pod, "CPU_REQ_M").as_deref(), Some("250"));
    assert_eq!(value(&pod, "CPU_REQ").as_deref(), Some("1"), "rounded up");
    assert_eq!(
        value(&pod, "CPU_REQ_ZERO_DIV").as_deref(),
        Some("1"),
        "divisor 0 (the API default) means 1"
    );
    assert_eq!(
        value(&pod, "CPU_LIMIT").as_deref(),
        Some("20"),
        "node allocatable"
    );
}

#[test]
fn env_from_with_prefix_and_expansion() {
    let mut pod = pod_with(
        vec![
            lit("GREETING", "level=$(CFG_LEVEL) $$(CFG_LEVEL) $(UNKNOWN)"),
            lit("CFG_MODE", "slow"),
        ],
        vec![EnvFromSource {
            prefix: Some("CFG_".into()),
            config_map_ref: Some(ConfigMapEnvSource {
                name: "cfg".into(),
                optional: None,
            }),
            secret_ref: None,
        }],
    );
    resolve_pod_env(&mut pod, &sources()).unwrap();
    assert_eq!(value(&pod, "CFG_LEVEL").as_deref(), Some("debug"));
    assert_eq!(
        value(&pod, "CFG_MODE").as_deref(),
        Some("slow"),
        "env overrides envFrom"
    );
    assert_eq!(
        value(&pod, "GREETING").as_deref(),
        Some("level=debug $(CFG_LEVEL) $(UNKNOWN)")
    );
}

#[test]
fn mandatory_missing_is_an_error_optional_an_event() {
    let key = |name: &str, optional: Option<bool>| EnvVarSource {
        config_map_key_ref: Some(ConfigMapKeySelector {
            name: name.into(),
            key: "LEVEL".into(),
            optional,
        }),
        ..Default::default()
    };
    let mut pod = pod_with(vec![from("X", key("gone", None))], vec![]);
    let err = resolve_pod_env(&mut pod, &sources()).unwrap_err();
    assert_eq!(err.reason, "MandatoryConfigMapNotFound");

    let mut pod = pod_with(
        vec![from("X", key("gone", Some(true))), lit("Y", "1")],
        vec![],
    );
    let events = resolve_pod_env(&mut pod, &sources()).unwrap().events;
    assert_eq!(events[0].reason, "OptionalConfigMapNotFound");
    assert_eq!(value(&pod, "X"), None);
    assert_eq!(value(&pod, "Y").as_deref(), Some("1"));

    let secret = EnvVarSource {
        secret_key_ref: Some(SecretKeySelector {
            name: "missing".into(),
            key: "k".into(),
            optional: None,
        }),
        ..Default::default()
    };
    let mut pod = pod_with(vec![from("S", secret)], vec![]);
    assert_eq!(
        resolve_pod_env(&mut pod, &sources()).unwrap_err().reason,
        "MandatorySecretNotFound"
    );

    let missing_key = EnvVarSource {
        config_map_key_ref: Some(ConfigMapKeySelector {
            name: "cfg".into(),
            key: "NOPE".into(),
            optional: None,
        }),
        ..Default::default()
    };
    let mut pod = pod_with(vec![from("K", missing_key)], vec![]);
    assert_eq!(
        resolve_pod_env(&mut pod, &sources()).unwrap_err().reason,
        "MandatoryConfigMapKeyNotFound"
    );
}

#[test]
fn service_links() {
    let mut src = sources();
    src.services = vec![Service {
        metadata: ObjectMeta {
            name: Some("redis-primary".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.11".into()),
            ports: Some(vec![ServicePort {
                name: Some("db".into()),
                port: 6379,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut pod = pod_with(
        vec![lit("URL", "$(REDIS_PRIMARY_SERVICE_HOST):6379")],
        vec![],
    );
    resolve_pod_env(&mut pod, &src).unwrap();
    assert_eq!(
        value(&pod, "REDIS_PRIMARY_SERVICE_HOST").as_deref(),
        Some("10.96.0.11")
    );
    assert_eq!(
        value(&pod, "REDIS_PRIMARY_SERVICE_PORT_DB").as_deref(),
        Some("6379")
    );
    assert_eq!(
        value(&pod, "REDIS_PRIMARY_PORT").as_deref(),
        Some("tcp://10.96.0.11:6379")
    );
    assert_eq!(
        value(&pod, "REDIS_PRIMARY_PORT_6379_TCP_ADDR").as_deref(),
        Some("10.96.0.11")
    );
    assert_eq!(value(&pod, "URL").as_deref(), Some("10.96.0.11:6379"));
}

#[test]
fn expansion_edge_cases() {
    let look = |n: &str| (n == "A").then(|| "1".to_string());
    let cases = [
        ("$(A)", "1"),
        ("$$", "$"),
        ("$", "$"),
        ("x$(A", "x$(A"),
        ("$(B)", "$(B)"),
        ("$(A)$(A)", "11"),
        ("€$(A)", "€1"),
    ];
    for (input, want) in cases {
        assert_eq!(expand(input, look), want, "{input}");
    }
}

#[test]
fn unknown_field_path_is_rejected() {
    let mut pod = pod_with(vec![from("X", field("spec.bogus"))], vec![]);
    assert!(resolve_pod_env(&mut pod, &sources()).is_err());
}

#[test]
fn values_from_secrets_are_marked_secret_and_literals_are_not() {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::SecretEnvSource;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("creds".into()),
            ..Default::default()
        },
        data: Some(
            [
                ("PASSWORD".to_string(), ByteString(b"hunter2".to_vec())),
                ("LEVEL".to_string(), ByteString(b"secret-level".to_vec())),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let mut src = sources();
    src.secrets.insert("creds".into(), Some(secret));
    let key_ref = EnvVarSource {
        secret_key_ref: Some(SecretKeySelector {
            name: "creds".into(),
            key: "PASSWORD".into(),
            optional: None,
        }),
        ..Default::default()
    };
    let mut pod = pod_with(
        vec![
            from("DB_PASSWORD", key_ref),
            lit("DSN", "postgres://app:$(DB_PASSWORD)@db"),
            lit("PLAIN", "hello $(MODE)"),
            // A literal overriding a secret value from envFrom is not secret.
            lit("LEVEL", "info"),
        ],
        vec![
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "creds".into(),
                    optional: None,
                }),
                prefix: Some("S_".into()),
                ..Default::default()
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "creds".into(),
                    optional: None,
                }),
                ..Default::default()
            },
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                ..Default::default()
            },
        ],
    );
    let res = resolve_pod_env(&mut pod, &src).unwrap();
    assert_eq!(
        value(&pod, "DSN").as_deref(),
        Some("postgres://app:hunter2@db")
    );
    let secret: Vec<&str> = res.secret_env["main"].iter().map(String::as_str).collect();
    // LEVEL: the Secret's, then the ConfigMap's (later envFrom wins), then a literal.
    assert_eq!(value(&pod, "LEVEL").as_deref(), Some("info"));
    assert_eq!(
        secret,
        vec!["DB_PASSWORD", "DSN", "PASSWORD", "S_LEVEL", "S_PASSWORD"]
    );
    for plain in ["PLAIN", "MODE", "LEVEL"] {
        assert!(!res.secret_env["main"].contains(plain), "{plain}");
    }
}

#[test]
fn ephemeral_containers_get_their_env_resolved_and_referenced() {
    use k8s_openapi::api::core::v1::EphemeralContainer;
    let mut pod = pod_with(vec![lit("A", "1")], vec![]);
    pod.spec.as_mut().unwrap().ephemeral_containers = Some(vec![EphemeralContainer {
        name: "debugger".into(),
        image: Some("busybox".into()),
        env: Some(vec![
            from("IP", field("status.podIP")),
            lit("SAY", "mode=$(CFG_MODE)"),
        ]),
        env_from: Some(vec![EnvFromSource {
            prefix: Some("CFG_".into()),
            config_map_ref: Some(ConfigMapEnvSource {
                name: "cfg".into(),
                optional: None,
            }),
            secret_ref: None,
        }]),
        ..Default::default()
    }]);
    assert!(
        needs_pod_ip(&pod),
        "the ephemeral container reads status.podIP"
    );
    assert_eq!(referenced_objects(&pod).0, vec!["cfg".to_string()]);
    resolve_pod_env(&mut pod, &sources()).unwrap();
    let ec = &pod
        .spec
        .as_ref()
        .unwrap()
        .ephemeral_containers
        .as_ref()
        .unwrap()[0];
    assert_eq!(ec.env_from, None);
    let env: Vec<(String, String)> = ec
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    for want in [
        ("IP", "10.244.0.9"),
        ("SAY", "mode=fast"),
        ("CFG_LEVEL", "debug"),
    ] {
        assert!(
            env.iter().any(|(n, v)| n == want.0 && v == want.1),
            "{want:?} in {env:?}"
        );
    }
}

#[test]
fn env_waiting_for_the_pod_ip_resolves_again_with_it() {
    let pod = pod_with(
        vec![
            from("POD_IP", field("status.podIP")),
            lit("ADDR", "$(POD_IP):8080"),
            lit("A", "1"),
        ],
        vec![],
    );
    let mut src = sources();
    src.pod_ip = None;
    let mut first = pod.clone();
    resolve_pod_env(&mut first, &src).unwrap();
    assert_eq!(value(&first, "POD_IP").as_deref(), Some(""));
    assert_eq!(value(&first, "ADDR").as_deref(), Some(":8080"));

    let waiting = crate::provider::PodIpEnv::pending(&pod, &src);
    assert!(waiting.is_pending());
    assert_eq!(
        format!("{waiting:?}"),
        "PodIpEnv(pending)",
        "no values in Debug"
    );
    let again = waiting.resolve("10.88.0.7").unwrap();
    assert_eq!(value(&again, "POD_IP").as_deref(), Some("10.88.0.7"));
    assert_eq!(value(&again, "ADDR").as_deref(), Some("10.88.0.7:8080"));
    assert_eq!(value(&again, "A").as_deref(), Some("1"));
    assert!(
        crate::provider::PodIpEnv::default()
            .resolve("10.88.0.7")
            .is_none()
    );
}

#[test]
fn command_and_args_are_expanded_with_the_containers_env() {
    let mut pod = pod_with(
        vec![lit("PORT", "8080"), lit("HOST", "$(PORT)-host")],
        vec![],
    );
    let c = &mut pod.spec.as_mut().unwrap().containers[0];
    c.command = Some(vec!["serve".into(), "--port=$(PORT)".into()]);
    c.args = Some(vec![
        "$(HOST)".into(),
        "$(UNKNOWN)".into(),
        "$$(PORT)".into(),
        "plain".into(),
    ]);
    resolve_pod_env(&mut pod, &sources()).unwrap();
    let c = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        c.command.as_deref().unwrap(),
        ["serve".to_string(), "--port=8080".into()]
    );
    assert_eq!(
        c.args.as_deref().unwrap(),
        [
            "8080-host".to_string(),
            "$(UNKNOWN)".into(),
            "$(PORT)".into(),
            "plain".into()
        ]
    );
}
