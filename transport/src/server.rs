//! Wires a transport server together (being rewritten).
