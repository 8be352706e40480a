//! MAIL and RCPT with the parameters outbound delivery sends.
//!
//! Hand-written rather than lettre's `commands::{Mail, Rcpt}`: lettre
//! xtext-encodes parameter values itself, but ENVID and ORCPT are stored in
//! xtext as the client sent them, so they would be encoded twice (`+40`
//! becoming `+2B40`), and lettre's encoder mangles bytes above 127.
use super::reply::xtext;
use crate::envelope::{Address, Notify, Recipient, Ret};
use std::fmt;

/// `MAIL FROM:<sender> [SIZE=n] [BODY=8BITMIME|BINARYMIME] [SMTPUTF8] [RET=..] [ENVID=..]`
pub(super) struct Mail<'a> {
    pub from: Option<&'a Address>,
    pub size: Option<u64>,
    pub body_8bit: bool,
    /// Wins over `body_8bit`.
    pub binary_mime: bool,
    pub requiretls: bool,
    pub smtputf8: bool,
    /// Only when the hop offers DSN.
    pub ret: Option<Ret>,
    pub envid: Option<&'a str>,
}

impl fmt::Display for Mail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MAIL FROM:<{}>", self.from.map_or("", Address::as_str))?;
        if let Some(size) = self.size {
            write!(f, " SIZE={size}")?;
        }
        if self.binary_mime {
            f.write_str(" BODY=BINARYMIME")?;
        } else if self.body_8bit {
            f.write_str(" BODY=8BITMIME")?;
        }
        if self.smtputf8 {
            f.write_str(" SMTPUTF8")?;
        }
        if self.requiretls {
            f.write_str(" REQUIRETLS")?;
        }
        match self.ret {
            Some(Ret::Full) => f.write_str(" RET=FULL")?,
            Some(Ret::Hdrs) => f.write_str(" RET=HDRS")?,
            None => {}
        }
        if let Some(envid) = self.envid {
            write!(f, " ENVID={}", xtext(envid))?;
        }
        f.write_str("\r\n")
    }
}

/// `RCPT TO:<address> [NOTIFY=..] [ORCPT=..]`
pub(super) struct Rcpt<'a> {
    pub recipient: &'a Recipient,
    /// Pass NOTIFY and ORCPT (the hop offers DSN).
    pub dsn: bool,
}

impl fmt::Display for Rcpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RCPT TO:<{}>", self.recipient.address)?;
        if self.dsn {
            if let Some(notify) = self.recipient.notify {
                write!(f, " NOTIFY={}", notify_value(notify))?;
            }
            if let Some(orcpt) = &self.recipient.orcpt {
                // addr-type ";" xtext: the type is an atom, only the address is xtext.
                match orcpt.split_once(';') {
                    Some((kind, address)) => write!(f, " ORCPT={kind};{}", xtext(address))?,
                    None => write!(f, " ORCPT=rfc822;{}", xtext(orcpt))?,
                }
            }
        }
        f.write_str("\r\n")
    }
}

fn notify_value(notify: Notify) -> String {
    if notify.never {
        return "NEVER".to_string();
    }
    let words: Vec<&str> = [(notify.success, "SUCCESS"), (notify.failure, "FAILURE"), (notify.delay, "DELAY")]
        .into_iter()
        .filter_map(|(on, word)| on.then_some(word))
        .collect();
    if words.is_empty() {
        // NOTIFY given without a value cannot be stored; say what RFC 3461
        // assumes when it is absent.
        "FAILURE,DELAY".to_string()
    } else {
        words.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> Address {
        Address::parse(text).unwrap()
    }

    #[test]
    fn mail_with_every_parameter() {
        let from = address("a@example.org");
        let mail = Mail {
            from: Some(&from),
            size: Some(1234),
            body_8bit: true,
            binary_mime: false,
            requiretls: false,
            smtputf8: false,
            ret: Some(Ret::Hdrs),
            envid: Some("QQ+2B1"),
        };
        assert_eq!(mail.to_string(), "MAIL FROM:<a@example.org> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1\r\n");
        let null = Mail {
            from: None,
            size: None,
            body_8bit: false,
            binary_mime: false,
            requiretls: false,
            smtputf8: false,
            ret: None,
            envid: None,
        };
        assert_eq!(null.to_string(), "MAIL FROM:<>\r\n");
        let binary = Mail { binary_mime: true, body_8bit: true, ..null };
        assert_eq!(binary.to_string(), "MAIL FROM:<> BODY=BINARYMIME\r\n");
        let protected = Mail { requiretls: true, smtputf8: true, ..binary };
        assert_eq!(protected.to_string(), "MAIL FROM:<> BODY=BINARYMIME SMTPUTF8 REQUIRETLS\r\n");
    }

    #[test]
    fn rcpt_with_dsn_parameters() {
        let mut r = Recipient::new(address("bob@example.net"));
        r.notify = Some(Notify { never: false, success: true, failure: true, delay: false });
        r.orcpt = Some("rfc822;bob+40example.net".into());
        assert_eq!(
            Rcpt { recipient: &r, dsn: true }.to_string(),
            "RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net\r\n"
        );
        assert_eq!(Rcpt { recipient: &r, dsn: false }.to_string(), "RCPT TO:<bob@example.net>\r\n");
    }
}
