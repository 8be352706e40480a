//! A next hop as smart hosts, the mailbox hop, shadow peers and Redirect-Message targets
//! are written: `host`, `host:port`, `[ip]`, `[ip]:port` or `ipv4:port` (an IPv6 address
//! only in brackets, so that its colons are never read as a port). Parsed once here by
//! the configuration's validation, delivery and the admin API alike.
use super::validate::is_host_name;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

const FORMS: &str = "write host, host:port, [ip] or [ip]:port";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: Host,
    /// Absent: the connector's port or the protocol's default.
    pub port: Option<u16>,
}

impl HostPort {
    /// The forms above; the error names the text and says what to write.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let s = text.trim();
        let port = |p: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("\"{s}\" has an invalid port \"{p}\" (1 to 65535)")),
            Ok(n) => Ok(n),
        };
        if let Some(rest) = s.strip_prefix('[') {
            let Some((inner, after)) = rest.split_once(']') else {
                return Err(format!("\"{s}\" has no closing bracket: {FORMS}"));
            };
            // RFC 5321 §4.1.3 writes IPv6 literals with an `IPv6:` tag.
            let ip = inner.get(..5).filter(|t| t.eq_ignore_ascii_case("ipv6:")).map_or(inner, |_| &inner[5..]);
            let Ok(ip) = ip.parse::<IpAddr>() else {
                return Err(format!("\"{s}\": \"{inner}\" is not an IP address: {FORMS}"));
            };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(p) => Some(port(p)?),
                    None => return Err(format!("\"{s}\" is not a host: {FORMS}")),
                },
            };
            return Ok(HostPort { host: Host::Ip(ip), port });
        }
        if s.parse::<Ipv6Addr>().is_ok() {
            return Err(format!("\"{s}\" is an IPv6 address: write it in brackets, [{s}] or [{s}]:25"));
        }
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(port(p)?)),
            None => (s, None),
        };
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) if is_host_name(host) => Host::Name(host.to_ascii_lowercase()),
            Err(_) => return Err(format!("\"{s}\" is not a host: {FORMS}")),
        };
        Ok(HostPort { host, port })
    }

    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }

    /// The host as the resolver takes it: a name, or an address's text.
    pub fn host_text(&self) -> String {
        match &self.host {
            Host::Name(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Name(name) => f.write_str(name)?,
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            Host::Ip(ip) => write!(f, "{ip}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(text: &str) -> (String, Option<u16>) {
        let parsed = HostPort::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (parsed.host_text(), parsed.port)
    }

    #[test]
    fn the_forms_a_next_hop_is_written_in() {
        assert_eq!(hp("relay.test"), ("relay.test".into(), None));
        assert_eq!(hp("Relay.Test:587"), ("relay.test".into(), Some(587)));
        assert_eq!(hp("[::1]"), ("::1".into(), None));
        assert_eq!(hp("[::1]:2526"), ("::1".into(), Some(2526)));
        assert_eq!(hp("[IPv6:2001:db8::1]:25"), ("2001:db8::1".into(), Some(25)));
        assert_eq!(hp("[10.0.0.1]"), ("10.0.0.1".into(), None));
        assert_eq!(hp("127.0.0.1:2526"), ("127.0.0.1".into(), Some(2526)));
        assert_eq!(hp(" relay.test:25 "), ("relay.test".into(), Some(25)));
        assert_eq!(HostPort::parse("[::1]:26").unwrap().port_or(25), 26);
        assert_eq!(HostPort::parse("relay.test").unwrap().port_or(587), 587);
    }

    #[test]
    fn anything_else_is_refused_saying_what_to_write() {
        for bad in
            ["", ":25", "relay.test:", "relay.test:x", "relay.test:0", "relay.test:70000", "[::1", "[::1]x", "a:b:c"]
        {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
        for bad in ["relay test", "[relay.test]"] {
            let e = HostPort::parse(bad).unwrap_err();
            assert!(e.contains("write host, host:port, [ip] or [ip]:port") || e.contains("brackets"), "{bad}: {e}");
        }
        let e = HostPort::parse("2001:db8::1").unwrap_err();
        assert!(e.contains("write it in brackets, [2001:db8::1]"), "{e}");
    }

    #[test]
    fn it_is_written_back_as_it_is_read() {
        for text in ["relay.test", "relay.test:587", "[::1]:2526", "10.0.0.1:25", "10.0.0.1"] {
            assert_eq!(HostPort::parse(text).unwrap().to_string(), text);
        }
    }
}
