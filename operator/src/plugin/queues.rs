//! `get-queue` (Get-Queue on every server, rows named `server\queue`) and `get-queuedigest`
//! (Get-QueueDigest: the queues of every server grouped, by next hop domain by default).
use super::error::Result;
use super::filter::QueueFilter;
use super::session::Session;
use super::table::{emit, one_line, or_none, render, Output};
use super::{split, Rendered, ServerRow};
use serde::Serialize;
use transport::api::{DeliveryType, QueueInfo, QueueStatus};
use transport::client::paths;

/// What `get-queue` was asked.
#[derive(Debug, Clone, Default)]
pub struct QueueArgs {
    pub service: String,
    pub server: Option<String>,
    pub filter: Option<QueueFilter>,
}

/// Every server's queues (or one server's), those `filter` keeps.
async fn fetch(session: &Session, args: &QueueArgs) -> Result<(Vec<ServerRow<QueueInfo>>, Vec<super::PluginError>)> {
    let ts = session.transport_service(&args.service).await?;
    let servers = session.servers(&ts, args.server.as_deref()).await?;
    let token = session.admin_token(&args.service).await?;
    let answers = session.admin_get_all::<Vec<QueueInfo>>(&servers, &token, paths::QUEUES, paths::QUEUES).await;
    let (answers, failures) = split(answers);
    let rows = answers
        .into_iter()
        .flat_map(|(server, answer)| answer.value.into_iter().map(move |q| ServerRow::new(&server, q)))
        .filter(|r| args.filter.as_ref().is_none_or(|f| f.matches(&r.server, &r.row)))
        .collect();
    Ok((rows, failures))
}

pub async fn get_queue(session: &Session, args: &QueueArgs, output: Output) -> Result<Rendered> {
    let (rows, failures) = fetch(session, args).await?;
    let text = emit(output, &rows, || queue_table(&rows))?;
    Ok(Rendered::rows(output, text, rows.is_empty(), "queues", failures))
}

/// Get-Queue's columns, the identity always `server\queue`.
pub fn queue_table(rows: &[ServerRow<QueueInfo>]) -> String {
    let cells = rows
        .iter()
        .map(|r| {
            let q = &r.row;
            vec![
                identity_on(&r.server, &q.identity),
                format!("{:?}", q.delivery_type),
                format!("{:?}", q.status),
                q.message_count.to_string(),
                or_none(q.next_retry_time.as_deref()),
                q.next_hop_domain.clone(),
                or_none(q.last_error.as_deref().map(one_line).as_deref()),
            ]
        })
        .collect::<Vec<_>>();
    render(
        &["IDENTITY", "DELIVERYTYPE", "STATUS", "MESSAGECOUNT", "NEXTRETRYTIME", "NEXTHOPDOMAIN", "LASTERROR"],
        &cells,
    )
}

/// `server\rest`: an identity as Exchange writes it, whatever the server put first.
pub fn identity_on(server: &str, identity: &str) -> String {
    match identity.split_once('\\') {
        Some((first, _)) if first == server => identity.to_string(),
        _ => format!("{server}\\{identity}"),
    }
}

/// Get-QueueDigest's `-GroupBy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum GroupBy {
    #[default]
    NextHopDomain,
    NextHopConnector,
    DeliveryType,
    Status,
    LastError,
    ServerName,
}

impl GroupBy {
    pub const ALL: [GroupBy; 6] = [
        GroupBy::NextHopDomain,
        GroupBy::NextHopConnector,
        GroupBy::DeliveryType,
        GroupBy::Status,
        GroupBy::LastError,
        GroupBy::ServerName,
    ];

    fn value(self, server: &str, q: &QueueInfo) -> String {
        match self {
            GroupBy::NextHopDomain => q.next_hop_domain.clone(),
            GroupBy::NextHopConnector => q.next_hop_connector.clone().unwrap_or_default(),
            GroupBy::DeliveryType => format!("{:?}", q.delivery_type),
            GroupBy::Status => format!("{:?}", q.status),
            GroupBy::LastError => q.last_error.clone().unwrap_or_default(),
            GroupBy::ServerName => server.to_string(),
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        GroupBy::ALL.into_iter().find(|g| format!("{g:?}").eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<String> = GroupBy::ALL.iter().map(|g| format!("{g:?}")).collect();
            format!("group {s:?} is none of {}", names.join(", "))
        })
    }
}

/// One group of Get-QueueDigest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestRow {
    pub group_by: GroupBy,
    /// The group's value (empty for queues without one, e.g. no last error).
    pub value: String,
    pub message_count: u64,
    pub queue_count: usize,
    /// The servers that hold the group's queues.
    pub servers: Vec<String>,
    /// The worst status of the group's queues (Retry, then Suspended, Connecting, Active, Ready).
    pub status: QueueStatus,
    /// The error of the group's queue that failed last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How bad a queue status is: a queue in Retry is the one to look at first.
fn severity(status: QueueStatus) -> u8 {
    match status {
        QueueStatus::Ready => 0,
        QueueStatus::Active => 1,
        QueueStatus::Connecting => 2,
        QueueStatus::Suspended => 3,
        QueueStatus::Retry => 4,
    }
}

/// The queues grouped: most messages first. Shadow queues (copies held for another
/// server, not mail to deliver) count only with `include_shadow`.
pub fn digest(rows: &[ServerRow<QueueInfo>], by: GroupBy, include_shadow: bool) -> Vec<DigestRow> {
    let mut groups: Vec<(DigestRow, Option<String>)> = Vec::new();
    for r in rows {
        let q = &r.row;
        if q.delivery_type == DeliveryType::ShadowRedundancy && !include_shadow {
            continue;
        }
        let value = by.value(&r.server, q);
        let i = match groups.iter().position(|(g, _)| g.value == value) {
            Some(i) => i,
            None => {
                let row = DigestRow {
                    group_by: by,
                    value,
                    message_count: 0,
                    queue_count: 0,
                    servers: Vec::new(),
                    status: q.status,
                    last_error: None,
                };
                groups.push((row, None));
                groups.len() - 1
            }
        };
        let (g, last_failure) = &mut groups[i];
        g.message_count += q.message_count;
        g.queue_count += 1;
        if !g.servers.contains(&r.server) {
            g.servers.push(r.server.clone());
        }
        if severity(q.status) > severity(g.status) {
            g.status = q.status;
        }
        // RFC 3339 times of one server's clock format sort as text; a queue without a
        // time (never retried) is older than any.
        if let Some(error) = &q.last_error {
            if g.last_error.is_none() || q.last_retry_time > *last_failure {
                g.last_error = Some(error.clone());
                *last_failure = q.last_retry_time.clone();
            }
        }
    }
    let mut out: Vec<DigestRow> = groups.into_iter().map(|(g, _)| g).collect();
    for g in &mut out {
        g.servers.sort_by_key(|s| server_order(s));
    }
    out.sort_by(|a, b| b.message_count.cmp(&a.message_count).then_with(|| a.value.cmp(&b.value)));
    out
}

/// `mail-10` after `mail-9`.
fn server_order(name: &str) -> (String, u64) {
    match name.rsplit_once('-') {
        Some((service, index)) => (service.to_string(), index.parse().unwrap_or(u64::MAX)),
        None => (name.to_string(), 0),
    }
}

pub fn digest_table(rows: &[DigestRow], by: GroupBy) -> String {
    let header = format!("{by:?}").to_uppercase();
    let cells = rows
        .iter()
        .map(|g| {
            vec![
                or_none(Some(&g.value)),
                g.message_count.to_string(),
                g.queue_count.to_string(),
                g.servers.join(","),
                format!("{:?}", g.status),
                or_none(g.last_error.as_deref().map(one_line).as_deref()),
            ]
        })
        .collect::<Vec<_>>();
    render(&[&header, "MESSAGECOUNT", "QUEUES", "SERVERS", "STATUS", "LASTERROR"], &cells)
}

/// What `get-queuedigest` was asked.
#[derive(Debug, Clone, Default)]
pub struct DigestArgs {
    pub queues: QueueArgs,
    pub group_by: GroupBy,
    pub include_shadow: bool,
}

pub async fn get_queuedigest(session: &Session, args: &DigestArgs, output: Output) -> Result<Rendered> {
    let (rows, failures) = fetch(session, &args.queues).await?;
    let groups = digest(&rows, args.group_by, args.include_shadow);
    let text = emit(output, &groups, || digest_table(&groups, args.group_by))?;
    Ok(Rendered::rows(output, text, groups.is_empty(), "queues", failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(
        server: &str,
        id: &str,
        hop: &str,
        status: QueueStatus,
        count: u64,
        error: Option<(&str, &str)>,
    ) -> ServerRow<QueueInfo> {
        ServerRow::new(
            server,
            QueueInfo {
                identity: format!("{server}\\{id}"),
                id: id.into(),
                delivery_type: if id == "Shadow\\1" {
                    DeliveryType::ShadowRedundancy
                } else {
                    DeliveryType::SmartHostConnectorDelivery
                },
                next_hop_domain: hop.into(),
                next_hop_connector: None,
                status,
                message_count: count,
                last_error: error.map(|(e, _)| e.to_string()),
                last_retry_time: error.map(|(_, t)| t.to_string()),
                next_retry_time: None,
                first_retry_time: None,
                retry_count: 0,
            },
        )
    }

    fn rows() -> Vec<ServerRow<QueueInfo>> {
        vec![
            q("mail-0", "1", "later.test", QueueStatus::Retry, 2, Some(("old refusal", "2026-12-07T10:00:00Z"))),
            q("mail-0", "2", "example.net", QueueStatus::Ready, 1, None),
            q("mail-1", "1", "later.test", QueueStatus::Active, 3, Some(("new refusal", "2026-12-07T10:05:00Z"))),
            q("mail-1", "Shadow\\1", "mail-0", QueueStatus::Ready, 2, None),
            q("mail-10", "1", "later.test", QueueStatus::Suspended, 1, None),
        ]
    }

    #[test]
    fn the_digest_groups_by_next_hop_across_servers_without_shadow_copies() {
        let groups = digest(&rows(), GroupBy::NextHopDomain, false);
        assert_eq!(groups.len(), 2, "{groups:?}");
        let later = &groups[0];
        assert_eq!(later.value, "later.test");
        assert_eq!((later.message_count, later.queue_count), (6, 3));
        assert_eq!(later.servers, ["mail-0", "mail-1", "mail-10"]);
        assert_eq!(later.status, QueueStatus::Retry, "the worst status of the group");
        assert_eq!(later.last_error.as_deref(), Some("new refusal"), "the latest failure");
        assert_eq!(groups[1].value, "example.net");
        let with_shadow = digest(&rows(), GroupBy::NextHopDomain, true);
        assert_eq!(with_shadow.iter().map(|g| g.message_count).sum::<u64>(), 9);
        let by_server = digest(&rows(), GroupBy::ServerName, false);
        let counts: Vec<(&str, u64)> = by_server.iter().map(|g| (g.value.as_str(), g.message_count)).collect();
        assert_eq!(counts, [("mail-0", 3), ("mail-1", 3), ("mail-10", 1)]);
        assert_eq!("lasterror".parse::<GroupBy>(), Ok(GroupBy::LastError));
        assert!("Size".parse::<GroupBy>().unwrap_err().contains("NextHopDomain"));
    }

    #[test]
    fn tables_name_each_row_by_server() {
        let text = queue_table(&rows()[..2]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("IDENTITY   DELIVERYTYPE"), "{text}");
        assert!(lines[1].starts_with("mail-0\\1   SmartHostConnectorDelivery   Retry    2"), "{text}");
        assert!(lines[2].ends_with("example.net     <none>"), "{text}");
        let digest_text = digest_table(&digest(&rows(), GroupBy::NextHopDomain, false), GroupBy::NextHopDomain);
        assert!(digest_text.starts_with("NEXTHOPDOMAIN   MESSAGECOUNT   QUEUES   SERVERS"), "{digest_text}");
        assert!(digest_text.contains("mail-0,mail-1,mail-10   Retry    new refusal"), "{digest_text}");
        assert_eq!(identity_on("mail-0", "mail-0\\3"), "mail-0\\3");
        assert_eq!(identity_on("mail-0", "local-0\\3"), "mail-0\\local-0\\3");
    }
}
