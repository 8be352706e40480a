//! A typed client of the admin HTTP API, for `transportctl` and the operator.
