//! `cargo xtask cluster bootstrap-token [--dir DIR]`: a bootstrap kubeconfig
//! for a new virtual node, as `kubeadm token create` plus the kubeconfig a
//! kubelet's `--bootstrap-kubeconfig` reads.
//!
//! The token is a Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token` (usable for authentication and signing,
//! expiring after [`TOKEN_TTL`], then deleted by the tokencleaner controller).
//! The apiserver authenticates it as `system:bootstrap:<id>` in group
//! `system:bootstrappers`, which `vkcp` allows to create node client CSRs and
//! have them approved (see `xtask/controlplane/bootstrap.go`). The kubeconfig
//! is written to `DIR/bootstrap/bootstrap-<id>.kubeconfig`, mode 0600.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::cluster::ClusterDir;
use crate::kubectl;

/// How long a new token authenticates; kubeadm's default is 24 h too.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Token ids and secrets are `[a-z0-9]` (`[a-z0-9]{6}.[a-z0-9]{16}`).
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Creates a bootstrap token in the running cluster of `dir` and writes its
/// kubeconfig; returns the kubeconfig's path.
pub fn create(dir: &Path, vkcp: &Path) -> Result<PathBuf> {
    let cluster = ClusterDir::new(dir);
    if !cluster.is_ready() {
        bail!(
            "no ready cluster in {}; start one with `cargo xtask cluster up --dir {}`",
            dir.display(),
            dir.display()
        );
    }
    let admin = cluster.kubeconfig();
    let id = random_string(6)?;
    let secret = random_string(16)?;
    let expiration = rfc3339(SystemTime::now() + TOKEN_TTL)?;
    kubectl::run(
        vkcp,
        &admin,
        [
            "create".to_string(),
            "secret".to_string(),
            "generic".to_string(),
            format!("bootstrap-token-{id}"),
            "--namespace=kube-system".to_string(),
            "--type=bootstrap.kubernetes.io/token".to_string(),
            format!("--from-literal=token-id={id}"),
            format!("--from-literal=token-secret={secret}"),
            format!("--from-literal=expiration={expiration}"),
            "--from-literal=usage-bootstrap-authentication=true".to_string(),
            "--from-literal=usage-bootstrap-signing=true".to_string(),
            "--from-literal=description=virtual node bootstrap (cargo xtask cluster bootstrap-token)"
                .to_string(),
        ],
    )
    .context("creating the bootstrap token Secret")?;

    // The server and CA of the admin kubeconfig, with the token as the only credential.
    let server = kubectl::run(
        vkcp,
        &admin,
        [
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
    )?;
    let ca = kubectl::run(
        vkcp,
        &admin,
        [
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ],
    )?;
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "vk-local", "cluster": {
            "server": server.trim(), "certificate-authority-data": ca.trim()}}],
        "users": [{"name": format!("system:bootstrap:{id}"), "user": {"token": format!("{id}.{secret}")}}],
        "contexts": [{"name": "bootstrap", "context": {
            "cluster": "vk-local", "user": format!("system:bootstrap:{id}")}}],
        "current-context": "bootstrap",
    });
    let out_dir = dir.join("bootstrap");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", out_dir.display()))?;
    let path = out_dir.join(format!("bootstrap-{id}.kubeconfig"));
    let text = serde_json::to_string_pretty(&config)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "bootstrap token {id} (expires {expiration}); start a node with --bootstrap-kubeconfig {} --cert-dir DIR",
        path.display()
    );
    Ok(path)
}

/// `n` characters of [`ALPHABET`] from the kernel's random source.
fn random_string(n: usize) -> Result<String> {
    let mut out = String::with_capacity(n);
    let mut urandom = fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    let mut byte = [0u8; 1];
    while out.len() < n {
        urandom
            .read_exact(&mut byte)
            .context("reading /dev/urandom")?;
        // 252 = 7 * 36: reject the rest so every character is equally likely.
        if byte[0] < 252 {
            out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    Ok(out)
}

/// `t` as RFC 3339 in UTC (`2026-12-06T00:10:00Z`), without a date crate.
fn rfc3339(t: SystemTime) -> Result<String> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs();
    let days = i64::try_from(secs / 86_400).context("date out of range")?;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    Ok(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    ))
}

/// Days since 1970-01-01 → (year, month, day): Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_as_rfc3339() {
        assert_eq!(
            rfc3339(UNIX_EPOCH).ok().as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199); // leap year, Feb 29
        assert_eq!(rfc3339(t).ok().as_deref(), Some("2024-02-29T23:59:59Z"));
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_600);
        assert_eq!(rfc3339(t).ok().as_deref(), Some("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn tokens_have_the_bootstrap_token_shape() {
        let id = random_string(6).unwrap_or_default();
        let secret = random_string(16).unwrap_or_default();
        assert_eq!(id.len(), 6);
        assert_eq!(secret.len(), 16);
        assert!(
            id.bytes()
                .chain(secret.bytes())
                .all(|b| ALPHABET.contains(&b))
        );
        assert_ne!(random_string(16).unwrap_or_default(), secret);
    }
}
