//! `_smtp._tls` TXT records (RFC 8460 §3): never a panic. An accepted record starts with
//! `v=TLSRPTv1`, has at least one rua, and each `mailto:` rua is one address (an SMTP
//! mailbox that parses again, no comma), each `https:` one a host and a path; discovery
//! over the record alone agrees with the parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use transport::fuzzing::{tlsrpt_discover, Address, TlsRptRecord, TlsRptRua};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = TlsRptRecord::parse(text);
    if let Ok(record) = &parsed {
        assert!(text.starts_with("v=TLSRPTv1"));
        assert!(!record.rua.is_empty());
        for rua in &record.rua {
            match rua {
                TlsRptRua::Mailto(address) => {
                    assert!(!address.local_part().is_empty() && !address.domain().is_empty(), "{address}");
                    assert_eq!(Address::parse(address.as_str()).as_ref(), Ok(address));
                    assert!(!address.as_str().contains(','), "{address}");
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
