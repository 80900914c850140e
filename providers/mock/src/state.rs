//! The mock backend's optional state file: the backend survives a restart of the
//! process, so adoption can be tested. Written atomically, debounced, off the hot path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde::{Deserialize, Serialize};
use vk_core::{PodKey, VolumeFiles};

/// One pod as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPod {
    /// Identity.
    pub key: PodKey,
    /// The resolved pod as the backend received it.
    pub pod: Pod,
    /// Last status.
    pub status: PodStatus,
    /// The pod IP.
    pub ip: String,
    /// Volume files, base64 encoded, by volume and path.
    #[serde(default)]
    pub volumes: BTreeMap<String, BTreeMap<String, String>>,
    /// Container → registry of the pull credential its image gets (no secrets stored).
    #[serde(default)]
    pub pulls: BTreeMap<String, String>,
}

/// Encodes volume files for storage.
pub fn encode_volumes(
    volumes: &BTreeMap<String, VolumeFiles>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    volumes
        .iter()
        .map(|(name, v)| {
            (
                name.clone(),
                v.files
                    .iter()
                    .map(|(p, c)| (p.clone(), b64.encode(c)))
                    .collect(),
            )
        })
        .collect()
}

/// Decodes stored volume files.
pub fn decode_volumes(
    stored: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, VolumeFiles> {
    let b64 = base64::engine::general_purpose::STANDARD;
    stored
        .iter()
        .map(|(name, files)| {
            let files = files
                .iter()
                .filter_map(|(p, c)| Some((p.clone(), b64.decode(c).ok()?)))
                .collect();
            (
                name.clone(),
                VolumeFiles {
                    files,
                    ..Default::default()
                },
            )
        })
        .collect()
}

/// The state file of one node.
pub fn path_for(dir: &Path, node: &str) -> PathBuf {
    dir.join(format!("{node}.json"))
}

/// Reads a state file; a missing file is an empty backend.
pub fn load(path: &Path) -> Result<Vec<StoredPod>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("state file {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("state file {}: {e}", path.display())),
    }
}

/// The state file's modification time (`None` when it does not exist).
pub fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Writes a state file atomically (temporary file, then rename).
pub fn save(path: &Path, pods: &[StoredPod]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(pods).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
