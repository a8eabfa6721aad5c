//! The release binary's HTTP/2 transport under abuse, from a raw HTTP/2 client (hand-written
//! frames where a well-behaved client library would refuse to misbehave, the `h2` crate where
//! flow control matters): SETTINGS advertise MAX_CONCURRENT_STREAMS and streams past it are
//! refused, a reset flood draws GOAWAY, idle connections are closed, stalled uploads are
//! dropped and their memory released, oversized bodies and bodies past the in-flight budget are
//! refused. Each test prints its figures; `H2_ABUSE_BIN=/path/to/other/pir-server` runs the same
//! scenarios against another build (without asserting) to measure it.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::binary::{Served, strict};
use pir_core::SchemeParams;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Asserts only against this build (see the file's comment).
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if strict() {
            assert!($cond, $($msg)+);
        } else if !$cond {
            eprintln!("(not asserted) {}", format!($($msg)+));
        }
    };
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// An HPACK string literal (no Huffman coding; short strings only).
fn hpack_str(s: &str) -> Vec<u8> {
    assert!(s.len() < 127);
    let mut v = vec![s.len() as u8];
    v.extend(s.as_bytes());
    v
}

/// The HEADERS frame of a gRPC call to `path` on `stream`.
fn grpc_headers(stream: u32, path: &str, end_stream: bool) -> Vec<u8> {
    // :method POST (static 3), :scheme http (static 6), then literals without indexing:
    // :path (static name 4), :authority (1), content-type (31), and te by its name.
    let mut block = vec![0x83, 0x86, 0x04];
    block.extend(hpack_str(path));
    block.push(0x01);
    block.extend(hpack_str("localhost"));
    block.extend([0x0f, 0x10]);
    block.extend(hpack_str("application/grpc"));
    block.push(0x00);
    block.extend(hpack_str("te"));
    block.extend(hpack_str("trailers"));
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, &block)
}

/// A raw HTTP/2 connection: frames written as given, frames read one by one.
struct Raw {
    s: TcpStream,
}

struct Frame {
    kind: u8,
    flags: u8,
    payload: Vec<u8>,
}

impl Raw {
    /// Connects and sends the preface and empty SETTINGS.
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(PREFACE).await.unwrap();
        s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        Self { s }
    }

    /// The next frame, or `None` on EOF, error or `wait` passing. Answers PINGs.
    async fn next(&mut self, wait: Duration) -> Option<Frame> {
        let read = async {
            let mut head = [0u8; 9];
            self.s.read_exact(&mut head).await.ok()?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; len];
            self.s.read_exact(&mut payload).await.ok()?;
            Some(Frame {
                kind: head[3],
                flags: head[4],
                payload,
            })
        };
        let f = tokio::time::timeout(wait, read).await.ok()??;
        if f.kind == PING && f.flags & ACK == 0 {
            let _ = self.s.write_all(&frame(PING, ACK, 0, &f.payload)).await;
        }
        Some(f)
    }

    /// The server's SETTINGS (acknowledged), as (identifier, value) pairs.
    async fn settings(&mut self) -> Vec<(u16, u32)> {
        loop {
            let f = self.next(Duration::from_secs(5)).await.expect("SETTINGS");
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                self.s
                    .write_all(&frame(SETTINGS, ACK, 0, &[]))
                    .await
                    .unwrap();
                return f
                    .payload
                    .chunks_exact(6)
                    .map(|c| {
                        (
                            u16::from_be_bytes([c[0], c[1]]),
                            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                        )
                    })
                    .collect();
            }
        }
    }
}

fn u32_at(payload: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([
        payload[at],
        payload[at + 1],
        payload[at + 2],
        payload[at + 3],
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_limit_streams_and_a_reset_flood_draws_goaway() {
    let server = Served::start(&[("PIR_MAX_STREAMS_PER_CONNECTION", "8")], &[]).await;

    // SETTINGS say how many streams; streams past that are refused.
    let mut raw = Raw::connect(server.addr).await;
    let settings = raw.settings().await;
    let max_streams = settings.iter().find(|(id, _)| *id == 0x3).map(|(_, v)| *v);
    eprintln!("SETTINGS_MAX_CONCURRENT_STREAMS: {max_streams:?}");
    check!(max_streams == Some(8), "advertised {max_streams:?}");
    // 12 Query calls whose bodies never come: 8 stay open, 4 are refused.
    let mut opened = Vec::new();
    for i in 0..12u32 {
        opened.extend(grpc_headers(2 * i + 1, "/pir.v1.Discovery/Query", false));
    }
    raw.s.write_all(&opened).await.unwrap();
    let mut refused = 0;
    while let Some(f) = raw.next(Duration::from_millis(800)).await {
        if f.kind == RST_STREAM && u32_at(&f.payload, 0) == REFUSED_STREAM {
            refused += 1;
        }
    }
    eprintln!("streams opened: 12, refused: {refused}");
    check!(
        refused == 4,
        "{refused} of 12 streams refused with 8 allowed"
    );
    drop(raw);

    // Rapid reset: open a stream and cancel it, thousands of times on one connection.
    let cancel = |id: u32| {
        let mut frames = grpc_headers(id, "/pir.v1.Discovery/GetConfig", false);
        frames.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
        frames
    };
    let (sent, goaway) = flood(server.addr, cancel).await;
    eprintln!(
        "rapid reset: {sent} streams opened and reset; GOAWAY (last stream, code): {goaway:?}"
    );
    check!(
        goaway.is_some_and(|(_, code)| code == ENHANCE_YOUR_CALM),
        "no GOAWAY ENHANCE_YOUR_CALM after {sent} client resets: {goaway:?}"
    );
    // Made-you-reset: streams the server must reset itself (a request with a
    // connection-specific header is malformed, a stream error), thousands of times.
    let malformed = |id: u32| {
        let mut headers = grpc_headers(id, "/pir.v1.Discovery/GetConfig", true);
        let mut extra = vec![0x00];
        extra.extend(hpack_str("connection"));
        extra.extend(hpack_str("close"));
        let len = (headers.len() - 9 + extra.len()) as u32;
        headers[..3].copy_from_slice(&len.to_be_bytes()[1..]);
        headers.extend(extra);
        headers
    };
    let (sent, goaway) = flood(server.addr, malformed).await;
    eprintln!(
        "server-made resets: {sent} streams opened and made to reset; GOAWAY (last stream, code): \
         {goaway:?}"
    );
    check!(
        goaway.is_some_and(|(_, code)| code == ENHANCE_YOUR_CALM),
        "no GOAWAY ENHANCE_YOUR_CALM after {sent} server-made resets: {goaway:?}"
    );
    // The server still serves others.
    check!(
        common::health(server.addr, "").await == Some(1),
        "health after the flood"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let server = Served::start(&[("PIR_IDLE_TIMEOUT", "1s")], &[]).await;

    // An HTTP/2 connection that opens no stream gets GOAWAY, then is closed.
    let mut raw = Raw::connect(server.addr).await;
    raw.settings().await;
    let start = Instant::now();
    let mut goaway_after = None;
    let closed_after = loop {
        match raw.next(Duration::from_secs(10)).await {
            Some(f) if f.kind == GOAWAY => goaway_after = Some(start.elapsed()),
            Some(_) => {}
            None => break start.elapsed(),
        }
    };
    eprintln!(
        "idle HTTP/2 connection: GOAWAY after {goaway_after:?}, closed after {closed_after:?}"
    );
    check!(goaway_after.is_some(), "no GOAWAY");
    check!(
        closed_after < Duration::from_secs(4),
        "closed only after {closed_after:?}"
    );

    // A TCP connection that never even sends the preface is closed too.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let silent = loop {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => break None,
        }
    };
    eprintln!("silent TCP connection closed after {silent:?}");
    check!(
        silent.is_some_and(|t| t < Duration::from_secs(5)),
        "silent connection still open: {silent:?}"
    );
}

/// A gRPC call on `client` to `path` whose message declares `declared` bytes, of which
/// `sent` are sent (a stalled upload when fewer); the response's grpc-status and message, or
/// `None` if none came within `wait`.
async fn upload(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    declared: usize,
    sent: usize,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut ready = client.clone().ready().await.unwrap();
    let (response, mut body) = ready.send_request(request, false).unwrap();
    let mut message = vec![0u8];
    message.extend((declared as u32).to_be_bytes());
    message.resize(5 + sent, 7);
    body.send_data(Bytes::from(message), false).unwrap();
    (response, body)
}

/// `count` RegisterKeys [`upload`]s of `sent` of `declared` bytes, `pause` apart.
async fn stalled_registrations(
    client: &mut h2::client::SendRequest<Bytes>,
    count: usize,
    declared: usize,
    sent: usize,
    pause: Duration,
) -> Vec<(h2::client::ResponseFuture, h2::SendStream<Bytes>)> {
    let mut calls = Vec::new();
    for _ in 0..count {
        calls.push(upload(client, "/pir.v1.Discovery/RegisterKeys", declared, sent).await);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    calls
}

/// Opens up to 5,000 streams on a new connection, stream `id` as `frames(id)` says; the
/// streams sent, and the GOAWAY (last stream, error code) if one came.
async fn flood(
    addr: std::net::SocketAddr,
    frames: impl Fn(u32) -> Vec<u8>,
) -> (u32, Option<(u32, u32)>) {
    let mut raw = Raw::connect(addr).await;
    raw.settings().await;
    let mut sent = 0u32;
    let goaway = |f: &Frame| (u32_at(&f.payload, 0), u32_at(&f.payload, 4));
    for burst in 0..50u32 {
        let mut out = Vec::new();
        for i in 0..100u32 {
            out.extend(frames(2 * (burst * 100 + i) + 1));
        }
        if raw.s.write_all(&out).await.is_err() {
            break;
        }
        sent += 100;
        while let Some(f) = raw.next(Duration::from_millis(20)).await {
            if f.kind == GOAWAY {
                return (sent, Some(goaway(&f)));
            }
        }
    }
    // The GOAWAY may follow the last burst.
    while let Some(f) = raw.next(Duration::from_secs(2)).await {
        if f.kind == GOAWAY {
            return (sent, Some(goaway(&f)));
        }
    }
    (sent, None)
}

/// A percent-encoded grpc-message, decoded.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The grpc-status and grpc-message of a response (headers or trailers).
async fn status(response: h2::client::ResponseFuture, wait: Duration) -> Option<(String, String)> {
    let read = async {
        let response = response.await.ok()?;
        let get = |h: &http::HeaderMap, k: &str| {
            h.get(k)
                .map(|v| unescape(&String::from_utf8_lossy(v.as_bytes())))
        };
        if let Some(code) = get(response.headers(), "grpc-status") {
            return Some((
                code,
                get(response.headers(), "grpc-message").unwrap_or_default(),
            ));
        }
        let mut body = response.into_body();
        while body.data().await.is_some() {}
        let trailers = body.trailers().await.ok()??;
        Some((
            get(&trailers, "grpc-status")?,
            get(&trailers, "grpc-message").unwrap_or_default(),
        ))
    };
    tokio::time::timeout(wait, read).await.ok()?
}

async fn h2_client(addr: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .handshake(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_oversized_uploads_are_dropped_and_their_memory_released() {
    let sizes = SchemeParams::danger_test_only_small()
        .message_sizes()
        .unwrap();
    let server = Served::start(&[("PIR_REQUEST_BODY_TIMEOUT", "2s")], &[]).await;
    let baseline = server.rss_kib();
    let mut client = h2_client(server.addr).await;

    // Eight 30 MiB RegisterKeys uploads (what the old 32 MiB limit let through): refused at
    // their first frame, their keys being far larger than this snapshot's.
    let big = 30 << 20;
    let start = Instant::now();
    let mut calls = Vec::new();
    for _ in 0..8 {
        calls.push(
            upload(
                &mut client,
                "/pir.v1.Discovery/RegisterKeys",
                big,
                big - 4096,
            )
            .await,
        );
    }
    let mut codes = Vec::new();
    for (response, _body) in calls {
        codes.push(status(response, Duration::from_secs(15)).await);
    }
    let refused_in = start.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_big = server.rss_kib();
    eprintln!(
        "8 x 30 MiB RegisterKeys: answers {:?} in {refused_in:?}; RSS baseline {:.1} MiB, after {:.1} MiB",
        codes
            .iter()
            .map(|c| c.as_ref().map(|c| c.0.clone()))
            .collect::<Vec<_>>(),
        mib(baseline),
        mib(after_big)
    );
    check!(
        codes.iter().all(|c| c
            .as_ref()
            .is_some_and(|(code, m)| code == "8" && m.contains("larger than"))),
        "oversized RegisterKeys: {codes:?}"
    );
    check!(
        refused_in < Duration::from_secs(5),
        "oversized refused only after {refused_in:?}"
    );
    // An oversized Query too (more queries' worth than a request may carry).
    let too_many = 33 * sizes.query + (64 << 10);
    let (response, _body) = upload(&mut client, "/pir.v1.Discovery/Query", too_many, 1024).await;
    let query = status(response, Duration::from_secs(5)).await;
    eprintln!("oversized Query ({too_many} bytes declared): {query:?}");
    check!(
        query.as_ref().is_some_and(|(code, _)| code == "8"),
        "oversized Query: {query:?}"
    );

    // Eight uploads of nearly a whole key set that then stall: held until the body timeout,
    // then dropped with DEADLINE_EXCEEDED and their memory released.
    let declared = sizes.public_keys;
    let sent = declared - 4096;
    let start = Instant::now();
    let calls = stalled_registrations(&mut client, 8, declared, sent, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = server.rss_kib();
    let mut codes = Vec::new();
    for (response, _body) in calls {
        codes.push(status(response, Duration::from_secs(15)).await);
    }
    let dropped_in = start.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let released = server.rss_kib();
    eprintln!(
        "8 stalled RegisterKeys of {sent} bytes each ({:.1} MiB in all): RSS while stalled {:.1} MiB, \
         answered {:?} after {dropped_in:?}, RSS 1 s later {:.1} MiB (baseline {:.1} MiB)",
        mib(8 * sent as u64 / 1024),
        mib(held),
        codes
            .iter()
            .map(|c| c.as_ref().map(|c| c.0.clone()))
            .collect::<Vec<_>>(),
        mib(released),
        mib(baseline)
    );
    check!(
        codes
            .iter()
            .all(|c| c.as_ref().is_some_and(|(code, _)| code == "4")),
        "stalled uploads: {codes:?}"
    );
    check!(
        dropped_in < Duration::from_secs(6),
        "stalled uploads dropped only after {dropped_in:?}"
    );
    check!(
        released < baseline + 8 * 1024 + 8 * sent as u64 / 1024 / 2,
        "RSS {released} KiB after the stalled uploads went (baseline {baseline} KiB)"
    );
    check!(
        server.refusals("message_size").await >= 9,
        "message_size refusals: {}",
        server.refusals("message_size").await
    );
    check!(
        server.refusals("request_body_timeout").await == 8,
        "request_body_timeout refusals: {}",
        server.refusals("request_body_timeout").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_budget_refuses_excess() {
    let sizes = SchemeParams::danger_test_only_small()
        .message_sizes()
        .unwrap();
    let server = Served::start(
        &[
            ("PIR_IN_FLIGHT_REQUEST_MIB", "1"),
            ("PIR_REQUEST_BODY_TIMEOUT", "3s"),
        ],
        &[],
    )
    .await;
    let mut client = h2_client(server.addr).await;
    // Uploads of up to 300 KiB each, stalled, until the 1 MiB budget is spent.
    let declared = sizes.public_keys;
    let sent = declared.min(300 << 10) - 1024;
    let calls =
        stalled_registrations(&mut client, 6, declared, sent, Duration::from_millis(150)).await;
    let mut codes = Vec::new();
    for (response, _body) in calls {
        codes.push(status(response, Duration::from_secs(15)).await);
    }
    let busy = codes
        .iter()
        .filter(|c| {
            c.as_ref()
                .is_some_and(|(code, m)| code == "8" && m.contains("budget"))
        })
        .count();
    eprintln!(
        "6 stalled uploads of {sent} bytes under a 1 MiB budget: {busy} refused as over it, \
         answers {codes:?}"
    );
    check!(
        (2..=4).contains(&busy),
        "{busy} refused over the budget: {codes:?}"
    );
    check!(
        server.refusals("in_flight_bytes").await == busy as u64,
        "in_flight_bytes refusals"
    );
    // Once they are gone the budget is whole again: a complete registration goes through.
    let (response, mut body) = upload(&mut client, "/pir.v1.Discovery/RegisterKeys", 10, 0).await;
    body.send_data(Bytes::from(vec![0u8; 10]), true).unwrap();
    let answer = status(response, Duration::from_secs(5)).await;
    eprintln!("a small complete request after them: {answer:?}");
    check!(
        answer.as_ref().is_some_and(|(code, _)| code != "8"),
        "after the budget freed: {answer:?}"
    );
}
