//! Task definitions and secrets left without a pod: a create interrupted
//! between `RegisterTaskDefinition` (or `CreateSecret`) and `RunTask` (a
//! killed vk-fargate), for a pod deleted before vk-fargate was back. The
//! core never asks to delete such a pod (the backend holds no task for it),
//! so the provider looks for them itself.
//!
//! Every [`FargateConfig::sweep_interval`](crate::config::FargateConfig)
//! (and at the first listing after a start, the adoption) the provider
//! lists the account's active task definitions and the `vk-rs/` secrets
//! tagged with this node. One whose pod has no task of this node and was
//! never created by this process is a candidate; a candidate still one at
//! the next sweep is removed ([`decide`]): the interval is the grace a create
//! in flight elsewhere, or a pod waiting in the core's queue, gets.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{TaskDefinitionField, TaskDefinitionStatus};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use vk_core::provider::{PodKey, ProviderResult};
use vk_core::toolkit::pod_identity::PodIdentity;

use tracing::info;

use crate::aws::{Clients, provider_error};
use crate::launch::delete_secret;

/// Something a pod left in AWS.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leftover {
    /// An active task definition revision, by ARN.
    Definition(String),
    /// The pod's Secrets Manager secret, by name.
    Secret(String),
}

/// A leftover and the pod it was made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// What is left.
    pub leftover: Leftover,
    /// The pod it belongs to (from its tags).
    pub pod: PodKey,
}

/// What the sweep remembers between runs.
#[derive(Debug, Default)]
struct Memory {
    /// Leftovers seen by the last sweep.
    candidates: BTreeSet<Leftover>,
    /// When the next sweep is due; `None`: at the next full listing.
    next: Option<Instant>,
    /// The pod (of this node) each task definition was registered for, as
    /// described once (`None`: not this node's).
    owners: HashMap<String, Option<PodKey>>,
}

/// The sweep of one node's leftovers (see the module doc).
#[derive(Debug)]
pub struct Sweeper {
    interval: Duration,
    memory: Mutex<Memory>,
}

impl Sweeper {
    /// A sweeper running every `interval`, first at the first listing.
    pub fn new(interval: Duration) -> Sweeper {
        Sweeper {
            interval,
            memory: Mutex::default(),
        }
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a sweep is due now; if so, the next one is scheduled.
    pub fn due_now(&self) -> bool {
        let now = Instant::now();
        let mut memory = self.memory();
        if memory.next.is_some_and(|at| now < at) {
            return false;
        }
        memory.next = Some(now + self.interval);
        true
    }

    /// One sweep of node `node`'s leftovers. `known_families`: families of
    /// this node's tasks and pods (never described); `live`: UIDs of pods
    /// with a task or created by this process; `not_created(uid)`, asked
    /// again right before each removal: no create of that pod started since.
    pub async fn run(
        &self,
        clients: &Clients,
        node: &str,
        known_families: &HashSet<String>,
        live: &HashSet<String>,
        not_created: impl Fn(&str) -> bool,
    ) -> ProviderResult<()> {
        let mut found = node_secrets(clients, node).await?;
        for arn in active_definitions(clients).await? {
            if known_families.contains(family_of_arn(&arn)) {
                continue;
            }
            let cached = self.memory().owners.get(&arn).cloned();
            let owner = match cached {
                Some(owner) => owner,
                None => {
                    let owner = definition_owner(clients, &arn, node).await?;
                    self.memory().owners.insert(arn.clone(), owner.clone());
                    owner
                }
            };
            if let Some(pod) = owner {
                found.push(Found {
                    leftover: Leftover::Definition(arn),
                    pod,
                });
            }
        }
        let remove = {
            let mut memory = self.memory();
            let (remove, next) = decide(&found, live, &memory.candidates);
            memory.candidates = next;
            remove
        };
        for f in remove.into_iter().filter(|f| not_created(&f.pod.uid)) {
            match &f.leftover {
                Leftover::Definition(arn) => {
                    clients
                        .ecs
                        .deregister_task_definition()
                        .task_definition(arn)
                        .send()
                        .await
                        .map_err(|e| {
                            provider_error(&format!("DeregisterTaskDefinition for {}", f.pod), e)
                        })?;
                    self.memory().owners.remove(arn);
                    info!(pod = %f.pod, definition = %arn, "task definition without a pod or task deregistered");
                }
                Leftover::Secret(name) => {
                    delete_secret(clients, name, &f.pod).await?;
                    info!(pod = %f.pod, secret = %name, "secret without a pod or task deleted");
                }
            }
        }
        Ok(())
    }
}

/// Which of `found` to remove now, and the candidates for the next sweep.
/// `live`: UIDs of pods with a task of this node or created by this process;
/// `previous`: the candidates of the previous sweep. A leftover of a pod not
/// live is removed when it was a candidate before, else it becomes one.
pub fn decide(
    found: &[Found],
    live: &HashSet<String>,
    previous: &BTreeSet<Leftover>,
) -> (Vec<Found>, BTreeSet<Leftover>) {
    let mut remove = Vec::new();
    let mut next = BTreeSet::new();
    for f in found.iter().filter(|f| !live.contains(&f.pod.uid)) {
        if previous.contains(&f.leftover) {
            remove.push(f.clone());
        } else {
            next.insert(f.leftover.clone());
        }
    }
    (remove, next)
}

/// The pod of a resource tagged for node `node`, from its tags.
fn owner<'a>(tags: &HashMap<&'a str, &'a str>, node: &str) -> Option<PodKey> {
    let identity = PodIdentity::from_labels(|k| tags.get(k).copied())?;
    (identity.node == node).then(|| identity.key())
}

/// The family of a task definition ARN (`...:task-definition/<family>:<rev>`).
pub fn family_of_arn(arn: &str) -> &str {
    let tail = arn.rsplit('/').next().unwrap_or(arn);
    tail.rsplit_once(':').map_or(tail, |(family, _)| family)
}

/// ARNs of the account's active task definitions.
async fn active_definitions(clients: &Clients) -> ProviderResult<Vec<String>> {
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let out = clients
            .ecs
            .list_task_definitions()
            .status(TaskDefinitionStatus::Active)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| provider_error("ListTaskDefinitions (sweep)", e))?;
        arns.extend(out.task_definition_arns().iter().cloned());
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(arns);
        }
    }
}

/// The pod a task definition was registered for, when it was for node
/// `node` (`None` for any other definition of the account).
async fn definition_owner(
    clients: &Clients,
    arn: &str,
    node: &str,
) -> ProviderResult<Option<PodKey>> {
    let out = clients
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(|e| provider_error("DescribeTaskDefinition (sweep)", e))?;
    let tags: HashMap<&str, &str> = out
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    Ok(owner(&tags, node))
}

/// This node's pod secrets (`vk-rs/...`, tagged with the node), with their pods.
async fn node_secrets(clients: &Clients, node: &str) -> ProviderResult<Vec<Found>> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values("vk-rs/")
            .build();
        let out = clients
            .secrets
            .list_secrets()
            .filters(filter)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| provider_error("ListSecrets (sweep)", e))?;
        for s in out.secret_list() {
            let tags: HashMap<&str, &str> = s
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value()?)))
                .collect();
            if let (Some(name), Some(pod)) = (s.name(), owner(&tags, node)) {
                found.push(Found {
                    leftover: Leftover::Secret(name.to_string()),
                    pod,
                });
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(found);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key(uid: &str) -> PodKey {
        PodKey {
            namespace: "ns".into(),
            name: format!("p-{uid}"),
            uid: uid.into(),
        }
    }

    fn def(arn: &str, uid: &str) -> Found {
        Found {
            leftover: Leftover::Definition(arn.into()),
            pod: key(uid),
        }
    }

    #[test]
    fn a_leftover_goes_at_its_second_sighting_unless_its_pod_is_live() {
        let found = vec![
            def("arn:td/a:1", "a"),
            def("arn:td/b:1", "b"),
            Found {
                leftover: Leftover::Secret("vk-rs/b".into()),
                pod: key("b"),
            },
            def("arn:td/c:1", "c"),
        ];
        let live: HashSet<String> = ["c".to_string()].into();
        // First sighting: candidates only, nothing removed.
        let (remove, next) = decide(&found, &live, &BTreeSet::new());
        assert!(remove.is_empty());
        assert_eq!(next.len(), 3);
        assert!(!next.contains(&Leftover::Definition("arn:td/c:1".into())));
        // Second: removed, unless the pod came alive meanwhile (a create).
        let live: HashSet<String> = ["a".to_string(), "c".to_string()].into();
        let (remove, next) = decide(&found, &live, &next);
        let removed: Vec<&Leftover> = remove.iter().map(|f| &f.leftover).collect();
        assert_eq!(
            removed,
            [
                &Leftover::Definition("arn:td/b:1".into()),
                &Leftover::Secret("vk-rs/b".into())
            ]
        );
        assert!(next.is_empty());
    }

    #[test]
    fn owners_and_families() {
        let tags: HashMap<&str, &str> = [
            ("io.vk-rs.node", "fargate-0"),
            ("io.vk-rs.pod-namespace", "ns"),
            ("io.vk-rs.pod-name", "web"),
            ("io.vk-rs.pod-uid", "u1"),
        ]
        .into();
        assert_eq!(owner(&tags, "fargate-0").map(|k| k.uid), Some("u1".into()));
        assert_eq!(owner(&tags, "fargate-1"), None);
        assert_eq!(owner(&HashMap::new(), "fargate-0"), None);
        assert_eq!(
            family_of_arn("arn:aws:ecs:us-east-1:1:task-definition/ns-web-abc:3"),
            "ns-web-abc"
        );
    }
}
