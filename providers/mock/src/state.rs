//! The mock backend's optional state file: the backend survives a restart of the
//! process, so adoption can be tested. Written atomically, debounced, off the hot path.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
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

/// Creates the state directory mode 0700 (or narrows an existing one to it):
/// the state holds resolved pods, Secret values included.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes a state file atomically (temporary file, then rename), mode 0600:
/// it holds resolved env values and volume files, Secrets' among them.
pub fn save(path: &Path, pods: &[StoredPod]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(pods).map_err(std::io::Error::other)?;
    // A leftover temporary file may have another mode: start afresh.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_private_to_the_process_user() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A leftover temporary file readable by everyone is not reused.
        let path = path_for(&dir, "n");
        std::fs::write(path.with_extension("json.tmp"), b"old").unwrap();
        create_dir(&dir).unwrap();
        save(&path, &[]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load(&path).unwrap().len(), 0);
    }
}
