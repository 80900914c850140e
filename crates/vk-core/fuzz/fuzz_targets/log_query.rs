//! Fuzzes the kubelet log query parser (`/containerLogs?...`): it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        let _ = vk_core::api::logs::parse_log_query(query);
    }
});
