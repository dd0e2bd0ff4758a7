//! HTTP/1.1 event streams leave hyper's connection for a lean writer of their own.
//!
//! hyper keeps two buffers on every HTTP/1.1 connection for as long as it lives: a read buffer
//! it reserves again (16 KiB) each time it looks for the client's EOF, and an 8 KiB header
//! buffer. hyper 1.x has no setting for either. For a request that is answered and done that
//! costs nothing lasting, but a queue page's stream lives for minutes: measured on one gateway
//! with 19,000 streams, hyper's buffers were 24 of the 29.6 KiB each stream cost, against an aim
//! of 8 KiB; taken over, a stream costs 1.9 KiB (BENCHMARKS.md, issue 14).
//!
//! So the gateway serves through [`serve`], whose sockets can be taken back from hyper between
//! requests. When the stream handler answers 200 and marks its response [`HandOver`], and the
//! request came over HTTP/1.1 on a connection with nothing left unwritten, the socket is taken
//! out of hyper's hands (hyper sees the connection end and drops its buffers, writing nothing)
//! and a task of its own writes the response: the head once, then each message as a chunk,
//! watching the socket for the client's close (a one-byte read, on the stack). The response is
//! the same one hyper would have written, head, headers and body, except that it says
//! `connection: close`: the connection ends with the stream, as a browser's reconnect expects.
//!
//! HTTP/2 streams stay with hyper: there a stream is a few hundred bytes of a shared connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tower::{Layer, Service};

use crate::client_addr::TrustedProxies;
use crate::connections::{self, ConnectionLimits, Draining, Peek};

/// Marks a response whose body may be written by its own task once its socket is taken over.
#[derive(Debug, Clone, Copy)]
pub struct HandOver;

/// How long one message may wait for a client that does not read, before the stream is dropped.
const WRITE_LIMIT: Duration = Duration::from_secs(30);

/// How long shutdown waits for taken-over streams to write their last message.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// How long a message may go unacknowledged before the kernel drops a vanished client (a phone
/// that lost its network sends no FIN): three heartbeats, instead of Linux's 15 minutes of
/// retransmissions, so its slot counts against its entry and address no longer than that.
const UNACKNOWLEDGED_LIMIT: Duration = Duration::from_secs(45);

/// Headers that belong to the connection, not the response: written by [`head_of`] or dropped.
const CONNECTION_HEADERS: [&str; 7] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "content-length",
    "date",
];

/// How the gateway serves: its connections' limits, and whether streams are taken over.
#[derive(Debug, Clone)]
pub struct Serving {
    pub connections: ConnectionLimits,
    /// `STREAM_TAKEOVER` (true): take HTTP/1.1 event streams out of hyper's hands. Off, hyper
    /// writes them as any other response (more memory per stream, nothing else changes): the
    /// switch for a hyper upgrade that has not yet been checked against [`Socket`]'s reading of
    /// hyper's flushes.
    pub takeover: bool,
}

/// Serves `router` on `listener` through [`connections::serve`] (connect info, graceful
/// shutdown after a drain, HTTP/1.1 and h2c), with HTTP/1.1 event streams taken over; returns
/// once every connection hyper held has ended (or `request_timeout` and a second after the
/// drain) and every taken-over stream too (or [`SHUTDOWN_LIMIT`] after that).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    serving: Serving,
    trusted: TrustedProxies,
    draining: Draining,
    shutdown: impl Future<Output = ()> + Send + 'static,
    request_timeout: Duration,
) -> io::Result<()> {
    let streams = TaskTracker::new();
    let taken = streams.clone();
    let takeover = serving.takeover;
    connections::serve(
        listener,
        serving.connections,
        trusted,
        draining,
        shutdown,
        request_timeout + DRAIN_MARGIN,
        move |stream, peer| {
            let socket = Socket::new(stream);
            let service = Takeover {
                inner: Extension(ConnectInfo(peer)).layer(router.clone()),
                socket: socket.clone(),
                streams: taken.clone(),
                enabled: takeover,
            };
            (socket, service)
        },
    )
    .await;
    streams.close();
    if tokio::time::timeout(SHUTDOWN_LIMIT, streams.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            streams = streams.len(),
            "taken-over streams still open at shutdown"
        );
    }
    Ok(())
}

/// The time graceful shutdown gives open connections beyond the request timeout: by then every
/// request in flight has been answered (the timeout layer answers 503).
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// A connection as hyper sees it. Its stream can be taken out between requests; from then on
/// hyper reads EOF and cannot write, so it ends the connection without touching the socket.
#[derive(Clone)]
struct Socket(Arc<Mutex<Held>>);

struct Held {
    /// `None` once taken over.
    stream: Option<TcpStream>,
    /// Bytes went to the stream since hyper's last flush, so hyper may still hold some of a
    /// response: hyper flushes the stream only when its own buffer is empty.
    unflushed: bool,
}

impl Socket {
    fn new(stream: TcpStream) -> Self {
        Self(Arc::new(Mutex::new(Held {
            stream: Some(stream),
            unflushed: false,
        })))
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        // Nothing panics while holding it; a poisoned lock still holds a sound value.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one of hyper's writes on the stream, which from then on may hold unflushed bytes;
    /// refused once the stream is taken.
    fn write_with(
        &self,
        write: impl FnOnce(Pin<&mut TcpStream>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut held = self.held();
        held.unflushed = true;
        match held.stream.as_mut() {
            Some(stream) => write(Pin::new(stream)),
            None => Poll::Ready(Err(taken())),
        }
    }

    /// The stream, if hyper has written everything it was given.
    fn take_stream(&self) -> Option<TcpStream> {
        let mut held = self.held();
        if held.unflushed {
            return None;
        }
        held.stream.take()
    }
}

fn taken() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the stream was taken over")
}

impl Peek for Socket {
    fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<usize>> {
        match self.held().stream.as_ref() {
            Some(stream) => stream.poll_peek(cx, buf),
            None => Poll::Ready(Ok(0)),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.held().stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_with(|stream| stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write_with(|stream| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut held = self.held();
        let Some(stream) = held.stream.as_mut() else {
            return Poll::Ready(Err(taken()));
        };
        let flushed = Pin::new(stream).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            held.unflushed = false;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.held().stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_shutdown(cx),
            // The socket is someone else's now: closing it is theirs to do.
            None => Poll::Ready(Ok(())),
        }
    }
}

/// One connection's service: the router, with the connection's address, and the takeover.
#[derive(Clone)]
struct Takeover {
    inner: axum::middleware::AddExtension<Router, ConnectInfo<SocketAddr>>,
    socket: Socket,
    streams: TaskTracker,
    /// [`Serving::takeover`].
    enabled: bool,
}

impl Service<Request> for Takeover {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let eligible = self.enabled
            && request.version() == Version::HTTP_11
            && request.method() == Method::GET;
        let answer = self.inner.call(request);
        let socket = self.socket.clone();
        let streams = self.streams.clone();
        Box::pin(async move {
            let response = answer.await?;
            if !eligible
                || response.status() != StatusCode::OK
                || response.extensions().get::<HandOver>().is_none()
            {
                return Ok(response);
            }
            let Some(stream) = socket.take_stream() else {
                metrics::counter!("queue_stream_takeovers_total", "outcome" => "left_to_hyper")
                    .increment(1);
                return Ok(response);
            };
            metrics::counter!("queue_stream_takeovers_total", "outcome" => "taken").increment(1);
            streams.spawn(async move {
                let ending = write_stream(stream, response)
                    .await
                    .err()
                    .unwrap_or(Ending::Finished);
                metrics::counter!("queue_streams_taken_over_ended_total", "how" => ending.label())
                    .increment(1);
            });
            // hyper never sends this: its socket now reads EOF and refuses writes.
            Ok(StatusCode::NO_CONTENT.into_response())
        })
    }
}

/// How a taken-over stream ended (`queue_streams_taken_over_ended_total{how}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The body ended and its last chunk was written.
    Finished,
    /// The client closed, reset, timed out in the kernel, or sent bytes.
    ClientLeft,
    /// A message waited [`WRITE_LIMIT`] for a client that does not read.
    Stalled,
    /// The body failed: the stream ends without its last chunk, so the client sees it cut.
    BodyFailed,
}

impl Ending {
    fn label(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::ClientLeft => "client_left",
            Self::Stalled => "stalled",
            Self::BodyFailed => "body_failed",
        }
    }
}

/// Writes `response` on `stream` as HTTP/1.1 with a chunked body, until the body ends, the
/// client closes, or a message waits [`WRITE_LIMIT`] for a client that does not read.
async fn write_stream(mut stream: TcpStream, response: Response) -> Result<(), Ending> {
    // Each message is written when it is due; Nagle's wait for an ACK would only delay it.
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(UNACKNOWLEDGED_LIMIT));
    let (parts, mut body) = response.into_parts();
    let head = head_of(parts.status, &parts.headers);
    drop(parts);
    write_within(&mut stream, &head).await?;
    drop(head);
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    write_within(&mut stream, &chunk_of(&data)).await?;
                }
                Some(Err(_)) => return Err(Ending::BodyFailed),
                None => break,
            },
            // `poll_read_ready` (not `readable()`) puts this task's waker where hyper's was, so
            // the finished connection task hyper ran in is not kept alive by it.
            readable = std::future::poll_fn(|cx| stream.poll_read_ready(cx)) => {
                if readable.is_err() {
                    return Err(Ending::ClientLeft);
                }
                // A stream's client sends nothing after its request: EOF, an error or any bytes
                // (which no SSE client sends, and which would otherwise be read without end)
                // end the stream.
                match stream.try_read(&mut probe) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    _ => return Err(Ending::ClientLeft),
                }
            }
        }
    }
    drop(body);
    write_within(&mut stream, b"0\r\n\r\n").await?;
    let _ = stream.shutdown().await;
    Ok(())
}

async fn write_within(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), Ending> {
    match tokio::time::timeout(WRITE_LIMIT, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ending::ClientLeft),
        Err(_) => Err(Ending::Stalled),
    }
}

/// The response head hyper would have written, saying the body is chunked and the connection
/// ends with it.
fn head_of(status: StatusCode, headers: &header::HeaderMap) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if CONNECTION_HEADERS.contains(&name.as_str()) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"date: ");
    head.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
    head.extend_from_slice(b"\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    head
}

/// One chunk of a chunked body.
fn chunk_of(data: &[u8]) -> Vec<u8> {
    let size = format!("{:x}\r\n", data.len());
    let mut chunk = Vec::with_capacity(size.len() + data.len() + 2);
    chunk.extend_from_slice(size.as_bytes());
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(b"\r\n");
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_head_says_chunked_and_close_and_keeps_the_handlers_headers() {
        let mut headers = header::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        headers.insert(header::DATE, HeaderValue::from_static("then"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.append("x-request-id", HeaderValue::from_static("a"));
        let head = String::from_utf8(head_of(StatusCode::OK, &headers)).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: text/event-stream\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nx-request-id: a\r\n"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert!(
            !head.contains("keep-alive") && !head.contains("then"),
            "{head}"
        );
        assert_eq!(head.matches("\r\ndate: ").count(), 1, "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(
            head.ends_with("\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
            "{head}"
        );
    }

    /// A loopback pair: the gateway's side as a [`Socket`], and the client's.
    async fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (served, _) = listener.accept().await.unwrap();
        (Socket::new(served), client)
    }

    #[tokio::test]
    async fn a_socket_is_not_taken_while_hyper_may_hold_unwritten_bytes() {
        use tokio::io::AsyncReadExt;

        let (mut socket, mut client) = pair().await;
        socket
            .write_all(b"HTTP/1.1 202 Accepted\r\n")
            .await
            .unwrap();
        assert!(
            socket.take_stream().is_none(),
            "written since the last flush"
        );
        socket.flush().await.unwrap();
        let mut taken = socket.take_stream().expect("flushed: free to take");
        assert!(socket.take_stream().is_none(), "taken once");

        // hyper's side now reads EOF, cannot write, and its shutdown leaves the socket alone.
        let mut read = [0u8; 8];
        assert_eq!(socket.read(&mut read).await.unwrap(), 0);
        let refused = socket.write_all(b"late").await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::BrokenPipe);
        socket.shutdown().await.unwrap();
        drop(socket);

        // The socket is whole in the new owner's hands: the client reads what it writes, after
        // what hyper wrote before.
        taken.write_all(b"mine").await.unwrap();
        taken.shutdown().await.unwrap();
        let mut heard = Vec::new();
        client.read_to_end(&mut heard).await.unwrap();
        assert_eq!(heard, b"HTTP/1.1 202 Accepted\r\nmine");
    }

    /// A pipelined request for a stream arrives while a large response before it is still being
    /// written (the client does not read): the stream must come after every byte of it, whole,
    /// and still be taken over. hyper 1.12 reads the next head only once the previous response is
    /// flushed, so here the `unflushed` guard is not what keeps the order (with it removed this
    /// passes too); this is the check that a hyper upgrade which reads ahead must pass before the
    /// pin in the workspace's `Cargo.toml` moves.
    #[tokio::test]
    async fn a_stream_asked_for_while_a_large_response_is_still_flushing_follows_it_whole() {
        use axum::body::Body;
        use axum::routing::get;
        use tokio::io::AsyncReadExt;

        const BIG: usize = 32 * 1024 * 1024;
        let router = Router::new()
            .route(
                "/big",
                get(|| async { (0..BIG).map(|i| (i % 251) as u8).collect::<Vec<u8>>() }),
            )
            .route(
                "/stream",
                get(|| async {
                    let messages = ["data: one\n\n", "data: two\n\n"]
                        .map(|m| Ok::<_, Infallible>(axum::body::Bytes::from_static(m.as_bytes())));
                    let mut response =
                        Response::new(Body::from_stream(futures::stream::iter(messages)));
                    response.extensions_mut().insert(HandOver);
                    response
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            router,
            Serving {
                connections: ConnectionLimits {
                    drain: Duration::ZERO,
                    ..Default::default()
                },
                takeover: true,
            },
            TrustedProxies::default(),
            Draining::default(),
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(1),
        ));
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut client = socket.connect(addr).await.unwrap();
        client
            .write_all(
                b"GET /big HTTP/1.1\r\nhost: x\r\n\r\nGET /stream HTTP/1.1\r\nhost: x\r\n\r\n",
            )
            .await
            .unwrap();
        // Let the server fill the socket and read the second request before anything is read.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut heard = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut heard))
            .await
            .expect("the stream ends")
            .unwrap();
        let head_end = heard.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&heard[..head_end]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains(&format!("content-length: {BIG}")), "{head}");
        let body = &heard[head_end..head_end + BIG];
        assert!(
            body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
            "the large body arrived whole and in order"
        );
        let rest = String::from_utf8_lossy(&heard[head_end + BIG..]).into_owned();
        assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
        assert!(
            rest.contains("\r\nconnection: close\r\n"),
            "taken over (hyper would have kept the connection alive): {rest}"
        );
        assert!(
            rest.contains("data: one\n\n") && rest.contains("data: two\n\n"),
            "{rest}"
        );
        assert!(rest.ends_with("0\r\n\r\n"), "{rest}");
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    #[test]
    fn a_chunk_is_its_hex_size_then_its_bytes() {
        assert_eq!(
            chunk_of(&[b'x'; 26]),
            b"1a\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"
        );
    }
}
