//! The sync decision: from a pod as the API shows it and what the backend
//! holds for it, what one sync must do. Pure: no I/O, no clock of its own,
//! so every case is a table test.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;

use super::backend::{BackendEntry, spec_hash};
use super::volumes;

/// What one sync of a pod does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Deletion requested: stop the workload (when the backend holds it),
    /// honouring the grace period, then delete the API object.
    Delete {
        /// Whether the backend holds a workload for this UID.
        in_backend: bool,
        /// The pod's `deletionGracePeriodSeconds` (30 s when unset).
        grace: Duration,
    },
    /// The workload vanished from the backend while the pod should run: the
    /// pod fails with reason `NotFound`.
    FailVanished,
    /// The pod's `activeDeadlineSeconds` ran out: stop the workload (when
    /// the backend holds it) with the pod's termination grace period, then
    /// fail the pod with reason `DeadlineExceeded`, as the kubelet does.
    DeadlineExceeded {
        /// Whether the backend holds a workload for this UID.
        in_backend: bool,
        /// The pod's `terminationGracePeriodSeconds` (30 s when unset).
        grace: Duration,
    },
    /// A finished pod the backend does not hold: nothing to do.
    Nothing,
    /// Not in the backend: resolve, create, then write the status.
    Create,
    /// In the backend: push what changed (if anything), then write the status.
    Run(Option<Push>),
}

/// What a running workload is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// The spec changed in what a backend acts on: `update_pod`.
    Spec,
    /// Volume files may have changed (a token's renewal, objects followed
    /// every refresh period, labels read by downwardAPI files):
    /// `refresh_volumes`, when a file differs.
    Files,
}

/// Whether a pod is finished (`Succeeded` or `Failed`).
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// When the pod's `activeDeadlineSeconds` runs out: its `status.startTime`
/// plus the deadline (the kubelet counts from the same point). `None` without
/// a deadline or before the pod has a start time.
pub fn active_deadline(pod: &Pod) -> Option<SystemTime> {
    let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = pod.status.as_ref()?.start_time.as_ref()?;
    Some(SystemTime::from(start.0) + Duration::from_secs(seconds.max(0) as u64))
}

/// The plan for `pod`, given its backend entry, whether its workload was
/// seen vanishing, and the time.
pub fn decide(pod: &Pod, entry: Option<&BackendEntry>, vanished: bool, now: SystemTime) -> Plan {
    if pod.metadata.deletion_timestamp.is_some() {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or(30)
            .max(0);
        return Plan::Delete {
            in_backend: entry.is_some(),
            grace: Duration::from_secs(grace as u64),
        };
    }
    let terminal = is_terminal(pod);
    if !terminal && active_deadline(pod).is_some_and(|t| t <= now) {
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0);
        return Plan::DeadlineExceeded {
            in_backend: entry.is_some(),
            grace: Duration::from_secs(grace as u64),
        };
    }
    if vanished && !terminal {
        return Plan::FailVanished;
    }
    let Some(entry) = entry else {
        return if terminal {
            Plan::Nothing
        } else {
            Plan::Create
        };
    };
    if spec_hash(pod) != entry.spec_hash {
        return Plan::Run(Some(Push::Spec));
    }
    // A finished pod's files are left as they are, as the kubelet does.
    let due = entry.refresh_at.is_some_and(|t| t <= now);
    let downward_changed = volumes::downward_inputs_hash(pod) != entry.downward_hash;
    if !terminal && (due || downward_changed) {
        return Plan::Run(Some(Push::Files));
    }
    Plan::Run(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, DownwardAPIVolumeFile, DownwardAPIVolumeSource, ObjectFieldSelector, PodSpec,
        PodStatus, Volume,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    fn pod(image: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    /// `p` with a downwardAPI file of its labels, labelled `value`.
    fn labels_file(mut p: Pod, value: &str) -> Pod {
        p.metadata.labels = Some([("app".to_string(), value.to_string())].into());
        p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
            name: "info".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "labels".into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.labels".into(),
                        api_version: None,
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        p
    }

    fn held(p: &Pod) -> BackendEntry {
        let mut e = BackendEntry::new("u1".into(), None, spec_hash(p));
        e.downward_hash = volumes::downward_inputs_hash(p);
        e
    }

    fn deleting(mut p: Pod, grace: Option<i64>) -> Pod {
        p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        p.metadata.deletion_grace_period_seconds = grace;
        p
    }

    /// `p` started `ago` before `now` with a deadline of `deadline` seconds.
    fn with_deadline(mut p: Pod, deadline: i64, started: SystemTime) -> Pod {
        let spec = p.spec.as_mut().unwrap();
        spec.active_deadline_seconds = Some(deadline);
        spec.termination_grace_period_seconds = Some(3);
        p.status.as_mut().unwrap().start_time = Some(Time(Timestamp::try_from(started).unwrap()));
        p
    }

    #[test]
    fn plans() {
        let now = SystemTime::now();
        let running = pod("busybox:1", "Running");
        let entry = held(&running);
        let mut due = held(&running);
        due.refresh_at = Some(now - Duration::from_secs(1));
        let mut later = held(&running);
        later.refresh_at = Some(now + Duration::from_secs(60));
        let with_file = labels_file(running.clone(), "v1");
        let file_entry = held(&with_file);
        let mut relabelled_no_file = running.clone();
        relabelled_no_file.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        let ten_ago = now - Duration::from_secs(10);
        let mut no_start = running.clone();
        no_start.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
        let no_start_entry = held(&no_start);
        let not_yet = with_deadline(running.clone(), 60, ten_ago);
        let not_yet_entry = held(&not_yet);
        let cases: Vec<(&str, Pod, Option<&BackendEntry>, bool, Plan)> = vec![
            (
                "deadline passed",
                with_deadline(running.clone(), 5, ten_ago),
                Some(&entry),
                false,
                Plan::DeadlineExceeded {
                    in_backend: true,
                    grace: Duration::from_secs(3),
                },
            ),
            (
                "deadline passed, workload vanished",
                with_deadline(running.clone(), 5, ten_ago),
                None,
                true,
                Plan::DeadlineExceeded {
                    in_backend: false,
                    grace: Duration::from_secs(3),
                },
            ),
            (
                "deadline not reached",
                not_yet,
                Some(&not_yet_entry),
                false,
                Plan::Run(None),
            ),
            (
                "deadline without a start time",
                no_start,
                Some(&no_start_entry),
                false,
                Plan::Run(None),
            ),
            (
                "finished before its deadline",
                with_deadline(pod("busybox:1", "Succeeded"), 5, ten_ago),
                None,
                false,
                Plan::Nothing,
            ),
            (
                "deleted after its deadline",
                deleting(with_deadline(running.clone(), 5, ten_ago), Some(0)),
                Some(&entry),
                false,
                Plan::Delete {
                    in_backend: true,
                    grace: Duration::ZERO,
                },
            ),
            (
                "new pod",
                pod("busybox:1", "Pending"),
                None,
                false,
                Plan::Create,
            ),
            (
                "unchanged",
                running.clone(),
                Some(&entry),
                false,
                Plan::Run(None),
            ),
            (
                "image changed",
                pod("busybox:2", "Running"),
                Some(&entry),
                false,
                Plan::Run(Some(Push::Spec)),
            ),
            (
                "token due",
                running.clone(),
                Some(&due),
                false,
                Plan::Run(Some(Push::Files)),
            ),
            (
                "not due yet",
                running.clone(),
                Some(&later),
                false,
                Plan::Run(None),
            ),
            (
                "labels read by a file changed",
                labels_file(running.clone(), "v2"),
                Some(&file_entry),
                false,
                Plan::Run(Some(Push::Files)),
            ),
            (
                "labels no file reads changed",
                relabelled_no_file,
                Some(&entry),
                false,
                Plan::Run(None),
            ),
            (
                "finished pod's files are left alone",
                pod("busybox:1", "Succeeded"),
                Some(&due),
                false,
                Plan::Run(None),
            ),
            (
                "finished and not in the backend",
                pod("busybox:1", "Failed"),
                None,
                false,
                Plan::Nothing,
            ),
            ("vanished", running.clone(), None, true, Plan::FailVanished),
            (
                "vanished after it finished",
                pod("busybox:1", "Succeeded"),
                None,
                true,
                Plan::Nothing,
            ),
            (
                "deleted with grace",
                deleting(running.clone(), Some(5)),
                Some(&entry),
                false,
                Plan::Delete {
                    in_backend: true,
                    grace: Duration::from_secs(5),
                },
            ),
            (
                "deleted, never created, default grace",
                deleting(running.clone(), None),
                None,
                true,
                Plan::Delete {
                    in_backend: false,
                    grace: Duration::from_secs(30),
                },
            ),
        ];
        for (name, pod, entry, vanished, want) in cases {
            assert_eq!(decide(&pod, entry, vanished, now), want, "{name}");
        }
    }
}
