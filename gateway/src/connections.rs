//! The gateway's accept loop: every connection is bounded in time and in number before hyper
//! sees a byte of it.
//!
//! `axum::serve` gives hyper no timer, so a client that sends half a request head, or connects
//! and sends nothing, holds its connection (and hyper's buffers) for ever, and when file
//! descriptors run out the accept loop sleeps for everyone. Here:
//! - **A head must arrive in time.** hyper 1.12 starts its header-read timer when a connection is
//!   ready for a request: on a new connection and after each response alike. So one timer
//!   ([`ConnectionLimits::header_read_timeout`]) ends both a half-sent head and an idle
//!   keep-alive connection. hyper's buffer is capped at [`READ_BUFFER`], so a slowly sent head
//!   cannot grow it either.
//! - **Connections are counted**, in all and per peer address (a trusted proxy's address is not
//!   capped: it carries everyone). Past a cap the connection gets a canned 503 and is closed at
//!   once, so the kernel's backlog never fills with connections nobody will serve.
//! - **A vanished peer is dropped by the kernel** after [`ConnectionLimits::unacknowledged`]
//!   (`TCP_USER_TIMEOUT`, with keep-alive probes for idle HTTP/2 connections), not after Linux's
//!   15 minutes of retransmissions.
//! - **Shutdown drains**: on the signal [`Draining`] turns `/readyz` to 503 while the listener
//!   keeps serving for [`ConnectionLimits::drain`], so a load balancer stops sending before the
//!   listener closes; then connections are asked to finish.
//!
//! HTTP/2 with prior knowledge (h2c, from a load balancer) is told apart from HTTP/1.1 by
//! peeking at the preface, within the same header-read timeout.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

use crate::client_addr::TrustedProxies;

/// What bounds the gateway's connections (`GatewayConfig::connections`).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// `HTTP_HEADER_READ_TIMEOUT_MS` (10,000): how long a connection may wait for its next
    /// request head to arrive in full, whether new or kept alive (see the module's doc).
    pub header_read_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS` (50,000): connections hyper serves at once in this process.
    /// Streams taken over from hyper are counted by the stream caps instead.
    pub max: usize,
    /// `HTTP_CONNECTIONS_PER_ADDRESS` (1,000): the same per peer address; generous, as a
    /// carrier's NAT puts many phones behind one. Trusted proxies are not capped.
    pub per_address: usize,
    /// `TCP_USER_TIMEOUT_MS` (45,000): how long sent data may go unacknowledged before the
    /// kernel drops the connection.
    pub unacknowledged: Duration,
    /// `SHUTDOWN_DRAIN_MS` (5,000): how long after the signal `/readyz` answers 503 while
    /// requests are still served, before the listener closes.
    pub drain: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max: 50_000,
            per_address: 1_000,
            unacknowledged: Duration::from_secs(45),
            drain: Duration::from_secs(5),
        }
    }
}

/// hyper's read buffer per connection: a head larger than this is refused (431), so a slowly sent
/// head cannot grow it (hyper's default is about 400 KiB). Bodies are limited to 16 KiB anyway.
const READ_BUFFER: usize = 16 * 1024;

/// HTTP/2 pings on an idle connection, and how long one may go unanswered.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Streams one HTTP/2 connection may hold at once.
const H2_MAX_STREAMS: u32 = 256;

/// The answer to a connection over a cap: written if the socket takes it at once, then closed.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 87\r\n\r\n{\"error\":{\"code\":\"unavailable\",\"message\":\"too many connections; try again in a second\"}}";

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the process is shutting down: `/readyz` says 503 from the signal on.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Connections open now, in all and per peer address.
struct Counts {
    limits: ConnectionLimits,
    trusted: TrustedProxies,
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; uncounted when dropped.
struct Slot {
    counts: Arc<Counts>,
    address: Option<IpAddr>,
}

impl Counts {
    /// A slot for a connection from `peer`, or why not.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, &'static str> {
        let peer = peer.to_canonical();
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.limits.max {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("process");
        }
        let mut slot = Slot {
            counts: self.clone(),
            address: None,
        };
        if !self.trusted.trusts(peer) {
            let mut per_address = self.per_address();
            let open = per_address.entry(peer).or_default();
            if *open >= self.limits.per_address {
                drop(per_address);
                return Err("address");
            }
            *open += 1;
            slot.address = Some(peer);
        }
        metrics::gauge!("http_connections_open").increment(1.0);
        Ok(slot)
    }

    fn per_address(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Nothing panics while holding it; a poisoned lock still holds sound counts.
        self.per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("http_connections_open").decrement(1.0);
        if let Some(address) = self.address {
            let mut per_address = self.counts.per_address();
            if let Some(open) = per_address.get_mut(&address) {
                *open -= 1;
                if *open == 0 {
                    per_address.remove(&address);
                }
            }
        }
    }
}

/// Serves connections from `listener` until `shutdown` resolves and the drain delay has passed;
/// then asks every connection to finish and waits for them, for at most `finish_within`.
/// `connect` turns each accepted socket into the IO hyper reads and the service that answers it.
pub async fn serve<Io, S>(
    listener: TcpListener,
    limits: ConnectionLimits,
    trusted: TrustedProxies,
    draining: Draining,
    shutdown: impl Future<Output = ()> + Send + 'static,
    finish_within: Duration,
    connect: impl Fn(TcpStream, SocketAddr) -> (Io, S),
) where
    Io: AsyncRead + AsyncWrite + Peek + Unpin + Send + Sync + 'static,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let counts = Arc::new(Counts {
        limits: limits.clone(),
        trusted,
        total: AtomicUsize::new(0),
        per_address: Mutex::new(HashMap::new()),
    });
    let connections = TaskTracker::new();
    let (finish, finishing) = watch::channel(false);
    let drain = limits.drain;
    let draining_signal = draining.clone();
    let closing = async move {
        shutdown.await;
        draining_signal.start();
        tracing::info!(
            ?drain,
            "draining: /readyz says 503 before the listener closes"
        );
        tokio::time::sleep(drain).await;
    };
    tokio::pin!(closing);
    loop {
        let accepted = tokio::select! {
            () = &mut closing => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors or memory: the caps should keep us from here; waiting
                // a little lets connections end instead of spinning on the error.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match counts.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                metrics::counter!("http_connections_refused_total", "cap" => cap).increment(1);
                let _ = stream.try_write(OVER_CAPACITY);
                continue;
            }
        };
        set_socket_options(&stream, &limits);
        let (io, service) = connect(stream, peer);
        let finishing = finishing.clone();
        let header_read_timeout = limits.header_read_timeout;
        connections.spawn(async move {
            serve_one(io, service, header_read_timeout, finishing).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = finish.send(true);
    connections.close();
    if tokio::time::timeout(finish_within, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "connections still open after the shutdown signal; dropping them"
        );
    }
}

fn set_socket_options(stream: &TcpStream, limits: &ConnectionLimits) {
    let socket = socket2::SockRef::from(stream);
    let _ = socket.set_tcp_user_timeout(Some(limits.unacknowledged));
    // Idle HTTP/2 connections send nothing between pings; probes find a vanished peer.
    let probes = socket2::TcpKeepalive::new()
        .with_time(H2_KEEP_ALIVE)
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = socket.set_tcp_keepalive(&probes);
}

/// Serves one connection until it ends, asking it to finish when `finishing` turns true.
async fn serve_one<Io, S>(
    io: Io,
    service: S,
    header_read_timeout: Duration,
    finishing: watch::Receiver<bool>,
) where
    Io: AsyncRead + AsyncWrite + Peek + Unpin + Send + Sync + 'static,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(io);
    let hyper_service = hyper::service::service_fn(move |request: Request<Incoming>| {
        service.clone().oneshot(request.map(Body::new))
    });
    let h2 = match tokio::time::timeout(header_read_timeout, speaks_h2(io.inner())).await {
        Ok(Ok(h2)) => h2,
        Ok(Err(_)) | Err(_) => {
            metrics::counter!("http_connections_closed_total", "why" => "no_request").increment(1);
            return;
        }
    };
    if h2 {
        let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(H2_KEEP_ALIVE))
            .keep_alive_timeout(H2_KEEP_ALIVE)
            .max_concurrent_streams(H2_MAX_STREAMS)
            .serve_connection(io, hyper_service);
        until_finished(connection, finishing).await;
    } else {
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_buf_size(READ_BUFFER)
            .serve_connection(io, hyper_service);
        until_finished(connection, finishing).await;
    }
}

/// Drives `connection` to its end; once `finishing` turns true it is asked to finish what it
/// has begun (answer the request in flight, take no new one) and driven on until it does.
async fn until_finished<C: GracefulConnection>(
    connection: C,
    mut finishing: watch::Receiver<bool>,
) {
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = finishing.wait_for(|finish| *finish) => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

/// Peeks at the first bytes: true for HTTP/2's preface, false for anything else (HTTP/1.1).
async fn speaks_h2<Io: Peek>(io: &Io) -> io::Result<bool> {
    let mut seen = [0u8; H2_PREFACE.len()];
    loop {
        let n = std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut seen);
            io.poll_peek(cx, &mut buf)
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if seen[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // Part of the preface: peeking again at once would see the same bytes; wait for more.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A socket whose first bytes can be read without taking them.
pub trait Peek {
    fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<usize>>;
}

impl Peek for TcpStream {
    fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<usize>> {
        TcpStream::poll_peek(self, cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    /// A server of `limits` answering `ok` on `/`, its address, its drain flag and the sender
    /// that signals shutdown.
    async fn server(limits: ConnectionLimits) -> (SocketAddr, Draining, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let draining = Draining::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let router = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(serve(
            listener,
            limits,
            TrustedProxies::default(),
            draining.clone(),
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(1),
            move |stream, _| (stream, router.clone()),
        ));
        (addr, draining, stop)
    }

    fn quick() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_millis(300),
            drain: Duration::from_millis(500),
            ..Default::default()
        }
    }

    /// Everything the server sends until it closes, or None if it is still open after `within`.
    async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        let mut heard = Vec::new();
        tokio::time::timeout(within, stream.read_to_end(&mut heard))
            .await
            .ok()
            .map(|_| heard)
    }

    async fn get_root(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn a_half_sent_head_and_a_silent_connection_are_closed_in_time() {
        let (addr, _, _stop) = server(quick()).await;
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ")
            .await
            .unwrap();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut kept_alive = TcpStream::connect(addr).await.unwrap();
        assert!(get_root(&mut kept_alive).await.ends_with("ok"));
        for stream in [&mut half, &mut silent, &mut kept_alive] {
            assert!(
                until_closed(stream, Duration::from_secs(2)).await.is_some(),
                "closed within the header-read timeout"
            );
        }
        // A prompt client is served as before.
        let mut prompt = TcpStream::connect(addr).await.unwrap();
        assert!(get_root(&mut prompt).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn an_address_over_its_cap_is_told_503_and_closed() {
        let (addr, _, _stop) = server(ConnectionLimits {
            per_address: 2,
            ..quick()
        })
        .await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        assert!(get_root(&mut first).await.starts_with("HTTP/1.1 200"));
        let mut third = TcpStream::connect(addr).await.unwrap();
        let heard = until_closed(&mut third, Duration::from_secs(1))
            .await
            .expect("closed at once");
        let heard = String::from_utf8(heard).unwrap();
        assert!(heard.starts_with("HTTP/1.1 503"), "{heard}");
        assert!(heard.contains("retry-after: 1"), "{heard}");
        // A slot freed is a slot again.
        drop(first);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        assert!(get_root(&mut fourth).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn the_process_cap_counts_every_address_and_a_trusted_proxy_has_none() {
        let counts = Arc::new(Counts {
            limits: ConnectionLimits {
                max: 3,
                per_address: 1,
                ..Default::default()
            },
            trusted: TrustedProxies::parse("10.0.0.1").unwrap(),
            total: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
        });
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let other: IpAddr = "198.51.100.8".parse().unwrap();
        let a = counts
            .admit(proxy)
            .expect("a proxy is not capped per address");
        let b = counts
            .admit(proxy)
            .expect("a proxy is not capped per address");
        let _c = counts.admit(client).unwrap();
        assert_eq!(counts.admit(other).err(), Some("process"));
        drop((a, b));
        assert_eq!(counts.admit(client).err(), Some("address"));
        let d = counts.admit(other).unwrap();
        assert_eq!(counts.total.load(Ordering::Relaxed), 2);
        drop(d);
        assert_eq!(
            counts.per_address().len(),
            1,
            "emptied addresses are forgotten"
        );
    }

    #[tokio::test]
    async fn after_the_signal_readiness_drops_while_requests_are_still_served() {
        let (addr, draining, stop) = server(quick()).await;
        let mut kept = TcpStream::connect(addr).await.unwrap();
        assert!(get_root(&mut kept).await.starts_with("HTTP/1.1 200"));
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(draining.is_draining());
        // Within the drain: new connections are still accepted and served.
        let mut late = TcpStream::connect(addr).await.unwrap();
        assert!(get_root(&mut late).await.starts_with("HTTP/1.1 200"));
        // After it: the listener is closed.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
