//! What each image stands for on this machine: the project's images (`images/Dockerfile`)
//! are the workspace's own binaries, found by repository name whatever the registry and
//! tag (a new tag is a new image to the operator, the same binary here). A container runs
//! its `command` if it has one (an image path such as `/usr/local/bin/transport` is mapped
//! to the binary), else the image's entrypoint, with `args` after it.
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The images the e2e kubelet can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// `transport` (ENTRYPOINT /usr/local/bin/transport; transportctl beside it).
    Transport,
    /// `transport-operator` (ENTRYPOINT /usr/local/bin/transport-operator).
    Operator,
    /// `mailtools`: Debian with Postfix's smtp-sink, swaks and bash (CMD smtp-sink).
    MailTools,
}

impl Image {
    /// The image a reference (`registry/path/name:tag@digest`) stands for.
    pub fn parse(reference: &str) -> Result<Image> {
        let without_digest = reference.split('@').next().unwrap_or_default();
        let last = without_digest.rsplit('/').next().unwrap_or_default();
        let name = last.split(':').next().unwrap_or_default();
        Ok(match name {
            "transport" => Image::Transport,
            "transport-operator" => Image::Operator,
            "mailtools" => Image::MailTools,
            _ => {
                bail!("image {reference} is not one the e2e kubelet can run (transport, transport-operator, mailtools)")
            }
        })
    }

    /// ENTRYPOINT and CMD of the image.
    fn defaults(self) -> (Vec<String>, Vec<String>) {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            Image::Transport => (s(&["/usr/local/bin/transport"]), vec![]),
            Image::Operator => (s(&["/usr/local/bin/transport-operator"]), vec![]),
            Image::MailTools => (vec![], s(&["/usr/sbin/smtp-sink", "-v", "0.0.0.0:2526", "64"])),
        }
    }

    /// The program and arguments of a container, as a container runtime combines them.
    pub fn argv(self, command: Option<&[String]>, args: Option<&[String]>) -> Result<Vec<String>> {
        let (entrypoint, cmd) = self.defaults();
        let mut argv = match (command, args) {
            (Some(c), Some(a)) => [c, a].concat(),
            (Some(c), None) => c.to_vec(),
            (None, Some(a)) => [entrypoint.as_slice(), a].concat(),
            (None, None) => [entrypoint, cmd].concat(),
        };
        let Some(program) = argv.first_mut() else { bail!("the container has neither command nor entrypoint") };
        *program = resolve(program).display().to_string();
        Ok(argv)
    }
}

/// A program path of the project's images → the workspace binary; others as they are
/// (`bash`, `swaks`, `/usr/sbin/smtp-sink` come from this machine).
fn resolve(program: &str) -> PathBuf {
    let name = Path::new(program).file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match name {
        "transport" | "transportctl" | "transport-operator" => workspace_binary(name),
        _ => PathBuf::from(program),
    }
}

/// A binary of this workspace (the images' programs, and `kubectl-transport`, the kubectl
/// plugin the scenarios put on a user's PATH): `$KUBE_TRANSPORT_BIN_DIR/<name>` if set, else beside this
/// test's own target folder (`<target>/<profile>/<name>`, which `cargo test --workspace
/// --all-targets` builds). When missing it is built with `cargo build -p <package>`.
pub fn workspace_binary(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("KUBE_TRANSPORT_BIN_DIR") {
            return PathBuf::from(d);
        }
        let exe = std::env::current_exe().expect("the running executable's path");
        // <target>/<profile>/deps/<test> or <target>/<profile>/<bin>
        let parent = exe.parent().expect("an executable has a folder");
        if parent.file_name().is_some_and(|n| n == "deps") {
            parent.parent().expect("<profile>/deps").to_path_buf()
        } else {
            parent.to_path_buf()
        }
    });
    let bin = dir.join(name);
    if !bin.is_file() {
        // The operator crate's binaries: the operator and the kubectl plugin.
        let package = if matches!(name, "transport-operator" | "kubectl-transport") { "operator" } else { "transport" };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", package, "--bin", name, "--manifest-path"])
            .arg(&manifest)
            .status();
        assert!(status.is_ok_and(|s| s.success()), "cargo build -p {package} --bin {name} failed");
    }
    bin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_by_repository_name_and_argv_as_a_runtime_builds_it() {
        assert_eq!(Image::parse("ghcr.io/kube-transport/transport:0.1.0").unwrap(), Image::Transport);
        assert_eq!(Image::parse("transport-operator@sha256:ab").unwrap(), Image::Operator);
        assert_eq!(Image::parse("localhost:5000/x/mailtools:dev").unwrap(), Image::MailTools);
        assert!(Image::parse("nginx:1").is_err());
        let args = vec!["--config".to_string(), "/etc/x.yaml".to_string()];
        let argv = Image::Transport.argv(None, Some(&args)).unwrap();
        assert!(argv[0].ends_with("/transport"), "{argv:?}");
        assert_eq!(&argv[1..], &args[..]);
        let sink = Image::MailTools.argv(None, None).unwrap();
        assert_eq!(sink[0], "/usr/sbin/smtp-sink");
        let cmd = vec!["bash".to_string(), "-c".to_string(), "true".to_string()];
        assert_eq!(Image::MailTools.argv(Some(&cmd), None).unwrap(), cmd);
    }
}
