//! Wiring (in progress)
