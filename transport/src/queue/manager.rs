//! The queue manager (being rewritten).
