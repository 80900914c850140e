//! A local container registry with basic auth, for image-pull-secret tests:
//! Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, machine-wide
//! like the podman service, holding a copy of the busybox test image that
//! needs credentials to pull.
//!
//! Podman must pull from it over plain HTTP, so the drop-in
//! [`REGISTRIES_DROP_IN`] marks its address `insecure`. The podman API
//! service reads that file only at start: the registry's port is chosen
//! (and the drop-in written) before [`crate::PodmanEngine`] starts the
//! service, and if the port ever changes the engine is restarted.
//!
//! Everything lives in `/run/vk-rs-test/registry`: `config.yml`,
//! `htpasswd`, `storage/`, `registry.log`, `registry.pid`; the port in
//! `/run/vk-rs-test/registry-port`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use crate::busybox::{busybox_image, image_id};
use crate::daemon::{self, RigLock, rig_dir};
use crate::debian::{ensure_programs, is_root};
use crate::logs::log_tail;
use crate::podman::{PodmanEngine, podman};
use crate::probe;
use crate::wait::wait_blocking;

/// The registry's user.
pub const REGISTRY_USERNAME: &str = "vk-test";

/// The registry user's password.
pub const REGISTRY_PASSWORD: &str = "vk-test-password";

/// The podman drop-in that lets it talk plain HTTP to the registry.
pub const REGISTRIES_DROP_IN: &str = "/etc/containers/registries.conf.d/vk-rs-test.conf";

/// The port the registry prefers (unusual, so usually free).
const PREFERRED_PORT: u16 = 35000;

/// The repository and tag of the private copy of the busybox image.
const PRIVATE_REPOSITORY: &str = "vk-test/private-busybox";
const PRIVATE_TAG: &str = "1";

/// How long a freshly started registry may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The machine-wide registry: `127.0.0.1:<port>`, basic auth
/// ([`REGISTRY_USERNAME`] / [`REGISTRY_PASSWORD`]), holding
/// [`Registry::private_image`].
///
/// ```no_run
/// # fn example() -> anyhow::Result<()> {
/// let registry = vk_test_support::Registry::get()?;
/// let image = registry.private_image(); // 127.0.0.1:35000/vk-test/private-busybox:1
/// let secret = registry.pull_secret("regcred"); // kubernetes.io/dockerconfigjson
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Registry {
    port: u16,
}

impl Registry {
    /// The shared registry, started (detached, logging to
    /// `/run/vk-rs-test/registry/registry.log`) when it does not answer, with
    /// the busybox image pushed as [`Registry::private_image`] when it lacks
    /// the current build, and with no local copy of that tag in podman's
    /// storage (so a pull really goes to the registry). Also makes sure the
    /// shared [`PodmanEngine`] runs with the drop-in for this registry.
    /// Blocking; parallel test processes serialise on a file lock.
    ///
    /// Needs root, podman, `docker-registry` and `htpasswd` (Debian packages
    /// `docker-registry`, `apache2-utils`; installed when missing). The `Err`
    /// says why it cannot run.
    pub fn get() -> Result<Registry> {
        if !is_root() {
            bail!(
                "the test registry needs root (it writes {REGISTRIES_DROP_IN}) and this process is not root"
            );
        }
        let _lock = RigLock::acquire("registry")?;
        ensure_programs(&[
            ("docker-registry", "docker-registry"),
            ("htpasswd", "apache2-utils"),
        ])?;
        let dir = registry_dir()?;
        let htpasswd = dir.join("htpasswd");
        if !htpasswd.is_file() {
            write_htpasswd(&htpasswd)?;
        }
        let mut registry = Registry {
            port: registry_port(false)?,
        };
        if !registry.answers() {
            let pid_file = dir.join("registry.pid");
            let config = dir.join("config.yml");
            let marker = config.to_string_lossy().into_owned();
            // A registry that rejects our credentials: ours with an older
            // password file (stopped next), or someone else's.
            let rejects_us = registry.answers_at_all();
            daemon::stop(&pid_file, &marker)?;
            if rejects_us {
                write_htpasswd(&htpasswd)?;
            }
            if TcpListener::bind(("127.0.0.1", registry.port)).is_err() {
                // Something else holds the port now: move (the engine is
                // restarted with the new drop-in below).
                registry.port = registry_port(true)?;
                eprintln!(
                    "the test registry's port was taken: moving it to {}",
                    registry.port
                );
            }
            daemon::write_if_changed(&config, &config_yaml(&dir, registry.port))?;
            let log = dir.join("registry.log");
            let pid =
                daemon::spawn_detached("docker-registry", &["serve", &marker], &log, &pid_file)?;
            if !wait_blocking(START_TIMEOUT, || registry.answers()) {
                bail!(
                    "the test registry (pid {pid}) did not answer on {} within {START_TIMEOUT:?}; \
                     the end of {}:\n{}",
                    registry.host(),
                    log.display(),
                    log_tail(&log, 30)
                );
            }
            eprintln!(
                "started the shared test registry (pid {pid}) on {}",
                registry.host()
            );
        }
        // Writes the drop-in for the current port; restarts the service if
        // the drop-in changed since it started.
        PodmanEngine::get()?;
        registry.ensure_private_image(&dir)?;
        Ok(registry)
    }

    /// `127.0.0.1:<port>`: the registry's address, also the server key in
    /// a docker config.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// [`REGISTRY_USERNAME`].
    pub fn username(&self) -> &'static str {
        REGISTRY_USERNAME
    }

    /// [`REGISTRY_PASSWORD`].
    pub fn password(&self) -> &'static str {
        REGISTRY_PASSWORD
    }

    /// `127.0.0.1:<port>/vk-test/private-busybox:1`: the busybox image
    /// ([`crate::BUSYBOX_IMAGE`]), pullable only with the credentials.
    pub fn private_image(&self) -> String {
        format!("{}/{PRIVATE_REPOSITORY}:{PRIVATE_TAG}", self.host())
    }

    /// Pushes the busybox image as `127.0.0.1:<port>/vk-test/<repository>:1`
    /// and returns that reference, with no local copy left behind: for a
    /// test that must see its own pull reach the registry while other tests
    /// pull [`Registry::private_image`] in parallel (use a unique name).
    pub fn push_private_copy(&self, repository: &str) -> Result<String> {
        let reference = format!("{}/vk-test/{repository}:1", self.host());
        let source = busybox_image()?;
        self.push(&source, &reference)?;
        remove_local_image(&reference)?;
        Ok(reference)
    }

    /// The `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` Secret
    /// holding the credentials: `{"auths":{"127.0.0.1:<port>":{"username":
    /// ...,"password":...,"auth":base64("user:password")}}}`.
    pub fn docker_config_json(&self) -> String {
        serde_json::json!({
            "auths": {
                self.host(): {
                    "username": REGISTRY_USERNAME,
                    "password": REGISTRY_PASSWORD,
                    "auth": basic_auth_token(),
                }
            }
        })
        .to_string()
    }

    /// A `kubernetes.io/dockerconfigjson` Secret `name` (no namespace) with
    /// [`Registry::docker_config_json`] under `.dockerconfigjson`.
    pub fn pull_secret(&self, name: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/dockerconfigjson".to_string()),
            data: Some(
                [(
                    ".dockerconfigjson".to_string(),
                    ByteString(self.docker_config_json().into_bytes()),
                )]
                .into(),
            ),
            ..Secret::default()
        }
    }

    /// The last `lines` lines of the registry's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(
            Path::new(&format!("{RIG_REGISTRY_DIR}/registry.log")),
            lines,
        )
    }

    /// Whether it is our registry and takes our credentials: `GET /v2/`
    /// answers 401 without them and 200 with them.
    fn answers(&self) -> bool {
        self.answers_at_all()
            && probe::get_tcp(&self.host(), "/v2/", &[authorization()])
                .is_ok_and(|a| a.status == 200)
    }

    /// Whether a registry answers `GET /v2/` on the port with 401.
    fn answers_at_all(&self) -> bool {
        probe::get_tcp(&self.host(), "/v2/", &[])
            .is_ok_and(|a| a.status == 401 && a.header("docker-distribution-api-version").is_some())
    }

    /// Pushes the current busybox build as the private image unless the
    /// registry already has it; then removes the local copy of the tag.
    fn ensure_private_image(&self, dir: &Path) -> Result<()> {
        let source = busybox_image()?;
        let source_id = image_id(&source)?;
        let pushed_file = dir.join("pushed-image-id");
        let pushed = std::fs::read_to_string(&pushed_file).unwrap_or_default();
        let manifest = probe::get_tcp(
            &self.host(),
            &format!("/v2/{PRIVATE_REPOSITORY}/manifests/{PRIVATE_TAG}"),
            &[
                authorization(),
                "Accept: application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json"
                    .to_string(),
            ],
        )?;
        if manifest.status == 200 && pushed.trim() == source_id {
            return Ok(());
        }
        self.push(&source, &self.private_image())?;
        std::fs::write(&pushed_file, format!("{source_id}\n"))
            .with_context(|| format!("writing {}", pushed_file.display()))?;
        remove_local_image(&self.private_image())
    }

    fn push(&self, source: &str, destination: &str) -> Result<()> {
        podman([
            "push",
            "--tls-verify=false",
            "--creds",
            &format!("{REGISTRY_USERNAME}:{REGISTRY_PASSWORD}"),
            source,
            destination,
        ])?
        .ok()
        .with_context(|| format!("pushing {source} to the test registry as {destination}"))?;
        Ok(())
    }
}

/// `/run/vk-rs-test/registry`.
const RIG_REGISTRY_DIR: &str = "/run/vk-rs-test/registry";

fn registry_dir() -> Result<PathBuf> {
    rig_dir()?;
    let dir = PathBuf::from(RIG_REGISTRY_DIR);
    std::fs::create_dir_all(dir.join("storage"))
        .with_context(|| format!("creating {}/storage", dir.display()))?;
    Ok(dir)
}

/// Removes `reference` from podman's local storage; an image that is not
/// there is fine. (One a container still uses stays: an error.)
pub(crate) fn remove_local_image(reference: &str) -> Result<()> {
    let out = podman(["image", "exists", reference])?;
    if !out.success() {
        return Ok(());
    }
    podman(["rmi", reference])?
        .ok()
        .with_context(|| format!("removing the local copy of {reference}"))?;
    Ok(())
}

/// Chooses the registry's port for the engine's drop-in and writes the
/// drop-in: called by [`PodmanEngine::get`] before it starts the service.
pub(crate) fn configure_engine() -> Result<()> {
    let port = registry_port(false)?;
    daemon::write_if_changed(Path::new(REGISTRIES_DROP_IN), &registries_drop_in(port))?;
    Ok(())
}

/// The registry's port: the one stored in `/run/vk-rs-test/registry-port`,
/// else (or with `choose_again`) [`PREFERRED_PORT`] if free, else any free
/// loopback port; stored for every later test process.
fn registry_port(choose_again: bool) -> Result<u16> {
    let _lock = RigLock::acquire("registry-port")?;
    let file = rig_dir()?.join("registry-port");
    if !choose_again
        && let Some(port) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok())
    {
        return Ok(port);
    }
    let port = match TcpListener::bind(("127.0.0.1", PREFERRED_PORT)) {
        Ok(_) => PREFERRED_PORT,
        Err(_) => crate::ports::free_port()?,
    };
    std::fs::write(&file, format!("{port}\n"))
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(port)
}

fn registries_drop_in(port: u16) -> String {
    format!(
        "# Written by vk-test-support (crates/vk-test-support/src/registry.rs):\n\
         # the shared test registry speaks plain HTTP.\n\
         [[registry]]\n\
         location = \"127.0.0.1:{port}\"\n\
         insecure = true\n"
    )
}

fn config_yaml(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    format!(
        "# Written by vk-test-support (crates/vk-test-support/src/registry.rs).\n\
         version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {dir}/storage\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n\
         auth:\n  htpasswd:\n    realm: vk-rs-test\n    path: {dir}/htpasswd\n"
    )
}

/// `htpasswd -Bbn USER PASSWORD` (bcrypt, which the registry requires).
fn write_htpasswd(path: &Path) -> Result<()> {
    let out = Command::new("htpasswd")
        .args(["-Bbn", REGISTRY_USERNAME, REGISTRY_PASSWORD])
        .stdin(Stdio::null())
        .output()
        .context("running htpasswd (Debian package apache2-utils)")?;
    if !out.status.success() {
        bail!(
            "htpasswd -Bbn failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::write(path, &out.stdout).with_context(|| format!("writing {}", path.display()))
}

fn basic_auth_token() -> String {
    base64::engine::general_purpose::STANDARD
        .encode(format!("{REGISTRY_USERNAME}:{REGISTRY_PASSWORD}"))
}

fn authorization() -> String {
    format!("Authorization: Basic {}", basic_auth_token())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docker_config_names_the_registry_and_the_credentials() {
        let registry = Registry { port: 35000 };
        let config: serde_json::Value = serde_json::from_str(&registry.docker_config_json())
            .unwrap_or_else(|e| panic!("not JSON: {e}"));
        let entry = &config["auths"]["127.0.0.1:35000"];
        assert_eq!(entry["username"], REGISTRY_USERNAME);
        assert_eq!(entry["password"], REGISTRY_PASSWORD);
        let auth = base64::engine::general_purpose::STANDARD
            .decode(entry["auth"].as_str().unwrap_or(""))
            .unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&auth),
            format!("{REGISTRY_USERNAME}:{REGISTRY_PASSWORD}")
        );
        let secret = registry.pull_secret("regcred");
        assert_eq!(
            secret.type_.as_deref(),
            Some("kubernetes.io/dockerconfigjson")
        );
        let data = secret.data.unwrap_or_default();
        assert_eq!(
            data.get(".dockerconfigjson").map(|b| b.0.clone()),
            Some(registry.docker_config_json().into_bytes())
        );
        assert_eq!(
            registry.private_image(),
            "127.0.0.1:35000/vk-test/private-busybox:1"
        );
    }

    #[test]
    fn the_drop_in_marks_the_registry_insecure() {
        let text = registries_drop_in(35123);
        assert!(text.contains("[[registry]]\nlocation = \"127.0.0.1:35123\"\ninsecure = true\n"));
    }
}
