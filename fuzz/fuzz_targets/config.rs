//! Time spans, byte sizes and whole configuration files: never a panic, and
//! whatever is accepted renders and parses back to the same value (what the
//! operator does when it writes a server's config).
#![no_main]
use libfuzzer_sys::fuzz_target;
use transport::config::{ByteSize, TimeSpan, TransportFile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(t) = text.parse::<TimeSpan>() {
        let again: TimeSpan = t.to_string().parse().expect("a rendered time span parses");
        assert_eq!(again, t, "{text:?} -> {t}");
    }
    if let Ok(b) = text.parse::<ByteSize>() {
        let again: ByteSize = b.to_string().parse().expect("a rendered size parses");
        assert_eq!(again, b, "{text:?} -> {b}");
    }
    if let Ok(file) = TransportFile::from_yaml_str(text) {
        let yaml = serde_yaml::to_string(&file).expect("a valid config renders");
        let again = TransportFile::from_yaml_str(&yaml).expect("a rendered valid config is valid");
        assert_eq!(again, file);
    }
});
