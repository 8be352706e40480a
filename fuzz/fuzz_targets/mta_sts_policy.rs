//! MTA-STS policy files and TXT records (RFC 8461 §3.2, §3.1): never a panic. An accepted
//! policy has a version, a mode, max_age within the limit and an mx unless its mode is
//! none; it renders to a file that parses back to the same policy; LF and CRLF line ends
//! give the same verdict; each mx pattern matches as §4.1 says (a host name itself only,
//! `*.domain` one label under the domain, neither the domain nor two labels). An accepted
//! record starts with `v=STSv1;` and has an id of 1 to 32 letters and digits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use transport::fuzzing::{MtaStsMode, MtaStsPolicy, MtaStsRecord};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = MtaStsPolicy::parse(text);
    if !text.contains('\r') {
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(MtaStsPolicy::parse(&crlf).ok(), parsed.clone().ok(), "LF and CRLF disagree");
    }
    if let Ok(policy) = parsed {
        assert!(policy.max_age <= 31_557_600);
        assert!(policy.mode == MtaStsMode::None || !policy.mx.is_empty());
        assert_eq!(MtaStsPolicy::parse(&policy.render()), Ok(policy.clone()), "renders and parses back");
        for pattern in &policy.mx {
            let shown = pattern.to_string();
            match shown.strip_prefix("*.") {
                Some(domain) => {
                    assert!(pattern.matches(&format!("mx.{domain}")) && policy.allows(&format!("MX.{domain}")));
                    assert!(!pattern.matches(domain), "{shown} matches {domain}");
                    assert!(!pattern.matches(&format!("a.b.{domain}")), "{shown} matches two labels");
                }
                None => {
                    assert!(pattern.matches(&shown) && pattern.matches(&shown.to_ascii_uppercase()));
                    assert!(!pattern.matches(&format!("x.{shown}")), "{shown} matches a sub-domain");
                }
            }
        }
    }
    if let Ok(record) = MtaStsRecord::parse(text) {
        assert!(text.starts_with("v=STSv1;"));
        assert!((1..=32).contains(&record.id.len()) && record.id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
});
