//! What the queue writes to the message tracking log (crate::logs::tracking): the
//! records of acceptance, shadowing and transmission. The other events are written
//! where they are decided (expiry, removal, poison, DSNs, resubmits).
use super::QueueManager;
use crate::api::TrackingEvent;
use crate::delivery::{RecipientOutcome, SendOutcome};
use crate::envelope::{Envelope, MessageId, Source};
use crate::logs::TrackingSource;
use crate::routing::{DeliveryType, NextHop};
use std::borrow::Cow;

impl QueueManager {
    /// A message's envelope as queued now, for a record written after the lock is
    /// released (`None` when the log is off: no copy made for nothing).
    pub(super) fn envelope(&self, id: MessageId) -> Option<Envelope> {
        if !self.inner.logs.tracking.enabled() {
            return None;
        }
        self.state().messages.get(&id).map(|m| (*m.env).clone())
    }

    /// RECEIVE: a message is durable here (SMTP, or ADMIN from the replay directory).
    pub fn track_received(&self, envelope: &Envelope) {
        let source = match envelope.origin.source {
            Source::Replay => TrackingSource::Admin,
            _ => TrackingSource::Smtp,
        };
        let config = self.config();
        self.tracking()
            .record(TrackingEvent::Receive, source, envelope)
            .all_recipients()
            .client(envelope.origin.client_ip, &envelope.origin.helo)
            .server(None, &config.fqdn)
            .connector(&envelope.origin.connector)
            .write();
    }

    /// HAREDIRECT: peer `peer` holds a shadow copy of the message.
    pub fn track_shadowed(&self, envelope: &Envelope, peer: &str) {
        self.tracking()
            .record(TrackingEvent::HaRedirect, TrackingSource::Redundancy, envelope)
            .all_recipients()
            .server(None, peer)
            .write();
    }

    /// The tracking records of one transmission: SEND (or DELIVER to the mailbox
    /// hop) for the recipients the hop took, DEFER for those it refused for now,
    /// FAIL for those it refused for good, each with the hop's reply.
    pub(super) fn track_outcome(&self, env: &Envelope, outcome: &SendOutcome, sent: &Sent<'_>, session: &str) {
        let tracking = self.tracking();
        if !tracking.enabled() {
            return;
        }
        // Redirect-Message hands messages to another server of the service (the queue
        // lock is taken only while one is in progress).
        let redirected =
            *self.inner.redirecting.borrow() && self.state().redirect.as_ref().is_some_and(|r| &r.hop == sent.hop);
        let (taken, source) = if redirected {
            (TrackingEvent::Redirect, TrackingSource::Admin)
        } else if sent.hop.delivery_type == DeliveryType::SmtpDeliveryToMailbox {
            (TrackingEvent::Deliver, TrackingSource::Smtp)
        } else {
            (TrackingEvent::Send, TrackingSource::Smtp)
        };
        for event in [taken, TrackingEvent::Defer, TrackingEvent::Fail] {
            let replies: Vec<(usize, Cow<str>)> = outcome
                .recipients
                .iter()
                .filter_map(|(i, o)| match o {
                    RecipientOutcome::Delivered { reply } if event == taken => Some((*i, reply.as_str().into())),
                    RecipientOutcome::Transient { reply } if event == TrackingEvent::Defer => {
                        Some((*i, reply.as_str().into()))
                    }
                    RecipientOutcome::Permanent { reply } if event == TrackingEvent::Fail => {
                        Some((*i, reply.as_str().into()))
                    }
                    _ => None,
                })
                .collect();
            if replies.is_empty() {
                continue;
            }
            let source = if event == taken { source } else { TrackingSource::Smtp };
            tracking
                .record(event, source, env)
                .recipients(replies)
                .server(sent.ip, sent.host)
                .connector(sent.connector.unwrap_or(""))
                .source_context(session)
                .message_info(&sent.hop.next_hop_domain)
                .write();
        }
    }
}

/// Where a transmission went, for its tracking records.
pub(super) struct Sent<'a> {
    pub hop: &'a NextHop,
    pub connector: Option<&'a str>,
    pub host: &'a str,
    pub ip: Option<std::net::IpAddr>,
}
