//! The operator's reconcilers, one reconcile at a time, against the real API server (a
//! control plane shared by the tests of this process, a namespace per test) with the
//! transport servers' admin API faked (see `harness`): what each reconcile writes, decides
//! and reports, fast and step by step. The e2e suite (`tests/cluster`) runs the whole
//! operator with real servers.
mod component_states;
mod harness;
mod service;
