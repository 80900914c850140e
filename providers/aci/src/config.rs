//! `vk-aci`'s own settings: where its container groups go (subscription,
//! resource group, region, VNet subnet), how it authenticates, and which ARM
//! and Entra ID endpoints it talks to. Flags, each with the environment
//! variable upstream's `virtual-kubelet/azure-aci` reads where the two
//! overlap, so an existing deployment's env keeps working.
//!
//! [`AciConfig::from_args`] checks everything once at start-up: a missing or
//! bad setting is one sentence for the binary to print before exiting 2.

use std::path::PathBuf;

use url::Url;
use vk_core::NodeCapacity;
use vk_core::toolkit::node_capacity::{CapacityDefaults, node_capacity};
use vk_core::toolkit::node_config::NodeResources;

/// Azure public cloud's Resource Manager.
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";
/// Azure public cloud's Entra ID authority.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// The flags of `vk-aci` beyond the common kubelet ones.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AciArgs {
    /// Subscription the container groups are created in.
    #[arg(long = "subscription-id", env = "AZURE_SUBSCRIPTION_ID")]
    pub subscription_id: Option<String>,
    /// Resource group of the container groups.
    #[arg(long = "resource-group", env = "ACI_RESOURCE_GROUP")]
    pub resource_group: Option<String>,
    /// Azure region of the container groups (`westeurope`...).
    #[arg(long = "region", env = "ACI_REGION")]
    pub region: Option<String>,
    /// Virtual network of the groups' subnet (VNet injection; with --subnet-name).
    #[arg(long = "vnet-name", env = "ACI_VNET_NAME")]
    pub vnet_name: Option<String>,
    /// Resource group of that network (default: --resource-group).
    #[arg(long = "vnet-resource-group", env = "ACI_VNET_RESOURCE_GROUP")]
    pub vnet_resource_group: Option<String>,
    /// Subnet delegated to `Microsoft.ContainerInstance/containerGroups`.
    #[arg(long = "subnet-name", env = "ACI_SUBNET_NAME")]
    pub subnet_name: Option<String>,
    /// Entra ID tenant (client secret and workload identity).
    #[arg(long = "tenant-id", env = "AZURE_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// Application (client) id, or the user-assigned managed identity's client id.
    #[arg(long = "client-id", env = "AZURE_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Client secret of the application (prefer workload identity).
    #[arg(
        long = "client-secret",
        env = "AZURE_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<String>,
    /// Federated token file of workload identity (what AKS injects).
    #[arg(long = "federated-token-file", env = "AZURE_FEDERATED_TOKEN_FILE")]
    pub federated_token_file: Option<PathBuf>,
    /// Resource Manager endpoint (sovereign clouds; https only).
    #[arg(long = "arm-endpoint", env = "ARM_ENDPOINT", default_value = DEFAULT_ARM_ENDPOINT)]
    pub arm_endpoint: String,
    /// Entra ID authority host (sovereign clouds; https only).
    #[arg(long = "authority-host", env = "AZURE_AUTHORITY_HOST", default_value = DEFAULT_AUTHORITY_HOST)]
    pub authority_host: String,
    /// Extra PEM CA certificates to trust for ARM and Entra ID, besides the
    /// system's (a private cloud's CA, a TLS-inspecting proxy, tests).
    #[arg(long = "extra-ca-file", env = "ACI_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,
    /// The cluster DNS service's IPs (comma-separated, as the kubelet's
    /// flag): the nameservers of ClusterFirst pods. Reachable from groups
    /// in a virtual network (--vnet-name, --subnet-name) connected to the
    /// cluster's.
    #[arg(long = "cluster-dns", env = "ACI_CLUSTER_DNS", value_delimiter = ',')]
    pub cluster_dns: Vec<String>,
}

/// How `vk-aci` gets its ARM tokens.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Workload identity: a federated token file exchanged for a token.
    WorkloadIdentity {
        /// Tenant.
        tenant_id: String,
        /// Application.
        client_id: String,
        /// The projected service-account token.
        token_file: PathBuf,
    },
    /// An application's client secret.
    ClientSecret {
        /// Tenant.
        tenant_id: String,
        /// Application.
        client_id: String,
        /// The secret.
        secret: String,
    },
    /// The managed identity of the host (user-assigned when a client id is given).
    ManagedIdentity {
        /// Client id of a user-assigned identity.
        client_id: Option<String>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => write!(
                f,
                "WorkloadIdentity({tenant_id}, {client_id}, {})",
                token_file.display()
            ),
            Credential::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => write!(f, "ClientSecret({tenant_id}, {client_id}, <redacted>)"),
            Credential::ManagedIdentity { client_id } => {
                write!(f, "ManagedIdentity({client_id:?})")
            }
        }
    }
}

/// Checked settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AciConfig {
    /// Subscription.
    pub subscription_id: String,
    /// Resource group.
    pub resource_group: String,
    /// Region.
    pub region: String,
    /// ARM id of the subnet the groups join, when VNet-injected.
    pub subnet_id: Option<String>,
    /// How to authenticate.
    pub credential: Credential,
    /// Resource Manager endpoint, without a trailing slash.
    pub arm_endpoint: Url,
    /// Entra ID authority host.
    pub authority_host: Url,
    /// Extra CA certificates to trust.
    pub extra_ca_file: Option<PathBuf>,
    /// The cluster DNS service's IPs (none: ClusterFirst pods use ACI's DNS).
    pub cluster_dns: Vec<String>,
}

fn https_url(flag: &str, text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("--{flag} {text:?}: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "--{flag} {text:?}: must be an https URL (tokens are never sent in clear)"
        ));
    }
    Ok(url)
}

fn required(value: &Option<String>, flag: &str, env: &str) -> Result<String, String> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(format!("--{flag} (or {env}) is required")),
    }
}

impl AciConfig {
    /// Checks the flags; the error is one sentence naming the setting.
    pub fn from_args(args: &AciArgs) -> Result<AciConfig, String> {
        let subscription_id = required(
            &args.subscription_id,
            "subscription-id",
            "AZURE_SUBSCRIPTION_ID",
        )?;
        let resource_group =
            required(&args.resource_group, "resource-group", "ACI_RESOURCE_GROUP")?;
        let region = required(&args.region, "region", "ACI_REGION")?;
        let subnet_id = match (&args.vnet_name, &args.subnet_name) {
            (Some(vnet), Some(subnet)) => {
                let vnet_group = args
                    .vnet_resource_group
                    .as_deref()
                    .unwrap_or(&resource_group);
                Some(format!(
                    "/subscriptions/{subscription_id}/resourceGroups/{vnet_group}/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{subnet}"
                ))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(
                    "--vnet-name (ACI_VNET_NAME) needs --subnet-name (ACI_SUBNET_NAME)".into(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "--subnet-name (ACI_SUBNET_NAME) needs --vnet-name (ACI_VNET_NAME)".into(),
                );
            }
        };
        let credential = match (&args.federated_token_file, &args.client_secret) {
            (Some(_), Some(_)) => {
                return Err(
                    "give either --federated-token-file (AZURE_FEDERATED_TOKEN_FILE) or --client-secret (AZURE_CLIENT_SECRET), not both"
                        .into(),
                );
            }
            (Some(file), None) => Credential::WorkloadIdentity {
                tenant_id: required(&args.tenant_id, "tenant-id", "AZURE_TENANT_ID")?,
                client_id: required(&args.client_id, "client-id", "AZURE_CLIENT_ID")?,
                token_file: file.clone(),
            },
            (None, Some(secret)) => Credential::ClientSecret {
                tenant_id: required(&args.tenant_id, "tenant-id", "AZURE_TENANT_ID")?,
                client_id: required(&args.client_id, "client-id", "AZURE_CLIENT_ID")?,
                secret: secret.clone(),
            },
            (None, None) => Credential::ManagedIdentity {
                client_id: args.client_id.clone().filter(|c| !c.is_empty()),
            },
        };
        if let Some(file) = &args.extra_ca_file
            && !file.is_file()
        {
            return Err(format!("--extra-ca-file {}: no such file", file.display()));
        }
        let cluster_dns = args
            .cluster_dns
            .iter()
            .map(|ip| {
                ip.trim()
                    .parse::<std::net::IpAddr>()
                    .map(|ip| ip.to_string())
                    .map_err(|_| format!("--cluster-dns {ip:?}: not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AciConfig {
            subscription_id,
            resource_group,
            region,
            subnet_id,
            credential,
            arm_endpoint: https_url("arm-endpoint", &args.arm_endpoint)?,
            authority_host: https_url("authority-host", &args.authority_host)?,
            extra_ca_file: args.extra_ca_file.clone(),
            cluster_dns,
        })
    }
}

/// What ACI offers when the node config file is silent: upstream azure-aci's
/// defaults (a region's quota is far larger than one node needs to show).
pub fn capacity_defaults(node: &str) -> CapacityDefaults {
    CapacityDefaults {
        cpu: Some("10000".into()),
        memory: Some("4Ti".into()),
        pods: Some("5000".into()),
        provider_id: Some(format!("azure-aci://{node}")),
    }
}

/// The node's capacity: the config file's values, else [`capacity_defaults`].
pub fn aci_node_capacity<X>(node: &str, resources: &NodeResources<X>) -> NodeCapacity {
    NodeCapacity {
        operating_system: Some("linux".into()),
        ..node_capacity(resources, capacity_defaults(node))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use vk_core::toolkit::node_config::NodeConfig;

    fn base() -> AciArgs {
        AciArgs {
            subscription_id: Some("sub".into()),
            resource_group: Some("rg".into()),
            region: Some("westeurope".into()),
            arm_endpoint: DEFAULT_ARM_ENDPOINT.into(),
            authority_host: DEFAULT_AUTHORITY_HOST.into(),
            ..Default::default()
        }
    }

    #[test]
    fn settings_are_checked_with_one_sentence_each() {
        type Edit = fn(&mut AciArgs);
        let cases: [(Edit, &str); 10] = [
            (
                |a| a.subscription_id = None,
                "--subscription-id (or AZURE_SUBSCRIPTION_ID) is required",
            ),
            (
                |a| a.resource_group = Some(" ".into()),
                "--resource-group (or ACI_RESOURCE_GROUP)",
            ),
            (|a| a.region = None, "--region (or ACI_REGION)"),
            (|a| a.vnet_name = Some("v".into()), "needs --subnet-name"),
            (|a| a.subnet_name = Some("s".into()), "needs --vnet-name"),
            (
                |a| a.client_secret = Some("s".into()),
                "--tenant-id (or AZURE_TENANT_ID)",
            ),
            (
                |a| {
                    a.client_secret = Some("s".into());
                    a.federated_token_file = Some("/t".into());
                },
                "not both",
            ),
            (
                |a| a.arm_endpoint = "http://arm".into(),
                "must be an https URL",
            ),
            (
                |a| a.authority_host = "not a url".into(),
                "--authority-host",
            ),
            (
                |a| a.cluster_dns = vec!["10.0.0.10".into(), "kube-dns".into()],
                "--cluster-dns \"kube-dns\": not an IP address",
            ),
        ];
        for (edit, want) in cases {
            let mut args = base();
            edit(&mut args);
            let err = AciConfig::from_args(&args).unwrap_err();
            assert!(err.contains(want), "{err}");
            assert_eq!(err.lines().count(), 1);
        }
    }

    #[test]
    fn credentials_and_subnet_follow_the_settings() {
        let c = AciConfig::from_args(&base()).unwrap();
        assert_eq!(
            c.credential,
            Credential::ManagedIdentity { client_id: None }
        );
        assert_eq!(c.subnet_id, None);
        assert_eq!(c.arm_endpoint.as_str(), "https://management.azure.com/");

        let mut a = base();
        a.tenant_id = Some("t".into());
        a.client_id = Some("app".into());
        a.federated_token_file = Some("/var/run/token".into());
        a.vnet_name = Some("vnet".into());
        a.subnet_name = Some("aci".into());
        let c = AciConfig::from_args(&a).unwrap();
        assert!(
            matches!(c.credential, Credential::WorkloadIdentity { ref client_id, .. } if client_id == "app")
        );
        assert_eq!(
            c.subnet_id.as_deref(),
            Some(
                "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/aci"
            )
        );

        a.federated_token_file = None;
        a.client_secret = Some("hunter2".into());
        a.vnet_resource_group = Some("net".into());
        let c = AciConfig::from_args(&a).unwrap();
        assert!(matches!(c.credential, Credential::ClientSecret { .. }));
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "the secret is never logged"
        );
        assert!(c.subnet_id.unwrap().contains("/resourceGroups/net/"));

        a.client_secret = None;
        let c = AciConfig::from_args(&a).unwrap();
        assert_eq!(
            c.credential,
            Credential::ManagedIdentity {
                client_id: Some("app".into())
            }
        );
    }

    #[test]
    fn capacity_from_the_file_else_upstream_defaults() {
        let config: NodeConfig =
            NodeConfig::parse(r#"{"aci-0": {"cpu": "40", "pods": "50"}}"#).unwrap();
        let cap = aci_node_capacity("aci-0", &config.node("aci-0"));
        let shown: Vec<String> = cap
            .capacity
            .iter()
            .map(|(k, v)| format!("{k}={}", v.0))
            .collect();
        assert_eq!(shown, ["cpu=40", "memory=4Ti", "pods=50"]);
        assert_eq!(cap.provider_id.as_deref(), Some("azure-aci://aci-0"));
        assert_eq!(cap.operating_system.as_deref(), Some("linux"));
        let other = aci_node_capacity("aci-1", &config.node("aci-1"));
        assert_eq!(other.capacity["cpu"].0, "10000");
    }
}
