//! RELIABILITY.md quotes the numbers the tests run with (kills per CI run, the
//! duplicate bound, cases tried, fuzz targets and their corpora); this keeps
//! the document and the tests from drifting apart.
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The value of `const NAME: usize = N;` in a test file.
fn constant(source: &str, name: &str) -> usize {
    let prefix = format!("const {name}: usize = ");
    let line = source.lines().find(|l| l.trim_start().starts_with(&prefix)).unwrap_or_else(|| panic!("no {name}"));
    line.trim_start()[prefix.len()..].trim_end_matches(';').trim().parse().expect("a number")
}

fn count(source: &str, needle: &str) -> usize {
    source.matches(needle).count()
}

/// `doc` must state `figure` (a table cell or a phrase).
fn states(doc: &str, figure: &str) {
    assert!(doc.contains(figure), "RELIABILITY.md does not say `{figure}` any more");
}

#[test]
fn reliability_md_quotes_what_the_tests_run() {
    let doc = read("RELIABILITY.md");

    let crash = read("transport/tests/crash_random.rs");
    let kills = constant(&crash, "DEFAULT_KILLS");
    let connections = constant(&crash, "CONNECTIONS");
    let per_connection = constant(&crash, "DUPLICATES_PER_CONNECTION");
    states(&doc, &format!("| kills per CI run | {kills} |"));
    states(&doc, &format!("| duplicate bound per kill | {} |", connections * per_connection));
    let damage =
        ["\"truncated\"", "\"garbage\"", "\"flipped\"", "\"empty\""].iter().filter(|d| crash.contains(*d)).count();
    states(&doc, &format!("| kinds of database damage | {damage} |"));

    let hostile = read("transport/tests/hostile.rs");
    states(&doc, &format!("| hostile-client tests | {} |", count(&hostile, "#[test]")));
    let smuggling = hostile.split("let variants").nth(1).expect("variants").split("];").next().unwrap_or("");
    states(&doc, &format!("| smuggling variants | {} |", count(smuggling, "(\"")));

    let relay = read("transport/tests/relay_abuse.rs");
    let forms = relay.split("const RELAY_TESTS").nth(1).expect("RELAY_TESTS").split("];").next().unwrap_or("");
    states(&doc, &format!("| open-relay recipient forms | {} |", count(forms, "    (\"")));

    let config = read("transport/tests/hostile_config.rs");
    let cases = config.split("let cases").nth(1).expect("cases").split("];").next().unwrap_or("");
    let hostile_configs = cases.lines().filter(|l| l.trim_start().starts_with('(')).count();
    states(&doc, &format!("| hostile config files | {hostile_configs} |"));

    let peers = read("transport/tests/peer_faults.rs");
    // `run_case(` followed by a case name (rustfmt may break the line there).
    let cases = peers.split("run_case(").skip(1).filter(|rest| rest.trim_start().starts_with('"')).count();
    states(&doc, &format!("| next-hop fault cases | {cases} |"));

    let dane = read("transport/tests/dane.rs");
    states(&doc, &format!("| DANE tests | {} |", count(&dane, "#[test]")));

    let faults = read("transport/tests/faults.rs");
    states(&doc, &format!("| storage-fault tests | {} |", count(&faults, "#[test]")));

    // Every fuzz target is listed, and has a stored corpus.
    let manifest = read("fuzz/Cargo.toml");
    let targets: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"'))
        .filter(|n| *n != "transport-fuzz")
        .collect();
    assert_eq!(targets.len(), 8, "{targets:?}");
    for t in &targets {
        states(&doc, &format!("| `{t}` |"));
        let corpus = repo().join("fuzz/corpus").join(t);
        let inputs = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
        assert!(inputs > 0, "fuzz/corpus/{t} is empty");
    }
}
