//! The e2e suite on a real Kubernetes control plane (`make e2e-local`, part of `make test`):
//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from the Go
//! module proxy, three process nodes, the chart installed with the real `helm install`, and
//! every scenario driven as a user would (kubectl, helm, SMTP to the Service address).
//!
//! One cluster serves the whole run (it takes seconds to start, the scenarios minutes), each
//! scenario in a namespace of its own; what touches the whole cluster (node drains, helm
//! upgrade and uninstall, the audit checks) runs last, alone. A scenario that cannot get
//! its cluster fails; none is ever skipped. `cargo test -p e2e --test cluster -- <words>`
//! runs the scenarios whose names contain one of the words; `-- --list` lists them.
mod audit;
mod config_change;
mod crds;
mod deletion;
mod examples;
mod gitops;
mod invalid;
mod lifecycle;
mod maintenance;
mod node_drain;
mod plugin;
mod runbook;
mod scale_down;
mod server_state;
mod shadow;
mod startup;

use e2e::cluster::Options;
use e2e::scenario::Suite;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Instant;

type Scenario = fn(Arc<Suite>) -> BoxFuture<'static, ()>;

/// The CRDs from crds/ and then from the chart, which installs the operator: everything
/// else stands on it.
const FIRST: &[(&str, Scenario)] = &[("crds: the API server accepts crds/ and the chart installs", crds::install)];

/// Scenarios that run side by side, each in its own namespace.
const PARALLEL: &[(&str, Scenario)] = &[
    ("startup: three servers start, take mail through the Service and report Started", startup::three_servers),
    ("maintenance: an Inactive server refuses mail and drains, nothing lost", maintenance::inactive_server),
    ("server-state: a Paused server is Degraded and is started again", server_state::paused_and_started),
    ("runbook: the Exchange maintenance sequence from kubectl", runbook::exchange_sequence),
    (
        "plugin: kubectl transport as a user with the README's Role, through the API server's pod proxy",
        plugin::as_a_user,
    ),
    (
        "scale-down: the queue of a removed server is redirected before its pod goes",
        scale_down::redirects_before_removal,
    ),
    (
        "config-change: a reload needs no restart, a port change rolls one server at a time",
        config_change::reload_and_roll,
    ),
    ("examples: kubectl apply -f examples/ as examples/README.md says", examples::as_documented),
    ("gitops: the same manifests applied twice change nothing", gitops::apply_twice_changes_nothing),
    ("delete-ts: deleting a TransportService keeps its queued mail for its return", deletion::service_with_mail),
    ("shadow: a server lost with its queue volume loses no acknowledged mail", shadow::node_and_disk_lost),
    (
        "delete-ns: a namespace with ServerComponentStates is deleted while the operator runs",
        deletion::namespace_with_component_states,
    ),
    (
        "invalid: bad input refused by the API server or named in a condition, nothing applied",
        invalid::refused_with_the_field,
    ),
];

/// What needs the whole cluster to itself, one after the other.
const LAST: &[(&str, Scenario)] = &[
    ("node-drain: kubectl drain waits for the server to be drained, then it moves", node_drain::drain_node_with_mail),
    ("idle: no write by the operator for 60 s once nothing changes", audit::idle),
    (
        "upgrade: helm upgrade with a new transport image rolls the servers, nothing lost",
        lifecycle::new_transport_image,
    ),
    ("leader: with two replicas the standby takes over, never two leaders at once", lifecycle::leader_failover),
];

/// Over everything the run did, then the end of the release; only when every scenario ran.
const SUMMARY: &[(&str, Scenario)] = &[
    ("rbac: no request refused, every permission the chart grants used", audit::rbac),
    ("uninstall: helm uninstall leaves the CRDs, the servers and their mail", lifecycle::uninstall_keeps_mail),
];

fn main() -> std::process::ExitCode {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    // `cargo test -- --list` lists the scenarios as libtest lists tests, without a cluster.
    if std::env::args().any(|a| a == "--list") {
        let all = FIRST.iter().chain(PARALLEL).chain(LAST).chain(SUMMARY);
        let names: Vec<&str> = all.map(|(name, _)| *name).filter(|name| wanted(name)).collect();
        for name in &names {
            println!("{}: test", name.split(':').next().unwrap_or(name));
        }
        println!("\n{} tests, 0 benchmarks", names.len());
        return std::process::ExitCode::SUCCESS;
    }
    e2e::init_test_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let suite = match Suite::start(Options::default()).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("cannot start the cluster: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        };
        println!("cluster up in {:.1} s ({})", started.elapsed().as_secs_f64(), suite.cluster.api_url());
        let mut failed = Vec::new();
        for (name, scenario) in FIRST {
            run(&suite, name, *scenario, &mut failed).await;
        }
        if failed.is_empty() {
            let lanes: Vec<_> = PARALLEL
                .iter()
                .filter(|(name, _)| wanted(name))
                .map(|(name, scenario)| {
                    let (suite, name, scenario) = (suite.clone(), name.to_string(), *scenario);
                    tokio::spawn(async move {
                        let t = Instant::now();
                        let result = tokio::spawn(scenario(suite)).await;
                        (name, t.elapsed(), result)
                    })
                })
                .collect();
            for lane in lanes {
                let (name, took, result) = lane.await.expect("a scenario lane");
                report(&name, took, result, &mut failed);
            }
            for (name, scenario) in LAST.iter().filter(|(name, _)| wanted(name)) {
                run(&suite, name, *scenario, &mut failed).await;
            }
            for (name, scenario) in SUMMARY.iter().filter(|_| filters.is_empty()) {
                run(&suite, name, *scenario, &mut failed).await;
            }
        }
        println!("{} failed, in {:.0} s", failed.len(), started.elapsed().as_secs_f64());
        // E2E_HOLD=<seconds>: after a failure the cluster stays up that long for a look
        // (KUBECONFIG printed), then goes.
        let hold = std::env::var("E2E_HOLD").ok().and_then(|s| s.parse::<u64>().ok());
        if let Some(hold) = hold.filter(|_| !failed.is_empty()) {
            println!("holding the cluster for {hold} s: export KUBECONFIG={}", suite.cluster.kubeconfig().display());
            tokio::time::sleep(std::time::Duration::from_secs(hold)).await;
        }
        for f in &failed {
            println!("FAILED: {f}");
        }
        if failed.is_empty() {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    })
}

async fn run(suite: &Arc<Suite>, name: &str, scenario: Scenario, failed: &mut Vec<String>) {
    let t = Instant::now();
    let result = tokio::spawn(scenario(suite.clone())).await;
    report(name, t.elapsed(), result, failed);
}

fn report(name: &str, took: std::time::Duration, result: Result<(), tokio::task::JoinError>, failed: &mut Vec<String>) {
    match result {
        Ok(()) => println!("scenario {name} ... ok ({:.1} s)", took.as_secs_f64()),
        Err(e) => {
            let why = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            println!("scenario {name} ... FAILED ({:.1} s)\n{why}", took.as_secs_f64());
            failed.push(name.to_string());
        }
    }
}
