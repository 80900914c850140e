//! The backend toolkit: the pieces every provider needs between a pod and its
//! backend, written once here so that a new backend (AWS Fargate, Azure
//! Container Instances) is only its translation and its client.
//!
//! Everything here is pure or close to it (no Kubernetes client, no backend
//! client), tested with table cases, and used by the mock and the edge
//! providers:
//!
//! - [`node_config`]: the node config file (`--provider-config`), upstream
//!   virtual-kubelet's format, with room for a provider's own fields;
//! - [`node_capacity`]: the node's capacity from that file and the backend's
//!   defaults;
//! - [`container_status`]: `ContainerStatus` and its waiting, running and
//!   terminated states, with the kubelet's reasons;
//! - [`restart`]: whether a container restarts, sidecars, and the crash-loop
//!   back-off (10 s doubling to 5 min, reset after 10 min of running);
//! - [`log_lines`]: `tailLines`, `sinceTime`, `limitBytes`, `timestamps` and
//!   `follow` over any source of timestamped lines (a polled cloud log API);
//! - [`pod_identity`]: a backend-safe, unique name for a pod, and the labels
//!   or tags that carry its namespace, name, UID and node;
//! - [`pod_resources`]: a pod's total requests and limits, as the kubelet
//!   counts them (init containers, sidecars, overhead), for sizing;
//! - [`ephemeral`]: a pod's ephemeral containers (`kubectl debug`) as
//!   regular containers.
//!
//! It must not know any backend, nor call the API server: the pod runtime
//! ([`crate::pod`]) owns that.

pub mod container_status;
pub mod ephemeral;
pub mod log_lines;
pub mod node_capacity;
pub mod node_config;
pub mod pod_identity;
pub mod pod_resources;
pub mod restart;
