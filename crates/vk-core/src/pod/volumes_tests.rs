use super::*;
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, ConfigMapVolumeSource, DownwardAPIProjection, DownwardAPIVolumeSource,
    ObjectFieldSelector, PodSpec, ProjectedVolumeSource, ResourceFieldSelector, SecretProjection,
    SecretVolumeSource, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

struct Fake;

#[async_trait]
impl ObjectSource for Fake {
    async fn config_map(&self, _ns: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        Ok(
            (name == "kube-root-ca.crt" || name == "cfg").then(|| ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                data: Some(
                    [
                        ("ca.crt".to_string(), "CA".to_string()),
                        ("app.conf".to_string(), "x=1".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
        )
    }
    async fn secret(&self, _ns: &str, _name: &str) -> Result<Option<Secret>, String> {
        Ok(None)
    }
    async fn token(
        &self,
        pod: &Pod,
        sa: &str,
        aud: Option<&str>,
        exp: i64,
    ) -> Result<(String, SystemTime), String> {
        Ok((
            format!(
                "token-for-{}-{sa}-{}",
                pod.metadata.name.as_deref().unwrap_or(""),
                aud.unwrap_or("api")
            ),
            SystemTime::now() + Duration::from_secs(exp as u64),
        ))
    }
}

fn pod(volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            volumes: Some(volumes),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn kube_api_access_volume() {
    let vol = Volume {
        name: "kube-api-access-x".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o644),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(3607),
                        audience: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                api_version: None,
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
        }),
        ..Default::default()
    };
    let m = materialise(&pod(vec![vol]), &EnvSources::default(), &Fake)
        .await
        .unwrap();
    let files = &m.volumes["kube-api-access-x"].files;
    assert_eq!(files["token"], b"token-for-p-default-api");
    assert_eq!(files["ca.crt"], b"CA");
    assert_eq!(files["namespace"], b"ns");
    let refresh = m
        .refresh_at
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        refresh > Duration::from_secs(2800) && refresh < Duration::from_secs(2900),
        "{refresh:?}"
    );
}

#[tokio::test]
async fn missing_mandatory_config_map_fails_optional_passes() {
    let cm = |name: &str, optional| Volume {
        name: "v".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: name.into(),
            optional,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(
        materialise(&pod(vec![cm("nope", None)]), &EnvSources::default(), &Fake)
            .await
            .is_err()
    );
    let ok = materialise(
        &pod(vec![cm("nope", Some(true))]),
        &EnvSources::default(),
        &Fake,
    )
    .await
    .unwrap();
    assert!(ok.volumes["v"].files.is_empty());
    let full = materialise(&pod(vec![cm("cfg", None)]), &EnvSources::default(), &Fake)
        .await
        .unwrap();
    assert_eq!(full.volumes["v"].files["app.conf"], b"x=1");
}

fn kube_api_access() -> Volume {
    Volume {
        name: "kube-api-access-x".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: ROOT_CA_CONFIG_MAP.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                downward_projection("namespace", "metadata.namespace"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn downward_projection(path: &str, field: &str) -> VolumeProjection {
    VolumeProjection {
        downward_api: Some(DownwardAPIProjection {
            items: Some(vec![DownwardAPIVolumeFile {
                path: path.into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: field.into(),
                    api_version: None,
                }),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    }
}

fn projected(sources: Vec<VolumeProjection>) -> Volume {
    Volume {
        name: "p".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn downward(item: DownwardAPIVolumeFile) -> Volume {
    Volume {
        name: "d".into(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![item]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn label_file() -> DownwardAPIVolumeFile {
    DownwardAPIVolumeFile {
        path: "labels".into(),
        field_ref: Some(ObjectFieldSelector {
            field_path: "metadata.labels".into(),
            api_version: None,
        }),
        ..Default::default()
    }
}

#[test]
fn which_volumes_follow_their_objects() {
    let token = VolumeProjection {
        service_account_token: Some(ServiceAccountTokenProjection {
            path: "token".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cm = |name: &str| VolumeProjection {
        config_map: Some(ConfigMapProjection {
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let secret = VolumeProjection {
        secret: Some(SecretProjection {
            name: "s".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cpu_file = DownwardAPIVolumeFile {
        path: "cpu".into(),
        resource_field_ref: Some(ResourceFieldSelector {
            container_name: Some("main".into()),
            resource: "limits.cpu".into(),
            divisor: None,
        }),
        ..Default::default()
    };
    let cases: Vec<(&str, Vec<Volume>, bool)> = vec![
        ("no volumes", vec![], false),
        (
            "emptyDir",
            vec![Volume {
                name: "e".into(),
                empty_dir: Some(Default::default()),
                ..Default::default()
            }],
            false,
        ),
        (
            "configMap",
            vec![Volume {
                name: "c".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: "cfg".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            true,
        ),
        (
            "secret",
            vec![Volume {
                name: "s".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some("s".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            true,
        ),
        ("kube-api-access only", vec![kube_api_access()], false),
        (
            "token with a user configMap",
            vec![projected(vec![token.clone(), cm("app")])],
            true,
        ),
        (
            "kube-root-ca.crt without a token",
            vec![projected(vec![cm(ROOT_CA_CONFIG_MAP)])],
            true,
        ),
        ("projected secret", vec![projected(vec![secret])], true),
        ("downwardAPI labels", vec![downward(label_file())], false),
        ("downwardAPI resources", vec![downward(cpu_file)], true),
        (
            "kube-api-access and a configMap",
            vec![
                kube_api_access(),
                projected(vec![cm("app"), downward_projection("n", "metadata.name")]),
            ],
            true,
        ),
    ];
    for (case, volumes, want) in cases {
        assert_eq!(follows_objects(&pod(volumes)), want, "{case}");
    }
}

#[test]
fn downward_inputs_follow_labels_only_when_read() {
    let mut p = pod(vec![downward(label_file())]);
    let before = downward_inputs_hash(&p);
    assert_ne!(before, 0);
    p.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
    assert_ne!(downward_inputs_hash(&p), before, "a label change shows");

    let mut api_access = pod(vec![kube_api_access()]);
    assert_eq!(
        downward_inputs_hash(&api_access),
        0,
        "namespace never changes"
    );
    api_access.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
    assert_eq!(downward_inputs_hash(&api_access), 0);

    let annotated = pod(vec![projected(vec![downward_projection(
        "a",
        "metadata.annotations['x']",
    )])]);
    assert_ne!(downward_inputs_hash(&annotated), 0, "projected items count");
}

#[tokio::test]
async fn downward_label_file_shows_new_labels() {
    let mut p = pod(vec![downward(label_file())]);
    p.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
    let m = materialise(&p, &EnvSources::default(), &Fake)
        .await
        .unwrap();
    assert_eq!(m.volumes["d"].files["labels"], b"tier=\"web\"");
    p.metadata.labels = Some([("tier".to_string(), "db".to_string())].into());
    let m = materialise(&p, &EnvSources::default(), &Fake)
        .await
        .unwrap();
    assert_eq!(m.volumes["d"].files["labels"], b"tier=\"db\"");
}

#[test]
fn rejects_escaping_paths() {
    for p in ["../x", "/etc/passwd", "a/../../b", ""] {
        assert!(check_path(p).is_err(), "{p}");
    }
    assert!(check_path("a/b.txt").is_ok());
}
