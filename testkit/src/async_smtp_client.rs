//! The async twin of [`SmtpClient`](crate::smtp_client::SmtpClient), for tests that run on
//! tokio (the transport library's session tests, the e2e scenarios): each reply as the
//! server sent it, on any stream (TCP, or TLS after STARTTLS), every wait bounded.
//!
//! Only std and tokio types cross its API, so the transport library's own unit tests can
//! use it although the test kit depends on (another build of) that library.
use crate::smtp_client::{data_block, ends_reply};
use std::io::{Error, ErrorKind, Result};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Bound on every network wait of the client, unless it is given another
/// ([`AsyncSmtpClient::with_wait`]).
pub const WAIT: Duration = Duration::from_secs(15);

pub struct AsyncSmtpClient<S = TcpStream> {
    stream: BufReader<S>,
    wait: Duration,
}

/// `f` within `wait`, else a `TimedOut` error saying `what` did not come.
async fn bounded<T>(
    wait: Duration,
    what: impl FnOnce() -> String,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(wait, f)
        .await
        .unwrap_or_else(|_| Err(Error::new(ErrorKind::TimedOut, format!("{}: nothing within {wait:?}", what()))))
}

impl AsyncSmtpClient<TcpStream> {
    /// Connects and reads the banner.
    pub async fn connect(addr: SocketAddr) -> Result<(Self, String)> {
        let stream = bounded(WAIT, || format!("connect to {addr}"), TcpStream::connect(addr)).await?;
        let mut c = AsyncSmtpClient::new(stream);
        let banner = c.read_reply().await?;
        Ok((c, banner))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncSmtpClient<S> {
    /// A client on a connected stream (e.g. TLS after STARTTLS), the banner or the
    /// reply to STARTTLS already read.
    pub fn new(stream: S) -> Self {
        AsyncSmtpClient { stream: BufReader::new(stream), wait: WAIT }
    }

    /// The same client with every wait bounded by `wait` instead of [`WAIT`].
    pub fn with_wait(self, wait: Duration) -> Self {
        AsyncSmtpClient { wait, ..self }
    }

    /// The stream, for a TLS handshake after STARTTLS. An error if the server sent more
    /// than the replies read: those bytes would be lost (and must not be taken for replies
    /// sent under TLS, RFC 3207 §6).
    pub fn into_inner(self) -> Result<S> {
        match self.stream.buffer() {
            [] => Ok(self.stream.into_inner()),
            unread => Err(Error::new(
                ErrorKind::InvalidData,
                format!("unread bytes before TLS: {:?}", String::from_utf8_lossy(unread)),
            )),
        }
    }

    /// A whole (possibly multi-line) reply, lines joined with `\n`. The server closing
    /// before its end is an `UnexpectedEof` error.
    pub async fn read_reply(&mut self) -> Result<String> {
        let mut all = String::new();
        loop {
            let mut line = Vec::new();
            let read = self.stream.read_until(b'\n', &mut line);
            let n = bounded(self.wait, || format!("a reply (after {all:?})"), read).await?;
            if n == 0 {
                return Err(Error::new(ErrorKind::UnexpectedEof, format!("closed after {all:?}")));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            all.push_str(text);
            if ends_reply(text) {
                return Ok(all);
            }
            all.push('\n');
        }
    }

    /// Sends `bytes` as they are (several commands at once, a DATA block, anything).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let w = self.stream.get_mut();
        bounded(self.wait, || "a write".into(), async {
            w.write_all(bytes).await?;
            w.flush().await
        })
        .await
    }

    /// Sends `line` and CRLF; the reply.
    pub async fn cmd(&mut self, line: &str) -> Result<String> {
        self.send_raw(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    /// MAIL, RCPTs, DATA and the message ([`data_block`]); the first reply that is not a
    /// success, or the final reply after the dot.
    pub async fn send_message(&mut self, from: &str, to: &[&str], message: &str) -> Result<String> {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await?;
        if !r.starts_with('2') {
            return Ok(r);
        }
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>")).await?;
            if !r.starts_with('2') {
                return Ok(r);
            }
        }
        let r = self.cmd("DATA").await?;
        if !r.starts_with('3') {
            return Ok(r);
        }
        self.send_raw(data_block(message).as_bytes()).await?;
        self.read_reply().await
    }

    /// Everything the server sends until it closes the connection (a reset counts as
    /// closing); a `TimedOut` error if it keeps it open past [`WAIT`].
    pub async fn read_to_end(&mut self) -> Result<String> {
        let mut rest = Vec::new();
        let read = bounded(self.wait, || "the server to close the connection".into(), async {
            match self.stream.read_to_end(&mut rest).await {
                Err(e) if e.kind() != ErrorKind::ConnectionReset => Err(e),
                _ => Ok(()),
            }
        })
        .await;
        read.map(|()| String::from_utf8_lossy(&rest).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, DuplexStream};

    /// A client on one end of an in-memory stream; the test plays the server on the other.
    fn pair() -> (AsyncSmtpClient<DuplexStream>, DuplexStream) {
        let (client, server) = duplex(64 * 1024);
        (AsyncSmtpClient::new(client), server)
    }

    async fn read_available(server: &mut DuplexStream) -> String {
        let mut buf = vec![0; 64 * 1024];
        let n = server.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn a_multi_line_reply_is_read_whole_and_the_next_one_after_it() {
        let (mut c, mut server) = pair();
        server.write_all(b"250-relay.test\r\n250-SIZE 10\r\n250 8BITMIME\r\n220 next\r\n").await.unwrap();
        assert_eq!(c.read_reply().await.unwrap(), "250-relay.test\n250-SIZE 10\n250 8BITMIME");
        assert_eq!(c.read_reply().await.unwrap(), "220 next");
    }

    #[tokio::test]
    async fn pipelined_commands_go_at_once_and_their_replies_come_in_order() {
        let (mut c, mut server) = pair();
        c.send_raw(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n").await.unwrap();
        assert_eq!(read_available(&mut server).await, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
        server.write_all(b"250 2.1.0 Sender OK\r\n550 5.7.1 Unable to relay\r\n").await.unwrap();
        assert_eq!(c.read_reply().await.unwrap(), "250 2.1.0 Sender OK");
        assert_eq!(c.read_reply().await.unwrap(), "550 5.7.1 Unable to relay");
    }

    #[tokio::test]
    async fn a_reply_cut_short_is_an_eof_error_saying_what_came() {
        let (mut c, mut server) = pair();
        server.write_all(b"250-relay.test\r\n").await.unwrap();
        drop(server);
        let e = c.read_reply().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("250-relay.test"), "{e}");
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout_naming_what_was_awaited() {
        let (c, _server) = pair();
        let mut c = c.with_wait(Duration::from_millis(50));
        let e = c.read_reply().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(e.to_string().contains("a reply"), "{e}");
        let e = c.read_to_end().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "the connection stays open");
    }

    #[tokio::test]
    async fn a_message_goes_dot_stuffed_and_a_refusal_stops_the_transaction() {
        let (mut c, mut server) = pair();
        let serve = tokio::spawn(async move {
            let mut seen = String::new();
            for reply in ["250 ok\r\n", "250 ok\r\n", "354 go on\r\n"] {
                seen.push_str(&read_available(&mut server).await);
                server.write_all(reply.as_bytes()).await.unwrap();
            }
            while !seen.ends_with("\r\n.\r\n") {
                seen.push_str(&read_available(&mut server).await);
            }
            server.write_all(b"250 2.6.0 queued\r\n").await.unwrap();
            seen.push_str(&read_available(&mut server).await);
            server.write_all(b"503 5.5.1 no\r\n").await.unwrap();
            seen
        });
        let reply = c.send_message("a@example.org", &["b@example.net"], "Subject: x\r\n\r\n.hidden\r\n").await;
        assert_eq!(reply.unwrap(), "250 2.6.0 queued");
        assert_eq!(c.send_message("a@example.org", &[], "x").await.unwrap(), "503 5.5.1 no", "stops at MAIL");
        assert_eq!(
            serve.await.unwrap(),
            "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: x\r\n\r\n..hidden\r\n.\r\n\
             MAIL FROM:<a@example.org>\r\n"
        );
    }

    #[tokio::test]
    async fn a_session_runs_in_a_spawned_task() {
        // The e2e mail flow sends from tasks: the client's futures must be Send.
        let (mut c, mut server) = pair();
        server.write_all(b"250 2.0.0 OK\r\n").await.unwrap();
        let reply = tokio::spawn(async move { c.cmd("NOOP").await }).await.unwrap();
        assert_eq!(reply.unwrap(), "250 2.0.0 OK");
        assert_eq!(read_available(&mut server).await, "NOOP\r\n");
    }

    #[tokio::test]
    async fn read_to_end_is_all_the_server_sent_before_closing() {
        let (mut c, mut server) = pair();
        server.write_all(b"421 4.3.2 closing\r\n").await.unwrap();
        drop(server);
        assert_eq!(c.read_to_end().await.unwrap(), "421 4.3.2 closing\r\n");
    }

    #[tokio::test]
    async fn the_stream_is_handed_over_for_tls_only_with_nothing_unread() {
        let (mut c, mut server) = pair();
        server.write_all(b"220 2.0.0 Ready to start TLS\r\n").await.unwrap();
        assert!(c.read_reply().await.unwrap().starts_with("220"));
        let mut stream = c.into_inner().expect("nothing unread");
        stream.write_all(b"hello").await.unwrap();
        assert_eq!(read_available(&mut server).await, "hello");

        let mut c = AsyncSmtpClient::new(stream);
        server.write_all(b"220 Ready\r\n250 injected before the handshake\r\n").await.unwrap();
        c.read_reply().await.unwrap();
        let e = c.into_inner().expect_err("bytes would be lost");
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert!(e.to_string().contains("injected"), "{e}");
    }

    #[tokio::test]
    async fn a_real_tcp_connection_reads_the_banner() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"220 test ESMTP\r\n").await.unwrap();
            let mut line = vec![0; 64];
            let n = s.read(&mut line).await.unwrap();
            s.write_all(b"221 2.0.0 bye\r\n").await.unwrap();
            String::from_utf8_lossy(&line[..n]).into_owned()
        });
        let (mut c, banner) = AsyncSmtpClient::connect(addr).await.unwrap();
        assert_eq!(banner, "220 test ESMTP");
        assert_eq!(c.cmd("QUIT").await.unwrap(), "221 2.0.0 bye");
        assert_eq!(serve.await.unwrap(), "QUIT\r\n");
    }
}
