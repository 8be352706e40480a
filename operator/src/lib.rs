//! The kube-transport operator (TransportService, TransportConfig and
//! ServerComponentState controllers). Its configuration rendering reuses the
//! transport crate's config types: `transport::config`.
pub use transport::config::TransportFile;
