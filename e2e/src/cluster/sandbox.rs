//! How a container's process is started: in its pod's network namespace, in a private mount
//! namespace of its own where the pod's volumes are bind-mounted at the paths the Pod spec
//! names (and the root file system is read-only when `readOnlyRootFilesystem` says so), and
//! in a UTS namespace with the pod's hostname. Nothing in the process's arguments or
//! configuration is rewritten: it sees the paths and addresses a pod sees.
use super::network::Netns;
use anyhow::{Context as _, Result};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Descriptors the mount sources are opened on in the child (far above what it inherits).
const FIRST_SOURCE_FD: libc::c_int = 900;

/// One bind mount: a folder (or file) of the harness at `target` inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// A mount, prepared before fork (nothing is allocated between fork and exec).
struct Prepared {
    source: CString,
    /// The descriptor the source is opened on, and its /proc/self/fd path.
    fd: libc::c_int,
    through_fd: CString,
    target: CString,
    parents: Vec<CString>,
    is_dir: bool,
    read_only: bool,
}

#[derive(Debug, Clone)]
pub struct Sandbox {
    pub netns: Netns,
    pub hostname: String,
    pub mounts: Vec<Mount>,
    pub read_only_root: bool,
    pub working_dir: Option<PathBuf>,
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).with_context(|| format!("a NUL in {}", p.display()))
}

impl Sandbox {
    /// A mount that would hide the program from the process that runs it.
    fn check_hiding(&self, program: &Path) -> Result<()> {
        if let Some(m) = self.mounts.iter().find(|m| program.starts_with(&m.target)) {
            anyhow::bail!("the volume mounted at {} would hide {} on this node", m.target.display(), program.display());
        }
        Ok(())
    }

    /// Sets up `cmd` to enter the sandbox between fork and exec.
    pub fn apply(&self, cmd: &mut tokio::process::Command) -> Result<()> {
        self.check_hiding(Path::new(cmd.as_std().get_program()))?;
        let netns =
            File::open(self.netns.path()).with_context(|| format!("no network namespace {}", self.netns.name))?;
        let hostname = self.hostname.clone().into_bytes();
        // Parents before children: a volume inside another volume's folder stays visible.
        let mut mounts = self.mounts.clone();
        mounts.sort_by_key(|m| m.target.components().count());
        // Each source is opened (O_PATH, in the new mount namespace, before any mount) onto
        // a fixed descriptor and mounted through /proc/self/fd: a volume mounted first (an
        // emptyDir on /tmp) may cover the folder of one mounted after it.
        let mounts: Vec<Prepared> = mounts
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let fd = FIRST_SOURCE_FD + i as libc::c_int;
                let ancestors = m.target.ancestors().skip(1).collect::<Vec<_>>();
                Ok(Prepared {
                    source: cstring(&m.source)?,
                    fd,
                    through_fd: cstring(Path::new(&format!("/proc/self/fd/{fd}")))?,
                    target: cstring(&m.target)?,
                    // Outermost first.
                    parents: ancestors.iter().rev().map(|p| cstring(p)).collect::<Result<_>>()?,
                    is_dir: m.source.is_dir(),
                    read_only: m.read_only,
                })
            })
            .collect::<Result<_>>()?;
        let root = cstring(Path::new("/"))?;
        let workdir = cstring(self.working_dir.as_deref().unwrap_or(Path::new("/")))?;
        let read_only_root = self.read_only_root;
        // SAFETY: between fork and exec only system calls run, on memory prepared above (no
        // allocation, no lock).
        unsafe {
            cmd.pre_exec(move || {
                let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
                // It dies with the harness, even one killed with SIGKILL.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // A process group of its own: stopping the container stops what it started.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                check(libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET))?;
                check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
                check(libc::sethostname(hostname.as_ptr().cast(), hostname.len()))?;
                let null = std::ptr::null();
                // Nothing mounted here propagates back to the machine.
                check(libc::mount(null, root.as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, null.cast()))?;
                for m in &mounts {
                    let opened = libc::open(m.source.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                    if opened < 0 || libc::dup3(opened, m.fd, libc::O_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(opened);
                }
                for m in &mounts {
                    // The mount point, made where the container sees it (inside a volume
                    // mounted before, when it is in one), as a container runtime does.
                    for parent in &m.parents {
                        libc::mkdir(parent.as_ptr(), 0o755);
                    }
                    if m.is_dir {
                        libc::mkdir(m.target.as_ptr(), 0o755);
                    } else {
                        let f = libc::open(m.target.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                        if f >= 0 {
                            libc::close(f);
                        }
                    }
                    let flags = libc::MS_BIND | libc::MS_REC;
                    check(libc::mount(m.through_fd.as_ptr(), m.target.as_ptr(), null, flags, null.cast()))?;
                    if m.read_only {
                        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
                        check(libc::mount(null, m.target.as_ptr(), null, flags, null.cast()))?;
                    }
                }
                // After the volumes: a bind mount copies its source mount's flags, and the
                // volumes' folders live on the root file system.
                if read_only_root {
                    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
                    check(libc::mount(null, root.as_ptr(), null, flags, null.cast()))?;
                }
                check(libc::chdir(workdir.as_ptr()))?;
                Ok(())
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn volumes_are_mounted_where_the_spec_says_even_under_an_emptydir_on_tmp() {
        let name = format!("kt-sandbox-test-{}", std::process::id());
        assert!(std::process::Command::new("ip").args(["netns", "add", &name]).status().unwrap().success());
        let dir = tempfile::Builder::new().tempdir_in("/var/tmp").unwrap();
        let empty = dir.path().join("empty");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("f"), "volume\n").unwrap();
        let sandbox = Sandbox {
            netns: Netns { name: name.clone() },
            hostname: "pod-a".into(),
            mounts: vec![
                Mount { source: empty, target: "/tmp".into(), read_only: false },
                Mount { source: data, target: "/tmp/kt-sandbox-test/data".into(), read_only: true },
            ],
            read_only_root: true,
            working_dir: None,
        };
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "cat /tmp/kt-sandbox-test/data/f; hostname; touch /x 2>/dev/null || echo ro"]);
        sandbox.apply(&mut cmd).unwrap();
        let out = cmd.output().await;
        let _ = std::process::Command::new("ip").args(["netns", "del", &name]).status();
        let out = out.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "volume\npod-a\nro\n", "{out:?}");
    }
}
