//! Frame encoding and decoding through the public codec API: every frame
//! type round-trips, a SYN_STREAM matches the layout the specification gives
//! (checked with an independent zlib inflater), and truncated, malformed or
//! oversized input is an error, never a panic.

// Helpers shared by the tests panic on failure, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Decompress, FlushDecompress};
use vk_spdy::compression::SPDY3_DICTIONARY;
use vk_spdy::frame::{MAX_PAYLOAD_LEN, setting_id};
use vk_spdy::{
    DecoderLimits, Frame, FrameDecoder, GoAwayStatus, HeaderCompressor, Headers, RstStatus,
    Setting, SpdyError,
};

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().copied().collect()
}

fn all_frames() -> Vec<Frame> {
    vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 7,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: headers(&[("streamtype", "error")]),
        },
        Frame::SynStream {
            stream_id: 0x7fff_ffff,
            associated_to: 3,
            priority: 0,
            slot: 9,
            fin: true,
            unidirectional: true,
            headers: headers(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
        },
        Frame::SynReply {
            stream_id: 5,
            fin: false,
            headers: Headers::new(),
        },
        Frame::SynReply {
            stream_id: 7,
            fin: true,
            headers: headers(&[("a", "b")]),
        },
        Frame::RstStream {
            stream_id: 9,
            status: RstStatus::Cancel,
        },
        Frame::RstStream {
            stream_id: 9,
            status: RstStatus::Other(77),
        },
        Frame::Settings {
            clear: true,
            entries: vec![
                Setting {
                    flags: 1,
                    id: setting_id::INITIAL_WINDOW_SIZE,
                    value: 1 << 20,
                },
                Setting {
                    flags: 0,
                    id: setting_id::MAX_CONCURRENT_STREAMS,
                    value: 100,
                },
            ],
        },
        Frame::Settings {
            clear: false,
            entries: vec![],
        },
        Frame::Ping { id: 1 },
        Frame::GoAway {
            last_good_stream_id: 11,
            status: GoAwayStatus::Ok,
        },
        Frame::GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::ProtocolError,
        },
        Frame::Headers {
            stream_id: 3,
            fin: true,
            headers: headers(&[("x", "y")]),
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 0x7fff_ffff,
        },
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: 3,
            fin: true,
            data: Bytes::new(),
        },
        Frame::Unknown {
            frame_type: 10,
            flags: 3,
            payload: Bytes::from_static(b"credential"),
        },
    ]
}

#[test]
fn every_frame_type_round_trips_on_one_connection() {
    let mut compressor = HeaderCompressor::new();
    let mut decoder = FrameDecoder::default();
    let mut wire = BytesMut::new();
    let frames = all_frames();
    for frame in &frames {
        frame.encode(&mut compressor, &mut wire).unwrap();
    }
    let mut decoded = Vec::new();
    while let Some(frame) = decoder.decode(&mut wire).unwrap() {
        decoded.push(frame);
    }
    assert!(wire.is_empty());
    assert_eq!(decoded, frames);
}

#[test]
fn byte_at_a_time_input_decodes_the_same() {
    let mut compressor = HeaderCompressor::new();
    let mut wire = BytesMut::new();
    let frames = all_frames();
    for frame in &frames {
        frame.encode(&mut compressor, &mut wire).unwrap();
    }
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for byte in wire {
        buf.put_u8(byte);
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            decoded.push(frame);
        }
    }
    assert_eq!(decoded, frames);
}

/// The SYN_STREAM of an exec error stream, built from the specification
/// by hand: header fields, then a name/value block whose compressed form
/// an independent zlib inflater (primed with the dictionary) must read.
#[test]
fn syn_stream_bytes_follow_the_spec() {
    let mut compressor = HeaderCompressor::new();
    let mut wire = BytesMut::new();
    Frame::SynStream {
        stream_id: 1,
        associated_to: 0,
        priority: 0,
        slot: 0,
        fin: false,
        unidirectional: false,
        headers: headers(&[("streamType", "error")]),
    }
    .encode(&mut compressor, &mut wire)
    .unwrap();

    // Control bit + version 3, type 1, flags 0.
    assert_eq!(wire[..5], [0x80, 0x03, 0x00, 0x01, 0x00]);
    let len = (usize::from(wire[5]) << 16) | (usize::from(wire[6]) << 8) | usize::from(wire[7]);
    assert_eq!(len, wire.len() - 8);
    // Stream id 1, associated 0, priority 0, slot 0.
    assert_eq!(wire[8..18], [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);

    let mut inflater = Decompress::new(true);
    let mut raw = Vec::with_capacity(1024);
    let compressed = &wire[18..];
    let err = inflater
        .decompress_vec(compressed, &mut raw, FlushDecompress::Sync)
        .unwrap_err();
    assert_eq!(err.needs_dictionary(), Some(0xe3c6_a7c2));
    let used = inflater.total_in() as usize;
    inflater.set_dictionary(&SPDY3_DICTIONARY).unwrap();
    inflater
        .decompress_vec(&compressed[used..], &mut raw, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(inflater.total_in() as usize, compressed.len());
    let expected: &[u8] = b"\x00\x00\x00\x01\x00\x00\x00\x0astreamtype\x00\x00\x00\x05error";
    assert_eq!(raw, expected);

    // And our decoder reads the same bytes back.
    let frame = FrameDecoder::default().decode(&mut wire).unwrap().unwrap();
    match frame {
        Frame::SynStream {
            stream_id, headers, ..
        } => {
            assert_eq!(stream_id, 1);
            assert_eq!(headers.get("streamtype"), Some("error"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A hand-assembled frame whose header block is stored uncompressed
/// (zlib "stored" block), as a foreign compressor could legally send it.
#[test]
fn decodes_a_hand_built_syn_stream() {
    let raw: &[u8] = b"\x00\x00\x00\x01\x00\x00\x00\x04port\x00\x00\x00\x048080";
    let mut zlib = vec![0x78, 0xbb]; // CMF/FLG with FDICT (0x78bb % 31 == 0)
    zlib.extend_from_slice(&0xe3c6_a7c2u32.to_be_bytes());
    zlib.push(0x00); // stored block, not final
    zlib.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    zlib.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    zlib.extend_from_slice(raw);
    let mut frame = vec![0x80, 0x03, 0x00, 0x01, 0x01, 0, 0, 0];
    frame.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 0, 0x60, 0]);
    frame.extend_from_slice(&zlib);
    let len = (frame.len() - 8) as u32;
    frame[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
    let mut buf = BytesMut::from(&frame[..]);
    let decoded = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        decoded,
        Frame::SynStream {
            stream_id: 3,
            associated_to: 0,
            priority: 3,
            slot: 0,
            fin: true,
            unidirectional: false,
            headers: headers(&[("port", "8080")]),
        }
    );
}

#[test]
fn truncated_input_waits_for_more() {
    let mut wire = BytesMut::new();
    Frame::Ping { id: 1 }
        .encode(&mut HeaderCompressor::new(), &mut wire)
        .unwrap();
    let mut decoder = FrameDecoder::default();
    for cut in 0..wire.len() {
        let mut partial = BytesMut::from(&wire[..cut]);
        assert_eq!(decoder.decode(&mut partial).unwrap(), None);
        assert_eq!(partial.len(), cut, "nothing consumed before a whole frame");
    }
}

#[test]
fn oversized_frames_are_rejected_before_buffering() {
    let limits = DecoderLimits {
        max_frame_len: 16,
        ..DecoderLimits::default()
    };
    let mut decoder = FrameDecoder::new(limits);
    // A data frame announcing 1 MiB.
    let mut buf = BytesMut::from(&[0, 0, 0, 1, 0, 0x10, 0, 0][..]);
    let err = decoder.decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            SpdyError::FrameTooLarge {
                len: 0x10_0000,
                limit: 16
            }
        ),
        "{err}"
    );
    assert!(
        buf.capacity() < 1024,
        "no room reserved for the oversized frame"
    );
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(SpdyError::DecoderFailed)
    ));
}

#[test]
fn malformed_control_frames_are_errors() {
    let cases: &[&[u8]] = &[
        // Version 2.
        &[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1],
        // PING with 3 bytes.
        &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 3, 0, 0, 1],
        // RST_STREAM with 4 bytes.
        &[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 4, 0, 0, 0, 1],
        // SETTINGS claiming 2 entries with room for 1.
        &[
            0x80, 0x03, 0x00, 0x04, 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 1,
        ],
        // SYN_STREAM too short.
        &[0x80, 0x03, 0x00, 0x01, 0, 0, 0, 4, 0, 0, 0, 1],
        // SYN_STREAM with garbage instead of zlib.
        &[
            0x80, 0x03, 0x00, 0x01, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
        ],
        // SYN_REPLY with an empty header block.
        &[0x80, 0x03, 0x00, 0x02, 0, 0, 0, 4, 0, 0, 0, 1],
        // WINDOW_UPDATE with 4 bytes.
        &[0x80, 0x03, 0x00, 0x09, 0, 0, 0, 4, 0, 0, 0, 1],
        // GOAWAY with 4 bytes (SPDY/2 layout).
        &[0x80, 0x03, 0x00, 0x07, 0, 0, 0, 4, 0, 0, 0, 1],
    ];
    for case in cases {
        let mut buf = BytesMut::from(*case);
        assert!(
            FrameDecoder::default().decode(&mut buf).is_err(),
            "{case:02x?} should fail"
        );
    }
}

#[test]
fn header_bomb_is_rejected() {
    let mut big = Headers::new();
    big.insert("x", "a".repeat(100_000));
    let mut wire = BytesMut::new();
    Frame::Headers {
        stream_id: 1,
        fin: false,
        headers: big,
    }
    .encode(&mut HeaderCompressor::new(), &mut wire)
    .unwrap();
    assert!(wire.len() < 2000);
    let mut decoder = FrameDecoder::new(DecoderLimits {
        max_header_block_len: 10_000,
        ..DecoderLimits::default()
    });
    assert!(matches!(
        decoder.decode(&mut wire),
        Err(SpdyError::HeaderBlockTooLarge { limit: 10_000 })
    ));
}

#[test]
fn encoding_refuses_payloads_over_24_bits() {
    let frame = Frame::Data {
        stream_id: 1,
        fin: false,
        data: Bytes::from(vec![0; MAX_PAYLOAD_LEN + 1]),
    };
    assert!(
        frame
            .encode(&mut HeaderCompressor::new(), &mut BytesMut::new())
            .is_err()
    );
}
