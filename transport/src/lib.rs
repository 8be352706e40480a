//! kube-transport's SMTP transport server.
//!
//! Module map (one owner per concern):
//! - [`config`]   the configuration file: types, time spans, role defaults, validation
//!   (compiled alone under the `config` feature for the operator)
//! - [`address`]  a mail address, parsed once (SMTP grammar, configured form)
//! - [`api`]      JSON types of the admin HTTP API (shared with transportctl and the operator)
//! - [`client`]   typed HTTP client of the admin API (feature `client`)
//! - [`query_flags`] the Get-Message / Get-MessageTrackingLog flags of both command lines
//! - [`clock`]    the time source every timer goes through (tests drive it)
//! - [`control`]  ServerState and server component states: who may connect, submit, deliver
//! - [`smtp`]     ESMTP receive: listeners, sessions, command parsing, DATA reading, TLS
//! - [`durable_file`] small state files replaced whole (crash-safe)
//! - [`envelope`] the message model every part shares (addresses, recipients, origin, state)
//! - [`queue`]    the durable store, the queue manager, retry schedule
//! - [`routing`]  categorizer: address spaces, accepted domains, MX lookup
//! - [`delivery`] outbound SMTP per next hop (lettre), per-recipient outcomes
//! - [`dsn`]      RFC 3464 delivery status notifications
//! - [`logs`]     connectivity and protocol logs (Exchange CSV formats, rollover, retention)
//! - [`admin`]    the admin HTTP API (axum), `/metrics`, `/healthz`, `/readyz`
//! - [`metrics`]  Prometheus metrics fed by sessions and queues
//! - [`server`]   wires the pieces together and runs them (intake, reloads, replay directory)
pub mod address;
pub mod api;
pub mod config;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod query_flags;

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod control;
#[cfg(feature = "server")]
pub mod delivery;
#[cfg(feature = "server")]
pub mod dsn;
#[cfg(feature = "server")]
pub mod durable_file;
#[cfg(feature = "server")]
pub mod envelope;
#[cfg(feature = "server")]
pub mod logs;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod queue;
#[cfg(feature = "server")]
pub mod routing;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod shadow;
#[cfg(feature = "server")]
pub mod smtp;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
