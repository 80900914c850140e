//! Test images built locally `FROM scratch` from the host's static busybox
//! (Debian's `busybox-static`), so no test ever pulls from a container
//! registry (the test machines have none).
//!
//! Each image carries a label with a digest of its recipe: it is built once
//! per machine and rebuilt only when missing or when its recipe changed.
//! Parallel test processes serialise on a file lock.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::daemon::{RigLock, rig_dir};
use crate::debian::ensure_programs;
use crate::podman::{podman, prepare_podman};

/// The busybox image: every applet linked into `/bin` (so `sh`, `hostname`,
/// `httpd`, `id`, `sleep`, `wget`... work), a writable `/tmp`, `/root`,
/// `/var/www/index.html`, and `/etc/passwd` and `/etc/group` with `root`
/// (0) and `nobody` (65534). Default command `sh`.
pub const BUSYBOX_IMAGE: &str = "localhost/vk-test/busybox:1";

/// [`BUSYBOX_IMAGE`] whose default command serves `/var/www` over HTTP on
/// [`BUSYBOX_HTTPD_PORT`] (`httpd -f -p 8080 -h /var/www`); its `/` answers
/// [`BUSYBOX_HTTPD_INDEX`].
pub const BUSYBOX_HTTPD_IMAGE: &str = "localhost/vk-test/busybox-httpd:1";

/// The port [`BUSYBOX_HTTPD_IMAGE`] listens on.
pub const BUSYBOX_HTTPD_PORT: u16 = 8080;

/// The body of `/var/www/index.html` in both images.
pub const BUSYBOX_HTTPD_INDEX: &str = "vk-test busybox\n";

/// Where the static busybox comes from.
const BUSYBOX_BINARY: &str = "/bin/busybox";

/// The label holding the recipe digest.
const RECIPE_LABEL: &str = "io.vk-rs.test.recipe";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

/// The base image's Containerfile. There is no shell before `--install`,
/// hence the exec form calling busybox's own `sh`.
fn busybox_containerfile() -> String {
    format!(
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /etc /root /tmp /var/www \
         && /bin/busybox chmod 1777 /tmp \
         && /bin/busybox --install -s /bin \
         && printf '{index}' > /var/www/index.html\"]\n\
         COPY passwd group /etc/\n\
         ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin\n\
         WORKDIR /\n\
         CMD [\"sh\"]\n",
        index = BUSYBOX_HTTPD_INDEX.replace('\n', "\\\\n"),
    )
}

fn httpd_containerfile() -> String {
    format!(
        "FROM {BUSYBOX_IMAGE}\n\
         EXPOSE {BUSYBOX_HTTPD_PORT}\n\
         CMD [\"httpd\", \"-f\", \"-p\", \"{BUSYBOX_HTTPD_PORT}\", \"-h\", \"/var/www\"]\n"
    )
}

/// [`BUSYBOX_IMAGE`], built if this machine lacks it (or has an older
/// recipe's); returns its reference. Blocking; needs a usable podman
/// ([`prepare_podman`]) and a static `/bin/busybox` (installs
/// `busybox-static` as root when `/bin/busybox` is missing).
pub fn busybox_image() -> Result<String> {
    let _lock = RigLock::acquire("images")?;
    ensure_busybox()?;
    Ok(BUSYBOX_IMAGE.to_string())
}

/// [`BUSYBOX_HTTPD_IMAGE`], built (with [`BUSYBOX_IMAGE`] under it) if
/// missing or stale; returns its reference.
pub fn busybox_httpd_image() -> Result<String> {
    let _lock = RigLock::acquire("images")?;
    ensure_busybox()?;
    let base_id = image_id(BUSYBOX_IMAGE)?;
    ensure_image(
        BUSYBOX_HTTPD_IMAGE,
        &httpd_containerfile(),
        &[],
        // A rebuilt base means a rebuilt variant.
        &base_id,
    )?;
    Ok(BUSYBOX_HTTPD_IMAGE.to_string())
}

/// The local image ID of `reference`.
pub(crate) fn image_id(reference: &str) -> Result<String> {
    let id = podman(["image", "inspect", "--format", "{{.Id}}", reference])?.ok()?;
    Ok(id.trim().to_string())
}

/// Builds the base image unless present with this recipe. The caller holds
/// the `images` lock.
fn ensure_busybox() -> Result<()> {
    prepare_podman()?;
    if !Path::new(BUSYBOX_BINARY).exists() {
        ensure_programs(&[("busybox", "busybox-static")])?;
    }
    let busybox = std::fs::read(BUSYBOX_BINARY)
        .with_context(|| format!("reading {BUSYBOX_BINARY} (Debian package busybox-static)"))?;
    if has_interpreter(&busybox) {
        bail!(
            "{BUSYBOX_BINARY} is dynamically linked (Debian's `busybox` package): \
             a FROM-scratch image needs the static one, `apt-get install busybox-static`"
        );
    }
    let busybox_digest = {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        busybox.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    };
    ensure_image(
        BUSYBOX_IMAGE,
        &busybox_containerfile(),
        &[
            ("busybox", busybox.as_slice()),
            ("passwd", PASSWD.as_bytes()),
            ("group", GROUP.as_bytes()),
        ],
        &busybox_digest,
    )
}

/// Builds `reference` from `containerfile` and `files` (the build context)
/// unless an image of that name carries the same recipe digest (of the
/// Containerfile, the file names and `extra`).
fn ensure_image(
    reference: &str,
    containerfile: &str,
    files: &[(&str, &[u8])],
    extra: &str,
) -> Result<()> {
    let recipe = {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        containerfile.hash(&mut hasher);
        for (name, contents) in files {
            name.hash(&mut hasher);
            if *name != "busybox" {
                contents.hash(&mut hasher);
            }
        }
        extra.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    };
    let current = podman([
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Labels \"{RECIPE_LABEL}\"}}}}"),
        reference,
    ])?;
    if current.success() && current.stdout.trim() == recipe {
        return Ok(());
    }
    let dir = build_dir(reference)?;
    std::fs::write(dir.join("Containerfile"), containerfile)
        .with_context(|| format!("writing the Containerfile in {}", dir.display()))?;
    for (name, contents) in files {
        std::fs::write(dir.join(name), contents)
            .with_context(|| format!("writing {name} in {}", dir.display()))?;
    }
    if files.iter().any(|(name, _)| *name == "busybox") {
        set_executable(&dir.join("busybox"))?;
    }
    eprintln!("building the test image {reference}");
    let dir_arg = dir.to_string_lossy().into_owned();
    let built = podman([
        "build",
        "--pull=never",
        "--network=none",
        "--label",
        &format!("{RECIPE_LABEL}={recipe}"),
        "-t",
        reference,
        &dir_arg,
    ])?;
    let _ = std::fs::remove_dir_all(&dir);
    if !built.success() {
        bail!(
            "building {reference} failed ({}):\n{}\n{}",
            built.status,
            built.stdout.trim(),
            built.stderr.trim()
        );
    }
    Ok(())
}

/// A fresh build context directory under the rig directory.
fn build_dir(reference: &str) -> Result<PathBuf> {
    let name: String = reference
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = rig_dir()?.join("build").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", path.display()))
}

/// Whether a 64-bit little-endian ELF file has a `PT_INTERP` program header,
/// i.e. is dynamically linked. Anything unparsable counts as static: the
/// build then fails with the loader's own message.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read_u16 = |at: usize| -> Option<u16> {
        Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?))
    };
    let read_u32 = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?))
    };
    let read_u64 = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?))
    };
    let is_elf64_le = elf.get(..6) == Some(b"\x7fELF\x02\x01".as_slice());
    if !is_elf64_le {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (read_u64(0x20), read_u16(0x36), read_u16(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        usize::try_from(phoff)
            .ok()
            .and_then(|off| off.checked_add(i * usize::from(phentsize)))
            .and_then(read_u32)
            == Some(PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_dynamic_executable_from_a_static_one() {
        // This test binary is dynamically linked (glibc target).
        let me = std::env::current_exe().and_then(std::fs::read);
        let me = me.unwrap_or_else(|e| panic!("reading the test binary: {e}"));
        assert!(has_interpreter(&me));
        assert!(!has_interpreter(b"#!/bin/sh\necho not an ELF\n"));
        assert!(!has_interpreter(b"\x7fELF\x02\x01"));
    }

    #[test]
    fn the_httpd_variant_builds_on_the_base_image() {
        let file = httpd_containerfile();
        assert!(
            file.starts_with(&format!("FROM {BUSYBOX_IMAGE}\n")),
            "{file}"
        );
        assert!(
            file.contains("\"httpd\", \"-f\", \"-p\", \"8080\""),
            "{file}"
        );
    }
}
