//! The human-readable first part of a report: a paragraph per kind of
//! outcome (or the administrator's text), one line per recipient, and the
//! names of the servers involved, the way Exchange's NDRs read.
use super::fields::{one_line, rfc5322_date};
use super::{Action, DsnInput, DsnRecipient};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// Order of the sections, worst news first; the first present also decides
/// the subject and which kind the custom text replaces.
pub(crate) const ORDER: [Action; 4] = [Action::Failed, Action::Delayed, Action::Delivered, Action::Relayed];

pub(crate) fn primary_action(recipients: &[DsnRecipient]) -> Action {
    ORDER.into_iter().find(|a| recipients.iter().any(|r| r.action == *a)).unwrap_or(Action::Failed)
}

pub(crate) fn subject_prefix(action: Action) -> &'static str {
    match action {
        Action::Failed => "Undeliverable",
        Action::Delayed => "Delivery delayed",
        Action::Delivered => "Delivered",
        Action::Relayed => "Relayed",
    }
}

/// The whole text part (LF line ends; mail-builder writes CRLF).
pub(crate) fn render(input: &DsnInput<'_>, original_attached: bool) -> String {
    let primary = primary_action(input.recipients);
    let mut out = String::new();
    for action in ORDER {
        let group: Vec<&DsnRecipient> = input.recipients.iter().filter(|r| r.action == action).collect();
        if group.is_empty() {
            continue;
        }
        match input.text.filter(|_| action == primary) {
            Some(custom) => out.push_str(&normalise_paragraph(custom)),
            None => out.push_str(&builtin_paragraph(action, &group, input.now)),
        }
        out.push_str("\n\n");
        for r in group {
            out.push_str(&recipient_line(r));
            out.push('\n');
        }
        out.push('\n');
    }
    let _ = writeln!(out, "Reporting server: {}", one_line(input.reporting_mta));
    out.push_str(if original_attached {
        "The original message is attached.\n"
    } else {
        "The original message's headers are attached.\n"
    });
    out
}

fn builtin_paragraph(action: Action, group: &[&DsnRecipient], now: SystemTime) -> String {
    match action {
        Action::Failed => "Your message couldn't be delivered to the following recipients. \
                           The reason for each is shown below."
            .to_string(),
        Action::Delayed => {
            let mut p = "Delivery has not been completed yet to the following recipients. \
                         No action is required on your part"
                .to_string();
            // The latest deadline: the server keeps trying at least that long for some of them.
            match group.iter().filter_map(|r| r.will_retry_until).max() {
                Some(until) => {
                    let left = until.duration_since(now).unwrap_or(Duration::ZERO);
                    let _ = write!(
                        p,
                        ": the server will keep trying until {} (that is {} from now). \
                         You'll be notified if the message can't be delivered by then.",
                        rfc5322_date(until),
                        span_words(left)
                    );
                }
                None => p.push_str(": the server will keep trying to deliver the message."),
            }
            p
        }
        Action::Delivered => "Your message has been delivered to the following recipients.".to_string(),
        Action::Relayed => "Your message has been relayed to the following recipients. The destination \
                            doesn't send delivery notifications, so this is the last report about them."
            .to_string(),
    }
}

/// `bob@example.com: 550 5.1.1 User unknown (remote server: mx.example.com)`.
fn recipient_line(r: &DsnRecipient) -> String {
    let mut line = format!("    {}: ", one_line(r.final_recipient.as_str()));
    match &r.diagnostic {
        Some(d) if !one_line(d).is_empty() => line.push_str(&one_line(d)),
        _ => {
            let _ = write!(line, "status {}", one_line(&r.status));
        }
    }
    if let Some(host) = &r.remote_mta {
        let _ = write!(line, " (remote server: {})", one_line(host));
    }
    line
}

/// Administrator text as a paragraph: line ends normalised (bare CRs would
/// otherwise reach the wire), trailing space trimmed.
fn normalise_paragraph(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n").trim_end().to_string()
}

/// `1 day, 19 hours and 57 minutes`, as Exchange states the time left.
pub(crate) fn span_words(d: Duration) -> String {
    let minutes = d.as_secs() / 60;
    let (days, hours, minutes) = (minutes / (24 * 60), minutes / 60 % 24, minutes % 60);
    let unit = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{}, {} and {}",
        unit(days, "day", "days"),
        unit(hours, "hour", "hours"),
        unit(minutes, "minute", "minutes")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_in_words() {
        let d = Duration::from_secs(((24 + 19) * 60 + 57) * 60 + 30);
        assert_eq!(span_words(d), "1 day, 19 hours and 57 minutes");
        assert_eq!(span_words(Duration::from_secs(2 * 86400 + 3600 + 60)), "2 days, 1 hour and 1 minute");
        assert_eq!(span_words(Duration::ZERO), "0 days, 0 hours and 0 minutes");
    }
}
