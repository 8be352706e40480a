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

/// One bind mount: a folder (or file) of the harness at `target` inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
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
    /// Makes every mount point exist on this machine (an empty folder, or an empty file for
    /// a file mount), as a container runtime makes them in the image's file system.
    fn prepare_mount_points(&self) -> Result<()> {
        for m in &self.mounts {
            if m.target.exists() {
                continue;
            }
            if m.source.is_dir() {
                std::fs::create_dir_all(&m.target)
            } else {
                if let Some(parent) = m.target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                File::create(&m.target).map(|_| ())
            }
            .with_context(|| format!("cannot make mount point {}", m.target.display()))?;
        }
        Ok(())
    }

    /// A mount that would hide another mount's folder, or the program, from the process
    /// that sets the mounts up (the pod could not start).
    fn check_hiding(&self, program: &Path) -> Result<()> {
        for m in &self.mounts {
            let hidden =
                self.mounts.iter().map(|o| o.source.as_path()).chain([program]).find(|p| p.starts_with(&m.target));
            if let Some(p) = hidden {
                anyhow::bail!("the volume mounted at {} would hide {} on this node", m.target.display(), p.display());
            }
        }
        Ok(())
    }

    /// Sets up `cmd` to enter the sandbox between fork and exec.
    pub fn apply(&self, cmd: &mut tokio::process::Command) -> Result<()> {
        self.check_hiding(Path::new(cmd.as_std().get_program()))?;
        self.prepare_mount_points()?;
        let netns =
            File::open(self.netns.path()).with_context(|| format!("no network namespace {}", self.netns.name))?;
        let hostname = self.hostname.clone().into_bytes();
        // Parents before children: a volume inside another volume's folder stays visible.
        let mut mounts = self.mounts.clone();
        mounts.sort_by_key(|m| m.target.components().count());
        let mounts: Vec<(CString, CString, bool)> = mounts
            .iter()
            .map(|m| Ok((cstring(&m.source)?, cstring(&m.target)?, m.read_only)))
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
                for (source, target, read_only) in &mounts {
                    check(libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        null,
                        libc::MS_BIND | libc::MS_REC,
                        null.cast(),
                    ))?;
                    if *read_only {
                        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
                        check(libc::mount(null, target.as_ptr(), null, flags, null.cast()))?;
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
