//! The cluster-free local e2e harness (being built).
