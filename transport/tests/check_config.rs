//! `transport check-config FILE` prints every error with its field path and
//! exits non-zero; the server refuses to start on an invalid file with the
//! same text; the embedded default is valid.
use std::process::Command;

fn transport() -> Command {
    Command::new(env!("CARGO_BIN_EXE_transport"))
}

#[test]
fn the_embedded_default_is_valid() {
    let local = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/local.yaml");
    let out = transport().args(["check-config", local]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn every_error_with_its_field_path_and_the_server_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    let queue = dir.path().join("q");
    // Written by hand, not built from a TransportFile: the file is wrong on purpose, as a
    // user would write it.
    std::fs::write(
        &file,
        format!(
            "serverName: bad-0\nfqdn: mail.test\nqueueDirectory: {}\n\
         receiveConnectors:\n  - name: Default\n    bind: 127.0.0.1:2525\n    maxRecipientsPerMessage: 0\n\
         sendConnectors:\n  - name: Out\n    addressSpaces: [{{domain: \"*\", cost: 500}}]\n\
         retry: {{transientFailureRetryInterval: \"13:00:00\", poisonThreshold: 11}}\n\
         admin: {{bind: \"0.0.0.0:8025\"}}\n",
            queue.display()
        ),
    )
    .unwrap();
    let out = transport().arg("check-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&out.stderr).to_string();
    for path in [
        "receiveConnectors[0].maxRecipientsPerMessage",
        "sendConnectors[0].addressSpaces[0].cost",
        "sendConnectors[0]",
        "retry.transientFailureRetryInterval",
        "retry.poisonThreshold",
        "admin.tokenFile",
    ] {
        assert!(errors.contains(&path.to_string()), "{path} missing from:\n{errors}");
    }
    assert!(errors.contains("13:00:00"), "the value given is named:\n{errors}");

    let run = transport().arg("--config").arg(&file).output().unwrap();
    assert_eq!(run.status.code(), Some(2), "the server does not start");
    let refused = String::from_utf8_lossy(&run.stderr);
    assert!(refused.contains("not starting"), "{refused}");
    for line in errors.lines().skip(1) {
        assert!(refused.contains(line), "the same text: {line}\n{refused}");
    }
    assert!(!queue.exists(), "nothing was created for an invalid config");
}
