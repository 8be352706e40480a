//! One ESMTP session (RFC 5321) on an accepted connection: commands,
//! transactions, DATA, STARTTLS and AUTH, limits and timeouts.
use super::auth::{self, Users};
use super::command::{self, ArgError, Body, Forward, MailArgs, Verb};
use super::data::{ChunkChecker, DataError, DataReader};
use super::received::{self, Trace};
use super::{Incoming, SessionEvents, SessionSettings, Submit, SubmitError};
use crate::config::domain_pattern::DomainPattern;
use crate::control::{Availability, Gate};
use crate::envelope::{Address, Envelope, MessageId, Origin, Recipient, Source};
use crate::logs::LogEvent;
use crate::queue::body::BodyWriter;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4 asks for at
/// least 512; extensions such as AUTH need more).
const MAX_LINE: usize = 2048;
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Time allowed to say a last reply and close.
const GOODBYE: Duration = Duration::from_secs(5);

/// Everything a session is started with.
pub(crate) struct SessionCtx {
    pub id: u64,
    pub settings: Arc<SessionSettings>,
    pub gate: Gate,
    pub submit: Arc<dyn Submit>,
    pub events: Arc<dyn SessionEvents>,
    pub shutdown: watch::Receiver<bool>,
    pub remote: SocketAddr,
    /// The connection-limit slot; released just before the last reply is
    /// sent, so a client that reconnects right after QUIT is not counted twice.
    pub slot: Option<super::listener::Slot>,
}

/// The connection, plain or after STARTTLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Only while the plain stream is handed to the TLS handshake.
    Closed,
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Closed => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Closed => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// Why the session stops.
enum Stop {
    /// The client went away or the connection failed: nothing more to say.
    Gone,
    /// Say this (a 421) and close.
    Close(String),
    /// QUIT was answered.
    Quit,
}

/// One command line as read.
enum Line {
    Command(String),
    /// Longer than [`MAX_LINE`]; already discarded up to its end.
    TooLong,
    /// Control characters or 8-bit bytes in a command.
    Invalid,
    /// The server asked open sessions to end.
    Ending,
}

/// An open mail transaction.
struct Transaction {
    mail: MailArgs,
    recipients: Vec<Recipient>,
    /// Its data is arriving in BDAT chunks.
    chunks: Option<Chunked>,
}

/// A message's data while it arrives (DATA or BDAT): its id, our Received
/// header already written, and the body writer.
struct Staged {
    id: MessageId,
    helo: String,
    header_len: usize,
    body: BodyWriter,
    /// The first spool write that failed: the message gets `452` at its end.
    spool_error: Option<std::io::Error>,
}

impl Staged {
    async fn write(&mut self, bytes: &[u8]) {
        if self.spool_error.is_none() {
            self.spool_error = self.body.write(bytes).await.err();
        }
    }
}

/// The BDAT chunks of a transaction so far.
struct Chunked {
    staged: Staged,
    checker: ChunkChecker,
}

struct Session {
    ctx: SessionCtx,
    conn: Conn,
    gate_rx: watch::Receiver<Availability>,
    /// Received, not yet processed. Bounded: in command mode nothing more is
    /// read while a whole line is waiting or after MAX_LINE bytes without one;
    /// DATA consumes everything it is given.
    inbuf: Vec<u8>,
    /// Replies not yet written (PIPELINING: written when the input is
    /// exhausted or a command ends a group).
    outbuf: Vec<u8>,
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    user: Option<String>,
    txn: Option<Transaction>,
    errors: u32,
    /// End of the session's allowed lifetime (connectionTimeout).
    lifetime: Instant,
}

/// Serve one connection to its end. Never panics on client input.
pub(crate) async fn run(ctx: SessionCtx, stream: TcpStream) {
    let lifetime = Instant::now() + ctx.settings.limits.connection_timeout;
    let gate_rx = ctx.gate.watch();
    let mut s = Session {
        ctx,
        conn: Conn::Plain(stream),
        gate_rx,
        inbuf: Vec::new(),
        outbuf: Vec::new(),
        helo: None,
        esmtp: false,
        tls: false,
        user: None,
        txn: None,
        errors: 0,
        lifetime,
    };
    s.log(LogEvent::Connect, &s.ctx.remote.to_string());
    let stop = s.serve().await;
    let why = match &stop {
        Stop::Gone => "client disconnected",
        Stop::Close(_) => "closed by server",
        Stop::Quit => "QUIT",
    };
    tracing::debug!(reason = why, "session ends");
    s.finish(stop, why).await;
}

impl Session {
    fn settings(&self) -> &SessionSettings {
        &self.ctx.settings
    }

    fn log(&self, event: LogEvent, data: &str) {
        if self.ctx.settings.settings.protocol_logging {
            self.ctx.events.protocol(&self.ctx.settings.connector, self.ctx.id, event, data);
        }
    }

    /// Queue one reply line. Refusals are reported, and replies that mean
    /// the client spoke the protocol wrongly count as protocol errors.
    fn reply(&mut self, text: &str) {
        self.outbuf.extend_from_slice(text.as_bytes());
        self.outbuf.extend_from_slice(b"\r\n");
        self.log(LogEvent::Sent, text);
        let code = text.get(..3).unwrap_or("");
        if code.starts_with('4') || code.starts_with('5') {
            let full = text.split(' ').take(2).collect::<Vec<_>>().join(" ");
            self.ctx.events.refused(&self.ctx.settings.connector, &full);
        }
        // Syntax, unknown or unimplemented commands and parameters, and failed
        // authentication. Sequence errors (503) are not counted: one refused
        // MAIL in a pipelined group turns every following RCPT and DATA into
        // a 503, which says nothing more about the client. Policy refusals
        // (relay, size, loops) are answers about the message, not the protocol.
        if matches!(code, "500" | "501" | "502" | "504" | "535" | "555") {
            self.errors += 1;
        }
    }

    fn fqdn(&self) -> &str {
        &self.ctx.settings.fqdn
    }

    fn ending_now(&self) -> bool {
        self.gate_rx.borrow().end_sessions || *self.ctx.shutdown.borrow()
    }

    fn inactivity(&self) -> Duration {
        self.settings().limits.connection_inactivity_timeout
    }

    fn timeout_reply(&self) -> String {
        format!("421 4.4.2 {} Timeout waiting for client input, closing transmission channel", self.fqdn())
    }

    fn lifetime_reply(&self) -> String {
        format!("421 4.4.2 {} Connection lifetime exceeded, closing transmission channel", self.fqdn())
    }

    async fn serve(&mut self) -> Stop {
        let banner = format!("220 {} kube-transport ESMTP ready", self.fqdn());
        self.reply(&banner);
        loop {
            if self.txn.is_none() && self.ending_now() {
                return Stop::Close("421 4.3.2 Service shutting down, closing transmission channel".into());
            }
            // Between transactions a shutdown interrupts the wait; inside one
            // the client may finish it first.
            let watch_end = self.txn.is_none();
            let line = match self.next_line(watch_end).await {
                Ok(line) => line,
                Err(stop) => return stop,
            };
            let result = match line {
                Line::Ending => continue,
                Line::TooLong => {
                    self.log(LogEvent::Received, "<line too long, discarded>");
                    self.reply("500 5.5.2 Line too long");
                    Ok(())
                }
                Line::Invalid => {
                    self.log(LogEvent::Received, "<invalid characters>");
                    self.reply("500 5.5.2 Syntax error: invalid character in command");
                    Ok(())
                }
                Line::Command(text) => self.command(&text).await,
            };
            if let Err(stop) = result {
                return stop;
            }
            if self.errors > self.settings().limits.max_protocol_errors {
                return Stop::Close(
                    "421 4.7.0 Too many errors on this connection, closing transmission channel".into(),
                );
            }
        }
    }

    /// Last reply, close_notify/FIN, and a short drain so that the client
    /// reads the reply instead of a reset caused by its own unread bytes.
    async fn finish(&mut self, stop: Stop, why: &str) {
        match stop {
            Stop::Gone => {
                self.log(LogEvent::Disconnect, why);
                return;
            }
            Stop::Close(text) => self.reply(&text),
            Stop::Quit => {}
        }
        // Logged before the connection slot (and with it the session's log) goes away.
        self.log(LogEvent::Disconnect, why);
        // Free the connection slot before the last reply goes out: a client that
        // reconnects as soon as it reads it must not find the old session counted.
        drop(self.ctx.slot.take());
        let out = std::mem::take(&mut self.outbuf);
        let conn = &mut self.conn;
        let _ = tokio::time::timeout(GOODBYE, async {
            conn.write_all(&out).await?;
            conn.flush().await?;
            conn.shutdown().await
        })
        .await;
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let mut total = 0usize;
            while let Ok(n @ 1..) = self.conn.read(&mut sink).await {
                total += n;
                if total > 64 * 1024 {
                    break;
                }
            }
        })
        .await;
    }

    /// Write queued replies.
    async fn flush(&mut self) -> Result<(), Stop> {
        if self.outbuf.is_empty() {
            return Ok(());
        }
        let limit = self.inactivity();
        let (conn, out) = (&mut self.conn, &self.outbuf);
        match tokio::time::timeout(limit, async {
            conn.write_all(out).await?;
            conn.flush().await
        })
        .await
        {
            Ok(Ok(())) => {
                self.outbuf.clear();
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "write failed");
                Err(Stop::Gone)
            }
            Err(_) => {
                tracing::debug!("client does not read its replies");
                Err(Stop::Gone)
            }
        }
    }

    /// Read more input into `inbuf`. `Ok(false)`: the server asked sessions
    /// to end (only when `watch_end`).
    async fn read_more(&mut self, deadline: Instant, watch_end: bool) -> Result<bool, Stop> {
        enum Woke {
            Read(std::io::Result<usize>),
            Timer,
            Ending,
        }
        let wake = deadline.min(self.lifetime);
        self.inbuf.reserve(READ_CHUNK);
        let (conn, inbuf) = (&mut self.conn, &mut self.inbuf);
        let (gate_rx, shutdown) = (&mut self.gate_rx, &mut self.ctx.shutdown);
        let woke = tokio::select! {
            r = conn.read_buf(inbuf) => Woke::Read(r),
            _ = tokio::time::sleep_until(wake) => Woke::Timer,
            _ = wait_ending(gate_rx, shutdown), if watch_end => Woke::Ending,
        };
        match woke {
            Woke::Read(Ok(0)) => Err(Stop::Gone),
            Woke::Read(Ok(_)) => Ok(true),
            Woke::Read(Err(e)) => {
                tracing::debug!(error = %e, "read failed");
                Err(Stop::Gone)
            }
            Woke::Timer if self.lifetime <= deadline => {
                tracing::info!("connection lifetime exceeded");
                Err(Stop::Close(self.lifetime_reply()))
            }
            Woke::Timer => {
                tracing::info!("inactivity timeout");
                Err(Stop::Close(self.timeout_reply()))
            }
            Woke::Ending => Ok(false),
        }
    }

    /// The next command line. The whole line must arrive within the
    /// inactivity timeout (a client trickling bytes does not reset it).
    async fn next_line(&mut self, watch_end: bool) -> Result<Line, Stop> {
        let deadline = Instant::now() + self.inactivity();
        let mut discarding = false;
        loop {
            if let Some(p) = self.inbuf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.inbuf.drain(..=p).collect();
                if discarding || raw.len() > MAX_LINE {
                    return Ok(Line::TooLong);
                }
                let body = raw.strip_suffix(b"\n").unwrap_or(&raw);
                let body = body.strip_suffix(b"\r").unwrap_or(body);
                // Printable ASCII, and with SMTPUTF8 offered, valid UTF-8 (RFC 6531 §3.3;
                // whether it was declared for the address is checked at MAIL and RCPT).
                // (char::is_control covers C0, DEL and C1.)
                let utf8 = self.settings().settings.smtputf8();
                return Ok(match std::str::from_utf8(body) {
                    Ok(line) if (utf8 || line.is_ascii()) && !line.chars().any(|c| c.is_control() && c != '\t') => {
                        Line::Command(line.to_string())
                    }
                    _ => Line::Invalid,
                });
            }
            if self.inbuf.len() >= MAX_LINE {
                discarding = true;
                self.inbuf.clear();
            }
            // Nothing complete left to answer: the client waits for our replies.
            self.flush().await?;
            if !self.read_more(deadline, watch_end).await? {
                return Ok(Line::Ending);
            }
        }
    }

    async fn command(&mut self, line: &str) -> Result<(), Stop> {
        let (verb, args) = command::split_verb(line);
        if verb == Verb::Auth {
            // Never log credentials.
            let mechanism = args.split(' ').next().unwrap_or("");
            self.log(LogEvent::Received, &format!("AUTH {mechanism} ****"));
        } else {
            self.log(LogEvent::Received, line);
        }
        match verb {
            Verb::Ehlo => self.hello(args, true),
            Verb::Helo => self.hello(args, false),
            Verb::Mail => self.mail(args)?,
            Verb::Rcpt => self.rcpt(args),
            Verb::Data => self.data(args).await?,
            Verb::Bdat => self.bdat(args).await?,
            Verb::Rset => {
                if args.is_empty() {
                    self.txn = None;
                    self.reply("250 2.0.0 Resetting");
                } else {
                    self.reply("501 5.5.4 Syntax: RSET");
                }
            }
            Verb::Noop => self.reply("250 2.0.0 OK"),
            Verb::Quit => {
                self.reply("221 2.0.0 Service closing transmission channel");
                return Err(Stop::Quit);
            }
            Verb::Vrfy => {
                if args.trim().is_empty() {
                    self.reply("501 5.5.4 Syntax: VRFY <address>");
                } else {
                    self.reply("252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
                }
            }
            Verb::Expn => self.reply("502 5.5.1 Command not implemented"),
            Verb::Help => {
                self.reply("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH")
            }
            Verb::StartTls => self.starttls(args).await?,
            Verb::Auth => self.auth(args).await?,
            Verb::Unknown => self.reply("500 5.5.2 Unrecognized command"),
        }
        // RFC 2920 §3.1: these end a group; their replies go out at once.
        if matches!(
            verb,
            Verb::Ehlo
                | Verb::Helo
                | Verb::Data
                | Verb::Bdat
                | Verb::Noop
                | Verb::Vrfy
                | Verb::Expn
                | Verb::Help
                | Verb::Auth
        ) {
            self.flush().await?;
        }
        Ok(())
    }

    fn hello(&mut self, args: &str, esmtp: bool) {
        let name = args.trim_end();
        if name.is_empty() {
            self.reply(if esmtp { "501 5.5.4 Syntax: EHLO hostname" } else { "501 5.5.4 Syntax: HELO hostname" });
            return;
        }
        if !valid_helo(name) {
            self.reply("501 5.5.4 Invalid domain name");
            return;
        }
        // RFC 5321 §4.1.4: a new EHLO/HELO resets the transaction.
        self.txn = None;
        self.helo = Some(name.to_string());
        self.esmtp = esmtp;
        let greeting =
            format!("{} Hello {}", self.fqdn(), received::address_literal(self.ctx.remote.ip().to_canonical()));
        if !esmtp {
            self.reply(&format!("250 {greeting}"));
            return;
        }
        let mut lines = vec![
            greeting,
            format!("SIZE {}", self.settings().limits.max_message_size),
            "PIPELINING".into(),
            "DSN".into(),
            "ENHANCEDSTATUSCODES".into(),
            "8BITMIME".into(),
        ];
        if self.settings().settings.chunking() {
            lines.push("CHUNKING".into());
        }
        if self.settings().settings.smtputf8() {
            lines.push("SMTPUTF8".into());
        }
        if self.offers_requiretls() {
            lines.push("REQUIRETLS".into());
        }
        if self.settings().settings.binary_mime() {
            lines.push("BINARYMIME".into());
        }
        if self.settings().tls.is_some() && !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.settings().settings.auth.is_some() && self.tls && self.user.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            self.reply(&format!("250{}{l}", if i == last { ' ' } else { '-' }));
        }
    }

    /// RFC 8689 §3: REQUIRETLS only inside TLS.
    fn offers_requiretls(&self) -> bool {
        self.tls && self.settings().settings.offer_require_tls
    }

    fn mail(&mut self, args: &str) -> Result<(), Stop> {
        if self.helo.is_none() {
            self.reply("503 5.5.1 Send hello first");
            return Ok(());
        }
        if self.txn.is_some() {
            self.reply("503 5.5.1 Sender already specified");
            return Ok(());
        }
        if self.settings().settings.require_tls && !self.tls {
            self.reply("530 5.7.0 Must issue a STARTTLS command first");
            return Ok(());
        }
        if !self.ctx.gate.now().mail {
            return Err(Stop::Close("421 4.3.2 Service not active".into()));
        }
        if let Some(reason) = self.ctx.submit.storage_failure() {
            tracing::warn!(%reason, "MAIL refused: the queue cannot store messages now");
            self.reply("452 4.3.1 Insufficient system storage");
            return Ok(());
        }
        match command::parse_mail(args) {
            Err(e) => self.arg_error(e, "501 5.1.7 Invalid address"),
            Ok(m) if m.body == Some(Body::BinaryMime) && !self.settings().settings.binary_mime() => {
                self.reply("555 5.5.4 Unsupported parameter BODY=BINARYMIME")
            }
            Ok(m) if m.requiretls && !self.offers_requiretls() => {
                self.reply("555 5.5.4 Unsupported parameter REQUIRETLS")
            }
            Ok(m) if m.smtputf8 && !self.settings().settings.smtputf8() => {
                self.reply("555 5.5.4 Unsupported parameter SMTPUTF8")
            }
            Ok(m) if !m.smtputf8 && m.from.as_ref().is_some_and(|f| !f.is_ascii()) => {
                self.reply("553 5.6.7 A non-ASCII address needs SMTPUTF8 on MAIL FROM")
            }
            Ok(m) if m.size.is_some_and(|s| s > self.settings().limits.max_message_size) => {
                self.reply("552 5.3.4 Message size exceeds fixed maximum message size")
            }
            Ok(m) => {
                self.txn = Some(Transaction { mail: m, recipients: Vec::new(), chunks: None });
                self.reply("250 2.1.0 Sender OK");
            }
        }
        Ok(())
    }

    fn arg_error(&mut self, e: ArgError, address_reply: &str) {
        match e {
            ArgError::Address => self.reply(address_reply),
            ArgError::Mailbox(e) => {
                // The client hears the fixed reply; what was wrong goes to the debug log.
                tracing::debug!(reason = %e, "path refused");
                self.reply(address_reply)
            }
            ArgError::Syntax(text) => self.reply(&format!("501 5.5.2 {text}")),
            ArgError::Unsupported(p) => self.reply(&format!("555 5.5.4 Unsupported parameter {p}")),
            ArgError::Invalid(p) => self.reply(&format!("501 5.5.4 Invalid {p} parameter")),
        }
    }

    fn rcpt(&mut self, args: &str) {
        let Some(count) = self.txn.as_ref().map(|t| t.recipients.len()) else {
            self.reply("503 5.5.1 Need MAIL command");
            return;
        };
        let r = match command::parse_rcpt(args) {
            Ok(r) => r,
            Err(e) => return self.arg_error(e, "501 5.1.3 Invalid recipient address"),
        };
        if count >= self.settings().limits.max_recipients_per_message as usize {
            self.reply("452 4.5.3 Too many recipients");
            return;
        }
        let declared = self.txn.as_ref().is_some_and(|t| t.mail.smtputf8);
        if !declared && matches!(&r.to, Forward::Mailbox(address) if !address.is_ascii()) {
            self.reply("553 5.6.7 A non-ASCII address needs SMTPUTF8 on MAIL FROM");
            return;
        }
        let address = match r.to {
            Forward::Postmaster => match Address::postmaster_at(postmaster_domain(self.settings())) {
                Ok(address) => address,
                // The fqdn and the accepted domains were checked as host names at load.
                Err(e) => return self.arg_error(ArgError::Mailbox(e), "501 5.1.3 Invalid recipient address"),
            },
            Forward::Mailbox(address) => {
                let may_relay = self.settings().settings.allow_relay || self.user.is_some();
                if !may_relay && !is_accepted(address.domain(), &self.settings().accepted_domains) {
                    self.reply("550 5.7.1 Unable to relay");
                    return;
                }
                address.without_trailing_dot()
            }
        };
        let mut recipient = Recipient::new(address);
        recipient.notify = r.notify;
        recipient.orcpt = r.orcpt.map(Into::into);
        if let Some(t) = self.txn.as_mut() {
            t.recipients.push(recipient);
        }
        self.reply("250 2.1.5 Recipient OK");
    }

    async fn data(&mut self, args: &str) -> Result<(), Stop> {
        if !args.trim().is_empty() {
            self.reply("501 5.5.4 Syntax: DATA");
            return Ok(());
        }
        match &self.txn {
            None => {
                self.reply("503 5.5.1 Need MAIL command");
                return Ok(());
            }
            Some(t) if t.recipients.is_empty() => {
                self.reply("503 5.5.1 No valid recipients");
                return Ok(());
            }
            // RFC 3030 §2: one transaction, one way of sending its data.
            Some(t) if t.chunks.is_some() => {
                self.reply("503 5.5.1 DATA cannot follow BDAT in the same transaction");
                return Ok(());
            }
            Some(t) if t.mail.body == Some(Body::BinaryMime) => {
                self.reply("503 5.5.1 BODY=BINARYMIME data must be sent with BDAT");
                return Ok(());
            }
            Some(_) => {}
        }
        let mut staged = self.stage().await;
        let mut reader = DataReader::new(self.settings().limits.max_message_size);
        let mut chunk = Vec::with_capacity(READ_CHUNK);
        self.reply("354 Start mail input; end with <CRLF>.<CRLF>");
        self.flush().await?;
        loop {
            if !self.inbuf.is_empty() {
                let end = reader.feed(&self.inbuf, &mut chunk);
                match end {
                    Some(n) => drop(self.inbuf.drain(..n)),
                    None => self.inbuf.clear(),
                }
                if !chunk.is_empty() && !reader.failed() {
                    staged.write(&chunk).await;
                }
                chunk.clear();
                if end.is_some() {
                    break;
                }
            }
            // Each read of message data must come within the inactivity timeout.
            let deadline = Instant::now() + self.inactivity();
            self.read_more(deadline, false).await?;
        }
        let size = reader.size();
        let Some(txn) = self.txn.take() else { return Ok(()) };
        self.log(LogEvent::Received, &format!("<{size} bytes of message data>"));
        if let Err(e) = reader.finish() {
            self.refuse_data(e, size);
            return Ok(());
        }
        self.accept(txn, staged).await
    }

    /// `BDAT <size> [LAST]` (RFC 3030): the chunk's octets are read whatever
    /// the answer, so the next command is found where the client put it.
    async fn bdat(&mut self, args: &str) -> Result<(), Stop> {
        let Some((size, last)) = command::parse_bdat(args) else {
            // Where the chunk ends is unknown: its octets would be read as commands.
            self.txn = None;
            return Err(Stop::Close(
                "421 4.5.4 Syntax: BDAT <chunk-size> [LAST]; the chunk cannot be found, closing the connection".into(),
            ));
        };
        let refusal = if !self.settings().settings.chunking() {
            Some("502 5.5.1 BDAT is not offered here")
        } else {
            match &self.txn {
                None => Some("503 5.5.1 Need MAIL command"),
                Some(t) if t.recipients.is_empty() => Some("503 5.5.1 No valid recipients"),
                Some(_) => None,
            }
        };
        if refusal.is_none() && self.txn.as_ref().is_some_and(|t| t.chunks.is_none()) {
            let staged = self.stage().await;
            let binary = self.txn.as_ref().is_some_and(|t| t.mail.body == Some(Body::BinaryMime));
            let checker = ChunkChecker::new(self.settings().limits.max_message_size, binary);
            if let Some(t) = self.txn.as_mut() {
                t.chunks = Some(Chunked { staged, checker });
            }
        }
        let mut left = size;
        let mut failed = None;
        while left > 0 {
            if self.inbuf.is_empty() {
                self.flush().await?;
                let deadline = Instant::now() + self.inactivity();
                self.read_more(deadline, false).await?;
                continue;
            }
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(self.inbuf.len());
            let piece: Vec<u8> = self.inbuf.drain(..n).collect();
            left -= n as u64;
            let chunked = self.txn.as_mut().and_then(|t| t.chunks.as_mut()).filter(|_| refusal.is_none());
            if let Some(c) = chunked {
                failed = c.checker.feed(&piece);
                if failed.is_none() {
                    c.staged.write(&piece).await;
                }
            }
        }
        if let Some(r) = refusal {
            self.reply(r);
            return Ok(());
        }
        let Some(mut txn) = self.txn.take() else { return Ok(()) };
        let Some(chunked) = txn.chunks.take() else { return Ok(()) };
        let total = chunked.checker.size();
        if let Some(e) = failed {
            // RFC 3030 §2: the transaction fails; chunks that follow get 503.
            self.log(LogEvent::Received, &format!("<{total} bytes of message data, refused>"));
            self.refuse_data(e, total);
            return Ok(());
        }
        if !last {
            txn.chunks = Some(chunked);
            self.txn = Some(txn);
            self.reply(&format!("250 2.0.0 {size} octets received"));
            return Ok(());
        }
        self.log(LogEvent::Received, &format!("<{total} bytes of message data>"));
        if let Err(e) = chunked.checker.finish() {
            self.refuse_data(e, total);
            return Ok(());
        }
        self.accept(txn, chunked.staged).await
    }

    /// Starts a message's data (DATA or the first BDAT): a new id, our
    /// Received header written first, then the client's octets as they come.
    async fn stage(&mut self) -> Staged {
        let id = self.ctx.submit.next_id();
        let helo = self.helo.clone().unwrap_or_default();
        let id_text = id.to_string();
        let header = received::received_header(&Trace {
            helo: &helo,
            ip: self.ctx.remote.ip(),
            fqdn: self.fqdn(),
            esmtp: self.esmtp,
            tls: self.tls,
            authenticated: self.user.is_some(),
            smtputf8: self.txn.as_ref().is_some_and(|t| t.mail.smtputf8),
            id: &id_text,
            date: self.settings().clock.now(),
        });
        // The body goes to its writer as it arrives (to a spool file once large):
        // a session holds the header it must check, never the whole message.
        let header_len = header.len();
        let max_header = usize::try_from(self.settings().limits.max_header_size).unwrap_or(usize::MAX);
        let head_keep = header_len.saturating_add(max_header).saturating_add(2);
        let mut body = self.ctx.submit.body_writer(id, head_keep);
        let spool_error = body.write(&header).await.err();
        Staged { id, helo, header_len, body, spool_error }
    }

    /// The reply to data that must not be stored.
    fn refuse_data(&mut self, e: DataError, size: u64) {
        match e {
            DataError::BareLineEnd => {
                tracing::warn!(size, "message with bare CR or LF refused");
                self.reply("550 5.6.0 Bare CR or LF in message data refused");
            }
            DataError::Nul => self.reply("550 5.6.0 NUL character in message data refused"),
            DataError::TooBig => self.reply("552 5.3.4 Message size exceeds fixed maximum message size"),
        }
    }

    /// The whole data is in: the header checks, then the queue; `250` only
    /// once it is stored.
    async fn accept(&mut self, txn: Transaction, staged: Staged) -> Result<(), Stop> {
        let Staged { id, helo, header_len, body, spool_error } = staged;
        if let Some(e) = spool_error {
            tracing::error!(id = %id, error = %e, "cannot write the message body to the spool");
            self.reply("452 4.3.1 Insufficient system storage");
            return Ok(());
        }
        let info = received::scan_header(body.head().get(header_len..).unwrap_or_default());
        let (max_header, max_hops) = (self.settings().limits.max_header_size, self.settings().limits.max_hop_count);
        if info.size as u64 > max_header {
            self.reply("552 5.3.4 Header size exceeds fixed maximum size");
            return Ok(());
        }
        if info.received as u64 > u64::from(max_hops) {
            self.reply("554 5.4.6 Hop count exceeded - possible mail loop");
            return Ok(());
        }
        let data = match body.finish().await {
            Ok(data) => data,
            Err(e) => {
                tracing::error!(id = %id, error = %e, "cannot write the message body to the spool");
                self.reply("452 4.3.1 Insufficient system storage");
                return Ok(());
            }
        };
        let recipients = txn.recipients.len();
        let stored = data.len();
        let origin = Origin {
            connector: self.ctx.settings.connector.as_str().into(),
            client_ip: Some(self.ctx.remote.ip().to_canonical()),
            helo: helo.into(),
            tls: self.tls,
            source: Source::Smtp,
        };
        let mut envelope = Envelope::new(id, txn.mail.from, txn.recipients, data.len(), origin, 0);
        envelope.body_8bit = matches!(txn.mail.body, Some(Body::EightBitMime | Body::BinaryMime));
        envelope.binary_mime = txn.mail.body == Some(Body::BinaryMime);
        envelope.smtputf8 = txn.mail.smtputf8;
        envelope.requiretls = txn.mail.requiretls;
        envelope.ret = txn.mail.ret;
        envelope.envid = txn.mail.envid.map(Into::into);
        envelope.subject = info.subject.map(Into::into);
        envelope.internet_message_id = info.message_id.map(Into::into);
        let incoming = Incoming { envelope, data };
        match self.ctx.submit.submit(incoming).await {
            Ok(()) => {
                tracing::info!(id = %id, bytes = stored, recipients, "message queued");
                self.ctx.events.message_received(&self.ctx.settings.connector, stored, recipients);
                let text = format!("250 2.6.0 <{id}@{}> Queued mail for delivery", self.fqdn());
                self.reply(&text);
                Ok(())
            }
            Err(SubmitError::Storage(e)) => {
                tracing::error!(id = %id, error = %e, "cannot store message");
                self.reply("452 4.3.1 Insufficient system storage");
                Ok(())
            }
            Err(SubmitError::ShadowFailed(e)) => {
                tracing::warn!(id = %id, reason = %e, "message refused: no shadow copy could be made");
                self.reply("450 4.5.1 Unable to make a redundant copy of the message, try again later");
                Ok(())
            }
            Err(SubmitError::Unavailable(e)) => {
                tracing::info!(id = %id, reason = %e, "message refused: service not active");
                Err(Stop::Close("421 4.3.2 Service not active".into()))
            }
        }
    }

    async fn starttls(&mut self, args: &str) -> Result<(), Stop> {
        if !args.trim().is_empty() {
            self.reply("501 5.5.4 Syntax: STARTTLS");
            return Ok(());
        }
        let Some(acceptor) = self.settings().tls.clone() else {
            self.reply("502 5.5.1 Command not implemented");
            return Ok(());
        };
        if self.tls {
            self.reply("503 5.5.1 TLS already active");
            return Ok(());
        }
        self.reply("220 2.0.0 Ready to start TLS");
        self.flush().await?;
        // CVE-2011-0411: what the client sent after STARTTLS in the clear
        // must not be read as commands of the protected session.
        if !self.inbuf.is_empty() {
            tracing::warn!(bytes = self.inbuf.len(), "discarding input pipelined after STARTTLS");
            self.log(LogEvent::Info, &format!("discarded {} bytes sent after STARTTLS", self.inbuf.len()));
            self.inbuf.clear();
        }
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Closed) else { return Err(Stop::Gone) };
        let limit = self.inactivity().min(self.lifetime.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => {
                let (_, conn) = stream.get_ref();
                let detail = format!(
                    "TLS negotiated: {:?} {:?}",
                    conn.protocol_version().map(|v| v.as_str().unwrap_or("?")).unwrap_or("?"),
                    conn.negotiated_cipher_suite().map(|c| c.suite().as_str().unwrap_or("?")).unwrap_or("?"),
                );
                tracing::debug!("{detail}");
                self.log(LogEvent::Info, &detail);
                self.conn = Conn::Tls(Box::new(stream));
            }
            Ok(Err(e)) => {
                tracing::info!(error = %e, "TLS handshake failed");
                return Err(Stop::Gone);
            }
            Err(_) => {
                tracing::info!("TLS handshake timed out");
                return Err(Stop::Gone);
            }
        }
        // RFC 3207 §4.2: forget everything learnt before the handshake.
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.txn = None;
        self.user = None;
        Ok(())
    }

    /// One line of an AUTH exchange; `None` when the exchange is over (a
    /// reply was queued).
    async fn auth_line(&mut self, challenge: &str) -> Result<Option<String>, Stop> {
        self.reply(challenge);
        let line = match self.next_line(false).await? {
            Line::Command(l) => l,
            Line::TooLong => {
                self.reply("500 5.5.2 Line too long");
                return Ok(None);
            }
            Line::Invalid | Line::Ending => {
                self.reply("501 5.5.2 Cannot decode response");
                return Ok(None);
            }
        };
        self.log(LogEvent::Received, "****");
        if line == "*" {
            self.reply("501 5.0.0 Authentication canceled");
            return Ok(None);
        }
        Ok(Some(line))
    }

    async fn auth(&mut self, args: &str) -> Result<(), Stop> {
        if self.helo.is_none() || !self.esmtp {
            self.reply("503 5.5.1 Send EHLO first");
            return Ok(());
        }
        let Some(users_file) = self.settings().settings.auth.as_ref().map(|a| a.users_file.clone()) else {
            self.reply("502 5.5.1 Command not implemented");
            return Ok(());
        };
        if !self.tls {
            self.reply("538 5.7.11 Encryption required for requested authentication mechanism");
            return Ok(());
        }
        if self.user.is_some() {
            self.reply("503 5.5.1 Already authenticated");
            return Ok(());
        }
        if self.txn.is_some() {
            self.reply("503 5.5.1 Mail transaction in progress");
            return Ok(());
        }
        let (mechanism, initial) = match args.split_once(' ') {
            Some((m, i)) => (m, Some(i.to_string())),
            None => (args, None),
        };
        let credentials = match mechanism.to_ascii_uppercase().as_str() {
            "PLAIN" => {
                let response = match initial {
                    Some(r) => r,
                    None => match self.auth_line("334 ").await? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                decode_response(&response).map(|d| auth::parse_plain(&d))
            }
            "LOGIN" => {
                let user = match initial {
                    Some(r) => r,
                    None => match self.auth_line("334 VXNlcm5hbWU6").await? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                let Some(user) = decode_response(&user) else {
                    self.reply("501 5.5.2 Cannot decode response");
                    return Ok(());
                };
                let Some(password) = self.auth_line("334 UGFzc3dvcmQ6").await? else { return Ok(()) };
                decode_response(&password).map(|p| Some((user, p)))
            }
            _ => {
                self.reply("504 5.5.4 Unrecognized authentication type");
                return Ok(());
            }
        };
        let (user, password) = match credentials {
            None => {
                self.reply("501 5.5.2 Cannot decode response");
                return Ok(());
            }
            Some(None) => {
                self.reply("535 5.7.8 Authentication credentials invalid");
                return Ok(());
            }
            Some(Some(c)) => c,
        };
        let users = match Users::load(&users_file).await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "AUTH impossible");
                self.reply("454 4.7.0 Temporary authentication failure");
                return Ok(());
            }
        };
        if users.check(&user, &password) {
            let name = String::from_utf8_lossy(&user).into_owned();
            tracing::info!(user = %name, "authenticated");
            self.user = Some(name);
            self.reply("235 2.7.0 Authentication successful");
        } else {
            tracing::info!("authentication failed");
            self.reply("535 5.7.8 Authentication credentials invalid");
        }
        Ok(())
    }
}

/// A base64 AUTH response; `=` is the empty response (RFC 4954 §4).
fn decode_response(s: &str) -> Option<Vec<u8>> {
    if s == "=" {
        return Some(Vec::new());
    }
    auth::decode_base64(s)
}

/// Completes once the server asks open sessions to end (end_sessions or shutdown).
async fn wait_ending(gate: &mut watch::Receiver<Availability>, shutdown: &mut watch::Receiver<bool>) {
    let (mut gate_live, mut shutdown_live) = (true, true);
    loop {
        if gate.borrow_and_update().end_sessions || *shutdown.borrow_and_update() {
            return;
        }
        if !gate_live && !shutdown_live {
            // Nobody can ask any more.
            return std::future::pending().await;
        }
        tokio::select! {
            r = gate.changed(), if gate_live => gate_live = r.is_ok(),
            r = shutdown.changed(), if shutdown_live => shutdown_live = r.is_ok(),
        }
    }
}

/// What EHLO/HELO may name: a domain or an address literal. Also keeps the
/// Received header well-formed (no spaces, parentheses or control characters).
fn valid_helo(name: &str) -> bool {
    name.len() <= 255 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
}

/// The domain (as written in RCPT TO) is one of the accepted domains: compared in its
/// routed form (case, trailing dots and U-labels do not matter).
pub(crate) fn is_accepted(domain: &str, accepted: &[DomainPattern]) -> bool {
    let Some(domain) = crate::address::ascii_domain(domain) else { return false };
    accepted.iter().any(|pattern| pattern.matches(&domain))
}

/// `<Postmaster>` goes to the first plain accepted domain, else to our name.
fn postmaster_domain(s: &SessionSettings) -> &str {
    s.accepted_domains.iter().find_map(DomainPattern::exact).unwrap_or(&s.fqdn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_domain_matching() {
        let acc = |d: &str| DomainPattern::parse(d, false).unwrap();
        let list = [acc("local.test"), acc("*.corp.test")];
        for ok in ["local.test", "LOCAL.Test", "local.test.", "corp.test", "a.corp.test", "b.a.CORP.test."] {
            assert!(is_accepted(ok, &list), "{ok}");
        }
        for no in ["example.net", "xlocal.test", "sub.local.test", "xcorp.test", "[127.0.0.1]"] {
            assert!(!is_accepted(no, &list), "{no}");
        }
    }
}
