//! `kubectl-transport`: the kubectl plugin (`kubectl transport <verb>`, docs/design.md §8).
//! Parses the command line and turns the outcome into output and an exit code; the verbs
//! are operator::plugin's.
use clap::{Parser, Subcommand};
use operator::plugin::maintenance::{self, MaintenanceArgs};
use operator::plugin::messages::{self, MessageArgs};
use operator::plugin::queues::{self, DigestArgs, GroupBy, QueueArgs};
use operator::plugin::status::{self, StatusArgs};
use operator::plugin::tracking::{self, TrackingArgs};
use operator::plugin::{filter::QueueFilter, ConnectOptions, Output, PluginError, Rendered, Session};
use std::path::PathBuf;
use std::process::ExitCode;
use transport::config::TimeSpan;
use transport::query_flags::{MessageFilters, TrackingFilters};

const EXAMPLES: &str = "Examples:
  kubectl transport status mail
  kubectl transport get-queue mail --filter \"Status -eq Retry -and MessageCount -gt 0\"
  kubectl transport get-queuedigest mail
  kubectl transport get-message mail --queue 'mail-1\\3' -o json
  kubectl transport get-messagetrackinglog mail --message-id '<id@example.org>'
  kubectl transport maintenance start mail-1 --redirect-to mail-0 --wait
  kubectl transport maintenance stop mail-1

Every server is reached through the Kubernetes API server (the pods' proxy subresource)
with your own credentials: the RBAC you need is in the README (\"kubectl transport\").
Exit codes: 0 done; 1 failed, or the answer is incomplete (a server could not be asked);
2 a usage error.";

#[derive(Parser)]
#[command(
    name = "kubectl-transport",
    bin_name = "kubectl transport",
    version,
    about = "Administer the transport servers of a TransportService (kube-transport), Exchange style",
    after_help = EXAMPLES
)]
struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace of the TransportService (default: the context's namespace).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long = "output", global = true, default_value = "table")]
    output: Output,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// The TransportService's conditions and servers ready, then each server as its admin API
    /// says now: pod, ServerState (name and code), component states, queue totals,
    /// configuration revision, redirect progress; and the ServerComponentStates aimed at it.
    Status {
        /// The TransportService.
        service: String,
    },
    /// Get-Queue on every server (or one): each queue as `server\queue`.
    GetQueue {
        service: String,
        /// Only this server (`<ts>-<i>`).
        #[arg(long)]
        server: Option<String>,
        /// Exchange's -Filter: `Property -op Value` joined by -and; properties Identity,
        /// ServerName, DeliveryType, NextHopDomain, NextHopConnector, Status, MessageCount,
        /// LastError, RetryCount; -eq -ne -gt -ge -lt -le -like -notlike; $null.
        #[arg(long)]
        filter: Option<QueueFilter>,
    },
    /// Get-QueueDigest: the queues of every server grouped (by next hop domain unless
    /// --group-by says otherwise): messages, queues, the servers holding them, the worst
    /// status and the latest error. Shadow queues are left out unless --include-shadow.
    GetQueuedigest {
        service: String,
        #[arg(long)]
        server: Option<String>,
        /// NextHopDomain, NextHopConnector, DeliveryType, Status, LastError or ServerName.
        #[arg(long, default_value = "NextHopDomain")]
        group_by: GroupBy,
        /// Only the queues this filter keeps (as get-queue's --filter).
        #[arg(long)]
        filter: Option<QueueFilter>,
        /// Count the shadow copies held for other servers too.
        #[arg(long)]
        include_shadow: bool,
    },
    /// Get-Message on every server (or one): the first 1000 messages over all servers unless
    /// --result-size says otherwise. --queue also takes `server\queue`.
    GetMessage {
        service: String,
        #[arg(long)]
        server: Option<String>,
        #[command(flatten)]
        filters: MessageFilters,
    },
    /// Get-MessageTrackingLog on every server (or one), records merged in time order, each
    /// naming the server that logged it; with --message-id, one message followed from
    /// server to server (redirects, shadow copies).
    GetMessagetrackinglog {
        service: String,
        #[arg(long)]
        server: Option<String>,
        #[command(flatten)]
        filters: TrackingFilters,
    },
    /// Put a server into maintenance and take it out again (Set-ServerComponentState
    /// HubTransport Draining by Maintenance, as a ServerComponentState `<server>-maintenance`).
    Maintenance {
        #[command(subcommand)]
        action: MaintenanceVerb,
    },
}

#[derive(Subcommand)]
enum MaintenanceVerb {
    /// Drain SERVER: it refuses new mail (its pod turns not Ready) and its queue goes to
    /// --redirect-to, or, without it, is delivered from SERVER as usual.
    Start {
        /// The server (`<ts>-<i>`).
        server: String,
        /// Its TransportService (default: the server's name without `-<i>`).
        #[arg(short = 't', long = "transport-service")]
        service: Option<String>,
        /// The server of the same TransportService that takes the queue (Redirect-Message).
        #[arg(long)]
        redirect_to: Option<String>,
        /// Wait until the server reports itself drained (no message left).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (e.g. 30m, 00:30:00).
        #[arg(long, default_value = "30m")]
        timeout: TimeSpan,
    },
    /// End the maintenance: the request is deleted, and the operator sets Maintenance
    /// back to Active on the server.
    Stop {
        server: String,
        #[arg(short = 't', long = "transport-service")]
        service: Option<String>,
        /// Wait until the operator has withdrawn the request.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "5m")]
        timeout: TimeSpan,
    },
}

fn verb_name(verb: &Verb) -> &'static str {
    match verb {
        Verb::Status { .. } => "status",
        Verb::GetQueue { .. } => "get-queue",
        Verb::GetQueuedigest { .. } => "get-queuedigest",
        Verb::GetMessage { .. } => "get-message",
        Verb::GetMessagetrackinglog { .. } => "get-messagetrackinglog",
        Verb::Maintenance { action: MaintenanceVerb::Start { .. } } => "maintenance start",
        Verb::Maintenance { action: MaintenanceVerb::Stop { .. } } => "maintenance stop",
    }
}

async fn run(cli: Cli) -> Result<Rendered, PluginError> {
    let options = ConnectOptions { kubeconfig: cli.kubeconfig, context: cli.context, namespace: cli.namespace };
    let session = Session::connect(&options, verb_name(&cli.verb)).await?;
    let output = cli.output;
    let progress = |line: &str| eprintln!("{line}");
    match cli.verb {
        Verb::Status { service } => status::status(&session, &StatusArgs { service }, output).await,
        Verb::GetQueue { service, server, filter } => {
            queues::get_queue(&session, &QueueArgs { service, server, filter }, output).await
        }
        Verb::GetQueuedigest { service, server, group_by, filter, include_shadow } => {
            let args = DigestArgs { queues: QueueArgs { service, server, filter }, group_by, include_shadow };
            queues::get_queuedigest(&session, &args, output).await
        }
        Verb::GetMessage { service, server, filters } => {
            messages::get_message(&session, &MessageArgs { service, server, filters }, output).await
        }
        Verb::GetMessagetrackinglog { service, server, filters } => {
            tracking::get_messagetrackinglog(&session, &TrackingArgs { service, server, filters }, output).await
        }
        Verb::Maintenance { action: MaintenanceVerb::Start { server, service, redirect_to, wait, timeout } } => {
            let args = MaintenanceArgs { server, service, redirect_to, wait: wait.then(|| timeout.as_duration()) };
            maintenance::start(&session, &args, output, &progress).await
        }
        Verb::Maintenance { action: MaintenanceVerb::Stop { server, service, wait, timeout } } => {
            let args =
                MaintenanceArgs { server, service, redirect_to: None, wait: wait.then(|| timeout.as_duration()) };
            maintenance::stop(&session, &args, output, &progress).await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(rendered) => {
            print!("{}", rendered.text);
            for warning in &rendered.warnings {
                eprintln!("{warning}");
            }
            for failure in &rendered.failures {
                eprintln!("error: {failure}");
            }
            if rendered.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
