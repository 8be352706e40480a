//! When DSNs are due and how they enter the queue (docs/design.md §5, RFC 3461):
//! never for a null sender; failure and delay reports only as the recipient's
//! NOTIFY allows (absent NOTIFY means FAILURE and DELAY); delay reports only
//! when enabled for that sender side; every report is a new message from the
//! postmaster with a null reverse path, routed like any other.
use super::QueueManager;
use crate::api::TrackingEvent;
use crate::clock::{from_millis, to_millis};
use crate::dsn::{self, Action, DsnInput, DsnRecipient};
use crate::envelope::{Address, Envelope, MessageId, Notify, Origin, Recipient, RecipientStatus, Source};
use crate::logs::TrackingSource;
use crate::routing::NextHop;
use tracing::{info, warn};

impl QueueManager {
    /// Marks recipients failed for good, sends the NDR they are owed, and
    /// persists (or removes) the message. The caller already took them out of
    /// their queues (of `hop`, for the metrics). `why` is the tracking event
    /// (FAIL, or EXPIRE) and the component that decided.
    pub(super) async fn fail_recipients(
        &self,
        id: MessageId,
        failures: Vec<(usize, String)>,
        remote: Option<&str>,
        hop: Option<&NextHop>,
        why: (TrackingEvent, TrackingSource),
    ) {
        {
            let mut state = self.state();
            let Some(msg) = state.messages.get_mut(&id) else { return };
            for (i, reply) in &failures {
                if let Some(r) = msg.env.recipients.get_mut(*i) {
                    if r.status == RecipientStatus::Pending {
                        r.status = RecipientStatus::Failed { reply: reply.as_str().into() };
                    }
                }
            }
        }
        if let Some(env) = self.envelope(id) {
            let statuses = failures.iter().map(|(i, reply)| (*i, reply.as_str().into()));
            let hop_name = hop.map_or("", |h| h.next_hop_domain.as_str());
            self.tracking().record(why.0, why.1, &env).recipients(statuses).message_info(hop_name).write();
        }
        self.inner.events.failed(hop, failures.len());
        self.send_failure_dsn(id, &failures, remote).await;
        self.persist(id).await;
    }

    /// The NDR for `failures` (recipient index, reply), if the sender gets one.
    pub(super) async fn send_failure_dsn(&self, id: MessageId, failures: &[(usize, String)], remote: Option<&str>) {
        let now = self.inner.clock.now();
        let recipients = self.dsn_recipients(
            id,
            failures,
            Action::Failed,
            |r| wants_failure(r.notify),
            |reply| {
                let status = dsn::enhanced_status(reply).unwrap_or_else(|| "5.0.0".into());
                (status, Some(reply.to_string()), remote.map(str::to_string), Some(now), None)
            },
        );
        self.send_dsn(id, Action::Failed, recipients).await;
    }

    /// The success DSN (RFC 3461 "relayed" to a hop without DSN, "delivered"
    /// by the mailbox hop) for recipients that asked for NOTIFY=SUCCESS.
    pub(super) async fn send_success_dsn(&self, id: MessageId, done: &[(usize, String)], remote: &str, mailbox: bool) {
        let now = self.inner.clock.now();
        let action = if mailbox { Action::Delivered } else { Action::Relayed };
        let recipients = self.dsn_recipients(
            id,
            done,
            action,
            |_| true,
            |reply| ("2.0.0".to_string(), Some(reply.to_string()), Some(remote.to_string()), Some(now), None),
        );
        self.send_dsn(id, action, recipients).await;
    }

    /// The one delay DSN of a message, at delayNotificationTimeOut.
    pub(super) async fn delay_dsn(&self, id: MessageId) {
        let config = self.config();
        let now = self.inner.clock.now();
        let (pending, until) = {
            let mut state = self.state();
            let hop_error = state.hop_error(id);
            let Some(msg) = state.messages.get_mut(&id) else { return };
            let due = msg.env.arrival_ms + config.expiration.delay_notification_time_out.as_millis() as u64;
            if msg.env.state.delay_dsn_done || msg.env.state.poisoned || msg.env.is_finished() || to_millis(now) < due {
                return;
            }
            // Once, whatever happens next (enabled or not, sent or not wanted).
            msg.env.state.delay_dsn_done = true;
            let internal = config.router.is_internal_sender(msg.env.mail_from.as_ref());
            let enabled = if internal { config.org.internal_delay_dsn() } else { config.org.external_delay_dsn() };
            let pending: Vec<(usize, String)> = msg
                .env
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| r.status == RecipientStatus::Pending && wants_delay(r.notify))
                .map(|(i, r)| (i, r.last_error.as_deref().or(hop_error.as_deref()).unwrap_or_default().to_string()))
                .collect();
            let until =
                from_millis(msg.env.arrival_ms + config.expiration.message_expiration_time_out.as_millis() as u64);
            (if enabled { pending } else { Vec::new() }, until)
        };
        if !pending.is_empty() {
            let recipients = self.dsn_recipients(
                id,
                &pending,
                Action::Delayed,
                |_| true,
                |last| {
                    let status =
                        dsn::enhanced_status(last).filter(|s| s.starts_with('4')).unwrap_or_else(|| "4.4.7".into());
                    let diagnostic = if last.is_empty() { None } else { Some(last.to_string()) };
                    (status, diagnostic, None, Some(now), Some(until))
                },
            );
            self.send_dsn(id, Action::Delayed, recipients).await;
        }
        self.persist(id).await;
    }

    /// Builds the per-recipient blocks for the recipients `filter` keeps.
    fn dsn_recipients(
        &self,
        id: MessageId,
        list: &[(usize, String)],
        action: Action,
        filter: impl Fn(&Recipient) -> bool,
        fields: impl Fn(&str) -> DsnFields,
    ) -> Vec<DsnRecipient> {
        let state = self.state();
        let Some(msg) = state.messages.get(&id) else { return Vec::new() };
        list.iter()
            .filter_map(|(i, text)| {
                let r = msg.env.recipients.get(*i)?;
                if !filter(r) {
                    return None;
                }
                let (status, diagnostic, remote_mta, last_attempt, will_retry_until) = fields(text);
                Some(DsnRecipient {
                    final_recipient: r.address.clone(),
                    original_recipient: r.orcpt.as_deref().map(str::to_string),
                    action,
                    status,
                    diagnostic,
                    remote_mta,
                    last_attempt,
                    will_retry_until,
                })
            })
            .collect()
    }

    /// Builds the report about message `id` and submits it. Never for a null
    /// sender, never with no recipient to report.
    async fn send_dsn(&self, id: MessageId, action: Action, recipients: Vec<DsnRecipient>) {
        if recipients.is_empty() {
            return;
        }
        let config = self.config();
        let Some(env) = self.state().messages.get(&id).map(|m| m.env.clone()) else { return };
        let Some(to) = env.mail_from.clone() else { return };
        let original = match self.inner.store.read_data(id) {
            Ok(d) => d,
            Err(e) => {
                warn!(message = %id, error = %e, "cannot read the original for a DSN; sending headers-less report");
                Vec::new()
            }
        };
        let now = self.inner.clock.now();
        let text = config.org.dsn_text.as_ref().and_then(|t| match action {
            Action::Failed => t.failure.as_deref(),
            Action::Delayed => t.delay.as_deref(),
            Action::Delivered | Action::Relayed => t.success.as_deref(),
        });
        let message_id = dsn::new_message_id(&config.fqdn);
        let bytes = dsn::build(&DsnInput {
            reporting_mta: &config.fqdn,
            message_id: &message_id,
            postmaster: &config.postmaster,
            to: &to,
            envid: env.envid.as_deref(),
            arrival: from_millis(env.arrival_ms),
            now,
            recipients: &recipients,
            original: &original,
            // A binary original cannot travel inside a report sent with DATA, and a
            // REQUIRETLS one must not leave the protected path in a report (RFC 8689 §5):
            // headers only.
            ret: if env.binary_mime || env.requiretls { Some(crate::envelope::Ret::Hdrs) } else { env.ret },
            max_attach: config.org.dsn_max_message_attach_size().bytes(),
            text,
        });
        let kind = action.as_str();
        // An 8-bit original returned whole makes the report 8-bit too.
        // A global report (UTF-8 addresses, RFC 6533) is 8-bit too.
        let body_8bit = env.body_8bit || !bytes.is_ascii();
        let report = Report { message_id, about: &env, kind };
        match self.submit_dsn(&to, bytes, body_8bit, report).await {
            Ok(dsn_id) => {
                info!(message = %id, dsn = %dsn_id, action = kind, to = %to, "DSN queued");
                self.inner.events.dsn(kind);
            }
            Err(e) => warn!(message = %id, error = %e, "could not queue a DSN"),
        }
    }

    /// Stores a DSN as a new message from `<>` to `to`, tracks it and queues it.
    async fn submit_dsn(
        &self,
        to: &Address,
        bytes: Vec<u8>,
        body_8bit: bool,
        report: Report<'_>,
    ) -> Result<MessageId, crate::queue::StoreError> {
        let config = self.config();
        let id = self.inner.store.next_id();
        let mut recipient = Recipient::new(to.clone());
        // A report about a report is never wanted (and the null sender forbids it anyway).
        recipient.notify = Some(Notify { never: true, ..Notify::default() });
        let envelope = Envelope {
            id,
            mail_from: None,
            recipients: vec![recipient],
            size: bytes.len() as u64,
            body_8bit,
            binary_mime: false,
            // A report to a UTF-8 address goes only where SMTPUTF8 is offered.
            smtputf8: !to.is_ascii(),
            // The report about a REQUIRETLS message goes the same protected way.
            requiretls: report.about.requiretls,
            ret: None,
            envid: None,
            arrival_ms: to_millis(self.inner.clock.now()),
            origin: Origin {
                connector: "DSN".into(),
                client_ip: None,
                helo: config.fqdn.as_str().into(),
                tls: false,
                source: Source::Dsn,
            },
            subject: None,
            internet_message_id: Some(format!("<{}>", report.message_id).into()),
            state: Default::default(),
        };
        self.inner.store.insert(&envelope, &bytes).await?;
        self.tracking()
            .record(TrackingEvent::Dsn, TrackingSource::Dsn, &envelope)
            .all_recipients()
            .reference(report.about.internet_message_id.as_deref().unwrap_or(""))
            .message_info(report.kind)
            .write();
        self.enqueue(envelope);
        Ok(id)
    }
}

/// What a report is about: its Message-ID, the original's envelope, the action
/// (`failed`, `delayed`, `delivered`, `relayed`).
struct Report<'a> {
    message_id: String,
    about: &'a Envelope,
    kind: &'static str,
}

/// (status, diagnostic, remote MTA, last attempt, will retry until)
type DsnFields = (String, Option<String>, Option<String>, Option<std::time::SystemTime>, Option<std::time::SystemTime>);

/// RFC 3461 §4.1: absent NOTIFY means FAILURE and DELAY.
pub(super) fn wants_failure(notify: Option<Notify>) -> bool {
    notify.is_none_or(|n| n.failure && !n.never)
}

pub(super) fn wants_delay(notify: Option<Notify>) -> bool {
    notify.is_none_or(|n| n.delay && !n.never)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_rules_follow_rfc_3461() {
        assert!(wants_failure(None) && wants_delay(None));
        let only_success = Some(Notify { success: true, ..Default::default() });
        assert!(!wants_failure(only_success) && !wants_delay(only_success));
        let never = Some(Notify { never: true, ..Default::default() });
        assert!(!wants_failure(never) && !wants_delay(never));
        let failure = Some(Notify { failure: true, ..Default::default() });
        assert!(wants_failure(failure) && !wants_delay(failure));
    }
}
