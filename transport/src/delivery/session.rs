//! One outbound SMTP session: connect, greet, STARTTLS, then transactions.
use super::commands::{Mail, Rcpt};
use super::framing::DotStuffer;
use super::reply::{first_reply_end, raw_line_text, response_text, Extensions};
use super::stream::{tapped, StreamHandle};
use super::{tls, ConnectOptions, DeliveryError, RecipientOutcome, ResultType, SendOutcome, TlsFailure};
use crate::config::OutboundTls;
use crate::envelope::Envelope;
use crate::logs::LogEvent;
use crate::queue::body::BodyReader;
use crate::routing::mx::HostAddress;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Quit, Rset, Starttls};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use rustls_pki_types::ServerName;
use std::fmt::Display;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// BDAT chunks (64 KB each) sent ahead of their replies when the hop offers
/// PIPELINING: enough to keep the line busy, few enough that the replies a
/// peer writes meanwhile fit its socket buffer.
const MAX_UNANSWERED_CHUNKS: usize = 16;

/// A reply that is part of the dialogue (any code); transport failures are
/// [`DeliveryError`]s instead.
enum Reply {
    Positive(Response),
    Negative { code: u16, text: String },
}

impl Reply {
    fn code(&self) -> u16 {
        match self {
            Reply::Positive(r) => u16::from(r.code()),
            Reply::Negative { code, .. } => *code,
        }
    }

    fn text(&self) -> String {
        match self {
            Reply::Positive(r) => response_text(r),
            Reply::Negative { text, .. } => text.clone(),
        }
    }

    /// The recipient outcome a refusal means (4xx, 421 included: try again;
    /// 5xx: fail).
    fn refusal(&self) -> RecipientOutcome {
        if self.code() >= 500 {
            RecipientOutcome::Permanent { reply: self.text() }
        } else {
            RecipientOutcome::Transient { reply: self.text() }
        }
    }
}

/// lettre reports 4xx/5xx replies as errors carrying the code and the
/// joined text; everything else it reports (I/O, parse, EOF) ends the session.
fn negative_reply(error: &lettre::transport::smtp::Error) -> Option<(u16, String)> {
    let code = u16::from(error.status()?);
    let text = std::error::Error::source(error).map(|s| s.to_string()).unwrap_or_default();
    let text = text.trim();
    Some((code, if text.is_empty() { code.to_string() } else { format!("{code} {text}") }))
}

/// The error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// The stage of a [`DeliveryError::Timeout`] in the TLS handshake.
pub(super) const TLS_HANDSHAKE: &str = "TLS handshake";

/// The name TLS checks: a host name, else the address connected to.
fn server_name(host: String, target: &HostAddress) -> ServerName<'static> {
    ServerName::try_from(host).unwrap_or(ServerName::IpAddress(target.addr.ip().into()))
}

fn client_id(helo_name: &str) -> ClientId {
    match helo_name.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ClientId::Ipv4(ip),
        Ok(IpAddr::V6(ip)) => ClientId::Ipv6(ip),
        Err(_) => ClientId::Domain(helo_name.to_string()),
    }
}

/// An open, greeted (and possibly TLS) session to a next hop.
pub struct OutboundSession {
    conn: AsyncSmtpConnection,
    stream: StreamHandle,
    remote: String,
    ext: Extensions,
    opts: ConnectOptions,
    reusable: bool,
    /// A transaction was started on this session: RSET before the next one.
    used: bool,
    closed: bool,
    /// TLS is up and the certificate's chain and name were verified (DomainValidation):
    /// what a REQUIRETLS message needs (RFC 8689 §4.2.1).
    verified_name: bool,
    /// Why this session falls short of `opts.policy_audit` (see [`Self::policy_shortfall`]).
    shortfall: Option<TlsFailure>,
    /// Why this session stays in clear text (no STARTTLS offered, refused, TLS off).
    clear: Option<TlsFailure>,
    /// This server's address on the connection.
    local_ip: Option<std::net::IpAddr>,
}

impl OutboundSession {
    pub async fn connect(target: &HostAddress, opts: &ConnectOptions) -> Result<OutboundSession, DeliveryError> {
        let remote = format!("{} [{}]", target.host, target.addr);
        let started = Instant::now();
        let tcp = match timeout(opts.connect_timeout, TcpStream::connect(target.addr)).await {
            Err(_) => return Err(DeliveryError::Timeout { addr: remote, stage: "connect" }),
            Ok(Err(e)) => return Err(DeliveryError::Connect { addr: remote, reason: e.to_string() }),
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let local_ip = tcp.local_addr().ok().map(|a| a.ip());
        // connect_timeout covers the banner too: wait for its first bytes here,
        // so that lettre's greeting (banner, EHLO) only waits for the EHLO reply.
        let left = opts.connect_timeout.saturating_sub(started.elapsed());
        match timeout(left, tcp.peek(&mut [0u8; 1])).await {
            Err(_) => return Err(DeliveryError::Timeout { addr: remote, stage: "banner" }),
            Ok(Err(e)) => return Err(DeliveryError::Broken { addr: remote, reason: e.to_string() }),
            Ok(Ok(0)) => {
                return Err(DeliveryError::Broken { addr: remote, reason: "closed before the banner".to_string() })
            }
            Ok(Ok(_)) => {}
        }

        let (stream, handle) = tapped(tcp, target.addr, opts.tap.clone());
        handle.note(LogEvent::Connect, &remote);
        let helo = client_id(&opts.helo_name);
        let conn =
            match timeout(opts.command_timeout, AsyncSmtpConnection::connect_with_transport(Box::new(stream), &helo))
                .await
            {
                Err(_) => {
                    handle.note(LogEvent::Disconnect, &remote);
                    let stage = if handle.lines_received() == 0 { "banner" } else { "EHLO" };
                    return Err(DeliveryError::Timeout { addr: remote, stage });
                }
                Ok(Err(e)) => {
                    handle.note(LogEvent::Disconnect, &remote);
                    return Err(match negative_reply(&e) {
                        Some((_, reply)) => DeliveryError::Refused { addr: remote, reply },
                        None => DeliveryError::Broken { addr: remote, reason: error_chain(&e) },
                    });
                }
                Ok(Ok(conn)) => conn,
            };
        // lettre keeps only the keywords it knows; read DSN, SIZE... from the
        // raw reply lines: the banner reply, then the EHLO reply.
        let lines = handle.take_lines();
        let ehlo = first_reply_end(&lines).map(|end| &lines[end..]).unwrap_or(&[]);
        let ext = Extensions::parse(ehlo.iter().map(|l| raw_line_text(l)));

        let mut session = OutboundSession {
            conn,
            stream: handle,
            remote,
            ext,
            opts: opts.clone(),
            reusable: true,
            used: false,
            closed: false,
            verified_name: false,
            shortfall: None,
            clear: None,
            local_ip,
        };
        session.negotiate_tls(target, &helo).await?;
        tracing::debug!(remote = %session.remote, dsn = session.ext.dsn, "outbound session open");
        Ok(session)
    }

    /// STARTTLS when offered (unless tls is None), then EHLO again.
    async fn negotiate_tls(&mut self, target: &HostAddress, helo: &ClientId) -> Result<(), DeliveryError> {
        if self.opts.tls == OutboundTls::None {
            self.stay_in_clear("TLS is off on this send connector (tls: None)".to_string());
            return Ok(());
        }
        if !self.ext.starttls {
            if self.opts.tls == OutboundTls::Required || self.opts.certificate_check.required() {
                self.close_politely().await;
                return Err(self.starttls_error("TLS is required but the peer does not offer STARTTLS".to_string()));
            }
            self.stay_in_clear("the peer does not offer STARTTLS".to_string());
            return Ok(());
        }
        let before = self.stream.lines_received();
        let reply = self.exchange(Starttls, "STARTTLS", self.opts.command_timeout).await?;
        match &reply {
            Reply::Positive(r) if u16::from(r.code()) == 220 => {}
            Reply::Negative { code: 421, text } => {
                self.reusable = false;
                return Err(DeliveryError::Refused { addr: self.remote.clone(), reply: text.clone() });
            }
            Reply::Negative { text, .. }
                if self.opts.tls == OutboundTls::Opportunistic && !self.opts.certificate_check.required() =>
            {
                // RFC 3207 §4: after a refused STARTTLS the session goes on in clear.
                self.stream.note(LogEvent::Info, &format!("STARTTLS refused ({text}); continuing without TLS"));
                self.stay_in_clear(format!("STARTTLS was refused ({text})"));
                return Ok(());
            }
            other => {
                let text = other.text();
                self.close_politely().await;
                return Err(self.starttls_error(format!("STARTTLS answered {text}")));
            }
        }
        // Anything the peer sent after its 220 would be read as if it came
        // over TLS (the STARTTLS command injection of CVE-2011-0411).
        let reply_lines = match &reply {
            Reply::Positive(r) => r.message().count().max(1) as u64,
            Reply::Negative { .. } => 1,
        };
        if self.stream.lines_received() > before + reply_lines || self.stream.has_partial_line() {
            self.reusable = false;
            return Err(self.starttls_error("the peer sent data after its STARTTLS reply".to_string()));
        }
        let check = &self.opts.certificate_check;
        let connector = tls::connector(check)
            .map_err(|reason| self.tls_error(TlsFailure::new(ResultType::ValidationFailure, reason)))?;
        // DomainValidation with tlsDomain checks that name; else the host we connected to.
        let host = check.domain().unwrap_or(&target.host).to_string();
        let name = server_name(host, target);
        match timeout(self.opts.command_timeout, self.stream.start_tls(connector, name)).await {
            Err(_) => {
                self.reusable = false;
                return Err(DeliveryError::Timeout { addr: self.remote.clone(), stage: TLS_HANDSHAKE });
            }
            Ok(Err(e)) => {
                self.reusable = false;
                return Err(self.tls_error(TlsFailure::of_handshake(&e)));
            }
            Ok(Ok(description)) => {
                // DANE authenticates the MX host as well (RFC 8689 §4.2.1 accepts either).
                self.verified_name = matches!(
                    self.opts.certificate_check,
                    tls::CertificateCheck::Domain { .. } | tls::CertificateCheck::Dane(_)
                );
                self.stream.note(LogEvent::Info, &format!("TLS negotiated: {description}"));
                self.audit_certificate(target);
            }
        }
        // RFC 3207 §4.2: forget what was announced in clear; ask again.
        match self.exchange(Ehlo::new(helo.clone()), "EHLO", self.opts.command_timeout).await? {
            Reply::Positive(r) => {
                self.ext = Extensions::parse(r.message());
                Ok(())
            }
            Reply::Negative { text, .. } => {
                self.reusable = false;
                Err(DeliveryError::Refused { addr: self.remote.clone(), reply: text })
            }
        }
    }

    /// With `opts.policy_audit`: checks the certificate the peer showed against it, and
    /// records why it does not pass.
    fn audit_certificate(&mut self, target: &HostAddress) {
        let Some(check) = &self.opts.policy_audit else { return };
        let name = server_name(check.domain().unwrap_or(&target.host).to_string(), target);
        if let Err(failure) = tls::verify(check, &self.stream.peer_certificates(), &name) {
            self.fall_short(failure);
        }
    }

    /// Records why the session does not meet `opts.policy_audit` (only with one).
    fn fall_short(&mut self, failure: TlsFailure) {
        if self.opts.policy_audit.is_some() {
            self.shortfall.get_or_insert(failure);
        }
    }

    /// The session goes on in clear text, for `reason`.
    fn stay_in_clear(&mut self, reason: String) {
        let failure = TlsFailure::new(ResultType::StarttlsNotSupported, reason);
        self.clear = Some(failure.clone());
        self.fall_short(failure);
    }

    /// Why the session is in clear text; None when TLS is up.
    pub fn in_clear(&self) -> Option<&TlsFailure> {
        self.clear.as_ref()
    }

    /// This server's address on the connection (RFC 8460 sending-mta-ip).
    pub fn local_ip(&self) -> Option<std::net::IpAddr> {
        self.local_ip
    }

    /// Why this session would have failed `opts.policy_audit` (no STARTTLS, STARTTLS
    /// refused, a certificate that does not pass): the session itself went on.
    pub fn policy_shortfall(&self) -> Option<&TlsFailure> {
        self.shortfall.as_ref()
    }

    fn tls_error(&self, failure: TlsFailure) -> DeliveryError {
        DeliveryError::Tls { addr: self.remote.clone(), failure, local: self.local_ip }
    }

    /// STARTTLS missing, refused or abused: RFC 8460's `starttls-not-supported`.
    fn starttls_error(&self, reason: String) -> DeliveryError {
        self.tls_error(TlsFailure::new(ResultType::StarttlsNotSupported, reason))
    }

    /// `host [addr]` of the peer, for logs and Remote-MTA.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// Sends a command and reads its reply within `wait`. A reply of any code
    /// is a [`Reply`]; a broken connection or a timeout ends the session.
    async fn exchange<C: Display>(
        &mut self,
        command: C,
        stage: &'static str,
        wait: Duration,
    ) -> Result<Reply, DeliveryError> {
        let result = timeout(wait, self.conn.command(command)).await;
        self.reply_of(result, stage)
    }

    /// Reads the next reply (of a command written with [`Self::write_raw`]).
    async fn read_reply(&mut self, stage: &'static str, wait: Duration) -> Result<Reply, DeliveryError> {
        let result = timeout(wait, self.conn.read_response()).await;
        self.reply_of(result, stage)
    }

    fn reply_of(
        &mut self,
        result: Result<Result<Response, lettre::transport::smtp::Error>, tokio::time::error::Elapsed>,
        stage: &'static str,
    ) -> Result<Reply, DeliveryError> {
        match result {
            Err(_) => {
                self.reusable = false;
                Err(DeliveryError::Timeout { addr: self.remote.clone(), stage })
            }
            Ok(Ok(response)) => Ok(Reply::Positive(response)),
            Ok(Err(e)) => match negative_reply(&e) {
                Some((code, text)) => {
                    if code == 421 {
                        // RFC 5321 §3.8: the server is closing the channel.
                        self.reusable = false;
                    }
                    Ok(Reply::Negative { code, text })
                }
                None => {
                    self.reusable = false;
                    Err(DeliveryError::Broken {
                        addr: self.remote.clone(),
                        reason: format!("{stage}: {}", error_chain(&e)),
                    })
                }
            },
        }
    }

    /// Writes commands (or data) in one write; lettre reads the replies.
    async fn write_raw(&mut self, bytes: &[u8], stage: &'static str) -> Result<(), DeliveryError> {
        match timeout(self.opts.command_timeout, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.reusable = false;
                Err(DeliveryError::Broken { addr: self.remote.clone(), reason: format!("{stage}: {e}") })
            }
            Err(_) => {
                self.reusable = false;
                Err(DeliveryError::Timeout { addr: self.remote.clone(), stage })
            }
        }
    }

    /// After a 354: the message, dot-stuffed and terminated, a chunk at a
    /// time, then the reply to the final dot. The transaction is over whatever
    /// that says.
    async fn send_data(&mut self, body: &mut BodyReader) -> Result<Reply, DeliveryError> {
        self.stream.set_quiet_writes(true);
        let written = self.write_body(body).await;
        self.stream.set_quiet_writes(false);
        written?;
        // The connector's inactivity timeout (default 10 minutes, RFC 5321
        // §4.5.3.2.6's wait for the reply after the data) bounds this too.
        let reply = self.read_reply("end of data", self.opts.command_timeout).await?;
        // RFC 5321 §4.1.1.4: the end of data completes the transaction.
        self.used = false;
        Ok(reply)
    }

    async fn write_body(&mut self, body: &mut BodyReader) -> Result<(), DeliveryError> {
        let mut stuffer = DotStuffer::default();
        let mut framed = Vec::new();
        // One chunk read ahead, so that the last one goes out in the same write
        // as the final dot (a small message stays one write, as it always was).
        let mut next = self.read_chunk(body).await?;
        while let Some(chunk) = next {
            framed.clear();
            stuffer.push(&chunk, &mut framed);
            next = self.read_chunk(body).await?;
            if next.is_some() {
                self.write_raw(&framed, "message data").await?;
            }
        }
        stuffer.finish(&mut framed);
        self.write_raw(&framed, "message data").await
    }

    async fn read_chunk(&mut self, body: &mut BodyReader) -> Result<Option<Vec<u8>>, DeliveryError> {
        body.next_chunk().await.map_err(|e| {
            // Our own storage failed mid-message: the peer must not take a
            // truncated message, so the connection goes unfinished.
            self.reusable = false;
            DeliveryError::Broken { addr: self.remote.clone(), reason: format!("reading the queued message: {e}") }
        })
    }

    /// Send one message to the given recipients (indexes into the envelope;
    /// indexes out of range are ignored).
    ///
    /// `body` is the message as stored (CRLF line ends, not dot-stuffed);
    /// it is dot-stuffed a chunk at a time on the way out. MAIL, RCPT and DATA go in one
    /// write when the hop offers PIPELINING (RFC 2920), one by one otherwise.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        recipients: &[usize],
        body: &mut BodyReader,
    ) -> Result<SendOutcome, DeliveryError> {
        let dsn = self.ext.dsn;
        let wanted: Vec<usize> = recipients.iter().copied().filter(|&i| i < envelope.recipients.len()).collect();
        if !self.reusable {
            return Err(DeliveryError::Broken {
                addr: self.remote.clone(),
                reason: "the session can no longer be used".to_string(),
            });
        }
        if wanted.is_empty() {
            return Ok(SendOutcome { recipients: Vec::new(), dsn_passed: dsn });
        }
        let all = |outcome: RecipientOutcome| wanted.iter().map(|&i| (i, outcome.clone())).collect::<Vec<_>>();
        let command_timeout = self.opts.command_timeout;
        let non_ascii = envelope.mail_from.as_ref().is_some_and(|a| !a.is_ascii())
            || wanted.iter().any(|&i| !envelope.recipients[i].address.is_ascii());
        // Decided before anything is said to the peer (no RSET for a message that cannot go).
        if let Some(reply) = self.cannot_carry(envelope, non_ascii) {
            return Ok(SendOutcome { recipients: all(RecipientOutcome::Permanent { reply }), dsn_passed: dsn });
        }

        if self.used {
            // The last transaction did not end with the final dot: reset it.
            let reply = self.exchange(Rset, "RSET", command_timeout).await?;
            if !matches!(reply, Reply::Positive(_)) {
                // A peer that refuses RSET is in no state to take mail.
                self.reusable = false;
                return Ok(SendOutcome {
                    recipients: all(RecipientOutcome::Transient { reply: reply.text() }),
                    dsn_passed: dsn,
                });
            }
        }
        let utf8 = envelope.smtputf8 || non_ascii;
        self.used = true;
        let chunking = self.ext.chunking;

        let mail = Mail {
            from: envelope.mail_from.as_ref(),
            size: self.ext.size.map(|_| body.len()),
            body_8bit: envelope.body_8bit && self.ext.eight_bit_mime,
            binary_mime: envelope.binary_mime,
            requiretls: envelope.requiretls,
            smtputf8: utf8,
            ret: if dsn { envelope.ret } else { None },
            envid: if dsn { envelope.envid.as_deref() } else { None },
        };
        let pipelining = self.ext.pipelining;
        if pipelining {
            let mut commands = mail.to_string();
            for &index in &wanted {
                commands.push_str(&Rcpt { recipient: &envelope.recipients[index], dsn }.to_string());
            }
            if !chunking {
                commands.push_str("DATA\r\n");
            }
            self.write_raw(commands.as_bytes(), "MAIL").await?;
        }
        let reply = if pipelining {
            self.read_reply("MAIL", command_timeout).await?
        } else {
            self.exchange(mail, "MAIL", command_timeout).await?
        };
        if !matches!(reply, Reply::Positive(_)) {
            if pipelining && self.reusable {
                // The RCPT and DATA replies still come (refusals: no transaction).
                for _ in &wanted {
                    self.read_reply("RCPT", command_timeout).await?;
                }
                if !chunking {
                    self.after_refused_data(command_timeout).await?;
                }
            }
            self.used = false;
            return Ok(SendOutcome { recipients: all(reply.refusal()), dsn_passed: dsn });
        }

        let mut outcomes: Vec<(usize, Option<RecipientOutcome>)> = Vec::with_capacity(wanted.len());
        let mut closing: Option<String> = None;
        for &index in &wanted {
            if closing.is_some() {
                // After a 421 the server closes the connection: no more replies.
                break;
            }
            let reply = if pipelining {
                self.read_reply("RCPT", command_timeout).await?
            } else {
                let rcpt = Rcpt { recipient: &envelope.recipients[index], dsn };
                self.exchange(rcpt, "RCPT", command_timeout).await?
            };
            match reply {
                Reply::Positive(_) => outcomes.push((index, None)),
                Reply::Negative { code: 421, ref text } => {
                    closing.get_or_insert_with(|| text.clone());
                }
                refused => outcomes.push((index, Some(refused.refusal()))),
            }
        }
        if let Some(text) = closing {
            // The server is going away: nothing of this transaction was taken,
            // try every recipient again later.
            let outcome = RecipientOutcome::Transient { reply: text };
            return Ok(SendOutcome { recipients: all(outcome), dsn_passed: dsn });
        }
        let finish = |outcomes: Vec<(usize, Option<RecipientOutcome>)>, accepted: RecipientOutcome| SendOutcome {
            recipients: outcomes.into_iter().map(|(i, o)| (i, o.unwrap_or_else(|| accepted.clone()))).collect(),
            dsn_passed: dsn,
        };

        if outcomes.iter().all(|(_, o)| o.is_some()) {
            // No recipient accepted: end the transaction, the session stays usable.
            if pipelining && !chunking {
                self.after_refused_data(command_timeout).await?;
            }
            if self.used && self.reusable {
                let reply = self.exchange(Rset, "RSET", command_timeout).await;
                if !matches!(reply, Ok(Reply::Positive(_))) {
                    self.reusable = false;
                }
            }
            self.used = false;
            let recipients = outcomes.into_iter().filter_map(|(i, o)| o.map(|o| (i, o))).collect();
            return Ok(SendOutcome { recipients, dsn_passed: dsn });
        }

        let reply =
            if chunking { self.send_chunks(body).await? } else { self.send_data_command(body, pipelining).await? };
        let reply = match reply {
            Ok(reply) => reply,
            Err(refused) => return Ok(finish(outcomes, refused)),
        };
        let outcome = match &reply {
            Reply::Positive(r) if u16::from(r.code()) < 300 => RecipientOutcome::Delivered { reply: reply.text() },
            Reply::Positive(_) => {
                self.reusable = false;
                RecipientOutcome::Transient { reply: reply.text() }
            }
            Reply::Negative { .. } => reply.refusal(),
        };
        tracing::debug!(remote = %self.remote, reply = %reply.text(), chunking, "message sent");
        Ok(finish(outcomes, outcome))
    }

    /// Why this hop cannot take the message as it is — it lacks an extension the
    /// message needs, and nothing is downgraded: the permanent reply, else `None`.
    fn cannot_carry(&self, envelope: &Envelope, non_ascii: bool) -> Option<String> {
        if envelope.binary_mime && !(self.ext.chunking && self.ext.binary_mime) {
            // RFC 3030 §3: binary data cannot go with DATA, and converting it is not ours to do.
            return Some(format!(
                "554 5.6.3 {} does not offer BINARYMIME with CHUNKING, which this message needs",
                self.remote
            ));
        }
        if envelope.requiretls && !(self.verified_name && self.ext.requiretls) {
            let why = if self.verified_name {
                format!("{} does not offer REQUIRETLS", self.remote)
            } else {
                format!(
                    "the connection to {} is not TLS with a verified certificate name (send connector tlsAuthLevel: \
                     DomainValidation, or an MTA-STS policy in enforce mode)",
                    self.remote
                )
            };
            return Some(format!("550 5.7.10 REQUIRETLS support required: {why}"));
        }
        if (envelope.smtputf8 || non_ascii) && !self.ext.smtputf8 {
            // RFC 6531 §3.2: no downgrade (it would mangle the addresses or the header).
            return Some(if non_ascii {
                format!("553 5.6.7 {} does not offer SMTPUTF8, which a non-ASCII address needs", self.remote)
            } else {
                format!("554 5.6.9 {} does not offer SMTPUTF8, which this message's UTF-8 header needs", self.remote)
            });
        }
        None
    }

    /// DATA (already sent when pipelining), then the message: the reply to
    /// its end, or `Err` with the outcome of a DATA that was not answered 354.
    async fn send_data_command(
        &mut self,
        body: &mut BodyReader,
        pipelining: bool,
    ) -> Result<Result<Reply, RecipientOutcome>, DeliveryError> {
        let command_timeout = self.opts.command_timeout;
        let reply = if pipelining {
            self.read_reply("DATA", command_timeout).await?
        } else {
            self.exchange(Data, "DATA", command_timeout).await?
        };
        match &reply {
            Reply::Positive(r) if u16::from(r.code()) == 354 => {}
            Reply::Positive(_) => {
                // Not an invitation to send data: the dialogue is out of step.
                self.reusable = false;
                return Ok(Err(RecipientOutcome::Transient { reply: reply.text() }));
            }
            Reply::Negative { .. } => return Ok(Err(reply.refusal())),
        }
        self.send_data(body).await.map(Ok)
    }

    /// The message in BDAT chunks (RFC 3030), as stored: no dot-stuffing, the
    /// last chunk marked LAST. With PIPELINING up to [`MAX_UNANSWERED_CHUNKS`]
    /// chunks go out before their replies are read; without, each waits for
    /// its reply. Returns the first refusal of a chunk, else the reply to LAST.
    async fn send_chunks(&mut self, body: &mut BodyReader) -> Result<Result<Reply, RecipientOutcome>, DeliveryError> {
        // Chunks sent whose reply has not been read yet: all of them up to a
        // bound with PIPELINING, none without.
        let window = if self.ext.pipelining { MAX_UNANSWERED_CHUNKS } else { 0 };
        let wait = self.opts.command_timeout;
        let mut sent = 0usize;
        let mut refused: Option<Reply> = None;
        self.stream.set_quiet_writes(true);
        let mut next = self.read_chunk(body).await;
        let written: Result<(), DeliveryError> = async {
            loop {
                let chunk = std::mem::replace(&mut next, Ok(None))?.unwrap_or_default();
                next = self.read_chunk(body).await;
                let last = matches!(next, Ok(None));
                let command = format!("BDAT {}{}", chunk.len(), if last { " LAST" } else { "" });
                // The writes are quiet (no message data in the log): the command is noted itself.
                self.stream.note(LogEvent::Sent, &command);
                let mut framed = format!("{command}\r\n").into_bytes();
                framed.extend_from_slice(&chunk);
                self.write_raw(&framed, "BDAT").await?;
                sent += 1;
                if last {
                    return Ok(());
                }
                // A peer whose replies we do not read stops reading our chunks.
                while sent > window {
                    let reply = self.read_reply("BDAT", wait).await?;
                    sent -= 1;
                    if !matches!(reply, Reply::Positive(_)) {
                        refused = Some(reply);
                        // The transaction failed; no further chunk (RFC 3030 §2).
                        return Ok(());
                    }
                }
            }
        }
        .await;
        self.stream.set_quiet_writes(false);
        written?;
        // The replies still owed, in order: a chunk refused ends the transaction.
        let mut final_reply = None;
        for _ in 0..sent {
            let reply = self.read_reply("BDAT", wait).await?;
            if refused.is_none() && !matches!(reply, Reply::Positive(_)) {
                refused = Some(reply);
            } else {
                final_reply = Some(reply);
            }
        }
        self.used = false;
        match (refused, final_reply) {
            (Some(reply), _) => Ok(Err(reply.refusal())),
            (None, Some(reply)) => Ok(Ok(reply)),
            // A chunk refused without pipelining: nothing more was sent.
            (None, None) => Err(DeliveryError::Broken { addr: self.remote.clone(), reason: "no reply to BDAT".into() }),
        }
    }

    /// The reply to a pipelined DATA after MAIL or every RCPT was refused. It
    /// should be a refusal; a server that says 354 anyway gets an empty message
    /// ended at once (it has no recipient to deliver it to), and the session is
    /// not trusted with another transaction.
    async fn after_refused_data(&mut self, wait: Duration) -> Result<(), DeliveryError> {
        let reply = self.read_reply("DATA", wait).await?;
        if matches!(&reply, Reply::Positive(r) if u16::from(r.code()) == 354) {
            self.write_raw(b".\r\n", "end of data").await?;
            self.read_reply("end of data", wait).await?;
            self.reusable = false;
            self.used = false;
        }
        Ok(())
    }

    /// False once the peer closed, said 421, or a transaction broke.
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// QUIT and close (errors ignored: the work is done).
    pub async fn quit(mut self) {
        self.close_politely().await;
    }

    async fn close_politely(&mut self) {
        if self.closed {
            return;
        }
        if self.reusable {
            let _ = timeout(self.opts.command_timeout, self.conn.command(Quit)).await;
        }
        let _ = timeout(self.opts.command_timeout, self.stream.shutdown()).await;
        self.reusable = false;
        self.closed = true;
        self.stream.note(LogEvent::Disconnect, &self.remote);
    }
}

impl Drop for OutboundSession {
    fn drop(&mut self) {
        if !self.closed {
            self.stream.note(LogEvent::Disconnect, &self.remote);
        }
    }
}
