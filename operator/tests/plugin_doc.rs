//! README's table of `kubectl transport` verbs is what users copy: every verb and flag it
//! shows exists in the plugin, and every verb of the plugin has a row.
use std::collections::BTreeSet;
use std::process::Command;
use testkit::cli_help::commands;

/// `kubectl-transport <args> --help`.
fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-transport"))
        .args(args)
        .arg("--help")
        .output()
        .expect("kubectl-transport runs");
    assert!(out.status.success(), "kubectl-transport {args:?} --help: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The first cells of README's verb table: `status TS`, `maintenance start SERVER [-t TS]`...
fn readme_rows() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let rows: Vec<String> = testkit::doc_table::rows(&readme, "| verb | Exchange | example |")
        .into_iter()
        .map(|row| row[0].trim_matches('`').to_string())
        .collect();
    assert!(rows.len() >= 7, "README's kubectl transport table was not found whole: {rows:?}");
    rows
}

#[test]
fn readme_verbs_and_flags_are_the_plugins() {
    let top = commands(&help(&[]));
    let mut documented = BTreeSet::new();
    for row in readme_rows() {
        let words: Vec<&str> = row.split_whitespace().collect();
        let verb = words[0];
        assert!(top.contains(verb), "README shows kubectl transport {verb}, which does not exist ({top:?})");
        documented.insert(verb.to_string());
        // A verb with subcommands (maintenance start|stop): the second word is one of them.
        let subs = commands(&help(&[verb]));
        let path: Vec<&str> = if subs.is_empty() {
            vec![verb]
        } else {
            assert!(
                subs.contains(words[1]),
                "README shows kubectl transport {verb} {}, which does not exist",
                words[1]
            );
            vec![verb, words[1]]
        };
        let text = help(&path);
        for flag in words.iter().map(|w| w.trim_start_matches('[')).filter(|w| w.starts_with('-')) {
            let flag = flag.trim_end_matches(']');
            let shown = text.contains(&format!("{flag} ")) || text.contains(&format!("{flag},"));
            assert!(
                shown,
                "README shows {flag} for kubectl transport {}, which it does not take:\n{text}",
                path.join(" ")
            );
        }
    }
    assert_eq!(documented, top, "every verb of the plugin has a row in README's table");
}
