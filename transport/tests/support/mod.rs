//! Support of transport's integration tests: the test kit (real peers: Postfix's
//! smtp-sink, an SMTP client, the `transport` binary as a process) and what only these
//! tests need: an in-process server on a manual clock (`inproc`), the in-test DNS server
//! (`dns`), MTA-STS policy hosts (`sts`) and queue envelopes.
//!
//! A missing peer fails the test with the package to install; it never skips (under CI=true
//! or not), because a skipped test proves nothing.

pub mod dns;
pub mod inproc;
pub mod sts;

pub use testkit::block_on;
pub use testkit::config_file::{authoritative, edit, receive_connector, write_config_file, Placement, TransportSetup};
pub use testkit::listener::wait_for_smtp_ready;
pub use testkit::peer::tool;
pub use testkit::poll::{eventually, eventually_or};
pub use testkit::port::{free_addr, free_port};
pub use testkit::sink::{Sink, SinkMessage};
pub use testkit::smtp_client::{test_message, SmtpClient};
pub use testkit::transport_process::TransportProcess;

/// The `transport` binary of this build on the config of `setup`, in a new folder; returns
/// once it serves.
pub fn start_transport(setup: &TransportSetup) -> TransportProcess {
    TransportProcess::start(std::path::Path::new(env!("CARGO_BIN_EXE_transport")), setup)
}

/// Retry settings with every retry interval at `secs` seconds, so a hop that comes back
/// is used soon.
pub fn retry_every(secs: u64) -> transport::config::RetrySettings {
    let t = Some(transport::config::TimeSpan::from_secs(secs));
    transport::config::RetrySettings {
        queue_glitch_retry_interval: t,
        transient_failure_retry_interval: t,
        outbound_connection_failure_retry_interval: t,
        message_retry_interval: t,
        ..Default::default()
    }
}

/// An envelope as the receive side would queue it from `client.test` on the Default
/// connector (`from` None: a null reverse path). An address no SMTP session would take
/// (`postmaster` without a domain) is put in as a queue record read back holds it.
pub fn envelope(from: Option<&str>, recipients: &[&str]) -> transport::envelope::Envelope {
    use transport::envelope::{Address, Envelope, MessageId, Origin, Recipient, Source};
    let origin = Origin {
        connector: "Default".into(),
        client_ip: None,
        helo: "client.test".into(),
        tls: false,
        source: Source::Smtp,
    };
    let address = |text: &str| {
        Address::parse(text).unwrap_or_else(|_| {
            serde_json::from_value(serde_json::Value::String(text.into())).expect("a JSON string reads as an address")
        })
    };
    let recipients = recipients.iter().map(|r| Recipient::new(address(r))).collect();
    Envelope::new(MessageId(1), from.map(address), recipients, 0, origin, 0)
}
