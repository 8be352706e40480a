//! kube-transport's SMTP transport server.
//!
//! Module map (one owner per concern):
//! - [`config`]   the configuration file: types, time spans, role defaults, validation
//!                (compiled alone under the `config` feature for the operator)
//! - [`clock`]    the time source every timer goes through (tests drive it)
//! - [`smtp`]     ESMTP receive: listeners, sessions, command parsing, DATA reading, TLS
//! - [`queue`]    the message model and the durable store (group commit, recovery)
//! - [`routing`]  categorizer: address spaces, send connector choice, MX lookup
//! - [`delivery`] outbound SMTP per next hop (lettre), per-recipient outcomes
//! - [`server`]   wires the pieces together and runs them
pub mod config;

#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod delivery;
#[cfg(feature = "server")]
pub mod queue;
#[cfg(feature = "server")]
pub mod routing;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod smtp;
