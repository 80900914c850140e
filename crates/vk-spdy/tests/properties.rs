//! Property tests of the codec: hostile input never panics and costs bounded
//! memory; whatever is encoded decodes to the same thing.

// Helpers shared by the tests panic on failure, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use vk_spdy::frame::{DecoderLimits, MAX_PAYLOAD_LEN};
use vk_spdy::{
    Frame, FrameDecoder, GoAwayStatus, HeaderCompressor, HeaderDecompressor, Headers, RstStatus,
    Setting,
};

const LIMITS: DecoderLimits = DecoderLimits {
    max_frame_len: 2048,
    max_header_block_len: 4096,
    max_headers: 32,
};

/// Decodes `input` delivered in pieces cut at `cuts`, checking after every
/// step that nothing outgrew the limits. Returns the frames decoded before
/// the first error, if any.
fn feed(decoder: &mut FrameDecoder, input: &[u8], cuts: &[usize]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut buf = BytesMut::new();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts {
        pieces.push(&input[start..cut.max(start)]);
        start = cut.max(start);
    }
    pieces.push(&input[start..]);
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    check_bounded(&frame);
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(_) => return frames,
            }
        }
        // Room is reserved for at most one frame of the allowed size
        // (BytesMut may round up to double what it needs).
        let bound = 2 * (input.len() + 8 + LIMITS.max_frame_len) + 64;
        assert!(
            buf.capacity() <= bound,
            "buffer grew to {} (bound {bound})",
            buf.capacity()
        );
    }
    frames
}

fn check_bounded(frame: &Frame) {
    let headers = match frame {
        Frame::Data { data, .. } => {
            assert!(data.len() <= LIMITS.max_frame_len);
            return;
        }
        Frame::Unknown { payload, .. } => {
            assert!(payload.len() <= LIMITS.max_frame_len);
            return;
        }
        Frame::Settings { entries, .. } => {
            assert!(entries.len() * 8 <= LIMITS.max_frame_len);
            return;
        }
        Frame::SynStream { headers, .. }
        | Frame::SynReply { headers, .. }
        | Frame::Headers { headers, .. } => headers,
        _ => return,
    };
    let values: usize = headers.iter().map(|(_, v)| v.len()).sum();
    assert!(values <= LIMITS.max_headers);
    let mut raw = Vec::new();
    headers.encode(&mut raw).unwrap();
    // Names are lowercased and values re-joined, so only the replacement of
    // invalid UTF-8 (one byte becomes three) can make the block grow.
    assert!(raw.len() <= 3 * LIMITS.max_header_block_len);
}

/// A frame with a plausible header (version 3, a real type, the right
/// length) around an arbitrary payload, to reach the per-type parsers.
fn framed(control: bool, frame_type: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    if control {
        out.extend_from_slice(&[0x80, 0x03]);
        out.extend_from_slice(&frame_type.to_be_bytes());
    } else {
        out.extend_from_slice(&u32::from(frame_type).to_be_bytes());
    }
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

fn compressed_block(compressor: &mut HeaderCompressor, raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    compressor.compress_block(raw, &mut out).unwrap();
    out
}

fn arb_headers() -> impl Strategy<Value = Headers> {
    vec(("[a-z0-9-]{1,12}", vec("[ -~]{0,24}", 1..3)), 0..6).prop_map(|entries| {
        let mut headers = Headers::new();
        for (name, values) in entries {
            for value in values {
                headers.append(name.clone(), value);
            }
        }
        headers
    })
}

fn stream_id() -> impl Strategy<Value = u32> {
    0u32..=0x7fff_ffff
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            stream_id(),
            stream_id(),
            0u8..8,
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
            arb_headers()
        )
            .prop_map(
                |(stream_id, associated_to, priority, slot, fin, unidirectional, headers)| {
                    Frame::SynStream {
                        stream_id,
                        associated_to,
                        priority,
                        slot,
                        fin,
                        unidirectional,
                        headers,
                    }
                }
            ),
        (stream_id(), any::<bool>(), arb_headers()).prop_map(|(stream_id, fin, headers)| {
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
        }),
        (stream_id(), any::<bool>(), arb_headers()).prop_map(|(stream_id, fin, headers)| {
            Frame::Headers {
                stream_id,
                fin,
                headers,
            }
        }),
        (stream_id(), any::<u32>()).prop_map(|(stream_id, code)| Frame::RstStream {
            stream_id,
            status: RstStatus::from_code(code),
        }),
        (
            any::<bool>(),
            vec((any::<u8>(), 0u32..=0xff_ffff, any::<u32>()), 0..8)
        )
            .prop_map(|(clear, entries)| Frame::Settings {
                clear,
                entries: entries
                    .into_iter()
                    .map(|(flags, id, value)| Setting { flags, id, value })
                    .collect(),
            }),
        any::<u32>().prop_map(|id| Frame::Ping { id }),
        (stream_id(), any::<u32>()).prop_map(|(last_good_stream_id, code)| Frame::GoAway {
            last_good_stream_id,
            status: GoAwayStatus::from_code(code),
        }),
        (stream_id(), 0u32..=0x7fff_ffff)
            .prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
        (stream_id(), any::<bool>(), vec(any::<u8>(), 0..1024)).prop_map(
            |(stream_id, fin, data)| {
                Frame::Data {
                    stream_id,
                    fin,
                    data: Bytes::from(data),
                }
            }
        ),
        (
            prop_oneof![Just(5u16), 10u16..=u16::MAX],
            any::<u8>(),
            vec(any::<u8>(), 0..256)
        )
            .prop_map(|(frame_type, flags, payload)| Frame::Unknown {
                frame_type,
                flags,
                payload: Bytes::from(payload),
            }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(input in vec(any::<u8>(), 0..4096), cuts in vec(any::<usize>(), 0..8)) {
        let mut decoder = FrameDecoder::new(LIMITS);
        feed(&mut decoder, &input, &cuts);
    }

    /// Plausible frame headers around arbitrary payloads, so that every
    /// per-type parser (and the zlib layer) sees hostile bytes.
    #[test]
    fn hostile_payloads_never_panic(
        frames in vec((any::<bool>(), 0u16..12, any::<u8>(), vec(any::<u8>(), 0..600)), 1..8),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let mut input = Vec::new();
        for (control, frame_type, flags, payload) in &frames {
            input.extend(framed(*control, *frame_type, *flags, payload));
        }
        let mut decoder = FrameDecoder::new(LIMITS);
        feed(&mut decoder, &input, &cuts);
    }

    /// Well-compressed but arbitrary header blocks inside SYN_STREAMs reach
    /// the name/value parser with a live decompression context.
    #[test]
    fn arbitrary_header_blocks_inside_frames_never_panic(blocks in vec(vec(any::<u8>(), 0..3000), 1..5)) {
        let mut compressor = HeaderCompressor::new();
        let mut input = Vec::new();
        for (i, raw) in blocks.iter().enumerate() {
            let mut payload = vec![0, 0, 0, (2 * i + 1) as u8, 0, 0, 0, 0, 0, 0];
            payload.extend(compressed_block(&mut compressor, raw));
            input.extend(framed(true, 1, 0, &payload));
        }
        let mut decoder = FrameDecoder::new(LIMITS);
        feed(&mut decoder, &input, &[]);
    }

    #[test]
    fn header_block_decoder_is_total_and_idempotent(raw in vec(any::<u8>(), 0..2048)) {
        if let Ok(headers) = Headers::decode(&raw, 64) {
            let values: usize = headers.iter().map(|(_, v)| v.len()).sum();
            prop_assert!(values <= 64);
            let mut again = Vec::new();
            headers.encode(&mut again).unwrap();
            prop_assert_eq!(Headers::decode(&again, 64).unwrap(), headers);
        }
    }

    /// Near-valid blocks: a correct count and lengths with arbitrary content.
    #[test]
    fn structured_header_blocks_decode(entries in vec((vec(any::<u8>(), 0..20), vec(any::<u8>(), 0..40)), 0..10)) {
        let mut raw = (entries.len() as u32).to_be_bytes().to_vec();
        for (name, value) in &entries {
            raw.extend((name.len() as u32).to_be_bytes());
            raw.extend(name);
            raw.extend((value.len() as u32).to_be_bytes());
            raw.extend(value);
        }
        match Headers::decode(&raw, 1000) {
            Ok(headers) => {
                // Every value (after NUL splitting) survives.
                let expected: usize = entries.iter().map(|(_, v)| 1 + v.iter().filter(|&&b| b == 0).count()).sum();
                let got: usize = headers.iter().map(|(_, v)| v.len()).sum();
                prop_assert_eq!(got, expected);
            }
            Err(e) => prop_assert!(false, "well-formed block rejected: {e}"),
        }
    }

    #[test]
    fn decompressor_output_is_bounded(
        prefix in vec(any::<u8>(), 0..64),
        junk in vec(any::<u8>(), 0..2048),
        limit in 0usize..2048,
    ) {
        let mut compressor = HeaderCompressor::new();
        let mut decompressor = HeaderDecompressor::new();
        // A valid first block puts the inflater in a realistic state.
        let first = compressed_block(&mut compressor, &prefix);
        match decompressor.decompress_block(&first, limit) {
            Ok(out) => prop_assert_eq!(out, prefix),
            Err(_) => prop_assert!(prefix.len() > limit),
        }
        if let Ok(out) = decompressor.decompress_block(&junk, limit) {
            prop_assert!(out.len() <= limit);
        }
    }

    #[test]
    fn frames_round_trip(frames in vec(arb_frame(), 1..12), cuts in vec(any::<usize>(), 0..8)) {
        let mut compressor = HeaderCompressor::new();
        let mut wire = BytesMut::new();
        for frame in &frames {
            frame.encode(&mut compressor, &mut wire).unwrap();
        }
        let mut decoder = FrameDecoder::new(DecoderLimits {
            max_frame_len: MAX_PAYLOAD_LEN,
            ..DecoderLimits::default()
        });
        let mut decoded = Vec::new();
        let mut buf = BytesMut::new();
        let mut start = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(wire.len());
        for cut in cuts {
            buf.extend_from_slice(&wire[start..cut.max(start)]);
            start = cut.max(start);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                decoded.push(frame);
            }
        }
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn header_blocks_round_trip(headers in arb_headers()) {
        let mut raw = Vec::new();
        headers.encode(&mut raw).unwrap();
        prop_assert_eq!(Headers::decode(&raw, 1000).unwrap(), headers);
    }
}
