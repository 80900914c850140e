//! The ARM shapes of `Microsoft.ContainerInstance/containerGroups`
//! (api-version [`API_VERSION`]), written from the contract in
//! `shared/specs/aci/containerInstance.json`: what the provider sends and
//! what it reads back. Field names follow the contract's JSON spelling; an
//! absent field is left out of the body, never sent as `null`.
//!
//! Only what the provider uses is modelled. Responses may carry more (ARM
//! adds fields over time): unknown fields are ignored when reading.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The api-version of the contract these models follow.
pub const API_VERSION: &str = "2026-05-01";

/// A container group: the resource a pod becomes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerGroup {
    /// Resource id (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Resource name (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Resource type (responses only).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Azure region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Resource tags: the pod's identity (node, namespace, name, UID).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Availability zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Managed identities of the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ContainerGroupIdentity>,
    /// The group's properties.
    pub properties: ContainerGroupProperties,
}

/// `identity` of a container group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerGroupIdentity {
    /// `SystemAssigned`, `UserAssigned`, `SystemAssigned, UserAssigned` or `None`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// User-assigned identities by ARM resource id (values are empty in requests).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_assigned_identities: BTreeMap<String, UserAssignedIdentity>,
    /// Principal of a system-assigned identity (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Tenant of a system-assigned identity (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// A user-assigned identity as ARM reports it (both fields read-only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignedIdentity {
    /// Principal id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// `properties` of a container group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerGroupProperties {
    /// `Succeeded`, `Failed`, `Creating`... (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// The containers.
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Init containers, run in order before the containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<InitContainer>,
    /// Registry credentials for private images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_registry_credentials: Vec<ImageRegistryCredential>,
    /// `Always`, `OnFailure` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    /// The group's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<IpAddress>,
    /// `Linux` or `Windows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    /// Volumes the containers mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// The group's live state (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_view: Option<GroupInstanceView>,
    /// Subnets of a VNet-injected group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnet_ids: Vec<SubnetId>,
    /// DNS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfiguration>,
    /// `Standard`, `Dedicated`, `Confidential`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// `Regular` or `Spot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Properties of a confidential group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidential_compute_properties: Option<ConfidentialComputeProperties>,
}

/// A container of the group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// Container name (the pod's container name).
    pub name: String,
    /// Its properties.
    pub properties: ContainerProperties,
}

/// `properties` of a container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProperties {
    /// Image reference.
    pub image: String,
    /// The argv in exec form: the pod's command followed by its args.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Exposed ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_variables: Vec<EnvironmentVariable>,
    /// Resources (requests are mandatory in the contract).
    pub resources: ResourceRequirements,
    /// Mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<ContainerProbe>,
    /// Readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<ContainerProbe>,
    /// Privileges, capabilities and user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// The container's live state (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_view: Option<ContainerInstanceView>,
}

/// An init container of the group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InitContainer {
    /// Container name.
    pub name: String,
    /// Its properties.
    pub properties: InitContainerProperties,
}

/// `properties` of an init container (no resources, ports or probes in ACI).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitContainerProperties {
    /// Image reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The argv in exec form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_variables: Vec<EnvironmentVariable>,
    /// Mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Privileges, capabilities and user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Live state (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_view: Option<ContainerInstanceView>,
}

/// A container's security context (the contract's `SecurityContextDefinition`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    /// A privileged container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Whether a process may gain more privileges than its parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Capabilities added and dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// GID of the container's processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i32>,
    /// UID of the container's processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i32>,
    /// A seccomp profile: the profile's JSON, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<String>,
}

/// Capabilities added to and dropped from a container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Added (`NET_ADMIN`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Dropped (`ALL`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// One environment variable: exactly one of `value` and `secureValue`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentVariable {
    /// Name.
    pub name: String,
    /// A plain value (ARM returns it on GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A secret value (ARM never returns it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_value: Option<String>,
}

/// Requests and limits of a container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceRequirements {
    /// What the container reserves.
    pub requests: ResourceRequests,
    /// What it may burst to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimits>,
}

/// Requests: CPU cores and memory in GB (both mandatory).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequests {
    /// Memory in GB.
    #[serde(rename = "memoryInGB")]
    pub memory_in_gb: f64,
    /// CPU in cores.
    pub cpu: f64,
    /// GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuResource>,
}

/// Limits: CPU cores and memory in GB.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceLimits {
    /// Memory in GB.
    #[serde(
        default,
        rename = "memoryInGB",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_in_gb: Option<f64>,
    /// CPU in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuResource>,
}

/// A GPU count and SKU (`K80`, `P100`, `V100`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuResource {
    /// How many.
    pub count: i32,
    /// Which kind.
    pub sku: String,
}

/// A port a container exposes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerPort {
    /// Port number.
    pub port: i32,
    /// `TCP` or `UDP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A port of the group's IP address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Port {
    /// Port number.
    pub port: i32,
    /// `TCP` or `UDP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// The group's IP address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    /// Ports open on the address (mandatory, may be empty).
    #[serde(default)]
    pub ports: Vec<Port>,
    /// `Public` or `Private`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The address (responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// A liveness or readiness probe: exec or httpGet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProbe {
    /// Run a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ContainerExec>,
    /// Request a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<ContainerHttpGet>,
    /// Seconds before the first probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
    /// Seconds between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    /// Failures before the probe fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    /// Successes before the probe succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    /// Seconds a probe may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
}

/// The command of an exec probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerExec {
    /// argv.
    #[serde(default)]
    pub command: Vec<String>,
}

/// An httpGet probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerHttpGet {
    /// Path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port.
    pub port: i32,
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Extra headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

/// A header of an httpGet probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpHeader {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A volume of the group: one of `emptyDir`, `secret` or `azureFile`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Volume name (the pod's volume name).
    pub name: String,
    /// An empty directory (the contract gives it no shape: `{}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<serde_json::Value>,
    /// Files by name, contents base64-encoded (never returned by ARM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<BTreeMap<String, String>>,
    /// An Azure Files share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_file: Option<AzureFileVolume>,
}

/// An Azure Files share. Its `Debug` leaves the key out: a group printed
/// in a log must not carry it.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureFileVolume {
    /// Share name.
    pub share_name: String,
    /// Storage account.
    pub storage_account_name: String,
    /// The account's key (never returned by ARM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_key: Option<String>,
    /// Read-only mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

impl std::fmt::Debug for AzureFileVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureFileVolume")
            .field("share_name", &self.share_name)
            .field("storage_account_name", &self.storage_account_name)
            .field(
                "storage_account_key",
                &self.storage_account_key.as_ref().map(|_| "<redacted>"),
            )
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// A volume mounted into a container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// Where.
    pub mount_path: String,
    /// Read-only mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// Credentials of a private registry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRegistryCredential {
    /// Registry host, without scheme.
    pub server: String,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password (never returned by ARM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A subnet of a VNet-injected group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubnetId {
    /// ARM id of the subnet.
    pub id: String,
    /// Friendly name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// DNS settings of the group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsConfiguration {
    /// Name servers.
    pub name_servers: Vec<String>,
    /// Search domains, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_domains: Option<String>,
    /// resolv.conf options, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
}

/// Properties of a confidential group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfidentialComputeProperties {
    /// Base64 confidential compute enforcement policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cce_policy: Option<String>,
}

/// The group's instance view: its state and events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupInstanceView {
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Stopped`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The group's events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

/// A container's instance view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInstanceView {
    /// Restarts so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// The state now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_state: Option<ContainerState>,
    /// The state before the last restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<ContainerState>,
    /// The container's events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

/// A container's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    /// `Waiting`, `Running` or `Terminated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When this state began (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Exit code of a terminated container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// When it ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
    /// A readable detail (`Completed`, `Error`, `CrashLoopBackOff`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_status: Option<String>,
}

/// An event of the group or a container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// How many times it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// First time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<String>,
    /// Last time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<String>,
    /// Name (`Pulling`, `Started`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Normal` or `Warning`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// One page of `GET .../containerGroups`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerGroupList {
    /// The groups of this page.
    #[serde(default)]
    pub value: Vec<ContainerGroup>,
    /// The next page, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// A container's log (`GET .../containers/{name}/logs`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Logs {
    /// The text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// The body of `POST .../containers/{name}/exec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerExecRequest {
    /// The command: one string, which ACI splits into words like a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The terminal's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_size: Option<TerminalSize>,
}

/// A terminal's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i32>,
    /// Columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<i32>,
}

/// The answer to an exec or attach: where the session's WebSocket is and its
/// password (`ContainerExecResponse`, `ContainerAttachResponse`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamSession {
    /// The WebSocket to dial (`wss://...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_socket_uri: Option<String>,
    /// The session's password (exec: the first message; attach: the
    /// `Authorization` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for StreamSession {
    /// Leaves the password out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSession")
            .field("web_socket_uri", &self.web_socket_uri)
            .finish_non_exhaustive()
    }
}

/// An ARM error body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudError {
    /// The error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CloudErrorBody>,
}

/// The inner error of [`CloudError`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudErrorBody {
    /// Machine-readable code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The status resource of an `Azure-AsyncOperation` URL.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AsyncOperation {
    /// `InProgress`, `Succeeded`, `Failed` or `Canceled`.
    #[serde(default)]
    pub status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CloudErrorBody>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const SPECS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/specs/aci/examples"
    );

    fn example(name: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(format!("{SPECS}/{name}")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn reads_the_contract_examples() {
        let get = example("ContainerGroupsGet_Failed.json");
        let g: ContainerGroup =
            serde_json::from_value(get["responses"]["200"]["body"].clone()).unwrap();
        assert_eq!(g.properties.provisioning_state.as_deref(), Some("Failed"));
        let view = g.properties.instance_view.as_ref().unwrap();
        assert_eq!(view.state.as_deref(), Some("Pending"));
        assert_eq!(view.events[0].name.as_deref(), Some("FailedMount"));
        let c = &g.properties.containers[0];
        let cv = c.properties.instance_view.as_ref().unwrap();
        assert_eq!(
            cv.current_state.as_ref().unwrap().state.as_deref(),
            Some("Waiting")
        );
        assert_eq!(cv.events.len(), 2);
        assert_eq!(
            g.properties.ip_address.unwrap().ip.as_deref(),
            Some("10.0.0.1")
        );
        let list = example("ContainerGroupsListByResourceGroup.json");
        let l: ContainerGroupList =
            serde_json::from_value(list["responses"]["200"]["body"].clone()).unwrap();
        assert!(!l.value.is_empty());
    }

    #[test]
    fn absent_fields_are_left_out() {
        let g = ContainerGroup {
            location: Some("westeurope".into()),
            properties: ContainerGroupProperties {
                containers: vec![Container {
                    name: "c".into(),
                    properties: ContainerProperties {
                        image: "nginx".into(),
                        environment_variables: vec![EnvironmentVariable {
                            name: "S".into(),
                            secure_value: Some("x".into()),
                            ..Default::default()
                        }],
                        resources: ResourceRequirements {
                            requests: ResourceRequests {
                                memory_in_gb: 1.5,
                                cpu: 1.0,
                                gpu: None,
                            },
                            limits: None,
                        },
                        ..Default::default()
                    },
                }],
                os_type: Some("Linux".into()),
                volumes: vec![Volume {
                    name: "v".into(),
                    empty_dir: Some(serde_json::json!({})),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "location": "westeurope",
                "properties": {
                    "containers": [{"name": "c", "properties": {
                        "image": "nginx",
                        "environmentVariables": [{"name": "S", "secureValue": "x"}],
                        "resources": {"requests": {"memoryInGB": 1.5, "cpu": 1.0}}
                    }}],
                    "osType": "Linux",
                    "volumes": [{"name": "v", "emptyDir": {}}]
                }
            })
        );
    }
}
