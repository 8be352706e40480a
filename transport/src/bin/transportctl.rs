//! `transportctl`: the administration CLI of a transport server, with the
//! verbs an Exchange administrator knows (get-queue, retry-queue,
//! remove-message --with-ndr, set-servercomponentstate ...). It speaks to the
//! admin HTTP API (docs/design.md §8); tables by default, `-o json` on request.
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use transport::api::{ComponentInfo, MessageInfo, MessageQuery, QueueInfo, ServerInfo, TrackingQuery, TrackingRecord};
use transport::client::{AdminClient, ClientError, MessageAction, QueueAction};
use transport::config::{Component, ComponentState, Requester, ServerStateSetting};
use transport::query_flags::{MessageFilters, TrackingFilters};

#[derive(Parser)]
#[command(name = "transportctl", version, about = "Administer a kube-transport transport server")]
struct Cli {
    /// Base URL of the server's admin API.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8025", env = "TRANSPORTCTL_ADMIN")]
    admin: String,
    /// File holding the bearer token (absent: no token is sent).
    #[arg(long, global = true, env = "TRANSPORTCTL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Verb {
    /// Get-ServerState: the server's ServerState, code and readiness.
    GetServerstate,
    /// Start, pause or stop the server.
    SetServerstate {
        #[arg(value_parser = parse_server_state)]
        state: ServerStateSetting,
    },
    /// Get-ServerComponentState.
    GetServercomponentstate {
        #[arg(long, value_parser = parse_component)]
        component: Option<Component>,
    },
    /// Set-ServerComponentState.
    SetServercomponentstate {
        #[arg(long, value_parser = parse_component)]
        component: Component,
        #[arg(long, value_parser = parse_requester)]
        requester: Requester,
        #[arg(long, value_parser = parse_component_state)]
        state: ComponentState,
    },
    /// Get-Queue.
    GetQueue {
        /// One queue (`Submission`, `Unreachable`, `Poison` or its number).
        #[arg(long)]
        identity: Option<String>,
    },
    /// Retry-Queue: connect now (a queue in Retry); --resubmit re-routes its messages.
    RetryQueue {
        identity: String,
        #[arg(long)]
        resubmit: bool,
    },
    /// Suspend-Queue.
    SuspendQueue { identity: String },
    /// Resume-Queue.
    ResumeQueue { identity: String },
    /// Get-Message: the first 1000 matching messages unless --result-size says otherwise.
    GetMessage {
        /// One message by number.
        #[arg(long)]
        identity: Option<u64>,
        #[command(flatten)]
        filters: MessageFilters,
        /// Start after this message identity (the bookmark a truncated answer printed).
        #[arg(long)]
        bookmark: Option<String>,
    },
    /// Get-MessageTrackingLog: the events of the messages this server handled, oldest
    /// first; every filter given must match. The first 1000 unless --result-size says otherwise.
    GetMessagetrackinglog {
        #[command(flatten)]
        filters: TrackingFilters,
        /// The message's number on this server (get-message's identity).
        #[arg(long)]
        internal_message_id: Option<u64>,
    },
    /// The SMTP TLS reporting counts (RFC 8460) per day and policy domain, newest day
    /// first, and what became of each finished day's report.
    GetTlsreport {
        /// One day, YYYY-MM-DD (UTC).
        #[arg(long)]
        date: Option<String>,
    },
    /// Suspend-Message.
    SuspendMessage { identity: u64 },
    /// Resume-Message (a poison message is resubmitted).
    ResumeMessage { identity: u64 },
    /// Remove-Message, with an NDR to the sender when --with-ndr is given.
    RemoveMessage {
        identity: u64,
        #[arg(long)]
        with_ndr: bool,
    },
    /// Export-Message: a suspended message as .eml (to --path, else stdout).
    ExportMessage {
        identity: u64,
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Redirect-Message: hand every queued message to another server.
    RedirectMessage {
        /// `host:port` of the target server's receive connector.
        #[arg(long)]
        target: String,
    },
    /// Deliver from this server the shadow copies it holds for PRIMARY, now: for a server
    /// whose queue is lost for good (otherwise that happens after shadowResubmitTimeSpan).
    TakeOverShadows { primary: String },
    /// Ask PRIMARY now which of the shadow copies this server holds for it are finished,
    /// drop those, and show how many are left (before removing a drained server).
    CheckShadows { primary: String },
    /// Add-ResubmitRequest: queue again the messages the Safety Net holds that were
    /// delivered between the two times (RFC 3339), to recipients routed to --destination
    /// (a NextHopDomain as get-queue shows it) when given.
    // Named as docs/design.md §8 and the README write it, like the other verbs (the cmdlet
    // in lower case); clap's own spelling stays an alias for scripts that used it.
    #[command(name = "add-resubmitrequest", alias = "add-resubmit-request")]
    AddResubmitRequest {
        #[arg(long)]
        start_time: String,
        #[arg(long)]
        end_time: String,
        #[arg(long)]
        destination: Option<String>,
    },
}

fn parse_enum<T: serde::de::DeserializeOwned>(s: &str, what: &str, allowed: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s} is not a {what} ({allowed})"))
}

fn parse_server_state(s: &str) -> Result<ServerStateSetting, String> {
    parse_enum(s, "server state", "Started, Paused, Stopped")
}

fn parse_component(s: &str) -> Result<Component, String> {
    parse_enum(s, "component", "HubTransport, FrontendTransport, ServerWideOffline")
}

fn parse_requester(s: &str) -> Result<Requester, String> {
    parse_enum(s, "requester", "Functional, Maintenance, Sidelined, Deployment, HealthAPI")
}

fn parse_component_state(s: &str) -> Result<ComponentState, String> {
    parse_enum(s, "component state", "Active, Draining, Inactive")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let token = match &cli.token_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => {
                eprintln!("transportctl: cannot read the token file {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("transportctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli, token)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("transportctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli, token: Option<String>) -> Result<(), ClientError> {
    let client = AdminClient::new(&cli.admin, token)?;
    let json = cli.output == Output::Json;
    match &cli.verb {
        Verb::GetServerstate => show_server(&client.server().await?, json),
        Verb::SetServerstate { state } => show_server(&client.set_server_state(*state).await?, json),
        Verb::GetServercomponentstate { component } => {
            let info = client.server().await?;
            let rows: Vec<&ComponentInfo> =
                info.components.iter().filter(|c| component.is_none_or(|x| c.component == x)).collect();
            if json {
                print_json(&rows);
            } else {
                print_components(&info.server_name, &rows);
            }
        }
        Verb::SetServercomponentstate { component, requester, state } => {
            let info = client.set_component(*component, *requester, *state).await?;
            let rows: Vec<&ComponentInfo> = info.components.iter().filter(|c| c.component == *component).collect();
            if json {
                print_json(&rows);
            } else {
                print_components(&info.server_name, &rows);
            }
        }
        Verb::GetQueue { identity } => {
            let queues = client.queues().await?;
            let rows: Vec<&QueueInfo> = queues
                .iter()
                .filter(|q| identity.as_deref().is_none_or(|i| q.id.eq_ignore_ascii_case(i) || q.identity == i))
                .collect();
            if let (Some(i), true) = (identity, rows.is_empty()) {
                return Err(ClientError::NotFound(format!("There is no queue {i}.")));
            }
            if json {
                print_json(&rows);
            } else {
                print_queues(&rows);
            }
        }
        Verb::RetryQueue { identity, resubmit } => {
            let action = if *resubmit { QueueAction::Resubmit } else { QueueAction::Retry };
            client.queue_action(identity, action).await?;
            done(json, &format!("Queue {identity}: retry requested{}.", if *resubmit { " (resubmit)" } else { "" }));
        }
        Verb::SuspendQueue { identity } => {
            client.queue_action(identity, QueueAction::Suspend).await?;
            done(json, &format!("Queue {identity} suspended."));
        }
        Verb::ResumeQueue { identity } => {
            client.queue_action(identity, QueueAction::Resume).await?;
            done(json, &format!("Queue {identity} resumed."));
        }
        Verb::GetMessage { identity, filters, bookmark } => {
            let query = MessageQuery { id: *identity, bookmark: bookmark.clone(), ..filters.query() };
            let (messages, next) = client.message_page(&query).await?;
            let rows: Vec<&MessageInfo> = messages.iter().collect();
            if let (Some(i), true) = (identity, rows.is_empty()) {
                return Err(ClientError::NotFound(format!("There is no message {i}.")));
            }
            if let Some(next) = next {
                // As Exchange says it, on stderr so that -o json stays parseable.
                eprintln!(
                    "WARNING: only the first {} matching messages are shown. Use --result-size Unlimited for all, \
                     or --bookmark '{next}' for the next page.",
                    rows.len()
                );
            }
            if json {
                print_json(&rows);
            } else {
                print_messages(&rows);
            }
        }
        Verb::GetMessagetrackinglog { filters, internal_message_id } => {
            let query = TrackingQuery { internal_message_id: *internal_message_id, ..filters.query() };
            let records = client.message_tracking(&query).await?;
            if json {
                print_json(&records);
            } else {
                print_tracking(&records);
            }
        }
        Verb::GetTlsreport { date } => {
            let days = client.tls_reports(&transport::api::TlsReportQuery { date: date.clone() }).await?;
            if json {
                print_json(&days);
            } else {
                print_tls_reports(&days);
            }
        }
        Verb::SuspendMessage { identity } => {
            client.message_action(*identity, MessageAction::Suspend).await?;
            done(json, &format!("Message {identity} suspended."));
        }
        Verb::ResumeMessage { identity } => {
            client.message_action(*identity, MessageAction::Resume).await?;
            done(json, &format!("Message {identity} resumed."));
        }
        Verb::RemoveMessage { identity, with_ndr } => {
            client.message_action(*identity, MessageAction::Remove { with_ndr: *with_ndr }).await?;
            let ndr = if *with_ndr { " with an NDR to the sender" } else { " without NDR" };
            done(json, &format!("Message {identity} removed{ndr}."));
        }
        Verb::ExportMessage { identity, path } => {
            let bytes = client.export_message(*identity).await?;
            match path {
                Some(p) => {
                    std::fs::write(p, &bytes).map_err(|e| ClientError::Status {
                        status: 0,
                        message: format!("cannot write {}: {e}", p.display()),
                    })?;
                    done(json, &format!("Message {identity} exported to {} ({} bytes).", p.display(), bytes.len()));
                }
                None => {
                    use std::io::Write;
                    let _ = std::io::stdout().write_all(&bytes);
                }
            }
        }
        Verb::RedirectMessage { target } => {
            let info = client.redirect(target).await?;
            if json {
                print_json(&info);
            } else {
                let remaining = info.redirect.as_ref().map_or(0, |r| r.remaining);
                println!("Redirecting the queued messages of {} to {target}: {remaining} left.", info.server_name);
            }
        }
        Verb::AddResubmitRequest { start_time, end_time, destination } => {
            let request = transport::api::ResubmitRequest {
                start_time: start_time.clone(),
                end_time: end_time.clone(),
                destination: destination.clone(),
            };
            let info = client.resubmit(&request).await?;
            if json {
                print_json(&info);
            } else {
                println!("{} message(s) from the Safety Net queued for delivery again.", info.resubmitted);
            }
        }
        Verb::CheckShadows { primary } => {
            let info = client.check_shadows(primary).await?;
            if json {
                print_json(&info);
            } else {
                println!("{} shadow copies of {primary}'s messages are held here.", info.held_copies);
            }
        }
        Verb::TakeOverShadows { primary } => {
            let info = client.take_over_shadows(primary).await?;
            if json {
                print_json(&info);
            } else {
                println!("{} message(s) held for {primary} are queued for delivery here.", info.resubmitted);
            }
        }
    }
    Ok(())
}

fn print_json<T: serde::Serialize + ?Sized>(value: &T) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

fn done(json: bool, sentence: &str) {
    if json {
        print_json(&serde_json::json!({ "result": sentence }));
    } else {
        println!("{sentence}");
    }
}

fn show_server(info: &ServerInfo, json: bool) {
    if json {
        print_json(info);
        return;
    }
    let state = info.server_state;
    print_table(
        &["Identity", "ServerState", "Code", "AcceptingMail", "Messages", "ConfigRevision"],
        vec![vec![
            info.server_name.clone(),
            state.name.as_str().to_string(),
            state.code.to_string(),
            info.accepting_mail.to_string(),
            info.totals.messages.to_string(),
            info.config_revision.clone(),
        ]],
    );
    if info.restart_required {
        println!("\nThe configuration file changed in a way that needs a restart.");
    }
}

fn print_components(server: &str, rows: &[&ComponentInfo]) {
    let rows = rows
        .iter()
        .map(|c| {
            let requesters: Vec<String> =
                c.requesters.iter().map(|r| format!("{}={}", r.requester.as_str(), r.state.as_str())).collect();
            vec![
                server.to_string(),
                c.component.as_str().to_string(),
                c.state.as_str().to_string(),
                requesters.join(" "),
            ]
        })
        .collect();
    print_table(&["Identity", "Component", "State", "Requesters"], rows);
}

fn print_queues(rows: &[&QueueInfo]) {
    let rows = rows
        .iter()
        .map(|q| {
            vec![
                q.identity.clone(),
                format!("{:?}", q.delivery_type),
                format!("{:?}", q.status),
                q.message_count.to_string(),
                q.next_retry_time.clone().unwrap_or_default(),
                q.next_hop_domain.clone(),
            ]
        })
        .collect();
    print_table(&["Identity", "DeliveryType", "Status", "MessageCount", "NextRetryTime", "NextHopDomain"], rows);
}

fn print_messages(rows: &[&MessageInfo]) {
    let rows = rows
        .iter()
        .map(|m| {
            vec![
                m.identity.clone(),
                m.from_address.clone(),
                format!("{:?}", m.status),
                m.size.to_string(),
                m.subject.clone().unwrap_or_default(),
                m.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["Identity", "FromAddress", "Status", "Size", "Subject", "LastError"], rows);
}

fn print_tls_reports(days: &[transport::api::TlsReportDay]) {
    let rows = days
        .iter()
        .flat_map(|day| {
            day.domains.iter().map(move |d| {
                let failures: Vec<String> = d
                    .failure_details
                    .iter()
                    .map(|f| format!("{} {} x{}", f.result_type, f.receiving_mx_hostname, f.failed_session_count))
                    .collect();
                vec![
                    day.date.clone(),
                    d.domain.clone(),
                    d.policy_type.clone(),
                    d.successful_session_count.to_string(),
                    d.failed_session_count.to_string(),
                    failures.join("; "),
                    d.report.clone().unwrap_or_default(),
                ]
            })
        })
        .collect();
    print_table(&["Date", "PolicyDomain", "PolicyType", "Successful", "Failed", "FailureDetails", "Report"], rows);
}

fn print_tracking(rows: &[TrackingRecord]) {
    let rows = rows
        .iter()
        .map(|r| {
            vec![
                r.timestamp.clone(),
                r.event_id.as_str().to_string(),
                r.source.clone(),
                r.internal_message_id.to_string(),
                r.sender.clone(),
                r.recipients.join(";"),
                r.recipient_status.join(";"),
                r.server_hostname.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "Timestamp",
            "EventId",
            "Source",
            "InternalMessageId",
            "Sender",
            "Recipients",
            "RecipientStatus",
            "ServerHostname",
        ],
        rows,
    );
}

/// Left-aligned columns with a dashed rule under the header, like PowerShell's Format-Table.
fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join(" ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for row in rows {
        line(row);
    }
}
