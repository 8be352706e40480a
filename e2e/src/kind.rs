//! Helpers of the kind suite (being built).
