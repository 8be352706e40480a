//! What a clap `--help` lists, for the tests that hold documentation to a CLI.
use std::collections::BTreeSet;

/// The subcommands listed under `Commands:` (without clap's own `help`); empty when there
/// is no such section.
pub fn commands(help: &str) -> BTreeSet<String> {
    let Some(list) = help.split("Commands:").nth(1) else { return BTreeSet::new() };
    list.lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_section_is_read_to_its_end() {
        let help = "Usage: x <COMMAND>\n\nCommands:\n  get-queue   Get-Queue\n  maintenance  In and out\n  help  Print this\n\nOptions:\n  -h, --help\n";
        let want: BTreeSet<String> = ["get-queue", "maintenance"].map(String::from).into();
        assert_eq!(commands(help), want);
        assert!(commands("Usage: x\n\nOptions:\n  -h\n").is_empty());
    }
}
