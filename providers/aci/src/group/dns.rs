//! The pod's DNS → the group's `dnsConfig`, the way the kubelet forms a
//! pod's resolv.conf (`pkg/kubelet/network/dns`):
//!
//! | dnsPolicy | nameservers | searches | options |
//! |---|---|---|---|
//! | `ClusterFirst` (the default), `ClusterFirstWithHostNet`, with `--cluster-dns` | the cluster DNS, then the pod's | `<ns>.svc.<domain>`, `svc.<domain>`, `<domain>`, then the pod's | `ndots:5`, the pod's over it |
//! | `ClusterFirst` without `--cluster-dns` | as `Default`, and a `MissingClusterDNS` Warning (the kubelet's) | | |
//! | `Default` | ACI's DNS, or the pod's own when it names some | the pod's | the pod's |
//! | `None` | the pod's | the pod's | the pod's |
//!
//! Duplicates are dropped; at most 3 nameservers and 32 search domains are
//! kept (the kubelet's limits), with a `DNSConfigForming` Warning when some
//! are left out. ACI's `dnsConfig` needs a nameserver: searches or options
//! without one cannot be expressed and are a `DNSConfigForming` Warning too.
//! ACI adds Azure's resolver (168.63.129.16) to every group's resolv.conf.

use k8s_openapi::api::core::v1::PodSpec;

use super::{GroupSettings, Note};
use crate::models::DnsConfiguration;

/// The kubelet's limits.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// The group's DNS settings (see the module doc).
pub(super) fn dns_config(
    spec: &PodSpec,
    namespace: &str,
    settings: &GroupSettings,
    notes: &mut Vec<Note>,
) -> Option<DnsConfiguration> {
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster_first = matches!(policy, "ClusterFirst" | "ClusterFirstWithHostNet");
    let mut name_servers = Vec::new();
    let mut searches = Vec::new();
    // (name, value) in order; a later one of the same name replaces it.
    let mut options: Vec<(String, Option<String>)> = Vec::new();
    if cluster_first && !settings.cluster_dns.is_empty() {
        name_servers.clone_from(&settings.cluster_dns);
        let domain = &settings.cluster_domain;
        searches = vec![
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.clone(),
        ];
        options.push(("ndots".into(), Some("5".into())));
    } else if cluster_first {
        notes.push(Note {
            reason: "MissingClusterDNS",
            message: format!(
                "vk-aci has no --cluster-dns, so the {policy:?} policy cannot be given: the group uses ACI's DNS (\"Default\")"
            ),
        });
    }
    if let Some(d) = &spec.dns_config {
        push_unique(&mut name_servers, d.nameservers.iter().flatten().cloned());
        push_unique(&mut searches, d.searches.iter().flatten().cloned());
        for o in d.options.iter().flatten() {
            let Some(name) = o.name.clone() else { continue };
            match options.iter_mut().find(|(n, _)| *n == name) {
                Some(existing) => existing.1.clone_from(&o.value),
                None => options.push((name, o.value.clone())),
            }
        }
    }
    if name_servers.is_empty() {
        if !searches.is_empty() || !options.is_empty() {
            notes.push(Note {
                reason: "DNSConfigForming",
                message: "ACI's dnsConfig needs a nameserver: the pod's DNS searches and options without nameservers are not applied".into(),
            });
        }
        return None;
    }
    if name_servers.len() > MAX_NAMESERVERS || searches.len() > MAX_SEARCHES {
        let dropped: Vec<String> = name_servers
            .drain(name_servers.len().min(MAX_NAMESERVERS)..)
            .chain(searches.drain(searches.len().min(MAX_SEARCHES)..))
            .collect();
        notes.push(Note {
            reason: "DNSConfigForming",
            message: format!(
                "at most {MAX_NAMESERVERS} nameservers and {MAX_SEARCHES} search domains apply; left out: {}",
                dropped.join(" ")
            ),
        });
    }
    let options: Vec<String> = options
        .into_iter()
        .map(|(name, value)| match value {
            Some(v) => format!("{name}:{v}"),
            None => name,
        })
        .collect();
    Some(DnsConfiguration {
        name_servers,
        search_domains: (!searches.is_empty()).then(|| searches.join(" ")),
        options: (!options.is_empty()).then(|| options.join(" ")),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::{Value, json};

    use super::*;

    fn settings(cluster_dns: &[&str]) -> GroupSettings {
        GroupSettings {
            cluster_dns: cluster_dns.iter().map(|s| s.to_string()).collect(),
            cluster_domain: "cluster.local".into(),
            ..Default::default()
        }
    }

    #[test]
    fn dns_follows_the_kubelets_rules() {
        let cluster = ["10.0.0.10"];
        let cluster_search = "web.svc.cluster.local svc.cluster.local cluster.local";
        /// Case, cluster DNS, pod spec fields, dnsConfig wanted, note reasons.
        type Case<'a> = (&'a str, &'a [&'a str], Value, Value, &'a [&'a str]);
        let cases: Vec<Case> = vec![
            (
                "ClusterFirst by default: the cluster DNS and the namespace's searches",
                &cluster,
                json!({}),
                json!({"nameServers": ["10.0.0.10"], "searchDomains": cluster_search, "options": "ndots:5"}),
                &[],
            ),
            (
                "the pod's dnsConfig is appended, its options over the kubelet's",
                &cluster,
                json!({"dnsPolicy": "ClusterFirst", "dnsConfig": {
                    "nameservers": ["1.1.1.1", "10.0.0.10"], "searches": ["corp.example", "svc.cluster.local"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}),
                json!({"nameServers": ["10.0.0.10", "1.1.1.1"],
                    "searchDomains": format!("{cluster_search} corp.example"),
                    "options": "ndots:2 edns0"}),
                &[],
            ),
            (
                "ClusterFirstWithHostNet is ClusterFirst off the host network",
                &cluster,
                json!({"dnsPolicy": "ClusterFirstWithHostNet"}),
                json!({"nameServers": ["10.0.0.10"], "searchDomains": cluster_search, "options": "ndots:5"}),
                &[],
            ),
            (
                "ClusterFirst without --cluster-dns: ACI's DNS, said in an event",
                &[],
                json!({}),
                Value::Null,
                &["MissingClusterDNS"],
            ),
            (
                "Default: ACI's DNS",
                &cluster,
                json!({"dnsPolicy": "Default"}),
                Value::Null,
                &[],
            ),
            (
                "Default with the pod's nameservers",
                &cluster,
                json!({"dnsPolicy": "Default", "dnsConfig": {"nameservers": ["9.9.9.9"]}}),
                json!({"nameServers": ["9.9.9.9"]}),
                &[],
            ),
            (
                "searches without a nameserver cannot be expressed",
                &cluster,
                json!({"dnsPolicy": "Default", "dnsConfig": {"searches": ["corp.example"]}}),
                Value::Null,
                &["DNSConfigForming"],
            ),
            (
                "None: the pod's own only",
                &cluster,
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["9.9.9.9"], "searches": ["a.example"]}}),
                json!({"nameServers": ["9.9.9.9"], "searchDomains": "a.example"}),
                &[],
            ),
            (
                "more than 3 nameservers: the first 3, and an event",
                &["10.0.0.10", "10.0.0.11"],
                json!({"dnsConfig": {"nameservers": ["1.1.1.1", "8.8.8.8"]}}),
                json!({"nameServers": ["10.0.0.10", "10.0.0.11", "1.1.1.1"],
                    "searchDomains": cluster_search, "options": "ndots:5"}),
                &["DNSConfigForming"],
            ),
        ];
        for (name, cluster_dns, fields, want, reasons) in cases {
            let mut spec = json!({"containers": []});
            for (k, v) in fields.as_object().unwrap() {
                spec[k] = v.clone();
            }
            let spec: PodSpec = serde_json::from_value(spec).unwrap();
            let mut notes = Vec::new();
            let got = dns_config(&spec, "web", &settings(cluster_dns), &mut notes);
            assert_eq!(serde_json::to_value(&got).unwrap(), want, "{name}");
            let got: Vec<&str> = notes.iter().map(|n| n.reason).collect();
            assert_eq!(got, reasons, "{name}: {notes:?}");
        }
    }
}
