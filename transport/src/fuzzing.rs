//! The pure parsers the cargo-fuzz targets in `fuzz/` drive (feature `fuzzing`
//! only): the SMTP command-line parser, the DATA reader and the BDAT chunk
//! checker are crate-private everywhere else; the MTA-STS record and policy parsers, the TLSRPT record parser.
pub use crate::address::{ascii_domain, valid_domain, Address};
pub use crate::delivery::mta_sts::{Mode as MtaStsMode, Policy as MtaStsPolicy, Record as MtaStsRecord};
pub use crate::delivery::tls_report::record::{discover as tlsrpt_discover, Record as TlsRptRecord, Rua as TlsRptRua};
pub use crate::smtp::command::{
    decode_xtext, parse_bdat, parse_mail, parse_rcpt, split_verb, ArgError, Forward, MailArgs, RcptArgs, Verb,
};
pub use crate::smtp::data::{ChunkChecker, DataError, DataReader};

/// An address as a queue record holds it: read back without parsing, so any text a
/// corrupt record could carry (the DSN builder's target feeds such).
pub fn stored_address(text: &str) -> Address {
    serde_json::from_value(serde_json::Value::String(text.into())).expect("a JSON string reads as an address")
}
