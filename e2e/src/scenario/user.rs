//! A user of the cluster other than the administrator, set up the way an administrator
//! grants someone access: a ServiceAccount bound to a Role (`kubectl create rolebinding`), a
//! token from the TokenRequest API (`kubectl create token`), and a kubeconfig of its own
//! with the API server's address and CA. The user runs the real kubectl with the kubectl
//! plugin `kubectl-transport` on its PATH, as README's "kubectl transport" installs it.
use super::Env;
use crate::cluster::images::workspace_binary;
use anyhow::{Context as _, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct User {
    /// `system:serviceaccount:<ns>:<account>`, as the audit log names it.
    pub username: String,
    pub kubeconfig: PathBuf,
    kubectl: PathBuf,
    /// Holds `kubectl-transport`, first on the user's PATH.
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

/// What one command printed, and how it exited.
#[derive(Debug, Clone)]
pub struct Ran {
    pub command: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// stdout of a command that succeeded (a panic with its stderr otherwise).
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{} failed:\n{}{}", self.command, self.stderr, self.stdout);
        &self.stdout
    }

    /// stderr of a command that failed with exit code `code`.
    pub fn failed(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{} exited {:?}:\n{}{}", self.command, self.code, self.stderr, self.stdout);
        &self.stderr
    }

    /// stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        let out = self.ok();
        serde_json::from_str(out).unwrap_or_else(|e| panic!("{} printed no JSON ({e}):\n{out}", self.command))
    }
}

impl User {
    /// ServiceAccount `account` in the scenario's namespace, bound to the Role `role` there
    /// (which the scenario applied), with a token valid for an hour and a kubeconfig whose
    /// context's namespace is the scenario's.
    pub fn bound_to(env: &Env<'_>, account: &str, role: &str) -> Result<User> {
        env.kubectl(&["create", "serviceaccount", account])?;
        let subject = format!("--serviceaccount={}:{account}", env.ns);
        env.kubectl(&["create", "rolebinding", account, &format!("--role={role}"), &subject])?;
        let token = env.kubectl(&["create", "token", account, "--duration=1h"])?;
        let admin = kube::config::Kubeconfig::read_from(env.cluster().kubeconfig())?;
        let ca = admin
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.certificate_authority.clone())
            .context("the administrator's kubeconfig names no CA file")?;
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority: {ca}\n\
             users:\n- name: {account}\n  user:\n    token: {}\n\
             contexts:\n- name: {account}\n  context:\n    cluster: e2e\n    user: {account}\n    namespace: {}\n\
             current-context: {account}\n",
            env.cluster().api_url(),
            token.trim(),
            env.ns,
        );
        std::fs::write(&kubeconfig, text)?;
        // Installed as README says: the binary on PATH under the name kubectl-transport.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin)?;
        std::os::unix::fs::symlink(workspace_binary("kubectl-transport"), bin.join("kubectl-transport"))?;
        Ok(User {
            username: format!("system:serviceaccount:{}:{account}", env.ns),
            kubeconfig,
            kubectl: env.suite.kubectl.clone(),
            bin,
            _dir: dir,
        })
    }

    /// `kubectl <args>` as this user, to its end (the runtime's other tasks go on meanwhile).
    pub fn kubectl(&self, args: &[&str]) -> Ran {
        tokio::task::block_in_place(|| self.run(args))
    }

    fn run(&self, args: &[&str]) -> Ran {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        let command = format!("kubectl {}", args.join(" "));
        let out = Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", std::env::join_paths(dirs).unwrap_or(path))
            .current_dir(crate::kind::tools::repo_root())
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) => Ran {
                command,
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Err(e) => Ran { command, code: None, stdout: String::new(), stderr: format!("cannot run kubectl: {e}") },
        }
    }
}
