//! transport's integration tests, one test binary (`cargo test -p transport --test
//! integration`; one file's tests: `... --test integration -- admin::`). Each module is a
//! former test file and keeps its path; `support` and `abuse` are their helpers.
//!
//! The tests share this process: a server they start in-process, a port (testkit's
//! `free_port` never hands one out twice) and the tracing subscriber of `mta_sts` are
//! shared knowingly; everything else a test owns lives in its own temporary folder.

mod abuse;
mod support;

mod admin;
mod api_doc;
mod check_config;
mod connectivity;
mod crash;
mod crash_random;
mod dane;
mod delivery;
mod faults;
mod hostile;
mod hostile_config;
mod limits;
mod mta_sts;
mod mx;
mod notifications;
mod peer_faults;
mod relay;
mod relay_abuse;
mod reliability_doc;
mod retry;
mod routing;
mod safety_net;
mod shadow;
mod tls_report;
mod tracking;
