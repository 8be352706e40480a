//! `_smtp._tls` TXT records (RFC 8460 §3): never a panic. An accepted record starts with
//! `v=TLSRPTv1`, has at least one rua, and each `mailto:` rua is one address (one `@`
//! with something either side, no comma), each `https:` one a host and a path; discovery
//! over the record alone agrees with the parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use transport::fuzzing::{tlsrpt_discover, TlsRptRecord, TlsRptRua};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = TlsRptRecord::parse(text);
    if let Ok(record) = &parsed {
        assert!(text.starts_with("v=TLSRPTv1"));
        assert!(!record.rua.is_empty());
        for rua in &record.rua {
            match rua {
                TlsRptRua::Mailto(address) => {
                    let (local, domain) = address.split_once('@').expect("an @");
                    assert!(!local.is_empty() && !domain.is_empty() && !domain.contains('@'), "{address}");
                    assert!(!address.contains(','), "{address}");
                }
                TlsRptRua::Https(https) => {
                    assert!(https.uri.to_ascii_lowercase().starts_with("https://"), "{https:?}");
                    assert!(!https.host.is_empty() && https.path.starts_with('/'), "{https:?}");
                }
            }
        }
    }
    if text.starts_with("v=TLSRPTv1") {
        let discovered = tlsrpt_discover(&[text.to_string()]);
        assert_eq!(discovered.ok(), parsed.ok(), "discovery and parser disagree");
    }
});
