//! Prometheus metrics of a transport server (prometheus-client), fed by the
//! SMTP sessions ([`SessionEvents`]) and the queue ([`QueueEvents`]); gauges
//! of queue lengths and states are refreshed when `/metrics` is scraped.
use crate::api::QueueStatus;
use crate::config::{Component, ComponentState};
use crate::logs::{LogEvent, ProtocolLog, ProtocolSession};
use crate::queue::manager::QueueEvents;
use crate::routing::NextHop;
use crate::smtp::SessionEvents;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

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
    failed: Counter,
    dsns: Family<Labels, Counter>,
    attempts: Family<Labels, Counter>,
    queue_messages: Family<Labels, Gauge>,
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
            failed: Counter::default(),
            dsns: Family::default(),
            attempts: Family::default(),
            queue_messages: Family::default(),
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
        registry.register("recipients_deferred", "Recipients given a message-level retry", t.deferred.clone());
        registry.register("recipients_failed", "Recipients failed for good", t.failed.clone());
        registry.register("dsns", "Delivery status notifications generated, by action", t.dsns.clone());
        registry.register("connection_attempts", "Outbound connection attempts, by result", t.attempts.clone());
        registry.register("queue_messages", "Messages in queues, by queue status", t.queue_messages.clone());
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

    /// Refreshes the state gauges and renders the text exposition format.
    pub fn render(
        &self,
        server_state_code: u8,
        components: &[(Component, ComponentState)],
        queues: &[(QueueStatus, u64)],
        stored: usize,
        shadow_held: usize,
        safety_net: usize,
    ) -> String {
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
        for status in [
            QueueStatus::Active,
            QueueStatus::Ready,
            QueueStatus::Retry,
            QueueStatus::Suspended,
            QueueStatus::Connecting,
        ] {
            let n = queues.iter().filter(|(s, _)| *s == status).map(|(_, n)| *n).sum::<u64>();
            self.queue_messages.get_or_create(&labels(&[("status", &format!("{status:?}"))])).set(n as i64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn delivery_type(hop: &NextHop) -> String {
    format!("{:?}", hop.delivery_type)
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

    fn delivered(&self, hop: &NextHop, recipients: usize) {
        self.delivered.get_or_create(&labels(&[("delivery_type", &delivery_type(hop))])).inc_by(recipients as u64);
    }

    fn deferred(&self, hop: &NextHop, recipients: usize) {
        self.deferred.get_or_create(&labels(&[("delivery_type", &delivery_type(hop))])).inc_by(recipients as u64);
    }

    fn failed(&self, recipients: usize) {
        self.failed.inc_by(recipients as u64);
    }

    fn dsn(&self, action: &'static str) {
        self.dsns.get_or_create(&labels(&[("action", action)])).inc();
    }
}
