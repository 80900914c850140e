//! Writes a single-layer container image without a container engine: an OCI
//! image layout directory and a `docker-archive` tarball of the same image.
//!
//! The layer is a gzip-compressed tar built in memory from [`LayerEntry`]s,
//! with fixed owners and modification times, so the same inputs always give
//! the same digests. Both outputs carry the same config blob; they differ in
//! the manifest: the layout has an OCI manifest and `index.json`, the tarball
//! the `manifest.json` that `docker load` and `podman load` read.
//!
//! This module knows nothing about Cargo or providers: [`crate::images`]
//! decides what goes into an image.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One entry of the image's only layer.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// Absolute path in the image (`/etc/passwd`); directories end without `/`.
    pub path: String,
    /// Permission bits (`0o755`), including sticky bits for directories.
    pub mode: u32,
    /// Owner and group.
    pub uid: u64,
    pub gid: u64,
    /// `None` for a directory.
    pub contents: Option<Vec<u8>>,
}

impl LayerEntry {
    /// A file owned by root.
    pub fn file(path: &str, mode: u32, contents: Vec<u8>) -> Self {
        LayerEntry {
            path: path.to_string(),
            mode,
            uid: 0,
            gid: 0,
            contents: Some(contents),
        }
    }

    /// A directory.
    pub fn dir(path: &str, mode: u32, uid: u64, gid: u64) -> Self {
        LayerEntry {
            path: path.to_string(),
            mode,
            uid,
            gid,
            contents: None,
        }
    }
}

/// What the image holds and how it runs.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// `name:tag` for the tarball's `RepoTags` (`vk-rs/vk-mock:0.1.0`).
    pub repo_tag: String,
    /// The tag alone, recorded as `org.opencontainers.image.ref.name` in the
    /// layout's `index.json`.
    pub tag: String,
    /// The platform: `config.architecture` (`amd64`, `arm64`) and
    /// `config.variant` (`v8` for arm64), also in the layout's index.
    pub architecture: String,
    pub variant: Option<String>,
    /// `config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `config.User` (`65532:65532`).
    pub user: String,
    /// `config.Env` (`KEY=value`).
    pub env: Vec<String>,
    /// `config.ExposedPorts` (`10250/tcp`).
    pub exposed_ports: Vec<String>,
    /// `config.Labels`; also the manifest's annotations.
    pub labels: BTreeMap<String, String>,
    /// Seconds since the Unix epoch: the config's `created` and every
    /// entry's modification time.
    pub created_epoch: u64,
    /// The history line shown by `podman history`.
    pub created_by: String,
    /// The layer's entries, in the order they are written.
    pub entries: Vec<LayerEntry>,
}

/// Where an image was written and what it weighs.
#[derive(Debug, Clone)]
pub struct WrittenImage {
    /// The OCI image layout directory.
    pub layout_dir: PathBuf,
    /// The `docker-archive` tarball.
    pub tarball: PathBuf,
    /// `sha256:...` of the OCI manifest.
    pub manifest_digest: String,
    /// `sha256:...` of the config: the image ID podman and docker show.
    pub config_digest: String,
    /// `sha256:...` of the uncompressed layer.
    pub diff_id: String,
    /// Bytes of the uncompressed and compressed layer.
    pub layer_size: u64,
    pub layer_compressed_size: u64,
    /// Bytes of the tarball.
    pub tarball_size: u64,
}

/// A blob and its digest.
struct Blob {
    bytes: Vec<u8>,
    digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Self {
        let digest = sha256(&bytes);
        Blob { bytes, digest }
    }

    fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({
            "mediaType": media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Writes the image as an OCI layout in `layout_dir` (replacing the
/// `index.json`, `oci-layout` and `blobs/` a previous run left there) and as
/// the `docker-archive` `tarball`.
pub fn write(spec: &ImageSpec, layout_dir: &Path, tarball: &Path) -> Result<WrittenImage> {
    let layer_tar = layer_tar(&spec.entries, spec.created_epoch)?;
    let diff_id = sha256(&layer_tar);
    let layer_size = layer_tar.len() as u64;
    let layer = Blob::new(gzip(&layer_tar)?);
    drop(layer_tar);

    let config = Blob::new(to_json(&config_json(spec, &diff_id))?);
    let manifest = Blob::new(to_json(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.descriptor(MEDIA_CONFIG),
        "layers": [layer.descriptor(MEDIA_LAYER_GZIP)],
        "annotations": spec.labels,
    }))?);

    write_layout(layout_dir, spec, &manifest, &config, &layer)?;
    write_docker_archive(tarball, spec, &config, &layer)?;
    let tarball_size = fs::metadata(tarball)
        .with_context(|| format!("reading the size of {}", tarball.display()))?
        .len();

    Ok(WrittenImage {
        layout_dir: layout_dir.to_path_buf(),
        tarball: tarball.to_path_buf(),
        manifest_digest: manifest.digest.clone(),
        config_digest: config.digest.clone(),
        diff_id,
        layer_size,
        layer_compressed_size: layer.bytes.len() as u64,
        tarball_size,
    })
}

/// The image config (the OCI image spec's `config.json`, which docker reads too).
fn config_json(spec: &ImageSpec, diff_id: &str) -> Value {
    let created = rfc3339(spec.created_epoch);
    let exposed: BTreeMap<&str, Value> = spec
        .exposed_ports
        .iter()
        .map(|p| (p.as_str(), json!({})))
        .collect();
    let mut config = json!({
        "created": created,
        "architecture": spec.architecture,
        "os": "linux",
        "config": {
            "User": spec.user,
            "Entrypoint": spec.entrypoint,
            "Env": spec.env,
            "ExposedPorts": exposed,
            "WorkingDir": "/",
            "Labels": spec.labels,
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": created, "created_by": spec.created_by }],
    });
    if let Some(variant) = &spec.variant {
        config["variant"] = json!(variant);
    }
    config
}

/// The OCI `platform` object of the image.
fn platform(spec: &ImageSpec) -> Value {
    let mut platform = json!({ "architecture": spec.architecture, "os": "linux" });
    if let Some(variant) = &spec.variant {
        platform["variant"] = json!(variant);
    }
    platform
}

/// The uncompressed layer: a ustar archive with paths relative to `/`.
fn layer_tar(entries: &[LayerEntry], mtime: u64) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let rel = entry.path.trim_start_matches('/');
        if rel.is_empty() {
            bail!("layer entry {:?} has no path below /", entry.path);
        }
        let mut header = tar::Header::new_ustar();
        header.set_mtime(mtime);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mode(entry.mode);
        match &entry.contents {
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                builder
                    .append_data(&mut header, rel, bytes.as_slice())
                    .with_context(|| format!("adding {} to the layer", entry.path))?;
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{rel}/"), std::io::empty())
                    .with_context(|| format!("adding {} to the layer", entry.path))?;
            }
        }
    }
    builder.into_inner().context("finishing the layer tar")
}

/// gzip at the best ratio; the header carries no name and mtime 0, so the
/// output depends on the input only.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).context("compressing the layer")?;
    encoder.finish().context("compressing the layer")
}

fn to_json(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).context("serialising image metadata")
}

/// `oci-layout`, `index.json` and `blobs/sha256/*` in `dir`.
fn write_layout(
    dir: &Path,
    spec: &ImageSpec,
    manifest: &Blob,
    config: &Blob,
    layer: &Blob,
) -> Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    if blobs.exists() {
        // Blobs of an earlier build would otherwise pile up.
        fs::remove_dir_all(&blobs).with_context(|| format!("removing {}", blobs.display()))?;
    }
    fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    for blob in [manifest, config, layer] {
        let path = blobs.join(blob.hex());
        fs::write(&path, &blob.bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut descriptor = manifest.descriptor(MEDIA_MANIFEST);
    descriptor["annotations"] = json!({
        "org.opencontainers.image.ref.name": spec.tag,
        "io.containerd.image.name": spec.repo_tag,
    });
    descriptor["platform"] = platform(spec);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [descriptor],
    });
    write_file(&dir.join("index.json"), &to_json(&index)?)?;
    write_file(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
}

/// The `docker save` format: `manifest.json` naming the config and the layer
/// by path. The layer stays gzip-compressed: both `docker load` and
/// `podman load` detect the compression and check the uncompressed content
/// against the config's `diff_ids`.
fn write_docker_archive(path: &Path, spec: &ImageSpec, config: &Blob, layer: &Blob) -> Result<()> {
    let config_path = format!("blobs/sha256/{}", config.hex());
    let layer_path = format!("blobs/sha256/{}", layer.hex());
    let manifest = to_json(&json!([{
        "Config": config_path,
        "RepoTags": [spec.repo_tag],
        "Layers": [layer_path],
    }]))?;

    let mut builder = tar::Builder::new(Vec::new());
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = archive_header(spec.created_epoch, 0o755, 0);
        header.set_entry_type(tar::EntryType::Directory);
        builder
            .append_data(&mut header, dir, std::io::empty())
            .context("building the docker archive")?;
    }
    for (name, bytes) in [
        (config_path.as_str(), config.bytes.as_slice()),
        (layer_path.as_str(), layer.bytes.as_slice()),
        ("manifest.json", manifest.as_slice()),
    ] {
        let mut header = archive_header(spec.created_epoch, 0o644, bytes.len() as u64);
        builder
            .append_data(&mut header, name, bytes)
            .with_context(|| format!("adding {name} to the docker archive"))?;
    }
    let bytes = builder
        .into_inner()
        .context("finishing the docker archive")?;
    write_file(path, &bytes)
}

fn archive_header(mtime: u64, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mode(mode);
    header.set_size(size);
    header
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// `2024-05-01T12:34:56Z` for seconds since the Unix epoch (UTC).
pub fn rfc3339(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn spec() -> ImageSpec {
        ImageSpec {
            repo_tag: "vk-rs/vk-test:1.2.3".into(),
            tag: "1.2.3".into(),
            architecture: "amd64".into(),
            variant: None,
            entrypoint: vec!["/vk-test".into()],
            user: "65532:65532".into(),
            env: vec!["PATH=/".into()],
            exposed_ports: vec!["10250/tcp".into()],
            labels: [("org.opencontainers.image.version".into(), "1.2.3".into())].into(),
            created_epoch: 1_700_000_000,
            created_by: "test".into(),
            entries: vec![
                LayerEntry::dir("/etc", 0o755, 0, 0),
                LayerEntry::file("/etc/passwd", 0o644, b"root:x:0:0::/:/x\n".to_vec()),
                LayerEntry::dir("/tmp", 0o1777, 0, 0),
                LayerEntry::file("/vk-test", 0o755, b"\x7fELF-not-really".to_vec()),
            ],
        }
    }

    fn read_json(path: &Path) -> Value {
        let bytes = fs::read(path).unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    #[test]
    fn dates_are_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn sha256_of_the_empty_input() {
        assert_eq!(
            sha256(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn layout_and_archive_agree_and_digests_verify() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("vk-oci-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let tarball = dir.join("image.tar");
        let written = write(&spec(), &dir, &tarball)?;

        // Every blob's file name is its digest.
        for entry in fs::read_dir(dir.join("blobs/sha256"))? {
            let entry = entry?;
            let bytes = fs::read(entry.path())?;
            assert_eq!(
                sha256(&bytes).trim_start_matches("sha256:"),
                entry.file_name().to_string_lossy()
            );
        }
        // index -> manifest -> config and layer.
        let index = read_json(&dir.join("index.json"));
        let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap_or("");
        assert_eq!(manifest_digest, written.manifest_digest);
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "1.2.3"
        );
        let blob = |d: &str| {
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let manifest = read_json(&blob(manifest_digest));
        assert_eq!(manifest["config"]["digest"], written.config_digest.as_str());
        let config = read_json(&blob(&written.config_digest));
        assert_eq!(config["rootfs"]["diff_ids"][0], written.diff_id.as_str());
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["architecture"], "amd64");
        assert!(config.get("variant").is_none());
        assert_eq!(
            index["manifests"][0]["platform"],
            json!({ "architecture": "amd64", "os": "linux" })
        );

        // The layer decompresses to the diff_id, with the modes and owners asked for.
        let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap_or("");
        let compressed = fs::read(blob(layer_digest))?;
        assert_eq!(compressed.len() as u64, written.layer_compressed_size);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice()).read_to_end(&mut raw)?;
        assert_eq!(sha256(&raw), written.diff_id);
        let mut archive = tar::Archive::new(raw.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries()? {
            let entry = entry?;
            let h = entry.header();
            seen.push((
                entry.path()?.to_string_lossy().into_owned(),
                h.mode()?,
                h.uid()?,
                h.mtime()?,
            ));
        }
        assert_eq!(
            seen,
            vec![
                ("etc/".to_string(), 0o755, 0, 1_700_000_000),
                ("etc/passwd".to_string(), 0o644, 0, 1_700_000_000),
                ("tmp/".to_string(), 0o1777, 0, 1_700_000_000),
                ("vk-test".to_string(), 0o755, 0, 1_700_000_000),
            ]
        );

        // The docker archive names the same config and layer.
        let mut archive = tar::Archive::new(fs::File::open(&tarball)?);
        let mut files = BTreeMap::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            files.insert(name, bytes);
        }
        let docker: Value = serde_json::from_slice(&files["manifest.json"])?;
        assert_eq!(docker[0]["RepoTags"][0], "vk-rs/vk-test:1.2.3");
        let config_path = docker[0]["Config"].as_str().unwrap_or("");
        assert_eq!(sha256(&files[config_path]), written.config_digest);
        let layer_path = docker[0]["Layers"][0].as_str().unwrap_or("");
        assert_eq!(files[layer_path], compressed);

        // Same inputs, same bytes.
        let again = write(&spec(), &dir, &dir.join("again.tar"))?;
        assert_eq!(again.manifest_digest, written.manifest_digest);
        assert_eq!(fs::read(&tarball)?, fs::read(dir.join("again.tar"))?);
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn an_arm64_image_says_so_in_its_config_and_index() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("vk-oci-arm64-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let arm64 = ImageSpec {
            architecture: "arm64".into(),
            variant: Some("v8".into()),
            ..spec()
        };
        let written = write(&arm64, &dir, &dir.join("image.tar"))?;
        let config = read_json(
            &dir.join("blobs/sha256")
                .join(written.config_digest.trim_start_matches("sha256:")),
        );
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["variant"], "v8");
        assert_eq!(config["os"], "linux");
        let index = read_json(&dir.join("index.json"));
        assert_eq!(
            index["manifests"][0]["platform"],
            json!({ "architecture": "arm64", "os": "linux", "variant": "v8" })
        );
        // Another platform, another image.
        let amd64 = write(&spec(), &dir, &dir.join("amd64.tar"))?;
        assert_ne!(amd64.config_digest, written.config_digest);
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
