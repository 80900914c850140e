//! The node's client certificate on disk, in the kubelet's layout: every
//! issued certificate is `<cert-dir>/kubelet-client-<timestamp>.pem`
//! (certificate and key in one PEM file, mode 0600, the directory 0700) and
//! `kubelet-client-current.pem` is a symlink to the newest, replaced
//! atomically. Nothing here talks to the apiserver.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The symlink to the certificate in use.
pub const CURRENT: &str = "kubelet-client-current.pem";

/// A client certificate read from the cert dir.
#[derive(Clone)]
pub struct ClientCert {
    /// The `CERTIFICATE` blocks, PEM.
    pub cert_pem: String,
    /// The private key block, PEM.
    pub key_pem: String,
    /// The leaf's subject common name (`system:node:<name>`).
    pub common_name: String,
    /// The leaf's organizations (`system:nodes`).
    pub organizations: Vec<String>,
    /// Validity of the leaf.
    pub not_before: SystemTime,
    /// Validity of the leaf.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("common_name", &self.common_name)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl ClientCert {
    /// Parses a PEM file holding a certificate chain and its private key.
    pub fn parse(pem: &str) -> Result<ClientCert, String> {
        let mut cert_pem = String::new();
        let mut key_pem = String::new();
        for (label, block) in pem_blocks(pem) {
            if label == "CERTIFICATE" {
                cert_pem.push_str(&block);
            } else if label.ends_with("PRIVATE KEY") && key_pem.is_empty() {
                key_pem.push_str(&block);
            }
        }
        let leaf = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .next()
            .ok_or("no certificate")?
            .map_err(|e| format!("certificate PEM: {e}"))?;
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("no usable private key: {e}"))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| format!("certificate: {e}"))?;
        let subject = parsed.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let organizations = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        let at = |secs: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
        Ok(ClientCert {
            cert_pem,
            key_pem,
            common_name,
            organizations,
            not_before: at(parsed.validity().not_before.timestamp()),
            not_after: at(parsed.validity().not_after.timestamp()),
        })
    }

    /// Why this certificate cannot serve as `node`'s identity at `now`, if it cannot.
    pub fn unusable_for(&self, node: &str, now: SystemTime) -> Option<String> {
        let expected = format!("system:node:{node}");
        if self.common_name != expected {
            return Some(format!(
                "it is for {:?}, not {expected:?}",
                self.common_name
            ));
        }
        if now >= self.not_after {
            return Some("it has expired".into());
        }
        None
    }
}

/// The `(label, block text)` of each PEM block in `text`, in order.
fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), format!("{line}\n")));
        } else if let Some((label, mut block)) = current.take() {
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END ") {
                blocks.push((label, block));
            } else {
                current = Some((label, block));
            }
        }
    }
    blocks
}

/// Reads `<dir>/kubelet-client-current.pem`; `None` when there is none.
pub fn load_current(dir: &Path) -> Result<Option<ClientCert>, String> {
    let path = dir.join(CURRENT);
    match fs::read_to_string(&path) {
        Ok(text) => ClientCert::parse(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Creates the cert dir (mode 0700) if it does not exist.
pub fn ensure_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("restricting {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Writes a new `kubelet-client-<timestamp>.pem` (mode 0600) and points
/// `kubelet-client-current.pem` at it. Returns the new file's path.
pub fn store(dir: &Path, cert_pem: &[u8], key_pem: &str) -> Result<PathBuf, String> {
    ensure_dir(dir)?;
    let stamp = jiff::Timestamp::now().strftime("%Y-%m-%d-%H-%M-%S");
    let name = format!("kubelet-client-{stamp}.pem");
    let path = dir.join(&name);
    let mut body = String::from_utf8_lossy(cert_pem).into_owned();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    body.push_str(key_pem);
    // A file of the same second (only possible when renewing twice within
    // it) is replaced: the newer certificate is the one to keep.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.write_all(body.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    // The link is relative, so the directory may be mounted anywhere; it is
    // replaced with a rename, so a reader never sees it missing.
    let tmp = dir.join(format!("{CURRENT}.tmp"));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp)
        .map_err(|e| format!("linking {}: {e}", tmp.display()))?;
    fs::rename(&tmp, dir.join(CURRENT))
        .map_err(|e| format!("replacing {}: {e}", dir.join(CURRENT).display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(cn: &str, days: i64) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = if days > 0 {
            rcgen::date_time_ymd(2100, 1, 1)
        } else {
            rcgen::date_time_ymd(2021, 1, 1)
        };
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn stores_the_kubelet_layout_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("pki");
        let (cert, key) = issue("system:node:n1", 1);
        let path = store(&certs, cert.as_bytes(), &key).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("kubelet-client-") && name.ends_with(".pem"),
            "{name}"
        );
        assert_ne!(name, CURRENT);
        let link = fs::read_link(certs.join(CURRENT)).unwrap();
        assert_eq!(link, PathBuf::from(&name));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&certs), 0o700);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("BEGIN CERTIFICATE") && text.contains("PRIVATE KEY"));

        let loaded = load_current(&certs).unwrap().unwrap();
        assert_eq!(loaded.common_name, "system:node:n1");
        assert_eq!(loaded.organizations, vec!["system:nodes".to_string()]);
        assert_eq!(loaded.key_pem.trim(), key.trim());
        assert_eq!(loaded.unusable_for("n1", SystemTime::now()), None);
        assert!(loaded.unusable_for("n2", SystemTime::now()).is_some());
    }

    #[test]
    fn a_newer_certificate_replaces_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let (old, old_key) = issue("system:node:n1", 1);
        store(dir.path(), old.as_bytes(), &old_key).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let (new, new_key) = issue("system:node:n1", 1);
        let path = store(dir.path(), new.as_bytes(), &new_key).unwrap();
        assert_eq!(
            fs::read_link(dir.path().join(CURRENT)).unwrap(),
            PathBuf::from(path.file_name().unwrap())
        );
        let loaded = load_current(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.key_pem.trim(), new_key.trim());
        let files = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 3, "two certificates and the link");
    }

    #[test]
    fn no_file_is_none_and_an_expired_one_is_unusable() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_current(dir.path()).unwrap().is_none());
        let (cert, key) = issue("system:node:n1", 0);
        store(dir.path(), cert.as_bytes(), &key).unwrap();
        let loaded = load_current(dir.path()).unwrap().unwrap();
        assert_eq!(
            loaded.unusable_for("n1", SystemTime::now()).as_deref(),
            Some("it has expired")
        );
    }

    #[test]
    fn a_file_without_a_key_is_an_error() {
        let (cert, _) = issue("system:node:n1", 1);
        assert!(ClientCert::parse(&cert).is_err());
        assert!(ClientCert::parse("garbage").is_err());
    }
}
