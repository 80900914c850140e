#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_ecs::types::{Attachment, Container, KeyValuePair, NetworkInterface, TaskStopCode};

use super::*;

fn defined(name: &str, essential: bool) -> DefinedContainer {
    DefinedContainer {
        name: name.into(),
        image: format!("{name}:1"),
        essential,
    }
}

fn container(name: &str, last: &str, exit: Option<i32>, reason: Option<&str>) -> Container {
    Container::builder()
        .name(name)
        .last_status(last)
        .set_exit_code(exit)
        .set_reason(reason.map(str::to_string))
        .runtime_id(format!("rt-{name}"))
        .build()
}

fn eni(ip: &str) -> Attachment {
    Attachment::builder()
        .r#type("ElasticNetworkInterface")
        .details(
            KeyValuePair::builder()
                .name("subnetId")
                .value("subnet-a")
                .build(),
        )
        .details(
            KeyValuePair::builder()
                .name("privateIPv4Address")
                .value(ip)
                .build(),
        )
        .build()
}

fn task(last: &str, containers: Vec<Container>) -> aws_sdk_ecs::types::builders::TaskBuilder {
    Task::builder()
        .last_status(last)
        .set_containers(Some(containers))
        .created_at(DateTime::from_secs(1_000))
        .started_at(DateTime::from_secs(1_010))
}

fn state_of(s: &ContainerStatus) -> String {
    let st = s.state.as_ref().unwrap();
    if let Some(w) = &st.waiting {
        format!("waiting:{}", w.reason.as_deref().unwrap_or(""))
    } else if st.running.is_some() {
        "running".into()
    } else {
        let t = st.terminated.as_ref().unwrap();
        format!(
            "terminated:{}:{}",
            t.exit_code,
            t.reason.as_deref().unwrap_or("")
        )
    }
}

#[test]
fn phases_follow_the_task() {
    let app = [defined("app", true)];
    let cases = [
        (
            "PROVISIONING",
            "PENDING",
            None,
            "Pending",
            "waiting:ContainerCreating",
        ),
        (
            "PENDING",
            "PENDING",
            None,
            "Pending",
            "waiting:ContainerCreating",
        ),
        (
            "ACTIVATING",
            "PENDING",
            None,
            "Pending",
            "waiting:ContainerCreating",
        ),
        ("RUNNING", "RUNNING", None, "Running", "running"),
        (
            "RUNNING",
            "PENDING",
            None,
            "Running",
            "waiting:ContainerCreating",
        ),
        ("DEACTIVATING", "RUNNING", None, "Running", "running"),
        (
            "STOPPING",
            "STOPPED",
            Some(0),
            "Running",
            "terminated:0:Completed",
        ),
        (
            "STOPPED",
            "STOPPED",
            Some(0),
            "Succeeded",
            "terminated:0:Completed",
        ),
        (
            "STOPPED",
            "STOPPED",
            Some(1),
            "Failed",
            "terminated:1:Error",
        ),
        (
            "STOPPED",
            "PENDING",
            None,
            "Failed",
            "terminated:128:StartError",
        ),
    ];
    for (task_status, container_status, exit, phase, state) in cases {
        let t = task(
            task_status,
            vec![container("app", container_status, exit, None)],
        )
        .build();
        let s = pod_status(&t, &app);
        assert_eq!(
            s.phase.as_deref(),
            Some(phase),
            "{task_status}/{container_status}"
        );
        let cs = s.container_statuses.as_ref().unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(state_of(&cs[0]), state, "{task_status}/{container_status}");
        assert_eq!(cs[0].ready, state == "running");
        assert_eq!(cs[0].container_id.as_deref(), Some("ecs://rt-app"));
        assert_eq!(cs[0].image, "app:1");
        assert!(s.init_container_statuses.is_none());
    }
}

#[test]
fn stopped_is_succeeded_only_when_every_essential_container_exited_zero() {
    let defs = [
        defined("init", false),
        defined("a", true),
        defined("b", true),
    ];
    /// Exit codes by container, and the phase they make.
    type Case = (&'static [(&'static str, Option<i32>)], &'static str);
    let cases: [Case; 5] = [
        (
            &[("init", Some(0)), ("a", Some(0)), ("b", Some(0))],
            "Succeeded",
        ),
        (
            &[("init", Some(0)), ("a", Some(0)), ("b", Some(2))],
            "Failed",
        ),
        (
            &[("init", Some(1)), ("a", Some(0)), ("b", Some(0))],
            "Succeeded",
        ),
        (&[("init", Some(0)), ("a", Some(0)), ("b", None)], "Failed"),
        (&[("init", Some(0)), ("a", Some(0))], "Failed"),
    ];
    for (exits, phase) in cases {
        let containers = exits
            .iter()
            .map(|(n, code)| container(n, "STOPPED", *code, None))
            .collect();
        let t = task("STOPPED", containers).build();
        let s = pod_status(&t, &defs);
        assert_eq!(s.phase.as_deref(), Some(phase), "{exits:?}");
        assert_eq!(s.container_statuses.as_ref().unwrap().len(), 2);
        assert_eq!(s.init_container_statuses.as_ref().unwrap().len(), 1);
    }
}

#[test]
fn the_stop_code_and_reason_make_the_message() {
    let cases = [
        (
            Some(TaskStopCode::EssentialContainerExited),
            Some("Essential container in task exited"),
            Some("EssentialContainerExited: Essential container in task exited"),
        ),
        (
            None,
            Some("Task stopped by user"),
            Some("Task stopped by user"),
        ),
        (
            Some(TaskStopCode::SpotInterruption),
            None,
            Some("SpotInterruption"),
        ),
        (None, None, None),
    ];
    for (code, reason, want) in cases {
        let t = task("STOPPED", vec![container("app", "STOPPED", Some(1), None)])
            .set_stop_code(code)
            .set_stopped_reason(reason.map(str::to_string))
            .build();
        let s = pod_status(&t, &[defined("app", true)]);
        assert_eq!(s.message.as_deref(), want);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
    }
    // A running task has no message, even with a reason.
    let t = task("RUNNING", vec![container("app", "RUNNING", None, None)])
        .stopped_reason("later")
        .build();
    assert_eq!(pod_status(&t, &[defined("app", true)]).message, None);
}

#[test]
fn containers_waiting_for_init_containers_or_their_image() {
    let defs = [defined("init", false), defined("app", true)];
    let t = task(
        "RUNNING",
        vec![
            container("init", "RUNNING", None, None),
            container("app", "PENDING", None, None),
        ],
    )
    .build();
    let s = pod_status(&t, &defs);
    assert_eq!(
        state_of(&s.init_container_statuses.as_ref().unwrap()[0]),
        "running"
    );
    assert_eq!(
        state_of(&s.container_statuses.as_ref().unwrap()[0]),
        "waiting:PodInitializing"
    );

    let pull = "CannotPullContainerError: pull image manifest has been retried 5 time(s)";
    let t = task(
        "PENDING",
        vec![container("app", "PENDING", None, Some(pull))],
    )
    .build();
    let s = pod_status(&t, &[defined("app", true)]);
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(state_of(cs), "waiting:ErrImagePull");
    assert_eq!(
        cs.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .message
            .as_deref(),
        Some(pull)
    );
    // Stopped for it: a start error carrying the reason.
    let t = task(
        "STOPPED",
        vec![container("app", "STOPPED", None, Some(pull))],
    )
    .stop_code(TaskStopCode::TaskFailedToStart)
    .build();
    let s = pod_status(&t, &[defined("app", true)]);
    let term = s.container_statuses.as_ref().unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (128, Some("StartError"))
    );
    assert_eq!(term.message.as_deref(), Some(pull));
    assert_eq!(s.phase.as_deref(), Some("Failed"));
}

#[test]
fn unhealthy_running_containers_are_not_ready_and_oom_is_named() {
    let unhealthy = Container::builder()
        .name("app")
        .last_status("RUNNING")
        .health_status(HealthStatus::Unhealthy)
        .build();
    let s = pod_status(
        &task("RUNNING", vec![unhealthy]).build(),
        &[defined("app", true)],
    );
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!((state_of(cs).as_str(), cs.ready), ("running", false));
    let oom = container(
        "app",
        "STOPPED",
        Some(137),
        Some("OutOfMemoryError: Container killed due to memory usage"),
    );
    let s = pod_status(&task("STOPPED", vec![oom]).build(), &[defined("app", true)]);
    assert_eq!(
        state_of(&s.container_statuses.as_ref().unwrap()[0]),
        "terminated:137:OOMKilled"
    );
}

#[test]
fn the_pod_ip_is_the_enis_private_address() {
    let t = task("RUNNING", vec![container("app", "RUNNING", None, None)])
        .attachments(eni("10.0.1.23"))
        .build();
    let s = pod_status(&t, &[defined("app", true)]);
    assert_eq!(s.pod_ip.as_deref(), Some("10.0.1.23"));
    assert_eq!(s.pod_ips.unwrap()[0].ip, "10.0.1.23");
    assert_eq!(s.start_time.unwrap().0.as_second(), 1_010);
    // From the container's interface when the attachment has none.
    let c = Container::builder()
        .name("app")
        .last_status("RUNNING")
        .network_interfaces(
            NetworkInterface::builder()
                .private_ipv4_address("10.0.9.9")
                .build(),
        )
        .build();
    assert_eq!(
        pod_ip(&task("RUNNING", vec![c]).build()).as_deref(),
        Some("10.0.9.9")
    );
    // Provisioning: none yet, and the start time is the creation.
    let t = Task::builder()
        .last_status("PROVISIONING")
        .created_at(DateTime::from_secs(5))
        .build();
    let s = pod_status(&t, &[defined("app", true)]);
    assert_eq!(s.pod_ip, None);
    assert_eq!(s.start_time.unwrap().0.as_second(), 5);
    assert_eq!(
        state_of(&s.container_statuses.unwrap()[0]),
        "waiting:ContainerCreating"
    );
}

#[test]
fn a_failed_volume_writer_says_why_the_containers_never_ran() {
    let writer = crate::volume_files::WRITER_CONTAINER;
    let t = task(
        "STOPPED",
        vec![
            container(writer, "STOPPED", Some(1), None),
            container("web", "STOPPED", None, None),
        ],
    )
    .stop_code(TaskStopCode::EssentialContainerExited)
    .stopped_reason("Essential container in task exited")
    .build();
    // The writer is the provider's: never a pod container.
    let defs = vec![
        aws_sdk_ecs::types::ContainerDefinition::builder()
            .name(writer)
            .image("vk-rs/vk-fargate:0.1.0")
            .essential(false)
            .build(),
        aws_sdk_ecs::types::ContainerDefinition::builder()
            .name("web")
            .image("web:1")
            .build(),
    ];
    let defined = defined_containers(&defs);
    assert_eq!(defined, [defined_one("web")]);
    let s = pod_status(&t, &defined);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert!(s.init_container_statuses.is_none());
    let message = s.message.unwrap();
    assert!(
        message.starts_with("EssentialContainerExited: Essential container in task exited; ")
            && message
                .contains("the volume files were not written (container vk_volumes exited 1)"),
        "{message}"
    );
    // A writer that exited 0 adds nothing.
    let ok = task(
        "STOPPED",
        vec![
            container(writer, "STOPPED", Some(0), None),
            container("web", "STOPPED", Some(0), None),
        ],
    )
    .stopped_reason("Essential container in task exited")
    .build();
    assert_eq!(
        pod_status(&ok, &defined).message.as_deref(),
        Some("Essential container in task exited")
    );
}

fn defined_one(name: &str) -> DefinedContainer {
    DefinedContainer {
        name: name.into(),
        image: format!("{name}:1"),
        essential: true,
    }
}
