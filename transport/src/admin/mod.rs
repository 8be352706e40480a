//! The admin HTTP API (DESIGN §8): server and component state, Get-Queue,
//! Get-Message and every queue and message action, `/metrics`, `/healthz`,
//! `/readyz`. Bearer-token protected.
