//! The engine client: a connection to a Docker or Podman engine over the
//! Docker Engine API (unix socket, plain TCP, or TCP with TLS), what the
//! engine is (flavor, architecture, capacity), and the handful of calls the
//! provider makes that need more than one request (image pulls with
//! credentials, loading the built-in pause image, archive uploads).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as EngineError;
use bollard::query_parameters::{CreateImageOptions, ImportImageOptions, UploadToContainerOptions};
use futures::StreamExt;
use tokio::sync::OnceCell;
use vk_core::{ProviderError, ProviderResult};

use crate::pause::{self, Arch, PAUSE_IMAGE};
use crate::spec::Flavor;

/// Seconds the client waits for one API call (pulls and log streams excepted:
/// they are streams, whose items each get this long).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Where the engine is and how to authenticate to it.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// `unix:///path`, `tcp://host:port` or `https://host:port`.
    pub endpoint: String,
    /// CA of the engine's TLS certificate (TCP with TLS).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for the engine (TCP with TLS).
    pub tls_cert: Option<PathBuf>,
    /// Client key for the engine (TCP with TLS).
    pub tls_key: Option<PathBuf>,
}

/// What the engine told about itself, asked once.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    /// Docker or Podman.
    pub flavor: Flavor,
    /// The engine's CPU architecture.
    pub arch: Arch,
    /// CPUs the engine can use.
    pub cpus: i64,
    /// Memory of the engine's host in bytes.
    pub memory: i64,
    /// Version string, for logs.
    pub version: String,
}

/// An engine. Cheap to clone. The connection is made on first use and kept:
/// an engine whose socket does not exist yet (it starts after us) is
/// "unavailable" until it appears, not a start-up error.
#[derive(Clone)]
pub struct Engine {
    opts: Arc<EngineOptions>,
    client: Arc<std::sync::Mutex<Option<Docker>>>,
    info: Arc<OnceCell<EngineInfo>>,
    pause_loaded: Arc<OnceCell<()>>,
}

impl Engine {
    /// Checks the endpoint's form; connects lazily.
    pub fn connect(opts: &EngineOptions) -> Result<Engine, String> {
        check_endpoint(opts)?;
        Ok(Engine {
            opts: Arc::new(opts.clone()),
            client: Arc::default(),
            info: Arc::new(OnceCell::new()),
            pause_loaded: Arc::new(OnceCell::new()),
        })
    }

    /// The API client, connecting first if needed.
    pub fn docker(&self) -> ProviderResult<Docker> {
        let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = guard.as_ref() {
            return Ok(d.clone());
        }
        let d = open(&self.opts).map_err(ProviderError::unavailable)?;
        *guard = Some(d.clone());
        Ok(d)
    }

    /// What the engine is; asked once, then cached.
    pub async fn info(&self) -> ProviderResult<&EngineInfo> {
        self.info
            .get_or_try_init(|| async {
                let version = self.docker()?.version().await.map_err(unavailable)?;
                let podman = version
                    .components
                    .iter()
                    .flatten()
                    .any(|c| c.name.to_lowercase().contains("podman"));
                let arch_name = version.arch.clone().unwrap_or_default();
                let arch = Arch::from_engine(&arch_name).ok_or_else(|| {
                    ProviderError::unavailable(format!(
                        "the engine runs on {arch_name:?}, which vk-edge has no pause image for"
                    ))
                })?;
                let sys = self.docker()?.info().await.map_err(unavailable)?;
                Ok(EngineInfo {
                    flavor: if podman {
                        Flavor::Podman
                    } else {
                        Flavor::Docker
                    },
                    arch,
                    cpus: sys.ncpu.unwrap_or(1),
                    memory: sys.mem_total.unwrap_or(0),
                    version: format!(
                        "{} {}",
                        if podman { "podman" } else { "docker" },
                        version.version.unwrap_or_default()
                    ),
                })
            })
            .await
    }

    /// Health: the engine answers `/_ping`.
    pub async fn ping(&self) -> ProviderResult<()> {
        self.docker()?.ping().await.map(|_| ()).map_err(unavailable)
    }

    /// Loads the built-in pause image unless the engine has it.
    pub async fn ensure_pause_image(&self) -> ProviderResult<()> {
        self.pause_loaded
            .get_or_try_init(|| async {
                if self.docker()?.inspect_image(PAUSE_IMAGE).await.is_ok() {
                    return Ok(());
                }
                let arch = self.info().await?.arch;
                let archive = pause::image_archive(arch).map_err(|e| {
                    ProviderError::unavailable(format!("building the pause image: {e}"))
                })?;
                let mut progress = self.docker()?.import_image(
                    ImportImageOptions {
                        quiet: true,
                        ..Default::default()
                    },
                    bollard::body_full(archive.into()),
                    None,
                );
                while let Some(item) = progress.next().await {
                    let info = item.map_err(|e| {
                        ProviderError::unavailable(format!("loading the pause image: {e}"))
                    })?;
                    if let Some(err) = info.error_detail.and_then(|d| d.message) {
                        return Err(ProviderError::unavailable(format!(
                            "loading the pause image: {err}"
                        )));
                    }
                }
                self.docker()?
                    .inspect_image(PAUSE_IMAGE)
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        ProviderError::unavailable(format!(
                            "the pause image is not there after loading it: {e}"
                        ))
                    })
            })
            .await
            .map(|_| ())
    }

    /// Whether the engine has `image` locally.
    pub async fn has_image(&self, image: &str) -> ProviderResult<bool> {
        match self.docker()?.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Pulls `image` (with credentials when given). The error is the engine's
    /// message, for `ErrImagePull`.
    pub async fn pull(&self, image: &str, creds: Option<DockerCredentials>) -> Result<(), String> {
        let (name, tag) = split_tag(image);
        let opts = CreateImageOptions {
            from_image: Some(name.to_string()),
            tag: tag.map(str::to_string),
            ..Default::default()
        };
        let docker = self.docker().map_err(|e| e.to_string())?;
        let mut stream = docker.create_image(Some(opts), None, creds);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                        return Err(msg);
                    }
                }
                Err(e) => return Err(engine_message(&e)),
            }
        }
        // Podman reports some failures only by not having the image afterwards.
        match self.has_image(image).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("the engine did not store {image} after pulling it")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes a tar archive into a container's filesystem at `path` (the
    /// container may be created but not started).
    pub async fn upload(&self, container: &str, path: &str, tar: Vec<u8>) -> ProviderResult<()> {
        let opts = UploadToContainerOptions {
            path: path.to_string(),
            ..Default::default()
        };
        self.docker()?
            .upload_to_container(container, Some(opts), bollard::body_full(tar.into()))
            .await
            .map_err(|e| map_error(e, &format!("writing files into {path}")))
    }
}

fn check_endpoint(opts: &EngineOptions) -> Result<(), String> {
    let endpoint = opts.endpoint.trim();
    let tls = [&opts.tls_ca, &opts.tls_cert, &opts.tls_key];
    let tls_count = tls.iter().filter(|o| o.is_some()).count();
    if endpoint.starts_with("unix://") {
        if tls_count > 0 {
            return Err(format!(
                "engine endpoint {endpoint}: TLS options need a tcp:// endpoint"
            ));
        }
        return Ok(());
    }
    if endpoint.starts_with("tcp://") || endpoint.starts_with("https://") {
        if tls_count != 0 && tls_count != 3 {
            return Err(format!(
                "engine endpoint {endpoint}: TLS needs all of --engine-tls-ca, \
                 --engine-tls-cert and --engine-tls-key"
            ));
        }
        if tls_count == 0 && endpoint.starts_with("https://") {
            return Err(format!(
                "engine endpoint {endpoint}: https needs --engine-tls-ca, --engine-tls-cert \
                 and --engine-tls-key"
            ));
        }
        return Ok(());
    }
    Err(format!(
        "engine endpoint {endpoint:?}: expected unix:///path, tcp://host:port or \
         https://host:port"
    ))
}

/// Opens the client (for a unix socket: fails while the socket does not exist).
fn open(opts: &EngineOptions) -> Result<Docker, String> {
    let endpoint = opts.endpoint.trim();
    let version = bollard::API_DEFAULT_VERSION;
    if let Some(path) = endpoint.strip_prefix("unix://") {
        return Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version)
            .map_err(|e| format!("engine socket {path}: {e}"));
    }
    match (&opts.tls_ca, &opts.tls_cert, &opts.tls_key) {
        (Some(ca), Some(cert), Some(key)) => {
            Docker::connect_with_ssl(endpoint, key, cert, ca, REQUEST_TIMEOUT_SECS, version)
                .map_err(|e| format!("engine endpoint {endpoint} with TLS: {e}"))
        }
        _ => Docker::connect_with_http(endpoint, REQUEST_TIMEOUT_SECS, version)
            .map_err(|e| format!("engine endpoint {endpoint}: {e}")),
    }
}

/// Splits `repo[:tag][@digest]` into the name and tag the pull API takes.
pub fn split_tag(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], Some(&image[last_slash + i + 1..])),
        None => (image, Some("latest")),
    }
}

/// The HTTP status of an engine error, when the engine answered.
pub fn status_of(e: &EngineError) -> Option<u16> {
    match e {
        EngineError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own message (without bollard's prefix) when it answered.
pub fn engine_message(e: &EngineError) -> String {
    match e {
        EngineError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Any engine error as "unavailable" (transport errors, 5xx).
pub fn unavailable(e: EngineError) -> ProviderError {
    ProviderError::unavailable(format!("engine: {e}"))
}

/// Maps an engine error: 404 → NotFound, other answers and transport errors → Unavailable.
pub fn map_error(e: EngineError, what: &str) -> ProviderError {
    match status_of(&e) {
        Some(404) => ProviderError::NotFound(format!("{what}: {}", engine_message(&e))),
        _ => ProviderError::unavailable(format!("{what}: {e}")),
    }
}

/// How long to wait between attempts to reach an engine that is down.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_after_the_last_path_component() {
        assert_eq!(split_tag("busybox"), ("busybox", Some("latest")));
        assert_eq!(split_tag("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_tag("127.0.0.1:5000/x/y:2"),
            ("127.0.0.1:5000/x/y", Some("2"))
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/x/y"),
            ("127.0.0.1:5000/x/y", Some("latest"))
        );
        assert_eq!(split_tag("x@sha256:abc"), ("x@sha256:abc", None));
    }

    #[test]
    fn endpoints_are_checked() {
        let bad = |e: &str| {
            Engine::connect(&EngineOptions {
                endpoint: e.into(),
                ..Default::default()
            })
            .err()
            .unwrap_or_default()
        };
        assert!(bad("ftp://x").contains("expected unix"));
        assert!(
            Engine::connect(&EngineOptions {
                endpoint: "https://h:2376".into(),
                tls_ca: Some("/ca".into()),
                ..Default::default()
            })
            .err()
            .unwrap_or_default()
            .contains("TLS needs")
        );
        assert!(bad("tcp://127.0.0.1:2375").is_empty());
        assert!(bad("unix:///does/not/exist/yet.sock").is_empty());
    }
}
