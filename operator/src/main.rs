//! `transport-operator`: runs the TransportService and TransportConfig controllers, with
//! `/metrics`, `/healthz` and `/readyz` on `--metrics-bind`, JSON logs, optional leader
//! election on a coordination.k8s.io Lease, and a graceful stop on SIGTERM.
use anyhow::Context as _;
use clap::Parser;
use kube_leader_election::{LeaseLock, LeaseLockParams};
use operator::admin::PodIpConnector;
use operator::http::HttpState;
use operator::leader;
use operator::metrics::Metrics;
use operator::token::TokenKey;
use operator::Context;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(name = "transport-operator", version, about = "Kubernetes operator of kube-transport")]
struct Args {
    /// Watch one namespace only (default: every namespace).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Run only while holding a coordination.k8s.io Lease (for more than one replica).
    #[arg(long, env = "LEADER_ELECT")]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "kube-transport-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: the operator's own, from POD_NAMESPACE, else the
    /// watched namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_bind: SocketAddr,
    /// Image of servers whose TransportService names none.
    #[arg(long, env = "TRANSPORT_IMAGE", default_value = operator::names::DEFAULT_IMAGE)]
    transport_image: String,
    /// Secret (in the operator's namespace) holding the key the admin tokens are derived
    /// from; created on the first start.
    #[arg(long, env = "TOKEN_KEY_SECRET", default_value = "kube-transport-token-key")]
    token_key_secret: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Before the first TLS use (the API client): more than one provider is compiled in.
    operator::context::install_crypto_provider();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let client = kube::Client::try_default().await.context("cannot reach the Kubernetes API")?;
    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let http = HttpState::new(registry);

    let listener = tokio::net::TcpListener::bind(args.metrics_bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_bind))?;
    let app = operator::http::router(http.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    // The operator's own namespace: the Lease and the token key live there.
    let own_namespace =
        args.lease_namespace.clone().or_else(|| args.namespace.clone()).unwrap_or_else(|| "default".into());
    let lease = if args.leader_elect {
        let namespace = own_namespace.clone();
        let holder = std::env::var("POD_NAME").unwrap_or_else(|_| format!("transport-operator-{}", std::process::id()));
        let lock = Arc::new(LeaseLock::new(
            client.clone(),
            &namespace,
            LeaseLockParams {
                lease_name: args.lease_name.clone(),
                holder_id: holder.clone(),
                lease_ttl: leader::LEASE_TTL,
            },
        ));
        tracing::info!(lease = %args.lease_name, %namespace, %holder, "waiting for leadership");
        tokio::select! {
            _ = leader::acquire(&lock) => {}
            _ = shutdown_signal() => return Ok(()),
        }
        tracing::info!("leading");
        leader::keep(lock.clone());
        Some(lock)
    } else {
        None
    };

    let token_key =
        TokenKey::load_or_create(client.clone(), &own_namespace, &args.token_key_secret).await.with_context(|| {
            format!("cannot read or create the token key Secret {own_namespace}/{}", args.token_key_secret)
        })?;
    let ctx = Arc::new(
        Context::new(client, Arc::new(PodIpConnector))
            .with_namespace(args.namespace.clone())
            .with_metrics(metrics)
            .with_default_image(args.transport_image.clone())
            .with_token_key(token_key),
    );
    tracing::info!(namespace = ?args.namespace, "controllers starting");
    // Ready once every watch has listed its objects; returns on SIGTERM / Ctrl-C once the
    // reconciles under way have finished.
    let ready = http.clone();
    operator::run::run_controllers(ctx, move || ready.set_ready(true)).await;
    http.set_ready(false);
    if let Some(lock) = lease {
        if let Err(e) = lock.step_down().await {
            tracing::warn!(error = %e, "cannot release the lease");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
