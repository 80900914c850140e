//! `cargo xtask build-images [--provider NAME]... [--arch amd64|arm64|all]...`:
//! one slim image per provider and architecture, written without a container
//! engine.
//!
//! For the providers asked for (workspace packages under `providers/` with a
//! binary `vk-<name>`; all of them by default): one release build of all
//! their binaries in a single cargo invocation, linked statically for
//! `x86_64-unknown-linux-musl` (or `aarch64-unknown-linux-musl` with
//! `--arch arm64`), then for each a `FROM scratch` image holding only that binary at
//! `/vk-<name>`, the build machine's CA bundle and a non-root user
//! (`nonroot`, uid/gid 65532), written by [`crate::oci`] to
//! `target/images/<name>/` (`target/images/<name>-arm64/`): an OCI image
//! layout plus the `docker-archive` tarball `vk-<name>-<version>.tar`
//! (`vk-<name>-<version>-arm64.tar`) that `podman load`/`docker load` accept.
//!
//! When the amd64 musl target cannot be installed, the binary is a static
//! glibc build instead (`-C target-feature=+crt-static`), with a warning:
//! glibc's name resolution then cannot load its NSS modules, so DNS lookups of
//! cloud endpoints fail inside the image. arm64 has no fallback: it needs the
//! `aarch64-unknown-linux-musl` target and a C cross compiler for the C and
//! assembly parts of the TLS stack (`ring`), and says which one is missing.
//!
//! Each image's path goes to stdout (the last line is the last image's
//! tarball); progress and sizes go to stderr.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::oci::{self, ImageSpec, LayerEntry};
use crate::progress::{self, format_duration};
use crate::{options, workspace};

/// Where the build machine keeps its CA bundle (Debian's `ca-certificates`),
/// and where the image has it.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The non-root user the image runs as (the distroless convention).
const NONROOT_ID: u64 = 65532;
const GNU: &str = "x86_64-unknown-linux-gnu";
/// The registry-less repository the tarballs are tagged in.
const REPOSITORY_PREFIX: &str = "vk-rs";
/// How often a running release build reports that it is still running.
const BUILD_PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// What a cold release build of every provider takes on 2 cores (docs/ci.md).
const COLD_BUILD_MINUTES: u32 = 12;

/// A provider that gets an image.
#[derive(Debug, Clone)]
pub struct Provider {
    /// `mock` for the binary `vk-mock`.
    pub name: String,
    pub package: String,
    pub binary: String,
    pub version: String,
    pub description: String,
    pub license: String,
    pub repository: String,
}

/// The CPU architecture of an image (OCI and Go names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arch {
    /// x86-64, the build machine's own: the default.
    Amd64,
    /// 64-bit ARM (ARMv8, e.g. Raspberry Pi 4 and 5): cross-compiled.
    Arm64,
}

impl Arch {
    const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    fn parse(name: &str) -> Result<Vec<Arch>> {
        Ok(match name {
            "amd64" | "x86_64" => vec![Arch::Amd64],
            "arm64" | "aarch64" => vec![Arch::Arm64],
            "all" => Arch::ALL.to_vec(),
            other => bail!("unknown architecture {other:?}; expected amd64, arm64 or all"),
        })
    }

    /// `amd64`, `arm64`: the image config's `architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The image config's `variant`.
    fn variant(self) -> Option<&'static str> {
        match self {
            Arch::Amd64 => None,
            Arch::Arm64 => Some("v8"),
        }
    }

    fn musl_triple(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-musl",
            Arch::Arm64 => "aarch64-unknown-linux-musl",
        }
    }

    /// `e_machine` of its ELF binaries.
    fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => 62,
            Arch::Arm64 => 183,
        }
    }

    /// What the output directory and tarball names carry after the provider
    /// name: nothing for amd64 (the default), `-arm64` otherwise.
    fn suffix(self) -> &'static str {
        match self {
            Arch::Amd64 => "",
            Arch::Arm64 => "-arm64",
        }
    }
}

/// How the static binary is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Linkage {
    Musl(Arch),
    /// The amd64 fallback: glibc with `+crt-static`.
    GlibcStatic,
}

impl Linkage {
    fn triple(self) -> &'static str {
        match self {
            Linkage::Musl(arch) => arch.musl_triple(),
            Linkage::GlibcStatic => GNU,
        }
    }

    fn arch(self) -> Arch {
        match self {
            Linkage::Musl(arch) => arch,
            Linkage::GlibcStatic => Arch::Amd64,
        }
    }
}

/// What `cargo xtask build-images` was asked for.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    /// Provider names; empty: all.
    providers: Vec<String>,
    /// Sorted, without repeats; amd64 when none was named.
    arches: Vec<Arch>,
}

/// `cargo xtask build-images` with its arguments.
pub fn run(args: &[String]) -> Result<()> {
    let request = parse_args(args)?;
    let metadata = cargo_metadata()?;
    let providers = select(providers(&metadata)?, &request.providers)?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")?;
    // Every toolchain is checked before the first (long) build.
    let linkages = request
        .arches
        .iter()
        .map(|&arch| choose_linkage(arch))
        .collect::<Result<Vec<_>>>()?;
    let source = SourceInfo::read();
    let images_root = workspace::root().join("target").join("images");
    // Concurrent runs (test processes started in parallel) would rewrite the
    // same layout directories under each other: one at a time.
    fs::create_dir_all(&images_root)
        .with_context(|| format!("creating {}", images_root.display()))?;
    let lock_path = images_root.join(".lock");
    let lock = fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!("another build-images is running; waiting for it");
        lock.lock().context("waiting for the build-images lock")?;
    }

    let mut built = Vec::new();
    for &linkage in &linkages {
        // One cargo invocation for every provider: the shared crates are
        // compiled and linked once, with one feature resolution, instead of
        // once per provider.
        let binaries = build_binaries(&providers, linkage, &target_dir)?;
        for (provider, binary) in providers.iter().zip(binaries) {
            let arch = linkage.arch();
            let out_dir = images_root.join(format!("{}{}", provider.name, arch.suffix()));
            let image = write_image(provider, &binary, &source, &out_dir, linkage)?;
            built.push((provider.clone(), arch, binary, image));
        }
    }

    eprintln!("\nimages:");
    for (provider, arch, binary, image) in &built {
        let binary_size = fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "  {}:{} ({})  binary {}, layer {} compressed ({} uncompressed), tarball {}\n    \
             image id {} (config), manifest {}, layer diff_id {}\n    \
             layout  {}\n    tarball {}",
            repository(provider),
            image_tag(provider, *arch),
            arch.name(),
            megabytes(binary_size),
            megabytes(image.layer_compressed_size),
            megabytes(image.layer_size),
            megabytes(image.tarball_size),
            image.config_digest,
            image.manifest_digest,
            image.diff_id,
            image.layout_dir.display(),
            image.tarball.display(),
        );
    }
    for (_, _, _, image) in &built {
        println!("{}", image.tarball.display());
    }
    Ok(())
}

const USAGE: &str =
    "usage: cargo xtask build-images [--provider NAME]... [--arch amd64|arm64|all]...";

/// `--provider NAME` (repeatable; none means all) and `--arch NAME`
/// (repeatable; none means amd64), each also as `--opt=VALUE`.
fn parse_args(args: &[String]) -> Result<Request> {
    let mut providers = Vec::new();
    let mut arches = Vec::new();
    for (name, value) in options::parse(args, &["--provider", "--arch"], USAGE)? {
        match name.as_str() {
            "--provider" => providers.push(value),
            _ => arches.extend(Arch::parse(&value)?),
        }
    }
    if arches.is_empty() {
        arches.push(Arch::Amd64);
    }
    arches.sort();
    arches.dedup();
    Ok(Request { providers, arches })
}

fn select(all: Vec<Provider>, wanted: &[String]) -> Result<Vec<Provider>> {
    if wanted.is_empty() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for name in wanted {
        let name = name.strip_prefix("vk-").unwrap_or(name);
        match all.iter().find(|p| p.name == name) {
            Some(p) => out.push(p.clone()),
            None => bail!(
                "no provider {name:?}; the workspace has: {}",
                all.iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(out)
}

/// `cargo metadata --no-deps` of the workspace.
fn cargo_metadata() -> Result<Value> {
    let out = Command::new(workspace::cargo())
        .current_dir(workspace::root())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata")
}

/// Packages under `providers/` that build a binary `vk-<name>`.
fn providers(metadata: &Value) -> Result<Vec<Provider>> {
    let providers_dir = workspace::root().join("providers");
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    let mut out = Vec::new();
    for package in packages {
        let manifest = package["manifest_path"].as_str().unwrap_or("");
        if !Path::new(manifest).starts_with(&providers_dir) {
            continue;
        }
        // Fields a package inherits with `key.workspace = true` show up
        // resolved; ones it does not inherit fall back to `[workspace.package]`.
        let text = |key: &str| {
            package[key]
                .as_str()
                .map(str::to_string)
                .or_else(|| workspace_package_field(key))
                .unwrap_or_default()
        };
        let binaries = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            });
        for target in binaries {
            let binary = target["name"].as_str().unwrap_or("");
            if let Some(name) = binary.strip_prefix("vk-") {
                out.push(Provider {
                    name: name.to_string(),
                    package: text("name"),
                    binary: binary.to_string(),
                    version: text("version"),
                    description: text("description"),
                    license: text("license"),
                    repository: text("repository"),
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if out.is_empty() {
        bail!(
            "no provider binaries (vk-<name>) under {}",
            providers_dir.display()
        );
    }
    Ok(out)
}

/// A string field of `[workspace.package]` in the root `Cargo.toml`
/// (`repository = "https://..."`), read as text: cargo metadata does not show it.
fn workspace_package_field(key: &str) -> Option<String> {
    let manifest = fs::read_to_string(workspace::root().join("Cargo.toml")).ok()?;
    let mut in_section = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            let v = v.trim();
            return v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string);
        }
    }
    None
}

/// `0.1.0` for amd64, `0.1.0-arm64` for arm64.
pub fn image_tag(provider: &Provider, arch: Arch) -> String {
    format!("{}{}", provider.version, arch.suffix())
}

/// `vk-rs/vk-mock`.
pub fn repository(provider: &Provider) -> String {
    format!("{REPOSITORY_PREFIX}/{}", provider.binary)
}

/// Musl when its standard library is installed or `rustup` can add it; for
/// amd64 the static glibc build otherwise, for arm64 an error. The C compiler
/// is found (or installed) here too, so a missing one fails before any build.
fn choose_linkage(arch: Arch) -> Result<Linkage> {
    let musl = arch.musl_triple();
    let installed = target_installed(musl) || {
        eprintln!("the {musl} standard library is missing: rustup target add {musl}");
        let added = Command::new("rustup")
            .args(["target", "add", musl])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        added && target_installed(musl)
    };
    if installed {
        musl_cc(arch)?;
        return Ok(Linkage::Musl(arch));
    }
    if arch != Arch::Amd64 {
        bail!(
            "cannot build for {}: the Rust standard library for {musl} is not installed and \
             `rustup target add {musl}` failed (offline, or no rustup?)",
            arch.name()
        );
    }
    eprintln!(
        "warning: cannot install the {musl} target; falling back to a static glibc build \
         ({GNU}, -C target-feature=+crt-static). Inside a FROM-scratch image glibc cannot load \
         its NSS modules, so host names resolve from /etc/hosts only: fine against a cluster \
         reached by IP, not for cloud endpoints."
    );
    Ok(Linkage::GlibcStatic)
}

/// Whether `rustc`'s sysroot has the standard library for `triple`.
fn target_installed(triple: &str) -> bool {
    let Ok(out) = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(workspace::root())
        .output()
    else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(triple)
        .join("lib")
        .is_dir()
}

/// `CC_<triple>`, the variable the `cc` crate reads for a target's C compiler.
fn cc_variable(triple: &str) -> String {
    format!("CC_{}", triple.replace('-', "_"))
}

/// The C compiler for `arch`'s musl target: `$CC_<triple>` when set, else
/// the first of the candidates on PATH, else the candidate's Debian package
/// installed (when we are root). amd64: `musl-gcc` (Debian's `musl-tools`).
/// arm64: a musl cross compiler (`aarch64-linux-musl-gcc`, which Debian does
/// not package), else Debian's `aarch64-linux-gnu-gcc`
/// (`gcc-aarch64-linux-gnu`): `ring` needs only freestanding headers, and
/// Rust links with its own self-contained musl start files and libc.
fn musl_cc(arch: Arch) -> Result<String> {
    let triple = arch.musl_triple();
    let variable = cc_variable(triple);
    if let Some(cc) = std::env::var_os(&variable).filter(|v| !v.is_empty()) {
        return Ok(cc.to_string_lossy().into_owned());
    }
    // (compiler, Debian package that has it)
    let candidates: &[(&str, Option<&str>)] = match arch {
        Arch::Amd64 => &[("musl-gcc", Some("musl-tools"))],
        Arch::Arm64 => &[
            ("aarch64-linux-musl-gcc", None),
            ("aarch64-linux-gnu-gcc", Some("gcc-aarch64-linux-gnu")),
        ],
    };
    if let Some((cc, _)) = candidates.iter().find(|(cc, _)| on_path(cc)) {
        return Ok(cc.to_string());
    }
    for (cc, package) in candidates {
        let Some(package) = package else { continue };
        if is_root() && on_path("apt-get") {
            eprintln!("{cc} is missing: installing the Debian package {package}");
            let installed = Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", package])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if installed && on_path(cc) {
                return Ok(cc.to_string());
            }
        }
    }
    let names: Vec<&str> = candidates.iter().map(|(cc, _)| *cc).collect();
    let packages: Vec<&str> = candidates.iter().filter_map(|(_, p)| *p).collect();
    bail!(
        "no C compiler for {triple} ({} not found): the C and assembly parts of the TLS stack \
         need one; install it with `apt-get install {}` (or set {variable})",
        names.join(", "),
        packages.join(" ")
    )
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `cargo build --release --target <triple> -p <package> --bin <binary>...`
/// for all `providers` at once; returns their binaries' paths (in the same
/// order) after checking that each is static and for the right machine.
fn build_binaries(
    providers: &[Provider],
    linkage: Linkage,
    target_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let triple = linkage.triple();
    let mut cmd = Command::new(workspace::cargo());
    cmd.current_dir(workspace::root())
        .args(["build", "--release", "--target", triple])
        .stdin(Stdio::null());
    for provider in providers {
        cmd.args(["-p", &provider.package, "--bin", &provider.binary]);
    }
    match linkage {
        Linkage::Musl(arch) => {
            let cc = musl_cc(arch)?;
            if arch == Arch::Arm64 {
                // Rust's default linker driver for a cross target is the
                // host's `cc`, which cannot link aarch64 objects.
                let linker = format!(
                    "CARGO_TARGET_{}_LINKER",
                    triple.replace('-', "_").to_uppercase()
                );
                if std::env::var_os(&linker).is_none() {
                    cmd.env(&linker, &cc);
                }
            }
            cmd.env(cc_variable(triple), cc);
        }
        Linkage::GlibcStatic => {
            // Target-specific, so build scripts and proc macros stay dynamic.
            cmd.env(
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                "-C target-feature=+crt-static",
            );
        }
    }
    let names = providers
        .iter()
        .map(|p| p.binary.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "building {names} (release, static, {triple}) in one cargo invocation; a cold build \
         of all four takes about {COLD_BUILD_MINUTES} minutes on 2 cores"
    );
    let started = Instant::now();
    let mut child = cmd.spawn().context("starting cargo build")?;
    let status = progress::wait_child(
        &mut child,
        &format!("building {names} for {triple}"),
        BUILD_PROGRESS_EVERY,
    )?;
    if !status.success() {
        bail!("cargo build of {names} for {triple} failed ({status})");
    }
    eprintln!("built {names} in {}", format_duration(started.elapsed()));
    providers
        .iter()
        .map(|provider| {
            let binary = target_dir
                .join(triple)
                .join("release")
                .join(&provider.binary);
            check_static(&binary, linkage)?;
            Ok(binary)
        })
        .collect()
}

/// Fails unless `binary` is an ELF file for `linkage`'s machine with no
/// interpreter (a FROM-scratch image has no dynamic loader).
fn check_static(binary: &Path, linkage: Linkage) -> Result<()> {
    let bytes = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let machine = elf_machine(&bytes)?;
    if machine != linkage.arch().elf_machine() {
        bail!(
            "{} is an ELF binary for machine {machine}, not {} ({})",
            binary.display(),
            linkage.arch().name(),
            linkage.arch().elf_machine()
        );
    }
    if let Some(interpreter) = elf_interpreter(&bytes)? {
        bail!(
            "{} is dynamically linked (interpreter {interpreter}): it cannot run in a \
             FROM-scratch image",
            binary.display()
        );
    }
    eprintln!(
        "  {} ({}, static)",
        binary.display(),
        megabytes(bytes.len() as u64)
    );
    Ok(())
}

/// `e_machine` of a 64-bit little-endian ELF file (62 x86-64, 183 AArch64).
fn elf_machine(bytes: &[u8]) -> Result<u16> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        bail!("not a 64-bit little-endian ELF file");
    }
    Ok(u16::from_le_bytes([bytes[0x12], bytes[0x13]]))
}

/// The `PT_INTERP` of a 64-bit little-endian ELF file: `None` for a static
/// binary (static-pie included), `Some(path)` for a dynamic one.
fn elf_interpreter(bytes: &[u8]) -> Result<Option<String>> {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        bail!("not a 64-bit little-endian ELF file");
    }
    let u16_at = |at: usize| -> Option<u64> {
        Some(u64::from(u16::from_le_bytes(
            bytes.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let truncated = || anyhow::anyhow!("truncated ELF header");
    let phoff = u64_at(0x20).ok_or_else(truncated)?;
    let phentsize = u16_at(0x36).ok_or_else(truncated)?;
    let phnum = u16_at(0x38).ok_or_else(truncated)?;
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).context("ELF offset")?;
        if u32_at(at).ok_or_else(truncated)? != PT_INTERP {
            continue;
        }
        let offset =
            usize::try_from(u64_at(at + 8).ok_or_else(truncated)?).context("ELF offset")?;
        let size = usize::try_from(u64_at(at + 32).ok_or_else(truncated)?).context("ELF size")?;
        let path = bytes
            .get(offset..offset + size)
            .ok_or_else(truncated)?
            .split(|&b| b == 0)
            .next()
            .unwrap_or_default();
        return Ok(Some(String::from_utf8_lossy(path).into_owned()));
    }
    Ok(None)
}

/// What the labels say about the source.
struct SourceInfo {
    /// `git rev-parse HEAD`, when this is a git checkout.
    revision: Option<String>,
    /// `$SOURCE_DATE_EPOCH`, else the commit time of HEAD, else now: the same
    /// commit gives the same image.
    created_epoch: u64,
}

impl SourceInfo {
    fn read() -> Self {
        let revision = git(&["rev-parse", "HEAD"]);
        let created_epoch = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .or_else(|| git(&["log", "-1", "--format=%ct", "HEAD"]).and_then(|t| t.parse().ok()))
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            });
        SourceInfo {
            revision,
            created_epoch,
        }
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(workspace::root())
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The image's contents, labels and runtime settings.
fn image_spec(
    provider: &Provider,
    binary: Vec<u8>,
    ca_bundle: Vec<u8>,
    source: &SourceInfo,
    linkage: Linkage,
) -> ImageSpec {
    let created = oci::rfc3339(source.created_epoch);
    let mut labels = BTreeMap::from([
        (
            "org.opencontainers.image.title".to_string(),
            provider.binary.clone(),
        ),
        (
            "org.opencontainers.image.description".to_string(),
            provider.description.clone(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            provider.version.clone(),
        ),
        (
            "org.opencontainers.image.source".to_string(),
            provider.repository.clone(),
        ),
        (
            "org.opencontainers.image.licenses".to_string(),
            provider.license.clone(),
        ),
        ("org.opencontainers.image.created".to_string(), created),
    ]);
    if let Some(revision) = &source.revision {
        labels.insert(
            "org.opencontainers.image.revision".to_string(),
            revision.clone(),
        );
    }
    labels.retain(|_, v| !v.is_empty());

    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\n\
         nonroot:x:{NONROOT_ID}:{NONROOT_ID}:nonroot:/home/nonroot:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nnonroot:x:{NONROOT_ID}:\n");
    let entrypoint = format!("/{}", provider.binary);
    let arch = linkage.arch();
    // A tag per architecture (`0.1.0`, `0.1.0-arm64`): loading the arm64
    // tarball on an amd64 machine must not replace its amd64 image.
    let tag = image_tag(provider, arch);
    ImageSpec {
        repo_tag: format!("{}:{tag}", repository(provider)),
        tag,
        architecture: arch.name().to_string(),
        variant: arch.variant().map(str::to_string),
        entrypoint: vec![entrypoint.clone()],
        user: format!("{NONROOT_ID}:{NONROOT_ID}"),
        env: vec![format!("SSL_CERT_FILE={CA_BUNDLE}")],
        // The kubelet API and the metrics/health port.
        exposed_ports: vec!["10250/tcp".to_string(), "10255/tcp".to_string()],
        labels,
        created_epoch: source.created_epoch,
        created_by: format!(
            "cargo xtask build-images --provider {} ({})",
            provider.name,
            linkage.triple()
        ),
        entries: vec![
            LayerEntry::dir("/etc", 0o755, 0, 0),
            LayerEntry::file("/etc/passwd", 0o644, passwd.into_bytes()),
            LayerEntry::file("/etc/group", 0o644, group.into_bytes()),
            LayerEntry::dir("/etc/ssl", 0o755, 0, 0),
            LayerEntry::dir("/etc/ssl/certs", 0o755, 0, 0),
            LayerEntry::file(CA_BUNDLE, 0o644, ca_bundle),
            LayerEntry::dir("/home", 0o755, 0, 0),
            LayerEntry::dir("/home/nonroot", 0o700, NONROOT_ID, NONROOT_ID),
            LayerEntry::dir("/tmp", 0o1777, 0, 0),
            LayerEntry::file(&entrypoint, 0o755, binary),
        ],
    }
}

fn write_image(
    provider: &Provider,
    binary: &Path,
    source: &SourceInfo,
    out_dir: &Path,
    linkage: Linkage,
) -> Result<oci::WrittenImage> {
    let binary_bytes = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let ca_bundle = fs::read(CA_BUNDLE).with_context(|| {
        format!("reading the CA bundle {CA_BUNDLE} (Debian package ca-certificates)")
    })?;
    let spec = image_spec(provider, binary_bytes, ca_bundle, source, linkage);
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let tarball = out_dir.join(format!(
        "{}-{}{}.tar",
        provider.binary,
        provider.version,
        linkage.arch().suffix()
    ));
    eprintln!("writing image {} to {}", spec.repo_tag, out_dir.display());
    let started = Instant::now();
    let image = oci::write(&spec, out_dir, &tarball)?;
    eprintln!("wrote image in {}", format_duration(started.elapsed()));
    Ok(image)
}

/// `12.3 MB` (10^6 bytes: what registries and `podman images` show).
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Provider {
        Provider {
            name: "mock".into(),
            package: "vk-mock".into(),
            binary: "vk-mock".into(),
            version: "0.1.0".into(),
            description: "the mock".into(),
            license: "Apache-2.0".into(),
            repository: "https://example.invalid/vk-rs".into(),
        }
    }

    fn edge() -> Provider {
        Provider {
            name: "edge".into(),
            package: "vk-edge".into(),
            binary: "vk-edge".into(),
            description: "the edge provider".into(),
            ..provider()
        }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn provider_arguments() -> Result<()> {
        assert_eq!(parse_args(&args(&[]))?.providers, Vec::<String>::new());
        assert_eq!(
            parse_args(&args(&["--provider", "mock", "--provider=edge"]))?.providers,
            vec!["mock", "edge"]
        );
        assert!(parse_args(&args(&["--provider"])).is_err());
        assert!(parse_args(&args(&["mock"])).is_err());
        let all = vec![edge(), provider()];
        assert_eq!(select(all.clone(), &["vk-mock".into()])?.len(), 1);
        let picked = select(all.clone(), &["edge".into()])?;
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].binary, "vk-edge");
        let err = select(all, &["nope".into()]).err().map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| e.contains("edge, mock")),
            "names the providers"
        );
        Ok(())
    }

    #[test]
    fn architecture_arguments() -> Result<()> {
        assert_eq!(parse_args(&args(&[]))?.arches, vec![Arch::Amd64]);
        assert_eq!(
            parse_args(&args(&["--arch", "arm64"]))?.arches,
            vec![Arch::Arm64]
        );
        assert_eq!(
            parse_args(&args(&[
                "--arch=aarch64",
                "--arch",
                "amd64",
                "--arch=arm64"
            ]))?
            .arches,
            vec![Arch::Amd64, Arch::Arm64]
        );
        assert_eq!(
            parse_args(&args(&["--arch", "all", "--provider", "edge"]))?,
            Request {
                providers: vec!["edge".into()],
                arches: vec![Arch::Amd64, Arch::Arm64],
            }
        );
        assert!(parse_args(&args(&["--arch", "riscv64"])).is_err());
        assert!(parse_args(&args(&["--arch"])).is_err());
        assert_eq!(Arch::Arm64.musl_triple(), "aarch64-unknown-linux-musl");
        assert_eq!(
            cc_variable("aarch64-unknown-linux-musl"),
            "CC_aarch64_unknown_linux_musl"
        );
        Ok(())
    }

    /// A package of `cargo metadata` under `dir` with the given binary targets.
    fn package(name: &str, dir: &Path, bins: &[&str]) -> Value {
        let mut targets: Vec<Value> = bins
            .iter()
            .map(|b| serde_json::json!({ "name": b, "kind": ["bin"] }))
            .collect();
        targets.push(serde_json::json!({ "name": name.replace('-', "_"), "kind": ["lib"] }));
        serde_json::json!({
            "name": name,
            "version": "0.1.0",
            "description": format!("the {name} package"),
            "manifest_path": dir.join("Cargo.toml"),
            "targets": targets,
        })
    }

    #[test]
    fn providers_are_the_vk_binaries_under_providers() -> Result<()> {
        let root = workspace::root();
        let metadata = serde_json::json!({ "packages": [
            package("vk-mock", &root.join("providers/mock"), &["vk-mock"]),
            package("vk-edge", &root.join("providers/edge"), &["vk-edge", "edge-helper"]),
            // Not under providers/, or no vk-<name> binary: not providers.
            package("vk-core", &root.join("crates/vk-core"), &[]),
            package("xtask", &root.join("xtask"), &["xtask"]),
            package("vk-lib-only", &root.join("providers/lib-only"), &[]),
        ]});
        let found = providers(&metadata)?;
        let names: Vec<(&str, &str, &str)> = found
            .iter()
            .map(|p| (p.name.as_str(), p.package.as_str(), p.binary.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("edge", "vk-edge", "vk-edge"),
                ("mock", "vk-mock", "vk-mock")
            ]
        );
        assert_eq!(found[0].description, "the vk-edge package");
        // Not inherited in the test metadata: from [workspace.package].
        assert_eq!(found[0].license, "Apache-2.0");
        Ok(())
    }

    #[test]
    fn the_workspace_has_the_mock_and_edge_providers() -> Result<()> {
        let found = providers(&cargo_metadata()?)?;
        for name in ["mock", "edge"] {
            let provider = found.iter().find(|p| p.name == name);
            let provider = provider.with_context(|| format!("no provider {name}"))?;
            assert_eq!(provider.binary, format!("vk-{name}"));
            assert!(!provider.description.is_empty(), "{name} has a description");
            assert!(!provider.version.is_empty());
        }
        Ok(())
    }

    #[test]
    fn an_arm64_image_is_an_arm64_v8_image_with_its_own_tag() {
        let source = SourceInfo {
            revision: None,
            created_epoch: 0,
        };
        let spec = image_spec(
            &edge(),
            b"bin".to_vec(),
            b"ca".to_vec(),
            &source,
            Linkage::Musl(Arch::Arm64),
        );
        assert_eq!(spec.repo_tag, "vk-rs/vk-edge:0.1.0-arm64");
        assert_eq!(spec.tag, "0.1.0-arm64");
        assert_eq!(spec.architecture, "arm64");
        assert_eq!(spec.variant.as_deref(), Some("v8"));
        assert_eq!(spec.entrypoint, vec!["/vk-edge"]);
        assert!(spec.created_by.contains("aarch64-unknown-linux-musl"));
        let amd64 = image_spec(
            &edge(),
            b"bin".to_vec(),
            b"ca".to_vec(),
            &source,
            Linkage::Musl(Arch::Amd64),
        );
        assert_eq!(amd64.repo_tag, "vk-rs/vk-edge:0.1.0");
        assert_eq!(amd64.architecture, "amd64");
        assert_eq!(amd64.variant, None);
        assert_eq!(Linkage::GlibcStatic.arch(), Arch::Amd64);
        assert_eq!(Arch::Amd64.suffix(), "");
        assert_eq!(Arch::Arm64.suffix(), "-arm64");
    }

    #[test]
    fn the_image_runs_the_binary_as_nonroot_with_labels() {
        let source = SourceInfo {
            revision: Some("abc123".into()),
            created_epoch: 0,
        };
        let spec = image_spec(
            &provider(),
            b"bin".to_vec(),
            b"ca".to_vec(),
            &source,
            Linkage::Musl(Arch::Amd64),
        );
        assert_eq!(spec.repo_tag, "vk-rs/vk-mock:0.1.0");
        assert_eq!(spec.entrypoint, vec!["/vk-mock"]);
        assert_eq!(spec.user, "65532:65532");
        assert_eq!(spec.labels["org.opencontainers.image.revision"], "abc123");
        assert_eq!(
            spec.labels["org.opencontainers.image.created"],
            "1970-01-01T00:00:00Z"
        );
        for key in ["title", "description", "version", "source", "licenses"] {
            assert!(
                spec.labels
                    .contains_key(&format!("org.opencontainers.image.{key}"))
            );
        }
        let binary = spec.entries.iter().find(|e| e.path == "/vk-mock");
        assert_eq!(binary.map(|e| e.mode), Some(0o755));
        let passwd = spec.entries.iter().find(|e| e.path == "/etc/passwd");
        let passwd = passwd.and_then(|e| e.contents.clone()).unwrap_or_default();
        assert!(String::from_utf8_lossy(&passwd).contains("nonroot:x:65532:65532:"));
        assert!(spec.entries.iter().any(|e| e.path == CA_BUNDLE));
    }

    #[test]
    fn workspace_package_fields_are_read() {
        assert_eq!(
            workspace_package_field("license").as_deref(),
            Some("Apache-2.0")
        );
        assert!(workspace_package_field("repository").is_some_and(|r| r.starts_with("https://")));
        assert_eq!(workspace_package_field("no-such-field"), None);
    }

    #[test]
    fn this_test_binary_is_dynamic_and_garbage_is_rejected() -> Result<()> {
        let me = fs::read(std::env::current_exe()?)?;
        // Test binaries of the host target are dynamically linked.
        assert!(elf_interpreter(&me)?.is_some_and(|i| i.contains("ld-linux")));
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
        #[cfg(target_arch = "x86_64")]
        assert_eq!(elf_machine(&me)?, Arch::Amd64.elf_machine());
        assert!(elf_machine(b"#!/bin/sh\n").is_err());
        Ok(())
    }
}
