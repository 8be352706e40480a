//! The rows of a Markdown table in the documentation, for the tests that hold a table to
//! the code.

/// The rows of the first table in `text` whose header row starts with `header`: each row's
/// cells, trimmed, without the outer pipes and without the separator row. Cells are split
/// at ` | `, so a `|` inside a cell (`suspend|resume`) stays in it. Panics when there is no
/// such table: a test that finds no rows would pass without checking anything.
pub fn rows(text: &str, header: &str) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = text
        .lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim().trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect())
        .collect();
    assert!(!rows.is_empty(), "no table with the header {header:?}, or it has no rows");
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rows_under_the_header_and_nothing_after() {
        let text =
            "# Doc\n\n| a | b |\n|---|---|\n| `x` | 1 |\n| `y|z` | 2 |\n\nprose\n| c | d |\n|---|---|\n| other | 3 |\n";
        assert_eq!(rows(text, "| a |"), [["`x`", "1"], ["`y|z`", "2"]]);
        assert_eq!(rows(text, "| c |"), [["other", "3"]]);
    }

    #[test]
    #[should_panic(expected = "no table")]
    fn a_missing_table_fails() {
        rows("| a | b |\n|---|---|\n", "| a |");
    }
}
