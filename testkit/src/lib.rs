//! Test support of kube-transport, one of each, for transport's tests, the e2e suites and
//! the bench: the peers they need (Postfix's smtp-sink, found on PATH), an SMTP client that
//! shows every reply (blocking, and async for tests on tokio), the `transport` binary as a
//! process with its config file built from [`transport::config::TransportFile`], polling
//! with a bound, free ports, and what a CLI's `--help` lists.
//!
//! A missing peer fails (never skips): a skipped test proves nothing.

pub mod async_smtp_client;
pub mod cli_help;
pub mod config_file;
pub mod doc_table;
pub mod listener;
pub mod peer;
pub mod poll;
pub mod port;
pub mod sink;
pub mod smtp_client;
pub mod transport_process;

pub use async_smtp_client::AsyncSmtpClient;
pub use config_file::TransportSetup;
pub use listener::{wait_for_listener, wait_for_smtp_ready};
pub use peer::tool;
pub use poll::{eventually, eventually_or};
pub use port::free_port;
pub use sink::{Sink, SinkMessage};
pub use smtp_client::SmtpClient;
pub use transport_process::TransportProcess;

/// Runs a future to completion on a fresh current-thread runtime (the tests are synchronous).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}
