//! Where a pod's files live on this machine, and the `transport` binary that runs it.
//!
//! A pod mounts its file from the ConfigMap at `/etc/kube-transport/config/`, the token
//! Secret at `/etc/kube-transport/admin/`, its queue volume at `/var/lib/kube-transport`,
//! and listens on `0.0.0.0` of its own network namespace. A local process has none of
//! that, so the harness writes the pod's file with those paths and addresses moved:
//! the volume to `<root>/volumes/<claim>/` (the claim is `<server>-queue`: a restarted pod
//! finds its queue there, as on a real volume), the token to `<root>/pods/<server>/token`,
//! and `0.0.0.0` to the pod's own loopback address. [`PodLayout::local_file`] is the one
//! rewrite: the kubelet writes its output, and the operator's admin connector hashes it
//! to know which `configRevision` the process reports for a given rendered file.
use operator::names;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use transport::config::TransportFile;

/// One pod's place on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLayout {
    pub root: PathBuf,
    pub server: String,
    pub ip: IpAddr,
}

impl PodLayout {
    /// The folder standing for the pod's queue volume (PVC `<server>-queue`).
    pub fn volume(&self) -> PathBuf {
        self.root.join("volumes").join(names::pvc_name(&self.server))
    }

    /// The token file (the admin Secret's key `token`).
    pub fn token_file(&self) -> PathBuf {
        self.root.join("pods").join(&self.server).join(names::TOKEN_KEY)
    }

    /// Where the process reads its configuration.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("pods").join(&self.server).join(names::config_key(&self.server))
    }

    fn local_path(&self, path: &Path) -> PathBuf {
        if path == Path::new(names::TOKEN_FILE) {
            return self.token_file();
        }
        match path.strip_prefix(names::DATA_DIR) {
            Ok(rest) => self.volume().join(rest),
            Err(_) => path.to_path_buf(),
        }
    }

    /// The pod's file (the ConfigMap's text) with in-pod paths and `0.0.0.0` moved here.
    pub fn local_file(&self, text: &str) -> Result<String, String> {
        let mut file: TransportFile = serde_yaml::from_str(text).map_err(|e| format!("unreadable file: {e}"))?;
        file.queue_directory = self.local_path(&file.queue_directory);
        file.log_directory = file.log_directory.as_deref().map(|p| self.local_path(p));
        file.replay_directory = file.replay_directory.as_deref().map(|p| self.local_path(p));
        for c in &mut file.receive_connectors {
            if c.bind.ip().is_unspecified() {
                c.bind.set_ip(self.ip);
            }
        }
        if let Some(admin) = &mut file.admin {
            if admin.bind.ip().is_unspecified() {
                admin.bind.set_ip(self.ip);
            }
            admin.token_file = admin.token_file.as_deref().map(|p| self.local_path(p));
        }
        serde_yaml::to_string(&file).map_err(|e| format!("cannot write the file: {e}"))
    }
}

/// The `transport` binary the pods run: `$KUBE_TRANSPORT_BIN` if set, else `transport`
/// next to this test's own target folder (`<target>/debug/transport`, which `cargo test
/// --workspace` and `make e2e-local` build). When it is missing it is built with
/// `cargo build -p transport --bin transport` (never rebuilt when present: a `make test`
/// run builds it with the test features, and a rebuild without them here would replace it
/// under the transport crate's own tests).
pub fn transport_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("KUBE_TRANSPORT_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        // <target>/<profile>/deps/<test> → <target>/<profile>/transport
        let profile_dir =
            exe.parent().and_then(Path::parent).expect("the test executable is in <target>/<profile>/deps");
        let bin = profile_dir.join("transport");
        if !bin.is_file() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
            let status = std::process::Command::new(cargo)
                .args(["build", "-p", "transport", "--bin", "transport", "--manifest-path"])
                .arg(&manifest)
                .status()
                .expect("run cargo build -p transport");
            assert!(status.success(), "cargo build -p transport --bin transport failed");
        }
        assert!(bin.is_file(), "no transport binary at {}: run `make e2e-local`", bin.display());
        bin
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_wildcard_binds_move_to_the_pods_place() {
        let text = "serverName: mail-1\nfqdn: mail-1.test\nqueueDirectory: /var/lib/kube-transport/queue\n\
                    logDirectory: /var/lib/kube-transport/log\n\
                    receiveConnectors:\n  - name: Default\n    bind: 0.0.0.0:2525\n  - name: Fixed\n    bind: 10.1.2.3:2526\n\
                    admin: {bind: \"0.0.0.0:8025\", tokenFile: /etc/kube-transport/admin/token}\n";
        let layout = PodLayout { root: "/tmp/e2e".into(), server: "mail-1".into(), ip: "127.9.9.2".parse().unwrap() };
        let file: TransportFile = serde_yaml::from_str(&layout.local_file(text).unwrap()).unwrap();
        assert_eq!(file.queue_directory, PathBuf::from("/tmp/e2e/volumes/mail-1-queue/queue"));
        assert_eq!(file.log_directory, Some(PathBuf::from("/tmp/e2e/volumes/mail-1-queue/log")));
        assert_eq!(file.receive_connectors[0].bind.to_string(), "127.9.9.2:2525");
        assert_eq!(file.receive_connectors[1].bind.to_string(), "10.1.2.3:2526", "an explicit address stays");
        let admin = file.admin.unwrap();
        assert_eq!(admin.bind.to_string(), "127.9.9.2:8025");
        assert_eq!(admin.token_file, Some(PathBuf::from("/tmp/e2e/pods/mail-1/token")));
        assert_eq!(layout.local_file(text), layout.local_file(text), "the same text gives the same file");
    }
}
