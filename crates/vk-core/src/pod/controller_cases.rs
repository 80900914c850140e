//! The sync outcomes, one test each, over the rig of `controller_tests.rs`.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_new_pod_is_created_and_reported_running() {
    let rig = start(FakeProvider::new(true), FakeObjects::default(), vec![]).await;
    rig.api.apply(pod("web", "u1"));
    until(5, "Running", || {
        rig.api.phase("web").as_deref() == Some("Running")
    })
    .await;
    assert_eq!(rig.provider.count("create"), 1);
    let status = rig.api.pod("web").unwrap().status.unwrap();
    assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.7"));
    assert_eq!(status.host_ip.as_deref(), Some("10.1.0.1"));
    assert_eq!(rig.api.events("ProviderCreateSuccess"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_poll_only_provider_is_listed_for_status_changes() {
    let rig = start(FakeProvider::new(false), FakeObjects::default(), vec![]).await;
    rig.api.apply(pod("job", "u1"));
    until(5, "Running", || {
        rig.api.phase("job").as_deref() == Some("Running")
    })
    .await;
    let lists_before = rig.provider.count("list");
    rig.provider.set_phase("job", "Succeeded");
    until(5, "Succeeded by polling", || {
        rig.api.phase("job").as_deref() == Some("Succeeded")
    })
    .await;
    assert!(
        rig.provider.count("list") > lists_before,
        "the status came from a list"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pod_created_while_a_slow_list_runs_is_not_taken_for_gone() {
    // Lists take 3 s after their snapshot, one starts every second: pods
    // are created while lists that cannot show them are under way.
    let provider = FakeProvider {
        list_delay: Duration::from_secs(3),
        ..FakeProvider::new(false)
    };
    let rig = start(provider, FakeObjects::default(), vec![]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..5 {
        rig.api.apply(pod(&format!("web-{i}"), &format!("u{i}")));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    for i in 0..5 {
        let name = format!("web-{i}");
        assert_eq!(rig.api.phase(&name).as_deref(), Some("Running"), "{name}");
    }
    assert!(rig.provider.count("list") >= 5, "lists ran meanwhile");
}

#[tokio::test(start_paused = true)]
async fn a_pushed_status_is_written_without_a_list() {
    let rig = start(FakeProvider::new(true), FakeObjects::default(), vec![]).await;
    rig.api.apply(pod("job", "u1"));
    until(5, "Running", || {
        rig.api.phase("job").as_deref() == Some("Running")
    })
    .await;
    let lists = rig.provider.count("list");
    rig.provider.set_phase("job", "Failed");
    until(1, "Failed by push", || {
        rig.api.phase("job").as_deref() == Some("Failed")
    })
    .await;
    assert_eq!(rig.provider.count("list"), lists, "no list was needed");
}

#[tokio::test(start_paused = true)]
async fn an_image_change_updates_the_workload() {
    let rig = start(FakeProvider::new(true), FakeObjects::default(), vec![]).await;
    rig.api.apply(pod("web", "u1"));
    until(5, "Running", || {
        rig.api.phase("web").as_deref() == Some("Running")
    })
    .await;
    let mut changed = rig.api.pod("web").unwrap();
    changed.spec.as_mut().unwrap().containers[0].image = Some("busybox:2".into());
    rig.api.apply(changed);
    until(5, "update", || rig.provider.count("update") == 1).await;
    let held = rig.provider.resolved("web").unwrap();
    assert_eq!(
        held.pod.spec.unwrap().containers[0].image.as_deref(),
        Some("busybox:2")
    );
    assert_eq!(rig.provider.count("create"), 1);
    until(1, "event", || rig.api.events("ProviderUpdateSuccess") == 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_deleted_pod_is_stopped_with_its_grace_then_removed_from_the_api() {
    let rig = start(FakeProvider::new(true), FakeObjects::default(), vec![]).await;
    rig.api.apply(pod("web", "u1"));
    until(5, "Running", || {
        rig.api.phase("web").as_deref() == Some("Running")
    })
    .await;
    let mut deleting = rig.api.pod("web").unwrap();
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    deleting.metadata.deletion_grace_period_seconds = Some(7);
    rig.api.apply(deleting);
    until(5, "gone from the API", || rig.api.pod("web").is_none()).await;
    let calls = rig.provider.calls.lock().unwrap().clone();
    let deletes: Vec<Duration> = calls
        .iter()
        .filter(|c| c.0 == "delete")
        .map(|c| c.2)
        .collect();
    assert_eq!(deletes, vec![Duration::from_secs(7)]);
    assert_eq!(*rig.api.deletes.lock().unwrap(), vec!["u1".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn running_workloads_are_adopted_not_recreated() {
    let mut existing = pod("web", "u1");
    existing.status.as_mut().unwrap().phase = Some("Running".into());
    let provider = FakeProvider::new(true).holding(&existing);
    let rig = start(provider, FakeObjects::default(), vec![existing]).await;
    until(5, "status written", || {
        rig.api.pod("web").unwrap().status.unwrap().pod_ip.is_some()
    })
    .await;
    assert_eq!(rig.provider.count("create"), 0);
    assert_eq!(rig.provider.count("delete"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_standby_writes_nothing_until_it_leads_then_adopts_without_recreating() {
    let mut existing = pod("web", "u1");
    existing.status.as_mut().unwrap().phase = Some("Running".into());
    let provider = FakeProvider::new(true).holding(&existing);
    let fence = crate::leader::Fence::closed("standby");
    let config = NodeConfig {
        fence: fence.clone(),
        ..config()
    };
    let rig = start_with(
        config,
        provider,
        FakeObjects::default(),
        vec![existing, pod("new", "u2")],
    )
    .await;
    // A standby: the pods are watched, nothing is written or called.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(rig.provider.count("list"), 0, "not even adoption");
    assert_eq!(rig.provider.count("create"), 0);
    assert_eq!(rig.api.status_writes.load(Ordering::SeqCst), 0);
    assert!(rig.api.events.lock().unwrap().is_empty());

    // It leads: the running workload is adopted, the new pod created once.
    fence.lead_for(1, Duration::from_secs(13));
    until(5, "the new pod Running", || {
        rig.api.phase("new").as_deref() == Some("Running")
    })
    .await;
    assert_eq!(rig.provider.count("create"), 1);
    assert!(rig.provider.resolved("web").is_some());

    // Its lease goes stale (no renewal): a new pod is not created.
    tokio::time::sleep(Duration::from_secs(14)).await;
    rig.api.apply(pod("late", "u3"));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        rig.provider.count("create"),
        1,
        "nothing created once fenced"
    );
    assert!(rig.provider.resolved("late").is_none());
    assert!(
        rig.backend_calls("create", "fenced") >= 1,
        "the create was tried and refused by the fence"
    );
}

#[tokio::test(start_paused = true)]
async fn orphans_are_removed_at_start() {
    let provider = FakeProvider::new(true).holding(&pod("gone", "u-old"));
    let rig = start(provider, FakeObjects::default(), vec![]).await;
    until(5, "orphan deleted", || rig.provider.count("delete") == 1).await;
    assert!(rig.provider.resolved("gone").is_none());
    assert!(
        rig.api.deletes.lock().unwrap().is_empty(),
        "no API object to delete"
    );
}

#[tokio::test(start_paused = true)]
async fn a_recreated_pod_replaces_the_stale_workload() {
    let provider = FakeProvider::new(true).holding(&pod("web", "u-old"));
    let rig = start(provider, FakeObjects::default(), vec![pod("web", "u-new")]).await;
    until(5, "Running", || {
        rig.api.phase("web").as_deref() == Some("Running")
    })
    .await;
    let pods = rig.provider.pods.lock().unwrap();
    let uids: Vec<&str> = pods.keys().map(|k| k.uid.as_str()).collect();
    assert_eq!(uids, vec!["u-new"]);
}

#[tokio::test(start_paused = true)]
async fn a_finished_pod_is_not_created_again() {
    let mut done = pod("job", "u1");
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let rig = start(FakeProvider::new(true), FakeObjects::default(), vec![done]).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rig.provider.count("create"), 0);
    assert_eq!(rig.api.phase("job").as_deref(), Some("Succeeded"));
}

#[tokio::test(start_paused = true)]
async fn a_missing_mandatory_configmap_holds_the_pod_until_it_exists() {
    let rig = start(FakeProvider::new(true), FakeObjects::default(), vec![]).await;
    let env = EnvVar {
        name: "LEVEL".into(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: "cfg".into(),
                key: "level".into(),
                optional: None,
            }),
            ..Default::default()
        }),
        value: None,
    };
    rig.api.apply(with_env(pod("web", "u1"), vec![env]));
    until(5, "event", || {
        rig.api.events("MandatoryConfigMapNotFound") >= 1
    })
    .await;
    assert_eq!(rig.provider.count("create"), 0);
    let cm = ConfigMap {
        data: Some([("level".to_string(), "debug".to_string())].into()),
        ..Default::default()
    };
    rig.objects
        .config_maps
        .lock()
        .unwrap()
        .insert("cfg".into(), cm);
    until(60, "created after the retry", || {
        rig.provider.count("create") == 1
    })
    .await;
    let held = rig.provider.resolved("web").unwrap();
    let env = held.pod.spec.unwrap().containers[0].env.clone().unwrap();
    assert_eq!(env[0].value.as_deref(), Some("debug"));
}

#[tokio::test(start_paused = true)]
async fn a_backend_error_is_retried_with_backoff() {
    let provider = FakeProvider::new(true);
    provider.fail_next(Fault::Unavailable(None));
    provider.fail_next(Fault::Unavailable(None));
    let rig = start(provider, FakeObjects::default(), vec![]).await;
    rig.api.apply(pod("web", "u1"));
    until(5, "Running", || {
        rig.api.phase("web").as_deref() == Some("Running")
    })
    .await;
    let t = rig.provider.times("create");
    assert_eq!(t.len(), 3);
    // The queue's backoff: 200 ms, then 400 ms.
    assert!(t[1] - t[0] >= Duration::from_millis(200) && t[1] - t[0] < Duration::from_millis(300));
    assert!(t[2] - t[1] >= Duration::from_millis(400) && t[2] - t[1] < Duration::from_millis(500));
    assert_eq!(rig.api.events("ProviderCreateFailed"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_from_the_backend_is_honoured() {
    let provider = FakeProvider::new(true);
    provider.fail_next(Fault::Unavailable(Some(Duration::from_secs(3))));
    let rig = start(provider, FakeObjects::default(), vec![]).await;
    rig.api.apply(pod("web", "u1"));
    until(10, "Running", || {
        rig.api.phase("web").as_deref() == Some("Running")
    })
    .await;
    let t = rig.provider.times("create");
    assert_eq!(t.len(), 2, "retried once, not at the queue's 200 ms");
    let waited = t[1] - t[0];
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_millis(3200),
        "retried after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_provider_call_times_out_and_is_retried() {
    let provider = FakeProvider::new(true);
    provider.fail_next(Fault::Hang);
    let rig = start(provider, FakeObjects::default(), vec![]).await;
    rig.api.apply(pod("web", "u1"));
    until(20, "Running", || {
        rig.api.phase("web").as_deref() == Some("Running")
    })
    .await;
    let t = rig.provider.times("create");
    assert_eq!(t.len(), 2);
    // The 5 s call timeout of the rig's config, then the backoff.
    assert!(t[1] - t[0] >= Duration::from_secs(5) && t[1] - t[0] < Duration::from_secs(6));
    assert_eq!(rig.backend_calls("create", "timeout"), 1);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_pod_fails_for_good() {
    let provider = FakeProvider::new(true);
    provider.fail_next(Fault::Invalid);
    let rig = start(provider, FakeObjects::default(), vec![]).await;
    rig.api.apply(pod("gpu", "u1"));
    until(5, "Failed", || {
        rig.api.phase("gpu").as_deref() == Some("Failed")
    })
    .await;
    assert_eq!(rig.api.reason("gpu").as_deref(), Some("ProviderFailed"));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(rig.provider.count("create"), 1, "never retried");
}

#[tokio::test(start_paused = true)]
async fn a_workload_that_vanishes_fails_its_pod_not_found() {
    // Poll-only: the loss is found by the periodic list.
    let rig = start(FakeProvider::new(false), FakeObjects::default(), vec![]).await;
    rig.api.apply(pod("web", "u1"));
    until(5, "Running", || {
        rig.api.phase("web").as_deref() == Some("Running")
    })
    .await;
    rig.provider.lose("web");
    until(5, "Failed", || {
        rig.api.phase("web").as_deref() == Some("Failed")
    })
    .await;
    assert_eq!(rig.api.reason("web").as_deref(), Some("NotFound"));
    assert_eq!(rig.provider.count("create"), 1, "not recreated");
}

#[tokio::test(start_paused = true)]
async fn secret_values_reach_the_provider_marked_secret() {
    let secret = Secret {
        data: Some(
            [(
                "pw".to_string(),
                k8s_openapi::ByteString(b"hunter2".to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let objects = FakeObjects {
        secrets: [("db".to_string(), secret)].into(),
        ..Default::default()
    };
    let rig = start(FakeProvider::new(true), objects, vec![]).await;
    let env = vec![
        EnvVar {
            name: "PASSWORD".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "db".into(),
                    key: "pw".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            value: None,
        },
        EnvVar {
            name: "MODE".into(),
            value: Some("fast".into()),
            value_from: None,
        },
    ];
    rig.api.apply(with_env(pod("web", "u1"), env));
    until(5, "created", || rig.provider.count("create") == 1).await;
    let held = rig.provider.resolved("web").unwrap();
    assert!(held.is_secret_env("main", "PASSWORD"));
    assert!(!held.is_secret_env("main", "MODE"));
}

/// Wall-clock time: token renewal is due by `SystemTime`.
#[tokio::test]
async fn a_token_renewal_on_a_provider_without_refresh_neither_loops_nor_fails_the_pod() {
    let objects = FakeObjects {
        token_ttl: Duration::from_millis(500),
        ..Default::default()
    };
    let rig = start(FakeProvider::new(true), objects, vec![]).await;
    let mut p = pod("web", "u1");
    p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "kube-api-access".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    path: "token".into(),
                    expiration_seconds: Some(3600),
                    audience: None,
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    rig.api.apply(p);
    until(5, "Running", || {
        rig.api.phase("web").as_deref() == Some("Running")
    })
    .await;
    let held = rig.provider.resolved("web").unwrap();
    assert!(held.volumes["kube-api-access"].is_sensitive("token"));
    // Renewals every 0.4 s (80% of 0.5 s): a handful in 3 s, not a loop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refreshes = rig.backend_calls("refresh", "not_implemented");
    assert!(
        (2..=10).contains(&refreshes),
        "{refreshes} refresh calls in 3 s"
    );
    assert_eq!(
        rig.provider.count("update"),
        0,
        "update_pod is for specs only"
    );
    assert_eq!(rig.api.phase("web").as_deref(), Some("Running"));
    assert_eq!(rig.provider.count("create"), 1);
}

/// `pod` with `activeDeadlineSeconds` and a 2 s termination grace period.
fn with_deadline(mut pod: Pod, seconds: i64) -> Pod {
    let spec = pod.spec.as_mut().unwrap();
    spec.active_deadline_seconds = Some(seconds);
    spec.termination_grace_period_seconds = Some(2);
    pod
}

// The wall clock: the deadline counts from `status.startTime`, a wall time.
#[tokio::test]
async fn a_pod_past_its_active_deadline_is_stopped_and_failed() {
    let rig = start(FakeProvider::new(true), FakeObjects::default(), vec![]).await;
    rig.api.apply(with_deadline(pod("job", "u1"), 1));
    until(2, "Running", || {
        rig.api.phase("job").as_deref() == Some("Running")
    })
    .await;
    until(4, "Failed", || {
        rig.api.phase("job").as_deref() == Some("Failed")
    })
    .await;
    let status = rig.api.pod("job").unwrap().status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    let start = status.start_time.unwrap().0;
    let waited = Timestamp::now().duration_since(start).as_secs_f64();
    assert!(waited >= 1.0, "failed only after the deadline ({waited}s)");
    let deletes = rig.provider.calls.lock().unwrap().clone();
    let graces: Vec<Duration> = deletes
        .iter()
        .filter(|c| c.0 == "delete")
        .map(|c| c.2)
        .collect();
    assert_eq!(
        graces,
        vec![Duration::from_secs(2)],
        "stopped once, with its grace"
    );
    assert!(
        rig.provider.resolved("job").is_none(),
        "the workload is gone"
    );
    // Stays failed: never created again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.provider.count("create"), 1);
    assert_eq!(rig.api.phase("job").as_deref(), Some("Failed"));
}

#[tokio::test(start_paused = true)]
async fn an_adopted_pod_already_past_its_deadline_is_stopped_not_recreated() {
    let mut existing = with_deadline(pod("job", "u1"), 5);
    let status = existing.status.as_mut().unwrap();
    status.phase = Some("Running".into());
    status.start_time = Some(Time(
        Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60),
    ));
    let provider = FakeProvider::new(true).holding(&existing);
    let rig = start(provider, FakeObjects::default(), vec![existing]).await;
    until(5, "Failed", || {
        rig.api.reason("job").as_deref() == Some("DeadlineExceeded")
    })
    .await;
    assert_eq!(rig.api.phase("job").as_deref(), Some("Failed"));
    assert_eq!(rig.provider.count("delete"), 1);
    assert_eq!(rig.provider.count("create"), 0);
    let status = rig.api.pod("job").unwrap().status.unwrap();
    assert!(status.container_statuses.iter().flatten().all(|c| !c.ready));
}

/// `pod` requesting `cpu`.
fn requesting(mut pod: Pod, cpu: &str) -> Pod {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    pod.spec.as_mut().unwrap().containers[0].resources = Some(ResourceRequirements {
        requests: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
        ..Default::default()
    });
    pod
}

#[tokio::test(start_paused = true)]
async fn a_pod_beyond_what_the_node_has_left_is_rejected_once() {
    // The node has 4 CPUs (see `start`).
    let rig = start(FakeProvider::new(true), FakeObjects::default(), vec![]).await;
    rig.api.apply(requesting(pod("first", "u1"), "3"));
    until(5, "first Running", || {
        rig.api.phase("first").as_deref() == Some("Running")
    })
    .await;
    rig.api.apply(requesting(pod("second", "u2"), "1500m"));
    until(5, "second Failed", || {
        rig.api.phase("second").as_deref() == Some("Failed")
    })
    .await;
    let status = rig.api.pod("second").unwrap().status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("OutOfcpu"));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 1500, used: 3000, capacity: 4000"
        )
    );
    assert_eq!(rig.api.events("OutOfcpu"), 1);
    assert_eq!(
        rig.provider.count("create"),
        1,
        "the rejected pod never reached the backend"
    );
    // The room a finished pod leaves is there for the next pod.
    rig.provider.set_phase("first", "Succeeded");
    until(5, "first Succeeded", || {
        rig.api.phase("first").as_deref() == Some("Succeeded")
    })
    .await;
    rig.api.apply(requesting(pod("third", "u3"), "3500m"));
    until(5, "third Running", || {
        rig.api.phase("third").as_deref() == Some("Running")
    })
    .await;
    // The rejected pod stays rejected.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rig.api.reason("second").as_deref(), Some("OutOfcpu"));
    assert_eq!(rig.provider.count("create"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_status_refused_as_invalid_is_not_retried_until_it_changes() {
    use std::sync::atomic::Ordering;
    let rig = start(FakeProvider::new(true), FakeObjects::default(), vec![]).await;
    rig.api.invalid.store(true, Ordering::SeqCst);
    rig.api.apply(pod("web", "u1"));
    until(5, "a status write tried", || {
        rig.api.status_writes.load(Ordering::SeqCst) > 0
    })
    .await;
    // Resyncs and retries would come within this time: none is sent.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(rig.api.status_writes.load(Ordering::SeqCst), 1);
    assert_eq!(rig.api.phase("web").as_deref(), Some("Pending"));
    // A new backend status is written afresh (and accepted now).
    rig.api.invalid.store(false, Ordering::SeqCst);
    rig.provider.set_phase("web", "Succeeded");
    until(5, "Succeeded", || {
        rig.api.phase("web").as_deref() == Some("Succeeded")
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_ephemeral_container_the_provider_cannot_run_is_refused_once_and_reported_terminated() {
    // FakeProvider keeps the trait's default: it cannot run them.
    let rig = start(FakeProvider::new(true), FakeObjects::default(), vec![]).await;
    rig.api.apply(pod("web", "u1"));
    until(5, "Running", || {
        rig.api.phase("web").as_deref() == Some("Running")
    })
    .await;
    // What `kubectl debug` does: a new entry in spec.ephemeralContainers.
    let mut debugged = rig.api.pod("web").unwrap();
    debugged.spec.as_mut().unwrap().ephemeral_containers =
        Some(vec![k8s_openapi::api::core::v1::EphemeralContainer {
            name: "debugger".into(),
            image: Some("busybox".into()),
            ..Default::default()
        }]);
    rig.api.apply(debugged);
    let terminated = || {
        rig.api
            .pod("web")?
            .status?
            .ephemeral_container_statuses?
            .into_iter()
            .find(|s| s.name == "debugger")?
            .state?
            .terminated
    };
    until(5, "the debugger reported Terminated", || {
        terminated().is_some()
    })
    .await;
    let t = terminated().unwrap();
    assert_eq!(t.reason.as_deref(), Some("ProviderFailed"));
    assert_eq!(t.exit_code, 128);
    let message = t.message.unwrap_or_default();
    assert!(
        message.contains("\"debugger\"") && message.contains("cannot run ephemeral containers"),
        "{message}"
    );
    assert_eq!(rig.api.events("EphemeralContainersNotSupported"), 1);
    // The pod runs on, and later syncs neither ask again nor record again.
    let mut relabelled = rig.api.pod("web").unwrap();
    relabelled.metadata.labels = Some([("touched".to_string(), "yes".to_string())].into());
    rig.api.apply(relabelled);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rig.api.events("EphemeralContainersNotSupported"), 1);
    assert_eq!(rig.api.phase("web").as_deref(), Some("Running"));
    assert!(terminated().is_some(), "the refusal stays reported");
}
