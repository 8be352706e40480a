//! Connection workers: each one resolves its queue's next hop, connects, then
//! sends ready items over that connection until none is left (waiting a moment
//! for more, so bursts reuse connections). A failed connection puts the queue
//! in Retry on the docs/design.md §4 schedule; every attempt is written to the
//! connectivity log.
use super::state::{QueueId, QueueState, Timer};
use super::QueueManager;
use crate::api::TrackingEvent;
use crate::config::OutboundTls;
use crate::delivery::tls_report::Reported;
use crate::delivery::{
    self, CertificateCheck, ConnectOptions, OutboundSession, ProtocolTap, RecipientOutcome, SendOutcome,
};
use crate::envelope::{Envelope, MessageId, Notify, RecipientStatus};
use crate::logs::{LogEvent, ProtocolSession, TrackingSource};
use crate::queue::retry::connection_retry_interval;
use crate::routing::{DeliveryType, NextHop};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn, Instrument};

use crate::config::settings::{
    SEND_CONNECTION_INACTIVITY_TIMEOUT, SEND_CONNECTION_TIMEOUT, SEND_MAX_CONCURRENT_CONNECTIONS,
};
/// A connection sends its next message without waiting for the commit that
/// records the last one delivered, but never runs more than this many
/// unrecorded deliveries ahead: after a crash, what a connection may deliver
/// twice is bounded by this plus the one in flight.
pub const MAX_UNCONFIRMED_DELIVERIES: usize = 4;
/// An open connection waits this long for more work before it says QUIT.
const IDLE_KEEP: Duration = Duration::from_secs(2);

/// One outbound connection's place under maxOutboundConnections, given back
/// when its worker ends however it ends (a panic included).
struct OutboundSlot(QueueManager);

impl Drop for OutboundSlot {
    fn drop(&mut self) {
        self.0.release_outbound();
    }
}

/// Writes an outbound session's lines to the Send protocol log.
struct SendTap(ProtocolSession);

impl ProtocolTap for SendTap {
    fn line(&self, event: LogEvent, data: &str) {
        self.0.record(event, data, "");
    }
}

impl QueueManager {
    /// Opens connections for a delivery queue that has ready work, up to its
    /// limit: one probe until a connection to the hop has worked (a new
    /// queue, or one in Retry), and never more than maxOutboundConnections
    /// over all queues (a queue left short waits its turn).
    pub(super) fn kick_locked(&self, state: &mut QueueState, qid: QueueId) {
        if !matches!(qid, QueueId::Delivery(_)) || !self.inner.gate.now().delivery {
            return;
        }
        let config = self.config();
        let now = self.now_ms();
        let QueueState { queues, outbound, outbound_waiting, .. } = state;
        let Some(q) = queues.get_mut(&qid) else { return };
        if q.suspended || q.ready.is_empty() {
            return;
        }
        if q.retry.next_retry_ms.is_some_and(|t| t > now) {
            return;
        }
        let Some(hop) = q.hop.clone() else { return };
        let limit = if !q.proven {
            1
        } else {
            hop.connector
                .as_deref()
                .and_then(|c| config.router.connector(c))
                .map_or(SEND_MAX_CONCURRENT_CONNECTIONS.default(), |c| c.max_concurrent_connections_or_default())
        };
        let want = limit.min(q.ready.len() as u32);
        while q.connections < want {
            if *outbound >= config.max_outbound_connections {
                if !q.waiting_outbound {
                    q.waiting_outbound = true;
                    outbound_waiting.push_back(qid);
                    // An idle connection of another queue makes room.
                    self.inner.slot_wanted.notify_one();
                }
                break;
            }
            *outbound += 1;
            q.connections += 1;
            q.connecting += 1;
            let slot = OutboundSlot(self.clone());
            let span = tracing::info_span!("delivery", queue = %qid, next_hop = %hop);
            tokio::spawn(
                async move {
                    slot.0.clone().run_worker(qid).await;
                    drop(slot);
                }
                .instrument(span),
            );
        }
    }

    /// A connection ended: its place goes to the queues waiting for one.
    fn release_outbound(&self) {
        let mut state = self.state();
        state.outbound = state.outbound.saturating_sub(1);
        self.admit_waiting_locked(&mut state);
    }

    /// Queues waiting for outbound connections get the free places, in turn.
    pub(super) fn admit_waiting_locked(&self, state: &mut QueueState) {
        let config = self.config();
        // Each queue once at most: one that cannot use a place now (nothing
        // ready, suspended, waiting for its retry time) leaves the line.
        let mut turns = state.outbound_waiting.len();
        while turns > 0 && state.outbound < config.max_outbound_connections {
            turns -= 1;
            let Some(qid) = state.outbound_waiting.pop_front() else { break };
            if let Some(q) = state.queues.get_mut(&qid) {
                q.waiting_outbound = false;
                self.kick_locked(state, qid);
            }
        }
    }

    pub(super) fn kick_all(&self) {
        let mut state = self.state();
        let ids: Vec<QueueId> = state.queues.keys().copied().collect();
        for qid in ids {
            self.kick_locked(&mut state, qid);
        }
    }

    async fn run_worker(self, qid: QueueId) {
        let config = self.config();
        let (hop, length) = {
            let state = self.state();
            match state.queues.get(&qid).and_then(|q| q.hop.clone().map(|h| (h, q.items.len()))) {
                Some(x) => x,
                None => return,
            }
        };
        let connector = hop.connector.as_deref().and_then(|c| config.router.connector(c)).cloned();
        let log = self.inner.logs.connectivity.session("SMTP", &hop.next_hop_domain);
        log.connect(&format!("{:?} {};QueueLength={length}", hop.delivery_type, hop.next_hop_domain));
        let targets = match delivery::resolve_targets(&config.resolver, &hop, connector.as_ref()).await {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => {
                let reason = format!("no address found for {}", hop.next_hop_domain);
                log.disconnect(&format!("Messages: 0 Bytes: 0 (Retry : {reason})"));
                self.connection_failed(qid, reason);
                return;
            }
            Err(e) if e.is_permanent() => {
                warn!(event_id = 2000, next_hop = %hop, error = %e, "SmtpSendDnsConnectionFailure: permanent DNS failure");
                log.disconnect(&format!("Messages: 0 Bytes: 0 (Failed : {e})"));
                self.connection_failed_permanently(qid, e.reply()).await;
                return;
            }
            Err(e) => {
                warn!(event_id = 2000, next_hop = %hop, error = %e, "SmtpSendDnsConnectionFailure");
                log.disconnect(&format!("Messages: 0 Bytes: 0 (Retry : {e})"));
                self.connection_failed(qid, e.to_string());
                return;
            }
        };
        let found: Vec<String> = targets.iter().map(|t| format!("{}[{}]", t.host, t.addr.ip())).collect();
        log.send(&found.join(","));
        // RFC 8461: the MX hosts the domain's policy allows, and what their connections must prove.
        let sts = config.mta_sts.enforcement(&config.resolver, &hop, connector.as_ref()).await;
        // RFC 7672: the MX hosts' TLSA records; where they apply, MTA-STS does not (RFC 8461 §2).
        let planned = match sts.select(targets, &log) {
            Ok(targets) => match config.dane.plan(&hop, connector.as_ref(), &targets).await {
                Ok(plan) => plan.select(targets).map(|targets| (targets, plan)),
                Err(reason) => Err(reason),
            },
            Err(reason) => Err(reason),
        };
        let (targets, dane) = match planned {
            Ok(planned) => planned,
            Err(reason) => {
                warn!(event_id = 2002, next_hop = %hop, error = %reason, "SmtpSendConnectionError");
                log.disconnect(&format!("Messages: 0 Bytes: 0 (Retry : {reason})"));
                self.connection_failed(qid, reason);
                return;
            }
        };
        if let Some(note) = dane.note() {
            log.send(note);
        }
        let opts = sts.connect_options(ConnectOptions {
            helo_name: config.fqdn.clone(),
            tls: connector.as_ref().map(|c| c.tls).unwrap_or(OutboundTls::Opportunistic),
            certificate_check: connector.as_ref().map(CertificateCheck::from_connector).unwrap_or_default(),
            policy_audit: None,
            connect_timeout: connector
                .as_ref()
                .map_or(SEND_CONNECTION_TIMEOUT.default().0, |c| c.connection_timeout_or_default()),
            command_timeout: connector.as_ref().map_or(SEND_CONNECTION_INACTIVITY_TIMEOUT.default().0, |c| {
                c.connection_inactivity_timeout_or_default()
            }),
            // Set per target below: the protocol log line needs the endpoints.
            tap: None,
        });
        // RFC 8460, where DANE does not apply to a host: the MTA-STS policy, else no policy
        // when the domain asks for reports. The same for every host of the attempt.
        let sts_or_none = match Reported::sts(&sts) {
            None if opts.tls != OutboundTls::None => self.reported_without_policy(&config, &hop).await,
            other => other,
        };
        let mut session = None;
        // The host and address that took the connection (for the tracking log).
        let mut peer = None;
        let mut last_error = String::from("no address to connect to");
        let mut refused: Vec<String> = Vec::new();
        for target in &targets {
            let mut opts = opts.clone();
            if connector.as_ref().is_some_and(|c| c.protocol_logging) {
                let local = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
                let name = connector.as_ref().map(|c| c.name.as_str()).unwrap_or("");
                // The same session id as the connectivity log's line, to find one from the other.
                let session = self.inner.logs.send_protocol.session_with_id(log.id(), name, local, target.addr);
                opts.tap = Some(Arc::new(SendTap(session)));
            }
            let host_dane = dane.host(&target.host);
            // What the session is reported under: DANE where it applies (RFC 8461 §2).
            let reported = Reported::dane(&dane, &target.host).or_else(|| sts_or_none.clone());
            if let Some(refusal) = dane.refusal(&target.host) {
                // One failed session per host, not per address (none was contacted).
                if !refused.contains(&target.host) {
                    self.tls_session(&config, reported.as_ref(), target, None, Some(&refusal));
                    refused.push(target.host.clone());
                }
                log.send(&refusal.reason);
                warn!(event_id = 2002, target = %target.addr, error = %refusal.reason, "SmtpSendConnectionError");
                last_error = refusal.reason;
                continue;
            }
            if host_dane.applies() {
                opts = dane_options(opts, host_dane);
                log.send(&format!("DANE applies to {}", target.host));
            }
            match OutboundSession::connect(target, &opts).await {
                Ok(s) => {
                    // Under DANE the session is authenticated; under MTA-STS `testing` it may
                    // fall short; without a policy it may be in clear text.
                    let failure = if host_dane.applies() {
                        None
                    } else if sts.policy().is_some() {
                        sts.audit(&s, &log);
                        s.policy_shortfall()
                    } else {
                        s.in_clear()
                    };
                    self.tls_session(&config, reported.as_ref(), target, s.local_ip(), failure);
                    session = Some(s);
                    peer = Some((target.host.clone(), target.addr.ip()));
                    break;
                }
                Err(e) => {
                    if let Some((failure, local)) = e.tls_session() {
                        self.tls_session(&config, reported.as_ref(), target, local, Some(&failure));
                    }
                    last_error = if host_dane.applies() { dane.explain(&target.host, &e) } else { sts.explain(&e) };
                    warn!(event_id = 2002, target = %target.addr, error = %last_error, "SmtpSendConnectionError");
                }
            }
        }
        let Some(mut session) = session else {
            log.disconnect(&format!("Messages: 0 Bytes: 0 (Retry : {last_error})"));
            self.connection_failed(qid, last_error);
            return;
        };
        log.send(&format!("Established connection to {}", session.remote()));
        self.connection_established(qid, connector.as_ref().map(|c| c.name.as_str()), &hop.next_hop_domain);

        let (mut messages, mut bytes) = (0u64, 0u64);
        let mut broken: Option<String> = None;
        // A crash while processing a message is the message's fault, not the hop's.
        let mut crashed = false;
        let work = self.state().queues.get(&qid).map(|q| q.work.clone());
        let mut unconfirmed: std::collections::VecDeque<tokio::task::JoinHandle<()>> = Default::default();
        loop {
            while unconfirmed.front().is_some_and(|h| h.is_finished()) {
                unconfirmed.pop_front();
            }
            if unconfirmed.len() >= MAX_UNCONFIRMED_DELIVERIES {
                if let Some(oldest) = unconfirmed.pop_front() {
                    let _ = oldest.await;
                }
            }
            let (id, recipients, env) = match self.take_ready(qid) {
                Some(next) => next,
                None => match &work {
                    // Kept a moment for more work, unless a queue waits for its place.
                    Some(_) if !self.state().outbound_waiting.is_empty() => break,
                    Some(work) => {
                        tokio::select! {
                            _ = work.notified() => continue,
                            _ = self.inner.slot_wanted.notified() => break,
                            _ = tokio::time::sleep(IDLE_KEEP) => break,
                        }
                    }
                    _ => break,
                },
            };
            let mut body = match self.inner.store.open_body(id) {
                Ok(body) => body,
                Err(e) => {
                    warn!(message = %id, error = %e, "cannot read queued message data; retried later");
                    self.release_item(qid, id, Some(e.to_string()));
                    continue;
                }
            };
            let size = body.len();
            let send = async {
                #[cfg(feature = "test-hooks")]
                crate::queue::test_hooks::maybe_panic(&self.inner.store.read_data(id).unwrap_or_default());
                session.send(&env, &recipients, &mut body).await
            };
            match AssertUnwindSafe(send).catch_unwind().await {
                Ok(Ok(outcome)) => {
                    messages += 1;
                    bytes += size;
                    let (host, ip) = peer.as_ref().map_or(("", None), |(h, ip)| (h.as_str(), Some(*ip)));
                    let sent = super::tracking::Sent {
                        hop: &hop,
                        connector: connector.as_ref().map(|c| c.name.as_str()),
                        host,
                        ip,
                    };
                    self.track_outcome(&env, &outcome, &sent, log.id());
                    let recorded = self.apply_outcome(qid, id, outcome, session.remote().to_string()).await;
                    unconfirmed.extend(recorded);
                }
                Ok(Err(e)) => {
                    // Nothing of this transaction was confirmed: it stays queued.
                    self.release_item(qid, id, None);
                    broken = Some(e.to_string());
                    break;
                }
                Err(_) => {
                    self.crashed(id, "delivering");
                    broken = Some("processing a message crashed".into());
                    crashed = true;
                    break;
                }
            }
            if !session.is_reusable() {
                break;
            }
        }
        match &broken {
            None => {
                session.quit().await;
                log.disconnect(&format!("Messages: {messages} Bytes: {bytes}"));
            }
            Some(reason) => log.disconnect(&format!("Messages: {messages} Bytes: {bytes} (Retry : {reason})")),
        }
        // A connection that delivered before it broke proves the hop works (the
        // peer may have closed an idle connection): retry at once on a new one.
        let failure = if messages > 0 || crashed { None } else { broken };
        self.connection_closed(qid, failure);
    }

    /// Counts a TLS session attempt for RFC 8460 reports and the metric (nothing when it
    /// is reported under no policy).
    fn tls_session(
        &self,
        config: &super::RuntimeConfig,
        reported: Option<&Reported>,
        target: &crate::routing::mx::HostAddress,
        local_ip: Option<std::net::IpAddr>,
        failure: Option<&delivery::TlsFailure>,
    ) {
        if let Some(under) = reported {
            let (policy_type, result) = config.tls_reports.session(under, target, local_ip, failure);
            self.inner.events.tls_session(policy_type, result);
        }
    }

    /// A DNS-routed domain without a policy that publishes a `_smtp._tls` record: its
    /// sessions are reported as `no-policy-found` (the lookup is the resolver's, cached).
    async fn reported_without_policy(&self, config: &super::RuntimeConfig, hop: &NextHop) -> Option<Reported> {
        if hop.delivery_type != DeliveryType::DnsConnectorDelivery {
            return None;
        }
        let domain = &hop.next_hop_domain;
        let texts = config.resolver.txt(&format!("_smtp._tls.{domain}")).await.ok()?;
        delivery::tls_report::record::discover(&texts).ok().map(|_| Reported::no_policy(domain))
    }

    /// Takes the next ready item of a queue and marks it active.
    fn take_ready(&self, qid: QueueId) -> Option<(MessageId, Vec<usize>, Envelope)> {
        if !self.inner.gate.now().delivery {
            return None;
        }
        let mut state = self.state();
        let QueueState { queues, messages, .. } = &mut *state;
        let q = queues.get_mut(&qid)?;
        if q.suspended {
            return None;
        }
        while let Some(id) = q.ready.pop_front() {
            let (Some(item), Some(msg)) = (q.items.get_mut(&id), messages.get(&id)) else { continue };
            if item.active || item.retry_at_ms.is_some() || msg.held() {
                continue;
            }
            item.active = true;
            return Some((id, item.recipients.clone(), (*msg.env).clone()));
        }
        None
    }

    /// An item goes back to its queue untouched (connection broke), or after a
    /// message-level retry interval when `error` says why it could not be sent.
    pub(super) fn release_item(&self, qid: QueueId, id: MessageId, error: Option<String>) {
        let retry_after = self.config().retry.message_retry_interval.as_millis() as u64;
        let now = self.now_ms();
        let mut state = self.state();
        let pending = state.messages.get_mut(&id).and_then(|m| {
            if let Some(e) = &error {
                m.env.state.last_error = Some(e.as_str().into());
            }
            m.pending.take()
        });
        let Some(q) = state.queues.get_mut(&qid) else { return };
        let Some(item) = q.items.get_mut(&id) else { return };
        item.active = false;
        if error.is_some() {
            item.retry_at_ms = Some(now + retry_after);
            state.add_timer(now + retry_after, Timer::ItemRetry(qid, id));
        } else {
            q.ready.push_front(id);
        }
        drop(state);
        if let Some(pending) = pending {
            self.apply_pending(id, pending);
        }
    }

    /// Records what the next hop said for each recipient, sends the DSNs that
    /// are due, then persists (or removes) the message.
    /// Returns the task recording the message's new state (see [`MAX_UNCONFIRMED_DELIVERIES`]).
    async fn apply_outcome(
        &self,
        qid: QueueId,
        id: MessageId,
        outcome: SendOutcome,
        remote: String,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let config = self.config();
        let now = self.now_ms();
        let mut failed = Vec::new();
        let mut succeeded = Vec::new();
        let mut delivered = 0usize;
        let (hop, pending, redirect_again) = {
            let mut state = self.state();
            let QueueState { queues, messages, redirect, .. } = &mut *state;
            let mut retry_timer = None;
            let msg = messages.get_mut(&id)?;
            let q = queues.get_mut(&qid)?;
            let hop = q.hop.clone();
            let mut retry = Vec::new();
            let mut last_transient = None;
            for (index, result) in outcome.recipients {
                let Some(rcpt) = msg.env.recipients.get_mut(index) else { continue };
                match result {
                    RecipientOutcome::Delivered { reply } => {
                        rcpt.status = RecipientStatus::Delivered;
                        rcpt.last_error = None;
                        delivered += 1;
                        if wants_success(rcpt.notify) && !outcome.dsn_passed {
                            succeeded.push((index, reply));
                        }
                    }
                    RecipientOutcome::Permanent { reply } => {
                        rcpt.status = RecipientStatus::Failed { reply: reply.as_str().into() };
                        failed.push((index, reply));
                    }
                    RecipientOutcome::Transient { reply } => {
                        rcpt.last_error = Some(reply.as_str().into());
                        last_transient = Some(reply);
                        retry.push(index);
                    }
                }
            }
            let remaining = !retry.is_empty();
            if let Some(reply) = last_transient {
                msg.env.state.retry_count += 1;
                msg.env.state.last_error = Some(reply.into());
            }
            if delivered > 0 {
                q.retry.idle_since_ms = Some(now);
            }
            let mut redirect_again = None;
            if remaining && redirect.is_some() {
                // Redirect-Message in progress: what the hop refused for now goes
                // back through the categorizer (to the redirect target).
                q.items.remove(&id);
                msg.queues.retain(|x| *x != qid);
                redirect_again = Some(retry);
            } else if remaining {
                let at = now + config.retry.message_retry_interval.as_millis() as u64;
                msg.env.state.retry_at_ms = Some(at);
                if let Some(item) = q.items.get_mut(&id) {
                    item.active = false;
                    item.recipients = retry;
                    item.retry_at_ms = Some(at);
                }
                retry_timer = Some((at, Timer::ItemRetry(qid, id)));
            } else {
                msg.env.state.retry_at_ms = None;
                q.items.remove(&id);
                msg.queues.retain(|x| *x != qid);
            }
            let pending = msg.pending.take();
            if let Some((at, timer)) = retry_timer {
                state.add_timer(at, timer);
            }
            self.note_idle_locked(&mut state, qid);
            (hop, pending, redirect_again)
        };
        if let Some(hop) = &hop {
            if delivered > 0 {
                self.inner.events.delivered(hop, delivered);
            }
            if let Some(r) = &redirect_again {
                self.inner.events.deferred(hop, r.len());
            }
        }
        if !failed.is_empty() {
            self.inner.events.failed(hop.as_ref(), failed.len());
            self.send_failure_dsn(id, &failed, Some(&remote)).await;
        }
        if !succeeded.is_empty() {
            let mailbox = hop.as_ref().is_some_and(|h| h.delivery_type == DeliveryType::SmtpDeliveryToMailbox);
            self.send_success_dsn(id, &succeeded, &remote, mailbox).await;
        }
        if let Some(recipients) = redirect_again {
            self.categorize(id, Some(recipients));
        }
        if let Some(pending) = pending {
            self.apply_pending(id, pending);
        }
        self.persist_detached(id)
    }

    /// A connection was established: the queue leaves Retry.
    fn connection_established(&self, qid: QueueId, connector: Option<&str>, next_hop: &str) {
        let now = self.inner.clock.now();
        let mut state = self.state();
        let Some(q) = state.queues.get_mut(&qid) else { return };
        q.connecting = q.connecting.saturating_sub(1);
        q.proven = true;
        let was_failing = q.retry.in_retry();
        q.retry = Default::default();
        if let Some(hop) = q.hop.clone() {
            self.inner.events.connection_attempt(&hop, now, Ok(()));
        }
        if was_failing {
            info!(
                event_id = 2007,
                "SmtpSendNewSession: Send connector {} has initiated a new session to {next_hop}",
                connector.unwrap_or("(mailbox delivery)")
            );
            self.persist_queue_locked(&state, qid);
        }
        // The probe worked: open the other connections the work needs.
        self.kick_locked(&mut state, qid);
    }

    /// A connection attempt failed: the queue goes (or stays) in Retry.
    fn connection_failed(&self, qid: QueueId, reason: String) {
        let config = self.config();
        let now_time = self.inner.clock.now();
        let now = self.now_ms();
        let mut state = self.state();
        let Some(q) = state.queues.get_mut(&qid) else { return };
        q.connections = q.connections.saturating_sub(1);
        q.connecting = q.connecting.saturating_sub(1);
        q.proven = false;
        q.last_activity_ms = now;
        if let Some(hop) = q.hop.clone() {
            self.inner.events.connection_attempt(&hop, now_time, Err(&reason));
        }
        // Several connections failing together count as one attempt.
        if q.retry.next_retry_ms.is_none_or(|t| t <= now) {
            let mailbox = q.hop.as_ref().is_some_and(|h| h.delivery_type == DeliveryType::SmtpDeliveryToMailbox);
            q.retry.failures += 1;
            let gap = connection_retry_interval(&config.retry, q.retry.failures, mailbox);
            let next = now + gap.as_millis() as u64;
            q.retry.next_retry_ms = Some(next);
            q.retry.last_retry_ms = Some(now);
            q.retry.first_retry_ms.get_or_insert(now);
            let idle_since = *q.retry.idle_since_ms.get_or_insert(now);
            info!(queue = %qid, failures = q.retry.failures, retry_in = ?gap, error = %reason, "queue in Retry");
            let resubmit_at = idle_since + config.retry.max_idle_time_before_resubmit.as_millis() as u64;
            state.add_timer(next, Timer::QueueRetry(qid));
            state.add_timer(resubmit_at, Timer::Resubmit(qid));
        }
        // Get-Message shows it as the LastError of the queue's messages: one
        // copy, not one a message (a queue may hold a million).
        if let Some(q) = state.queues.get_mut(&qid) {
            q.retry.last_error = Some(reason.clone());
        }
        self.persist_queue_locked(&state, qid);
    }

    /// The next hop can never be reached (null MX, no such domain): every
    /// recipient queued for it fails at once, with an NDR.
    async fn connection_failed_permanently(&self, qid: QueueId, reply: String) {
        let (hop, taken): (Option<NextHop>, Vec<(MessageId, Vec<usize>)>) = {
            let mut state = self.state();
            let mut hop = None;
            if let Some(q) = state.queues.get_mut(&qid) {
                q.connections = q.connections.saturating_sub(1);
                q.connecting = q.connecting.saturating_sub(1);
                hop = q.hop.clone();
            }
            let ids: Vec<MessageId> =
                state.queues.get(&qid).map(|q| q.items.keys().copied().collect()).unwrap_or_default();
            let taken = ids.into_iter().filter_map(|id| state.take_item(qid, id).map(|i| (id, i.recipients))).collect();
            self.note_idle_locked(&mut state, qid);
            (hop, taken)
        };
        for (id, recipients) in taken {
            let failures = recipients.into_iter().map(|i| (i, reply.clone())).collect();
            let why = (TrackingEvent::Fail, TrackingSource::Smtp);
            self.fail_recipients(id, failures, None, hop.as_ref(), why).await;
        }
    }

    /// A connection ended; `failure` when it never worked.
    fn connection_closed(&self, qid: QueueId, failure: Option<String>) {
        if let Some(reason) = failure {
            self.connection_failed(qid, reason);
            return;
        }
        let mut state = self.state();
        if let Some(q) = state.queues.get_mut(&qid) {
            q.connections = q.connections.saturating_sub(1);
            q.last_activity_ms = self.now_ms();
        }
        self.note_idle_locked(&mut state, qid);
        // More work may have arrived meanwhile.
        self.kick_locked(&mut state, qid);
    }
}

/// RFC 3461: a success DSN only when NOTIFY asked for SUCCESS.
fn wants_success(notify: Option<Notify>) -> bool {
    notify.is_some_and(|n| n.success && !n.never)
}

/// The options of a connection to a host DANE applies to: TLS required, and usable
/// records' check in place of the connector's and MTA-STS's (nothing audited). With
/// unusable records only (RFC 7672 §3.1.3) DANE authenticates nothing, so the check in
/// place stays: TLS is required, never a weaker check than the connector asks for.
fn dane_options(mut opts: ConnectOptions, policy: &delivery::dane::HostPolicy) -> ConnectOptions {
    opts.tls = OutboundTls::Required;
    opts.policy_audit = None;
    if let delivery::dane::HostPolicy::Authenticate(check) = policy {
        opts.certificate_check = CertificateCheck::Dane(check.clone());
    }
    opts
}

#[cfg(test)]
mod tests {
    use super::*;
    use delivery::dane::{DaneCheck, HostPolicy};

    #[test]
    fn dane_requires_tls_and_replaces_the_check_only_with_usable_records() {
        let domain = CertificateCheck::Domain { roots: None, domain: None };
        let opts = ConnectOptions {
            helo_name: "sender.test".into(),
            tls: OutboundTls::Opportunistic,
            certificate_check: domain.clone(),
            policy_audit: Some(domain.clone()),
            connect_timeout: SEND_CONNECTION_TIMEOUT.default().0,
            command_timeout: SEND_CONNECTION_INACTIVITY_TIMEOUT.default().0,
            tap: None,
        };
        let check = Arc::new(DaneCheck { tlsa_name: "_25._tcp.mx.x.test".into(), records: vec![], names: vec![] });
        let authenticated = dane_options(opts.clone(), &HostPolicy::Authenticate(check.clone()));
        assert_eq!(authenticated.tls, OutboundTls::Required);
        assert_eq!(authenticated.certificate_check, CertificateCheck::Dane(check));
        assert!(authenticated.policy_audit.is_none(), "MTA-STS testing does not audit a DANE host");
        let unusable = dane_options(opts, &HostPolicy::TlsRequired { tlsa_name: "_25._tcp.mx.x.test".into() });
        assert_eq!(unusable.tls, OutboundTls::Required);
        assert_eq!(unusable.certificate_check, domain, "the connector's own check stays");
    }

    #[test]
    fn success_dsn_only_when_asked() {
        assert!(!wants_success(None));
        assert!(wants_success(Some(Notify { success: true, ..Default::default() })));
        assert!(!wants_success(Some(Notify { never: true, success: true, ..Default::default() })));
    }
}
