//! `get-message`: Get-Message on every server (or one), with its filters
//! ([`MessageQuery`]); `-ResultSize` counts over all servers, as one Get-Message over an
//! organisation does.
use super::error::{PluginError, Result};
use super::proxy::with_query;
use super::queues::identity_on;
use super::session::{Answer, Session};
use super::table::{emit, one_line, or_none, render, Output};
use super::{split, Rendered, ServerRow};
use transport::api::{MessageInfo, MessageQuery, ResultSize, DEFAULT_RESULT_SIZE};
use transport::client::paths;
use transport::query_flags::MessageFilters;

/// What `get-message` was asked.
#[derive(Debug, Clone, Default)]
pub struct MessageArgs {
    pub service: String,
    pub server: Option<String>,
    /// `--queue` is a queue id (`Submission`, `Poison`, `3`) on every server, or `server\queue`.
    pub filters: MessageFilters,
}

/// The server a `--queue` names (`mail-1\3`) and the queue id; a server given both ways
/// must be the same one.
pub fn queue_target(server: Option<&str>, queue: Option<&str>) -> Result<(Option<String>, Option<String>)> {
    let Some(queue) = queue else { return Ok((server.map(str::to_string), None)) };
    match queue.split_once('\\') {
        None => Ok((server.map(str::to_string), Some(queue.to_string()))),
        Some((on, id)) => match server {
            Some(s) if s != on => {
                Err(PluginError::Invalid(format!("--queue {queue} is a queue of {on}, not of --server {s}")))
            }
            _ => Ok((Some(on.to_string()), Some(id.to_string()))),
        },
    }
}

/// Each server's rows in server order, at most `limit` in all; true when more match
/// (a server had more, or the rows were cut).
pub fn merge_pages(
    pages: Vec<(String, Answer<Vec<MessageInfo>>)>,
    limit: Option<usize>,
) -> (Vec<ServerRow<MessageInfo>>, bool) {
    let mut more = false;
    let mut rows = Vec::new();
    for (server, answer) in pages {
        more |= answer.next_bookmark.is_some();
        rows.extend(answer.value.into_iter().map(|m| ServerRow::new(&server, m)));
    }
    if let Some(limit) = limit.filter(|l| rows.len() > *l) {
        rows.truncate(limit);
        more = true;
    }
    (rows, more)
}

pub async fn get_message(session: &Session, args: &MessageArgs, output: Output) -> Result<Rendered> {
    let (server, queue) = queue_target(args.server.as_deref(), args.filters.queue.as_deref())?;
    let ts = session.transport_service(&args.service).await?;
    let servers = session.servers(&ts, server.as_deref()).await?;
    let token = session.admin_token(&args.service).await?;
    let result_size = args.filters.result_size.unwrap_or(ResultSize::Rows(DEFAULT_RESULT_SIZE));
    let query = MessageQuery { queue, result_size: Some(result_size), ..args.filters.query() };
    let path = with_query(paths::MESSAGES, &query)?;
    let (pages, failures) =
        split(session.admin_get_all::<Vec<MessageInfo>>(&servers, &token, paths::MESSAGES, &path).await);
    let (rows, more) = merge_pages(pages, result_size.limit());
    let text = emit(output, &rows, || message_table(&rows))?;
    let mut rendered = Rendered::rows(output, text, rows.is_empty(), "messages", failures);
    if more {
        rendered.warnings.push(format!(
            "more messages match than the {} shown: --result-size N or Unlimited shows more",
            rows.len()
        ));
    }
    Ok(rendered)
}

/// Get-Message's columns, the identity always `server\queue\message`.
pub fn message_table(rows: &[ServerRow<MessageInfo>]) -> String {
    let cells = rows
        .iter()
        .map(|r| {
            let m = &r.row;
            let recipients: Vec<&str> = m.recipients.iter().map(|x| x.address.as_str()).collect();
            vec![
                identity_on(&r.server, &m.identity),
                if m.from_address.is_empty() { "<>".to_string() } else { m.from_address.clone() },
                recipients.join(","),
                format!("{:?}", m.status),
                m.size.to_string(),
                or_none(m.subject.as_deref().map(one_line).as_deref()),
                or_none(m.last_error.as_deref().map(one_line).as_deref()),
            ]
        })
        .collect::<Vec<_>>();
    render(&["IDENTITY", "FROMADDRESS", "RECIPIENTS", "STATUS", "SIZE", "SUBJECT", "LASTERROR"], &cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use transport::api::{MessageStatus, RecipientInfo};

    fn message(server: &str, id: u64) -> MessageInfo {
        MessageInfo {
            identity: format!("{server}\\3\\{id}"),
            id,
            queue: "3".into(),
            status: MessageStatus::Retry,
            from_address: "alice@example.org".into(),
            recipients: vec![RecipientInfo {
                address: "dave@later.test".into(),
                status: "Retry".into(),
                last_error: None,
            }],
            size: 120,
            subject: Some("e2e\nx".into()),
            internet_message_id: None,
            message_source_name: "SMTP:Default".into(),
            date_received: "2026-12-07T10:00:00Z".into(),
            expiration_time: None,
            last_error: None,
            retry_count: 1,
        }
    }

    fn page(server: &str, ids: &[u64], more: bool) -> (String, Answer<Vec<MessageInfo>>) {
        let next_bookmark = more.then(|| format!("{server}\\3\\{}", ids[ids.len() - 1]));
        (server.to_string(), Answer { value: ids.iter().map(|i| message(server, *i)).collect(), next_bookmark })
    }

    #[test]
    fn result_size_counts_over_every_server() {
        let (rows, more) =
            merge_pages(vec![page("mail-0", &[1, 2], false), page("mail-1", &[1, 2, 3], false)], Some(4));
        let ids: Vec<String> = rows.iter().map(|r| r.row.identity.clone()).collect();
        assert_eq!(ids, ["mail-0\\3\\1", "mail-0\\3\\2", "mail-1\\3\\1", "mail-1\\3\\2"]);
        assert!(more);
        let (rows, more) = merge_pages(vec![page("mail-0", &[1], false), page("mail-1", &[1], false)], Some(4));
        assert_eq!((rows.len(), more), (2, false));
        let (_, more) = merge_pages(vec![page("mail-0", &[1], true)], None);
        assert!(more, "a server with more rows says so");
    }

    #[test]
    fn a_queue_may_name_its_server() {
        assert_eq!(queue_target(None, Some("mail-1\\3")).unwrap(), (Some("mail-1".into()), Some("3".into())));
        assert_eq!(
            queue_target(Some("mail-0"), Some("Poison")).unwrap(),
            (Some("mail-0".into()), Some("Poison".into()))
        );
        assert_eq!(queue_target(Some("mail-1"), Some("mail-1\\3")).unwrap().0.as_deref(), Some("mail-1"));
        let e = queue_target(Some("mail-0"), Some("mail-1\\3")).unwrap_err();
        assert_eq!(e.to_string(), "--queue mail-1\\3 is a queue of mail-1, not of --server mail-0");
    }

    #[test]
    fn the_table_shows_one_line_per_message() {
        let rows: Vec<ServerRow<MessageInfo>> = vec![ServerRow::new("mail-0", message("mail-0", 7))];
        let text = message_table(&rows);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("mail-0\\3\\7   alice@example.org   dave@later.test   Retry    120    e2e x"), "{text}");
    }
}
