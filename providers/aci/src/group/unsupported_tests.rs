//! Table tests: nothing of a pod is dropped silently. Each field ACI cannot
//! express either maps, becomes a Warning note, or refuses the pod.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::tests::{body, invalid_message, pod, settings};
use super::*;

/// What a case should come to.
enum Want {
    /// The group is made; the first container's `securityContext` is this
    /// (`null`: none) and these notes are given.
    Maps(Value, &'static [&'static str]),
    /// The pod is refused with a message containing this.
    Refused(&'static str),
}

fn with_container(extra: Value) -> Value {
    let mut c = json!({"name": "c", "image": "busybox", "command": ["sleep", "1"]});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    json!({"containers": [c]})
}

fn with_pod(extra: Value) -> Value {
    let mut spec = with_container(json!({}));
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

fn check(name: &str, spec: Value, want: Want) {
    let p = pod(spec);
    match want {
        Want::Maps(security, reasons) => {
            let t = container_group(&p, &settings())
                .unwrap_or_else(|e| panic!("{name}: refused: {e:?}"));
            let b = body(&t);
            let got = b["properties"]["containers"][0]["properties"]
                .get("securityContext")
                .cloned()
                .unwrap_or(Value::Null);
            assert_eq!(got, security, "{name}: securityContext");
            let got: Vec<&str> = t.notes.iter().map(|n| n.reason).collect();
            assert_eq!(got, reasons, "{name}: notes {:?}", t.notes);
        }
        Want::Refused(text) => {
            let m = invalid_message(&p);
            assert!(m.contains(text), "{name}: {m}");
        }
    }
}

#[test]
fn security_context_maps_warns_or_refuses() {
    use Want::*;
    let sc = |v: Value| with_container(json!({"securityContext": v}));
    let cases: Vec<(&str, Value, Want)> = vec![
        ("none", with_container(json!({})), Maps(Value::Null, &[])),
        (
            "privileged and capabilities map",
            sc(
                json!({"privileged": true, "allowPrivilegeEscalation": false,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}),
            ),
            Maps(
                json!({"privileged": true, "allowPrivilegeEscalation": false,
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}),
                &[],
            ),
        ),
        (
            "the container's user over the pod's",
            with_pod(
                json!({"securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": true},
                "containers": [{"name": "c", "image": "i", "securityContext": {"runAsUser": 2000}}]}),
            ),
            Maps(json!({"runAsUser": 2000, "runAsGroup": 3000}), &[]),
        ),
        (
            "runAsNonRoot without a user is refused",
            sc(json!({"runAsNonRoot": true})),
            Refused("set runAsUser"),
        ),
        (
            "runAsNonRoot with user 0 is refused",
            sc(json!({"runAsNonRoot": true, "runAsUser": 0})),
            Refused("runAsUser 0"),
        ),
        (
            "a user beyond int32 is refused",
            sc(json!({"runAsUser": 4_294_967_296_i64})),
            Refused("out of ACI's range"),
        ),
        (
            "RuntimeDefault profiles are ACI's default",
            sc(json!({"seccompProfile": {"type": "RuntimeDefault"},
                "appArmorProfile": {"type": "RuntimeDefault"}, "procMount": "Default"})),
            Maps(Value::Null, &[]),
        ),
        (
            "hardening ACI cannot apply is a warning each",
            sc(json!({"readOnlyRootFilesystem": true,
                "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
                "appArmorProfile": {"type": "Unconfined"},
                "seLinuxOptions": {"level": "s0:c1"}, "procMount": "Unmasked"})),
            Maps(
                Value::Null,
                &[
                    "SecurityContextNotSupported",
                    "SecurityContextNotSupported",
                    "SecurityContextNotSupported",
                    "SecurityContextNotSupported",
                    "SecurityContextNotSupported",
                ],
            ),
        ),
        (
            "a Windows host process is refused",
            sc(json!({"windowsOptions": {"hostProcess": true}})),
            Refused("hostProcess"),
        ),
        (
            "the pod's fsGroup, supplementalGroups and sysctls are one warning",
            with_pod(
                json!({"securityContext": {"fsGroup": 2000, "supplementalGroups": [5],
                "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]}}),
            ),
            Maps(Value::Null, &["SecurityContextNotSupported"]),
        ),
    ];
    for (name, spec, want) in cases {
        check(name, spec, want);
    }
}

#[test]
fn ports_host_fields_and_the_rest_of_the_spec() {
    use Want::*;
    let port = |v: Value| with_container(json!({"ports": [v]}));
    let cases: Vec<(&str, Value, Want)> = vec![
        (
            "hostPort equal to the port maps",
            port(json!({"containerPort": 80, "hostPort": 80})),
            Maps(Value::Null, &[]),
        ),
        (
            "another hostPort is refused",
            port(json!({"containerPort": 80, "hostPort": 8080})),
            Refused("hostPort 8080"),
        ),
        (
            "hostIP is a warning",
            port(json!({"containerPort": 80, "hostIP": "10.0.0.1"})),
            Maps(Value::Null, &["HostIPNotSupported"]),
        ),
        (
            "hostNetwork is refused",
            with_pod(json!({"hostNetwork": true})),
            Refused("hostNetwork"),
        ),
        (
            "hostPID is refused",
            with_pod(json!({"hostPID": true})),
            Refused("hostPID"),
        ),
        (
            "hostIPC is refused",
            with_pod(json!({"hostIPC": true})),
            Refused("hostIPC"),
        ),
        (
            "resource claims are refused",
            with_pod(json!({"resourceClaims": [{"name": "gpu", "resourceClaimName": "g"}]})),
            Refused("resourceClaims"),
        ),
        (
            "block devices are refused",
            with_container(json!({"volumeDevices": [{"name": "b", "devicePath": "/dev/xvda"}]})),
            Refused("volumeDevices"),
        ),
        (
            "lifecycle hooks, workingDir, stdin are warnings",
            with_container(json!({"workingDir": "/app", "stdin": true, "tty": true,
                "lifecycle": {"preStop": {"exec": {"command": ["true"]}}}})),
            Maps(
                Value::Null,
                &[
                    "LifecycleNotSupported",
                    "WorkingDirNotSupported",
                    "StdinNotSupported",
                ],
            ),
        ),
        (
            "host aliases, shared PIDs, hostname, runtime class are warnings",
            with_pod(
                json!({"hostAliases": [{"ip": "10.0.0.9", "hostnames": ["db"]}],
                "shareProcessNamespace": true, "hostname": "h", "runtimeClassName": "kata"}),
            ),
            Maps(
                Value::Null,
                &[
                    "HostAliasesNotSupported",
                    "ShareProcessNamespaceNotSupported",
                    "HostnameNotSupported",
                    "RuntimeClassNotSupported",
                ],
            ),
        ),
        (
            "mount propagation is a warning",
            with_pod(json!({"volumes": [{"name": "v", "emptyDir": {}}],
                "containers": [{"name": "c", "image": "i", "volumeMounts": [
                    {"name": "v", "mountPath": "/v", "mountPropagation": "HostToContainer"}]}]})),
            Maps(Value::Null, &["MountPropagationNotSupported"]),
        ),
    ];
    for (name, spec, want) in cases {
        check(name, spec, want);
    }
}

#[test]
fn init_containers_keep_their_security_context_and_size_the_group() {
    let p = pod(json!({
        "initContainers": [{"name": "init", "image": "i", "command": ["true"],
            "securityContext": {"runAsUser": 1000},
            "resources": {"requests": {"cpu": "3", "memory": "4G"}}}],
        "containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "500m", "memory": "1G"}}}]
    }));
    let b = body(&container_group(&p, &settings()).unwrap());
    let init = &b["properties"]["initContainers"][0]["properties"];
    assert_eq!(init["securityContext"], json!({"runAsUser": 1000}));
    // The group (the sum of the containers' requests) holds the init container.
    assert_eq!(
        b["properties"]["containers"][0]["properties"]["resources"]["requests"],
        json!({"cpu": 3.0, "memoryInGB": 4.0})
    );
}
