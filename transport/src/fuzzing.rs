//! The pure parsers the cargo-fuzz targets in `fuzz/` drive (feature `fuzzing`
//! only): the SMTP command-line parser, the DATA reader and the BDAT chunk
//! checker are crate-private everywhere else; the MTA-STS record and policy parsers, the TLSRPT record parser.
pub use crate::delivery::mta_sts::{Mode as MtaStsMode, Policy as MtaStsPolicy, Record as MtaStsRecord};
pub use crate::delivery::tls_report::record::{discover as tlsrpt_discover, Record as TlsRptRecord, Rua as TlsRptRua};
pub use crate::envelope::ascii_domain;
pub use crate::smtp::command::{
    decode_xtext, parse_bdat, parse_mail, parse_rcpt, split_verb, valid_domain, ArgError, Forward, MailArgs, RcptArgs,
    Verb,
};
pub use crate::smtp::data::{ChunkChecker, DataError, DataReader};
