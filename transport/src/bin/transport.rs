//! `transport --config FILE` runs a transport server; `transport check-config FILE`
//! validates a configuration file and prints every error with its field path.
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use transport::clock::SystemClock;
use transport::config::TransportFile;
use transport::server::{Server, StartOptions};

#[derive(Parser)]
#[command(name = "transport", version, about = "kube-transport SMTP transport server")]
struct Cli {
    /// Configuration file (YAML, docs/design.md §8).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format: text for people, json for pods.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "TRANSPORT_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file; prints each error as `field.path: message`.
    CheckConfig { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match TransportFile::load(file) {
            Ok(_) => {
                println!("{}: configuration is valid", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: invalid configuration", file.display());
                eprintln!("{errors}");
                ExitCode::from(2)
            }
        };
    }
    init_tracing(cli.log_format);
    let Some(path) = cli.config else {
        eprintln!("transport: --config FILE is required (see transport --help)");
        return ExitCode::from(2);
    };
    let (file, text) = match load(&path) {
        Ok(x) => x,
        Err(message) => {
            eprintln!("{}: invalid configuration, not starting", path.display());
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("transport: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let options = StartOptions { clock: Arc::new(SystemClock), config_path: Some(path), config_text: text };
        let server = match Server::start(file, options).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("transport: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_termination().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// The file and its text (the text gives the config revision).
fn load(path: &Path) -> Result<(TransportFile, String), String> {
    let file = TransportFile::load(path).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    Ok((file, text))
}

async fn wait_for_termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or pod logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
