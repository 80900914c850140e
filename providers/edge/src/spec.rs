//! Pod → engine objects: names, labels, validation against the node's policy,
//! and the create bodies of the infra and app containers. Pure functions,
//! tested without an engine.
//!
//! A pod is one infra container (the built-in pause image) that owns the
//! network, IPC and (on Podman) UTS namespaces, plus one engine container per
//! container attempt of the pod, joined to them. Volumes are engine volumes,
//! mounted into the infra container at `/vk-volumes/<name>` so the provider can
//! write files into them with the archive API, and into app containers where
//! the pod mounts them.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, PortBinding, ResourcesUlimits,
};
use k8s_openapi::api::core::v1::{Container, Pod, Probe, Volume};
use sha2::{Digest, Sha256};
use vk_core::quantity::quantity_nanos;
use vk_core::toolkit::pod_identity::PodIdentity;

use crate::pause::PAUSE_IMAGE;

// Every engine object also carries the pod's identity labels
// (`vk_core::toolkit::pod_identity`: node, namespace, name, UID).

/// Label: container name (`POD` for the infra container).
pub const LABEL_CONTAINER: &str = "io.vk-rs.container";
/// Label: `infra`, `init`, `app` or `ephemeral`.
pub const LABEL_ROLE: &str = "io.vk-rs.role";
/// Label: hash of the container's spec.
pub const LABEL_SPEC_HASH: &str = "io.vk-rs.spec-hash";
/// Label: attempt number of this container (its `restartCount`).
pub const LABEL_ATTEMPT: &str = "io.vk-rs.attempt";
/// Label on the infra container: the pod as last handed to the provider (JSON),
/// so a restarted `vk-edge` knows every pod from the engine alone.
pub const LABEL_POD: &str = "io.vk-rs.pod";
/// On an ephemeral container: its spec (`EphemeralContainer` JSON, env
/// left out, since values may be secret), so that a restarted `vk-edge`
/// knows it without the core handing it over again.
pub const LABEL_EPHEMERAL: &str = "io.vk-rs.ephemeral";
/// Where the infra container mounts each pod volume.
pub const INFRA_VOLUME_ROOT: &str = "/vk-volumes";
/// The infra container's name in [`LABEL_CONTAINER`].
pub const INFRA_CONTAINER: &str = "POD";

/// Which kind of engine, where their APIs differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Docker Engine.
    Docker,
    /// Podman's Docker-compatible API.
    Podman,
}

/// The role of an engine container in its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The pause container holding the namespaces.
    Infra,
    /// An init container.
    Init,
    /// A regular container.
    App,
    /// An ephemeral container (`kubectl debug`): started once, never restarted.
    Ephemeral,
}

impl Role {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Infra => "infra",
            Role::Init => "init",
            Role::App => "app",
            Role::Ephemeral => "ephemeral",
        }
    }

    /// Parses the label value.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "infra" => Some(Role::Infra),
            "init" => Some(Role::Init),
            "app" => Some(Role::App),
            "ephemeral" => Some(Role::Ephemeral),
            _ => None,
        }
    }
}

/// What the node allows, from its flags.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `--allow-privileged`.
    pub allow_privileged: bool,
    /// `--allow-host-path`: hostPath volumes must lie under one of these.
    pub allowed_host_paths: Vec<String>,
    /// `--engine-network`: the network infra containers join.
    pub network: String,
}

/// Engine container name, following the kubelet's dockershim convention:
/// `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`.
pub fn container_name(id: &PodIdentity<'_>, container: &str, attempt: u32) -> String {
    format!(
        "k8s_{container}_{}_{}_{}_{attempt}",
        id.name, id.namespace, id.uid
    )
}

/// Engine volume name of a pod volume.
pub fn volume_name(uid: &str, volume: &str) -> String {
    format!("vk-{uid}-{volume}")
}

/// A stable hash of a container's spec: a changed hash means the container
/// must be recreated (the only mutable container field is `image`, but the
/// hash covers the whole spec, resolved env included).
pub fn container_hash(c: &Container) -> String {
    let bytes = serde_json::to_vec(c).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// How a pod volume reaches the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// An engine volume (emptyDir, and the file volumes the core materialises).
    Engine {
        /// Engine volume name.
        name: String,
        /// emptyDir with `medium: Memory`: a tmpfs-backed volume.
        memory: bool,
        /// Files written by the provider: mounted read-only in app containers.
        files: bool,
    },
    /// A hostPath bind mount.
    HostPath(String),
}

/// Checks a pod against what this node can and may run, and maps each volume
/// to its engine source. Every error is a sentence for the pod's status.
pub fn plan_volumes(pod: &Pod, policy: &Policy) -> Result<BTreeMap<String, VolumeSource>, String> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let mut out = BTreeMap::new();
    let volumes: &[Volume] = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for v in volumes {
        let engine = |memory: bool, files: bool| VolumeSource::Engine {
            name: volume_name(uid, &v.name),
            memory,
            files,
        };
        let source = if let Some(e) = &v.empty_dir {
            engine(e.medium.as_deref() == Some("Memory"), false)
        } else if v.config_map.is_some()
            || v.secret.is_some()
            || v.downward_api.is_some()
            || v.projected.is_some()
        {
            engine(false, true)
        } else if let Some(h) = &v.host_path {
            if !host_path_allowed(&h.path, &policy.allowed_host_paths) {
                return Err(format!(
                    "hostPath volume {:?} ({}) is not allowed on this node{}",
                    v.name,
                    h.path,
                    if policy.allowed_host_paths.is_empty() {
                        " (vk-edge runs without --allow-host-path)".to_string()
                    } else {
                        format!(" (allowed under: {})", policy.allowed_host_paths.join(", "))
                    }
                ));
            }
            VolumeSource::HostPath(h.path.clone())
        } else {
            return Err(format!(
                "volume {:?} is of a type this node does not support (edge nodes support \
                 emptyDir, configMap, secret, downwardAPI, projected and allowed hostPath)",
                v.name
            ));
        };
        out.insert(v.name.clone(), source);
    }
    Ok(out)
}

/// Whether `path` lies under one of the allowed prefixes (whole path components).
pub fn host_path_allowed(path: &str, allowed: &[String]) -> bool {
    let path = std::path::Path::new(path);
    if !path.is_absolute() || path.components().any(|c| c.as_os_str() == "..") {
        return false;
    }
    allowed.iter().any(|prefix| path.starts_with(prefix))
}

/// Checks everything about the pod's containers the engine cannot do or the
/// node does not allow; returns the first problem as a sentence.
pub fn validate(pod: &Pod, policy: &Policy) -> Result<(), String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Err("pod has no spec".into());
    };
    let volumes = plan_volumes(pod, policy)?;
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in all {
        if c.image.as_deref().unwrap_or_default().is_empty() {
            return Err(format!("container {:?} has no image", c.name));
        }
        let privileged = c
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false);
        if privileged && !policy.allow_privileged {
            return Err(format!(
                "container {:?} asks for privileged mode, which this node does not allow \
                 (vk-edge runs without --allow-privileged)",
                c.name
            ));
        }
        for m in c.volume_mounts.iter().flatten() {
            if !volumes.contains_key(&m.name) {
                return Err(format!(
                    "container {:?} mounts volume {:?}, which the pod does not define",
                    c.name, m.name
                ));
            }
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty())
                && (sub.starts_with('/') || sub.split('/').any(|p| p == ".."))
            {
                return Err(format!(
                    "container {:?}: subPath {sub:?} must be a relative path without '..'",
                    c.name
                ));
            }
        }
        for p in c.ports.iter().flatten() {
            if !(1..=65535).contains(&p.container_port) {
                return Err(format!(
                    "container {:?}: containerPort {} is not a valid port (1-65535)",
                    c.name, p.container_port
                ));
            }
            if let Some(hp) = p.host_port
                && !(0..=65535).contains(&hp)
            {
                return Err(format!(
                    "container {:?}: hostPort {hp} is not a valid port",
                    c.name
                ));
            }
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            if proto != "TCP" && proto != "UDP" {
                return Err(format!(
                    "container {:?}: protocol {proto} is not supported (TCP, UDP)",
                    c.name
                ));
            }
        }
        for (kind, probe) in [
            ("liveness", &c.liveness_probe),
            ("readiness", &c.readiness_probe),
            ("startup", &c.startup_probe),
        ] {
            if let Some(p) = probe {
                check_probe(c, kind, p)?;
            }
        }
    }
    Ok(())
}

fn check_probe(c: &Container, kind: &str, p: &Probe) -> Result<(), String> {
    if p.grpc.is_some() {
        return Err(format!(
            "container {:?}: grpc {kind} probes are not supported on edge nodes",
            c.name
        ));
    }
    if let Some(h) = &p.http_get {
        if h.scheme.as_deref() == Some("HTTPS") {
            return Err(format!(
                "container {:?}: HTTPS {kind} probes are not supported on edge nodes yet",
                c.name
            ));
        }
        probe_port(c, &h.port).map_err(|e| format!("{kind} probe: {e}"))?;
    }
    if let Some(t) = &p.tcp_socket {
        probe_port(c, &t.port).map_err(|e| format!("{kind} probe: {e}"))?;
    }
    if p.exec.is_none() && p.http_get.is_none() && p.tcp_socket.is_none() {
        return Err(format!(
            "container {:?}: {kind} probe has no handler",
            c.name
        ));
    }
    Ok(())
}

/// Resolves a probe's port (a number or the name of one of the container's ports).
pub fn probe_port(
    c: &Container,
    port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
) -> Result<u16, String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("container {:?}: port {n} is not a valid port", c.name)),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| {
                format!(
                    "container {:?}: port {name:?} is not a named port of the container",
                    c.name
                )
            }),
    }
}

/// The infra container: the pause image, the pod's network (or the host's),
/// hostname, DNS settings, published hostPorts, and every pod volume mounted
/// under [`INFRA_VOLUME_ROOT`].
pub fn infra_body(
    pod: &Pod,
    id: &PodIdentity<'_>,
    volumes: &BTreeMap<String, VolumeSource>,
    policy: &Policy,
) -> ContainerCreateBody {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let mut labels: HashMap<String, String> = id.labels();
    labels.insert(LABEL_CONTAINER.into(), INFRA_CONTAINER.into());
    labels.insert(LABEL_ROLE.into(), Role::Infra.as_str().into());
    labels.insert(
        LABEL_POD.into(),
        serde_json::to_string(pod).unwrap_or_default(),
    );
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            if let Some(hp) = p.host_port.filter(|hp| *hp > 0) {
                let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
                port_bindings
                    .entry(format!("{}/{proto}", p.container_port))
                    .or_insert_with(|| Some(Vec::new()))
                    .get_or_insert_with(Vec::new)
                    .push(PortBinding {
                        host_ip: p.host_ip.clone(),
                        host_port: Some(hp.to_string()),
                    });
            }
        }
    }
    let mounts = volumes
        .iter()
        .filter_map(|(name, src)| match src {
            VolumeSource::Engine { name: vol, .. } => Some(Mount {
                target: Some(format!("{INFRA_VOLUME_ROOT}/{name}")),
                source: Some(vol.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }),
            VolumeSource::HostPath(_) => None,
        })
        .collect();
    let dns = spec.dns_config.clone().unwrap_or_default();
    let hostname = spec.hostname.clone().unwrap_or_else(|| id.name.to_string());
    ContainerCreateBody {
        image: Some(PAUSE_IMAGE.to_string()),
        hostname: (!host_network).then_some(hostname),
        domainname: spec.subdomain.clone(),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(if host_network {
                "host".into()
            } else {
                policy.network.clone()
            }),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            mounts: Some(mounts),
            dns: dns.nameservers.filter(|v| !v.is_empty()),
            dns_search: dns.searches.filter(|v| !v.is_empty()),
            dns_options: dns
                .options
                .map(|o| {
                    o.into_iter()
                        .filter_map(|o| {
                            o.name.map(|n| match o.value {
                                Some(v) => format!("{n}:{v}"),
                                None => n,
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .filter(|v| !v.is_empty()),
            extra_hosts: spec.host_aliases.map(|aliases| {
                aliases
                    .into_iter()
                    .flat_map(|a| {
                        let ip = a.ip.clone();
                        a.hostnames
                            .unwrap_or_default()
                            .into_iter()
                            .map(move |h| format!("{h}:{ip}"))
                    })
                    .collect()
            }),
            init: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where each pod volume is for app containers: an engine volume, or a host
/// directory (with `mountpoint` of engine volumes, for subPath mounts).
#[derive(Debug, Clone, Default)]
pub struct MountContext {
    /// Host directory of each engine volume (`Mountpoint` of the volume), for subPath.
    pub mountpoints: BTreeMap<String, String>,
}

/// The create body of one container attempt, joined to the infra container.
#[allow(clippy::too_many_arguments)]
pub fn app_body(
    pod: &Pod,
    id: &PodIdentity<'_>,
    c: &Container,
    role: Role,
    attempt: u32,
    infra_id: &str,
    volumes: &BTreeMap<String, VolumeSource>,
    mounts_ctx: &MountContext,
    flavor: Flavor,
) -> Result<ContainerCreateBody, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = id.labels();
    labels.insert(LABEL_CONTAINER.into(), c.name.clone());
    labels.insert(LABEL_ROLE.into(), role.as_str().into());
    labels.insert(LABEL_SPEC_HASH.into(), container_hash(c));
    labels.insert(LABEL_ATTEMPT.into(), attempt.to_string());

    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(src) = volumes.get(&m.name) else {
            return Err(format!("volume {:?} is not defined", m.name));
        };
        let sub = m.sub_path.as_deref().filter(|s| !s.is_empty());
        let mount = match (src, sub) {
            (VolumeSource::Engine { name, files, .. }, None) => Mount {
                target: Some(m.mount_path.clone()),
                source: Some(name.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(m.read_only.unwrap_or(false) || *files),
                ..Default::default()
            },
            (VolumeSource::Engine { files, .. }, Some(sub)) => {
                let Some(dir) = mounts_ctx.mountpoints.get(&m.name) else {
                    return Err(format!(
                        "volume {:?}: subPath needs the engine volume's host directory, \
                         which the engine did not report",
                        m.name
                    ));
                };
                Mount {
                    target: Some(m.mount_path.clone()),
                    source: Some(format!("{dir}/{sub}")),
                    typ: Some(MountType::BIND),
                    read_only: Some(m.read_only.unwrap_or(false) || *files),
                    ..Default::default()
                }
            }
            (VolumeSource::HostPath(path), sub) => Mount {
                target: Some(m.mount_path.clone()),
                source: Some(match sub {
                    Some(sub) => format!("{}/{sub}", path.trim_end_matches('/')),
                    None => path.clone(),
                }),
                typ: Some(MountType::BIND),
                read_only: Some(m.read_only.unwrap_or(false)),
                ..Default::default()
            },
        };
        mounts.push(mount);
    }

    let env: Vec<String> = c
        .env
        .iter()
        .flatten()
        .map(|e| format!("{}={}", e.name, e.value.as_deref().unwrap_or_default()))
        .collect();

    let sc = c.security_context.clone().unwrap_or_default();
    let psc = spec.security_context.clone().unwrap_or_default();
    let uid = sc.run_as_user.or(psc.run_as_user);
    let gid = sc.run_as_group.or(psc.run_as_group);
    let user = match (uid, gid) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        (None, Some(g)) => Some(format!("0:{g}")),
        (None, None) => None,
    };
    let caps = sc.capabilities.clone().unwrap_or_default();

    let limits = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let nano_cpus = match limits.get("cpu") {
        Some(q) => Some(
            i64::try_from(quantity_nanos(q).map_err(|e| format!("cpu limit {:?}: {e}", q.0))?)
                .map_err(|_| format!("cpu limit {:?} is too large", q.0))?,
        ),
        None => None,
    };
    let memory = match limits.get("memory") {
        Some(q) => Some(
            i64::try_from(
                quantity_nanos(q).map_err(|e| format!("memory limit {:?}: {e}", q.0))?
                    / 1_000_000_000,
            )
            .map_err(|_| format!("memory limit {:?} is too large", q.0))?,
        ),
        None => None,
    };

    let namespace_of = format!("container:{infra_id}");
    let tty = c.tty.unwrap_or(false);
    let stdin = c.stdin.unwrap_or(false);
    // Kubernetes' command replaces the image's entrypoint and args its cmd;
    // a command alone also drops the image's cmd (as the kubelet does).
    let (entrypoint, cmd) = match (&c.command, &c.args) {
        (Some(command), args) => (
            Some(command.clone()),
            Some(args.clone().unwrap_or_default()),
        ),
        (None, Some(args)) => (None, Some(args.clone())),
        (None, None) => (None, None),
    };
    Ok(ContainerCreateBody {
        image: c.image.clone(),
        entrypoint,
        cmd,
        env: Some(env),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        user,
        tty: Some(tty),
        open_stdin: Some(stdin),
        stdin_once: Some(c.stdin_once.unwrap_or(false)),
        attach_stdin: Some(stdin),
        labels: Some(labels),
        stop_timeout: spec.termination_grace_period_seconds,
        host_config: Some(HostConfig {
            network_mode: Some(namespace_of.clone()),
            ipc_mode: Some(namespace_of.clone()),
            uts_mode: (flavor == Flavor::Podman).then_some(namespace_of),
            mounts: Some(mounts),
            nano_cpus,
            memory,
            privileged: Some(sc.privileged.unwrap_or(false)),
            readonly_rootfs: Some(sc.read_only_root_filesystem.unwrap_or(false)),
            cap_add: caps.add.filter(|v| !v.is_empty()),
            cap_drop: caps.drop.filter(|v| !v.is_empty()),
            // The kubelet adds fsGroup, which owns the pod's volumes, to
            // the supplemental groups.
            group_add: Some(
                psc.fs_group
                    .into_iter()
                    .chain(psc.supplemental_groups.unwrap_or_default())
                    .map(|g| g.to_string())
                    .collect::<Vec<_>>(),
            )
            .filter(|v| !v.is_empty()),
            ulimits: None::<Vec<ResourcesUlimits>>,
            init: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Makes an app container's create body that of an ephemeral container
/// (`kubectl debug`): it keeps joining the infra container's network, IPC
/// and UTS namespaces, and joins the process namespace of its target
/// (`target_id`, the engine id of `targetContainerName`'s current attempt)
/// when it has one. Its spec, env left out, goes in [`LABEL_EPHEMERAL`].
pub fn as_ephemeral(
    body: &mut ContainerCreateBody,
    c: &Container,
    target_name: Option<&str>,
    target_id: Option<&str>,
) {
    let mut stored = c.clone();
    stored.env = None;
    stored.env_from = None;
    let mut json = serde_json::to_value(&stored).unwrap_or_default();
    if let (Some(obj), Some(t)) = (json.as_object_mut(), target_name) {
        obj.insert("targetContainerName".into(), t.into());
    }
    body.labels
        .get_or_insert_with(HashMap::new)
        .insert(LABEL_EPHEMERAL.into(), json.to_string());
    if let Some(id) = target_id {
        body.host_config
            .get_or_insert_with(Default::default)
            .pid_mode = Some(format!("container:{id}"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn policy() -> Policy {
        Policy {
            allow_privileged: false,
            allowed_host_paths: vec!["/srv/data".into()],
            network: "bridge".into(),
        }
    }

    fn id<'a>() -> PodIdentity<'a> {
        PodIdentity {
            node: "edge-0",
            namespace: "ns",
            name: "web",
            uid: "u-1",
        }
    }

    #[test]
    fn names_follow_the_dockershim_convention() {
        assert_eq!(container_name(&id(), "app", 3), "k8s_app_web_ns_u-1_3");
        assert_eq!(volume_name("u-1", "data"), "vk-u-1-data");
    }

    #[test]
    fn volume_plan_and_policy() {
        let cases = [
            (json!({"name": "a", "emptyDir": {}}), Ok(())),
            (json!({"name": "a", "configMap": {"name": "cm"}}), Ok(())),
            (
                json!({"name": "a", "hostPath": {"path": "/srv/data/x"}}),
                Ok(()),
            ),
            (
                json!({"name": "a", "hostPath": {"path": "/etc"}}),
                Err("not allowed on this node"),
            ),
            (
                json!({"name": "a", "hostPath": {"path": "/srv/data/../../etc"}}),
                Err("not allowed"),
            ),
            (
                json!({"name": "a", "persistentVolumeClaim": {"claimName": "c"}}),
                Err("does not support"),
            ),
        ];
        for (vol, want) in cases {
            let p = pod(json!({"containers": [{"name": "c", "image": "i"}], "volumes": [vol]}));
            match (plan_volumes(&p, &policy()), want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(w)) => assert!(e.contains(w), "{e}"),
                (got, want) => panic!("{vol}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn validation_reports_what_the_node_refuses() {
        let cases = [
            (
                json!({"name": "c", "image": "i", "securityContext": {"privileged": true}}),
                Some("privileged"),
            ),
            (
                json!({"name": "c", "image": "i", "livenessProbe": {"httpGet": {"port": "http"}}}),
                Some("not a named port"),
            ),
            (
                json!({"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 80}],
                       "livenessProbe": {"httpGet": {"port": "http"}}}),
                None,
            ),
            (
                json!({"name": "c", "image": "i", "ports": [{"containerPort": 70000}]}),
                Some("not a valid port"),
            ),
            (
                json!({"name": "c", "image": "i", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}),
                Some("does not define"),
            ),
            (
                json!({"name": "c", "image": "i", "readinessProbe": {"grpc": {"port": 1}}}),
                Some("grpc"),
            ),
        ];
        for (c, want) in cases {
            let p = pod(json!({"containers": [c]}));
            match (validate(&p, &policy()), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w), "{e}"),
                (got, want) => panic!("{c}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn app_container_joins_the_infra_namespaces_with_mounts_and_limits() {
        let p = pod(json!({
            "securityContext": {"runAsUser": 1000},
            "containers": [{
                "name": "c", "image": "busybox", "command": ["sh"], "args": ["-c", "true"],
                "env": [{"name": "A", "value": "1"}],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                "securityContext": {"runAsGroup": 2000, "readOnlyRootFilesystem": true},
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "cfg", "mountPath": "/etc/one", "subPath": "key"},
                    {"name": "scratch", "mountPath": "/scratch"}
                ]
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "cm"}}, {"name": "scratch", "emptyDir": {}}]
        }));
        let vols = plan_volumes(&p, &policy()).unwrap();
        let ctx = MountContext {
            mountpoints: BTreeMap::from([("cfg".into(), "/var/lib/v/cfg/_data".into())]),
        };
        let c = &p.spec.as_ref().unwrap().containers[0];
        let body = app_body(
            &p,
            &id(),
            c,
            Role::App,
            2,
            "infra1",
            &vols,
            &ctx,
            Flavor::Podman,
        )
        .unwrap();
        assert_eq!(body.entrypoint, Some(vec!["sh".to_string()]));
        assert_eq!(body.cmd, Some(vec!["-c".to_string(), "true".to_string()]));
        assert_eq!(body.env, Some(vec!["A=1".to_string()]));
        assert_eq!(body.user.as_deref(), Some("1000:2000"));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("container:infra1"));
        assert_eq!(hc.uts_mode.as_deref(), Some("container:infra1"));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.memory, Some(64 * 1024 * 1024));
        assert_eq!(hc.readonly_rootfs, Some(true));
        let mounts = hc.mounts.unwrap();
        assert_eq!(mounts[0].source.as_deref(), Some("vk-u-1-cfg"));
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(
            mounts[1].source.as_deref(),
            Some("/var/lib/v/cfg/_data/key")
        );
        assert_eq!(mounts[1].typ, Some(MountType::BIND));
        assert_eq!(mounts[2].read_only, Some(false));
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_ATTEMPT], "2");
        assert_eq!(labels[LABEL_ROLE], "app");
        assert_eq!(labels[vk_core::toolkit::pod_identity::LABEL_UID], "u-1");
        assert_eq!(labels[vk_core::toolkit::pod_identity::LABEL_NODE], "edge-0");
    }

    #[test]
    fn an_ephemeral_container_shares_its_targets_processes_and_keeps_its_spec() {
        let p = pod(json!({
            "containers": [{"name": "app", "image": "busybox"}],
            "ephemeralContainers": [{"name": "dbg", "image": "busybox", "stdin": true,
                "targetContainerName": "app",
                "env": [{"name": "TOKEN", "value": "secret"}]}]
        }));
        let e = &vk_core::toolkit::ephemeral::ephemeral_containers(&p)[0];
        let ctx = MountContext::default();
        let new_body = || {
            app_body(
                &p,
                &id(),
                &e.container,
                Role::Ephemeral,
                0,
                "infra-id",
                &BTreeMap::new(),
                &ctx,
                Flavor::Podman,
            )
            .unwrap()
        };
        let mut body = new_body();
        as_ephemeral(&mut body, &e.container, e.target.as_deref(), Some("app-id"));
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("container:infra-id"));
        assert_eq!(hc.ipc_mode.as_deref(), Some("container:infra-id"));
        assert_eq!(hc.pid_mode.as_deref(), Some("container:app-id"));
        assert_eq!(body.open_stdin, Some(true));
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_ROLE], "ephemeral");
        let stored: k8s_openapi::api::core::v1::EphemeralContainer =
            serde_json::from_str(&labels[LABEL_EPHEMERAL]).unwrap();
        assert_eq!(stored.name, "dbg");
        assert_eq!(stored.target_container_name.as_deref(), Some("app"));
        assert_eq!(stored.env, None, "env values stay out of labels");
        assert!(!labels[LABEL_EPHEMERAL].contains("secret"));

        // Without a target: the pod's namespaces only.
        let mut body = new_body();
        as_ephemeral(&mut body, &e.container, None, None);
        assert_eq!(body.host_config.as_ref().unwrap().pid_mode, None);
    }

    #[test]
    fn docker_gets_no_uts_mode_and_the_infra_carries_the_pod() {
        let p = pod(json!({"containers": [{"name": "c", "image": "i",
            "ports": [{"containerPort": 80, "hostPort": 8080}]}]}));
        let vols = plan_volumes(&p, &policy()).unwrap();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let body = app_body(
            &p,
            &id(),
            c,
            Role::App,
            0,
            "i",
            &vols,
            &MountContext::default(),
            Flavor::Docker,
        )
        .unwrap();
        assert_eq!(body.host_config.unwrap().uts_mode, None);
        let infra = infra_body(&p, &id(), &vols, &policy());
        let labels = infra.labels.unwrap();
        let stored: Pod = serde_json::from_str(&labels[LABEL_POD]).unwrap();
        assert_eq!(stored.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(infra.hostname.as_deref(), Some("web"));
        let hc = infra.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("bridge"));
        let pb = hc.port_bindings.unwrap();
        assert_eq!(
            pb["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("8080")
        );
    }

    #[test]
    fn host_paths_match_whole_components() {
        let allowed = vec!["/srv/data".to_string()];
        assert!(host_path_allowed("/srv/data", &allowed));
        assert!(host_path_allowed("/srv/data/x", &allowed));
        assert!(!host_path_allowed("/srv/database", &allowed));
        assert!(!host_path_allowed("relative", &allowed));
    }
}
