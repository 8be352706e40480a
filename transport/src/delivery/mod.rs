//! delivery (in progress)
