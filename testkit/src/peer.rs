//! Peers the tests run (Postfix's smtp-sink and smtp-source, swaks, dnsmasq), found on PATH
//! or in the sbin folders where Debian puts Postfix's tools.
use std::path::PathBuf;

/// A required peer is not installed.
#[derive(Debug, thiserror::Error)]
#[error("required test peer `{name}` not found (install the Debian package `{package}`, make prepare; CI={ci})")]
pub struct MissingPeer {
    pub name: String,
    pub package: String,
    ci: String,
}

/// Path of peer `name`, or what to install.
pub fn find_tool(name: &str, package: &str) -> Result<PathBuf, MissingPeer> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()).ok_or_else(|| MissingPeer {
        name: name.to_string(),
        package: package.to_string(),
        ci: std::env::var("CI").unwrap_or_default(),
    })
}

/// Path of peer `name`; panics naming the package when it is missing (under CI=true or
/// not: a test never skips for want of a peer).
pub fn tool(name: &str, package: &str) -> PathBuf {
    find_tool(name, package).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_peer_names_its_package() {
        let e = find_tool("no-such-peer-of-kube-transport", "some-package").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("`no-such-peer-of-kube-transport`") && text.contains("`some-package`"), "{text}");
    }

    #[test]
    fn a_peer_in_sbin_is_found_without_it_on_path() {
        // sh is in /usr/bin on every machine these tests run on.
        assert!(find_tool("sh", "dash").expect("sh").is_file());
    }
}
