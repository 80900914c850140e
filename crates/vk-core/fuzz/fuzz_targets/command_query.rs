//! Fuzzes the exec/attach query parser (`/exec?command=..&input=1...`): it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        let _ = vk_core::api::parse_command_query(query);
    }
});
