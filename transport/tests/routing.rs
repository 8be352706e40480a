//! The categorizer's routing table (address spaces, cost, accepted domains)
//! and the MX resolver against a real authoritative DNS server on loopback.

use crate::support::dns::{DnsServer, Zone};
use crate::support::envelope;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use transport::config::{
    AcceptedDomain, AcceptedDomainType, AddressSpace, DnsSettings, MailboxDelivery, OrgSettings, SendConnector,
};
use transport::envelope::RecipientStatus;
use transport::routing::mx::{HostAddress, ResolveError, Resolver};
use transport::routing::{DeliveryType, NextHop, Route, Router};

fn space(domain: &str, cost: Option<u32>) -> AddressSpace {
    AddressSpace { domain: domain.to_string(), cost }
}

fn connector(name: &str, spaces: Vec<AddressSpace>) -> SendConnector {
    SendConnector {
        name: name.to_string(),
        address_spaces: spaces,
        smart_hosts: vec![format!("{}.relay.test:2525", name.to_lowercase()), "10.0.0.9".to_string()],
        ..SendConnector::default()
    }
}

fn dns_connector(name: &str, spaces: Vec<AddressSpace>) -> SendConnector {
    SendConnector { smart_hosts: vec![], dns_routing: true, ..connector(name, spaces) }
}

fn org(accepted: &[(&str, AcceptedDomainType)]) -> OrgSettings {
    OrgSettings {
        accepted_domains: accepted
            .iter()
            .map(|(d, t)| AcceptedDomain { domain: d.to_string(), domain_type: *t })
            .collect(),
        ..OrgSettings::default()
    }
}

/// The connector a domain is routed through, or the Unreachable reason.
fn via(router: &Router, domain: &str) -> Result<String, String> {
    match router.route(domain) {
        Route::Hop(hop) => Ok(hop.connector.unwrap_or_else(|| "<mailbox>".to_string())),
        Route::Unreachable(why) => Err(why),
    }
}

#[test]
fn most_specific_address_space_wins_over_cost() {
    let router = Router::new(
        &[
            connector("Any", vec![space("*", Some(1))]),
            connector("Wild", vec![space("*.example.com", Some(50))]),
            dns_connector("Exact", vec![space("sub.example.com", Some(100))]),
            connector("Deep", vec![space("*.deep.example.com", Some(90))]),
        ],
        &OrgSettings::default(),
        None,
    );
    assert_eq!(via(&router, "other.org").unwrap(), "Any");
    // `*.example.com` covers the domain itself and every subdomain ...
    assert_eq!(via(&router, "example.com").unwrap(), "Wild");
    assert_eq!(via(&router, "x.example.com").unwrap(), "Wild");
    // ... but not a domain that merely ends with the same letters.
    assert_eq!(via(&router, "badexample.com").unwrap(), "Any");
    // An exact space beats any wildcard, whatever the cost, and covers no subdomain.
    assert_eq!(via(&router, "sub.example.com").unwrap(), "Exact");
    assert_eq!(via(&router, "a.sub.example.com").unwrap(), "Wild");
    // The longest wildcard suffix wins.
    assert_eq!(via(&router, "x.deep.example.com").unwrap(), "Deep");
    assert_eq!(via(&router, "deep.example.com").unwrap(), "Deep");
    // Case and the trailing dot of an absolute name do not matter.
    assert_eq!(via(&router, "SUB.Example.COM.").unwrap(), "Exact");
}

#[test]
fn next_hops_per_routing_kind() {
    let router = Router::new(
        &[connector("Smart", vec![space("*", None)]), dns_connector("Dns", vec![space("*.mx.test", None)])],
        &OrgSettings::default(),
        None,
    );
    // DNS routing: one queue per destination domain (lower case).
    assert_eq!(
        router.route("A.MX.test"),
        Route::Hop(NextHop {
            delivery_type: DeliveryType::DnsConnectorDelivery,
            next_hop_domain: "a.mx.test".to_string(),
            connector: Some("Dns".to_string()),
        })
    );
    // Smart hosts: one queue per connector, whatever the domain.
    let smart = NextHop {
        delivery_type: DeliveryType::SmartHostConnectorDelivery,
        next_hop_domain: "smart.relay.test:2525,10.0.0.9".to_string(),
        connector: Some("Smart".to_string()),
    };
    assert_eq!(router.route("one.org"), Route::Hop(smart.clone()));
    assert_eq!(router.route("two.org"), Route::Hop(smart));
    // A domain literal is routed like any domain.
    assert_eq!(via(&router, "[192.0.2.1]").unwrap(), "Smart");
    assert_eq!(router.connector("Dns").map(|c| c.dns_routing), Some(true));
    assert!(router.connector("Nope").is_none());
}

#[test]
fn lowest_cost_then_connector_order() {
    let router = Router::new(
        &[
            connector("Expensive", vec![space("*.example.com", Some(10))]),
            connector("Cheap", vec![space("*.example.com", Some(2)), space("*", Some(1))]),
            connector("CheapToo", vec![space("*.example.com", Some(2))]),
            connector("DefaultCost", vec![space("*.cost.test", None)]),
            connector("Cost2", vec![space("*.cost.test", Some(2))]),
        ],
        &OrgSettings::default(),
        None,
    );
    assert_eq!(via(&router, "a.example.com").unwrap(), "Cheap");
    // An absent cost is 1.
    assert_eq!(via(&router, "a.cost.test").unwrap(), "DefaultCost");
    // Equal specificity and cost: the first connector.
    let reversed = Router::new(
        &[
            connector("Second", vec![space("example.net", Some(3))]),
            connector("First", vec![space("example.net", Some(3))]),
        ],
        &OrgSettings::default(),
        None,
    );
    assert_eq!(via(&reversed, "example.net").unwrap(), "Second");
}

#[test]
fn accepted_domains_by_type() {
    use AcceptedDomainType::*;
    let accepted = org(&[
        ("local.test", Authoritative),
        ("*.corp.test", Authoritative),
        ("partner.test", InternalRelay),
        ("outside.test", ExternalRelay),
    ]);
    let mailbox = MailboxDelivery { host: "127.0.0.1:2424".to_string() };
    let router = Router::new(&[dns_connector("Internet", vec![space("*", None)])], &accepted, Some(&mailbox));

    let mailbox_hop = Route::Hop(NextHop {
        delivery_type: DeliveryType::SmtpDeliveryToMailbox,
        next_hop_domain: "127.0.0.1:2424".to_string(),
        connector: None,
    });
    assert_eq!(router.route("local.test"), mailbox_hop);
    assert_eq!(router.route("LOCAL.Test."), mailbox_hop);
    assert_eq!(router.route("corp.test"), mailbox_hop);
    assert_eq!(router.route("eu.corp.test"), mailbox_hop);
    // Relay domains go through the send connectors.
    assert_eq!(via(&router, "partner.test").unwrap(), "Internet");
    assert_eq!(via(&router, "outside.test").unwrap(), "Internet");
    // A subdomain of an exact accepted domain is not accepted.
    assert_eq!(via(&router, "x.local.test").unwrap(), "Internet");

    assert_eq!(router.accepted("Partner.Test"), Some(InternalRelay));
    assert_eq!(router.accepted("sub.corp.test"), Some(Authoritative));
    assert_eq!(router.accepted("example.org"), None);

    let sender = |text: &str| transport::envelope::Address::parse(text).unwrap();
    assert!(router.is_internal_sender(Some(&sender("alice@local.test"))));
    assert!(router.is_internal_sender(Some(&sender("bob@PARTNER.test"))));
    assert!(!router.is_internal_sender(Some(&sender("carol@outside.test"))), "ExternalRelay senders are external");
    assert!(!router.is_internal_sender(Some(&sender("dave@example.org"))));
    assert!(!router.is_internal_sender(None), "the null sender is not internal");

    // Without a mailbox hop, an authoritative domain has nowhere to go.
    let no_mailbox = Router::new(&[dns_connector("Internet", vec![space("*", None)])], &accepted, None);
    let why = via(&no_mailbox, "local.test").unwrap_err();
    assert!(why.contains("no mailbox delivery hop"), "{why}");
}

#[test]
fn no_matching_connector_is_unreachable() {
    let router = Router::new(&[connector("Only", vec![space("example.com", None)])], &OrgSettings::default(), None);
    let why = via(&router, "elsewhere.org").unwrap_err();
    assert!(why.contains("elsewhere.org"), "the reason names the domain: {why}");
    let none = Router::new(&[], &OrgSettings::default(), None);
    assert!(via(&none, "example.com").unwrap_err().contains("example.com"));
}

#[test]
fn split_groups_pending_recipients_by_route() {
    let router = Router::new(
        &[dns_connector("Dns", vec![space("*.example.com", None)]), connector("Smart", vec![space("*.org", None)])],
        &OrgSettings::default(),
        None,
    );
    let mut env = envelope(
        Some("alice@example.org"),
        &[
            "a@x.example.com",   // 0: Dns x.example.com
            "b@one.org",         // 1: Smart
            "c@X.Example.COM",   // 2: Dns x.example.com (case)
            "d@two.org",         // 3: Smart, but already delivered
            "postmaster",        // 4: no domain
            "e@y.example.com",   // 5: Dns y.example.com
            "f@nowhere.invalid", // 6: no connector
            "g@three.org",       // 7: Smart
        ],
    );
    env.recipients[3].status = RecipientStatus::Delivered;

    let groups = router.split(&env);
    let shape: Vec<(String, Vec<usize>)> = groups
        .iter()
        .map(|(route, idx)| {
            let name = match route {
                Route::Hop(h) => format!("{:?} {}", h.delivery_type, h.next_hop_domain),
                Route::Unreachable(why) => format!("Unreachable: {why}"),
            };
            (name, idx.clone())
        })
        .collect();
    assert_eq!(shape.len(), 5, "{shape:#?}");
    assert_eq!(shape[0], ("DnsConnectorDelivery x.example.com".to_string(), vec![0, 2]));
    assert_eq!(shape[1].1, vec![1, 7]);
    assert!(shape[1].0.starts_with("SmartHostConnectorDelivery"), "{shape:#?}");
    assert!(shape[2].0.starts_with("Unreachable") && shape[2].0.contains("postmaster"), "{shape:#?}");
    assert_eq!(shape[2].1, vec![4]);
    assert_eq!(shape[3], ("DnsConnectorDelivery y.example.com".to_string(), vec![5]));
    assert!(shape[4].0.contains("nowhere.invalid"), "{shape:#?}");
    assert_eq!(shape[4].1, vec![6]);

    // Nothing pending: nothing to route.
    for r in &mut env.recipients {
        r.status = RecipientStatus::Failed { reply: "550 5.1.1 gone".into() };
    }
    assert!(router.split(&env).is_empty());
}

// --- The resolver against a real DNS server ---------------------------------

fn test_zone() -> Zone {
    Zone::new("test")
        // Preference order differs from insertion order.
        .mx("pref.test", 20, "mx2.pref.test")
        .mx("pref.test", 10, "mx1.pref.test")
        .mx("pref.test", 30, "mx3.pref.test")
        .a("mx1.pref.test", Ipv4Addr::new(127, 0, 0, 1))
        .aaaa("mx1.pref.test", Ipv6Addr::LOCALHOST)
        .a("mx2.pref.test", Ipv4Addr::new(127, 0, 0, 2))
        .a("mx3.pref.test", Ipv4Addr::new(127, 0, 0, 3))
        // No MX: the domain's own address.
        .a("implicit.test", Ipv4Addr::new(127, 0, 0, 5))
        // Exists, but neither MX nor address.
        .txt("bare.test", "v=spf1 -all")
        .null_mx("nomail.test")
        // The only MX host does not exist.
        .mx("ghost.test", 10, "nothing-here.ghost.test")
        // The first MX host does not exist; the second does.
        .mx("half.test", 5, "missing.half.test")
        .mx("half.test", 50, "mx.half.test")
        .a("mx.half.test", Ipv4Addr::new(127, 0, 0, 7))
        // An MX host in a zone this server does not serve (it answers REFUSED).
        .mx("foreign.test", 10, "mx.not-served.example")
}

fn resolver(dns: &DnsServer) -> Resolver {
    Resolver::new(Some(&DnsSettings { nameservers: vec![dns.addr] })).expect("resolver")
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

#[tokio::test]
async fn mx_hosts_in_preference_order() {
    let dns = DnsServer::start(vec![test_zone()]);
    let targets = resolver(&dns).mx_targets("Pref.Test.", 2525).await.expect("pref.test resolves");
    let hosts: Vec<&str> = targets.iter().map(|t| t.host.as_str()).collect();
    assert_eq!(hosts, ["mx1.pref.test", "mx1.pref.test", "mx2.pref.test", "mx3.pref.test"]);
    let mut first: Vec<SocketAddr> = targets[..2].iter().map(|t| t.addr).collect();
    first.sort();
    assert_eq!(first, [addr("127.0.0.1", 2525), addr("::1", 2525)], "IPv4 and IPv6 of the first MX host");
    assert_eq!(targets[2].addr, addr("127.0.0.2", 2525));
    assert_eq!(targets[3].addr, addr("127.0.0.3", 2525));
}

#[tokio::test]
async fn implicit_mx_is_the_domain_itself() {
    let dns = DnsServer::start(vec![test_zone()]);
    let targets = resolver(&dns).mx_targets("implicit.test", 25).await.expect("implicit MX");
    assert_eq!(targets, vec![HostAddress { host: "implicit.test".to_string(), addr: addr("127.0.0.5", 25) }]);
}

#[tokio::test]
async fn permanent_dns_failures() {
    let dns = DnsServer::start(vec![test_zone()]);
    let resolver = resolver(&dns);

    let null = resolver.mx_targets("nomail.test", 25).await.expect_err("null MX");
    assert!(matches!(null, ResolveError::NullMx { ref domain } if domain == "nomail.test"), "{null:?}");
    assert!(null.is_permanent());
    assert!(null.reply().starts_with("556 5.1.10 "), "{}", null.reply());

    let nx = resolver.mx_targets("does-not-exist.test", 25).await.expect_err("NXDOMAIN");
    assert!(matches!(nx, ResolveError::NoSuchDomain { ref domain } if domain == "does-not-exist.test"), "{nx:?}");
    assert!(nx.is_permanent());
    assert!(nx.reply().starts_with("550 5.4.4 "), "{}", nx.reply());

    let bare = resolver.mx_targets("bare.test", 25).await.expect_err("no MX and no address");
    assert!(bare.is_permanent(), "{bare:?}");
    assert!(bare.to_string().contains("no MX and no A/AAAA"), "{bare}");
    assert!(bare.reply().starts_with("550 5.4.4 "), "{}", bare.reply());
}

#[tokio::test]
async fn mx_hosts_without_address_are_skipped_and_temporary_when_none_is_left() {
    let dns = DnsServer::start(vec![test_zone()]);
    let resolver = resolver(&dns);

    let ghost = resolver.mx_targets("ghost.test", 25).await.expect_err("no MX host resolves");
    assert!(matches!(ghost, ResolveError::Temporary { .. }), "{ghost:?}");
    assert!(!ghost.is_permanent());
    assert!(ghost.to_string().contains("nothing-here.ghost.test"), "{ghost}");
    assert!(ghost.reply().starts_with("451 4.4.0 "), "{}", ghost.reply());

    let half = resolver.mx_targets("half.test", 25).await.expect("the second MX host resolves");
    assert_eq!(half, vec![HostAddress { host: "mx.half.test".to_string(), addr: addr("127.0.0.7", 25) }]);

    // A refusing server is not an answer: temporary.
    let foreign = resolver.mx_targets("foreign.test", 25).await.expect_err("REFUSED for the MX host");
    assert!(!foreign.is_permanent(), "{foreign:?}");
    let outside = resolver.mx_targets("outside.example", 25).await.expect_err("REFUSED for the domain");
    assert!(matches!(outside, ResolveError::Temporary { .. }), "{outside:?}");
}

#[tokio::test]
async fn domain_literals_and_hosts() {
    let dns = DnsServer::start(vec![test_zone()]);
    let resolver = resolver(&dns);
    assert_eq!(
        resolver.mx_targets("[127.0.0.1]", 2526).await.expect("domain literal"),
        vec![HostAddress { host: "[127.0.0.1]".to_string(), addr: addr("127.0.0.1", 2526) }]
    );
    assert_eq!(resolver.mx_targets("[IPv6:::1]", 25).await.expect("IPv6 domain literal")[0].addr, addr("::1", 25));
    for literal in ["[127.0.0.1]", "127.0.0.1"] {
        let t = resolver.host_targets(literal, 2527).await.expect("IP literal");
        assert_eq!(t, vec![HostAddress { host: "127.0.0.1".to_string(), addr: addr("127.0.0.1", 2527) }]);
    }
    let named = resolver.host_targets("mx2.pref.test", 26).await.expect("host name");
    assert_eq!(named, vec![HostAddress { host: "mx2.pref.test".to_string(), addr: addr("127.0.0.2", 26) }]);
    // A smart host that does not resolve is a temporary problem (configuration, not the recipient).
    let missing = resolver.host_targets("missing.pref.test", 25).await.expect_err("no such host");
    assert!(matches!(missing, ResolveError::NoAddress { .. }) && !missing.is_permanent(), "{missing:?}");
}
