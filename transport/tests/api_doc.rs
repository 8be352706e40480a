//! docs/design.md §8 is the contract scripts are written against: every admin API route it
//! names is served, every route the server serves is named there, and transportctl's verbs
//! are the ones it lists. A route or verb added, renamed or dropped without the document
//! fails here.

use crate::support::*;
use std::collections::BTreeSet;

fn repo_file(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The text of §8 from `from` up to `to`.
fn contract(from: &str, to: &str) -> String {
    let design = repo_file("docs/design.md");
    let section = design.split("## 8. Contracts").nth(1).expect("docs/design.md has §8");
    let start = section.find(from).unwrap_or_else(|| panic!("§8 has no {from:?}"));
    let rest = &section[start..];
    rest[..rest.find(to).unwrap_or(rest.len())].to_string()
}

const METHODS: [&str; 4] = ["GET", "PUT", "POST", "DELETE"];

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/{}_-.".contains(c)
}

/// `METHOD /v1/...` as the admin API paragraph writes each route (queries and `[...]`
/// options cut off).
fn documented_routes() -> BTreeSet<(String, String)> {
    let text = contract("Admin HTTP API", "`transportctl --admin URL");
    let mut routes = BTreeSet::new();
    for method in METHODS {
        let needle = format!("{method} /v1/");
        for (at, _) in text.match_indices(&needle) {
            let path: String = text[at + method.len() + 1..].chars().take_while(|c| is_path_char(*c)).collect();
            routes.insert((method.to_string(), path));
        }
    }
    routes
}

/// The routes `admin::router` declares, read from its source as `.route("PATH", method(`.
fn served_routes() -> BTreeSet<(String, String)> {
    let source = repo_file("transport/src/admin/mod.rs");
    let mut routes = BTreeSet::new();
    for (at, _) in source.match_indices(".route(\"") {
        let rest = &source[at + ".route(\"".len()..];
        let Some((path, after)) = rest.split_once("\", ") else { continue };
        let method: String = after.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        routes.insert((method.to_ascii_uppercase(), path.to_string()));
    }
    routes
}

#[test]
fn every_admin_route_is_documented_and_every_documented_route_is_served() {
    let documented = documented_routes();
    let served = served_routes();
    assert!(documented.len() >= 18, "the admin API paragraph was not found whole: {documented:?}");
    let v1: BTreeSet<_> = served.iter().filter(|(_, p)| p.starts_with("/v1/")).cloned().collect();
    let undocumented: Vec<_> = v1.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&v1).collect();
    assert!(undocumented.is_empty(), "served but not in docs/design.md §8: {undocumented:?}");
    assert!(unserved.is_empty(), "in docs/design.md §8 but not served: {unserved:?}");
    let admin = contract("Admin HTTP API", "`transportctl --admin URL");
    for (_, path) in served.iter().filter(|(_, p)| !p.starts_with("/v1/")) {
        let named = admin.contains(&format!("`{path}`")) || admin.contains(&format!("GET {path}`"));
        assert!(named, "{path} is served but not in docs/design.md §8");
    }

    // The server itself answers each one: not the fallback's 404, not 405. Parameters get
    // values no object has; the bodies are empty, so no action is carried out.
    let sink = Sink::start();
    let t = start_transport(&TransportSetup { admin: true, smart_host: Some(sink.addr), ..Default::default() });
    let addr = t.admin.expect("admin API");
    let token = t.token.clone();
    // The fallback's answer, which the routes below must not give.
    let unknown = block_on(async {
        let response = reqwest::get(format!("http://{addr}/v1/no-such-route")).await.expect("GET");
        (response.status().as_u16(), response.text().await.unwrap_or_default())
    });
    assert_eq!(unknown.0, 404);
    assert!(unknown.1.contains("no such path"), "{}", unknown.1);
    for (method, path) in documented.iter().chain(served.iter().filter(|(_, p)| !p.starts_with("/v1/"))) {
        let concrete =
            path.replace("{component}", "HubTransport").replace("{id}", "999999").replace("{primary}", "nobody");
        let (status, body) = block_on(async {
            let mut request =
                reqwest::Client::new().request(method.parse().expect("method"), format!("http://{addr}{concrete}"));
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap_or_else(|e| panic!("{method} {concrete}: {e}"));
            (response.status().as_u16(), response.text().await.unwrap_or_default())
        });
        assert_ne!(status, 405, "{method} {concrete}: method not allowed: {body}");
        assert!(!body.contains("no such path"), "{method} {concrete}: {status} {body}");
    }
}

/// `transportctl --help`'s verbs, as clap lists them under `Commands:`.
fn transportctl_verbs() -> BTreeSet<String> {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_transportctl")).arg("--help").output().expect("transportctl");
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    testkit::cli_help::commands(&help)
}

#[test]
fn transportctl_verbs_are_the_ones_docs_design_lists() {
    let text = contract("`transportctl --admin URL", "`-o json`");
    let verbs = transportctl_verbs();
    assert!(verbs.len() >= 15, "{verbs:?}");
    for verb in &verbs {
        let listed = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).any(|w| w == verb);
        assert!(listed, "transportctl {verb} is not in docs/design.md §8");
    }
    // Every verb-looking word of the list (lower case with a hyphen, not an option) exists.
    for word in text.split(|c: char| c.is_whitespace() || ",;[]".contains(c)) {
        let looks_like_verb =
            word.contains('-') && !word.starts_with('-') && word.chars().all(|c| c.is_ascii_lowercase() || c == '-');
        if looks_like_verb {
            assert!(verbs.contains(word), "docs/design.md §8 lists transportctl {word}, which does not exist");
        }
    }
}

/// README's table of Exchange cmdlets: each transportctl verb it shows exists, each route it
/// names is served (`a|b` is two routes).
#[test]
fn readme_cmdlet_table_names_real_verbs_and_routes() {
    let readme = repo_file("README.md");
    let rows = testkit::doc_table::rows(&readme, "| Exchange | transportctl | API |");
    assert!(rows.len() >= 14, "README's cmdlet table was not found whole: {rows:?}");
    let verbs = transportctl_verbs();
    let served = served_routes();
    for row in rows {
        let [_, cli, api] = &row[..] else { panic!("a row of three cells: {row:?}") };
        for example in cli.split('`').skip(1).step_by(2) {
            let verb = example.split_whitespace().next().unwrap_or_default();
            if verb.starts_with('-') {
                continue; // an option of the verb before it
            }
            assert!(verbs.contains(verb), "README shows transportctl {verb}, which does not exist");
        }
        for route in api.split('`').skip(1).step_by(2) {
            let (method, path) = route.split_once(' ').unwrap_or_else(|| panic!("METHOD PATH: {route}"));
            let path: String = path.chars().take_while(|c| is_path_char(*c) || *c == '|').collect();
            let (stem, last) = path.rsplit_once('/').unwrap_or(("", &path));
            for leaf in last.split('|') {
                let route = (method.to_string(), format!("{stem}/{leaf}"));
                assert!(served.contains(&route), "README names {route:?}, which the server does not serve");
            }
        }
    }
}
