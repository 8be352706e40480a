//! The byte stream under lettre's connection: TCP, then TLS after STARTTLS,
//! with every plaintext line passing the protocol tap on its way.
//!
//! Why not lettre's own `starttls()`: it sends the post-TLS EHLO itself and
//! keeps only the few keywords lettre knows (not DSN or SIZE), and its TLS
//! layer would sit above any tap, which would then see ciphertext. Owning the
//! stream lets the session read every EHLO keyword, log the whole dialogue in
//! clear, and refuse a peer that sends data after its STARTTLS reply.
use super::ProtocolTap;
use crate::logs::LogEvent;
use lettre::transport::smtp::client::AsyncTokioStream;
use rustls_pki_types::ServerName;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A line longer than this is passed to the tap in pieces (a peer cannot
/// make the session buffer without bound).
const MAX_LINE: usize = 4096;
/// Received lines kept for the session to read back (the first EHLO reply).
const KEPT_LINES: usize = 512;

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// The TCP stream is in the middle of a TLS handshake (or the handshake
    /// failed and the connection is gone).
    Detached,
}

struct Shared {
    io: Io,
    tap: Option<Arc<dyn ProtocolTap>>,
    /// Partial lines in each direction.
    read_partial: Vec<u8>,
    write_partial: Vec<u8>,
    /// Message data is not logged, only commands and replies.
    quiet_writes: bool,
    /// Complete lines received so far, and the last few of them.
    lines_received: u64,
    kept: VecDeque<String>,
}

impl Shared {
    fn received(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' || self.read_partial.len() >= MAX_LINE {
                let line = line_text(&std::mem::take(&mut self.read_partial));
                if let Some(tap) = &self.tap {
                    tap.line(LogEvent::Received, &line);
                }
                if self.kept.len() == KEPT_LINES {
                    self.kept.pop_front();
                }
                self.kept.push_back(line);
                self.lines_received += 1;
                if b == b'\n' {
                    continue;
                }
            }
            self.read_partial.push(b);
        }
    }

    fn sent(&mut self, bytes: &[u8]) {
        if self.quiet_writes {
            return;
        }
        for &b in bytes {
            if b == b'\n' || self.write_partial.len() >= MAX_LINE {
                let line = line_text(&std::mem::take(&mut self.write_partial));
                if let Some(tap) = &self.tap {
                    tap.line(LogEvent::Sent, &line);
                }
                if b == b'\n' {
                    continue;
                }
            }
            self.write_partial.push(b);
        }
    }
}

impl Shared {
    /// One write on the connection (plain or TLS); what was written passes the tap.
    /// Both lettre's writes ([`TappedStream`]) and the session's own
    /// ([`StreamHandle::write_all`]) go through here.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = match &mut self.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Io::Detached => Poll::Ready(Err(detached())),
        };
        if let Poll::Ready(Ok(written)) = polled {
            self.sent(&buf[..written]);
        }
        polled
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Io::Detached => Poll::Ready(Err(detached())),
        }
    }
}

fn line_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection was lost during the TLS handshake")
}

/// What lettre reads from and writes to.
pub(super) struct TappedStream {
    shared: Arc<Mutex<Shared>>,
    peer: SocketAddr,
}

/// The session's handle on the same stream: TLS upgrade, quiet data, line
/// accounting.
#[derive(Clone)]
pub(super) struct StreamHandle {
    shared: Arc<Mutex<Shared>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain bookkeeping behind: keep going.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn tapped(
    tcp: TcpStream,
    peer: SocketAddr,
    tap: Option<Arc<dyn ProtocolTap>>,
) -> (TappedStream, StreamHandle) {
    let shared = Arc::new(Mutex::new(Shared {
        io: Io::Plain(tcp),
        tap,
        read_partial: Vec::new(),
        write_partial: Vec::new(),
        quiet_writes: false,
        lines_received: 0,
        kept: VecDeque::new(),
    }));
    (TappedStream { shared: shared.clone(), peer }, StreamHandle { shared })
}

impl StreamHandle {
    /// Complete lines received so far.
    pub(super) fn lines_received(&self) -> u64 {
        lock(&self.shared).lines_received
    }

    /// True when bytes of an unfinished line were received.
    pub(super) fn has_partial_line(&self) -> bool {
        !lock(&self.shared).read_partial.is_empty()
    }

    /// The received lines kept so far (oldest first); clears them.
    pub(super) fn take_lines(&self) -> Vec<String> {
        lock(&self.shared).kept.drain(..).collect()
    }

    /// Writes `bytes` on the connection (plain or TLS) beside lettre, which
    /// keeps reading the replies: for pipelined commands and the message data,
    /// each in one write. Lines pass the protocol tap like lettre's writes.
    pub(super) async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut written = 0;
        std::future::poll_fn(|cx| {
            let mut shared = lock(&self.shared);
            while written < bytes.len() {
                match std::task::ready!(shared.poll_write(cx, &bytes[written..])) {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => written += n,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            shared.poll_flush(cx)
        })
        .await
    }

    /// While set, written bytes are message data and are not logged.
    pub(super) fn set_quiet_writes(&self, quiet: bool) {
        let mut shared = lock(&self.shared);
        shared.quiet_writes = quiet;
        shared.write_partial.clear();
    }

    pub(super) fn note(&self, event: LogEvent, data: &str) {
        if let Some(tap) = &lock(&self.shared).tap {
            tap.line(event, data);
        }
    }

    /// Replaces the plain stream by a TLS stream (after the peer said 220 to
    /// STARTTLS). Returns the protocol version and cipher suite negotiated.
    pub(super) async fn start_tls(&self, connector: TlsConnector, name: ServerName<'static>) -> io::Result<String> {
        let tcp = {
            let mut shared = lock(&self.shared);
            match std::mem::replace(&mut shared.io, Io::Detached) {
                Io::Plain(tcp) => tcp,
                other => {
                    shared.io = other;
                    return Err(io::Error::other("the connection is not a plain TCP connection"));
                }
            }
        };
        let tls = connector.connect(name, tcp).await?;
        let (_, connection) = tls.get_ref();
        let version = connection.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
        let suite = connection.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
        let description = format!("{version} {suite}");
        lock(&self.shared).io = Io::Tls(Box::new(tls));
        Ok(description)
    }

    /// The certificates the peer showed in the TLS handshake (none in clear).
    pub(super) fn peer_certificates(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        match &lock(&self.shared).io {
            Io::Tls(tls) => tls.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Closes the connection (TLS close_notify, then TCP FIN).
    pub(super) async fn shutdown(&self) {
        let io = std::mem::replace(&mut lock(&self.shared).io, Io::Detached);
        match io {
            Io::Plain(mut tcp) => {
                let _ = tcp.shutdown().await;
            }
            Io::Tls(mut tls) => {
                let _ = tls.shutdown().await;
            }
            Io::Detached => {}
        }
    }
}

impl std::fmt::Debug for TappedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TappedStream").field("peer", &self.peer).finish_non_exhaustive()
    }
}

impl AsyncRead for TappedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut shared = lock(&self.shared);
        let before = buf.filled().len();
        let polled = match &mut shared.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Io::Detached => Poll::Ready(Err(detached())),
        };
        if let Poll::Ready(Ok(())) = polled {
            let new = buf.filled()[before..].to_vec();
            shared.received(&new);
        }
        polled
    }
}

impl AsyncWrite for TappedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        lock(&self.shared).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(&self.shared).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut shared = lock(&self.shared);
        match &mut shared.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Io::Detached => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncTokioStream for TappedStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}
