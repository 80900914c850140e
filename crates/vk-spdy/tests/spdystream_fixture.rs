//! Decoding bytes written by the real client's framer.
//!
//! `fixtures/spdystream-frames.bin` was produced by the `spdy.Framer` of
//! `github.com/moby/spdystream` v0.5.1 (zlib at best compression, its own
//! copy of the dictionary), writing one frame of each type in this order:
//! SYN_STREAM 1 {streamType: error, port: 8080, requestID: 1}, DATA 1
//! "hello", SYN_REPLY 1 {}, HEADERS 1 {X: [a, b]}, PING 1, SETTINGS
//! {initial window: 1000}, WINDOW_UPDATE 1 +5, RST_STREAM 1 CANCEL, DATA 3
//! FIN, GOAWAY 3 OK.

// Helpers shared by the tests panic on failure, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use vk_spdy::frame::setting_id;
use vk_spdy::{Frame, FrameDecoder, GoAwayStatus, Headers, RstStatus, Setting};

const WIRE: &[u8] = include_bytes!("fixtures/spdystream-frames.bin");

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().copied().collect()
}

#[test]
fn frames_written_by_spdystream_decode() {
    let mut buf = BytesMut::from(WIRE);
    let mut decoder = FrameDecoder::default();
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());

    let Frame::SynStream {
        stream_id,
        associated_to,
        priority,
        fin,
        unidirectional,
        headers: syn_headers,
        ..
    } = &frames[0]
    else {
        panic!("expected SYN_STREAM, got {:?}", frames[0]);
    };
    assert_eq!((*stream_id, *associated_to, *priority), (1, 0, 0));
    assert!(!fin && !unidirectional);
    // Go lowercases names on the wire; its map order is random, so compare
    // by name.
    assert_eq!(syn_headers.len(), 3);
    assert_eq!(syn_headers.get("streamtype"), Some("error"));
    assert_eq!(syn_headers.get("port"), Some("8080"));
    assert_eq!(syn_headers.get("requestid"), Some("1"));

    let rest = &frames[1..];
    let expected = [
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"hello"),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: Headers::new(),
        },
        Frame::Headers {
            stream_id: 1,
            fin: false,
            headers: headers(&[("x", "a"), ("x", "b")]),
        },
        Frame::Ping { id: 1 },
        Frame::Settings {
            clear: false,
            entries: vec![Setting {
                flags: 0,
                id: setting_id::INITIAL_WINDOW_SIZE,
                value: 1000,
            }],
        },
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 5,
        },
        Frame::RstStream {
            stream_id: 1,
            status: RstStatus::Cancel,
        },
        Frame::Data {
            stream_id: 3,
            fin: true,
            data: Bytes::new(),
        },
        Frame::GoAway {
            last_good_stream_id: 3,
            status: GoAwayStatus::Ok,
        },
    ];
    assert_eq!(rest, expected);
}

#[test]
fn spdystream_bytes_decode_one_byte_at_a_time() {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut count = 0;
    for &byte in WIRE {
        buf.extend_from_slice(&[byte]);
        while decoder.decode(&mut buf).unwrap().is_some() {
            count += 1;
        }
    }
    assert_eq!(count, 10);
}
