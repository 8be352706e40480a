//! The daily report (RFC 8460 §4) as JSON, and the mail that carries it (§5.3). Pure.
use crate::api::TlsReportDomain;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::MessageBuilder;
use serde_json::{json, Value};

/// Who reports about which day.
pub struct ReportInput<'a> {
    /// RFC 8460 organization-name and the submitter: the server's fqdn.
    pub organization: &'a str,
    /// contact-info: the postmaster.
    pub contact: &'a str,
    /// `YYYY-MM-DD`, the UTC day reported.
    pub date: &'a str,
    pub entry: &'a TlsReportDomain,
}

impl ReportInput<'_> {
    /// report-id (§4.4): unique per submitter, day and domain.
    pub fn report_id(&self) -> String {
        format!("{}T00:00:00Z_{}@{}", self.date, self.entry.domain, self.organization)
    }
}

/// The §4.4 JSON of one policy domain's day.
pub fn json(input: &ReportInput<'_>) -> Value {
    let e = input.entry;
    let details: Vec<Value> = e
        .failure_details
        .iter()
        .map(|d| {
            let mut detail = json!({
                "result-type": d.result_type,
                "receiving-mx-hostname": d.receiving_mx_hostname,
                "failed-session-count": d.failed_session_count,
            });
            if let Some(ip) = &d.receiving_ip {
                detail["receiving-ip"] = json!(ip);
            }
            if let Some(ip) = &d.sending_mta_ip {
                detail["sending-mta-ip"] = json!(ip);
            }
            if let Some(info) = &d.failure_reason_code {
                detail["failure-reason-code"] = json!(info);
            }
            detail
        })
        .collect();
    json!({
        "organization-name": input.organization,
        "date-range": {
            "start-datetime": format!("{}T00:00:00Z", input.date),
            "end-datetime": format!("{}T23:59:59Z", input.date),
        },
        "contact-info": input.contact,
        "report-id": input.report_id(),
        "policies": [{
            "policy": {
                "policy-type": e.policy_type,
                "policy-string": e.policy_string,
                "policy-domain": e.domain,
                "mx-host": e.mx_host,
            },
            "summary": {
                "total-successful-session-count": e.successful_session_count,
                "total-failure-session-count": e.failed_session_count,
            },
            "failure-details": details,
        }],
    })
}

/// The report mail (§5.3): from the postmaster to the `rua` addresses, a
/// `multipart/report; report-type="tlsrpt"` with a human-readable part and the JSON
/// gzipped (§5.2: SHOULD) as `application/tlsrpt+gzip`, base64.
pub fn mail(input: &ReportInput<'_>, to: &[&crate::envelope::Address], message_id: &str, now_unix: i64) -> Vec<u8> {
    let domain = &input.entry.domain;
    let report_id = input.report_id();
    let body = gzipped_json(input);
    let text = format!(
        "This is the SMTP TLS report (RFC 8460) of {} for {domain} on {}: {} successful and {} failed \
         TLS sessions.\r\n",
        input.organization, input.date, input.entry.successful_session_count, input.entry.failed_session_count
    );
    // §5.1: `sender!policy-domain!begin-timestamp!end-timestamp[!unique-id].json`
    let filename = format!("{}!{domain}!{}!{}.json.gz", input.organization, input.date, input.date);
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "tlsrpt"),
        vec![
            MimePart::new("text/plain", text),
            MimePart::new("application/tlsrpt+gzip", BodyPart::Binary(body.into())).attachment(filename),
        ],
    );
    MessageBuilder::new()
        .from(Address::new_address(Some("TLS reporting"), input.contact.to_string()))
        .to(to.iter().map(|a| Address::new_address(None::<&str>, a.to_string())).collect::<Vec<_>>())
        .subject(format!("Report Domain: {domain} Submitter: {} Report-ID: <{report_id}>", input.organization))
        .date(Date::new(now_unix))
        .message_id(message_id)
        .header("TLS-Report-Domain", Raw::new(domain.clone()))
        .header("TLS-Report-Submitter", Raw::new(input.organization.to_string()))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("MIME-Version", Raw::new("1.0"))
        .body(report)
        .write_to_vec()
        .unwrap_or_default()
}

/// The §4.4 JSON, gzipped (§5.2: SHOULD): the body of the mail's attachment and of a POST.
pub fn gzipped_json(input: &ReportInput<'_>) -> Vec<u8> {
    gzip(&serde_json::to_vec_pretty(&json(input)).unwrap_or_default())
}

/// gzip in memory (a write to a Vec cannot fail; an empty body would be refused by the
/// reader, never sent half).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).and_then(|()| encoder.finish()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TlsFailureDetail;
    use mail_parser::MimeHeaders;

    fn entry() -> TlsReportDomain {
        TlsReportDomain {
            domain: "company-y.example".into(),
            policy_type: "sts".into(),
            policy_string: vec!["version: STSv1".into(), "mode: enforce".into(), "mx: *.mail.company-y.example".into()],
            mx_host: vec!["*.mail.company-y.example".into()],
            successful_session_count: 5326,
            failed_session_count: 303,
            failure_details: vec![TlsFailureDetail {
                result_type: "certificate-expired".into(),
                receiving_mx_hostname: "mx1.mail.company-y.example".into(),
                receiving_ip: Some("203.0.113.56".into()),
                sending_mta_ip: Some("198.51.100.7".into()),
                failed_session_count: 303,
                failure_reason_code: None,
            }],
            report: None,
        }
    }

    #[test]
    fn the_json_has_the_rfc_8460_shape() {
        let e = entry();
        let input =
            ReportInput { organization: "mail.x.test", contact: "postmaster@x.test", date: "2016-04-01", entry: &e };
        let v = json(&input);
        assert_eq!(v["organization-name"], "mail.x.test");
        assert_eq!(v["date-range"]["start-datetime"], "2016-04-01T00:00:00Z");
        assert_eq!(v["date-range"]["end-datetime"], "2016-04-01T23:59:59Z");
        assert_eq!(v["contact-info"], "postmaster@x.test");
        assert_eq!(v["report-id"], "2016-04-01T00:00:00Z_company-y.example@mail.x.test");
        let p = &v["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["policy"]["policy-domain"], "company-y.example");
        assert_eq!(p["policy"]["policy-string"][2], "mx: *.mail.company-y.example");
        assert_eq!(p["policy"]["mx-host"][0], "*.mail.company-y.example");
        assert_eq!(p["summary"]["total-successful-session-count"], 5326);
        assert_eq!(p["summary"]["total-failure-session-count"], 303);
        let d = &p["failure-details"][0];
        assert_eq!(d["result-type"], "certificate-expired");
        assert_eq!(d["receiving-mx-hostname"], "mx1.mail.company-y.example");
        assert_eq!(d["receiving-ip"], "203.0.113.56");
        assert_eq!(d["sending-mta-ip"], "198.51.100.7");
        assert_eq!(d["failed-session-count"], 303);
    }

    #[test]
    fn the_mail_has_the_section_5_3_headers() {
        let e = entry();
        let input =
            ReportInput { organization: "mail.x.test", contact: "postmaster@x.test", date: "2016-04-01", entry: &e };
        let to = crate::envelope::Address::parse("tlsrpt@company-y.example").unwrap();
        let bytes = mail(&input, &[&to], "id@mail.x.test", 1_459_555_200);
        let msg = mail_parser::MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(msg.header("TLS-Report-Domain").and_then(|h| h.as_text()), Some("company-y.example"));
        assert_eq!(msg.header("TLS-Report-Submitter").and_then(|h| h.as_text()), Some("mail.x.test"));
        assert_eq!(
            msg.subject(),
            Some("Report Domain: company-y.example Submitter: mail.x.test Report-ID: <2016-04-01T00:00:00Z_company-y.example@mail.x.test>")
        );
        let ct = msg.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("tlsrpt"));
        let part = msg.attachment(0).unwrap();
        let pct = part.content_type().unwrap();
        assert_eq!((pct.ctype(), pct.subtype()), ("application", Some("tlsrpt+gzip")));
        let v: Value = serde_json::from_reader(flate2::read::GzDecoder::new(part.contents())).unwrap();
        assert_eq!(v["policies"][0]["summary"]["total-failure-session-count"], 303);
    }
}
