//! zlib header compression with the fixed SPDY/3 dictionary.
//!
//! SPDY/3 compresses every name/value header block (SYN_STREAM, SYN_REPLY,
//! HEADERS) with zlib, primed with a dictionary fixed by the protocol. There is
//! one compression context per direction for the whole connection: each block
//! continues the previous one's zlib stream and ends with a SYNC_FLUSH so the
//! peer can decode it without waiting for more. Losing one block therefore
//! desynchronises the rest of the connection, which is why every error here is
//! connection-fatal.
//!
//! This module owns the dictionary bytes and the two stateful halves
//! ([`HeaderCompressor`], [`HeaderDecompressor`]); it knows nothing about frames.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::{Result, SpdyError};

/// The length-prefixed words at the start of the SPDY/3 dictionary
/// (draft 3, section 2.6.10.1), each written as a 32-bit big-endian length
/// followed by the word.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The unprefixed text that ends the SPDY/3 dictionary.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec ",
    "00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

const fn dictionary_len() -> usize {
    let mut len = DICTIONARY_TAIL.len();
    let mut i = 0;
    while i < DICTIONARY_WORDS.len() {
        len += 4 + DICTIONARY_WORDS[i].len();
        i += 1;
    }
    len
}

const fn build_dictionary() -> [u8; DICTIONARY_LEN] {
    let mut out = [0u8; DICTIONARY_LEN];
    let mut pos = 0;
    let mut i = 0;
    while i < DICTIONARY_WORDS.len() {
        let word = DICTIONARY_WORDS[i].as_bytes();
        let len = (word.len() as u32).to_be_bytes();
        let mut k = 0;
        while k < 4 {
            out[pos] = len[k];
            pos += 1;
            k += 1;
        }
        let mut j = 0;
        while j < word.len() {
            out[pos] = word[j];
            pos += 1;
            j += 1;
        }
        i += 1;
    }
    let tail = DICTIONARY_TAIL.as_bytes();
    let mut j = 0;
    while j < tail.len() {
        out[pos] = tail[j];
        pos += 1;
        j += 1;
    }
    out
}

/// Length in bytes of [`SPDY3_DICTIONARY`].
pub const DICTIONARY_LEN: usize = dictionary_len();

/// The zlib preset dictionary every SPDY/3 header block is compressed with.
pub static SPDY3_DICTIONARY: [u8; DICTIONARY_LEN] = build_dictionary();

/// Compresses outgoing header blocks: one per connection, used in the order
/// frames are written (the writer task owns it).
pub struct HeaderCompressor {
    inner: Compress,
    dictionary_set: bool,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for HeaderCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderCompressor")
            .field("total_in", &self.inner.total_in())
            .field("total_out", &self.inner.total_out())
            .finish()
    }
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCompressor {
    /// A fresh compression context (the start of a connection).
    pub fn new() -> Self {
        // Header blocks are small; the default level costs little and the
        // peer accepts any level.
        Self {
            inner: Compress::new(Compression::default(), true),
            dictionary_set: false,
            scratch: Vec::new(),
        }
    }

    /// Compresses one raw name/value block and appends it, ending in a
    /// SYNC_FLUSH, to `out`.
    pub fn compress_block(&mut self, raw: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if !self.dictionary_set {
            // zlib takes the dictionary after init and before the first byte.
            self.inner
                .set_dictionary(&SPDY3_DICTIONARY)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            self.dictionary_set = true;
        }
        self.scratch.clear();
        let start_in = self.inner.total_in();
        loop {
            if self.scratch.capacity() - self.scratch.len() < 64 {
                self.scratch.reserve(raw.len() / 2 + 128);
            }
            let consumed = usize::try_from(self.inner.total_in() - start_in)
                .map_err(|_| SpdyError::Compression("input counter overflow".into()))?;
            let input = raw.get(consumed..).unwrap_or_default();
            self.inner
                .compress_vec(input, &mut self.scratch, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let consumed = usize::try_from(self.inner.total_in() - start_in)
                .map_err(|_| SpdyError::Compression("input counter overflow".into()))?;
            // Done once all input is in and zlib did not run out of room: a
            // sync flush that fits in the buffer has been written completely.
            if consumed >= raw.len() && self.scratch.len() < self.scratch.capacity() {
                break;
            }
        }
        out.extend_from_slice(&self.scratch);
        Ok(())
    }
}

/// Decompresses incoming header blocks: one per connection, fed every block
/// the peer sends, in order, even for streams that end up refused.
pub struct HeaderDecompressor {
    inner: Decompress,
    finished: bool,
}

impl std::fmt::Debug for HeaderDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecompressor")
            .field("total_in", &self.inner.total_in())
            .field("total_out", &self.inner.total_out())
            .finish()
    }
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    /// A fresh decompression context (the start of a connection).
    pub fn new() -> Self {
        Self {
            inner: Decompress::new(true),
            finished: false,
        }
    }

    /// Decompresses one block (the compressed bytes of one frame) and returns
    /// the raw name/value block. Fails rather than produce more than `limit`
    /// bytes, so a compression bomb costs at most `limit` bytes of memory.
    pub fn decompress_block(&mut self, input: &[u8], limit: usize) -> Result<Vec<u8>> {
        if self.finished {
            return Err(SpdyError::Compression(
                "header block after the end of the zlib stream".into(),
            ));
        }
        // A first guess at the size; never above one byte past the limit
        // (which may well be below the guess's floor).
        let guess = input
            .len()
            .saturating_mul(4)
            .max(64)
            .min(limit.saturating_add(1));
        let mut out: Vec<u8> = Vec::with_capacity(guess);
        let mut pos = 0usize;
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(SpdyError::HeaderBlockTooLarge { limit });
                }
                // Grow, but never past one byte more than the limit: producing
                // that byte is enough to know the block is too large.
                let target = out
                    .capacity()
                    .saturating_mul(2)
                    .min(limit.saturating_add(1));
                out.reserve_exact(target.saturating_sub(out.len()).max(1));
            }
            let before_in = self.inner.total_in();
            let before_out = self.inner.total_out();
            let spare_before = out.capacity() - out.len();
            let rest = input.get(pos..).unwrap_or_default();
            let result = self
                .inner
                .decompress_vec(rest, &mut out, FlushDecompress::Sync);
            let consumed = usize::try_from(self.inner.total_in() - before_in)
                .map_err(|_| SpdyError::Compression("input counter overflow".into()))?;
            let produced = self.inner.total_out() - before_out;
            pos = pos.saturating_add(consumed);
            match result {
                Ok(Status::Ok) | Ok(Status::BufError) => {}
                Ok(Status::StreamEnd) => {
                    // The peer ended its zlib stream; nothing can follow.
                    self.finished = true;
                    if pos < input.len() {
                        return Err(SpdyError::Compression(
                            "bytes after the end of the zlib stream".into(),
                        ));
                    }
                }
                Err(e) => match e.needs_dictionary() {
                    Some(_) => {
                        // Whatever the announced id, only the SPDY/3 dictionary
                        // is legal; a mismatch surfaces as corrupt data below.
                        self.inner
                            .set_dictionary(&SPDY3_DICTIONARY)
                            .map_err(|e| SpdyError::Compression(e.to_string()))?;
                        continue;
                    }
                    None => return Err(SpdyError::Compression(e.to_string())),
                },
            }
            if out.len() > limit {
                return Err(SpdyError::HeaderBlockTooLarge { limit });
            }
            let spare_after = out.capacity() - out.len();
            if pos >= input.len() && (spare_after > 0 || self.finished) {
                // All input consumed and zlib had room left: nothing pending.
                return Ok(out);
            }
            if consumed == 0 && produced == 0 && spare_before > 0 {
                return Err(SpdyError::Compression(
                    "zlib made no progress on the header block".into(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_matches_the_spec() {
        // Length and Adler-32 of the dictionary as published with SPDY/3; the
        // Adler-32 is also what a peer's zlib header announces (FDICT id).
        assert_eq!(DICTIONARY_LEN, 1423);
        assert_eq!(adler32(&SPDY3_DICTIONARY), 0xe3c6_a7c2);
        assert_eq!(&SPDY3_DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(SPDY3_DICTIONARY.ends_with(b",*,enq=0."));
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn blocks_share_one_stream_and_round_trip() {
        let mut c = HeaderCompressor::new();
        let mut d = HeaderDecompressor::new();
        // (An empty header set is still a 4-byte block: the count.)
        for block in [
            &b"first block"[..],
            b"\0\0\0\0",
            b"second block, longer than the first one",
        ] {
            let mut compressed = Vec::new();
            c.compress_block(block, &mut compressed).unwrap();
            // Every block ends with the sync-flush marker.
            assert!(compressed.ends_with(&[0, 0, 0xff, 0xff]));
            assert_eq!(d.decompress_block(&compressed, 1024).unwrap(), block);
        }
    }

    #[test]
    fn first_block_announces_the_spdy3_dictionary() {
        let mut c = HeaderCompressor::new();
        let mut compressed = Vec::new();
        c.compress_block(b"abc", &mut compressed).unwrap();
        // zlib header: CMF, FLG with FDICT set, then the dictionary's Adler-32.
        assert_eq!(compressed[1] & 0x20, 0x20);
        assert_eq!(compressed[2..6], [0xe3, 0xc6, 0xa7, 0xc2]);
    }

    #[test]
    fn independent_zlib_reads_our_blocks() {
        // A second, independently configured zlib inflater (not our wrapper)
        // decodes what the compressor writes.
        let mut c = HeaderCompressor::new();
        let mut compressed = Vec::new();
        c.compress_block(b"\0\0\0\x01\0\0\0\x04host\0\0\0\x01x", &mut compressed)
            .unwrap();
        let mut inflater = Decompress::new(true);
        let mut out = Vec::with_capacity(256);
        let err = inflater
            .decompress_vec(&compressed, &mut out, FlushDecompress::Sync)
            .unwrap_err();
        assert_eq!(err.needs_dictionary(), Some(0xe3c6_a7c2));
        let used = inflater.total_in() as usize;
        inflater.set_dictionary(&SPDY3_DICTIONARY).unwrap();
        inflater
            .decompress_vec(&compressed[used..], &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, b"\0\0\0\x01\0\0\0\x04host\0\0\0\x01x");
    }

    #[test]
    fn large_blocks_cross_buffer_boundaries() {
        let raw: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut c = HeaderCompressor::new();
        let mut compressed = Vec::new();
        c.compress_block(&raw, &mut compressed).unwrap();
        let mut d = HeaderDecompressor::new();
        assert_eq!(d.decompress_block(&compressed, raw.len()).unwrap(), raw);
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        let raw = vec![b'a'; 100_000];
        let mut c = HeaderCompressor::new();
        let mut compressed = Vec::new();
        c.compress_block(&raw, &mut compressed).unwrap();
        assert!(compressed.len() < 1000, "a run of one byte compresses well");
        let mut d = HeaderDecompressor::new();
        let err = d.decompress_block(&compressed, 4096).unwrap_err();
        assert!(
            matches!(err, SpdyError::HeaderBlockTooLarge { limit: 4096 }),
            "{err}"
        );
    }

    #[test]
    fn tiny_limits_are_honoured() {
        // Found by fuzzing: a limit below the initial buffer guess.
        let mut c = HeaderCompressor::new();
        let mut compressed = Vec::new();
        c.compress_block(b"0123456789", &mut compressed).unwrap();
        let mut d = HeaderDecompressor::new();
        assert!(matches!(
            d.decompress_block(&compressed, 1),
            Err(SpdyError::HeaderBlockTooLarge { limit: 1 })
        ));
        let mut d = HeaderDecompressor::new();
        assert!(d.decompress_block(&compressed, 0).is_err());
        let mut d = HeaderDecompressor::new();
        assert_eq!(d.decompress_block(&compressed, 10).unwrap(), b"0123456789");
    }

    #[test]
    fn garbage_is_an_error() {
        let mut d = HeaderDecompressor::new();
        assert!(
            d.decompress_block(b"\x12\x34\x56\x78garbage", 1024)
                .is_err()
        );
    }
}
