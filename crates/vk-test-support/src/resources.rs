//! Objects a test creates and must not leave behind: a per-test namespace and
//! a guard that deletes any object when it drops.
//!
//! Deletion on drop is a synchronous `kubectl delete --wait=false`: it works
//! in any context (inside or outside a runtime, during a panic), never panics,
//! and does not wait for finalizers, so a test's end is not delayed by
//! namespace termination. Set `VK_TEST_KEEP_RESOURCES=1` to keep everything
//! for inspection after a run.

use std::path::PathBuf;

use crate::kubectl::kubectl_blocking;

/// Deletes one object with `kubectl delete` when dropped.
#[must_use = "the object is deleted when this guard drops"]
#[derive(Debug)]
pub struct DeleteOnDrop {
    vkcp: PathBuf,
    kubeconfig: PathBuf,
    /// `kind`, `name` and, for namespaced objects, `--namespace=NS`.
    target: Vec<String>,
}

impl DeleteOnDrop {
    /// Deletes `kind/name` (in `namespace`, if given) with the admin
    /// kubeconfig `kubeconfig` when dropped: for a cluster of a test's own.
    pub fn from_kubeconfig(
        vkcp: &std::path::Path,
        kubeconfig: &std::path::Path,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Self {
        DeleteOnDrop::new(
            vkcp.to_path_buf(),
            kubeconfig.to_path_buf(),
            kind,
            namespace,
            name,
        )
    }

    pub(crate) fn new(
        vkcp: PathBuf,
        kubeconfig: PathBuf,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Self {
        let mut target = vec![kind.to_string(), name.to_string()];
        if let Some(ns) = namespace {
            target.push(format!("--namespace={ns}"));
        }
        DeleteOnDrop {
            vkcp,
            kubeconfig,
            target,
        }
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if std::env::var_os("VK_TEST_KEEP_RESOURCES").is_some_and(|v| !v.is_empty()) {
            eprintln!(
                "VK_TEST_KEEP_RESOURCES is set: keeping {}",
                self.target.join(" ")
            );
            return;
        }
        let mut args = vec!["delete".to_string()];
        args.extend(self.target.iter().cloned());
        args.extend(["--ignore-not-found".to_string(), "--wait=false".to_string()]);
        match kubectl_blocking(&self.vkcp, &self.kubeconfig, &args) {
            Ok(out) if out.success() => {}
            Ok(out) => eprintln!("cleanup: `{}` failed: {}", out.command, out.stderr.trim()),
            Err(err) => eprintln!("cleanup: {err:#}"),
        }
    }
}

/// A namespace made for one test (see [`crate::TestCluster::namespace`]); it
/// and everything in it are deleted when this drops.
#[must_use = "the namespace is deleted when this guard drops"]
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    _delete: DeleteOnDrop,
}

impl TestNamespace {
    pub(crate) fn new(name: String, delete: DeleteOnDrop) -> Self {
        TestNamespace {
            name,
            _delete: delete,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}
