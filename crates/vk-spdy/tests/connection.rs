//! Behaviour of a served connection, driven over an in-memory pipe by a
//! client built from the crate's own frame codec (playing the part of
//! `spdystream`: it never sends WINDOW_UPDATE unless a test says so).

// Helpers shared by the tests panic on failure, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::timeout;
use vk_spdy::{
    Config, Connection, ConnectionHandle, Frame, FrameDecoder, GoAwayStatus, HeaderCompressor,
    Headers, RstStatus, Stream,
};

const WAIT: Duration = Duration::from_secs(30);

struct ClientWriter {
    io: WriteHalf<DuplexStream>,
    compressor: HeaderCompressor,
}

impl ClientWriter {
    async fn send(&mut self, frame: Frame) {
        let mut buf = BytesMut::new();
        frame.encode(&mut self.compressor, &mut buf).unwrap();
        self.io.write_all(&buf).await.unwrap();
    }

    async fn open(&mut self, stream_id: u32, headers: &[(&str, &str)]) {
        self.send(Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: headers.iter().copied().collect(),
        })
        .await;
    }

    async fn data(&mut self, stream_id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id,
            fin,
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }
}

struct Client {
    writer: ClientWriter,
    frames: mpsc::UnboundedReceiver<Frame>,
    reader: tokio::task::JoinHandle<()>,
}

impl Client {
    fn start(config: Config) -> (Client, ConnectionHandle, mpsc::Receiver<Stream>) {
        // A small pipe, so that backpressure is real.
        let (client_io, server_io) = tokio::io::duplex(16 * 1024);
        let (handle, streams) = Connection::serve(server_io, config);
        let (mut read, write) = tokio::io::split(client_io);
        let (tx, frames) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut decoder = FrameDecoder::default();
            let mut buf = BytesMut::new();
            loop {
                while let Some(frame) = decoder.decode(&mut buf).expect("server sent a bad frame") {
                    if tx.send(frame).is_err() {
                        return;
                    }
                }
                match read.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        let client = Client {
            writer: ClientWriter {
                io: write,
                compressor: HeaderCompressor::new(),
            },
            frames,
            reader,
        };
        (client, handle, streams)
    }

    /// Next frame from the server, skipping the window grants it sends at
    /// the start; `None` once the server closed its side.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            let frame = timeout(WAIT, self.frames.recv())
                .await
                .expect("timed out waiting for a frame")?;
            match frame {
                Frame::Settings { .. } | Frame::WindowUpdate { stream_id: 0, .. } => continue,
                other => return Some(other),
            }
        }
    }

    /// Nothing arrives within a short time.
    async fn expect_silence(&mut self) {
        if let Ok(frame) = timeout(Duration::from_millis(200), self.frames.recv()).await {
            panic!("expected no frame, got {frame:?}");
        }
    }
}

async fn accept(streams: &mut mpsc::Receiver<Stream>) -> Stream {
    timeout(WAIT, streams.recv())
        .await
        .expect("timed out accepting")
        .expect("connection ended")
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn exec_session_echoes_stdin_and_reports_status() {
    let (mut client, handle, mut streams) = Client::start(Config::default());

    let server = tokio::spawn(async move {
        let mut error = None;
        let mut stdin = None;
        let mut stdout = None;
        for _ in 0..3 {
            let stream = accept(&mut streams).await;
            match stream.stream_type() {
                Some("error") => error = Some(stream),
                Some("stdin") => stdin = Some(stream),
                Some("stdout") => stdout = Some(stream),
                other => panic!("unexpected stream type {other:?}"),
            }
        }
        let (mut error, mut stdin, mut stdout) = (error.unwrap(), stdin.unwrap(), stdout.unwrap());
        while let Some(chunk) = stdin.recv().await {
            stdout.send(chunk).await.unwrap();
        }
        stdout.close().await.unwrap();
        error
            .send(Bytes::from_static(br#"{"status":"Success"}"#))
            .await
            .unwrap();
        error.close().await.unwrap();
        handle.close().await;
        handle.closed().await;
    });

    client.writer.open(1, &[("streamType", "error")]).await;
    client.writer.open(3, &[("streamType", "stdin")]).await;
    client.writer.open(5, &[("streamType", "stdout")]).await;
    for id in [1, 3, 5] {
        assert_eq!(
            client.next().await,
            Some(Frame::SynReply {
                stream_id: id,
                fin: false,
                headers: Headers::new(),
            })
        );
    }
    client.writer.data(3, b"hello ", false).await;
    client.writer.data(3, b"world", true).await;

    let mut stdout = Vec::new();
    let mut error = Vec::new();
    let (mut stdout_fin, mut error_fin, mut goaway) = (false, false, false);
    while let Some(frame) = client.next().await {
        match frame {
            Frame::Data {
                stream_id: 5,
                fin,
                data,
            } => {
                assert!(!stdout_fin, "data after FIN");
                stdout.extend_from_slice(&data);
                stdout_fin |= fin;
            }
            Frame::Data {
                stream_id: 1,
                fin,
                data,
            } => {
                assert!(stdout_fin, "status before stdout ended");
                error.extend_from_slice(&data);
                error_fin |= fin;
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                assert!(error_fin, "GOAWAY before the error stream ended");
                assert_eq!((last_good_stream_id, status), (5, GoAwayStatus::Ok));
                goaway = true;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(stdout, b"hello world");
    assert_eq!(error, br#"{"status":"Success"}"#);
    assert!(stdout_fin && error_fin && goaway);
    // The server's side is shut down; dropping ours ends the connection.
    drop(client);
    timeout(WAIT, server).await.unwrap().unwrap();
}

/// 10 MB each way through one stream while the client never grants window:
/// the server must neither block on the 64 KiB window nor deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_each_way_without_window_updates() {
    const SIZE: usize = 10 * 1024 * 1024;
    let (mut client, handle, mut streams) = Client::start(Config {
        grant_large_windows: false,
        ..Config::default()
    });
    let server = tokio::spawn(async move {
        let stream = accept(&mut streams).await;
        let (mut rx, mut tx) = stream.into_split();
        let mut echoed = 0;
        while let Some(chunk) = rx.recv().await {
            echoed += chunk.len();
            tx.send(chunk).await.unwrap();
        }
        tx.close().await.unwrap();
        echoed
    });

    client.writer.open(1, &[("streamType", "data")]).await;
    let upload = pattern(SIZE, 1);
    let sent = upload.clone();
    let mut writer = client.writer;
    let uploader = tokio::spawn(async move {
        for chunk in sent.chunks(32 * 1024) {
            writer.data(1, chunk, false).await;
        }
        writer.data(1, &[], true).await;
        writer
    });

    let mut received = Vec::with_capacity(SIZE);
    let mut fin = false;
    let result = timeout(Duration::from_secs(120), async {
        while let Some(frame) = client.frames.recv().await {
            match frame {
                Frame::SynReply { stream_id: 1, .. } => {}
                Frame::Data {
                    stream_id: 1,
                    fin: f,
                    data,
                } => {
                    received.extend_from_slice(&data);
                    if f {
                        fin = true;
                        break;
                    }
                }
                Frame::WindowUpdate { .. } | Frame::Settings { .. } => {
                    panic!("grant_large_windows is off, yet the server sent {frame:?}")
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "transfer stalled after {} bytes",
        received.len()
    );
    assert!(fin);
    assert_eq!(received.len(), SIZE);
    assert!(received == upload, "echoed bytes differ");
    assert_eq!(server.await.unwrap(), SIZE);
    let _writer = uploader.await.unwrap();
    assert!(!handle.is_closed());
}

/// The server produces 10 MB on one stream while consuming 10 MB on another,
/// independently, like exec with a busy stdin and stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_directions_do_not_block_each_other() {
    const SIZE: usize = 10 * 1024 * 1024;
    let (mut client, _handle, mut streams) = Client::start(Config::default());
    let server = tokio::spawn(async move {
        let mut stdin = accept(&mut streams).await;
        let mut stdout = accept(&mut streams).await;
        assert_eq!(stdin.stream_type(), Some("stdin"));
        let producer = tokio::spawn(async move {
            let data = Bytes::from(pattern(SIZE, 7));
            stdout.send(data).await.unwrap();
            stdout.close().await.unwrap();
        });
        let mut total = 0;
        while let Some(chunk) = stdin.recv().await {
            total += chunk.len();
        }
        producer.await.unwrap();
        total
    });
    client.writer.open(1, &[("streamtype", "stdin")]).await;
    client.writer.open(3, &[("streamtype", "stdout")]).await;
    let mut writer = client.writer;
    let uploader = tokio::spawn(async move {
        let data = pattern(SIZE, 9);
        for chunk in data.chunks(64 * 1024) {
            writer.data(1, chunk, false).await;
        }
        writer.data(1, &[], true).await;
        writer
    });
    let mut received = Vec::new();
    timeout(Duration::from_secs(120), async {
        while let Some(frame) = client.frames.recv().await {
            if let Frame::Data {
                stream_id: 3,
                fin,
                data,
            } = frame
            {
                received.extend_from_slice(&data);
                if fin {
                    break;
                }
            }
        }
    })
    .await
    .expect("stalled");
    assert_eq!(received, pattern(SIZE, 7));
    assert_eq!(server.await.unwrap(), SIZE);
    uploader.await.unwrap();
}

#[tokio::test]
async fn pings_from_the_client_are_echoed() {
    let (mut client, _handle, _streams) = Client::start(Config::default());
    client.writer.send(Frame::Ping { id: 1 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 1 }));
    // An even id would be an answer to a ping of ours: not echoed.
    client.writer.send(Frame::Ping { id: 2 }).await;
    client.writer.send(Frame::Ping { id: 3 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 3 }));
}

#[tokio::test]
async fn server_pings_use_even_ids() {
    let (mut client, _handle, _streams) = Client::start(Config {
        ping_interval: Some(Duration::from_millis(50)),
        ..Config::default()
    });
    assert_eq!(client.next().await, Some(Frame::Ping { id: 2 }));
    client.writer.send(Frame::Ping { id: 2 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 4 }));
}

/// Once the peer shows it does flow control, the windows are honoured, and
/// a sender waiting for credit resumes on WINDOW_UPDATE.
#[tokio::test]
async fn windows_are_enforced_once_the_peer_sends_updates() {
    let (mut client, _handle, mut streams) = Client::start(Config::default());
    client.writer.open(1, &[("streamtype", "stdout")]).await;
    assert!(matches!(
        client.next().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    client
        .writer
        .send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 1000,
        })
        .await;
    let mut stream = accept(&mut streams).await;
    let sender = tokio::spawn(async move {
        stream.send(Bytes::from(vec![7u8; 200_000])).await.unwrap();
        stream.close().await.unwrap();
        stream
    });
    let mut got = 0;
    while got < 66_536 {
        match client.next().await {
            Some(Frame::Data {
                stream_id: 1,
                data,
                fin: false,
            }) => got += data.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, 66_536, "exactly the initial window plus the grant");
    client.expect_silence().await;
    client
        .writer
        .send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 200_000,
        })
        .await;
    let mut fin = false;
    while !fin {
        match client.next().await {
            Some(Frame::Data {
                stream_id: 1,
                data,
                fin: f,
            }) => {
                got += data.len();
                fin = f;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, 200_000);
    sender.await.unwrap();
}

#[tokio::test]
async fn peer_reset_ends_reads_and_fails_writes() {
    let (mut client, _handle, mut streams) = Client::start(Config::default());
    client.writer.open(1, &[("streamtype", "data")]).await;
    let mut stream = accept(&mut streams).await;
    client.writer.data(1, b"partial", false).await;
    assert_eq!(stream.recv().await.as_deref(), Some(&b"partial"[..]));
    client
        .writer
        .send(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::Cancel,
        })
        .await;
    assert_eq!(stream.recv().await, None);
    assert!(stream.is_reset());
    let err = stream.send(Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    drop(stream);
    // Neither the failed write nor the drop answers the reset with a reset.
    assert!(matches!(
        client.next().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    client.expect_silence().await;
}

#[tokio::test]
async fn dropping_an_unclosed_stream_resets_it() {
    let (mut client, _handle, mut streams) = Client::start(Config::default());
    client.writer.open(1, &[("streamtype", "data")]).await;
    let mut stream = accept(&mut streams).await;
    stream.send(Bytes::from_static(b"bye")).await.unwrap();
    drop(stream);
    assert!(matches!(
        client.next().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    assert!(matches!(
        client.next().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: false,
            ..
        })
    ));
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::Cancel
        })
    );
}

#[tokio::test]
async fn dropping_one_half_does_not_reset() {
    let (mut client, _handle, mut streams) = Client::start(Config::default());
    client.writer.open(1, &[("streamtype", "stdin")]).await;
    let (mut input, output) = accept(&mut streams).await.into_split();
    assert!(matches!(
        client.next().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    // A kubelet never writes to stdin: dropping the send half is silent...
    drop(output);
    client.expect_silence().await;
    client.writer.data(1, b"typed", false).await;
    assert_eq!(input.recv().await.as_deref(), Some(&b"typed"[..]));
    // ...and the stream is reset only once the other half is gone too.
    drop(input);
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::Cancel
        })
    );
}

#[tokio::test]
async fn streams_over_the_limit_are_refused() {
    let (mut client, _handle, mut streams) = Client::start(Config {
        max_concurrent_streams: 2,
        ..Config::default()
    });
    for id in [1, 3, 5] {
        client.writer.open(id, &[("streamtype", "data")]).await;
    }
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(client.next().await.unwrap());
    }
    assert!(replies.contains(&Frame::RstStream {
        stream_id: 5,
        status: RstStatus::RefusedStream
    }));
    let first = accept(&mut streams).await;
    let mut second = accept(&mut streams).await;
    assert_eq!((first.id(), second.id()), (1, 3));
    // Once a stream is over in both directions, its slot is free again.
    second.close().await.unwrap();
    client.writer.data(3, &[], true).await;
    drop(first);
    assert!(matches!(
        client.next().await,
        Some(Frame::Data {
            stream_id: 3,
            fin: true,
            ..
        })
    ));
    assert!(matches!(
        client.next().await,
        Some(Frame::RstStream { stream_id: 1, .. })
    ));
    client.writer.open(7, &[("streamtype", "data")]).await;
    assert!(matches!(
        client.next().await,
        Some(Frame::SynReply { stream_id: 7, .. })
    ));
    assert_eq!(accept(&mut streams).await.id(), 7);
}

#[tokio::test]
async fn out_of_order_stream_ids_are_refused() {
    let (mut client, _handle, _streams) = Client::start(Config::default());
    client.writer.open(5, &[]).await;
    client.writer.open(3, &[]).await;
    client.writer.open(4, &[]).await;
    assert!(matches!(
        client.next().await,
        Some(Frame::SynReply { stream_id: 5, .. })
    ));
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 3,
            status: RstStatus::ProtocolError
        })
    );
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 4,
            status: RstStatus::ProtocolError
        })
    );
}

#[tokio::test]
async fn data_for_an_unknown_stream_is_answered_with_invalid_stream() {
    let (mut client, _handle, _streams) = Client::start(Config::default());
    client.writer.data(9, b"who?", false).await;
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 9,
            status: RstStatus::InvalidStream
        })
    );
}

#[tokio::test]
async fn syn_stream_with_fin_has_no_incoming_data() {
    let (mut client, _handle, mut streams) = Client::start(Config::default());
    client
        .writer
        .send(Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: true,
            unidirectional: false,
            headers: [("streamtype", "resize")].into_iter().collect(),
        })
        .await;
    let mut stream = accept(&mut streams).await;
    assert_eq!(stream.recv().await, None);
    assert!(!stream.is_reset());
    stream
        .send(Bytes::from_static(b"still writable"))
        .await
        .unwrap();
}

#[tokio::test]
async fn stream_io_works_with_tokio_io_helpers() {
    let (mut client, _handle, mut streams) = Client::start(Config::default());
    client
        .writer
        .open(
            1,
            &[("streamtype", "data"), ("port", "8080"), ("requestID", "0")],
        )
        .await;
    let stream = accept(&mut streams).await;
    assert_eq!(stream.headers().get("port"), Some("8080"));
    assert_eq!(stream.headers().get("requestid"), Some("0"));
    let server = tokio::spawn(async move {
        let mut io = stream.into_io();
        let mut request = Vec::new();
        io.read_to_end(&mut request).await.unwrap();
        io.write_all(b"echo: ").await.unwrap();
        io.write_all(&request).await.unwrap();
        io.shutdown().await.unwrap();
    });
    client.writer.data(1, b"GET / HTTP/1.0\r\n\r\n", true).await;
    let mut response = Vec::new();
    loop {
        match client.next().await {
            Some(Frame::SynReply { .. }) => {}
            Some(Frame::Data {
                stream_id: 1,
                fin,
                data,
            }) => {
                response.extend_from_slice(&data);
                if fin {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(response, b"echo: GET / HTTP/1.0\r\n\r\n");
    server.await.unwrap();
}

#[tokio::test]
async fn stream_io_reports_a_reset_as_an_error() {
    let (mut client, _handle, mut streams) = Client::start(Config::default());
    client.writer.open(1, &[]).await;
    let mut io = accept(&mut streams).await.into_io();
    client
        .writer
        .send(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::Cancel,
        })
        .await;
    let mut buf = [0u8; 8];
    let err = io.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn client_disconnect_is_observable() {
    let (client, handle, mut streams) = Client::start(Config::default());
    let mut writer = client.writer;
    writer.open(1, &[("streamtype", "stdin")]).await;
    let mut stream = accept(&mut streams).await;
    // Hang up: both halves of the client's end of the pipe go away.
    client.reader.abort();
    let _ = client.reader.await;
    drop(writer);
    timeout(WAIT, handle.closed())
        .await
        .expect("closed() did not resolve");
    assert_eq!(stream.recv().await, None);
    assert!(stream.send(Bytes::from_static(b"late")).await.is_err());
    assert!(streams.recv().await.is_none());
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let (mut client, handle, _streams) = Client::start(Config {
        idle_timeout: Some(Duration::from_millis(300)),
        ..Config::default()
    });
    assert_eq!(
        client.next().await,
        Some(Frame::GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::Ok
        })
    );
    assert_eq!(client.next().await, None, "server shut its side down");
    drop(client);
    timeout(WAIT, handle.closed())
        .await
        .expect("closed() did not resolve");
}

#[tokio::test]
async fn garbage_ends_the_connection_with_a_protocol_error() {
    let (mut client, handle, _streams) = Client::start(Config::default());
    client
        .writer
        .io
        .write_all(&[0x80, 0x02, 0x00, 0x01, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(
        client.next().await,
        Some(Frame::GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::ProtocolError
        })
    );
    assert_eq!(client.next().await, None);
    drop(client);
    timeout(WAIT, handle.closed())
        .await
        .expect("closed() did not resolve");
}

#[tokio::test]
async fn goaway_refuses_new_streams_but_keeps_open_ones() {
    let (mut client, handle, mut streams) = Client::start(Config::default());
    client.writer.open(1, &[]).await;
    let mut stream = accept(&mut streams).await;
    assert!(matches!(
        client.next().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    handle.goaway().await.unwrap();
    assert_eq!(
        client.next().await,
        Some(Frame::GoAway {
            last_good_stream_id: 1,
            status: GoAwayStatus::Ok
        })
    );
    client.writer.open(3, &[]).await;
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 3,
            status: RstStatus::RefusedStream
        })
    );
    stream
        .send(Bytes::from_static(b"still here"))
        .await
        .unwrap();
    assert!(matches!(
        client.next().await,
        Some(Frame::Data { stream_id: 1, .. })
    ));
}

#[tokio::test]
async fn large_windows_are_granted_up_front() {
    let (mut client, _handle, _streams) = Client::start(Config::default());
    let first = timeout(WAIT, client.frames.recv()).await.unwrap().unwrap();
    let second = timeout(WAIT, client.frames.recv()).await.unwrap().unwrap();
    assert_eq!(
        first,
        Frame::Settings {
            clear: false,
            entries: vec![vk_spdy::Setting {
                flags: 0,
                id: 7,
                value: 0x7fff_ffff
            }],
        }
    );
    assert_eq!(
        second,
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 0x7fff_ffff - 65_536
        }
    );
}

#[tokio::test]
async fn a_slow_reader_applies_backpressure_without_losing_data() {
    let (mut client, _handle, mut streams) = Client::start(Config {
        stream_recv_buffer: 64 * 1024,
        ..Config::default()
    });
    client.writer.open(1, &[("streamtype", "stdin")]).await;
    let mut stream = accept(&mut streams).await;
    let mut writer = client.writer;
    let data = pattern(2 * 1024 * 1024, 3);
    let expected = data.clone();
    let uploader = tokio::spawn(async move {
        for chunk in data.chunks(16 * 1024) {
            writer.data(1, chunk, false).await;
        }
        writer.data(1, &[], true).await;
    });
    // Nobody reads for a while: the upload must stall, not pile up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !uploader.is_finished(),
        "the server buffered 2 MiB for an idle reader"
    );
    let mut got = Vec::new();
    while let Some(chunk) = timeout(WAIT, stream.recv()).await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, expected);
    uploader.await.unwrap();
}
