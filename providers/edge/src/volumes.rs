//! Pod volumes in the engine: the tar archive that carries the files the core
//! materialised (configMap, secret, downwardAPI, projected) into an engine
//! volume, and the clean-up of a pod's volumes.

use std::collections::HashMap;

use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};
use vk_core::{ProviderResult, VolumeFiles};

use crate::engine::{Engine, map_error, status_of};
use vk_core::toolkit::pod_identity::{LABEL_NODE, LABEL_UID};

/// The files of one volume as a tar archive, with parent directories, the
/// requested mode (0644 by default, like the kubelet's) and root ownership.
/// With the pod's `fsGroup`, every entry belongs to that group, which may
/// read every file, and directories carry the set-group-ID bit: what the
/// kubelet does to a read-only volume (`SetVolumeOwnership`), so a non-root
/// container can read a Secret mounted with `defaultMode: 0400`.
pub fn archive(files: &VolumeFiles, fs_group: Option<u64>) -> std::io::Result<Vec<u8>> {
    let mode = files
        .default_mode
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(0o644)
        & 0o7777;
    let (file_mode, dir_mode) = match fs_group {
        Some(_) => (mode | 0o440, 0o2755),
        None => (mode, 0o755),
    };
    let mut t = tar::Builder::new(Vec::new());
    if fs_group.is_some() {
        append_dir(&mut t, ".", dir_mode, fs_group)?;
    }
    let mut dirs = std::collections::BTreeSet::new();
    for (path, content) in &files.files {
        let rel = path.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("volume file path {path:?} is not a relative path"),
            ));
        }
        let mut parent = std::path::Path::new(rel).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.to_path_buf());
            parent = p.parent();
        }
        for dir in chain.into_iter().rev() {
            if dirs.insert(dir.clone()) {
                append_dir(&mut t, &dir, dir_mode, fs_group)?;
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(file_mode);
        h.set_uid(0);
        h.set_gid(fs_group.unwrap_or(0));
        h.set_size(content.len() as u64);
        h.set_mtime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
        t.append_data(&mut h, rel, content.as_slice())?;
    }
    t.into_inner()
}

/// The root of an emptyDir as a tar archive of its one directory entry:
/// writable by everyone (0777, as the kubelet makes it), and with the pod's
/// `fsGroup` owned by that group with the set-group-ID bit, so files a
/// container creates there belong to the group too.
pub fn empty_dir_root(fs_group: Option<u64>) -> std::io::Result<Vec<u8>> {
    let mut t = tar::Builder::new(Vec::new());
    let mode = if fs_group.is_some() { 0o2777 } else { 0o777 };
    append_dir(&mut t, ".", mode, fs_group)?;
    t.into_inner()
}

fn append_dir(
    t: &mut tar::Builder<Vec<u8>>,
    path: impl AsRef<std::path::Path>,
    mode: u32,
    fs_group: Option<u64>,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(fs_group.unwrap_or(0));
    h.set_size(0);
    h.set_mtime(0);
    t.append_data(&mut h, path, std::io::empty())
}

/// Removes every engine volume of pod `uid` on this node; whether there were any.
pub async fn remove_for_pod(engine: &Engine, node: &str, uid: &str) -> ProviderResult<bool> {
    let docker = engine.docker()?;
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_NODE}={node}"), format!("{LABEL_UID}={uid}")],
    )]);
    let list = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|e| map_error(e, "listing volumes"))?;
    // Podman ORs several label filters where Docker ANDs them: check both here.
    let volumes: Vec<_> = list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter(|v| {
            v.labels.get(LABEL_NODE).map(String::as_str) == Some(node)
                && v.labels.get(LABEL_UID).map(String::as_str) == Some(uid)
        })
        .collect();
    for v in &volumes {
        match docker
            .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
            .await
        {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(map_error(e, &format!("removing volume {}", v.name))),
        }
    }
    Ok(!volumes.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Read;

    #[test]
    fn the_archive_has_parents_modes_and_contents() {
        let files = VolumeFiles {
            files: BTreeMap::from([
                ("a.txt".to_string(), b"A".to_vec()),
                ("sub/dir/b.txt".to_string(), b"BB".to_vec()),
            ]),
            default_mode: Some(0o400),
            ..Default::default()
        };
        let bytes = archive(&files, None).unwrap();
        let mut ar = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().to_string();
            let mode = e.header().mode().unwrap();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            seen.push((path, mode, s));
        }
        assert!(seen.contains(&("a.txt".into(), 0o400, "A".into())));
        assert!(seen.contains(&("sub/dir/b.txt".into(), 0o400, "BB".into())));
        let dirs: Vec<_> = seen
            .iter()
            .filter(|s| s.1 == 0o755)
            .map(|s| s.0.clone())
            .collect();
        assert_eq!(dirs, vec!["sub".to_string(), "sub/dir".to_string()]);
    }

    /// (path, mode, gid) of every entry.
    fn entries(bytes: &[u8]) -> Vec<(String, u32, u64)> {
        let mut ar = tar::Archive::new(bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().to_string(),
                    h.mode().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn with_an_fs_group_the_group_owns_and_may_read_everything() {
        let files = VolumeFiles {
            files: BTreeMap::from([("sub/key".to_string(), b"k".to_vec())]),
            default_mode: Some(0o400),
            ..Default::default()
        };
        let seen = entries(&archive(&files, Some(2000)).unwrap());
        assert_eq!(
            seen,
            vec![
                (".".to_string(), 0o2755, 2000),
                ("sub".to_string(), 0o2755, 2000),
                ("sub/key".to_string(), 0o440, 2000),
            ]
        );
        // Without one, root's files as the pod asked for them.
        let seen = entries(&archive(&files, None).unwrap());
        assert_eq!(seen[1], ("sub/key".to_string(), 0o400, 0));
    }

    #[test]
    fn an_empty_dir_is_writable_by_every_user_and_group_owned_with_an_fs_group() {
        assert_eq!(
            entries(&empty_dir_root(None).unwrap()),
            vec![(".".to_string(), 0o777, 0)]
        );
        assert_eq!(
            entries(&empty_dir_root(Some(65532)).unwrap()),
            vec![(".".to_string(), 0o2777, 65532)]
        );
    }

    #[test]
    fn paths_that_climb_out_are_refused() {
        let files = VolumeFiles {
            files: BTreeMap::from([("../etc/passwd".to_string(), b"x".to_vec())]),
            ..Default::default()
        };
        assert!(archive(&files, None).is_err());
    }
}
