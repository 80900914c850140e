//! Volume files in a Fargate task: the files of a pod's configMap, secret,
//! downwardAPI and projected volumes (the service-account token included),
//! which the core materialised, delivered before the pod's containers start.
//!
//! ECS has no volume kind that carries content, so the task's first
//! container, [`WRITER_CONTAINER`], runs `vk-fargate write-volumes` from the
//! provider's own image: it writes the files into one task volume per pod
//! volume (a bind-mount volume on the task's ephemeral storage), mounted at
//! `/vk-volumes/<volume>` in it and at the pod's mount paths, read-only, in
//! the pod's containers, which wait for it to exit 0 (`dependsOn` SUCCESS).
//!
//! Its input, a [`VolumeManifest`] as JSON, is one key of the pod's Secrets
//! Manager secret, handed to it as the ECS secret [`MANIFEST_ENV`]: file
//! contents never appear in a task definition or a tag. This module holds
//! both sides: the manifest the provider builds ([`VolumeManifest::of`]) and
//! what the subcommand does with it ([`write_volumes`], [`run`]).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::ByteString;
use serde::{Deserialize, Serialize};
use vk_core::provider::VolumeFiles;

/// The name of the writer container. ECS allows `_` in container names and
/// Kubernetes does not, so it never clashes with a pod's container.
pub const WRITER_CONTAINER: &str = "vk_volumes";

/// The subcommand of `vk-fargate` the writer container runs.
pub const SUBCOMMAND: &str = "write-volumes";

/// The env variable (an ECS secret) holding the manifest in the writer.
pub const MANIFEST_ENV: &str = "VK_VOLUMES";

/// The JSON key of the manifest in the pod's secret (no `.`, so it never
/// clashes with the `<container>.<NAME>` keys of env values).
pub const MANIFEST_KEY: &str = "vk_volumes";

/// Where the writer container mounts the pod's volumes, one directory each.
pub const WRITER_ROOT: &str = "/vk-volumes";

/// The mode of a file when the volume asks for none (the API's default, 0644).
const DEFAULT_MODE: u32 = 0o644;

/// The mode of the directories the writer makes.
const DIR_MODE: u32 = 0o755;

/// What the writer container writes: every file volume of one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeManifest {
    /// The files by volume name.
    pub volumes: BTreeMap<String, ManifestVolume>,
}

/// One volume's files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestVolume {
    /// The files' mode (`defaultMode`); 0644 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The group that owns the files (the pod's `fsGroup`), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Content by path relative to the volume (base64 in the JSON).
    pub files: BTreeMap<String, ByteString>,
}

impl VolumeManifest {
    /// The manifest of the volumes `names`, their files from `files` (a
    /// volume the core left without files is an empty directory), owned by
    /// group `fs_group` when the pod sets one.
    pub fn of(
        names: &[&str],
        files: &BTreeMap<String, VolumeFiles>,
        fs_group: Option<i64>,
    ) -> VolumeManifest {
        let gid = fs_group.and_then(|g| u32::try_from(g).ok());
        let volumes = names
            .iter()
            .map(|name| {
                let v = files.get(*name);
                let volume = ManifestVolume {
                    mode: v
                        .and_then(|v| v.default_mode)
                        .and_then(|m| u32::try_from(m).ok())
                        .map(|m| m & 0o7777),
                    gid,
                    files: v
                        .map(|v| {
                            v.files
                                .iter()
                                .map(|(p, c)| (p.clone(), ByteString(c.clone())))
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                (name.to_string(), volume)
            })
            .collect();
        VolumeManifest { volumes }
    }

    /// The manifest as the JSON text the writer reads.
    pub fn to_json(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|e| format!("volume manifest: {e}"))
    }

    /// Reads a manifest from its JSON text.
    pub fn from_json(text: &str) -> Result<VolumeManifest, String> {
        serde_json::from_str(text).map_err(|e| format!("volume manifest is not valid: {e}"))
    }
}

/// A relative path that stays inside its volume: no `..`, no absolute
/// path, no empty or `.` component.
fn checked_path(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    let normal = !path.is_empty()
        && !path.contains('\0')
        && path.split('/').all(|c| !c.is_empty() && c != ".")
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if normal {
        Ok(p.to_path_buf())
    } else {
        Err(format!(
            "refusing path {path:?}: files stay inside their volume"
        ))
    }
}

/// A volume name that is one path component.
fn checked_volume(name: &str) -> Result<(), String> {
    match checked_path(name) {
        Ok(p) if p.components().count() == 1 => Ok(()),
        _ => Err(format!("refusing volume name {name:?}")),
    }
}

fn set_mode(path: &Path, mode: u32, gid: Option<u32>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// Makes `dir` and its parents up to `base` (which exists), each a real
/// directory (an existing symbolic link is refused, so nothing is written
/// outside the volume).
fn make_dirs(base: &Path, relative: &Path, gid: Option<u32>) -> Result<(), String> {
    let mut dir = base.to_path_buf();
    for c in relative.components() {
        dir.push(c);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{} exists and is not a directory", dir.display())),
            Err(_) => {
                std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
                set_mode(&dir, DIR_MODE, gid)?;
            }
        }
    }
    Ok(())
}

/// Writes every file of `manifest` under `root/<volume>/`; returns how
/// many. Every path is checked before anything is written.
pub fn write_volumes(root: &Path, manifest: &VolumeManifest) -> Result<usize, String> {
    for (name, volume) in &manifest.volumes {
        checked_volume(name)?;
        for path in volume.files.keys() {
            checked_path(path).map_err(|e| format!("volume {name}: {e}"))?;
        }
    }
    let mut written = 0;
    for (name, volume) in &manifest.volumes {
        make_dirs(root, Path::new(name), volume.gid)?;
        let base = root.join(name);
        for (path, content) in &volume.files {
            let relative = checked_path(path)?;
            if let Some(parent) = relative.parent() {
                make_dirs(&base, parent, volume.gid)?;
            }
            let target = base.join(&relative);
            if let Ok(m) = std::fs::symlink_metadata(&target)
                && !m.is_file()
            {
                return Err(format!("{} exists and is not a file", target.display()));
            }
            std::fs::write(&target, &content.0)
                .map_err(|e| format!("write {}: {e}", target.display()))?;
            set_mode(&target, volume.mode.unwrap_or(DEFAULT_MODE), volume.gid)?;
            written += 1;
        }
    }
    Ok(written)
}

/// `vk-fargate write-volumes [--root DIR]`: writes the manifest in
/// [`MANIFEST_ENV`] under `DIR` (default [`WRITER_ROOT`]). Exit 0 when every
/// file is written, 1 with one line on stderr otherwise, 2 for bad arguments.
pub fn run(args: &[String]) -> ExitCode {
    let mut root = PathBuf::from(WRITER_ROOT);
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        match (a.as_str(), rest.next()) {
            ("--root", Some(dir)) => root = PathBuf::from(dir),
            _ => {
                eprintln!("vk-fargate {SUBCOMMAND}: usage: vk-fargate {SUBCOMMAND} [--root DIR]");
                return ExitCode::from(2);
            }
        }
    }
    let result = std::env::var(MANIFEST_ENV)
        .map_err(|_| format!("{MANIFEST_ENV} is not set"))
        .and_then(|text| VolumeManifest::from_json(&text))
        .and_then(|m| write_volumes(&root, &m).map(|n| (n, m.volumes.len())));
    match result {
        Ok((files, volumes)) => {
            println!(
                "vk-fargate {SUBCOMMAND}: wrote {files} files in {volumes} volumes under {}",
                root.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vk-fargate {SUBCOMMAND}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::BTreeSet;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn files(pairs: &[(&str, &[u8])], mode: Option<i32>) -> VolumeFiles {
        VolumeFiles {
            files: pairs
                .iter()
                .map(|(p, c)| (p.to_string(), c.to_vec()))
                .collect(),
            default_mode: mode,
            sensitive: BTreeSet::new(),
        }
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_manifest_round_trips_through_json_with_binary_content() {
        let materialised = BTreeMap::from([
            (
                "cfg".to_string(),
                files(
                    &[("app.yaml", b"a: 1\n"), ("bin/blob", &[0, 255, 10])],
                    Some(0o440),
                ),
            ),
            ("token".to_string(), files(&[("token", b"eyJ")], None)),
        ]);
        // "empty" was not materialised: an empty directory.
        let m = VolumeManifest::of(&["cfg", "token", "empty"], &materialised, Some(2000));
        assert_eq!(m.volumes.len(), 3);
        assert_eq!(m.volumes["cfg"].mode, Some(0o440));
        assert_eq!(m.volumes["token"].mode, None);
        assert_eq!(m.volumes["cfg"].gid, Some(2000));
        assert!(m.volumes["empty"].files.is_empty());
        let text = m.to_json().unwrap();
        // Contents are base64, never raw text, in the JSON.
        assert!(!text.contains("a: 1"), "{text}");
        let back = VolumeManifest::from_json(&text).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.volumes["cfg"].files["bin/blob"].0, vec![0, 255, 10]);
        assert!(VolumeManifest::from_json("{\"volumes\": 3}").is_err());
    }

    #[test]
    fn files_are_written_with_their_modes_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let materialised = BTreeMap::from([
            (
                "cfg".to_string(),
                files(
                    &[("app.yaml", b"a: 1\n"), ("conf.d/x.conf", b"x")],
                    Some(0o400),
                ),
            ),
            ("plain".to_string(), files(&[("name", b"web")], None)),
        ]);
        let m = VolumeManifest::of(&["cfg", "plain", "empty"], &materialised, None);
        assert_eq!(write_volumes(dir.path(), &m).unwrap(), 3);
        let root = dir.path();
        assert_eq!(std::fs::read(root.join("cfg/app.yaml")).unwrap(), b"a: 1\n");
        assert_eq!(std::fs::read(root.join("cfg/conf.d/x.conf")).unwrap(), b"x");
        assert_eq!(mode_of(&root.join("cfg/app.yaml")), 0o400);
        assert_eq!(mode_of(&root.join("cfg/conf.d")), 0o755);
        assert_eq!(mode_of(&root.join("plain/name")), 0o644);
        assert!(root.join("empty").is_dir());
        // Written again (a replacement task on the same volume): overwritten.
        assert_eq!(write_volumes(dir.path(), &m).unwrap(), 3);
    }

    #[test]
    fn paths_that_leave_their_volume_are_refused_before_anything_is_written() {
        for bad in [
            "../escape",
            "a/../../escape",
            "/etc/passwd",
            "",
            "a//b",
            "./a",
            "a/.",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let m = VolumeManifest {
                volumes: BTreeMap::from([(
                    "v".to_string(),
                    ManifestVolume {
                        files: BTreeMap::from([
                            ("ok".to_string(), ByteString(b"1".to_vec())),
                            (bad.to_string(), ByteString(b"2".to_vec())),
                        ]),
                        ..Default::default()
                    },
                )]),
            };
            let err = write_volumes(dir.path(), &m).unwrap_err();
            assert!(err.contains("refusing path"), "{bad:?}: {err}");
            assert!(!dir.path().join("v").exists(), "{bad:?}: something written");
        }
        for bad in ["..", "a/b", "/abs", ""] {
            let dir = tempfile::tempdir().unwrap();
            let m = VolumeManifest {
                volumes: BTreeMap::from([(bad.to_string(), ManifestVolume::default())]),
            };
            let err = write_volumes(dir.path(), &m).unwrap_err();
            assert!(err.contains("refusing volume name"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_symbolic_link_in_the_volume_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("v")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("v/sub")).unwrap();
        let m = VolumeManifest {
            volumes: BTreeMap::from([(
                "v".to_string(),
                ManifestVolume {
                    files: BTreeMap::from([("sub/f".to_string(), ByteString(b"x".to_vec()))]),
                    ..Default::default()
                },
            )]),
        };
        let err = write_volumes(dir.path(), &m).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        assert!(!outside.path().join("f").exists());
    }
}
