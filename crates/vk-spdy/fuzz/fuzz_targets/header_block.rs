//! Feeds arbitrary bytes to the name/value header-block parser directly and,
//! compressed, through a live decompression context; checks limits and that
//! whatever parses re-encodes to something that parses the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vk_spdy::{HeaderCompressor, HeaderDecompressor, Headers};

const MAX_HEADERS: usize = 100;
const MAX_BLOCK: usize = 64 * 1024;

fuzz_target!(|raw: &[u8]| {
    // 1. The parser alone.
    if let Ok(headers) = Headers::decode(raw, MAX_HEADERS) {
        let values: usize = headers.iter().map(|(_, v)| v.len()).sum();
        assert!(values <= MAX_HEADERS);
        let mut again = Vec::new();
        headers.encode(&mut again).expect("re-encoding a parsed block");
        assert_eq!(Headers::decode(&again, MAX_HEADERS).ok(), Some(headers));
    }

    // 2. The same bytes as a compressed block after a valid one, which is
    // where a peer's second SYN_STREAM would put them.
    let mut compressor = HeaderCompressor::new();
    let mut decompressor = HeaderDecompressor::new();
    let mut first = Vec::new();
    compressor
        .compress_block(b"\0\0\0\0", &mut first)
        .expect("compressing an empty header set");
    assert_eq!(
        decompressor.decompress_block(&first, MAX_BLOCK).ok().as_deref(),
        Some(&b"\0\0\0\0"[..])
    );
    if let Ok(out) = decompressor.decompress_block(raw, MAX_BLOCK) {
        assert!(out.len() <= MAX_BLOCK);
        let _ = Headers::decode(&out, MAX_HEADERS);
    }

    // 3. Round trip through compression.
    let mut compressor = HeaderCompressor::new();
    let mut decompressor = HeaderDecompressor::new();
    let mut compressed = Vec::new();
    compressor
        .compress_block(raw, &mut compressed)
        .expect("compressing arbitrary bytes");
    if !raw.is_empty() {
        let out = decompressor
            .decompress_block(&compressed, raw.len())
            .expect("decompressing our own block");
        assert_eq!(out, raw);
    }
});
