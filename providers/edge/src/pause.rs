//! The infra ("pause") image every pod's network namespace lives in, built by
//! the provider itself and loaded into the engine when missing: no registry is
//! ever asked for it, so a device without internet access runs pods too.
//!
//! The image holds one file, `/pause`: a static ELF executable of a few dozen
//! bytes, written here instruction by instruction, that sleeps forever in the
//! `pause` system call (`ppoll` on arm64, which has no `pause`). It installs no
//! signal handlers, so as PID 1 of its namespace it ignores SIGTERM: the
//! provider stops infra containers with SIGKILL, which loses nothing.

use std::io::Write;

use sha2::{Digest, Sha256};

/// The reference the image is loaded under. Fully qualified so that no engine
/// tries to resolve it against a registry.
pub const PAUSE_IMAGE: &str = "localhost/vk-rs/pause:1.0";

/// A CPU architecture an engine reports (`GET /version`: `Arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86-64 (`amd64`).
    Amd64,
    /// AArch64 (`arm64`).
    Arm64,
}

impl Arch {
    /// Parses the engine's architecture name (`amd64`, `x86_64`, `arm64`, `aarch64`).
    pub fn from_engine(name: &str) -> Option<Arch> {
        match name {
            "amd64" | "x86_64" => Some(Arch::Amd64),
            "arm64" | "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    /// The OCI name of the architecture.
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// `e_machine` of the ELF header.
    fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => 62,
            Arch::Arm64 => 183,
        }
    }

    /// The whole program: an endless loop around one blocking system call.
    fn code(self) -> Vec<u8> {
        match self {
            // loop: mov eax, 34 (pause); syscall; jmp loop
            Arch::Amd64 => vec![0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7],
            // loop: mov x0..x3, #0; mov x8, #73 (ppoll); svc #0; b loop
            Arch::Arm64 => [
                0xd280_0000u32,
                0xd280_0001,
                0xd280_0002,
                0xd280_0003,
                0xd280_0928,
                0xd400_0001,
                0x17ff_fffa,
            ]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect(),
        }
    }
}

const LOAD_ADDRESS: u64 = 0x40_0000;
const ELF_HEADER_LEN: u64 = 64;
const PROGRAM_HEADER_LEN: u64 = 56;

/// The `/pause` executable for `arch`: an ELF64 header, one loadable segment
/// (read + execute) that maps the whole file, and the code right after.
pub fn pause_binary(arch: Arch) -> Vec<u8> {
    let code = arch.code();
    let code_offset = ELF_HEADER_LEN + PROGRAM_HEADER_LEN;
    let total = code_offset + code.len() as u64;
    let mut b = Vec::with_capacity(total as usize);
    // e_ident: magic, 64-bit, little endian, version 1, System V ABI.
    b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&2u16.to_le_bytes()); // e_type: executable
    b.extend_from_slice(&arch.elf_machine().to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // e_version
    b.extend_from_slice(&(LOAD_ADDRESS + code_offset).to_le_bytes()); // e_entry
    b.extend_from_slice(&ELF_HEADER_LEN.to_le_bytes()); // e_phoff
    b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    b.extend_from_slice(&(ELF_HEADER_LEN as u16).to_le_bytes()); // e_ehsize
    b.extend_from_slice(&(PROGRAM_HEADER_LEN as u16).to_le_bytes()); // e_phentsize
    b.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shentsize
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    // Program header: PT_LOAD, R+X, the whole file at LOAD_ADDRESS.
    b.extend_from_slice(&1u32.to_le_bytes()); // p_type
    b.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R | X
    b.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    b.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_vaddr
    b.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_paddr
    b.extend_from_slice(&total.to_le_bytes()); // p_filesz
    b.extend_from_slice(&total.to_le_bytes()); // p_memsz
    b.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    b.extend_from_slice(&code);
    b
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The image as a `docker-archive` tarball (what `POST /images/load` takes on
/// Docker and Podman alike): `manifest.json`, the config and one layer.
pub fn image_archive(arch: Arch) -> std::io::Result<Vec<u8>> {
    let layer = {
        let mut t = tar::Builder::new(Vec::new());
        let binary = pause_binary(arch);
        let mut h = tar::Header::new_gnu();
        h.set_size(binary.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, "pause", binary.as_slice())?;
        t.into_inner()?
    };
    let layer_digest = sha256_hex(&layer);
    let config = serde_json::json!({
        "architecture": arch.oci_name(),
        "os": "linux",
        "config": { "Entrypoint": ["/pause"], "Labels": { "io.vk-rs.role": "infra" } },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{ "created_by": "vk-edge (built in)" }],
    });
    let config_bytes = serde_json::to_vec(&config)?;
    let config_name = format!("{}.json", sha256_hex(&config_bytes));
    let layer_name = format!("{layer_digest}/layer.tar");
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [PAUSE_IMAGE],
        "Layers": [layer_name],
    }]))?;
    let mut out = tar::Builder::new(Vec::new());
    for (name, bytes) in [
        (config_name.as_str(), config_bytes.as_slice()),
        (layer_name.as_str(), layer.as_slice()),
        ("manifest.json", manifest.as_slice()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        out.append_data(&mut h, name, bytes)?;
    }
    let mut bytes = out.into_inner()?;
    bytes.flush()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_binary_is_a_valid_elf_with_its_entry_in_the_loaded_segment() {
        for arch in [Arch::Amd64, Arch::Arm64] {
            let b = pause_binary(arch);
            assert_eq!(&b[..4], b"\x7fELF");
            let entry = u64::from_le_bytes(b[24..32].try_into().unwrap());
            let filesz = u64::from_le_bytes(b[64 + 32..64 + 40].try_into().unwrap());
            assert_eq!(filesz, b.len() as u64);
            assert!(entry >= LOAD_ADDRESS && entry < LOAD_ADDRESS + filesz);
            assert_eq!(
                u16::from_le_bytes([b[18], b[19]]),
                arch.elf_machine(),
                "{arch:?}"
            );
        }
    }

    #[test]
    fn the_amd64_loop_jumps_back_to_its_start() {
        let code = Arch::Amd64.code();
        // jmp rel8 at the end: target = end + rel8 = 0.
        let rel = code[code.len() - 1] as i8 as i64;
        assert_eq!(code.len() as i64 + rel, 0);
    }

    #[test]
    fn the_archive_names_the_image_and_its_layer() {
        let bytes = image_archive(Arch::Amd64).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut names = Vec::new();
        let mut manifest = None;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().to_string();
            if name == "manifest.json" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
                manifest = Some(serde_json::from_str::<serde_json::Value>(&s).unwrap());
            }
            names.push(name);
        }
        let manifest = manifest.expect("manifest.json");
        assert_eq!(manifest[0]["RepoTags"][0], PAUSE_IMAGE);
        let layer = manifest[0]["Layers"][0].as_str().unwrap();
        assert!(names.iter().any(|n| n == layer));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_amd64_binary_runs_and_keeps_running_until_killed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, pause_binary(Arch::Amd64)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "pause exited on its own"
        );
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
    }

    #[test]
    fn engine_architecture_names() {
        assert_eq!(Arch::from_engine("amd64"), Some(Arch::Amd64));
        assert_eq!(Arch::from_engine("aarch64"), Some(Arch::Arm64));
        assert_eq!(Arch::from_engine("s390x"), None);
    }
}
