//! The Debian packages the tooling needs, and their installation when
//! `cargo xtask test` runs as root on a machine that lacks some (a fresh CI
//! machine never needs a manual step). Later work adds to [`PACKAGES`].

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// `(package, why it is needed)`. The Go toolchain is not here: Debian's is
/// older than the control plane's `go.mod` requires.
pub const PACKAGES: &[(&str, &str)] = &[
    ("procps", "kill(1), which stops the cluster's processes"),
    (
        "ca-certificates",
        "HTTPS to the Go module proxy when the control plane is built cold; \
         the CA bundle copied into the images",
    ),
    (
        "musl-tools",
        "musl-gcc, for the C parts of the static x86_64-unknown-linux-musl image builds",
    ),
    (
        "podman",
        "loading and running the built images in the image tests",
    ),
    (
        "runc",
        "the OCI runtime podman runs containers with on these machines",
    ),
    (
        "iproute2",
        "ip(8): the network namespace that gives a test node a routable address",
    ),
    (
        "busybox-static",
        "the static /bin/busybox the edge tests' images are built from, FROM scratch \
         (vk-test-support's busybox_image)",
    ),
    (
        "docker-registry",
        "the local registry with basic auth behind the edge tests' image pull secrets \
         (vk-test-support's Registry)",
    ),
    (
        "apache2-utils",
        "htpasswd(1): the bcrypt password file of the edge tests' registry",
    ),
    ("curl", "direct requests to the kubelet API in the tests"),
    (
        "openssl",
        "serving certificates signed by the test cluster's CA",
    ),
    (
        "python3-venv",
        "the virtual environment of the pinned moto the Fargate tests run \
         (vk-test-support's moto)",
    ),
];

/// Installs whatever of [`PACKAGES`] is missing (as root), or says what to
/// install (otherwise). Returns a one-line description of what it did.
pub fn ensure() -> Result<String> {
    if Command::new("dpkg-query")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return Ok("not a Debian system (no dpkg-query): skipped".to_string());
    }
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !installed(name))
        .collect();
    if missing.is_empty() {
        return Ok(format!("all {} present", PACKAGES.len()));
    }
    for (name, why) in PACKAGES.iter().filter(|(n, _)| missing.contains(n)) {
        eprintln!("missing Debian package {name}: {why}");
    }
    if !is_root() {
        bail!(
            "missing Debian packages; install them with: sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    apt_get(&["update"])?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    apt_get(&install)?;
    let still_missing: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|name| !installed(name))
        .collect();
    if !still_missing.is_empty() {
        bail!("apt-get did not install: {}", still_missing.join(" "));
    }
    Ok(format!("installed {}", missing.join(" ")))
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).ends_with(" installed")
        })
}

fn is_root() -> bool {
    // The real UID is the first number after `Uid:` in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn apt_get(args: &[&str]) -> Result<()> {
    eprintln!("apt-get {}", args.join(" "));
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running apt-get {}", args.join(" ")))?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_package_is_not_installed() {
        assert!(!installed("vk-rs-no-such-package"));
    }

    #[test]
    fn every_package_says_why_it_is_needed() {
        assert!(
            PACKAGES
                .iter()
                .all(|(name, why)| !name.is_empty() && !why.is_empty())
        );
    }
}
