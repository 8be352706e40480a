//! Waiting until a server a test started listens, or serves SMTP.
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Nothing acceptable answered on an address within the bound.
#[derive(Debug, thiserror::Error)]
#[error("no {what} on {addr} after {within:?}")]
pub struct NotReady {
    what: &'static str,
    addr: SocketAddr,
    within: Duration,
}

/// Waits until something listens on `addr` (a peer such as smtp-sink, which may be told to
/// greet late or with `421`).
pub fn try_wait_for_listener(addr: SocketAddr, within: Duration) -> Result<(), NotReady> {
    // A connection to a port nobody listens on can "succeed" by connecting to itself (TCP
    // simultaneous open, when the kernel picks that very port as the source): only a
    // different peer proves a listener.
    wait_until_connected(addr, within, "listener", |stream| stream.local_addr().ok() != stream.peer_addr().ok())
}

/// Waits until the SMTP server on `addr` is serving: the transport server listens while it
/// recovers its queue (Starting) but greets with `421 4.3.2` then, and a test must not begin
/// yet. A `2xx`, or a final `5xx` refusal (`554`, this client's address not allowed), means
/// it is serving.
pub fn try_wait_for_smtp_ready(addr: SocketAddr, within: Duration) -> Result<(), NotReady> {
    wait_until_connected(addr, within, "SMTP server past Starting", |stream| {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut first = [0u8; 4];
        stream.read_exact(&mut first).is_ok() && serving_greeting(&first)
    })
}

/// [`try_wait_for_listener`]; panics after `within`.
pub fn wait_for_listener(addr: SocketAddr, within: Duration) {
    try_wait_for_listener(addr, within).unwrap_or_else(|e| panic!("{e}"))
}

/// [`try_wait_for_smtp_ready`]; panics after `within`.
pub fn wait_for_smtp_ready(addr: SocketAddr, within: Duration) {
    try_wait_for_smtp_ready(addr, within).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the first bytes of a greeting say the server serves (`2xx`, or a final `5xx`).
fn serving_greeting(first: &[u8]) -> bool {
    first.len() >= 3 && first[..3].iter().all(u8::is_ascii_digit) && matches!(first[0], b'2' | b'5')
}

/// Connects to `addr` until `accept` likes the connection, or `within` passes.
fn wait_until_connected(
    addr: SocketAddr,
    within: Duration,
    what: &'static str,
    accept: impl Fn(&mut TcpStream) -> bool,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            if accept(&mut stream) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(NotReady { what, addr, within })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_servers_are_not_serving_yet() {
        assert!(serving_greeting(b"220 "));
        assert!(serving_greeting(b"554 "));
        assert!(!serving_greeting(b"421 "), "Starting: 421 4.3.2");
        assert!(!serving_greeting(b"SSH-"));
        assert!(!serving_greeting(b"22"));
    }

    #[test]
    fn a_listener_is_found_and_a_closed_port_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        try_wait_for_listener(listener.local_addr().unwrap(), Duration::from_secs(10)).expect("listening");
        let closed = crate::port::free_addr();
        let e = try_wait_for_listener(closed, Duration::from_millis(300)).unwrap_err();
        assert!(e.to_string().contains(&closed.to_string()), "{e}");
    }
}
