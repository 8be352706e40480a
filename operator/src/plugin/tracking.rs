//! `get-messagetrackinglog`: Get-MessageTrackingLog on every server (or one), the records
//! merged in time order, each naming the server that logged it. Asked with a Message-ID it
//! follows one message from server to server (RECEIVE here, REDIRECT to another, RECEIVE
//! there, SEND, the shadow copies' HARECEIVE and HADISCARD).
use super::error::Result;
use super::proxy::with_query;
use super::session::{Answer, Session};
use super::table::{emit, one_line, or_none, render, Output};
use super::{split, Rendered, ServerRow};
use transport::api::{ResultSize, TrackingQuery, TrackingRecord, DEFAULT_RESULT_SIZE};
use transport::client::paths;
use transport::query_flags::TrackingFilters;

/// What `get-messagetrackinglog` was asked.
#[derive(Debug, Clone, Default)]
pub struct TrackingArgs {
    pub service: String,
    pub server: Option<String>,
    pub filters: TrackingFilters,
}

/// The records of every server in time order (a record's timestamp, RFC 3339; records of
/// the same instant keep server order, then each server's own order); the first `limit`.
/// True when rows were cut or a server had more.
pub fn merge_records(
    per_server: Vec<(String, Answer<Vec<TrackingRecord>>)>,
    limit: Option<usize>,
) -> (Vec<ServerRow<TrackingRecord>>, bool) {
    let mut more = false;
    let mut rows = Vec::new();
    for (server, answer) in per_server {
        more |= answer.next_bookmark.is_some() || limit.is_some_and(|l| answer.value.len() >= l);
        rows.extend(answer.value.into_iter().map(|r| ServerRow::new(&server, r)));
    }
    // Parsed, so that offsets and fractions of a second compare as instants; a timestamp
    // that does not parse sorts first, where it is seen.
    rows.sort_by_key(|r| r.row.timestamp.parse::<jiff::Timestamp>().ok());
    if let Some(limit) = limit.filter(|l| rows.len() > *l) {
        rows.truncate(limit);
        more = true;
    }
    (rows, more)
}

pub async fn get_messagetrackinglog(session: &Session, args: &TrackingArgs, output: Output) -> Result<Rendered> {
    let ts = session.transport_service(&args.service).await?;
    let servers = session.servers(&ts, args.server.as_deref()).await?;
    let token = session.admin_token(&args.service).await?;
    let result_size = args.filters.result_size.unwrap_or(ResultSize::Rows(DEFAULT_RESULT_SIZE));
    let query = TrackingQuery { result_size: Some(result_size), ..args.filters.query() };
    let path = with_query(paths::MESSAGE_TRACKING, &query)?;
    let answers = session.admin_get_all::<Vec<TrackingRecord>>(&servers, &token, paths::MESSAGE_TRACKING, &path).await;
    let (pages, failures) = split(answers);
    let (rows, more) = merge_records(pages, result_size.limit());
    let text = emit(output, &rows, || tracking_table(&rows))?;
    let mut rendered = Rendered::rows(output, text, rows.is_empty(), "message tracking records", failures);
    if more {
        rendered.warnings.push(format!(
            "more records match than the {} shown: --result-size N or Unlimited shows more, --start/--end narrow the time",
            rows.len()
        ));
    }
    Ok(rendered)
}

/// Get-MessageTrackingLog's columns, the server that logged each record first after the time.
pub fn tracking_table(rows: &[ServerRow<TrackingRecord>]) -> String {
    let cells = rows
        .iter()
        .map(|r| {
            let t = &r.row;
            // What happened to the recipients, or where the message went.
            let detail = if t.recipient_status.is_empty() {
                t.related_recipient_address.clone().or_else(|| t.message_info.clone()).or_else(|| t.reference.clone())
            } else {
                Some(t.recipient_status.join("; "))
            };
            vec![
                t.timestamp.clone(),
                r.server.clone(),
                t.event_id.as_str().to_string(),
                t.source.clone(),
                if t.sender.is_empty() { "<>".to_string() } else { t.sender.clone() },
                t.recipients.join(","),
                or_none(t.message_id.as_deref()),
                t.internal_message_id.to_string(),
                or_none(detail.as_deref().map(one_line).as_deref()),
            ]
        })
        .collect::<Vec<_>>();
    render(
        &["TIMESTAMP", "SERVER", "EVENTID", "SOURCE", "SENDER", "RECIPIENTS", "MESSAGEID", "INTERNALID", "DETAIL"],
        &cells,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use transport::api::TrackingEvent;

    /// A record as `GET /v1/messagetracking` sends it (fields added later take their defaults).
    fn record(time: &str, event: TrackingEvent, id: u64) -> TrackingRecord {
        serde_json::from_value(serde_json::json!({
            "timestamp": time,
            "source": "SMTP",
            "eventId": event,
            "internalMessageId": id,
            "messageId": "<m1@e2e.test>",
            "recipients": ["dave@later.test"],
            "totalBytes": 100,
            "recipientCount": 1,
            "sender": "alice@example.org",
        }))
        .expect("a TrackingRecord")
    }

    fn answer(records: Vec<TrackingRecord>) -> Answer<Vec<TrackingRecord>> {
        Answer { value: records, next_bookmark: None }
    }

    #[test]
    fn records_follow_a_message_across_servers_in_time_order() {
        let mail1 = vec![
            record("2026-12-07T10:00:00.100Z", TrackingEvent::Receive, 4),
            record("2026-12-07T10:00:05.000Z", TrackingEvent::Redirect, 4),
        ];
        let mail0 = vec![
            record("2026-12-07T10:00:00.150Z", TrackingEvent::HaReceive, 9),
            // Another offset, the same instant as mail-1's redirect: ties keep server order.
            record("2026-12-07T11:00:05.000+01:00", TrackingEvent::Receive, 12),
            record("2026-12-07T10:00:06.000Z", TrackingEvent::Defer, 12),
        ];
        let (rows, more) =
            merge_records(vec![("mail-0".into(), answer(mail0)), ("mail-1".into(), answer(mail1))], Some(1000));
        let seen: Vec<(&str, &str)> = rows.iter().map(|r| (r.server.as_str(), r.row.event_id.as_str())).collect();
        assert_eq!(
            seen,
            [
                ("mail-1", "RECEIVE"),
                ("mail-0", "HARECEIVE"),
                ("mail-0", "RECEIVE"),
                ("mail-1", "REDIRECT"),
                ("mail-0", "DEFER")
            ]
        );
        assert!(!more);
        let json = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!((json["server"].as_str(), json["eventId"].as_str()), (Some("mail-1"), Some("RECEIVE")));
    }

    #[test]
    fn result_size_keeps_the_oldest_records_over_every_server() {
        let a = vec![
            record("2026-12-07T10:00:01Z", TrackingEvent::Receive, 1),
            record("2026-12-07T10:00:03Z", TrackingEvent::Send, 1),
        ];
        let b = vec![record("2026-12-07T10:00:02Z", TrackingEvent::Receive, 2)];
        let (rows, more) = merge_records(vec![("mail-0".into(), answer(a)), ("mail-1".into(), answer(b))], Some(2));
        let ids: Vec<u64> = rows.iter().map(|r| r.row.internal_message_id).collect();
        assert_eq!(ids, [1, 2]);
        assert!(more);
        let text = tracking_table(&rows);
        assert!(text.lines().nth(2).unwrap().contains("mail-1   RECEIVE   SMTP"), "{text}");
    }
}
