//! The test rigs as standalone processes, for `cargo xtask bench`:
//!
//! `vk-rig moto SCRIPT [REGION]`: starts moto with the wrapper `SCRIPT` (a
//! provider's `tests/rig/moto_ecs.py`) in the pinned virtual environment
//! (created on first use), prints one JSON line
//! `{"endpoint": URL, "subnet": ID, "securityGroup": ID}` (the region's
//! default network, default region `us-east-1`), then waits for its stdin to
//! close, prints one JSON line of the AWS calls moto answered by API name,
//! and stops moto.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use vk_test_support::MotoServer;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("vk-rig: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some("moto"), Some(script)) = (args.first().map(String::as_str), args.get(1)) else {
        bail!("usage: vk-rig moto SCRIPT [REGION]");
    };
    let region = args.get(2).map_or("us-east-1", String::as_str);
    let moto = MotoServer::start(&PathBuf::from(script))?;
    let (subnet, group) = moto.default_network(region)?;
    let ready = serde_json::json!({
        "endpoint": moto.endpoint(),
        "subnet": subnet,
        "securityGroup": group,
    });
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;
    // Until the caller is done (or gone).
    let mut rest = Vec::new();
    std::io::stdin()
        .read_to_end(&mut rest)
        .context("reading stdin")?;
    let calls = moto.calls()?;
    writeln!(stdout, "{calls}")?;
    Ok(())
}
