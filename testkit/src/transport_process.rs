//! The `transport` binary as a process with its own folder, config file and queue.
use crate::config_file::{write_config_file, Placement, TransportSetup};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `transport` server process with its own config and queue directory; killed when
/// dropped.
pub struct TransportProcess {
    binary: PathBuf,
    child: Option<Child>,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    pub smtp: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub admin: Option<SocketAddr>,
    pub token: Option<String>,
}

impl TransportProcess {
    /// `binary` (the `transport` of this build, `env!("CARGO_BIN_EXE_transport")` in its
    /// tests) on the config of `setup`, in a new folder; returns once it serves.
    pub fn start(binary: &Path, setup: &TransportSetup) -> Self {
        let tmp = tempfile::tempdir().expect("transport dir");
        let dir = tmp.path().to_path_buf();
        let smtp = crate::port::free_addr();
        let admin = setup.admin.then(crate::port::free_addr);
        let token_file = setup.token.as_ref().filter(|_| setup.admin).map(|token| {
            let path = dir.join("token");
            std::fs::write(&path, token).expect("token file");
            path
        });
        let file = setup.config_file(&Placement { dir: &dir, smtp, admin, token_file: token_file.as_deref() });
        let config_path = dir.join("transport.yaml");
        write_config_file(&config_path, &file);
        let mut t = TransportProcess {
            binary: binary.to_path_buf(),
            child: None,
            log_path: dir.join("transport.log"),
            dir,
            _tmp: tmp,
            smtp,
            config_path,
            admin,
            token: setup.token.clone(),
        };
        t.spawn();
        t
    }

    /// Starts the process (again) on the same folder; returns once it serves.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("log file");
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        self.child = Some(child);
        crate::wait_for_smtp_ready(self.smtp, Duration::from_secs(30));
    }

    /// SIGKILL: no shutdown code runs, like a power cut for the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Rewrites the config file with `edit` applied to it (the server's file watcher
    /// reloads it).
    pub fn edit_config(&self, edit: impl FnOnce(&mut transport::config::TransportFile)) {
        let text = std::fs::read_to_string(&self.config_path).expect("read the config file");
        let mut file = transport::config::TransportFile::from_yaml_str(&text)
            .unwrap_or_else(|e| panic!("the config file is invalid:\n{e}"));
        edit(&mut file);
        write_config_file(&self.config_path, &file);
    }

    /// What the server logged (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs `f` with a client of this server's admin API (on a fresh runtime: the tests are
    /// synchronous).
    pub fn admin<T, F, Fut>(&self, f: F) -> T
    where
        F: FnOnce(transport::client::AdminClient) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let addr = self.admin.expect("this server has no admin API");
        let client = transport::client::AdminClient::new(&format!("http://{addr}"), self.token.clone());
        crate::block_on(async move { f(client.expect("client")).await })
    }

    /// The value of an unlabelled metric from the admin API's `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let addr = self.admin.expect("this server has no admin API");
        let text =
            crate::block_on(
                async move { reqwest::get(format!("http://{addr}/metrics")).await.ok()?.text().await.ok() },
            )?;
        metric_value(&text, name)
    }

    /// Waits until the store holds no message (every removal committed), per the admin
    /// API's `transport_queue_stored_messages`.
    pub fn wait_store_empty(&self, within: Duration) {
        crate::eventually(within, "an empty queue store", || {
            (self.metric("transport_queue_stored_messages") == Some(0.0)).then_some(())
        });
    }
}

impl Drop for TransportProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of unlabelled metric `name` in Prometheus text.
fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_found_by_its_whole_name() {
        let text = "# TYPE x gauge\ntransport_queue_stored_messages_total 9\ntransport_queue_stored_messages 3\n";
        assert_eq!(metric_value(text, "transport_queue_stored_messages"), Some(3.0));
        assert_eq!(metric_value(text, "transport_queue"), None);
    }
}
