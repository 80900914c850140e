//! Feeds arbitrary bytes to the frame decoder, split into pieces at points
//! the input chooses, and checks that nothing panics and that neither the
//! decoded frames nor the input buffer outgrow the limits.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use vk_spdy::frame::DecoderLimits;
use vk_spdy::{Frame, FrameDecoder};

const LIMITS: DecoderLimits = DecoderLimits {
    max_frame_len: 64 * 1024,
    max_header_block_len: 64 * 1024,
    max_headers: 100,
};

fuzz_target!(|input: &[u8]| {
    // The first byte picks the piece size, so incremental decoding is
    // exercised as well as whole-buffer decoding.
    let Some((&piece, data)) = input.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut decoder = FrameDecoder::new(LIMITS);
    let mut buf = BytesMut::new();
    for chunk in data.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => check(&frame),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.capacity() <= 2 * (data.len() + 8 + LIMITS.max_frame_len) + 64);
    }
});

fn check(frame: &Frame) {
    match frame {
        Frame::Data { data, .. } => assert!(data.len() <= LIMITS.max_frame_len),
        Frame::Unknown { payload, .. } => assert!(payload.len() <= LIMITS.max_frame_len),
        Frame::SynStream { headers, .. }
        | Frame::SynReply { headers, .. }
        | Frame::Headers { headers, .. } => {
            let values: usize = headers.iter().map(|(_, v)| v.len()).sum();
            assert!(values <= LIMITS.max_headers);
        }
        _ => {}
    }
}
