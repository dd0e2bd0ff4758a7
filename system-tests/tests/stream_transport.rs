//! How a queue stream travels: over HTTP/1.1 it leaves hyper's connection and is written by a
//! task of its own (`gateway/src/takeover.rs`), over HTTP/2 (h2c) it stays with hyper; and
//! whenever and however its client leaves (mid-request, before the head, after a message,
//! half-closing, resetting), its slot is freed.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::sse::{self, Stream};
use system_tests::{eventually, paused_room, System};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn stream_request(address: &str, queue_id: &str) -> String {
    format!(
        "GET /api/queue/{queue_id}/events HTTP/1.1\r\nhost: {address}\r\n\
         accept: text/event-stream\r\n\r\n"
    )
}

/// Reads into `read` until it holds `what`; false when the connection ended first.
async fn read_until(socket: &mut TcpStream, read: &mut Vec<u8>, what: &[u8]) -> bool {
    while !read.windows(what.len()).any(|w| w == what) {
        let mut more = [0u8; 4096];
        match socket.read(&mut more).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => read.extend_from_slice(&more[..n]),
        }
    }
    true
}

/// Reads a response head; returns it and the bytes read past it.
async fn read_head(socket: &mut TcpStream) -> (String, Vec<u8>) {
    let mut read = Vec::new();
    assert!(
        read_until(socket, &mut read, b"\r\n\r\n").await,
        "the connection closed before a response head"
    );
    let end = read.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(read[..end + 2].to_vec()).unwrap();
    (head, read[end + 4..].to_vec())
}

/// One header's value in a response head (names compared without case), or "" when absent.
fn header_of(head: &str, name: &str) -> String {
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default()
}

/// Over HTTP/1.1, on a keep-alive connection that already answered a join, the stream's head
/// says `chunked` and `connection: close` (hyper would keep the connection), keeps the handler's
/// and the layers' headers, and its chunks carry the messages. Over HTTP/2 (h2c) the stream stays
/// with hyper and works as before.
#[sqlx::test(migrations = "../migrations")]
async fn an_http1_stream_is_written_apart_and_h2c_streams_still_work(db: PgPool) {
    let system = System::start(db).await;
    let event = system.create_event(&[("GA", 100)], paused_room()).await;
    let address = system.gateway.trim_start_matches("http://").to_string();
    let mut socket = TcpStream::connect(&address).await.unwrap();
    let joining = json!({"visitor_id": "one-connection"}).to_string();
    socket
        .write_all(
            format!(
                "POST /api/events/{event}/queue HTTP/1.1\r\nhost: {address}\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n{joining}",
                joining.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (head, mut body) = read_head(&mut socket).await;
    assert!(head.starts_with("HTTP/1.1 202"), "{head}");
    assert_ne!(header_of(&head, "connection"), "close", "{head}");
    let length: usize = header_of(&head, "content-length").parse().unwrap();
    while body.len() < length {
        let mut more = [0u8; 4096];
        let n = socket.read(&mut more).await.unwrap();
        assert!(n > 0, "the join's body was cut");
        body.extend_from_slice(&more[..n]);
    }
    let joined: Value = serde_json::from_slice(&body[..length]).unwrap();
    let queue_id = joined["queue_id"].as_str().unwrap();

    socket
        .write_all(stream_request(&address, queue_id).as_bytes())
        .await
        .unwrap();
    let (head, mut rest) = read_head(&mut socket).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(header_of(&head, "content-type"), "text/event-stream");
    assert_eq!(header_of(&head, "transfer-encoding"), "chunked");
    assert_eq!(header_of(&head, "connection"), "close");
    assert_eq!(header_of(&head, "cache-control"), "no-store");
    assert!(!header_of(&head, "x-request-id").is_empty(), "{head}");
    assert!(!header_of(&head, "date").is_empty(), "{head}");
    // The chunked body, unframed, until the first message is whole.
    let mut messages = String::new();
    while !messages.contains("\n\n") {
        assert!(
            read_until(&mut socket, &mut rest, b"\r\n").await,
            "the stream ended before its first message"
        );
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16)
            .expect("a chunk size in hex");
        assert!(size > 0, "the stream ended before its first message");
        while rest.len() < line_end + size + 4 {
            let mut more = [0u8; 4096];
            let n = socket.read(&mut more).await.unwrap();
            assert!(n > 0, "a chunk was cut");
            rest.extend_from_slice(&more[..n]);
        }
        let chunk = &rest[line_end + 2..line_end + 2 + size];
        messages.push_str(std::str::from_utf8(chunk).unwrap());
        assert_eq!(&rest[line_end + 2 + size..line_end + 4 + size], b"\r\n");
        rest.drain(..line_end + 4 + size);
    }
    assert!(messages.starts_with("event: status\n"), "{messages}");
    assert!(
        messages.contains(&format!("\"queue_id\":\"{queue_id}\"")),
        "{messages}"
    );

    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let other = system.join_line(event, "over-h2c").await;
    let mut stream = Stream::open(&h2c, &system.gateway, &other, None)
        .await
        .expect("an h2c stream opens");
    let first = stream.next(Duration::from_secs(5)).await.expect("first");
    assert_eq!(first.event, "status");
    assert_eq!(first.json()["state"], "waiting");
}

/// Ways a page's stream ends from its side.
#[derive(Debug, Clone, Copy)]
enum Leave {
    /// Half a request head, then the connection closes.
    MidRequest,
    /// The whole request, then the connection closes before any answer.
    AfterRequest,
    /// Closes once the response head came.
    AfterHead,
    /// Closes once the first message came.
    AfterMessage,
    /// Shuts its sending side after the first message, still reading: the gateway ends the
    /// stream (as hyper does by default) and closes.
    HalfClose,
    /// Resets the connection (zero linger) after the first message.
    Reset,
}

const WAYS: [Leave; 6] = [
    Leave::MidRequest,
    Leave::AfterRequest,
    Leave::AfterHead,
    Leave::AfterMessage,
    Leave::HalfClose,
    Leave::Reset,
];

async fn open_and_leave(address: String, queue_id: String, way: Leave, pause: Duration) {
    let mut socket = TcpStream::connect(&address).await.unwrap();
    let request = stream_request(&address, &queue_id);
    if let Leave::MidRequest = way {
        socket
            .write_all(&request.as_bytes()[..request.len() / 2])
            .await
            .unwrap();
        tokio::time::sleep(pause).await;
        return;
    }
    socket.write_all(request.as_bytes()).await.unwrap();
    if let Leave::AfterRequest = way {
        tokio::time::sleep(pause).await;
        return;
    }
    let (head, mut rest) = read_head(&mut socket).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{way:?}: {head}");
    if let Leave::AfterHead = way {
        return;
    }
    assert!(
        read_until(&mut socket, &mut rest, b"event: status").await,
        "{way:?}: no first message"
    );
    tokio::time::sleep(pause).await;
    match way {
        Leave::HalfClose => {
            socket.shutdown().await.unwrap();
            let ended = tokio::time::timeout(Duration::from_secs(5), async {
                let mut more = [0u8; 4096];
                loop {
                    match socket.read(&mut more).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            assert!(ended.is_ok(), "a half-closed stream was not ended");
        }
        Leave::Reset => socket.set_zero_linger().unwrap(),
        _ => {}
    }
}

/// Clients leave their streams at every moment and in every way, all at once, each entry using
/// its whole cap of three: afterwards every entry can open three streams again, so no leaving
/// left a slot (or its stream) behind, whether it left while hyper held the connection or after
/// the stream was written apart.
#[sqlx::test(migrations = "../migrations")]
async fn streams_whose_clients_leave_at_any_moment_free_their_slots(db: PgPool) {
    let system = System::start(db).await;
    let event = system.create_event(&[("GA", 100)], paused_room()).await;
    let address = system.gateway.trim_start_matches("http://").to_string();
    let mut queue_ids = Vec::new();
    for i in 0..20 {
        queue_ids.push(system.join_line(event, &format!("leaving-{i}")).await);
    }
    let mut clients = Vec::new();
    for (i, queue_id) in queue_ids.iter().enumerate() {
        for j in 0..3 {
            let n = i * 3 + j;
            let way = WAYS[n % WAYS.len()];
            let pause = Duration::from_millis((n as u64 * 7) % 25);
            clients.push(tokio::spawn(open_and_leave(
                address.clone(),
                queue_id.clone(),
                way,
                pause,
            )));
        }
    }
    for client in clients {
        client.await.expect("client");
    }
    // The gateway counts both: streams written apart, and those whose client left them.
    eventually(
        Duration::from_secs(10),
        "the takeover's counters",
        || async {
            let text = system
                .http
                .get(format!("{}/metrics", system.gateway))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (text.contains("queue_stream_takeovers_total{outcome=\"taken\"}")
                && text.contains("queue_streams_taken_over_ended_total{how=\"client_left\"}"))
            .then_some(())
        },
    )
    .await;
    let http = sse::client();
    for queue_id in &queue_ids {
        eventually(
            Duration::from_secs(10),
            "three streams again for an entry whose streams all left",
            || async {
                let mut open = Vec::new();
                for _ in 0..3 {
                    open.push(
                        Stream::open(&http, &system.gateway, queue_id, None)
                            .await
                            .ok()?,
                    );
                }
                Some(open)
            },
        )
        .await;
    }
}
