//! Configuration is untrusted input too (in a cluster it comes from custom
//! resources): `transport check-config` answers hostile files quickly with an
//! error naming the field, and never accepts what the server would refuse.

use crate::support::eventually;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `transport check-config` on `text`; (exit code, stderr). Bounded in time.
fn check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, text).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_transport"))
        .arg("check-config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("check-config");
    let status = eventually(Duration::from_secs(20), "check-config to answer", || child.try_wait().expect("wait"));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    (status.code(), err)
}

// The files are written by hand, not built from a TransportFile: hostile text is the point.
const BASE: &str = "serverName: t\nfqdn: relay.test.invalid\nqueueDirectory: /tmp/q\n";

#[test]
fn hostile_config_files_are_refused_quickly_naming_the_field() {
    // A billion-laughs alias bomb inside a field the server reads.
    let mut bomb = String::from("x0: &a0 [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    for i in 1..9 {
        let p = i - 1;
        bomb.push_str(&format!("x{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"));
    }
    let cases: Vec<(String, &str)> = vec![
        (format!("{bomb}{BASE}components: {{HubTransport: *a8}}\n"), ""),
        (
            format!(
                "{BASE}transportConfig: {{acceptedDomains: [{}]}}\n",
                bomb.replace('\n', ", ").replace(": &", ": {a: &")
            ),
            "",
        ),
        (format!("{BASE}transportConfig: {{acceptedDomains: {}{}}}\n", "[".repeat(5_000), "]".repeat(5_000)), ""),
        (format!("{BASE}receiveConnectors: [{{name: a, bind: \"999.0.0.1:25\"}}]\n"), "receiveConnectors[0].bind"),
        (format!("{BASE}retry: {{queueGlitchRetryCount: 99999999999}}\n"), "retry.queueGlitchRetryCount"),
        (
            format!("{BASE}receiveConnectors: [{{name: a, bind: \"127.0.0.1:25\", maxMessageSize: 9999999PB}}]\n"),
            "maxMessageSize",
        ),
        (format!("{BASE}unknownField: 1\n"), "unknownField"),
        (format!("{BASE}serverName: again\n"), "serverName"),
        ("\u{feff}\0\u{1}garbage: [".to_string(), ""),
        (
            format!(
                "{BASE}receiveConnectors: [{{name: a, bind: \"127.0.0.1:25\", connectionTimeout: 2d, \
                 maxRecipientsPerMessage: 0}}]\nsendConnectors: [{{name: s, addressSpaces: [{{domain: \"*\"}}], \
                 smartHosts: [\"h:25\"], connectionInactivityTimeout: \"00:00:00\"}}]\n\
                 retry: {{messageRetryInterval: \"2.00:00:00\"}}\n"
            ),
            "receiveConnectors[0].connectionTimeout",
        ),
    ];
    for (text, field) in &cases {
        let (code, err) = check(text);
        assert_eq!(code, Some(2), "accepted or crashed on {:.200}: {err}", text);
        assert!(err.contains(field), "{field} not named for {:.200}:\n{err}", text);
    }
    // Semantic errors are reported all at once, each with its path.
    let (_, err) = check(&cases.last().expect("case").0);
    for field in [
        "receiveConnectors[0].connectionTimeout",
        "receiveConnectors[0].maxRecipientsPerMessage",
        "sendConnectors[0].connectionInactivityTimeout",
        "retry.messageRetryInterval",
    ] {
        assert!(err.contains(field), "{field} missing from:\n{err}");
    }
}
