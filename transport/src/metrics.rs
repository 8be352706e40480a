//! Prometheus metrics of a transport server (prometheus-client), fed by the
//! SMTP sessions ([`SessionEvents`]), the intake (acceptance latency) and the
//! queue ([`QueueEvents`]); gauges of queues and states are refreshed when
//! `/metrics` is scraped. The chart's alerts and dashboard
//! (charts/kube-transport/templates/prometheusrule.yaml, files/dashboard.json) use
//! these names; e2e/tests/chart.rs checks them against a running server's `/metrics`.
use crate::config::{Component, ComponentState};
use crate::logs::{LogEvent, ProtocolLog, ProtocolSession};
use crate::queue::manager::{QueueEvents, QueueSnapshot};
use crate::routing::NextHop;
use crate::smtp::SessionEvents;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Every metric, plus the live session count the Stopping transition waits on.
pub struct Telemetry {
    registry: Registry,
    received: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    sessions: Family<Labels, Gauge>,
    connection_refusals: Family<Labels, Counter>,
    delivered: Family<Labels, Counter>,
    deferred: Family<Labels, Counter>,
    failed: Family<Labels, Counter>,
    dsns: Family<Labels, Counter>,
    attempts: Family<Labels, Counter>,
    tls_sessions: Family<Labels, Counter>,
    acceptance: Histogram,
    queue_messages: Family<Labels, Gauge>,
    queue_retry: Family<Labels, Gauge>,
    oldest_message: Gauge,
    expiration: Gauge,
    storage_failing: Gauge,
    /// One render at a time: the per-queue families are cleared and filled again.
    rendering: Mutex<()>,
    queue_stored: Gauge,
    server_state: Gauge,
    component_state: Family<Labels, Gauge>,
    shadow_copies: Family<Labels, Counter>,
    shadow_messages: Gauge,
    shadow_discarded: Counter,
    shadow_resubmitted: Counter,
    safety_net_messages: Gauge,
    open_sessions: AtomicUsize,
    /// The Receive protocol log and each open session's line writer.
    protocol: ProtocolLog,
    protocol_sessions: Mutex<HashMap<u64, ProtocolSession>>,
}

impl Telemetry {
    pub fn new(protocol: ProtocolLog) -> Telemetry {
        let mut registry = Registry::with_prefix("transport");
        let t = Telemetry {
            received: Family::default(),
            refused: Family::default(),
            sessions: Family::default(),
            connection_refusals: Family::default(),
            delivered: Family::default(),
            deferred: Family::default(),
            failed: Family::default(),
            dsns: Family::default(),
            attempts: Family::default(),
            tls_sessions: Family::default(),
            // 1 ms to 10 s: a group commit's fdatasync, a shadow copy to a peer, a disk in trouble.
            acceptance: Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            queue_messages: Family::default(),
            queue_retry: Family::default(),
            oldest_message: Gauge::default(),
            expiration: Gauge::default(),
            storage_failing: Gauge::default(),
            rendering: Mutex::new(()),
            queue_stored: Gauge::default(),
            server_state: Gauge::default(),
            component_state: Family::default(),
            shadow_copies: Family::default(),
            shadow_messages: Gauge::default(),
            shadow_discarded: Counter::default(),
            shadow_resubmitted: Counter::default(),
            safety_net_messages: Gauge::default(),
            open_sessions: AtomicUsize::new(0),
            protocol,
            protocol_sessions: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        registry.register("messages_received", "Messages accepted, by receive connector", t.received.clone());
        registry.register("smtp_refusals", "Commands or messages refused, by connector and code", t.refused.clone());
        registry.register("sessions_open", "SMTP sessions open, by receive connector", t.sessions.clone());
        registry.register(
            "connections_refused",
            "Connections refused before a session (limits, Paused, Stopped)",
            t.connection_refusals.clone(),
        );
        registry.register("recipients_delivered", "Recipients accepted by a next hop", t.delivered.clone());
        // Counters by send connector rather than next hop domain: DNS routing makes a
        // next hop of every recipient domain, and a counter's series never go away.
        registry.register(
            "recipients_deferred",
            "Recipients given a message-level retry, by delivery type and send connector",
            t.deferred.clone(),
        );
        registry.register(
            "recipients_failed",
            "Recipients failed for good, by the delivery type and send connector of their queue",
            t.failed.clone(),
        );
        registry.register("dsns", "Delivery status notifications generated, by action", t.dsns.clone());
        registry.register("connection_attempts", "Outbound connection attempts, by result", t.attempts.clone());
        registry.register(
            "tls_sessions",
            "Outbound TLS sessions under an MTA-STS policy (RFC 8460), by policy type and result type",
            t.tls_sessions.clone(),
        );
        registry.register(
            "message_acceptance_seconds",
            "Time from the end of a message's data to its acceptance (stored, and shadow-copied when shadowing)",
            t.acceptance.clone(),
        );
        // Per queue, as Get-Queue lists them: a queue's series go when the queue goes.
        registry.register(
            "queue_messages",
            "Messages in each queue, by queue, next hop domain, delivery type and queue status",
            t.queue_messages.clone(),
        );
        registry.register(
            "queue_retry_seconds",
            "How long each queue in Retry has been in Retry (since its first failed connection attempt)",
            t.queue_retry.clone(),
        );
        registry.register(
            "queue_oldest_message_seconds",
            "Age of the oldest queued message that can expire (not suspended or poison); 0 when none",
            t.oldest_message.clone(),
        );
        registry.register(
            "message_expiration_seconds",
            "messageExpirationTimeOut: the age at which a queued message is bounced with an NDR",
            t.expiration.clone(),
        );
        registry.register(
            "queue_storage_failing",
            "1 while the queue store refuses writes (disk full, I/O error): messages are refused with 452 4.3.1",
            t.storage_failing.clone(),
        );
        registry.register(
            "queue_stored_messages",
            "Messages durably in the queue store as of its last commit: what a restart would recover",
            t.queue_stored.clone(),
        );
        registry.register(
            "server_state",
            "ServerState code (2 Started, 4 Stopped, 6 Paused...)",
            t.server_state.clone(),
        );
        registry.register(
            "component_state",
            "Component state (0 Active, 1 Draining, 2 Inactive)",
            t.component_state.clone(),
        );
        registry.register(
            "shadow_copies",
            "Messages received, by what became of their shadow copy (shadowed, failed, not_wanted)",
            t.shadow_copies.clone(),
        );
        registry.register("shadow_messages", "Shadow copies held for other servers", t.shadow_messages.clone());
        registry.register(
            "shadow_discarded",
            "Shadow copies dropped because the primary finished the message (or they aged out)",
            t.shadow_discarded.clone(),
        );
        registry.register(
            "shadow_resubmitted",
            "Shadow copies delivered from this server because their primary was gone",
            t.shadow_resubmitted.clone(),
        );
        registry.register(
            "safety_net_messages",
            "Delivered messages kept in the Safety Net for safetyNetHoldTime",
            t.safety_net_messages.clone(),
        );
        Telemetry { registry, ..t }
    }

    /// What became of one message's shadow copy.
    pub fn shadow_copy(&self, result: &str) {
        self.shadow_copies.get_or_create(&labels(&[("result", result)])).inc();
    }

    pub fn shadow_discarded(&self, copies: usize) {
        self.shadow_discarded.inc_by(copies as u64);
    }

    pub fn shadow_resubmitted(&self, copies: usize) {
        self.shadow_resubmitted.inc_by(copies as u64);
    }

    /// Sessions open right now (the Stopping transition waits for zero).
    pub fn open_sessions(&self) -> usize {
        self.open_sessions.load(Ordering::Relaxed)
    }

    /// A message was accepted `took` after the end of its data.
    pub fn message_accepted(&self, took: Duration) {
        self.acceptance.observe(took.as_secs_f64());
    }

    /// Refreshes the state gauges and renders the text exposition format.
    pub fn render(
        &self,
        server_state_code: u8,
        components: &[(Component, ComponentState)],
        queues: &QueueSnapshot,
        stored: usize,
        shadow_held: usize,
        safety_net: usize,
    ) -> String {
        let _rendering = self.rendering.lock().unwrap_or_else(|e| e.into_inner());
        self.safety_net_messages.set(i64::try_from(safety_net).unwrap_or(i64::MAX));
        self.server_state.set(i64::from(server_state_code));
        self.shadow_messages.set(i64::try_from(shadow_held).unwrap_or(i64::MAX));
        self.queue_stored.set(i64::try_from(stored).unwrap_or(i64::MAX));
        for (c, s) in components {
            let value = match s {
                ComponentState::Active => 0,
                ComponentState::Draining => 1,
                ComponentState::Inactive => 2,
            };
            self.component_state.get_or_create(&labels(&[("component", c.as_str())])).set(value);
        }
        // Queues come and go and change status: only what they are now is shown.
        self.queue_messages.clear();
        self.queue_retry.clear();
        for q in &queues.queues {
            let delivery_type = format!("{:?}", q.delivery_type);
            let mut queue = labels(&[
                ("queue", &q.queue),
                ("next_hop_domain", &q.next_hop_domain),
                ("delivery_type", &delivery_type),
            ]);
            if let Some(ms) = q.in_retry_ms {
                self.queue_retry.get_or_create(&queue).set(seconds(ms));
            }
            queue.push(("status".into(), format!("{:?}", q.status)));
            self.queue_messages.get_or_create(&queue).set(i64::try_from(q.messages).unwrap_or(i64::MAX));
        }
        self.oldest_message.set(seconds(queues.oldest_message_ms));
        self.expiration.set(seconds(queues.expiration_ms));
        self.storage_failing.set(i64::from(queues.storage_failing));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn seconds(ms: u64) -> i64 {
    i64::try_from(ms / 1000).unwrap_or(i64::MAX)
}

fn delivery_type(hop: &NextHop) -> String {
    format!("{:?}", hop.delivery_type)
}

/// `delivery_type` and `connector` (the send connector; empty for the mailbox hop) of a
/// next hop; recipients with none (no route) count as Unreachable.
fn hop_labels(hop: Option<&NextHop>) -> Labels {
    match hop {
        Some(hop) => labels(&[
            ("delivery_type", &delivery_type(hop)),
            ("connector", hop.connector.as_deref().unwrap_or_default()),
        ]),
        None => labels(&[("delivery_type", "Unreachable"), ("connector", "")]),
    }
}

impl SessionEvents for Telemetry {
    fn session_opened(&self, connector: &str, session: u64, local: SocketAddr, remote: SocketAddr) {
        self.open_sessions.fetch_add(1, Ordering::Relaxed);
        self.sessions.get_or_create(&labels(&[("connector", connector)])).inc();
        let log = self.protocol.session(connector, local, remote);
        self.protocol_sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(session, log);
    }

    fn session_closed(&self, connector: &str, session: u64) {
        self.open_sessions.fetch_sub(1, Ordering::Relaxed);
        self.sessions.get_or_create(&labels(&[("connector", connector)])).dec();
        self.protocol_sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&session);
    }

    fn connection_refused(&self, connector: &str, _remote: SocketAddr, reason: &str) {
        self.connection_refusals.get_or_create(&labels(&[("connector", connector), ("reason", reason)])).inc();
    }

    fn protocol(&self, _connector: &str, session: u64, event: LogEvent, data: &str) {
        if let Some(log) = self.protocol_sessions.lock().unwrap_or_else(|e| e.into_inner()).get(&session) {
            log.record(event, data, "");
        }
    }

    fn message_received(&self, connector: &str, _bytes: u64, _recipients: usize) {
        self.received.get_or_create(&labels(&[("connector", connector)])).inc();
    }

    fn refused(&self, connector: &str, code: &str) {
        self.refused.get_or_create(&labels(&[("connector", connector), ("code", code)])).inc();
    }
}

impl QueueEvents for Telemetry {
    fn connection_attempt(&self, hop: &NextHop, _at: SystemTime, outcome: Result<(), &str>) {
        let result = if outcome.is_ok() { "success" } else { "failure" };
        self.attempts.get_or_create(&labels(&[("delivery_type", &delivery_type(hop)), ("result", result)])).inc();
    }

    fn tls_session(&self, policy_type: &str, result: &str) {
        self.tls_sessions.get_or_create(&labels(&[("policy_type", policy_type), ("result", result)])).inc();
    }

    fn delivered(&self, hop: &NextHop, recipients: usize) {
        self.delivered.get_or_create(&labels(&[("delivery_type", &delivery_type(hop))])).inc_by(recipients as u64);
    }

    fn deferred(&self, hop: &NextHop, recipients: usize) {
        self.deferred.get_or_create(&hop_labels(Some(hop))).inc_by(recipients as u64);
    }

    fn failed(&self, hop: Option<&NextHop>, recipients: usize) {
        self.failed.get_or_create(&hop_labels(hop)).inc_by(recipients as u64);
    }

    fn dsn(&self, action: &'static str) {
        self.dsns.get_or_create(&labels(&[("action", action)])).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DeliveryType, QueueStatus};
    use crate::clock::{ManualClock, SharedClock};
    use crate::config::TransportFile;
    use crate::control::Control;
    use crate::envelope::{Envelope, MessageId, Recipient};
    use crate::envelope::{MessageState, Origin, Source};
    use crate::queue::manager::{QueueGauge, QueueLogs, QueueManager, RuntimeConfig};
    use crate::queue::Store;
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    fn telemetry() -> Telemetry {
        Telemetry::new(ProtocolLog::disabled())
    }

    fn render(t: &Telemetry, queues: &QueueSnapshot) -> String {
        t.render(2, &[(Component::HubTransport, ComponentState::Active)], queues, 0, 0, 0)
    }

    fn gauge(queue: &str, hop: &str, delivery_type: DeliveryType, status: QueueStatus, messages: u64) -> QueueGauge {
        QueueGauge {
            queue: queue.into(),
            next_hop_domain: hop.into(),
            delivery_type,
            status,
            messages,
            in_retry_ms: None,
        }
    }

    /// The sample lines of `text` that start with `name` (with or without labels).
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
            .collect()
    }

    #[test]
    fn queues_are_shown_as_they_are_at_the_scrape() {
        let t = telemetry();
        let mut retry = gauge("3", "relay.example", DeliveryType::SmartHostConnectorDelivery, QueueStatus::Retry, 7);
        retry.in_retry_ms = Some(5_400_999);
        let snapshot = QueueSnapshot {
            queues: vec![
                gauge("Submission", "Submission", DeliveryType::Undefined, QueueStatus::Ready, 0),
                gauge("Poison", "Poison Message", DeliveryType::Undefined, QueueStatus::Ready, 2),
                retry,
            ],
            oldest_message_ms: 3_600_500,
            expiration_ms: 172_800_000,
            storage_failing: true,
        };
        let text = render(&t, &snapshot);
        // A family's series come in no particular order.
        let mut queues = samples(&text, "transport_queue_messages");
        queues.sort_unstable();
        assert_eq!(
            queues,
            [
                r#"transport_queue_messages{queue="3",next_hop_domain="relay.example",delivery_type="SmartHostConnectorDelivery",status="Retry"} 7"#,
                r#"transport_queue_messages{queue="Poison",next_hop_domain="Poison Message",delivery_type="Undefined",status="Ready"} 2"#,
                r#"transport_queue_messages{queue="Submission",next_hop_domain="Submission",delivery_type="Undefined",status="Ready"} 0"#,
            ]
        );
        assert_eq!(
            samples(&text, "transport_queue_retry_seconds"),
            [
                r#"transport_queue_retry_seconds{queue="3",next_hop_domain="relay.example",delivery_type="SmartHostConnectorDelivery"} 5400"#
            ],
            "only queues in Retry, in whole seconds"
        );
        assert_eq!(
            samples(&text, "transport_queue_oldest_message_seconds"),
            ["transport_queue_oldest_message_seconds 3600"]
        );
        assert_eq!(
            samples(&text, "transport_message_expiration_seconds"),
            ["transport_message_expiration_seconds 172800"]
        );
        assert_eq!(samples(&text, "transport_queue_storage_failing"), ["transport_queue_storage_failing 1"]);

        // Queue 3 delivered its mail and went away; the Poison queue was emptied: their
        // series go with them (a stale value would keep an alert firing).
        let later = QueueSnapshot {
            queues: vec![gauge("Submission", "Submission", DeliveryType::Undefined, QueueStatus::Suspended, 1)],
            oldest_message_ms: 0,
            expiration_ms: 172_800_000,
            storage_failing: false,
        };
        let text = render(&t, &later);
        assert_eq!(
            samples(&text, "transport_queue_messages"),
            [
                r#"transport_queue_messages{queue="Submission",next_hop_domain="Submission",delivery_type="Undefined",status="Suspended"} 1"#
            ]
        );
        assert!(samples(&text, "transport_queue_retry_seconds").is_empty(), "{text}");
        assert!(text.contains("# TYPE transport_queue_retry_seconds gauge"), "an empty family still declares itself");
        assert_eq!(samples(&text, "transport_queue_storage_failing"), ["transport_queue_storage_failing 0"]);
    }

    #[test]
    fn acceptance_latency_is_a_histogram_in_seconds() {
        let t = telemetry();
        t.message_accepted(Duration::from_millis(3));
        t.message_accepted(Duration::from_millis(700));
        let text = render(&t, &QueueSnapshot::default());
        for line in [
            "# TYPE transport_message_acceptance_seconds histogram",
            r#"transport_message_acceptance_seconds_bucket{le="0.0025"} 0"#,
            r#"transport_message_acceptance_seconds_bucket{le="0.005"} 1"#,
            r#"transport_message_acceptance_seconds_bucket{le="1.0"} 2"#,
            "transport_message_acceptance_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert_eq!(
            samples(&text, "transport_message_acceptance_seconds_sum"),
            ["transport_message_acceptance_seconds_sum 0.703"]
        );
    }

    #[test]
    fn deferrals_and_failures_count_by_delivery_type_and_send_connector() {
        let t = telemetry();
        let hop = |delivery_type, domain: &str, connector: Option<&str>| NextHop {
            delivery_type,
            next_hop_domain: domain.into(),
            connector: connector.map(str::to_string),
        };
        let internet = hop(DeliveryType::DnsConnectorDelivery, "example.net", Some("Internet"));
        // Another recipient domain through the same connector: the same series.
        t.failed(Some(&hop(DeliveryType::DnsConnectorDelivery, "example.org", Some("Internet"))), 2);
        t.failed(Some(&internet), 1);
        t.failed(Some(&hop(DeliveryType::SmtpDeliveryToMailbox, "mailbox:2424", None)), 4);
        t.failed(None, 5);
        t.deferred(&internet, 3);
        let text = render(&t, &QueueSnapshot::default());
        let mut failed = samples(&text, "transport_recipients_failed_total");
        failed.sort_unstable();
        assert_eq!(
            failed,
            [
                r#"transport_recipients_failed_total{delivery_type="DnsConnectorDelivery",connector="Internet"} 3"#,
                r#"transport_recipients_failed_total{delivery_type="SmtpDeliveryToMailbox",connector=""} 4"#,
                r#"transport_recipients_failed_total{delivery_type="Unreachable",connector=""} 5"#,
            ]
        );
        assert_eq!(
            samples(&text, "transport_recipients_deferred_total"),
            [r#"transport_recipients_deferred_total{delivery_type="DnsConnectorDelivery",connector="Internet"} 3"#]
        );
    }

    fn envelope(id: u64, arrival_ms: u64, state: MessageState) -> Envelope {
        let origin = Origin {
            connector: "Default".into(),
            client_ip: None,
            helo: "client.test".into(),
            tls: false,
            source: Source::Smtp,
        };
        let address = |text: &str| crate::envelope::Address::parse(text).unwrap();
        let recipients = vec![Recipient::new(address("bob@example.net"))];
        let from = Some(address("alice@example.org"));
        Envelope { state, ..Envelope::new(MessageId(id), from, recipients, 3, origin, arrival_ms) }
    }

    /// The queue manager's snapshot, from a real queue whose smart host refuses every
    /// connection, on a clock the test moves.
    #[tokio::test]
    async fn a_real_queue_reports_its_time_in_retry_and_its_oldest_message_that_can_expire() {
        let dir = tempfile::tempdir().unwrap();
        // A port nobody listens on any more.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let yaml = format!(
            "serverName: t-0\nfqdn: t.test\nqueueDirectory: {}\nsendConnectors:\n  - name: Outbound\n    \
             addressSpaces: [{{domain: \"*\", cost: 1}}]\n    smartHosts: [\"{closed}\"]\n",
            dir.path().display()
        );
        let file = TransportFile::from_yaml_str(&yaml).unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = ManualClock::new(t0);
        let shared: SharedClock = Arc::new(clock.clone());
        let (store, _) = Store::open(dir.path()).unwrap();
        let control = Control::new(dir.path(), &file.components, shared.clone());
        let telemetry = Arc::new(telemetry());
        let logs = QueueLogs::disabled();
        let mta_sts = Arc::new(crate::delivery::mta_sts::MtaSts::open(dir.path(), shared.clone()));
        let reports = Arc::new(crate::delivery::tls_report::TlsReports::open(dir.path(), shared.clone()));
        let config = RuntimeConfig::from_file(&file, mta_sts, reports).unwrap();
        let manager = QueueManager::new(store.clone(), shared, config, control.gate(), telemetry.clone(), logs);
        tokio::spawn(manager.clone().run());

        let now = crate::clock::to_millis(t0);
        let hour = 3_600_000;
        // Only the first can expire: the suspended and the poison one are held.
        let messages = [
            envelope(1, now - hour, MessageState::default()),
            envelope(2, now - 2 * hour, MessageState { suspended: true, ..MessageState::default() }),
            envelope(3, now - 10 * hour, MessageState { poisoned: true, ..MessageState::default() }),
        ];
        for m in messages {
            store.insert(&m, b"x\r\n").await.unwrap();
            manager.enqueue(m);
        }
        let hop = closed.to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let retrying = loop {
            let snapshot = manager.queue_status_counts();
            if let Some(q) = snapshot.queues.iter().find(|q| q.next_hop_domain == hop && q.in_retry_ms.is_some()) {
                break q.clone();
            }
            assert!(std::time::Instant::now() < deadline, "the queue never went into Retry: {snapshot:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(retrying.in_retry_ms, Some(0), "in Retry since now");
        assert_eq!(retrying.delivery_type, DeliveryType::SmartHostConnectorDelivery);

        clock.advance(Duration::from_secs(90));
        let snapshot = manager.queue_status_counts();
        let q = snapshot.queues.iter().find(|q| q.queue == retrying.queue).unwrap();
        // Retry attempts may have run meanwhile: Retry still began at the first failure.
        assert_eq!(q.in_retry_ms, Some(90_000), "{snapshot:?}");
        assert_eq!(q.messages, 2, "the suspended message waits in its queue too: {snapshot:?}");
        let poison = snapshot.queues.iter().find(|q| q.queue == "Poison").expect("the Poison queue is listed");
        assert_eq!((poison.messages, poison.in_retry_ms), (1, None));
        assert_eq!(snapshot.oldest_message_ms, hour + 90_000, "message 1, not the held ones");
        assert_eq!(snapshot.expiration_ms, 2 * 24 * hour, "the default messageExpirationTimeOut");
        assert!(!snapshot.storage_failing);

        let text = render(&telemetry, &snapshot);
        let retry = samples(&text, "transport_queue_retry_seconds");
        assert_eq!(
            retry,
            [format!(
                r#"transport_queue_retry_seconds{{queue="{}",next_hop_domain="{hop}",delivery_type="SmartHostConnectorDelivery"}} 90"#,
                retrying.queue
            )]
        );
        assert_eq!(
            samples(&text, "transport_queue_oldest_message_seconds"),
            ["transport_queue_oldest_message_seconds 3690"]
        );
        // The refused connections were counted too.
        assert!(
            samples(&text, "transport_connection_attempts_total").iter().any(|l| l.contains(r#"result="failure""#)),
            "{text}"
        );
    }
}
