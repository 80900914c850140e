//! How a pod is known in a backend: a name the backend accepts, unique per
//! pod UID, and the labels (engine labels, cloud tags) that carry its node,
//! namespace, name and UID, so that a restarted provider finds its workloads
//! again from the backend alone.
//!
//! Names: `<namespace>-<name>` cut to fit, with the backend's forbidden
//! characters replaced, then `-` and 16 hex digits of the UID's SHA-256. Two
//! pods with the same namespace and name but different UIDs (a pod deleted
//! and created again) never share a name, and a long name never pushes the
//! UID's part out.

use sha2::{Digest, Sha256};

use crate::provider::PodKey;

/// Label: the node that owns the object.
pub const LABEL_NODE: &str = "io.vk-rs.node";
/// Label: pod UID.
pub const LABEL_UID: &str = "io.vk-rs.pod-uid";
/// Label: pod namespace.
pub const LABEL_NAMESPACE: &str = "io.vk-rs.pod-namespace";
/// Label: pod name.
pub const LABEL_NAME: &str = "io.vk-rs.pod-name";

/// Hex digits of the UID's hash in a backend name (64 bits).
const HASH_DIGITS: usize = 16;

/// What a backend accepts as a name. Letters and digits always; names start
/// and end with one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameRules {
    /// The longest name, in characters.
    pub max_len: usize,
    /// Upper-case letters are folded to lower case.
    pub lowercase: bool,
    /// Characters allowed besides ASCII letters and digits.
    pub extra: &'static str,
    /// What replaces a forbidden character and separates the parts (one of `extra`).
    pub separator: char,
}

impl NameRules {
    /// An Azure container group: 1–63 lower-case letters, digits and `-`,
    /// starting and ending with a letter or digit, no `--`.
    pub const ACI_CONTAINER_GROUP: NameRules = NameRules {
        max_len: 63,
        lowercase: true,
        extra: "-",
        separator: '-',
    };

    /// An ECS task definition family: 1–255 letters, digits, `_` and `-`.
    pub const ECS_TASK_FAMILY: NameRules = NameRules {
        max_len: 255,
        lowercase: false,
        extra: "_-",
        separator: '-',
    };

    fn allowed(&self, c: char) -> bool {
        c.is_ascii_alphanumeric() || self.extra.contains(c)
    }
}

/// A pod as its backend objects carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodIdentity<'a> {
    /// Node name.
    pub node: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// UID.
    pub uid: &'a str,
}

impl<'a> PodIdentity<'a> {
    /// The identity of the pod `key` on `node`.
    pub fn new(node: &'a str, key: &'a PodKey) -> PodIdentity<'a> {
        PodIdentity {
            node,
            namespace: &key.namespace,
            name: &key.name,
            uid: &key.uid,
        }
    }

    /// The labels (or tags) every backend object of this pod carries.
    pub fn labels<C: FromIterator<(String, String)>>(&self) -> C {
        [
            (LABEL_NODE, self.node),
            (LABEL_UID, self.uid),
            (LABEL_NAMESPACE, self.namespace),
            (LABEL_NAME, self.name),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The identity from an object's labels (`get` looks one up); `None`
    /// unless all four are there.
    pub fn from_labels(get: impl Fn(&str) -> Option<&'a str>) -> Option<PodIdentity<'a>> {
        Some(PodIdentity {
            node: get(LABEL_NODE)?,
            namespace: get(LABEL_NAMESPACE)?,
            name: get(LABEL_NAME)?,
            uid: get(LABEL_UID)?,
        })
    }

    /// The pod's key.
    pub fn key(&self) -> PodKey {
        PodKey {
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            uid: self.uid.to_string(),
        }
    }

    /// The pod's name in a backend with `rules` (see the module doc).
    pub fn backend_name(&self, rules: &NameRules) -> String {
        backend_name(self.namespace, self.name, self.uid, rules)
    }
}

/// `<namespace>-<name>` made to fit `rules`, then the UID's hash.
pub fn backend_name(namespace: &str, name: &str, uid: &str, rules: &NameRules) -> String {
    let sep = rules.separator;
    let digest = Sha256::digest(uid.as_bytes());
    let mut hash: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hash.truncate(HASH_DIGITS.min(rules.max_len));
    let mut readable = String::new();
    for c in format!("{namespace}{sep}{name}").chars() {
        let c = if rules.allowed(c) { c } else { sep };
        let c = if rules.lowercase {
            c.to_ascii_lowercase()
        } else {
            c
        };
        // A letter or digit first, and no two separators in a row.
        if (readable.is_empty() && !c.is_ascii_alphanumeric())
            || (c == sep && readable.ends_with(sep))
        {
            continue;
        }
        readable.push(c);
    }
    // Room for the separator and the hash; every character kept is ASCII.
    readable.truncate(rules.max_len.saturating_sub(hash.len() + 1));
    let readable = readable.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if readable.is_empty() {
        hash
    } else {
        format!("{readable}{sep}{hash}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::{BTreeMap, HashMap, HashSet};

    use super::*;

    const RULES: [NameRules; 4] = [
        NameRules::ACI_CONTAINER_GROUP,
        NameRules::ECS_TASK_FAMILY,
        NameRules {
            max_len: 20,
            lowercase: false,
            extra: "_",
            separator: '_',
        },
        NameRules {
            max_len: 10,
            lowercase: true,
            extra: "-",
            separator: '-',
        },
    ];

    fn valid(name: &str, rules: &NameRules) -> bool {
        let ends_alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        !name.is_empty()
            && name.len() <= rules.max_len
            && name.chars().all(|c| rules.allowed(c))
            && (!rules.lowercase || !name.chars().any(|c| c.is_ascii_uppercase()))
            && ends_alnum(name.chars().next())
            && ends_alnum(name.chars().last())
            && !name.contains(&format!("{0}{0}", rules.separator))
    }

    #[test]
    fn names_fit_the_backend() {
        let long = "a".repeat(253);
        let cases = [
            ("default", "web-1", "3f1c1a9e-0b1e-4b8e-9a57-1c2d3e4f5a6b"),
            ("kube-system", "coredns.abc.def", "u1"),
            ("ns", &long, "u2"),
            (&long, &long, "u3"),
            ("ns", "Upper_Case", "u4"),
            ("_ns", "x", "u8"),
            ("-ns-", "-x-", "u5"),
            ("ns", "ünïcode", "u6"),
            ("", "", "u7"),
            ("a", "b", ""),
        ];
        for rules in &RULES {
            for (namespace, name, uid) in cases {
                let got = backend_name(namespace, name, uid, rules);
                assert!(valid(&got, rules), "{rules:?} {namespace}/{name}: {got:?}");
            }
        }
    }

    #[test]
    fn names_read_as_namespace_and_name_then_the_uid_hash() {
        let aci = &NameRules::ACI_CONTAINER_GROUP;
        let cases = [
            ("default", "web-1", "default-web-1-"),
            ("ns", "a.b.c", "ns-a-b-c-"),
            ("ns", "Web", "ns-web-"),
        ];
        for (namespace, name, prefix) in cases {
            let got = backend_name(namespace, name, "uid", aci);
            assert!(got.starts_with(prefix), "{got}");
            assert_eq!(got.len(), prefix.len() + HASH_DIGITS, "{got}");
        }
        let ecs = backend_name("ns", "Web", "uid", &NameRules::ECS_TASK_FAMILY);
        assert!(ecs.starts_with("ns-Web-"), "{ecs}");
        let long = backend_name("ns", &"x".repeat(100), "uid", aci);
        assert_eq!(long.len(), 63);
        assert!(long.starts_with("ns-xxx"));
    }

    #[test]
    fn same_input_same_name_and_uids_never_collide() {
        for rules in &RULES {
            let a = backend_name("ns", "web", "uid-1", rules);
            assert_eq!(a, backend_name("ns", "web", "uid-1", rules));
            let mut seen = HashSet::new();
            for i in 0..20_000 {
                let uid = format!("00000000-0000-4000-8000-{i:012x}");
                let n = backend_name("ns", &"w".repeat(300), &uid, rules);
                assert!(seen.insert(n.clone()), "{rules:?}: {uid} collides as {n}");
            }
        }
    }

    #[test]
    fn labels_carry_the_identity_and_read_back() {
        let key = PodKey {
            namespace: "ns".into(),
            name: "web".into(),
            uid: "u-1".into(),
        };
        let id = PodIdentity::new("edge-0", &key);
        let labels: HashMap<String, String> = id.labels();
        assert_eq!(labels.len(), 4);
        assert_eq!(labels[LABEL_NODE], "edge-0");
        assert_eq!(labels[LABEL_UID], "u-1");
        assert_eq!(labels[LABEL_NAMESPACE], "ns");
        assert_eq!(labels[LABEL_NAME], "web");
        let back = PodIdentity::from_labels(|k| labels.get(k).map(String::as_str)).unwrap();
        assert_eq!(back, id);
        assert_eq!(back.key(), key);
        let sorted: BTreeMap<String, String> = id.labels();
        for missing in [LABEL_NODE, LABEL_UID, LABEL_NAMESPACE, LABEL_NAME] {
            let get = |k: &str| (k != missing).then(|| sorted.get(k).map(String::as_str))?;
            assert!(PodIdentity::from_labels(get).is_none(), "{missing}");
        }
        assert_eq!(
            id.backend_name(&NameRules::ACI_CONTAINER_GROUP),
            backend_name("ns", "web", "u-1", &NameRules::ACI_CONTAINER_GROUP)
        );
    }
}
