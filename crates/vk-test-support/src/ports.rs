//! Free loopback ports for the processes a test starts (metrics, kubelet
//! API, the test registry).

use std::net::TcpListener;

use anyhow::{Context, Result};

/// A port on 127.0.0.1 that was free a moment ago (the OS's choice; another
/// process could take it before the caller binds it, which the OS makes
/// unlikely by not handing it out again soon).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("the local address of a bound listener")?
        .port())
}
