//! DNS routing through the whole server: a message for a domain is delivered to
//! its MX host (or, without MX, to the domain's own address), found by asking a
//! real DNS server started inside the test; a null MX (RFC 7505) or a domain
//! that does not exist fails at once with an NDR to the sender.

use crate::support::dns::{DnsServer, Zone};
use crate::support::*;
use std::net::Ipv4Addr;
use std::time::Duration;

fn zone() -> Zone {
    Zone::new("example")
        .mx("mx.example", 10, "mail.mx.example")
        .a("mail.mx.example", Ipv4Addr::LOCALHOST)
        .a("implicit.example", Ipv4Addr::LOCALHOST)
        .null_mx("nomail.example")
}

#[test]
fn mx_implicit_mx_null_mx_and_nxdomain() {
    let dns = DnsServer::start(vec![zone()]);
    // The MX hosts all resolve to 127.0.0.1; the connector's port points at this sink.
    let world = Sink::start();
    let mailbox = Sink::start();
    let server = start_transport(&TransportSetup {
        dns_routing: true,
        connector_port: Some(world.addr.port()),
        nameserver: Some(dns.addr),
        mailbox: Some(mailbox.addr),
        ..Default::default()
    });
    let (mut c, banner) = SmtpClient::connect(server.smtp).unwrap_or_else(|e| panic!("{e}: {}", server.log()));
    assert!(banner.starts_with("220"), "{banner}");
    c.cmd("EHLO client.test").unwrap();
    for (to, tag) in [
        ("bob@mx.example", "via-mx"),
        ("carol@implicit.example", "via-implicit-mx"),
        ("dave@nomail.example", "to-null-mx"),
        ("erin@nothere.example", "to-nxdomain"),
    ] {
        let reply = c.send_message("alice@local.test", &[to], &test_message(tag, 1)).unwrap();
        assert!(reply.starts_with("250 2.6.0"), "{to}: {reply}");
    }
    let delivered = world.wait_for(2, Duration::from_secs(30));
    let ids: Vec<String> = delivered.iter().filter_map(|m| m.header("Message-ID")).collect();
    assert!(ids.contains(&"<via-mx@test.invalid>".to_string()), "{ids:?}");
    assert!(ids.contains(&"<via-implicit-mx@test.invalid>".to_string()), "{ids:?}");

    // Two NDRs to alice (at the mailbox hop), at once: no retry schedule for these.
    let ndrs = mailbox.wait_for(2, Duration::from_secs(30));
    let status_of = |rcpt: &str| {
        let ndr = ndrs
            .iter()
            .find(|m| m.content.contains(&format!("Final-Recipient: rfc822; {rcpt}")))
            .unwrap_or_else(|| panic!("an NDR for {rcpt}: {:?}", ndrs.iter().map(|m| &m.content).collect::<Vec<_>>()));
        assert!(ndr.mail_args.starts_with("<>"), "{}", ndr.mail_args);
        assert!(ndr.content.contains("Action: failed"), "{}", ndr.content);
        ndr.content.clone()
    };
    let null_mx = status_of("dave@nomail.example");
    assert!(null_mx.contains("Status: 5.1.10") && null_mx.contains("556 5.1.10"), "{null_mx}");
    let nxdomain = status_of("erin@nothere.example");
    assert!(nxdomain.contains("Status: 5.4.4"), "{nxdomain}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(world.messages().len(), 2, "nothing else reached the world");
}

/// A destination whose server accepts connections and never greets (hung)
/// holds one outbound connection, not one a message, and with the server-wide
/// limit (maxOutboundConnections) nearly used up by such destinations, mail to
/// a live domain still flows through the place that is left.
#[test]
fn dead_destinations_hold_one_connection_each_and_live_mail_flows() {
    let world = Sink::start();
    // The hung servers: the same port on another loopback address.
    let tarpit = std::net::TcpListener::bind(("127.0.0.2", world.addr.port())).expect("tarpit");
    tarpit.set_nonblocking(true).expect("nonblocking");
    let dead = ["dead1.example", "dead2.example", "dead3.example"];
    let mut zone =
        Zone::new("example").mx("live.example", 10, "mx.live.example").a("mx.live.example", Ipv4Addr::LOCALHOST);
    for d in dead {
        let host = format!("mx.{d}");
        zone = zone.mx(d, 10, &host).a(&host, Ipv4Addr::new(127, 0, 0, 2));
    }
    let dns = DnsServer::start(vec![zone]);
    let server = start_transport(&TransportSetup {
        dns_routing: true,
        connector_port: Some(world.addr.port()),
        nameserver: Some(dns.addr),
        edit: edit(|f| f.max_outbound_connections = Some(4)),
        ..Default::default()
    });
    let (mut c, _) = SmtpClient::connect(server.smtp).unwrap_or_else(|e| panic!("{e}: {}", server.log()));
    c.cmd("EHLO client.test").unwrap();
    for d in dead {
        for n in 0..5 {
            let reply =
                c.send_message("alice@local.test", &[&format!("u{n}@{d}")], &test_message(&format!("{d}-{n}"), 1));
            assert!(reply.unwrap().starts_with("250"));
        }
    }
    // The dead destinations' probes are open (waiting for a greeting) before the live mail comes.
    let mut held = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while held.len() < dead.len() && std::time::Instant::now() < deadline {
        match tarpit.accept() {
            Ok((conn, _)) => held.push(conn),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert_eq!(held.len(), dead.len(), "one probe a dead destination: {}", server.log());
    for n in 0..20 {
        let reply = c.send_message(
            "alice@local.test",
            &[&format!("u{n}@live.example")],
            &test_message(&format!("live-{n}"), 1),
        );
        assert!(reply.unwrap().starts_with("250"));
    }
    // Delivered through the one place left, while the dead ones still hold theirs.
    let delivered = world.wait_for(20, Duration::from_secs(30));
    assert_eq!(delivered.len(), 20);
    std::thread::sleep(Duration::from_millis(500));
    let extra = std::iter::from_fn(|| tarpit.accept().ok()).count();
    assert_eq!(extra, 0, "a dead destination opened more than its probe (15 messages wait for 3 of them)");
    drop(held);
}
