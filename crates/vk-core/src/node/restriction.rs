//! The labels a node may set on its own Node object under the NodeRestriction
//! admission plugin: labels outside the `kubernetes.io` and `k8s.io`
//! domains, the kubelet's own (`kubernetes.io/hostname`, `/os`, `/arch`,
//! topology and instance type), and those under `kubelet.kubernetes.io/` and
//! `node.kubernetes.io/`. Others (`kubernetes.io/role`,
//! `node-role.kubernetes.io/*`) are the cluster admin's to set.

/// The `kubernetes.io`/`k8s.io` labels a kubelet may set.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
];

/// Whether a node with its own credentials may set label `key` on itself.
pub fn node_may_set_label(key: &str) -> bool {
    let Some((domain, _)) = key.split_once('/') else {
        return true;
    };
    let in_domain = |d: &str, base: &str| d == base || d.ends_with(&format!(".{base}"));
    if !in_domain(domain, "kubernetes.io") && !in_domain(domain, "k8s.io") {
        return true;
    }
    KUBELET_LABELS.contains(&key)
        || in_domain(domain, "kubelet.kubernetes.io")
        || in_domain(domain, "node.kubernetes.io")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_node_restriction() {
        for allowed in [
            "type",
            "example.com/team",
            "kubernetes.io/hostname",
            "kubernetes.io/os",
            "beta.kubernetes.io/arch",
            "topology.kubernetes.io/zone",
            "node.kubernetes.io/exclude-from-external-load-balancers",
            "x.kubelet.kubernetes.io/anything",
            "notkubernetes.io/x",
        ] {
            assert!(node_may_set_label(allowed), "{allowed}");
        }
        for refused in [
            "kubernetes.io/role",
            "node-role.kubernetes.io/agent",
            "k8s.io/x",
            "foo.k8s.io/x",
            "kubernetes.io/anything",
        ] {
            assert!(!node_may_set_label(refused), "{refused}");
        }
    }
}
